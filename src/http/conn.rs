//! One connection: requests read under deadlines and size limits, answers written under a
//! write time-out, keep-alive between them. Everything a client sends is bounded here
//! before a handler sees it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::metrics::{Limit, LimitCounters};
use super::{ErrorRenderer, Handler, Limits, Request, Response};

/// httparse needs a fixed header array; more headers than this is no real client.
const MAX_HEADERS: usize = 100;
/// Bytes read from the socket at a time.
const READ_CHUNK: usize = 8 * 1024;
/// An idle keep-alive connection checks this often whether it should give its worker up.
const IDLE_SLICE: Duration = Duration::from_millis(100);
/// A chunk-size line (hex size plus extensions) longer than this is not a real client.
const MAX_CHUNK_LINE: usize = 1024;
/// Log lines quote at most this much of anything a client sent.
const LOG_QUOTE: usize = 200;

/// What [`serve`] reads from and writes to: a socket, a TLS stream, or bytes in a test.
pub trait Transport: Read + Write {
    /// Makes the following reads fail once `deadline` has passed.
    fn set_read_deadline(&mut self, deadline: Instant) -> io::Result<()>;
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()>;
    /// Waits up to `wait` for the next byte without consuming it.
    fn wait_readable(&mut self, wait: Duration) -> Readiness;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Timeout,
    Closed,
}

/// `start + limit`; a limit too long for the clock (a `Limits` built in code is not bound by
/// the config's range) means a century, not a panic.
fn deadline_after(start: Instant, limit: Duration) -> Instant {
    const CENTURY: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    start.checked_add(limit).or_else(|| start.checked_add(CENTURY)).unwrap_or(start)
}

fn remaining(deadline: Instant) -> Duration {
    // A zero time-out means "block forever" to the OS: keep at least a millisecond.
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}

fn peek(s: &TcpStream, wait: Duration) -> Readiness {
    if s.set_read_timeout(Some(wait.max(Duration::from_millis(1)))).is_err() {
        return Readiness::Closed;
    }
    match s.peek(&mut [0u8; 1]) {
        Ok(0) => Readiness::Closed,
        Ok(_) => Readiness::Ready,
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Readiness::Timeout,
        Err(_) => Readiness::Closed,
    }
}

/// Plain TCP.
pub struct TcpTransport(pub TcpStream);

impl Read for TcpTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TcpTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for TcpTransport {
    fn set_read_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        self.0.set_read_timeout(Some(remaining(deadline)))
    }
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.0.set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
    fn wait_readable(&mut self, wait: Duration) -> Readiness {
        peek(&self.0, wait)
    }
}

/// TLS over TCP; the deadlines apply to the socket underneath.
pub struct TlsTransport(pub openssl::ssl::SslStream<TcpStream>);

impl Read for TlsTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Transport for TlsTransport {
    fn set_read_deadline(&mut self, deadline: Instant) -> io::Result<()> {
        self.0.get_ref().set_read_timeout(Some(remaining(deadline)))
    }
    fn set_write_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.0.get_ref().set_write_timeout(Some(timeout.max(Duration::from_millis(1))))
    }
    fn wait_readable(&mut self, wait: Duration) -> Readiness {
        // Decrypted bytes already buffered by OpenSSL never show on the socket.
        if self.0.ssl().pending() > 0 {
            return Readiness::Ready;
        }
        peek(self.0.get_ref(), wait)
    }
}

/// What a connection needs from its server.
pub struct ConnCtx<'a> {
    pub handler: &'a Handler,
    pub limits: Limits,
    pub errors: ErrorRenderer,
    pub counters: &'a LimitCounters,
    pub peer: Option<SocketAddr>,
    pub secure: bool,
    /// True when the worker should drop an idle connection (stopping, or others waiting).
    pub should_yield: &'a dyn Fn() -> bool,
}

/// Why reading a request stopped.
enum ReadFail {
    /// The client closed the connection (or it broke): nothing to answer.
    Gone,
    /// Answer this and close.
    Answer(Response),
}

/// Quotes client-supplied text for a log line: bounded, control characters escaped.
pub fn short(text: &str) -> String {
    let mut out: String = text.chars().take(LOG_QUOTE).flat_map(char::escape_default).collect();
    if text.chars().count() > LOG_QUOTE {
        out.push_str("...");
    }
    out
}

