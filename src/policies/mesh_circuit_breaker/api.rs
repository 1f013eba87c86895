//! Kuma's MeshCircuitBreaker (`meshcircuitbreaker/api/v1alpha1`): connection limits and
//! outlier detection, `to` the services a proxy calls and `from` (Mesh) its own inbounds.
//!
//! Validation follows Kuma's `validator.go`; field paths are Kuma's
//! (`spec.to[0].default.outlierDetection.detectors.failurePercentage.threshold`).

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};
use crate::policies::mesh_health_check::api::{positive, positive_duration, IntOrDecimal};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshCircuitBreakerSpec(pub ToFromPolicy<Conf>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limits: Option<ConnectionLimits>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionLimits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_pools: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// `true`: this policy configures no outlier detection (what another set stays).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_and_local_errors: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<Detectors>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detectors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_failures: Option<Consecutive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_failures: Option<Consecutive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_origin_failures: Option<Consecutive>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub success_rate: Option<SuccessRate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_percentage: Option<FailurePercentage>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Consecutive {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SuccessRate {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    /// `1.9` or `"1.9"`: ejected below mean − factor × stdev.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_deviation_factor: Option<IntOrDecimal>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailurePercentage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

/// Kuma's allowed kinds for MeshCircuitBreaker (2.4: no MeshGateway at the top).
const ALLOWED: Allowed = Allowed {
    top: &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset],
    to: &[TargetKind::Mesh, TargetKind::MeshService],
    from: &[TargetKind::Mesh],
    require_entries: true,
};

fn percentage(errors: &mut ValidationError, field: String, v: Option<u32>) {
    if let Some(p) = v.filter(|p| *p > 100) {
        errors.add(field, format!("has to be in [0 - 100] range, got {p}"));
    }
}

impl Conf {
    fn validate(&self, errors: &mut ValidationError, path: &str) {
        if self.connection_limits.is_none() && self.outlier_detection.is_none() {
            errors.add(path, "at least one of: 'connectionLimits' or 'outlierDetection' should be configured");
            return;
        }
        if let Some(l) = &self.connection_limits {
            let f = |n: &str| format!("{path}.connectionLimits.{n}");
            positive(errors, &f("maxConnections"), l.max_connections);
            positive(errors, &f("maxConnectionPools"), l.max_connection_pools);
            positive(errors, &f("maxPendingRequests"), l.max_pending_requests);
            positive(errors, &f("maxRetries"), l.max_retries);
            positive(errors, &f("maxRequests"), l.max_requests);
        }
        let Some(o) = &self.outlier_detection else { return };
        let f = |n: &str| format!("{path}.outlierDetection.{n}");
        positive_duration(errors, &f("interval"), o.interval);
        positive_duration(errors, &f("baseEjectionTime"), o.base_ejection_time);
        percentage(errors, f("maxEjectionPercent"), o.max_ejection_percent);
        let Some(d) = &o.detectors else { return };
        let f = |n: &str| format!("{path}.outlierDetection.detectors.{n}");
        for (name, c) in [
            ("totalFailures", &d.total_failures),
            ("gatewayFailures", &d.gateway_failures),
            ("localOriginFailures", &d.local_origin_failures),
        ] {
            positive(errors, &f(&format!("{name}.consecutive")), c.as_ref().and_then(|c| c.consecutive));
        }
        if let Some(s) = &d.success_rate {
            positive(errors, &f("successRate.minimumHosts"), s.minimum_hosts);
            positive(errors, &f("successRate.requestVolume"), s.request_volume);
            if let Some(v) = &s.standard_deviation_factor {
                match v.thousandths() {
                    None => errors.add(f("successRate.standardDeviationFactor"), format!("invalid number, got {v}")),
                    Some(t) if t <= 0 => {
                        errors.add(f("successRate.standardDeviationFactor"), format!("must be greater than 0, got {v}"))
                    }
                    Some(t) if u32::try_from(t).is_err() => {
                        errors.add(f("successRate.standardDeviationFactor"), format!("is too large, got {v}"))
                    }
                    Some(_) => {}
                }
            }
        }
        if let Some(p) = &d.failure_percentage {
            positive(errors, &f("failurePercentage.minimumHosts"), p.minimum_hosts);
            positive(errors, &f("failurePercentage.requestVolume"), p.request_volume);
            percentage(errors, f("failurePercentage.threshold"), p.threshold);
        }
    }
}

