//! TrafficPermission on the engine (reference §2.3): with mTLS on, every inbound gets the
//! network RBAC filter of the single TrafficPermission whose destinations best match it
//! (Kuma's `SelectInboundConnectionPolicy`; the less specific ones are ignored for that
//! inbound, sources play no part in the choice). Its sources become the principals; no
//! matching TrafficPermission leaves an ALLOW engine without policies, which denies every
//! connection. With mTLS off there is no RBAC filter at all: clients are anonymous, so
//! nothing could be enforced.
//!
//! This plugin also writes the filter for MeshTrafficPermission, which later in the plugin
//! list replaces the conf on the inbounds it selects (reference §4.4).

use super::api::TrafficPermissionSpec;
use super::rbac::{self, InboundRbac, Principal, RbacPolicy};
use crate::envoy::parts::InboundListener;
use crate::model::selector::{Selector, SERVICE_TAG, WILDCARD};
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_inbound;
use crate::policies::resolved::{InboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};
use crate::xds::generate::envoy_builders::join_host_port;

/// The clients one source selector names: `kuma://<tag>/<value>` for every other tag whose
/// value is not `*` (keys sorted), then `spiffe://<mesh>/<service>` unless the service is `*`.
fn source_principal(mesh: &str, source: &Selector) -> Principal {
    let mut ids: Vec<Principal> = source
        .match_
        .iter()
        .filter(|(k, v)| k.as_str() != SERVICE_TAG && v.as_str() != WILDCARD)
        .map(|(k, v)| Principal::tag(mesh, k, v))
        .collect();
    if let Some(service) = source.match_.get(SERVICE_TAG).filter(|s| s.as_str() != WILDCARD) {
        ids.push(Principal::service(mesh, service));
    }
    Principal::all_of(ids)
}

/// The stat prefix of the inbound listener on `address:port` (the generator names it
/// `inbound:<address>:<port>`).
pub fn inbound_stat_prefix(address: &str, port: u32) -> String {
    rbac::stat_prefix(&format!("inbound:{}", join_host_port(address, port)))
}

pub struct TrafficPermissionPlugin;

impl Plugin for TrafficPermissionPlugin {
    fn name(&self) -> &'static str {
        "traffic-permission"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::TrafficPermission]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        if !cx.mesh.mtls_enabled() {
            return;
        }
        let policies = cx.policies.of(ResourceType::TrafficPermission);
        let net = &cx.dataplane.networking;
        for r in &mut out.inbounds {
            let Some(inbound) = net.inbound.get(r.index) else { continue };
            let allow = select_inbound(policies, &inbound.tags).and_then(|p| {
                let spec = p.spec.get::<TrafficPermissionSpec>()?;
                let principals: Vec<Principal> =
                    spec.sources.iter().map(|s| source_principal(cx.mesh_name, s)).collect();
                // Validation requires a source; an empty list would be an invalid Envoy policy.
                (!principals.is_empty()).then(|| RbacPolicy { name: p.meta.name.clone(), principals })
            });
            r.conf.rbac = Some(InboundRbac {
                stat_prefix: inbound_stat_prefix(inbound.effective_address(net), inbound.port),
                allow,
                shadow_deny: None,
            });
        }
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        if let Some(rbac) = &conf.rbac {
            // First: no byte reaches another filter before the client is known to be allowed.
            listener.network_filters.insert(0, rbac::network_filter(rbac));
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
