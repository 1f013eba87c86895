//! MeshHealthCheck on the engine: the `to` rules of the MeshHealthChecks selecting the
//! dataplane, queried per cluster with `{kuma.io/service: <its service>}`, give the merged
//! conf; its check is *appended* to the cluster's checks (an old HealthCheck's entry stays
//! beside it, as in Kuma) and its panic settings override. Unlike old-style plugins it also
//! configures clusters of outbounds routed by MeshHTTPRoute or MeshTCPRoute.
//!
//! The checker follows the cluster's protocol: HTTP for http/http2 with `http`, gRPC for
//! grpc with `grpc`, TCP for tcp with `tcp`, TCP as the fallback when `http` (or `grpc`) is
//! disabled and `tcp` is not; otherwise no check. The encoding is the HealthCheck plugin's
//! (same conf field).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::api::{Conf, IntOrDecimal};
use crate::model::dataplane::{DataplaneSpec, Protocol};
use crate::model::ResourceType;
use crate::policies::core::matching::{matched, to_rules};
use crate::policies::core::rules::{MergeOptions, Subset};
use crate::policies::health_check::api::decode_base64;
use crate::policies::health_check::conf::{ActiveHealthCheck, Checker, HeaderToAdd};
use crate::policies::resolved::ResolvedProxy;
use crate::policies::{Plugin, ResolveCx};

/// Kuma's defaults for what a MeshHealthCheck leaves unset.
const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_UNHEALTHY_THRESHOLD: u32 = 5;
const DEFAULT_HEALTHY_THRESHOLD: u32 = 1;
const DEFAULT_HTTP_PATH: &str = "/";

/// The header that tells the checked side who is asking (Kuma's tag header, sent first by
/// every HTTP check).
const KUMA_TAGS_HEADER: &str = "x-kuma-tags";

pub struct MeshHealthCheckPlugin;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Tcp,
    Http,
    Grpc,
}

fn enabled(disabled: Option<bool>) -> bool {
    disabled != Some(true)
}

/// Which checker a conf gives a cluster of `protocol` (Kuma's `selectHealthCheckType`).
fn kind_for(protocol: Protocol, conf: &Conf) -> Option<Kind> {
    let http = conf.http.as_ref().map(|h| enabled(h.disabled));
    let grpc = conf.grpc.as_ref().map(|g| enabled(g.disabled));
    let tcp = conf.tcp.as_ref().map(|t| enabled(t.disabled));
    let http_like = matches!(protocol, Protocol::Http | Protocol::Http2);
    match () {
        _ if http_like && http == Some(true) => Some(Kind::Http),
        _ if protocol == Protocol::Grpc && grpc == Some(true) => Some(Kind::Grpc),
        _ if protocol == Protocol::Tcp && tcp == Some(true) => Some(Kind::Tcp),
        _ if http_like && http == Some(false) && tcp == Some(true) => Some(Kind::Tcp),
        _ if protocol == Protocol::Grpc && grpc == Some(false) && tcp == Some(true) => Some(Kind::Tcp),
        _ => None,
    }
}

/// Kuma's serialized tag set of a dataplane: `&k1=v1&&k2=v2,v3&`, keys sorted, the values of
/// every inbound sorted and joined.
fn kuma_tags(dp: &DataplaneSpec) -> String {
    let mut all: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for tags in dp.tags_of_inbounds() {
        for (k, v) in tags {
            all.entry(k).or_default().insert(v);
        }
    }
    all.iter().map(|(k, vs)| format!("&{k}={}&", vs.iter().copied().collect::<Vec<_>>().join(","))).collect()
}

