//! Routing and load balancing proven by real traffic through real Envoys: header matches
//! and splits (TrafficRoute and MeshHTTPRoute), weighted TCP backends (MeshTCPRoute),
//! rewrites, header modifiers and redirects (MeshHTTPRoute), and ring hash stickiness
//! (MeshLoadBalancingStrategy). One control plane and one client sidecar (`web`) serve every
//! case; each case has services of its own and deletes its policies when done (a
//! MeshHTTPRoute routes every HTTP outbound of `web`, so one left behind would route the
//! next cases' outbounds too).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

use common::app::{get, request, HttpApp, Reply, TcpApp};
use common::free_port;
use common::mesh::{config_dump, dataplane, Mesh};
use serde_json::{json, Value};

#[test]
fn routing_shapes_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    bad_routes_are_refused_and_nothing_is_stored(&mesh);
    header_match_sends_v2_requests_to_v2(&mut mesh);
    split_90_10_lands_within_tolerance(&mut mesh);
    tcp_route_splits_connections_by_weight(&mut mesh);
    rewrites_header_modifiers_and_redirects(&mut mesh);
    ring_hash_keeps_a_user_on_one_instance(&mut mesh);
}

/// Instances `<service>-<version>` of an HTTP service, each behind its sidecar with a
/// `version` tag.
fn versioned(mesh: &mut Mesh, service: &str, versions: &[&str]) -> Vec<HttpApp> {
    versions
        .iter()
        .map(|v| {
            let name = format!("{service}-{v}");
            let app = HttpApp::start(&name);
            mesh.sidecar(&dataplane(&name, service, "http", free_port(), app.port, &[("version", v)], &[]));
            app
        })
        .collect()
}

/// Waits until the client's Envoy has at least `n` healthy endpoints in clusters whose name
/// starts with `prefix` (the subset clusters of a service), so traffic is measured only once
/// every instance can be picked.
fn wait_for_endpoints(mesh: &Mesh, prefix: &str, n: usize) {
    let admin = mesh.client_admin();
    common::wait_until(&format!("{n} endpoints in {prefix}* clusters"), Duration::from_secs(20), || {
        let text = common::get_text(&format!("http://127.0.0.1:{admin}/clusters")).unwrap_or_default();
        text.lines().filter(|l| l.starts_with(prefix) && l.ends_with("::health_flags::healthy")).count() >= n
    });
}

/// The active config of the client's outbound listener on `port`, as JSON text (Envoy keeps
/// a replaced listener in `draining_state` for a while, so the whole dump would still show
/// what a deleted policy did).
fn active_listener(mesh: &Mesh, port: u16) -> String {
    let dump = config_dump(mesh.client_admin());
    let name = format!("outbound:127.0.0.1:{port}");
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    configs
        .iter()
        .flat_map(|c| c["dynamic_listeners"].as_array().cloned().unwrap_or_default())
        .find(|l| l["name"] == name.as_str())
        .map(|l| l["active_state"]["listener"].to_string())
        .unwrap_or_default()
}

/// The active cluster `name` of the client's Envoy, as JSON.
fn active_cluster(mesh: &Mesh, name: &str) -> Value {
    let dump = config_dump(mesh.client_admin());
    let configs = dump["configs"].as_array().cloned().unwrap_or_default();
    configs
        .iter()
        .flat_map(|c| c["dynamic_active_clusters"].as_array().cloned().unwrap_or_default())
        .map(|c| c["cluster"].clone())
        .find(|c| c["name"] == name)
        .unwrap_or(Value::Null)
}

/// Waits until the active listener on `port` satisfies `ready`.
fn wait_for_listener(mesh: &Mesh, port: u16, what: &str, ready: impl Fn(&str) -> bool) {
    common::wait_until(what, Duration::from_secs(20), || ready(&active_listener(mesh, port)));
}

fn get_with(port: u16, path: &str, headers: &[(&str, &str)]) -> Reply {
    request(port, "GET", path, headers, Duration::from_secs(5))
}

/// Which app answered each of `n` requests, counted.
fn answers(n: usize, mut send: impl FnMut() -> Reply) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for _ in 0..n {
        let r = send();
        let who = match (r.status, r.app()) {
            (200, Some(app)) => app.to_string(),
            (status, _) => format!("status {status}"),
        };
        *out.entry(who).or_insert(0) += 1;
    }
    out
}

