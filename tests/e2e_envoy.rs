//! End to end with real Envoys: `higuma run`, two HTTP applications, dataplanes started with
//! `higuma dp run`, and traffic from web's outbound through both sidecars to backend.

mod common;

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{call, envoy_bin, free_port, get_text, higuma_bin, responders, sidecar, wait_until, App, Daemon};
use serde_json::json;

fn dataplane(name: &str, service: &str, inbound: u16, service_port: u16, outbound: Option<u16>) -> serde_json::Value {
    let mut dp = json!({
        "type": "Dataplane", "mesh": "default", "name": name,
        "networking": {
            "address": "127.0.0.1",
            "inbound": [{"port": inbound, "servicePort": service_port,
                         "tags": {"kuma.io/service": service, "kuma.io/protocol": "http"}}]
        }
    });
    if let Some(port) = outbound {
        dp["networking"]["outbound"] = json!([{"port": port, "tags": {"kuma.io/service": "backend"}}]);
    }
    dp
}

fn put_dataplane(cp: &Daemon, dp: &serde_json::Value) {
    let name = dp["name"].as_str().unwrap();
    let (status, body) = call("PUT", &cp.url(&format!("/meshes/default/dataplanes/{name}")), Some(&dp.to_string()));
    assert!(status == 200 || status == 201, "{status} {body}");
}

fn stat(admin: u16, name: &str) -> Option<u64> {
    let stats = get_text(&format!("http://127.0.0.1:{admin}/stats?filter={name}"))?;
    stats.lines().find_map(|l| l.strip_prefix(&format!("{name}: ")).and_then(|v| v.trim().parse().ok()))
}

