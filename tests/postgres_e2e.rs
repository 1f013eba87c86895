//! higuma processes on Postgres: migrations from the CLI, several instances sharing one
//! database, an outage with real Envoys carrying traffic, and status flushed on SIGTERM.
//! Each test runs its own cluster, because some of them stop the database.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::ads::{grpc_env, Envoy, EDS};
use common::cluster::Cluster;
use common::{call, free_port, get_text, higuma_bin, responders, sidecar, wait_until, App, Daemon};
use serde_json::json;

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn migrate(env: &[(String, String)]) -> std::process::Output {
    Command::new(higuma_bin()).args(["migrate", "up"]).envs(env.iter().cloned()).output().unwrap()
}

fn dataplane(name: &str, service: &str, inbound: u16, service_port: u16, outbound: Option<u16>) -> serde_json::Value {
    let mut dp = json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": "127.0.0.1",
            "inbound": [{"port": inbound, "servicePort": service_port,
                         "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}]}
    });
    if let Some(port) = outbound {
        dp["networking"]["outbound"] = json!([{"port": port, "tags": {"kuma.io/service": "backend"}}]);
    }
    dp
}

fn put(cp: &Daemon, dp: &serde_json::Value) -> u16 {
    let name = dp["name"].as_str().unwrap();
    call("PUT", &cp.url(&format!("/meshes/default/dataplanes/{name}")), Some(&dp.to_string())).0
}

#[test]
fn run_refuses_an_unmigrated_database_and_migrate_up_fixes_it() {
    let pg = Cluster::start();
    pg.create_database("higuma");
    let env = pg.env("higuma");
    let out = Command::new(higuma_bin()).arg("run").envs(env.iter().cloned()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("higuma migrate up"), "{err}");
    let out = migrate(&env);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("migrated"), "{}", String::from_utf8_lossy(&out.stdout));
    let out = migrate(&env);
    assert!(String::from_utf8_lossy(&out.stdout).contains("already been migrated"));
    let d = Daemon::start(&env_refs(&env));
    assert_eq!(call("GET", &d.url("/meshes/default"), None).0, 200);
}

#[test]
fn unreachable_database_at_start_is_a_clear_error() {
    let port = free_port();
    let started = Instant::now();
    let out = Command::new(higuma_bin())
        .arg("run")
        .env("KUMA_STORE_TYPE", "postgres")
        .env("KUMA_STORE_POSTGRES_PORT", port.to_string())
        .env("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "2")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")) && err.contains("timeout 2s"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(15));
}

#[test]
fn a_write_on_one_instance_reaches_envoys_of_another_within_a_second() {
    let pg = Cluster::start();
    pg.create_database("higuma");
    let env = pg.env("higuma");
    assert!(migrate(&env).status.success());
    let first = Daemon::start(&env_refs(&env));
    let second = Daemon::start(&env_refs(&env));
    assert_eq!(put(&first, &dataplane("web-1", "web", 8080, 9080, Some(10001))), 201);
    assert_eq!(put(&first, &dataplane("backend-1", "backend", 8081, 9081, None)), 201);
    let grpc = grpc_env();
    let mut envoy = Envoy::connect_with(&grpc, &first.access("default.web-1"), "default.web-1");
    envoy.converge(&["backend"]);
    let written = Instant::now();
    assert_eq!(put(&second, &dataplane("backend-2", "backend", 8082, 9082, None)), 201);
    let eds = envoy.expect(EDS);
    let took = written.elapsed();
    assert!(took < Duration::from_secs(1), "the change reached the other instance's Envoy after {took:?}");
    assert!(!eds.resources.is_empty());
}

