//! Kuma's old-style FaultInjection (`fault_injection.proto`): delays, aborts and response
//! bandwidth limits injected on the inbounds its destinations select, for requests from the
//! sources it names.
//!
//! Validation follows Kuma's `fault_injection_validator.go`.

use serde::{Deserialize, Serialize};

use super::plugin::{kbps_of, Fraction};
use crate::model::duration::ProtoDuration;
use crate::model::selector::{key_path, validate_selectors, Selector, PROTOCOL_TAG};
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};

/// The protocols a FaultInjection destination may name: the fault filter is an HTTP filter.
const PROTOCOLS: [&str; 3] = ["http", "http2", "grpc"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: FaultInjectionConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjectionConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<Delay>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<Abort>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_bandwidth: Option<ResponseBandwidth>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delay {
    /// 0..100, fractions allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Abort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseBandwidth {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
    /// `<n>kbps`, `<n>mbps` or `<n>gbps` (a space before the unit allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<String>,
}

/// Statuses Go's `http.StatusText` knows (Kuma's check), from 200 on: Envoy's abort filter
/// refuses anything below 200.
pub fn known_abort_status(code: u32) -> bool {
    matches!(code,
        200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451
        | 500..=508 | 510 | 511)
}

fn percentage(errors: &mut ValidationError, field: &str, p: Option<f64>) {
    match p {
        None => errors.add(format!("{field}.percentage"), "cannot be empty"),
        Some(p) if !(0.0..=100.0).contains(&p) || Fraction::of_f64(p).is_none() => {
            errors.add(format!("{field}.percentage"), format!("has to be in [0.0 - 100.0] range, got {p}"))
        }
        Some(_) => {}
    }
}

impl SpecType for FaultInjectionSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_selectors("sources", &self.sources, false);
        errors.add_nested("", validate_selectors("destinations", &self.destinations, false));
        for (i, d) in self.destinations.iter().enumerate() {
            let at = format!("destinations[{i}].match");
            match d.match_.get(PROTOCOL_TAG) {
                None if d.match_.is_empty() => {} // reported above
                None => errors.add(at, "protocol must be specified"),
                Some(p) if !PROTOCOLS.contains(&p.as_str()) => errors.add(
                    format!("{at}{}", key_path(PROTOCOL_TAG)),
                    format!("must be one of the [{}], got {p:?}", PROTOCOLS.join(", ")),
                ),
                Some(_) => {}
            }
        }
        let c = &self.conf;
        if c.delay.is_none() && c.abort.is_none() && c.response_bandwidth.is_none() {
            errors.add("conf", "must have at least one of the faults configured");
        }
        if let Some(d) = &c.delay {
            percentage(&mut errors, "conf.delay", d.percentage);
            match d.value {
                None => errors.add("conf.delay.value", "cannot be empty"),
                // Envoy refuses a zero fixed delay.
                Some(v) if v.is_zero() => errors.add("conf.delay.value", "must have a positive value"),
                Some(_) => {}
            }
        }
        if let Some(a) = &c.abort {
            percentage(&mut errors, "conf.abort", a.percentage);
            match a.http_status {
                None => errors.add("conf.abort.httpStatus", "cannot be empty"),
                Some(s) if !known_abort_status(s) => {
                    errors.add("conf.abort.httpStatus", format!("http status code is incorrect: {s}"))
                }
                Some(_) => {}
            }
        }
        if let Some(b) = &c.response_bandwidth {
            percentage(&mut errors, "conf.responseBandwidth", b.percentage);
            match &b.limit {
                None => errors.add("conf.responseBandwidth.limit", "cannot be empty"),
                Some(l) if kbps_of(l).is_none() => {
                    errors.add("conf.responseBandwidth.limit", format!("has to be in kbps/mbps/gbps units, got {l:?}"))
                }
                Some(_) => {}
            }
        }
        errors.into_result()
    }
}

impl OldStylePolicy for FaultInjectionSpec {
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

    fn fi(conf: serde_json::Value) -> serde_json::Value {
        policy(
            "FaultInjection",
            json!({
                "sources": svc("web"),
                "destinations": [{"match": {"kuma.io/service": "backend", "kuma.io/protocol": "http"}}],
                "conf": conf
            }),
        )
    }

    #[test]
    fn kumas_example_round_trips() {
        assert_round_trip(fi(json!({
            "delay": {"percentage": 50.5, "value": "5s"},
            "abort": {"percentage": 10.0, "httpStatus": 503},
            "responseBandwidth": {"percentage": 50.0, "limit": "50 mbps"}
        })));
    }

    #[test]
    fn destinations_need_an_http_protocol_tag() {
        let conf = json!({"abort": {"percentage": 100, "httpStatus": 500}});
        assert_violation(
            policy(
                "FaultInjection",
                json!({"sources": svc("web"), "destinations": svc("backend"), "conf": conf.clone()}),
            ),
            "destinations[0].match",
            "protocol must be specified",
        );
        assert_violation(
            policy(
                "FaultInjection",
                json!({"sources": svc("web"), "destinations": [{"match": {"kuma.io/service": "b", "kuma.io/protocol": "tcp"}}], "conf": conf}),
            ),
            "destinations[0].match[\"kuma.io/protocol\"]",
            "must be one of the [http, http2, grpc]",
        );
    }

    #[test]
    fn faults_and_their_fields() {
        assert_violation(fi(json!({})), "conf", "at least one of the faults");
        assert_violation(fi(json!({"delay": {"value": "1s"}})), "conf.delay.percentage", "cannot be empty");
        assert_violation(fi(json!({"delay": {"percentage": 10}})), "conf.delay.value", "cannot be empty");
        assert_violation(fi(json!({"delay": {"percentage": 10, "value": "0s"}})), "conf.delay.value", "positive");
        assert_violation(fi(json!({"abort": {"percentage": 101, "httpStatus": 500}})), "conf.abort.percentage", "101");
        assert_violation(fi(json!({"abort": {"percentage": 1, "httpStatus": 999}})), "conf.abort.httpStatus", "999");
        assert_violation(fi(json!({"abort": {"percentage": 1, "httpStatus": 100}})), "conf.abort.httpStatus", "100");
        assert_violation(fi(json!({"abort": {"percentage": 1}})), "conf.abort.httpStatus", "cannot be empty");
        assert_violation(
            fi(json!({"responseBandwidth": {"percentage": 1, "limit": "fast"}})),
            "conf.responseBandwidth.limit",
            "\"fast\"",
        );
        assert_violation(
            fi(json!({"responseBandwidth": {"percentage": 1, "limit": "10bps"}})),
            "conf.responseBandwidth.limit",
            "kbps/mbps/gbps",
        );
        assert_violation(fi(json!({"abort": {"percentage": "ten", "httpStatus": 500}})), "conf.abort.percentage", "");
    }

    #[test]
    fn sources_need_only_a_tag() {
        let conf = json!({"abort": {"percentage": 100, "httpStatus": 500}});
        let dest = json!([{"match": {"kuma.io/service": "b", "kuma.io/protocol": "http"}}]);
        assert!(crate::model::rest::from_json(policy(
            "FaultInjection",
            json!({"sources": [{"match": {"version": "2"}}], "destinations": dest, "conf": conf})
        ))
        .is_ok());
        assert_violation(
            policy("FaultInjection", json!({"sources": [], "destinations": dest, "conf": conf})),
            "sources",
            "at least one element",
        );
    }
}
