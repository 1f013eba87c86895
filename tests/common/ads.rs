//! A scripted Envoy: one ADS stream over real gRPC, driven step by step by a test.

use std::sync::Arc;
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
    _client: AggregatedDiscoveryServiceClient,
}

impl Envoy {
    pub fn connect(env: &Arc<grpcio::Environment>, port: u16, node: &str) -> Envoy {
        let channel = ChannelBuilder::new(env.clone()).connect(&format!("127.0.0.1:{port}"));
        let client = AggregatedDiscoveryServiceClient::new(channel);
        let (tx, mut rx_stream) = client.stream_aggregated_resources().unwrap();
        let (fwd, rx) = crossbeam_channel::unbounded();
        std::thread::spawn(move || {
            futures::executor::block_on(async move {
                while let Some(Ok(resp)) = rx_stream.next().await {
                    if fwd.send(resp).is_err() {
                        break;
                    }
                }
            })
        });
        Envoy { tx, rx, node: node.to_string(), sent_node: false, _client: client }
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
        futures::executor::block_on(self.tx.send((req, WriteFlags::default()))).unwrap();
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
