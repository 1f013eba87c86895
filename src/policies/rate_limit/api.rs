//! Kuma's old-style RateLimit (`rate_limit.proto`): a local token bucket per source on the
//! inbounds its destinations select.
//!
//! Validation follows Kuma's `rate_limit_validator.go`, plus what Envoy would otherwise refuse
//! (an empty bucket, a fill interval under 50 ms, a status Envoy does not know).
//!
//! Only the inbound side is implemented: Kuma also applies a RateLimit on the outbound to an
//! ExternalService, and higuma has no ExternalServices yet.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::selector::{validate_selectors, Selector};
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};

/// Envoy refuses token buckets refilled more often than this.
pub const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<RateLimitConf>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<RateLimitHttp>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitHttp {
    /// Requests allowed per `interval`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_rate_limit: Option<OnRateLimit>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnRateLimit {
    /// The status of a limited request (Envoy's default: 429).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderKv>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderKv {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub append: Option<bool>,
}

/// A status Envoy's `type.v3.StatusCode` has (it refuses any other).
pub fn envoy_status(code: u32) -> bool {
    use protobuf::Enum;
    code != 0 && i32::try_from(code).is_ok_and(|c| crate::envoy::http_status::StatusCode::from_i32(c).is_some())
}

/// `status`, when set, must be one Envoy knows.
pub fn check_status(errors: &mut ValidationError, field: &str, status: Option<u32>) {
    if let Some(s) = status.filter(|s| !envoy_status(*s)) {
        errors.add(field, format!("must be an HTTP status code Envoy knows, got {s}"));
    }
}

/// A fill interval: set and at least [`MIN_FILL_INTERVAL`].
pub fn check_interval(errors: &mut ValidationError, field: &str, interval: Option<ProtoDuration>, missing: &str) {
    match interval {
        None => errors.add(field, missing),
        Some(d) if d.0 < MIN_FILL_INTERVAL => {
            errors.add(field, format!("must be greater than or equal to 50ms, got {d}"))
        }
        Some(_) => {}
    }
}

impl SpecType for RateLimitSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_selectors("sources", &self.sources, false);
        errors.add_nested("", validate_selectors("destinations", &self.destinations, false));
        let Some(conf) = &self.conf else {
            errors.add("conf", "must have conf");
            return errors.into_result();
        };
        if let Some(http) = &conf.http {
            match http.requests {
                None => errors.add("conf.http.requests", "requests must be set"),
                Some(0) => errors.add("conf.http.requests", "must be greater than 0"),
                Some(_) => {}
            }
            check_interval(&mut errors, "conf.http.interval", http.interval, "interval must be set");
            if let Some(on) = &http.on_rate_limit {
                check_status(&mut errors, "conf.http.onRateLimit.status", on.status);
                for (i, h) in on.headers.iter().enumerate() {
                    let at = format!("conf.http.onRateLimit.headers[{i}]");
                    if h.key.is_empty() {
                        errors.add(format!("{at}.key"), "key must be set");
                    }
                    if h.value.is_empty() {
                        errors.add(format!("{at}.value"), "value must be set");
                    }
                }
            }
        }
        errors.into_result()
    }
}

impl OldStylePolicy for RateLimitSpec {
    fn attachment(&self) -> Attachment {
        Attachment::InboundAll
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
    use crate::policies::core::testing::*;
    use serde_json::json;

    fn rl(conf: serde_json::Value) -> serde_json::Value {
        policy("RateLimit", json!({"sources": svc("web"), "destinations": svc("backend"), "conf": conf}))
    }

    #[test]
    fn kumas_example_round_trips() {
        assert_round_trip(rl(json!({"http": {"requests": 100, "interval": "2s", "onRateLimit": {
            "status": 404, "headers": [{"key": "x-rate-limited", "value": "true", "append": false}]
        }}})));
    }

    #[test]
    fn conf_rules() {
        assert_violation(
            policy("RateLimit", json!({"sources": svc("web"), "destinations": svc("backend")})),
            "conf",
            "must have conf",
        );
        assert_violation(rl(json!({"http": {"interval": "1s"}})), "conf.http.requests", "requests must be set");
        assert_violation(
            rl(json!({"http": {"requests": 0, "interval": "1s"}})),
            "conf.http.requests",
            "greater than 0",
        );
        assert_violation(rl(json!({"http": {"requests": 5}})), "conf.http.interval", "interval must be set");
        assert_violation(rl(json!({"http": {"requests": 5, "interval": "10ms"}})), "conf.http.interval", "50ms");
        assert_violation(
            rl(json!({"http": {"requests": 5, "interval": "1s", "onRateLimit": {"status": 299}}})),
            "conf.http.onRateLimit.status",
            "299",
        );
        assert_violation(
            rl(json!({"http": {"requests": 5, "interval": "1s", "onRateLimit": {"headers": [{"value": "v"}]}}})),
            "conf.http.onRateLimit.headers[0].key",
            "key must be set",
        );
        assert_violation(
            rl(json!({"http": {"requests": 5, "interval": "1s", "onRateLimit": {"headers": [{"key": "k"}]}}})),
            "conf.http.onRateLimit.headers[0].value",
            "value must be set",
        );
    }
}
