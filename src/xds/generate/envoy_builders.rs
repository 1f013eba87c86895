//! Small builders for the Envoy objects higuma generates, so generators read as "an inbound
//! listener with an HTTP filter chain" rather than as nested struct literals.
//!
//! Only ordered collections go into messages (no multi-entry maps), which keeps the encoded
//! bytes, and so the versions, deterministic.

use std::sync::Arc;
use std::time::Duration;

use protobuf::{EnumOrUnknown, MessageField};

use crate::envoy::{duration, to_any as any};

use crate::envoy::address::{Address, SocketAddress};
use crate::envoy::cluster::cluster::{DiscoveryType, EdsClusterConfig};
use crate::envoy::cluster::Cluster;
use crate::envoy::config_source::{AggregatedConfigSource, ApiVersion, ConfigSource};
use crate::envoy::endpoint::ClusterLoadAssignment;
use crate::envoy::endpoint_components::{Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints};
use crate::envoy::http_connection_manager::{HttpConnectionManager, HttpFilter};
use crate::envoy::http_protocol_options::http_protocol_options::ExplicitHttpConfig;
use crate::envoy::http_protocol_options::HttpProtocolOptions;
use crate::envoy::listener::Listener;
use crate::envoy::listener_components::{Filter, FilterChain};
use crate::envoy::protocol::Http2ProtocolOptions;
use crate::envoy::route::RouteConfiguration;
use crate::envoy::route_components::{Route, RouteAction, RouteMatch, VirtualHost};
use crate::envoy::router::Router;
use crate::envoy::tcp_proxy::TcpProxy;
use crate::model::dataplane::Protocol;
use crate::xds::context::Endpoint;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::wire::EncodedResource;

/// Kuma's default connect timeout for outbound clusters (`timeout-all`: 5 s).
pub const OUTBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Kuma's inbound default (`DefaultInboundTimeout`): twice the outbound one.
pub const INBOUND_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kuma's default HTTP request timeout on outbound routes (`timeout-all`: 15 s).
pub const OUTBOUND_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

pub fn socket_address(address: &str, port: u32) -> Address {
    let mut sa = SocketAddress::new();
    sa.address = address.to_string();
    sa.set_port_value(port);
    let mut a = Address::new();
    a.set_socket_address(sa);
    a
}

fn ads_config_source() -> ConfigSource {
    let mut cs = ConfigSource::new();
    cs.set_ads(AggregatedConfigSource::new());
    cs.resource_api_version = EnumOrUnknown::new(ApiVersion::V3);
    cs
}

/// Upstream HTTP/2 for protocols that need it end to end (http2, gRPC).
fn set_http2(cluster: &mut Cluster) {
    let mut explicit = ExplicitHttpConfig::new();
    explicit.set_http2_protocol_options(Http2ProtocolOptions::new());
    let mut opts = HttpProtocolOptions::new();
    opts.set_explicit_http_config(explicit);
    cluster.typed_extension_protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), any(&opts));
}

/// The cluster every consumer of `service` uses: endpoints come over EDS.
pub fn eds_cluster(service: &str, protocol: Protocol, connect_timeout: Duration) -> Arc<EncodedResource> {
    let mut c = Cluster::new();
    c.name = service.to_string();
    c.set_type(DiscoveryType::EDS);
    let mut eds = EdsClusterConfig::new();
    eds.eds_config = MessageField::some(ads_config_source());
    c.eds_cluster_config = MessageField::some(eds);
    c.connect_timeout = MessageField::some(duration(connect_timeout));
    if matches!(protocol, Protocol::Http2 | Protocol::Grpc) {
        set_http2(&mut c);
    }
    EncodedResource::encode(ResourceKind::Cluster, service, &c)
}

/// The endpoints of `service`: one per ready inbound of every dataplane providing it.
pub fn load_assignment(service: &str, endpoints: &[Endpoint]) -> Arc<EncodedResource> {
    EncodedResource::encode(ResourceKind::Endpoint, service, &cla(service, endpoints.iter().map(|e| (e.address.as_str(), e.port))))
}

