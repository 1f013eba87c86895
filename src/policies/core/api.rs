//! The shape most targetRef policies share: a top-level `targetRef` and `to` / `from` lists
//! of `{targetRef, default}` entries (MeshTimeout, MeshRetry, MeshHealthCheck,
//! MeshCircuitBreaker, MeshRateLimit, MeshFaultInjection, MeshAccessLog,
//! MeshLoadBalancingStrategy, MeshTrafficPermission).
//!
//! A policy's spec is a newtype over [`ToFromPolicy<Conf>`] with its own `Conf`; it
//! validates the shared parts with [`ToFromPolicy::validate_refs`] and its conf itself.
//!
//! `Conf` types must skip absent fields when serializing (`skip_serializing_if`): rules merge
//! confs as JSON merge patches, where a `null` would delete what a less specific policy set.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::targetref::{Item, TargetKind, TargetRef, TargetRefPolicy};
use crate::model::ValidationError;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Entry<C> {
    #[serde(default)]
    pub target_ref: TargetRef,
    pub default: C,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, bound(deserialize = "C: DeserializeOwned"))]
pub struct ToFromPolicy<C> {
    /// Absent means the whole mesh (Kuma 2.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<Entry<C>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<Entry<C>>,
}

impl<C> Default for ToFromPolicy<C> {
    fn default() -> Self {
        ToFromPolicy { target_ref: None, to: Vec::new(), from: Vec::new() }
    }
}

/// Which kinds a policy type allows where, and whether `to` / `from` may be used.
#[derive(Clone, Copy, Debug)]
pub struct Allowed {
    pub top: &'static [TargetKind],
    /// Empty: the policy has no `to` (its presence is an error).
    pub to: &'static [TargetKind],
    /// Empty: the policy has no `from`.
    pub from: &'static [TargetKind],
    /// At least one of `to` / `from` must have an entry.
    pub require_entries: bool,
}

impl<C> ToFromPolicy<C> {
    /// Checks the targetRefs against `allowed` (Kuma's messages and paths: `spec.targetRef`,
    /// `spec.to[0].targetRef`, ...); the caller validates each `default` (see [`Self::defaults`]).
    pub fn validate_refs(&self, errors: &mut ValidationError, allowed: Allowed) {
        if let Some(t) = &self.target_ref {
            t.validate(errors, "spec.targetRef", allowed.top);
        }
        for (side, entries, kinds) in [("to", &self.to, allowed.to), ("from", &self.from, allowed.from)] {
            if kinds.is_empty() && !entries.is_empty() {
                errors.add(format!("spec.{side}"), "must not be defined");
                continue;
            }
            for (i, e) in entries.iter().enumerate() {
                e.target_ref.validate(errors, &format!("spec.{side}[{i}].targetRef"), kinds);
            }
        }
        if allowed.require_entries && self.to.is_empty() && self.from.is_empty() {
            let field = match (allowed.to.is_empty(), allowed.from.is_empty()) {
                (false, true) => "spec.to",
                (true, false) => "spec.from",
                _ => "spec",
            };
            let reason = match (allowed.to.is_empty(), allowed.from.is_empty()) {
                (false, false) => "at least one of 'to' or 'from' has to be defined",
                _ => "needs at least one item",
            };
            errors.add(field, reason);
        }
    }

    /// Every `default` with its field path (`spec.to[0].default`), for per-conf validation.
    pub fn defaults(&self) -> impl Iterator<Item = (String, &C)> {
        let to = self.to.iter().enumerate().map(|(i, e)| (format!("spec.to[{i}].default"), &e.default));
        let from = self.from.iter().enumerate().map(|(i, e)| (format!("spec.from[{i}].default"), &e.default));
        to.chain(from)
    }
}

fn items<C: Serialize>(entries: &[Entry<C>]) -> Vec<Item<'_>> {
    entries
        .iter()
        .map(|e| Item {
            target_ref: &e.target_ref,
            // Plain data with string keys always serializes.
            default: serde_json::to_value(&e.default).unwrap_or_default(),
        })
        .collect()
}

impl<C: Serialize> TargetRefPolicy for ToFromPolicy<C> {
    fn top(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn outbound_items(&self) -> Vec<Item<'_>> {
        items(&self.to)
    }

    fn inbound_items(&self) -> Vec<Item<'_>> {
        items(&self.from)
    }
}
