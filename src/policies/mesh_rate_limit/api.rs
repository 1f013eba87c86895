//! Kuma's MeshRateLimit (`meshratelimit/api/v1alpha1`): local token buckets for the requests
//! (`http.requestRate`) and connections (`tcp.connectionRate`) of the inbounds the top-level
//! targetRef selects, from every client (`from` takes only `Mesh`).
//!
//! Validation follows Kuma's `validator.go` (2.4 kinds), plus a status Envoy knows.

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};
use crate::policies::rate_limit::api::{check_interval, check_status};

const ALLOWED: Allowed = Allowed {
    top: &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset],
    to: &[],
    from: &[TargetKind::Mesh],
    require_entries: true,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshRateLimitSpec(pub ToFromPolicy<Conf>);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<Local>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Local {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<LocalHttp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<LocalTcp>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_rate: Option<Rate>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_rate_limit: Option<OnRateLimit>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalTcp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_rate: Option<Rate>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rate {
    #[serde(default)]
    pub num: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OnRateLimit {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderModifier>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Replace any value the response has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<Header>,
    /// Add to the values the response has.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<Header>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Header {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

fn rate(errors: &mut ValidationError, at: &str, r: &Rate) {
    if r.num == 0 {
        errors.add(format!("{at}.num"), "must be greater than 0");
    }
    check_interval(errors, &format!("{at}.interval"), r.interval, "must be defined");
}

impl Conf {
    fn validate(&self, errors: &mut ValidationError, at: &str) {
        let at = format!("{at}.local");
        let Some(local) = &self.local else {
            errors.add(at, "must be defined");
            return;
        };
        if local.http.is_none() && local.tcp.is_none() {
            errors.add(&at, "must have at least one defined: tcp, http");
        }
        if let Some(http) = &local.http {
            let at = format!("{at}.http");
            if *http == LocalHttp::default() {
                errors.add(&at, "must have at least one defined: disabled, requestRate, onRateLimit");
            }
            if let Some(r) = &http.request_rate {
                rate(errors, &format!("{at}.requestRate"), r);
            }
            if let Some(on) = &http.on_rate_limit {
                check_status(errors, &format!("{at}.onRateLimit.status"), on.status);
                let headers = on.headers.iter().flat_map(|h| {
                    h.set
                        .iter()
                        .enumerate()
                        .map(|(i, x)| ("set", i, x))
                        .chain(h.add.iter().enumerate().map(|(i, x)| ("add", i, x)))
                });
                for (list, i, h) in headers {
                    if h.name.is_empty() {
                        errors.add(format!("{at}.onRateLimit.headers.{list}[{i}].name"), "must not be empty");
                    }
                }
            }
        }
        if let Some(tcp) = &local.tcp {
            let at = format!("{at}.tcp");
            if *tcp == LocalTcp::default() {
                errors.add(&at, "must have at least one defined: disabled, connectionRate");
            }
            if let Some(r) = &tcp.connection_rate {
                rate(errors, &format!("{at}.connectionRate"), r);
            }
        }
    }
}

impl SpecType for MeshRateLimitSpec {
    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        for (at, conf) in self.0.defaults() {
            conf.validate(&mut errors, &at);
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    fn mrl(default: Value) -> Value {
        policy(
            "MeshRateLimit",
            json!({"spec": {"targetRef": {"kind": "MeshService", "name": "backend"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": default}]}}),
        )
    }

    #[test]
    fn kumas_example_round_trips() {
        assert_spec_round_trip(mrl(json!({"local": {
            "http": {"requestRate": {"num": 100, "interval": "10s"}, "onRateLimit": {"status": 423,
                "headers": {"set": [{"name": "x-kuma-rate-limited", "value": "true"}], "add": [{"name": "x-a", "value": "1"}]}}},
            "tcp": {"connectionRate": {"num": 10, "interval": "1s"}}
        }})));
    }

    #[test]
    fn conf_rules() {
        assert_violation(mrl(json!({})), "spec.from[0].default.local", "must be defined");
        assert_violation(mrl(json!({"local": {}})), "spec.from[0].default.local", "at least one defined: tcp, http");
        assert_violation(
            mrl(json!({"local": {"http": {}}})),
            "spec.from[0].default.local.http",
            "disabled, requestRate",
        );
        assert_violation(
            mrl(json!({"local": {"http": {"requestRate": {"num": 0, "interval": "1s"}}}})),
            "spec.from[0].default.local.http.requestRate.num",
            "greater than 0",
        );
        assert_violation(
            mrl(json!({"local": {"tcp": {"connectionRate": {"num": 1, "interval": "10ms"}}}})),
            "spec.from[0].default.local.tcp.connectionRate.interval",
            "50ms",
        );
        assert_violation(
            mrl(json!({"local": {"http": {"onRateLimit": {"status": 1}}}})),
            "spec.from[0].default.local.http.onRateLimit.status",
            "got 1",
        );
        assert_violation(
            mrl(json!({"local": {"http": {"onRateLimit": {"headers": {"add": [{"value": "v"}]}}}}})),
            "spec.from[0].default.local.http.onRateLimit.headers.add[0].name",
            "must not be empty",
        );
    }

    #[test]
    fn kinds() {
        assert_violation(
            policy("MeshRateLimit", json!({"spec": {"targetRef": {"kind": "Mesh"}}})),
            "spec.from",
            "needs at least one item",
        );
        assert_violation(
            policy(
                "MeshRateLimit",
                json!({"spec": {"from": [{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"local": {"tcp": {"disabled": true}}}}]}}),
            ),
            "spec.from[0].targetRef.kind",
            "not supported",
        );
    }
}
