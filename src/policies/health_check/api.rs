//! Kuma's old-style HealthCheck (`health_check.proto`): active health checks on the clusters
//! of the destinations.
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
pub struct HealthCheckSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: HealthCheckConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub unhealthy_threshold: u32,
    #[serde(default, skip_serializing_if = "is_zero_u32")]
    pub healthy_threshold: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_jitter: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter_percent: Option<u32>,
    /// Percentage 0..100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_traffic_on_panic: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_log_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub always_log_health_check_failures: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub no_traffic_interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reuse_connection: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<HealthCheckTcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HealthCheckHttp>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckTcp {
    /// Base64 bytes (a protobuf BytesValue), sent after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Base64 byte strings expected in the response.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub receive: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckHttp {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<HeaderValueOption>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u32>,
}

/// `{header: {key, value}, append}` (Kuma's `HealthCheck.Conf.Http.HeaderValueOption`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderValueOption {
    /// Required; `None` only so that a missing header is reported as Kuma does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderKeyValue>,
    /// Add beside existing values (`true`) or replace them (absent or `false`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderKeyValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

/// Standard base64, as protobuf JSON writes `bytes`.
pub(crate) fn decode_base64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

impl SpecType for HealthCheckSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let c = &self.conf;
        require_positive_duration(&mut errors, "conf.interval", c.interval);
        require_positive_duration(&mut errors, "conf.timeout", c.timeout);
        if c.unhealthy_threshold == 0 {
            errors.add("conf.unhealthyThreshold", "must have a positive value");
        }
        if c.healthy_threshold == 0 {
            errors.add("conf.healthyThreshold", "must have a positive value");
        }
        positive_duration_when_set(&mut errors, "conf.initialJitter", c.initial_jitter);
        positive_duration_when_set(&mut errors, "conf.intervalJitter", c.interval_jitter);
        positive_duration_when_set(&mut errors, "conf.noTrafficInterval", c.no_traffic_interval);
        percentage_u32(&mut errors, "conf.intervalJitterPercent", c.interval_jitter_percent);
        if let Some(p) = c.healthy_panic_threshold {
            if !(0.0..=100.0).contains(&p) {
                errors.add("conf.healthyPanicThreshold", format!("must be in range [0.0 - 100.0], got {p}"));
            }
        }
        if c.tcp.is_some() && c.http.is_some() {
            errors.add("conf", "http and tcp cannot be defined at the same time");
        }
        if let Some(tcp) = &c.tcp {
            // protobuf JSON refuses such `bytes` while decoding; the decoded bytes are what
            // Envoy sends and expects.
            if let Some(send) = tcp.send.as_deref().filter(|s| decode_base64(s).is_none()) {
                errors.add("conf.tcp.send", format!("must be base64-encoded bytes, got {send:?}"));
            }
            for (i, r) in tcp.receive.iter().enumerate() {
                if decode_base64(r).is_none() {
                    errors.add(format!("conf.tcp.receive[{i}]"), format!("must be base64-encoded bytes, got {r:?}"));
                }
            }
        }
        if let Some(http) = &c.http {
            if http.path.is_empty() {
                errors.add("conf.http.path", "has to be defined and cannot be empty");
            } else if !http.path.starts_with('/') {
                errors.add("conf.http.path", format!("must start with \"/\", got {:?}", http.path));
            }
            for (i, code) in http.expected_statuses.iter().enumerate() {
                status_code(&mut errors, format!("conf.http.expectedStatuses[{i}]"), *code);
            }
            for (i, h) in http.request_headers_to_add.iter().enumerate() {
                let field = format!("conf.http.requestHeadersToAdd[{i}].header");
                match &h.header {
                    None => errors.add(field, "has to be defined"),
                    Some(kv) if kv.key.is_empty() => errors.add(format!("{field}.key"), "cannot be empty"),
                    Some(_) => {}
                }
            }
        }
        errors.into_result()
    }
}

impl OldStylePolicy for HealthCheckSpec {
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

    const DOCS_HEALTH_CHECK: &str = r#"
type: HealthCheck
name: web-to-backend-check
mesh: default
sources:
- match:
    kuma.io/service: web
destinations:
- match:
    kuma.io/service: backend
conf:
  interval: 10s
  timeout: 2s
  unhealthyThreshold: 3
  healthyThreshold: 1
  http:
    path: /health
    expectedStatuses: [200, 201]
"#;

    #[test]
    fn health_check_docs_example() {
        assert_round_trip(parse_document(DOCS_HEALTH_CHECK).unwrap());
        let env = from_json(parse_document(DOCS_HEALTH_CHECK).unwrap()).unwrap();
        let crate::model::Spec::HealthCheck(hc) = env.spec else { panic!() };
        assert_eq!(hc.conf.interval, Some(ProtoDuration::from_secs(10)));
        assert_eq!(hc.conf.http.unwrap().expected_statuses, [200, 201]);
    }

