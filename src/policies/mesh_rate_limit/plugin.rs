//! MeshRateLimit on the engine: for each inbound the top-level targetRef selects, the `from`
//! rule for every client (its `from` names only `Mesh`) sets a request limit on the inbound's
//! routes (HTTP inbounds) and a connection limit on its listener.
//!
//! Coexistence (reference §4.4): inbounds an old RateLimit matched are left alone, so the
//! routes RateLimit made keep their limits. The Envoy config is written by the RateLimit
//! plugin, which owns the conf.

use super::api::{Conf, HeaderModifier, Rate};
use crate::model::ResourceType;
use crate::policies::core::matching::{from_rules, matched};
use crate::policies::core::oldstyle::select_inbound_all;
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::kuma_tags::SourceMatch;
use crate::policies::rate_limit::plugin::{HttpRateLimit, TokenBucket};
use crate::policies::resolved::{HeaderValue, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

fn bucket(rate: Option<&Rate>) -> Option<TokenBucket> {
    let r = rate?;
    Some(TokenBucket { tokens: r.num, interval: r.interval?.0 })
}

/// `set` replaces what the response has, `add` appends (Kuma's order: set, then add).
fn headers(h: Option<&HeaderModifier>) -> Vec<HeaderValue> {
    let Some(h) = h else { return Vec::new() };
    let one = |append: bool| {
        move |x: &super::api::Header| HeaderValue { name: x.name.clone(), value: x.value.clone(), append }
    };
    h.set.iter().map(one(false)).chain(h.add.iter().map(one(true))).collect()
}

pub struct MeshRateLimitPlugin;

impl Plugin for MeshRateLimitPlugin {
    fn name(&self) -> &'static str {
        "mesh-rate-limit"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshRateLimit]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshRateLimit;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let old = cx.policies.of(ResourceType::RateLimit);
        for r in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            if !select_inbound_all(old, &inbound.tags).is_empty() {
                continue;
            }
            let rules = from_rules(cx.policies, t, &matched, &inbound.tags, MergeOptions::default());
            let Some(local) = rules.conf_for::<Conf>(&Subset::default()).and_then(|c| c.local.as_ref()) else {
                continue;
            };
            let limits = &mut r.conf.rate_limits;
            if let Some(http) = local.http.as_ref().filter(|h| h.disabled != Some(true) && inbound.protocol().is_http())
            {
                let on = http.on_rate_limit.as_ref();
                limits.http = bucket(http.request_rate.as_ref())
                    .map(|bucket| HttpRateLimit {
                        sources: SourceMatch::any(),
                        bucket,
                        status: on.and_then(|o| o.status),
                        headers: headers(on.and_then(|o| o.headers.as_ref())),
                    })
                    .into_iter()
                    .collect();
            }
            if let Some(tcp) = local.tcp.as_ref().filter(|t| t.disabled != Some(true)) {
                limits.tcp = bucket(tcp.connection_rate.as_ref());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::{check_golden, resolve_yaml};
    use crate::policies::kuma_tags::SourceMatch;

    #[test]
    fn golden_basic() {
        check_golden("src/policies/mesh_rate_limit/testdata", "basic", "backend-1");
    }

    const INPUT: &str = r#"
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - {port: 8080, tags: {kuma.io/service: backend, kuma.io/protocol: http}}
    - {port: 8081, tags: {kuma.io/service: backend-api, kuma.io/protocol: http}}
---
type: RateLimit
mesh: default
name: old
sources: [{match: {kuma.io/service: web}}]
destinations: [{match: {kuma.io/service: backend}}]
conf: {http: {requests: 7, interval: 1s}}
---
type: MeshRateLimit
mesh: default
name: new
spec:
  targetRef: {kind: Mesh}
  from:
    - targetRef: {kind: Mesh}
      default: {local: {http: {requestRate: {num: 3, interval: 1s}}, tcp: {connectionRate: {num: 9, interval: 1s}}}}
"#;

    /// Kuma's coexistence rule: MeshRateLimit leaves an inbound an old RateLimit matched
    /// entirely alone (no connection limit either) and limits the others.
    #[test]
    fn inbounds_an_old_rate_limit_matched_are_skipped() {
        let r = resolve_yaml(INPUT, "backend-1");
        let old = &r.inbounds[0].conf.rate_limits;
        assert_eq!(old.http.len(), 1);
        assert_eq!(old.http[0].bucket.tokens, 7);
        assert_ne!(old.http[0].sources, SourceMatch::any());
        assert_eq!(old.tcp, None);
        let new = &r.inbounds[1].conf.rate_limits;
        assert_eq!(
            new.http.iter().map(|l| (l.bucket.tokens, l.sources.clone())).collect::<Vec<_>>(),
            vec![(3, SourceMatch::any())]
        );
        assert_eq!(new.tcp.map(|b| b.tokens), Some(9));
    }

    #[test]
    fn disabled_turns_a_limit_off() {
        let input =
            INPUT.replace("requestRate: {num: 3, interval: 1s}", "disabled: true, requestRate: {num: 3, interval: 1s}");
        let r = resolve_yaml(&input, "backend-1");
        assert!(r.inbounds[1].conf.rate_limits.http.is_empty());
        assert_eq!(r.inbounds[1].conf.rate_limits.tcp.map(|b| b.tokens), Some(9));
    }
}
