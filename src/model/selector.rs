//! Tag selectors (`sources[].match`, `destinations[].match`) and the tag rules shared by
//! Dataplanes and policies.
//!
//! Kuma's rules (`pkg/core/resources/apis/mesh/validators.go`, `dataplane_validator.go`):
//! a tag key is non-empty and made of `[a-zA-Z0-9.\-_:/]`; a Dataplane tag value is non-empty
//! and made of the same characters; a selector value is either exactly `"*"` (any value of a
//! present key) or made of those characters. Per-key violations are reported at
//! `<field>["<key>"]`, as Kuma's `PathBuilder.Key` does.

use serde::{Deserialize, Serialize};

use super::{Tags, ValidationError};

/// The tag every inbound, outbound and policy selector names.
pub const SERVICE_TAG: &str = "kuma.io/service";
/// The tag that carries an inbound's protocol.
pub const PROTOCOL_TAG: &str = "kuma.io/protocol";
/// The selector value that matches any value of a present key.
pub const WILDCARD: &str = "*";

/// `{match: {tag: value | "*"}}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Selector {
    #[serde(rename = "match", default)]
    pub match_: Tags,
}

impl Selector {
    pub fn new<K: Into<String>, V: Into<String>>(tags: impl IntoIterator<Item = (K, V)>) -> Self {
        Selector { match_: tags.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    /// Every key of the selector is present in `tags` with an equal value, or with any value
    /// when the selector says `"*"`. An empty selector matches everything (validation rejects
    /// empty selectors in stored policies).
    pub fn matches(&self, tags: &Tags) -> bool {
        self.match_.iter().all(|(key, want)| match tags.get(key) {
            Some(have) => want == WILDCARD || want == have,
            None => false,
        })
    }

    /// [`matches`](Self::matches) against a single `kuma.io/service` tag, without building
    /// a tag map (every outbound of every regeneration asks this).
    pub fn matches_service(&self, service: &str) -> bool {
        self.match_.iter().all(|(key, want)| key == SERVICE_TAG && (want == WILDCARD || want == service))
    }

    /// The number of exact (non-`"*"`) values: Kuma ranks matching policies by this, the most
    /// specific winning (ties broken by name, by the caller).
    pub fn specificity(&self) -> usize {
        self.match_.values().filter(|v| v.as_str() != WILDCARD).count()
    }

    /// The `kuma.io/service` value, if the selector names one.
    pub fn service(&self) -> Option<&str> {
        self.match_.get(SERVICE_TAG).map(String::as_str)
    }
}

fn valid_tag_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '/')
}

/// `["key"]`, Kuma's path segment for a map key.
pub(crate) fn key_path(key: &str) -> String {
    format!("[{key:?}]")
}

fn check_key(errors: &mut ValidationError, field: &str, key: &str) {
    if key.is_empty() {
        errors.add(field, "tag key must be non-empty");
    } else if !key.chars().all(valid_tag_char) {
        errors.add(
            format!("{field}{}", key_path(key)),
            format!(
                "tag key {key:?} must consist of alphanumeric characters, dots, dashes, colons, slashes and underscores"
            ),
        );
    }
}

/// Validates Dataplane tags (inbound, outbound, gateway): keys and values non-empty and made of
/// `[a-zA-Z0-9.\-_:/]`. Violations are reported at `field` or `field["key"]`. Does not check for
/// `kuma.io/service`; the caller decides whether the map needs it.
pub fn validate_tags(field: &str, tags: &Tags) -> ValidationError {
    let mut errors = ValidationError::default();
    for (key, value) in tags {
        check_key(&mut errors, field, key);
        let at = format!("{field}{}", key_path(key));
        if value.is_empty() {
            errors.add(at, "tag value cannot be empty");
        } else if !value.chars().all(valid_tag_char) {
            errors.add(
                at,
                format!(
                    "tag value {value:?} must consist of alphanumeric characters, dots, dashes, colons, slashes and underscores"
                ),
            );
        }
    }
    errors
}

/// Validates one selector map at `field` (e.g. `sources[0].match`): at least one tag, valid
/// keys, values valid or exactly `"*"`, and `kuma.io/service` present when `require_service`.
pub fn validate_selector(field: &str, tags: &Tags, require_service: bool) -> ValidationError {
    let mut errors = ValidationError::default();
    if tags.is_empty() {
        errors.add(field, "must have at least one tag");
        return errors;
    }
    for (key, value) in tags {
        check_key(&mut errors, field, key);
        let at = format!("{field}{}", key_path(key));
        if value.is_empty() {
            errors.add(at, "tag value must be non-empty");
        } else if value != WILDCARD && !value.chars().all(valid_tag_char) {
            errors.add(
                at,
                format!(
                    "tag value {value:?} must consist of alphanumeric characters, dots, dashes, colons, slashes and underscores, or be \"*\""
                ),
            );
        }
    }
    if require_service && !tags.contains_key(SERVICE_TAG) {
        errors.add(field, format!("mandatory tag {SERVICE_TAG:?} is missing"));
    }
    errors
}

