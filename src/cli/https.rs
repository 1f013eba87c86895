//! One HTTP/1.1 POST over TLS (or plaintext), for `POST /bootstrap` on the DP server: the
//! REST client (ureq) is built without TLS, and this is the only TLS request the CLI makes.
//! TLS verifies the server against `--ca-cert-file` alone when given (the system's CAs
//! otherwise) and checks that its certificate names the host dialled.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use openssl::ssl::{SslConnector, SslMethod, SslVerifyMode};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

/// Answers are an Envoy bootstrap (tens of KiB); anything past this is not one.
const MAX_ANSWER_BYTES: u64 = 16 * 1024 * 1024;

pub struct Answer {
    pub status: u16,
    pub body: Vec<u8>,
}

pub(crate) struct Target {
    tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    path: String,
}

pub(crate) fn parse_url(url: &str) -> anyhow::Result<Target> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        bail!("{url:?}: the address must start with https:// (or http:// for a plaintext DP server)")
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let default_port = if tls { 443 } else { 80 };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| anyhow!("{url:?}: unclosed [ in the address"))?;
        let port = after.strip_prefix(':').map(str::parse).transpose()?.unwrap_or(default_port);
        (h.to_string(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse().with_context(|| format!("{url:?}: bad port {p:?}"))?),
            None => (authority.to_string(), default_port),
        }
    };
    if host.is_empty() {
        bail!("{url:?}: no host in the address");
    }
    Ok(Target { tls, host, port, path: path.to_string() })
}

/// POSTs `body` (JSON) to `base` + `path` and returns the answer.
pub fn post_json(
    base: &str,
    path: &str,
    ca_file: Option<&Path>,
    body: &[u8],
    timeout: Duration,
) -> anyhow::Result<Answer> {
    let t = parse_url(&format!("{}{path}", base.trim_end_matches('/')))?;
    let addr = (t.host.as_str(), t.port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", t.host))?
        .next()
        .ok_or_else(|| anyhow!("{} has no address", t.host))?;
    let tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot reach the DP server at {base} (is `higuma run` up? see --cp-address)"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    let host_header =
        if t.host.contains(':') { format!("[{}]:{}", t.host, t.port) } else { format!("{}:{}", t.host, t.port) };
    let mut request = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nContent-Type: application/json\r\nAccept: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        t.path,
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    let raw = if t.tls {
        let mut b = SslConnector::builder(SslMethod::tls_client())?;
        if let Some(ca) = ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let mut store = X509StoreBuilder::new()?;
            for cert in
                X509::stack_from_pem(&pem).with_context(|| format!("{}: not a PEM certificate", ca.display()))?
            {
                store.add_cert(cert)?;
            }
            b.set_cert_store(store.build());
        }
        b.set_verify(SslVerifyMode::PEER);
        b.set_alpn_protos(b"\x08http/1.1")?;
        let connector = b.build();
        let mut tls = connector.connect(&t.host, tcp).map_err(|e| {
            anyhow!(
                "TLS to {base} failed: {e}\n  the control plane's CA is in its general.workDir (kuma-cp-ca.crt); pass it with --ca-cert-file"
            )
        })?;
        tls.write_all(&request)?;
        read_all(&mut tls)?
    } else {
        let mut tcp = tcp;
        tcp.write_all(&request)?;
        read_all(&mut tcp)?
    };
    parse_answer(&raw)
}

fn read_all(r: &mut impl Read) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    // A TLS peer that closes without close_notify still delivered everything it meant to
    // with `Connection: close`; the parse below checks the length.
    match r.take(MAX_ANSWER_BYTES).read_to_end(&mut out) {
        Ok(_) => Ok(out),
        Err(_) if !out.is_empty() => Ok(out),
        Err(e) => Err(e).context("reading the answer"),
    }
}

fn parse_answer(raw: &[u8]) -> anyhow::Result<Answer> {
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| anyhow!("the answer is not HTTP"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status: u16 = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| anyhow!("bad status line {status_line:?}"))?;
    let (mut chunked, mut length) = (false, None);
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.eq_ignore_ascii_case("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let rest = &raw[end + 4..];
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(n) = length {
        rest.get(..n).ok_or_else(|| anyhow!("the answer ended after {} of {n} bytes", rest.len()))?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Answer { status, body })
}

fn dechunk(mut data: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").ok_or_else(|| anyhow!("bad chunked encoding"))?;
        let size_text = String::from_utf8_lossy(&data[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| anyhow!("bad chunk size {size_text:?}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        let chunk = data.get(..size).ok_or_else(|| anyhow!("a chunk is cut short"))?;
        out.extend_from_slice(chunk);
        data = data.get(size + 2..).unwrap_or(&[]);
    }
}
