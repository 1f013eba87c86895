//! Inbound: for each inbound interface, a listener on `<address>:<port>` that hands traffic
//! to the local application through the cluster `localhost:<servicePort>`, both shaped by
//! the inbound policies resolved for it.

use std::sync::Arc;

use super::envoy_builders::{self as b, InboundKey};
use super::{GenerateError, Generator, ProxyContext};
use crate::xds::wire::EncodedResource;

pub struct InboundGenerator;

impl Generator for InboundGenerator {
    fn name(&self) -> &'static str {
        "inbound"
    }

    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError> {
        let net = &ctx.spec.networking;
        let encodings = &ctx.mesh.encodings;
        for resolved in &ctx.resolved.inbounds {
            let Some(inbound) = net.inbound.get(resolved.index) else { continue };
            let key = InboundKey {
                address: inbound.effective_address(net).to_string(),
                port: inbound.port,
                service: inbound.service().to_string(),
                protocol: inbound.protocol(),
                local_address: inbound.local_address(net).to_string(),
                service_port: inbound.effective_service_port(),
                conf: resolved.conf.clone(),
            };
            out.push(encodings.local_clusters.get_or_encode(&key, b::inbound_cluster));
            out.push(encodings.inbound_listeners.get_or_encode(&key, b::inbound_listener));
        }
        Ok(())
    }
}
