//! Which targetRef policies of a type select a dataplane, in the order their confs merge,
//! and the `to` / `from` rules they make (reference §4.2–4.3).
//!
//! Order: by top-level targetRef kind, least specific first (Mesh < MeshSubset < MeshGateway
//! < MeshService < MeshServiceSubset < MeshHTTPRoute), then by name *descending*, so on equal
//! kinds the lexicographically smallest name is merged last and wins. Kuma 2.4 sorted names
//! ascending (greatest name won); 2.6.0 reversed it as a fix, and higuma follows 2.6.

use crate::model::Tags;
use std::sync::Arc;

use super::rules::{MergeOptions, RuleItem, Rules, Subset};
use super::set::{PolicySet, Side};
use super::targetref::{top_of, TargetKind, TargetRef, TargetRefPolicy};
use crate::model::dataplane::DataplaneSpec;
use crate::model::{Resource, ResourceType};
use crate::policies::mesh_http_route::api::MeshHttpRouteSpec;

fn policy_of(r: &Resource) -> Option<&dyn TargetRefPolicy> {
    r.spec.target_ref()
}

/// The top-level targetRef that decides selection: a MeshHTTPRoute reference selects what
/// the referenced route's own targetRef selects (`None`: the route does not exist, and the
/// policy selects nothing, as in Kuma).
fn effective_top(set: &PolicySet, top: &TargetRef) -> Option<TargetRef> {
    if top.kind() != TargetKind::MeshHttpRoute {
        return Some(top.clone());
    }
    let route =
        set.of(ResourceType::MeshHttpRoute).iter().find(|r| r.meta.name == top.name()).and_then(|r| policy_of(r))?;
    let route_top = top_of(route);
    (route_top.kind() != TargetKind::MeshHttpRoute).then_some(route_top)
}

/// Whether `policy` (of any targetRef type) selects `dp`.
pub fn selects(set: &PolicySet, policy: &Resource, dp: &DataplaneSpec) -> bool {
    let Some(p) = policy_of(policy) else { return false };
    effective_top(set, &top_of(p)).is_some_and(|t| t.selects(dp))
}

/// The indices (into `set.of(t)`) of the policies of `t` selecting `dp`, in merge order.
pub fn matched(set: &PolicySet, t: ResourceType, dp: &DataplaneSpec) -> Vec<u32> {
    let list = set.of(t);
    let mut out: Vec<(TargetKind, u32)> = list
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let p = policy_of(r)?;
            let top = top_of(p);
            effective_top(set, &top).filter(|e| e.selects(dp)).map(|_| (top.kind(), i as u32))
        })
        .collect();
    // `list` is sorted by name ascending: reversing within a kind gives name descending.
    out.sort_by(|(ka, ia), (kb, ib)| ka.cmp(kb).then(ib.cmp(ia)));
    out.into_iter().map(|(_, i)| i).collect()
}

/// The subsets of the rules of the MeshHTTPRoute a top-level targetRef names (Kuma's
/// artificial items, reference §4.2): `{kuma.io/service, __rule-matches-hash__}` per rule, so
/// a policy on a route configures that route's rules only. Empty when the route is missing.
fn route_rule_subsets(set: &PolicySet, top: &TargetRef) -> Vec<Subset> {
    set.of(ResourceType::MeshHttpRoute)
        .iter()
        .find(|r| r.meta.name == top.name())
        .and_then(|r| r.spec.get::<MeshHttpRouteSpec>())
        .map(MeshHttpRouteSpec::rule_subsets)
        .unwrap_or_default()
}

/// The `to` rules of the matched policies (cached per distinct match).
pub fn to_rules(set: &PolicySet, t: ResourceType, matched: &[u32], options: MergeOptions) -> Arc<Rules> {
    set.rules(t, Side::To, matched.to_vec(), || {
        let list = set.of(t);
        let items: Vec<RuleItem> = matched
            .iter()
            .filter_map(|&i| list.get(i as usize))
            .flat_map(|r| {
                let key = r.key();
                let Some(p) = policy_of(r) else { return Vec::new() };
                let top = top_of(p);
                if top.kind() == TargetKind::MeshHttpRoute {
                    let subsets = route_rule_subsets(set, &top);
                    return p
                        .outbound_items()
                        .into_iter()
                        .flat_map(|item| {
                            subsets.iter().map(move |s| (s.clone(), item.default.clone())).collect::<Vec<_>>()
                        })
                        .map(|(subset, default)| RuleItem { subset, default, origin: key.clone() })
                        .collect();
                }
                p.outbound_items()
                    .into_iter()
                    .filter_map(|item| {
                        let subset = item.target_ref.subset()?;
                        Some(RuleItem { subset, default: item.default, origin: key.clone() })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Rules::compute(&items, options)
    })
}

/// The `from` rules for one inbound: the `from` items of the matched policies that select
/// that inbound (its tags), cached per distinct set of such policies.
pub fn from_rules(
    set: &PolicySet,
    t: ResourceType,
    matched: &[u32],
    inbound_tags: &Tags,
    options: MergeOptions,
) -> Arc<Rules> {
    let list = set.of(t);
    let selecting: Vec<u32> = matched
        .iter()
        .copied()
        .filter(|&i| {
            list.get(i as usize)
                .and_then(|r| policy_of(r))
                .and_then(|p| effective_top(set, &top_of(p)))
                .is_some_and(|top| top.selects_inbound(inbound_tags))
        })
        .collect();
    set.rules(t, Side::From, selecting.clone(), || {
        let items: Vec<RuleItem> = selecting
            .iter()
            .filter_map(|&i| list.get(i as usize))
            .flat_map(|r| {
                let key = r.key();
                policy_of(r)
                    .map(|p| p.inbound_items())
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(move |item| {
                        let subset = item.target_ref.subset()?;
                        Some(RuleItem { subset, default: item.default, origin: key.clone() })
                    })
                    .collect::<Vec<_>>()
            })
            .collect();
        Rules::compute(&items, options)
    })
}
