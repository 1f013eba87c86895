//! Table tests of how the routing and load-balancing plugins resolve together: which policy
//! wins, in which order rules merge, who routes an outbound, what the others then leave
//! alone, subset endpoints and the route targets that carry endpoint changes.

use crate::model::Tags;
use std::time::Duration;

use serde_json::{json, Value};

use crate::model::dataplane::Protocol;
use crate::model::{rest, ResourceKey, ResourceType, Spec};
use crate::policies::mesh_load_balancing_strategy::plugin::LoadBalancer;
use crate::policies::resolved::{HttpAction, PathMatch, ResolvedOutbound, ResolvedProxy, RoutedBy, Routing};
use crate::store::{MemoryStore, ResourceStore};
use crate::xds::context::MeshContext;

fn dp(name: &str, service: &str, protocol: &str, tags: &[(&str, &str)], outbounds: &[&str]) -> Value {
    let mut inbound_tags = json!({"kuma.io/service": service, "kuma.io/protocol": protocol});
    for (k, v) in tags {
        inbound_tags[*k] = json!(v);
    }
    let outbound: Vec<Value> =
        outbounds.iter().enumerate().map(|(i, s)| json!({"port": 10001 + i, "tags": {"kuma.io/service": s}})).collect();
    json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": "10.0.0.1", "inbound": [{"port": 8080, "tags": inbound_tags}], "outbound": outbound}
    })
}

/// A store with the default Mesh and `resources`.
fn store(resources: &[Value]) -> MemoryStore {
    let s = MemoryStore::new();
    s.create("", "default", rest::from_json(json!({"type": "Mesh", "name": "default"})).unwrap().spec).unwrap();
    for r in resources {
        let env = rest::from_json(r.clone()).unwrap_or_else(|e| panic!("{e}: {r}"));
        s.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap();
    }
    s
}

fn resolve_in(s: &MemoryStore, name: &str) -> ResolvedProxy {
    let ctx = MeshContext::build(s, "default", None).unwrap();
    let dp = ResourceStore::get(s, &ResourceKey::new(ResourceType::Dataplane, "default", name)).unwrap();
    let Spec::Dataplane(spec) = &dp.spec else { unreachable!() };
    ctx.resolve(&dp, spec)
}

fn resolve(resources: &[Value], name: &str) -> ResolvedProxy {
    resolve_in(&store(resources), name)
}

fn outbound<'a>(p: &'a ResolvedProxy, service: &str) -> &'a ResolvedOutbound {
    p.outbounds.iter().find(|o| o.service == service).unwrap_or_else(|| panic!("no outbound {service}"))
}

/// The clusters of a TCP routing or the first route, as `name:weight`.
fn first_clusters(o: &ResolvedOutbound) -> Vec<String> {
    let clusters = match &o.routing {
        Routing::Tcp { clusters } => clusters.clone(),
        Routing::Http { routes } => match routes.first().map(|r| &r.action) {
            Some(HttpAction::Forward { clusters, .. }) => clusters.clone(),
            _ => Vec::new(),
        },
    };
    clusters.iter().map(|c| format!("{}:{}", c.name, c.weight)).collect()
}

fn tags_of(p: &ResolvedProxy, cluster: &str) -> Tags {
    p.clusters.iter().find(|c| c.name == cluster).map(|c| c.tags.clone()).unwrap_or_default()
}

fn traffic_route(name: &str, sources: Value, dest_service: &str, conf: Value) -> Value {
    json!({
        "type": "TrafficRoute", "mesh": "default", "name": name,
        "sources": [{"match": sources}],
        "destinations": [{"match": {"kuma.io/service": dest_service}}],
        "conf": conf
    })
}

fn to(service: &str, tags: &[(&str, &str)]) -> Value {
    let mut d = json!({"kuma.io/service": service});
    for (k, v) in tags {
        d[*k] = json!(v);
    }
    json!({"destination": d})
}

fn backends() -> Vec<Value> {
    vec![
        dp("web-1", "web", "http", &[("version", "v1")], &["backend"]),
        dp("backend-1", "backend", "http", &[("version", "v1")], &[]),
        dp("backend-2", "backend", "http", &[("version", "v2")], &[]),
    ]
}

