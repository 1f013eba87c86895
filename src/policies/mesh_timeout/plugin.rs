//! MeshTimeout on the engine (reference §4.5). The MeshTimeouts selecting the dataplane
//! (Kuma 2.6+ order) make `to` rules over destinations and, per inbound, `from` rules over
//! clients; a conf that applies overrides what Timeout decided in the same fields, with
//! Kuma's defaults for what it leaves unset:
//!
//! - outbound listeners (`to`, by the outbound's service): HTTP-family ones get every route's
//!   `timeout` (request, 15 s) and `idle_timeout` (stream idle, 30 min), and the HCM idle
//!   timeout disabled (MeshTimeout moves it to the cluster); TCP ones the proxy's idle
//!   timeout (1 h);
//! - outbound clusters (`to`, by the cluster's service): the connect timeout (5 s), and for
//!   http/http2 the upstream idle timeout (1 h), max stream and connection durations (0);
//!   gRPC clusters get only the connect timeout, as in Kuma;
//! - inbounds (`from`, Mesh only): the same on the inbound listener and its local cluster.
//!
//! Outbounds and inbounds no rule covers keep what Timeout decided. Kuma 2.4 differs for
//! inbounds: once any MeshTimeout selects the dataplane, an inbound that no MeshTimeout
//! selects gets the full defaults (`getConf` falls back to an empty conf on a missing rule
//! list) while one selected by a `to`-only policy is left alone (observed). higuma does not
//! follow that: it would apply timeouts nobody asked for to inbounds no policy names,
//! depending on whether an unrelated MeshTimeout selects another inbound of the same
//! dataplane, and would make a `to`-only policy change unrelated inbounds (so a policy write
//! could no longer be narrowed to the consumers it names). With the default
//! `mesh-timeout-all` of new meshes selecting every inbound, both give the same config.
//!
//! Per-route confs: a MeshHTTPRoute rule's route carries the rule's hash as its name, and
//! MeshTimeout on such a route is a `to` item for `{kuma.io/service, __rule-matches-hash__}`.
//! [`per_route`] looks every named route up that way and keeps the routes whose conf
//! differs; until MeshHTTPRoute items exist the lookup finds the service's own rule.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::de::DeserializeOwned;

use super::api::MeshTimeoutConf;
use crate::model::dataplane::Protocol;
use crate::model::selector::SERVICE_TAG;
use crate::model::ResourceType;
use crate::policies::core::matching;
use crate::policies::core::rules::{MergeOptions, Rules, Subset, Tag};
use crate::policies::resolved::{ResolvedProxy, Routing};
use crate::policies::timeout::conf::{ClusterTimeouts, ListenerTimeouts, RouteTimeouts};
use crate::policies::{Plugin, ResolveCx};

// Kuma's MeshTimeout defaults for what a conf leaves unset (plugin/xds/configurer.go).
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(1800);
/// Zero: no limit.
const DEFAULT_MAX_STREAM_DURATION: Duration = Duration::ZERO;
/// Zero: no limit.
const DEFAULT_MAX_CONNECTION_DURATION: Duration = Duration::ZERO;

/// The tag a MeshHTTPRoute rule's artificial items carry in targetRef rules (Kuma's
/// `RuleMatchesHashTag`).
pub(crate) const RULE_MATCHES_HASH_TAG: &str = "__rule-matches-hash__";

/// What a route of `service` named `route` queries: the service and the rule's hash.
pub(crate) fn route_subset(service: &str, route: &str) -> Subset {
    let tag = |k: &str, v: &str| Tag { key: k.to_string(), value: v.to_string(), not: false };
    Subset::new(vec![tag(SERVICE_TAG, service), tag(RULE_MATCHES_HASH_TAG, route)])
}

/// For every named HTTP route of `routing`: `value` of the conf of the rule for the route
/// (see [`route_subset`]), kept when it differs from `base`, the outbound's own value.
pub(crate) fn per_route<C, T>(
    rules: &Rules,
    service: &str,
    routing: &Routing,
    base: &T,
    value: impl Fn(&C) -> T,
) -> BTreeMap<String, T>
where
    C: DeserializeOwned + Send + Sync + 'static,
    T: PartialEq,
{
    let mut out = BTreeMap::new();
    let Routing::Http { routes } = routing else { return out };
    for r in routes {
        if r.name.is_empty() || out.contains_key(&r.name) {
            continue;
        }
        if let Some(v) = rules.conf_for::<C>(&route_subset(service, &r.name)).map(&value) {
            if v != *base {
                out.insert(r.name.clone(), v);
            }
        }
    }
    out
}

