//! The DP server's security over real gRPC and real TLS, with scripted sidecars: plaintext
//! refused on the TLS port, dataplane tokens checked on every request (missing, expired,
//! tampered, revoked, wrong mesh, other dataplane, node id change), Kuma's `/bootstrap`
//! answers, the limits with their metrics, client values bounded in the log, and the
//! internal port closed to anyone but the front end. What the front end costs is measured
//! in `tests/dp_server_cost.rs`, alone in its process.

mod common;

use std::time::{Duration, Instant};

use base64::Engine;
use common::ads::{grpc_env, Access, Envoy, CDS, LDS};
use common::mesh::dataplane;
use common::tls::https;
use common::{call, free_port, Daemon};
use futures::SinkExt;
use grpcio::{RpcStatusCode, WriteFlags};
use higuma::envoy::discovery::DiscoveryRequest;
use serde_json::json;

fn put(cp: &Daemon, resource: &serde_json::Value) {
    let path = common::mesh::path_of(resource);
    let (status, body) = call("PUT", &cp.url(&path), Some(&resource.to_string()));
    assert!(status == 200 || status == 201, "PUT {path}: {status} {body}");
}

fn web(name: &str, service: &str) -> serde_json::Value {
    dataplane(name, service, "http", free_port(), free_port(), &[], &[])
}

/// The stream gets no resource and is closed with `code`; returns the status message.
fn refused(envoy: &Envoy, code: RpcStatusCode) -> String {
    envoy.expect_nothing(Duration::from_millis(300));
    let (got, message) = envoy.closed_with(Duration::from_secs(5)).expect("the stream was not closed");
    assert_eq!(got, code, "closed with {got:?}: {message}");
    message
}

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// The claims of a token (its payload, unverified).
fn claims(token: &str) -> serde_json::Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&b64().decode(payload).unwrap()).unwrap()
}

#[test]
fn plaintext_clients_are_refused_on_the_tls_port() {
    let cp = Daemon::start(&[("KUMA_DP_SERVER_READ_HEADER_TIMEOUT", "1s")]);
    put(&cp, &web("web-1", "web"));
    let env = grpc_env();
    // A plaintext gRPC client: the front end sees no TLS ClientHello and hangs up.
    let mut envoy = Envoy::connect(&env, cp.xds_port, "default.web-1");
    envoy.subscribe(CDS, &[]);
    envoy.expect_nothing(Duration::from_millis(500));
    let (code, _) = envoy.closed_with(Duration::from_secs(5)).expect("closed");
    assert_eq!(code, RpcStatusCode::UNAVAILABLE);
    // A plaintext HTTP client is told what is wrong, as Go's TLS server does.
    let answer = https(cp.xds_port, None, "POST /bootstrap HTTP/1.1\r\nHost: 127.0.0.1", "{}");
    assert_eq!(answer.status, 400);
    assert!(String::from_utf8_lossy(&answer.body).contains("HTTP request to an HTTPS server"));
    assert!(cp.metric("dp_server_connections_total{result=\"plaintext_refused\"}") >= 2);
    // The same client with the CA and a token is served.
    let mut ok = Envoy::connect_with(&env, &cp.access("default.web-1"), "default.web-1");
    ok.subscribe(CDS, &[]);
    ok.expect(CDS);
    // A client that connects and says nothing is dropped after readHeaderTimeout.
    use std::io::Read;
    let mut silent = std::net::TcpStream::connect(("127.0.0.1", cp.xds_port)).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 1];
    assert_eq!(silent.read(&mut buf).unwrap_or(0), 0, "the server should hang up");
    assert!(started.elapsed() < Duration::from_secs(3), "dropped after {:?}", started.elapsed());
    assert_eq!(cp.metric("dp_server_connections_total{result=\"handshake_timeout\"}"), 1);
}

