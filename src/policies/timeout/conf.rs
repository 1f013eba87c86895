//! The resolved timeouts: what Timeout (old-style, plus Kuma's fixed no-policy and inbound
//! values) and MeshTimeout decided for one cluster or listener, and how that shapes the
//! Envoy resource.
//!
//! Both policy generations write the same fields, Timeout first, MeshTimeout after it
//! replacing only what it sets; every field is "set this value" (`None`: leave Envoy's).
//! The protocol-dependent choices (which Envoy fields an HTTP, gRPC or TCP resource gets)
//! are made while resolving, so applying a conf needs nothing but the conf.

use std::collections::BTreeMap;
use std::time::Duration;

use protobuf::MessageField;

use crate::envoy::cluster::Cluster;
use crate::envoy::http_connection_manager::HttpConnectionManager;
use crate::envoy::http_protocol_options::http_protocol_options::ExplicitHttpConfig;
use crate::envoy::http_protocol_options::HttpProtocolOptions as UpstreamHttpProtocolOptions;
use crate::envoy::protocol::Http1ProtocolOptions;
use crate::envoy::tcp_proxy::TcpProxy;
use crate::envoy::{duration, from_any, to_any};

/// The key of a cluster's upstream HTTP options in `typed_extension_protocol_options`.
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

/// The timeouts of one cluster (an outbound one, or the local cluster of an inbound).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClusterTimeouts {
    /// `connect_timeout`.
    pub connect: Option<Duration>,
    /// Upstream `HttpProtocolOptions.common_http_protocol_options.idle_timeout`.
    pub http_idle: Option<Duration>,
    /// Upstream `common_http_protocol_options.max_stream_duration`.
    pub max_stream_duration: Option<Duration>,
    /// Upstream `common_http_protocol_options.max_connection_duration`.
    pub max_connection_duration: Option<Duration>,
}

/// The timeouts of one HTTP route's action.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RouteTimeouts {
    /// `timeout` (the request timeout; zero disables it).
    pub request: Option<Duration>,
    /// `idle_timeout` (the stream idle timeout of the route).
    pub idle: Option<Duration>,
}

/// The timeouts of one listener (outbound, or the inbound one of an inbound interface).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ListenerTimeouts {
    /// HCM `common_http_protocol_options.idle_timeout`.
    pub http_idle: Option<Duration>,
    /// HCM `stream_idle_timeout`.
    pub stream_idle: Option<Duration>,
    /// Every route, unless `by_route` names it.
    pub routes: RouteTimeouts,
    /// Routes with a conf of their own, by Envoy route name: a MeshHTTPRoute rule's hash,
    /// which MeshTimeout looks up as the subset `kuma.io/service` + `__rule-matches-hash__`.
    /// Only entries that differ from `routes`.
    pub by_route: BTreeMap<String, RouteTimeouts>,
    /// `tcp_proxy.idle_timeout`.
    pub tcp_idle: Option<Duration>,
}

/// An inbound's listener and local cluster.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundTimeouts {
    pub listener: ListenerTimeouts,
    pub cluster: ClusterTimeouts,
}

fn set(field: &mut MessageField<protobuf::well_known_types::duration::Duration>, value: Option<Duration>) {
    if let Some(d) = value {
        *field = MessageField::some(duration(d));
    }
}

