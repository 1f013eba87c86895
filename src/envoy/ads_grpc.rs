//! gRPC glue for `envoy.service.discovery.v3.AggregatedDiscoveryService`.
//!
//! Hand-written equivalent of what grpcio-compiler generates for `ads.proto`
//! (rust-protobuf 3 has no grpcio code generator): the method descriptors,
//! a client, a server trait and the function turning an implementation of
//! the trait into a [`grpcio::Service`].
//!
//! Server side:
//!
//! ```ignore
//! #[derive(Clone)]
//! struct Ads { /* shared state */ }
//! impl AggregatedDiscoveryService for Ads {
//!     fn stream_aggregated_resources(
//!         &mut self,
//!         ctx: grpcio::RpcContext,
//!         requests: grpcio::RequestStream<DiscoveryRequest>,
//!         sink: grpcio::DuplexSink<DiscoveryResponse>,
//!     ) { /* ctx.spawn(...) a future driving the stream */ }
//! }
//! let server = grpcio::ServerBuilder::new(env)
//!     .register_service(create_aggregated_discovery_service(Ads { .. }))
//!     .build()?;
//! ```
//!
//! Client side (tests, tooling):
//!
//! ```ignore
//! let channel = grpcio::ChannelBuilder::new(env).connect("127.0.0.1:5678");
//! let client = AggregatedDiscoveryServiceClient::new(channel);
//! let (mut requests, mut responses) = client.stream_aggregated_resources()?;
//! ```

use super::discovery::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};

/// Full gRPC method name of the state-of-the-world ADS stream.
pub const STREAM_AGGREGATED_RESOURCES: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Full gRPC method name of the incremental (delta) ADS stream.
pub const DELTA_AGGREGATED_RESOURCES: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// `rpc StreamAggregatedResources(stream DiscoveryRequest) returns (stream DiscoveryResponse)`.
pub const METHOD_STREAM_AGGREGATED_RESOURCES: grpcio::Method<
    DiscoveryRequest,
    DiscoveryResponse,
> = grpcio::Method {
    ty: grpcio::MethodType::Duplex,
    name: STREAM_AGGREGATED_RESOURCES,
    req_mar: grpcio::Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
    resp_mar: grpcio::Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
};

/// `rpc DeltaAggregatedResources(stream DeltaDiscoveryRequest) returns (stream DeltaDiscoveryResponse)`.
pub const METHOD_DELTA_AGGREGATED_RESOURCES: grpcio::Method<
    DeltaDiscoveryRequest,
    DeltaDiscoveryResponse,
> = grpcio::Method {
    ty: grpcio::MethodType::Duplex,
    name: DELTA_AGGREGATED_RESOURCES,
    req_mar: grpcio::Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
    resp_mar: grpcio::Marshaller {
        ser: grpcio::pb_ser,
        de: grpcio::pb_de,
    },
};

/// Client of the Aggregated Discovery Service.
#[derive(Clone)]
pub struct AggregatedDiscoveryServiceClient {
    /// The underlying grpcio client.
    pub client: grpcio::Client,
}

impl AggregatedDiscoveryServiceClient {
    /// A client over `channel`.
    pub fn new(channel: grpcio::Channel) -> Self {
        AggregatedDiscoveryServiceClient {
            client: grpcio::Client::new(channel),
        }
    }

    /// Opens a state-of-the-world ADS stream with explicit call options.
    pub fn stream_aggregated_resources_opt(
        &self,
        opt: grpcio::CallOption,
    ) -> grpcio::Result<(
        grpcio::ClientDuplexSender<DiscoveryRequest>,
        grpcio::ClientDuplexReceiver<DiscoveryResponse>,
    )> {
        self.client
            .duplex_streaming(&METHOD_STREAM_AGGREGATED_RESOURCES, opt)
    }

    /// Opens a state-of-the-world ADS stream.
    pub fn stream_aggregated_resources(
        &self,
    ) -> grpcio::Result<(
        grpcio::ClientDuplexSender<DiscoveryRequest>,
        grpcio::ClientDuplexReceiver<DiscoveryResponse>,
    )> {
        self.stream_aggregated_resources_opt(grpcio::CallOption::default())
    }

    /// Opens an incremental ADS stream with explicit call options.
    pub fn delta_aggregated_resources_opt(
        &self,
        opt: grpcio::CallOption,
    ) -> grpcio::Result<(
        grpcio::ClientDuplexSender<DeltaDiscoveryRequest>,
        grpcio::ClientDuplexReceiver<DeltaDiscoveryResponse>,
    )> {
        self.client
            .duplex_streaming(&METHOD_DELTA_AGGREGATED_RESOURCES, opt)
    }

    /// Opens an incremental ADS stream.
    pub fn delta_aggregated_resources(
        &self,
    ) -> grpcio::Result<(
        grpcio::ClientDuplexSender<DeltaDiscoveryRequest>,
        grpcio::ClientDuplexReceiver<DeltaDiscoveryResponse>,
    )> {
        self.delta_aggregated_resources_opt(grpcio::CallOption::default())
    }

    /// Spawns `f` on the client's gRPC poll thread (keep it light).
    pub fn spawn<F>(&self, f: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.client.spawn(f)
    }
}

/// Server side of the Aggregated Discovery Service.
///
/// Each method is called on a gRPC completion-queue thread once per new
/// stream, with its own clone of the service; it must not block: spawn the
/// work (`ctx.spawn(...)`) or hand the stream to another thread. Methods left
/// unimplemented answer `UNIMPLEMENTED`.
pub trait AggregatedDiscoveryService {
    /// A state-of-the-world ADS stream.
    fn stream_aggregated_resources(
        &mut self,
        ctx: grpcio::RpcContext,
        _stream: grpcio::RequestStream<DiscoveryRequest>,
        sink: grpcio::DuplexSink<DiscoveryResponse>,
    ) {
        grpcio::unimplemented_call!(ctx, sink)
    }

    /// An incremental ADS stream.
    fn delta_aggregated_resources(
        &mut self,
        ctx: grpcio::RpcContext,
        _stream: grpcio::RequestStream<DeltaDiscoveryRequest>,
        sink: grpcio::DuplexSink<DeltaDiscoveryResponse>,
    ) {
        grpcio::unimplemented_call!(ctx, sink)
    }
}

/// Wraps `s` into a service to register with `grpcio::ServerBuilder::register_service`.
pub fn create_aggregated_discovery_service<
    S: AggregatedDiscoveryService + Send + Clone + 'static,
>(
    s: S,
) -> grpcio::Service {
    let mut builder = grpcio::ServiceBuilder::new();
    let mut instance = s.clone();
    builder = builder.add_duplex_streaming_handler(
        &METHOD_STREAM_AGGREGATED_RESOURCES,
        move |ctx, req, resp| instance.stream_aggregated_resources(ctx, req, resp),
    );
    let mut instance = s;
    builder = builder.add_duplex_streaming_handler(
        &METHOD_DELTA_AGGREGATED_RESOURCES,
        move |ctx, req, resp| instance.delta_aggregated_resources(ctx, req, resp),
    );
    builder.build()
}
