//! Test applications whose behaviour a test changes while traffic runs: answer with a
//! status, after a delay, fail some requests, report health, echo what reached them. They
//! stand behind real Envoys in the policy end-to-end tests.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What an [`HttpApp`] does with each request.
#[derive(Clone, Debug)]
pub struct Behaviour {
    /// Status of ordinary responses.
    pub status: u16,
    /// Wait this long before answering.
    pub delay: Duration,
    /// Answer every n-th request (1-based count) with `fail_status` instead; 0 = never.
    pub fail_every: u64,
    pub fail_status: u16,
    /// Status of `GET /health` (active health checks).
    pub health_status: u16,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour { status: 200, delay: Duration::ZERO, fail_every: 0, fail_status: 503, health_status: 200 }
    }
}

struct Shared {
    name: String,
    behaviour: Mutex<Behaviour>,
    requests: AtomicU64,
    health_checks: AtomicU64,
    stop: AtomicBool,
}

/// An HTTP application on 127.0.0.1 and a free port. Every response body is JSON:
/// `{"app": name, "method", "path", "query", "headers": {lower-cased name: value}}`, so a
/// test can see which instance answered and what Envoy changed on the way.
pub struct HttpApp {
    pub port: u16,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// Requests served at the same time (some tests hold requests for seconds).
const WORKERS: usize = 8;

impl HttpApp {
    pub fn start(name: &str) -> HttpApp {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let port = server.server_addr().to_ip().unwrap().port();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            behaviour: Mutex::new(Behaviour::default()),
            requests: AtomicU64::new(0),
            health_checks: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let threads = (0..WORKERS)
            .map(|_| {
                let (server, shared) = (server.clone(), shared.clone());
                std::thread::spawn(move || {
                    while !shared.stop.load(Ordering::SeqCst) {
                        if let Ok(Some(req)) = server.recv_timeout(Duration::from_millis(50)) {
                            serve(&shared, req);
                        }
                    }
                })
            })
            .collect();
        HttpApp { port, shared, threads }
    }

    /// Changes what the app does from the next request on.
    pub fn set(&self, f: impl FnOnce(&mut Behaviour)) {
        f(&mut self.shared.behaviour.lock().unwrap());
    }

    /// Requests served so far, health checks not counted.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// `GET /health` requests served so far.
    pub fn health_checks(&self) -> u64 {
        self.shared.health_checks.load(Ordering::SeqCst)
    }
}

fn serve(shared: &Shared, req: tiny_http::Request) {
    let url = req.url().to_string();
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (url.clone(), String::new()),
    };
    let b = shared.behaviour.lock().unwrap().clone();
    let status = if path == "/health" {
        shared.health_checks.fetch_add(1, Ordering::SeqCst);
        b.health_status
    } else {
        let n = shared.requests.fetch_add(1, Ordering::SeqCst) + 1;
        if !b.delay.is_zero() {
            std::thread::sleep(b.delay);
        }
        if b.fail_every > 0 && n % b.fail_every == 0 {
            b.fail_status
        } else {
            b.status
        }
    };
    let headers: BTreeMap<String, String> =
        req.headers().iter().map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.to_string())).collect();
    let body = serde_json::json!({
        "app": shared.name,
        "method": req.method().as_str(),
        "path": path,
        "query": query,
        "headers": headers,
    })
    .to_string();
    let response = tiny_http::Response::from_string(body)
        .with_status_code(status)
        .with_header(tiny_http::Header::from_bytes("content-type", "application/json").unwrap())
        .with_header(tiny_http::Header::from_bytes("x-app", shared.name.as_bytes()).unwrap());
    let _ = req.respond(response);
}

impl Drop for HttpApp {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// A TCP application that writes `<name>\n` to every connection, then echoes what it
/// reads until the peer closes.
pub struct TcpApp {
    pub port: u16,
    connections: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl TcpApp {
    pub fn start(name: &str) -> TcpApp {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, connections) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicU64::new(0)));
        let (flag, count, name) = (stop.clone(), connections.clone(), name.to_string());
        let thread = std::thread::spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((mut conn, _)) => {
                        count.fetch_add(1, Ordering::SeqCst);
                        let name = name.clone();
                        std::thread::spawn(move || {
                            let _ = conn.set_nonblocking(false);
                            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
                            let _ = conn.write_all(format!("{name}\n").as_bytes());
                            let mut buf = [0u8; 4096];
                            while let Ok(n) = conn.read(&mut buf) {
                                if n == 0 || conn.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        TcpApp { port, connections, stop, thread: Some(thread) }
    }

    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::SeqCst)
    }
}

impl Drop for TcpApp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One HTTP request through a local port (an Envoy outbound), with status, body and
/// response headers; a failed connection is status 0.
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub headers: BTreeMap<String, String>,
}

impl Reply {
    /// The body as the app's JSON, if it is one (Envoy's own replies are not).
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    /// Which app answered (`x-app`), if one did.
    pub fn app(&self) -> Option<&str> {
        self.headers.get("x-app").map(String::as_str)
    }
}

/// Sends `method path` to `127.0.0.1:port` with `headers`, waiting at most `timeout`.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], timeout: Duration) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}{path}");
    let result = match method {
        "POST" | "PUT" => {
            let mut req = if method == "POST" { agent.post(&url) } else { agent.put(&url) };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send_empty()
        }
        _ => {
            let mut req = if method == "DELETE" { agent.delete(&url) } else { agent.get(&url) };
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        }
    };
    match result {
        Ok(mut r) => {
            let status = r.status().as_u16();
            let headers = r
                .headers()
                .iter()
                .map(|(k, v)| (k.as_str().to_ascii_lowercase(), v.to_str().unwrap_or("").to_string()))
                .collect();
            let body = r.body_mut().read_to_string().unwrap_or_default();
            Reply { status, body, headers }
        }
        Err(_) => Reply { status: 0, body: String::new(), headers: BTreeMap::new() },
    }
}

/// `GET path` with no headers and a 5 s limit.
pub fn get(port: u16, path: &str) -> Reply {
    request(port, "GET", path, &[], Duration::from_secs(5))
}