fn only(app: &str, n: usize) -> BTreeMap<String, usize> {
    BTreeMap::from([(app.to_string(), n)])
}

fn mesh_http_route(name: &str, service: &str, rules: Value) -> Value {
    json!({
        "type": "MeshHTTPRoute", "mesh": "default", "name": name,
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service}, "rules": rules}]
        }
    })
}

fn subset(service: &str, version: &str, weight: u32) -> Value {
    json!({"kind": "MeshServiceSubset", "name": service, "tags": {"version": version}, "weight": weight})
}

/// The name Kuma (and higuma) gives the catch-all route of a MeshHTTPRoute outbound.
const CATCH_ALL_ROUTE: &str = "9Zuf5Tg79OuZcQITwBbQykxAk2u4fRKrwYn3//AL4Yo=";

/// Invalid routes are answered 400 naming the field, and nothing is stored.
fn bad_routes_are_refused_and_nothing_is_stored(mesh: &Mesh) {
    let cases = [
        (
            mesh_http_route(
                "bad-path",
                "x",
                json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/api/"}}], "default": {}}]),
            ),
            "spec.to[0].rules[0].matches[0].path.value",
        ),
        (
            json!({"type": "MeshTCPRoute", "mesh": "default", "name": "bad-tcp", "spec": {"to": [{
                "targetRef": {"kind": "MeshService", "name": "x"},
                "rules": [{"default": {"backendRefs": [{"kind": "MeshService"}]}}]}]}}),
            "spec.to[0].rules[0].default.backendRefs[0].name",
        ),
        (
            json!({"type": "MeshLoadBalancingStrategy", "mesh": "default", "name": "bad-lb", "spec": {"to": [{
                "targetRef": {"kind": "Mesh"},
                "default": {"loadBalancer": {"type": "LeastRequest", "leastRequest": {"choiceCount": 1}}}}]}}),
            "spec.to[0].default.loadBalancer.leastRequest.choiceCount",
        ),
        (
            json!({"type": "TrafficRoute", "mesh": "default", "name": "bad-split",
                "sources": [{"match": {"kuma.io/service": "*"}}], "destinations": [{"match": {"kuma.io/service": "*"}}],
                "conf": {"split": [{"weight": 0, "destination": {"kuma.io/service": "x"}}]}}),
            "conf.split",
        ),
    ];
    for (resource, field) in cases {
        let (status, body) = mesh.try_put(&resource);
        assert_eq!(status, 400, "{body}");
        let fields: Vec<&str> =
            body["invalid_parameters"].as_array().unwrap().iter().filter_map(|p| p["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} not in {body}");
        let (status, _) = common::call("GET", &mesh.cp.url(&common::mesh::path_of(&resource)), None);
        assert_eq!(status, 404, "{} was stored", resource["name"]);
    }
}

/// (a) Requests with `x-version: v2` reach only the v2 instance, the others only v1: first by
/// a TrafficRoute `http[]` match, then by a MeshHTTPRoute headers match.
fn header_match_sends_v2_requests_to_v2(mesh: &mut Mesh) {
    let _apps = versioned(mesh, "hdr", &["v1", "v2"]);
    let outbound = mesh.outbound_to("hdr");
    let traffic_route = json!({
        "type": "TrafficRoute", "mesh": "default", "name": "hdr-by-header",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "hdr"}}],
        "conf": {
            "http": [{"match": {"headers": {"x-version": {"exact": "v2"}}}, "destination": {"kuma.io/service": "hdr", "version": "v2"}}],
            "destination": {"kuma.io/service": "hdr", "version": "v1"}
        }
    });
    mesh.put(&traffic_route);
    wait_for_listener(mesh, outbound, "the x-version route", |l| l.contains("\"x-version\""));
    wait_for_endpoints(mesh, "hdr-_", 2);
    let v2 = [("x-version", "v2")];
    assert_eq!(answers(20, || get_with(outbound, "/", &v2)), only("hdr-v2", 20), "TrafficRoute, header v2");
    assert_eq!(answers(20, || get(outbound, "/")), only("hdr-v1", 20), "TrafficRoute, no header");

    let route = mesh_http_route(
        "hdr-by-header",
        "hdr",
        json!([
            {"matches": [{"headers": [{"type": "Exact", "name": "x-version", "value": "v2"}]}], "default": {"backendRefs": [subset("hdr", "v2", 1)]}},
            {"matches": [{"path": {"type": "PathPrefix", "value": "/"}}], "default": {"backendRefs": [subset("hdr", "v1", 1)]}}
        ]),
    );
    mesh.put(&route);
    wait_for_listener(mesh, outbound, "the MeshHTTPRoute's routes", |l| l.contains(CATCH_ALL_ROUTE));
    wait_for_endpoints(mesh, "hdr-_", 2);
    assert_eq!(answers(20, || get_with(outbound, "/", &v2)), only("hdr-v2", 20), "MeshHTTPRoute, header v2");
    assert_eq!(
        answers(20, || get_with(outbound, "/", &[("x-version", "v3")])),
        only("hdr-v1", 20),
        "MeshHTTPRoute, v3"
    );
    mesh.delete(&route);
    mesh.delete(&traffic_route);
    wait_for_listener(mesh, outbound, "the MeshHTTPRoute's routes gone", |l| {
        !l.is_empty() && !l.contains(CATCH_ALL_ROUTE)
    });
}

