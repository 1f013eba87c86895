//! Kuma's MeshHTTPRoute (`pkg/plugins/policies/meshhttproute/api`, reference §4.5): per
//! destination service (`to[].targetRef`), rules of matches (path, method, query, headers)
//! with filters (header modifiers, redirect, URL rewrite, mirror) and weighted backends.
//!
//! A `to` entry's conf is `{rules}`; rules of several policies merge by their `matches`
//! (Kuma's `mergeValuesByKey`): equal matches merge their `default`, others are appended in
//! the order the policies merge (least specific first).

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::model::selector::SERVICE_TAG;
use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::Allowed;
use crate::policies::core::rules::{MergeOptions, Subset, Tag};
use crate::policies::core::targetref::{Item, TargetKind, TargetRef, TargetRefPolicy};
use crate::policies::routing::backend::BackendRef;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshHttpRouteSpec {
    /// Absent means the whole mesh (Kuma 2.6+).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<TargetRef>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<To>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct To {
    #[serde(default)]
    pub target_ref: TargetRef,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
}

/// What a `to` entry contributes to the rules: its `rules`, merged by `matches`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Conf {
    #[serde(default)]
    pub rules: Vec<Rule>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    #[serde(default)]
    pub matches: Vec<Match>,
    #[serde(default)]
    pub default: RuleConf,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filters: Option<Vec<Filter>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_refs: Option<Vec<BackendRef>>,
}

