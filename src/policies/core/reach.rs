//! Which dataplanes a policy can affect: the ones it can select, narrowed to those that
//! reach a destination it names. A policy write regenerates only these (old and new
//! version), so a MeshTimeout on one service costs that service's consumers, not the mesh.
//!
//! Conservative by construction: anything not understood affects every selected dataplane.

use super::matching;
use super::oldstyle;
use super::set::PolicySet;
use super::targetref::TargetKind;
use crate::model::dataplane::DataplaneSpec;
use crate::model::{Resource, ResourceType};

/// Whether `policy` can change the config of `dp`. `consumes(service)` tells whether the
/// dataplane has a cluster of that service (an outbound to it, or a route that sends an
/// outbound's traffic there).
pub fn affects(set: &PolicySet, policy: &Resource, dp: &DataplaneSpec, consumes: &dyn Fn(&str) -> bool) -> bool {
    if let Some(p) = policy.spec.old_style() {
        if p.attaches_inbound() {
            return dp.tags_of_inbounds().any(|t| p.destinations().iter().any(|d| d.matches(t)));
        }
        if !oldstyle::sources_match(p, dp) {
            return false;
        }
        return match oldstyle::destination_services(p.destinations()) {
            None => true,
            Some(services) => services.iter().any(|s| consumes(s)),
        };
    }
    if let Some(p) = policy.spec.target_ref() {
        if !matching::selects(set, policy, dp) {
            return false;
        }
        // A MeshHTTPRoute routes every HTTP outbound of the dataplanes it selects (catch-all
        // to their own service), not only the services its `to` names.
        if policy.rtype() == ResourceType::MeshHttpRoute {
            return true;
        }
        if !p.inbound_items().is_empty() {
            return true;
        }
        let to = p.outbound_items();
        if to.is_empty() {
            return true;
        }
        return to.iter().any(|item| match item.target_ref.kind() {
            TargetKind::MeshService | TargetKind::MeshServiceSubset => consumes(item.target_ref.name()),
            _ => true,
        });
    }
    // Not a policy (or one the engine does not know): assume it matters.
    true
}

/// The services `policy`'s reach is confined to: `Some(services)` when [`affects`] can be
/// true only for a dataplane that consumes one of them (so the consumers index names every
/// candidate and a write need not visit the whole mesh), `None` when it may reach others.
/// Mirrors `affects` branch by branch; anything else is `None`.
pub fn consumed_services(policy: &Resource) -> Option<Vec<String>> {
    if let Some(p) = policy.spec.old_style() {
        if p.attaches_inbound() {
            return None;
        }
        return oldstyle::destination_services(p.destinations());
    }
    let p = policy.spec.target_ref()?;
    if policy.rtype() == ResourceType::MeshHttpRoute || !p.inbound_items().is_empty() {
        return None;
    }
    let to = p.outbound_items();
    if to.is_empty() {
        return None;
    }
    to.iter()
        .map(|item| match item.target_ref.kind() {
            TargetKind::MeshService | TargetKind::MeshServiceSubset => Some(item.target_ref.name().to_string()),
            _ => None,
        })
        .collect()
}