/// The check a merged conf gives a cluster of `protocol`, if any; `tags` is the
/// dataplane's [`kuma_tags`].
fn check_for(conf: &Conf, protocol: Protocol, tags: &str) -> Option<ActiveHealthCheck> {
    let checker = match kind_for(protocol, conf)? {
        Kind::Tcp => {
            let tcp = conf.tcp.clone().unwrap_or_default();
            // The field says base64, so the decoded bytes go on the wire. Kuma 2.4 passed the
            // base64 text where Envoy wants hex, and later releases hex-encode the base64 text
            // itself; neither sends what the user wrote down.
            Checker::Tcp {
                send: tcp.send.as_deref().and_then(decode_base64),
                receive: tcp.receive.iter().flatten().filter_map(|r| decode_base64(r)).collect(),
            }
        }
        Kind::Http => {
            let http = conf.http.clone().unwrap_or_default();
            let mut headers = vec![HeaderToAdd { name: KUMA_TAGS_HEADER.into(), value: tags.into(), append: None }];
            if let Some(m) = &http.request_headers_to_add {
                for (list, append) in [(&m.add, true), (&m.set, false)] {
                    headers.extend(list.iter().flatten().map(|kv| HeaderToAdd {
                        name: kv.name.clone(),
                        value: kv.value.clone(),
                        append: Some(append),
                    }));
                }
            }
            Checker::Http {
                path: http.path.clone().unwrap_or_else(|| DEFAULT_HTTP_PATH.to_string()),
                headers,
                expected_statuses: http.expected_statuses.clone().unwrap_or_default(),
                http2: protocol == Protocol::Http2,
            }
        }
        Kind::Grpc => {
            let grpc = conf.grpc.clone().unwrap_or_default();
            Checker::Grpc { service_name: grpc.service_name, authority: grpc.authority }
        }
    };
    let d = |p: Option<crate::model::duration::ProtoDuration>| p.map(|p| p.0);
    Some(ActiveHealthCheck {
        origin: "MeshHealthCheck",
        interval: d(conf.interval).unwrap_or(DEFAULT_INTERVAL),
        timeout: d(conf.timeout).unwrap_or(DEFAULT_TIMEOUT),
        unhealthy_threshold: conf.unhealthy_threshold.unwrap_or(DEFAULT_UNHEALTHY_THRESHOLD),
        healthy_threshold: conf.healthy_threshold.unwrap_or(DEFAULT_HEALTHY_THRESHOLD),
        initial_jitter: d(conf.initial_jitter),
        interval_jitter: d(conf.interval_jitter),
        interval_jitter_percent: conf.interval_jitter_percent,
        no_traffic_interval: d(conf.no_traffic_interval),
        event_log_path: conf.event_log_path.clone(),
        always_log_health_check_failures: conf.always_log_health_check_failures,
        reuse_connection: conf.reuse_connection,
        checker,
    })
}