/// One match; its fields are declared in Go's order, so that its JSON (route names hash it)
/// is byte for byte what Kuma hashes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Match {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<Method>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_params: Option<Vec<QueryParamsMatch>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Vec<HeaderMatch>>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    pub value: String,
    #[serde(rename = "type")]
    pub type_: PathMatchType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatchType {
    Exact,
    PathPrefix,
    RegularExpression,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    Connect,
    Delete,
    Get,
    Head,
    Options,
    Patch,
    Post,
    Put,
    Trace,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Connect => "CONNECT",
            Method::Delete => "DELETE",
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Options => "OPTIONS",
            Method::Patch => "PATCH",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Trace => "TRACE",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QueryParamsMatch {
    #[serde(rename = "type")]
    pub type_: QueryMatchType,
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum QueryMatchType {
    Exact,
    RegularExpression,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// Exact when absent.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<HeaderMatchType>,
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FilterType {
    RequestHeaderModifier,
    ResponseHeaderModifier,
    RequestRedirect,
    #[serde(rename = "URLRewrite")]
    UrlRewrite,
    RequestMirror,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    #[serde(rename = "type")]
    pub type_: FilterType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<RequestRedirect>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<UrlRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<RequestMirror>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderModifier {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<HeaderKeyValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub add: Option<Vec<HeaderKeyValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remove: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderKeyValue {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestRedirect {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<Scheme>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// 301 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u32>,
}

/// Kuma's default redirect status (Gateway API's).
pub const DEFAULT_REDIRECT_STATUS: u32 = 301;
const REDIRECT_STATUSES: [u32; 5] = [301, 302, 303, 307, 308];

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathRewrite {
    #[serde(rename = "type")]
    pub type_: PathRewriteType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathRewriteType {
    ReplaceFullPath,
    ReplacePrefixMatch,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UrlRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathRewrite>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestMirror {
    /// Of requests mirrored, 100 when absent; an integer or a decimal string (`"12.5"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<IntOrString>,
    #[serde(default)]
    pub backend_ref: BackendRef,
}

/// Kubernetes' IntOrString, as Kuma's percentages are.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u64),
    String(String),
}

impl IntOrString {
    /// As a percentage in millionths of all requests (`"12.5"` → 125,000), if it is a
    /// decimal in [0, 100] with at most 4 fractional digits.
    pub fn millionths(&self) -> Option<u32> {
        let text = match self {
            IntOrString::Int(i) => i.to_string(),
            IntOrString::String(s) => s.trim().to_string(),
        };
        let (whole, frac) = text.split_once('.').unwrap_or((&text, ""));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if whole.is_empty() || !digits(whole) || !digits(frac) || frac.len() > 4 {
            return None;
        }
        let whole: u64 = whole.parse().ok()?;
        let frac: u64 = if frac.is_empty() { 0 } else { format!("{frac:0<4}").parse().ok()? };
        let v = whole.checked_mul(10_000)?.checked_add(frac)?;
        (v <= 1_000_000).then_some(v as u32)
    }
}

const TOP: &[TargetKind] =
    &[TargetKind::Mesh, TargetKind::MeshSubset, TargetKind::MeshService, TargetKind::MeshServiceSubset];

/// The tag of the artificial items of policies whose top-level targetRef is a MeshHTTPRoute
/// (Kuma's `RuleMatchesHashTag`; MeshTimeout and MeshRetry query it per route).
pub const RULE_MATCHES_HASH_TAG: &str = "__rule-matches-hash__";

/// `base64(SHA-256(JSON(matches)))`: Kuma's name of a rule's routes, and the value of
/// [`RULE_MATCHES_HASH_TAG`] that per-route policies find them by. The JSON is Go's
/// `encoding/json` output (fields in Go's order, `<`, `>`, `&` escaped). Hashed as the policy
/// wrote them, before a match without a path gets `PathPrefix /`, so the route's name and
/// the policies' lookups always agree.
pub fn route_name(matches: &[Match]) -> String {
    let json = serde_json::to_string(matches)
        .unwrap_or_default()
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(json.as_bytes()))
}

impl MeshHttpRouteSpec {
    /// Per rule, the subset its routes are configured by: its `to` service and its hash.
    pub fn rule_subsets(&self) -> Vec<Subset> {
        let tag = |k: &str, v: String| Tag { key: k.to_string(), value: v, not: false };
        self.to
            .iter()
            .flat_map(|to| {
                to.rules.iter().map(move |rule| {
                    Subset::new(vec![
                        tag(SERVICE_TAG, to.target_ref.name().to_string()),
                        tag(RULE_MATCHES_HASH_TAG, route_name(&rule.matches)),
                    ])
                })
            })
            .collect()
    }
}

/// Kuma's `mergeValuesByKey` on `rules`: entries with equal `matches` merge their `default`.
pub const MERGE: MergeOptions = MergeOptions { append: &[], merge_by_key: Some(("rules", "matches", "default")) };

impl SpecType for MeshHttpRouteSpec {
    const TARGET_REF_KINDS: Option<Allowed> =
        Some(Allowed { top: TOP, to: &[TargetKind::MeshService], from: &[], require_entries: false });
    const RULES_MERGE: MergeOptions = MERGE;

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        if let Some(t) = &self.target_ref {
            t.validate(&mut errors, "spec.targetRef", TOP);
        }
        for (i, to) in self.to.iter().enumerate() {
            let at = format!("spec.to[{i}]");
            to.target_ref.validate(&mut errors, &format!("{at}.targetRef"), &[TargetKind::MeshService]);
            for (j, rule) in to.rules.iter().enumerate() {
                validate_rule(&mut errors, &format!("{at}.rules[{j}]"), rule);
            }
        }
        errors.into_result()
    }
}

impl TargetRefPolicy for MeshHttpRouteSpec {
    fn top(&self) -> Option<&TargetRef> {
        self.target_ref.as_ref()
    }

    fn outbound_items(&self) -> Vec<Item<'_>> {
        self.to
            .iter()
            .map(|to| Item {
                target_ref: &to.target_ref,
                // Plain data with string keys always serializes.
                default: serde_json::json!({"rules": serde_json::to_value(&to.rules).unwrap_or_default()}),
            })
            .collect()
    }
}

fn validate_rule(errors: &mut ValidationError, at: &str, rule: &Rule) {
    if rule.matches.is_empty() {
        errors.add(format!("{at}.matches"), "must have at least one element");
    }
    for (k, m) in rule.matches.iter().enumerate() {
        validate_match(errors, &format!("{at}.matches[{k}]"), m);
    }
    let all_prefix = rule.matches.iter().all(|m| m.path.as_ref().is_some_and(|p| p.type_ == PathMatchType::PathPrefix));
    for (k, f) in rule.default.filters.iter().flatten().enumerate() {
        validate_filter(errors, &format!("{at}.default.filters[{k}]"), f, all_prefix);
    }
    for (k, r) in rule.default.backend_refs.iter().flatten().enumerate() {
        r.validate(errors, &format!("{at}.default.backendRefs[{k}]"));
    }
}

fn validate_match(errors: &mut ValidationError, at: &str, m: &Match) {
    if let Some(p) = &m.path {
        let vat = format!("{at}.path.value");
        match p.type_ {
            PathMatchType::RegularExpression => {
                if p.value.is_empty() {
                    errors.add(vat, "must not be empty");
                }
            }
            PathMatchType::PathPrefix if p.value == "/" => {}
            PathMatchType::PathPrefix => {
                if p.value.ends_with('/') {
                    errors.add(
                        vat.clone(),
                        "does not need a trailing slash because only a `/`-separated prefix or an entire path is matched",
                    );
                }
                if !p.value.starts_with('/') {
                    errors.add(vat, format!("must be an absolute path, got {:?}", p.value));
                }
            }
            PathMatchType::Exact => {
                if !p.value.starts_with('/') {
                    errors.add(vat, format!("must be an absolute path, got {:?}", p.value));
                }
            }
        }
    }
    let mut names: Vec<&str> = Vec::new();
    for (i, q) in m.query_params.iter().flatten().enumerate() {
        if q.name.is_empty() {
            errors.add(format!("{at}.queryParams[{i}].name"), "must not be empty");
        } else if names.contains(&q.name.as_str()) {
            errors.add(format!("{at}.queryParams[{i}].name"), format!("multiple entries for name {}", q.name));
        }
        names.push(&q.name);
    }
    for (i, h) in m.headers.iter().flatten().enumerate() {
        let hat = format!("{at}.headers[{i}]");
        if h.name.is_empty() {
            errors.add(format!("{hat}.name"), "must not be empty");
        }
        match h.type_.unwrap_or(HeaderMatchType::Exact) {
            HeaderMatchType::Present | HeaderMatchType::Absent if h.value.is_some() => {
                errors.add(format!("{hat}.value"), "must not be defined");
            }
            HeaderMatchType::Prefix | HeaderMatchType::RegularExpression
                if h.value.as_deref().unwrap_or("").is_empty() =>
            {
                errors.add(format!("{hat}.value"), "must not be empty");
            }
            _ => {}
        }
    }
}

fn validate_filter(errors: &mut ValidationError, at: &str, f: &Filter, all_prefix: bool) {
    let missing = |errors: &mut ValidationError, field: &str| errors.add(format!("{at}.{field}"), "must be defined");
    match f.type_ {
        FilterType::RequestHeaderModifier => match &f.request_header_modifier {
            None => missing(errors, "requestHeaderModifier"),
            Some(m) => validate_header_modifier(errors, &format!("{at}.requestHeaderModifier"), m),
        },
        FilterType::ResponseHeaderModifier => match &f.response_header_modifier {
            None => missing(errors, "responseHeaderModifier"),
            Some(m) => validate_header_modifier(errors, &format!("{at}.responseHeaderModifier"), m),
        },
        FilterType::RequestRedirect => match &f.request_redirect {
            None => missing(errors, "requestRedirect"),
            Some(r) => {
                let rat = format!("{at}.requestRedirect");
                if let Some(p) = &r.path {
                    validate_path_rewrite(errors, &format!("{rat}.path"), p, all_prefix);
                }
                if let Some(h) = &r.hostname {
                    validate_hostname(errors, &format!("{rat}.hostname"), h);
                }
                if let Some(port) = r.port.filter(|p| !(1..=65535).contains(p)) {
                    errors.add(format!("{rat}.port"), format!("must be in inclusive range [1, 65535], got {port}"));
                }
                if let Some(code) = r.status_code.filter(|c| !REDIRECT_STATUSES.contains(c)) {
                    errors.add(
                        format!("{rat}.statusCode"),
                        format!("must be one of 301, 302, 303, 307, 308, got {code}"),
                    );
                }
            }
        },
        FilterType::UrlRewrite => match &f.url_rewrite {
            None => missing(errors, "urlRewrite"),
            Some(u) => {
                let uat = format!("{at}.urlRewrite");
                if let Some(p) = &u.path {
                    validate_path_rewrite(errors, &format!("{uat}.path"), p, all_prefix);
                }
                if let Some(h) = &u.hostname {
                    validate_hostname(errors, &format!("{uat}.hostname"), h);
                }
            }
        },
        FilterType::RequestMirror => match &f.request_mirror {
            None => missing(errors, "requestMirror"),
            Some(m) => {
                let mat = format!("{at}.requestMirror");
                m.backend_ref.validate(errors, &format!("{mat}.backendRef"));
                if let Some(p) = &m.percentage {
                    if p.millionths().is_none() {
                        errors.add(format!("{mat}.percentage"), format!("must be a decimal in [0, 100], got {p:?}"));
                    }
                }
            }
        },
    }
}

fn validate_header_modifier(errors: &mut ValidationError, at: &str, m: &HeaderModifier) {
    if m.set.is_none() && m.add.is_none() && m.remove.is_none() {
        errors.add(at, "must have at least one defined: set, add, remove");
        return;
    }
    let mut seen: Vec<String> = Vec::new();
    let mut check = |errors: &mut ValidationError, field: String, name: &str| {
        let lower = name.to_ascii_lowercase();
        if name.is_empty() {
            errors.add(field, "must not be empty");
        } else if seen.contains(&lower) {
            errors.add(field, format!("duplicate header name {name:?}"));
        }
        seen.push(lower);
    };
    for (i, h) in m.set.iter().flatten().enumerate() {
        check(errors, format!("{at}.set[{i}].name"), &h.name);
    }
    for (i, h) in m.add.iter().flatten().enumerate() {
        check(errors, format!("{at}.add[{i}].name"), &h.name);
    }
    for (i, name) in m.remove.iter().flatten().enumerate() {
        check(errors, format!("{at}.remove[{i}]"), name);
    }
}

fn validate_path_rewrite(errors: &mut ValidationError, at: &str, p: &PathRewrite, all_prefix: bool) {
    match p.type_ {
        PathRewriteType::ReplaceFullPath => match &p.replace_full_path {
            None => errors.add(format!("{at}.replaceFullPath"), "must be defined"),
            Some(v) if !v.starts_with('/') => {
                errors.add(format!("{at}.replaceFullPath"), format!("must be an absolute path, got {v:?}"))
            }
            Some(_) => {}
        },
        PathRewriteType::ReplacePrefixMatch => match &p.replace_prefix_match {
            None => errors.add(format!("{at}.replacePrefixMatch"), "must be defined"),
            Some(_) if !all_prefix => {
                errors.add(format!("{at}.replacePrefixMatch"), "can only appear if all matches match a path prefix")
            }
            Some(v) if !v.starts_with('/') => {
                errors.add(format!("{at}.replacePrefixMatch"), format!("must be an absolute path, got {v:?}"))
            }
            Some(_) => {}
        },
    }
}

/// Gateway API's PreciseHostname: an RFC 1123 subdomain that is not an IP address.
fn validate_hostname(errors: &mut ValidationError, at: &str, h: &str) {
    if h.parse::<std::net::IpAddr>().is_ok() {
        errors.add(at, format!("cannot be an IP address, got {h:?}"));
        return;
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if h.is_empty() || h.len() > 253 || !h.split('.').all(label_ok) {
        errors.add(
            at,
            format!("must be a lowercase RFC 1123 subdomain (labels of a-z, 0-9 and '-', dot-separated), got {h:?}"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::core::testing::*;
    use crate::policies::routing::golden::assert_spec_round_trip;
    use serde_json::{json, Value};

    fn route(rules: Value) -> Value {
        policy(
            "MeshHTTPRoute",
            json!({"spec": {"targetRef": {"kind": "MeshService", "name": "web"}, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": rules}]}}),
        )
    }

    fn rule(matches: Value, default: Value) -> Value {
        route(json!([{"matches": matches, "default": default}]))
    }

    #[test]
    fn round_trips_kumas_example() {
        assert_spec_round_trip(route(json!([{
            "matches": [
                {"path": {"value": "/api", "type": "PathPrefix"}, "method": "GET",
                 "queryParams": [{"type": "Exact", "name": "v", "value": "2"}],
                 "headers": [{"type": "Exact", "name": "x-version", "value": "v2"}, {"type": "Present", "name": "x-user"}]}
            ],
            "default": {
                "filters": [
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-a", "value": "1"}], "add": [{"name": "x-b", "value": "2"}], "remove": ["x-c"]}},
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-d", "value": "3"}]}},
                    {"type": "URLRewrite", "urlRewrite": {"hostname": "backend.mesh", "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                    {"type": "RequestMirror", "requestMirror": {"percentage": "12.5", "backendRef": {"kind": "MeshService", "name": "shadow"}}}
                ],
                "backendRefs": [
                    {"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": "v2"}, "weight": 90},
                    {"kind": "MeshService", "name": "backend", "weight": 10}
                ]
            }
        }, {
            "matches": [{"path": {"value": "/old", "type": "Exact"}}],
            "default": {"filters": [{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "hostname": "example.com", "port": 8443, "statusCode": 302, "path": {"type": "ReplaceFullPath", "replaceFullPath": "/new"}}}]}
        }])));
    }

    #[test]
    fn paths_and_matches() {
        assert_violation(
            rule(json!([{"path": {"value": "/api/", "type": "PathPrefix"}}]), json!({})),
            "spec.to[0].rules[0].matches[0].path.value",
            "does not need a trailing slash",
        );
        assert_violation(
            rule(json!([{"path": {"value": "api", "type": "Exact"}}]), json!({})),
            "spec.to[0].rules[0].matches[0].path.value",
            "must be an absolute path, got \"api\"",
        );
        assert_violation(
            rule(json!([{"path": {"value": "/a", "type": "Glob"}}]), json!({})),
            "spec.to[0].rules[0].matches[0].path.type",
            "unknown variant `Glob`",
        );
        assert_violation(
            rule(json!([{"method": "FETCH"}]), json!({})),
            "spec.to[0].rules[0].matches[0].method",
            "unknown variant `FETCH`",
        );
        assert_violation(rule(json!([]), json!({})), "spec.to[0].rules[0].matches", "at least one element");
        assert_violation(
            rule(json!([{"headers": [{"type": "Present", "name": "x", "value": "y"}]}]), json!({})),
            "spec.to[0].rules[0].matches[0].headers[0].value",
            "must not be defined",
        );
        assert_violation(
            rule(
                json!([{"queryParams": [{"type": "Exact", "name": "a", "value": "1"}, {"type": "RegularExpression", "name": "a", "value": "2"}]}]),
                json!({}),
            ),
            "spec.to[0].rules[0].matches[0].queryParams[1].name",
            "multiple entries for name a",
        );
    }

    #[test]
    fn filters() {
        let at = "spec.to[0].rules[0].default.filters[0]";
        let any = json!([{"path": {"value": "/a", "type": "Exact"}}]);
        let filter = |f: Value| rule(any.clone(), json!({"filters": [f]}));
        assert_violation(
            filter(json!({"type": "RequestHeaderModifier"})),
            &format!("{at}.requestHeaderModifier"),
            "must be defined",
        );
        assert_violation(
            filter(json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {}})),
            &format!("{at}.requestHeaderModifier"),
            "must have at least one defined: set, add, remove",
        );
        assert_violation(
            filter(
                json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"set": [{"name": "X-A", "value": "1"}], "remove": ["x-a"]}}),
            ),
            &format!("{at}.responseHeaderModifier.remove[0]"),
            "duplicate header name",
        );
        assert_violation(
            filter(
                json!({"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/b"}}}),
            ),
            &format!("{at}.urlRewrite.path.replacePrefixMatch"),
            "can only appear if all matches match a path prefix",
        );
        assert_violation(
            filter(json!({"type": "URLRewrite", "urlRewrite": {"hostname": "10.0.0.1"}})),
            &format!("{at}.urlRewrite.hostname"),
            "cannot be an IP address",
        );
        assert_violation(
            filter(json!({"type": "RequestRedirect", "requestRedirect": {"statusCode": 304}})),
            &format!("{at}.requestRedirect.statusCode"),
            "must be one of 301, 302, 303, 307, 308, got 304",
        );
        assert_violation(
            filter(json!({"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplaceFullPath"}}})),
            &format!("{at}.requestRedirect.path.replaceFullPath"),
            "must be defined",
        );
        assert_violation(
            filter(
                json!({"type": "RequestMirror", "requestMirror": {"percentage": "150", "backendRef": {"kind": "MeshService", "name": "s"}}}),
            ),
            &format!("{at}.requestMirror.percentage"),
            "[0, 100]",
        );
        assert_violation(
            filter(json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "Mesh"}}})),
            &format!("{at}.requestMirror.backendRef.kind"),
            "not supported",
        );
        assert_violation(filter(json!({"type": "Teleport"})), &format!("{at}.type"), "unknown variant `Teleport`");
    }

    #[test]
    fn target_refs_and_backends() {
        assert_violation(
            policy("MeshHTTPRoute", json!({"spec": {"targetRef": {"kind": "MeshGateway", "name": "g"}}})),
            "spec.targetRef.kind",
            "not supported",
        );
        assert_violation(
            policy("MeshHTTPRoute", json!({"spec": {"to": [{"targetRef": {"kind": "Mesh"}, "rules": []}]}})),
            "spec.to[0].targetRef.kind",
            "not supported",
        );
        assert_violation(
            rule(json!([{"method": "GET"}]), json!({"backendRefs": [{"kind": "MeshService"}]})),
            "spec.to[0].rules[0].default.backendRefs[0].name",
            "must be set",
        );
        assert_violation(
            rule(
                json!([{"method": "GET"}]),
                json!({"backendRefs": [{"kind": "MeshService", "name": "b", "weight": -1}]}),
            ),
            "spec.to[0].rules[0].default.backendRefs[0].weight",
            "-1",
        );
    }

    #[test]
    fn percentages_are_ints_or_decimal_strings() {
        assert_eq!(IntOrString::Int(100).millionths(), Some(1_000_000));
        assert_eq!(IntOrString::String("12.5".into()).millionths(), Some(125_000));
        assert_eq!(IntOrString::String("0.0001".into()).millionths(), Some(1));
        assert_eq!(IntOrString::String("100.1".into()).millionths(), None);
        assert_eq!(IntOrString::String("-1".into()).millionths(), None);
        assert_eq!(IntOrString::String("1e2".into()).millionths(), None);
    }
}
