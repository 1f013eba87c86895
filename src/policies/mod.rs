//! The policy engine: one folder per policy type (Kuma's `pkg/plugins/policies/<name>/`),
//! a shared core, and the plugin list.
//!
//! - `<policy>/api.rs`: the spec, its defaults and validation (the registry in
//!   `crate::model::types` names it).
//! - `<policy>/plugin.rs`: how the policies of that type resolve for one dataplane (which
//!   ones match, what they decide) and how the resolved conf shapes Envoy resources; golden
//!   files beside it in `testdata/`.
//! - [`core`]: targetRef selection and rules, old-style ranking, the policy set, reach.
//! - [`resolved`]: the resolved confs every generator reads.
//!
//! A dataplane's config is made in two steps: [`resolve`] runs every plugin's `resolve` in
//! [`PLUGINS`] order and yields a [`resolved::ResolvedProxy`]; the generators build each
//! Envoy resource from its part of that and let every plugin's `configure_*` adjust it. The
//! configure hooks see only their conf and the resource, never the dataplane, so the bytes
//! are a pure function of the cache key and equal outcomes share one encoding.

pub mod core;
pub mod defaults;
pub mod resolved;

// ---- routing and load balancing --------------------------------------------------------------
pub mod mesh_http_route;
pub mod mesh_load_balancing_strategy;
pub mod mesh_tcp_route;
pub mod routing;
pub mod traffic_route;

// ---- timeouts and retries ----------------------------------------------------------------------
pub mod mesh_retry;
pub mod mesh_timeout;
pub mod retry;
pub mod timeout;

// ---- health checks and circuit breakers --------------------------------------------------------
pub mod circuit_breaker;
pub mod health_check;
pub mod mesh_circuit_breaker;
pub mod mesh_health_check;

// ---- inbound policies and logging ----------------------------------------------------------------
pub mod access_log;
pub mod fault_injection;
pub mod kuma_tags;
pub mod mesh_access_log;
pub mod mesh_fault_injection;
pub mod mesh_rate_limit;
pub mod rate_limit;
pub mod traffic_log;

// ---- permissions ---------------------------------------------------------------------------------
pub mod mesh_traffic_permission;
pub mod traffic_permission;

// ---- mesh identity and TLS (Mesh.mtls, MeshIdentity, MeshTrust, MeshTLS) -----------------------
pub mod mesh_identity;
pub mod mesh_tls;
pub mod mesh_trust;
pub mod mtls;

use crate::envoy::cluster::Cluster;
use crate::envoy::parts::{InboundListener, OutboundListener};
use crate::model::dataplane::{DataplaneSpec, Protocol};
use crate::model::mesh::MeshSpec;
use crate::model::{ResourceType, Tags};
use core::set::PolicySet;
use resolved::{
    ClusterConf, InboundConf, OutboundConf, ResolvedCluster, ResolvedInbound, ResolvedOutbound, ResolvedProxy,
    RoutedBy, Routing, WeightedCluster,
};

/// Everything a plugin may look at while resolving one dataplane.
pub struct ResolveCx<'a> {
    pub mesh_name: &'a str,
    pub mesh: &'a MeshSpec,
    pub policies: &'a PolicySet,
    pub name: &'a str,
    pub dataplane: &'a DataplaneSpec,
    /// The protocol of a service of the mesh, from its endpoints (TCP when unknown).
    pub protocol_of: &'a dyn Fn(&str) -> Protocol,
    /// Whether every dataplane of a service serves mesh TLS already (its Envoy acknowledged
    /// a certificate and TLS-accepting listeners); PERMISSIVE clients switch to TLS then.
    pub tls_ready: &'a dyn Fn(&str) -> bool,
}

/// One policy type (or one concern) of the engine.
pub trait Plugin: Sync {
    fn name(&self) -> &'static str;

    /// The resource types this plugin reads.
    fn types(&self) -> &'static [ResourceType];

    /// Writes this plugin's decisions into `out`.
    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy);

    /// The services a routing plugin can send an outbound's traffic to besides the outbound's
    /// own: `(outbound service or None for any, destination service)`. Their endpoint
    /// changes must reach that outbound's dataplanes.
    fn route_targets(&self, _policies: &PolicySet) -> Vec<(Option<String>, String)> {
        Vec::new()
    }

    /// Adjusts an outbound cluster from its resolved conf.
    fn configure_cluster(&self, _conf: &ClusterConf, _cluster: &mut Cluster) {}

    /// Adjusts an outbound listener's filters from its resolved conf.
    fn configure_outbound(&self, _conf: &OutboundConf, _listener: &mut OutboundListener) {}

    /// Adjusts an inbound listener's filters and local cluster from its resolved conf.
    fn configure_inbound(&self, _conf: &InboundConf, _listener: &mut InboundListener) {}
}

