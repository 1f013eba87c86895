//! Inbound: for each inbound interface, a listener on `<address>:<port>` that hands traffic
//! to the local application through the cluster `localhost:<servicePort>`.

use std::sync::Arc;

use super::envoy_builders::{self as b, join_host_port};
use super::{GenerateError, Generator, ProxyContext};
use crate::envoy::base::TrafficDirection;
use crate::xds::wire::EncodedResource;

pub struct InboundGenerator;

impl Generator for InboundGenerator {
    fn name(&self) -> &'static str {
        "inbound"
    }

    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError> {
        let name = &ctx.dataplane.meta.name;
        let version = (ctx.dataplane.meta.version, ctx.dataplane.meta.creation_time);
        let mut cache = ctx.mesh.inbound_cache.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((v, resources)) = cache.get(name) {
            if *v == version {
                out.extend(resources.iter().cloned());
                return Ok(());
            }
        }
        let mut mine = Vec::new();
        generate_inbounds(ctx, &mut mine);
        out.extend(mine.iter().cloned());
        cache.insert(name.clone(), (version, mine));
        Ok(())
    }
}

/// The listeners and local clusters of `ctx`'s inbounds, encoded.
fn generate_inbounds(ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) {
    {
        let net = &ctx.spec.networking;
        for inbound in &net.inbound {
            let address = inbound.effective_address(net);
            let service_port = inbound.effective_service_port();
            let cluster = format!("localhost:{service_port}");
            let protocol = inbound.protocol();
            out.push(b::local_cluster(&cluster, inbound.local_address(net), service_port, protocol));
            let stat_prefix = cluster.replace(':', "_");
            let filter = if protocol.is_http() {
                // Inbound requests have no route timeout: the caller's side enforces it.
                b::http_filter(&stat_prefix, &format!("inbound:{}", inbound.service()), &cluster, Some(std::time::Duration::ZERO))
            } else {
                b::tcp_proxy_filter(&stat_prefix, &cluster, None)
            };
            let name = format!("inbound:{}", join_host_port(address, inbound.port));
            out.push(b::listener(&name, address, inbound.port, TrafficDirection::INBOUND, filter));
        }
    }
}
