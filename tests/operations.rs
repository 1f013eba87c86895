//! Operating higuma: the diagnostics server (health, readiness, metrics, CPU profiles),
//! SIGHUP reloads, and SIGTERM.

mod common;

use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::ads::{grpc_env, Envoy};
use common::{call, free_port, get_text, wait_until, Daemon};
use higuma::daemon::Daemon as InProcess;
use higuma::model::{rest, ResourceKey};
use serde_json::json;

fn dataplane(name: &str, service: &str, port: u32, outbound: Option<&str>) -> serde_json::Value {
    let mut dp = json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {"address": "127.0.0.1",
            "inbound": [{"port": port, "servicePort": port + 1000, "tags": {"kuma.io/service": service}}]}
    });
    if let Some(svc) = outbound {
        dp["networking"]["outbound"] = json!([{"port": 30000, "tags": {"kuma.io/service": svc}}]);
    }
    dp
}

fn apply(d: &InProcess, value: serde_json::Value) {
    let env = rest::from_json(value).unwrap();
    let key = ResourceKey::new(env.rtype, env.mesh.clone().unwrap_or_default(), &env.name);
    match d.store.get(&key) {
        Ok(cur) => drop(d.store.update(&key, env.spec, cur.meta.version).unwrap()),
        Err(_) => drop(d.store.create(env.mesh.as_deref().unwrap_or(""), &env.name, env.spec).unwrap()),
    }
}

fn get_bytes(url: &str) -> (u16, Vec<u8>) {
    let mut r = common::agent().get(url).call().unwrap();
    let status = r.status().as_u16();
    let mut bytes = Vec::new();
    r.body_mut().as_reader().read_to_end(&mut bytes).unwrap();
    (status, bytes)
}