#[test]
fn traffic_route_most_specific_wins() {
    // (policies as (name, sources, destination service, destination version), the version
    // the backend outbound is routed to).
    type Case = (&'static str, Vec<(&'static str, Value, &'static str, &'static str)>, &'static str);
    let cases: Vec<Case> = vec![
        (
            "an exact destination beats a wildcard one",
            vec![
                ("a-any", json!({"kuma.io/service": "*"}), "*", "v1"),
                ("b-backend", json!({"kuma.io/service": "*"}), "backend", "v2"),
            ],
            "v2",
        ),
        (
            "an exact source beats a wildcard one",
            vec![
                ("a-web", json!({"kuma.io/service": "web"}), "*", "v2"),
                ("b-any", json!({"kuma.io/service": "*"}), "*", "v1"),
            ],
            "v2",
        ),
        (
            // Surprising: more tags win even when they are all wildcards.
            "two wildcard source tags beat one exact tag",
            vec![
                ("a-exact", json!({"kuma.io/service": "web"}), "*", "v1"),
                ("b-two-wildcards", json!({"kuma.io/service": "*", "version": "*"}), "*", "v2"),
            ],
            "v2",
        ),
        (
            "a source matching no inbound never applies",
            vec![
                ("a-any", json!({"kuma.io/service": "*"}), "*", "v1"),
                ("b-other", json!({"kuma.io/service": "web", "version": "v9"}), "backend", "v2"),
            ],
            "v1",
        ),
    ];
    for (what, policies, version) in cases {
        let mut resources = backends();
        for (name, sources, dest, v) in policies {
            resources.push(traffic_route(name, sources, dest, to("*", &[("version", v)])));
        }
        let p = resolve(&resources, "web-1");
        let o = outbound(&p, "backend");
        assert_eq!(o.routed_by, RoutedBy::TrafficRoute, "{what}");
        let cluster = first_clusters(o)[0].split(':').next().unwrap().to_string();
        assert_eq!(tags_of(&p, &cluster).get("version").map(String::as_str), Some(version), "{what}");
    }
}

#[test]
fn without_a_traffic_route_an_outbound_keeps_its_own_service() {
    let p = resolve(&backends(), "web-1");
    let o = outbound(&p, "backend");
    assert_eq!((o.routed_by, first_clusters(o)), (RoutedBy::Default, vec!["backend:100".to_string()]));
}

#[test]
fn subset_names_count_per_dataplane_and_equal_tags_share_one() {
    let mut resources = vec![
        dp("web-1", "web", "http", &[], &["backend", "legacy", "db"]),
        dp("backend-1", "backend", "http", &[("version", "v1")], &[]),
        dp("db-1", "db", "tcp", &[("role", "replica")], &[]),
    ];
    let src = json!({"kuma.io/service": "web"});
    let split = |a: (&str, &str), b: (&str, &str)| {
        json!({"split": [
            {"weight": 0, "destination": {"kuma.io/service": "backend", "version": "v0"}},
            {"weight": 3, "destination": {"kuma.io/service": a.0, "version": a.1}},
            {"weight": 1, "destination": {"kuma.io/service": b.0, "version": b.1}}
        ]})
    };
    resources.push(traffic_route("backend", src.clone(), "backend", split(("backend", "v1"), ("backend", "v2"))));
    resources.push(traffic_route("legacy", src.clone(), "legacy", to("backend", &[("version", "v2")])));
    resources.push(traffic_route("db", src, "db", to("*", &[("role", "replica")])));
    let p = resolve(&resources, "web-1");
    // The weight-0 entry takes no name; legacy reuses backend's v2 subset.
    assert_eq!(first_clusters(outbound(&p, "backend")), ["backend-_0_:3", "backend-_1_:1"]);
    assert_eq!(first_clusters(outbound(&p, "legacy")), ["backend-_1_:1"]);
    assert_eq!(first_clusters(outbound(&p, "db")), ["db-_2_:1"]);
    assert_eq!(tags_of(&p, "db-_2_"), Tags::from([("role".to_string(), "replica".to_string())]));
    // Unused skeleton clusters are gone.
    let names: Vec<&str> = p.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["backend-_0_", "backend-_1_", "db-_2_"]);
}

