//! Kuma's old-style Retry (`retry.proto`): HTTP/gRPC retry policies and TCP connect attempts.
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
pub struct RetrySpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: RetryConf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RetryHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<RetryGrpc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<RetryTcp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_status_codes: Vec<u32>,
    /// HTTP methods (GET, POST, ...).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retriable_methods: Vec<String>,
    /// Envoy `retry_on` conditions; see [`HTTP_RETRY_ON`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryGrpc {
    /// gRPC `retry_on` conditions; see [`GRPC_RETRY_ON`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retry_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryTcp {
    #[serde(default)]
    pub max_connect_attempts: u32,
}

/// Kuma's `HttpRetryOn` enum values (Envoy's `x-envoy-retry-on` conditions).
pub const HTTP_RETRY_ON: [&str; 10] = [
    "all_5xx",
    "gateway_error",
    "reset",
    "connect_failure",
    "envoy_ratelimited",
    "retriable_4xx",
    "refused_stream",
    "retriable_status_codes",
    "retriable_headers",
    "http3_post_connect_failure",
];
/// Kuma's gRPC `RetryOn` enum values (Envoy's `x-envoy-retry-grpc-on` conditions).
pub const GRPC_RETRY_ON: [&str; 5] =
    ["cancelled", "deadline_exceeded", "internal", "resource_exhausted", "unavailable"];
pub const HTTP_METHODS: [&str; 9] = ["CONNECT", "DELETE", "GET", "HEAD", "OPTIONS", "PATCH", "POST", "PUT", "TRACE"];

fn validate_back_off(errors: &mut ValidationError, at: &str, back_off: &Option<BackOff>) {
    let Some(b) = back_off else { return };
    require_positive_duration(errors, &format!("{at}.baseInterval"), b.base_interval);
    positive_duration_when_set(errors, &format!("{at}.maxInterval"), b.max_interval);
    if let (Some(base), Some(max)) = (b.base_interval, b.max_interval) {
        if !max.is_zero() && max < base {
            errors.add(format!("{at}.maxInterval"), format!("must not be less than baseInterval ({base})"));
        }
    }
}

fn check_enum_values(errors: &mut ValidationError, at: &str, values: &[String], allowed: &[&str]) {
    for (i, v) in values.iter().enumerate() {
        if !allowed.contains(&v.as_str()) {
            errors.add(format!("{at}[{i}]"), format!("unknown value {v:?}. Allowed values: {}", allowed.join(", ")));
        } else if let Some(first) = values[..i].iter().position(|x| x == v) {
            errors.add(format!("{at}[{i}]"), format!("repeated value {v:?} (first at index {first})"));
        }
    }
}

impl SpecType for RetrySpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let c = &self.conf;
        if c.http.is_none() && c.grpc.is_none() && c.tcp.is_none() {
            errors.add("conf", "missing protocol [grpc|http|tcp] configuration");
        }
        if let Some(http) = &c.http {
            if *http == RetryHttp::default() {
                errors.add("conf.http", "field cannot be empty");
            }
            if http.num_retries == Some(0) {
                errors.add("conf.http.numRetries", "has to be greater than 0 when defined");
            }
            positive_duration_when_set(&mut errors, "conf.http.perTryTimeout", http.per_try_timeout);
            validate_back_off(&mut errors, "conf.http.backOff", &http.back_off);
            for (i, code) in http.retriable_status_codes.iter().enumerate() {
                status_code(&mut errors, format!("conf.http.retriableStatusCodes[{i}]"), *code);
            }
            check_enum_values(&mut errors, "conf.http.retriableMethods", &http.retriable_methods, &HTTP_METHODS);
            check_enum_values(&mut errors, "conf.http.retryOn", &http.retry_on, &HTTP_RETRY_ON);
            if let Some(i) = http.retry_on.iter().position(|r| r == "retriable_status_codes") {
                if http.retriable_status_codes.is_empty() {
                    errors.add(
                        format!("conf.http.retryOn[{i}]"),
                        "retriableStatusCodes cannot be empty when this option is specified",
                    );
                }
            }
        }
        if let Some(grpc) = &c.grpc {
            if *grpc == RetryGrpc::default() {
                errors.add("conf.grpc", "field cannot be empty");
            }
            if grpc.num_retries == Some(0) {
                errors.add("conf.grpc.numRetries", "has to be greater than 0 when defined");
            }
            positive_duration_when_set(&mut errors, "conf.grpc.perTryTimeout", grpc.per_try_timeout);
            validate_back_off(&mut errors, "conf.grpc.backOff", &grpc.back_off);
            check_enum_values(&mut errors, "conf.grpc.retryOn", &grpc.retry_on, &GRPC_RETRY_ON);
        }
        if let Some(tcp) = &c.tcp {
            if tcp.max_connect_attempts == 0 {
                errors.add("conf.tcp.maxConnectAttempts", "has to be greater than 0");
            }
        }
        errors.into_result()
    }
}

