//! Moving bytes both ways between two non-blocking streams, one of which may be TLS:
//! the DP server between a sidecar's connection and the internal gRPC or HTTP server, and
//! tests between a plaintext gRPC client and the TLS port.
//!
//! [`Splice::pump`] moves whatever can move without blocking and says whether the pair is
//! finished; callers wait for readiness (epoll in the server, `poll` in [`Splice::run`])
//! and call it again. Buffers are allocated while bytes are in flight and released when
//! they drain, so an idle connection costs no buffer memory.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};

use openssl::ssl::{ErrorCode, SslStream};

/// One TLS record's worth: OpenSSL hands out at most 16 KiB per read.
const BUF_BYTES: usize = 16 * 1024;

/// A non-blocking byte stream: `WouldBlock` means "wait for readiness", `Ok(0)` on read
/// means the peer is done sending.
pub trait Side {
    fn raw_fd(&self) -> RawFd;
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize>;
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize>;
    /// No more bytes will be written (TCP FIN, or TLS close_notify).
    fn finish(&mut self);
}

impl Side for TcpStream {
    fn raw_fd(&self) -> RawFd {
        self.as_raw_fd()
    }
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.write(buf)
    }
    fn finish(&mut self) {
        let _ = self.shutdown(std::net::Shutdown::Write);
    }
}

fn ssl_io(e: openssl::ssl::Error) -> io::Result<usize> {
    match e.code() {
        ErrorCode::WANT_READ | ErrorCode::WANT_WRITE => Err(io::ErrorKind::WouldBlock.into()),
        // A clean close_notify, or the peer vanishing without one: either way it is done.
        ErrorCode::ZERO_RETURN => Ok(0),
        ErrorCode::SYSCALL if e.io_error().is_none() => Ok(0),
        _ => Err(e.into_io_error().unwrap_or_else(|e| io::Error::other(e.to_string()))),
    }
}

impl Side for SslStream<TcpStream> {
    fn raw_fd(&self) -> RawFd {
        self.get_ref().as_raw_fd()
    }
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.ssl_read(buf).or_else(ssl_io)
    }
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.ssl_write(buf).or_else(ssl_io)
    }
    fn finish(&mut self) {
        let _ = self.shutdown();
    }
}

/// Bytes read from one side and not yet written to the other.
#[derive(Default)]
pub struct Buf {
    data: Option<Box<[u8]>>,
    start: usize,
    end: usize,
}

impl Buf {
    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    fn has_room(&self) -> bool {
        self.data.is_none() || self.end < BUF_BYTES
    }

    /// Bytes to start with (what was read while deciding where a connection goes).
    pub fn with(bytes: &[u8]) -> Buf {
        let mut b = Buf::default();
        if !bytes.is_empty() {
            let mut data = vec![0u8; BUF_BYTES.max(bytes.len())].into_boxed_slice();
            data[..bytes.len()].copy_from_slice(bytes);
            b.data = Some(data);
            b.end = bytes.len();
        }
        b
    }

    pub fn filled(&self) -> &[u8] {
        self.data.as_deref().map(|d| &d[self.start..self.end]).unwrap_or(&[])
    }

    /// Reads once from `from` into the free space; `Ok(0)` = end of stream.
    pub fn fill(&mut self, from: &mut dyn Side) -> io::Result<usize> {
        let data = self.data.get_or_insert_with(|| vec![0u8; BUF_BYTES].into_boxed_slice());
        let r = from.read_some(&mut data[self.end..]);
        if let Ok(n) = r {
            self.end += n;
        }
        // Nothing to hold (the usual outcome for an idle connection: WouldBlock): give the
        // buffer back, so idle connections cost no buffer memory.
        if self.is_empty() {
            self.release();
        }
        r
    }

    /// Writes once from the filled part to `to`.
    fn drain(&mut self, to: &mut dyn Side) -> io::Result<usize> {
        let n = to.write_some(self.filled())?;
        self.start += n;
        if self.is_empty() {
            self.release();
        }
        Ok(n)
    }

    fn release(&mut self) {
        self.data = None;
        self.start = 0;
        self.end = 0;
    }
}

/// Where a splice stands after a pump.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Open,
    /// Both sides are done, or one failed: drop the splice (closing both).
    Closed,
}

/// Two streams joined: `a`'s bytes go to `b` and back.
pub struct Splice<A: Side, B: Side> {
    pub a: A,
    pub b: B,
    a_to_b: Buf,
    b_to_a: Buf,
    a_done: bool,
    b_done: bool,
    b_finished: bool,
}