/// Serves requests on one connection until it closes, errs, or should yield.
pub fn serve<T: Transport>(t: &mut T, ctx: &ConnCtx<'_>) {
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    let mut first = true;
    loop {
        if !first && buf.is_empty() && !wait_for_next(t, ctx) {
            return;
        }
        first = false;
        let started = Instant::now();
        let (request, close) = match read_request(t, &mut buf, ctx, started) {
            Ok(r) => r,
            Err(ReadFail::Gone) => return,
            Err(ReadFail::Answer(resp)) => {
                if write_response(t, ctx, &resp, true, false).is_ok() {
                    linger(t);
                }
                return;
            }
        };
        // A handler bug must not cost the pool a worker: the client gets a 500, the
        // connection closes, the worker goes on.
        let (response, failed) =
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.handler)(&request))) {
                Ok(r) => (r, false),
                Err(_) => {
                    log::error!("http: the handler of {} {} panicked", request.method, short(&request.path));
                    ((ctx.errors)(500, "Internal Server Error", "the request could not be handled"), true)
                }
            };
        log::debug!(
            "http: {} {} from {} -> {} in {:?}",
            request.method,
            short(&request.path),
            ctx.peer.map(|p| p.to_string()).unwrap_or_default(),
            response.status,
            started.elapsed()
        );
        let close = close || failed || (ctx.should_yield)();
        if write_response(t, ctx, &response, close, request.method == "HEAD").is_err() || close {
            return;
        }
    }
}

/// After an early error answer (413 before the body was read), the client may still be
/// sending: closing with unread bytes makes the kernel reset the connection, and the client
/// loses the answer. Read and drop what follows for a short, bounded while first (a
/// "lingering close").
const LINGER: Duration = Duration::from_secs(1);
const LINGER_BYTES: usize = 8 << 20;

fn linger<T: Transport>(t: &mut T) {
    let deadline = Instant::now() + LINGER;
    let mut scratch = [0u8; 16 * 1024];
    let mut drained = 0;
    // The deadline is re-armed before every read: a socket time-out bounds one read, and a
    // client trickling bytes would otherwise hold the worker for as long as it trickles.
    while drained < LINGER_BYTES && Instant::now() < deadline {
        if t.set_read_deadline(deadline).is_err() {
            return;
        }
        match t.read(&mut scratch) {
            Ok(0) | Err(_) => return,
            Ok(n) => drained += n,
        }
    }
}

/// Waits for the first byte of the next request on a kept-alive connection.
fn wait_for_next<T: Transport>(t: &mut T, ctx: &ConnCtx<'_>) -> bool {
    let deadline = deadline_after(Instant::now(), ctx.limits.idle_timeout);
    loop {
        if (ctx.should_yield)() {
            // A request already on its way is served, not reset: closing with unread bytes
            // makes the kernel answer RST, and the client loses a request it may have sent
            // before our last response told it nothing about closing.
            return t.wait_readable(Duration::ZERO) == Readiness::Ready;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        match t.wait_readable(IDLE_SLICE.min(deadline - now)) {
            Readiness::Ready => return true,
            Readiness::Closed => return false,
            Readiness::Timeout => {}
        }
    }
}

/// Appends up to one chunk from `t`, failing once `deadline` has passed.
fn fill<T: Transport>(
    t: &mut T,
    buf: &mut Vec<u8>,
    deadline: Instant,
    on_timeout: Limit,
    ctx: &ConnCtx<'_>,
) -> Result<(), ReadFail> {
    if Instant::now() >= deadline {
        return Err(timed_out(on_timeout, ctx));
    }
    if t.set_read_deadline(deadline).is_err() {
        return Err(ReadFail::Gone);
    }
    let mut chunk = [0u8; READ_CHUNK];
    match t.read(&mut chunk) {
        Ok(0) => Err(ReadFail::Gone),
        Ok(n) => {
            buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
            Ok(())
        }
        Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
            Err(timed_out(on_timeout, ctx))
        }
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
        Err(_) => Err(ReadFail::Gone),
    }
}

fn timed_out(limit: Limit, ctx: &ConnCtx<'_>) -> ReadFail {
    ctx.counters.hit(limit);
    log::debug!("http: {} too slow: {}", ctx.peer.map(|p| p.to_string()).unwrap_or_default(), limit.label());
    ReadFail::Answer((ctx.errors)(
        408,
        "Request Timeout",
        &format!("the request did not arrive in time ({})", limit.label()),
    ))
}

