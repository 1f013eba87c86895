//! Timeout on the engine (reference §2.8).
//!
//! - Outbounds: the most specific Timeout whose sources match the dataplane and whose
//!   destinations match the outbound's service (Kuma's ranking) sets the listener's
//!   timeouts; each cluster gets the cluster timeouts of the first outbound routing to it,
//!   as Kuma builds a cluster once, with the Timeout of the outbound that brought it in.
//!   Without a Timeout Kuma's generator still writes its values: a 10 s connect timeout and
//!   0 s (disabled) for everything else. Outbounds routed by a MeshHTTPRoute or MeshTCPRoute
//!   are left alone, as Kuma's old generator skips them.
//! - Inbounds: policies never apply; every inbound gets Kuma's fixed `DefaultInboundTimeout`.
//!
//! The configure hooks apply the `timeouts` fields whoever wrote them: MeshTimeout, later
//! in the plugin list, overrides what it sets in the same fields.

use std::time::Duration;

use super::api::{TimeoutConf, TimeoutSpec};
use super::conf::{self, ClusterTimeouts, InboundTimeouts, ListenerTimeouts, RouteTimeouts};
use crate::envoy::cluster::Cluster;
use crate::envoy::parts::{InboundListener, OutboundListener};
use crate::model::dataplane::Protocol;
use crate::model::duration::ProtoDuration;
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{ClusterConf, InboundConf, OutboundConf, ResolvedOutbound, ResolvedProxy, RoutedBy};
use crate::policies::{Plugin, ResolveCx};

/// The connect timeout of outbound clusters no Timeout sets (Kuma's `DefaultConnectTimeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

// Kuma's `DefaultInboundTimeout` (pkg/defaults/mesh/timeout.go): twice the values of the
// `timeout-all` default policy, and no request timeout, since the caller's side enforces it.
const INBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const INBOUND_IDLE_TIMEOUT: Duration = Duration::from_secs(7200);
const INBOUND_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const INBOUND_REQUEST_TIMEOUT: Duration = Duration::ZERO;

/// Whether a targetRef route decided the outbound's routing: old-style plugins skip it.
pub(crate) fn routed_by_targetref(o: &ResolvedOutbound) -> bool {
    matches!(o.routed_by, RoutedBy::MeshHttpRoute | RoutedBy::MeshTcpRoute)
}

/// A Timeout value, or Kuma's zero (disabled) when unset.
fn or_zero(d: Option<ProtoDuration>) -> Option<Duration> {
    Some(d.map_or(Duration::ZERO, |d| d.0))
}

/// An outbound listener's timeouts under `conf` (`None`: no Timeout matched).
fn listener_timeouts(conf: Option<&TimeoutConf>, protocol: Protocol) -> ListenerTimeouts {
    if !protocol.is_http() {
        return ListenerTimeouts {
            tcp_idle: or_zero(conf.and_then(|c| c.tcp.as_ref()).and_then(|t| t.idle_timeout)),
            ..ListenerTimeouts::default()
        };
    }
    let http = conf.and_then(|c| c.http.as_ref());
    let mut stream_idle = http.and_then(|h| h.stream_idle_timeout);
    if protocol == Protocol::Grpc && stream_idle.is_none() {
        // The deprecated `grpc` section still counts for gRPC when `http` does not say.
        stream_idle = conf.and_then(|c| c.grpc.as_ref()).and_then(|g| g.stream_idle_timeout);
    }
    ListenerTimeouts {
        http_idle: or_zero(http.and_then(|h| h.idle_timeout)),
        stream_idle: or_zero(stream_idle),
        routes: RouteTimeouts { request: or_zero(http.and_then(|h| h.request_timeout)), idle: None },
        ..ListenerTimeouts::default()
    }
}

