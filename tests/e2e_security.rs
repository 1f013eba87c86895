//! The DP server's security with real Envoys: sidecars bootstrapped with the CA and a token
//! are served over TLS, a certificate rotated on disk keeps every Envoy's stream and is
//! what new connections get, and a sidecar whose token is revoked loses its stream and
//! cannot get it back. One control plane (with the operator's own certificate, from a test
//! CA that can issue a replacement) and its sidecars are shared by the cases, in order.

mod common;

use std::time::Duration;

use base64::Engine;
use common::app::{get, HttpApp};
use common::free_port;
use common::mesh::{dataplane, stat, Mesh};
use common::tls::{served_serial, TestCa};
use serde_json::json;

#[test]
fn sidecars_are_served_only_with_tls_and_valid_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let (cert, key, ca_file) = (dir.path().join("dp.crt"), dir.path().join("dp.key"), dir.path().join("ca.crt"));
    let (pem, key_pem) = ca.issue(2);
    std::fs::write(&cert, pem).unwrap();
    std::fs::write(&key, key_pem).unwrap();
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let (cert_s, key_s) = (cert.display().to_string(), key.display().to_string());
    let mut mesh = Mesh::start(&[
        ("KUMA_DP_SERVER_TLS_CERT_FILE", cert_s.as_str()),
        ("KUMA_DP_SERVER_TLS_KEY_FILE", key_s.as_str()),
    ]);
    mesh.cp.ca_file = ca_file;

    let mut apps = Vec::new();
    let outbound = secure_sidecars_carry_traffic(&mut mesh, &mut apps);
    a_rotated_certificate_keeps_streams_and_serves_new_connections(&mut mesh, &mut apps, &ca, &cert, &key, outbound);
    a_revoked_sidecar_loses_its_stream(&mut mesh, &mut apps);
}

/// `higuma dp run --ca-cert-file --token-file`: TLS verified against the CA, the token on
/// the stream; traffic goes web → sec-backend through both Envoys.
fn secure_sidecars_carry_traffic(mesh: &mut Mesh, apps: &mut Vec<HttpApp>) -> u16 {
    let app = HttpApp::start("sec-backend-1");
    mesh.sidecar(&dataplane("sec-backend-1", "sec-backend", "http", free_port(), app.port, &[], &[]));
    let outbound = mesh.outbound_to("sec-backend");
    common::wait_until("traffic to sec-backend", Duration::from_secs(30), || {
        get(outbound, "/").app() == Some("sec-backend-1")
    });
    let admin = mesh.client_admin();
    assert_eq!(stat(admin, "control_plane.connected_state"), Some(1));
    assert!(stat(admin, "cluster.ads_cluster.ssl.handshake").unwrap_or(0) >= 1, "the ADS connection is TLS");
    apps.push(app);
    outbound
}

/// New certificate files (same CA, new serial): new connections get it within seconds;
/// web's Envoy keeps its one ADS connection and still receives config (a second backend
/// instance, started after the rotation, is reached through it).
fn a_rotated_certificate_keeps_streams_and_serves_new_connections(
    mesh: &mut Mesh,
    apps: &mut Vec<HttpApp>,
    ca: &TestCa,
    cert: &std::path::Path,
    key: &std::path::Path,
    outbound: u16,
) {
    let admin = mesh.client_admin();
    let ca_pem = ca.pem();
    assert_eq!(served_serial(mesh.cp.xds_port, &ca_pem), 2);
    let connections = stat(admin, "cluster.ads_cluster.upstream_cx_total");
    assert_eq!(connections, Some(1), "web's Envoy holds one ADS connection");
    let (pem, key_pem) = ca.issue(3);
    std::fs::write(key, key_pem).unwrap();
    std::fs::write(cert, pem).unwrap();
    common::wait_until("the new certificate served", Duration::from_secs(10), || {
        served_serial(mesh.cp.xds_port, &ca_pem) == 3
    });
    assert!(mesh.cp.metric("dp_server_certificate_reloads_total{result=\"loaded\"}") >= 1);

    let app = HttpApp::start("sec-backend-2");
    mesh.sidecar(&dataplane("sec-backend-2", "sec-backend", "http", free_port(), app.port, &[], &[]));
    common::wait_until("traffic to both instances", Duration::from_secs(30), || {
        let seen: std::collections::BTreeSet<String> =
            (0..20).filter_map(|_| get(outbound, "/").app().map(str::to_string)).collect();
        seen.len() == 2
    });
    assert_eq!(stat(admin, "cluster.ads_cluster.upstream_cx_total"), connections, "web's ADS connection was replaced");
    assert_eq!(stat(admin, "control_plane.connected_state"), Some(1));
    apps.push(app);
}

/// Revoking a sidecar's token (Kuma's revocation Secret): at its next request the stream
/// is closed, and its reconnects are refused; the control plane counts the refusals.
fn a_revoked_sidecar_loses_its_stream(mesh: &mut Mesh, apps: &mut Vec<HttpApp>) {
    let app = HttpApp::start("sec-rev-1");
    let port = free_port();
    let dp = dataplane("sec-rev-1", "sec-rev", "http", port, app.port, &[], &[]);
    let admin = mesh.sidecar(&dp);
    common::wait_until("sec-rev-1 connected", Duration::from_secs(20), || {
        stat(admin, "control_plane.connected_state") == Some(1)
    });
    let token = std::fs::read_to_string(mesh.dir.path().join("sec-rev-1.token")).unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let denied_before = mesh.cp.metric("xds_auth_denied_total{code=\"UNAUTHENTICATED\"}");
    mesh.put(&json!({
        "type": "Secret", "mesh": "default", "name": "dataplane-token-revocations-default",
        "data": base64::engine::general_purpose::STANDARD.encode(claims["jti"].as_str().unwrap())
    }));
    // A config change makes Envoy answer (an ACK): that request meets the revocation.
    let mut changed = dp.clone();
    changed["networking"]["inbound"][0]["port"] = json!(free_port());
    mesh.put(&changed);
    common::wait_until("sec-rev-1 disconnected", Duration::from_secs(20), || {
        stat(admin, "control_plane.connected_state") == Some(0)
    });
    // Envoy retries; every attempt is refused.
    common::wait_until("a refused reconnect", Duration::from_secs(20), || {
        mesh.cp.metric("xds_auth_denied_total{code=\"UNAUTHENTICATED\"}") > denied_before + 1
    });
    assert_eq!(stat(admin, "control_plane.connected_state"), Some(0));
    apps.push(app);
}
