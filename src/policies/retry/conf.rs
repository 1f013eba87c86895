//! The resolved retries: what Retry (old-style) and MeshRetry decided for one outbound
//! listener, and how that shapes it.
//!
//! Retry puts its policy on the virtual host, MeshRetry on every route; Envoy uses a
//! route's policy over its virtual host's, which is how the successor wins where both apply
//! (reference §4.4). Both set the TCP proxy's connect attempts, MeshRetry after Retry.

use crate::model::Tags;
use std::collections::BTreeMap;
use std::time::Duration;

use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::struct_::{Struct, Value};
use protobuf::{EnumOrUnknown, Message, MessageField};

use crate::envoy::http_connection_manager::HttpConnectionManager;
use crate::envoy::omit_host_metadata_config::OmitHostMetadataConfig;
use crate::envoy::previous_hosts::PreviousHostsPredicate;
use crate::envoy::previous_priorities_config::PreviousPrioritiesConfig;
use crate::envoy::route_components::retry_policy::{
    RateLimitedRetryBackOff as EnvoyRateLimitedBackOff, ResetHeader as EnvoyResetHeader, ResetHeaderFormat,
    RetryBackOff as EnvoyBackOff, RetryHostPredicate, RetryPriority,
};
use crate::envoy::route_components::{HeaderMatcher as EnvoyHeaderMatcher, RetryPolicy as EnvoyRetryPolicy};
use crate::envoy::string::StringMatcher;
use crate::envoy::tcp_proxy::TcpProxy;
use crate::envoy::{duration, regex::RegexMatcher, to_any, type_url, u32_value};
use crate::policies::resolved::{HeaderMatch, HeaderMatcher};

/// Kuma's `retryOn` for HTTP when a policy lists none.
pub const HTTP_RETRY_ON_DEFAULT: &str = "gateway-error,connect-failure,refused-stream";
/// Kuma's `retryOn` for gRPC when a policy lists none.
pub const GRPC_RETRY_ON_DEFAULT: &str =
    "cancelled,connect-failure,gateway-error,refused-stream,reset,resource-exhausted,unavailable";
/// The condition Envoy needs to retry on `retriable_status_codes`.
const RETRIABLE_STATUS_CODES: &str = "retriable-status-codes";

/// An outbound listener's retries.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct OutboundRetries {
    /// Retry: the virtual host's policy.
    pub virtual_host: Option<RetryPolicy>,
    /// MeshRetry: every route's policy, unless `by_route` names the route.
    pub routes: Option<RetryPolicy>,
    /// MeshRetry per route, by Envoy route name (a MeshHTTPRoute rule's hash); only entries
    /// that differ from `routes`.
    pub by_route: BTreeMap<String, RetryPolicy>,
    /// `tcp_proxy.max_connect_attempts`.
    pub max_connect_attempts: Option<u32>,
}

/// Envoy's `RetryPolicy`, as plain data.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RetryPolicy {
    pub retry_on: String,
    pub num_retries: Option<u32>,
    pub per_try_timeout: Option<Duration>,
    pub back_off: Option<BackOff>,
    pub rate_limited_back_off: Option<RateLimitedBackOff>,
    pub retriable_status_codes: Vec<u32>,
    /// Request headers (`:method` for methods) a retried request must match.
    pub retriable_request_headers: Vec<HeaderMatch>,
    /// Response headers that make a response retriable.
    pub retriable_headers: Vec<HeaderMatch>,
    pub host_predicates: Vec<HostPredicate>,
    /// `envoy.retry_priorities.previous_priorities` with this update frequency.
    pub previous_priorities: Option<i32>,
    pub host_selection_max_attempts: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct BackOff {
    pub base_interval: Option<Duration>,
    pub max_interval: Option<Duration>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RateLimitedBackOff {
    /// `(header name, the value is a Unix timestamp rather than seconds)`.
    pub reset_headers: Vec<(String, bool)>,
    pub max_interval: Option<Duration>,
}

/// A retry host predicate.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPredicate {
    /// `envoy.retry_host_predicates.previous_hosts`.
    PreviousHosts,
    /// `envoy.retry_host_predicates.omit_host_metadata` on these `envoy.lb` tags.
    OmitHostMetadata(Tags),
}

/// `retry_on` with `retriable-status-codes` appended unless it is there.
pub fn ensure_retriable_status_codes(retry_on: &str) -> String {
    if retry_on.split(',').any(|c| c == RETRIABLE_STATUS_CODES) {
        retry_on.to_string()
    } else if retry_on.is_empty() {
        RETRIABLE_STATUS_CODES.to_string()
    } else {
        format!("{retry_on},{RETRIABLE_STATUS_CODES}")
    }
}

