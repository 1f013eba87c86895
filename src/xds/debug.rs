//! Human-readable renderings of what higuma serves: Envoy resources decoded back from their
//! encoded bytes and printed as protobuf JSON (camelCase field names, `Any` expanded with
//! `@type`, durations as `"5s"`). Used by golden-file tests and config-dump endpoints.

use protobuf::reflect::{FileDescriptor, MessageDescriptor, ReflectFieldRef, ReflectValueRef};
use protobuf::MessageDyn;
use serde_json::{Map, Value};

use super::snapshot::Snapshot;
use super::wire::EncodedResource;
use crate::model::duration::ProtoDuration;

/// Every message type generated from `proto/`, found by walking the files the served types
/// depend on.
fn all_files() -> Vec<FileDescriptor> {
    let roots = [
        crate::envoy::listener::file_descriptor().clone(),
        crate::envoy::cluster::file_descriptor().clone(),
        crate::envoy::endpoint::file_descriptor().clone(),
        crate::envoy::http_connection_manager::file_descriptor().clone(),
        crate::envoy::tcp_proxy::file_descriptor().clone(),
        crate::envoy::router::file_descriptor().clone(),
        crate::envoy::http_protocol_options::file_descriptor().clone(),
        // Retry policy extensions (MeshRetry host selection).
        crate::envoy::previous_hosts::file_descriptor().clone(),
        crate::envoy::omit_host_metadata_config::file_descriptor().clone(),
        crate::envoy::previous_priorities_config::file_descriptor().clone(),
        crate::envoy::health_check_event_file_sink::file_descriptor().clone(),
        // Inside `Any`s only: filters, per-route configs and loggers of the inbound policies.
        crate::envoy::http_fault::file_descriptor().clone(),
        crate::envoy::http_local_rate_limit::file_descriptor().clone(),
        crate::envoy::network_local_rate_limit::file_descriptor().clone(),
        crate::envoy::access_log_file::file_descriptor().clone(),
        // SDS secrets, TLS transport sockets and the TLS inspector (mesh mTLS).
        crate::envoy::tls_secret::file_descriptor().clone(),
        crate::envoy::tls::file_descriptor().clone(),
        crate::envoy::tls_inspector::file_descriptor().clone(),
        // The inbound RBAC filter (TrafficPermission, MeshTrafficPermission).
        crate::envoy::network_rbac::file_descriptor().clone(),
    ];
    let mut seen: Vec<FileDescriptor> = Vec::new();
    let mut stack = roots.to_vec();
    while let Some(f) = stack.pop() {
        if seen.iter().any(|s| s.name() == f.name()) {
            continue;
        }
        stack.extend(f.deps().iter().cloned());
        seen.push(f);
    }
    seen
}

fn find_message(full_name: &str) -> Option<MessageDescriptor> {
    // rust-protobuf wants the leading dot of a fully-qualified name.
    let dotted = format!(".{full_name}");
    all_files().iter().find_map(|f| f.message_by_full_name(&dotted))
}

/// Decodes an encoded `Any` into JSON with its `@type`.
pub fn any_bytes_to_json(any: &[u8]) -> Value {
    match protobuf::well_known_types::any::Any::parse_from_bytes_dyn(any) {
        Ok(a) => any_to_json(&a.type_url, &a.value),
        Err(e) => Value::String(format!("<undecodable Any: {e}>")),
    }
}

trait ParseAny {
    fn parse_from_bytes_dyn(bytes: &[u8]) -> protobuf::Result<protobuf::well_known_types::any::Any>;
}

impl ParseAny for protobuf::well_known_types::any::Any {
    fn parse_from_bytes_dyn(bytes: &[u8]) -> protobuf::Result<protobuf::well_known_types::any::Any> {
        <protobuf::well_known_types::any::Any as protobuf::Message>::parse_from_bytes(bytes)
    }
}

fn any_to_json(type_url: &str, value: &[u8]) -> Value {
    let name = type_url.rsplit('/').next().unwrap_or(type_url);
    let mut out = Map::new();
    out.insert("@type".into(), Value::from(type_url));
    match find_message(name).map(|d| d.parse_from_bytes(value)) {
        Some(Ok(msg)) => {
            if let Value::Object(fields) = message_to_json(&*msg) {
                out.extend(fields);
            }
        }
        Some(Err(e)) => {
            out.insert("error".into(), Value::from(e.to_string()));
        }
        None => {
            out.insert("error".into(), Value::from("type not declared in proto/"));
        }
    }
    Value::Object(out)
}

