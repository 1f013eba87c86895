//! Access logs to TCP collectors through the dataplane's named pipe, Kuma's mechanism: Envoy's
//! file logger writes each entry to the pipe, and the dataplane agent (`higuma dp run`, as
//! kuma-dp) reads the lines and sends each one to its collector over TCP.
//!
//! Both sides derive the pipe's path from the dataplane's name and mesh ([`socket_path`]), as
//! Kuma's `AccessLogSocketName` does; the control plane needs no per-connection metadata and
//! the path is part of the resolved conf. A line is either TrafficLog's `<address>;<line>` or
//! MeshAccessLog's JSON `{"address": ..., "message": ...}` (`message` a string or an object).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where kuma-dp puts its sockets by default (`dataplaneRuntime.socketDir`).
const SOCKET_DIR: &str = "/tmp";
/// Kuma cuts the name so that the path fits a Unix socket address (historically the pipe was
/// a socket).
const MAX_STEM: usize = 100;
/// A collector that does not accept a connection within this long loses the line rather than
/// stalling every other collector's lines behind it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a failed connection, lines for that collector are dropped without trying again for
/// this long, so one dead collector costs one timeout per interval, not one per line.
const RETRY_AFTER: Duration = Duration::from_secs(5);

/// The pipe of dataplane `name` in `mesh`: `/tmp/kuma-al-<name>-<mesh>.sock`.
pub fn socket_path(name: &str, mesh: &str) -> String {
    let mut stem = format!("{SOCKET_DIR}/kuma-al-{name}-{mesh}");
    let mut cut = stem.len().min(MAX_STEM);
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    stem.truncate(cut);
    stem.push_str(".sock");
    stem
}

/// Where one line goes and what is sent.
#[derive(Debug, PartialEq, Eq)]
pub struct Line {
    pub address: String,
    pub message: String,
}

impl Line {
    /// Reads one line written by Envoy; `None` if it names no collector.
    pub fn parse(raw: &str) -> Option<Line> {
        let raw = raw.trim_end_matches(['\n', '\r']);
        if raw.starts_with('{') {
            let v: serde_json::Value = serde_json::from_str(raw).ok()?;
            let address = v.get("address")?.as_str()?.to_string();
            let message = match v.get("message")? {
                serde_json::Value::String(s) => s.trim_end_matches(['\n', '\r']).to_string(),
                other => other.to_string(),
            };
            return Some(Line { address, message });
        }
        let (address, message) = raw.split_once(';')?;
        (!address.is_empty()).then(|| Line { address: address.to_string(), message: message.to_string() })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PipeError {
    #[error("creating the access-log pipe {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("opening the access-log pipe {path}: {source}")]
    Open { path: String, source: std::io::Error },
}

/// Sends lines to their collectors, one connection per address, reconnecting once when a
/// connection broke.
#[derive(Default)]
pub struct Sender {
    connections: HashMap<String, TcpStream>,
    /// When each unreachable collector last failed.
    down: HashMap<String, Instant>,
}

impl Sender {
    pub fn send(&mut self, line: &Line) {
        if self.down.get(&line.address).is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return;
        }
        let payload = format!("{}\n", line.message);
        for attempt in 0..2 {
            if !self.connections.contains_key(&line.address) {
                match connect(&line.address) {
                    Ok(c) => {
                        self.down.remove(&line.address);
                        self.connections.insert(line.address.clone(), c);
                    }
                    Err(e) => {
                        log::warn!(
                            "access logs: cannot reach {}: {e}; its lines are dropped for {RETRY_AFTER:?}",
                            line.address
                        );
                        self.down.insert(line.address.clone(), Instant::now());
                        return;
                    }
                }
            }
            let Some(conn) = self.connections.get_mut(&line.address) else { return };
            match conn.write_all(payload.as_bytes()) {
                Ok(()) => return,
                Err(e) => {
                    self.connections.remove(&line.address);
                    if attempt == 1 {
                        log::warn!("access logs: writing to {}: {e}; line dropped", line.address);
                    }
                }
            }
        }
    }
}

fn connect(address: &str) -> std::io::Result<TcpStream> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "address resolves to nothing");
    for a in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&a, CONNECT_TIMEOUT) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Forwards every line of `reader` until it ends or `stop` is set.
