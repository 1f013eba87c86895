//! The front end's event loops: each owns a set of connections, waits on epoll (edge
//! triggered) and drives each connection through its phases:
//!
//! ```text
//! Fresh ──first byte 0x16──► Handshake ──► Sniff ──ALPN or first bytes──► Spliced
//!   │ (TLS port)                             ▲       h2 / HTTP/2 preface → gRPC server
//!   └─anything else: refused                 │       otherwise           → HTTP server
//!                          plaintext port ───┘
//! ```
//!
//! Until a connection is spliced it must get there within `dpServer.readHeaderTimeout`;
//! after that the internal server's own keepalive decides how long it lives.

use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use openssl::ssl::{HandshakeError, MidHandshakeSslStream, SslStream};

use super::metrics::Metrics;
use super::peers::Peers;
use super::splice::{Buf, Side, Splice, State};
use crate::logsafe::{suppressed_note, RateLimiter};
use crate::tls::{ServerTls, ALPN_H2, ALPN_HTTP1};

/// The HTTP/2 connection preface (RFC 9113 §3.4): what a gRPC client sends first.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// A TLS record of type handshake: the first byte of every ClientHello.
const TLS_HANDSHAKE: u8 = 0x16;
/// How often idle loops look at deadlines and the stop flag.
const TICK: Duration = Duration::from_millis(250);
/// Connecting to a listener on loopback completes at once; this only bounds a full backlog.
const BACKEND_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
const WAKE_TOKEN: u64 = u64::MAX;
const EVENTS: usize = 256;

/// What every loop shares.
pub struct Shared {
    pub tls: Option<Arc<ServerTls>>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub peers: Arc<Peers>,
    pub metrics: Arc<Metrics>,
    pub read_header_timeout: Duration,
    pub stop: AtomicBool,
    pub log_limiter: RateLimiter,
}

/// The client's side of a connection.
pub enum Client {
    Plain(TcpStream),
    Tls(Box<SslStream<TcpStream>>),
}

impl Side for Client {
    fn raw_fd(&self) -> RawFd {
        match self {
            Client::Plain(s) => s.as_raw_fd(),
            Client::Tls(s) => s.get_ref().as_raw_fd(),
        }
    }
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.read_some(buf),
            Client::Tls(s) => s.read_some(buf),
        }
    }
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Client::Plain(s) => s.write_some(buf),
            Client::Tls(s) => s.write_some(buf),
        }
    }
    fn finish(&mut self) {
        match self {
            Client::Plain(s) => s.finish(),
            Client::Tls(s) => s.finish(),
        }
    }
}

enum Phase {
    Fresh(TcpStream),
    Handshake(MidHandshakeSslStream<TcpStream>),
    Sniff(Client, Vec<u8>),
    Spliced(Box<Splice<Client, TcpStream>>),
    Gone,
}

struct Conn {
    phase: Phase,
    peer: SocketAddr,
    /// Set until spliced.
    deadline: Option<Instant>,
    /// Local port of the connection to the gRPC server, registered in [`Peers`].
    grpc_port: Option<u16>,
}

/// One event loop.
pub struct Reactor {
    epoll: OwnedFd,
    wake: OwnedFd,
    incoming: Mutex<Vec<(u64, TcpStream, SocketAddr)>>,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl Reactor {
    pub fn new() -> io::Result<Reactor> {
        // SAFETY: plain syscalls creating new descriptors, owned right away.
        let (epoll, wake) = unsafe {
            let ep = cvt(libc::epoll_create1(libc::EPOLL_CLOEXEC))?;
            let epoll = OwnedFd::from_raw_fd(ep);
            let ev = cvt(libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))?;
            (epoll, OwnedFd::from_raw_fd(ev))
        };
        let r = Reactor { epoll, wake, incoming: Mutex::new(Vec::new()) };
        r.add(r.wake.as_raw_fd(), WAKE_TOKEN)?;
        Ok(r)
    }

