//! Kuma's old-style ("source/destination") matching (`pkg/core/policy/*.go`, reference
//! §2.2): ranks, the four selection functions and their tie rules.
//!
//! - `Rank` = (exact tags, wildcard tags) of a selector; a larger *total* wins, then more
//!   exact tags. A policy's rank for an outbound is its best matching source selector plus
//!   its best matching destination selector.
//! - Ties: candidates are visited sorted by name; one replaces the current best only when
//!   its rank is strictly greater, or equal and its creation time strictly later. So: highest
//!   rank, then newest, then the first name.

use crate::model::Tags;
use std::cmp::Ordering;
use std::sync::Arc;

use crate::model::dataplane::DataplaneSpec;
use crate::model::selector::{Selector, SERVICE_TAG, WILDCARD};
use crate::model::Resource;

/// What the engine needs of an old-style policy spec.
pub trait OldStylePolicy {
    fn sources(&self) -> &[Selector];
    fn destinations(&self) -> &[Selector];
    /// Where the policy attaches, which decides how it is selected and how the inspect API
    /// names the attachment.
    fn attachment(&self) -> Attachment;

    /// Attaches to the inbounds its destinations match rather than to the outbounds of the
    /// dataplanes its sources match.
    fn attaches_inbound(&self) -> bool {
        matches!(self.attachment(), Attachment::InboundBest | Attachment::InboundAll)
    }
}

/// Where an old-style policy attaches (Kuma's four selection functions, reference §2.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Attachment {
    /// Per outbound (`<ip>:<port>` in inspect): [`select_outbound`] for its service
    /// (TrafficRoute, Timeout).
    Outbound,
    /// Per destination service: [`select_outbound`] for each (HealthCheck, CircuitBreaker,
    /// Retry, TrafficLog).
    Service,
    /// Per inbound, the single best by destination: [`select_inbound`] (TrafficPermission).
    InboundBest,
    /// Per inbound, every match: [`select_inbound_all`] (FaultInjection, RateLimit).
    InboundAll,
}

/// How specifically a selector matched: (exact values, `*` values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rank {
    pub exact: usize,
    pub wildcard: usize,
}

impl Rank {
    fn of(selector: &Selector) -> Rank {
        let wildcard = selector.match_.values().filter(|v| v.as_str() == WILDCARD).count();
        Rank { exact: selector.match_.len() - wildcard, wildcard }
    }

    fn total(self) -> usize {
        self.exact + self.wildcard
    }

    fn combined(self, other: Rank) -> Rank {
        Rank { exact: self.exact + other.exact, wildcard: self.wildcard + other.wildcard }
    }
}

impl PartialOrd for Rank {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Rank {
    fn cmp(&self, other: &Self) -> Ordering {
        self.total().cmp(&other.total()).then(self.exact.cmp(&other.exact))
    }
}

/// The best rank among `selectors` that match one of `tag_sets`, if any matches.
fn best_rank(selectors: &[Selector], dp: &DataplaneSpec) -> Option<Rank> {
    selectors.iter().filter(|s| dp.tags_of_inbounds().any(|t| s.matches(t))).map(Rank::of).max()
}

/// [`best_rank`] against one tag set.
fn best_rank_of(selectors: &[Selector], tags: &Tags) -> Option<Rank> {
    selectors.iter().filter(|s| s.matches(tags)).map(Rank::of).max()
}

/// The best rank among destination selectors matching the single tag `kuma.io/service: S`
/// (so destination selectors with other tags never match, as in Kuma).
fn best_service_rank(selectors: &[Selector], service: &str) -> Option<Rank> {
    selectors.iter().filter(|s| s.matches_service(service)).map(Rank::of).max()
}

/// Keeps the better of two candidates by Kuma's tie rules (`current` came first by name).
fn better(candidate: (Rank, &Resource), current: (Rank, &Resource)) -> bool {
    match candidate.0.cmp(&current.0) {
        Ordering::Greater => true,
        Ordering::Equal => candidate.1.meta.creation_time > current.1.meta.creation_time,
        Ordering::Less => false,
    }
}

fn spec_of(r: &Resource) -> Option<&dyn OldStylePolicy> {
    r.spec.old_style()
}

/// `SelectOutboundConnectionPolicies` for one destination service: the single policy whose
/// sources match one of the dataplane's inbounds and whose destinations match `service`,
/// ranked by source + destination. `policies` must be sorted by name.
pub fn select_outbound<'a>(
    policies: &'a [Arc<Resource>],
    dp: &DataplaneSpec,
    service: &str,
) -> Option<&'a Arc<Resource>> {
    let mut best: Option<(Rank, &Arc<Resource>)> = None;
    for p in policies {
        let Some(spec) = spec_of(p) else { continue };
        // Destinations first: a one-tag compare, and it rules most policies out.
        let Some(dest) = best_service_rank(spec.destinations(), service) else { continue };
        let Some(source) = best_rank(spec.sources(), dp) else { continue };
        let rank = dest.combined(source);
        if best.is_none_or(|(r, cur)| better((rank, p), (r, cur))) {
            best = Some((rank, p));
        }
    }
    best.map(|(_, p)| p)
}

/// `SelectInboundConnectionPolicy`: the single policy whose destinations best match the
/// inbound's tags (sources play no part in the choice). `policies` must be sorted by name.
pub fn select_inbound<'a>(policies: &'a [Arc<Resource>], inbound_tags: &Tags) -> Option<&'a Arc<Resource>> {
    let mut best: Option<(Rank, &Arc<Resource>)> = None;
    for p in policies {
        let Some(spec) = spec_of(p) else { continue };
        let Some(rank) = best_rank_of(spec.destinations(), inbound_tags) else { continue };
        if best.is_none_or(|(r, cur)| better((rank, p), (r, cur))) {
            best = Some((rank, p));
        }
    }
    best.map(|(_, p)| p)
}