#[test]
fn status_is_flushed_on_sigterm() {
    let pg = Cluster::start();
    pg.create_database("higuma");
    let mut env = pg.env("higuma");
    // Counters would otherwise wait an hour: only the final flush can write them.
    env.push(("KUMA_XDS_SERVER_DATAPLANE_STATUS_FLUSH_INTERVAL".into(), "1h".into()));
    assert!(migrate(&env).status.success());
    let mut d = Daemon::start(&env_refs(&env));
    assert_eq!(put(&d, &dataplane("web-1", "web", 8080, 9080, None)), 201);
    let grpc = grpc_env();
    let mut envoy = Envoy::connect_with(&grpc, &d.access("default.web-1"), "default.web-1");
    envoy.converge(&[]);
    // The client has sent its ACKs; wait until higuma has counted both (a fixed sleep was
    // too short on a loaded machine), so only the final flush stands between them and the row.
    wait_until("both ACKs counted", Duration::from_secs(10), || {
        let metrics = get_text(&d.diag_url("/metrics")).unwrap_or_default();
        let acks: f64 = metrics
            .lines()
            .filter(|l| l.starts_with("xds_requests_received") && l.contains("confirmation=\"ACK\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        acks >= 2.0
    });
    assert!(d.terminate().success(), "{}", d.log_text());
    let row = pg
        .admin("higuma")
        .query_one("SELECT spec FROM resources WHERE type = 'DataplaneInsight' AND name = 'web-1'", &[])
        .expect("the insight row");
    let spec: serde_json::Value = serde_json::from_str(&row.get::<_, String>(0)).unwrap();
    let sub = &spec["subscriptions"][0];
    assert!(sub["disconnectTime"].is_string(), "{spec}\n{}", d.log_text());
    assert_eq!(sub["status"]["total"]["responsesAcknowledged"], "2", "{spec}\n{}", d.log_text());
}

#[test]
fn a_postgres_outage_withdraws_nothing_and_higuma_recovers_by_itself() {
    let pg = Cluster::start();
    pg.create_database("higuma");
    let env = pg.env("higuma");
    assert!(migrate(&env).status.success());
    let cp = Daemon::start(&env_refs(&env));
    let dir = tempfile::tempdir().unwrap();
    let (b1, b2) = (App::start("backend-1"), App::start("backend-2"));
    let outbound = free_port();
    assert_eq!(put(&cp, &dataplane("web", "web", free_port(), free_port(), Some(outbound))), 201);
    assert_eq!(put(&cp, &dataplane("backend-1", "backend", free_port(), b1.port, None)), 201);
    let _web = sidecar(&cp, dir.path(), "web");
    let _e1 = sidecar(&cp, dir.path(), "backend-1");
    let url = format!("http://127.0.0.1:{outbound}/");
    wait_until("traffic through both Envoys", Duration::from_secs(30), || {
        get_text(&url).as_deref() == Some("backend-1")
    });
    assert_eq!(get_text(&cp.diag_url("/ready")).as_deref(), Some("OK\n"));

    pg.stop();
    // The API says the store is unavailable, /ready says not ready, Envoy keeps serving.
    wait_until("503 from the API", Duration::from_secs(15), || {
        call("GET", &cp.url("/meshes/default/dataplanes"), None).0 == 503
    });
    let (status, body) = call("GET", &cp.url("/meshes/default/dataplanes/web"), None);
    assert_eq!(status, 503, "{body}");
    assert!(body["detail"].as_str().unwrap_or("").contains("unavailable"), "{body}");
    let ready = common::agent().get(&cp.diag_url("/ready")).call().unwrap().status().as_u16();
    assert_eq!(ready, 503);
    for _ in 0..4 {
        assert_eq!(responders(&url, 5), BTreeSet::from(["backend-1".to_string()]), "traffic during the outage");
        std::thread::sleep(Duration::from_millis(500));
    }

    // Postgres returns; another writer (this test, as a second instance would) adds an
    // instance straight into the database before higuma has reconnected.
    pg.restart();
    let other = Daemon::start(&env_refs(&env));
    let b2_dp = dataplane("backend-2", "backend", free_port(), b2.port, None);
    assert_eq!(put(&other, &b2_dp), 201);
    let _e2 = sidecar(&other, dir.path(), "backend-2");
    wait_until("higuma ready again", Duration::from_secs(30), || {
        get_text(&cp.diag_url("/ready")).as_deref() == Some("OK\n")
    });
    wait_until("the change made meanwhile reaches web's Envoy", Duration::from_secs(30), || {
        responders(&url, 20) == BTreeSet::from(["backend-1".to_string(), "backend-2".to_string()])
    });
    assert_eq!(call("GET", &cp.url("/meshes/default/dataplanes/backend-2"), None).0, 200);
}
