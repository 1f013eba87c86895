//! Old-style ("source/destination") Kuma policies: TrafficPermission, TrafficRoute,
//! HealthCheck, CircuitBreaker, Timeout, Retry. Their `conf` blocks are typed so config
//! generation can read them; validation follows Kuma's `*_validator.go` files in
//! `pkg/core/resources/apis/mesh/`.
//!
//! Selector rules (as in Kuma): TrafficPermission needs at least one source and destination,
//! each with at least one tag. The other policies need sources with `kuma.io/service`, and
//! destinations made of exactly the one tag `kuma.io/service` (Kuma's
//! `OnlyServiceTagAllowed`), since they attach to outbound clusters.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::selector::{validate_selector, validate_selectors, validate_service_only_selectors, Selector};
use super::{Spec, ValidationError};

// ---------------------------------------------------------------------------------------------
// Durations

/// A `google.protobuf.Duration` as protobuf JSON writes it (`"10s"`, `"0.500s"`).
///
/// Reads protobuf JSON (`"10s"`, `"0.5s"`, `"1.000000001s"`) and, leniently, Go/humantime
/// forms (`"500ms"`, `"1m"`, `"1h30m"`). Writes protobuf JSON: whole seconds, with 3, 6 or 9
/// fractional digits when needed (as Go's protojson does).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtoDuration(pub Duration);

impl ProtoDuration {
    pub fn from_secs(secs: u64) -> Self {
        ProtoDuration(Duration::from_secs(secs))
    }

    pub fn from_millis(ms: u64) -> Self {
        ProtoDuration(Duration::from_millis(ms))
    }

    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    pub fn parse(text: &str) -> Result<ProtoDuration, String> {
        let err = || {
            format!(
                "invalid duration {text:?}: expected protobuf JSON seconds like \"10s\" or \"0.5s\", or a Go duration like \"500ms\", \"1m\" or \"1h30m\""
            )
        };
        let t = text.trim();
        if t.is_empty() || t.starts_with('-') || t.starts_with('+') {
            return Err(err());
        }
        // Protobuf JSON: digits, optional fraction of at most 9 digits, then "s".
        if let Some(num) = t.strip_suffix('s') {
            let (whole, frac) = match num.split_once('.') {
                Some((w, f)) => (w, Some(f)),
                None => (num, None),
            };
            let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
            if digits(whole) && frac.is_none_or(|f| digits(f) && f.len() <= 9) {
                let secs: u64 = whole.parse().map_err(|_| err())?;
                let nanos = match frac {
                    Some(f) => format!("{f:0<9}").parse::<u32>().map_err(|_| err())?,
                    None => 0,
                };
                return Ok(ProtoDuration(Duration::new(secs, nanos)));
            }
        }
        humantime::parse_duration(t).map(ProtoDuration).map_err(|_| err())
    }
}

impl fmt::Display for ProtoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.as_secs();
        let nanos = self.0.subsec_nanos();
        if nanos == 0 {
            write!(f, "{secs}s")
        } else if nanos % 1_000_000 == 0 {
            write!(f, "{secs}.{:03}s", nanos / 1_000_000)
        } else if nanos % 1_000 == 0 {
            write!(f, "{secs}.{:06}s", nanos / 1_000)
        } else {
            write!(f, "{secs}.{nanos:09}s")
        }
    }
}

impl From<Duration> for ProtoDuration {
    fn from(d: Duration) -> Self {
        ProtoDuration(d)
    }
}

impl From<ProtoDuration> for Duration {
    fn from(d: ProtoDuration) -> Self {
        d.0
    }
}

