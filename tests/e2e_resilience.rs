//! Health checks and circuit breakers, both policy generations, proven by real traffic
//! through real Envoys: one control plane, the shared client sidecar `web`, and per case two
//! instances of a service of its own behind their own sidecars, one of them misbehaving.
//! Each case first shows the misbehaving instance still gets traffic without the policy,
//! then that with it all traffic lands on the good one.

mod common;

use std::time::Duration;

use common::app::{get, HttpApp};
use common::mesh::{dataplane, healthy_hosts, stat, wait_for_config, Mesh};
use common::{call, free_port, get_text, wait_until};
use serde_json::{json, Value};

#[test]
fn health_checks_and_circuit_breakers_steer_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    invalid_policies_are_400_naming_the_field_and_store_nothing(&mesh);
    old_health_check_takes_an_unhealthy_instance_out(&mut mesh);
    mesh_health_check_takes_an_unhealthy_instance_out(&mut mesh);
    old_circuit_breaker_ejects_an_instance_answering_503(&mut mesh);
    mesh_circuit_breaker_ejects_an_instance_answering_503(&mut mesh);
}

/// Short enough that a case takes seconds: checks every second, one failure is enough.
const FAST_CHECK: &str = r#"{"interval": "1s", "timeout": "1s", "unhealthyThreshold": 1, "healthyThreshold": 1,
    "noTrafficInterval": "1s", "http": {"path": "/health"}}"#;