fn answer(ctx: &ConnCtx<'_>, status: u16, title: &str, detail: impl Into<String>) -> ReadFail {
    ReadFail::Answer((ctx.errors)(status, title, &detail.into()))
}

/// A parsed request head: what the body reader and the handler need from it.
struct Head {
    method: String,
    target: String,
    minor_version: u8,
    headers: Vec<(String, String)>,
    len: usize,
}

/// Parses a complete head at the start of `buf`; `Ok(None)` when more bytes are needed.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut slots);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(format!("more than {MAX_HEADERS} headers")),
        Err(e) => return Err(format!("malformed request: {e}")),
    };
    let mut headers = Vec::with_capacity(req.headers.len());
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).map_err(|_| format!("header {} is not UTF-8", short(h.name)))?;
        headers.push((h.name.to_string(), value.trim().to_string()));
    }
    Ok(Some(Head {
        method: req.method.unwrap_or_default().to_ascii_uppercase(),
        target: req.path.unwrap_or_default().to_string(),
        minor_version: req.version.unwrap_or(1),
        headers,
        len,
    }))
}

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

fn has_token(headers: &[(String, String)], name: &str, token: &str) -> bool {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .any(|(_, v)| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
}

enum Framing {
    None,
    Length(usize),
    Chunked,
}

fn framing(headers: &[(String, String)], ctx: &ConnCtx<'_>) -> Result<Framing, ReadFail> {
    let te: Vec<&str> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Transfer-Encoding")).map(|(_, v)| v.as_str()).collect();
    let lengths: Vec<&str> =
        headers.iter().filter(|(k, _)| k.eq_ignore_ascii_case("Content-Length")).map(|(_, v)| v.as_str()).collect();
    if !te.is_empty() {
        // RFC 9112 §6.1: both framings at once is how requests get smuggled; refuse it.
        if !lengths.is_empty() {
            return Err(answer(ctx, 400, "Bad Request", "both Transfer-Encoding and Content-Length"));
        }
        let last = te.last().and_then(|v| v.split(',').next_back()).map(str::trim).unwrap_or("");
        if !last.eq_ignore_ascii_case("chunked") {
            return Err(answer(ctx, 501, "Not Implemented", format!("transfer coding {:?}", short(last))));
        }
        return Ok(Framing::Chunked);
    }
    let mut length: Option<usize> = None;
    for v in lengths {
        let n: usize = match v.trim().parse() {
            Ok(n) if v.trim().bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(answer(ctx, 400, "Bad Request", format!("invalid Content-Length {:?}", short(v)))),
        };
        if length.is_some_and(|l| l != n) {
            return Err(answer(ctx, 400, "Bad Request", "conflicting Content-Length headers"));
        }
        length = Some(n);
    }
    Ok(length.map_or(Framing::None, Framing::Length))
}

fn too_large(ctx: &ConnCtx<'_>) -> ReadFail {
    ctx.counters.hit(Limit::BodySize);
    answer(
        ctx,
        413,
        "Payload Too Large",
        format!("request body exceeds the limit of {} bytes", ctx.limits.max_body_bytes),
    )
}

/// Reads one request; on success `buf` keeps what followed it (a pipelined request).
fn read_request<T: Transport>(
    t: &mut T,
    buf: &mut Vec<u8>,
    ctx: &ConnCtx<'_>,
    started: Instant,
) -> Result<(Request, bool), ReadFail> {
    let limits = ctx.limits;
    let head_deadline = deadline_after(started, limits.read_header_timeout);
    let deadline = deadline_after(started, limits.read_timeout);
    let head = loop {
        match parse_head(buf) {
            Ok(Some(head)) if head.len <= limits.max_header_bytes => break head,
            Ok(Some(_)) | Ok(None) if buf.len() > limits.max_header_bytes => {
                ctx.counters.hit(Limit::HeaderSize);
                return Err(answer(
                    ctx,
                    431,
                    "Request Header Fields Too Large",
                    format!("the request line and headers exceed {} bytes", limits.max_header_bytes),
                ));
            }
            Ok(_) => fill(t, buf, head_deadline.min(deadline), Limit::HeaderTimeout, ctx)?,
            Err(reason) => {
                if buf.iter().all(|b| b.is_ascii_whitespace()) {
                    // Stray line breaks between requests are allowed (RFC 9112 §2.2).
                    buf.clear();
                    continue;
                }
                return Err(answer(ctx, 400, "Bad Request", reason));
            }
        }
    };
    let framing = framing(&head.headers, ctx)?;
    let body_start = head.len;
    let expects_continue = has_token(&head.headers, "Expect", "100-continue");
    let mut continued = false;
    let mut send_continue = |t: &mut T, buf_len: usize| {
        // Only when the client is really waiting: nothing of the body has arrived yet.
        if expects_continue && !continued && buf_len == body_start && head.minor_version >= 1 {
            continued = true;
            let _ = t.set_write_timeout(limits.write_timeout);
            let _ = t.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").and_then(|_| t.flush());
        }
    };
    let (body, consumed) = match framing {
        Framing::None => (Vec::new(), body_start),
        Framing::Length(n) => {
            if n > limits.max_body_bytes {
                return Err(too_large(ctx));
            }
            let end = body_start.checked_add(n).ok_or_else(|| too_large(ctx))?;
            while buf.len() < end {
                send_continue(t, buf.len());
                fill(t, buf, deadline, Limit::ReadTimeout, ctx)?;
            }
            (buf.get(body_start..end).unwrap_or_default().to_vec(), end)
        }
        Framing::Chunked => {
            let mut body = Vec::new();
            let mut pos = body_start;
            loop {
                match decode_chunk(buf, pos, limits.max_body_bytes.saturating_sub(body.len())) {
                    Ok(Some(Chunk::Data { start, end, next })) => {
                        body.extend_from_slice(buf.get(start..end).unwrap_or_default());
                        pos = next;
                    }
                    Ok(Some(Chunk::Last { next })) => break (body, next),
                    Ok(None) => {
                        if buf.len() - body_start > limits.max_body_bytes.saturating_add(64 * 1024) {
                            // Chunk framing or trailers far beyond the body limit.
                            return Err(too_large(ctx));
                        }
                        send_continue(t, buf.len());
                        fill(t, buf, deadline, Limit::ReadTimeout, ctx)?;
                    }
                    Err(ChunkError::TooLarge) => return Err(too_large(ctx)),
                    Err(ChunkError::Malformed(why)) => return Err(answer(ctx, 400, "Bad Request", why)),
                }
            }
        }
    };
    buf.drain(..consumed.min(buf.len()));
    let close = if head.minor_version == 0 {
        !has_token(&head.headers, "Connection", "keep-alive")
    } else {
        has_token(&head.headers, "Connection", "close")
    };
    let request = build_request(head, body, ctx)?;
    Ok((request, close))
}

fn build_request(head: Head, body: Vec<u8>, ctx: &ConnCtx<'_>) -> Result<Request, ReadFail> {
    // Absolute-form targets (`http://host/path`) come from proxies; the path is what counts.
    let target = match head.target.split_once("://") {
        Some((_, rest)) => rest.find('/').map(|i| rest[i..].to_string()).unwrap_or_else(|| "/".into()),
        None => head.target,
    };
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), form_urlencoded::parse(q.as_bytes()).into_owned().collect()),
        None => (target, Vec::new()),
    };
    let body = if matches!(head.method.as_str(), "PUT" | "POST") {
        Some(
            String::from_utf8(body)
                .map_err(|_| answer(ctx, 400, "Bad Request", "the request body is not valid UTF-8"))?,
        )
    } else {
        None
    };
    Ok(Request {
        host: header(&head.headers, "Host").map(str::to_string),
        method: head.method,
        path,
        query,
        headers: head.headers,
        body,
        peer: ctx.peer,
        secure: ctx.secure,
    })
}

