//! The `x-kuma-tags` header (Kuma's `pkg/xds/envoy/tags`, reference §2.2): how the inbound
//! side of a request knows which sources sent it, so that FaultInjection, RateLimit and
//! MeshFaultInjection can select by source tags.
//!
//! Every outbound HTTP route config sets `x-kuma-tags: <the dataplane's tags, serialized>`;
//! every inbound route config removes it before the request reaches the application. A
//! source selector becomes an RE2 regex over that value, matched by a header matcher.
//!
//! Serialized form: keys sorted, each `&key=values&` with the values of that key over all
//! inbounds sorted and comma-joined, e.g. `&kuma.io/protocol=http&&kuma.io/service=web&`.

use crate::model::Tags;
use std::collections::{BTreeMap, BTreeSet};

use protobuf::{EnumOrUnknown, MessageField};

use crate::envoy::base::header_value_option::HeaderAppendAction;
use crate::envoy::base::{HeaderValue, HeaderValueOption};
use crate::envoy::parts::{InboundListener, OutboundListener};
use crate::envoy::regex::{regex_matcher::GoogleRE2, RegexMatcher};
use crate::envoy::route_components::HeaderMatcher;
use crate::envoy::string::StringMatcher;
use crate::model::selector::{Selector, WILDCARD};
use crate::model::ResourceType;
use crate::policies::core::rules::Subset;
use crate::policies::resolved::{InboundConf, OutboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

pub const HEADER: &str = "x-kuma-tags";

/// The serialized tag set of every inbound in `tag_sets` (the dataplane's `TagSet`).
pub fn serialize<'a>(tag_sets: impl Iterator<Item = &'a Tags>) -> String {
    let mut all: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for tags in tag_sets {
        for (k, v) in tags {
            all.entry(k).or_default().insert(v);
        }
    }
    all.iter().map(|(k, vs)| format!("&{k}={}&", vs.iter().copied().collect::<Vec<_>>().join(","))).collect()
}

/// The regex matching a serialized tag set that has every tag of `tags` (`*`: any value).
///
/// Kuma writes `[^&]*<value>[,&]` for a value, which also matches a value that merely ends
/// with it (`xfrontend` for `frontend`, reference §2.2 "observed"); higuma anchors the value
/// to the start of the list or a comma so that only whole values match.
pub fn regex_of(tags: &Tags) -> String {
    let mut re = String::from(".*");
    for (k, v) in tags {
        re.push('&');
        re.push_str(&escape(k));
        re.push('=');
        if v != WILDCARD {
            re.push_str("([^&]*,)?");
            re.push_str(&escape(v));
            re.push_str("[,&]");
        }
        re.push_str(".*");
    }
    re
}

/// Tag keys and values are `[a-zA-Z0-9.\-_:/]` (validation), so `.` is the only character
/// with a meaning in RE2.
fn escape(s: &str) -> String {
    s.replace('.', r"\.")
}

/// The regex for a policy's source selectors: any of them.
pub fn regex_of_sources(sources: &[Selector]) -> String {
    let all: Vec<String> = sources.iter().map(|s| regex_of(&s.match_)).collect();
    match all.as_slice() {
        [one] => one.clone(),
        many => format!("({})", many.join("|")),
    }
}

/// How a request's sources are matched: every `positive` regex must match the header and no
/// `negative` one may. Both empty: every request (also those without the header).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SourceMatch {
    pub positive: Option<String>,
    pub negative: Vec<String>,
}

impl SourceMatch {
    pub fn any() -> SourceMatch {
        SourceMatch::default()
    }

    pub fn selectors(sources: &[Selector]) -> SourceMatch {
        SourceMatch { positive: Some(regex_of_sources(sources)), negative: Vec::new() }
    }

    /// A targetRef rule's subset of clients. Kuma drops the negated tags (so a rule for
    /// "everyone but frontend" also applies to frontend); higuma keeps each as an inverted
    /// matcher so the rules stay the partition they are.
    pub fn subset(subset: &Subset) -> SourceMatch {
        let positive: Tags = subset.0.iter().filter(|t| !t.not).map(|t| (t.key.clone(), t.value.clone())).collect();
        let negative = subset
            .0
            .iter()
            .filter(|t| t.not)
            .map(|t| regex_of(&Tags::from([(t.key.clone(), t.value.clone())])))
            .collect();
        SourceMatch { positive: (!positive.is_empty()).then(|| regex_of(&positive)), negative }
    }

    /// Envoy header matchers on `x-kuma-tags`.
    pub fn matchers(&self) -> Vec<HeaderMatcher> {
        let mut out: Vec<HeaderMatcher> = self.positive.iter().map(|re| header_matcher(re, false)).collect();
        out.extend(self.negative.iter().map(|re| header_matcher(re, true)));
        out
    }
}

