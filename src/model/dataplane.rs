//! Dataplane (`api/mesh/v1alpha1/dataplane.proto`): a sidecar's inbound and outbound
//! interfaces, and the validation rules of Kuma's `dataplane_validator.go`.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::selector::{key_path, validate_tags, PROTOCOL_TAG, SERVICE_TAG};
use super::{Tags, ValidationError};

/// Where an outbound listens when it does not say.
pub const DEFAULT_OUTBOUND_ADDRESS: &str = "127.0.0.1";

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataplaneSpec {
    /// Required; a missing `networking` decodes as the default and fails validation.
    #[serde(default)]
    pub networking: Networking,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Networking {
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advertised_address: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<Inbound>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outbound: Vec<Outbound>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<Gateway>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transparent_proxying: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<Admin>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Where Envoy listens (on the effective address).
    #[serde(default)]
    pub port: u32,
    /// Where the application listens; defaults to `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_port: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_address: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub tags: Tags,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_probe: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Health {
    #[serde(default)]
    pub ready: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outbound {
    /// `None` means [`DEFAULT_OUTBOUND_ADDRESS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default)]
    pub port: u32,
    #[serde(default)]
    pub tags: Tags,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    #[serde(default)]
    pub tags: Tags,
    /// Omitted when DELEGATED (the proto default).
    #[serde(rename = "type", default, skip_serializing_if = "GatewayType::is_delegated")]
    pub type_: GatewayType,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GatewayType {
    #[default]
    Delegated,
    Builtin,
}

impl GatewayType {
    pub fn is_delegated(&self) -> bool {
        *self == GatewayType::Delegated
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Admin {
    #[serde(default)]
    pub port: u32,
}

/// An inbound's protocol, from its `kuma.io/protocol` tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Http,
    Http2,
    Grpc,
    Tcp,
    Kafka,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [Protocol::Http, Protocol::Http2, Protocol::Grpc, Protocol::Tcp, Protocol::Kafka];

    pub fn parse(value: &str) -> Option<Protocol> {
        Protocol::ALL.into_iter().find(|p| p.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Http2 => "http2",
            Protocol::Grpc => "grpc",
            Protocol::Tcp => "tcp",
            Protocol::Kafka => "kafka",
        }
    }

    /// Served through an HTTP connection manager (http, http2, grpc).
    pub fn is_http(self) -> bool {
        matches!(self, Protocol::Http | Protocol::Http2 | Protocol::Grpc)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Inbound {
    /// The `kuma.io/service` tag (empty if absent; validation requires it).
    pub fn service(&self) -> &str {
        self.tags.get(SERVICE_TAG).map(String::as_str).unwrap_or("")
    }

    /// From `kuma.io/protocol`; absent (or, on an unvalidated spec, unknown) means TCP.
    pub fn protocol(&self) -> Protocol {
        self.tags.get(PROTOCOL_TAG).and_then(|p| Protocol::parse(p)).unwrap_or(Protocol::Tcp)
    }

    /// The address Envoy's inbound listener binds: `inbound.address` or `networking.address`.
    pub fn effective_address<'a>(&'a self, dp: &'a Networking) -> &'a str {
        self.address.as_deref().unwrap_or(&dp.address)
    }

    /// The port the application listens on: `servicePort` or `port`.
    pub fn effective_service_port(&self) -> u32 {
        self.service_port.unwrap_or(self.port)
    }

    /// The address of the local application (the inbound cluster's endpoint):
    /// `serviceAddress`, else the inbound's effective address (Kuma's `ToInboundInterface`;
    /// not 127.0.0.1).
    pub fn local_address<'a>(&'a self, dp: &'a Networking) -> &'a str {
        self.service_address.as_deref().unwrap_or_else(|| self.effective_address(dp))
    }
}

impl Outbound {
    /// `address` or 127.0.0.1.
    pub fn effective_address(&self) -> &str {
        self.address.as_deref().unwrap_or(DEFAULT_OUTBOUND_ADDRESS)
    }

    /// The `kuma.io/service` tag (empty if absent; validation requires it).
    pub fn service(&self) -> &str {
        self.tags.get(SERVICE_TAG).map(String::as_str).unwrap_or("")
    }
}

impl DataplaneSpec {
    /// The services of the inbounds, in inbound order (duplicates kept).
    pub fn services(&self) -> impl Iterator<Item = &str> {
        self.networking.inbound.iter().map(Inbound::service)
    }

    /// The tag maps of the inbounds, in inbound order; policies select a dataplane when one of
    /// their selectors matches one of these.
    pub fn tags_of_inbounds(&self) -> impl Iterator<Item = &Tags> {
        self.networking.inbound.iter().map(|i| &i.tags)
    }

    pub fn is_gateway(&self) -> bool {
        self.networking.gateway.is_some()
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        let net = &self.networking;
        if *net == Networking::default() {
            errors.add("networking", "must be defined");
            return errors.into_result();
        }
        if net.address.is_empty() {
            errors.add("networking.address", "address has to be valid IP address or domain name: cannot be empty");
        } else if !is_ip(&net.address) && !is_dns_name(&net.address) {
            errors.add(
                "networking.address",
                format!("address has to be valid IP address or domain name, got {:?}", net.address),
            );
        }
        if let Some(adv) = &net.advertised_address {
            if !is_ip(adv) && !is_dns_name(adv) {
                errors.add(
                    "networking.advertisedAddress",
                    format!("has to be valid IP address or domain name, got {adv:?}"),
                );
            }
        }
        if net.inbound.is_empty() && net.gateway.is_none() {
            errors.add("networking", "has to contain at least one inbound interface or gateway");
        }
        if !net.inbound.is_empty() && net.gateway.is_some() {
            errors.add("networking", "inbound cannot be defined both with gateway");
        }
        if let Some(gateway) = &net.gateway {
            if !gateway.tags.contains_key(SERVICE_TAG) {
                errors.add("networking.gateway.tags", format!("must contain {SERVICE_TAG}"));
            }
            errors.add_nested("", validate_tags("networking.gateway.tags", &gateway.tags));
        }

        let mut listeners: HashMap<(&str, u32), usize> = HashMap::new();
        for (i, inbound) in net.inbound.iter().enumerate() {
            let mut inbound_errors = validate_inbound(inbound, &net.address);
            let key = (inbound.effective_address(net), inbound.port);
            if let Some(first) = listeners.get(&key) {
                inbound_errors
                    .add("port", format!("duplicates networking.inbound[{first}]: both listen on {}:{}", key.0, key.1));
            } else {
                listeners.insert(key, i);
            }
            errors.add_nested(&format!("networking.inbound[{i}]"), inbound_errors);
        }

        let mut outbounds: HashMap<(&str, u32), usize> = HashMap::new();
        for (i, outbound) in net.outbound.iter().enumerate() {
            let mut outbound_errors = validate_outbound(outbound);
            let key = (outbound.effective_address(), outbound.port);
            if let Some(first) = outbounds.get(&key) {
                outbound_errors.add(
                    "port",
                    format!("duplicates networking.outbound[{first}]: both listen on {}:{}", key.0, key.1),
                );
            } else {
                outbounds.insert(key, i);
            }
            errors.add_nested(&format!("networking.outbound[{i}]"), outbound_errors);
        }

        if let Some(admin) = &net.admin {
            if !port_in_range(admin.port) {
                errors.add("networking.admin.port", port_range_reason(admin.port));
            } else if let Some(i) =
                net.inbound.iter().position(|inb| inb.port == admin.port && inb.effective_address(net) == net.address)
            {
                errors.add(
                    "networking.admin.port",
                    format!(
                        "must differ from networking.inbound[{i}].port ({}) on address {}",
                        admin.port, net.address
                    ),
                );
            }
        }
        errors.into_result()
    }
}

fn validate_inbound(inbound: &Inbound, dp_address: &str) -> ValidationError {
    let mut errors = ValidationError::default();
    if !port_in_range(inbound.port) {
        errors.add("port", port_range_reason(inbound.port));
    }
    if let Some(sp) = inbound.service_port {
        if !port_in_range(sp) {
            errors.add("servicePort", port_range_reason(sp));
        }
    }
    let same_port = inbound.service_port.is_none() || inbound.service_port == Some(inbound.port);
    if let Some(sa) = &inbound.service_address {
        if !is_ip(sa) {
            errors.add("serviceAddress", format!("serviceAddress has to be valid IP address, got {sa:?}"));
        } else if same_port && inbound.address.as_deref().unwrap_or(dp_address) == sa {
            errors.add("serviceAddress", "serviceAddress and servicePort has to differ from address and port");
        }
    }
    if let Some(addr) = &inbound.address {
        if !is_ip(addr) {
            errors.add("address", format!("address has to be valid IP address, got {addr:?}"));
        }
    }
    if !inbound.tags.contains_key(SERVICE_TAG) {
        errors.add("tags", format!("must contain {SERVICE_TAG}"));
    }
    if let Some(proto) = inbound.tags.get(PROTOCOL_TAG) {
        if Protocol::parse(proto).is_none() {
            let allowed: Vec<&str> = Protocol::ALL.iter().map(|p| p.as_str()).collect();
            errors.add(
                format!("tags{}", key_path(PROTOCOL_TAG)),
                format!("tag {PROTOCOL_TAG:?} has an invalid value {proto:?}. Allowed values: {}", allowed.join(", ")),
            );
        }
    }
    errors.add_nested("", validate_tags("tags", &inbound.tags));
    errors
}

fn validate_outbound(outbound: &Outbound) -> ValidationError {
    let mut errors = ValidationError::default();
    if !port_in_range(outbound.port) {
        errors.add("port", port_range_reason(outbound.port));
    }
    if let Some(addr) = &outbound.address {
        if !is_ip(addr) {
            errors.add("address", format!("address has to be valid IP address, got {addr:?}"));
        }
    }
    if !outbound.tags.contains_key(SERVICE_TAG) {
        errors.add("tags", format!("must contain {SERVICE_TAG}"));
    }
    errors.add_nested("", validate_tags("tags", &outbound.tags));
    errors
}

pub(crate) fn port_in_range(port: u32) -> bool {
    (1..=65535).contains(&port)
}

pub(crate) fn port_range_reason(port: u32) -> String {
    format!("must be in the range 1..65535, got {port}")
}

pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<IpAddr>().is_ok()
}

/// RFC 1123 host name: dot-separated labels of `[a-zA-Z0-9-]`, 1..63 characters, not starting
/// or ending with `-`; at most 253 characters; an optional trailing dot.
pub(crate) fn is_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        // A name made only of digits and dots is a malformed IPv4 address, not a host name.
        && !s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

impl super::SpecType for DataplaneSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        DataplaneSpec::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::model::Spec;
    use serde_json::{json, Value};

    const DOCS_DP: &str = r#"
type: Dataplane
mesh: default
name: backend-1
networking:
  address: 192.168.0.2
  inbound:
    - port: 8000
      servicePort: 80
      tags:
        kuma.io/service: backend
        kuma.io/protocol: http
  outbound:
    - port: 10000
      tags:
        kuma.io/service: redis
"#;

    fn dp(networking: Value) -> Value {
        json!({"type": "Dataplane", "mesh": "default", "name": "dp-1", "networking": networking})
    }

    fn spec_of(v: Value) -> DataplaneSpec {
        match from_json(v).unwrap().spec {
            Spec::Dataplane(s) => s,
            other => panic!("not a dataplane: {other:?}"),
        }
    }

    /// Asserts that decoding+validating `v` fails with a violation at `field` whose reason
    /// contains `reason`.
    #[track_caller]
    fn assert_violation(v: Value, field: &str, reason: &str) {
        let err = from_json(v).expect_err("expected a validation error");
        assert!(
            err.violations.iter().any(|x| x.field == field && x.reason.contains(reason)),
            "no violation at {field:?} containing {reason:?}: {err}"
        );
    }

    fn inbound_dp(inbound: Value) -> Value {
        dp(json!({"address": "192.168.0.1", "inbound": [inbound]}))
    }

    #[test]
    fn docs_example_round_trips() {
        let doc = parse_document(DOCS_DP).unwrap();
        let env = from_json(doc.clone()).unwrap();
        let mut expected = doc.as_object().unwrap().clone();
        for k in ["type", "mesh", "name"] {
            expected.remove(k);
        }
        assert_eq!(env.spec.to_json(), Value::Object(expected));
    }

    #[test]
    fn full_dataplane_round_trips() {
        let v = dp(json!({
            "address": "10.0.0.1",
            "advertisedAddress": "example.com",
            "inbound": [{
                "port": 8080, "servicePort": 7070, "serviceAddress": "127.0.0.1", "address": "10.0.0.2",
                "tags": {"kuma.io/service": "web", "version": "1"},
                "health": {"ready": true},
                "serviceProbe": {"interval": "1s", "tcp": {}}
            }],
            "outbound": [{"address": "127.0.0.2", "port": 3333, "tags": {"kuma.io/service": "redis"}}],
            "transparentProxying": {"redirectPortInbound": 15006, "redirectPortOutbound": 15001},
            "admin": {"port": 9901}
        }));
        let spec = spec_of(v.clone());
        assert_eq!(Spec::Dataplane(spec).to_json()["networking"], v["networking"]);
    }

    #[test]
    fn helpers() {
        let spec = spec_of(parse_document(DOCS_DP).unwrap());
        let net = &spec.networking;
        let inbound = &net.inbound[0];
        assert_eq!(inbound.service(), "backend");
        assert_eq!(inbound.protocol(), Protocol::Http);
        assert!(inbound.protocol().is_http());
        assert_eq!(inbound.effective_address(net), "192.168.0.2");
        assert_eq!(inbound.effective_service_port(), 80);
        assert_eq!(inbound.local_address(net), "192.168.0.2");
        assert_eq!(net.outbound[0].effective_address(), "127.0.0.1");
        assert_eq!(net.outbound[0].service(), "redis");
        assert_eq!(spec.services().collect::<Vec<_>>(), ["backend"]);
        assert_eq!(spec.tags_of_inbounds().next().unwrap()["kuma.io/protocol"], "http");

        let other = Inbound {
            port: 9000,
            address: Some("10.0.0.9".into()),
            service_address: Some("127.0.0.1".into()),
            ..Default::default()
        };
        assert_eq!(other.protocol(), Protocol::Tcp);
        assert!(!Protocol::Tcp.is_http() && !Protocol::Kafka.is_http());
        assert!(Protocol::Grpc.is_http() && Protocol::Http2.is_http());
        assert_eq!(other.effective_address(net), "10.0.0.9");
        assert_eq!(other.local_address(net), "127.0.0.1");
        assert_eq!(other.effective_service_port(), 9000);
        assert_eq!(other.service(), "");
    }

    #[test]
    fn networking_is_required() {
        assert_violation(json!({"type": "Dataplane", "mesh": "default", "name": "x"}), "networking", "must be defined");
    }

    #[test]
    fn address_is_required_and_valid() {
        let inbound = json!([{"port": 1, "tags": {"kuma.io/service": "a"}}]);
        assert_violation(dp(json!({"inbound": inbound})), "networking.address", "cannot be empty");
        assert_violation(dp(json!({"address": "not an ip", "inbound": inbound})), "networking.address", "not an ip");
        assert_violation(dp(json!({"address": "1.2.3.999", "inbound": inbound})), "networking.address", "valid IP");
        assert!(from_json(dp(json!({"address": "backend.svc.local", "inbound": inbound}))).is_ok());
        assert!(from_json(dp(json!({"address": "::1", "inbound": inbound}))).is_ok());
    }

    #[test]
    fn needs_an_inbound_or_gateway() {
        assert_violation(
            dp(json!({"address": "192.168.0.1"})),
            "networking",
            "has to contain at least one inbound interface or gateway",
        );
        let gw =
            dp(json!({"address": "192.168.0.1", "gateway": {"tags": {"kuma.io/service": "edge"}, "type": "BUILTIN"}}));
        let spec = spec_of(gw.clone());
        assert_eq!(spec.networking.gateway.as_ref().unwrap().type_, GatewayType::Builtin);
        assert_eq!(Spec::Dataplane(spec).to_json()["networking"], gw["networking"]);
        assert_violation(
            dp(json!({"address": "192.168.0.1", "gateway": {"tags": {}}})),
            "networking.gateway.tags",
            "must contain kuma.io/service",
        );
        assert_violation(
            dp(json!({"address": "192.168.0.1", "gateway": {"tags": {"kuma.io/service": "e"}, "type": "OTHER"}})),
            "networking.gateway.type",
            "OTHER",
        );
    }

    #[test]
    fn inbound_ports_are_in_range() {
        assert_violation(
            inbound_dp(json!({"port": 70000, "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].port",
            "must be in the range 1..65535",
        );
        assert_violation(
            inbound_dp(json!({"tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].port",
            "1..65535",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "servicePort": 0, "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].servicePort",
            "1..65535",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "servicePort": 65536, "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].servicePort",
            "65536",
        );
    }

    #[test]
    fn inbound_addresses_are_ips() {
        assert_violation(
            inbound_dp(json!({"port": 80, "serviceAddress": "localhost", "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].serviceAddress",
            "valid IP",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "address": "host.local", "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].address",
            "valid IP",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "serviceAddress": "192.168.0.1", "tags": {"kuma.io/service": "a"}})),
            "networking.inbound[0].serviceAddress",
            "has to differ",
        );
    }

    #[test]
    fn inbound_tags() {
        assert_violation(
            inbound_dp(json!({"port": 80, "tags": {"version": "1"}})),
            "networking.inbound[0].tags",
            "must contain kuma.io/service",
        );
        let err = from_json(inbound_dp(json!({"port": 80, "tags": {"version": "1"}}))).unwrap_err();
        assert_eq!(err.violations[0].reason, "must contain kuma.io/service");
        assert_violation(
            inbound_dp(json!({"port": 80, "tags": {"kuma.io/service": "a", "kuma.io/protocol": "mongo"}})),
            "networking.inbound[0].tags[\"kuma.io/protocol\"]",
            "\"mongo\"",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "tags": {"kuma.io/service": "a b"}})),
            "networking.inbound[0].tags[\"kuma.io/service\"]",
            "must consist of",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "tags": {"kuma.io/service": "a", "version": ""}})),
            "networking.inbound[0].tags[\"version\"]",
            "cannot be empty",
        );
        assert_violation(
            inbound_dp(json!({"port": 80, "tags": {"kuma.io/service": "a", "bad key!": "x"}})),
            "networking.inbound[0].tags[\"bad key!\"]",
            "tag key",
        );
    }

    #[test]
    fn duplicate_inbounds() {
        let v = dp(json!({"address": "192.168.0.1", "inbound": [
            {"port": 80, "tags": {"kuma.io/service": "a"}},
            {"port": 80, "address": "192.168.0.1", "tags": {"kuma.io/service": "b"}},
            {"port": 80, "address": "192.168.0.2", "tags": {"kuma.io/service": "c"}}
        ]}));
        let err = from_json(v).unwrap_err();
        assert_eq!(err.violations.len(), 1, "{err}");
        assert_eq!(err.violations[0].field, "networking.inbound[1].port");
        assert!(err.violations[0].reason.contains("networking.inbound[0]"));
    }

    #[test]
    fn outbound_rules() {
        let inbound = json!([{"port": 80, "tags": {"kuma.io/service": "a"}}]);
        assert_violation(
            dp(
                json!({"address": "1.1.1.1", "inbound": inbound, "outbound": [{"port": 0, "tags": {"kuma.io/service": "r"}}]}),
            ),
            "networking.outbound[0].port",
            "1..65535",
        );
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": inbound, "outbound": [{"port": 1, "tags": {}}]})),
            "networking.outbound[0].tags",
            "must contain kuma.io/service",
        );
        assert_violation(
            dp(
                json!({"address": "1.1.1.1", "inbound": inbound, "outbound": [{"port": 1, "address": "x", "tags": {"kuma.io/service": "r"}}]}),
            ),
            "networking.outbound[0].address",
            "valid IP",
        );
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": inbound, "outbound": [
                {"port": 1, "tags": {"kuma.io/service": "r"}},
                {"port": 1, "address": "127.0.0.1", "tags": {"kuma.io/service": "s"}}
            ]})),
            "networking.outbound[1].port",
            "127.0.0.1:1",
        );
    }

    #[test]
    fn admin_port() {
        let inbound = json!([{"port": 9901, "tags": {"kuma.io/service": "a"}}]);
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": inbound, "admin": {"port": 70000}})),
            "networking.admin.port",
            "1..65535",
        );
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": inbound, "admin": {"port": 9901}})),
            "networking.admin.port",
            "must differ from networking.inbound[0].port",
        );
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": [{"port": 80, "tags": {"kuma.io/service": "a"}, "prot": 1}]})),
            "networking.inbound[0].prot",
            "unknown field `prot`",
        );
        assert_violation(
            dp(json!({"address": "1.1.1.1", "inbound": [{"port": "80", "tags": {"kuma.io/service": "a"}}]})),
            "networking.inbound[0].port",
            "invalid type",
        );
    }
}
