//! Resolved confs: what the policies decided for one dataplane, and all the generators read.
//!
//! The engine ([`super::resolve`]) starts from the dataplane's own inbounds and outbounds,
//! each outbound routed to one cluster of its own service, and lets every plugin, in
//! [`super::PLUGINS`] order, write its concern: the routing plugins replace `routing` and the
//! clusters, the others fill their field of [`ClusterConf`], [`OutboundConf`] or
//! [`InboundConf`]. An old-style policy and its targetRef successor write the same field
//! (Timeout then MeshTimeout), so the later one overrides what it sets.
//!
//! Every conf is plain data with `Hash + Eq`: encoded resources are cached by (what they are
//! built from, conf), and dataplanes with equal outcomes share one encoding.

use crate::model::Tags;

use crate::model::dataplane::Protocol;
use crate::policies::access_log::AccessLog;
use crate::policies::fault_injection::plugin::HttpFault;
use crate::policies::rate_limit::plugin::InboundRateLimits;
use crate::policies::retry::conf::OutboundRetries;
use crate::policies::timeout::conf::{ClusterTimeouts, InboundTimeouts, ListenerTimeouts};

/// A dataplane's config as the policies shape it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResolvedProxy {
    /// One per inbound of the Dataplane, in its order.
    pub inbounds: Vec<ResolvedInbound>,
    /// One per outbound of the Dataplane, in its order.
    pub outbounds: Vec<ResolvedOutbound>,
    /// The clusters the outbounds route to, unique by name, in first-use order.
    pub clusters: Vec<ResolvedCluster>,
}