impl Serialize for ProtoDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ProtoDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ProtoDuration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration string like \"10s\"")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ProtoDuration, E> {
                ProtoDuration::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

/// `field` must be set and greater than zero.
fn require_positive_duration(errors: &mut ValidationError, field: &str, d: Option<ProtoDuration>) {
    match d {
        None => errors.add(field, "has to be defined"),
        Some(d) if d.is_zero() => errors.add(field, "must have a positive value"),
        Some(_) => {}
    }
}

/// `field`, when set, must be greater than zero.
fn positive_duration_when_set(errors: &mut ValidationError, field: &str, d: Option<ProtoDuration>) {
    if d.is_some_and(|d| d.is_zero()) {
        errors.add(field, "has to be greater than 0 when defined");
    }
}

fn percentage_u32(errors: &mut ValidationError, field: &str, v: Option<u32>) {
    if let Some(v) = v {
        if v > 100 {
            errors.add(field, format!("has to be in [0 - 100] range, got {v}"));
        }
    }
}

fn status_code(errors: &mut ValidationError, field: String, code: u32) {
    if !(100..=599).contains(&code) {
        errors.add(field, format!("must be in range [100, 599], got {code}"));
    }
}

/// Sources (`kuma.io/service` required) and destinations (only `kuma.io/service`) of the
/// policies that attach to outbound clusters.
fn validate_outbound_policy_selectors(sources: &[Selector], destinations: &[Selector]) -> ValidationError {
    let mut errors = validate_selectors("sources", sources, true);
    errors.add_nested("", validate_service_only_selectors("destinations", destinations));
    errors
}

/// The (sources, destinations) of a policy spec; `None` for Mesh, Dataplane and
/// DataplaneInsight.
pub fn selectors_of(spec: &Spec) -> Option<(&[Selector], &[Selector])> {
    let (s, d) = match spec {
        Spec::Mesh(_) | Spec::Dataplane(_) | Spec::DataplaneInsight(_) => return None,
        Spec::TrafficPermission(p) => (&p.sources, &p.destinations),
        Spec::TrafficRoute(p) => (&p.sources, &p.destinations),
        Spec::HealthCheck(p) => (&p.sources, &p.destinations),
        Spec::CircuitBreaker(p) => (&p.sources, &p.destinations),
        Spec::Timeout(p) => (&p.sources, &p.destinations),
        Spec::Retry(p) => (&p.sources, &p.destinations),
    };
    Some((s.as_slice(), d.as_slice()))
}

// ---------------------------------------------------------------------------------------------
// TrafficPermission

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPermissionSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
}

impl TrafficPermissionSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_selectors("sources", &self.sources, false);
        errors.add_nested("", validate_selectors("destinations", &self.destinations, false));
        errors.into_result()
    }
}

// ---------------------------------------------------------------------------------------------
// TrafficRoute

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouteSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: TrafficRouteConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficRouteConf {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Split>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Split {
    #[serde(default)]
    pub weight: u32,
    #[serde(default)]
    pub destination: BTreeMap<String, String>,
}

/// A oneof: exactly one key (`{roundRobin: {}}`, `{leastRequest: {choiceCount: 3}}`, ...).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum LoadBalancer {
    RoundRobin(Empty),
    LeastRequest(LeastRequest),
    RingHash(RingHash),
    Random(Empty),
    Maglev(Empty),
}

/// `{}` (a oneof member without settings). Also accepts `null`, which is what YAML's
/// `roundRobin:` with nothing after it decodes to.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Empty {}

impl<'de> Deserialize<'de> for Empty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Strict {}
        Option::<Strict>::deserialize(d).map(|_| Empty {})
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LeastRequest {
    /// Envoy's default (2) when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_count: Option<u32>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// XX_HASH or MURMUR_HASH_2.
    #[serde(default)]
    pub hash_function: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_ring_size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ring_size: Option<u64>,
}

pub const HASH_FUNCTIONS: [&str; 2] = ["XX_HASH", "MURMUR_HASH_2"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    #[serde(rename = "match", default)]
    pub match_: HttpMatch,
    /// Path rewrite, host rewrite, header add/remove; kept as JSON for now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modify: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split: Vec<Split>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<StringMatcher>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, StringMatcher>>,
}

/// A oneof: `{exact: ..}`, `{prefix: ..}` or `{regex: ..}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl TrafficRouteSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let conf = &self.conf;
        validate_split_and_destination(&mut errors, "conf", &conf.split, conf.destination.as_ref());
        for (i, http) in conf.http.iter().enumerate() {
            let at = format!("conf.http[{i}]");
            validate_http_match(&mut errors, &format!("{at}.match"), &http.match_);
            validate_split_and_destination(&mut errors, &at, &http.split, http.destination.as_ref());
        }
        match &conf.load_balancer {
            Some(LoadBalancer::LeastRequest(lr)) if lr.choice_count.is_some_and(|c| c < 2) => {
                errors.add("conf.loadBalancer.leastRequest.choiceCount", "value must be greater than or equal to 2");
            }
            Some(LoadBalancer::RingHash(rh)) => {
                if !HASH_FUNCTIONS.contains(&rh.hash_function.as_str()) {
                    errors.add(
                        "conf.loadBalancer.ringHash.hashFunction",
                        format!(
                            "must have a valid hash function, got {:?}. Allowed values: {}",
                            rh.hash_function,
                            HASH_FUNCTIONS.join(", ")
                        ),
                    );
                }
                if let (Some(min), Some(max)) = (rh.min_ring_size, rh.max_ring_size) {
                    if min > max {
                        errors.add(
                            "conf.loadBalancer.ringHash.minRingSize",
                            format!("must not exceed maxRingSize ({max})"),
                        );
                    }
                }
            }
            _ => {}
        }
        errors.into_result()
    }
}