/// Requests of 200 that reach `v2` of a 90/10 split: 20 expected. Binomial(200, 0.1) has a
/// standard deviation of 4.2, so 6..=34 (about ±3.3 σ) fails by chance about once in a
/// thousand runs, while a split that ignored the weights (100 expected at 50/50) or sent
/// everything one way (0 or 200) cannot pass.
const SPLIT_REQUESTS: usize = 200;
const SPLIT_V2_RANGE: std::ops::RangeInclusive<usize> = 6..=34;

fn assert_split(what: &str, counts: &BTreeMap<String, usize>) {
    let v1 = counts.get("split-v1").copied().unwrap_or(0);
    let v2 = counts.get("split-v2").copied().unwrap_or(0);
    assert_eq!(v1 + v2, SPLIT_REQUESTS, "{what}: requests that reached neither: {counts:?}");
    assert!(SPLIT_V2_RANGE.contains(&v2), "{what}: {v2} of {SPLIT_REQUESTS} reached v2, outside {SPLIT_V2_RANGE:?}");
}

/// (b) A 90/10 split between the v1 and v2 subsets lands within the stated tolerance: by a
/// TrafficRoute split, then by MeshHTTPRoute weighted backendRefs.
fn split_90_10_lands_within_tolerance(mesh: &mut Mesh) {
    let _apps = versioned(mesh, "split", &["v1", "v2"]);
    let outbound = mesh.outbound_to("split");
    let traffic_route = json!({
        "type": "TrafficRoute", "mesh": "default", "name": "split-90-10",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "split"}}],
        "conf": {"split": [
            {"weight": 90, "destination": {"kuma.io/service": "split", "version": "v1"}},
            {"weight": 10, "destination": {"kuma.io/service": "split", "version": "v2"}}
        ]}
    });
    mesh.put(&traffic_route);
    wait_for_listener(mesh, outbound, "split's weighted clusters", |l| l.contains("\"name\":\"split-_"));
    wait_for_endpoints(mesh, "split-_", 2);
    assert_split("TrafficRoute", &answers(SPLIT_REQUESTS, || get(outbound, "/")));

    let route = mesh_http_route(
        "split-90-10",
        "split",
        json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "default": {"backendRefs": [subset("split", "v1", 90), subset("split", "v2", 10)]}}]),
    );
    mesh.put(&route);
    wait_for_listener(mesh, outbound, "the MeshHTTPRoute split", |l| l.contains(CATCH_ALL_ROUTE));
    wait_for_endpoints(mesh, "split-_", 2);
    assert_split("MeshHTTPRoute", &answers(SPLIT_REQUESTS, || get(outbound, "/")));
    mesh.delete(&route);
    mesh.delete(&traffic_route);
    wait_for_listener(mesh, outbound, "the MeshHTTPRoute's routes gone", |l| {
        !l.is_empty() && !l.contains(CATCH_ALL_ROUTE)
    });
}