#[test]
fn tokens_are_issued_as_kuma_issues_them() {
    let cp = Daemon::start(&[]);
    // A new mesh gets its signing key with it (Kuma's mesh defaults).
    put(&cp, &json!({"type": "Mesh", "name": "fresh"}));
    let (status, key) = call("GET", &cp.url("/meshes/fresh/secrets/dataplane-token-signing-key-fresh-1"), None);
    assert_eq!(status, 200, "{key}");
    let (status, default_key) =
        call("GET", &cp.url("/meshes/default/secrets/dataplane-token-signing-key-default-1"), None);
    assert_eq!(status, 200, "{default_key}");
    // Kuma's body and header; claims as Kuma writes them.
    let token = cp
        .token_for(&json!({"mesh": "fresh", "name": "web-1", "tags": {"kuma.io/service": ["web"]}, "validFor": "24h"}));
    let header: serde_json::Value =
        serde_json::from_slice(&b64().decode(token.split('.').next().unwrap()).unwrap()).unwrap();
    assert_eq!(header, json!({"alg": "RS256", "kid": "1", "typ": "JWT"}));
    let c = claims(&token);
    assert_eq!((c["Name"].as_str(), c["Mesh"].as_str()), (Some("web-1"), Some("fresh")));
    assert_eq!(c["Tags"], json!({"kuma.io/service": ["web"]}));
    let exp = c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap();
    assert_eq!(exp, 24 * 3600);
    // Bad requests name the field.
    let bad = |body: serde_json::Value| {
        let mut r = common::agent().post(&cp.url("/tokens/dataplane")).send(body.to_string()).unwrap();
        let status = r.status().as_u16();
        let body: serde_json::Value = serde_json::from_str(&r.body_mut().read_to_string().unwrap()).unwrap();
        (status, body["invalid_parameters"][0]["field"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(bad(json!({"name": "x"})), (400, "mesh".to_string()));
    assert_eq!(bad(json!({"mesh": "default", "validFor": "soon"})), (400, "validFor".to_string()));
    assert_eq!(bad(json!({"mesh": "default", "type": "ingress"})), (400, "type".to_string()));
    assert_eq!(bad(json!({"mesh": "nope"})), (400, "mesh".to_string()));
    // The CLI prints the same kind of token.
    let out = std::process::Command::new(common::higuma_bin())
        .args(["generate", "dataplane-token", "--mesh", "default", "--name", "web-1", "--valid-for", "1h"])
        .args(["--tag", "kuma.io/service=web,web-api", "--cp-address", &cp.cp_address()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let c = claims(String::from_utf8_lossy(&out.stdout).trim());
    assert_eq!(c["Tags"], json!({"kuma.io/service": ["web", "web-api"]}));
}

#[test]
fn tokens_are_checked_on_every_request() {
    let cp = Daemon::start(&[]);
    put(&cp, &json!({"type": "Mesh", "name": "other"}));
    put(&cp, &web("web-1", "web"));
    put(&cp, &web("web-2", "web"));
    put(&cp, &web("backend-1", "backend"));
    let env = grpc_env();
    let node = "default.web-1";
    let with_token = |token: Option<String>| Access { token, ..cp.access("") };
    let connect = |token: Option<String>, node: &str| {
        let mut e = Envoy::connect_with(&env, &with_token(token), node);
        e.subscribe(CDS, &[]);
        e
    };

    // A valid token is served.
    let mut served = connect(Some(cp.token("default", "web-1")), node);
    served.expect(CDS);

    // Missing.
    let msg = refused(&connect(None, node), RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("no dataplane token"), "{msg}");

    // Expired (tokens have one-second resolution; nbf is backdated, exp is not).
    let short = cp.token_for(&json!({"mesh": "default", "name": "web-1", "validFor": "1s"}));
    std::thread::sleep(Duration::from_millis(2100));
    let msg = refused(&connect(Some(short), node), RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("expired"), "{msg}");

    // Tampered: web-1's token with its Name edited to web-2, signature kept.
    let token = cp.token("default", "web-1");
    let mut c = claims(&token);
    c["Name"] = json!("web-2");
    let parts: Vec<&str> = token.split('.').collect();
    let forged = format!("{}.{}.{}", parts[0], b64().encode(c.to_string()), parts[2]);
    let msg = refused(&connect(Some(forged), "default.web-2"), RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("signature"), "{msg}");

    // Wrong mesh: signed by mesh other's key, presented for a dataplane of default.
    let other = cp.token("other", "web-1");
    refused(&connect(Some(other), node), RpcStatusCode::UNAUTHENTICATED);

    // Another dataplane's token.
    let msg = refused(&connect(Some(cp.token("default", "web-2")), node), RpcStatusCode::PERMISSION_DENIED);
    assert!(msg.contains("web-2"), "{msg}");

    // Bound by tag: good for every web instance, not for a backend.
    let by_tag = cp.token_for(&json!({"mesh": "default", "tags": {"kuma.io/service": ["web"]}}));
    connect(Some(by_tag.clone()), "default.web-2").expect(CDS);
    refused(&connect(Some(by_tag), "default.backend-1"), RpcStatusCode::PERMISSION_DENIED);

    // Revoked: a new stream is refused, and a stream already served is closed at its next
    // request, before that request reaches the reconciler.
    let live_token = cp.token("default", "web-1");
    let mut live = connect(Some(live_token.clone()), node);
    let cds = live.expect(CDS);
    let revoked_jti = claims(&live_token)["jti"].as_str().unwrap().to_string();
    let secret = json!({
        "type": "Secret", "mesh": "default", "name": "dataplane-token-revocations-default",
        "data": base64::engine::general_purpose::STANDARD.encode(format!("unrelated-id,{revoked_jti}"))
    });
    put(&cp, &secret);
    let msg = refused(&connect(Some(live_token), node), RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("revoked"), "{msg}");
    live.ack(&cds, &[]);
    refused(&live, RpcStatusCode::UNAUTHENTICATED);

    // A stream may not change its node id.
    let mut req = DiscoveryRequest::new();
    req.node.mut_or_insert_default().id = "default.web-2".into();
    req.type_url = LDS.type_url().into();
    let _ = futures::executor::block_on(served.tx.send((req, WriteFlags::default())));
    let msg = refused(&served, RpcStatusCode::PERMISSION_DENIED);
    assert!(msg.contains("node id"), "{msg}");

    assert!(cp.metric("xds_auth_denied_total{code=\"UNAUTHENTICATED\"}") >= 6);
    assert!(cp.metric("xds_auth_denied_total{code=\"PERMISSION_DENIED\"}") >= 3);
}

#[test]
fn bootstrap_answers_as_kuma() {
    let cp = Daemon::start(&[]);
    put(&cp, &web("web-1", "web"));
    let ca = std::fs::read(&cp.ca_file).unwrap();
    let post = |host: &str, accept: bool, body: serde_json::Value| {
        let mut head = format!("POST /bootstrap HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json");
        if accept {
            head.push_str("\r\nAccept: application/json");
        }
        https(cp.xds_port, Some(&ca), &head, &body.to_string())
    };
    let host = format!("127.0.0.1:{}", cp.xds_port);
    let kuma_dp = |name: &str, token: Option<String>| {
        json!({"mesh": "default", "name": name, "proxyType": "dataplane", "dataplaneToken": token,
               "version": {"kumaDp": {"version": "2.4.0"}, "envoy": {"version": "1.27.0"}},
               "dnsPort": 15053, "operatingSystem": "linux", "features": []})
    };
    // No token: 422, as Kuma.
    let a = post(&host, true, kuma_dp("web-1", None));
    assert_eq!(a.status, 422, "{}", String::from_utf8_lossy(&a.body));
    assert!(a.json()["detail"].as_str().unwrap().contains("Dataplane Token is required"));
    // Unknown dataplane: 404.
    let a = post(&host, true, kuma_dp("ghost", Some(cp.token("default", "ghost"))));
    assert_eq!(a.status, 404, "{}", String::from_utf8_lossy(&a.body));
    // Another dataplane's token: refused before any bootstrap is built.
    let a = post(&host, true, kuma_dp("web-1", Some(cp.token("default", "web-2"))));
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    // A Host the certificate is not valid for: 400 with instructions.
    let a = post(&format!("cp.example:{}", cp.xds_port), true, kuma_dp("web-1", Some(cp.token("default", "web-1"))));
    assert_eq!(a.status, 400);
    assert!(a.json()["detail"].as_str().unwrap().contains("SANs"), "{}", a.json());
    // The answer: JSON with the bootstrap base64-encoded, as kuma-dp asks for it ...
    let token = cp.token("default", "web-1");
    let a = post(&host, true, kuma_dp("web-1", Some(token.clone())));
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    let body = a.json();
    assert_eq!(body["kumaSidecarConfiguration"]["networking"]["isUsingTransparentProxy"], false);
    let yaml = base64::engine::general_purpose::STANDARD.decode(body["bootstrap"].as_str().unwrap()).unwrap();
    let bootstrap: serde_json::Value = serde_yaml_ng::from_slice(&yaml).unwrap();
    assert_eq!(bootstrap["node"]["id"], "default.web-1");
    let md = &bootstrap["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"][0];
    assert_eq!(md["value"].as_str(), Some(token.as_str()));
    // ... or raw YAML without `Accept: application/json`.
    let a = post(&host, false, kuma_dp("web-1", Some(token)));
    assert_eq!((a.status, a.header("content-type")), (200, Some("text/x-yaml")));
    // Other paths answer Go's 404 text, which kuma-dp reads as "wrong port".
    let a = https(cp.xds_port, Some(&ca), &format!("GET /nope HTTP/1.1\r\nHost: {host}"), "");
    assert_eq!((a.status, String::from_utf8_lossy(&a.body).trim()), (404, "404: Page Not Found"));
    assert!(cp.metric("dp_server_connections_total{result=\"http\"}") >= 7);
}

#[test]
fn limits_are_enforced_and_counted() {
    let cp = Daemon::start(&[
        ("KUMA_DP_SERVER_LIMITS_MAX_MESSAGE_SIZE", "65536"),
        ("KUMA_DP_SERVER_LIMITS_MAX_STREAMS_PER_CONNECTION", "2"),
        ("KUMA_DP_SERVER_LIMITS_MAX_STREAMS_PER_DATAPLANE", "2"),
    ]);
    for name in ["web-1", "web-2", "web-3"] {
        put(&cp, &web(name, "web"));
    }
    let env = grpc_env();

    // A request above maxMessageSize ends its stream.
    let mut big = Envoy::connect_with(&env, &cp.access("default.web-1"), "default.web-1");
    big.subscribe(CDS, &[]);
    big.expect(CDS);
    let names: Vec<String> = (0..2000).map(|i| format!("cluster-name-{i:040}")).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    big.send(LDS, "", "", &names, None);
    let (code, _) = big.closed_with(Duration::from_secs(5)).expect("closed");
    assert_eq!(code, RpcStatusCode::RESOURCE_EXHAUSTED);
    assert_eq!(
        cp.metric("dp_server_limit_exceeded_total{limit=\"maxMessageSize\"}"),
        1,
        "{}",
        cp.log_text().lines().filter(|l| l.contains("ended")).collect::<Vec<_>>().join("\n")
    );

    // Three streams on one connection: the third is refused at once.
    let mut three = Envoy::connect_many(&env, &cp.access("default.web-2"), "default.web-2", 3);
    for e in three.iter_mut() {
        e.subscribe(CDS, &[]);
    }
    let codes: Vec<Option<RpcStatusCode>> =
        three.iter().map(|e| e.closed_with(Duration::from_millis(1500)).map(|c| c.0)).collect();
    assert_eq!(codes.iter().filter(|c| **c == Some(RpcStatusCode::RESOURCE_EXHAUSTED)).count(), 1, "{codes:?}");
    assert_eq!(cp.metric("dp_server_limit_exceeded_total{limit=\"maxStreamsPerConnection\"}"), 1);
    drop(three);

    // Three streams of one dataplane, each on its own connection: the third is refused.
    let mut streams: Vec<Envoy> = Vec::new();
    for _ in 0..2 {
        let mut e = Envoy::connect_with(&env, &cp.access("default.web-3"), "default.web-3");
        e.subscribe(CDS, &[]);
        e.expect(CDS);
        streams.push(e);
    }
    let mut third = Envoy::connect_with(&env, &cp.access("default.web-3"), "default.web-3");
    third.subscribe(CDS, &[]);
    refused(&third, RpcStatusCode::RESOURCE_EXHAUSTED);
    assert_eq!(cp.metric("dp_server_limit_exceeded_total{limit=\"maxStreamsPerDataplane\"}"), 1);
    // A slot frees when a stream ends.
    drop(streams.pop());
    common::wait_until("a freed slot", Duration::from_secs(10), || {
        let mut e = Envoy::connect_with(&env, &cp.access("default.web-3"), "default.web-3");
        e.subscribe(CDS, &[]);
        e.recv(Duration::from_secs(2)).is_some()
    });
}

#[test]
fn client_values_in_the_log_are_bounded_escaped_and_rate_limited() {
    let cp = Daemon::start(&[]);
    put(&cp, &web("web-1", "web"));
    put(&cp, &web("web-2", "web"));
    let env = grpc_env();
    let before = cp.log_text().len();
    // An unauthenticated stream with a 1 MB node id, five times.
    let huge = format!("default.{}", "a".repeat(1 << 20));
    for _ in 0..5 {
        let mut e = Envoy::connect_with(&env, &Access { token: None, ..cp.access("") }, &huge);
        e.subscribe(CDS, &[]);
        e.closed_with(Duration::from_secs(5)).expect("closed");
    }
    // Authenticated sidecars NACKing with a 1 MB error detail, and with one that forges a
    // log line and hides text behind a bidi override.
    let forged = "x\n2030-01-01T00:00:00Z ERROR forged line\u{202e}";
    let huge_detail = "e".repeat(1 << 20);
    // The streams stay open until the NACKs are logged: a stream cancelled right after its
    // last message may lose that message.
    let mut nacking = Vec::new();
    for (node, detail) in [("default.web-1", huge_detail.as_str()), ("default.web-2", forged)] {
        let mut nack = Envoy::connect_with(&env, &cp.access(node), node);
        nack.subscribe(CDS, &[]);
        let cds = nack.expect(CDS);
        nack.send(CDS, &cds.version_info.clone(), &cds.nonce.clone(), &[], Some(detail));
        nacking.push(nack);
    }
    common::wait_until("both NACKs in the log", Duration::from_secs(5), || {
        cp.log_text()[before..].matches("rejected").count() >= 2
    });
    drop(nacking);

    let log = cp.log_text();
    let added = &log[before..];
    assert!(added.len() < 64 * 1024, "{} bytes logged for ~7 MB of hostile input", added.len());
    let longest = added.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 2048, "a log line of {longest} bytes");
    assert!(!added.contains(&"a".repeat(300)) && !added.contains(&"e".repeat(300)));
    assert!(!added.contains("\nforged") && !added.lines().any(|l| l.starts_with("2030-01-01")), "{added}");
    assert!(!added.contains('\u{202e}') && added.contains("\\u{202e}"), "{added}");
    // Five identical refusals from one peer: one line, the rest counted.
    let lines = added.lines().filter(|l| l.contains("INVALID_ARGUMENT)") && l.contains("aaaa")).count();
    assert_eq!(lines, 1, "{added}");
}

#[test]
fn streams_bypassing_the_front_end_are_refused() {
    let d = higuma::daemon::Daemon::start(common::test_config(100)).unwrap();
    let env = grpc_env();
    let internal = d.internal_xds_port().unwrap();
    // The internal gRPC port is plaintext on loopback: a local process could dial it, but
    // its streams were not made by the front end, so they are refused.
    let mut e = Envoy::connect(&env, internal, "default.web-1");
    e.subscribe(CDS, &[]);
    let msg = refused(&e, RpcStatusCode::UNAUTHENTICATED);
    assert!(msg.contains("dpServer.port"), "{msg}");
    assert_eq!(d.dp_metrics().bypass_refused.load(std::sync::atomic::Ordering::Relaxed), 1);
    d.shutdown();
}
