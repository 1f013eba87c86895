//! gRPC glue for `envoy.service.discovery.v3.AggregatedDiscoveryService`: method
//! descriptors and a client, hand-written as grpcio-compiler would generate them
//! (rust-protobuf 3 has no grpcio code generator).
//!
//! The server side is not here: higuma serves ADS with its own method descriptor whose
//! responses are pre-encoded bytes (`crate::xds::server`), so that shared resources are
//! never re-encoded per dataplane. The client below is what tests and the load
//! generator use to stand in for Envoy:
//!
//! ```text
//! let channel = grpcio::ChannelBuilder::new(env).connect("127.0.0.1:5678");
//! let client = AggregatedDiscoveryServiceClient::new(channel);
//! let (requests, responses) = client.stream_aggregated_resources()?;
//! ```

use super::discovery::{DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse};

/// Full gRPC method name of the state-of-the-world ADS stream.
pub const STREAM_AGGREGATED_RESOURCES: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
/// Full gRPC method name of the incremental (delta) ADS stream.
pub const DELTA_AGGREGATED_RESOURCES: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// `rpc StreamAggregatedResources(stream DiscoveryRequest) returns (stream DiscoveryResponse)`.
pub const METHOD_STREAM_AGGREGATED_RESOURCES: grpcio::Method<DiscoveryRequest, DiscoveryResponse> = grpcio::Method {
    ty: grpcio::MethodType::Duplex,
    name: STREAM_AGGREGATED_RESOURCES,
    req_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
    resp_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
};

/// `rpc DeltaAggregatedResources(stream DeltaDiscoveryRequest) returns (stream DeltaDiscoveryResponse)`.
pub const METHOD_DELTA_AGGREGATED_RESOURCES: grpcio::Method<DeltaDiscoveryRequest, DeltaDiscoveryResponse> =
    grpcio::Method {
        ty: grpcio::MethodType::Duplex,
        name: DELTA_AGGREGATED_RESOURCES,
        req_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
        resp_mar: grpcio::Marshaller { ser: grpcio::pb_ser, de: grpcio::pb_de },
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
        AggregatedDiscoveryServiceClient { client: grpcio::Client::new(channel) }
    }

    /// Opens a state-of-the-world ADS stream with explicit call options.
    pub fn stream_aggregated_resources_opt(
        &self,
        opt: grpcio::CallOption,
    ) -> grpcio::Result<(grpcio::ClientDuplexSender<DiscoveryRequest>, grpcio::ClientDuplexReceiver<DiscoveryResponse>)>
    {
        self.client.duplex_streaming(&METHOD_STREAM_AGGREGATED_RESOURCES, opt)
    }

    /// Opens a state-of-the-world ADS stream.
    pub fn stream_aggregated_resources(
        &self,
    ) -> grpcio::Result<(grpcio::ClientDuplexSender<DiscoveryRequest>, grpcio::ClientDuplexReceiver<DiscoveryResponse>)>
    {
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
        self.client.duplex_streaming(&METHOD_DELTA_AGGREGATED_RESOURCES, opt)
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