#[test]
fn health_readiness_and_metrics() {
    let d = Daemon::start(&[]);
    assert_eq!(get_text(&d.diag_url("/healthy")).as_deref(), Some("OK\n"));
    assert_eq!(get_text(&d.diag_url("/ready")).as_deref(), Some("OK\n"));
    let (status, _) = call("GET", &d.url("/meshes/default"), None);
    assert_eq!(status, 200);
    let metrics = get_text(&d.diag_url("/metrics")).unwrap();
    for name in [
        "cp_info{",
        "xds_streams_active",
        "xds_generation_total{",
        "xds_generation_bucket",
        "xds_delivery_bucket",
        "xds_responses_sent{",
        "store_cache{",
        "store_bucket{",
        "reconciler_queue_depth",
        "reconciler_worker_busy_seconds_total",
    ] {
        assert!(metrics.contains(name), "/metrics lacks {name}:\n{metrics}");
    }
    // The store histogram saw the default-mesh creation and the GET above.
    assert!(metrics.contains(r#"store_count{operation="get",resource_type="Mesh"}"#), "{metrics}");
}

#[test]
fn debug_endpoints_are_off_by_default() {
    let d = Daemon::start(&[]);
    let (status, _) = get_bytes(&d.diag_url("/debug/pprof/profile?seconds=1"));
    assert_eq!(status, 404);
    let (status, _) = get_bytes(&d.diag_url("/debug/pprof/flamegraph?seconds=1"));
    assert_eq!(status, 404);
    assert!(!d.log_text().contains("debug endpoints are on"));
}

#[test]
fn debug_endpoints_validate_and_serialize_requests() {
    let d = Daemon::start(&[("KUMA_DIAGNOSTICS_DEBUG_ENDPOINTS", "true")]);
    assert!(d.log_text().contains("debug endpoints are on"), "startup warning missing:\n{}", d.log_text());
    for bad in ["0", "301", "abc", "-1"] {
        let (status, body) = get_bytes(&d.diag_url(&format!("/debug/pprof/profile?seconds={bad}")));
        assert_eq!(status, 400, "seconds={bad}");
        assert!(String::from_utf8_lossy(&body).contains("seconds"), "{}", String::from_utf8_lossy(&body));
    }
    let url = d.diag_url("/debug/pprof/flamegraph?seconds=2");
    let first = std::thread::spawn(move || get_bytes(&url));
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = get_bytes(&d.diag_url("/debug/pprof/profile?seconds=1"));
    assert_eq!(status, 409, "a second profile while one runs");
    let (status, svg) = first.join().unwrap();
    assert_eq!(status, 200);
    assert!(String::from_utf8_lossy(&svg).contains("<svg"), "not an SVG: {}", String::from_utf8_lossy(&svg));
}

#[test]
fn cpu_profile_shows_the_reconciler_at_work() {
    let mut config = common::test_config(50);
    config.diagnostics.debug_endpoints = true;
    let d = InProcess::start(config).unwrap();
    for i in 0..40u32 {
        apply(&d, dataplane(&format!("web-{i}"), "web", 20000 + i, Some("backend")));
    }
    apply(&d, dataplane("backend-1", "backend", 9000, None));
    let env = grpc_env();
    let mut envoys: Vec<Envoy> =
        (0..40).map(|i| common::ads::connect_to(&d, &env, &format!("default.web-{i}"))).collect();
    for e in envoys.iter_mut() {
        e.converge(&["backend"]);
    }
    let url = format!("http://{}/debug/pprof/profile?seconds=3", d.diagnostics_addr().unwrap());
    let profiler = std::thread::spawn(move || get_bytes(&url));
    // Keep the reconciler busy: every change of backend-1 regenerates and pushes to 40 Envoys.
    let until = Instant::now() + Duration::from_millis(3300);
    let mut port = 9000;
    while Instant::now() < until {
        port = if port == 9000 { 9001 } else { 9000 };
        apply(&d, dataplane("backend-1", "backend", port, None));
        for e in envoys.iter_mut() {
            while let Some(r) = e.recv(Duration::from_millis(1)) {
                e.ack(&r, &["backend"]);
            }
        }
    }
    let (status, gz) = profiler.join().unwrap();
    assert_eq!(status, 200);
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut raw).expect("gzip");
    let profile =
        <pprof::protos::Profile as pprof::protos::Message>::parse_from_bytes(&raw).expect("pprof profile.proto");
    assert!(!profile.sample.is_empty(), "no samples");
    let ours: Vec<&String> =
        profile.string_table.iter().filter(|s| s.contains("higuma::reconcile") || s.contains("higuma::xds")).collect();
    assert!(!ours.is_empty(), "no higuma functions among {} strings", profile.string_table.len());
    drop(envoys);
    d.shutdown();
}

fn write_config(path: &std::path::Path, refresh: &str, extra: &str) {
    std::fs::write(
        path,
        format!("xdsServer:\n  dataplaneConfigurationRefreshInterval: {refresh}\nstore:\n  cache:\n    expirationTime: 100ms\n{extra}"),
    )
    .unwrap();
}

/// Refresh-interval sweeps so far: the interval's pace, observed from outside.
fn sweeps(d: &Daemon) -> u64 {
    let m = get_text(&d.diag_url("/metrics")).unwrap_or_default();
    m.lines()
        .find(|l| l.starts_with("reconciler_interval_sweeps_total "))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn sighup_reloads_live_settings_and_keeps_streams() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("higuma.yaml");
    write_config(&file, "30s", "");
    let (api, xds) = (free_port(), free_port());
    let d = Daemon::start_with(api, xds, &["-c", file.to_str().unwrap()], &[]);
    let (s, _) = call(
        "PUT",
        &d.url("/meshes/default/dataplanes/web-1"),
        Some(&dataplane("web-1", "web", 8080, None).to_string()),
    );
    assert_eq!(s, 201);
    let env = grpc_env();
    let mut envoy = Envoy::connect_with(&env, &d.access("default.web-1"), "default.web-1");
    envoy.converge(&[]);
    let (_, before) = call("GET", &d.url("/config"), None);
    assert_eq!(before["xdsServer"]["dataplaneConfigurationRefreshInterval"], "30s");
    // 30 s interval: no periodic sweep in a second.
    let s0 = sweeps(&d);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(sweeps(&d) <= s0 + 1);

    write_config(&file, "100ms", "defaults:\n  skipMeshCreation: true\n");
    d.signal("HUP");
    wait_until("the new interval in /config", Duration::from_secs(5), || {
        call("GET", &d.url("/config"), None).1["xdsServer"]["dataplaneConfigurationRefreshInterval"] == "100ms"
    });
    let (_, after) = call("GET", &d.url("/config"), None);
    assert_eq!(after["defaults"]["skipMeshCreation"], false, "a start-up setting waits for a restart");
    assert!(d.log_text().contains("defaults.skipMeshCreation changed but needs a restart"), "{}", d.log_text());
    // 100 ms interval: about ten sweeps a second.
    let s1 = sweeps(&d);
    std::thread::sleep(Duration::from_millis(1000));
    assert!(sweeps(&d) >= s1 + 5, "the new interval is in force");
    // The stream survived: a change still reaches the same scripted Envoy.
    let (s, _) = call(
        "PUT",
        &d.url("/meshes/default/dataplanes/web-1"),
        Some(&dataplane("web-1", "web", 8081, None).to_string()),
    );
    assert_eq!(s, 200);
    let r = envoy.recv(Duration::from_secs(5)).expect("config still delivered on the old stream");
    assert!(!r.version_info.is_empty());

    // An invalid file changes nothing.
    std::fs::write(&file, "xdsServer:\n  dataplaneConfigurationRefreshInterval: 0s\n").unwrap();
    d.signal("HUP");
    wait_until("the rejection in the log", Duration::from_secs(5), || d.log_text().contains("reload rejected"));
    std::fs::write(&file, "xdsServer: [not, a, mapping\n").unwrap();
    d.signal("HUP");
    wait_until("the second rejection", Duration::from_secs(5), || d.log_text().matches("reload rejected").count() >= 2);
    let (_, still) = call("GET", &d.url("/config"), None);
    assert_eq!(still["xdsServer"]["dataplaneConfigurationRefreshInterval"], "100ms");
}

#[test]
fn sigterm_exits_zero_and_closes_streams() {
    let mut d = Daemon::start(&[]);
    let (s, _) = call(
        "PUT",
        &d.url("/meshes/default/dataplanes/web-1"),
        Some(&dataplane("web-1", "web", 8080, None).to_string()),
    );
    assert_eq!(s, 201);
    let env = grpc_env();
    let mut envoy = Envoy::connect_with(&env, &d.access("default.web-1"), "default.web-1");
    envoy.converge(&[]);
    let started = Instant::now();
    let status = d.terminate();
    assert!(status.success(), "{status}; log:\n{}", d.log_text());
    assert!(started.elapsed() < Duration::from_secs(20));
    let log = d.log_text();
    assert!(log.contains("dataplane default.web-1 disconnected"), "{log}");
    assert!(log.contains("higuma stopped"), "{log}");
    let _ = Arc::new(());
}
