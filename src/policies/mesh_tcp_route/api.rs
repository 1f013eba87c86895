//! Kuma's MeshTCPRoute (`pkg/plugins/policies/meshtcproute/api`, reference §4.5): per
//! destination service (`to[].targetRef`), the weighted backends its TCP connections go to.
//! Only the first rule counts; a `to` entry without rules sends everything to the service it
//! names (Kuma's `To.GetDefault`).

use serde::{Deserialize, Serialize};

use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::Allowed;
use crate::policies::core::targetref::{Item, TargetKind, TargetRef, TargetRefPolicy};
use crate::policies::routing::backend::{BackendRef, DEFAULT_WEIGHT};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTcpRouteSpec {
    /// Absent means the whole mesh (Kuma 2.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<To>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct To {
    #[serde(default)]
    pub target_ref: TargetRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// One rule; also the conf a `to` entry contributes to the rules (its first rule).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub default: RuleConf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConf {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
}

impl To {
    /// The rule that counts: the first, or all traffic to the named service.
    pub fn effective_rule(&self) -> Rule {
        match self.rules.first() {
            Some(r) => r.clone(),
            None => Rule {
                default: RuleConf { backend_refs: vec![BackendRef::service(self.target_ref.name(), DEFAULT_WEIGHT)] },
            },
        }
    }
}

const TOP: &[TargetKind] =
    &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset];

impl SpecType for MeshTcpRouteSpec {
    const TARGET_REF_KINDS: Option<Allowed> =
        Some(Allowed { top: TOP, to: &[TargetKind::MeshService], from: &[], require_entries: false });

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        if let Some(t) = &self.target_ref {
            t.validate(&mut errors, "spec.targetRef", TOP);
        }
        for (i, to) in self.to.iter().enumerate() {
            let at = format!("spec.to[{i}]");
            to.target_ref.validate(&mut errors, &format!("{at}.targetRef"), &[TargetKind::MeshService]);
            for (j, rule) in to.rules.iter().enumerate() {
                let rat = format!("{at}.rules[{j}].default.backendRefs");
                if rule.default.backend_refs.is_empty() {
                    errors.add(rat.clone(), "must be defined");
                }
                for (k, r) in rule.default.backend_refs.iter().enumerate() {
                    r.validate(&mut errors, &format!("{rat}[{k}]"));
                }
            }
        }
        errors.into_result()
    }
}

impl TargetRefPolicy for MeshTcpRouteSpec {
    fn top(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn outbound_items(&self) -> Vec<Item<'_>> {
        self.to
            .iter()
            .map(|to| Item {
                target_ref: &to.target_ref,
                // Plain data with string keys always serializes.
                default: serde_json::to_value(to.effective_rule()).unwrap_or_default(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::*;
    use crate::policies::routing::golden::assert_spec_round_trip;
    use serde_json::{json, Value};

    fn route(to: Value) -> Value {
        policy("MeshTCPRoute", json!({"spec": {"targetRef": {"kind": "Mesh"}, "to": to}}))
    }

    #[test]
    fn round_trips() {
        assert_spec_round_trip(route(json!([{
            "targetRef": {"kind": "MeshService", "name": "redis"},
            "rules": [{"default": {"backendRefs": [
                {"kind": "MeshServiceSubset", "name": "redis", "tags": {"version": "v2"}, "weight": 3},
                {"kind": "MeshService", "name": "redis-b"}
            ]}}]
        }])));
        assert_spec_round_trip(route(json!([{"targetRef": {"kind": "MeshService", "name": "redis"}}])));
    }

    #[test]
    fn bad_input_names_the_field() {
        assert_violation(
            route(json!([{"targetRef": {"kind": "MeshService", "name": "r"}, "rules": [{"default": {}}]}])),
            "spec.to[0].rules[0].default.backendRefs",
            "must be defined",
        );
        assert_violation(
            route(
                json!([{"targetRef": {"kind": "MeshService", "name": "r"}, "rules": [{"default": {"backendRefs": [{"kind": "MeshSubset", "tags": {"a": "b"}}]}}]}]),
            ),
            "spec.to[0].rules[0].default.backendRefs[0].kind",
            "not supported",
        );
        assert_violation(route(json!([{"targetRef": {"kind": "Mesh"}}])), "spec.to[0].targetRef.kind", "not supported");
        assert_violation(
            route(json!([{"targetRef": {"kind": "MeshService", "name": "r"}, "rules": [{"backendRefs": []}]}])),
            "spec.to[0].rules[0].backendRefs",
            "unknown field `backendRefs`",
        );
    }
}
