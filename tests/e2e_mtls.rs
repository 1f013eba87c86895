//! Mesh mTLS proven by real traffic through real Envoys: a builtin CA, workload
//! certificates over SDS, PERMISSIVE then STRICT inbounds, rotation under steady traffic,
//! and a CA shared by two control planes on one database. One control plane, the client
//! sidecar `web` and the backends are shared by the cases, which run in order.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::app::{get, HttpApp};
use common::mesh::{config_dump, dataplane, Mesh};
use common::{call, free_port, get_text, wait_until};
use serde_json::{json, Value};

#[test]
fn mesh_mtls_secures_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    // With mTLS on, Kuma 2.6+ denies what no permission allows: these cases are about TLS,
    // so everything is allowed (permissions have their own e2e test).
    mesh.put(&json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all", "spec": {
        "targetRef": {"kind": "Mesh"},
        "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]
    }}));
    let backend = Backend::start(&mut mesh, "backend");
    turning_mtls_on_through_permissive_fails_no_request(&mesh, &backend);
    strict_mtls_presents_the_spiffe_certificate_and_refuses_plaintext(&mesh, &backend);
    certificates_rotate_under_steady_traffic(&mesh, &backend);
    bad_mtls_input_is_refused_naming_the_field(&mesh);
    a_ca_in_postgres_is_the_one_a_second_instance_serves();
}

struct Backend {
    _app: HttpApp,
    admin: u16,
    /// The backend sidecar's inbound port (what a client outside the mesh would dial).
    inbound: u16,
    /// web's outbound port to it.
    outbound: u16,
}

impl Backend {
    fn start(mesh: &mut Mesh, service: &str) -> Backend {
        let name = format!("{service}-1");
        let app = HttpApp::start(&name);
        let inbound = free_port();
        let admin = mesh.sidecar(&dataplane(&name, service, "http", inbound, app.port, &[], &[]));
        let outbound = mesh.outbound_to(service);
        wait_until(&format!("traffic to {service}"), Duration::from_secs(30), || get(outbound, "/").status == 200);
        Backend { _app: app, admin, inbound, outbound }
    }
}

fn mesh_with_mtls(mode: &str, expiration: Option<&str>) -> Value {
    let mut backend = json!({"name": "ca-1", "type": "builtin", "mode": mode});
    if let Some(e) = expiration {
        backend["dpCert"] = json!({"rotation": {"expiration": e}});
    }
    json!({"type": "Mesh", "name": "default", "skipCreatingInitialPolicies": ["*"],
        "mtls": {"enabledBackend": "ca-1", "backends": [backend]}})
}

