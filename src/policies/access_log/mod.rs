//! Access logs, shared by TrafficLog (with the Mesh's `logging` backends) and MeshAccessLog:
//! the resolved conf of one Envoy access logger, Kuma's default formats, and how the conf
//! becomes `access_log` entries on an HTTP connection manager or a TCP proxy.
//!
//! Every logger is Envoy's file logger. A `file` backend writes to its path; a `tcp` backend
//! writes to the dataplane's named pipe ([`pipe`]), from which `higuma dp run` forwards each
//! line to the backend's address, as kuma-dp does. Envoy has no plain-TCP access logger, so
//! the pipe is the one real mechanism that delivers Kuma's line format to a TCP collector.
//!
//! Kuma's `%KUMA_*%` variables are bound when the dataplane's policies are resolved
//! ([`format::render`]), so the conf carries the final format and the configure hooks never
//! look at the dataplane.
//!
//! - [`format`]: parsing, validation and rendering of format strings.
//! - [`pipe`]: the pipe's path and the forwarder `higuma dp run` starts.

pub mod format;
pub mod pipe;

use crate::envoy::access_log_file::FileAccessLog;
use crate::envoy::accesslog::AccessLog as EnvoyAccessLog;
use crate::envoy::base::DataSource;
use crate::envoy::http_connection_manager::HttpConnectionManager;
use crate::envoy::substitution_format_string::SubstitutionFormatString;
use crate::envoy::tcp_proxy::TcpProxy;
use crate::envoy::to_any;
use crate::model::dataplane::{DataplaneSpec, Protocol};
use crate::model::mesh::LoggingBackend;

/// Kuma's default line for HTTP listeners (`+ "\n"` when used).
pub const DEFAULT_HTTP_FORMAT: &str = "[%START_TIME%] %KUMA_MESH% \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-B3-TRACEID?X-DATADOG-TRACEID)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%KUMA_SOURCE_SERVICE%\" \"%KUMA_DESTINATION_SERVICE%\" \"%KUMA_SOURCE_ADDRESS_WITHOUT_PORT%\" \"%UPSTREAM_HOST%\"";
/// Kuma's default line for TCP listeners.
pub const DEFAULT_TCP_FORMAT: &str = "[%START_TIME%] %RESPONSE_FLAGS% %KUMA_MESH% %KUMA_SOURCE_ADDRESS_WITHOUT_PORT%(%KUMA_SOURCE_SERVICE%)->%UPSTREAM_HOST%(%KUMA_DESTINATION_SERVICE%) took %DURATION%ms, sent %BYTES_SENT% bytes, received: %BYTES_RECEIVED% bytes";

/// Kuma's source service for inbound traffic: the caller is not known to the callee's proxy.
pub const UNKNOWN_SOURCE: &str = "unknown";

const FILE_LOGGER: &str = "envoy.access_loggers.file";

/// Kuma's default format for a listener speaking `protocol`.
pub fn default_format(protocol: Protocol) -> &'static str {
    if protocol.is_http() {
        DEFAULT_HTTP_FORMAT
    } else {
        DEFAULT_TCP_FORMAT
    }
}

