//! Outbound: for each outbound, a listener on `<address>:<port>` (127.0.0.1 by default)
//! forwarding to the service's cluster, plus that cluster and its endpoints — the same
//! encoded resources for every consumer of the service with the same settings. The
//! matching Timeout policy sets the cluster's connect timeout, the HTTP route timeout and
//! the TCP idle timeout (Kuma's old-style Timeout; defaults 5 s and 15 s).

use std::sync::Arc;

use super::envoy_builders::{self as b, join_host_port};
use super::{GenerateError, Generator, ProxyContext};
use crate::envoy::base::TrafficDirection;
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
            let address = outbound.effective_address();
            let filter = if service.protocol.is_http() {
                b::http_filter(&service.name, &format!("outbound:{}", service.name), &service.name, Some(timeouts.http_request))
            } else {
                b::tcp_proxy_filter(&service.name, &service.name, timeouts.tcp_idle)
            };
            let name = format!("outbound:{}", join_host_port(address, outbound.port));
            out.push(b::listener(&name, address, outbound.port, TrafficDirection::OUTBOUND, filter));
        }
        Ok(())
    }
}
