//! Retry on the engine (reference §2.7): the most specific Retry whose sources match the
//! dataplane and whose destinations match an outbound's service decides that outbound's
//! retries, by the outbound's protocol:
//!
//! - http: the `http` section as the virtual host's retry policy;
//! - grpc: the `grpc` section, with Kuma's gRPC conditions by default;
//! - http2: nothing (Kuma's configurer handles only "http" and "grpc");
//! - tcp, kafka: `tcp.maxConnectAttempts` on the TCP proxy.
//!
//! Outbounds routed by a MeshHTTPRoute or MeshTCPRoute are left alone. The configure hook
//! applies the `retries` field whoever wrote it: MeshRetry, later in the plugin list, adds
//! route-level policies and overrides the connect attempts in the same field.

use super::api::{RetryGrpc, RetryHttp, RetrySpec};
use super::conf::{self, BackOff, RetryPolicy, GRPC_RETRY_ON_DEFAULT, HTTP_RETRY_ON_DEFAULT};
use crate::envoy::parts::OutboundListener;
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{OutboundConf, ResolvedProxy};
use crate::policies::timeout::plugin::routed_by_targetref;
use crate::policies::{Plugin, ResolveCx};

/// Kuma's enum value → Envoy's condition: `all_5xx` is `5xx` (protobuf enum values cannot
/// start with a digit), `_` is `-`.
fn envoy_condition(value: &str) -> String {
    if value == "all_5xx" {
        "5xx".to_string()
    } else {
        value.replace('_', "-")
    }
}

fn back_off(b: &super::api::BackOff) -> BackOff {
    BackOff { base_interval: b.base_interval.map(|d| d.0), max_interval: b.max_interval.map(|d| d.0) }
}

fn http_policy(h: &RetryHttp) -> RetryPolicy {
    let mut p = RetryPolicy {
        retry_on: HTTP_RETRY_ON_DEFAULT.to_string(),
        num_retries: h.num_retries,
        per_try_timeout: h.per_try_timeout.map(|d| d.0),
        back_off: h.back_off.as_ref().map(back_off),
        ..RetryPolicy::default()
    };
    if !h.retry_on.is_empty() {
        p.retry_on = h.retry_on.iter().map(|c| envoy_condition(c)).collect::<Vec<_>>().join(",");
    }
    if !h.retriable_status_codes.is_empty() {
        p.retriable_status_codes = h.retriable_status_codes.clone();
        p.retry_on = conf::ensure_retriable_status_codes(&p.retry_on);
    }
    p.retriable_request_headers = h.retriable_methods.iter().map(|m| conf::method_matcher(m)).collect();
    p
}

fn grpc_policy(g: &RetryGrpc) -> RetryPolicy {
    let mut p = RetryPolicy {
        retry_on: GRPC_RETRY_ON_DEFAULT.to_string(),
        num_retries: g.num_retries,
        per_try_timeout: g.per_try_timeout.map(|d| d.0),
        back_off: g.back_off.as_ref().map(back_off),
        ..RetryPolicy::default()
    };
    if !g.retry_on.is_empty() {
        p.retry_on = g.retry_on.iter().map(|c| envoy_condition(c)).collect::<Vec<_>>().join(",");
    }
    p
}

pub struct RetryPlugin;