/// Connections of 100 that reach `tcp-b` with weights 1 (tcp-a) to 3 (tcp-b): 75 expected,
/// σ = 4.3; 60..=90 (±3.5 σ) leaves chance failures below one in two thousand and rejects
/// an even split (50) or everything one way.
const TCP_CONNECTIONS: usize = 100;
const TCP_B_RANGE: std::ops::RangeInclusive<usize> = 60..=90;

/// The first line a connection through `port` reads: the name of the TCP app behind it.
fn greeting(port: u16) -> String {
    let Ok(conn) = TcpStream::connect(("127.0.0.1", port)) else { return "connect failed".into() };
    let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
    let mut line = String::new();
    match BufReader::new(conn).read_line(&mut line) {
        Ok(n) if n > 0 => line.trim().to_string(),
        _ => "nothing".into(),
    }
}

/// (c) MeshTCPRoute weighted backendRefs: connections to `tcp-front` (which has no
/// instance) reach tcp-a and tcp-b in about the weights' ratio, each app announcing itself.
fn tcp_route_splits_connections_by_weight(mesh: &mut Mesh) {
    let mut apps = Vec::new();
    for name in ["tcp-a", "tcp-b"] {
        let app = TcpApp::start(name);
        mesh.sidecar(&dataplane(&format!("{name}-1"), name, "tcp", free_port(), app.port, &[], &[]));
        apps.push(app);
    }
    let outbound = mesh.outbound_to("tcp-front");
    let route = json!({
        "type": "MeshTCPRoute", "mesh": "default", "name": "tcp-front-split",
        "spec": {"targetRef": {"kind": "MeshService", "name": "web"}, "to": [{
            "targetRef": {"kind": "MeshService", "name": "tcp-front"},
            "rules": [{"default": {"backendRefs": [
                {"kind": "MeshService", "name": "tcp-a", "weight": 1},
                {"kind": "MeshService", "name": "tcp-b", "weight": 3}
            ]}}]
        }]}
    });
    mesh.put(&route);
    wait_for_listener(mesh, outbound, "tcp-front's weighted clusters", |l| {
        l.contains("\"name\":\"tcp-a\",\"weight\":1")
    });
    wait_for_endpoints(mesh, "tcp-a::", 1);
    wait_for_endpoints(mesh, "tcp-b::", 1);
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..TCP_CONNECTIONS {
        *counts.entry(greeting(outbound)).or_insert(0) += 1;
    }
    let (a, b) = (counts.get("tcp-a").copied().unwrap_or(0), counts.get("tcp-b").copied().unwrap_or(0));
    assert_eq!(a + b, TCP_CONNECTIONS, "connections that reached neither: {counts:?}");
    assert!(TCP_B_RANGE.contains(&b), "{b} of {TCP_CONNECTIONS} reached tcp-b, outside {TCP_B_RANGE:?}");
    // One upstream connection per downstream one, each to exactly one app.
    assert_eq!(apps.iter().map(TcpApp::connections).sum::<u64>(), TCP_CONNECTIONS as u64);
    mesh.delete(&route);
}

