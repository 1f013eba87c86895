//! Timeout on the engine: the most specific Timeout whose sources match the dataplane and
//! whose destinations match an outbound's service (Kuma's ranking) sets that outbound's
//! timeouts; without one, Kuma's `timeout-all` values apply.

use std::time::Duration;

use protobuf::MessageField;

use super::api::TimeoutSpec;
use crate::envoy::cluster::Cluster;
use crate::envoy::duration;
use crate::envoy::parts::OutboundListener;
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{ClusterConf, OutboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

/// Kuma's default connect timeout for outbound clusters (`timeout-all`: 5 s).
pub const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kuma's default HTTP request timeout on outbound routes (`timeout-all`: 15 s).
pub const OUTBOUND_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The timeouts one consumer uses towards one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutboundTimeouts {
    pub connect: Duration,
    pub http_request: Duration,
    pub tcp_idle: Option<Duration>,
}

impl Default for OutboundTimeouts {
    fn default() -> Self {
        OutboundTimeouts { connect: OUTBOUND_CONNECT_TIMEOUT, http_request: OUTBOUND_REQUEST_TIMEOUT, tcp_idle: None }
    }
}

impl OutboundTimeouts {
    fn of(t: &TimeoutSpec) -> OutboundTimeouts {
        let d = OutboundTimeouts::default();
        let conf = &t.conf;
        OutboundTimeouts {
            connect: conf.connect_timeout.map(|c| c.0).unwrap_or(d.connect),
            http_request: conf.http.as_ref().and_then(|h| h.request_timeout).map(|c| c.0).unwrap_or(d.http_request),
            tcp_idle: conf.tcp.as_ref().and_then(|t| t.idle_timeout).map(|c| c.0),
        }
    }
}

pub struct TimeoutPlugin;

impl TimeoutPlugin {
    fn for_service(cx: &ResolveCx<'_>, service: &str) -> OutboundTimeouts {
        let policies = cx.policies.of(ResourceType::Timeout);
        select_outbound(policies, cx.dataplane, service)
            .and_then(|p| p.spec.get::<TimeoutSpec>())
            .map(OutboundTimeouts::of)
            .unwrap_or_default()
    }
}

impl Plugin for TimeoutPlugin {
    fn name(&self) -> &'static str {
        "timeout"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::Timeout]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        for o in out.outbounds.iter_mut().filter(|o| o.old_style_applies()) {
            o.conf.timeouts = Self::for_service(cx, &o.service);
        }
        let old_style = out.old_style_clusters();
        for c in out.clusters.iter_mut().filter(|c| old_style.contains(&c.name)) {
            c.conf.timeouts = Self::for_service(cx, &c.service);
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        cluster.connect_timeout = MessageField::some(duration(conf.timeouts.connect));
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        let t = &conf.timeouts;
        if let Some(hcm) = listener.hcm.as_mut() {
            if hcm.has_route_config() {
                for vh in &mut hcm.mut_route_config().virtual_hosts {
                    for route in &mut vh.routes {
                        if route.has_route() {
                            route.mut_route().timeout = MessageField::some(duration(t.http_request));
                        }
                    }
                }
            }
        }
        if let (Some(tcp), Some(idle)) = (listener.tcp.as_mut(), t.tcp_idle) {
            tcp.idle_timeout = MessageField::some(duration(idle));
        }
    }
}
