//! Permissions proven by real traffic through real Envoys, in a mesh with mTLS on: an
//! allowing permission lets web through to a backend; taking web out of it (TrafficPermission)
//! or denying web (MeshTrafficPermission `from`, and its `rules` form) makes web's traffic
//! fail while another permitted source still passes. The backend's sidecar counts the
//! denials in its RBAC stats, so a failure is the permission, not TLS.
//!
//! One control plane, the client sidecar `web` and one more client per case are shared; each
//! case has services of its own. The TCP cases send first and wait for the echo: the network
//! RBAC filter decides on the first byte from the client (Kuma's default enforcement), and
//! every TCP connection through web's outbound is a new connection to the backend's inbound,
//! so each attempt meets the permissions in force. The HTTP case denies before it allows,
//! since Envoy pools HTTP connections and keeps an allowed one open.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::app::{get, HttpApp, TcpApp};
use common::mesh::{dataplane, dump_contains, stat, wait_for_config, Mesh};
use common::{free_port, wait_until};
use serde_json::{json, Value};

#[test]
fn permissions_decide_who_reaches_a_service() {
    let mut mesh = Mesh::start(&[]);
    mesh.put(&json!({
        "type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"],
        "mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]}
    }));
    // Kuma 2.6+: mTLS on and no permission denies everything; the operator is told.
    wait_until("the missing-permission warning", Duration::from_secs(5), || {
        std::fs::read_to_string(&mesh.cp.log)
            .unwrap_or_default()
            .contains("has mTLS enabled and no MeshTrafficPermission")
    });
    traffic_permission_without_web_stops_web_only(&mut mesh);
    mesh_traffic_permission_deny_for_web_stops_web_only(&mut mesh);
    mesh_traffic_permission_rules_deny_web_and_shadow_deny_another(&mut mesh);
}

/// A client sidecar besides the fixture's `web`.
struct Client {
    dp: Value,
    admin: u16,
}

impl Client {
    fn start(mesh: &mut Mesh, service: &str) -> Client {
        let dp = dataplane(&format!("{service}-1"), service, "http", free_port(), free_port(), &[], &[]);
        let admin = mesh.sidecar(&dp);
        Client { dp, admin }
    }

    fn outbound_to(&mut self, mesh: &Mesh, service: &str) -> u16 {
        let port = free_port();
        self.dp["networking"]["outbound"]
            .as_array_mut()
            .expect("outbounds")
            .push(json!({"port": port, "tags": {"kuma.io/service": service}}));
        mesh.put(&self.dp);
        let listener = format!("outbound:127.0.0.1:{port}");
        wait_for_config(self.admin, &format!("an outbound to {service}"), |d| dump_contains(d, &listener));
        port
    }
}

/// A backend `service` behind its own sidecar: (sidecar admin port, inbound port).
fn sidecar_for(mesh: &mut Mesh, service: &str, protocol: &str, app_port: u16) -> (u16, u16) {
    let inbound = free_port();
    let admin = mesh.sidecar(&dataplane(&format!("{service}-1"), service, protocol, inbound, app_port, &[], &[]));
    (admin, inbound)
}

