//! Kuma's MeshHealthCheck (`meshhealthcheck/api/v1alpha1`): active health checks of the
//! services a proxy calls, per `to` destination; `default` fields merge across policies
//! as Kuma's rules do, and unset ones take Kuma's defaults when resolved.
//!
//! Validation follows Kuma's `validator.go`; field paths are Kuma's
//! (`spec.to[0].default.http.expectedStatuses[1]`).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};
use crate::policies::health_check::api::decode_base64;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshHealthCheckSpec(pub ToFromPolicy<Conf>);

/// One `default`: every field optional, so rules can merge them field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_jitter: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval_jitter_percent: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_panic_threshold: Option<IntOrDecimal>,
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
    pub tcp: Option<TcpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpHealthCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheck>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    /// Base64 bytes sent after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<String>,
    /// Base64 blocks expected in the response, in order (not necessarily contiguous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers_to_add: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_statuses: Option<Vec<u32>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    /// Replace any value the request has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<HeaderKeyValue>>,
    /// Add beside existing values.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<HeaderKeyValue>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderKeyValue {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcHealthCheck {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
}

/// Kubernetes' IntOrString as Kuma uses it for decimals: `50` or `"12.5"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrDecimal {
    Int(i64),
    String(String),
}

impl IntOrDecimal {
    /// The value in thousandths (`"62.9"` is 62900), truncating finer digits; `None` when
    /// the string is not a plain decimal number.
    pub fn thousandths(&self) -> Option<i64> {
        match self {
            IntOrDecimal::Int(i) => i.checked_mul(1000),
            IntOrDecimal::String(s) => {
                let (negative, digits) = match s.strip_prefix('-') {
                    Some(rest) => (true, rest),
                    None => (false, s.as_str()),
                };
                let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
                let is_digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
                if whole.is_empty()
                    || !is_digits(whole)
                    || !is_digits(frac)
                    || (digits.contains('.') && frac.is_empty())
                {
                    return None;
                }
                let whole: i64 = whole.parse().ok()?;
                let frac: i64 = format!("{:0<3}", &frac[..frac.len().min(3)]).parse().ok()?;
                let v = whole.checked_mul(1000)?.checked_add(frac)?;
                Some(if negative { -v } else { v })
            }
        }
    }
}

impl fmt::Display for IntOrDecimal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrDecimal::Int(i) => write!(f, "{i}"),
            IntOrDecimal::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// Kuma's allowed kinds for MeshHealthCheck (no `from`: checks are outgoing requests).
const ALLOWED: Allowed = Allowed {
    top: &[
        TargetKind::Mesh,
        TargetKind::MeshSubset,
        TargetKind::MeshGateway,
        TargetKind::MeshService,
        TargetKind::MeshServiceSubset,
    ],
    to: &[TargetKind::Mesh, TargetKind::MeshService],
    from: &[],
    require_entries: false,
};

/// A percentage as IntOrDecimal: a number in [0, 100].
fn validate_percentage(errors: &mut ValidationError, field: &str, v: Option<&IntOrDecimal>) {
    let Some(v) = v else { return };
    match v.thousandths() {
        None => errors.add(field, format!("invalid number, got {v}")),
        Some(t) if !(0..=100_000).contains(&t) => {
            errors.add(field, format!("has to be in [0.0 - 100.0] range, got {v}"))
        }
        Some(_) => {}
    }
}

/// Kuma's `ValidateDurationGreaterThanZeroOrNil`.
pub(crate) fn positive_duration(errors: &mut ValidationError, field: &str, d: Option<ProtoDuration>) {
    if d.is_some_and(|d| d.is_zero()) {
        errors.add(field, "must be greater than 0");
    }
}

/// Kuma's `ValidateIntegerGreaterThanZeroOrNil`.
pub(crate) fn positive(errors: &mut ValidationError, field: &str, v: Option<u32>) {
    if v == Some(0) {
        errors.add(field, "must be greater than 0");
    }
}