/// `:method` exactly `method`, as Kuma matches retriable methods.
pub fn method_matcher(method: &str) -> HeaderMatch {
    HeaderMatch { name: ":method".to_string(), matcher: HeaderMatcher::Exact(method.to_string()) }
}

/// Sets what `r` says on a listener's HTTP connection manager (its inline routes and
/// virtual hosts) or TCP proxy, whichever it has.
pub fn apply_to_listener(r: &OutboundRetries, hcm: Option<&mut HttpConnectionManager>, tcp: Option<&mut TcpProxy>) {
    if let Some(hcm) = hcm.filter(|h| h.has_route_config()) {
        let vhost = r.virtual_host.as_ref().map(envoy_policy);
        let routes = r.routes.as_ref().map(envoy_policy);
        for vh in &mut hcm.mut_route_config().virtual_hosts {
            if let Some(p) = &vhost {
                vh.retry_policy = MessageField::some(p.clone());
            }
            for route in &mut vh.routes {
                if !route.has_route() {
                    continue;
                }
                let policy = match r.by_route.get(&route.name) {
                    Some(own) => Some(envoy_policy(own)),
                    None => routes.clone(),
                };
                if let Some(p) = policy {
                    route.mut_route().retry_policy = MessageField::some(p);
                }
            }
        }
    }
    if let (Some(tcp), Some(n)) = (tcp, r.max_connect_attempts) {
        tcp.max_connect_attempts = MessageField::some(u32_value(n));
    }
}

fn envoy_policy(p: &RetryPolicy) -> EnvoyRetryPolicy {
    let mut out = EnvoyRetryPolicy::new();
    out.retry_on = p.retry_on.clone();
    if let Some(n) = p.num_retries {
        out.num_retries = MessageField::some(u32_value(n));
    }
    if let Some(d) = p.per_try_timeout {
        out.per_try_timeout = MessageField::some(duration(d));
    }
    if let Some(b) = &p.back_off {
        let mut bo = EnvoyBackOff::new();
        bo.base_interval = b.base_interval.map(duration).into();
        bo.max_interval = b.max_interval.map(duration).into();
        out.retry_back_off = MessageField::some(bo);
    }
    if let Some(r) = &p.rate_limited_back_off {
        let mut rl = EnvoyRateLimitedBackOff::new();
        for (name, unix) in &r.reset_headers {
            let mut h = EnvoyResetHeader::new();
            h.name = name.clone();
            h.format =
                EnumOrUnknown::new(if *unix { ResetHeaderFormat::UNIX_TIMESTAMP } else { ResetHeaderFormat::SECONDS });
            rl.reset_headers.push(h);
        }
        rl.max_interval = r.max_interval.map(duration).into();
        out.rate_limited_retry_back_off = MessageField::some(rl);
    }
    out.retriable_status_codes = p.retriable_status_codes.clone();
    out.retriable_request_headers = p.retriable_request_headers.iter().map(header_matcher).collect();
    out.retriable_headers = p.retriable_headers.iter().map(header_matcher).collect();
    for predicate in &p.host_predicates {
        let mut hp = RetryHostPredicate::new();
        match predicate {
            HostPredicate::PreviousHosts => {
                hp.name = "envoy.retry_host_predicates.previous_hosts".to_string();
                hp.set_typed_config(to_any(&PreviousHostsPredicate::new()));
            }
            HostPredicate::OmitHostMetadata(tags) => {
                hp.name = "envoy.retry_host_predicates.omit_host_metadata".to_string();
                hp.set_typed_config(omit_host_metadata(tags));
            }
        }
        out.retry_host_predicate.push(hp);
    }
    if let Some(update_frequency) = p.previous_priorities {
        let mut rp = RetryPriority::new();
        rp.name = "envoy.retry_priorities.previous_priorities".to_string();
        rp.set_typed_config(to_any(&PreviousPrioritiesConfig { update_frequency, ..Default::default() }));
        out.retry_priority = MessageField::some(rp);
    }
    if let Some(n) = p.host_selection_max_attempts {
        out.host_selection_retry_max_attempts = n;
    }
    out
}

