//! Outbound: for each outbound, a listener on `<address>:<port>` (127.0.0.1 by default)
//! routing as the policies resolved, plus every cluster it routes to and that cluster's
//! endpoints. Consumers with the same outcome share the encoded listener and clusters.

use std::sync::Arc;

use super::envoy_builders::{self as b, OutboundKey};
use super::{GenerateError, Generator, ProxyContext};
use crate::xds::wire::EncodedResource;

pub struct OutboundGenerator;

impl Generator for OutboundGenerator {
    fn name(&self) -> &'static str {
        "outbound"
    }

    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError> {
        let encodings = &ctx.mesh.encodings;
        for cluster in &ctx.resolved.clusters {
            out.push(encodings.clusters.get_or_encode(cluster, b::outbound_cluster));
            out.push(ctx.mesh.service(&cluster.service).load_assignment_for(&cluster.name, &cluster.tags));
        }
        for o in &ctx.resolved.outbounds {
            let Some(outbound) = ctx.spec.networking.outbound.get(o.index) else { continue };
            let key = OutboundKey {
                address: outbound.effective_address().to_string(),
                port: outbound.port,
                service: o.service.clone(),
                routing: o.routing.clone(),
                conf: o.conf.clone(),
            };
            out.push(encodings.outbound_listeners.get_or_encode(&key, b::outbound_listener));
        }
        Ok(())
    }
}
