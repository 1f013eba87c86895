//! MeshTrafficPermission on the engine (reference §4.5, §4.4): with mTLS on, every inbound a
//! MeshTrafficPermission selects gets its RBAC conf instead of TrafficPermission's; the other
//! inbounds keep TrafficPermission's (Kuma's plugin replaces the RBAC filter only on inbounds
//! it has rules for). The TrafficPermission plugin writes the filter.
//!
//! - `from` (Kuma 2.4): every `from` rule of the inbound becomes a principal (tags as
//!   `spiffe://` and `kuma://` identities, negated tags as `not_id`); the Allow and
//!   AllowWithShadowDeny ones, in rule order, are the allowed clients, the
//!   AllowWithShadowDeny ones also the shadow rules' denied ones. The rules partition the
//!   clients, so a Deny is the absence of a principal.
//! - `rules` (Kuma 2.12+): the `deny`, `allow` and `allowWithShadowDeny` matchers of every
//!   selecting policy are concatenated, not merged (Kuma's MADR on SPIFFE id matches). A
//!   client matching a `deny` is denied, else one matching an `allow` or
//!   `allowWithShadowDeny` is allowed, else denied. Where both forms meet on one inbound,
//!   the `from` Deny rules count as `deny` matchers and its allowed rules as `allow` ones,
//!   in Kuma's order (rules' denies, from's denies, rules' allows, from's allows).

use super::api::{Action, Conf, Match, MeshTrafficPermissionSpec, RuleConf, SpiffeIdMatchType};
use crate::model::ResourceType;
use crate::policies::core::matching::{from_rules, matched};
use crate::policies::core::rules::{MergeOptions, Rules, Subset};
use crate::policies::core::targetref::top_of;
use crate::policies::resolved::ResolvedProxy;
use crate::policies::traffic_permission::plugin::inbound_stat_prefix;
use crate::policies::traffic_permission::rbac::{InboundRbac, Principal, RbacPolicy};
use crate::policies::{Plugin, ResolveCx};

/// Kuma's name of the one policy in the RBAC engines it writes.
const POLICY_NAME: &str = "MeshTrafficPermission";

/// The clients of one `from` rule's subset.
fn subset_principal(mesh: &str, subset: &Subset) -> Principal {
    Principal::all_of(
        subset
            .0
            .iter()
            .map(|t| {
                let id = Principal::tag(mesh, &t.key, &t.value);
                if t.not {
                    Principal::Not(Box::new(id))
                } else {
                    id
                }
            })
            .collect(),
    )
}

/// The clients one `rules` matcher names (validation guarantees the SPIFFE id).
fn match_principal(m: &Match) -> Option<Principal> {
    let id = m.spiffe_id.as_ref()?;
    Some(match id.type_? {
        SpiffeIdMatchType::Exact => Principal::Exact(id.value.clone()),
        SpiffeIdMatchType::Prefix => Principal::Prefix(id.value.clone()),
    })
}

/// The clients of one inbound, by outcome.
#[derive(Default)]
struct Outcomes {
    deny: Vec<Principal>,
    allow: Vec<Principal>,
    shadow: Vec<Principal>,
}

impl Outcomes {
    fn of_from(mesh: &str, rules: &Rules) -> Outcomes {
        let mut out = Outcomes::default();
        for (rule, conf) in rules.rules.iter().zip(rules.decoded::<Conf>()) {
            let Some(action) = conf.as_ref().and_then(|c| c.action) else { continue };
            let p = subset_principal(mesh, &rule.subset);
            match action {
                Action::Allow => out.allow.push(p),
                Action::AllowWithShadowDeny => out.shadow.push(p),
                Action::Deny => out.deny.push(p),
            }
        }
        out
    }

    fn of_rules(confs: &[&RuleConf]) -> Outcomes {
        let all = |f: fn(&RuleConf) -> &Vec<Match>| -> Vec<Principal> {
            confs.iter().flat_map(|c| f(c).iter().filter_map(match_principal)).collect()
        };
        Outcomes { deny: all(|c| &c.deny), allow: all(|c| &c.allow), shadow: all(|c| &c.allow_with_shadow_deny) }
    }
}

fn policy(principals: Vec<Principal>) -> Option<RbacPolicy> {
    (!principals.is_empty()).then(|| RbacPolicy { name: POLICY_NAME.to_string(), principals })
}

/// The RBAC of an inbound with `from` rules and `rules` matchers.
fn inbound_rbac(stat_prefix: String, from: Outcomes, rules: Option<Outcomes>) -> InboundRbac {
    let Some(rules) = rules else {
        // Kuma's own shape for `from` alone.
        let shadow_deny = policy(from.shadow.clone());
        let allow = policy(from.allow.into_iter().chain(from.shadow).collect());
        return InboundRbac { stat_prefix, allow, shadow_deny };
    };
    let deny: Vec<Principal> = rules.deny.into_iter().chain(from.deny).collect();
    let allowed: Vec<Principal> = rules
        .allow
        .into_iter()
        .chain(rules.shadow.iter().cloned())
        .chain(from.allow)
        .chain(from.shadow.iter().cloned())
        .collect();
    let shadow_deny = policy(rules.shadow.into_iter().chain(from.shadow).collect());
    let allow = match (Principal::any_of(deny), allowed.is_empty()) {
        (_, true) => None,
        (None, false) => policy(allowed),
        (Some(denied), false) => {
            let allowed = Principal::any_of(allowed).into_iter();
            policy(vec![Principal::And(std::iter::once(Principal::Not(Box::new(denied))).chain(allowed).collect())])
        }
    };
    InboundRbac { stat_prefix, allow, shadow_deny }
}

pub struct MeshTrafficPermissionPlugin;

impl Plugin for MeshTrafficPermissionPlugin {
    fn name(&self) -> &'static str {
        "mesh-traffic-permission"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshTrafficPermission]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        if !cx.mesh.mtls_enabled() {
            return;
        }
        let t = ResourceType::MeshTrafficPermission;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let list = cx.policies.of(t);
        let net = &cx.dataplane.networking;
        for r in &mut out.inbounds {
            let Some(inbound) = net.inbound.get(r.index) else { continue };
            let from = from_rules(cx.policies, t, &matched, &inbound.tags, MergeOptions::NONE);
            // The `rules` of the policies selecting this inbound, in merge order.
            let rule_confs: Vec<&RuleConf> = matched
                .iter()
                .filter_map(|&i| list.get(i as usize))
                .filter_map(|p| p.spec.get::<MeshTrafficPermissionSpec>())
                .filter(|s| top_of(*s).selects_inbound(&inbound.tags))
                .flat_map(|s| s.rules.iter().map(|rule| &rule.default))
                .collect();
            if from.is_empty() && rule_confs.is_empty() {
                continue;
            }
            let rules = (!rule_confs.is_empty()).then(|| Outcomes::of_rules(&rule_confs));
            r.conf.rbac = Some(inbound_rbac(
                inbound_stat_prefix(inbound.effective_address(net), inbound.port),
                Outcomes::of_from(cx.mesh_name, &from),
                rules,
            ));
        }
    }
}

#[cfg(test)]
mod tests;
