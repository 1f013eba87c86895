//! The Envoy bootstrap a dataplane starts with (`POST /bootstrap`): its node id
//! `<mesh>.<name>`, an admin listener, and ADS over gRPC to this control plane, state of
//! the world, as Kuma's template sets it up.

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
}

/// The bootstrap as JSON (Envoy reads JSON as YAML).
pub fn bootstrap(p: &BootstrapParams) -> Value {
    let is_ip = p.xds_host.parse::<std::net::IpAddr>().is_ok();
    let connect_timeout = format!("{}s", p.xds_connect_timeout.as_secs_f64());
    json!({
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
                "grpc_services": [{"envoy_grpc": {"cluster_name": "ads_cluster"}}]
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
    })
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
    fn hostnames_resolve_through_dns() {
        assert_eq!(bootstrap(&params("cp.example"))["static_resources"]["clusters"][0]["type"], "STRICT_DNS");
    }
}
