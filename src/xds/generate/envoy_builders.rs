//! Builders for the Envoy objects higuma generates, so generators read as "an inbound
//! listener with an HTTP filter chain" rather than as nested struct literals, and the cache
//! keys that say what each encoded resource is built from.
//!
//! Only ordered collections go into messages (no multi-entry maps), which keeps the encoded
//! bytes, and so the versions, deterministic.

use std::sync::Arc;

use protobuf::{EnumOrUnknown, MessageField};

use crate::envoy::address::{Address, SocketAddress};
use crate::envoy::base::{HeaderValue as EnvoyHeaderValue, HeaderValueOption};
use crate::envoy::cluster::cluster::{DiscoveryType, EdsClusterConfig};
use crate::envoy::cluster::Cluster;
use crate::envoy::config_source::{AggregatedConfigSource, ApiVersion, ConfigSource};
use crate::envoy::endpoint::ClusterLoadAssignment;
use crate::envoy::endpoint_components::{Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints};
use crate::envoy::http_connection_manager::{HttpConnectionManager, HttpFilter};
use crate::envoy::http_protocol_options::http_protocol_options::ExplicitHttpConfig;
use crate::envoy::http_protocol_options::HttpProtocolOptions;
use crate::envoy::listener::Listener;
use crate::envoy::listener_components::{Filter, FilterChain, FilterChainMatch, ListenerFilter};
use crate::envoy::parts::{InboundListener, InboundTransport, OutboundListener};
use crate::envoy::protocol::Http2ProtocolOptions;
use crate::envoy::regex::{regex_matcher::GoogleRE2, RegexMatchAndSubstitute, RegexMatcher};
use crate::envoy::route::RouteConfiguration;
use crate::envoy::route_components::{
    redirect_action::RedirectResponseCode, route_action::RequestMirrorPolicy, weighted_cluster::ClusterWeight,
    HeaderMatcher as EnvoyHeaderMatcher, QueryParameterMatcher, RedirectAction, Route, RouteAction, RouteMatch,
    VirtualHost, WeightedCluster as EnvoyWeightedCluster,
};
use crate::envoy::router::Router;
use crate::envoy::string::StringMatcher;
use crate::envoy::tcp_proxy::{tcp_proxy::weighted_cluster::ClusterWeight as TcpClusterWeight, TcpProxy};
use crate::envoy::to_any as any;
use crate::model::dataplane::Protocol;
use crate::policies::resolved::{
    HeaderMatcher, HeaderValue, HostRewrite, HttpAction, HttpRoute, InboundConf, OutboundConf, PathMatch,
    ResolvedCluster, Routing, StringMatch, WeightedCluster,
};
use crate::policies::PLUGINS;
use crate::xds::context::Endpoint;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::wire::EncodedResource;

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

/// Upstream HTTP/2 for protocols that need it end to end (http2, gRPC), and for every
/// cluster under mesh TLS.
pub fn set_http2(cluster: &mut Cluster) {
    let mut explicit = ExplicitHttpConfig::new();
    explicit.set_http2_protocol_options(Http2ProtocolOptions::new());
    let mut opts = HttpProtocolOptions::new();
    opts.set_explicit_http_config(explicit);
    cluster.typed_extension_protocol_options.insert(HTTP_PROTOCOL_OPTIONS.to_string(), any(&opts));
}

/// An outbound cluster: endpoints over EDS, shaped by every plugin's conf.
pub fn outbound_cluster(c: &ResolvedCluster) -> Arc<EncodedResource> {
    let mut cluster = Cluster::new();
    cluster.name = c.name.clone();
    cluster.set_type(DiscoveryType::EDS);
    let mut eds = EdsClusterConfig::new();
    eds.eds_config = MessageField::some(ads_config_source());
    cluster.eds_cluster_config = MessageField::some(eds);
    if matches!(c.protocol, Protocol::Http2 | Protocol::Grpc) {
        set_http2(&mut cluster);
    }
    for plugin in PLUGINS {
        plugin.configure_cluster(&c.conf, &mut cluster);
    }
    EncodedResource::encode(ResourceKind::Cluster, c.name.as_str(), &cluster)
}

/// The endpoints of cluster `name`: one per ready inbound of every dataplane providing it.
pub fn load_assignment(name: &str, endpoints: &[Endpoint]) -> Arc<EncodedResource> {
    EncodedResource::encode(
        ResourceKind::Endpoint,
        name,
        &cla(name, endpoints.iter().map(|e| (e.address.as_str(), e.port))),
    )
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

/// Everything an outbound listener is built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OutboundKey {
    pub address: String,
    pub port: u32,
    pub service: String,
    pub routing: Routing,
    pub conf: OutboundConf,
}