/// Every plugin, in application order: routing first (it decides the clusters the others
/// configure), then each concern with the old-style policy before its targetRef successor so
/// the successor's settings override (Kuma applies old-style generators, then plugins in
/// `pkg/plugins/policies/policies.go` order).
pub static PLUGINS: &[&dyn Plugin] = &[
    // ---- routing (TrafficRoute, MeshHTTPRoute, MeshTCPRoute) -----------------------------------
    // The targetRef routes first: TrafficRoute routes only the outbounds they leave, as Kuma's
    // old generator skips the ones a MeshHTTPRoute or MeshTCPRoute routes (nothing of it, not
    // its cluster names nor its load balancer, reaches those outbounds). MeshTCPRoute after
    // MeshHTTPRoute, which it overrides except where a MeshHTTPRoute rule names the service.
    &mesh_http_route::plugin::MeshHttpRoutePlugin,
    &mesh_tcp_route::plugin::MeshTcpRoutePlugin,
    &traffic_route::plugin::TrafficRoutePlugin,
    // ---- timeouts and retries (Timeout, MeshTimeout, Retry, MeshRetry) -------------------------
    &timeout::plugin::TimeoutPlugin,
    &mesh_timeout::plugin::MeshTimeoutPlugin,
    &retry::plugin::RetryPlugin,
    &mesh_retry::plugin::MeshRetryPlugin,
    // ---- health checks, circuit breakers (old-style, then targetRef) ---------------------------
    &health_check::plugin::HealthCheckPlugin,
    &circuit_breaker::plugin::CircuitBreakerPlugin,
    &mesh_circuit_breaker::plugin::MeshCircuitBreakerPlugin,
    &mesh_health_check::plugin::MeshHealthCheckPlugin,
    // ---- load balancing (MeshLoadBalancingStrategy) --------------------------------------------
    &mesh_load_balancing_strategy::plugin::MeshLoadBalancingStrategyPlugin,
    // ---- inbound: fault injection, rate limits -------------------------------------------------
    &kuma_tags::KumaTagsPlugin,
    &fault_injection::plugin::FaultInjectionPlugin,
    &mesh_fault_injection::plugin::MeshFaultInjectionPlugin,
    &rate_limit::plugin::RateLimitPlugin,
    &mesh_rate_limit::plugin::MeshRateLimitPlugin,
    // ---- access logs (TrafficLog, MeshAccessLog) -----------------------------------------------
    &traffic_log::plugin::TrafficLogPlugin,
    &mesh_access_log::plugin::MeshAccessLogPlugin,
    // ---- mesh TLS (Mesh.mtls and MeshIdentity, then MeshTLS) -----------------------------------
    &mtls::plugin::MtlsPlugin,
    &mesh_tls::plugin::MeshTlsPlugin,
    // ---- permissions (TrafficPermission, MeshTrafficPermission) --------------------------------
    // Last, so the RBAC filter TrafficPermission's hook inserts is the first network filter.
    &traffic_permission::plugin::TrafficPermissionPlugin,
    &mesh_traffic_permission::plugin::MeshTrafficPermissionPlugin,
];

/// The policy types some plugin reads; a change of any other type affects no dataplane's
/// config (it is stored and validated only).
pub fn enforced_types() -> Vec<ResourceType> {
    let mut out: Vec<ResourceType> = PLUGINS.iter().flat_map(|p| p.types().iter().copied()).collect();
    out.sort();
    out.dedup();
    out
}

/// Resolves every policy for one dataplane.
pub fn resolve(cx: &ResolveCx<'_>) -> ResolvedProxy {
    let mut out = skeleton(cx);
    for plugin in PLUGINS {
        plugin.resolve(cx, &mut out);
    }
    finish(cx, &mut out);
    out
}

/// Inbounds as declared; each outbound routed to one cluster of its own service.
fn skeleton(cx: &ResolveCx<'_>) -> ResolvedProxy {
    let inbounds = (0..cx.dataplane.networking.inbound.len())
        .map(|index| ResolvedInbound { index, conf: InboundConf::default() })
        .collect();
    let mut clusters: Vec<ResolvedCluster> = Vec::new();
    let outbounds = cx
        .dataplane
        .networking
        .outbound
        .iter()
        .enumerate()
        .map(|(index, o)| {
            let service = o.service().to_string();
            let protocol = (cx.protocol_of)(&service);
            if !clusters.iter().any(|c| c.name == service) {
                clusters.push(ResolvedCluster {
                    name: service.clone(),
                    service: service.clone(),
                    tags: Tags::new(),
                    protocol,
                    conf: ClusterConf::default(),
                });
            }
            let cluster = WeightedCluster { name: service.clone(), weight: 100 };
            let routing = if protocol.is_http() {
                Routing::Http { routes: vec![resolved::HttpRoute::catch_all(vec![cluster])] }
            } else {
                Routing::Tcp { clusters: vec![cluster] }
            };
            ResolvedOutbound {
                index,
                service,
                protocol,
                routing,
                routed_by: RoutedBy::Default,
                conf: OutboundConf::default(),
            }
        })
        .collect();
    ResolvedProxy { inbounds, outbounds, clusters }
}

/// Drops clusters no routing uses any more (a routing plugin replaced them).
fn finish(_cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
    let used: Vec<String> =
        out.outbounds.iter().flat_map(|o| o.routing.cluster_names().into_iter().map(str::to_string)).collect();
    out.clusters.retain(|c| used.contains(&c.name));
}