impl Conf {
    fn validate(&self, errors: &mut ValidationError, path: &str) {
        let f = |name: &str| format!("{path}.{name}");
        positive_duration(errors, &f("interval"), self.interval);
        positive_duration(errors, &f("timeout"), self.timeout);
        positive(errors, &f("unhealthyThreshold"), self.unhealthy_threshold);
        positive(errors, &f("healthyThreshold"), self.healthy_threshold);
        positive_duration(errors, &f("initialJitter"), self.initial_jitter);
        positive_duration(errors, &f("intervalJitter"), self.interval_jitter);
        positive_duration(errors, &f("noTrafficInterval"), self.no_traffic_interval);
        if let Some(p) = self.interval_jitter_percent.filter(|p| *p > 100) {
            errors.add(f("intervalJitterPercent"), format!("has to be in [0 - 100] range, got {p}"));
        }
        validate_percentage(errors, &f("healthyPanicThreshold"), self.healthy_panic_threshold.as_ref());
        if self.event_log_path.as_deref().is_some_and(|p| p.trim().is_empty()) {
            errors.add(f("eventLogPath"), "must not be empty");
        }
        if let Some(tcp) = &self.tcp {
            if let Some(send) = tcp.send.as_deref().filter(|s| decode_base64(s).is_none()) {
                errors.add(f("tcp.send"), format!("must be base64-encoded bytes, got {send:?}"));
            }
            for (i, r) in tcp.receive.iter().flatten().enumerate() {
                if decode_base64(r).is_none() {
                    errors.add(f(&format!("tcp.receive[{i}]")), format!("must be base64-encoded bytes, got {r:?}"));
                }
            }
        }
        if let Some(http) = &self.http {
            if http.path.as_deref().is_some_and(str::is_empty) {
                errors.add(f("http.path"), "must be defined");
            }
            for (i, code) in http.expected_statuses.iter().flatten().enumerate() {
                if !(100..=599).contains(code) {
                    errors.add(
                        f(&format!("http.expectedStatuses[{i}]")),
                        format!("must be in range [100, 599], got {code}"),
                    );
                }
            }
            if let Some(h) = &http.request_headers_to_add {
                for (list, headers) in [("set", &h.set), ("add", &h.add)] {
                    for (i, kv) in headers.iter().flatten().enumerate() {
                        if kv.name.is_empty() {
                            errors.add(f(&format!("http.requestHeadersToAdd.{list}[{i}].name")), "must not be empty");
                        }
                    }
                }
            }
        }
        if self.http.is_none() && self.tcp.is_none() && self.grpc.is_none() {
            errors.add(path, "must have at least one defined: http, tcp, grpc");
        }
    }
}

impl SpecType for MeshHealthCheckSpec {
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
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    const DOCS_EXAMPLE: &str = r#"
type: MeshHealthCheck
name: web-to-backend-check
mesh: default
spec:
  targetRef:
    kind: Mesh
  to:
  - targetRef:
      kind: MeshService
      name: backend
    default:
      interval: 10s
      timeout: 2s
      unhealthyThreshold: 3
      healthyThreshold: 1
      healthyPanicThreshold: "62.9"
      failTrafficOnPanic: true
      http:
        path: /health
        expectedStatuses: [200, 201]
        requestHeadersToAdd:
          set:
          - name: x-a
            value: "1"
"#;