fn header_matcher(regex: &str, invert: bool) -> HeaderMatcher {
    let mut re = RegexMatcher::new();
    re.set_google_re2(GoogleRE2::new());
    re.regex = regex.to_string();
    let mut sm = StringMatcher::new();
    sm.set_safe_regex(re);
    let mut m = HeaderMatcher::new();
    m.name = HEADER.to_string();
    m.set_string_match(sm);
    m.invert_match = invert;
    // A request without the header comes from outside the mesh: it is not one of the
    // excluded sources.
    m.treat_missing_header_as_empty = invert;
    m
}

/// Sets the header on outbound HTTP routes and strips it on inbound ones.
pub struct KumaTagsPlugin;

impl Plugin for KumaTagsPlugin {
    fn name(&self) -> &'static str {
        "kuma-tags"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let tags = serialize(cx.dataplane.tags_of_inbounds());
        for o in &mut out.outbounds {
            o.conf.kuma_tags = tags.clone();
        }
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        let Some(hcm) = listener.hcm.as_mut() else { return };
        if conf.kuma_tags.is_empty() || !hcm.has_route_config() {
            return;
        }
        let mut hv = HeaderValue::new();
        hv.key = HEADER.to_string();
        hv.value = conf.kuma_tags.clone();
        let mut o = HeaderValueOption::new();
        o.header = MessageField::some(hv);
        // Kuma appends; overwriting keeps an application's own `x-kuma-tags` from passing as
        // its identity on the other side.
        o.append_action = EnumOrUnknown::new(HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD);
        hcm.mut_route_config().request_headers_to_add.push(o);
    }

    fn configure_inbound(&self, _conf: &InboundConf, listener: &mut InboundListener) {
        if let Some(hcm) = listener.hcm.as_mut() {
            if hcm.has_route_config() {
                hcm.mut_route_config().request_headers_to_remove.push(HEADER.to_string());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::core::rules::Tag;

    fn tags(pairs: &[(&str, &str)]) -> Tags {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn re(pattern: &str) -> regex::Regex {
        regex::Regex::new(&format!("^(?:{pattern})$")).unwrap()
    }

    #[test]
    fn serialized_like_kuma_keys_and_values_sorted() {
        let a = tags(&[("kuma.io/service", "web"), ("version", "2")]);
        let b = tags(&[("kuma.io/service", "admin"), ("version", "2")]);
        assert_eq!(serialize([&a, &b].into_iter()), "&kuma.io/service=admin,web&&version=2&");
        assert_eq!(serialize(std::iter::empty()), "");
    }

    #[test]
    fn regexes_match_whole_values_and_wildcards() {
        let header = serialize([&tags(&[("kuma.io/service", "frontend"), ("version", "1.0")])].into_iter());
        let frontend = regex_of(&tags(&[("kuma.io/service", "frontend")]));
        assert_eq!(frontend, r".*&kuma\.io/service=([^&]*,)?frontend[,&].*");
        assert!(re(&frontend).is_match(&header));
        assert!(!re(&regex_of(&tags(&[("kuma.io/service", "end")]))).is_match(&header));
        assert!(!re(&regex_of(&tags(&[("kuma.io/service", "xfrontend")]))).is_match(&header));
        assert!(re(&regex_of(&tags(&[("kuma.io/service", "frontend"), ("version", "*")]))).is_match(&header));
        // "." is literal: 1x0 is another version.
        assert!(!re(&regex_of(&tags(&[("version", "1x0")]))).is_match("&version=1.0&"));
        assert!(!re(&regex_of(&tags(&[("zone", "*")]))).is_match(&header));
        // A value among several of one key.
        assert!(re(&frontend).is_match("&kuma.io/service=admin,frontend&"));
        assert!(re(&regex_of(&tags(&[("kuma.io/service", "admin")]))).is_match("&kuma.io/service=admin,frontend&"));
    }

    #[test]
    fn several_sources_are_alternatives() {
        let sources = vec![Selector::new([("kuma.io/service", "a")]), Selector::new([("kuma.io/service", "b")])];
        let r = regex_of_sources(&sources);
        assert!(r.starts_with('(') && r.contains('|'), "{r}");
        assert!(re(&r).is_match("&kuma.io/service=b&"));
        assert!(!re(&r).is_match("&kuma.io/service=c&"));
    }

    #[test]
    fn rule_subsets_keep_negations_as_inverted_matchers() {
        let t = |k: &str, v: &str, not: bool| Tag { key: k.into(), value: v.into(), not };
        let m = SourceMatch::subset(&Subset::new(vec![t("kuma.io/service", "web", false), t("version", "2", true)]));
        let matchers = m.matchers();
        assert_eq!(matchers.len(), 2);
        assert!(!matchers[0].invert_match && matchers[1].invert_match && matchers[1].treat_missing_header_as_empty);
        assert!(SourceMatch::subset(&Subset::default()).matchers().is_empty());
    }
}
