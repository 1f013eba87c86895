//! Policies proven by what real traffic through real Envoys does. One control plane, one
//! client sidecar (`web`) and the backends' sidecars are shared by every case, which run in
//! order in one test; each case has services of its own, so its policies never select
//! another case's traffic.

mod common;

use std::time::{Duration, Instant};

use common::app::{get, HttpApp};
use common::mesh::{config_dump, dataplane, dump_contains, stat, wait_for_config, Mesh};
use common::{call, free_port};
use serde_json::{json, Value};

#[test]
fn policies_shape_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    old_style_timeout_turns_a_slow_backend_into_504(&mut mesh);
    mesh_timeout_turns_a_slow_backend_into_504(&mut mesh);
    mesh_timeout_from_times_requests_out_at_the_inbound(&mut mesh);
    old_style_retry_hides_a_backend_failing_every_second_request(&mut mesh);
    mesh_retry_hides_a_backend_failing_every_second_request(&mut mesh);
    bad_policies_are_refused_naming_the_field_and_not_stored(&mesh);
}

/// The dynamic listener `name` in Envoy `admin`'s config dump, as JSON text ("" if absent).
fn listener_text(admin: u16, name: &str) -> String {
    let dump = config_dump(admin);
    let listeners =
        dump["configs"].as_array().into_iter().flatten().flat_map(|c| {
            c["dynamic_listeners"].as_array().into_iter().flatten().filter(|l| l["name"] == name).cloned()
        });
    listeners.map(|l| l.to_string()).collect()
}

/// Waits until the listener `name` of Envoy `admin` contains every one of `needles`.
fn wait_for_listener(admin: u16, name: &str, needles: &[&str]) {
    common::wait_until(&format!("{name} with {needles:?}"), Duration::from_secs(20), || {
        let text = listener_text(admin, name);
        needles.iter().all(|n| text.contains(n))
    });
}

/// A backend `service` (one instance `<service>-1`) behind its own sidecar, and web's
/// outbound port to it once traffic flows; returns (app, sidecar admin port, outbound port).
fn backend(mesh: &mut Mesh, service: &str, set: impl FnOnce(&mut common::app::Behaviour)) -> (HttpApp, u16, u16) {
    let name = format!("{service}-1");
    let app = HttpApp::start(&name);
    let admin = mesh.sidecar(&dataplane(&name, service, "http", free_port(), app.port, &[], &[]));
    let outbound = mesh.outbound_to(service);
    common::wait_until(&format!("traffic to {service}"), Duration::from_secs(30), || get(outbound, "/").status == 200);
    app.set(set);
    (app, admin, outbound)
}

/// Timeout `http.requestTimeout: 1s` in front of a backend that takes 3 s: 504 after ~1 s.
fn old_style_timeout_turns_a_slow_backend_into_504(mesh: &mut Mesh) {
    let (_app, _, outbound) = backend(mesh, "slow", |b| b.delay = Duration::from_secs(3));
    mesh.put(&json!({
        "type": "Timeout", "mesh": "default", "name": "slow-1s",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "slow"}}],
        "conf": {"http": {"requestTimeout": "1s"}}
    }));
    wait_for_config(mesh.client_admin(), "a 1s route timeout", |d| dump_contains(d, "\"timeout\":\"1s\""));
    assert_times_out_after_about_1s(outbound);
}

fn assert_times_out_after_about_1s(port: u16) {
    let started = Instant::now();
    let reply = get(port, "/");
    let took = started.elapsed();
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert!(reply.body.contains("upstream request timeout"), "{}", reply.body);
    assert!(took >= Duration::from_millis(900) && took < Duration::from_millis(2500), "answered after {took:?}");
}

/// MeshTimeout `to` the backend, `http.requestTimeout: 1s`, in front of a 3 s backend.
fn mesh_timeout_turns_a_slow_backend_into_504(mesh: &mut Mesh) {
    let (_app, _, outbound) = backend(mesh, "mt-slow", |b| b.delay = Duration::from_secs(3));
    mesh.put(&json!({
        "type": "MeshTimeout", "mesh": "default", "name": "web-to-mt-slow",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "mt-slow"}, "default": {"http": {"requestTimeout": "1s"}}}]
        }
    }));
    // The route's idle timeout (MeshTimeout's 30 min default) tells it from Timeout.
    let listener = format!("outbound:127.0.0.1:{outbound}");
    wait_for_listener(mesh.client_admin(), &listener, &["\"timeout\":\"1s\"", "\"idle_timeout\":\"1800s\""]);
    assert_times_out_after_about_1s(outbound);
}