/// (d) A MeshHTTPRoute URL rewrite and header modifiers, seen in what reached the app and
/// in the response, and a redirect answered by Envoy with its status.
fn rewrites_header_modifiers_and_redirects(mesh: &mut Mesh) {
    let _apps = versioned(mesh, "rw", &["v1"]);
    let outbound = mesh.outbound_to("rw");
    let route = mesh_http_route(
        "rw-filters",
        "rw",
        json!([
            {"matches": [{"path": {"type": "PathPrefix", "value": "/old"}}], "default": {"filters": [
                {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/new"}}},
                {"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "x-added", "value": "yes"}], "remove": ["x-drop"]}},
                {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"add": [{"name": "x-resp", "value": "hello"}]}}
            ]}},
            {"matches": [{"path": {"type": "Exact", "value": "/full"}}], "default": {"filters": [
                {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replaceFullPath": "/replaced"}}}
            ]}},
            {"matches": [{"path": {"type": "Exact", "value": "/moved"}}], "default": {"filters": [
                {"type": "RequestRedirect", "requestRedirect": {"statusCode": 302, "hostname": "elsewhere.example", "path": {"type": "ReplaceFullPath", "replaceFullPath": "/landing"}}}
            ]}}
        ]),
    );
    mesh.put(&route);
    wait_for_listener(mesh, outbound, "the rewrite routes", |l| l.contains("\"prefix_rewrite\":\"/new/\""));
    wait_for_endpoints(mesh, "rw::", 1);

    let r = get_with(outbound, "/old/thing?x=1", &[("x-drop", "1")]);
    assert_eq!(r.status, 200, "{}", r.body);
    let echo = r.json().expect("the app's echo");
    assert_eq!(echo["path"], "/new/thing", "{echo}");
    assert_eq!(echo["query"], "x=1", "{echo}");
    assert_eq!(echo["headers"]["x-added"], "yes", "{echo}");
    assert!(echo["headers"].get("x-drop").is_none(), "x-drop reached the app: {echo}");
    assert_eq!(r.headers.get("x-resp").map(String::as_str), Some("hello"));
    assert_eq!(get(outbound, "/old").json().expect("echo")["path"], "/new");
    // `/older` is not under the `/old` prefix: untouched, and no response header added.
    let older = get(outbound, "/older");
    assert_eq!(older.json().expect("echo")["path"], "/older");
    assert!(!older.headers.contains_key("x-resp"));
    assert_eq!(get(outbound, "/full").json().expect("echo")["path"], "/replaced");

    let moved = get(outbound, "/moved");
    assert_eq!(moved.status, 302, "{}", moved.body);
    assert_eq!(moved.headers.get("location").map(String::as_str), Some("http://elsewhere.example/landing"));
    assert!(moved.app().is_none(), "a redirect is Envoy's answer, not the app's");
    mesh.delete(&route);
    wait_for_listener(mesh, outbound, "the MeshHTTPRoute's routes gone", |l| {
        !l.is_empty() && !l.contains(CATCH_ALL_ROUTE)
    });
}

/// Distinct `x-user` values sent; with 3 instances, all of them hashing to one instance by
/// chance has a probability of 3 × (1/3)^12 ≈ 6e-6.
const USERS: usize = 12;
const REQUESTS_PER_USER: usize = 10;

/// (e) MeshLoadBalancingStrategy RingHash on a header: every request of one `x-user` reaches
/// the same instance (round robin would visit all three), and users spread over instances.
fn ring_hash_keeps_a_user_on_one_instance(mesh: &mut Mesh) {
    let _apps = versioned(mesh, "ring", &["a", "b", "c"]);
    let outbound = mesh.outbound_to("ring");
    wait_for_endpoints(mesh, "ring::", 3);
    let before: BTreeSet<String> = answers(9, || get_with(outbound, "/", &[("x-user", "u0")])).into_keys().collect();
    assert_eq!(before.len(), 3, "round robin before the policy: {before:?}");

    let policy = json!({
        "type": "MeshLoadBalancingStrategy", "mesh": "default", "name": "ring-by-user",
        "spec": {"targetRef": {"kind": "MeshService", "name": "web"}, "to": [{
            "targetRef": {"kind": "MeshService", "name": "ring"},
            "default": {"loadBalancer": {"type": "RingHash", "ringHash": {"hashPolicies": [{"type": "Header", "header": {"name": "x-user"}}]}}}
        }]}
    });
    mesh.put(&policy);
    wait_for_listener(mesh, outbound, "the x-user hash policy", |l| l.contains("\"header_name\":\"x-user\""));
    common::wait_until("ring's ring hash", Duration::from_secs(20), || {
        active_cluster(mesh, "ring")["lb_policy"] == "RING_HASH"
    });
    wait_for_endpoints(mesh, "ring::", 3);
    let mut reached = BTreeSet::new();
    for i in 0..USERS {
        let user = format!("user-{i}");
        let seen = answers(REQUESTS_PER_USER, || get_with(outbound, "/", &[("x-user", &user)]));
        assert_eq!(seen.len(), 1, "{user} reached {seen:?}");
        reached.extend(seen.into_keys());
    }
    assert!(reached.len() >= 2, "every user hashed to {reached:?}");
    assert!(reached.iter().all(|a| a.starts_with("ring-")), "{reached:?}");
    mesh.delete(&policy);
}
