//! Inbound policies and access logs proven by real traffic through real Envoys: rate limits
//! answer their status after the budget, faults abort only the requests of their sources,
//! access-log lines land in files and reach a TCP collector through the dataplane's pipe.
//! One control plane and the client sidecars are shared; each case has services of its own.
//!
//! A client never sends traffic to a backend before that backend's inbound policy is in
//! force: Envoy keeps serving pooled upstream connections on the filter chain they were
//! accepted on (until the listener drains them), so a warm-up request would leave a
//! connection that bypasses the new filters. Cases wait for the client's endpoints instead.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::app::{get, HttpApp, TcpApp};
use common::mesh::{dataplane, dump_contains, wait_for_config, Mesh};
use common::{call, free_port, get_text, wait_until};
use serde_json::{json, Value};

/// Envoy flushes file access logs every 10 s (`--file-flush-interval-msec`).
const LOG_FLUSH: Duration = Duration::from_secs(20);

#[test]
fn inbound_policies_and_access_logs_shape_real_traffic() {
    let mut mesh = Mesh::start(&[]);
    let collector = Collector::start();
    let mut probe = Client::start(&mut mesh, "probe-1", "probe");
    rate_limit_answers_its_status_after_the_budget(&mut mesh);
    mesh_rate_limit_limits_requests_and_connections(&mut mesh);
    fault_injection_aborts_only_the_requests_of_its_sources(&mut mesh, &mut probe);
    mesh_fault_injection_aborts_only_its_clients(&mut mesh, &mut probe);
    traffic_log_writes_kumas_default_line_to_a_file(&mut mesh, &collector);
    mesh_access_log_logs_inbound_requests_to_a_file(&mut mesh);
    tcp_backends_deliver_lines_to_a_collector(&mut mesh, &collector);
    bad_policies_are_refused_naming_the_field(&mesh);
}

/// A client sidecar besides the fixture's `web`, gaining outbounds as cases need them.
struct Client {
    dp: Value,
    admin: u16,
}

impl Client {
    fn start(mesh: &mut Mesh, name: &str, service: &str) -> Client {
        let dp = dataplane(name, service, "http", free_port(), free_port(), &[], &[]);
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

/// An HTTP app behind its own sidecar.
struct Backend {
    app: HttpApp,
    /// The sidecar's Envoy admin port.
    admin: u16,
    /// The sidecar's inbound port: the endpoint clients reach.
    inbound: u16,
}

fn http_backend(mesh: &mut Mesh, name: &str, service: &str) -> Backend {
    let app = HttpApp::start(name);
    let inbound = free_port();
    let admin = mesh.sidecar(&dataplane(name, service, "http", inbound, app.port, &[], &[]));
    Backend { app, admin, inbound }
}

/// Waits until the client Envoy `admin` knows endpoint `port`, without sending traffic.
fn wait_for_endpoint(admin: u16, port: u16) {
    let needle = format!("\"port_value\":{port}");
    wait_for_config(admin, &format!("endpoint {port}"), |d| dump_contains(d, &needle));
}

fn until_ok(port: u16, what: &str) {
    wait_until(what, Duration::from_secs(30), || get(port, "/").status == 200);
}

/// RateLimit 5 requests per 10 s from web: five answers, then the sixth gets the configured
/// 423 and header; another service behind another sidecar keeps answering.
fn rate_limit_answers_its_status_after_the_budget(mesh: &mut Mesh) {
    let backend = http_backend(mesh, "rl-backend-1", "rl-backend");
    let _other = http_backend(mesh, "rl-other-1", "rl-other");
    let limited = mesh.outbound_to("rl-backend");
    let other = mesh.outbound_to("rl-other");
    wait_for_endpoint(mesh.client_admin(), backend.inbound);
    until_ok(other, "traffic to rl-other");

    mesh.put(&json!({
        "type": "RateLimit", "mesh": "default", "name": "rl-backend-5-per-10s",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "rl-backend"}}],
        "conf": {"http": {"requests": 5, "interval": "10s", "onRateLimit": {
            "status": 423, "headers": [{"key": "x-rate-limited", "value": "true"}]}}}
    }));
    wait_for_config(backend.admin, "rl-backend's per-route rate limit", |d| dump_contains(d, "x-rate-limited"));
    for n in 1..=5 {
        let r = get(limited, "/");
        assert_eq!(r.status, 200, "request {n} within the budget: {}", r.body);
    }
    let r = get(limited, "/");
    assert_eq!(r.status, 423, "the sixth request: {}", r.body);
    assert_eq!(r.headers.get("x-rate-limited").map(String::as_str), Some("true"), "{:?}", r.headers);
    for n in 1..=8 {
        assert_eq!(get(other, "/").status, 200, "request {n} to an unlimited service");
    }
}