fn or(d: Option<crate::model::duration::ProtoDuration>, default: Duration) -> Option<Duration> {
    Some(d.map_or(default, |d| d.0))
}

fn route_timeouts(c: &MeshTimeoutConf) -> RouteTimeouts {
    let http = c.http.as_ref();
    RouteTimeouts {
        request: or(http.and_then(|h| h.request_timeout), DEFAULT_REQUEST_TIMEOUT),
        idle: or(http.and_then(|h| h.stream_idle_timeout), DEFAULT_STREAM_IDLE_TIMEOUT),
    }
}

fn override_listener(t: &mut ListenerTimeouts, c: &MeshTimeoutConf, protocol: Protocol) {
    if protocol.is_http() {
        t.http_idle = Some(Duration::ZERO);
        t.routes = route_timeouts(c);
        t.by_route.clear();
    } else {
        t.tcp_idle = or(c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
    }
}

fn override_cluster(t: &mut ClusterTimeouts, c: &MeshTimeoutConf, protocol: Protocol) {
    t.connect = or(c.connection_timeout, DEFAULT_CONNECTION_TIMEOUT);
    if matches!(protocol, Protocol::Http | Protocol::Http2) {
        let http = c.http.as_ref();
        t.http_idle = or(c.idle_timeout, DEFAULT_IDLE_TIMEOUT);
        t.max_stream_duration = or(http.and_then(|h| h.max_stream_duration), DEFAULT_MAX_STREAM_DURATION);
        t.max_connection_duration = or(http.and_then(|h| h.max_connection_duration), DEFAULT_MAX_CONNECTION_DURATION);
    }
}

pub struct MeshTimeoutPlugin;

impl Plugin for MeshTimeoutPlugin {
    fn name(&self) -> &'static str {
        "mesh-timeout"
    }

    fn types(&self) -> &'static [ResourceType] {
        &[ResourceType::MeshTimeout]
    }

    fn resolve(&self, cx: &ResolveCx<'_>, out: &mut ResolvedProxy) {
        let t = ResourceType::MeshTimeout;
        let matched = matching::matched(cx.policies, t, cx.dataplane);
        if matched.is_empty() {
            return;
        }
        let to = matching::to_rules(cx.policies, t, &matched, MergeOptions::default());
        if !to.is_empty() {
            for o in &mut out.outbounds {
                let Some(c) = to.conf_for::<MeshTimeoutConf>(&Subset::service(&o.service)) else { continue };
                override_listener(&mut o.conf.timeouts, c, o.protocol);
                if o.protocol.is_http() {
                    let base = o.conf.timeouts.routes.clone();
                    o.conf.timeouts.by_route = per_route(&to, &o.service, &o.routing, &base, route_timeouts);
                }
            }
            for c in &mut out.clusters {
                if let Some(conf) = to.conf_for::<MeshTimeoutConf>(&Subset::service(&c.service)) {
                    override_cluster(&mut c.conf.timeouts, conf, c.protocol);
                }
            }
        }
        for i in &mut out.inbounds {
            let Some(inbound) = cx.dataplane.networking.inbound.get(i.index) else { continue };
            let from = matching::from_rules(cx.policies, t, &matched, &inbound.tags, MergeOptions::default());
            // `from` items are Mesh-only: the rule for every client has the empty subset.
            let Some(c) = from.conf_for::<MeshTimeoutConf>(&Subset::default()) else { continue };
            override_listener(&mut i.conf.timeouts.listener, c, inbound.protocol());
            override_cluster(&mut i.conf.timeouts.cluster, c, inbound.protocol());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ResourceKey;
    use crate::policies::core::rules::RuleItem;
    use crate::policies::resolved::{HttpRoute, WeightedCluster};
    use crate::policies::timeout::testing::{check_golden, resolve};

    fn s(secs: u64) -> Option<Duration> {
        Some(Duration::from_secs(secs))
    }

    #[test]
    fn golden_outbounds_and_inbounds_over_timeout() {
        check_golden("src/policies/mesh_timeout/testdata", "outbound-inbound", "web-1");
    }

    /// web-1: inbounds `web` (http) and `web-tcp` (tcp); outbounds `backend` (http) and
    /// `db` (tcp).
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
      tags: {kuma.io/service: web, kuma.io/protocol: http}
    - port: 8081
      tags: {kuma.io/service: web-tcp, kuma.io/protocol: tcp}
  outbound:
    - port: 10001
      tags: {kuma.io/service: backend}
    - port: 10002
      tags: {kuma.io/service: db}
---
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 10.0.0.2
  inbound:
    - port: 80
      tags: {kuma.io/service: backend, kuma.io/protocol: http}
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

    /// A MeshTimeout `name` with top-level targetRef `top` and `spec` entries (YAML flow).
    fn mt(name: &str, top: &str, entries: &str) -> String {
        format!("---\ntype: MeshTimeout\nmesh: default\nname: {name}\nspec:\n  targetRef: {top}\n  {entries}\n")
    }

    fn request_timeout(input: &str) -> Option<Duration> {
        resolve(input, "web-1").outbounds[0].conf.timeouts.routes.request
    }

    const MESH_TOP: &str = "{kind: Mesh}";
    const WEB_TOP: &str = "{kind: MeshService, name: web}";

    #[test]
    fn confs_merge_field_by_field_in_policy_order() {
        // Equal top-level kinds: names descending, so `backend` merges after `mesh-wide`.
        let input = [
            MESH,
            &mt("mesh-wide", MESH_TOP, "to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 2s, http: {requestTimeout: 3s, streamIdleTimeout: 4s}}}]"),
            &mt("backend", MESH_TOP, "to: [{targetRef: {kind: MeshService, name: backend}, default: {http: {requestTimeout: 1s}}}]"),
        ]
        .concat();
        let r = resolve(&input, "web-1");
        assert_eq!(r.outbounds[0].conf.timeouts.routes, RouteTimeouts { request: s(1), idle: s(4) });
        assert_eq!(r.clusters[0].conf.timeouts.connect, s(2));
        // db: only the Mesh item; a TCP listener gets the idle timeout's default.
        assert_eq!(r.outbounds[1].conf.timeouts.tcp_idle, s(3600));
        assert_eq!(r.clusters[1].conf.timeouts.connect, s(2));
    }

    #[test]
    fn on_equal_top_level_kinds_the_smallest_name_wins() {
        // Kuma 2.4 let the greatest name win; 2.6.0 reversed the order as a fix, and higuma
        // follows 2.6 (core::matching).
        let input = [
            MESH,
            &mt("b-two", MESH_TOP, "to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 2s}}}]"),
            &mt("a-one", MESH_TOP, "to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 1s}}}]"),
        ]
        .concat();
        assert_eq!(request_timeout(&input), s(1));
    }

    #[test]
    fn the_smaller_name_wins_even_over_a_more_specific_to_item() {
        // Items merge in policy order; the `to` targetRef only decides which rules an item
        // is part of. `all` < `backend`, so `all`'s Mesh item is merged last.
        let input = [
            MESH,
            &mt("all", MESH_TOP, "to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 3s}}}]"),
            &mt(
                "backend",
                MESH_TOP,
                "to: [{targetRef: {kind: MeshService, name: backend}, default: {http: {requestTimeout: 1s}}}]",
            ),
        ]
        .concat();
        assert_eq!(request_timeout(&input), s(3));
    }

    #[test]
    fn the_top_level_kind_orders_the_merge_not_the_to_kind() {
        // `z-web` selects through MeshService (more specific than Mesh), so its items merge
        // after `a-mesh`'s: its `to: Mesh` overrides `a-mesh`'s `to: MeshService backend`.
        let input = [
            MESH,
            &mt(
                "a-mesh",
                MESH_TOP,
                "to: [{targetRef: {kind: MeshService, name: backend}, default: {http: {requestTimeout: 1s}}}]",
            ),
            &mt("z-web", WEB_TOP, "to: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 5s}}}]"),
        ]
        .concat();
        assert_eq!(request_timeout(&input), s(5));
    }

    #[test]
    fn what_no_rule_covers_keeps_the_timeout_values() {
        let input = [
            MESH,
            &mt(
                "backend",
                MESH_TOP,
                "to: [{targetRef: {kind: MeshService, name: backend}, default: {idleTimeout: 9s}}]",
            ),
        ]
        .concat();
        let r = resolve(&input, "web-1");
        let db = &r.outbounds[1].conf.timeouts;
        assert_eq!(db.tcp_idle, s(0), "Timeout's no-policy value");
        assert_eq!(r.clusters[1].conf.timeouts.connect, s(10));
        // backend: http idle on the cluster, disabled on the HCM; defaults for the rest.
        let backend = &r.outbounds[0].conf.timeouts;
        assert_eq!((backend.http_idle, backend.routes.request, backend.routes.idle), (s(0), s(15), s(1800)));
        let cluster = &r.clusters[0].conf.timeouts;
        assert_eq!(
            cluster,
            &ClusterTimeouts {
                connect: s(5),
                http_idle: s(9),
                max_stream_duration: s(0),
                max_connection_duration: s(0)
            }
        );
        // No `from`: the inbounds keep Kuma's fixed inbound values.
        assert_eq!(r.inbounds[0].conf.timeouts.listener.routes.request, s(0));
        assert_eq!(r.inbounds[0].conf.timeouts.cluster.connect, s(10));
    }

    #[test]
    fn from_applies_only_to_the_inbounds_its_policy_selects() {
        let input =
            [MESH, &mt("web-in", WEB_TOP, "from: [{targetRef: {kind: Mesh}, default: {http: {requestTimeout: 1s}}}]")]
                .concat();
        let r = resolve(&input, "web-1");
        let web = &r.inbounds[0].conf.timeouts;
        assert_eq!(web.listener.routes, RouteTimeouts { request: s(1), idle: s(1800) });
        assert_eq!(web.listener.http_idle, s(0));
        assert_eq!(web.cluster.connect, s(5));
        assert_eq!(web.cluster.http_idle, s(3600));
        // `web-tcp` is not selected: it keeps the inbound defaults (Kuma 2.4 would give it
        // MeshTimeout's full defaults; see the module comment).
        assert_eq!(r.inbounds[1].conf.timeouts.listener.tcp_idle, s(7200));
        assert_eq!(r.inbounds[1].conf.timeouts.cluster.connect, s(10));
        // And no `to`: the outbounds keep Timeout's values.
        assert_eq!(r.outbounds[0].conf.timeouts.routes.request, s(0));
    }

    #[test]
    fn a_grpc_cluster_gets_only_the_connect_timeout() {
        let input = MESH.replace(
            "{kuma.io/service: backend, kuma.io/protocol: http}",
            "{kuma.io/service: backend, kuma.io/protocol: grpc}",
        ) + &mt(
            "all",
            MESH_TOP,
            "to: [{targetRef: {kind: Mesh}, default: {connectionTimeout: 3s, idleTimeout: 4s}}]",
        );
        let r = resolve(&input, "web-1");
        let c = &r.clusters[0].conf.timeouts;
        assert_eq!(c.connect, s(3));
        assert_eq!(c.http_idle, s(0), "Timeout's value stays");
        assert_eq!(c.max_connection_duration, None);
        // The gRPC listener is an HTTP one: route timeouts apply.
        assert_eq!(r.outbounds[0].conf.timeouts.routes.request, s(15));
    }

    #[test]
    fn routes_named_by_a_rule_get_their_own_timeouts() {
        let item = |tags: &[(&str, &str)], default: serde_json::Value| RuleItem {
            subset: Subset::new(
                tags.iter().map(|(k, v)| Tag { key: k.to_string(), value: v.to_string(), not: false }).collect(),
            ),
            default,
            origin: ResourceKey::new(ResourceType::MeshTimeout, "default", "p"),
        };
        let rules = Rules::compute(
            &[
                item(&[(SERVICE_TAG, "backend")], serde_json::json!({"http": {"requestTimeout": "3s"}})),
                item(
                    &[(SERVICE_TAG, "backend"), (RULE_MATCHES_HASH_TAG, "h1")],
                    serde_json::json!({"http": {"requestTimeout": "1s"}}),
                ),
            ],
            MergeOptions::default(),
        );
        let route = |name: &str| HttpRoute {
            name: name.to_string(),
            ..HttpRoute::catch_all(vec![WeightedCluster { name: "backend".into(), weight: 100 }])
        };
        let routing = Routing::Http { routes: vec![route("h1"), route("h2"), route("")] };
        let base = RouteTimeouts { request: s(3), idle: s(1800) };
        let got = per_route(&rules, "backend", &routing, &base, route_timeouts);
        // h1 has a rule of its own; h2's lookup finds the service's rule (hash not h1), equal
        // to the outbound's value, so h2 keeps that; unnamed routes are never looked up.
        assert_eq!(got, BTreeMap::from([("h1".to_string(), RouteTimeouts { request: s(1), idle: s(1800) })]));
    }
}
