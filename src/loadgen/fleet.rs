//! Simulated dataplanes: one ADS stream each, over its own HTTP/2 connection by default
//! (like Envoy; `connections` shares a few among all streams). Each stream subscribes to CDS and LDS, asks
//! for the endpoints of its outbound services once clusters arrive, ACKs every response by
//! nonce, and records per type when responses arrived. Responses are not decoded beyond
//! version, nonce and type; the streams are driven by grpcio's completion queues.
//!
//! With CAs ([`Fleet::new`]'s `cas`, one per target) each connection is TLS verified against
//! its instance's CA, as Envoy's bootstrap dials the DP server, and a stream may carry a
//! dataplane token as the `authorization` metadata.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use grpcio::{CallOption, ChannelBuilder, ChannelCredentialsBuilder, Environment, MetadataBuilder, WriteFlags};

use crate::envoy::ads_grpc::AggregatedDiscoveryServiceClient;
use crate::envoy::discovery::DiscoveryRequest;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::server::TOKEN_METADATA;

/// What one simulated dataplane has seen.
#[derive(Debug, Default)]
pub struct DpStats {
    /// Responses per type.
    pub responses: [AtomicU64; ResourceKind::COUNT],
    /// Nanoseconds since the fleet's epoch of the last response per type.
    pub last_at: [AtomicU64; ResourceKind::COUNT],
    pub bytes: AtomicU64,
    pub closed: std::sync::atomic::AtomicBool,
}

impl DpStats {
    pub fn total(&self) -> u64 {
        self.responses.iter().map(|r| r.load(Ordering::Relaxed)).sum()
    }

    pub fn count(&self, kind: ResourceKind) -> u64 {
        self.responses[kind.index()].load(Ordering::Relaxed)
    }
}

pub struct SimDataplane {
    pub node_id: String,
    /// Index of the control-plane instance its stream went to.
    pub instance: usize,
    pub eds_names: Vec<String>,
    /// The SDS secrets it asks for once clusters arrive (mesh mTLS), as Envoy asks for the
    /// secrets its listeners and clusters name.
    pub sds_names: Vec<String>,
    pub stats: Arc<DpStats>,
    /// Dropping the client and sender closes the stream.
    handle: Mutex<Option<(AggregatedDiscoveryServiceClient, futures::channel::oneshot::Sender<()>)>>,
}

impl SimDataplane {
    /// Configured = CDS and LDS received, EDS too when it has outbounds, and its
    /// certificate (SDS) when the mesh has mTLS.
    pub fn configured(&self) -> bool {
        let s = &self.stats;
        s.count(ResourceKind::Cluster) > 0
            && s.count(ResourceKind::Listener) > 0
            && (self.eds_names.is_empty() || s.count(ResourceKind::Endpoint) > 0)
            && (self.sds_names.is_empty() || s.count(ResourceKind::Secret) > 0)
    }

    pub fn close(&self) {
        self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.stats.closed.store(true, Ordering::Relaxed);
    }
}

pub struct Fleet {
    env: Arc<Environment>,
    /// The control-plane instances; dataplane `i` of a fleet goes to `targets[i % len]`.
    targets: Vec<String>,
    /// Each target's DP server CA (same order): TLS when not empty.
    cas: Vec<Vec<u8>>,
    /// With shared connections, per target the channels its streams take in turn.
    shared: Vec<Vec<grpcio::Channel>>,
    /// Secrets every dataplane asks for (empty: no mesh mTLS).
    sds_names: Vec<String>,
    /// Streams opened so far, which picks the next one's target.
    opened: std::sync::atomic::AtomicUsize,
    pub epoch: Instant,
}

fn request(kind: ResourceKind, node: Option<&str>, version: &str, nonce: &str, names: &[String]) -> DiscoveryRequest {
    let mut r = DiscoveryRequest::new();
    if let Some(id) = node {
        r.node.mut_or_insert_default().id = id.to_string();
    }
    r.type_url = kind.type_url().to_string();
    r.version_info = version.to_string();
    r.response_nonce = nonce.to_string();
    r.resource_names = names.to_vec();
    r
}

impl Fleet {
    /// A fleet spread round-robin over `targets` (at least one); with `cas` (one per
    /// target) over TLS. `connections` per target carry all its streams in turn (0: every
    /// stream on a connection of its own, as Envoy does).
    pub fn new(targets: &[String], completion_queues: usize, connections: usize, cas: Vec<Vec<u8>>) -> Fleet {
        let env = Arc::new(grpcio::EnvBuilder::new().cq_count(completion_queues).name_prefix("load-cq").build());
        let mut fleet = Fleet {
            env,
            targets: targets.to_vec(),
            cas,
            sds_names: Vec::new(),
            shared: Vec::new(),
            opened: Default::default(),
            epoch: Instant::now(),
        };
        // A private subchannel pool each, or channels to one target share one connection.
        let own =
            |fleet: &Fleet, i| fleet.channel(ChannelBuilder::new(fleet.env.clone()).use_local_subchannel_pool(true), i);
        fleet.shared = (0..targets.len()).map(|i| (0..connections).map(|_| own(&fleet, i)).collect()).collect();
        fleet
    }