/// MeshRateLimit on one HTTP service (3 requests per 10 s, Envoy's 429) and on one TCP
/// service (1 connection per 10 s: the second connection is closed before the app greets).
fn mesh_rate_limit_limits_requests_and_connections(mesh: &mut Mesh) {
    let backend = http_backend(mesh, "mrl-backend-1", "mrl-backend");
    let tcp_app = TcpApp::start("mrl-tcp-1");
    let tcp_admin = mesh.sidecar(&dataplane("mrl-tcp-1", "mrl-tcp", "tcp", free_port(), tcp_app.port, &[], &[]));
    let http = mesh.outbound_to("mrl-backend");
    let tcp = mesh.outbound_to("mrl-tcp");
    wait_for_endpoint(mesh.client_admin(), backend.inbound);
    // Every greeting is a new connection, so a warm-up leaves nothing behind.
    wait_until("a greeting from mrl-tcp", Duration::from_secs(30), || greeting(tcp).as_deref() == Some("mrl-tcp-1"));

    for (name, service, local) in [
        (
            "mrl-http",
            "mrl-backend",
            json!({"http": {"requestRate": {"num": 3, "interval": "10s"},
            "onRateLimit": {"headers": {"set": [{"name": "x-kuma-rate-limited", "value": "true"}]}}}}),
        ),
        ("mrl-tcp", "mrl-tcp", json!({"tcp": {"connectionRate": {"num": 1, "interval": "10s"}}})),
    ] {
        mesh.put(&json!({
            "type": "MeshRateLimit", "mesh": "default", "name": name,
            "spec": {"targetRef": {"kind": "MeshService", "name": service},
                "from": [{"targetRef": {"kind": "Mesh"}, "default": {"local": local}}]}
        }));
    }
    wait_for_config(backend.admin, "mrl-backend's request limit", |d| dump_contains(d, "x-kuma-rate-limited"));
    wait_for_config(tcp_admin, "mrl-tcp's connection limit", |d| dump_contains(d, "tcp_rate_limit"));

    for n in 1..=3 {
        assert_eq!(get(http, "/").status, 200, "request {n} within the budget");
    }
    let r = get(http, "/");
    assert_eq!(r.status, 429, "{}", r.body);
    assert_eq!(r.headers.get("x-kuma-rate-limited").map(String::as_str), Some("true"), "{:?}", r.headers);

    assert_eq!(greeting(tcp).as_deref(), Some("mrl-tcp-1"), "the first connection of the interval");
    let connections = tcp_app.connections();
    assert_eq!(greeting(tcp), None, "the second connection must be closed by the limit");
    assert_eq!(tcp_app.connections(), connections, "the limited connection reached the app");
    let limited = rate_limited_connections(tcp_admin);
    assert!(limited >= 1, "Envoy counted {limited} rate-limited connections");
}