/// Kuma's header matches: Absent is `present_match: false` (Envoy: the header is absent).
fn header_matcher(h: &HeaderMatch) -> EnvoyHeaderMatcher {
    let mut m = EnvoyHeaderMatcher::new();
    m.name = h.name.clone();
    let mut s = StringMatcher::new();
    match &h.matcher {
        HeaderMatcher::Exact(v) => s.set_exact(v.clone()),
        HeaderMatcher::Prefix(v) => s.set_prefix(v.clone()),
        HeaderMatcher::Regex(v) => s.set_safe_regex(RegexMatcher { regex: v.clone(), ..Default::default() }),
        HeaderMatcher::Present => {
            m.set_present_match(true);
            return m;
        }
        HeaderMatcher::Absent => {
            m.set_present_match(false);
            return m;
        }
    }
    m.set_string_match(s);
    m
}

/// `OmitHostMetadataConfig{metadata_match.filter_metadata["envoy.lb"] = tags}`. A `Struct`'s
/// fields are a map, which rust-protobuf encodes in hash order; the bytes are written by
/// hand from one-entry Structs in tag order instead, so equal tags give equal bytes (and
/// equal versions).
fn omit_host_metadata(tags: &Tags) -> Any {
    let mut fields = Vec::new();
    for (k, v) in tags {
        let mut value = Value::new();
        value.set_string_value(v.clone());
        let mut one = Struct::new();
        one.fields.insert(k.clone(), value);
        // A one-entry message of strings always encodes.
        fields.extend(one.write_to_bytes().unwrap_or_default());
    }
    // Metadata.filter_metadata (1) entry {key (1), value (2)} inside metadata_match (1).
    let entry = [length_delimited(1, b"envoy.lb"), length_delimited(2, &fields)].concat();
    let config = length_delimited(1, &length_delimited(1, &entry));
    Any { type_url: type_url::<OmitHostMetadataConfig>(), value: config, ..Default::default() }
}

/// A length-delimited protobuf field: tag, length, bytes.
fn length_delimited(field: u32, bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 6);
    varint(&mut out, u64::from(field << 3 | 2));
    varint(&mut out, bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retriable_status_codes_is_appended_once() {
        assert_eq!(ensure_retriable_status_codes("5xx"), "5xx,retriable-status-codes");
        assert_eq!(ensure_retriable_status_codes("retriable-status-codes,reset"), "retriable-status-codes,reset");
        assert_eq!(ensure_retriable_status_codes(""), "retriable-status-codes");
    }

    #[test]
    fn omitted_host_metadata_decodes_and_is_deterministic() {
        let tags: Tags = (0..20).map(|i| (format!("k{i:02}"), format!("v{i}"))).collect();
        let a = omit_host_metadata(&tags);
        let b = omit_host_metadata(&tags.clone());
        assert_eq!(a.value, b.value);
        let decoded = OmitHostMetadataConfig::parse_from_bytes(&a.value).unwrap();
        let lb = &decoded.metadata_match.filter_metadata["envoy.lb"];
        assert_eq!(lb.fields.len(), 20);
        assert_eq!(lb.fields["k07"].string_value(), "v7");
    }

    #[test]
    fn a_route_policy_wins_over_the_virtual_host_policy_only_where_set() {
        use crate::xds::generate::envoy_builders::route;
        let catch_all =
            crate::policies::resolved::HttpRoute::catch_all(vec![crate::policies::resolved::WeightedCluster {
                name: "b".into(),
                weight: 100,
            }]);
        let mut named = catch_all.clone();
        named.name = "r1".into();
        let mut rc = crate::envoy::route::RouteConfiguration::new();
        let mut vh = crate::envoy::route_components::VirtualHost::new();
        vh.routes = vec![route(&catch_all), route(&named)];
        rc.virtual_hosts.push(vh);
        let mut hcm = HttpConnectionManager::new();
        hcm.set_route_config(rc);
        let policy = |on: &str| RetryPolicy { retry_on: on.into(), ..Default::default() };
        let r = OutboundRetries {
            virtual_host: Some(policy("reset")),
            routes: Some(policy("5xx")),
            by_route: BTreeMap::from([("r1".to_string(), policy("connect-failure"))]),
            max_connect_attempts: Some(3),
        };
        let mut tcp = TcpProxy::new();
        apply_to_listener(&r, Some(&mut hcm), Some(&mut tcp));
        let vh = &hcm.route_config().virtual_hosts[0];
        assert_eq!(vh.retry_policy.retry_on, "reset");
        assert_eq!(vh.routes[0].route().retry_policy.retry_on, "5xx");
        assert_eq!(vh.routes[1].route().retry_policy.retry_on, "connect-failure");
        assert_eq!(tcp.max_connect_attempts.value, 3);
    }
}
