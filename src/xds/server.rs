//! The gRPC side of xDS: `envoy.service.discovery.v3.AggregatedDiscoveryService` on an
//! internal loopback port behind the DP server's front end (`crate::dpserver`). This glue
//! moves messages — requests to a [`StreamHub`] (the reconciler), pre-encoded responses
//! back through a channel — and enforces what must hold before a request reaches the hub:
//!
//! - the stream came through the front end (its peer is in [`Peers`]), within
//!   `dpServer.limits.maxStreamsPerConnection`;
//! - every request passes the dataplane-token check ([`Authenticator`]), and the node id
//!   never changes on a stream; otherwise the stream ends with the gRPC status that says
//!   why and the request is dropped;
//! - requests are at most `dpServer.limits.maxMessageSize` bytes (gRPC enforces it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use futures::{FutureExt, SinkExt, StreamExt};
use grpcio::{
    ChannelBuilder, DuplexSink, Method, MethodType, RequestStream, RpcContext, RpcStatus, RpcStatusCode, Server,
    ServerBuilder, ServerCredentials, ServiceBuilder, WriteFlags,
};

use super::auth::{Authenticator, Denial, Grant};
use super::wire::{deserialize_response, serialize_response, EncodedResponse};
use crate::dpserver::peers::Refusal;
use crate::dpserver::{Metrics, Peers};
use crate::envoy::ads_grpc::STREAM_AGGREGATED_RESOURCES;
use crate::envoy::discovery::DiscoveryRequest;
use crate::logsafe::{suppressed_note, untrusted, RateLimiter};
use crate::model::ResourceKey;
use crate::reconcile::parse_node_id;
use crate::threads;

/// Where responses for one stream go; workers push, the stream's sink drains.
pub type ResponseSender = futures::channel::mpsc::UnboundedSender<EncodedResponse>;

/// Receives what arrives on ADS streams.
pub trait StreamHub: Send + Sync + 'static {
    /// A new stream; returns its id.
    fn open(&self, peer: String, tx: ResponseSender) -> u64;
    fn request(&self, stream: u64, req: DiscoveryRequest);
    fn close(&self, stream: u64);
}

/// ADS with responses we encode ourselves (shared resource bytes, see `wire`), and
/// requests decoded only up to `dpServer.limits.maxMessageSize`.
const METHOD: Method<DiscoveryRequest, EncodedResponse> = Method {
    ty: MethodType::Duplex,
    name: STREAM_AGGREGATED_RESOURCES,
    req_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: bounded_request },
    resp_mar: grpcio::Marshaller { ser: serialize_response, de: deserialize_response },
};

/// `dpServer.limits.maxMessageSize` for [`bounded_request`]: a marshaller is a plain fn,
/// so the limit of the (one) running server lives here.
static MAX_REQUEST_BYTES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(usize::MAX);

/// Marks a request refused for its size, so the stream can say so and count it.
#[derive(Debug)]
struct TooLarge(usize);

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "request of {} bytes", self.0)
    }
}

impl std::error::Error for TooLarge {}

fn bounded_request(reader: grpcio::MessageReader) -> grpcio::Result<DiscoveryRequest> {
    let len = reader.len();
    if len > MAX_REQUEST_BYTES.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(grpcio::Error::Codec(Box::new(TooLarge(len))));
    }
    grpcio::pb_de(reader)
}

/// gRPC itself refuses larger requests before reading them (without our metric or a
/// log line): twice the limit, so every request a little over the limit is counted while
/// a huge one still costs no memory.
fn grpc_receive_cap(limit: u32) -> i32 {
    limit.saturating_mul(2).min(i32::MAX as u32) as i32
}

/// Two completion queues: gRPC's threads only shuttle bytes, two cores are plenty.
const COMPLETION_QUEUES: usize = 2;

/// The gRPC metadata key of the dataplane token (Kuma's `authorization`, no `Bearer`).
pub const TOKEN_METADATA: &str = "authorization";

#[derive(Debug, thiserror::Error)]
pub enum XdsServerError {
    #[error("cannot listen for xDS on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

/// The limits of `dpServer.limits`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub max_message_size: u32,
    pub max_streams_per_connection: u32,
    pub max_streams_per_dataplane: u32,
}

/// What every stream handler shares.
pub struct Guards {
    pub peers: Arc<Peers>,
    pub auth: Arc<Authenticator>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    log_limiter: RateLimiter,
    /// ADS streams per dataplane, for `maxStreamsPerDataplane`.
    per_dataplane: Mutex<HashMap<ResourceKey, u32>>,
}