/// The first line a TCP app sends through `port`, if it sends one within 2 s.
fn greeting(port: u16) -> Option<String> {
    let mut conn = TcpStream::connect(("127.0.0.1", port)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let mut buf = [0u8; 64];
    let n = conn.read(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf[..n]).to_string();
    text.lines().next().filter(|l| !l.is_empty()).map(str::to_string)
}

/// Envoy's counter of connections the network local rate limit closed.
fn rate_limited_connections(admin: u16) -> u64 {
    let stats = get_text(&format!("http://127.0.0.1:{admin}/stats?filter=tcp_rate_limit")).unwrap_or_default();
    stats
        .lines()
        .filter(|l| l.contains("rate_limited:"))
        .filter_map(|l| l.rsplit(": ").next()?.trim().parse::<u64>().ok())
        .sum()
}

/// FaultInjection aborting every request from web with 418: web's requests never reach the
/// app, probe's do (and arrive without x-kuma-tags).
fn fault_injection_aborts_only_the_requests_of_its_sources(mesh: &mut Mesh, probe: &mut Client) {
    let backend = http_backend(mesh, "fi-backend-1", "fi-backend");
    let from_web = mesh.outbound_to("fi-backend");
    let from_probe = probe.outbound_to(mesh, "fi-backend");
    wait_for_endpoint(mesh.client_admin(), backend.inbound);
    until_ok(from_probe, "traffic from probe to fi-backend");

    mesh.put(&json!({
        "type": "FaultInjection", "mesh": "default", "name": "fi-backend-abort-web",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "fi-backend", "kuma.io/protocol": "http"}}],
        "conf": {"abort": {"percentage": 100, "httpStatus": 418}}
    }));
    wait_for_config(backend.admin, "fi-backend's fault filter", |d| dump_contains(d, "envoy.filters.http.fault"));
    let before = backend.app.requests();
    for _ in 0..3 {
        let r = get(from_web, "/");
        assert_eq!(r.status, 418, "{}", r.body);
    }
    assert_eq!(backend.app.requests(), before, "aborted requests reached the app");
    let r = get(from_probe, "/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.app(), Some("fi-backend-1"));
    let headers = r.json().map(|j| j["headers"].clone()).unwrap_or(Value::Null);
    assert!(
        headers.is_object() && headers.get("x-kuma-tags").is_none(),
        "the inbound must strip x-kuma-tags: {headers}"
    );
}

/// MeshFaultInjection from MeshService web: web's requests abort with 409, probe's pass.
fn mesh_fault_injection_aborts_only_its_clients(mesh: &mut Mesh, probe: &mut Client) {
    let backend = http_backend(mesh, "mfi-backend-1", "mfi-backend");
    let from_web = mesh.outbound_to("mfi-backend");
    let from_probe = probe.outbound_to(mesh, "mfi-backend");
    wait_for_endpoint(mesh.client_admin(), backend.inbound);
    wait_for_endpoint(probe.admin, backend.inbound);

    mesh.put(&json!({
        "type": "MeshFaultInjection", "mesh": "default", "name": "mfi-backend-abort-web",
        "spec": {"targetRef": {"kind": "MeshService", "name": "mfi-backend"},
            "from": [{"targetRef": {"kind": "MeshService", "name": "web"},
                "default": {"http": [{"abort": {"httpStatus": 409, "percentage": 100}}]}}]}
    }));
    wait_for_config(backend.admin, "mfi-backend's fault filter", |d| dump_contains(d, "envoy.filters.http.fault"));
    let r = get(from_web, "/");
    assert_eq!(r.status, 409, "{}", r.body);
    let r = get(from_probe, "/");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.app(), Some("mfi-backend-1"));
}

/// The lines of `path` once one contains every needle (Envoy flushes at intervals).
fn wait_for_line(path: &std::path::Path, needles: &[&str]) -> String {
    let mut found = String::new();
    wait_until(&format!("a line with {needles:?} in {}", path.display()), LOG_FLUSH, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        match text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            Some(l) => {
                found = l.to_string();
                true
            }
            None => false,
        }
    });
    found
}

/// The Mesh with the logging backends of the TrafficLog cases: a file (the default) and the
/// test's TCP collector.
fn mesh_with_logging(mesh: &Mesh, file: &std::path::Path, collector: &Collector) {
    let (status, mut current) = call("GET", &mesh.cp.url("/meshes/default"), None);
    assert_eq!(status, 200, "{current}");
    current["logging"] = json!({
        "defaultBackend": "file",
        "backends": [
            {"name": "file", "type": "file", "conf": {"path": file.display().to_string()}},
            {"name": "collector", "type": "tcp", "conf": {"address": collector.address}}
        ]
    });
    mesh.put(&current);
}

