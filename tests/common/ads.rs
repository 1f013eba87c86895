//! A scripted Envoy: one ADS stream over real gRPC, driven step by step by a test. By
//! default as a real sidecar connects (TLS verified against the control plane's CA, a
//! dataplane token in the `authorization` metadata); [`Envoy::connect`] is the plaintext,
//! tokenless variant for control planes that opted out of both.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crossbeam_channel::Receiver;
use futures::{SinkExt, StreamExt};
use grpcio::{ChannelBuilder, ClientDuplexSender, EnvBuilder, WriteFlags};
use higuma::envoy::ads_grpc::AggregatedDiscoveryServiceClient;
use higuma::envoy::discovery::{DiscoveryRequest, DiscoveryResponse};
use higuma::xds::resource_kind::ResourceKind;

pub const CDS: ResourceKind = ResourceKind::Cluster;
pub const EDS: ResourceKind = ResourceKind::Endpoint;
pub const LDS: ResourceKind = ResourceKind::Listener;

/// A scripted Envoy: one ADS stream.
pub struct Envoy {
    pub tx: ClientDuplexSender<DiscoveryRequest>,
    rx: Receiver<DiscoveryResponse>,
    node: String,
    pub sent_node: bool,
    /// How the stream ended, once it has (the server's status, or a transport error).
    ended: Arc<Mutex<Option<grpcio::Error>>>,
    _client: AggregatedDiscoveryServiceClient,
}

/// How to reach a DP server: its port, the CA to verify it with (None = plaintext) and the
/// dataplane token to present (None = none).
#[derive(Clone, Default)]
pub struct Access {
    pub port: u16,
    pub ca_pem: Option<Vec<u8>>,
    pub token: Option<String>,
}

impl Envoy {
    /// Plaintext, no token: for a control plane with `dpServer.tlsEnabled: false` and
    /// `dpServer.authn.dpProxy.type: none`.
    pub fn connect(env: &Arc<grpcio::Environment>, port: u16, node: &str) -> Envoy {
        Envoy::connect_with(env, &Access { port, ..Access::default() }, node)
    }

    /// As a sidecar: through TLS when `access` has a CA, with its token as metadata.
    pub fn connect_with(env: &Arc<grpcio::Environment>, access: &Access, node: &str) -> Envoy {
        Envoy::connect_many(env, access, node, 1).pop().unwrap()
    }

    /// `n` streams on one connection (one gRPC channel), as a multiplexing client opens them.
    pub fn connect_many(env: &Arc<grpcio::Environment>, access: &Access, node: &str, n: usize) -> Vec<Envoy> {
        let port = match &access.ca_pem {
            Some(ca) => super::tls::tunnel(access.port, ca),
            None => access.port,
        };
        // A connection of its own, as every Envoy has (gRPC would otherwise share one
        // connection between all clients of a target).
        let channel =
            ChannelBuilder::new(env.clone()).use_local_subchannel_pool(true).connect(&format!("127.0.0.1:{port}"));
        let client = AggregatedDiscoveryServiceClient::new(channel);
        (0..n).map(|_| Envoy::open(&client, access, node)).collect()
    }

    fn open(client: &AggregatedDiscoveryServiceClient, access: &Access, node: &str) -> Envoy {
        let client = client.clone();
        let mut opt = grpcio::CallOption::default();
        if let Some(token) = &access.token {
            let mut md = grpcio::MetadataBuilder::new();
            md.add_str("authorization", token).unwrap();
            opt = opt.headers(md.build());
        }
        let (tx, mut rx_stream) = client.stream_aggregated_resources_opt(opt).unwrap();
        let (fwd, rx) = crossbeam_channel::unbounded();
        let ended = Arc::new(Mutex::new(None));
        let end = ended.clone();
        std::thread::spawn(move || {
            futures::executor::block_on(async move {
                loop {
                    match rx_stream.next().await {
                        Some(Ok(resp)) => {
                            if fwd.send(resp).is_err() {
                                break;
                            }
                        }
                        Some(Err(e)) => {
                            *end.lock().unwrap() = Some(e);
                            break;
                        }
                        None => break,
                    }
                }
            })
        });
        Envoy { tx, rx, node: node.to_string(), sent_node: false, ended, _client: client }
    }