    #[test]
    fn health_check_full_round_trip() {
        assert_round_trip(with_conf(
            "HealthCheck",
            json!({
                "interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1,
                "initialJitter": "0.500s", "intervalJitter": "1s", "intervalJitterPercent": 10,
                "healthyPanicThreshold": 60.5, "failTrafficOnPanic": true, "eventLogPath": "/tmp/hc.log",
                "alwaysLogHealthCheckFailures": true, "noTrafficInterval": "30s", "reuseConnection": false,
                "tcp": {"send": "Zm9v", "receive": ["YmFy"]}
            }),
        ));
    }

    #[test]
    fn http_request_headers_are_typed_and_round_trip() {
        let v = with_conf(
            "HealthCheck",
            json!({"interval": "1s", "timeout": "1s", "unhealthyThreshold": 1, "healthyThreshold": 1,
                "http": {"path": "/h", "requestHeadersToAdd": [{"header": {"key": "a", "value": "1"}, "append": true}]}}),
        );
        assert_round_trip(v.clone());
        let crate::model::Spec::HealthCheck(hc) = from_json(v).unwrap().spec else { panic!() };
        let h = &hc.conf.http.unwrap().request_headers_to_add[0];
        assert_eq!((h.header.as_ref().map(|kv| kv.key.as_str()), h.append), (Some("a"), Some(true)));
    }

    fn hc(conf: Value) -> Value {
        let mut base = json!({"interval": "10s", "timeout": "2s", "unhealthyThreshold": 3, "healthyThreshold": 1});
        base.as_object_mut().unwrap().extend(conf.as_object().unwrap().clone());
        with_conf("HealthCheck", base)
    }

    #[test]
    fn health_check_rules() {
        assert!(from_json(hc(json!({}))).is_ok());
        let missing = with_conf("HealthCheck", json!({}));
        assert_violation(missing.clone(), "conf.interval", "has to be defined");
        assert_violation(missing.clone(), "conf.timeout", "has to be defined");
        assert_violation(missing.clone(), "conf.unhealthyThreshold", "positive");
        assert_violation(missing, "conf.healthyThreshold", "positive");
        assert_violation(hc(json!({"interval": "0s"})), "conf.interval", "positive");
        assert_violation(hc(json!({"timeout": "0s"})), "conf.timeout", "positive");
        assert_violation(hc(json!({"unhealthyThreshold": 0})), "conf.unhealthyThreshold", "positive");
        assert_violation(hc(json!({"initialJitter": "0s"})), "conf.initialJitter", "greater than 0");
        assert_violation(hc(json!({"intervalJitter": "0s"})), "conf.intervalJitter", "greater than 0");
        assert_violation(hc(json!({"noTrafficInterval": "0s"})), "conf.noTrafficInterval", "greater than 0");
        assert_violation(hc(json!({"intervalJitterPercent": 101})), "conf.intervalJitterPercent", "[0 - 100]");
        assert_violation(hc(json!({"healthyPanicThreshold": 100.1})), "conf.healthyPanicThreshold", "[0.0 - 100.0]");
        assert_violation(hc(json!({"healthyPanicThreshold": -1})), "conf.healthyPanicThreshold", "[0.0 - 100.0]");
        assert_violation(hc(json!({"http": {}})), "conf.http.path", "cannot be empty");
        assert_violation(hc(json!({"http": {"path": "health"}})), "conf.http.path", "must start with \"/\"");
        assert_violation(
            hc(json!({"http": {"path": "/h", "expectedStatuses": [200, 600]}})),
            "conf.http.expectedStatuses[1]",
            "600",
        );
        assert_violation(
            hc(json!({"http": {"path": "/h"}, "tcp": {}})),
            "conf",
            "http and tcp cannot be defined at the same time",
        );
        assert_violation(
            hc(json!({"http": {"path": "/h", "requestHeadersToAdd": [{"append": true}]}})),
            "conf.http.requestHeadersToAdd[0].header",
            "has to be defined",
        );
        assert_violation(
            hc(json!({"http": {"path": "/h", "requestHeadersToAdd": [{"header": {"value": "v"}}]}})),
            "conf.http.requestHeadersToAdd[0].header.key",
            "cannot be empty",
        );
        assert_violation(hc(json!({"tcp": {"send": "not base64!"}})), "conf.tcp.send", "\"not base64!\"");
        assert_violation(hc(json!({"tcp": {"receive": ["Zm9v", "%%"]}})), "conf.tcp.receive[1]", "base64");
        assert_violation(
            hc(json!({"http": {"path": "/h", "method": "GET"}})),
            "conf.http.method",
            "unknown field `method`",
        );
    }
}