fn validate_split_and_destination(
    errors: &mut ValidationError,
    at: &str,
    split: &[Split],
    destination: Option<&BTreeMap<String, String>>,
) {
    match (split.is_empty(), destination) {
        (true, None) => errors.add(at, "requires either \"destination\" or \"split\""),
        (false, Some(_)) => errors.add(at, "\"split\" cannot be defined at the same time as \"destination\""),
        _ => {}
    }
    if let Some(dest) = destination {
        errors.add_nested("", validate_selector(&format!("{at}.destination"), dest, true));
    }
    if !split.is_empty() {
        let mut total: u64 = 0;
        for (i, entry) in split.iter().enumerate() {
            total += u64::from(entry.weight);
            errors.add_nested("", validate_selector(&format!("{at}.split[{i}].destination"), &entry.destination, true));
        }
        if total == 0 {
            errors.add(format!("{at}.split"), "there must be at least one split entry with weight above 0");
        }
    }
}

fn validate_http_match(errors: &mut ValidationError, at: &str, m: &HttpMatch) {
    if m.method.is_none() && m.path.is_none() && m.headers.is_none() {
        errors.add(at, "must be present and contain at least one of the elements: \"method\", \"path\" or \"headers\"");
        return;
    }
    if let Some(method) = &m.method {
        validate_string_matcher(errors, &format!("{at}.method"), method);
    }
    if let Some(path) = &m.path {
        validate_string_matcher(errors, &format!("{at}.path"), path);
        if let StringMatcher::Exact(p) | StringMatcher::Prefix(p) = path {
            if !p.starts_with('/') {
                errors.add(format!("{at}.path"), format!("must start with \"/\", got {p:?}"));
            }
        }
    }
    if let Some(headers) = &m.headers {
        if headers.is_empty() {
            errors.add(format!("{at}.headers"), "must contain at least one element");
        }
        for (name, matcher) in headers {
            let hat = format!("{at}.headers{}", super::selector::key_path(name));
            if name.is_empty() {
                errors.add(hat.clone(), "cannot be empty");
            }
            validate_string_matcher(errors, &hat, matcher);
        }
    }
}

fn validate_string_matcher(errors: &mut ValidationError, at: &str, m: &StringMatcher) {
    match m {
        StringMatcher::Exact(_) => {}
        StringMatcher::Prefix(p) if p.is_empty() => errors.add(format!("{at}.prefix"), "cannot be empty"),
        StringMatcher::Regex(r) if r.is_empty() => errors.add(format!("{at}.regex"), "cannot be empty"),
        _ => {}
    }
}

// ---------------------------------------------------------------------------------------------
// HealthCheck

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
    /// `[{append, header{key, value}}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_headers_to_add: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u32>,
}

impl HealthCheckSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
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
        if let Some(http) = &c.http {
            if http.path.is_empty() {
                errors.add("conf.http.path", "has to be defined and cannot be empty");
            } else if !http.path.starts_with('/') {
                errors.add("conf.http.path", format!("must start with \"/\", got {:?}", http.path));
            }
            for (i, code) in http.expected_statuses.iter().enumerate() {
                status_code(&mut errors, format!("conf.http.expectedStatuses[{i}]"), *code);
            }
        }
        errors.into_result()
    }
}

// ---------------------------------------------------------------------------------------------
// CircuitBreaker

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

impl CircuitBreakerSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
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