impl Plugin for RetryPlugin {
    fn name(&self) -> &'static str {
        "retry"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::Retry]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::Retry);
        if policies.is_empty() {
            return;
        }
        for o in &mut out.outbounds {
            if routed_by_targetref(o) {
                continue;
            }
            let Some(spec) =
                select_outbound(policies, cx.dataplane, &o.service).and_then(|p| p.spec.get::<RetrySpec>())
            else {
                continue;
            };
            let c = &spec.conf;
            let r = &mut o.conf.retries;
            match o.protocol {
                Protocol::Http => r.virtual_host = c.http.as_ref().map(http_policy),
                Protocol::Grpc => r.virtual_host = c.grpc.as_ref().map(grpc_policy),
                Protocol::Http2 => {}
                Protocol::Tcp | Protocol::Kafka => {
                    r.max_connect_attempts = c.tcp.as_ref().map(|t| t.max_connect_attempts)
                }
            }
        }
    }

    fn configure_outbound(&self, conf: &OutboundConf, listener: &mut OutboundListener) {
        conf::apply_to_listener(&conf.retries, listener.hcm.as_mut(), listener.tcp.as_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::timeout::testing::{check_golden, resolve};

    #[test]
    fn golden_http_grpc_http2_and_tcp_outbounds() {
        check_golden("src/policies/retry/testdata", "protocols", "web-1");
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
      tags: {kuma.io/service: web, version: v2}
  outbound:
    - port: 10001
      tags: {kuma.io/service: api}
    - port: 10002
      tags: {kuma.io/service: db}
---
type: Dataplane
mesh: default
name: api-1
networking:
  address: 10.0.0.2
  inbound:
    - port: 80
      tags: {kuma.io/service: api, kuma.io/protocol: http}
---
type: Dataplane
mesh: default
name: db-1
networking:
  address: 10.0.0.3
  inbound:
    - port: 5432
      tags: {kuma.io/service: db, kuma.io/protocol: tcp}
"#;

    fn retry(name: &str, sources: &str, destination: &str, conf: &str) -> String {
        format!(
            "---\ntype: Retry\nmesh: default\nname: {name}\nsources: [{{match: {sources}}}]\n\
             destinations: [{{match: {{kuma.io/service: '{destination}'}}}}]\nconf: {conf}\n"
        )
    }

    #[test]
    fn the_most_specific_retry_decides_each_outbound() {
        let input = [
            MESH,
            &retry("all", "{kuma.io/service: '*'}", "*", "{http: {numRetries: 1}, tcp: {maxConnectAttempts: 1}}"),
            &retry("web-v2", "{kuma.io/service: web, version: v2}", "*", "{http: {numRetries: 2}}"),
            &retry("to-db", "{kuma.io/service: web}", "db", "{tcp: {maxConnectAttempts: 3}}"),
        ]
        .concat();
        let r = resolve(&input, "web-1");
        // api: `web-v2` (two exact source tags) beats `all`; its policy has no tcp section.
        let api = &r.outbounds[0].conf.retries;
        assert_eq!(api.virtual_host.as_ref().and_then(|p| p.num_retries), Some(2));
        assert_eq!(api.virtual_host.as_ref().map(|p| p.retry_on.as_str()), Some(HTTP_RETRY_ON_DEFAULT));
        // db: Kuma ranks by the total number of matched tags first, so `web-v2` (two source
        // tags + a `*` destination = 3) beats `to-db` (one source tag + the exact destination
        // = 2) even there; `web-v2` says nothing for TCP, so no connect attempts.
        let db = &r.outbounds[1].conf.retries;
        assert_eq!(db.max_connect_attempts, None);
        assert_eq!(db.virtual_host, None, "a TCP outbound has no virtual host policy");
    }

    #[test]
    fn http2_gets_nothing_and_grpc_gets_the_grpc_section() {
        let input = MESH.replace("kuma.io/protocol: http}", "kuma.io/protocol: http2}")
            + &retry("all", "{kuma.io/service: '*'}", "*", "{http: {numRetries: 1}, grpc: {numRetries: 4}}");
        let r = resolve(&input, "web-1");
        assert_eq!(r.outbounds[0].conf.retries, Default::default(), "http2: Kuma's configurer skips it");
        let input = MESH.replace("kuma.io/protocol: http}", "kuma.io/protocol: grpc}")
            + &retry("all", "{kuma.io/service: '*'}", "*", "{http: {numRetries: 1}, grpc: {numRetries: 4}}");
        let r = resolve(&input, "web-1");
        let p = r.outbounds[0].conf.retries.virtual_host.clone().unwrap();
        assert_eq!((p.num_retries, p.retry_on.as_str()), (Some(4), GRPC_RETRY_ON_DEFAULT));
    }

    #[test]
    fn kuma_conditions_become_envoys() {
        let h: RetryHttp = serde_json::from_value(serde_json::json!({
            "retryOn": ["all_5xx", "retriable_4xx", "gateway_error"],
            "retriableStatusCodes": [409],
            "retriableMethods": ["GET", "POST"]
        }))
        .unwrap();
        let p = http_policy(&h);
        assert_eq!(p.retry_on, "5xx,retriable-4xx,gateway-error,retriable-status-codes");
        assert_eq!(p.retriable_status_codes, [409]);
        assert_eq!(p.retriable_request_headers, [conf::method_matcher("GET"), conf::method_matcher("POST")]);
    }
}
