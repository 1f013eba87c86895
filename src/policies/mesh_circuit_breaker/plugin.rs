//! MeshCircuitBreaker on the engine. `to` rules, queried per outbound cluster with
//! `{kuma.io/service: <its service>}`, override what an old CircuitBreaker set on that
//! cluster, part by part: `connectionLimits` replaces the thresholds, `outlierDetection`
//! replaces the outlier detection unless `disabled` (then an old one stays, as in Kuma).
//! `from` rules (Mesh only) shape each selected inbound's local cluster.
//!
//! Outlier detection with `detectors` switches every detector it does not name off
//! (enforcing 0) and the named ones on (100); without `detectors` no enforcing field is
//! written and Envoy's defaults apply (Kuma 2.4).

use super::api::{Conf, Detectors, OutlierDetection};
use crate::envoy::parts::InboundListener;
use crate::model::ResourceType;
use crate::policies::circuit_breaker::conf::{enforcing, CircuitBreaking, Outlier, Thresholds};
use crate::policies::core::matching::{from_rules, matched, to_rules};
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::resolved::{InboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

pub struct MeshCircuitBreakerPlugin;

fn outlier(o: &OutlierDetection) -> Outlier {
    let mut out = Outlier {
        interval: o.interval.map(|p| p.0),
        base_ejection_time: o.base_ejection_time.map(|p| p.0),
        max_ejection_percent: o.max_ejection_percent,
        split_external_local_origin_errors: o.split_external_and_local_errors.unwrap_or(false),
        ..Outlier::default()
    };
    if let Some(d) = &o.detectors {
        detectors(d, &mut out);
    }
    out
}

fn detectors(d: &Detectors, out: &mut Outlier) {
    out.enforcing_consecutive_5xx = enforcing(d.total_failures.is_some());
    out.consecutive_5xx = d.total_failures.as_ref().and_then(|c| c.consecutive);
    out.enforcing_consecutive_gateway_failure = enforcing(d.gateway_failures.is_some());
    out.consecutive_gateway_failure = d.gateway_failures.as_ref().and_then(|c| c.consecutive);
    out.enforcing_consecutive_local_origin_failure = enforcing(d.local_origin_failures.is_some());
    out.consecutive_local_origin_failure = d.local_origin_failures.as_ref().and_then(|c| c.consecutive);
    // The local-origin variants only count when external and local errors are split.
    out.enforcing_success_rate = enforcing(d.success_rate.is_some());
    out.enforcing_local_origin_success_rate = enforcing(d.success_rate.is_some());
    if let Some(s) = &d.success_rate {
        out.success_rate_minimum_hosts = s.minimum_hosts;
        out.success_rate_request_volume = s.request_volume;
        // Validation keeps the factor positive and within u32 thousandths.
        out.success_rate_stdev_factor =
            s.standard_deviation_factor.as_ref().and_then(|f| f.thousandths()).and_then(|t| u32::try_from(t).ok());
    }
    out.enforcing_failure_percentage = enforcing(d.failure_percentage.is_some());
    out.enforcing_failure_percentage_local_origin = enforcing(d.failure_percentage.is_some());
    if let Some(p) = &d.failure_percentage {
        out.failure_percentage_minimum_hosts = p.minimum_hosts;
        out.failure_percentage_request_volume = p.request_volume;
        out.failure_percentage_threshold = p.threshold;
    }
}

/// Lays a merged conf over what an older policy decided.
fn overlay(conf: &Conf, onto: &mut CircuitBreaking) {
    if let Some(l) = &conf.connection_limits {
        onto.thresholds = Some(Thresholds {
            max_connections: l.max_connections,
            max_connection_pools: l.max_connection_pools,
            max_pending_requests: l.max_pending_requests,
            max_requests: l.max_requests,
            max_retries: l.max_retries,
        });
    }
    if let Some(o) = conf.outlier_detection.as_ref().filter(|o| o.disabled != Some(true)) {
        onto.outlier_detection = Some(outlier(o));
    }
}

impl Plugin for MeshCircuitBreakerPlugin {
    fn name(&self) -> &'static str {
        "mesh-circuit-breaker"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshCircuitBreaker]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshCircuitBreaker;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let to = to_rules(cx.policies, t, &matched, MergeOptions::default());
        for c in &mut out.clusters {
            if let Some(conf) = to.conf_for::<Conf>(&Subset::service(&c.service)) {
                overlay(conf, &mut c.conf.circuit_breaker);
            }
        }
        for inbound in &mut out.inbounds {
            let Some(spec) = cx.dataplane.networking.inbound.get(inbound.index) else { continue };
            let from = from_rules(cx.policies, t, &matched, &spec.tags, MergeOptions::default());
            // `from` allows only Mesh, so the one rule that can apply has the empty subset.
            if let Some(conf) = from.conf_for::<Conf>(&Subset::default()) {
                overlay(conf, &mut inbound.conf.circuit_breaker);
            }
        }
    }

    /// Kuma 2.4 looked the inbound cluster up as `localhost:<inbound port>` and missed it
    /// when the service port differed; later releases configure the inbound's own cluster,
    /// and so does higuma.
    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        conf.circuit_breaker.apply(&mut listener.local_cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::circuit_breaker::conf::{ENFORCING_OFF, ENFORCING_ON};
    use crate::policies::core::testing::{check_golden, resolve_yaml};

    #[test]
    fn golden_mesh_circuit_breaker_to_and_from() {
        check_golden("src/policies/mesh_circuit_breaker/testdata", "01.to-and-from", "web-1");
    }

    const OLD: &str = "type: CircuitBreaker\nmesh: default\nname: old\nsources: [{match: {kuma.io/service: '*'}}]\n\
        destinations: [{match: {kuma.io/service: '*'}}]\n\
        conf: {thresholds: {maxConnections: 1}, detectors: {totalErrors: {consecutive: 3}}}\n---\n";

    const WEB: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
        inbound: [{port: 1, servicePort: 11, tags: {kuma.io/service: web}}]\n  \
        outbound: [{port: 2, tags: {kuma.io/service: backend}}]\n";

    fn mcb(default: &str) -> String {
        format!(
            "type: MeshCircuitBreaker\nmesh: default\nname: new\nspec:\n  to:\n  - targetRef: {{kind: Mesh}}\n    \
             default: {default}\n---\n"
        )
    }

    fn backend(input: &str) -> CircuitBreaking {
        resolve_yaml(input, "web-1").clusters[0].conf.circuit_breaker.clone()
    }

    #[test]
    fn overrides_an_old_circuit_breaker_part_by_part() {
        // Limits only: new thresholds, the old outlier detection stays.
        let cb = backend(&(mcb("{connectionLimits: {maxRequests: 7}}") + OLD + WEB));
        let t = cb.thresholds.unwrap();
        assert_eq!((t.max_requests, t.max_connections), (Some(7), None));
        assert_eq!(cb.outlier_detection.unwrap().consecutive_5xx, Some(3));
        // Outlier detection only: the old thresholds stay.
        let cb = backend(&(mcb("{outlierDetection: {detectors: {gatewayFailures: {consecutive: 4}}}}") + OLD + WEB));
        assert_eq!(cb.thresholds.unwrap().max_connections, Some(1));
        let o = cb.outlier_detection.unwrap();
        assert_eq!((o.consecutive_5xx, o.enforcing_consecutive_5xx), (None, Some(ENFORCING_OFF)));
        assert_eq!(
            (o.consecutive_gateway_failure, o.enforcing_consecutive_gateway_failure),
            (Some(4), Some(ENFORCING_ON))
        );
    }

    #[test]
    fn disabled_outlier_detection_keeps_the_old_one_as_kuma_does() {
        let cb = backend(&(mcb("{outlierDetection: {disabled: true, interval: 9s}}") + OLD + WEB));
        let o = cb.outlier_detection.expect("the old CircuitBreaker's outlier detection");
        assert_eq!((o.consecutive_5xx, o.interval), (Some(3), None));
        // Without an old one there is none at all.
        let cb = backend(&(mcb("{outlierDetection: {disabled: true}}") + WEB));
        assert_eq!(cb, CircuitBreaking::default());
    }

    #[test]
    fn without_detectors_no_enforcing_field_is_written() {
        let cb = backend(&(mcb("{outlierDetection: {interval: 2s}}") + WEB));
        let o = cb.outlier_detection.unwrap();
        assert_eq!(o.interval, Some(std::time::Duration::from_secs(2)));
        assert_eq!(o, Outlier { interval: o.interval, ..Outlier::default() });
    }

    #[test]
    fn from_rules_shape_the_selected_inbounds_only() {
        let from = |top: &str| {
            format!(
                "type: MeshCircuitBreaker\nmesh: default\nname: in\nspec:\n  targetRef: {top}\n  from:\n  \
                 - targetRef: {{kind: Mesh}}\n    default: {{connectionLimits: {{maxConnections: 9}}}}\n---\n"
            )
        };
        let out = resolve_yaml(&(from("{kind: MeshService, name: web}") + WEB), "web-1");
        assert_eq!(out.inbounds[0].conf.circuit_breaker.thresholds.as_ref().and_then(|t| t.max_connections), Some(9));
        assert_eq!(out.clusters[0].conf.circuit_breaker, CircuitBreaking::default(), "from does not touch outbounds");
        let out = resolve_yaml(&(from("{kind: MeshService, name: api}") + WEB), "web-1");
        assert_eq!(out.inbounds[0].conf.circuit_breaker, CircuitBreaking::default());
    }
}