/// TrafficLog from web to tl-backend with the mesh's default file backend: the line in
/// Kuma's default HTTP format names the mesh, the path, the status and both services.
fn traffic_log_writes_kumas_default_line_to_a_file(mesh: &mut Mesh, collector: &Collector) {
    let _backend = http_backend(mesh, "tl-backend-1", "tl-backend");
    let port = mesh.outbound_to("tl-backend");
    // The logger sits on web's outbound, where every request is a new connection.
    until_ok(port, "traffic to tl-backend");
    let log = mesh.dir.path().join("traffic.log");
    mesh_with_logging(mesh, &log, collector);
    mesh.put(&json!({
        "type": "TrafficLog", "mesh": "default", "name": "web-to-tl-backend",
        "sources": [{"match": {"kuma.io/service": "web"}}],
        "destinations": [{"match": {"kuma.io/service": "tl-backend"}}]
    }));
    let path = log.display().to_string();
    wait_for_config(mesh.client_admin(), "web's access log to a file", |d| dump_contains(d, &path));
    assert_eq!(get(port, "/tl-file-path").status, 200);
    let line = wait_for_line(&log, &["/tl-file-path"]);
    for field in ["] default \"GET /tl-file-path HTTP/1.1\" 200", "\"web\" \"tl-backend\" \"127.0.0.1\""] {
        assert!(line.contains(field), "{field:?} not in {line:?}");
    }
}

/// MeshAccessLog from every client of mal-backend, to a file in a plain format with Kuma's
/// variables: the inbound side does not know its caller (`unknown`).
fn mesh_access_log_logs_inbound_requests_to_a_file(mesh: &mut Mesh) {
    let backend = http_backend(mesh, "mal-backend-1", "mal-backend");
    let port = mesh.outbound_to("mal-backend");
    wait_for_endpoint(mesh.client_admin(), backend.inbound);
    let log = mesh.dir.path().join("mal-backend.log");
    mesh.put(&json!({
        "type": "MeshAccessLog", "mesh": "default", "name": "mal-backend-inbound",
        "spec": {"targetRef": {"kind": "MeshService", "name": "mal-backend"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"backends": [{"file": {
                "path": log.display().to_string(),
                "format": {"plain": "%KUMA_TRAFFIC_DIRECTION% %KUMA_SOURCE_SERVICE%->%KUMA_DESTINATION_SERVICE% %REQ(:PATH)% %RESPONSE_CODE%"}
            }}]}}]}
    }));
    let path = log.display().to_string();
    wait_for_config(backend.admin, "mal-backend's inbound access log", |d| dump_contains(d, &path));
    assert_eq!(get(port, "/mal-file-path").status, 200);
    let line = wait_for_line(&log, &["/mal-file-path"]);
    assert_eq!(line, "INBOUND unknown->mal-backend /mal-file-path 200");
}

/// A TCP collector: every line any connection sends.
struct Collector {
    address: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        // Detached: the accept loop ends with the test process.
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    for line in BufReader::new(conn).lines().map_while(Result::ok) {
                        sink.lock().unwrap().push(line);
                    }
                });
            }
        });
        Collector { address, lines }
    }

    fn wait_for(&self, needles: &[&str]) -> String {
        let mut found = String::new();
        wait_until(&format!("a collected line with {needles:?}"), LOG_FLUSH, || {
            let lines = self.lines.lock().unwrap();
            match lines.iter().find(|l| needles.iter().all(|n| l.contains(n))) {
                Some(l) => {
                    found = l.clone();
                    true
                }
                None => false,
            }
        });
        found
    }
}

