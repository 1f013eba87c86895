//! Outbound: for each outbound, a listener on `<address>:<port>` (127.0.0.1 by default)
//! forwarding to the service's cluster, plus that cluster and its endpoints — the same
//! encoded resources for every consumer of the service.

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
            out.push(service.cluster.clone());
            out.push(service.load_assignment.clone());
            let address = outbound.effective_address();
            let filter = if service.protocol.is_http() {
                b::http_filter(&service.name, &format!("outbound:{}", service.name), &service.name, Some(b::OUTBOUND_REQUEST_TIMEOUT))
            } else {
                b::tcp_proxy_filter(&service.name, &service.name)
            };
            let name = format!("outbound:{}", join_host_port(address, outbound.port));
            out.push(b::listener(&name, address, outbound.port, TrafficDirection::OUTBOUND, filter));
        }
        Ok(())
    }
}
