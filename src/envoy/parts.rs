//! Envoy resources while the generators and plugins shape them, before they are encoded.
//!
//! A generator builds the base resource from the resolved routing; then every plugin's
//! `configure_*` hook adjusts it from its own conf (never from the proxy), in plugin order,
//! as Kuma's plugins mutate the generated resource set.

use super::cluster::Cluster;
use super::http_connection_manager::HttpConnectionManager;
use super::listener_components::Filter;
use super::tcp_proxy::TcpProxy;
use super::tls::DownstreamTlsContext;
use crate::model::dataplane::Protocol;

/// An outbound listener's filters: an HTTP connection manager (with its inline route config)
/// for HTTP-family protocols, a TCP proxy otherwise.
#[derive(Clone, Debug, Default)]
pub struct OutboundListener {
    pub protocol: Option<Protocol>,
    pub hcm: Option<HttpConnectionManager>,
    pub tcp: Option<TcpProxy>,
}

/// An inbound listener's filters and the local cluster behind it.
#[derive(Clone, Debug, Default)]
pub struct InboundListener {
    pub protocol: Option<Protocol>,
    /// Network filters that run before the HCM / TCP proxy (RBAC, TCP rate limits).
    pub network_filters: Vec<Filter>,
    pub hcm: Option<HttpConnectionManager>,
    pub tcp: Option<TcpProxy>,
    pub local_cluster: Cluster,
    /// How the listener takes connections: plaintext unless mesh TLS is on.
    pub transport: InboundTransport,
}

/// An inbound's transport (reference §1.5).
#[derive(Clone, Debug, Default)]
pub enum InboundTransport {
    #[default]
    Plaintext,
    /// One filter chain with this TLS context: mesh TLS only.
    Strict(DownstreamTlsContext),
    /// A TLS inspector and three chains: plaintext, the application's own TLS (passed
    /// through), and mesh TLS (ALPN `kuma`) with this context.
    Permissive(DownstreamTlsContext),
}