pub fn message_to_json(msg: &dyn MessageDyn) -> Value {
    let d = msg.descriptor_dyn();
    match d.full_name() {
        "google.protobuf.Any" => {
            let url = d
                .field_by_name("type_url")
                .and_then(|f| f.get_singular(msg))
                .and_then(|v| v.to_str().map(str::to_string));
            let bytes = d.field_by_name("value").and_then(|f| f.get_singular(msg)).and_then(|v| match v {
                ReflectValueRef::Bytes(b) => Some(b.to_vec()),
                _ => None,
            });
            return any_to_json(&url.unwrap_or_default(), &bytes.unwrap_or_default());
        }
        "google.protobuf.Duration" => {
            // `nanos` is an int32: `to_i64` would not read it.
            let get = |n: &str| match d.field_by_name(n).and_then(|f| f.get_singular(msg)) {
                Some(ReflectValueRef::I64(v)) => v,
                Some(ReflectValueRef::I32(v)) => i64::from(v),
                _ => 0,
            };
            let (secs, nanos) = (get("seconds"), get("nanos"));
            // Protobuf JSON: whole seconds, or 3, 6 or 9 fractional digits.
            return Value::from(match (secs, u32::try_from(nanos)) {
                (0.., Ok(n)) => ProtoDuration(std::time::Duration::new(secs.unsigned_abs(), n)).to_string(),
                _ => format!("{secs}s"),
            });
        }
        // Wrappers print as their value, as protobuf JSON does.
        "google.protobuf.BoolValue"
        | "google.protobuf.UInt32Value"
        | "google.protobuf.UInt64Value"
        | "google.protobuf.Int32Value"
        | "google.protobuf.Int64Value"
        | "google.protobuf.DoubleValue"
        | "google.protobuf.StringValue" => {
            return d
                .field_by_name("value")
                .map(|f| value_to_json(f.get_singular_field_or_default(msg)))
                .unwrap_or_default();
        }
        // Protobuf JSON's own shapes: a Struct is an object, a Value its one set member.
        "google.protobuf.Struct" | "google.protobuf.Value" => {
            let fields = fields_to_json(msg);
            let inner = if d.full_name().ends_with("Struct") {
                fields.get("fields").cloned().unwrap_or_else(|| Value::Object(Map::new()))
            } else {
                fields.values().next().cloned().unwrap_or(Value::Null)
            };
            return inner;
        }
        _ => {}
    }
    Value::Object(fields_to_json(msg))
}

/// Every set field of `msg` under its JSON name.
fn fields_to_json(msg: &dyn MessageDyn) -> Map<String, Value> {
    let d = msg.descriptor_dyn();
    let mut out = Map::new();
    for field in d.fields() {
        let value = match field.get_reflect(msg) {
            ReflectFieldRef::Optional(o) => match o.value() {
                Some(v) => value_to_json(v),
                None => continue,
            },
            ReflectFieldRef::Repeated(r) => {
                if r.is_empty() {
                    continue;
                }
                Value::Array(r.into_iter().map(value_to_json).collect())
            }
            ReflectFieldRef::Map(m) => {
                if m.is_empty() {
                    continue;
                }
                let mut entries: Vec<(String, Value)> =
                    m.into_iter().map(|(k, v)| (key_string(k), value_to_json(v))).collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                Value::Object(entries.into_iter().collect())
            }
        };
        out.insert(field.json_name().to_string(), value);
    }
    out
}

fn key_string(v: ReflectValueRef<'_>) -> String {
    match value_to_json(v) {
        Value::String(s) => s,
        other => other.to_string(),
    }
}

fn value_to_json(v: ReflectValueRef<'_>) -> Value {
    match v {
        ReflectValueRef::U32(x) => Value::from(x),
        ReflectValueRef::U64(x) => Value::from(x.to_string()),
        ReflectValueRef::I32(x) => Value::from(x),
        ReflectValueRef::I64(x) => Value::from(x.to_string()),
        ReflectValueRef::F32(x) => Value::from(x),
        ReflectValueRef::F64(x) => Value::from(x),
        ReflectValueRef::Bool(x) => Value::from(x),
        ReflectValueRef::String(s) => Value::from(s),
        ReflectValueRef::Bytes(b) => Value::from(format!("<{} bytes>", b.len())),
        ReflectValueRef::Enum(d, n) => match d.value_by_number(n) {
            Some(e) => Value::from(e.name()),
            None => Value::from(n),
        },
        ReflectValueRef::Message(m) => message_to_json(&*m),
    }
}

pub fn resource_to_json(r: &EncodedResource) -> Value {
    any_bytes_to_json(&r.any)
}

/// The whole snapshot, by type in ADS order, resources sorted by name.
pub fn snapshot_to_json(s: &Snapshot) -> Value {
    let mut out = Map::new();
    for kind in super::resource_kind::ResourceKind::ALL {
        let set = s.set(kind);
        if set.is_empty() {
            continue;
        }
        out.insert(kind.short().to_string(), Value::Array(set.resources.iter().map(|r| resource_to_json(r)).collect()));
    }
    Value::Object(out)
}
