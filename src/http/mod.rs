//! A small synchronous HTTP/1.1 server shared by the REST API and the diagnostics server:
//! one accept thread, a bounded queue of connections and a fixed pool of named workers,
//! each serving one connection at a time, optionally over TLS ([`tls`]).
//!
//! It replaced `tiny_http`, which could not be made safe against slow or hostile clients:
//! it reads header lines of any length, has no read or write time-outs, does TLS handshakes
//! on its accept thread (one silent client stops every other from connecting) and starts a
//! thread per waiting connection. Here every way a client can hold a worker is bounded and
//! counted ([`metrics`]):
//!
//! - the request line and headers must arrive within `readHeaderTimeout` and fit in
//!   `maxHeaderBytes` (431 above, 408 when late); the whole request within `readTimeout`;
//! - a body above `maxBodyBytes` is refused with 413 before it is read;
//! - an answer the client does not read within `writeTimeout` drops the connection;
//! - an idle keep-alive connection is closed after `idleTimeout`, or at once when other
//!   connections are waiting for a worker, so idle clients cannot starve active ones;
//! - when the queue of accepted connections is full, new ones are closed at once.
//!
//! Parsing ([`conn`]) runs over any [`conn::Transport`], so the fuzz targets drive it with
//! arbitrary bytes without a socket.

pub mod conn;
pub mod metrics;
mod retry;
pub mod tls;

pub use retry::retry_on_stale_connection;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::threads;

/// How often idle workers look at the stop flag; bounds shutdown latency.
const STOP_POLL: Duration = Duration::from_millis(100);
/// Accepted connections waiting for a worker, per worker: enough to absorb a burst of
/// kumactl calls, small enough that a flood is refused instead of queued for minutes.
const BACKLOG_PER_WORKER: usize = 32;

/// A request as handlers see it, independent of the wire.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `Host` header, used to build absolute links.
    pub host: Option<String>,
    /// Every header as sent (names as the client spelled them).
    pub headers: Vec<(String, String)>,
    /// UTF-8 body of PUT and POST requests.
    pub body: Option<String>,
    /// The client's address; `None` only for requests built in tests.
    pub peer: Option<SocketAddr>,
    /// Whether the request came over TLS (links then say `https`).
    pub secure: bool,
}

impl Request {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// What a handler answers.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Headers besides Content-Type, Content-Length and Connection.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Response { status, content_type, body: body.into(), headers: Vec::new() }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body.into())
    }

    pub fn json(status: u16, body: &serde_json::Value) -> Self {
        let mut bytes = serde_json::to_vec_pretty(body).unwrap_or_default();
        bytes.push(b'\n');
        Self::new(status, "application/json", bytes)
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
}

pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// How a server renders the errors it answers itself (400, 408, 413, 431): the API uses
/// Kuma's JSON error, diagnostics plain text.
pub type ErrorRenderer = fn(status: u16, title: &str, detail: &str) -> Response;

/// Plain-text errors.
pub fn text_error(status: u16, title: &str, detail: &str) -> Response {
    Response::text(status, format!("{title}: {detail}\n"))
}

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {reason}")]
    Bind { addr: String, reason: String },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// The slow-client and size limits of one server (see the module docs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub read_header_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            read_header_timeout: crate::config::DEFAULT_API_READ_HEADER_TIMEOUT.as_std(),
            read_timeout: crate::config::DEFAULT_API_READ_TIMEOUT.as_std(),
            write_timeout: crate::config::DEFAULT_API_WRITE_TIMEOUT.as_std(),
            idle_timeout: crate::config::DEFAULT_API_IDLE_TIMEOUT.as_std(),
            max_header_bytes: crate::config::DEFAULT_API_MAX_HEADER_BYTES as usize,
            max_body_bytes: crate::config::DEFAULT_API_MAX_BODY_BYTES as usize,
        }
    }
}