enum Chunk {
    Data { start: usize, end: usize, next: usize },
    Last { next: usize },
}

enum ChunkError {
    TooLarge,
    Malformed(String),
}

fn find_crlf(buf: &[u8], from: usize, max: usize) -> Result<Option<usize>, ChunkError> {
    let window = buf.get(from..).unwrap_or_default();
    match window.windows(2).position(|w| w == b"\r\n") {
        Some(i) if i <= max => Ok(Some(from + i)),
        Some(_) => Err(ChunkError::Malformed("chunk line too long".into())),
        None if window.len() > max => Err(ChunkError::Malformed("chunk line too long".into())),
        None => Ok(None),
    }
}

/// Decodes the chunk at `pos`; `Ok(None)` when more bytes are needed. `allowance` is how
/// much more body may arrive.
fn decode_chunk(buf: &[u8], pos: usize, allowance: usize) -> Result<Option<Chunk>, ChunkError> {
    let Some(eol) = find_crlf(buf, pos, MAX_CHUNK_LINE)? else { return Ok(None) };
    let line = std::str::from_utf8(buf.get(pos..eol).unwrap_or_default())
        .map_err(|_| ChunkError::Malformed("chunk size is not text".into()))?;
    let size_text = line.split(';').next().unwrap_or("").trim();
    if size_text.is_empty() || size_text.len() > 16 || !size_text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ChunkError::Malformed(format!("invalid chunk size {:?}", short(size_text))));
    }
    let size = u64::from_str_radix(size_text, 16).map_err(|_| ChunkError::TooLarge)?;
    let start = eol + 2;
    if size == 0 {
        // Trailers end with an empty line; they are read and dropped.
        let mut at = start;
        loop {
            let Some(end) = find_crlf(buf, at, MAX_CHUNK_LINE * 8)? else { return Ok(None) };
            if end == at {
                return Ok(Some(Chunk::Last { next: end + 2 }));
            }
            at = end + 2;
        }
    }
    let size = usize::try_from(size).map_err(|_| ChunkError::TooLarge)?;
    if size > allowance {
        return Err(ChunkError::TooLarge);
    }
    let end = start.checked_add(size).ok_or(ChunkError::TooLarge)?;
    let Some(tail) = buf.get(end..end.saturating_add(2)) else { return Ok(None) };
    if tail.len() < 2 {
        return Ok(None);
    }
    if tail != b"\r\n" {
        return Err(ChunkError::Malformed("chunk data not followed by CRLF".into()));
    }
    Ok(Some(Chunk::Data { start, end, next: end + 2 }))
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        _ => "",
    }
}