fn cla<'a>(name: &str, endpoints: impl Iterator<Item = (&'a str, u32)>) -> ClusterLoadAssignment {
    let mut locality = LocalityLbEndpoints::new();
    for (address, port) in endpoints {
        let mut ep = EnvoyEndpoint::new();
        ep.address = MessageField::some(socket_address(address, port));
        let mut lb = LbEndpoint::new();
        lb.set_endpoint(ep);
        locality.lb_endpoints.push(lb);
    }
    let mut cla = ClusterLoadAssignment::new();
    cla.cluster_name = name.to_string();
    if !locality.lb_endpoints.is_empty() {
        cla.endpoints.push(locality);
    }
    cla
}

/// The cluster of a local application behind an inbound (`localhost:<servicePort>`).
pub fn local_cluster(name: &str, address: &str, port: u32, protocol: Protocol) -> Arc<EncodedResource> {
    let mut c = Cluster::new();
    c.name = name.to_string();
    c.alt_stat_name = name.replace(':', "_");
    c.set_type(DiscoveryType::STATIC);
    c.connect_timeout = MessageField::some(duration(INBOUND_CONNECT_TIMEOUT));
    c.load_assignment = MessageField::some(cla(name, std::iter::once((address, port))));
    if matches!(protocol, Protocol::Http2 | Protocol::Grpc) {
        set_http2(&mut c);
    }
    EncodedResource::encode(ResourceKind::Cluster, name, &c)
}

pub fn tcp_proxy_filter(stat_prefix: &str, cluster: &str, idle_timeout: Option<Duration>) -> Filter {
    let mut tcp = TcpProxy::new();
    tcp.stat_prefix = stat_prefix.to_string();
    tcp.set_cluster(cluster.to_string());
    if let Some(t) = idle_timeout {
        tcp.idle_timeout = MessageField::some(duration(t));
    }
    let mut f = Filter::new();
    f.name = "envoy.filters.network.tcp_proxy".to_string();
    f.set_typed_config(any(&tcp));
    f
}

/// An HTTP connection manager routing everything to `cluster` through an inline route
/// config named `route_name` (Kuma inlines routes; there is no RDS).
pub fn http_filter(stat_prefix: &str, route_name: &str, cluster: &str, timeout: Option<Duration>) -> Filter {
    let mut action = RouteAction::new();
    action.set_cluster(cluster.to_string());
    if let Some(t) = timeout {
        action.timeout = MessageField::some(duration(t));
    }
    let mut m = RouteMatch::new();
    m.set_prefix("/".to_string());
    let mut route = Route::new();
    route.match_ = MessageField::some(m);
    route.set_route(action);
    let mut vh = VirtualHost::new();
    vh.name = cluster.to_string();
    vh.domains.push("*".to_string());
    vh.routes.push(route);
    let mut rc = RouteConfiguration::new();
    rc.name = route_name.to_string();
    rc.virtual_hosts.push(vh);

    let mut router = HttpFilter::new();
    router.name = "envoy.filters.http.router".to_string();
    router.set_typed_config(any(&Router::new()));

    let mut hcm = HttpConnectionManager::new();
    hcm.stat_prefix = stat_prefix.to_string();
    hcm.set_route_config(rc);
    hcm.http_filters.push(router);
    let mut f = Filter::new();
    f.name = "envoy.filters.network.http_connection_manager".to_string();
    f.set_typed_config(any(&hcm));
    f
}

pub fn listener(
    name: &str,
    address: &str,
    port: u32,
    direction: crate::envoy::base::TrafficDirection,
    filter: Filter,
) -> Arc<EncodedResource> {
    let mut chain = FilterChain::new();
    chain.filters.push(filter);
    let mut l = Listener::new();
    l.name = name.to_string();
    l.address = MessageField::some(socket_address(address, port));
    l.traffic_direction = EnumOrUnknown::new(direction);
    l.filter_chains.push(chain);
    EncodedResource::encode(ResourceKind::Listener, name, &l)
}

/// `host:port` as Envoy names (IPv6 bracketed, as Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u32) -> String {
    if host.contains(':') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}