/// One access logger, ready for Envoy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AccessLog {
    /// A file, or the dataplane's pipe for TCP backends.
    pub path: String,
    pub format: LogFormat,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogFormat {
    /// One line per entry (the newline included).
    Text(String),
    /// One JSON object per entry.
    Json { fields: Vec<(String, LogValue)>, omit_empty_values: bool },
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum LogValue {
    Text(String),
    Object(Vec<(String, String)>),
}

/// The `%KUMA_*%` values of a listener of `dp`.
pub fn vars(mesh: &str, dp: &DataplaneSpec, source: &str, destination: &str, direction: &'static str) -> format::Vars {
    let net = &dp.networking;
    format::Vars {
        mesh: mesh.to_string(),
        source_service: source.to_string(),
        destination_service: destination.to_string(),
        source_address: net.advertised_address.clone().unwrap_or_else(|| net.address.clone()),
        direction,
    }
}

/// The logger of a Mesh `logging` backend (TrafficLog): a file, or `<address>;<line>` to the
/// dataplane's pipe. `None` for a backend that validation would have refused.
pub fn of_mesh_backend(
    backend: &LoggingBackend,
    protocol: Protocol,
    vars: &format::Vars,
    pipe: &str,
) -> Option<AccessLog> {
    let fmt = backend.format.as_deref().filter(|f| !f.is_empty()).unwrap_or(default_format(protocol));
    let line = format!("{}\n", format::render(fmt, vars));
    match backend.type_.as_str() {
        "file" => Some(AccessLog { path: backend.file_path()?.to_string(), format: LogFormat::Text(line) }),
        "tcp" => Some(AccessLog {
            path: pipe.to_string(),
            format: LogFormat::Text(format!("{};{line}", backend.tcp_address()?)),
        }),
        _ => None,
    }
}

impl AccessLog {
    fn envoy(&self) -> EnvoyAccessLog {
        let mut sfs = SubstitutionFormatString::new();
        match &self.format {
            LogFormat::Text(line) => {
                let mut ds = DataSource::new();
                ds.set_inline_string(line.clone());
                sfs.set_text_format_source(ds);
            }
            LogFormat::Json { fields, omit_empty_values } => {
                // `json_format` is a Struct, whose map rust-protobuf would encode in hash
                // order; written by hand in key order, equal confs give equal bytes.
                sfs.special_fields.mut_unknown_fields().add_length_delimited(2, ordered_struct(fields));
                sfs.omit_empty_values = *omit_empty_values;
            }
        }
        let mut file = FileAccessLog::new();
        file.path = self.path.clone();
        file.set_log_format(sfs);
        let mut log = EnvoyAccessLog::new();
        log.name = FILE_LOGGER.to_string();
        log.set_typed_config(to_any(&file));
        log
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A length-delimited field.
fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_varint(out, u64::from(field) << 3 | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// `google.protobuf.Struct` bytes with the entries sorted by key: `fields` (1) is a map, each
/// entry `{key: 1, value: 2}`; a `Value` is `string_value` (3) or `struct_value` (5).
fn ordered_struct<V: AsValue>(fields: &[(String, V)]) -> Vec<u8> {
    let mut sorted: Vec<&(String, V)> = fields.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted.dedup_by(|a, b| a.0 == b.0);
    let mut out = Vec::new();
    for (k, v) in sorted {
        let mut entry = Vec::new();
        put_bytes(&mut entry, 1, k.as_bytes());
        put_bytes(&mut entry, 2, &v.value_bytes());
        put_bytes(&mut out, 1, &entry);
    }
    out
}

trait AsValue {
    fn value_bytes(&self) -> Vec<u8>;
}

impl AsValue for String {
    fn value_bytes(&self) -> Vec<u8> {
        let mut v = Vec::new();
        put_bytes(&mut v, 3, self.as_bytes());
        v
    }
}

impl AsValue for LogValue {
    fn value_bytes(&self) -> Vec<u8> {
        match self {
            LogValue::Text(s) => s.value_bytes(),
            LogValue::Object(fields) => {
                let mut v = Vec::new();
                put_bytes(&mut v, 5, &ordered_struct(fields));
                v
            }
        }
    }
}

/// Appends `logs` to an HTTP connection manager.
pub fn configure_hcm(logs: &[AccessLog], hcm: &mut HttpConnectionManager) {
    hcm.access_log.extend(logs.iter().map(AccessLog::envoy));
}

/// Appends `logs` to a TCP proxy.
pub fn configure_tcp(logs: &[AccessLog], tcp: &mut TcpProxy) {
    tcp.access_log.extend(logs.iter().map(AccessLog::envoy));
}

/// Appends `logs` to whichever terminal filter a listener has.
pub fn configure(logs: &[AccessLog], hcm: Option<&mut HttpConnectionManager>, tcp: Option<&mut TcpProxy>) {
    if logs.is_empty() {
        return;
    }
    match (hcm, tcp) {
        (Some(h), _) => configure_hcm(logs, h),
        (None, Some(t)) => configure_tcp(logs, t),
        (None, None) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use protobuf::Message;

    #[test]
    fn json_formats_encode_in_key_order_and_decode_as_structs() {
        let log = AccessLog {
            path: "/tmp/x".into(),
            format: LogFormat::Json {
                fields: vec![
                    ("b".into(), LogValue::Text("%DURATION%".into())),
                    ("a".into(), LogValue::Object(vec![("z".into(), "1".into()), ("y".into(), "2".into())])),
                ],
                omit_empty_values: true,
            },
        };
        let bytes = log.envoy().write_to_bytes().unwrap();
        let again = log.envoy().write_to_bytes().unwrap();
        assert_eq!(bytes, again);
        let decoded = EnvoyAccessLog::parse_from_bytes(&bytes).unwrap();
        let file: FileAccessLog = crate::envoy::from_any(decoded.typed_config()).unwrap().unwrap();
        let json = file.log_format().json_format();
        assert_eq!(json.fields["b"].string_value(), "%DURATION%");
        assert_eq!(json.fields["a"].struct_value().fields["y"].string_value(), "2");
        assert!(file.log_format().omit_empty_values);
    }
}