/// Whether a TCP connection through `port` carries data both ways: the client speaks first,
/// the app greets and echoes (a denied connection is closed on the client's first byte).
fn echoes(port: u16) -> bool {
    let Ok(mut conn) = TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    if conn.write_all(b"permitted?\n").is_err() {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline {
        match conn.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
        if String::from_utf8_lossy(&got).contains("permitted?") {
            return true;
        }
    }
    false
}

/// The backend sidecar's RBAC counter `what` (`allowed`, `denied`, `shadow_denied`) for
/// its inbound on `inbound`.
fn rbac_stat(admin: u16, inbound: u16, what: &str) -> u64 {
    stat(admin, &format!("inbound_127_0_0_1_{inbound}.rbac.{what}")).unwrap_or(0)
}

/// Waits until the backend's inbound listener has an RBAC filter mentioning `needle`.
fn wait_for_rbac(admin: u16, needle: &str) {
    wait_for_config(admin, &format!("an RBAC filter with {needle}"), |d| {
        dump_contains(d, "envoy.filters.network.rbac") && dump_contains(d, needle)
    });
}

fn assert_denied(port: u16, admin: u16, inbound: u16, who: &str) {
    let before = rbac_stat(admin, inbound, "denied");
    for attempt in 1..=3 {
        assert!(!echoes(port), "{who}'s connection {attempt} got through");
    }
    wait_until(&format!("{who}'s denials counted"), Duration::from_secs(5), || {
        rbac_stat(admin, inbound, "denied") >= before + 3
    });
}

/// TrafficPermission from every service to tp-backend: web and tp-other both get through.
/// The same permission with only tp-other as source: web's connections are refused, tp-other's
/// still pass.
fn traffic_permission_without_web_stops_web_only(mesh: &mut Mesh) {
    let app = TcpApp::start("tp-backend-1");
    let (admin, inbound) = sidecar_for(mesh, "tp-backend", "tcp", app.port);
    let mut other = Client::start(mesh, "tp-other");
    let tp = |sources: Value| {
        json!({"type": "TrafficPermission", "mesh": "default", "name": "tp-backend-clients",
               "sources": sources, "destinations": [{"match": {"kuma.io/service": "tp-backend"}}]})
    };
    mesh.put(&tp(json!([{"match": {"kuma.io/service": "*"}}])));
    wait_for_rbac(admin, "tp-backend-clients");
    let web = mesh.outbound_to("tp-backend");
    let from_other = other.outbound_to(mesh, "tp-backend");
    wait_until("web reaching tp-backend", Duration::from_secs(30), || echoes(web));
    wait_until("tp-other reaching tp-backend", Duration::from_secs(30), || echoes(from_other));

    mesh.put(&tp(json!([{"match": {"kuma.io/service": "tp-other"}}])));
    wait_for_rbac(admin, "spiffe://default/tp-other");
    assert_denied(web, admin, inbound, "web");
    for attempt in 1..=3 {
        assert!(echoes(from_other), "tp-other's connection {attempt} was refused");
    }
}

/// MeshTrafficPermission on mtp-backend from the whole mesh: both clients get through. A
/// `from` entry denying web (more specific than Mesh): web is refused, mtp-other passes.
fn mesh_traffic_permission_deny_for_web_stops_web_only(mesh: &mut Mesh) {
    let app = TcpApp::start("mtp-backend-1");
    let (admin, inbound) = sidecar_for(mesh, "mtp-backend", "tcp", app.port);
    let mut other = Client::start(mesh, "mtp-other");
    let mtp = |from: Value| {
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "mtp-backend-clients",
               "spec": {"targetRef": {"kind": "MeshService", "name": "mtp-backend"}, "from": from}})
    };
    let allow_all = json!({"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}});
    mesh.put(&mtp(json!([allow_all])));
    wait_for_rbac(admin, "MeshTrafficPermission");
    let web = mesh.outbound_to("mtp-backend");
    let from_other = other.outbound_to(mesh, "mtp-backend");
    wait_until("web reaching mtp-backend", Duration::from_secs(30), || echoes(web));
    wait_until("mtp-other reaching mtp-backend", Duration::from_secs(30), || echoes(from_other));

    let deny_web = json!({"targetRef": {"kind": "MeshService", "name": "web"}, "default": {"action": "Deny"}});
    mesh.put(&mtp(json!([allow_all, deny_web])));
    // Everyone but web: the negated subset of web.
    wait_for_rbac(admin, "not_id");
    assert_denied(web, admin, inbound, "web");
    for attempt in 1..=3 {
        assert!(echoes(from_other), "mtp-other's connection {attempt} was refused");
    }
}

/// The `rules` form on an HTTP backend: a deny of web's SPIFFE id wins over an allow of the
/// whole trust domain (web gets 503s, the backend app sees none of them), `mtpr-other` is
/// allowed with a shadow deny (served, and counted as a shadow denial). Dropping the deny
/// lets web in.
fn mesh_traffic_permission_rules_deny_web_and_shadow_deny_another(mesh: &mut Mesh) {
    let app = HttpApp::start("mtpr-backend-1");
    let (admin, inbound) = sidecar_for(mesh, "mtpr-backend", "http", app.port);
    let mut other = Client::start(mesh, "mtpr-other");
    let rules = |deny: Value| {
        json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "mtpr-backend-clients",
               "spec": {"targetRef": {"kind": "MeshService", "name": "mtpr-backend"},
                        "rules": [{"default": {
                            "deny": deny,
                            "allowWithShadowDeny": [{"spiffeID": {"type": "Exact", "value": "spiffe://default/mtpr-other"}}],
                            "allow": [{"spiffeID": {"type": "Prefix", "value": "spiffe://default/"}}]}}]}})
    };
    mesh.put(&rules(json!([{"spiffeID": {"type": "Exact", "value": "spiffe://default/web"}}])));
    wait_for_rbac(admin, "spiffe://default/web");
    // Counted per connection, and mtpr-other's Envoy pools its first one: read before it.
    let shadow_before = rbac_stat(admin, inbound, "shadow_denied");
    let web = mesh.outbound_to("mtpr-backend");
    let from_other = other.outbound_to(mesh, "mtpr-backend");
    wait_until("mtpr-other reaching mtpr-backend", Duration::from_secs(30), || get(from_other, "/").status == 200);
    let served_before = app.requests();
    let denied_before = rbac_stat(admin, inbound, "denied");
    for attempt in 1..=3 {
        let r = get(web, "/");
        assert_eq!(r.status, 503, "web's request {attempt}: {}", r.body);
    }
    assert_eq!(app.requests(), served_before, "a denied request reached the app");
    assert!(rbac_stat(admin, inbound, "denied") > denied_before, "the denials were RBAC's");
    for attempt in 1..=3 {
        assert_eq!(get(from_other, "/").status, 200, "mtpr-other's request {attempt}");
    }
    assert!(rbac_stat(admin, inbound, "shadow_denied") > shadow_before, "mtpr-other's shadow denial not counted");

    mesh.put(&rules(json!([])));
    wait_until("web reaching mtpr-backend once not denied", Duration::from_secs(30), || get(web, "/").status == 200);
}