    /// The status code the server closed the stream with, waiting up to `within`.
    pub fn closed_with(&self, within: Duration) -> Option<(grpcio::RpcStatusCode, String)> {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(e) = self.ended.lock().unwrap().as_ref() {
                return match e {
                    grpcio::Error::RpcFailure(s) => Some((s.code(), s.message().to_string())),
                    other => Some((grpcio::RpcStatusCode::UNKNOWN, other.to_string())),
                };
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends a request without waiting for the send to complete (a closed stream makes
    /// a blocking send fail, which is what some tests provoke).
    pub fn try_send(&mut self, req: DiscoveryRequest) -> bool {
        futures::executor::block_on(self.tx.send((req, WriteFlags::default()))).is_ok()
    }

    pub fn send(&mut self, kind: ResourceKind, version: &str, nonce: &str, names: &[&str], error: Option<&str>) {
        let mut req = DiscoveryRequest::new();
        if !self.sent_node {
            req.node.mut_or_insert_default().id = self.node.clone();
            self.sent_node = true;
        }
        req.type_url = kind.type_url().to_string();
        req.version_info = version.to_string();
        req.response_nonce = nonce.to_string();
        req.resource_names = names.iter().map(|s| s.to_string()).collect();
        if let Some(e) = error {
            let st = req.error_detail.mut_or_insert_default();
            st.code = 3;
            st.message = e.to_string();
        }
        // A stream the server closed fails the send; the test then sees how it was closed
        // (`closed_with`) and that nothing arrived.
        let _ = futures::executor::block_on(self.tx.send((req, WriteFlags::default())));
    }

    pub fn subscribe(&mut self, kind: ResourceKind, names: &[&str]) {
        self.send(kind, "", "", names, None);
    }

    pub fn ack(&mut self, r: &DiscoveryResponse, names: &[&str]) {
        let kind = ResourceKind::from_type_url(&r.type_url).unwrap();
        self.send(kind, &r.version_info.clone(), &r.nonce.clone(), names, None);
    }

    pub fn recv(&self, within: Duration) -> Option<DiscoveryResponse> {
        self.rx.recv_timeout(within).ok()
    }

    pub fn expect(&self, kind: ResourceKind) -> DiscoveryResponse {
        let r = self.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}: no {kind} response", self.node));
        assert_eq!(r.type_url, kind.type_url(), "{}: expected {kind}", self.node);
        r
    }

    pub fn expect_nothing(&self, within: Duration) {
        if let Some(r) = self.recv(within) {
            panic!("{}: unexpected response {} version {}", self.node, r.type_url, r.version_info);
        }
    }

    /// Runs Envoy's start-up exchange until every type is ACKed; returns the EDS response.
    pub fn converge(
        &mut self,
        eds_names: &[&str],
    ) -> (DiscoveryResponse, Option<DiscoveryResponse>, DiscoveryResponse) {
        self.subscribe(CDS, &[]);
        self.subscribe(LDS, &[]);
        let cds = self.expect(CDS);
        let eds = if eds_names.is_empty() {
            self.ack(&cds, &[]);
            None
        } else {
            self.subscribe(EDS, eds_names);
            self.ack(&cds, &[]);
            // EDS and LDS may come in either order once clusters are ACKed.
            None
        };
        let mut eds_resp = eds;
        let mut lds_resp = None;
        while lds_resp.is_none() || (!eds_names.is_empty() && eds_resp.is_none()) {
            let r = self.recv(Duration::from_secs(5)).unwrap_or_else(|| panic!("{}: start-up stalled", self.node));
            match ResourceKind::from_type_url(&r.type_url) {
                Some(ResourceKind::Endpoint) => {
                    self.ack(&r, eds_names);
                    eds_resp = Some(r);
                }
                Some(ResourceKind::Listener) => {
                    self.ack(&r, &[]);
                    lds_resp = Some(r);
                }
                other => panic!("unexpected {other:?} during start-up"),
            }
        }
        (cds, eds_resp, lds_resp.unwrap())
    }
}

pub fn grpc_env() -> Arc<grpcio::Environment> {
    Arc::new(EnvBuilder::new().cq_count(1).build())
}

/// The CA an in-process control plane generated (its `general.workDir`).
pub fn ca_of(d: &higuma::daemon::Daemon) -> Vec<u8> {
    let dir = d.config().general.work_dir;
    std::fs::read(std::path::Path::new(&dir).join(higuma::tls::generate::CA_FILE)).expect("the generated CA")
}

/// A token for `node` (`<mesh>.<name>`) issued by an in-process control plane; None when
/// the node id does not name a dataplane.
pub fn token_of(d: &higuma::daemon::Daemon, node: &str) -> Option<String> {
    let (mesh, name) = node.split_once('.')?;
    let id = higuma::tokens::dataplane::Identity { mesh: mesh.into(), name: name.into(), ..Default::default() };
    higuma::tokens::dataplane::issue(
        &*d.store,
        &id,
        higuma::tokens::dataplane::DEFAULT_VALID_FOR,
        std::time::SystemTime::now(),
    )
    .ok()
}

/// A scripted sidecar of an in-process control plane, connecting as a real one does.
pub fn connect_to(d: &higuma::daemon::Daemon, env: &Arc<grpcio::Environment>, node: &str) -> Envoy {
    let access = Access { port: d.xds_port().unwrap(), ca_pem: Some(ca_of(d)), token: token_of(d, node) };
    Envoy::connect_with(env, &access, node)
}
