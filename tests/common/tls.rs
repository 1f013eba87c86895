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