/// `SelectInboundConnectionAllPolicies`: every policy with a destination matching the
/// inbound, most specific first by the rank of its *first* source selector, newer first on
/// ties. Kuma lists a policy once per matching destination selector; higuma lists it once,
/// since a second copy only repeats the same filter.
pub fn select_inbound_all<'a>(policies: &'a [Arc<Resource>], inbound_tags: &Tags) -> Vec<&'a Arc<Resource>> {
    let mut matched: Vec<(Rank, &Arc<Resource>)> = policies
        .iter()
        .filter_map(|p| {
            let spec = spec_of(p)?;
            spec.destinations().iter().any(|d| d.matches(inbound_tags)).then(|| {
                let rank = spec.sources().first().map(Rank::of).unwrap_or_default();
                (rank, p)
            })
        })
        .collect();
    // Stable: equal ranks and times keep name order.
    matched.sort_by(|(ra, a), (rb, b)| rb.cmp(ra).then(b.meta.creation_time.cmp(&a.meta.creation_time)));
    matched.into_iter().map(|(_, p)| p).collect()
}

/// Whether a policy's sources select `dp` (any inbound matches any source selector).
pub fn sources_match(spec: &dyn OldStylePolicy, dp: &DataplaneSpec) -> bool {
    best_rank(spec.sources(), dp).is_some()
}

/// The services a set of destination selectors can name: `None` when one matches any
/// service (`*`), else the exact `kuma.io/service` values.
pub fn destination_services(selectors: &[Selector]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    for s in selectors {
        match s.match_.get(SERVICE_TAG).map(String::as_str) {
            Some(WILDCARD) | None => return None,
            Some(svc) => out.push(svc.to_string()),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest;
    use serde_json::json;
    use std::time::{Duration, SystemTime};

    fn timeout(name: &str, sources: serde_json::Value, dest: &str, created_secs: u64) -> Arc<Resource> {
        let env = rest::from_json(json!({
            "type": "Timeout", "mesh": "default", "name": name,
            "sources": sources,
            "destinations": [{"match": {"kuma.io/service": dest}}],
            "conf": {"connectTimeout": "1s"}
        }))
        .unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(created_secs);
        Arc::new(Resource {
            meta: crate::model::Meta {
                mesh: "default".into(),
                name: name.into(),
                version: 1,
                creation_time: t,
                modification_time: t,
            },
            spec: env.spec,
        })
    }

    fn dp(tags: serde_json::Value) -> DataplaneSpec {
        let env = rest::from_json(json!({
            "type": "Dataplane", "mesh": "default", "name": "d",
            "networking": {"address": "10.0.0.1", "inbound": [{"port": 1, "tags": tags}]}
        }))
        .unwrap();
        match env.spec {
            crate::model::Spec::Dataplane(s) => s,
            _ => unreachable!(),
        }
    }

    fn any() -> serde_json::Value {
        json!([{"match": {"kuma.io/service": "*"}}])
    }

    #[test]
    fn more_tags_win_then_exact_tags() {
        let web = dp(json!({"kuma.io/service": "web", "version": "1"}));
        let mut ps = vec![
            timeout("a-any", any(), "*", 0),
            timeout("b-web", json!([{"match": {"kuma.io/service": "web"}}]), "*", 0),
            timeout("c-exact-dest", any(), "backend", 0),
        ];
        ps.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
        // Ranks: a = 1w + 1w; b = 1e + 1w; c = 1w + 1e: b and c tie on total and exact count,
        // created at the same time, so the first name (b) wins.
        assert_eq!(select_outbound(&ps, &web, "backend").unwrap().meta.name, "b-web");
        // Two source tags beat one, whatever the exactness.
        ps.push(timeout("z-two-tags", json!([{"match": {"kuma.io/service": "*", "version": "*"}}]), "*", 0));
        assert_eq!(select_outbound(&ps, &web, "backend").unwrap().meta.name, "z-two-tags");
    }

    #[test]
    fn equal_ranks_go_to_the_newest_then_the_first_name() {
        let web = dp(json!({"kuma.io/service": "web"}));
        let ps = vec![timeout("a", any(), "*", 10), timeout("b", any(), "*", 20), timeout("c", any(), "*", 20)];
        assert_eq!(select_outbound(&ps, &web, "x").unwrap().meta.name, "b");
    }

    #[test]
    fn destinations_match_only_the_service_tag_and_sources_any_inbound() {
        let web = dp(json!({"kuma.io/service": "web"}));
        let ps = vec![timeout("p", json!([{"match": {"kuma.io/service": "other"}}]), "*", 0)];
        assert!(select_outbound(&ps, &web, "backend").is_none());
        let ps = vec![timeout("p", any(), "db", 0)];
        assert!(select_outbound(&ps, &web, "backend").is_none());
        assert!(select_outbound(&ps, &web, "db").is_some());
    }

    #[test]
    fn destination_services_are_exact_or_any() {
        let sel = |v: &str| Selector::new([(SERVICE_TAG, v)]);
        assert_eq!(destination_services(&[sel("a"), sel("b")]), Some(vec!["a".to_string(), "b".to_string()]));
        assert_eq!(destination_services(&[sel("a"), sel("*")]), None);
    }
}
