//! Outbound: for each outbound, a listener on `<address>:<port>` (127.0.0.1 by default)
//! forwarding to the service's cluster, plus that cluster and its endpoints — the same
//! encoded resources for every consumer of the service with the same settings. The
//! matching Timeout policy sets the cluster's connect timeout, the HTTP route timeout and
//! the TCP idle timeout (Kuma's old-style Timeout; defaults 5 s and 15 s).

use std::sync::Arc;

use super::{GenerateError, Generator, ProxyContext};
use crate::xds::wire::EncodedResource;

pub struct OutboundGenerator;

impl Generator for OutboundGenerator {
    fn name(&self) -> &'static str {
        "outbound"
    }

    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError> {
        for outbound in &ctx.spec.networking.outbound {
            let service = ctx.mesh.service(outbound.service());
            let timeouts = ctx.mesh.outbound_timeouts(ctx.spec, &service.name);
            out.push(service.cluster(timeouts.connect));
            out.push(service.load_assignment.clone());
            out.push(service.outbound_listener(outbound.effective_address(), outbound.port, timeouts));
        }
        Ok(())
    }
}
