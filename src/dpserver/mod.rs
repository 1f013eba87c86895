//! The DP server on `dpServer.port` (5678), as Kuma's: one TLS port for both ADS (gRPC)
//! and `POST /bootstrap` (HTTP/1.1).
//!
//! grpcio (gRPC C-core, built here without TLS) only speaks gRPC, so this front end
//! terminates TLS itself (OpenSSL) and hands each connection's bytes to one of two internal
//! servers on loopback: the grpcio ADS server or a small HTTP server for `/bootstrap`. It
//! tells them apart by ALPN (`h2` → gRPC, `http/1.1` → HTTP) or, without ALPN, by whether
//! the first bytes are HTTP/2's preface.
//!
//! ```text
//! sidecar ──TLS──► dp-accept ─► dp-reactor-N (epoll: handshake, route, splice)
//!                                   ├──► 127.0.0.1:<grpc>  xds::server (ADS, auth, limits)
//!                                   └──► 127.0.0.1:<http>  bootstrap::handle
//! ```
//!
//! Cost of the splice, measured before choosing this over `/bootstrap` on the API port
//! (`tests/dp_server_cost.rs`, figures in README "Security"): one extra copy and loopback
//! hop per message, 16-28 µs of CPU per 1 KiB round trip in a debug build; an idle spliced
//! connection holds under 1 KiB (buffers are released when drained) and no thread.
//! [`peers::Peers`] maps each internal connection back to its sidecar, so logs, limits and
//! insights see the real peer, and a process that dials the internal port directly is
//! refused.
//!
//! With `dpServer.tlsEnabled: false` the same front end serves plaintext (development).

pub mod bootstrap;
pub mod metrics;
pub mod peers;
mod reactor;
pub mod splice;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use metrics::Metrics;
pub use peers::Peers;

use crate::logsafe::RateLimiter;
use crate::threads;
use crate::tls::ServerTls;

/// Event loops of the front end: TLS work is spread over both cores of a small VM, and
/// each loop serves thousands of connections.
const REACTORS: usize = 2;
/// How often the certificate files are looked at; a `stat` each, so a rotation is live
/// within a second or two at no cost.
pub const CERT_RELOAD_INTERVAL: Duration = Duration::from_secs(1);
/// How long the accept loop waits before looking at the stop flag again.
const ACCEPT_POLL_MS: i32 = 100;

#[derive(Debug, thiserror::Error)]
pub enum DpServerError {
    #[error("cannot listen on {addr} (dpServer.interface / dpServer.port): {reason}")]
    Bind { addr: String, reason: String },
    #[error("cannot start the DP server: {0}")]
    Start(String),
}

pub struct DpServerOptions {
    pub interface: String,
    pub port: u16,
    /// None = plaintext.
    pub tls: Option<Arc<ServerTls>>,
    /// The internal gRPC (ADS) and HTTP (`/bootstrap`) servers.
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub read_header_timeout: Duration,
    pub peers: Arc<Peers>,
    pub metrics: Arc<Metrics>,
}

/// The running front end.
pub struct DpServer {
    addr: SocketAddr,
    shared: Arc<reactor::Shared>,
    reactors: Vec<Arc<reactor::Reactor>>,
    threads: Vec<JoinHandle<()>>,
}

impl DpServer {
    pub fn start(opts: DpServerOptions) -> Result<DpServer, DpServerError> {
        let addr = crate::xds::generate::envoy_builders::join_host_port(&opts.interface, opts.port as u32);
        let listener =
            TcpListener::bind(&addr).map_err(|e| DpServerError::Bind { addr: addr.clone(), reason: e.to_string() })?;
        listener.set_nonblocking(true).map_err(|e| DpServerError::Start(e.to_string()))?;
        let local = listener.local_addr().map_err(|e| DpServerError::Start(e.to_string()))?;
        let shared = Arc::new(reactor::Shared {
            tls: opts.tls.clone(),
            grpc: opts.grpc,
            http: opts.http,
            peers: opts.peers,
            metrics: opts.metrics,
            read_header_timeout: opts.read_header_timeout,
            stop: Default::default(),
            log_limiter: RateLimiter::default(),
        });
        let mut reactors = Vec::new();
        let mut handles = Vec::new();
        for i in 0..REACTORS {
            let r = Arc::new(reactor::Reactor::new().map_err(|e| DpServerError::Start(e.to_string()))?);
            let (r2, s2) = (r.clone(), shared.clone());
            handles.push(threads::spawn(format!("{}-{i}", threads::DP_REACTOR), move || r2.run(&s2)));
            reactors.push(r);
        }
        {
            let (reactors, shared) = (reactors.clone(), shared.clone());
            handles.push(threads::spawn(threads::DP_ACCEPT.to_string(), move || {
                accept_loop(listener, &reactors, &shared)
            }));
        }
        if let Some(tls) = opts.tls {
            let shared = shared.clone();
            handles.push(threads::spawn(threads::TLS_RELOAD.to_string(), move || reload_loop(&tls, &shared)));
        }
        Ok(DpServer { addr: local, shared, reactors, threads: handles })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes every connection (the internal servers see them end).
    pub fn stop(self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        for r in &self.reactors {
            r.wake_up();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}

fn accept_loop(listener: TcpListener, reactors: &[Arc<reactor::Reactor>], shared: &reactor::Shared) {
    let next_id = AtomicU64::new(1);
    let mut pfd = libc::pollfd { fd: listener.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    while !shared.stop.load(Ordering::SeqCst) {
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut pfd, 1, ACCEPT_POLL_MS) };
        if ready <= 0 {
            continue;
        }
        loop {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    let _ = stream.set_nodelay(true);
                    Metrics::inc(&shared.metrics.connections_accepted);
                    shared.metrics.connections_active.fetch_add(1, Ordering::Relaxed);
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    reactors[(id as usize) % reactors.len()].hand_over(id, stream, peer);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // Out of descriptors, most likely: say so, and let the poll back off.
                    if let Some(n) = shared.log_limiter.allow("accept", "accept failed") {
                        log::warn!("dp-server: accept failed: {e}{}", crate::logsafe::suppressed_note(n));
                    }
                    std::thread::sleep(Duration::from_millis(ACCEPT_POLL_MS as u64));
                    break;
                }
            }
        }
    }
}

fn reload_loop(tls: &ServerTls, shared: &reactor::Shared) {
    let mut slept = Duration::ZERO;
    while !shared.stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
        slept += Duration::from_millis(100);
        if slept < CERT_RELOAD_INTERVAL {
            continue;
        }
        slept = Duration::ZERO;
        match tls.reload_if_changed() {
            Ok(false) => {}
            Ok(true) => {
                Metrics::inc(&shared.metrics.certificate_reloads);
                log::info!(
                    "dp-server: loaded the new certificate {} (SANs {:?}); open connections keep theirs",
                    tls.source().cert.display(),
                    tls.sans()
                );
            }
            Err(e) => {
                Metrics::inc(&shared.metrics.certificate_reload_failures);
                if let Some(n) = shared.log_limiter.allow("tls", "certificate reload failed") {
                    log::warn!(
                        "dp-server: the certificate files changed but do not load, keeping the current ones: {e}{}",
                        crate::logsafe::suppressed_note(n)
                    );
                }
            }
        }
    }
}
