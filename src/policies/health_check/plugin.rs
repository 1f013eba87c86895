//! HealthCheck on the engine: per destination service, the single best HealthCheck whose
//! sources match the dataplane (Kuma's ranking: most specific, then newest, then first
//! name) decides that service's clusters' active health check. Clusters of outbounds a
//! MeshHTTPRoute or MeshTCPRoute routes are left alone, as Kuma's old generator skips them.
//!
//! This plugin also encodes [`HealthChecks`] for both generations: MeshHealthCheck appends to
//! the same conf field and has no encoding of its own.

use std::time::Duration;

use super::api::{decode_base64, HealthCheckConf, HealthCheckSpec};
use super::conf::{ActiveHealthCheck, Checker, HeaderToAdd, HealthChecks};
use crate::envoy::cluster::Cluster;
use crate::model::dataplane::Protocol;
use crate::model::ResourceType;
use crate::policies::core::oldstyle::select_outbound;
use crate::policies::resolved::{ClusterConf, ResolvedProxy};
use crate::policies::{Plugin, ResolveCx};

pub struct HealthCheckPlugin;

/// The checks a matched HealthCheck gives a cluster speaking `protocol`: one entry, its
/// scalar settings copied, TCP unless `http` is set.
fn of_old(conf: &HealthCheckConf, protocol: Protocol) -> HealthChecks {
    let checker = match (&conf.http, &conf.tcp) {
        (Some(http), _) => Checker::Http {
            path: http.path.clone(),
            headers: http
                .request_headers_to_add
                .iter()
                .filter_map(|h| {
                    let kv = h.header.as_ref()?;
                    Some(HeaderToAdd {
                        name: kv.key.clone(),
                        value: kv.value.clone(),
                        append: Some(h.append == Some(true)),
                    })
                })
                .collect(),
            expected_statuses: http.expected_statuses.clone(),
            // Kuma checks gRPC services over HTTP/1 too (observed in 2.4).
            http2: protocol == Protocol::Http2,
        },
        (None, Some(tcp)) => Checker::Tcp {
            send: tcp.send.as_deref().and_then(decode_base64),
            receive: tcp.receive.iter().filter_map(|r| decode_base64(r)).collect(),
        },
        (None, None) => Checker::Tcp { send: None, receive: Vec::new() },
    };
    let d = |p: Option<crate::model::duration::ProtoDuration>| p.map(|p| p.0);
    HealthChecks {
        checks: vec![ActiveHealthCheck {
            origin: "HealthCheck",
            interval: d(conf.interval).unwrap_or(Duration::ZERO),
            timeout: d(conf.timeout).unwrap_or(Duration::ZERO),
            unhealthy_threshold: conf.unhealthy_threshold,
            healthy_threshold: conf.healthy_threshold,
            initial_jitter: d(conf.initial_jitter),
            interval_jitter: d(conf.interval_jitter),
            interval_jitter_percent: conf.interval_jitter_percent,
            no_traffic_interval: d(conf.no_traffic_interval),
            event_log_path: conf.event_log_path.clone().filter(|p| !p.is_empty()),
            always_log_health_check_failures: conf.always_log_health_check_failures,
            reuse_connection: conf.reuse_connection,
            checker,
        }],
        // Validation keeps it in [0, 100], so the product fits.
        healthy_panic_threshold: conf.healthy_panic_threshold.map(|p| (p * 1000.0).round() as u32),
        fail_traffic_on_panic: conf.fail_traffic_on_panic,
    }
}