#[test]
fn outbound_protocol_is_the_common_protocol_of_its_clusters() {
    let resources = |other: &str| {
        vec![
            dp("web-1", "web", "http", &[], &["front"]),
            dp("front-1", "front", "grpc", &[], &[]),
            dp("other-1", "other", other, &[], &[]),
            traffic_route(
                "split",
                json!({"kuma.io/service": "web"}),
                "front",
                json!({"split": [
                    {"weight": 1, "destination": {"kuma.io/service": "front"}},
                    {"weight": 1, "destination": {"kuma.io/service": "other"}}
                ]}),
            ),
        ]
    };
    // (other's protocol, the outbound's, whether it stays an HTTP listener)
    for (other, protocol, http) in
        [("grpc", Protocol::Grpc, true), ("http2", Protocol::Http2, true), ("http", Protocol::Tcp, false)]
    {
        let p = resolve(&resources(other), "web-1");
        let o = outbound(&p, "front");
        assert_eq!(o.protocol, protocol, "grpc + {other}");
        assert_eq!(matches!(o.routing, Routing::Http { .. }), http, "grpc + {other}");
    }
}

fn http_route(name: &str, top: Value, rules: Value) -> Value {
    json!({
        "type": "MeshHTTPRoute", "mesh": "default", "name": name,
        "spec": {"targetRef": top, "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": rules}]}
    })
}

fn prefix_rule(path: &str, version: &str) -> Value {
    json!({
        "matches": [{"path": {"type": "PathPrefix", "value": path}}],
        "default": {"backendRefs": [{"kind": "MeshServiceSubset", "name": "backend", "tags": {"version": version}}]}
    })
}

/// `(first path of each rule's routes, version its backend subset has)`, in route order.
fn route_table(p: &ResolvedProxy) -> Vec<(String, String)> {
    let Routing::Http { routes } = &outbound(p, "backend").routing else { panic!("not HTTP") };
    let mut out: Vec<(String, String)> = Vec::new();
    let mut last_name = None;
    for r in routes {
        if last_name.as_ref() == Some(&r.name) {
            continue;
        }
        last_name = Some(r.name.clone());
        let path = match &r.path {
            PathMatch::Prefix(x) | PathMatch::Exact(x) | PathMatch::Regex(x) => x.clone(),
        };
        let version = match &r.action {
            HttpAction::Forward { clusters, .. } => {
                tags_of(p, &clusters[0].name).get("version").cloned().unwrap_or_else(|| "all".into())
            }
            HttpAction::Redirect { .. } => "redirect".into(),
        };
        out.push((path, version));
    }
    out
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
}

#[test]
fn mesh_http_route_rules_merge_by_matches_least_specific_first() {
    let mesh = json!({"kind": "Mesh"});
    let web = json!({"kind": "MeshService", "name": "web"});
    // (what, policies, (path, version) of each rule's routes in order)
    type Case = (&'static str, Vec<Value>, Vec<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (
            // Surprising: the mesh-wide policy's rules come first, the more specific policy
            // only overriding the backends of the rule with equal matches.
            "a mesh-wide policy's rules come before a service policy's",
            vec![
                http_route("mesh", mesh.clone(), json!([prefix_rule("/a", "v1")])),
                http_route("web", web.clone(), json!([prefix_rule("/b", "v2"), prefix_rule("/a", "v2")])),
            ],
            vec![("/a", "v2"), ("/b", "v2"), ("/", "all")],
        ),
        (
            // Kuma 2.6+: on equal kinds the smallest name merges last and wins.
            "on equal kinds the smallest name wins, the greatest's rules come first",
            vec![
                http_route("a-route", web.clone(), json!([prefix_rule("/x", "v1")])),
                http_route("b-route", web.clone(), json!([prefix_rule("/y", "v2"), prefix_rule("/x", "v2")])),
            ],
            vec![("/y", "v2"), ("/x", "v1"), ("/", "all")],
        ),
        (
            "an explicit catch-all replaces the implicit one",
            vec![http_route("web", web, json!([prefix_rule("/", "v2"), prefix_rule("/z", "v1")]))],
            vec![("/", "v2"), ("/z", "v1")],
        ),
    ];
    for (what, policies, want) in cases {
        let mut resources = backends();
        resources.extend(policies);
        let p = resolve(&resources, "web-1");
        assert_eq!(outbound(&p, "backend").routed_by, RoutedBy::MeshHttpRoute, "{what}");
        assert_eq!(route_table(&p), pairs(&want), "{what}");
    }
}

