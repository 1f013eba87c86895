//! The resolved TLS confs of inbounds and clusters, and the Envoy messages they make:
//! `DownstreamTlsContext` (client certificate required, peers verified by SPIFFE prefix)
//! and `UpstreamTlsContext` (ALPN `kuma`, the server's SPIFFE id, Kuma's SNI), both taking
//! certificate and trust bundle from SDS over ADS.

use protobuf::{EnumOrUnknown, MessageField};

use crate::envoy::base::TransportSocket;
use crate::envoy::config_source::{AggregatedConfigSource, ApiVersion, ConfigSource};
use crate::envoy::string::StringMatcher;
use crate::envoy::tls::common_tls_context::CombinedCertificateValidationContext;
use crate::envoy::tls::{CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext};
use crate::envoy::tls_common::subject_alt_name_matcher::SanType;
use crate::envoy::tls_common::tls_parameters::TlsProtocol;
use crate::envoy::tls_common::{CertificateValidationContext, SubjectAltNameMatcher, TlsParameters};
use crate::envoy::tls_secret::SdsSecretConfig;
use crate::envoy::to_any;

/// The ALPN a sidecar offers to another sidecar's inbound, which a PERMISSIVE inbound's
/// filter chain matches on to tell mesh TLS from an application's own (Kuma's
/// `KumaALPNProtocols`).
pub const KUMA_ALPN: &str = "kuma";
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// A TLS protocol version (MeshTLS `TLSAuto`, `TLS10` ... `TLS13`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TlsVersion {
    Auto,
    V10,
    V11,
    V12,
    V13,
}

impl TlsVersion {
    pub fn parse(s: &str) -> Option<TlsVersion> {
        Some(match s {
            "TLSAuto" => TlsVersion::Auto,
            "TLS10" => TlsVersion::V10,
            "TLS11" => TlsVersion::V11,
            "TLS12" => TlsVersion::V12,
            "TLS13" => TlsVersion::V13,
            _ => return None,
        })
    }

    fn envoy(self) -> TlsProtocol {
        match self {
            TlsVersion::Auto => TlsProtocol::TLS_AUTO,
            TlsVersion::V10 => TlsProtocol::TLSv1_0,
            TlsVersion::V11 => TlsProtocol::TLSv1_1,
            TlsVersion::V12 => TlsProtocol::TLSv1_2,
            TlsVersion::V13 => TlsProtocol::TLSv1_3,
        }
    }
}

/// MeshTLS's versions and ciphers; empty: Envoy's defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct TlsParams {
    pub min: Option<TlsVersion>,
    pub max: Option<TlsVersion>,
    pub ciphers: Vec<String>,
}

impl TlsParams {
    fn envoy(&self) -> Option<TlsParameters> {
        if self.min.is_none() && self.max.is_none() && self.ciphers.is_empty() {
            return None;
        }
        let mut p = TlsParameters::new();
        if let Some(v) = self.min {
            p.tls_minimum_protocol_version = EnumOrUnknown::new(v.envoy());
        }
        if let Some(v) = self.max {
            p.tls_maximum_protocol_version = EnumOrUnknown::new(v.envoy());
        }
        p.cipher_suites = self.ciphers.clone();
        Some(p)
    }
}

/// How an inbound accepts mesh TLS.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ServerTls {
    /// PERMISSIVE: plaintext too (a TLS inspector and three filter chains); else STRICT.
    pub permissive: bool,
    pub identity_sds: String,
    pub trust_sds: String,
    /// Client SPIFFE ids are accepted by these prefixes (`spiffe://<mesh>/`).
    pub san_prefixes: Vec<String>,
    pub params: TlsParams,
}

/// How a cluster verifies the server.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum SanMatch {
    /// `spiffe://<mesh>/<service>`.
    Exact(String),
    /// Any SPIFFE id of these trust domains.
    Prefixes(Vec<String>),
}

/// How a cluster speaks mesh TLS to its endpoints.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ClientTls {
    pub identity_sds: String,
    pub trust_sds: String,
    pub san: SanMatch,
    /// Kuma's `<service>{mesh=<mesh>,...}`.
    pub sni: String,
    pub params: TlsParams,
}

/// `{name, sdsConfig: {ads: {}, resourceApiVersion: V3}}`.
fn sds(name: &str) -> SdsSecretConfig {
    let mut cs = ConfigSource::new();
    cs.set_ads(AggregatedConfigSource::new());
    cs.resource_api_version = EnumOrUnknown::new(ApiVersion::V3);
    let mut s = SdsSecretConfig::new();
    s.name = name.to_string();
    s.sds_config = MessageField::some(cs);
    s
}

fn uri_matcher(m: StringMatcher) -> SubjectAltNameMatcher {
    let mut out = SubjectAltNameMatcher::new();
    out.san_type = EnumOrUnknown::new(SanType::URI);
    out.matcher = MessageField::some(m);
    out
}

fn prefix(p: &str) -> StringMatcher {
    let mut m = StringMatcher::new();
    m.set_prefix(p.to_string());
    m
}

fn common(identity: &str, trust: &str, sans: Vec<SubjectAltNameMatcher>, params: &TlsParams) -> CommonTlsContext {
    let mut validation = CertificateValidationContext::new();
    validation.match_typed_subject_alt_names = sans;
    let mut combined = CombinedCertificateValidationContext::new();
    combined.default_validation_context = MessageField::some(validation);
    combined.validation_context_sds_secret_config = MessageField::some(sds(trust));
    let mut c = CommonTlsContext::new();
    c.set_combined_validation_context(combined);
    c.tls_certificate_sds_secret_configs.push(sds(identity));
    c.tls_params = params.envoy().into();
    c
}

/// The inbound side (Kuma's `CreateDownstreamTlsContext`): no ALPN (the HCM then detects
/// HTTP/2 from the preface), a client certificate required.
pub fn downstream(t: &ServerTls) -> DownstreamTlsContext {
    let sans = t.san_prefixes.iter().map(|p| uri_matcher(prefix(p))).collect();
    let mut d = DownstreamTlsContext::new();
    d.common_tls_context = MessageField::some(common(&t.identity_sds, &t.trust_sds, sans, &t.params));
    d.require_client_certificate = MessageField::some(crate::envoy::bool_value(true));
    d
}

/// The cluster side (Kuma's `ClientSideMTLS`).
pub fn upstream(t: &ClientTls) -> UpstreamTlsContext {
    let sans = match &t.san {
        SanMatch::Exact(id) => {
            let mut m = StringMatcher::new();
            m.set_exact(id.clone());
            vec![uri_matcher(m)]
        }
        SanMatch::Prefixes(ps) => ps.iter().map(|p| uri_matcher(prefix(p))).collect(),
    };
    let mut c = common(&t.identity_sds, &t.trust_sds, sans, &t.params);
    c.alpn_protocols.push(KUMA_ALPN.to_string());
    let mut u = UpstreamTlsContext::new();
    u.common_tls_context = MessageField::some(c);
    u.sni = t.sni.clone();
    u
}

/// `envoy.transport_sockets.tls` with `context` as its typed config.
pub fn transport_socket<M: protobuf::MessageFull>(context: &M) -> TransportSocket {
    let mut ts = TransportSocket::new();
    ts.name = TLS_TRANSPORT_SOCKET.to_string();
    ts.set_typed_config(to_any(context));
    ts
}
