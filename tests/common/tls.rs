//! A local plaintext port in front of the DP server's TLS port, for scripted gRPC clients
//! (grpcio is built without TLS): each connection to it is one TLS connection to the
//! server, verified against the given CA, offering ALPN `h2` as Envoy does.

use std::net::{TcpListener, TcpStream};

use higuma::dpserver::splice::{Buf, Splice};
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::store::X509StoreBuilder;
use openssl::x509::X509;

/// A TLS client context trusting only `ca_pem`.
pub fn connector(ca_pem: &[u8], alpn: &[u8]) -> SslConnector {
    let mut b = SslConnector::builder(SslMethod::tls_client()).unwrap();
    let mut store = X509StoreBuilder::new().unwrap();
    for c in X509::stack_from_pem(ca_pem).unwrap() {
        store.add_cert(c).unwrap();
    }
    b.set_cert_store(store.build());
    b.set_alpn_protos(alpn).unwrap();
    b.build()
}

/// Starts the tunnel to `127.0.0.1:server_port`; returns the local port to dial.
pub fn tunnel(server_port: u16, ca_pem: &[u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let connector = connector(ca_pem, b"\x02h2");
    std::thread::spawn(move || {
        for local in listener.incoming() {
            let Ok(local) = local else { break };
            let connector = connector.clone();
            std::thread::spawn(move || {
                let Ok(tcp) = TcpStream::connect(("127.0.0.1", server_port)) else { return };
                // The generated certificate names 127.0.0.1; verification is real.
                let Ok(tls) = connector.connect("127.0.0.1", tcp) else { return };
                let _ = tls.get_ref().set_nodelay(true);
                let _ = local.set_nodelay(true);
                if tls.get_ref().set_nonblocking(true).is_err() || local.set_nonblocking(true).is_err() {
                    return;
                }
                Splice::new(local, tls, Buf::default()).run();
            });
        }
    });
    port
}

/// A CA for tests that rotate certificates: it keeps its key, so it can issue several
/// server certificates an Envoy trusting it accepts.
pub struct TestCa {
    pub cert: X509,
    key: openssl::pkey::PKey<openssl::pkey::Private>,
}

fn ec_key() -> openssl::pkey::PKey<openssl::pkey::Private> {
    let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).unwrap();
    openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).unwrap()).unwrap()
}

fn name(cn: &str) -> openssl::x509::X509Name {
    let mut n = openssl::x509::X509NameBuilder::new().unwrap();
    n.append_entry_by_nid(openssl::nid::Nid::COMMONNAME, cn).unwrap();
    n.build()
}

impl TestCa {
    pub fn new() -> TestCa {
        use openssl::x509::extension::{BasicConstraints, KeyUsage};
        let key = ec_key();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&openssl::bn::BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name("test CA")).unwrap();
        b.set_issuer_name(&name("test CA")).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
        b.append_extension(KeyUsage::new().critical().key_cert_sign().build().unwrap()).unwrap();
        b.sign(&key, openssl::hash::MessageDigest::sha256()).unwrap();
        TestCa { cert: b.build(), key }
    }

    pub fn pem(&self) -> Vec<u8> {
        self.cert.to_pem().unwrap()
    }

    /// A server certificate for 127.0.0.1 with serial `serial`: (certificate PEM, key PEM).
    pub fn issue(&self, serial: u32) -> (Vec<u8>, Vec<u8>) {
        use openssl::x509::extension::{ExtendedKeyUsage, SubjectAlternativeName};
        let key = ec_key();
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_version(2).unwrap();
        b.set_serial_number(&openssl::bn::BigNum::from_u32(serial).unwrap().to_asn1_integer().unwrap()).unwrap();
        b.set_subject_name(&name("127.0.0.1")).unwrap();
        b.set_issuer_name(self.cert.subject_name()).unwrap();
        b.set_pubkey(&key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(30).unwrap()).unwrap();
        b.append_extension(ExtendedKeyUsage::new().server_auth().build().unwrap()).unwrap();
        let san = SubjectAlternativeName::new()
            .ip("127.0.0.1")
            .dns("localhost")
            .build(&b.x509v3_context(Some(&self.cert), None))
            .unwrap();
        b.append_extension(san).unwrap();
        b.sign(&self.key, openssl::hash::MessageDigest::sha256()).unwrap();
        (b.build().to_pem().unwrap(), key.private_key_to_pem_pkcs8().unwrap())
    }
}

/// The serial number of the certificate `127.0.0.1:port` presents (trusting `ca_pem`).
pub fn served_serial(port: u16, ca_pem: &[u8]) -> u32 {
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let tls = connector(ca_pem, b"\x02h2").connect("127.0.0.1", tcp).expect("TLS handshake");
    let serial = tls.ssl().peer_certificate().unwrap().serial_number().to_bn().unwrap();
    serial.to_dec_str().unwrap().parse().unwrap()
}

/// An HTTP/1.1 answer: status, headers (lower-case names) and body.
pub struct HttpAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpAnswer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One HTTP/1.1 request over TLS to `127.0.0.1:port`, offering ALPN `h2` and `http/1.1` as
/// Go's client (kuma-dp) does; `None` for the CA means plaintext.
pub fn https(port: u16, ca_pem: Option<&[u8]>, head: &str, body: &str) -> HttpAnswer {
    use std::io::{Read, Write};
    let request = format!("{head}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let mut raw = Vec::new();
    match ca_pem {
        Some(ca) => {
            let mut tls = connector(ca, b"\x02h2\x08http/1.1").connect("127.0.0.1", tcp).expect("TLS handshake");
            tls.write_all(request.as_bytes()).unwrap();
            let _ = tls.read_to_end(&mut raw);
        }
        None => {
            let mut tcp = tcp;
            tcp.write_all(request.as_bytes()).unwrap();
            let _ = tcp.read_to_end(&mut raw);
        }
    }
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("not HTTP: {:?}", String::from_utf8_lossy(&raw)));
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':').map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())))
        .collect();
    HttpAnswer { status, headers, body: raw[end + 4..].to_vec() }
}
