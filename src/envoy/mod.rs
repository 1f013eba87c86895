//! The Envoy v3 xDS API subset higuma serves, as Rust types.
//!
//! higuma does not vendor Envoy's `.proto` files: `proto/` at the crate root
//! holds our own declarations of only the messages, fields and enums we use,
//! with package names, message names, field names and field numbers exactly
//! as upstream Envoy declares them (so the wire format and the
//! `type.googleapis.com/...` type URLs are the real ones). Everything upstream
//! has that we do not declare is simply absent; if Envoy ever sent such a
//! field, rust-protobuf keeps it as an unknown field.
//!
//! `build.rs` compiles every `.proto` under `proto/` with rust-protobuf's pure
//! parser (no `protoc`) into `$OUT_DIR/envoy_protos/`, one Rust module per
//! `.proto` file, named after the file stem: `proto/envoy/config/listener/v3/listener.proto`
//! becomes [`listener`], so the listener type is `higuma::envoy::listener::Listener`.
//! Stems are unique across `proto/` (the build script refuses duplicates).
//!
//! | module | proto package | main types |
//! |---|---|---|
//! | [`discovery`], [`ads`] | `envoy.service.discovery.v3` | `DiscoveryRequest`, `DiscoveryResponse` |
//! | [`status`] | `google.rpc` | `Status` |
//! | [`base`], [`address`], [`config_source`], [`extension`], [`grpc_service`], [`protocol`], [`health_check`] | `envoy.config.core.v3` | `Node`, `Metadata`, `Address`, `SocketAddress`, `ConfigSource`, `ApiConfigSource`, `GrpcService`, `TypedExtensionConfig`, `Http2ProtocolOptions`, `HealthCheck`, ... |
//! | [`cluster`], [`circuit_breaker`], [`outlier_detection`] | `envoy.config.cluster.v3` | `Cluster`, `CircuitBreakers`, `OutlierDetection` |
//! | [`endpoint`], [`endpoint_components`] | `envoy.config.endpoint.v3` | `ClusterLoadAssignment`, `LocalityLbEndpoints`, `LbEndpoint`, `Endpoint` |
//! | [`listener`], [`listener_components`] | `envoy.config.listener.v3` | `Listener`, `FilterChain`, `FilterChainMatch`, `Filter` |
//! | [`route`], [`route_components`] | `envoy.config.route.v3` | `RouteConfiguration`, `VirtualHost`, `Route`, `RouteMatch`, `RouteAction`, `WeightedCluster`, `RetryPolicy`, `HeaderMatcher` |
//! | [`http_connection_manager`] | `envoy.extensions.filters.network.http_connection_manager.v3` | `HttpConnectionManager`, `HttpFilter`, `Rds` |
//! | [`router`] | `envoy.extensions.filters.http.router.v3` | `Router` |
//! | [`tcp_proxy`] | `envoy.extensions.filters.network.tcp_proxy.v3` | `TcpProxy` |
//! | [`http_protocol_options`] | `envoy.extensions.upstreams.http.v3` | `HttpProtocolOptions` |
//! | [`health_check_event_file_sink`] | `envoy.extensions.health_check.event_sinks.file.v3` | `HealthCheckEventFileSink` |
//! | [`bootstrap`] | `envoy.config.bootstrap.v3` | `Bootstrap`, `Admin` |
//! | [`percent`], [`range`], [`http`], [`semantic_version`] | `envoy.type.v3` | `Percent`, `FractionalPercent`, `Int64Range`, `CodecClientType` |
//! | [`string`], [`regex`] | `envoy.type.matcher.v3` | `StringMatcher`, `RegexMatcher` |
//! | [`tls`], [`tls_common`], [`tls_secret`] | `envoy.extensions.transport_sockets.tls.v3` | `UpstreamTlsContext`, `DownstreamTlsContext`, `CommonTlsContext`, `Secret`, `SdsSecretConfig` |
//! | [`tls_inspector`] | `envoy.extensions.filters.listener.tls_inspector.v3` | `TlsInspector` |
//! | [`rbac`], [`network_rbac`] | `envoy.config.rbac.v3`, `envoy.extensions.filters.network.rbac.v3` | `RBAC`, `Policy`, `Principal`, the network filter's `RBAC` |
//!
//! Well-known types (`Any`, `Duration`, `Struct`, wrappers) are rust-protobuf's
//! own, re-exported here as [`wkt`]. The gRPC glue for the Aggregated
//! Discovery Service (rust-protobuf 3 has no grpcio code generator) is
//! hand-written in [`ads_grpc`].
//!
//! Adding a field: copy its name and number from upstream into the matching
//! file under `proto/` (never renumber), rebuild, and extend
//! `tests/envoy_protos.rs` if Envoy should validate it.

