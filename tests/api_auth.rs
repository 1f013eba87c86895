//! The API's security over real HTTP and HTTPS against `higuma run`: who may read and
//! write what (localhost, anonymous, admin token, user token, revoked token), the CLI over
//! HTTPS with a token, and the slow-client and size limits of both HTTP servers.
//!
//! Tests run on 127.0.0.1, where `localhostIsAdmin` would make every request the admin:
//! the control plane starts with it on (so the test can read the bootstrapped admin token
//! from localhost, as an operator does) and a SIGHUP then turns it off, after which every
//! request is judged as a remote one would be.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{free_port, higuma_bin, wait_until, Daemon};
use serde_json::{json, Value};

struct Cp {
    daemon: Daemon,
    /// The generated CA (`higuma-api-ca.crt` in `general.workDir`).
    ca: PathBuf,
    config: PathBuf,
    _dir: tempfile::TempDir,
}

impl Cp {
    fn http(&self, path: &str) -> String {
        self.daemon.url(path)
    }

    fn https(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.daemon.https_port)
    }
}

fn agent(ca: Option<&Path>) -> ureq::Agent {
    use ureq::tls::{Certificate, RootCerts, TlsConfig, TlsProvider};
    let roots = match ca {
        Some(ca) => RootCerts::new_with_certs(&[Certificate::from_pem(&std::fs::read(ca).unwrap()).unwrap()]),
        None => RootCerts::PlatformVerifier,
    };
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .tls_config(TlsConfig::builder().provider(TlsProvider::NativeTls).root_certs(roots).build())
        .build()
        .into()
}