fn write_response<T: Transport>(
    t: &mut T,
    ctx: &ConnCtx<'_>,
    resp: &Response,
    close: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len()
    );
    for (name, value) in &resp.headers {
        // Handlers set these from constants; a line break in one would split the response.
        if !value.contains(['\r', '\n']) {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    if close {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&resp.body);
    }
    t.set_write_timeout(ctx.limits.write_timeout)?;
    let result = t.write_all(&bytes).and_then(|_| t.flush());
    if let Err(e) = &result {
        if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) {
            ctx.counters.hit(Limit::WriteTimeout);
        }
        log::debug!(
            "http: client {} went away before its answer: {e}",
            ctx.peer.map(|p| p.to_string()).unwrap_or_default()
        );
    }
    result
}

/// An in-memory transport: reads come from `input` (then EOF), writes go to `output`.
/// For tests and fuzz targets; time-outs never fire.
#[derive(Debug, Default)]
pub struct MemoryTransport {
    pub input: std::io::Cursor<Vec<u8>>,
    pub output: Vec<u8>,
    /// Offsets in `input` no read crosses, ascending.
    read_ends: std::collections::VecDeque<u64>,
}

impl MemoryTransport {
    pub fn new(input: Vec<u8>) -> Self {
        MemoryTransport { input: std::io::Cursor::new(input), ..MemoryTransport::default() }
    }

    /// Hands out `reads` one per read at most, as a client that waits for each answer
    /// before it sends the next request.
    pub fn with_reads(reads: &[&[u8]]) -> Self {
        let mut t = MemoryTransport::new(reads.concat());
        let mut end = 0u64;
        t.read_ends = reads
            .iter()
            .map(|r| {
                end += r.len() as u64;
                end
            })
            .collect();
        t
    }
}

impl Read for MemoryTransport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let at = self.input.position();
        while self.read_ends.front().is_some_and(|&end| end <= at) {
            self.read_ends.pop_front();
        }
        let room = self.read_ends.front().map_or(buf.len(), |&end| usize::try_from(end - at).unwrap_or(usize::MAX));
        let n = buf.len().min(room);
        self.input.read(&mut buf[..n])
    }
}