impl Plugin for MeshHealthCheckPlugin {
    fn name(&self) -> &'static str {
        "mesh-health-check"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshHealthCheck]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshHealthCheck;
        let matched = matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let rules = to_rules(cx.policies, t, &matched, MergeOptions::default());
        let tags = kuma_tags(cx.dataplane);
        for c in &mut out.clusters {
            let Some(conf) = rules.conf_for::<Conf>(&Subset::service(&c.service)) else { continue };
            let health = &mut c.conf.health_checks;
            if let Some(check) = check_for(conf, c.protocol, &tags) {
                health.checks.push(check);
            }
            // Validation keeps the percentage in [0, 100] %, i.e. [0, 100000] thousandths.
            if let Some(t) = conf.healthy_panic_threshold.as_ref().and_then(IntOrDecimal::thousandths) {
                health.healthy_panic_threshold = u32::try_from(t).ok();
            }
            if let Some(fail) = conf.fail_traffic_on_panic {
                health.fail_traffic_on_panic = Some(fail);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::core::testing::{check_golden, resolve_yaml};
    use serde_json::json;

    #[test]
    fn golden_mesh_health_check_per_protocol() {
        check_golden("src/policies/mesh_health_check/testdata", "01.checks-per-protocol", "web-1");
    }

    fn mhc(name: &str, top: &str, to: &str, interval: &str) -> String {
        format!(
            "type: MeshHealthCheck\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n  to:\n  \
             - targetRef: {to}\n    default: {{interval: {interval}, tcp: {{}}}}\n---\n"
        )
    }

    const WEB: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
        inbound: [{port: 1, tags: {kuma.io/service: web}}]\n  outbound:\n  - {port: 2, tags: {kuma.io/service: backend}}\n  \
        - {port: 3, tags: {kuma.io/service: db}}\n";

    fn intervals(input: &str, service: &str) -> Vec<Duration> {
        let out = resolve_yaml(input, "web-1");
        let c = out.clusters.iter().find(|c| c.service == service).expect("a cluster");
        c.conf.health_checks.checks.iter().map(|h| h.interval).collect()
    }

    #[test]
    fn appended_after_an_old_health_check() {
        let old = "type: HealthCheck\nmesh: default\nname: old\nsources: [{match: {kuma.io/service: web}}]\n\
            destinations: [{match: {kuma.io/service: backend}}]\n\
            conf: {interval: 30s, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1}\n---\n";
        let input = mhc("new", "{kind: Mesh}", "{kind: Mesh}", "5s") + old + WEB;
        let s = Duration::from_secs;
        assert_eq!(intervals(&input, "backend"), [s(30), s(5)]);
        assert_eq!(intervals(&input, "db"), [s(5)]);
    }

    #[test]
    fn policies_merge_in_top_level_order_and_the_smallest_name_wins_ties() {
        let s = Duration::from_secs;
        // Surprising but Kuma's: the `to` kind does not order the merge. On equal top-level
        // kinds "a" is merged after "z", so its `to: Mesh` interval overrides z's
        // `to: MeshService backend` one; z still applies where a says nothing.
        let input = mhc("a", "{kind: Mesh}", "{kind: Mesh}", "1s")
            + &mhc("z", "{kind: Mesh}", "{kind: MeshService, name: backend}", "2s")
            + WEB;
        assert_eq!(intervals(&input, "backend"), [s(1)]);
        assert_eq!(intervals(&input, "db"), [s(1)]);
        let input = mhc("z", "{kind: Mesh}", "{kind: Mesh}", "1s")
            + &mhc("a", "{kind: Mesh}", "{kind: MeshService, name: backend}", "2s")
            + WEB;
        assert_eq!(intervals(&input, "backend"), [s(2)]);
        assert_eq!(intervals(&input, "db"), [s(1)]);
        // Same kinds everywhere: Kuma 2.6+ merges names descending, so "a" is merged last.
        let input =
            mhc("b", "{kind: Mesh}", "{kind: Mesh}", "2s") + &mhc("a", "{kind: Mesh}", "{kind: Mesh}", "1s") + WEB;
        assert_eq!(intervals(&input, "db"), [s(1)]);
        // A more specific top-level targetRef is merged later and wins over a smaller name.
        let input = mhc("a", "{kind: Mesh}", "{kind: Mesh}", "1s")
            + &mhc("z", "{kind: MeshService, name: web}", "{kind: Mesh}", "3s")
            + WEB;
        assert_eq!(intervals(&input, "db"), [s(3)]);
        // A policy whose top-level targetRef selects another service does nothing here.
        let input = mhc("a", "{kind: MeshService, name: api}", "{kind: Mesh}", "1s") + WEB;
        assert!(intervals(&input, "db").is_empty());
    }

    fn conf(v: serde_json::Value) -> Conf {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn checker_follows_the_protocol_with_tcp_as_fallback() {
        let all = conf(json!({"http": {}, "grpc": {}, "tcp": {}}));
        assert_eq!(kind_for(Protocol::Http, &all), Some(Kind::Http));
        assert_eq!(kind_for(Protocol::Http2, &all), Some(Kind::Http));
        assert_eq!(kind_for(Protocol::Grpc, &all), Some(Kind::Grpc));
        assert_eq!(kind_for(Protocol::Tcp, &all), Some(Kind::Tcp));
        // Kafka gets none, and so does an HTTP service with only a tcp section.
        assert_eq!(kind_for(Protocol::Kafka, &all), None);
        assert_eq!(kind_for(Protocol::Http, &conf(json!({"tcp": {}}))), None);
        let http_off = conf(json!({"http": {"disabled": true}, "tcp": {}}));
        assert_eq!(kind_for(Protocol::Http, &http_off), Some(Kind::Tcp));
        let both_off = conf(json!({"http": {"disabled": true}, "tcp": {"disabled": true}}));
        assert_eq!(kind_for(Protocol::Http, &both_off), None);
        assert_eq!(kind_for(Protocol::Grpc, &conf(json!({"grpc": {"disabled": true}, "tcp": {}}))), Some(Kind::Tcp));
    }

    #[test]
    fn defaults_fill_what_the_conf_leaves_out_and_tags_lead_the_headers() {
        let c = conf(
            json!({"http": {"requestHeadersToAdd": {"set": [{"name": "s", "value": "1"}], "add": [{"name": "a", "value": "2"}]}}}),
        );
        let check = check_for(&c, Protocol::Http, "&kuma.io/service=web&").unwrap();
        assert_eq!((check.interval, check.timeout), (DEFAULT_INTERVAL, DEFAULT_TIMEOUT));
        assert_eq!((check.unhealthy_threshold, check.healthy_threshold), (5, 1));
        let Checker::Http { path, headers, http2, .. } = check.checker else { panic!("not HTTP") };
        assert_eq!(path, "/");
        assert!(!http2);
        let names: Vec<(&str, Option<bool>)> = headers.iter().map(|h| (h.name.as_str(), h.append)).collect();
        assert_eq!(names, [("x-kuma-tags", None), ("a", Some(true)), ("s", Some(false))]);
    }

    #[test]
    fn tag_header_joins_every_inbound() {
        let env = crate::model::rest::from_json(json!({
            "type": "Dataplane", "mesh": "default", "name": "d",
            "networking": {"address": "10.0.0.1", "inbound": [
                {"port": 1, "tags": {"kuma.io/service": "web", "version": "2"}},
                {"port": 2, "tags": {"kuma.io/service": "api", "version": "1"}}
            ]}
        }))
        .unwrap();
        let crate::model::Spec::Dataplane(dp) = env.spec else { panic!() };
        assert_eq!(kuma_tags(&dp), "&kuma.io/service=api,web&&version=1,2&");
    }

    #[test]
    fn tcp_payloads_are_the_decoded_bytes() {
        let c = conf(json!({"tcp": {"send": "cGluZwo=", "receive": ["cG9uZwo="]}}));
        let check = check_for(&c, Protocol::Tcp, "").unwrap();
        assert_eq!(check.checker, Checker::Tcp { send: Some(b"ping\n".to_vec()), receive: vec![b"pong\n".to_vec()] });
    }
}
