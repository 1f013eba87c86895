//! MeshRetry on the engine (reference §4.5): the MeshRetries selecting the dataplane make
//! `to` rules; the conf for an outbound's service decides, by the outbound's protocol:
//!
//! - http: the `http` section as every route's retry policy, which Envoy uses over the
//!   virtual host's policy an old Retry may have set;
//! - grpc: the `grpc` section, with Kuma's gRPC conditions by default;
//! - tcp: `tcp.maxConnectAttempt` on the TCP proxy, overriding Retry's;
//! - http2, kafka: nothing, as in Kuma (its configurer handles "http" and "grpc", and the
//!   TCP proxy only for exactly "tcp"; Kuma's "unknown" protocol, which higuma reads as tcp,
//!   gets nothing there either).
//!
//! The conf lives in the `retries` field the Retry plugin's configure hook applies. Routes a
//! MeshHTTPRoute rule names are looked up per route (see `mesh_timeout::plugin::per_route`).

use super::api::{BackOff as ApiBackOff, Grpc, HeaderMatch as ApiHeaderMatch, HeaderMatchType, Http, HttpRetryOnKind};
use super::api::{MeshRetryConf, RateLimitedBackOff as ApiRateLimited, ResetFormat, GRPC_CONDITIONS};
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::matching;
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::mesh_timeout::plugin::per_route;
use crate::policies::resolved::{HeaderMatch, HeaderMatcher, ResolvedProxy};
use crate::policies::retry::conf::{
    self, BackOff, HostPredicate, RateLimitedBackOff, RetryPolicy, GRPC_RETRY_ON_DEFAULT, HTTP_RETRY_ON_DEFAULT,
};
use crate::policies::{Plugin, ResolveCx};

fn back_off(b: &ApiBackOff) -> BackOff {
    BackOff { base_interval: b.base_interval.map(|d| d.0), max_interval: b.max_interval.map(|d| d.0) }
}

fn rate_limited(r: &ApiRateLimited) -> RateLimitedBackOff {
    RateLimitedBackOff {
        reset_headers: r
            .reset_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.format == ResetFormat::UnixTimestamp))
            .collect(),
        max_interval: r.max_interval.map(|d| d.0),
    }
}

fn header_match(h: &ApiHeaderMatch) -> HeaderMatch {
    let value = h.value.clone().unwrap_or_default();
    let matcher = match h.kind.unwrap_or(HeaderMatchType::Exact) {
        HeaderMatchType::Exact => HeaderMatcher::Exact(value),
        HeaderMatchType::Prefix => HeaderMatcher::Prefix(value),
        HeaderMatchType::RegularExpression => HeaderMatcher::Regex(value),
        HeaderMatchType::Present => HeaderMatcher::Present,
        HeaderMatchType::Absent => HeaderMatcher::Absent,
    };
    HeaderMatch { name: h.name.clone(), matcher }
}

fn http_policy(h: &Http) -> RetryPolicy {
    let mut p = RetryPolicy {
        retry_on: HTTP_RETRY_ON_DEFAULT.to_string(),
        num_retries: h.num_retries,
        per_try_timeout: h.per_try_timeout.map(|d| d.0),
        back_off: h.back_off.as_ref().map(back_off),
        rate_limited_back_off: h.rate_limited_back_off.as_ref().map(rate_limited),
        host_selection_max_attempts: h.host_selection_max_attempts,
        ..RetryPolicy::default()
    };
    let mut conditions = Vec::new();
    for entry in h.retry_on.iter().flatten() {
        match entry.kind() {
            Some(HttpRetryOnKind::Condition(c)) => conditions.push(c),
            Some(HttpRetryOnKind::Method(m)) => p.retriable_request_headers.push(conf::method_matcher(m)),
            Some(HttpRetryOnKind::StatusCode(code)) => p.retriable_status_codes.push(code),
            // Validation refuses unknown entries.
            None => {}
        }
    }
    if !conditions.is_empty() {
        p.retry_on = conditions.join(",");
    }
    if !p.retriable_status_codes.is_empty() {
        p.retry_on = conf::ensure_retriable_status_codes(&p.retry_on);
    }
    p.retriable_request_headers.extend(h.retriable_request_headers.iter().flatten().map(header_match));
    p.retriable_headers = h.retriable_response_headers.iter().flatten().map(header_match).collect();
    for s in h.host_selection.iter().flatten() {
        match s.predicate.as_str() {
            "OmitPreviousHosts" => p.host_predicates.push(HostPredicate::PreviousHosts),
            "OmitHostsWithTags" => {
                p.host_predicates.push(HostPredicate::OmitHostMetadata(s.tags.clone().unwrap_or_default()))
            }
            "OmitPreviousPriorities" => p.previous_priorities = Some(s.update_frequency),
            _ => {}
        }
    }
    p
}

