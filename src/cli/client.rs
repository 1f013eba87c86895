//! A small synchronous client for the control plane's REST API, over HTTP or HTTPS
//! (`--cp-address https://...`, verified against `--ca-cert-file` or the system's roots),
//! sending a user token (`--auth-token`) as `Authorization: Bearer`.

use std::time::Duration;

use anyhow::{anyhow, Context};
use higuma::http::retry_on_stale_connection;
use serde_json::Value;

/// Long enough for a slow store, short enough that a dead control plane is noticed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

/// How to reach and authenticate to the control plane.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub cp_address: String,
    pub auth_token: Option<String>,
    pub ca_cert_file: Option<std::path::PathBuf>,
}

/// An answer from the API: status and parsed JSON body (if any).
pub struct Answer {
    pub status: u16,
    pub body: Option<Value>,
    /// The change id of an accepted write (higuma's `Higuma-Change-Id`).
    pub change_id: Option<String>,
}

impl Client {
    pub fn new(cp_address: &str) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Client { base: cp_address.trim_end_matches('/').to_string(), agent, token: None }
    }

    /// A client for `conn`: TLS roots from the CA file (else the system's), and the token.
    pub fn connect(conn: &Connection) -> anyhow::Result<Client> {
        use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
        let roots = match &conn.ca_cert_file {
            Some(path) => {
                let pem = std::fs::read(path).with_context(|| format!("reading --ca-cert-file {}", path.display()))?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| anyhow!("--ca-cert-file {}: not a PEM certificate: {e}", path.display()))?;
                RootCerts::new_with_certs(&[cert])
            }
            None => RootCerts::PlatformVerifier,
        };
        let tls = TlsConfig::builder().provider(TlsProvider::NativeTls).root_certs(roots).build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .tls_config(tls)
            .build()
            .into();
        let token = conn.auth_token.as_ref().map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
        Ok(Client { base: conn.cp_address.trim_end_matches('/').to_string(), agent, token })
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("Authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path_or_url: &str) -> anyhow::Result<Answer> {
        let url = if path_or_url.starts_with("http") { path_or_url.to_string() } else { self.url(path_or_url) };
        let response = retry_on_stale_connection(|| self.auth(self.agent.get(&url)).call())
            .with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let body = serde_json::to_string(body)?;
        let response = retry_on_stale_connection(|| {
            self.auth(self.agent.put(&url)).header("Content-Type", "application/json").send(&body)
        })
        .with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    /// POSTs JSON and returns the status and the raw text (for endpoints answering in text).
    pub fn post_text(&self, path: &str, body: &Value) -> anyhow::Result<(u16, String)> {
        let url = self.url(path);
        let mut response = self
            .auth(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .send(serde_json::to_string(body)?)
            .with_context(|| self.unreachable(&url))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer from {url}"))?;
        Ok((status, text))
    }

    /// POST whose successful answer is plain text (a token); errors are Kuma's JSON.
    pub fn post_for_text(&self, path: &str, body: &Value) -> anyhow::Result<Result<String, Answer>> {
        let url = self.url(path);
        let mut response = self
            .auth(self.agent.post(&url))
            .header("Content-Type", "application/json")
            .send(serde_json::to_string(body)?)
            .with_context(|| self.unreachable(&url))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer from {url}"))?;
        if status == 200 {
            return Ok(Ok(text));
        }
        Ok(Err(Answer { status, body: serde_json::from_str(&text).ok(), change_id: None }))
    }

    pub fn delete(&self, path: &str) -> anyhow::Result<Answer> {
        let url = self.url(path);
        let response = retry_on_stale_connection(|| self.auth(self.agent.delete(&url)).call())
            .with_context(|| self.unreachable(&url))?;
        read(response, &url)
    }

    fn unreachable(&self, url: &str) -> String {
        format!("cannot reach the control plane at {url} (is `higuma run` up? see --cp-address)")
    }
}

fn read(mut response: ureq::http::Response<ureq::Body>, url: &str) -> anyhow::Result<Answer> {
    let status = response.status().as_u16();
    let change_id = response
        .headers()
        .get(higuma::api::changes::CHANGE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = response.body_mut().read_to_string().with_context(|| format!("reading the answer from {url}"))?;
    let body = if text.trim().is_empty() {
        None
    } else {
        Some(serde_json::from_str(&text).with_context(|| format!("{url} answered {status} with non-JSON: {text}"))?)
    };
    Ok(Answer { status, body, change_id })
}

impl Answer {
    /// Turns an error status into an error that quotes Kuma's error body.
    pub fn error(&self) -> anyhow::Error {
        let Some(body) = &self.body else { return anyhow!("the control plane answered {}", self.status) };
        let title = body["title"].as_str().unwrap_or("error");
        let detail = body["detail"].as_str().unwrap_or("");
        let mut msg = format!("{title} ({}): {detail}", self.status);
        if let Some(params) = body["invalid_parameters"].as_array() {
            for p in params {
                msg.push_str(&format!(
                    "\n  * {}: {}",
                    p["field"].as_str().unwrap_or(""),
                    p["reason"].as_str().unwrap_or("")
                ));
            }
        }
        anyhow!(msg)
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{TcpListener, TcpStream};

    use super::*;

    /// Reads one request (head and Content-Length body) and answers 200 with keep-alive.
    fn answer_one(stream: &mut TcpStream) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut length = 0;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
            if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}").unwrap();
    }

    /// Closes with SO_LINGER 0: the peer gets a reset, not a FIN.
    fn reset(stream: TcpStream) {
        use std::os::fd::AsRawFd;
        let linger = libc::linger { l_onoff: 1, l_linger: 0 };
        // SAFETY: a valid socket fd and a correctly sized option value.
        let rc = unsafe {
            libc::setsockopt(
                stream.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
    }

    #[test]
    fn a_request_on_a_connection_the_server_dropped_is_sent_again_on_a_new_one() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut first, _) = listener.accept().unwrap();
            answer_one(&mut first);
            // The next request arrives as the server closes the kept-alive connection: it
            // is never read, and the client gets a reset.
            let _ = first.peek(&mut [0u8; 1]);
            reset(first);
            let (mut second, _) = listener.accept().unwrap();
            answer_one(&mut second);
            answer_one(&mut second);
        });
        let client = Client::new(&format!("http://{addr}"));
        assert_eq!(client.put("/meshes/default", &serde_json::json!({"type": "Mesh"})).unwrap().status, 200);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(client.put("/meshes/default", &serde_json::json!({"type": "Mesh"})).unwrap().status, 200);
        assert_eq!(client.delete("/meshes/default").unwrap().status, 200);
        server.join().unwrap();
    }
}