/// Both tcp backends through the dataplanes' pipes: TrafficLog's `<address>;<line>` from the
/// client's outbound and MeshAccessLog's JSON from the backend's inbound reach the
/// collector as plain lines. Dataplane names carry the process id: the pipe's path is
/// derived from the name, and other test runs on this host may run sidecars too.
fn tcp_backends_deliver_lines_to_a_collector(mesh: &mut Mesh, collector: &Collector) {
    let pid = std::process::id();
    let backend_name = format!("tcplog-backend-{pid}");
    let backend = http_backend(mesh, &backend_name, "tcplog-backend");
    let mut client = Client::start(mesh, &format!("tcplog-client-{pid}"), "tcplog-client");
    let port = client.outbound_to(mesh, "tcplog-backend");
    wait_for_endpoint(client.admin, backend.inbound);

    mesh.put(&json!({
        "type": "TrafficLog", "mesh": "default", "name": "tcplog-client-to-collector",
        "sources": [{"match": {"kuma.io/service": "tcplog-client"}}],
        "destinations": [{"match": {"kuma.io/service": "tcplog-backend"}}],
        "conf": {"backend": "collector"}
    }));
    mesh.put(&json!({
        "type": "MeshAccessLog", "mesh": "default", "name": "tcplog-backend-to-collector",
        "spec": {"targetRef": {"kind": "MeshService", "name": "tcplog-backend"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"backends": [{"tcp": {
                "address": collector.address,
                "format": {"plain": "%KUMA_TRAFFIC_DIRECTION% %KUMA_DESTINATION_SERVICE% %REQ(:PATH)%"}
            }}]}}]}
    }));
    let pipe = |name: &str| format!("/tmp/kuma-al-{name}-default.sock");
    let client_pipe = pipe(&format!("tcplog-client-{pid}"));
    // The fixture kills sidecars with SIGKILL, so `dp run` cannot remove these pipes; names
    // with a process id would pile up in /tmp run after run.
    let _cleanup = RemoveOnDrop(vec![client_pipe.clone(), pipe(&backend_name)]);
    wait_for_config(client.admin, "the client's logger on its pipe", |d| dump_contains(d, &client_pipe));
    let backend_pipe = pipe(&backend_name);
    wait_for_config(backend.admin, "the backend's logger on its pipe", |d| dump_contains(d, &backend_pipe));

    assert_eq!(get(port, "/tcp-log-path").status, 200);
    let outbound = collector.wait_for(&["/tcp-log-path", "\"tcplog-client\" \"tcplog-backend\""]);
    assert!(outbound.contains("] default \"GET /tcp-log-path HTTP/1.1\" 200"), "{outbound:?}");
    let inbound = collector.wait_for(&["INBOUND tcplog-backend /tcp-log-path"]);
    assert_eq!(inbound, "INBOUND tcplog-backend /tcp-log-path");
}

struct RemoveOnDrop(Vec<String>);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Invalid policies and logging backends are refused with 400 naming the field, and nothing
/// is stored.
fn bad_policies_are_refused_naming_the_field(mesh: &Mesh) {
    let cases = [
        (
            json!({"type": "FaultInjection", "mesh": "default", "name": "bad-fi",
                "sources": [{"match": {"kuma.io/service": "web"}}],
                "destinations": [{"match": {"kuma.io/service": "fi-backend"}}],
                "conf": {"abort": {"percentage": 100, "httpStatus": 418}}}),
            "destinations[0].match",
        ),
        (
            json!({"type": "RateLimit", "mesh": "default", "name": "bad-rl",
                "sources": [{"match": {"kuma.io/service": "web"}}],
                "destinations": [{"match": {"kuma.io/service": "rl-backend"}}],
                "conf": {"http": {"requests": 5, "interval": "10s", "onRateLimit": {"status": 299}}}}),
            "conf.http.onRateLimit.status",
        ),
        (
            json!({"type": "MeshRateLimit", "mesh": "default", "name": "bad-mrl",
                "spec": {"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"},
                    "default": {"local": {"http": {"requestRate": {"num": 5, "interval": "10ms"}}}}}]}}),
            "spec.from[0].default.local.http.requestRate.interval",
        ),
        (
            json!({"type": "MeshAccessLog", "mesh": "default", "name": "bad-mal",
                "spec": {"from": [{"targetRef": {"kind": "Mesh"},
                    "default": {"backends": [{"file": {"path": "/tmp/x", "format": {"plain": "%NOT_CLOSED"}}}]}}]}}),
            "spec.from[0].default.backends[0].file.format.plain",
        ),
    ];
    for (resource, field) in cases {
        let (status, body) = mesh.try_put(&resource);
        assert_eq!(status, 400, "{resource}: {body}");
        assert!(body.to_string().contains(field), "{field} not named: {body}");
        let path = common::mesh::path_of(&resource);
        let (status, body) = call("GET", &mesh.cp.url(&path), None);
        assert_eq!(status, 404, "{path} was stored: {body}");
    }

    let (_, before) = call("GET", &mesh.cp.url("/meshes/default"), None);
    let mut bad = before.clone();
    bad["logging"]["backends"][1]["conf"]["address"] = json!("collector-without-port");
    let (status, body) = mesh.try_put(&bad);
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("logging.backends[1].conf.address"), "{body}");
    let (_, after) = call("GET", &mesh.cp.url("/meshes/default"), None);
    assert_eq!(after["logging"], before["logging"], "a refused Mesh changed the stored one");
}