#[test]
fn a_mesh_http_route_backend_that_is_not_http_drops_its_rule() {
    let mut resources = backends();
    resources.push(dp("grpc-1", "grpc-svc", "grpc", &[], &[]));
    resources.push(http_route(
        "web",
        json!({"kind": "Mesh"}),
        json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/g"}}], "default": {"backendRefs": [{"kind": "MeshService", "name": "grpc-svc"}]}},
            prefix_rule("/h", "v2")
        ]),
    ));
    let p = resolve(&resources, "web-1");
    assert_eq!(route_table(&p), pairs(&[("/h", "v2"), ("/", "all")]));
}

#[test]
fn mesh_http_route_present_old_style_policies_leave_the_outbound_alone() {
    let mut resources = vec![
        dp("web-1", "web", "http", &[], &["backend", "other", "grpc-svc"]),
        dp("backend-1", "backend", "http", &[("version", "v1")], &[]),
        dp("other-1", "other", "http", &[("version", "v2")], &[]),
        dp("grpc-1", "grpc-svc", "grpc", &[("version", "v2")], &[]),
        json!({
            "type": "Timeout", "mesh": "default", "name": "slow",
            "sources": [{"match": {"kuma.io/service": "*"}}], "destinations": [{"match": {"kuma.io/service": "*"}}],
            "conf": {"connectTimeout": "7s", "http": {"requestTimeout": "3s"}}
        }),
        traffic_route("v2", json!({"kuma.io/service": "*"}), "*", to("*", &[("version", "v2")])),
    ];
    let before = resolve(&resources, "web-1");
    assert_eq!(outbound(&before, "other").routed_by, RoutedBy::TrafficRoute);
    assert_eq!(outbound(&before, "other").conf.timeouts.routes.request, Some(Duration::from_secs(3)));
    // A MeshHTTPRoute naming only backend: every HTTP outbound is now its.
    resources.push(http_route("web", json!({"kind": "Mesh"}), json!([prefix_rule("/a", "v1")])));
    let p = resolve(&resources, "web-1");
    for service in ["backend", "other"] {
        let o = outbound(&p, service);
        assert_eq!(o.routed_by, RoutedBy::MeshHttpRoute, "{service}");
        assert_eq!(o.conf.timeouts, Default::default(), "{service}: Timeout left it alone");
        for c in o.routing.cluster_names() {
            let c = p.clusters.iter().find(|x| x.name == c).unwrap();
            assert_eq!(c.conf.timeouts, Default::default(), "{service}: Timeout left its cluster {} alone", c.name);
            assert_eq!(c.conf.load_balancer, LoadBalancer::RoundRobin);
        }
    }
    assert_eq!(first_clusters(outbound(&p, "other")), ["other:100"], "TrafficRoute left it alone");
    // gRPC outbounds are not the MeshHTTPRoute's (Kuma's HTTP split takes no gRPC backend).
    let grpc = outbound(&p, "grpc-svc");
    assert_eq!(grpc.routed_by, RoutedBy::TrafficRoute);
    assert_eq!(grpc.conf.timeouts.routes.request, Some(Duration::from_secs(3)));
}

fn tcp_route(name: &str, service: &str, rules: Value) -> Value {
    json!({
        "type": "MeshTCPRoute", "mesh": "default", "name": name,
        "spec": {"targetRef": {"kind": "Mesh"}, "to": [{"targetRef": {"kind": "MeshService", "name": service}, "rules": rules}]}
    })
}

