//! A small synchronous HTTP server: a `tiny_http` listener shared by a fixed pool of named
//! worker threads, with a body-size limit and a clean stop. The REST API and the diagnostics
//! server are both built on it.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::threads;

/// How often idle workers look at the stop flag; bounds shutdown latency.
const STOP_POLL: Duration = Duration::from_millis(100);

/// A request as handlers see it, independent of the HTTP library.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `Host` header, used to build absolute links.
    pub host: Option<String>,
    /// `Accept` header, for handlers that answer in more than one format.
    pub accept: Option<String>,
    /// UTF-8 body of PUT and POST requests.
    pub body: Option<String>,
}

impl Request {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, content_type, body: body.into() }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
        bytes.push(b'\n');
        Self::new(status, "application/json", bytes)
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

/// How a server is set up.
pub struct Options {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    pub threads: usize,
    /// Thread-name prefix (see `crate::threads`).
    pub thread_name: &'static str,
    /// Bodies above this are refused with 413.
    pub max_body: usize,
}

impl Server {
    pub fn start(opts: Options, handler: Handler) -> Result<Server, ServerError> {
        let server = tiny_http::Server::http(&opts.addr)
            .map_err(|e| ServerError::Bind { addr: opts.addr.clone(), reason: e.to_string() })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ServerError::Bind { addr: opts.addr.clone(), reason: "not an IP socket".into() })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..opts.threads.max(1))
            .map(|i| {
                let (server, stop, handler) = (server.clone(), stop.clone(), handler.clone());
                let max_body = opts.max_body;
                threads::spawn(format!("{}-{i}", opts.thread_name), move || serve(&server, &stop, &handler, max_body))
            })
            .collect();
        Ok(Server { addr: local, stop, workers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking requests, lets in-flight ones finish, and joins the workers.
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for w in self.workers {
            let _ = w.join();
        }
    }
}

fn serve(server: &tiny_http::Server, stop: &AtomicBool, handler: &Handler, max_body: usize) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(STOP_POLL) {
            Ok(Some(request)) => handle(request, handler, max_body),
            Ok(None) => {}
            Err(e) => log::warn!("http: accepting a request failed: {e}"),
        }
    }
}

fn handle(mut http: tiny_http::Request, handler: &Handler, max_body: usize) {
    let started = std::time::Instant::now();
    let method = http.method().as_str().to_uppercase();
    let url = http.url().to_string();
    let response = match read_request(&mut http, &method, &url, max_body) {
        Ok(req) => handler(&req),
        Err(resp) => resp,
    };
    log::debug!(
        "http: {} {} -> {} in {:?}",
        crate::logsafe::untrusted(&method),
        crate::logsafe::untrusted(&url),
        response.status,
        started.elapsed()
    );
    let header = tiny_http::Header::from_bytes(&b"Content-Type"[..], response.content_type.as_bytes());
    let mut out = tiny_http::Response::from_data(response.body).with_status_code(response.status);
    if let Ok(h) = header {
        out = out.with_header(h);
    }
    if let Err(e) = http.respond(out) {
        log::debug!(
            "http: client went away before the answer to {} {}: {e}",
            crate::logsafe::untrusted(&method),
            crate::logsafe::untrusted(&url)
        );
    }
}

fn read_request(http: &mut tiny_http::Request, method: &str, url: &str, max_body: usize) -> Result<Request, Response> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), form_urlencoded::parse(q.as_bytes()).into_owned().collect()),
        None => (url.to_string(), Vec::new()),
    };
    let header =
        |name: &'static str| http.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().to_string());
    let (host, accept) = (header("Host"), header("Accept"));
    let body = if matches!(method, "PUT" | "POST") { Some(read_body(http, max_body)?) } else { None };
    Ok(Request { method: method.to_string(), path, query, host, accept, body })
}

fn read_body(http: &mut tiny_http::Request, max_body: usize) -> Result<String, Response> {
    let too_large = || {
        crate::api::ApiError::new(
            413,
            "Payload Too Large",
            format!("request body exceeds the limit of {max_body} bytes"),
        )
        .into_response()
    };
    if http.body_length().is_some_and(|len| len > max_body) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a chunked body that is too long from one that fits.
    http.as_reader()
        .take(max_body as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| crate::api::ApiError::bad_request(format!("cannot read the request body: {e}")).into_response())?;
    if bytes.len() > max_body {
        return Err(too_large());
    }
    String::from_utf8(bytes)
        .map_err(|_| crate::api::ApiError::bad_request("the request body is not valid UTF-8").into_response())
}