/// Requests through `port` on a thread until stopped: (sent, failed).
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Load {
        let (stop, sent, failed) =
            (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let (s, n, f) = (stop.clone(), sent.clone(), failed.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let r = get(port, "/");
                n.fetch_add(1, Ordering::Relaxed);
                if r.status != 200 {
                    f.fetch_add(1, Ordering::Relaxed);
                    eprintln!("load: a request failed: {} {}", r.status, r.body);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Load { stop, sent, failed, thread: Some(thread) }
    }

    fn finish(mut self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        (self.sent.load(Ordering::Relaxed), self.failed.load(Ordering::Relaxed))
    }
}

/// A dynamic active cluster or listener of Envoy `admin` named `name`, as JSON text.
fn dynamic_text(admin: u16, section: &str, name: &str) -> String {
    let dump = config_dump(admin);
    dump["configs"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c[section].as_array().into_iter().flatten().cloned())
        .filter(|e| {
            let n = if section == "dynamic_active_clusters" { &e["cluster"]["name"] } else { &e["name"] };
            n == name
        })
        .map(|e| e.to_string())
        .collect()
}

fn inbound_name(b: &Backend) -> String {
    format!("inbound:127.0.0.1:{}", b.inbound)
}

/// Sum of the `ssl.handshake` counters of Envoy `admin`'s listeners.
fn listener_handshakes(admin: u16) -> u64 {
    let stats = get_text(&format!("http://127.0.0.1:{admin}/stats?filter=ssl.handshake")).unwrap_or_default();
    stats
        .lines()
        .filter(|l| l.starts_with("listener.") && l.contains(".ssl.handshake: "))
        .filter_map(|l| l.rsplit(": ").next().and_then(|v| v.trim().parse::<u64>().ok()))
        .sum()
}

/// The serial numbers and URI SANs of the certificates Envoy `admin` presents (`/certs`).
fn presented(admin: u16) -> (Vec<String>, Vec<String>) {
    let certs: Value = get_text(&format!("http://127.0.0.1:{admin}/certs"))
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let chain = certs["certificates"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["cert_chain"].as_array().into_iter().flatten());
    let mut serials = Vec::new();
    let mut uris = Vec::new();
    for c in chain {
        serials.extend(c["serial_number"].as_str().map(str::to_string));
        uris.extend(
            c["subject_alt_names"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| s["uri"].as_str().map(str::to_string)),
        );
    }
    (serials, uris)
}

/// Off → PERMISSIVE → STRICT on a live mesh while web sends requests to the backend: the
/// backend accepts both while PERMISSIVE, web switches to TLS once the backend's Envoy took
/// its certificate, and STRICT then changes nothing web relies on. No request fails.
fn turning_mtls_on_through_permissive_fails_no_request(mesh: &Mesh, b: &Backend) {
    let load = Load::start(b.outbound);
    std::thread::sleep(Duration::from_millis(500));
    mesh.put(&mesh_with_mtls("PERMISSIVE", None));
    let inbound = inbound_name(b);
    wait_until("a PERMISSIVE inbound (TLS inspector)", Duration::from_secs(20), || {
        dynamic_text(b.admin, "dynamic_listeners", &inbound).contains("envoy.filters.listener.tls_inspector")
    });
    // A client outside the mesh still gets in while PERMISSIVE.
    assert_eq!(get(b.inbound, "/").status, 200, "PERMISSIVE serves plaintext");
    wait_until("web speaking TLS to the backend", Duration::from_secs(20), || {
        let c = dynamic_text(mesh.client_admin(), "dynamic_active_clusters", "backend");
        c.contains("envoy.transport_sockets.tls") && c.contains("spiffe://default/backend")
    });
    std::thread::sleep(Duration::from_millis(500));
    mesh.put(&mesh_with_mtls("STRICT", None));
    wait_until("a STRICT inbound", Duration::from_secs(20), || {
        let l = dynamic_text(b.admin, "dynamic_listeners", &inbound);
        l.contains("require_client_certificate") && !l.contains("tls_inspector")
    });
    std::thread::sleep(Duration::from_secs(1));
    let (sent, failed) = load.finish();
    println!("mtls on through PERMISSIVE: {failed}/{sent} requests failed");
    assert!(sent > 20, "the load ran ({sent} requests)");
    assert_eq!(failed, 0, "{failed}/{sent} requests failed while mTLS was turned on");
}

fn strict_mtls_presents_the_spiffe_certificate_and_refuses_plaintext(mesh: &Mesh, b: &Backend) {
    let before = listener_handshakes(b.admin);
    // A new client connection to web makes web open... its pooled upstream may be reused,
    // so handshakes are counted over the whole run: at least one happened under TLS.
    for _ in 0..5 {
        assert_eq!(get(b.outbound, "/").status, 200);
    }
    let handshakes = listener_handshakes(b.admin);
    assert!(handshakes >= 1 && handshakes >= before, "the backend's inbound completed TLS handshakes: {handshakes}");
    let (_, uris) = presented(b.admin);
    assert!(uris.iter().any(|u| u == "spiffe://default/backend"), "the backend presents its SPIFFE id: {uris:?}");
    assert!(uris.iter().any(|u| u == "kuma://kuma.io/service/backend"), "and Kuma's tag URIs: {uris:?}");
    // A plaintext client straight to the inbound gets no HTTP answer in STRICT.
    assert_eq!(get(b.inbound, "/").status, 0, "STRICT refuses plaintext");
    // The inspect API names the secrets it sent, and carries no key material.
    let (status, xds) = call("GET", &mesh.cp.url("/meshes/default/dataplanes/backend-1/xds"), None);
    assert_eq!(status, 200, "{xds}");
    let text = xds.to_string();
    assert!(text.contains("identity_cert:secret:default"), "{text}");
    for leak in ["PRIVATE KEY", "inlineBytes", "inline_bytes", "privateKey", "private_key"] {
        assert!(!text.contains(leak), "inspect shows {leak}");
    }
}

/// A 3 s certificate lifetime: re-issued every ~2.4 s while web sends requests; no request
/// fails, and the backend's Envoy presents new serials.
fn certificates_rotate_under_steady_traffic(mesh: &Mesh, b: &Backend) {
    mesh.put(&mesh_with_mtls("STRICT", Some("3s")));
    let load = Load::start(b.outbound);
    let mut serials = std::collections::BTreeSet::new();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        serials.extend(presented(b.admin).0);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (sent, failed) = load.finish();
    println!("rotation: {} serials seen, {failed}/{sent} requests failed", serials.len());
    assert!(serials.len() >= 3, "certificates rotated: {serials:?}");
    assert_eq!(failed, 0, "{failed}/{sent} requests failed during rotation");
    // The insight shows it.
    let (status, insight) = call("GET", &mesh.cp.url("/meshes/default/dataplanes+insights/backend-1"), None);
    assert_eq!(status, 200, "{insight}");
    let m = &insight["dataplaneInsight"]["mTLS"];
    assert_eq!(m["issuedBackend"], "ca-1", "{insight}");
    assert!(m["certificateRegenerations"].as_u64().unwrap_or(0) >= 2, "{insight}");
    mesh.put(&mesh_with_mtls("STRICT", None));
}

fn bad_mtls_input_is_refused_naming_the_field(mesh: &Mesh) {
    let (_, before) = call("GET", &mesh.cp.url("/meshes/default"), None);
    let cases = [
        (
            json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "p", "backends": [{"name": "p", "type": "provided",
                "conf": {"cert": {"inlineString": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n"}, "key": {"inlineString": "nope"}}}]}}),
            "mtls.backends[0].conf.cert",
        ),
        (
            json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "nope", "backends": [{"name": "ca-1", "type": "builtin"}]}}),
            "mtls.enabledBackend",
        ),
        (
            json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-2", "backends": [{"name": "ca-1", "type": "builtin"}, {"name": "ca-2", "type": "builtin"}]}}),
            "mtls.enabledBackend",
        ),
    ];
    for (body, field) in cases {
        let (status, reply) = mesh.try_put(&body);
        assert_eq!(status, 400, "{body}: {reply}");
        let fields: Vec<&str> =
            reply["invalid_parameters"].as_array().into_iter().flatten().filter_map(|p| p["field"].as_str()).collect();
        assert!(fields.contains(&field), "{field} in {reply}");
    }
    let (_, after) = call("GET", &mesh.cp.url("/meshes/default"), None);
    assert_eq!(before, after, "nothing was stored");
    // The CA's Secrets are in use: not deletable.
    let (status, reply) = call("DELETE", &mesh.cp.url("/meshes/default/secrets/default.ca-builtin-cert-ca-1"), None);
    assert_eq!(status, 400, "{reply}");
    assert!(reply.to_string().contains("is currently in use in Mesh"), "{reply}");
}

/// Two `higuma run` on one Postgres: the first creates the mesh and its CA; an Envoy served
/// by the second trusts exactly that CA (the second never makes one of its own).
fn a_ca_in_postgres_is_the_one_a_second_instance_serves() {
    let cfg = common::pg::fresh_database();
    higuma::store::postgres::migrate_up(&cfg).unwrap();
    let env = [
        ("KUMA_STORE_TYPE", "postgres".to_string()),
        ("KUMA_STORE_POSTGRES_HOST", cfg.host.clone()),
        ("KUMA_STORE_POSTGRES_PORT", cfg.port.to_string()),
        ("KUMA_STORE_POSTGRES_USER", cfg.user.clone()),
        ("KUMA_STORE_POSTGRES_PASSWORD", cfg.password.clone()),
        ("KUMA_STORE_POSTGRES_DB_NAME", cfg.db_name.clone()),
        ("KUMA_STORE_POSTGRES_TLS_MODE", "disable".to_string()),
        ("KUMA_DEFAULTS_SKIP_MESH_CREATION", "true".to_string()),
    ];
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let first = common::Daemon::start(&env);
    let second = common::Daemon::start(&env);
    let put = |cp: &common::Daemon, v: &Value| {
        let path = common::mesh::path_of(v);
        let (status, body) = call("PUT", &cp.url(&path), Some(&v.to_string()));
        assert!(status == 200 || status == 201, "PUT {path}: {status} {body}");
    };
    put(&first, &mesh_with_mtls("STRICT", None));
    let (status, secret) = call("GET", &first.url("/meshes/default/secrets/default.ca-builtin-cert-ca-1"), None);
    assert_eq!(status, 200, "{secret}");
    let ca_b64 = secret["data"].as_str().expect("the CA's data").to_string();
    let app = HttpApp::start("pg-backend-1");
    put(&second, &dataplane("pg-backend-1", "pg-backend", "http", free_port(), app.port, &[], &[]));
    let dir = tempfile::tempdir().unwrap();
    let sidecar = common::sidecar(&second, dir.path(), "pg-backend-1");
    wait_until("the second instance's Envoy has a trust bundle", Duration::from_secs(30), || {
        get_text(&format!("http://127.0.0.1:{}/config_dump?resource=dynamic_active_secrets", sidecar.admin))
            .is_some_and(|t| t.contains("mesh_ca:secret:default"))
    });
    let secrets =
        get_text(&format!("http://127.0.0.1:{}/config_dump?resource=dynamic_active_secrets", sidecar.admin)).unwrap();
    // Envoy shows inline bytes base64, as the API does.
    assert!(secrets.contains(&ca_b64), "the trust bundle is the CA the first instance stored:\n{secrets}");
    let (status, list) = call("GET", &second.url("/meshes/default/secrets"), None);
    assert_eq!(status, 200);
    let cas = list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["name"].as_str().is_some_and(|n| n.contains("ca-builtin-cert")))
        .count();
    assert_eq!(cas, 1, "one CA for the mesh: {list}");
}