    fn mhc(default: Value) -> Value {
        policy(
            "MeshHealthCheck",
            json!({"spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": "b"}, "default": default}]}}),
        )
    }

    #[test]
    fn docs_example_round_trips() {
        let v = parse_document(DOCS_EXAMPLE).unwrap();
        assert_eq!(from_json(v.clone()).unwrap().spec.to_json(), v["spec"]);
        let env = from_json(v).unwrap();
        let crate::model::Spec::MeshHealthCheck(s) = env.spec else { panic!("not a MeshHealthCheck") };
        let conf = &s.0.to[0].default;
        assert_eq!(conf.healthy_panic_threshold.as_ref().and_then(IntOrDecimal::thousandths), Some(62_900));
        assert_eq!(conf.http.as_ref().and_then(|h| h.expected_statuses.clone()), Some(vec![200, 201]));
    }

    #[test]
    fn int_or_decimal_in_thousandths() {
        let t = |v: Value| serde_json::from_value::<IntOrDecimal>(v).unwrap().thousandths();
        assert_eq!(t(json!(50)), Some(50_000));
        assert_eq!(t(json!("12.5")), Some(12_500));
        assert_eq!(t(json!("0.0015")), Some(1));
        assert_eq!(t(json!("-1")), Some(-1000));
        for bad in ["", "1.", ".5", "1e3", "abc", "1.2.3"] {
            assert_eq!(t(json!(bad)), None, "{bad}");
        }
    }

    #[test]
    fn validation_names_kumas_paths() {
        assert!(from_json(mhc(json!({"tcp": {}}))).is_ok());
        let d = "spec.to[0].default";
        assert_violation(mhc(json!({})), d, "must have at least one defined: http, tcp, grpc");
        assert_violation(mhc(json!({"tcp": {}, "interval": "0s"})), &format!("{d}.interval"), "greater than 0");
        assert_violation(mhc(json!({"tcp": {}, "timeout": "0s"})), &format!("{d}.timeout"), "greater than 0");
        assert_violation(mhc(json!({"tcp": {}, "healthyThreshold": 0})), &format!("{d}.healthyThreshold"), "0");
        assert_violation(
            mhc(json!({"tcp": {}, "unhealthyThreshold": -1})),
            &format!("{d}.unhealthyThreshold"),
            "invalid value",
        );
        assert_violation(
            mhc(json!({"tcp": {}, "intervalJitterPercent": 120})),
            &format!("{d}.intervalJitterPercent"),
            "120",
        );
        assert_violation(
            mhc(json!({"tcp": {}, "healthyPanicThreshold": "100.5"})),
            &format!("{d}.healthyPanicThreshold"),
            "[0.0 - 100.0]",
        );
        assert_violation(
            mhc(json!({"tcp": {}, "healthyPanicThreshold": "half"})),
            &format!("{d}.healthyPanicThreshold"),
            "invalid number, got \"half\"",
        );
        assert_violation(mhc(json!({"http": {"path": ""}})), &format!("{d}.http.path"), "must be defined");
        assert_violation(
            mhc(json!({"http": {"expectedStatuses": [200, 600]}})),
            &format!("{d}.http.expectedStatuses[1]"),
            "600",
        );
        assert_violation(
            mhc(json!({"http": {"requestHeadersToAdd": {"add": [{"value": "x"}]}}})),
            &format!("{d}.http.requestHeadersToAdd.add[0].name"),
            "must not be empty",
        );
        assert_violation(mhc(json!({"tcp": {"send": "&&"}})), &format!("{d}.tcp.send"), "base64");
        assert_violation(mhc(json!({"grpc": {"port": 1}})), &format!("{d}.grpc.port"), "unknown field `port`");
    }

    #[test]
    fn allowed_kinds() {
        let to = |kind: &str| json!([{"targetRef": {"kind": kind, "name": "x"}, "default": {"tcp": {}}}]);
        assert_violation(
            policy("MeshHealthCheck", json!({"spec": {"to": to("MeshServiceSubset")}})),
            "spec.to[0].targetRef.kind",
            "not supported",
        );
        assert_violation(
            policy(
                "MeshHealthCheck",
                json!({"spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {}}}]}}),
            ),
            "spec.from",
            "must not be defined",
        );
        assert_violation(
            policy("MeshHealthCheck", json!({"spec": {"targetRef": {"kind": "MeshHTTPRoute", "name": "r"}}})),
            "spec.targetRef.kind",
            "not supported",
        );
        let gateway = json!({"spec": {"targetRef": {"kind": "MeshGateway", "name": "gw"}, "to": to("MeshService")}});
        assert!(from_json(policy("MeshHealthCheck", gateway)).is_ok());
    }
}