/// Every PUT is refused with 400 naming Kuma's field path, and nothing is stored.
fn invalid_policies_are_400_naming_the_field_and_store_nothing(mesh: &Mesh) {
    let cases = [
        (
            json!({"type": "HealthCheck", "mesh": "default", "name": "bad-hc",
                "sources": [{"match": {"kuma.io/service": "web"}}], "destinations": [{"match": {"kuma.io/service": "x"}}],
                "conf": {"interval": "1s", "timeout": "1s", "unhealthyThreshold": 1, "healthyThreshold": 1, "http": {"path": ""}}}),
            "conf.http.path",
        ),
        (
            json!({"type": "CircuitBreaker", "mesh": "default", "name": "bad-cb",
                "sources": [{"match": {"kuma.io/service": "web"}}], "destinations": [{"match": {"kuma.io/service": "x"}}],
                "conf": {"detectors": {"failure": {"threshold": 120}}}}),
            "conf.detectors.failure.threshold",
        ),
        (
            json!({"type": "MeshHealthCheck", "mesh": "default", "name": "bad-mhc",
                "spec": {"to": [{"targetRef": {"kind": "Mesh"}, "default": {"interval": "0s", "tcp": {}}}]}}),
            "spec.to[0].default.interval",
        ),
        (
            json!({"type": "MeshCircuitBreaker", "mesh": "default", "name": "bad-mcb",
                "spec": {"from": [{"targetRef": {"kind": "Mesh"},
                    "default": {"outlierDetection": {"detectors": {"totalFailures": {"consecutive": 0}}}}}]}}),
            "spec.from[0].default.outlierDetection.detectors.totalFailures.consecutive",
        ),
        (
            json!({"type": "MeshCircuitBreaker", "mesh": "default", "name": "bad-mcb-kind",
                "spec": {"to": [{"targetRef": {"kind": "MeshServiceSubset", "name": "x", "tags": {"v": "1"}},
                    "default": {"connectionLimits": {"maxConnections": 1}}}]}}),
            "spec.to[0].targetRef.kind",
        ),
    ];
    for (resource, field) in cases {
        let (status, body) = mesh.try_put(&resource);
        assert_eq!(status, 400, "{resource}: {body}");
        assert_eq!(body["status"], 400, "{body}");
        let fields: Vec<&str> = body["invalid_parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("no invalid_parameters in {body}"))
            .iter()
            .filter_map(|p| p["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "expected {field} in {body}");
        let (status, _) = call("GET", &mesh.cp.url(&common::mesh::path_of(&resource)), None);
        assert_eq!(status, 404, "{} was stored", resource["name"]);
    }
}

/// Two instances of `service` behind their own sidecars; returns the apps and the client's
/// outbound port once both answer through it.
fn two_instances(mesh: &mut Mesh, service: &str) -> (HttpApp, HttpApp, u16) {
    let (good, bad) = (HttpApp::start(&format!("{service}-1")), HttpApp::start(&format!("{service}-2")));
    for (n, app) in [(1, &good), (2, &bad)] {
        mesh.sidecar(&dataplane(&format!("{service}-{n}"), service, "http", free_port(), app.port, &[], &[]));
    }
    let outbound = mesh.outbound_to(service);
    wait_until(&format!("both {service} instances answering"), Duration::from_secs(30), || {
        answering(outbound, 10).len() == 2
    });
    (good, bad, outbound)
}

/// The apps that answered `n` requests with 200.
fn answering(outbound: u16, n: usize) -> std::collections::BTreeSet<String> {
    (0..n).map(|_| get(outbound, "/")).filter(|r| r.status == 200).filter_map(|r| r.app().map(str::to_string)).collect()
}

/// Client `web`'s cluster `name` from Envoy's config dump.
fn cluster(dump: &Value, name: &str) -> Option<Value> {
    dump["configs"]
        .as_array()?
        .iter()
        .flat_map(|c| c["dynamic_active_clusters"].as_array().into_iter().flatten())
        .map(|c| &c["cluster"])
        .find(|c| c["name"] == name)
        .cloned()
}

/// Envoy's health flags of every host of `cluster` (`/clusters` text), e.g. `healthy` or
/// `/failed_active_hc`.
fn health_flags(admin: u16, cluster: &str) -> Vec<String> {
    let text = get_text(&format!("http://127.0.0.1:{admin}/clusters")).unwrap_or_default();
    text.lines()
        .filter(|l| l.starts_with(&format!("{cluster}::")) && l.contains("::health_flags::"))
        .filter_map(|l| l.rsplit("::").next().map(str::to_string))
        .collect()
}

/// `n` requests in a row, all answered 200 by `app`.
fn all_answered_by(outbound: u16, app: &str, n: usize) {
    for i in 0..n {
        let r = get(outbound, "/");
        assert_eq!((r.status, r.app()), (200, Some(app)), "request {i}: {}", r.body);
    }
}

/// The instance answering 503 on `/health` keeps getting traffic until an active
/// HealthCheck (old-style) on `/health` marks it unhealthy; then only the healthy one does.
fn old_health_check_takes_an_unhealthy_instance_out(mesh: &mut Mesh) {
    let service = "hc-old";
    let (good, bad, outbound) = two_instances(mesh, service);
    bad.set(|b| b.health_status = 503);
    assert_eq!(answering(outbound, 10).len(), 2, "without a health check both instances get traffic");

    let conf: Value = serde_json::from_str(FAST_CHECK).unwrap();
    mesh.put(&json!({
        "type": "HealthCheck", "mesh": "default", "name": "hc-old",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": service}}],
        "conf": conf
    }));
    takes_the_unhealthy_one_out(mesh, service, &good, &bad, outbound);
}

/// The same with a MeshHealthCheck.
fn mesh_health_check_takes_an_unhealthy_instance_out(mesh: &mut Mesh) {
    let service = "hc-new";
    let (good, bad, outbound) = two_instances(mesh, service);
    bad.set(|b| b.health_status = 503);
    assert_eq!(answering(outbound, 10).len(), 2, "without a health check both instances get traffic");

    let conf: Value = serde_json::from_str(FAST_CHECK).unwrap();
    mesh.put(&json!({
        "type": "MeshHealthCheck", "mesh": "default", "name": "hc-new",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service}, "default": conf}]
        }
    }));
    takes_the_unhealthy_one_out(mesh, service, &good, &bad, outbound);
}

fn takes_the_unhealthy_one_out(mesh: &Mesh, service: &str, good: &HttpApp, bad: &HttpApp, outbound: u16) {
    let admin = mesh.client_admin();
    wait_for_config(admin, &format!("a /health check on {service}"), |d| {
        cluster(d, service).is_some_and(|c| c["health_checks"][0]["http_health_check"]["path"] == "/health")
    });
    wait_until(&format!("{service}-2 marked unhealthy"), Duration::from_secs(20), || {
        let flags = health_flags(admin, service);
        flags.len() == 2 && flags.iter().filter(|f| f.contains("failed_active_hc")).count() == 1
    });
    assert_eq!(healthy_hosts(admin, service), 1);
    assert!(bad.health_checks() > 0 && good.health_checks() > 0, "both instances were checked");
    all_answered_by(outbound, &format!("{service}-1"), 20);
}