/// The outbound listener on `address:port`, routing as resolved.
pub fn outbound_listener(k: &OutboundKey) -> Arc<EncodedResource> {
    let mut parts = OutboundListener::default();
    match &k.routing {
        Routing::Http { routes } => {
            parts.hcm = Some(hcm(
                &k.service,
                &format!("outbound:{}", k.service),
                &k.service,
                routes.iter().map(route).collect(),
            ));
        }
        Routing::Tcp { clusters } => parts.tcp = Some(tcp_proxy(&k.service, clusters)),
    }
    for plugin in PLUGINS {
        plugin.configure_outbound(&k.conf, &mut parts);
    }
    let name = format!("outbound:{}", join_host_port(&k.address, k.port));
    listener(
        &name,
        &k.address,
        k.port,
        crate::envoy::base::TrafficDirection::OUTBOUND,
        vec![chain(vec![filter_of(&parts.hcm, &parts.tcp)])],
        Vec::new(),
    )
}

/// Everything an inbound listener and its local cluster are built from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InboundKey {
    pub address: String,
    pub port: u32,
    pub service: String,
    pub protocol: Protocol,
    pub local_address: String,
    pub service_port: u32,
    pub conf: InboundConf,
}

impl InboundKey {
    pub fn cluster_name(&self) -> String {
        format!("localhost:{}", self.service_port)
    }

    fn parts(&self) -> InboundListener {
        let cluster = self.cluster_name();
        let stat_prefix = cluster.replace(':', "_");
        let mut parts = InboundListener {
            protocol: Some(self.protocol),
            local_cluster: local_cluster(&cluster, &self.local_address, self.service_port, self.protocol),
            ..InboundListener::default()
        };
        if self.protocol.is_http() {
            let r = route(&HttpRoute::catch_all(vec![WeightedCluster { name: cluster.clone(), weight: 100 }]));
            parts.hcm = Some(hcm(&stat_prefix, &format!("inbound:{}", self.service), &cluster, vec![r]));
        } else {
            parts.tcp = Some(tcp_proxy(&stat_prefix, &[WeightedCluster { name: cluster, weight: 100 }]));
        }
        for plugin in PLUGINS {
            plugin.configure_inbound(&self.conf, &mut parts);
        }
        parts
    }
}

pub fn inbound_listener(k: &InboundKey) -> Arc<EncodedResource> {
    let parts = k.parts();
    let name = format!("inbound:{}", join_host_port(&k.address, k.port));
    let mut filters = parts.network_filters;
    filters.push(filter_of(&parts.hcm, &parts.tcp));
    let (chains, listener_filters) = inbound_chains(filters, parts.transport);
    listener(&name, &k.address, k.port, crate::envoy::base::TrafficDirection::INBOUND, chains, listener_filters)
}

const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// An inbound's filter chains and listener filters by its transport (reference §1.5):
/// plaintext, STRICT (one chain with the TLS context), or PERMISSIVE (the TLS inspector and
/// three chains: plaintext, the application's own TLS passed through, and mesh TLS told
/// apart by ALPN `kuma`). Every chain carries the same filters.
fn inbound_chains(filters: Vec<Filter>, transport: InboundTransport) -> (Vec<FilterChain>, Vec<ListenerFilter>) {
    use crate::policies::mtls::conf::{transport_socket, KUMA_ALPN};
    let matching = |transport: &str, alpn: &[&str]| {
        let mut m = FilterChainMatch::new();
        m.transport_protocol = transport.to_string();
        m.application_protocols = alpn.iter().map(|s| s.to_string()).collect();
        MessageField::some(m)
    };
    match transport {
        InboundTransport::Plaintext => (vec![chain(filters)], Vec::new()),
        InboundTransport::Strict(tls) => {
            let mut c = chain(filters);
            c.transport_socket = MessageField::some(transport_socket(&tls));
            (vec![c], Vec::new())
        }
        InboundTransport::Permissive(tls) => {
            let mut raw = chain(filters.clone());
            raw.filter_chain_match = matching("raw_buffer", &[]);
            let mut app_tls = chain(filters.clone());
            app_tls.filter_chain_match = matching("tls", &[]);
            let mut mesh_tls = chain(filters);
            mesh_tls.filter_chain_match = matching("tls", &[KUMA_ALPN]);
            mesh_tls.transport_socket = MessageField::some(transport_socket(&tls));
            let mut inspector = ListenerFilter::new();
            inspector.name = TLS_INSPECTOR.to_string();
            inspector.set_typed_config(any(&crate::envoy::tls_inspector::TlsInspector::new()));
            (vec![raw, app_tls, mesh_tls], vec![inspector])
        }
    }
}

pub fn inbound_cluster(k: &InboundKey) -> Arc<EncodedResource> {
    let parts = k.parts();
    EncodedResource::encode(ResourceKind::Cluster, parts.local_cluster.name.clone(), &parts.local_cluster)
}

