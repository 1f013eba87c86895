//! Kuma's REST/YAML envelope: `type`, `mesh`, `name`, `creationTime`, `modificationTime`,
//! then the spec: flattened beside them for Kuma's protobuf types (Mesh, Dataplane,
//! old-style policies), under `spec:` for targetRef policies.

use std::time::SystemTime;

use serde_json::{Map, Value};

use super::types::Envelope as EnvelopeKind;
use super::{Resource, ResourceType, Spec, ValidationError};

const META_KEYS: [&str; 5] = ["type", "mesh", "name", "creationTime", "modificationTime"];

/// A resource as a client sent it: meta from the envelope plus a decoded, validated spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Envelope {
    pub rtype: ResourceType,
    /// `None` when the body did not say; always `None` for global types.
    pub mesh: Option<String>,
    pub name: String,
    pub spec: Spec,
}

/// Renders a stored resource in Kuma's envelope.
pub fn to_json(res: &Resource) -> Value {
    let mut out = Map::new();
    out.insert("type".into(), Value::from(res.rtype().name()));
    if !res.rtype().is_global() {
        out.insert("mesh".into(), Value::from(res.meta.mesh.clone()));
    }
    out.insert("name".into(), Value::from(res.meta.name.clone()));
    out.insert("creationTime".into(), Value::from(format_time(res.meta.creation_time)));
    out.insert("modificationTime".into(), Value::from(format_time(res.meta.modification_time)));
    match res.rtype().envelope() {
        EnvelopeKind::Flat => {
            if let Value::Object(spec) = res.spec.to_json() {
                out.extend(spec);
            }
        }
        EnvelopeKind::Spec => {
            out.insert("spec".into(), res.spec.to_json());
        }
    }
    Value::Object(out)
}

/// Decodes and validates an envelope. Every problem is a violation naming its field; the
/// spec is validated only when the envelope itself is sound.
pub fn from_json(value: Value) -> Result<Envelope, ValidationError> {
    let Value::Object(mut obj) = value else {
        return Err(ValidationError::single("", format!("expected an object, got {}", kind_of(&value))));
    };
    let mut errors = ValidationError::default();
    let rtype = match obj.get("type") {
        None => {
            errors.add("type", "is required");
            None
        }
        Some(Value::String(t)) => match ResourceType::from_name(t) {
            Some(rtype) => Some(rtype),
            None => {
                let known: Vec<&str> = ResourceType::ALL.iter().map(|t| t.name()).collect();
                errors.add("type", format!("unknown type {t:?}; known types: {}", known.join(", ")));
                None
            }
        },
        Some(other) => {
            errors.add("type", format!("must be a string, got {}", kind_of(other)));
            None
        }
    };
    let name = match obj.get("name") {
        None => {
            errors.add("name", "is required");
            String::new()
        }
        Some(Value::String(n)) => n.clone(),
        Some(other) => {
            errors.add("name", format!("must be a string, got {}", kind_of(other)));
            String::new()
        }
    };
    let mesh = match obj.get("mesh") {
        None | Some(Value::Null) => None,
        Some(Value::String(m)) => Some(m.clone()),
        Some(other) => {
            errors.add("mesh", format!("must be a string, got {}", kind_of(other)));
            None
        }
    };
    let Some(rtype) = rtype else { return Err(errors) };
    if rtype.is_global() && mesh.is_some() {
        errors.add("mesh", format!("{} is a global resource and cannot belong to a mesh", rtype.name()));
    }
    errors.into_result()?;
    for key in META_KEYS {
        obj.remove(key);
    }
    let body = match rtype.envelope() {
        EnvelopeKind::Flat => Value::Object(obj),
        EnvelopeKind::Spec => {
            let spec = obj.remove("spec").unwrap_or_else(|| Value::Object(Default::default()));
            if let Some(extra) = obj.keys().next() {
                return Err(ValidationError::single(
                    extra.clone(),
                    format!("unknown field {extra:?}: a {} carries its settings under \"spec\"", rtype.name()),
                ));
            }
            if !spec.is_object() {
                return Err(ValidationError::single("spec", format!("must be an object, got {}", kind_of(&spec))));
            }
            spec
        }
    };
    let spec = Spec::from_json(rtype, body)?;
    spec.validate()?;
    Ok(Envelope { rtype, mesh, name, spec })
}

/// Parses a request body or a file: JSON when it looks like JSON, YAML otherwise (YAML is a
/// superset, but JSON's own parser gives better messages for JSON).
pub fn parse_document(text: &str) -> Result<Value, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        serde_json::from_str(text).map_err(|e| format!("invalid JSON: {e}"))
    } else {
        serde_yaml_ng::from_str::<Value>(text).map_err(|e| format!("invalid YAML: {e}"))
    }
}

/// Splits a multi-document YAML stream (`---` separated) into JSON values, skipping empty
/// documents.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, String> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        return parse_document(text).map(|v| vec![v]);
    }
    let mut out = Vec::new();
    for (i, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value =
            serde::Deserialize::deserialize(doc).map_err(|e| format!("invalid YAML in document {}: {e}", i + 1))?;
        if !value.is_null() {
            out.push(value);
        }
    }
    Ok(out)
}

/// RFC 3339 in UTC with microseconds, as Kuma's API prints times.
pub fn format_time(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}

pub fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn envelope_requires_type_and_name() {
        let err = from_json(json!({"mesh": "default"})).unwrap_err();
        let fields: Vec<&str> = err.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["type", "name"]);
    }

    #[test]
    fn unknown_type_is_named() {
        let err = from_json(json!({"type": "Nope", "name": "x"})).unwrap_err();
        assert_eq!(err.violations[0].field, "type");
        assert!(err.violations[0].reason.contains("\"Nope\""), "{err}");
    }

    #[test]
    fn mesh_round_trips_through_the_envelope() {
        let env = from_json(json!({"type": "Mesh", "name": "default"})).unwrap();
        assert_eq!(env.rtype, ResourceType::Mesh);
        assert_eq!(env.mesh, None);
        let res = Resource {
            meta: super::super::Meta {
                mesh: String::new(),
                name: "default".into(),
                version: 1,
                creation_time: SystemTime::UNIX_EPOCH,
                modification_time: SystemTime::UNIX_EPOCH,
            },
            spec: env.spec,
        };
        let out = to_json(&res);
        assert_eq!(out["type"], "Mesh");
        assert_eq!(out["name"], "default");
        assert_eq!(out["creationTime"], "1970-01-01T00:00:00.000000Z");
        assert!(out.get("mesh").is_none());
    }

    #[test]
    fn global_resource_rejects_mesh() {
        let err = from_json(json!({"type": "Mesh", "name": "m", "mesh": "default"})).unwrap_err();
        assert_eq!(err.violations[0].field, "mesh");
    }

    #[test]
    fn documents_split_on_separators() {
        let docs = parse_documents("type: Mesh\nname: a\n---\n---\ntype: Mesh\nname: b\n").unwrap();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["name"], "b");
        assert!(parse_documents("a: [").is_err());
    }
}