impl Plugin for HealthCheckPlugin {
    fn name(&self) -> &'static str {
        "health-check"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::HealthCheck]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let policies = cx.policies.of(ResourceType::HealthCheck);
        if policies.is_empty() {
            return;
        }
        let skipped = out.clusters_of_mesh_routes();
        for c in &mut out.clusters {
            if skipped.contains(&c.name) {
                continue;
            }
            if let Some(spec) =
                select_outbound(policies, cx.dataplane, &c.service).and_then(|p| p.spec.get::<HealthCheckSpec>())
            {
                c.conf.health_checks = of_old(&spec.conf, c.protocol);
            }
        }
    }

    fn configure_cluster(&self, conf: &ClusterConf, cluster: &mut Cluster) {
        conf.health_checks.apply(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::core::testing::{check_golden, resolve_yaml, with_cx};
    use crate::policies::resolved::RoutedBy;

    const DIR: &str = "src/policies/health_check/testdata";

    #[test]
    fn golden_health_check_per_protocol() {
        check_golden(DIR, "01.checks-per-protocol", "web-1");
    }

    fn hc(name: &str, source: &str, dest: &str, interval: &str) -> String {
        format!(
            "type: HealthCheck\nmesh: default\nname: {name}\nsources: [{{match: {{kuma.io/service: '{source}'}}}}]\n\
             destinations: [{{match: {{kuma.io/service: '{dest}'}}}}]\n\
             conf: {{interval: {interval}, timeout: 1s, unhealthyThreshold: 1, healthyThreshold: 1}}\n---\n"
        )
    }

    const WEB: &str = "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 10.0.0.1\n  \
        inbound: [{port: 1, tags: {kuma.io/service: web}}]\n  outbound:\n  - {port: 2, tags: {kuma.io/service: backend}}\n  \
        - {port: 3, tags: {kuma.io/service: db}}\n";

    fn interval_of(input: &str, service: &str) -> Option<Duration> {
        let out = resolve_yaml(input, "web-1");
        let c = out.clusters.iter().find(|c| c.service == service).expect("a cluster");
        c.conf.health_checks.checks.first().map(|h| h.interval)
    }

    #[test]
    fn most_specific_wins_then_newest_then_first_name() {
        // Exact source and destination (2 exact tags) beats wildcards, whatever the order.
        let input = hc("exact", "web", "backend", "2s") + &hc("any", "*", "*", "9s") + WEB;
        assert_eq!(interval_of(&input, "backend"), Some(Duration::from_secs(2)));
        assert_eq!(interval_of(&input, "db"), Some(Duration::from_secs(9)));
        // Equal ranks: the newer one (later document) wins even though its name sorts last...
        let input = hc("a", "web", "*", "1s") + &hc("z", "web", "*", "7s") + WEB;
        assert_eq!(interval_of(&input, "db"), Some(Duration::from_secs(7)));
        let input = hc("z", "web", "*", "7s") + &hc("a", "web", "*", "1s") + WEB;
        assert_eq!(interval_of(&input, "db"), Some(Duration::from_secs(1)));
        // ... and sources that do not match the dataplane select nothing.
        let input = hc("other", "api", "*", "1s") + WEB;
        assert_eq!(interval_of(&input, "db"), None);
    }

    #[test]
    fn clusters_of_mesh_routed_outbounds_are_left_alone() {
        let input = hc("all", "*", "*", "3s") + WEB;
        with_cx(&input, "web-1", |cx| {
            let mut out = crate::policies::resolve(cx);
            assert!(out.clusters.iter().all(|c| !c.conf.health_checks.checks.is_empty()));
            out.outbounds[0].routed_by = RoutedBy::MeshHttpRoute;
            for c in &mut out.clusters {
                c.conf.health_checks = HealthChecks::default();
            }
            HealthCheckPlugin.resolve(cx, &mut out);
            let checks =
                |s: &str| out.clusters.iter().find(|c| c.service == s).unwrap().conf.health_checks.checks.len();
            assert_eq!((checks("backend"), checks("db")), (0, 1));
        });
    }

    #[test]
    fn http_headers_replace_unless_append_is_true() {
        let input = "type: HealthCheck\nmesh: default\nname: h\nsources: [{match: {kuma.io/service: web}}]\n\
            destinations: [{match: {kuma.io/service: backend}}]\nconf:\n  interval: 1s\n  timeout: 1s\n  \
            unhealthyThreshold: 1\n  healthyThreshold: 1\n  http:\n    path: /h\n    requestHeadersToAdd:\n    \
            - {header: {key: a, value: '1'}, append: true}\n    - {header: {key: b, value: '2'}}\n---\n"
            .to_string()
            + WEB;
        let out = resolve_yaml(&input, "web-1");
        let Checker::Http { headers, http2, .. } = &out.clusters[0].conf.health_checks.checks[0].checker else {
            panic!("not an HTTP check")
        };
        let got: Vec<(&str, Option<bool>)> = headers.iter().map(|h| (h.name.as_str(), h.append)).collect();
        assert_eq!(got, [("a", Some(true)), ("b", Some(false))]);
        assert!(!http2, "backend's protocol is unknown (tcp): HTTP/1");
    }
}