    fn add(&self, fd: RawFd, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32,
            u64: token,
        };
        // SAFETY: `ev` outlives the call; the kernel copies it.
        cvt(unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) }).map(drop)
    }

    /// Hands a new connection to this loop.
    pub fn hand_over(&self, id: u64, stream: TcpStream, peer: SocketAddr) {
        self.incoming.lock().unwrap_or_else(|p| p.into_inner()).push((id, stream, peer));
        self.wake_up();
    }

    pub fn wake_up(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a valid u64 to our eventfd. A full counter (never in
        // practice) only means the loop is already due to wake.
        unsafe {
            libc::write(self.wake.as_raw_fd(), (&one as *const u64).cast(), 8);
        }
    }

    /// Runs until `shared.stop` is set.
    pub fn run(&self, shared: &Shared) {
        let mut conns: HashMap<u64, Conn> = HashMap::new();
        let mut pending: HashSet<u64> = HashSet::new();
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; EVENTS];
        let mut next_tick = Instant::now() + TICK;
        while !shared.stop.load(Ordering::SeqCst) {
            // SAFETY: `events` has room for EVENTS entries for the duration of the call.
            let n = unsafe {
                libc::epoll_wait(self.epoll.as_raw_fd(), events.as_mut_ptr(), EVENTS as i32, TICK.as_millis() as i32)
            };
            let n = match n {
                n if n >= 0 => n as usize,
                _ if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => 0,
                _ => {
                    log::error!("dp-server: epoll_wait failed: {}", io::Error::last_os_error());
                    break;
                }
            };
            let mut due: Vec<u64> = Vec::with_capacity(n);
            for ev in &events[..n] {
                if ev.u64 == WAKE_TOKEN {
                    let mut buf = [0u8; 8];
                    // SAFETY: reads the eventfd counter into an 8-byte buffer.
                    unsafe { libc::read(self.wake.as_raw_fd(), buf.as_mut_ptr().cast(), 8) };
                    let new: Vec<_> = std::mem::take(&mut *self.incoming.lock().unwrap_or_else(|p| p.into_inner()));
                    for (id, stream, peer) in new {
                        let fd = stream.as_raw_fd();
                        let phase = if shared.tls.is_some() {
                            Phase::Fresh(stream)
                        } else {
                            Phase::Sniff(Client::Plain(stream), Vec::new())
                        };
                        if let Err(e) = self.add(fd, id << 1) {
                            log::warn!("dp-server: cannot watch a new connection: {e}");
                            shared.metrics.connections_active.fetch_sub(1, Ordering::Relaxed);
                            continue;
                        }
                        let deadline = Some(Instant::now() + shared.read_header_timeout);
                        conns.insert(id, Conn { phase, peer, deadline, grpc_port: None });
                        pending.insert(id);
                        due.push(id);
                    }
                } else {
                    due.push(ev.u64 >> 1);
                }
            }
            for id in due {
                let Some(conn) = conns.get_mut(&id) else { continue };
                if !self.drive(shared, id, conn) {
                    self.close(shared, id, conns.remove(&id), &mut pending);
                } else if conn.deadline.is_none() {
                    pending.remove(&id);
                }
            }
            let now = Instant::now();
            if now >= next_tick {
                next_tick = now + TICK;
                let late: Vec<u64> = pending
                    .iter()
                    .copied()
                    .filter(|id| conns.get(id).and_then(|c| c.deadline).is_some_and(|d| d <= now))
                    .collect();
                for id in late {
                    Metrics::inc(&shared.metrics.handshake_timeouts);
                    if let Some(c) = conns.get(&id) {
                        self.note(shared, &c.peer, "handshake timeout", || {
                            format!(
                                "no TLS handshake and request within dpServer.readHeaderTimeout ({:?})",
                                shared.read_header_timeout
                            )
                        });
                    }
                    self.close(shared, id, conns.remove(&id), &mut pending);
                }
            }
        }
        for (id, c) in conns.drain() {
            self.close(shared, id, Some(c), &mut pending);
        }
    }

    fn close(&self, shared: &Shared, id: u64, conn: Option<Conn>, pending: &mut HashSet<u64>) {
        pending.remove(&id);
        let Some(conn) = conn else { return };
        if let Some(port) = conn.grpc_port {
            shared.peers.unregister(port, id);
        }
        shared.metrics.connections_active.fetch_sub(1, Ordering::Relaxed);
        // Dropping the streams closes the sockets, which also takes them out of epoll.
        drop(conn);
    }

    /// A rate-limited line about a misbehaving client.
    fn note(&self, shared: &Shared, peer: &SocketAddr, what: &'static str, detail: impl FnOnce() -> String) {
        if let Some(n) = shared.log_limiter.allow(&peer.ip().to_string(), what) {
            log::warn!("dp-server: connection from {peer}: {}{}", detail(), suppressed_note(n));
        }
    }

    /// Moves `conn` on as far as it can go now; false = close it.
    fn drive(&self, shared: &Shared, id: u64, conn: &mut Conn) -> bool {
        loop {
            let phase = std::mem::replace(&mut conn.phase, Phase::Gone);
            let step = match phase {
                Phase::Fresh(stream) => match peek_first(&stream) {
                    Ok(None) => Step::Wait(Phase::Fresh(stream)),
                    Ok(Some(TLS_HANDSHAKE)) => match shared.tls.as_ref().map(|t| t.acceptor().accept(stream)) {
                        Some(Ok(s)) => Step::Next(Phase::Sniff(Client::Tls(Box::new(s)), Vec::new())),
                        Some(Err(HandshakeError::WouldBlock(mid))) => Step::Wait(Phase::Handshake(mid)),
                        Some(Err(e)) => self.handshake_failed(shared, &conn.peer, e),
                        None => Step::Close,
                    },
                    Ok(Some(_)) => {
                        self.refuse_plaintext(shared, stream, &conn.peer);
                        Step::Close
                    }
                    Err(_) => Step::Close,
                },
                Phase::Handshake(mid) => match mid.handshake() {
                    Ok(s) => Step::Next(Phase::Sniff(Client::Tls(Box::new(s)), Vec::new())),
                    Err(HandshakeError::WouldBlock(mid)) => Step::Wait(Phase::Handshake(mid)),
                    Err(e) => self.handshake_failed(shared, &conn.peer, e),
                },
                Phase::Sniff(mut client, mut seen) => match route(&mut client, &mut seen) {
                    Ok(None) => Step::Wait(Phase::Sniff(client, seen)),
                    Ok(Some(grpc)) => match self.connect(shared, id, conn, grpc) {
                        Some(backend) => {
                            Step::Next(Phase::Spliced(Box::new(Splice::new(client, backend, Buf::with(&seen)))))
                        }
                        None => Step::Close,
                    },
                    Err(_) => Step::Close,
                },
                Phase::Spliced(mut splice) => match splice.pump() {
                    State::Open => Step::Wait(Phase::Spliced(splice)),
                    State::Closed => Step::Close,
                },
                Phase::Gone => Step::Close,
            };
            match step {
                Step::Wait(p) => {
                    conn.phase = p;
                    return true;
                }
                Step::Next(p) => conn.phase = p,
                Step::Close => return false,
            }
        }
    }

    fn handshake_failed<S>(&self, shared: &Shared, peer: &SocketAddr, e: HandshakeError<S>) -> Step {
        Metrics::inc(&shared.metrics.tls_handshake_failures);
        self.note(shared, peer, "tls handshake failed", || {
            let detail = match &e {
                HandshakeError::SetupFailure(s) => s.to_string(),
                HandshakeError::Failure(m) => m.error().to_string(),
                HandshakeError::WouldBlock(_) => "would block".to_string(),
            };
            format!("TLS handshake failed: {}", crate::logsafe::clean(&detail))
        });
        Step::Close
    }

    /// Opens the connection to the internal server a client was routed to.
    fn connect(&self, shared: &Shared, id: u64, conn: &mut Conn, grpc: bool) -> Option<TcpStream> {
        let target = if grpc { shared.grpc } else { shared.http };
        let backend = match TcpStream::connect_timeout(&target, BACKEND_CONNECT_TIMEOUT) {
            Ok(b) => b,
            Err(e) => {
                log::error!("dp-server: cannot reach the internal {} server at {target}: {e}", name(grpc));
                return None;
            }
        };
        let _ = backend.set_nodelay(true);
        if backend.set_nonblocking(true).is_err() {
            return None;
        }
        if grpc {
            let port = backend.local_addr().ok()?.port();
            shared.peers.register(port, conn.peer, id);
            conn.grpc_port = Some(port);
            Metrics::inc(&shared.metrics.connections_grpc);
        } else {
            Metrics::inc(&shared.metrics.connections_http);
        }
        if let Err(e) = self.add(backend.as_raw_fd(), (id << 1) | 1) {
            log::warn!("dp-server: cannot watch a backend connection: {e}");
            return None;
        }
        conn.deadline = None;
        log::debug!("dp-server: {} routed to {}", conn.peer, name(grpc));
        Some(backend)
    }

    /// A plaintext client on the TLS port: an HTTP/1 one gets Go's answer, anything else
    /// (gRPC's preface) just a closed connection.
    fn refuse_plaintext(&self, shared: &Shared, mut stream: TcpStream, peer: &SocketAddr) {
        Metrics::inc(&shared.metrics.plaintext_refused);
        self.note(shared, peer, "plaintext on the TLS port", || {
            "plaintext connection to the TLS port refused (give the sidecar the CA: higuma dp run --ca-cert-file)"
                .into()
        });
        let mut head = [0u8; 4];
        if matches!(stream.peek(&mut head), Ok(4)) && &head != b"PRI " && head.iter().all(u8::is_ascii_uppercase) {
            let _ = stream.write_all(
                b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n",
            );
        }
    }
}