/// Validates a selector list at `field` (`sources`, `destinations`): at least one element, and
/// each `field[i].match` per [`validate_selector`].
pub fn validate_selectors(field: &str, selectors: &[Selector], require_service: bool) -> ValidationError {
    let mut errors = ValidationError::default();
    if selectors.is_empty() {
        errors.add(field, "must have at least one element");
    }
    for (i, selector) in selectors.iter().enumerate() {
        let at = format!("{field}[{i}].match");
        errors.add_nested("", validate_selector(&at, &selector.match_, require_service));
    }
    errors
}

/// Kuma's `OnlyServiceTagAllowed`, used for the destinations of policies that attach to
/// outbound clusters (TrafficRoute, HealthCheck, CircuitBreaker, Retry, Timeout): at least one
/// selector, each consisting of exactly the one tag `kuma.io/service`.
pub fn validate_service_only_selectors(field: &str, selectors: &[Selector]) -> ValidationError {
    let mut errors = validate_selectors(field, selectors, true);
    for (i, selector) in selectors.iter().enumerate() {
        let at = format!("{field}[{i}].match");
        if selector.match_.is_empty() {
            continue; // already reported
        }
        for key in selector.match_.keys().filter(|k| k.as_str() != SERVICE_TAG) {
            errors.add(format!("{at}{}", key_path(key)), format!("tag {key:?} is not allowed"));
        }
        if selector.match_.len() != 1 && selector.match_.contains_key(SERVICE_TAG) {
            errors.add(at, format!("must consist of exactly one tag {SERVICE_TAG:?}"));
        }
    }
    errors
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn matching_requires_every_key_and_honours_wildcards() {
        let dp = tags(&[("kuma.io/service", "backend"), ("version", "2")]);
        assert!(Selector::new([("kuma.io/service", "*")]).matches(&dp));
        assert!(Selector::new([("kuma.io/service", "backend")]).matches(&dp));
        assert!(Selector::new([("kuma.io/service", "backend"), ("version", "2")]).matches(&dp));
        assert!(!Selector::new([("kuma.io/service", "web")]).matches(&dp));
        assert!(!Selector::new([("kuma.io/service", "backend"), ("version", "1")]).matches(&dp));
        // "*" still needs the key to be present.
        assert!(!Selector::new([("zone", "*")]).matches(&dp));
        assert!(Selector::default().matches(&dp));
    }

    #[test]
    fn service_matching_equals_matching_the_service_tag_alone() {
        let selectors = [
            Selector::new([("kuma.io/service", "*")]),
            Selector::new([("kuma.io/service", "backend")]),
            Selector::new([("kuma.io/service", "web")]),
            Selector::new([("kuma.io/service", "backend"), ("version", "2")]),
            Selector::new([("version", "*")]),
            Selector::default(),
        ];
        for s in &selectors {
            for svc in ["backend", "web"] {
                assert_eq!(s.matches_service(svc), s.matches(&tags(&[("kuma.io/service", svc)])), "{s:?} vs {svc}");
            }
        }
    }

    #[test]
    fn specificity_counts_exact_values() {
        assert_eq!(Selector::new([("kuma.io/service", "*")]).specificity(), 0);
        assert_eq!(Selector::new([("kuma.io/service", "a"), ("version", "*")]).specificity(), 1);
        assert_eq!(Selector::new([("kuma.io/service", "a"), ("version", "1")]).specificity(), 2);
    }

    #[test]
    fn tag_rules() {
        assert!(validate_tags("tags", &tags(&[("kuma.io/service", "a-b_c.d:e/f")])).is_empty());
        let err = validate_tags("tags", &tags(&[("bad key", "x"), ("k", ""), ("v", "a b"), ("w", "*")]));
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["tags[\"bad key\"]", "tags[\"k\"]", "tags[\"v\"]", "tags[\"w\"]"]);
        let err = validate_tags("tags", &tags(&[("", "x")]));
        assert_eq!(err.violations[0].field, "tags");
        assert!(err.violations[0].reason.contains("non-empty"));
    }

    #[test]
    fn selector_rules() {
        assert!(validate_selectors("sources", &[Selector::new([("kuma.io/service", "*")])], true).is_empty());
        let err = validate_selectors("sources", &[], true);
        assert_eq!(err.violations[0].field, "sources");
        let err = validate_selectors("sources", &[Selector::new([("version", "1")])], true);
        assert_eq!(err.violations[0].field, "sources[0].match");
        assert!(err.violations[0].reason.contains("kuma.io/service"));
        assert!(validate_selectors("sources", &[Selector::new([("version", "1")])], false).is_empty());
        let err = validate_selectors("sources", &[Selector::new([("kuma.io/service", "a*")])], false);
        assert_eq!(err.violations[0].field, "sources[0].match[\"kuma.io/service\"]");
    }

    #[test]
    fn service_only_selectors() {
        let ok = [Selector::new([("kuma.io/service", "backend")])];
        assert!(validate_service_only_selectors("destinations", &ok).is_empty());
        let err = validate_service_only_selectors(
            "destinations",
            &[Selector::new([("kuma.io/service", "backend"), ("version", "1")])],
        );
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["destinations[0].match[\"version\"]", "destinations[0].match"]);
    }
}