fn would_block(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

impl<A: Side, B: Side> Splice<A, B> {
    /// `pending` is what was already read from `a` and must reach `b` first.
    pub fn new(a: A, b: B, pending: Buf) -> Self {
        Splice { a, b, a_to_b: pending, b_to_a: Buf::default(), a_done: false, b_done: false, b_finished: false }
    }

    /// Moves bytes until nothing more can move without blocking.
    pub fn pump(&mut self) -> State {
        match self.pump_inner() {
            Ok(state) => state,
            Err(_) => State::Closed,
        }
    }

    fn pump_inner(&mut self) -> io::Result<State> {
        loop {
            let mut moved = false;
            if !self.a_done && self.a_to_b.has_room() {
                match self.a_to_b.fill(&mut self.a) {
                    Ok(0) => self.a_done = true,
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if !self.a_to_b.is_empty() {
                match self.a_to_b.drain(&mut self.b) {
                    Ok(n) => moved |= n > 0,
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if !self.b_done && self.b_to_a.has_room() {
                match self.b_to_a.fill(&mut self.b) {
                    Ok(0) => self.b_done = true,
                    Ok(_) => moved = true,
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if !self.b_to_a.is_empty() {
                match self.b_to_a.drain(&mut self.a) {
                    Ok(n) => moved |= n > 0,
                    Err(e) if would_block(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if !moved {
                break;
            }
        }
        // `a` finished sending: pass the half-close on and let `b` answer what it got.
        if self.a_done && self.a_to_b.is_empty() && !self.b_finished {
            self.b.finish();
            self.b_finished = true;
        }
        // `b` (the server side) closing ends the connection once its last bytes are out.
        if self.b_done && self.b_to_a.is_empty() {
            self.a.finish();
            return Ok(State::Closed);
        }
        Ok(if self.a_done && self.b_done { State::Closed } else { State::Open })
    }

    /// Pumps until closed, waiting with `poll(2)`: for a single connection on a thread of
    /// its own (tests, tools).
    pub fn run(mut self) {
        while self.pump() == State::Open {
            let (ea, eb) = self.interest();
            let mut p = [
                libc::pollfd { fd: self.a.raw_fd(), events: ea, revents: 0 },
                libc::pollfd { fd: self.b.raw_fd(), events: eb, revents: 0 },
            ];
            // SAFETY: `p` is a valid array of two pollfd structs for the duration of the call.
            // The timeout bounds a wait for readiness poll cannot see (bytes inside OpenSSL).
            if unsafe { libc::poll(p.as_mut_ptr(), 2, POLL_TIMEOUT_MS) } < 0 {
                break;
            }
        }
    }

    /// What to wait for on each side: readable while there is room to read into, writable
    /// while bytes wait for it (asking for writable otherwise would never sleep).
    fn interest(&self) -> (i16, i16) {
        let side = |done: bool, room: bool, pending: bool| {
            let mut e = 0;
            if !done && room {
                e |= libc::POLLIN;
            }
            if pending {
                e |= libc::POLLOUT;
            }
            e
        };
        (
            side(self.a_done, self.a_to_b.has_room(), !self.b_to_a.is_empty()),
            side(self.b_done, self.b_to_a.has_room(), !self.a_to_b.is_empty()),
        )
    }
}

/// [`Splice::run`]'s longest sleep without readiness.
const POLL_TIMEOUT_MS: i32 = 200;

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn bytes_flow_both_ways_and_a_close_ends_the_splice() {
        // client <-> (a ... b) <-> server
        let (mut client, a) = pair();
        let (b, mut server) = pair();
        a.set_nonblocking(true).unwrap();
        b.set_nonblocking(true).unwrap();
        let t = std::thread::spawn(move || Splice::new(a, b, Buf::with(b"hello ")).run());
        client.write_all(b"world").unwrap();
        let mut got = [0u8; 11];
        server.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello world");
        let big = vec![7u8; 1 << 20];
        server.write_all(&big).unwrap();
        let mut back = vec![0u8; 1 << 20];
        client.read_exact(&mut back).unwrap();
        assert_eq!(back, big);
        drop(server);
        let mut rest = Vec::new();
        client.read_to_end(&mut rest).unwrap();
        assert!(rest.is_empty());
        t.join().unwrap();
    }
}