/// Outlier detection ejects the instance answering 503 after `consecutive` 5xx in a row,
/// for the rest of the case (`baseEjectionTime` 60 s).
const CONSECUTIVE: u64 = 3;

/// Without a CircuitBreaker the instance answering 503 keeps getting its share; with one
/// (consecutive 5xx) it is ejected after a few failures and the good one takes everything.
fn old_circuit_breaker_ejects_an_instance_answering_503(mesh: &mut Mesh) {
    let service = "cb-old";
    let (good, bad, outbound) = two_instances(mesh, service);
    keeps_its_share_without_a_circuit_breaker(&bad, outbound);
    mesh.put(&json!({
        "type": "CircuitBreaker", "mesh": "default", "name": "cb-old",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": service}}],
        "conf": {"interval": "1s", "baseEjectionTime": "60s", "maxEjectionPercent": 50,
                 "detectors": {"totalErrors": {"consecutive": CONSECUTIVE}}}
    }));
    ejects_the_failing_one(mesh, service, &good, &bad, outbound);
}

/// The same with a MeshCircuitBreaker.
fn mesh_circuit_breaker_ejects_an_instance_answering_503(mesh: &mut Mesh) {
    let service = "cb-new";
    let (good, bad, outbound) = two_instances(mesh, service);
    keeps_its_share_without_a_circuit_breaker(&bad, outbound);
    mesh.put(&json!({
        "type": "MeshCircuitBreaker", "mesh": "default", "name": "cb-new",
        "spec": {
            "targetRef": {"kind": "MeshService", "name": "web"},
            "to": [{"targetRef": {"kind": "MeshService", "name": service}, "default": {"outlierDetection": {
                "interval": "1s", "baseEjectionTime": "60s", "maxEjectionPercent": 50,
                "detectors": {"totalFailures": {"consecutive": CONSECUTIVE}}
            }}}]
        }
    }));
    ejects_the_failing_one(mesh, service, &good, &bad, outbound);
}

/// With `bad` answering 503 and no policy, round robin keeps sending it about half the
/// requests.
fn keeps_its_share_without_a_circuit_breaker(bad: &HttpApp, outbound: u16) {
    bad.set(|b| b.status = 503);
    let failures = (0..10).filter(|_| get(outbound, "/").status == 503).count();
    assert!(failures >= 3, "only {failures} of 10 requests reached the failing instance");
}

fn ejects_the_failing_one(mesh: &Mesh, service: &str, good: &HttpApp, bad: &HttpApp, outbound: u16) {
    let admin = mesh.client_admin();
    wait_for_config(admin, &format!("outlier detection on {service}"), |d| {
        cluster(d, service).is_some_and(|c| c["outlier_detection"]["consecutive_5xx"] == CONSECUTIVE)
    });
    let ejections = format!("cluster.{service}.outlier_detection.ejections_enforced_consecutive_5xx");
    assert_eq!(stat(admin, &ejections).unwrap_or(0), 0);
    let before = bad.requests();
    // Until ejected, the failing instance answers its share with 503s.
    let mut failures = 0;
    for _ in 0..40 {
        if get(outbound, "/").status == 503 {
            failures += 1;
        }
        if stat(admin, &ejections).unwrap_or(0) >= 1 {
            break;
        }
    }
    assert!(failures >= CONSECUTIVE, "only {failures} failures seen before the ejection");
    assert_eq!(stat(admin, &ejections), Some(1), "{service}-2 was not ejected after {failures} failures");
    // Envoy's workers report to the detector asynchronously: a request or two may still
    // have reached the failing instance after its third failure.
    assert!(failures <= CONSECUTIVE + 2, "{failures} failures before the ejection");
    let served = bad.requests();
    all_answered_by(outbound, &format!("{service}-1"), 20);
    assert_eq!(bad.requests(), served, "the ejected instance got traffic");
    assert!(served > before && good.requests() > 0);
}