impl Guards {
    pub fn new(peers: Arc<Peers>, auth: Arc<Authenticator>, metrics: Arc<Metrics>, limits: Limits) -> Guards {
        Guards { peers, auth, metrics, limits, log_limiter: RateLimiter::default(), per_dataplane: Mutex::default() }
    }

    /// Takes one of `dp`'s stream slots, unless it holds `maxStreamsPerDataplane` already.
    fn take_dataplane_slot(self: &Arc<Self>, dp: &ResourceKey) -> Option<DataplaneSlot> {
        let mut counts = self.per_dataplane.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(dp.clone()).or_insert(0);
        if *n >= self.limits.max_streams_per_dataplane {
            return None;
        }
        *n += 1;
        Some(DataplaneSlot { guards: self.clone(), dp: dp.clone() })
    }
}

/// One of a dataplane's stream slots, given back on drop.
struct DataplaneSlot {
    guards: Arc<Guards>,
    dp: ResourceKey,
}

impl Drop for DataplaneSlot {
    fn drop(&mut self) {
        let mut counts = self.guards.per_dataplane.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = counts.get_mut(&self.dp) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.dp);
            }
        }
    }
}

/// How long a stream past `xdsServer.maxStreamAge` may run on after its GOAWAY: Envoy
/// opens its next stream at once, so a second only lets an in-flight response finish.
const MAX_STREAM_AGE_GRACE: Duration = Duration::from_secs(1);

pub struct XdsServer {
    server: Server,
    port: u16,
}