impl OldStylePolicy for RetrySpec {
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
    fn retry_round_trips() {
        assert_round_trip(with_conf(
            "Retry",
            json!({
                "http": {
                    "numRetries": 5, "perTryTimeout": "0.200s",
                    "backOff": {"baseInterval": "0.020s", "maxInterval": "1s"},
                    "retriableStatusCodes": [500, 504], "retriableMethods": ["GET", "DELETE"],
                    "retryOn": ["all_5xx", "retriable_status_codes"]
                },
                "grpc": {"retryOn": ["cancelled", "unavailable"], "numRetries": 5, "perTryTimeout": "0.200s",
                         "backOff": {"baseInterval": "0.020s"}},
                "tcp": {"maxConnectAttempts": 5}
            }),
        ));
    }

    #[test]
    fn retry_rules() {
        assert_violation(with_conf("Retry", json!({})), "conf", "missing protocol [grpc|http|tcp] configuration");
        assert_violation(with_conf("Retry", json!({"http": {}})), "conf.http", "field cannot be empty");
        assert_violation(with_conf("Retry", json!({"grpc": {}})), "conf.grpc", "field cannot be empty");
        assert_violation(
            with_conf("Retry", json!({"http": {"numRetries": 0}})),
            "conf.http.numRetries",
            "greater than 0",
        );
        assert_violation(
            with_conf("Retry", json!({"grpc": {"numRetries": 0}})),
            "conf.grpc.numRetries",
            "greater than 0",
        );
        assert_violation(
            with_conf("Retry", json!({"http": {"perTryTimeout": "0s"}})),
            "conf.http.perTryTimeout",
            "greater than 0",
        );
        assert_violation(
            with_conf("Retry", json!({"grpc": {"perTryTimeout": "0s"}})),
            "conf.grpc.perTryTimeout",
            "greater than 0",
        );
        assert_violation(
            with_conf("Retry", json!({"http": {"backOff": {}}})),
            "conf.http.backOff.baseInterval",
            "has to be defined",
        );
        assert_violation(
            with_conf("Retry", json!({"grpc": {"backOff": {"baseInterval": "1s", "maxInterval": "0s"}}})),
            "conf.grpc.backOff.maxInterval",
            "greater than 0",
        );
        assert_violation(
            with_conf("Retry", json!({"http": {"backOff": {"baseInterval": "2s", "maxInterval": "1s"}}})),
            "conf.http.backOff.maxInterval",
            "baseInterval",
        );
        assert_violation(
            with_conf("Retry", json!({"http": {"retriableStatusCodes": [99]}})),
            "conf.http.retriableStatusCodes[0]",
            "99",
        );
        assert_violation(
            with_conf("Retry", json!({"http": {"retriableMethods": ["FETCH"]}})),
            "conf.http.retriableMethods[0]",
            "\"FETCH\"",
        );
        assert_violation(with_conf("Retry", json!({"http": {"retryOn": ["5xx"]}})), "conf.http.retryOn[0]", "\"5xx\"");
        assert_violation(
            with_conf("Retry", json!({"http": {"retryOn": ["reset", "retriable_status_codes"]}})),
            "conf.http.retryOn[1]",
            "retriableStatusCodes cannot be empty",
        );
        assert_violation(
            with_conf("Retry", json!({"grpc": {"retryOn": ["cancelled", "cancelled"]}})),
            "conf.grpc.retryOn[1]",
            "repeated value \"cancelled\"",
        );
        assert_violation(
            with_conf("Retry", json!({"grpc": {"retryOn": ["oops"]}})),
            "conf.grpc.retryOn[0]",
            "\"oops\"",
        );
        assert_violation(with_conf("Retry", json!({"tcp": {}})), "conf.tcp.maxConnectAttempts", "greater than 0");
        assert_violation(with_conf("Retry", json!({"udp": {}})), "conf.udp", "unknown field `udp`");
    }
}