/// An outbound cluster's timeouts under `conf` (`None`: no Timeout matched).
fn cluster_timeouts(conf: Option<&TimeoutConf>, protocol: Protocol) -> ClusterTimeouts {
    let connect = conf.and_then(|c| c.connect_timeout).map_or(DEFAULT_CONNECT_TIMEOUT, |d| d.0);
    let mut out = ClusterTimeouts { connect: Some(connect), ..ClusterTimeouts::default() };
    if protocol.is_http() {
        let http = conf.and_then(|c| c.http.as_ref());
        out.http_idle = or_zero(http.and_then(|h| h.idle_timeout));
        // Only a non-zero max stream duration is set; gRPC falls back to the deprecated section.
        let nonzero = |d: Option<ProtoDuration>| d.map(|d| d.0).filter(|d| !d.is_zero());
        out.max_stream_duration = nonzero(http.and_then(|h| h.max_stream_duration)).or_else(|| {
            (protocol == Protocol::Grpc)
                .then(|| nonzero(conf.and_then(|c| c.grpc.as_ref()).and_then(|g| g.max_stream_duration)))
                .flatten()
        });
    }
    out
}

/// Kuma's fixed inbound timeouts for an inbound of `protocol`.
fn inbound_timeouts(protocol: Protocol) -> InboundTimeouts {
    let listener = if protocol.is_http() {
        ListenerTimeouts {
            http_idle: Some(INBOUND_IDLE_TIMEOUT),
            stream_idle: Some(INBOUND_STREAM_IDLE_TIMEOUT),
            routes: RouteTimeouts { request: Some(INBOUND_REQUEST_TIMEOUT), idle: None },
            ..ListenerTimeouts::default()
        }
    } else {
        ListenerTimeouts { tcp_idle: Some(INBOUND_IDLE_TIMEOUT), ..ListenerTimeouts::default() }
    };
    let cluster = ClusterTimeouts {
        connect: Some(INBOUND_CONNECT_TIMEOUT),
        http_idle: protocol.is_http().then_some(INBOUND_IDLE_TIMEOUT),
        ..ClusterTimeouts::default()
    };
    InboundTimeouts { listener, cluster }
}

pub struct TimeoutPlugin;