/// The cluster of a local application behind an inbound (`localhost:<servicePort>`).
fn local_cluster(name: &str, address: &str, port: u32, protocol: Protocol) -> Cluster {
    let mut c = Cluster::new();
    c.name = name.to_string();
    c.alt_stat_name = name.replace(':', "_");
    c.set_type(DiscoveryType::STATIC);
    c.load_assignment = MessageField::some(cla(name, std::iter::once((address, port))));
    if matches!(protocol, Protocol::Http2 | Protocol::Grpc) {
        set_http2(&mut c);
    }
    c
}

fn tcp_proxy(stat_prefix: &str, clusters: &[WeightedCluster]) -> TcpProxy {
    let mut tcp = TcpProxy::new();
    tcp.stat_prefix = stat_prefix.to_string();
    match clusters {
        [one] => tcp.set_cluster(one.name.clone()),
        many => {
            let mut w = crate::envoy::tcp_proxy::tcp_proxy::WeightedCluster::new();
            for c in many {
                let mut cw = TcpClusterWeight::new();
                cw.name = c.name.clone();
                cw.weight = c.weight;
                w.clusters.push(cw);
            }
            tcp.set_weighted_clusters(w);
        }
    }
    tcp
}

/// An HTTP connection manager with an inline route config named `route_name` (Kuma
/// inlines routes; there is no RDS) of one virtual host `vhost` matching every domain.
fn hcm(stat_prefix: &str, route_name: &str, vhost: &str, routes: Vec<Route>) -> HttpConnectionManager {
    let mut vh = VirtualHost::new();
    vh.name = vhost.to_string();
    vh.domains.push("*".to_string());
    vh.routes = routes;
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
    hcm
}

fn regex(re: &str) -> RegexMatcher {
    let mut m = RegexMatcher::new();
    m.set_google_re2(GoogleRE2::new());
    m.regex = re.to_string();
    m
}

fn string_matcher(m: &StringMatch) -> StringMatcher {
    let mut s = StringMatcher::new();
    match m {
        StringMatch::Exact(v) => s.set_exact(v.clone()),
        StringMatch::Prefix(v) => s.set_prefix(v.clone()),
        StringMatch::Regex(v) => s.set_safe_regex(regex(v)),
    }
    s
}

fn header_value(h: &HeaderValue) -> HeaderValueOption {
    use crate::envoy::base::header_value_option::HeaderAppendAction;
    let mut hv = EnvoyHeaderValue::new();
    hv.key = h.name.clone();
    hv.value = h.value.clone();
    let mut o = HeaderValueOption::new();
    o.header = MessageField::some(hv);
    o.append_action = EnumOrUnknown::new(if h.append {
        HeaderAppendAction::APPEND_IF_EXISTS_OR_ADD
    } else {
        HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD
    });
    o
}