/// Sets what `t` says on `cluster`. The upstream HTTP options keep what is there (HTTP/2
/// for http2 and gRPC clusters); a cluster without them states HTTP/1 explicitly, which
/// Envoy requires of `HttpProtocolOptions` (Kuma's HTTP clusters carry the same).
pub fn apply_to_cluster(t: &ClusterTimeouts, cluster: &mut Cluster) {
    set(&mut cluster.connect_timeout, t.connect);
    if t.http_idle.is_none() && t.max_stream_duration.is_none() && t.max_connection_duration.is_none() {
        return;
    }
    let mut opts: UpstreamHttpProtocolOptions = cluster
        .typed_extension_protocol_options
        .get(HTTP_PROTOCOL_OPTIONS)
        .and_then(|a| from_any(a).ok().flatten())
        .unwrap_or_default();
    if opts.upstream_protocol_options.is_none() {
        let mut explicit = ExplicitHttpConfig::new();
        explicit.set_http_protocol_options(Http1ProtocolOptions::new());
        opts.set_explicit_http_config(explicit);
    }
    let common = opts.common_http_protocol_options.mut_or_insert_default();
    set(&mut common.idle_timeout, t.http_idle);
    set(&mut common.max_stream_duration, t.max_stream_duration);
    set(&mut common.max_connection_duration, t.max_connection_duration);
    cluster.typed_extension_protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), to_any(&opts));
}

/// Sets what `t` says on a listener's HTTP connection manager (with its inline routes) or
/// TCP proxy, whichever it has.
pub fn apply_to_listener(t: &ListenerTimeouts, hcm: Option<&mut HttpConnectionManager>, tcp: Option<&mut TcpProxy>) {
    if let Some(hcm) = hcm {
        if t.http_idle.is_some() {
            set(&mut hcm.common_http_protocol_options.mut_or_insert_default().idle_timeout, t.http_idle);
        }
        set(&mut hcm.stream_idle_timeout, t.stream_idle);
        if hcm.has_route_config() {
            for vh in &mut hcm.mut_route_config().virtual_hosts {
                for route in &mut vh.routes {
                    if !route.has_route() {
                        continue;
                    }
                    let rt = t.by_route.get(&route.name).unwrap_or(&t.routes);
                    let action = route.mut_route();
                    set(&mut action.timeout, rt.request);
                    set(&mut action.idle_timeout, rt.idle);
                }
            }
        }
    }
    if let Some(tcp) = tcp {
        set(&mut tcp.idle_timeout, t.tcp_idle);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::protocol::Http2ProtocolOptions;

    fn upstream(cluster: &Cluster) -> UpstreamHttpProtocolOptions {
        from_any(&cluster.typed_extension_protocol_options[HTTP_PROTOCOL_OPTIONS]).unwrap().unwrap()
    }

    #[test]
    fn an_http1_cluster_gets_explicit_http1_with_its_idle_timeout() {
        let mut c = Cluster::new();
        let t = ClusterTimeouts {
            connect: Some(Duration::from_secs(3)),
            http_idle: Some(Duration::ZERO),
            ..Default::default()
        };
        apply_to_cluster(&t, &mut c);
        assert_eq!(c.connect_timeout.seconds, 3);
        let o = upstream(&c);
        assert!(o.explicit_http_config().has_http_protocol_options());
        assert!(o.common_http_protocol_options.idle_timeout.is_some());
        assert!(o.common_http_protocol_options.max_stream_duration.is_none());
    }

    #[test]
    fn an_http2_cluster_keeps_http2() {
        let mut c = Cluster::new();
        let mut explicit = ExplicitHttpConfig::new();
        explicit.set_http2_protocol_options(Http2ProtocolOptions::new());
        let mut o = UpstreamHttpProtocolOptions::new();
        o.set_explicit_http_config(explicit);
        c.typed_extension_protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), to_any(&o));
        let t = ClusterTimeouts { max_stream_duration: Some(Duration::from_secs(7)), ..Default::default() };
        apply_to_cluster(&t, &mut c);
        let o = upstream(&c);
        assert!(o.explicit_http_config().has_http2_protocol_options());
        assert_eq!(o.common_http_protocol_options.max_stream_duration.seconds, 7);
        assert!(c.connect_timeout.is_none(), "unset fields stay Envoy's");
    }

    #[test]
    fn a_cluster_without_http_timeouts_gets_no_http_options() {
        let mut c = Cluster::new();
        apply_to_cluster(&ClusterTimeouts { connect: Some(Duration::from_secs(1)), ..Default::default() }, &mut c);
        assert!(c.typed_extension_protocol_options.is_empty());
    }
}
