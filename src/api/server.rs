//! The HTTP side: a `tiny_http` listener shared by a fixed pool of named worker threads.

use std::io::Read;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{router, ApiContext, ApiError, Request};
use crate::threads;

/// Bodies above this are refused with 413 before they are read; Kuma's resources are a few
/// KiB, so 1 MiB leaves room for any real one while bounding memory per request.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Requests are short store reads/writes; four threads keep the API responsive while a
/// slow client holds one, without competing with the xDS workers on a small VM.
pub const WORKER_THREADS: usize = 4;

/// How often idle workers look at the stop flag; bounds shutdown latency.
const STOP_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

pub struct ApiServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl ApiServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and starts the workers.
    pub fn start(addr: &str, ctx: ApiContext) -> Result<ApiServer, ServerError> {
        let server = tiny_http::Server::http(addr)
            .map_err(|e| ServerError::Bind { addr: addr.to_string(), reason: e.to_string() })?;
        let local = server
            .server_addr()
            .to_ip()
            .ok_or_else(|| ServerError::Bind { addr: addr.to_string(), reason: "not an IP socket".into() })?;
        let server = Arc::new(server);
        let stop = Arc::new(AtomicBool::new(false));
        let workers = (0..WORKER_THREADS)
            .map(|i| {
                let (server, stop, ctx) = (server.clone(), stop.clone(), ctx.clone());
                threads::spawn(format!("{}-{i}", threads::API_WORKER), move || serve(&server, &stop, &ctx))
            })
            .collect();
        Ok(ApiServer { addr: local, stop, workers })
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

fn serve(server: &tiny_http::Server, stop: &AtomicBool, ctx: &ApiContext) {
    while !stop.load(Ordering::SeqCst) {
        match server.recv_timeout(STOP_POLL) {
            Ok(Some(request)) => handle(request, ctx),
            Ok(None) => {}
            Err(e) => {
                log::warn!("api: accepting a request failed: {e}");
            }
        }
    }
}

fn handle(mut http: tiny_http::Request, ctx: &ApiContext) {
    let started = std::time::Instant::now();
    let method = http.method().as_str().to_uppercase();
    let url = http.url().to_string();
    let reply = match read_request(&mut http, &method, &url) {
        Ok(req) => router::route(ctx, &req),
        Err(err) => err.into(),
    };
    log::debug!("api: {method} {url} -> {} in {:?}", reply.status, started.elapsed());
    let response = match &reply.body {
        Some(body) => {
            let mut text = serde_json::to_vec_pretty(body).unwrap_or_default();
            text.push(b'\n');
            tiny_http::Response::from_data(text)
                .with_header(header("Content-Type", "application/json"))
                .with_status_code(reply.status)
        }
        None => tiny_http::Response::from_data(Vec::new()).with_status_code(reply.status),
    };
    if let Err(e) = http.respond(response) {
        log::debug!("api: client went away before the answer to {method} {url}: {e}");
    }
}

fn header(name: &str, value: &str) -> tiny_http::Header {
    // Both strings are ASCII constants.
    tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("static header is valid")
}

fn read_request(http: &mut tiny_http::Request, method: &str, url: &str) -> Result<Request, ApiError> {
    let (path, query) = match url.split_once('?') {
        Some((p, q)) => (p.to_string(), form_urlencoded::parse(q.as_bytes()).into_owned().collect()),
        None => (url.to_string(), Vec::new()),
    };
    let host = http
        .headers()
        .iter()
        .find(|h| h.field.equiv("Host"))
        .map(|h| h.value.as_str().to_string());
    let body = if matches!(method, "PUT" | "POST") { Some(read_body(http)?) } else { None };
    Ok(Request { method: method.to_string(), path, query, host, body })
}

fn read_body(http: &mut tiny_http::Request) -> Result<String, ApiError> {
    let too_large = || {
        ApiError::new(413, "Payload Too Large", format!("request body exceeds the limit of {MAX_BODY_BYTES} bytes"))
    };
    if http.body_length().is_some_and(|len| len > MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let mut bytes = Vec::new();
    // One byte past the limit tells a chunked body that is too long from one that fits.
    http.as_reader()
        .take(MAX_BODY_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
    if bytes.len() > MAX_BODY_BYTES {
        return Err(too_large());
    }
    String::from_utf8(bytes).map_err(|_| ApiError::bad_request("the request body is not valid UTF-8"))
}