fn name(grpc: bool) -> &'static str {
    if grpc {
        "gRPC (ADS)"
    } else {
        "HTTP (/bootstrap)"
    }
}

/// What driving a connection one step gave.
enum Step {
    /// Stay in this phase until the next readiness event.
    Wait(Phase),
    /// Go on at once with this phase.
    Next(Phase),
    Close,
}

/// The first byte, without consuming it; `None` while nothing arrived.
fn peek_first(stream: &TcpStream) -> io::Result<Option<u8>> {
    let mut b = [0u8; 1];
    match stream.peek(&mut b) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(_) => Ok(Some(b[0])),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

/// Decides where a connection goes: `Some(true)` gRPC, `Some(false)` HTTP, `None` not yet.
/// Bytes read to decide are kept in `seen` for the backend.
fn route(client: &mut Client, seen: &mut Vec<u8>) -> io::Result<Option<bool>> {
    if let Client::Tls(s) = client {
        match s.ssl().selected_alpn_protocol() {
            Some(p) if p == ALPN_H2 => return Ok(Some(true)),
            Some(p) if p == ALPN_HTTP1 => return Ok(Some(false)),
            _ => {}
        }
    }
    // No ALPN (or plaintext): HTTP/2 with prior knowledge starts with the preface, which
    // no HTTP/1 request line does.
    loop {
        if !H2_PREFACE.starts_with(seen) {
            return Ok(Some(false));
        }
        if seen.len() == H2_PREFACE.len() {
            return Ok(Some(true));
        }
        let mut b = [0u8; 24];
        let want = H2_PREFACE.len() - seen.len();
        match client.read_some(&mut b[..want]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => seen.extend_from_slice(&b[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}
