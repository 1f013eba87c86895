//! RateLimit on the engine: every RateLimit with `conf.http` whose destinations match an HTTP
//! inbound (most specific first source first) becomes one route of that inbound, matched by
//! its sources' `x-kuma-tags` regex and carrying a per-route token bucket, ahead of the
//! catch-all route; the HCM gets the `local_ratelimit` filter those routes configure.
//! MeshRateLimit writes the same conf (one limit for every source, and connection limits);
//! this plugin turns it into Envoy config for both.

use std::time::Duration;

use protobuf::{EnumOrUnknown, MessageField};

use super::api::RateLimitSpec;
use crate::envoy::base::header_value_option::HeaderAppendAction;
use crate::envoy::base::{HeaderValue as EnvoyHeaderValue, HeaderValueOption, RuntimeFractionalPercent};
use crate::envoy::http_connection_manager::HttpFilter;
use crate::envoy::http_local_rate_limit::LocalRateLimit as HttpLocalRateLimit;
use crate::envoy::http_status::HttpStatus;
use crate::envoy::listener_components::Filter;
use crate::envoy::network_local_rate_limit::LocalRateLimit as NetworkLocalRateLimit;
use crate::envoy::parts::InboundListener;
use crate::envoy::percent::FractionalPercent;
use crate::envoy::route_components::Route;
use crate::envoy::token_bucket::TokenBucket as EnvoyTokenBucket;
use crate::envoy::{duration, to_any, u32_value};
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_inbound_all;
use crate::policies::fault_injection::plugin::insert_before_router;
use crate::policies::kuma_tags::SourceMatch;
use crate::policies::resolved::{HeaderValue, InboundConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

/// Envoy's name of the HTTP local rate limit filter (also the per-route config's key).
pub const HTTP_FILTER: &str = "envoy.filters.http.local_ratelimit";
/// The name Kuma gives the connection rate limit filter (Envoy finds the extension by its
/// type URL, so the name is only a label).
pub const NETWORK_FILTER: &str = "envoy.extensions.filters.network.local_ratelimit.v3.LocalRateLimit";
const HTTP_STAT_PREFIX: &str = "rate_limit";
const TCP_STAT_PREFIX: &str = "tcp_rate_limit";
/// Runtime keys Kuma names the enabled / enforced fractions by (100 % unless overridden).
const ENABLED_RUNTIME_KEY: &str = "local_rate_limit_enabled";
const ENFORCED_RUNTIME_KEY: &str = "local_rate_limit_enforced";

/// `tokens` per `interval`, the bucket starting full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TokenBucket {
    pub tokens: u32,
    pub interval: Duration,
}

impl TokenBucket {
    fn envoy(self) -> EnvoyTokenBucket {
        let mut b = EnvoyTokenBucket::new();
        b.max_tokens = self.tokens;
        b.tokens_per_fill = MessageField::some(u32_value(self.tokens));
        b.fill_interval = MessageField::some(duration(self.interval));
        b
    }
}

/// An HTTP request limit for the requests of some sources.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HttpRateLimit {
    /// [`SourceMatch::any`]: the limit goes on the inbound's own routes; otherwise on a route
    /// of its own matching these sources.
    pub sources: SourceMatch,
    pub bucket: TokenBucket,
    /// Status of a limited request (Envoy's default, 429, when `None`).
    pub status: Option<u32>,
    pub headers: Vec<HeaderValue>,
}

/// Everything rate-limited on one inbound.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct InboundRateLimits {
    pub http: Vec<HttpRateLimit>,
    /// New connections per interval (MeshRateLimit `tcp.connectionRate`).
    pub tcp: Option<TokenBucket>,
}