    fn channel(&self, builder: ChannelBuilder, instance: usize) -> grpcio::Channel {
        let target = self.targets.get(instance).map(String::as_str).unwrap_or_default();
        match self.cas.get(instance) {
            Some(ca) => {
                let creds = ChannelCredentialsBuilder::new().root_cert(ca.clone()).build();
                builder.set_credentials(creds).connect(target)
            }
            None => builder.connect(target),
        }
    }

    /// Every dataplane connected from now on asks for these SDS secrets once its clusters
    /// arrive (the mesh's identity certificate and CA bundle, when it has mTLS).
    pub fn with_secrets(mut self, names: Vec<String>) -> Fleet {
        self.sds_names = names;
        self
    }

    /// How many control-plane instances the fleet is spread over.
    pub fn instances(&self) -> usize {
        self.targets.len().max(1)
    }

    pub fn now_nanos(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Opens one stream for `node_id`, with `token` as its dataplane token; returns at once,
    /// the stream runs on grpcio's threads.
    pub fn connect(&self, node_id: &str, eds_names: Vec<String>, token: Option<&str>) -> Arc<SimDataplane> {
        let opened = self.opened.fetch_add(1, Ordering::Relaxed);
        let instance = opened % self.instances();
        let shared = self.shared.get(instance).filter(|c| !c.is_empty());
        let channel = match shared {
            Some(channels) => channels[(opened / self.instances()) % channels.len()].clone(),
            // A channel of its own with a private subchannel pool: its own TCP connection.
            None => self.channel(ChannelBuilder::new(self.env.clone()).use_local_subchannel_pool(true), instance),
        };
        let client = AggregatedDiscoveryServiceClient::new(channel);
        let stats = Arc::new(DpStats::default());
        let (stop_tx, stop_rx) = futures::channel::oneshot::channel::<()>();
        let dp = Arc::new(SimDataplane {
            node_id: node_id.to_string(),
            instance,
            eds_names: eds_names.clone(),
            sds_names: self.sds_names.clone(),
            stats: stats.clone(),
            handle: Mutex::new(None),
        });
        // As Envoy retries its ADS stream: a stream started while its connection is still
        // connecting (or its TLS handshake timed out on a loaded server and gRPC reconnects)
        // waits for the connection instead of failing at once and never being served.
        let mut call = CallOption::default().wait_for_ready(true);
        if let Some(token) = token {
            let mut headers = MetadataBuilder::new();
            if headers.add_str(TOKEN_METADATA, token).is_ok() {
                call = call.headers(headers.build());
            }
        }
        let Ok((mut tx, mut rx)) = client.stream_aggregated_resources_opt(call) else {
            stats.closed.store(true, Ordering::Relaxed);
            return dp;
        };
        let node = node_id.to_string();
        let epoch = self.epoch;
        let sds_names = self.sds_names.clone();
        client.spawn(async move {
            let first = [
                (request(ResourceKind::Cluster, Some(&node), "", "", &[]), WriteFlags::default()),
                (request(ResourceKind::Listener, None, "", "", &[]), WriteFlags::default()),
            ];
            for r in first {
                if tx.send(r).await.is_err() {
                    return;
                }
            }
            let mut eds_subscribed = false;
            let mut stop = stop_rx;
            loop {
                let next = futures::future::select(rx.next(), &mut stop).await;
                let resp = match next {
                    futures::future::Either::Left((Some(Ok(resp)), _)) => resp,
                    _ => break,
                };
                let Some(kind) = ResourceKind::from_type_url(&resp.type_url) else { continue };
                stats.responses[kind.index()].fetch_add(1, Ordering::Relaxed);
                stats.last_at[kind.index()].store(epoch.elapsed().as_nanos() as u64, Ordering::Relaxed);
                stats.bytes.fetch_add(protobuf::Message::compute_size(&resp), Ordering::Relaxed);
                let names: &[String] = match kind {
                    ResourceKind::Endpoint => &eds_names,
                    ResourceKind::Secret => &sds_names,
                    _ => &[],
                };
                let ack = request(kind, None, &resp.version_info, &resp.nonce, names);
                if tx.send((ack, WriteFlags::default())).await.is_err() {
                    break;
                }
                if kind == ResourceKind::Cluster && !eds_subscribed {
                    eds_subscribed = true;
                    let subs = [(ResourceKind::Endpoint, &eds_names), (ResourceKind::Secret, &sds_names)];
                    let mut closed = false;
                    for (kind, names) in subs.into_iter().filter(|(_, names)| !names.is_empty()) {
                        let sub = request(kind, None, "", "", names);
                        if tx.send((sub, WriteFlags::default())).await.is_err() {
                            closed = true;
                            break;
                        }
                    }
                    if closed {
                        break;
                    }
                }
            }
            let _ = tx.close().await;
            stats.closed.store(true, Ordering::Relaxed);
        });
        *dp.handle.lock().unwrap_or_else(|p| p.into_inner()) = Some((client, stop_tx));
        dp
    }

    /// Connects every `(node id, eds names, token)` spreading the starts evenly over `ramp`.
    pub fn connect_all(
        &self,
        nodes: &[(String, Vec<String>, Option<String>)],
        ramp: Duration,
    ) -> Vec<Arc<SimDataplane>> {
        let start = Instant::now();
        let n = nodes.len().max(1) as u32;
        nodes
            .iter()
            .enumerate()
            .map(|(i, (id, names, token))| {
                let due = start + ramp * i as u32 / n;
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                self.connect(id, names.clone(), token.as_deref())
            })
            .collect()
    }
}
