//! Kuma's old-style CircuitBreaker (`circuit_breaker.proto`): connection thresholds and
//! outlier detection on the clusters of the destinations.
//!
//! Validation follows Kuma's `pkg/core/resources/apis/mesh/*_validator.go`.

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::selector::Selector;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};
use crate::policies::core::validate::*;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: CircuitBreakerConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreakerConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<ProtoDuration>,
    /// Percentage 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub split_external_and_local_errors: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thresholds: Option<Thresholds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detectors: Option<Detectors>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Thresholds {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

impl Thresholds {
    pub fn is_empty(&self) -> bool {
        *self == Thresholds::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Detectors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_errors: Option<ConsecutiveErrors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_errors: Option<ConsecutiveErrors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_errors: Option<ConsecutiveErrors>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub standard_deviation: Option<StandardDeviation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<FailureDetector>,
}

impl Detectors {
    pub fn is_empty(&self) -> bool {
        *self == Detectors::default()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsecutiveErrors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StandardDeviation {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FailureDetector {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_volume: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_hosts: Option<u32>,
    /// Percentage 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
}

impl SpecType for CircuitBreakerSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let c = &self.conf;
        let has_detectors = c.detectors.as_ref().is_some_and(|d| !d.is_empty());
        let has_thresholds = c.thresholds.as_ref().is_some_and(|t| !t.is_empty());
        if !has_detectors && !has_thresholds {
            errors.add("conf", "must have at least one of the detector or threshold configured");
        } else {
            if c.detectors.as_ref().is_some_and(Detectors::is_empty) {
                errors.add("conf.detectors", "can't be empty");
            }
            if c.thresholds.as_ref().is_some_and(Thresholds::is_empty) {
                errors.add("conf.thresholds", "can't be empty");
            }
        }
        positive_duration_when_set(&mut errors, "conf.interval", c.interval);
        positive_duration_when_set(&mut errors, "conf.baseEjectionTime", c.base_ejection_time);
        percentage_u32(&mut errors, "conf.maxEjectionPercent", c.max_ejection_percent);
        if let Some(failure) = c.detectors.as_ref().and_then(|d| d.failure.as_ref()) {
            percentage_u32(&mut errors, "conf.detectors.failure.threshold", failure.threshold);
        }
        errors.into_result()
    }
}

impl OldStylePolicy for CircuitBreakerSpec {
    fn attachment(&self) -> Attachment {
        Attachment::Service
    }
    fn sources(&self) -> &[Selector] {
        &self.sources
    }
    fn destinations(&self) -> &[Selector] {
        &self.destinations
    }
}

#[cfg(test)]
mod tests {
    #![allow(unused_imports)]
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    #[test]
    fn circuit_breaker_round_trips() {
        assert_round_trip(with_conf(
            "CircuitBreaker",
            json!({
                "interval": "5s", "baseEjectionTime": "30s", "maxEjectionPercent": 20, "splitExternalAndLocalErrors": true,
                "thresholds": {"maxConnections": 2, "maxPendingRequests": 2, "maxRequests": 2, "maxRetries": 2},
                "detectors": {
                    "totalErrors": {"consecutive": 20}, "gatewayErrors": {"consecutive": 10}, "localErrors": {"consecutive": 7},
                    "standardDeviation": {"requestVolume": 10, "minimumHosts": 5, "factor": 1.9},
                    "failure": {"requestVolume": 10, "minimumHosts": 5, "threshold": 85}
                }
            }),
        ));
    }

    #[test]
    fn circuit_breaker_rules() {
        assert_violation(with_conf("CircuitBreaker", json!({})), "conf", "at least one of the detector or threshold");
        assert_violation(
            with_conf("CircuitBreaker", json!({"thresholds": {"maxConnections": 1}, "detectors": {}})),
            "conf.detectors",
            "can't be empty",
        );
        assert_violation(
            with_conf("CircuitBreaker", json!({"detectors": {"totalErrors": {}}, "thresholds": {}})),
            "conf.thresholds",
            "can't be empty",
        );
        assert_violation(
            with_conf("CircuitBreaker", json!({"detectors": {"totalErrors": {}}, "maxEjectionPercent": 101})),
            "conf.maxEjectionPercent",
            "[0 - 100]",
        );
        assert_violation(
            with_conf("CircuitBreaker", json!({"detectors": {"failure": {"threshold": 150}}})),
            "conf.detectors.failure.threshold",
            "150",
        );
        assert_violation(
            with_conf("CircuitBreaker", json!({"detectors": {"totalErrors": {}}, "interval": "0s"})),
            "conf.interval",
            "greater than 0",
        );
        assert_violation(
            with_conf("CircuitBreaker", json!({"detectors": {"totalErrors": {}}, "baseEjectionTime": "0s"})),
            "conf.baseEjectionTime",
            "greater than 0",
        );
    }
}