fn grpc_policy(g: &Grpc) -> RetryPolicy {
    let mut p = RetryPolicy {
        retry_on: GRPC_RETRY_ON_DEFAULT.to_string(),
        num_retries: g.num_retries,
        per_try_timeout: g.per_try_timeout.map(|d| d.0),
        back_off: g.back_off.as_ref().map(back_off),
        rate_limited_back_off: g.rate_limited_back_off.as_ref().map(rate_limited),
        ..RetryPolicy::default()
    };
    let conditions: Vec<&str> = g
        .retry_on
        .iter()
        .flatten()
        .filter_map(|r| GRPC_CONDITIONS.iter().find(|(k, _)| k == r).map(|(_, envoy)| *envoy))
        .collect();
    if !conditions.is_empty() {
        p.retry_on = conditions.join(",");
    }
    p
}

/// The route policy for an outbound of `protocol` under `c` (`None`: none).
fn route_policy(c: &MeshRetryConf, protocol: Protocol) -> Option<RetryPolicy> {
    match protocol {
        Protocol::Http => c.http.as_ref().map(http_policy),
        Protocol::Grpc => c.grpc.as_ref().map(grpc_policy),
        _ => None,
    }
}

pub struct MeshRetryPlugin;

impl Plugin for MeshRetryPlugin {
    fn name(&self) -> &'static str {
        "mesh-retry"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshRetry]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshRetry;
        let matched = matching::matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let to = matching::to_rules(cx.policies, t, &matched, MergeOptions::default());
        for o in &mut out.outbounds {
            let Some(c) = to.conf_for::<MeshRetryConf>(&Subset::service(&o.service)) else { continue };
            let r = &mut o.conf.retries;
            match o.protocol {
                Protocol::Http | Protocol::Grpc => {
                    let protocol = o.protocol;
                    let base = route_policy(c, protocol);
                    r.by_route =
                        per_route(&to, &o.service, &o.routing, &base, |c: &MeshRetryConf| route_policy(c, protocol))
                            .into_iter()
                            .filter_map(|(name, p)| p.map(|p| (name, p)))
                            .collect();
                    if base.is_some() {
                        r.routes = base;
                    }
                }
                Protocol::Tcp => {
                    if let Some(n) = c.tcp.as_ref().and_then(|t| t.max_connect_attempt) {
                        r.max_connect_attempts = Some(n);
                    }
                }
                Protocol::Http2 | Protocol::Kafka => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::timeout::testing::{check_golden, resolve};

    #[test]
    fn golden_every_field_over_an_old_retry() {
        check_golden("src/policies/mesh_retry/testdata", "protocols", "web-1");
    }

    const MESH: &str = r#"
type: Mesh
name: default
---
type: Dataplane
mesh: default
name: web-1
networking:
  address: 10.0.0.1
  inbound:
    - port: 8080
      tags: {kuma.io/service: web}
  outbound:
    - port: 10001
      tags: {kuma.io/service: backend}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - port: 80
      tags: {kuma.io/service: backend, kuma.io/protocol: PROTOCOL}
"#;

    fn with(protocol: &str, default: &str) -> String {
        MESH.replace("PROTOCOL", protocol)
            + &format!(
                "---\ntype: MeshRetry\nmesh: default\nname: mr\nspec:\n  targetRef: {{kind: Mesh}}\n  \
                 to: [{{targetRef: {{kind: MeshService, name: backend}}, default: {default}}}]\n"
            )
    }

    const ALL: &str = "{tcp: {maxConnectAttempt: 4}, http: {numRetries: 2}, grpc: {numRetries: 3}}";

    #[test]
    fn the_protocol_picks_the_section() {
        let r = |protocol: &str| resolve(&with(protocol, ALL), "web-1").outbounds[0].conf.retries.clone();
        let http = r("http");
        assert_eq!(
            http.routes.as_ref().map(|p| (p.num_retries, p.retry_on.as_str())),
            Some((Some(2), HTTP_RETRY_ON_DEFAULT))
        );
        assert_eq!(http.virtual_host, None);
        let grpc = r("grpc");
        assert_eq!(
            grpc.routes.as_ref().map(|p| (p.num_retries, p.retry_on.as_str())),
            Some((Some(3), GRPC_RETRY_ON_DEFAULT))
        );
        assert_eq!(r("tcp").max_connect_attempts, Some(4));
        assert_eq!(r("http2"), Default::default(), "http2: nothing");
        assert_eq!(r("kafka"), Default::default(), "only exactly tcp gets connect attempts");
    }

    #[test]
    fn retry_on_splits_into_conditions_status_codes_and_methods() {
        let h: Http = serde_json::from_value(serde_json::json!({
            "retryOn": ["GatewayError", 503, "HttpMethodGet", "Reset", "409", "HttpMethodPut"],
            "retriableRequestHeaders": [{"name": "x-retry", "type": "Present"}],
            "retriableResponseHeaders": [{"name": "x-again", "value": "yes"}]
        }))
        .unwrap();
        let p = http_policy(&h);
        assert_eq!(p.retry_on, "gateway-error,reset,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, [503, 409]);
        let names: Vec<(&str, &HeaderMatcher)> =
            p.retriable_request_headers.iter().map(|h| (h.name.as_str(), &h.matcher)).collect();
        assert_eq!(
            names,
            [
                (":method", &HeaderMatcher::Exact("GET".into())),
                (":method", &HeaderMatcher::Exact("PUT".into())),
                ("x-retry", &HeaderMatcher::Present)
            ]
        );
        assert_eq!(
            p.retriable_headers,
            [HeaderMatch { name: "x-again".into(), matcher: HeaderMatcher::Exact("yes".into()) }]
        );
        // Only status codes: Kuma's default conditions plus retriable-status-codes.
        let only_codes: Http = serde_json::from_value(serde_json::json!({"retryOn": [500]})).unwrap();
        assert_eq!(
            http_policy(&only_codes).retry_on,
            "gateway-error,connect-failure,refused-stream,retriable-status-codes"
        );
    }

    #[test]
    fn a_mesh_retry_adds_route_policies_over_an_old_retrys_virtual_host_policy() {
        let input = with("http", "{http: {numRetries: 7}}")
            + "---\ntype: Retry\nmesh: default\nname: old\nsources: [{match: {kuma.io/service: '*'}}]\n\
               destinations: [{match: {kuma.io/service: '*'}}]\nconf: {http: {numRetries: 1}, tcp: {maxConnectAttempts: 1}}\n";
        let r = resolve(&input, "web-1").outbounds[0].conf.retries.clone();
        assert_eq!(r.virtual_host.and_then(|p| p.num_retries), Some(1), "Retry's stays on the virtual host");
        assert_eq!(r.routes.and_then(|p| p.num_retries), Some(7), "and Envoy prefers the route's");
        let tcp = resolve(
            &input
                .replace("kuma.io/protocol: http", "kuma.io/protocol: tcp")
                .replace("{http: {numRetries: 7}}", "{tcp: {maxConnectAttempt: 6}}"),
            "web-1",
        );
        assert_eq!(tcp.outbounds[0].conf.retries.max_connect_attempts, Some(6), "MeshRetry overrides Retry's attempts");
    }
}