/// The restart below comes back on the in-memory store, which forgets the mesh's token
/// signing key: Envoy's token could not be valid for the new instance, so this test (about
/// Envoy keeping and regaining its config) runs without tokens. TLS stays on, with the work
/// directory kept across the restart so the certificate Envoy trusts is the same; tokens
/// across restarts are the Postgres store's job (tests/postgres_e2e.rs).
fn restartable(work: &std::path::Path) -> [(&'static str, String); 2] {
    [("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE", "none".to_string()), ("KUMA_GENERAL_WORK_DIR", work.display().to_string())]
}

#[test]
fn traffic_flows_through_two_envoys_and_follows_changes() {
    let dir = tempfile::tempdir().unwrap();
    let (api_port, xds_port) = (free_port(), free_port());
    let env = restartable(&dir.path().join("work"));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let mut cp = Daemon::start_on(api_port, xds_port, &env);

    let backend_1 = App::start("backend-1");
    let backend_2 = App::start("backend-2");
    let (web_in, web_app, outbound) = (free_port(), free_port(), free_port());
    let (b1_in, b2_in) = (free_port(), free_port());
    let web = dataplane("web", "web", web_in, web_app, Some(outbound));
    let b1 = dataplane("backend-1", "backend", b1_in, backend_1.port, None);
    let b2 = dataplane("backend-2", "backend", b2_in, backend_2.port, None);
    put_dataplane(&cp, &web);
    put_dataplane(&cp, &b1);
    let web_envoy = sidecar(&cp, dir.path(), "web");
    let _b1_envoy = sidecar(&cp, dir.path(), "backend-1");
    let url = format!("http://127.0.0.1:{outbound}/");

    // web's outbound -> web's Envoy -> backend-1's Envoy (inbound) -> backend-1.
    wait_until("traffic through both Envoys", Duration::from_secs(30), || {
        get_text(&url).as_deref() == Some("backend-1")
    });
    assert_eq!(stat(web_envoy.admin, "listener_manager.lds.update_rejected"), Some(0));
    assert_eq!(stat(web_envoy.admin, "cluster_manager.cds.update_rejected"), Some(0));
    assert!(stat(web_envoy.admin, "listener_manager.lds.update_success").unwrap_or(0) >= 1);

    // A second instance: traffic spreads to it.
    put_dataplane(&cp, &b2);
    let _b2_envoy = sidecar(&cp, dir.path(), "backend-2");
    wait_until("traffic spread over both instances", Duration::from_secs(30), || {
        responders(&url, 20) == BTreeSet::from(["backend-1".to_string(), "backend-2".to_string()])
    });

    // Deleting one moves all traffic to the other within 2 s.
    let (status, _) = call("DELETE", &cp.url("/meshes/default/dataplanes/backend-1"), None);
    assert_eq!(status, 200);
    let deleted = Instant::now();
    wait_until("traffic only to backend-2", Duration::from_secs(10), || {
        responders(&url, 10) == BTreeSet::from(["backend-2".to_string()])
    });
    assert!(deleted.elapsed() < Duration::from_secs(2), "took {:?}", deleted.elapsed());

    // The control plane goes away: Envoy keeps its config and traffic keeps flowing.
    assert!(cp.terminate().success());
    for _ in 0..3 {
        assert_eq!(responders(&url, 10), BTreeSet::from(["backend-2".to_string()]), "traffic while higuma is down");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(stat(web_envoy.admin, "listener_manager.lds.update_rejected"), Some(0));

    // It comes back (empty: the in-memory store); Envoy reconnects and is served again.
    let cp = Daemon::start_on(api_port, xds_port, &env);
    put_dataplane(&cp, &web);
    put_dataplane(&cp, &b2);
    put_dataplane(&cp, &b1);
    wait_until("web reconnected to the new instance", Duration::from_secs(30), || {
        let (_, b) = call("GET", &cp.url("/meshes/default/dataplanes+insights/web"), None);
        b["dataplaneInsight"]["subscriptions"].as_array().is_some_and(|subs| {
            subs.iter().any(|s| s["disconnectTime"].is_null() && s["status"]["total"]["responsesAcknowledged"] != "0")
        })
    });
    wait_until("traffic spread again after the restart", Duration::from_secs(30), || {
        responders(&url, 20) == BTreeSet::from(["backend-1".to_string(), "backend-2".to_string()])
    });
    assert_eq!(stat(web_envoy.admin, "listener_manager.lds.update_rejected"), Some(0));
    assert_eq!(stat(web_envoy.admin, "cluster_manager.cds.update_rejected"), Some(0));
}

#[test]
fn dp_bootstrap_writes_an_envoy_bootstrap() {
    let cp = Daemon::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let dp_file = dir.path().join("dp.yaml");
    std::fs::write(
        &dp_file,
        "type: Dataplane\nmesh: default\nname: web-1\nnetworking:\n  address: 127.0.0.1\n  inbound:\n    - port: 18080\n      servicePort: 8080\n      tags:\n        kuma.io/service: web\n",
    )
    .unwrap();
    let out_file = dir.path().join("bootstrap.yaml");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, cp.token("default", "web-1")).unwrap();
    let out = Command::new(higuma_bin())
        .args(["dp", "bootstrap", "--mesh", "default", "--name", "web-1", "--cp-address", &cp.dp_address()])
        .args(["--api-address", &cp.cp_address(), "--ca-cert-file"])
        .arg(&cp.ca_file)
        .arg("--token-file")
        .arg(&token_file)
        .args(["--admin-port", "19901", "--dataplane-file"])
        .arg(&dp_file)
        .arg("-o")
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bootstrap: serde_json::Value = serde_yaml_ng::from_str(&std::fs::read_to_string(&out_file).unwrap()).unwrap();
    assert_eq!(bootstrap["node"]["id"], "default.web-1");
    assert_eq!(bootstrap["admin"]["address"]["socket_address"]["port_value"], 19901);
    let cluster = &bootstrap["static_resources"]["clusters"][0];
    let ads = &cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0];
    assert_eq!(ads["endpoint"]["address"]["socket_address"]["port_value"], cp.xds_port);
    // TLS to the control plane, trusting its CA for the address dialled, and the token.
    let tls = &cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"];
    assert_eq!(
        tls["trusted_ca"]["inline_string"].as_str(),
        Some(std::fs::read_to_string(&cp.ca_file).unwrap().as_str())
    );
    assert_eq!(tls["match_typed_subject_alt_names"][0]["matcher"]["exact"], "127.0.0.1");
    let md = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"][0];
    assert_eq!(md["value"].as_str(), Some(std::fs::read_to_string(&token_file).unwrap().as_str()));
    // The Dataplane was registered from the file.
    let (status, _) = call("GET", &cp.url("/meshes/default/dataplanes/web-1"), None);
    assert_eq!(status, 200);
    // Envoy accepts the file.
    let check = Command::new(envoy_bin())
        .args(["--mode", "validate", "--disable-hot-restart", "-c"])
        .arg(&out_file)
        .output()
        .unwrap();
    assert!(check.status.success(), "{}", String::from_utf8_lossy(&check.stderr));
    // Unknown dataplane: a clear 404.
    std::fs::write(&token_file, cp.token("default", "ghost")).unwrap();
    let out = Command::new(higuma_bin())
        .args(["dp", "bootstrap", "--mesh", "default", "--name", "ghost", "--cp-address", &cp.dp_address()])
        .arg("--ca-cert-file")
        .arg(&cp.ca_file)
        .arg("--token-file")
        .arg(&token_file)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"), "{}", String::from_utf8_lossy(&out.stderr));
}