/// An Envoy route from a resolved one.
pub fn route(r: &HttpRoute) -> Route {
    let mut m = RouteMatch::new();
    match &r.path {
        PathMatch::Prefix(p) => m.set_prefix(p.clone()),
        PathMatch::Exact(p) => m.set_path(p.clone()),
        PathMatch::Regex(p) => m.set_safe_regex(regex(p)),
    }
    for h in &r.headers {
        let mut hm = EnvoyHeaderMatcher::new();
        hm.name = h.name.clone();
        match &h.matcher {
            HeaderMatcher::Exact(v) => hm.set_string_match(string_matcher(&StringMatch::Exact(v.clone()))),
            HeaderMatcher::Prefix(v) => hm.set_string_match(string_matcher(&StringMatch::Prefix(v.clone()))),
            HeaderMatcher::Regex(v) => hm.set_string_match(string_matcher(&StringMatch::Regex(v.clone()))),
            HeaderMatcher::Present => hm.set_present_match(true),
            HeaderMatcher::Absent => {
                hm.set_present_match(true);
                hm.invert_match = true;
            }
        }
        m.headers.push(hm);
    }
    if let Some(method) = &r.method {
        let mut hm = EnvoyHeaderMatcher::new();
        hm.name = ":method".to_string();
        hm.set_string_match(string_matcher(method));
        m.headers.push(hm);
    }
    for q in &r.query {
        let mut qm = QueryParameterMatcher::new();
        qm.name = q.name.clone();
        let sm = if q.regex { StringMatch::Regex(q.value.clone()) } else { StringMatch::Exact(q.value.clone()) };
        qm.set_string_match(string_matcher(&sm));
        m.query_parameters.push(qm);
    }
    let mut out = Route::new();
    out.name = r.name.clone();
    out.match_ = MessageField::some(m);
    match &r.action {
        HttpAction::Forward { clusters, prefix_rewrite, regex_rewrite, host_rewrite, mirrors } => {
            let mut a = RouteAction::new();
            match clusters.as_slice() {
                [one] => a.set_cluster(one.name.clone()),
                many => {
                    let mut w = EnvoyWeightedCluster::new();
                    for c in many {
                        let mut cw = ClusterWeight::new();
                        cw.name = c.name.clone();
                        cw.weight = MessageField::some(crate::envoy::u32_value(c.weight));
                        w.clusters.push(cw);
                    }
                    a.set_weighted_clusters(w);
                }
            }
            if let Some(p) = prefix_rewrite {
                a.prefix_rewrite = p.clone();
            }
            if let Some((pattern, substitution)) = regex_rewrite {
                let mut s = RegexMatchAndSubstitute::new();
                s.pattern = MessageField::some(regex(pattern));
                s.substitution = substitution.clone();
                a.regex_rewrite = MessageField::some(s);
            }
            match host_rewrite {
                Some(HostRewrite::Literal(h)) => a.set_host_rewrite_literal(h.clone()),
                Some(HostRewrite::PathRegex(pattern, substitution)) => {
                    let mut s = RegexMatchAndSubstitute::new();
                    s.pattern = MessageField::some(regex(pattern));
                    s.substitution = substitution.clone();
                    a.set_host_rewrite_path_regex(s);
                }
                None => {}
            }
            for mirror in mirrors {
                let mut p = RequestMirrorPolicy::new();
                p.cluster = mirror.cluster.clone();
                let mut rf = crate::envoy::base::RuntimeFractionalPercent::new();
                let mut fp = crate::envoy::percent::FractionalPercent::new();
                fp.numerator = mirror.millionths;
                fp.denominator =
                    EnumOrUnknown::new(crate::envoy::percent::fractional_percent::DenominatorType::MILLION);
                rf.default_value = MessageField::some(fp);
                p.runtime_fraction = MessageField::some(rf);
                a.request_mirror_policies.push(p);
            }
            out.set_route(a);
        }
        HttpAction::Redirect { scheme, host, port, path, status } => {
            let mut rd = RedirectAction::new();
            if let Some(s) = scheme {
                rd.set_scheme_redirect(s.clone());
            }
            if let Some(h) = host {
                rd.host_redirect = h.clone();
            }
            if let Some(p) = port {
                rd.port_redirect = *p;
            }
            match path {
                Some((true, full)) => rd.set_path_redirect(full.clone()),
                Some((false, prefix)) => rd.set_prefix_rewrite(prefix.clone()),
                None => {}
            }
            rd.response_code = EnumOrUnknown::new(match status {
                302 => RedirectResponseCode::FOUND,
                303 => RedirectResponseCode::SEE_OTHER,
                307 => RedirectResponseCode::TEMPORARY_REDIRECT,
                308 => RedirectResponseCode::PERMANENT_REDIRECT,
                _ => RedirectResponseCode::MOVED_PERMANENTLY,
            });
            out.set_redirect(rd);
        }
    }
    out.request_headers_to_add = r.request_headers_to_add.iter().map(header_value).collect();
    out.request_headers_to_remove = r.request_headers_to_remove.clone();
    out.response_headers_to_add = r.response_headers_to_add.iter().map(header_value).collect();
    out.response_headers_to_remove = r.response_headers_to_remove.clone();
    out
}

/// The terminal network filter: the HCM if there is one, else the TCP proxy.
fn filter_of(hcm: &Option<HttpConnectionManager>, tcp: &Option<TcpProxy>) -> Filter {
    let mut f = Filter::new();
    match (hcm, tcp) {
        (Some(h), _) => {
            f.name = "envoy.filters.network.http_connection_manager".to_string();
            f.set_typed_config(any(h));
        }
        (None, Some(t)) => {
            f.name = "envoy.filters.network.tcp_proxy".to_string();
            f.set_typed_config(any(t));
        }
        (None, None) => f.name = "envoy.filters.network.tcp_proxy".to_string(),
    }
    f
}

fn chain(filters: Vec<Filter>) -> FilterChain {
    let mut c = FilterChain::new();
    c.filters = filters;
    c
}

fn listener(
    name: &str,
    address: &str,
    port: u32,
    direction: crate::envoy::base::TrafficDirection,
    chains: Vec<FilterChain>,
    listener_filters: Vec<ListenerFilter>,
) -> Arc<EncodedResource> {
    let mut l = Listener::new();
    l.name = name.to_string();
    l.address = MessageField::some(socket_address(address, port));
    l.traffic_direction = EnumOrUnknown::new(direction);
    l.filter_chains = chains;
    l.listener_filters = listener_filters;
    EncodedResource::encode(ResourceKind::Listener, name, &l)
}

/// `host:port` as Envoy names (IPv6 bracketed, as Go's `net.JoinHostPort`).
pub fn join_host_port(host: &str, port: u32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Endpoint tags; `Tags` compare and hash in key order.
pub use crate::model::Tags;
