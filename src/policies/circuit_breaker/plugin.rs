//! CircuitBreaker on the engine: per destination service, the single best CircuitBreaker
//! whose sources match the dataplane (Kuma's ranking) sets that service's clusters'
//! thresholds and outlier detection. Outlier detection is set whenever one matched, even a
//! thresholds-only one: every detector the policy does not name is switched off
//! (enforcing 0), as Kuma does. Clusters of outbounds a MeshHTTPRoute or MeshTCPRoute routes
//! are left alone.
//!
//! This plugin also encodes the outbound [`CircuitBreaking`] for both generations:
//! MeshCircuitBreaker overrides the same conf field.

use super::api::{CircuitBreakerConf, CircuitBreakerSpec};
use super::conf::{enforcing, CircuitBreaking, Outlier, Thresholds, ENFORCING_ON};
use crate::envoy::cluster::Cluster;
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{ClusterConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

pub struct CircuitBreakerPlugin;

/// What a matched CircuitBreaker makes of a cluster.
fn of_old(conf: &CircuitBreakerConf) -> CircuitBreaking {
    let thresholds = conf.thresholds.as_ref().map(|t| Thresholds {
        max_connections: t.max_connections,
        max_connection_pools: None,
        max_pending_requests: t.max_pending_requests,
        max_requests: t.max_requests,
        max_retries: t.max_retries,
    });
    let d = conf.detectors.clone().unwrap_or_default();
    let mut o = Outlier {
        interval: conf.interval.map(|p| p.0),
        base_ejection_time: conf.base_ejection_time.map(|p| p.0),
        max_ejection_percent: conf.max_ejection_percent,
        split_external_local_origin_errors: conf.split_external_and_local_errors,
        enforcing_consecutive_5xx: enforcing(d.total_errors.is_some()),
        consecutive_5xx: d.total_errors.and_then(|e| e.consecutive),
        enforcing_consecutive_gateway_failure: enforcing(d.gateway_errors.is_some()),
        consecutive_gateway_failure: d.gateway_errors.and_then(|e| e.consecutive),
        enforcing_consecutive_local_origin_failure: enforcing(d.local_errors.is_some()),
        consecutive_local_origin_failure: d.local_errors.and_then(|e| e.consecutive),
        enforcing_success_rate: enforcing(d.standard_deviation.is_some()),
        enforcing_failure_percentage: enforcing(d.failure.is_some()),
        ..Outlier::default()
    };
    if let Some(s) = d.standard_deviation {
        o.success_rate_request_volume = s.request_volume;
        o.success_rate_minimum_hosts = s.minimum_hosts;
        // Kuma truncates factor × 1000 to an integer; a negative factor saturates at 0.
        o.success_rate_stdev_factor = s.factor.map(|f| (f * 1000.0) as u32);
        // Only used by Envoy when external and local errors are split.
        o.enforcing_local_origin_success_rate = Some(ENFORCING_ON);
    }
    if let Some(f) = d.failure {
        o.failure_percentage_request_volume = f.request_volume;
        o.failure_percentage_minimum_hosts = f.minimum_hosts;
        o.failure_percentage_threshold = f.threshold;
        o.enforcing_failure_percentage_local_origin = Some(ENFORCING_ON);
    }
    CircuitBreaking { thresholds, outlier_detection: Some(o) }
}

impl Plugin for CircuitBreakerPlugin {
    fn name(&self) -> &'static str {
        "circuit-breaker"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::CircuitBreaker]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::CircuitBreaker);
        if policies.is_empty() {
            return;
        }
        let skipped = out.clusters_of_mesh_routes();
        for c in &mut out.clusters {
            if skipped.contains(&c.name) {
                continue;
            }
            if let Some(spec) =
                select_outbound(policies, cx.dataplane, &c.service).and_then(|p| p.spec.get::<CircuitBreakerSpec>())
            {
                c.conf.circuit_breaker = of_old(&spec.conf);
            }
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        conf.circuit_breaker.apply(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::circuit_breaker::conf::ENFORCING_OFF;
    use crate::policies::core::testing::{check_golden, with_cx};
    use crate::policies::resolved::RoutedBy;

    #[test]
    fn golden_circuit_breaker_thresholds_and_detectors() {
        check_golden("src/policies/circuit_breaker/testdata", "01.thresholds-and-detectors", "web-1");
    }

    #[test]
    fn thresholds_only_still_switches_every_detector_off() {
        let conf: CircuitBreakerConf =
            serde_json::from_value(serde_json::json!({"thresholds": {"maxRetries": 3}})).unwrap();
        let o = of_old(&conf).outlier_detection.expect("outlier detection whenever one matched");
        let off = Some(ENFORCING_OFF);
        assert_eq!(
            (
                o.enforcing_consecutive_5xx,
                o.enforcing_consecutive_gateway_failure,
                o.enforcing_consecutive_local_origin_failure
            ),
            (off, off, off)
        );
        assert_eq!((o.enforcing_success_rate, o.enforcing_failure_percentage), (off, off));
        // Kuma leaves the local-origin variants unset when their detector is absent.
        assert_eq!((o.enforcing_local_origin_success_rate, o.enforcing_failure_percentage_local_origin), (None, None));
        assert_eq!(o.consecutive_5xx, None);
    }

    #[test]
    fn clusters_of_mesh_routed_outbounds_are_left_alone() {
        let input = "type: CircuitBreaker\nmesh: default\nname: all\nsources: [{match: {kuma.io/service: '*'}}]\n\
            destinations: [{match: {kuma.io/service: '*'}}]\nconf: {detectors: {totalErrors: {consecutive: 2}}}\n---\n\
            type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
            inbound: [{port: 1, tags: {kuma.io/service: web}}]\n  outbound:\n  - {port: 2, tags: {kuma.io/service: backend}}\n  \
            - {port: 3, tags: {kuma.io/service: db}}\n";
        with_cx(input, "web-1", |cx| {
            let mut out = crate::policies::resolve(cx);
            assert!(out.clusters.iter().all(|c| c.conf.circuit_breaker.outlier_detection.is_some()));
            out.outbounds[1].routed_by = RoutedBy::MeshTcpRoute;
            for c in &mut out.clusters {
                c.conf.circuit_breaker = CircuitBreaking::default();
            }
            CircuitBreakerPlugin.resolve(cx, &mut out);
            let set = |s: &str| {
                out.clusters.iter().find(|c| c.service == s).unwrap().conf.circuit_breaker.outlier_detection.is_some()
            };
            assert_eq!((set("backend"), set("db")), (true, false));
        });
    }
}