impl Plugin for TimeoutPlugin {
    fn name(&self) -> &'static str {
        "timeout"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::Timeout]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::Timeout);
        let conf_of = |service: &str| {
            select_outbound(policies, cx.dataplane, service).and_then(|p| p.spec.get::<TimeoutSpec>()).map(|s| &s.conf)
        };
        // Cluster name → the Timeout of the first outbound routing to it.
        let mut first_use: Vec<(String, Option<&TimeoutConf>)> = Vec::new();
        for o in &mut out.outbounds {
            if routed_by_targetref(o) {
                continue;
            }
            let conf = conf_of(&o.service);
            o.conf.timeouts = listener_timeouts(conf, o.protocol);
            for name in o.routing.cluster_names() {
                if !first_use.iter().any(|(n, _)| n == name) {
                    first_use.push((name.to_string(), conf));
                }
            }
        }
        for c in &mut out.clusters {
            if let Some((_, conf)) = first_use.iter().find(|(n, _)| *n == c.name) {
                c.conf.timeouts = cluster_timeouts(*conf, c.protocol);
            }
        }
        for i in &mut out.inbounds {
            if let Some(inbound) = cx.dataplane.networking.inbound.get(i.index) {
                i.conf.timeouts = inbound_timeouts(inbound.protocol());
            }
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        conf::apply_to_cluster(&conf.timeouts, cluster);
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        conf::apply_to_listener(&conf.timeouts, listener.hcm.as_mut(), listener.tcp.as_mut());
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        conf::apply_to_listener(&conf.timeouts.listener, listener.hcm.as_mut(), listener.tcp.as_mut());
        conf::apply_to_cluster(&conf.timeouts.cluster, &mut listener.local_cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::resolved::{Routing, WeightedCluster};
    use crate::policies::timeout::testing::{check_golden, resolve, Fixture};

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn golden_every_field_on_http_grpc_and_tcp_outbounds() {
        check_golden("src/policies/timeout/testdata", "all-fields", "web-1");
    }

    #[test]
    fn golden_no_policy_gives_kumas_values() {
        check_golden("src/policies/timeout/testdata", "no-policy", "web-1");
    }

    const TWO_SERVICES: &str = r#"
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
    - port: 8080
      tags: {kuma.io/service: web, kuma.io/protocol: grpc}
  outbound:
    - port: 10001
      tags: {kuma.io/service: api}
    - port: 10002
      tags: {kuma.io/service: db}
---
type: Dataplane
mesh: default
name: api-1
networking:
  address: 10.0.0.2
  inbound:
    - port: 80
      tags: {kuma.io/service: api, kuma.io/protocol: grpc}
---
type: Dataplane
mesh: default
name: db-1
networking:
  address: 10.0.0.3
  inbound:
    - port: 5432
      tags: {kuma.io/service: db}
"#;

    fn with(policies: &str) -> String {
        format!("{TWO_SERVICES}---\n{policies}")
    }

    #[test]
    fn grpc_falls_back_to_the_deprecated_grpc_section_only_where_http_is_silent() {
        let p = with(
            r#"
type: Timeout
mesh: default
name: t
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf:
  http: {idleTimeout: 5s, maxStreamDuration: 0s}
  grpc: {streamIdleTimeout: 6s, maxStreamDuration: 7s}
"#,
        );
        let r = resolve(&p, "web-1");
        let api = &r.outbounds[0].conf.timeouts;
        assert_eq!((api.http_idle, api.stream_idle), (s(5), s(6)));
        assert_eq!(api.routes.request, s(0), "no requestTimeout: disabled");
        let cluster = &r.clusters[0].conf.timeouts;
        assert_eq!(cluster.max_stream_duration, s(7), "a zero http value does not count");
        assert_eq!(cluster.connect, s(10), "no connectTimeout: Kuma's default");
        // The TCP outbound gets only the TCP proxy's idle timeout.
        let db = &r.outbounds[1].conf.timeouts;
        assert_eq!(db, &ListenerTimeouts { tcp_idle: s(0), ..Default::default() });
        assert_eq!(r.clusters[1].conf.timeouts, ClusterTimeouts { connect: s(10), ..Default::default() });
    }

    #[test]
    fn inbounds_get_the_fixed_defaults_whatever_the_policies() {
        let p = with(
            r#"
type: Timeout
mesh: default
name: t
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf: {connectTimeout: 1s, http: {requestTimeout: 1s}}
"#,
        );
        let r = resolve(&p, "web-1");
        let t = &r.inbounds[0].conf.timeouts;
        assert_eq!(t.cluster, ClusterTimeouts { connect: s(10), http_idle: s(7200), ..Default::default() });
        assert_eq!((t.listener.http_idle, t.listener.stream_idle, t.listener.routes.request), (s(7200), s(3600), s(0)));
        let db = resolve(&p, "db-1");
        assert_eq!(db.inbounds[0].conf.timeouts.listener, ListenerTimeouts { tcp_idle: s(7200), ..Default::default() });
    }

    #[test]
    fn outbounds_routed_by_a_targetref_route_are_left_alone() {
        let p = with(
            r#"
type: Timeout
mesh: default
name: t
sources: [{match: {kuma.io/service: '*'}}]
destinations: [{match: {kuma.io/service: '*'}}]
conf: {connectTimeout: 1s}
"#,
        );
        let f = Fixture::new(&p);
        let mut r = f.resolve("web-1");
        assert_eq!(r.clusters[0].conf.timeouts.connect, s(1));
        // As if a MeshHTTPRoute had routed the outbound to `api`: the old generator skips it.
        r.outbounds[0].routed_by = RoutedBy::MeshHttpRoute;
        r.outbounds[0].conf = OutboundConf::default();
        for c in &mut r.clusters {
            c.conf = ClusterConf::default();
        }
        f.rerun("web-1", &TimeoutPlugin, &mut r);
        assert_eq!(r.outbounds[0].conf.timeouts, ListenerTimeouts::default());
        assert_eq!(r.clusters[0].conf.timeouts, ClusterTimeouts::default(), "nor its cluster");
        assert_eq!(r.clusters[1].conf.timeouts.connect, s(1), "the other outbound's cluster is set");
        // A cluster that an outbound the old generator handles also routes to is set.
        r.outbounds[1].routing = Routing::Tcp {
            clusters: vec![
                WeightedCluster { name: "api".into(), weight: 1 },
                WeightedCluster { name: "db".into(), weight: 1 },
            ],
        };
        f.rerun("web-1", &TimeoutPlugin, &mut r);
        assert_eq!(r.clusters[0].conf.timeouts.connect, s(1));
    }
}