/// One request; (status, body as JSON or as a JSON string, WWW-Authenticate).
fn req(cp: &Cp, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> (u16, Value, Option<String>) {
    let agent = agent(Some(&cp.ca));
    let auth = token.map(|t| format!("Bearer {t}"));
    let result = match method {
        "GET" => {
            let mut r = agent.get(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "DELETE" => {
            let mut r = agent.delete(url);
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.call()
        }
        "PUT" | "POST" => {
            let mut r = if method == "PUT" { agent.put(url) } else { agent.post(url) };
            if let Some(a) = &auth {
                r = r.header("Authorization", a);
            }
            r.header("Content-Type", "application/json").send(body.map(|b| b.to_string()).unwrap_or_default())
        }
        m => panic!("unsupported method {m}"),
    };
    let mut response = result.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = response.status().as_u16();
    let www = response.headers().get("WWW-Authenticate").and_then(|v| v.to_str().ok()).map(str::to_string);
    let text = response.body_mut().read_to_string().unwrap_or_default();
    let body = if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::String(text)) };
    (status, body, www)
}

fn status(cp: &Cp, method: &str, url: &str, token: Option<&str>, body: Option<&Value>) -> u16 {
    req(cp, method, url, token, body).0
}

fn higuma(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(higuma_bin());
    cmd.args(args).env_remove("KUMA_AUTH_TOKEN");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run higuma");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn metric(cp: &Cp, series: &str) -> u64 {
    let text = common::get_text(&cp.daemon.diag_url("/metrics")).unwrap_or_default();
    text.lines().find(|l| l.starts_with(series)).and_then(|l| l.rsplit(' ').next()?.parse().ok()).unwrap_or(0)
}

fn mesh(name: &str) -> Value {
    json!({"type": "Mesh", "name": name})
}

fn start() -> Cp {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("higuma.yaml");
    std::fs::write(&config, "apiServer:\n  authn:\n    localhostIsAdmin: true\n").unwrap();
    let daemon = Daemon::start_with(free_port(), free_port(), &["-c", config.to_str().unwrap()], &[]);
    let ca = daemon.work_dir.join("higuma-api-ca.crt");
    assert!(ca.is_file(), "the generated CA is in general.workDir; log:\n{}", daemon.log_text());
    Cp { daemon, ca, config, _dir: dir }
}

impl Cp {
    /// From here on every request is judged as a remote client's.
    fn turn_off_localhost_admin(&self) {
        std::fs::write(&self.config, "apiServer:\n  authn:\n    localhostIsAdmin: false\n").unwrap();
        self.daemon.signal("HUP");
        wait_until("localhost is no longer admin", Duration::from_secs(5), || {
            status(self, "GET", &self.http("/global-secrets"), None, None) == 401
        });
    }
}

#[test]
fn api_security() {
    let cp = start();
    let admin = admin_token_from_localhost(&cp);
    cp.turn_off_localhost_admin();
    anonymous_reads_but_cannot_write_or_see_secrets(&cp);
    invalid_tokens_are_401_everywhere(&cp, &admin);
    let john = admin_token_writes_and_cli_issues_a_user_token_over_https(&cp, &admin);
    non_admin_user_is_403_on_secrets_and_token_generation(&cp, &john);
    cli_over_https_needs_the_ca_and_a_token(&cp, &john);
    revoked_token_is_refused(&cp, &admin, &john);
    slow_and_oversized_clients_are_cut_off(&cp);
}

/// What an operator does on the CP's host: read the GlobalSecret admin-user-token.
fn admin_token_from_localhost(cp: &Cp) -> String {
    let (s, body, _) = req(cp, "GET", &cp.http("/global-secrets/admin-user-token"), None, None);
    assert_eq!(s, 200, "{body}");
    let bytes = base64::engine::general_purpose::STANDARD.decode(body["data"].as_str().unwrap()).unwrap();
    let token = String::from_utf8(bytes).unwrap();
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");
    let (s, who, _) = req(cp, "GET", &cp.http("/who-am-i"), None, None);
    assert_eq!(s, 200);
    assert_eq!(who["name"], "mesh-system:admin", "localhost is admin: {who}");
    token
}

fn anonymous_reads_but_cannot_write_or_see_secrets(cp: &Cp) {
    for url in [cp.http("/meshes"), cp.https("/meshes"), cp.http("/meshes/default")] {
        assert_eq!(status(cp, "GET", &url, None, None), 200, "{url}: reads stay open");
    }
    let (s, body, www) = req(cp, "PUT", &cp.http("/meshes/anon"), None, Some(&mesh("anon")));
    assert_eq!(s, 401, "{body}");
    assert_eq!(body["title"], "Unauthenticated");
    assert_eq!(body["status"], 401);
    assert_eq!(www.as_deref(), Some("Bearer"));
    assert_eq!(status(cp, "GET", &cp.http("/meshes/anon"), None, None), 404, "the refused write changed nothing");
    assert_eq!(status(cp, "DELETE", &cp.https("/meshes/default"), None, None), 401);
    assert_eq!(status(cp, "GET", &cp.http("/meshes/default"), None, None), 200, "the refused delete changed nothing");
    for url in [
        cp.http("/global-secrets/admin-user-token"),
        cp.https("/global-secrets"),
        cp.http("/meshes/default/secrets"),
        cp.http("/secrets"),
        cp.http("/global-secrets/user-token-signing-key-1"),
    ] {
        let (s, body, _) = req(cp, "GET", &url, None, None);
        assert_eq!(s, 401, "{url}: {body}");
        assert!(!body.to_string().contains("\"data\""), "no secret material in the error: {body}");
    }
    let secret = json!({"type": "Secret", "mesh": "default", "name": "s", "data": "aGk="});
    assert_eq!(status(cp, "PUT", &cp.http("/meshes/default/secrets/s"), None, Some(&secret)), 401);
    assert_eq!(status(cp, "POST", &cp.http("/tokens/user"), None, Some(&json!({"name": "x", "validFor": "1h"}))), 401);
}

fn invalid_tokens_are_401_everywhere(cp: &Cp, admin: &str) {
    let parts: Vec<&str> = admin.split('.').collect();
    let forged_claims = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(r#"{"Name":"mesh-system:admin","Groups":["mesh-system:admin"],"exp":99999999999}"#);
    let tampered = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
    let alg_none = format!(
        "{}.{}.",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"1"}"#),
        forged_claims
    );
    for bad in ["garbage", tampered.as_str(), alg_none.as_str(), &format!("{admin}x")] {
        for url in [cp.http("/meshes"), cp.https("/global-secrets")] {
            let (s, body, _) = req(cp, "GET", &url, Some(bad), None);
            assert_eq!(s, 401, "{url} with a bad token: {body}");
            assert_eq!(body["detail"], "Invalid authentication data");
        }
    }
}

fn admin_token_writes_and_cli_issues_a_user_token_over_https(cp: &Cp, admin: &str) -> String {
    assert_eq!(status(cp, "PUT", &cp.https("/meshes/by-admin"), Some(admin), Some(&mesh("by-admin"))), 201);
    let (s, body, _) = req(cp, "GET", &cp.https("/global-secrets/admin-user-token"), Some(admin), None);
    assert_eq!(s, 200, "the admin reads secrets: {body}");
    let ca = cp.ca.to_str().unwrap();
    let https = cp.https("");
    let (ok, out, err) = higuma(
        &[
            "generate",
            "user-token",
            "--name",
            "john",
            "--group",
            "devs",
            "--valid-for",
            "1h",
            "--cp-address",
            &https,
            "--ca-cert-file",
            ca,
        ],
        &[("KUMA_AUTH_TOKEN", admin)],
    );
    assert!(ok, "generate user-token over HTTPS with the admin token (env): {err}");
    let john = out.trim().to_string();
    assert_eq!(john.split('.').count(), 3, "{out}");
    let (s, who, _) = req(cp, "GET", &cp.https("/who-am-i"), Some(&john), None);
    assert_eq!(s, 200);
    assert_eq!(who, json!({"name": "john", "groups": ["devs", "mesh-system:authenticated"]}));
    let (s, body, _) =
        req(cp, "POST", &cp.http("/tokens/user"), Some(admin), Some(&json!({"name": "", "validFor": "soon"})));
    assert_eq!(s, 400, "{body}");
    let fields: Vec<&str> =
        body["invalid_parameters"].as_array().unwrap().iter().filter_map(|p| p["field"].as_str()).collect();
    assert_eq!(fields, ["name", "validFor"], "{body}");
    john
}

fn non_admin_user_is_403_on_secrets_and_token_generation(cp: &Cp, john: &str) {
    for url in
        [cp.https("/global-secrets"), cp.http("/meshes/default/secrets"), cp.https("/global-secrets/admin-user-token")]
    {
        let (s, body, _) = req(cp, "GET", &url, Some(john), None);
        assert_eq!(s, 403, "{url}: {body}");
        assert_eq!(body["title"], "Access Denied");
        assert!(body["detail"].as_str().unwrap().contains("user \"john/devs,mesh-system:authenticated\""), "{body}");
    }
    let secret = json!({"type": "Secret", "mesh": "default", "name": "s", "data": "aGk="});
    assert_eq!(status(cp, "PUT", &cp.https("/meshes/default/secrets/s"), Some(john), Some(&secret)), 403);
    assert_eq!(
        status(
            cp,
            "POST",
            &cp.https("/tokens/user"),
            Some(john),
            Some(&json!({"name": "eve", "groups": ["mesh-system:admin"], "validFor": "1h"}))
        ),
        403,
        "a user cannot mint an admin token"
    );
    // An authenticated user may change ordinary resources (access.static.writeResources).
    assert_eq!(status(cp, "PUT", &cp.https("/meshes/by-john"), Some(john), Some(&mesh("by-john"))), 201);
    assert_eq!(status(cp, "GET", &cp.https("/meshes/by-john"), Some(john), None), 200);
}

fn cli_over_https_needs_the_ca_and_a_token(cp: &Cp, john: &str) {
    let ca = cp.ca.to_str().unwrap();
    let https = cp.https("");
    let (ok, out, err) =
        higuma(&["get", "meshes", "--cp-address", &https, "--ca-cert-file", ca, "--auth-token", john], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("by-john") && out.contains("by-admin"), "{out}");
    let dir = tempfile::tempdir().unwrap();
    let doc = dir.path().join("m.yaml");
    std::fs::write(&doc, "type: Mesh\nname: by-cli\n").unwrap();
    let doc = doc.to_str().unwrap();
    let (ok, _, err) = higuma(&["apply", "-f", doc, "--cp-address", &https, "--ca-cert-file", ca], &[]);
    assert!(!ok, "apply without a token is refused");
    assert!(err.contains("Unauthenticated (401)"), "{err}");
    let (ok, out, err) =
        higuma(&["apply", "-f", doc, "--cp-address", &https, "--ca-cert-file", ca, "--auth-token", john], &[]);
    assert!(ok, "{err}");
    assert!(out.contains("created Mesh \"by-cli\""), "{out}");
    let (ok, _, err) = higuma(&["get", "meshes", "--cp-address", &https, "--auth-token", john], &[]);
    assert!(!ok, "without --ca-cert-file the generated certificate is not trusted");
    assert!(err.to_lowercase().contains("certificate") || err.contains("cannot reach"), "{err}");
    let (ok, _, err) =
        higuma(&["delete", "mesh", "by-cli", "--cp-address", &https, "--ca-cert-file", ca, "--auth-token", john], &[]);
    assert!(ok, "{err}");
}

fn revoked_token_is_refused(cp: &Cp, admin: &str, john: &str) {
    let payload = john.split('.').nth(1).unwrap();
    let claims: Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    let jti = claims["jti"].as_str().unwrap();
    let list = base64::engine::general_purpose::STANDARD.encode(format!("some-other-id,{jti}"));
    let secret = json!({"type": "GlobalSecret", "name": "user-token-revocations", "data": list});
    assert_eq!(status(cp, "PUT", &cp.https("/global-secrets/user-token-revocations"), Some(admin), Some(&secret)), 201);
    wait_until("the revocation takes effect", Duration::from_secs(5), || {
        status(cp, "GET", &cp.https("/meshes"), Some(john), None) == 401
    });
    assert_eq!(status(cp, "GET", &cp.https("/meshes"), Some(admin), None), 200, "other tokens still work");
}

/// Reads what the server answers until it closes the connection or `within` passes.
fn answer_within(stream: &mut TcpStream, within: Duration) -> (String, Duration) {
    let started = Instant::now();
    stream.set_read_timeout(Some(within)).unwrap();
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

fn slow_and_oversized_clients_are_cut_off(cp: &Cp) {
    let api = format!("127.0.0.1:{}", cp.daemon.api_port);
    let hits = |server: &str, limit: &str| {
        metric(cp, &format!("http_limit_hits_total{{limit=\"{limit}\",server=\"{server}\"}}"))
    };
    let before = hits("api-worker", "header_timeout");
    // A client trickling its headers is answered 408 once readHeaderTimeout (1 s) is over,
    // not after it finishes; meanwhile the other workers keep serving.
    let mut slow = TcpStream::connect(&api).unwrap();
    slow.write_all(b"GET /meshes HTTP/1.1\r\nHost: x\r\n").unwrap();
    let trickle = std::thread::spawn({
        let mut s = slow.try_clone().unwrap();
        move || {
            for _ in 0..20 {
                std::thread::sleep(Duration::from_millis(200));
                if s.write_all(b"X-Slow: y\r\n").is_err() {
                    break;
                }
            }
        }
    });
    assert_eq!(status(cp, "GET", &cp.http("/meshes"), None, None), 200, "others are served meanwhile");
    let (answer, took) = answer_within(&mut slow, Duration::from_secs(4));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(took < Duration::from_secs(3), "cut off after the header time-out, took {took:?}");
    let _ = trickle.join();
    assert!(hits("api-worker", "header_timeout") > before);

    // Headers larger than maxHeaderBytes (64 KiB): 431.
    let mut big = TcpStream::connect(&api).unwrap();
    let _ = big.write_all(format!("GET / HTTP/1.1\r\nX-Big: {}\r\n\r\n", "a".repeat(70 * 1024)).as_bytes());
    let (answer, _) = answer_within(&mut big, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
    assert!(hits("api-worker", "header_size") >= 1);

    // A body above maxBodyBytes (1 MiB) is refused before it is sent.
    let mut body = TcpStream::connect(&api).unwrap();
    body.write_all(b"PUT /meshes/huge HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 2000000\r\n\r\n")
        .unwrap();
    let (answer, _) = answer_within(&mut body, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
    assert!(answer.contains("\"title\": \"Payload Too Large\""), "Kuma's error body: {answer}");

    // A TLS client that never says hello is dropped after the header time-out too.
    let before_tls = hits("api-tls", "tls_handshake");
    let mut silent = TcpStream::connect(format!("127.0.0.1:{}", cp.daemon.https_port)).unwrap();
    let (_, took) = answer_within(&mut silent, Duration::from_secs(4));
    assert!(took < Duration::from_secs(3), "silent TLS client held on for {took:?}");
    wait_until("the TLS handshake failure is counted", Duration::from_secs(2), || {
        hits("api-tls", "tls_handshake") > before_tls
    });

    // The diagnostics server has the same limits.
    let mut slow_diag = TcpStream::connect(format!("127.0.0.1:{}", cp.daemon.diag_port)).unwrap();
    slow_diag.write_all(b"GET /metrics HTTP/1.1\r\n").unwrap();
    let (answer, took) = answer_within(&mut slow_diag, Duration::from_secs(4));
    assert!(answer.starts_with("HTTP/1.1 408") && took < Duration::from_secs(3), "{answer:?} after {took:?}");
    assert!(hits("diagnostics", "header_timeout") >= 1);
    let mut post_diag = TcpStream::connect(format!("127.0.0.1:{}", cp.daemon.diag_port)).unwrap();
    post_diag.write_all(b"POST /ready HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello").unwrap();
    let (answer, _) = answer_within(&mut post_diag, Duration::from_secs(3));
    assert!(answer.starts_with("HTTP/1.1 413"), "diagnostics takes no body: {answer:?}");
}