/// All modules generated from `proto/`; re-exported at this level.
#[allow(missing_docs, clippy::all, clippy::pedantic, unreachable_pub, rustdoc::all)]
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/envoy_protos/mod.rs"));
}

pub use generated::*;

pub mod ads_grpc;
pub mod parts;

pub use protobuf::well_known_types as wkt;

use protobuf::well_known_types::any::Any;
use protobuf::well_known_types::duration::Duration;
use protobuf::well_known_types::wrappers::{BoolValue, UInt32Value};
use protobuf::MessageFull;

/// The prefix of every type URL Envoy uses in `Any` and in xDS `type_url`s.
pub const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// LDS resources: [`listener::Listener`].
pub const LISTENER_TYPE_URL: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
/// CDS resources: [`cluster::Cluster`].
pub const CLUSTER_TYPE_URL: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
/// EDS resources: [`endpoint::ClusterLoadAssignment`].
pub const ENDPOINT_TYPE_URL: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
/// RDS resources: [`route::RouteConfiguration`].
pub const ROUTE_TYPE_URL: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
/// SDS resources: [`tls_secret::Secret`].
pub const SECRET_TYPE_URL: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Every type URL higuma serves over ADS.
pub const ADS_TYPE_URLS: [&str; 5] =
    [SECRET_TYPE_URL, CLUSTER_TYPE_URL, ENDPOINT_TYPE_URL, LISTENER_TYPE_URL, ROUTE_TYPE_URL];

/// `type.googleapis.com/<full name of M>`, e.g. [`LISTENER_TYPE_URL`] for
/// [`listener::Listener`].
pub fn type_url<M: MessageFull>() -> String {
    format!("{TYPE_URL_PREFIX}{}", M::descriptor().full_name())
}

/// Packs `m` into an `Any` whose type URL is [`type_url::<M>()`](type_url).
pub fn to_any<M: MessageFull>(m: &M) -> Any {
    Any {
        type_url: type_url::<M>(),
        // proto3 messages have no required fields, so encoding cannot fail
        // short of a message over 2 GiB, which would be a bug upstream of here.
        value: m.write_to_bytes().expect("encoding a proto3 message"),
        ..Default::default()
    }
}

/// Unpacks `any` as an `M`: `Ok(None)` when its type URL names another type,
/// `Err` when the bytes do not decode.
pub fn from_any<M: MessageFull>(any: &Any) -> protobuf::Result<Option<M>> {
    if any.type_url != type_url::<M>() {
        return Ok(None);
    }
    M::parse_from_bytes(&any.value).map(Some)
}

/// A protobuf `Duration` from a std one (saturating at `i64::MAX` seconds).
pub fn duration(d: std::time::Duration) -> Duration {
    Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: d.subsec_nanos() as i32,
        ..Default::default()
    }
}

/// A protobuf `Duration` of `ms` milliseconds.
pub fn duration_ms(ms: u64) -> Duration {
    duration(std::time::Duration::from_millis(ms))
}

/// A `google.protobuf.UInt32Value` wrapper.
pub fn u32_value(value: u32) -> UInt32Value {
    UInt32Value { value, ..Default::default() }
}

/// A `google.protobuf.BoolValue` wrapper.
pub fn bool_value(value: bool) -> BoolValue {
    BoolValue { value, ..Default::default() }
}