impl HttpRateLimit {
    fn of(spec: &RateLimitSpec) -> Option<HttpRateLimit> {
        let http = spec.conf.as_ref()?.http.as_ref()?;
        let on = http.on_rate_limit.as_ref();
        Some(HttpRateLimit {
            sources: SourceMatch::selectors(&spec.sources),
            bucket: TokenBucket { tokens: http.requests?, interval: http.interval?.0 },
            status: on.and_then(|o| o.status),
            headers: on
                .map(|o| {
                    o.headers
                        .iter()
                        .map(|h| HeaderValue {
                            name: h.key.clone(),
                            value: h.value.clone(),
                            append: h.append.unwrap_or(false),
                        })
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The per-route config.
    fn per_route(&self) -> HttpLocalRateLimit {
        let full = || {
            let mut f = FractionalPercent::new();
            f.numerator = 100;
            f
        };
        let runtime = |key: &str| {
            let mut r = RuntimeFractionalPercent::new();
            r.default_value = MessageField::some(full());
            r.runtime_key = key.to_string();
            r
        };
        let mut l = HttpLocalRateLimit::new();
        l.stat_prefix = HTTP_STAT_PREFIX.to_string();
        l.token_bucket = MessageField::some(self.bucket.envoy());
        l.filter_enabled = MessageField::some(runtime(ENABLED_RUNTIME_KEY));
        l.filter_enforced = MessageField::some(runtime(ENFORCED_RUNTIME_KEY));
        if let Some(code) = self.status {
            let mut s = HttpStatus::new();
            // Validation admits only codes of Envoy's enum.
            s.code = EnumOrUnknown::from_i32(code as i32);
            l.status = MessageField::some(s);
        }
        l.response_headers_to_add = self.headers.iter().map(header_value).collect();
        l
    }

    fn apply(&self, route: &mut Route) {
        route.typed_per_filter_config.insert(HTTP_FILTER.to_string(), to_any(&self.per_route()));
    }
}

fn header_value(h: &HeaderValue) -> HeaderValueOption {
    let mut hv = EnvoyHeaderValue::new();
    hv.key = h.name.clone();
    hv.value = h.value.clone();
    let mut o = HeaderValueOption::new();
    o.header = MessageField::some(hv);
    o.append_action = EnumOrUnknown::new(if h.append {
        HeaderAppendAction::APPEND_IF_EXISTS_OR_ADD
    } else {
        HeaderAppendAction::OVERWRITE_IF_EXISTS_OR_ADD
    });
    o
}

fn http_filter() -> HttpFilter {
    let mut l = HttpLocalRateLimit::new();
    l.stat_prefix = HTTP_STAT_PREFIX.to_string();
    let mut f = HttpFilter::new();
    f.name = HTTP_FILTER.to_string();
    f.set_typed_config(to_any(&l));
    f
}

fn network_filter(bucket: TokenBucket) -> Filter {
    let mut l = NetworkLocalRateLimit::new();
    l.stat_prefix = TCP_STAT_PREFIX.to_string();
    l.token_bucket = MessageField::some(bucket.envoy());
    let mut f = Filter::new();
    f.name = NETWORK_FILTER.to_string();
    f.set_typed_config(to_any(&l));
    f
}

pub struct RateLimitPlugin;

impl Plugin for RateLimitPlugin {
    fn name(&self) -> &'static str {
        "rate-limit"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::RateLimit]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::RateLimit);
        if policies.is_empty() {
            return;
        }
        for r in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(r.index) else { continue };
            if !inbound.protocol().is_http() {
                continue;
            }
            r.conf.rate_limits.http = select_inbound_all(policies, &inbound.tags)
                .into_iter()
                .filter_map(|p| p.spec.get::<RateLimitSpec>())
                .filter_map(HttpRateLimit::of)
                .collect();
        }
    }

    fn configure_inbound(&self, conf: &InboundConf, listener: &mut InboundListener) {
        let limits = &conf.rate_limits;
        if let Some(bucket) = limits.tcp {
            listener.network_filters.insert(0, network_filter(bucket));
        }
        if limits.http.is_empty() {
            return;
        }
        let Some(hcm) = listener.hcm.as_mut() else { return };
        if !hcm.has_route_config() {
            return;
        }
        insert_before_router(hcm, http_filter());
        let Some(vh) = hcm.mut_route_config().virtual_hosts.first_mut() else { return };
        let Some(fallback) = vh.routes.last().cloned() else { return };
        let mut routes = Vec::with_capacity(limits.http.len() + vh.routes.len());
        for limit in &limits.http {
            if limit.sources == SourceMatch::any() {
                continue;
            }
            let mut route = fallback.clone();
            route.match_.mut_or_insert_default().headers.extend(limit.sources.matchers());
            limit.apply(&mut route);
            routes.push(route);
        }
        routes.append(&mut vh.routes);
        for limit in limits.http.iter().filter(|l| l.sources == SourceMatch::any()) {
            for route in routes.iter_mut().filter(|r| !r.typed_per_filter_config.contains_key(HTTP_FILTER)) {
                limit.apply(route);
            }
        }
        vh.routes = routes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envoy::http_status::StatusCode;

    #[test]
    fn statuses_map_onto_envoys_enum() {
        let limit = HttpRateLimit {
            sources: SourceMatch::any(),
            bucket: TokenBucket { tokens: 5, interval: Duration::from_secs(10) },
            status: Some(404),
            headers: vec![],
        };
        assert_eq!(limit.per_route().status.code.enum_value(), Ok(StatusCode::NotFound));
        assert_eq!(limit.per_route().token_bucket.tokens_per_fill.value, 5);
    }
}

#[cfg(test)]
mod golden {
    #[test]
    fn golden_basic() {
        crate::policies::core::testing::check_golden("src/policies/rate_limit/testdata", "basic", "backend-1");
    }
}