impl SpecType for MeshCircuitBreakerSpec {
    const TARGET_REF_KINDS: Option<Allowed> = Some(ALLOWED);

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        for (path, conf) in self.0.defaults() {
            conf.validate(&mut errors, &path);
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use crate::model::rest::{from_json, parse_document};
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    const DOCS_EXAMPLE: &str = r#"
type: MeshCircuitBreaker
name: web-to-backend
mesh: default
spec:
  targetRef:
    kind: MeshService
    name: web
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      connectionLimits:
        maxConnections: 2
        maxPendingRequests: 8
        maxRetries: 2
        maxRequests: 2
      outlierDetection:
        disabled: false
        interval: 5s
        baseEjectionTime: 30s
        maxEjectionPercent: 20
        splitExternalAndLocalErrors: true
        detectors:
          totalFailures:
            consecutive: 10
          gatewayFailures:
            consecutive: 10
          localOriginFailures:
            consecutive: 10
          successRate:
            minimumHosts: 5
            requestVolume: 10
            standardDeviationFactor: "1.9"
          failurePercentage:
            requestVolume: 10
            minimumHosts: 5
            threshold: 85
  from:
  - targetRef:
      kind: Mesh
    default:
      connectionLimits:
        maxConnections: 1024
"#;

    fn mcb(default: Value) -> Value {
        policy("MeshCircuitBreaker", json!({"spec": {"to": [{"targetRef": {"kind": "Mesh"}, "default": default}]}}))
    }

    #[test]
    fn docs_example_round_trips() {
        let v = parse_document(DOCS_EXAMPLE).unwrap();
        assert_eq!(from_json(v.clone()).unwrap().spec.to_json(), v["spec"]);
    }

    #[test]
    fn validation_names_kumas_paths() {
        assert!(from_json(mcb(json!({"outlierDetection": {"disabled": true}}))).is_ok());
        let d = "spec.to[0].default";
        assert_violation(mcb(json!({})), d, "at least one of: 'connectionLimits' or 'outlierDetection'");
        assert_violation(
            mcb(json!({"connectionLimits": {"maxConnections": 0}})),
            &format!("{d}.connectionLimits.maxConnections"),
            "greater than 0",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"interval": "0s"}})),
            &format!("{d}.outlierDetection.interval"),
            "greater than 0",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"maxEjectionPercent": 101}})),
            &format!("{d}.outlierDetection.maxEjectionPercent"),
            "101",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"detectors": {"gatewayFailures": {"consecutive": 0}}}})),
            &format!("{d}.outlierDetection.detectors.gatewayFailures.consecutive"),
            "greater than 0",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"detectors": {"successRate": {"standardDeviationFactor": "x"}}}})),
            &format!("{d}.outlierDetection.detectors.successRate.standardDeviationFactor"),
            "invalid number",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"detectors": {"successRate": {"standardDeviationFactor": 0}}}})),
            &format!("{d}.outlierDetection.detectors.successRate.standardDeviationFactor"),
            "greater than 0",
        );
        assert_violation(
            mcb(json!({"outlierDetection": {"detectors": {"failurePercentage": {"threshold": 150}}}})),
            &format!("{d}.outlierDetection.detectors.failurePercentage.threshold"),
            "150",
        );
        assert_violation(
            policy("MeshCircuitBreaker", json!({"spec": {"targetRef": {"kind": "Mesh"}}})),
            "spec",
            "at least one of 'to' or 'from'",
        );
        assert_violation(
            policy(
                "MeshCircuitBreaker",
                json!({"spec": {"from": [{"targetRef": {"kind": "MeshService", "name": "a"}, "default": {"connectionLimits": {}}}]}}),
            ),
            "spec.from[0].targetRef.kind",
            "not supported",
        );
        assert_violation(
            policy(
                "MeshCircuitBreaker",
                json!({"spec": {"targetRef": {"kind": "MeshGateway", "name": "gw"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {}}}]}}),
            ),
            "spec.targetRef.kind",
            "not supported",
        );
    }
}