/// MeshTimeout `from` on the backend's inbound: the backend's own sidecar answers 504 after
/// ~1 s, while the client, with no request timeout of its own, only relays it.
fn mesh_timeout_from_times_requests_out_at_the_inbound(mesh: &mut Mesh) {
    let name = "mt-in-1";
    let app = HttpApp::start(name);
    let admin = mesh.sidecar(&dataplane(name, "mt-in", "http", free_port(), app.port, &[], &[]));
    // The policy is in force before the first request: Envoy keeps a connection accepted by
    // an older version of a listener on that version's filter chain until it drains, and
    // the client's Envoy pools its connection to this inbound.
    mesh.put(&json!({
        "type": "MeshTimeout", "mesh": "default", "name": "mt-in-inbound",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "mt-in"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "1s"}}}]
        }
    }));
    let inbound = listener_name_with_prefix(admin, "inbound:");
    wait_for_listener(admin, &inbound, &["\"timeout\":\"1s\""]);
    let outbound = mesh.outbound_to("mt-in");
    common::wait_until("traffic to mt-in", Duration::from_secs(30), || get(outbound, "/").status == 200);
    app.set(|b| b.delay = Duration::from_secs(3));
    assert_times_out_after_about_1s(outbound);
    let local = format!("cluster.localhost_{}.upstream_rq_timeout", app.port);
    assert_eq!(stat(admin, &local), Some(1), "the inbound side timed the request out");
    assert_eq!(stat(mesh.client_admin(), "cluster.mt-in.upstream_rq_timeout"), Some(0), "not the client");
}

/// The name of the first dynamic listener of Envoy `admin` starting with `prefix`.
fn listener_name_with_prefix(admin: u16, prefix: &str) -> String {
    let dump = config_dump(admin);
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["dynamic_listeners"].as_array().into_iter().flatten())
        .filter_map(|l| l["name"].as_str())
        .find(|n| n.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix} listener in {dump}"))
        .to_string()
}

/// Sends `n` requests; returns how many were not 200.
fn failures(port: u16, n: usize) -> usize {
    (0..n).filter(|_| get(port, "/").status != 200).count()
}

const REQUESTS: usize = 50;

/// A backend failing every second request with 503: about half the requests fail without
/// a policy; with `retry` in force none does, and the backend sees each failed try retried.
fn retries_hide_every_second_failure(mesh: &mut Mesh, service: &str, retry: Value, needles: &[&str]) {
    let (app, _, outbound) = backend(mesh, service, |b| {
        b.fail_every = 2;
        b.fail_status = 503;
    });
    let without = failures(outbound, REQUESTS);
    println!("{service}: {without}/{REQUESTS} requests failed without a retry policy");
    assert!((20..=30).contains(&without), "{without}/{REQUESTS} failed without a policy: expected about half");

    mesh.put(&retry);
    wait_for_listener(mesh.client_admin(), &format!("outbound:127.0.0.1:{outbound}"), needles);
    let before = app.requests();
    let with = failures(outbound, REQUESTS);
    let served = app.requests() - before;
    println!("{service}: {with}/{REQUESTS} requests failed with it; the backend served {served}");
    assert_eq!(with, 0, "{with}/{REQUESTS} failed with the retry policy");
    // Once a try fails and its retry succeeds, the next request's first try is again a
    // second one: every request now fails once and is retried once.
    assert!((98..=101).contains(&served), "{served} requests reached the backend: expected two tries per request");
}

fn old_style_retry_hides_a_backend_failing_every_second_request(mesh: &mut Mesh) {
    let retry = json!({
        "type": "Retry", "mesh": "default", "name": "web-to-flaky",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "flaky"}}],
        "conf": {"http": {"numRetries": 3, "retryOn": ["all_5xx"]}}
    });
    // Retry's policy is on the virtual host.
    retries_hide_every_second_failure(mesh, "flaky", retry, &["\"retry_on\":\"5xx\"", "\"num_retries\":3"]);
}

fn mesh_retry_hides_a_backend_failing_every_second_request(mesh: &mut Mesh) {
    let retry = json!({
        "type": "MeshRetry", "mesh": "default", "name": "web-to-flaky-mr",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": "flaky-mr"}, "default": {"http": {"numRetries": 4, "retryOn": ["5xx"]}}}]
        }
    });
    retries_hide_every_second_failure(mesh, "flaky-mr", retry, &["\"retry_on\":\"5xx\"", "\"num_retries\":4"]);
}

/// A 400 naming the field (Kuma's path) and the bad value, and nothing stored.
fn bad_policies_are_refused_naming_the_field_and_not_stored(mesh: &Mesh) {
    let cases = [
        (
            json!({"type": "MeshTimeout", "mesh": "default", "name": "bad-timeout", "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"requestTimeout": "soon"}}}]
            }}),
            "spec.to[0].default.http.requestTimeout",
            "soon",
        ),
        (
            json!({"type": "MeshRetry", "mesh": "default", "name": "bad-retry", "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "Mesh"}, "default": {"http": {"retryOn": ["5XX"]}}}]
            }}),
            "spec.to[0].default.conf.http.retryOn[0]",
            "5XX",
        ),
        (
            json!({"type": "Retry", "mesh": "default", "name": "bad-old-retry",
                "sources": [{"match": {"kuma.io/service": "web"}}],
                "destinations": [{"match": {"kuma.io/service": "flaky"}}],
                "conf": {"http": {"numRetries": 0}}}),
            "conf.http.numRetries",
            "greater than 0",
        ),
    ];
    for (policy, field, text) in cases {
        let (status, body) = mesh.try_put(&policy);
        assert_eq!(status, 400, "{body}");
        let named = body["invalid_parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|p| p["field"] == field && p["reason"].as_str().is_some_and(|r| r.contains(text)));
        assert!(named, "no violation at {field} mentioning {text:?}: {body}");
        let path = common::mesh::path_of(&policy);
        let (status, body) = call("GET", &mesh.cp.url(&path), None);
        assert_eq!(status, 404, "{path} was stored: {body}");
    }
}