pub fn forward(reader: impl BufRead, stop: &AtomicBool) {
    let mut sender = Sender::default();
    for raw in reader.lines() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(raw) = raw else { continue };
        match Line::parse(&raw) {
            Some(line) => sender.send(&line),
            None if raw.is_empty() => {}
            None => log::warn!("access logs: a line names no collector: {raw:?}"),
        }
    }
}

/// The pipe of a running dataplane and the thread reading it; dropping it stops the thread
/// and removes the pipe.
pub struct Forwarder {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    /// A write end of our own: it wakes the reader at drop.
    wake: std::fs::File,
}

impl Forwarder {
    /// Creates the pipe at `path` (replacing whatever is there) and starts forwarding.
    pub fn start(path: &Path) -> Result<Forwarder, PipeError> {
        let shown = path.display().to_string();
        let _ = std::fs::remove_file(path);
        let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
            .map_err(|e| PipeError::Create { path: shown.clone(), source: std::io::Error::other(e) })?;
        // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call; mkfifo
        // only reads it.
        if unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) } != 0 {
            return Err(PipeError::Create { path: shown, source: std::io::Error::last_os_error() });
        }
        // Read and write: opening a pipe for reading alone blocks until a writer appears, and
        // the reader would see end-of-file each time Envoy reopens the file.
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| PipeError::Open { path: shown.clone(), source: e })?;
        let wake = file.try_clone().map_err(|e| PipeError::Open { path: shown, source: e })?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        crate::threads::spawn(crate::threads::ACCESS_LOGS.to_string(), move || forward(BufReader::new(file), &flag));
        Ok(Forwarder { path: path.to_path_buf(), stop, wake })
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write_all(b"\n");
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::net::TcpListener;

    #[test]
    fn kumas_path_cut_to_fit_a_socket_address() {
        assert_eq!(socket_path("web-1", "default"), "/tmp/kuma-al-web-1-default.sock");
        let long = socket_path(&"a".repeat(200), "default");
        assert_eq!(long.len(), MAX_STEM + ".sock".len());
    }

    #[test]
    fn both_line_shapes() {
        assert_eq!(
            Line::parse("logstash:1234;[x] web->backend\n"),
            Some(Line { address: "logstash:1234".into(), message: "[x] web->backend".into() })
        );
        assert_eq!(
            Line::parse(r#"{"address":"127.0.0.1:9","message":"GET / 200\n"}"#),
            Some(Line { address: "127.0.0.1:9".into(), message: "GET / 200".into() })
        );
        let obj = Line::parse(r#"{"address":"a:1","message":{"code":"200"}}"#).unwrap();
        assert_eq!(obj.message, r#"{"code":"200"}"#);
        assert_eq!(Line::parse("no collector"), None);
        assert_eq!(Line::parse(";x"), None);
    }

    #[test]
    fn an_unreachable_collector_is_not_retried_for_every_line() {
        let dead = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().to_string();
        let mut sender = Sender::default();
        let line = Line { address: dead.clone(), message: "x".into() };
        sender.send(&line);
        let failed_at = sender.down[&dead];
        sender.send(&line);
        assert_eq!(sender.down[&dead], failed_at, "retried within {RETRY_AFTER:?}");
        assert!(sender.connections.is_empty());
    }

    #[test]
    fn lines_written_to_the_pipe_reach_their_collector() {
        let collector = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = collector.local_addr().unwrap().to_string();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("al.sock");
        let forwarder = Forwarder::start(&path).unwrap();
        // As Envoy does: open, write, close, open again.
        for n in 0..2 {
            let mut w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            writeln!(w, "{address};line {n}").unwrap();
        }
        let (mut conn, _) = collector.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 256];
        while got.matches('\n').count() < 2 {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "collector connection closed after {got:?}");
            got.push_str(std::str::from_utf8(&buf[..n]).unwrap());
        }
        assert_eq!(got, "line 0\nline 1\n");
        drop(forwarder);
        assert!(!path.exists());
    }
}
