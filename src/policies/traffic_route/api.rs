//! Kuma's old-style TrafficRoute (`traffic_route.proto`): splits, load balancers and HTTP
//! matches for the outbounds of the sources it selects.
//!
//! Validation follows Kuma's `pkg/core/resources/apis/mesh/*_validator.go`.

use crate::model::Tags;
use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

use crate::model::selector::{validate_selector, Selector};
use crate::model::{SpecType, ValidationError};
use crate::policies::core::oldstyle::{Attachment, OldStylePolicy};
use crate::policies::core::validate::*;

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
    pub destination: Option<Tags>,
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
    pub destination: Tags,
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub modify: Option<Modify>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination: Option<Tags>,
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

/// What an `http[]` entry changes on the request and response.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Modify {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<ModifyPath>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<ModifyHost>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_headers: Option<ModifyHeaders>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_headers: Option<ModifyHeaders>,
}

/// A oneof: `rewritePrefix` or `regex`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModifyPath {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite_prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<RegexReplace>,
}

/// A oneof: `value` or `fromPath`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModifyHost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_path: Option<RegexReplace>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexReplace {
    #[serde(default)]
    pub pattern: String,
    #[serde(default)]
    pub substitution: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModifyHeaders {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<AddHeader>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<RemoveHeader>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AddHeader {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub value: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub append: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoveHeader {
    #[serde(default)]
    pub name: String,
}

/// A oneof: `{exact: ..}`, `{prefix: ..}` or `{regex: ..}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatcher {
    Exact(String),
    Prefix(String),
    Regex(String),
}

impl SpecType for TrafficRouteSpec {
    fn old_style(&self) -> Option<&dyn OldStylePolicy> {
        Some(self)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = validate_outbound_policy_selectors(&self.sources, &self.destinations);
        let conf = &self.conf;
        validate_split_and_destination(&mut errors, "conf", &conf.split, conf.destination.as_ref());
        for (i, http) in conf.http.iter().enumerate() {
            let at = format!("conf.http[{i}]");
            validate_http_match(&mut errors, &format!("{at}.match"), &http.match_);
            if let Some(m) = &http.modify {
                validate_modify(&mut errors, &format!("{at}.modify"), m, &http.match_);
            }
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

fn validate_split_and_destination(errors: &mut ValidationError, at: &str, split: &[Split], destination: Option<&Tags>) {
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
            let hat = format!("{at}.headers{}", crate::model::selector::key_path(name));
            if name.is_empty() {
                errors.add(hat.clone(), "cannot be empty");
            }
            validate_string_matcher(errors, &hat, matcher);
        }
    }
}

fn validate_modify(errors: &mut ValidationError, at: &str, m: &Modify, match_: &HttpMatch) {
    if let Some(p) = &m.path {
        let pat = format!("{at}.path");
        match (&p.rewrite_prefix, &p.regex) {
            (None, None) => errors.add(pat, "either \"rewritePrefix\" or \"regex\" has to be set"),
            (Some(_), Some(_)) => errors.add(pat, "only one of \"rewritePrefix\" or \"regex\" can be set"),
            (Some(_), None) => {
                if !matches!(&match_.path, Some(StringMatcher::Prefix(p)) if !p.is_empty()) {
                    errors.add(
                        format!("{pat}.rewritePrefix"),
                        "can only be set when .http.match.path.prefix is not empty",
                    );
                }
            }
            (None, Some(re)) => validate_regex_replace(errors, &format!("{pat}.regex"), re),
        }
    }
    if let Some(h) = &m.host {
        let hat = format!("{at}.host");
        match (&h.value, &h.from_path) {
            (None, None) => errors.add(hat, "either \"value\" or \"fromPath\" has to be set"),
            (Some(_), Some(_)) => errors.add(hat, "only one of \"value\" or \"fromPath\" can be set"),
            (Some(v), None) if v.is_empty() => errors.add(format!("{hat}.value"), "cannot be empty"),
            (None, Some(re)) => validate_regex_replace(errors, &format!("{hat}.fromPath"), re),
            _ => {}
        }
    }
    for (side, headers) in [("requestHeaders", &m.request_headers), ("responseHeaders", &m.response_headers)] {
        let Some(h) = headers else { continue };
        for (i, a) in h.add.iter().enumerate() {
            validate_modified_header(errors, format!("{at}.{side}.add[{i}].name"), &a.name);
        }
        for (i, r) in h.remove.iter().enumerate() {
            validate_modified_header(errors, format!("{at}.{side}.remove[{i}].name"), &r.name);
        }
    }
}

fn validate_regex_replace(errors: &mut ValidationError, at: &str, re: &RegexReplace) {
    if re.pattern.is_empty() {
        errors.add(format!("{at}.pattern"), "cannot be empty");
    }
}

/// Envoy owns `host` (it is `:authority`) and the pseudo-headers; modifying them is refused.
fn validate_modified_header(errors: &mut ValidationError, field: String, name: &str) {
    if name.is_empty() {
        errors.add(field, "cannot be empty");
    } else if name.eq_ignore_ascii_case("host") || name.starts_with(':') {
        errors.add(field, format!("header {name:?} cannot be modified"));
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

impl OldStylePolicy for TrafficRouteSpec {
    fn attachment(&self) -> Attachment {
        Attachment::Outbound
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

    #[test]
    fn traffic_route_modify_rules() {
        let dest = json!({"kuma.io/service": "b"});
        let http = |m: Value, modify: Value| {
            with_conf(
                "TrafficRoute",
                json!({"destination": dest, "http": [{"match": m, "modify": modify, "destination": dest}]}),
            )
        };
        let prefix = json!({"path": {"prefix": "/api"}});
        assert_round_trip(http(
            prefix.clone(),
            json!({
                "path": {"rewritePrefix": "/v2"},
                "host": {"fromPath": {"pattern": "^/(.+)/.*$", "substitution": "\\1"}},
                "requestHeaders": {"add": [{"name": "x-a", "value": "1", "append": true}], "remove": [{"name": "x-b"}]},
                "responseHeaders": {"add": [{"name": "x-c", "value": "2"}]}
            }),
        ));
        assert_violation(
            http(json!({"path": {"exact": "/api"}}), json!({"path": {"rewritePrefix": "/v2"}})),
            "conf.http[0].modify.path.rewritePrefix",
            "can only be set when .http.match.path.prefix is not empty",
        );
        assert_violation(http(prefix.clone(), json!({"path": {}})), "conf.http[0].modify.path", "either");
        assert_violation(
            http(prefix.clone(), json!({"path": {"regex": {"substitution": "x"}}})),
            "conf.http[0].modify.path.regex.pattern",
            "cannot be empty",
        );
        assert_violation(http(prefix.clone(), json!({"host": {}})), "conf.http[0].modify.host", "either");
        assert_violation(
            http(prefix.clone(), json!({"requestHeaders": {"add": [{"name": "Host", "value": "x"}]}})),
            "conf.http[0].modify.requestHeaders.add[0].name",
            "cannot be modified",
        );
        assert_violation(
            http(prefix.clone(), json!({"responseHeaders": {"remove": [{"name": "x"}, {"name": ":status"}]}})),
            "conf.http[0].modify.responseHeaders.remove[1].name",
            "cannot be modified",
        );
        assert_violation(
            http(prefix, json!({"path": {"rewritePrefix": "/"}, "color": "red"})),
            "conf.http[0].modify.color",
            "unknown field",
        );
    }
}