// ---------------------------------------------------------------------------------------------
// Timeout

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutSpec {
    #[serde(default)]
    pub sources: Vec<Selector>,
    #[serde(default)]
    pub destinations: Vec<Selector>,
    #[serde(default)]
    pub conf: TimeoutConf,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TimeoutTcp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<TimeoutHttp>,
    /// Deprecated in Kuma in favour of `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<TimeoutGrpc>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutTcp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutHttp {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<ProtoDuration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TimeoutGrpc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_idle_timeout: Option<ProtoDuration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_stream_duration: Option<ProtoDuration>,
}

impl TimeoutSpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let c = &self.conf;
        if *c == TimeoutConf::default() {
            errors.add("conf", "has to be defined");
        }
        positive_duration_when_set(&mut errors, "conf.connectTimeout", c.connect_timeout);
        if let Some(tcp) = &c.tcp {
            match tcp.idle_timeout {
                None => errors.add("conf.tcp", "at least one timeout in section has to be defined"),
                Some(d) if d.is_zero() => errors.add("conf.tcp.idleTimeout", "has to be greater than 0"),
                Some(_) => {}
            }
        }
        if let Some(http) = &c.http {
            if *http == TimeoutHttp::default() {
                errors.add("conf.http", "at least one timeout in section has to be defined");
            }
            positive_duration_when_set(&mut errors, "conf.http.requestTimeout", http.request_timeout);
            positive_duration_when_set(&mut errors, "conf.http.idleTimeout", http.idle_timeout);
        }
        if let Some(grpc) = &c.grpc {
            if *grpc == TimeoutGrpc::default() {
                errors.add("conf.grpc", "at least one timeout in section has to be defined");
            }
            positive_duration_when_set(&mut errors, "conf.grpc.streamIdleTimeout", grpc.stream_idle_timeout);
            positive_duration_when_set(&mut errors, "conf.grpc.maxStreamDuration", grpc.max_stream_duration);
        }
        errors.into_result()
    }
}

// ---------------------------------------------------------------------------------------------
// Retry

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

impl RetrySpec {
    pub fn validate(&self) -> Result<(), ValidationError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use serde_json::{json, Value};

    fn policy(rtype: &str, body: Value) -> Value {
        let mut v = json!({"type": rtype, "mesh": "default", "name": "p"});
        v.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        v
    }

    fn svc(name: &str) -> Value {
        json!([{"match": {"kuma.io/service": name}}])
    }

    /// A policy of `rtype` with valid selectors and the given conf.
    fn with_conf(rtype: &str, conf: Value) -> Value {
        policy(rtype, json!({"sources": svc("web"), "destinations": svc("backend"), "conf": conf}))
    }

    #[track_caller]
    fn assert_violation(v: Value, field: &str, reason: &str) {
        let err = from_json(v).expect_err("expected a validation error");
        assert!(
            err.violations.iter().any(|x| x.field == field && x.reason.contains(reason)),
            "no violation at {field:?} containing {reason:?}: {err}"
        );
    }

    /// Decodes, validates and re-serializes; the spec part must equal the input.
    #[track_caller]
    fn assert_round_trip(v: Value) {
        let env = from_json(v.clone()).unwrap_or_else(|e| panic!("{e}"));
        let mut expected = v.as_object().unwrap().clone();
        for k in ["type", "mesh", "name"] {
            expected.remove(k);
        }
        assert_eq!(env.spec.to_json(), Value::Object(expected));
    }

    // --- ProtoDuration