/// Converts a configured byte count; a value beyond the address space is no limit at all.
pub fn byte_limit(value: u64) -> usize {
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// How a server is set up.
pub struct Options {
    /// `host:port`; port 0 picks a free one.
    pub addr: String,
    pub threads: usize,
    /// Thread-name prefix (see `crate::threads`); also the `server` label of the metrics.
    pub thread_name: &'static str,
    pub limits: Limits,
    /// Serve HTTPS with this acceptor instead of plain HTTP.
    pub tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    pub errors: ErrorRenderer,
}

pub struct Server {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
}

/// What every worker of a server shares.
struct Shared {
    handler: Handler,
    limits: Limits,
    tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    errors: ErrorRenderer,
    counters: Arc<metrics::LimitCounters>,
    stop: Arc<AtomicBool>,
    queue: Receiver<(TcpStream, SocketAddr)>,
}

impl Server {
    pub fn start(opts: Options, handler: Handler) -> Result<Server, ServerError> {
        let bind_err = |reason: String| ServerError::Bind { addr: opts.addr.clone(), reason };
        let listener = TcpListener::bind(&opts.addr).map_err(|e| bind_err(e.to_string()))?;
        let local = listener.local_addr().map_err(|e| bind_err(e.to_string()))?;
        let threads = opts.threads.max(1);
        let (tx, rx) = crossbeam_channel::bounded(threads * BACKLOG_PER_WORKER);
        let stop = Arc::new(AtomicBool::new(false));
        let counters = metrics::counters_for(opts.thread_name);
        let shared = Arc::new(Shared {
            handler,
            limits: opts.limits,
            tls: opts.tls,
            errors: opts.errors,
            counters: counters.clone(),
            stop: stop.clone(),
            queue: rx,
        });
        let acceptor = {
            let stop = stop.clone();
            threads::spawn(format!("{}-acc", opts.thread_name), move || accept_loop(listener, &tx, &stop, &counters))
        };
        let workers = (0..threads)
            .map(|i| {
                let shared = shared.clone();
                threads::spawn(format!("{}-{i}", opts.thread_name), move || worker_loop(&shared))
            })
            .collect();
        Ok(Server { addr: local, stop, acceptor: Some(acceptor), workers })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops taking connections, lets in-flight requests finish, and joins the threads.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The accept thread blocks in accept(): one connection of our own wakes it up.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(match wake {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn accept_loop(
    listener: TcpListener,
    queue: &Sender<(TcpStream, SocketAddr)>,
    stop: &AtomicBool,
    counters: &metrics::LimitCounters,
) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let stream = match conn {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and the like: back off instead of spinning on a listener that
                // keeps failing.
                log::warn!("http: accepting a connection failed: {e}");
                std::thread::sleep(STOP_POLL);
                continue;
            }
        };
        let Ok(peer) = stream.peer_addr() else { continue };
        let _ = stream.set_nodelay(true);
        match queue.try_send((stream, peer)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                counters.hit(metrics::Limit::Backlog);
                log::debug!("http: {peer} refused: every worker is busy and the queue is full");
            }
            Err(TrySendError::Disconnected(_)) => break,
        }
    }
}

fn worker_loop(shared: &Shared) {
    while !shared.stop.load(Ordering::SeqCst) {
        match shared.queue.recv_timeout(STOP_POLL) {
            Ok((stream, peer)) => {
                // A bug in parsing must not shrink the pool: the connection is dropped, the
                // worker lives on.
                if std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| serve_socket(shared, stream, peer)))
                    .is_err()
                {
                    log::error!("http: serving {peer} panicked; connection dropped");
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn serve_socket(shared: &Shared, stream: TcpStream, peer: SocketAddr) {
    let ctx = conn::ConnCtx {
        handler: &shared.handler,
        limits: shared.limits,
        errors: shared.errors,
        counters: &shared.counters,
        peer: Some(peer),
        secure: shared.tls.is_some(),
        should_yield: &|| shared.stop.load(Ordering::SeqCst) || !shared.queue.is_empty(),
    };
    match &shared.tls {
        None => {
            let mut t = conn::TcpTransport(stream);
            conn::serve(&mut t, &ctx);
        }
        Some(acceptor) => {
            // The handshake is the first thing a client must send: it shares the header
            // deadline, so a client that connects and stays silent is cut off just the same.
            let _ = stream.set_read_timeout(Some(shared.limits.read_header_timeout));
            let _ = stream.set_write_timeout(Some(shared.limits.write_timeout));
            match acceptor.accept(stream) {
                Ok(tls) => {
                    let mut t = conn::TlsTransport(tls);
                    conn::serve(&mut t, &ctx);
                }
                Err(e) => {
                    shared.counters.hit(metrics::Limit::TlsHandshake);
                    log::debug!("http: TLS handshake with {peer} failed: {}", crate::http::conn::short(&e.to_string()));
                }
            }
        }
    }
}
