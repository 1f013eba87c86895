//! MeshRetry (`pkg/plugins/policies/meshretry/api/v1alpha1`, reference §4.5): the targetRef
//! successor of Retry, `to` entries only.
//!
//! Validation follows Kuma's `validator.go`, including its field paths: Kuma validates each
//! `default` rooted at `conf`, so its violations read `spec.to[0].default.conf.http.retryOn[0]`.

use crate::model::Tags;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::duration::ProtoDuration;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshRetrySpec(pub ToFromPolicy<MeshRetryConf>);

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshRetryConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<Tcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<Http>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<Grpc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tcp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connect_attempt: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<HttpRetryOn>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriable_response_headers: Option<Vec<HeaderMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retriable_request_headers: Option<Vec<HeaderMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selection: Option<Vec<Predicate>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_selection_max_attempts: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Grpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    /// Canceled, DeadlineExceeded, Internal, ResourceExhausted, Unavailable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<Vec<String>>,
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
pub struct RateLimitedBackOff {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_headers: Option<Vec<ResetHeader>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResetHeader {
    #[serde(default)]
    pub name: String,
    pub format: ResetFormat,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResetFormat {
    #[default]
    Seconds,
    UnixTimestamp,
}

/// Kuma's `common_api.HeaderMatch`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Exact when absent.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<HeaderMatchType>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HeaderMatchType {
    Exact,
    Prefix,
    RegularExpression,
    Present,
    Absent,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Predicate {
    /// OmitPreviousHosts, OmitHostsWithTags or OmitPreviousPriorities.
    #[serde(default)]
    pub predicate: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    #[serde(default, skip_serializing_if = "is_zero_i32")]
    pub update_frequency: i32,
}

fn is_zero_i32(v: &i32) -> bool {
    *v == 0
}

/// An HTTP `retryOn` entry: a condition (`5xx`, `GatewayError`, ...), `HttpMethod<Verb>`, or
/// an HTTP status code, written as a string or, in YAML, as a bare number.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpRetryOn(pub String);

impl<'de> Deserialize<'de> for HttpRetryOn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = HttpRetryOn;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a retry condition or an HTTP status code")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<HttpRetryOn, E> {
                Ok(HttpRetryOn(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<HttpRetryOn, E> {
                Ok(HttpRetryOn(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<HttpRetryOn, E> {
                Ok(HttpRetryOn(v.to_string()))
            }
        }
        d.deserialize_any(Visitor)
    }
}

/// HTTP `retryOn` conditions and their Envoy names.
pub const HTTP_CONDITIONS: [(&str, &str); 8] = [
    ("5xx", "5xx"),
    ("GatewayError", "gateway-error"),
    ("Reset", "reset"),
    ("Retriable4xx", "retriable-4xx"),
    ("ConnectFailure", "connect-failure"),
    ("EnvoyRatelimited", "envoy-ratelimited"),
    ("RefusedStream", "refused-stream"),
    ("Http3PostConnectFailure", "http3-post-connect-failure"),
];
/// `HttpMethod<Verb>` entries make requests with that method retriable.
const HTTP_METHODS: [(&str, &str); 9] = [
    ("HttpMethodConnect", "CONNECT"),
    ("HttpMethodDelete", "DELETE"),
    ("HttpMethodGet", "GET"),
    ("HttpMethodHead", "HEAD"),
    ("HttpMethodOptions", "OPTIONS"),
    ("HttpMethodPatch", "PATCH"),
    ("HttpMethodPost", "POST"),
    ("HttpMethodPut", "PUT"),
    ("HttpMethodTrace", "TRACE"),
];
/// gRPC `retryOn` conditions and their Envoy names.
pub const GRPC_CONDITIONS: [(&str, &str); 5] = [
    ("Canceled", "cancelled"),
    ("DeadlineExceeded", "deadline-exceeded"),
    ("Internal", "internal"),
    ("ResourceExhausted", "resource-exhausted"),
    ("Unavailable", "unavailable"),
];

/// The status codes Go's `http.StatusText` names, which Kuma accepts in `retryOn`.
const KNOWN_STATUS_CODES: &[u32] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400,
    401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 418, 421, 422, 423, 424, 425,
    426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

/// What an HTTP `retryOn` entry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpRetryOnKind {
    /// An Envoy `retry_on` condition.
    Condition(&'static str),
    /// A retriable method (`GET`).
    Method(&'static str),
    StatusCode(u32),
}

impl HttpRetryOn {
    pub fn kind(&self) -> Option<HttpRetryOnKind> {
        let v = self.0.as_str();
        if let Some((_, envoy)) = HTTP_CONDITIONS.iter().find(|(k, _)| *k == v) {
            return Some(HttpRetryOnKind::Condition(envoy));
        }
        if let Some((_, method)) = HTTP_METHODS.iter().find(|(k, _)| *k == v) {
            return Some(HttpRetryOnKind::Method(method));
        }
        v.parse::<u32>().ok().filter(|c| KNOWN_STATUS_CODES.contains(c)).map(HttpRetryOnKind::StatusCode)
    }
}

const TOP: &[TargetKind] = &[
    TargetKind::Mesh,
    TargetKind::MeshSubset,
    TargetKind::MeshGateway,
    TargetKind::MeshService,
    TargetKind::MeshServiceSubset,
];

fn allowed(top: TargetKind) -> Allowed {
    let to: &'static [TargetKind] = match top {
        TargetKind::MeshGateway => &[TargetKind::Mesh],
        _ => &[TargetKind::Mesh, TargetKind::MeshService],
    };
    Allowed { top: TOP, to, from: &[], require_entries: true }
}

fn validate_back_off(errors: &mut ValidationError, at: &str, b: &Option<BackOff>) {
    if b.as_ref().is_some_and(|b| b.base_interval.is_none() && b.max_interval.is_none()) {
        errors.add(format!("{at}.backOff"), "must not be empty");
    }
}

fn validate_rate_limited(errors: &mut ValidationError, at: &str, r: &Option<RateLimitedBackOff>) {
    let Some(r) = r else { return };
    let at = format!("{at}.rateLimitedBackOff");
    if r.max_interval.is_some_and(|d| d.is_zero()) {
        errors.add(format!("{at}.maxInterval"), "must be defined and greater than zero");
    }
    match &r.reset_headers {
        None => errors.add(format!("{at}.resetHeaders"), "must be defined"),
        Some(headers) => {
            for (i, h) in headers.iter().enumerate() {
                if h.name.is_empty() {
                    errors.add(format!("{at}.resetHeaders[{i}].name"), "must be defined");
                }
            }
        }
    }
}

fn validate_headers(errors: &mut ValidationError, at: &str, headers: &Option<Vec<HeaderMatch>>) {
    for (i, h) in headers.iter().flatten().enumerate() {
        if h.name.is_empty() {
            errors.add(format!("{at}[{i}].name"), "must be defined");
        }
    }
}

fn validate_http(errors: &mut ValidationError, at: &str, h: &Http) {
    let at = format!("{at}.http");
    if *h == Http::default() {
        errors.add(&at, "must not be empty");
    }
    validate_back_off(errors, &at, &h.back_off);
    validate_rate_limited(errors, &at, &h.rate_limited_back_off);
    for (i, r) in h.retry_on.iter().flatten().enumerate() {
        if r.kind().is_none() {
            errors.add(format!("{at}.retryOn[{i}]"), format!("unknown item '{}'", r.0));
        }
    }
    validate_headers(errors, &format!("{at}.retriableRequestHeaders"), &h.retriable_request_headers);
    validate_headers(errors, &format!("{at}.retriableResponseHeaders"), &h.retriable_response_headers);
    let mut priority_set = false;
    for (i, p) in h.host_selection.iter().flatten().enumerate() {
        let path = format!("{at}.hostSelection[{i}]");
        match p.predicate.as_str() {
            "OmitPreviousHosts" => {}
            "OmitHostsWithTags" => {
                if p.tags.is_none() {
                    errors.add(format!("{path}.tags"), "must be defined");
                }
            }
            "OmitPreviousPriorities" => {
                if priority_set {
                    errors.add(format!("{path}.predicate"), "OmitPreviousPriorities must only be specified once");
                }
                if p.update_frequency <= 0 {
                    errors.add(format!("{path}.updateFrequency"), "must be defined and greater than zero");
                }
                priority_set = true;
            }
            other => errors.add(format!("{path}.predicate"), format!("unknown predicate type '{other}'")),
        }
    }
}

fn validate_grpc(errors: &mut ValidationError, at: &str, g: &Grpc) {
    let at = format!("{at}.grpc");
    if *g == Grpc::default() {
        errors.add(&at, "must not be empty");
    }
    validate_back_off(errors, &at, &g.back_off);
    validate_rate_limited(errors, &at, &g.rate_limited_back_off);
    for (i, r) in g.retry_on.iter().flatten().enumerate() {
        if !GRPC_CONDITIONS.iter().any(|(k, _)| k == r) {
            errors.add(format!("{at}.retryOn[{i}]"), format!("unknown item '{r}'"));
        }
    }
}

fn validate_default(errors: &mut ValidationError, path: &str, c: &MeshRetryConf) {
    let at = format!("{path}.conf");
    if c.tcp.is_none() && c.http.is_none() && c.grpc.is_none() {
        errors.add(&at, "at least one of the 'tcp', 'http', 'grpc' must be specified");
    }
    if let Some(tcp) = &c.tcp {
        match tcp.max_connect_attempt {
            None => errors.add(format!("{at}.tcp"), "must not be empty"),
            Some(0) => errors.add(format!("{at}.tcp.maxConnectAttempt"), "must be greater than 0"),
            Some(_) => {}
        }
    }
    if let Some(http) = &c.http {
        validate_http(errors, &at, http);
    }
    if let Some(grpc) = &c.grpc {
        validate_grpc(errors, &at, grpc);
    }
}

impl SpecType for MeshRetrySpec {
    /// The widest kinds (a non-gateway top level), for `GET /policies`.
    const TARGET_REF_KINDS: Option<Allowed> =
        Some(Allowed { top: TOP, to: &[TargetKind::Mesh, TargetKind::MeshService], from: &[], require_entries: true });

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        let p = &self.0;
        let top = p.target_ref.as_ref().map_or(TargetKind::Mesh, |t| t.kind());
        p.validate_refs(&mut errors, allowed(top));
        for (path, conf) in p.defaults() {
            validate_default(&mut errors, &path, conf);
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::from_json;
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    fn mesh_retry(spec: Value) -> Value {
        json!({"type": "MeshRetry", "mesh": "default", "name": "mr", "spec": spec})
    }

    fn to_mesh(default: Value) -> Value {
        mesh_retry(json!({"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "Mesh"}, "default": default}]}))
    }

    #[test]
    fn kumas_full_example_round_trips() {
        let spec = json!({
            "targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {
                "tcp": {"maxConnectAttempt": 5},
                "http": {
                    "numRetries": 10, "perTryTimeout": "20s",
                    "backOff": {"baseInterval": "15s", "maxInterval": "1200s"},
                    "rateLimitedBackOff": {"resetHeaders": [{"name": "retry-after", "format": "Seconds"}, {"name": "x-reset", "format": "UnixTimestamp"}], "maxInterval": "1260s"},
                    "retryOn": ["5xx", "GatewayError", "Reset", "Retriable4xx", "ConnectFailure", "EnvoyRatelimited",
                                "RefusedStream", "Http3PostConnectFailure", "HttpMethodGet", "500", "409"],
                    "retriableResponseHeaders": [{"type": "Prefix", "name": "x-retry", "value": "yes"}],
                    "retriableRequestHeaders": [{"type": "RegularExpression", "name": "x-id", "value": ".*"}, {"name": "x-exact", "value": "v"}],
                    "hostSelection": [{"predicate": "OmitPreviousHosts"}, {"predicate": "OmitHostsWithTags", "tags": {"zone": "a"}},
                                      {"predicate": "OmitPreviousPriorities", "updateFrequency": 2}],
                    "hostSelectionMaxAttempts": 3
                },
                "grpc": {"numRetries": 10, "perTryTimeout": "20s", "backOff": {"baseInterval": "15s"},
                         "retryOn": ["Canceled", "DeadlineExceeded", "Internal", "ResourceExhausted", "Unavailable"]}
            }}]
        });
        let env = from_json(mesh_retry(spec.clone())).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(env.spec.to_json(), spec);
    }

    #[test]
    fn status_codes_may_be_bare_numbers() {
        let env = from_json(to_mesh(json!({"http": {"retryOn": [503, "5xx"]}}))).unwrap();
        assert_eq!(env.spec.to_json()["to"][0]["default"]["http"]["retryOn"], json!(["503", "5xx"]));
    }

    #[test]
    fn kumas_rules_messages_and_paths() {
        let d = "spec.to[0].default.conf";
        assert_violation(mesh_retry(json!({"targetRef": {"kind": "Mesh"}})), "spec.to", "needs at least one item");
        assert_violation(to_mesh(json!({})), d, "at least one of the 'tcp', 'http', 'grpc' must be specified");
        assert_violation(to_mesh(json!({"tcp": {}})), &format!("{d}.tcp"), "must not be empty");
        assert_violation(to_mesh(json!({"http": {}})), &format!("{d}.http"), "must not be empty");
        assert_violation(to_mesh(json!({"grpc": {}})), &format!("{d}.grpc"), "must not be empty");
        assert_violation(
            to_mesh(json!({"tcp": {"maxConnectAttempt": 0}})),
            &format!("{d}.tcp.maxConnectAttempt"),
            "must be greater than 0",
        );
        assert_violation(to_mesh(json!({"http": {"backOff": {}}})), &format!("{d}.http.backOff"), "must not be empty");
        assert_violation(
            to_mesh(json!({"http": {"rateLimitedBackOff": {}}})),
            &format!("{d}.http.rateLimitedBackOff.resetHeaders"),
            "must be defined",
        );
        assert_violation(
            to_mesh(json!({"grpc": {"rateLimitedBackOff": {"resetHeaders": [{"name": "", "format": "Seconds"}]}}})),
            &format!("{d}.grpc.rateLimitedBackOff.resetHeaders[0].name"),
            "must be defined",
        );
        for (i, bad) in ["WRONG_VALUE", "5XX", "reset", "123", "952", "HttpMethodFetch"].iter().enumerate() {
            let mut list = vec![json!("5xx"); i];
            list.push(json!(bad));
            assert_violation(
                to_mesh(json!({"http": {"retryOn": list}})),
                &format!("{d}.http.retryOn[{i}]"),
                &format!("unknown item '{bad}'"),
            );
        }
        assert_violation(
            to_mesh(json!({"grpc": {"retryOn": ["500"]}})),
            &format!("{d}.grpc.retryOn[0]"),
            "unknown item '500'",
        );
        assert_violation(
            to_mesh(json!({"http": {"hostSelection": [{"predicate": "OmitHostsWithTags"}]}})),
            &format!("{d}.http.hostSelection[0].tags"),
            "must be defined",
        );
        assert_violation(
            to_mesh(json!({"http": {"hostSelection": [{"predicate": "OmitPreviousPriorities"}]}})),
            &format!("{d}.http.hostSelection[0].updateFrequency"),
            "must be defined and greater than zero",
        );
        assert_violation(
            to_mesh(json!({"http": {"hostSelection": [
                {"predicate": "OmitPreviousPriorities", "updateFrequency": 3},
                {"predicate": "OmitPreviousHosts"},
                {"predicate": "OmitPreviousPriorities", "updateFrequency": 1}
            ]}})),
            &format!("{d}.http.hostSelection[2].predicate"),
            "OmitPreviousPriorities must only be specified once",
        );
        assert_violation(
            to_mesh(json!({"http": {"hostSelection": [{"predicate": "Incorrect"}]}})),
            &format!("{d}.http.hostSelection[0].predicate"),
            "unknown predicate type 'Incorrect'",
        );
        assert_violation(
            mesh_retry(json!({"targetRef": {"kind": "MeshGateway", "name": "gw"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "b"}, "default": {"tcp": {"maxConnectAttempt": 5}}}]})),
            "spec.to[0].targetRef.kind",
            "value is not supported",
        );
        assert_violation(
            mesh_retry(json!({"targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5}}}]})),
            "spec.targetRef.kind",
            "value is not supported",
        );
        assert_violation(
            mesh_retry(json!({"targetRef": {"kind": "Mesh"},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5}}}],
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5}}}]})),
            "spec.from",
            "must not be defined",
        );
        assert_violation(
            to_mesh(json!({"http": {"retriableRequestHeaders": [{"type": "Suffix", "name": "x"}]}})),
            "spec.to[0].default.http.retriableRequestHeaders[0].type",
            "unknown variant `Suffix`",
        );
        assert_violation(
            to_mesh(json!({"http": {"perTryTimeout": "soon"}})),
            "spec.to[0].default.http.perTryTimeout",
            "\"soon\"",
        );
    }

    #[test]
    fn retry_on_entries_are_conditions_methods_or_known_status_codes() {
        let k = |s: &str| HttpRetryOn(s.to_string()).kind();
        assert_eq!(k("GatewayError"), Some(HttpRetryOnKind::Condition("gateway-error")));
        assert_eq!(k("HttpMethodPost"), Some(HttpRetryOnKind::Method("POST")));
        assert_eq!(k("HttpMethodPOST"), None);
        assert_eq!(k("429"), Some(HttpRetryOnKind::StatusCode(429)));
        assert_eq!(k("306"), None, "Go names no status 306");
        assert_eq!(k("gateway_error"), None);
    }
}