impl Write for MemoryTransport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Transport for MemoryTransport {
    fn set_read_deadline(&mut self, _: Instant) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&mut self, _: Duration) -> io::Result<()> {
        Ok(())
    }
    fn wait_readable(&mut self, _: Duration) -> Readiness {
        let cursor = &self.input;
        if (cursor.position() as usize) < cursor.get_ref().len() {
            Readiness::Ready
        } else {
            Readiness::Closed
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn run(input: &[u8], limits: Limits) -> (String, Vec<Request>) {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let s2 = seen.clone();
        let handler: Handler = Arc::new(move |r: &Request| {
            s2.lock().unwrap().push(r.clone());
            Response::text(200, "ok")
        });
        let counters = LimitCounters::default();
        let ctx = ConnCtx {
            handler: &handler,
            limits,
            errors: super::super::text_error,
            counters: &counters,
            peer: None,
            secure: false,
            should_yield: &|| false,
        };
        let mut t = MemoryTransport::new(input.to_vec());
        serve(&mut t, &ctx);
        let out = String::from_utf8_lossy(&t.output).into_owned();
        let reqs = seen.lock().unwrap().clone();
        (out, reqs)
    }

    #[test]
    fn keep_alive_pipelining_and_bodies() {
        let input = b"PUT /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n1;ext=1\r\n!\r\n0\r\nX-T: y\r\n\r\nGET /c HTTP/1.1\r\n\r\n";
        let (out, reqs) = run(input, Limits::default());
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 3, "{out}");
        assert_eq!(reqs[0].body.as_deref(), Some("abc"));
        assert_eq!(reqs[0].query, vec![("x".to_string(), "1".to_string())]);
        assert_eq!(reqs[0].host.as_deref(), Some("h"));
        assert_eq!(reqs[1].body.as_deref(), Some("hi!"));
        assert_eq!(reqs[2].path, "/c");
    }

    #[test]
    fn limits_answer_431_413_and_400() {
        let limits = Limits { max_header_bytes: 128, max_body_bytes: 4, ..Limits::default() };
        let (out, reqs) = run(format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(200)).as_bytes(), limits);
        assert!(out.starts_with("HTTP/1.1 431"), "{out}");
        assert!(reqs.is_empty());
        let (out, _) = run(b"PUT / HTTP/1.1\r\nContent-Length: 5\r\n\r\nabcde", limits);
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        let (out, _) = run(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nabcde\r\n0\r\n\r\n", limits);
        assert!(out.starts_with("HTTP/1.1 413"), "{out}");
        let (out, _) = run(b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", limits);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let (out, _) = run(b"PUT / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", limits);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
        let (out, _) = run(b"\x00\x01 garbage\r\n\r\n", limits);
        assert!(out.starts_with("HTTP/1.1 400"), "{out}");
    }

    #[test]
    fn limits_beyond_the_clock_do_not_panic() {
        // Regression (fuzz target `config`): a time-out of 3000000000000000h overflowed
        // `Instant + Duration` on the first request and killed the worker.
        let huge = Duration::MAX;
        let limits = Limits {
            read_header_timeout: huge,
            read_timeout: huge,
            write_timeout: huge,
            idle_timeout: huge,
            ..Limits::default()
        };
        let (out, reqs) = run(b"GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n", limits);
        assert_eq!(reqs.len(), 2, "{out}");
    }

    #[test]
    fn a_request_already_arriving_is_served_when_the_worker_yields_its_idle_connection() {
        // Regression: a worker that had to yield (another client queued) closed its kept-alive
        // connection with the client's next request unread, and the kernel reset it.
        let handler: Handler = Arc::new(|_: &Request| Response::text(200, "ok"));
        let counters = LimitCounters::default();
        let asked = std::cell::Cell::new(0);
        // Not busy while the first response is written, busy from then on.
        let busy = || {
            asked.set(asked.get() + 1);
            asked.get() > 1
        };
        let ctx = ConnCtx {
            handler: &handler,
            limits: Limits::default(),
            errors: super::super::text_error,
            counters: &counters,
            peer: None,
            secure: false,
            should_yield: &busy,
        };
        let mut t = MemoryTransport::with_reads(&[b"GET /a HTTP/1.1\r\n\r\n", b"GET /b HTTP/1.1\r\n\r\n"]);
        serve(&mut t, &ctx);
        let out = String::from_utf8_lossy(&t.output);
        assert_eq!(out.matches("HTTP/1.1 200 OK").count(), 2, "{out}");
        assert!(out.ends_with("ok") && out.matches("Connection: close").count() == 1, "{out}");
    }

    #[test]
    fn http10_closes_and_expect_continue_is_answered() {
        let (out, reqs) = run(b"GET / HTTP/1.0\r\n\r\nGET /again HTTP/1.0\r\n\r\n", Limits::default());
        assert_eq!(reqs.len(), 1);
        assert!(out.contains("Connection: close"), "{out}");
        let (out, reqs) =
            run(b"PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok", Limits::default());
        assert_eq!(reqs[0].body.as_deref(), Some("ok"));
        assert!(out.starts_with("HTTP/1.1 200"), "the body was already there, no 100: {out}");
    }
}