impl XdsServer {
    /// Binds `host:port` (port 0 = any free one) and starts serving.
    pub fn start(
        host: &str,
        port: u16,
        keepalive: Duration,
        max_stream_age: Duration,
        hub: Arc<dyn StreamHub>,
        guards: Arc<Guards>,
    ) -> Result<XdsServer, XdsServerError> {
        let env = Arc::new(grpcio::EnvBuilder::new().cq_count(COMPLETION_QUEUES).name_prefix(threads::GRPC).build());
        MAX_REQUEST_BYTES.store(guards.limits.max_message_size as usize, std::sync::atomic::Ordering::Relaxed);
        let max_message = grpc_receive_cap(guards.limits.max_message_size);
        let service = ServiceBuilder::new()
            .add_duplex_streaming_handler(&METHOD, move |ctx, requests, sink| {
                serve_stream(&hub, &guards, ctx, requests, sink)
            })
            .build();
        let args = ChannelBuilder::new(env.clone())
            .keepalive_time(keepalive)
            .keepalive_timeout(keepalive)
            .keepalive_permit_without_calls(true)
            .max_receive_message_len(max_message);
        // `xdsServer.maxStreamAge`: gRPC core sends GOAWAY after the age (±10% jitter, so
        // reconnects spread out) and closes the connection after the grace; an ADS stream
        // never ends by itself, so the grace is short.
        let args = if max_stream_age.is_zero() {
            args
        } else {
            let ms = |d: Duration| i32::try_from(d.as_millis()).unwrap_or(i32::MAX);
            args.raw_cfg_int(c"grpc.max_connection_age_ms".into(), ms(max_stream_age))
                .raw_cfg_int(c"grpc.max_connection_age_grace_ms".into(), ms(MAX_STREAM_AGE_GRACE))
        }
        .build_args();
        let addr = super::generate::envoy_builders::join_host_port(host, port as u32);
        let bind_err = |reason: String| XdsServerError::Bind { addr: addr.clone(), reason };
        let mut server = ServerBuilder::new(env)
            .channel_args(args)
            .register_service(service)
            .build()
            .map_err(|e| bind_err(e.to_string()))?;
        let port = server
            .add_listening_port(addr.clone(), ServerCredentials::insecure())
            .map_err(|e| bind_err(e.to_string()))?;
        server.start();
        Ok(XdsServer { server, port })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops accepting streams and cancels the open ones; Envoys keep their config and
    /// reconnect to whichever control plane answers next.
    pub fn stop(mut self) {
        let done = self.server.shutdown();
        self.server.cancel_all_calls();
        let _ = futures::executor::block_on(done);
    }
}

/// What the per-request check remembers about one stream.
struct StreamAuth {
    token: Option<String>,
    /// The raw node id of the first request, which every later one must repeat (or omit).
    node_id: Option<String>,
    dataplane: Option<ResourceKey>,
    grant: Option<Grant>,
    _slot: Option<DataplaneSlot>,
}

impl StreamAuth {
    /// Decides whether `req` may reach the hub. Cheap once granted (see `xds::auth`).
    async fn check(&mut self, guards: &Arc<Guards>, req: &DiscoveryRequest) -> Result<(), Denial> {
        let node_id = req.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
        let dp = match (&self.node_id, &self.dataplane) {
            (Some(bound), Some(dp)) => {
                if !node_id.is_empty() && node_id != bound {
                    return Err(Denial::new(
                        RpcStatusCode::PERMISSION_DENIED,
                        "node id changed",
                        format!(
                            "the stream was authenticated for node {}; node id {} cannot be used on it (a stream keeps its node id)",
                            untrusted(bound),
                            untrusted(node_id)
                        ),
                    ));
                }
                dp.clone()
            }
            _ => {
                if node_id.is_empty() {
                    return Err(Denial::new(
                        RpcStatusCode::INVALID_ARGUMENT,
                        "no node id",
                        "the first request of a stream must carry node.id \"<mesh>.<dataplane name>\"",
                    ));
                }
                let Some(dp) = parse_node_id(node_id) else {
                    return Err(Denial::new(
                        RpcStatusCode::INVALID_ARGUMENT,
                        "malformed node id",
                        format!("node id {} is not \"<mesh>.<dataplane name>\"", untrusted(node_id)),
                    ));
                };
                let Some(slot) = guards.take_dataplane_slot(&dp) else {
                    Metrics::inc(&guards.metrics.limit_streams_per_dataplane);
                    return Err(Denial::new(
                        RpcStatusCode::RESOURCE_EXHAUSTED,
                        "too many streams for one dataplane",
                        format!(
                            "dataplane {}.{} already holds {} ADS streams (dpServer.limits.maxStreamsPerDataplane)",
                            untrusted(&dp.mesh),
                            untrusted(&dp.name),
                            guards.limits.max_streams_per_dataplane
                        ),
                    ));
                };
                self._slot = Some(slot);
                self.node_id = Some(node_id.to_string());
                self.dataplane = Some(dp.clone());
                dp
            }
        };
        if self.grant.as_ref().is_some_and(|g| g.holds(SystemTime::now())) {
            return Ok(());
        }
        self.grant = Some(guards.auth.authenticate(self.token.as_deref(), &dp).await?);
        Ok(())
    }
}

/// The token from the stream's metadata; more than one is refused as Kuma does.
fn token_of(ctx: &RpcContext<'_>) -> Result<Option<String>, Denial> {
    let mut found: Option<String> = None;
    for (key, value) in ctx.request_headers().iter() {
        if key.eq_ignore_ascii_case(TOKEN_METADATA) {
            if found.is_some() {
                return Err(Denial::new(
                    RpcStatusCode::UNAUTHENTICATED,
                    "several tokens",
                    "the request must have exactly one \"authorization\" metadata entry",
                ));
            }
            let text = String::from_utf8_lossy(value);
            let t = text.trim();
            found = Some(t.strip_prefix("Bearer ").unwrap_or(t).to_string());
        }
    }
    Ok(found)
}

fn count_denial(metrics: &Metrics, d: &Denial) {
    let c = match d.code {
        RpcStatusCode::UNAUTHENTICATED => &metrics.denied_unauthenticated,
        RpcStatusCode::PERMISSION_DENIED => &metrics.denied_permission,
        RpcStatusCode::INVALID_ARGUMENT => &metrics.denied_invalid,
        RpcStatusCode::UNAVAILABLE => &metrics.denied_unavailable,
        _ => return,
    };
    Metrics::inc(c);
}

fn log_denial(guards: &Guards, peer: &str, d: &Denial) {
    if let Some(n) = guards.log_limiter.allow(crate::logsafe::peer_host(peer), d.kind) {
        log::warn!("xds: stream from {peer} closed ({:?}): {}{}", d.code, d.message, suppressed_note(n));
    }
}

/// Ends a stream that may not open at all. The request side lives until the status is
/// out: dropping it first would cancel the call, and the client would only see CANCELLED.
fn refuse(
    ctx: &RpcContext<'_>,
    requests: RequestStream<DiscoveryRequest>,
    sink: DuplexSink<EncodedResponse>,
    status: RpcStatus,
) {
    let f = sink.fail(status);
    ctx.spawn(async move {
        let _ = f.await;
        drop(requests);
    });
}

/// A stream's end as the reader decides it: the status, and the request side kept alive
/// until the status is sent (see [`refuse`]).
type Closing = (RpcStatus, RequestStream<DiscoveryRequest>);

enum Out {
    Response(EncodedResponse),
    Close(Closing),
}

fn serve_stream(
    hub: &Arc<dyn StreamHub>,
    guards: &Arc<Guards>,
    ctx: RpcContext<'_>,
    mut requests: RequestStream<DiscoveryRequest>,
    mut sink: DuplexSink<EncodedResponse>,
) {
    let grpc_peer = ctx.peer();
    let slot = match guards.peers.open_stream(&grpc_peer, guards.limits.max_streams_per_connection) {
        Ok(slot) => slot,
        Err(Refusal::Unknown) => {
            Metrics::inc(&guards.metrics.bypass_refused);
            if let Some(n) = guards.log_limiter.allow("internal", "bypass") {
                log::warn!(
                    "xds: refused a stream from {} that did not come through dpServer.port{}",
                    untrusted(&grpc_peer),
                    suppressed_note(n)
                );
            }
            let msg = "connect through the DP server port (dpServer.port)".to_string();
            return refuse(&ctx, requests, sink, RpcStatus::with_message(RpcStatusCode::UNAUTHENTICATED, msg));
        }
        Err(Refusal::Limit) => {
            Metrics::inc(&guards.metrics.limit_streams_per_connection);
            let msg = format!(
                "this connection already holds {} ADS streams (dpServer.limits.maxStreamsPerConnection)",
                guards.limits.max_streams_per_connection
            );
            return refuse(&ctx, requests, sink, RpcStatus::with_message(RpcStatusCode::RESOURCE_EXHAUSTED, msg));
        }
    };
    let peer = slot.peer.to_string();
    let token = match token_of(&ctx) {
        Ok(t) => t,
        Err(d) => {
            count_denial(&guards.metrics, &d);
            log_denial(guards, &peer, &d);
            return refuse(&ctx, requests, sink, RpcStatus::with_message(d.code, d.message));
        }
    };
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let (close_tx, close_rx) = futures::channel::oneshot::channel::<Closing>();
    let id = hub.open(peer.clone(), tx);
    let (reader_hub, reader_guards) = (hub.clone(), guards.clone());
    ctx.spawn(async move {
        let _slot = slot;
        let mut auth = StreamAuth { token, node_id: None, dataplane: None, grant: None, _slot: None };
        let mut close_tx = Some(close_tx);
        loop {
            match requests.next().await {
                Some(Ok(req)) => match auth.check(&reader_guards, &req).await {
                    Ok(()) => reader_hub.request(id, req),
                    Err(d) => {
                        count_denial(&reader_guards.metrics, &d);
                        log_denial(&reader_guards, &peer, &d);
                        if let Some(tx) = close_tx.take() {
                            let _ = tx.send((RpcStatus::with_message(d.code, d.message), requests));
                        }
                        reader_hub.close(id);
                        return;
                    }
                },
                Some(Err(grpcio::Error::Codec(e))) if e.is::<TooLarge>() => {
                    Metrics::inc(&reader_guards.metrics.limit_message_size);
                    let d = Denial::new(
                        RpcStatusCode::RESOURCE_EXHAUSTED,
                        "message too large",
                        format!(
                            "{e} exceeds dpServer.limits.maxMessageSize ({} bytes)",
                            reader_guards.limits.max_message_size
                        ),
                    );
                    log_denial(&reader_guards, &peer, &d);
                    if let Some(tx) = close_tx.take() {
                        let _ = tx.send((RpcStatus::with_message(d.code, d.message), requests));
                    }
                    reader_hub.close(id);
                    return;
                }
                Some(Err(e)) => {
                    log::debug!("xds: stream {id} ended: {}", untrusted(&e.to_string()));
                    break;
                }
                None => break,
            }
        }
        reader_hub.close(id);
    });
    ctx.spawn(async move {
        let responses = rx.map(Out::Response);
        let close = close_rx.into_stream().filter_map(|r| futures::future::ready(r.ok().map(Out::Close)));
        let mut out = futures::stream::select(responses, close);
        while let Some(item) = out.next().await {
            match item {
                Out::Response(r) => {
                    if let Err(e) = sink.send((r, WriteFlags::default())).await {
                        log::debug!("xds: writing to stream {id} failed: {e}");
                        return;
                    }
                }
                Out::Close((status, requests)) => {
                    let _ = sink.fail(status).await;
                    drop(requests);
                    return;
                }
            }
        }
        let _ = sink.close().await;
    });
}
