//! The gRPC side of xDS: `envoy.service.discovery.v3.AggregatedDiscoveryService` on
//! `dpServer.port`. This glue only moves messages: requests go to a [`StreamHub`] (the
//! reconciler) and pre-encoded responses come back through a channel; no decisions here.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use grpcio::{
    ChannelBuilder, DuplexSink, Method, MethodType, RequestStream, RpcContext, Server, ServerBuilder,
    ServerCredentials, ServiceBuilder, WriteFlags,
};

use super::wire::{deserialize_response, serialize_response, EncodedResponse};
use crate::envoy::ads_grpc::STREAM_AGGREGATED_RESOURCES;
use crate::envoy::discovery::DiscoveryRequest;
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

/// ADS with responses we encode ourselves (shared resource bytes, see `wire`).
const METHOD: Method<DiscoveryRequest, EncodedResponse> = Method {
    ty: MethodType::Duplex,
    name: STREAM_AGGREGATED_RESOURCES,
    req_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
    resp_mar: grpcio::Marshaller { ser: serialize_response, de: deserialize_response },
};

/// Two completion queues: gRPC's threads only shuttle bytes, two cores are plenty.
const COMPLETION_QUEUES: usize = 2;

#[derive(Debug, thiserror::Error)]
pub enum XdsServerError {
    #[error("cannot listen for xDS on {addr}: {reason}")]
    Bind { addr: String, reason: String },
}

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
        hub: Arc<dyn StreamHub>,
    ) -> Result<XdsServer, XdsServerError> {
        let env = Arc::new(grpcio::EnvBuilder::new().cq_count(COMPLETION_QUEUES).name_prefix(threads::GRPC).build());
        let service = ServiceBuilder::new()
            .add_duplex_streaming_handler(&METHOD, move |ctx, requests, sink| serve_stream(&hub, ctx, requests, sink))
            .build();
        let args = ChannelBuilder::new(env.clone())
            .keepalive_time(keepalive)
            .keepalive_timeout(keepalive)
            .keepalive_permit_without_calls(true)
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

fn serve_stream(
    hub: &Arc<dyn StreamHub>,
    ctx: RpcContext<'_>,
    mut requests: RequestStream<DiscoveryRequest>,
    mut sink: DuplexSink<EncodedResponse>,
) {
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let id = hub.open(ctx.peer(), tx);
    let reader_hub = hub.clone();
    ctx.spawn(async move {
        loop {
            match requests.next().await {
                Some(Ok(req)) => reader_hub.request(id, req),
                Some(Err(e)) => {
                    log::debug!("xds: stream {id} ended: {e}");
                    break;
                }
                None => break,
            }
        }
        reader_hub.close(id);
    });
    ctx.spawn(async move {
        let mut responses = rx.map(|r| Ok((r, WriteFlags::default())));
        if let Err(e) = sink.send_all(&mut responses).await {
            log::debug!("xds: writing to stream {id} failed: {e}");
            return;
        }
        let _ = sink.close().await;
    });
}