fn tcp_rule(refs: &[(&str, u32)]) -> Value {
    let refs: Vec<Value> = refs.iter().map(|(n, w)| json!({"kind": "MeshService", "name": n, "weight": w})).collect();
    json!({"default": {"backendRefs": refs}})
}

#[test]
fn mesh_tcp_route_first_rule_counts_and_yields_to_a_mesh_http_route_rule() {
    let base = || {
        vec![
            dp("web-1", "web", "http", &[], &["backend"]),
            dp("backend-1", "backend", "http", &[], &[]),
            dp("a-1", "a", "tcp", &[], &[]),
            dp("b-1", "b", "tcp", &[], &[]),
        ]
    };
    let cases: Vec<(&str, Vec<Value>, RoutedBy, Vec<&str>)> = vec![
        (
            "only the first rule counts",
            vec![tcp_route("r", "backend", json!([tcp_rule(&[("a", 1), ("b", 3)]), tcp_rule(&[("b", 1)])]))],
            RoutedBy::MeshTcpRoute,
            vec!["a:1", "b:3"],
        ),
        (
            "a more specific policy replaces the whole rule",
            vec![
                tcp_route("mesh", "backend", json!([tcp_rule(&[("a", 1), ("b", 3)])])),
                json!({
                    "type": "MeshTCPRoute", "mesh": "default", "name": "web",
                    "spec": {"targetRef": {"kind": "MeshService", "name": "web"},
                             "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "rules": [tcp_rule(&[("b", 2)])]}]}
                }),
            ],
            RoutedBy::MeshTcpRoute,
            vec!["b:2"],
        ),
        (
            "no rules: everything to the named service",
            vec![tcp_route("r", "backend", json!([]))],
            RoutedBy::MeshTcpRoute,
            vec!["backend:1"],
        ),
        (
            "a MeshHTTPRoute's catch-all alone does not keep it",
            vec![
                tcp_route("r", "backend", json!([tcp_rule(&[("a", 1)])])),
                json!({"type": "MeshHTTPRoute", "mesh": "default", "name": "h",
                       "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "other"}, "rules": [prefix_rule("/x", "v1")]}]}}),
            ],
            RoutedBy::MeshTcpRoute,
            vec!["a:1"],
        ),
        (
            "a MeshHTTPRoute rule for the service wins",
            vec![
                tcp_route("r", "backend", json!([tcp_rule(&[("a", 1)])])),
                http_route("h", json!({"kind": "Mesh"}), json!([prefix_rule("/x", "v1")])),
            ],
            RoutedBy::MeshHttpRoute,
            vec!["backend-_0_:1"],
        ),
    ];
    for (what, policies, by, clusters) in cases {
        let mut resources = base();
        resources.extend(policies);
        let p = resolve(&resources, "web-1");
        let o = outbound(&p, "backend");
        assert_eq!(o.routed_by, by, "{what}");
        assert_eq!(first_clusters(o), clusters, "{what}");
    }
}

#[test]
fn mesh_load_balancing_strategy_overrides_traffic_route_per_service() {
    let mut resources = backends();
    resources.push(dp("db-1", "db", "tcp", &[], &[]));
    resources.push(traffic_route(
        "tr",
        json!({"kuma.io/service": "web"}),
        "backend",
        json!({"split": [
            {"weight": 1, "destination": {"kuma.io/service": "backend", "version": "v2"}},
            {"weight": 1, "destination": {"kuma.io/service": "db"}}
        ], "loadBalancer": {"random": {}}}),
    ));
    let before = resolve(&resources, "web-1");
    assert!(before.clusters.iter().all(|c| c.conf.load_balancer == LoadBalancer::Random));
    resources.push(json!({
        "type": "MeshLoadBalancingStrategy", "mesh": "default", "name": "lb",
        "spec": {"to": [{"targetRef": {"kind": "MeshService", "name": "backend"},
                         "default": {"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]}}}}]}
    }));
    let p = resolve(&resources, "web-1");
    let lb = |name: &str| p.clusters.iter().find(|c| c.name == name).unwrap().conf.load_balancer.clone();
    assert_eq!(lb("backend-_0_"), LoadBalancer::RingHash { murmur: false, min_ring_size: None, max_ring_size: None });
    assert_eq!(lb("db"), LoadBalancer::Random, "db's cluster keeps TrafficRoute's");
    assert_eq!(outbound(&p, "backend").conf.hash_policies.len(), 1);
}

#[test]
fn subset_clusters_get_only_their_endpoints_and_follow_new_instances() {
    let mut resources = backends();
    resources.push(traffic_route(
        "v2",
        json!({"kuma.io/service": "web"}),
        "backend",
        to("backend", &[("version", "v2")]),
    ));
    let s = store(&resources);
    let ctx = MeshContext::build(&s, "default", None).unwrap();
    let endpoints = |ctx: &MeshContext| {
        let la =
            ctx.service("backend").load_assignment_for("backend-_0_", &Tags::from([("version".into(), "v2".into())]));
        let json = crate::xds::debug::resource_to_json(&la);
        assert_eq!(json["clusterName"], "backend-_0_");
        json["endpoints"][0]["lbEndpoints"].as_array().map_or(0, Vec::len)
    };
    assert_eq!(endpoints(&ctx), 1, "only backend-2 has version v2");
    let mut three = dp("backend-3", "backend", "http", &[("version", "v2")], &[]);
    three["networking"]["address"] = json!("10.0.0.3");
    let created = s.create("default", "backend-3", rest::from_json(three).unwrap().spec).unwrap();
    let (next, affected) = ctx.with_dataplane("backend-3", Some(created)).unwrap();
    assert_eq!(endpoints(&next), 2);
    assert!(affected.contains("web-1"), "the consumer hears of it: {affected:?}");
}

#[test]
fn route_targets_reach_consumers_of_the_outbound_only() {
    let resources = vec![
        dp("web-1", "web", "http", &[], &["backend"]),
        dp("db-user-1", "db-user", "http", &[], &["db"]),
        dp("lonely-1", "lonely", "http", &[], &[]),
        dp("backend-1", "backend", "http", &[], &[]),
        traffic_route(
            "split",
            json!({"kuma.io/service": "*"}),
            "backend",
            json!({"split": [{"weight": 1, "destination": {"kuma.io/service": "backend"}}, {"weight": 1, "destination": {"kuma.io/service": "other"}}],
                   "http": [{"match": {"path": {"prefix": "/x"}}, "destination": {"kuma.io/service": "x-only"}}]}),
        ),
        json!({"type": "MeshHTTPRoute", "mesh": "default", "name": "h", "spec": {"to": [{
            "targetRef": {"kind": "MeshService", "name": "db"},
            "rules": [{"matches": [{"method": "GET"}], "default": {
                "filters": [{"type": "RequestMirror", "requestMirror": {"backendRef": {"kind": "MeshService", "name": "shadow"}}}],
                "backendRefs": [{"kind": "MeshService", "name": "db-v2"}]}}]}]}}),
        tcp_route("t", "db", json!([tcp_rule(&[("db-tcp", 1)])])),
        tcp_route("self", "backend", json!([])),
    ];
    let s = store(&resources);
    let ctx = MeshContext::build(&s, "default", None).unwrap();
    let spec = |name: &str| match &ctx.dataplanes[name].spec {
        Spec::Dataplane(d) => d.clone(),
        _ => unreachable!(),
    };
    let (web, db_user, lonely) = (spec("web-1"), spec("db-user-1"), spec("lonely-1"));
    for target in ["other", "x-only"] {
        assert!(ctx.consumes(&web, target), "web-1 → {target}");
        assert!(!ctx.consumes(&db_user, target), "db-user-1 ↛ {target}");
    }
    for target in ["db-v2", "shadow", "db-tcp"] {
        assert!(ctx.consumes(&db_user, target), "db-user-1 → {target}");
        assert!(!ctx.consumes(&web, target), "web-1 ↛ {target}");
    }
    assert!(!ctx.consumes(&lonely, "other"), "no outbound, no route");
    assert_eq!(ctx.services_read_by(&web), ["backend", "other", "x-only"]);
    // An instance of a split target changes web-1's config only.
    let mut other = dp("other-1", "other", "http", &[], &[]);
    other["networking"]["address"] = json!("10.0.0.9");
    let created = s.create("default", "other-1", rest::from_json(other).unwrap().spec).unwrap();
    let (_, affected) = ctx.with_dataplane("other-1", Some(created)).unwrap();
    assert_eq!(affected.into_iter().collect::<Vec<_>>(), ["other-1", "web-1"]);
}

#[test]
fn a_policy_on_a_mesh_http_route_configures_that_routes_rules_only() {
    let mut resources = vec![
        dp("web-1", "web", "http", &[], &["backend", "other"]),
        dp("backend-1", "backend", "http", &[("version", "v1")], &[]),
        dp("other-1", "other", "http", &[], &[]),
        http_route("r", json!({"kind": "MeshService", "name": "web"}), json!([prefix_rule("/a", "v1")])),
        json!({"type": "MeshTimeout", "mesh": "default", "name": "on-route", "spec": {
            "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "2s"}}}]}}),
    ];
    let two = Some(Duration::from_secs(2));
    let alone = resolve(&resources, "web-1");
    for service in ["backend", "other"] {
        let t = &outbound(&alone, service).conf.timeouts;
        assert!(t.routes.request != two && t.by_route.is_empty(), "{service}: {t:?}");
    }
    // With a mesh-wide MeshTimeout, the route's rule gets its own request timeout.
    resources.push(json!({"type": "MeshTimeout", "mesh": "default", "name": "all", "spec": {
        "targetRef": {"kind": "Mesh"},
        "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "9s"}}}]}}));
    let p = resolve(&resources, "web-1");
    let rule = crate::policies::mesh_http_route::api::route_name(&[serde_json::from_value(
        json!({"path": {"type": "PathPrefix", "value": "/a"}}),
    )
    .unwrap()]);
    let backend = &outbound(&p, "backend").conf.timeouts;
    assert_eq!(backend.routes.request, Some(Duration::from_secs(9)));
    assert_eq!(backend.by_route.keys().collect::<Vec<_>>(), [&rule]);
    assert_eq!(backend.by_route[&rule].request, two);
    assert!(outbound(&p, "other").conf.timeouts.by_route.is_empty(), "other has no rule of the route");
}

#[test]
fn a_changed_route_changes_the_rules_of_the_policies_targeting_it() {
    let route =
        |path: &str| http_route("r", json!({"kind": "MeshService", "name": "web"}), json!([prefix_rule(path, "v1")]));
    let resources = vec![
        dp("web-1", "web", "http", &[], &["backend"]),
        dp("backend-1", "backend", "http", &[("version", "v1")], &[]),
        route("/a"),
        json!({"type": "MeshTimeout", "mesh": "default", "name": "all", "spec": {
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "9s"}}}]}}),
        json!({"type": "MeshTimeout", "mesh": "default", "name": "on-route", "spec": {
            "targetRef": {"kind": "MeshHTTPRoute", "name": "r"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "2s"}}}]}}),
    ];
    let s = store(&resources);
    let ctx = MeshContext::build(&s, "default", None).unwrap();
    let by_route = |ctx: &MeshContext| {
        let dp = &ctx.dataplanes["web-1"];
        let Spec::Dataplane(spec) = &dp.spec else { unreachable!() };
        let p = ctx.resolve(dp, spec);
        outbound(&p, "backend").conf.timeouts.by_route.keys().cloned().collect::<Vec<_>>()
    };
    let name_of = |path: &str| {
        crate::policies::mesh_http_route::api::route_name(&[serde_json::from_value(
            json!({"path": {"type": "PathPrefix", "value": path}}),
        )
        .unwrap()])
    };
    assert_eq!(by_route(&ctx), [name_of("/a")]);
    let key = ResourceKey::new(ResourceType::MeshHttpRoute, "default", "r");
    let current = ResourceStore::get(&s, &key).unwrap();
    let updated = s.update(&key, rest::from_json(route("/b")).unwrap().spec, current.meta.version).unwrap();
    let next = ctx.with_policy(&key, Some(updated)).unwrap();
    assert_eq!(by_route(&next), [name_of("/b")], "MeshTimeout's rules follow the route");
}
