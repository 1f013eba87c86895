//! The Envoy bootstrap a dataplane starts with (`POST /bootstrap`): its node id
//! `<mesh>.<name>`, an admin listener, and ADS over gRPC to this control plane, state of
//! the world, as Kuma's template sets it up: over TLS verifying the control plane's
//! certificate and name, with the dataplane token as the `authorization` metadata of
//! every stream.

use serde_json::{json, Value};

/// What the bootstrap is built from.
#[derive(Clone, Debug, PartialEq)]
pub struct BootstrapParams {
    pub mesh: String,
    pub name: String,
    /// `node.cluster`: the dataplane's first inbound service, as Kuma sets it.
    pub service: String,
    pub xds_host: String,
    pub xds_port: u16,
    pub xds_connect_timeout: std::time::Duration,
    pub admin_address: String,
    pub admin_port: u16,
    /// The dataplane token Envoy sends as gRPC metadata `authorization`.
    pub token: Option<String>,
    /// TLS to the xDS server; None = plaintext (`dpServer.tlsEnabled: false`).
    pub tls: Option<AdsTls>,
}

/// How Envoy checks the control plane it connects to.
#[derive(Clone, Debug, PartialEq)]
pub struct AdsTls {
    /// PEM of the CA (or certificate) to trust.
    pub ca_pem: String,
}

/// The bootstrap as JSON (Envoy reads JSON as YAML).
pub fn bootstrap(p: &BootstrapParams) -> Value {
    let is_ip = p.xds_host.parse::<std::net::IpAddr>().is_ok();
    let connect_timeout = format!("{}s", p.xds_connect_timeout.as_secs_f64());
    let mut grpc_service = json!({"envoy_grpc": {"cluster_name": "ads_cluster"}});
    if let Some(token) = &p.token {
        grpc_service["initial_metadata"] = json!([{"key": "authorization", "value": token}]);
    }
    let mut b = json!({
        "node": {
            "id": format!("{}.{}", p.mesh, p.name),
            "cluster": p.service,
        },
        "admin": {
            "address": {"socket_address": {"address": p.admin_address, "port_value": p.admin_port}}
        },
        "dynamic_resources": {
            "ads_config": {
                "api_type": "GRPC",
                "transport_api_version": "V3",
                "set_node_on_first_message_only": true,
                "grpc_services": [grpc_service]
            },
            "cds_config": {"ads": {}, "resource_api_version": "V3"},
            "lds_config": {"ads": {}, "resource_api_version": "V3"}
        },
        "static_resources": {
            "clusters": [{
                "name": "ads_cluster",
                "type": if is_ip { "STATIC" } else { "STRICT_DNS" },
                "connect_timeout": connect_timeout,
                "typed_extension_protocol_options": {
                    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions": {
                        "@type": "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
                        "explicit_http_config": {"http2_protocol_options": {}}
                    }
                },
                "upstream_connection_options": {"tcp_keepalive": {}},
                "load_assignment": {
                    "cluster_name": "ads_cluster",
                    "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {
                        "address": p.xds_host, "port_value": p.xds_port
                    }}}}]}]
                }
            }]
        }
    });
    if !is_ip {
        // `localhost` resolves to ::1 first on many hosts, while the DP server binds IPv4
        // by default: prefer IPv4, fall back to IPv6.
        b["static_resources"]["clusters"][0]["dns_lookup_family"] = json!("V4_PREFERRED");
    }
    if let Some(tls) = &p.tls {
        b["static_resources"]["clusters"][0]["transport_socket"] = ads_transport_socket(p, tls, is_ip);
    }
    b
}

/// Kuma's `ads_cluster` TLS: trust only the given CA, and only a certificate valid for the
/// host Envoy dials (as a DNS name or an IP address SAN).
fn ads_transport_socket(p: &BootstrapParams, tls: &AdsTls, is_ip: bool) -> Value {
    let mut ctx = json!({
        "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
        "common_tls_context": {
            // The DP server routes by ALPN: h2 is gRPC.
            "alpn_protocols": ["h2"],
            "validation_context": {
                "trusted_ca": {"inline_string": tls.ca_pem},
                "match_typed_subject_alt_names": [{
                    "san_type": if is_ip { "IP_ADDRESS" } else { "DNS" },
                    "matcher": {"exact": p.xds_host}
                }]
            }
        }
    });
    // SNI carries host names only (RFC 6066 §3).
    if !is_ip {
        ctx["sni"] = json!(p.xds_host);
    }
    json!({"name": "envoy.transport_sockets.tls", "typed_config": ctx})
}

/// The bootstrap as YAML text.
pub fn bootstrap_yaml(p: &BootstrapParams) -> String {
    serde_yaml_ng::to_string(&bootstrap(p)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(host: &str) -> BootstrapParams {
        BootstrapParams {
            mesh: "default".into(),
            name: "web-1".into(),
            service: "web".into(),
            xds_host: host.into(),
            xds_port: 5678,
            xds_connect_timeout: std::time::Duration::from_secs(1),
            admin_address: "127.0.0.1".into(),
            admin_port: 9901,
            token: None,
            tls: None,
        }
    }

    #[test]
    fn node_id_and_ads_target() {
        let b = bootstrap(&params("127.0.0.1"));
        assert_eq!(b["node"]["id"], "default.web-1");
        assert_eq!(b["node"]["cluster"], "web");
        let cluster = &b["static_resources"]["clusters"][0];
        assert_eq!(cluster["type"], "STATIC");
        assert_eq!(
            cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]["socket_address"]
                ["port_value"],
            5678
        );
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 9901);
    }

    #[test]
    fn tls_and_token() {
        let mut p = params("cp.example");
        p.token = Some("jwt".into());
        p.tls = Some(AdsTls { ca_pem: "PEM".into() });
        let b = bootstrap(&p);
        let meta = &b["dynamic_resources"]["ads_config"]["grpc_services"][0]["initial_metadata"][0];
        assert_eq!((&meta["key"], &meta["value"]), (&json!("authorization"), &json!("jwt")));
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert_eq!(tls["sni"], "cp.example");
        let v = &tls["common_tls_context"]["validation_context"];
        assert_eq!(v["trusted_ca"]["inline_string"], "PEM");
        assert_eq!(v["match_typed_subject_alt_names"][0]["san_type"], "DNS");
        let b = bootstrap(&BootstrapParams { tls: Some(AdsTls { ca_pem: "PEM".into() }), ..params("10.0.0.1") });
        let tls = &b["static_resources"]["clusters"][0]["transport_socket"]["typed_config"];
        assert!(tls.get("sni").is_none());
        assert_eq!(
            tls["common_tls_context"]["validation_context"]["match_typed_subject_alt_names"][0]["san_type"],
            "IP_ADDRESS"
        );
        // Plaintext, no token: neither appears.
        let b = bootstrap(&params("cp.example"));
        assert!(b["static_resources"]["clusters"][0].get("transport_socket").is_none());
        assert!(b["dynamic_resources"]["ads_config"]["grpc_services"][0].get("initial_metadata").is_none());
    }

    #[test]
    fn hostnames_resolve_through_dns() {
        assert_eq!(bootstrap(&params("cp.example"))["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
    }
}