    #[test]
    fn durations_parse_protobuf_json_and_go_forms() {
        let p = |s: &str| ProtoDuration::parse(s).unwrap().0;
        assert_eq!(p("10s"), Duration::from_secs(10));
        assert_eq!(p("0s"), Duration::ZERO);
        assert_eq!(p("0.5s"), Duration::from_millis(500));
        assert_eq!(p("1.000000001s"), Duration::new(1, 1));
        assert_eq!(p("500ms"), Duration::from_millis(500));
        assert_eq!(p("1m"), Duration::from_secs(60));
        assert_eq!(p("1h30m"), Duration::from_secs(5400));
        for bad in ["", "10", "-1s", "1.0000000001s", "abc", "s", ".5s", "1.s"] {
            let err = ProtoDuration::parse(bad).unwrap_err();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn durations_print_protobuf_json() {
        let s = |d: Duration| ProtoDuration(d).to_string();
        assert_eq!(s(Duration::from_secs(10)), "10s");
        assert_eq!(s(Duration::ZERO), "0s");
        assert_eq!(s(Duration::from_millis(500)), "0.500s");
        assert_eq!(s(Duration::from_micros(1_500_001)), "1.500001s");
        assert_eq!(s(Duration::new(1, 1)), "1.000000001s");
        assert_eq!(s(Duration::from_secs(5400)), "5400s");
        assert_eq!(serde_json::to_value(ProtoDuration::from_millis(1500)).unwrap(), json!("1.500s"));
        let back: ProtoDuration = serde_json::from_value(json!("1.500s")).unwrap();
        assert_eq!(back, ProtoDuration::from_millis(1500));
        assert!(serde_json::from_value::<ProtoDuration>(json!(10)).is_err());
    }

    #[test]
    fn bad_duration_in_a_policy_names_field_and_text() {
        assert_violation(with_conf("Timeout", json!({"connectTimeout": "soon"})), "conf.connectTimeout", "\"soon\"");
    }

    #[test]
    fn go_durations_are_canonicalized() {
        let env = from_json(with_conf("Timeout", json!({"connectTimeout": "500ms", "http": {"requestTimeout": "1m"}})))
            .unwrap();
        assert_eq!(env.spec.to_json()["conf"], json!({"connectTimeout": "0.500s", "http": {"requestTimeout": "60s"}}));
    }

    // --- selectors_of

    #[test]
    fn selectors_of_policies() {
        let env =
            from_json(policy("TrafficPermission", json!({"sources": svc("a"), "destinations": svc("b")}))).unwrap();
        let (s, d) = selectors_of(&env.spec).unwrap();
        assert_eq!(s[0].service(), Some("a"));
        assert_eq!(d[0].service(), Some("b"));
        let mesh = from_json(json!({"type": "Mesh", "name": "m"})).unwrap();
        assert!(selectors_of(&mesh.spec).is_none());
    }

    // --- TrafficPermission

    #[test]
    fn traffic_permission_docs_example() {
        let doc = parse_document(
            "type: TrafficPermission\nname: allow-all-traffic\nmesh: default\nsources:\n  - match:\n      kuma.io/service: '*'\ndestinations:\n  - match:\n      kuma.io/service: '*'\n",
        )
        .unwrap();
        assert_round_trip(doc);
    }

    #[test]
    fn traffic_permission_rules() {
        assert_violation(
            policy("TrafficPermission", json!({"destinations": svc("b")})),
            "sources",
            "at least one element",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": svc("a")})),
            "destinations",
            "at least one element",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": [{"match": {}}], "destinations": svc("b")})),
            "sources[0].match",
            "at least one tag",
        );
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": svc("a"), "destinations": [{"match": {"kuma.io/service": ""}}]}),
            ),
            "destinations[0].match[\"kuma.io/service\"]",
            "non-empty",
        );
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": [{"match": {"kuma.io/service": "a", "bad key": "x"}}], "destinations": svc("b")}),
            ),
            "sources[0].match[\"bad key\"]",
            "tag key",
        );
        // Kuma does not require kuma.io/service in TrafficPermission selectors.
        assert!(from_json(policy(
            "TrafficPermission",
            json!({"sources": [{"match": {"team": "x"}}], "destinations": svc("b")})
        ))
        .is_ok());
        assert_violation(
            policy(
                "TrafficPermission",
                json!({"sources": [{"match": {"kuma.io/service": "a"}, "selector": 1}], "destinations": svc("b")}),
            ),
            "sources[0].selector",
            "unknown field `selector`",
        );
        assert_violation(
            policy("TrafficPermission", json!({"sources": svc("a"), "destinations": svc("b"), "conf": {}})),
            "conf",
            "unknown field `conf`",
        );
    }

    // --- selectors of outbound policies (shared by TR/HC/CB/Timeout/Retry)

    #[test]
    fn outbound_policy_selectors() {
        let conf = json!({"connectTimeout": "1s"});
        assert_violation(
            policy("Timeout", json!({"sources": [{"match": {"zone": "a"}}], "destinations": svc("b"), "conf": conf})),
            "sources[0].match",
            "mandatory tag \"kuma.io/service\" is missing",
        );
        assert_violation(
            policy(
                "Timeout",
                json!({"sources": svc("a"), "destinations": [{"match": {"kuma.io/service": "b", "version": "1"}}], "conf": conf}),
            ),
            "destinations[0].match[\"version\"]",
            "not allowed",
        );
        assert_violation(
            policy(
                "Timeout",
                json!({"sources": svc("a"), "destinations": [{"match": {"version": "1"}}], "conf": conf}),
            ),
            "destinations[0].match",
            "kuma.io/service",
        );
        assert_violation(
            policy("Timeout", json!({"destinations": svc("b"), "conf": conf})),
            "sources",
            "at least one element",
        );
        assert_violation(
            policy("Timeout", json!({"sources": svc("b"), "conf": conf})),
            "destinations",
            "at least one element",
        );
    }

    // --- TrafficRoute

    #[test]
    fn traffic_route_round_trips() {
        assert_round_trip(with_conf(
            "TrafficRoute",
            json!({
                "split": [
                    {"weight": 90, "destination": {"kuma.io/service": "backend", "version": "1"}},
                    {"weight": 10, "destination": {"kuma.io/service": "backend", "version": "2"}}
                ],
                "loadBalancer": {"ringHash": {"hashFunction": "MURMUR_HASH_2", "minRingSize": 64, "maxRingSize": 1024}},
                "http": [{
                    "match": {"method": {"exact": "GET"}, "path": {"prefix": "/api"}, "headers": {"x-user": {"regex": "^a.*"}}},
                    "modify": {"path": {"rewritePrefix": "/"}},
                    "destination": {"kuma.io/service": "backend", "version": "3"}
                }]
            }),
        ));
        assert_round_trip(with_conf(
            "TrafficRoute",
            json!({"destination": {"kuma.io/service": "*"}, "loadBalancer": {"roundRobin": {}}}),
        ));
        assert_round_trip(with_conf(
            "TrafficRoute",
            json!({"destination": {"kuma.io/service": "b"}, "loadBalancer": {"leastRequest": {"choiceCount": 4}}}),
        ));
    }

    #[test]
    fn traffic_route_split_xor_destination() {
        assert_violation(with_conf("TrafficRoute", json!({})), "conf", "requires either \"destination\" or \"split\"");
        assert_violation(
            with_conf(
                "TrafficRoute",
                json!({"destination": {"kuma.io/service": "b"}, "split": [{"weight": 1, "destination": {"kuma.io/service": "b"}}]}),
            ),
            "conf",
            "cannot be defined at the same time",
        );
        assert_violation(
            policy("TrafficRoute", json!({"sources": svc("a"), "destinations": svc("b")})),
            "conf",
            "requires either",
        );
    }

    #[test]
    fn traffic_route_split_rules() {
        assert_violation(
            with_conf("TrafficRoute", json!({"split": [{"weight": 1, "destination": {"version": "1"}}]})),
            "conf.split[0].destination",
            "kuma.io/service",
        );
        assert_violation(
            with_conf("TrafficRoute", json!({"split": [{"weight": 0, "destination": {"kuma.io/service": "b"}}]})),
            "conf.split",
            "weight above 0",
        );
        assert_violation(
            with_conf("TrafficRoute", json!({"destination": {"version": "1"}})),
            "conf.destination",
            "kuma.io/service",
        );
    }

    #[test]
    fn traffic_route_load_balancer() {
        let dest = json!({"kuma.io/service": "b"});
        assert_violation(
            with_conf("TrafficRoute", json!({"destination": dest, "loadBalancer": {}})),
            "conf.loadBalancer",
            "single key",
        );
        assert_violation(
            with_conf("TrafficRoute", json!({"destination": dest, "loadBalancer": {"roundRobin": {}, "random": {}}})),
            "conf.loadBalancer",
            "single key",
        );
        assert_violation(
            with_conf("TrafficRoute", json!({"destination": dest, "loadBalancer": {"random": {"seed": 1}}})),
            "conf.loadBalancer.random.seed",
            "unknown field",
        );
        // YAML's `maglev:` with no value is null; it means `{}`.
        let env = from_json(with_conf("TrafficRoute", json!({"destination": dest, "loadBalancer": {"maglev": null}})))
            .unwrap();
        assert_eq!(env.spec.to_json()["conf"]["loadBalancer"], json!({"maglev": {}}));
        assert_violation(
            with_conf("TrafficRoute", json!({"destination": dest, "loadBalancer": {"fastest": {}}})),
            "conf.loadBalancer",
            "fastest",
        );
        assert_violation(
            with_conf(
                "TrafficRoute",
                json!({"destination": dest, "loadBalancer": {"leastRequest": {"choiceCount": 1}}}),
            ),
            "conf.loadBalancer.leastRequest.choiceCount",
            "greater than or equal to 2",
        );
        assert_violation(
            with_conf(
                "TrafficRoute",
                json!({"destination": dest, "loadBalancer": {"ringHash": {"hashFunction": "MD5"}}}),
            ),
            "conf.loadBalancer.ringHash.hashFunction",
            "\"MD5\"",
        );
        assert_violation(
            with_conf(
                "TrafficRoute",
                json!({"destination": dest, "loadBalancer": {"ringHash": {"hashFunction": "XX_HASH", "minRingSize": 10, "maxRingSize": 5}}}),
            ),
            "conf.loadBalancer.ringHash.minRingSize",
            "maxRingSize",
        );
    }

    #[test]
    fn traffic_route_http_rules() {
        let dest = json!({"kuma.io/service": "b"});
        let http = |h: Value| with_conf("TrafficRoute", json!({"destination": dest, "http": [h]}));
        assert_violation(http(json!({"destination": dest})), "conf.http[0].match", "at least one of the elements");
        assert_violation(
            http(json!({"match": {"path": {"prefix": ""}}, "destination": dest})),
            "conf.http[0].match.path.prefix",
            "cannot be empty",
        );
        assert_violation(
            http(json!({"match": {"path": {"exact": "api"}}, "destination": dest})),
            "conf.http[0].match.path",
            "must start with \"/\"",
        );
        assert_violation(
            http(json!({"match": {"method": {"regex": ""}}, "destination": dest})),
            "conf.http[0].match.method.regex",
            "cannot be empty",
        );
        assert_violation(
            http(json!({"match": {"headers": {}}, "destination": dest})),
            "conf.http[0].match.headers",
            "at least one element",
        );
        assert_violation(http(json!({"match": {"path": {"exact": "/"}}})), "conf.http[0]", "requires either");
        assert_violation(
            http(json!({"match": {"path": {"exact": "/"}}, "split": [{"weight": 1, "destination": {"v": "1"}}]})),
            "conf.http[0].split[0].destination",
            "kuma.io/service",
        );
        assert_violation(
            http(json!({"match": {"path": {"glob": "/"}}, "destination": dest})),
            "conf.http[0].match.path",
            "glob",
        );
    }

    // --- HealthCheck

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
        let Spec::HealthCheck(hc) = env.spec else { panic!() };
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
            hc(json!({"http": {"path": "/h", "method": "GET"}})),
            "conf.http.method",
            "unknown field `method`",
        );
    }

    // --- CircuitBreaker

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

    // --- Timeout

    #[test]
    fn timeout_round_trips_kumas_default() {
        assert_round_trip(with_conf(
            "Timeout",
            json!({
                "connectTimeout": "5s",
                "tcp": {"idleTimeout": "3600s"},
                "http": {"requestTimeout": "15s", "idleTimeout": "3600s", "streamIdleTimeout": "1800s", "maxStreamDuration": "0s"},
                "grpc": {"streamIdleTimeout": "300s", "maxStreamDuration": "0.500s"}
            }),
        ));
    }

    #[test]
    fn timeout_rules() {
        assert_violation(with_conf("Timeout", json!({})), "conf", "has to be defined");
        assert_violation(
            with_conf("Timeout", json!({"connectTimeout": "0s"})),
            "conf.connectTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"tcp": {}})), "conf.tcp", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"tcp": {"idleTimeout": "0s"}})),
            "conf.tcp.idleTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"http": {}})), "conf.http", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"http": {"requestTimeout": "0s"}})),
            "conf.http.requestTimeout",
            "greater than 0",
        );
        assert_violation(
            with_conf("Timeout", json!({"http": {"idleTimeout": "0s"}})),
            "conf.http.idleTimeout",
            "greater than 0",
        );
        assert_violation(with_conf("Timeout", json!({"grpc": {}})), "conf.grpc", "at least one timeout");
        assert_violation(
            with_conf("Timeout", json!({"grpc": {"streamIdleTimeout": "0s"}})),
            "conf.grpc.streamIdleTimeout",
            "greater than 0",
        );
    }

    // --- Retry

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
