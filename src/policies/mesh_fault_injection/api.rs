//! Kuma's MeshFaultInjection (`meshfaultinjection/api/v1alpha1`): per client subset (`from`),
//! a list of HTTP faults (abort, delay, response bandwidth) on the inbounds the top-level
//! targetRef selects.
//!
//! Validation follows Kuma's `validator.go` (2.4 kinds), with field paths naming the fault
//! where Kuma's put the list index after the fault's name (`http.abort[0]`), and the limits
//! Envoy enforces (a delay above zero, an abort status from 200).

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};
use crate::policies::fault_injection::api::known_abort_status;
use crate::policies::fault_injection::plugin::{kbps_of, Fraction};

const SUBSETS: &[TargetKind] =
    &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset];

const ALLOWED: Allowed = Allowed { top: SUBSETS, to: &[], from: SUBSETS, require_entries: false };

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshFaultInjectionSpec(pub ToFromPolicy<Conf>);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Vec<FaultConf>>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<AbortConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<DelayConf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bandwidth: Option<ResponseBandwidthConf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AbortConf {
    pub http_status: u32,
    pub percentage: IntOrString,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DelayConf {
    pub value: ProtoDuration,
    pub percentage: IntOrString,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseBandwidthConf {
    /// `<n>kbps`, `<n>mbps` or `<n>gbps`.
    pub limit: String,
    pub percentage: IntOrString,
}

/// Kubernetes' `IntOrString`, as Kuma's percentages: `50` or `"12.5"`, written back as given.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl IntOrString {
    /// As a fraction of 100 %, if it is one.
    pub fn fraction(&self) -> Option<Fraction> {
        match self {
            IntOrString::Int(n) => Fraction::parse(&n.to_string()),
            IntOrString::String(s) => Fraction::parse(s),
        }
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(n) => write!(f, "{n}"),
            IntOrString::String(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for IntOrString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            IntOrString::Int(n) => s.serialize_i64(*n),
            IntOrString::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a decimal as a string (\"12.5\")")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v).map(IntOrString::Int).map_err(|_| E::custom(format!("{v} is too large")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn percentage(errors: &mut ValidationError, field: String, p: &IntOrString) {
    if p.fraction().is_none() {
        errors.add(field, format!("has to be in [0.0 - 100.0] range, got {p}"));
    }
}

impl Conf {
    fn validate(&self, errors: &mut ValidationError, at: &str) {
        for (i, fault) in self.http.iter().flatten().enumerate() {
            let at = format!("{at}.http[{i}]");
            if let Some(a) = &fault.abort {
                if !known_abort_status(a.http_status) {
                    errors.add(
                        format!("{at}.abort.httpStatus"),
                        format!("must be an HTTP status code in [200, 599], got {}", a.http_status),
                    );
                }
                percentage(errors, format!("{at}.abort.percentage"), &a.percentage);
            }
            if let Some(d) = &fault.delay {
                if d.value.is_zero() {
                    errors.add(format!("{at}.delay.value"), "must be greater than 0");
                }
                percentage(errors, format!("{at}.delay.percentage"), &d.percentage);
            }
            if let Some(b) = &fault.response_bandwidth {
                if kbps_of(&b.limit).is_none() {
                    errors.add(
                        format!("{at}.responseBandwidth.limit"),
                        format!("has to be in kbps/mbps/gbps units, got {:?}", b.limit),
                    );
                }
                percentage(errors, format!("{at}.responseBandwidth.percentage"), &b.percentage);
            }
        }
    }
}

impl SpecType for MeshFaultInjectionSpec {
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

    fn mfi(from: Value) -> Value {
        policy(
            "MeshFaultInjection",
            json!({"spec": {"targetRef": {"kind": "MeshService", "name": "backend"}, "from": from}}),
        )
    }

    fn from_web(http: Value) -> Value {
        mfi(json!([{"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"http": http}}]))
    }

    #[test]
    fn kumas_example_round_trips() {
        assert_spec_round_trip(from_web(json!([{
            "abort": {"httpStatus": 500, "percentage": 50},
            "delay": {"value": "5s", "percentage": "50.5"},
            "responseBandwidth": {"limit": "50mbps", "percentage": 50}
        }])));
    }

    #[test]
    fn faults_name_their_field() {
        assert_violation(
            from_web(json!([{"abort": {"httpStatus": 700, "percentage": 50}}])),
            "spec.from[0].default.http[0].abort.httpStatus",
            "700",
        );
        assert_violation(
            from_web(json!([{}, {"abort": {"httpStatus": 500, "percentage": "150"}}])),
            "spec.from[0].default.http[1].abort.percentage",
            "\"150\"",
        );
        assert_violation(
            from_web(json!([{"delay": {"value": "0s", "percentage": 5}}])),
            "spec.from[0].default.http[0].delay.value",
            "greater than 0",
        );
        assert_violation(
            from_web(json!([{"responseBandwidth": {"limit": "fast", "percentage": 5}}])),
            "spec.from[0].default.http[0].responseBandwidth.limit",
            "kbps/mbps/gbps",
        );
        assert_violation(
            from_web(json!([{"abort": {"percentage": 5}}])),
            "spec.from[0].default.http[0].abort",
            "httpStatus",
        );
        assert_violation(
            from_web(json!([{"abort": {"httpStatus": 500, "percentage": 12.5}}])),
            "spec.from[0].default.http[0].abort.percentage",
            "decimal as a string",
        );
    }

    #[test]
    fn kinds() {
        assert_violation(
            policy(
                "MeshFaultInjection",
                json!({"spec": {"targetRef": {"kind": "MeshGateway", "name": "gw"}, "from": []}}),
            ),
            "spec.targetRef.kind",
            "not supported",
        );
        assert_violation(
            policy("MeshFaultInjection", json!({"spec": {"to": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}})),
            "spec.to",
            "must not be defined",
        );
    }
}