impl ResolvedProxy {
    /// The clusters of outbounds a MeshHTTPRoute or MeshTCPRoute routes: old-style cluster
    /// plugins leave them alone, as Kuma's old generator skips those outbounds.
    pub fn clusters_of_mesh_routes(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for o in &self.outbounds {
            if matches!(o.routed_by, RoutedBy::MeshHttpRoute | RoutedBy::MeshTcpRoute) {
                out.extend(o.routing.cluster_names().into_iter().map(str::to_string));
            }
        }
        out
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ResolvedInbound {
    /// Index into `networking.inbound`.
    pub index: usize,
    pub conf: InboundConf,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedOutbound {
    /// Index into `networking.outbound`.
    pub index: usize,
    /// The outbound's own `kuma.io/service`.
    pub service: String,
    /// The common protocol of every cluster it routes to (reference §1.7 stacks: http and
    /// http2 make tcp). TrafficRoute picks its filter by it; the targetRef routes decide the
    /// filter themselves (MeshHTTPRoute always an HCM, MeshTCPRoute a TCP proxy).
    pub protocol: Protocol,
    pub routing: Routing,
    /// Which policy decided the routing; old-style plugins leave outbounds routed by a
    /// MeshHTTPRoute or MeshTCPRoute alone, as Kuma's old generator skips them.
    pub routed_by: RoutedBy,
    pub conf: OutboundConf,
}

impl ResolvedOutbound {
    /// Whether old-style outbound policies (TrafficRoute, Timeout, Retry, ...) apply: not to
    /// outbounds a MeshHTTPRoute or MeshTCPRoute routes, which Kuma's old generator skips.
    pub fn old_style_applies(&self) -> bool {
        !matches!(self.routed_by, RoutedBy::MeshHttpRoute | RoutedBy::MeshTcpRoute)
    }
}

/// Who decided an outbound's routing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RoutedBy {
    /// No routing policy: all traffic to the outbound's service.
    #[default]
    Default,
    TrafficRoute,
    MeshHttpRoute,
    MeshTcpRoute,
}

/// Where an outbound's traffic goes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Routing {
    /// A TCP proxy to one cluster, or to several by weight.
    Tcp { clusters: Vec<WeightedCluster> },
    /// HTTP routes, tried in order.
    Http { routes: Vec<HttpRoute> },
}

impl Routing {
    /// Every cluster name the routing can send traffic to, in order of first appearance.
    pub fn cluster_names(&self) -> Vec<&str> {
        let mut all: Vec<&str> = Vec::new();
        match self {
            Routing::Tcp { clusters } => all.extend(clusters.iter().map(|c| c.name.as_str())),
            Routing::Http { routes } => {
                for r in routes {
                    if let HttpAction::Forward { clusters, mirrors, .. } = &r.action {
                        all.extend(clusters.iter().map(|c| c.name.as_str()));
                        all.extend(mirrors.iter().map(|m| m.cluster.as_str()));
                    }
                }
            }
        }
        let mut out: Vec<&str> = Vec::with_capacity(all.len());
        for n in all {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        out
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct WeightedCluster {
    pub name: String,
    pub weight: u32,
}

/// One HTTP route of an outbound (TrafficRoute `http[]` or a MeshHTTPRoute rule), close to
/// Envoy's `Route`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpRoute {
    /// Envoy route name: empty for TrafficRoute, Kuma's hash of the matches for
    /// MeshHTTPRoute (MeshTimeout and MeshRetry find per-route confs by it).
    pub name: String,
    pub path: PathMatch,
    pub method: Option<StringMatch>,
    /// TrafficRoute's sorted by name (they come from a map), MeshHTTPRoute's in the
    /// policy's order, as Kuma emits them.
    pub headers: Vec<HeaderMatch>,
    pub query: Vec<QueryMatch>,
    pub action: HttpAction,
    pub request_headers_to_add: Vec<HeaderValue>,
    pub request_headers_to_remove: Vec<String>,
    pub response_headers_to_add: Vec<HeaderValue>,
    pub response_headers_to_remove: Vec<String>,
}

impl HttpRoute {
    /// `prefix: /` to `clusters`: the default route.
    pub fn catch_all(clusters: Vec<WeightedCluster>) -> HttpRoute {
        HttpRoute {
            name: String::new(),
            path: PathMatch::Prefix("/".into()),
            method: None,
            headers: Vec::new(),
            query: Vec::new(),
            action: HttpAction::Forward {
                clusters,
                prefix_rewrite: None,
                regex_rewrite: None,
                host_rewrite: None,
                mirrors: Vec::new(),
            },
            request_headers_to_add: Vec::new(),
            request_headers_to_remove: Vec::new(),
            response_headers_to_add: Vec::new(),
            response_headers_to_remove: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PathMatch {
    Prefix(String),
    Exact(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HeaderMatcher {
    Exact(String),
    Prefix(String),
    Regex(String),
    Present,
    Absent,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderMatch {
    pub name: String,
    pub matcher: HeaderMatcher,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct QueryMatch {
    pub name: String,
    /// Exact (`false`) or RE2 regex (`true`).
    pub regex: bool,
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HeaderValue {
    pub name: String,
    pub value: String,
    pub append: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostRewrite {
    Literal(String),
    /// `(pattern, substitution)` applied to the path.
    PathRegex(String, String),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Mirror {
    pub cluster: String,
    /// Percentage of requests mirrored, in millionths (Envoy's MILLION denominator).
    pub millionths: u32,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HttpAction {
    Forward {
        clusters: Vec<WeightedCluster>,
        prefix_rewrite: Option<String>,
        /// `(pattern, substitution)`.
        regex_rewrite: Option<(String, String)>,
        host_rewrite: Option<HostRewrite>,
        mirrors: Vec<Mirror>,
    },
    Redirect {
        scheme: Option<String>,
        host: Option<String>,
        port: Option<u32>,
        /// Full-path replacement (`true`) or prefix replacement (`false`).
        path: Option<(bool, String)>,
        status: u32,
    },
}

/// One cluster an outbound routes to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ResolvedCluster {
    /// `<service>` or, for a subset of a service, `<service>-_<n>_` (Kuma's naming).
    pub name: String,
    pub service: String,
    /// Endpoint tags the cluster is limited to (never `kuma.io/service`); empty: all.
    pub tags: Tags,
    pub protocol: Protocol,
    pub conf: ClusterConf,
}

/// How an outbound cluster differs between consumers: one field per concern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ClusterConf {
    // ---- timeouts --------------------------------------------------------------------------
    /// Timeout, then MeshTimeout.
    pub timeouts: ClusterTimeouts,
    // ---- health checks, circuit breakers -------------------------------------------------------
    pub health_checks: crate::policies::health_check::conf::HealthChecks,
    pub circuit_breaker: crate::policies::circuit_breaker::conf::CircuitBreaking,
    // ---- load balancing ------------------------------------------------------------------------
    /// TrafficRoute's `loadBalancer`, overridden by MeshLoadBalancingStrategy.
    pub load_balancer: crate::policies::mesh_load_balancing_strategy::plugin::LoadBalancer,
    // ---- mesh TLS ------------------------------------------------------------------------------
    /// Mesh mTLS (Mesh.mtls or a MeshIdentity), then MeshTLS's versions and ciphers; `None`:
    /// plaintext.
    pub tls: Option<crate::policies::mtls::conf::ClientTls>,
}

/// How an outbound listener differs between consumers: one field per concern.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutboundConf {
    // ---- timeouts and retries ------------------------------------------------------------------
    /// Timeout, then MeshTimeout.
    pub timeouts: ListenerTimeouts,
    /// Retry (virtual host), then MeshRetry (routes).
    pub retries: OutboundRetries,
    // ---- load balancing (route hash policies) ---------------------------------------------------
    /// MeshLoadBalancingStrategy's hash policies for ring hash and maglev, on every route.
    pub hash_policies: Vec<crate::policies::mesh_load_balancing_strategy::plugin::HashPolicy>,
    // ---- access logs ---------------------------------------------------------------------------
    /// TrafficLog, then MeshAccessLog's `to` (appended), in order.
    pub access_logs: Vec<AccessLog>,
    /// The dataplane's tags as the `x-kuma-tags` header carries them to the inbound side
    /// (where FaultInjection and RateLimit match sources); kept as the serialized string so
    /// consumers with equal tags share one encoded listener.
    pub kuma_tags: String,
}

/// How an inbound listener and its local cluster differ between dataplanes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundConf {
    // ---- timeouts ------------------------------------------------------------------------------
    /// Kuma's fixed inbound values, then MeshTimeout `from`.
    pub timeouts: InboundTimeouts,
    // ---- circuit breakers (from rules) ---------------------------------------------------------
    pub circuit_breaker: crate::policies::circuit_breaker::conf::CircuitBreaking,
    // ---- fault injection, rate limits ------------------------------------------------------------
    /// One fault filter each, in order (FaultInjection, or MeshFaultInjection's rules).
    pub faults: Vec<HttpFault>,
    /// RateLimit or MeshRateLimit.
    pub rate_limits: InboundRateLimits,

    // ---- access logs ---------------------------------------------------------------------------
    /// MeshAccessLog's `from`.
    pub access_logs: Vec<AccessLog>,
    // ---- mesh TLS ------------------------------------------------------------------------------
    /// Mesh mTLS (Mesh.mtls or a MeshIdentity), then MeshTLS's mode, versions and ciphers;
    /// `None`: plaintext only.
    pub tls: Option<crate::policies::mtls::conf::ServerTls>,

    // ---- permissions ---------------------------------------------------------------------------
    /// TrafficPermission, then MeshTrafficPermission on the inbounds it selects; `None` (mTLS
    /// off): no RBAC filter.
    pub rbac: Option<crate::policies::traffic_permission::rbac::InboundRbac>,
}
