//! Kuma's MeshAccessLog (`meshaccesslog/api/v1alpha1`): access-log backends for the traffic
//! to destinations (`to`) and from clients (`from`) of the proxies the top-level targetRef
//! selects.
//!
//! Backends: `file{path, format}` and `tcp{address, format}`; a `format` is `plain` (an Envoy
//! format string) or `json` (`[{key, value}]`), with Kuma's defaults when absent. Kuma 2.6's
//! `type` discriminators are accepted and must agree with the block given. OpenTelemetry
//! backends are refused: higuma does not build the collector cluster they need yet.

use serde::{Deserialize, Serialize};

use crate::model::mesh::is_host_port;
use crate::model::{SpecType, ValidationError};
use crate::policies::access_log::format;
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

const ALLOWED: Allowed = Allowed {
    top: &[
        TargetKind::Mesh,
        TargetKind::MeshSubset,
        TargetKind::MeshGateway,
        TargetKind::MeshService,
        TargetKind::MeshServiceSubset,
    ],
    to: &[TargetKind::Mesh, TargetKind::MeshService],
    from: &[TargetKind::Mesh],
    require_entries: true,
};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshAccessLogSpec(pub ToFromPolicy<Conf>);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    /// Replaced, not appended, by a more specific item (an empty list turns logging off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backends: Option<Vec<Backend>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BackendType {
    File,
    Tcp,
    OpenTelemetry,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<BackendType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<FileBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpBackend>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub open_telemetry: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FileBackend {
    #[serde(default)]
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpBackend {
    /// `HOST:PORT` of the collector.
    #[serde(default)]
    pub address: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<Format>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FormatType {
    Plain,
    Json,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Format {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<FormatType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json: Option<Vec<JsonValue>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub omit_empty_values: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JsonValue {
    #[serde(default)]
    pub key: String,
    #[serde(default)]
    pub value: String,
}

impl Format {
    fn validate(&self, errors: &mut ValidationError, at: &str) {
        match (&self.plain, &self.json) {
            (None, None) => errors.add(at, "must have at least one defined: plain, json"),
            (Some(_), Some(_)) => errors.add(at, "format can only have one type defined: plain, json"),
            _ => {}
        }
        match self.type_ {
            Some(FormatType::Plain) if self.plain.is_none() => errors.add(format!("{at}.plain"), "must be defined"),
            Some(FormatType::Json) if self.json.is_none() => errors.add(format!("{at}.json"), "must be defined"),
            _ => {}
        }
        if let Some(plain) = &self.plain {
            if plain.is_empty() {
                errors.add(format!("{at}.plain"), "must not be empty");
            } else if let Err(e) = format::validate(plain) {
                errors.add(format!("{at}.plain"), e.to_string());
            }
        }
        if let Some(json) = &self.json {
            if json.is_empty() {
                errors.add(format!("{at}.json"), "must not be empty");
            }
            for (i, kv) in json.iter().enumerate() {
                let at = format!("{at}.json[{i}]");
                if kv.key.is_empty() {
                    errors.add(format!("{at}.key"), "key cannot be empty");
                }
                if kv.value.is_empty() {
                    errors.add(format!("{at}.value"), "value cannot be empty");
                } else if let Err(e) = format::validate(&kv.value) {
                    errors.add(format!("{at}.value"), e.to_string());
                }
            }
        }
    }
}

impl Backend {
    fn validate(&self, errors: &mut ValidationError, at: &str) {
        let given = [
            (BackendType::File, "file", self.file.is_some()),
            (BackendType::Tcp, "tcp", self.tcp.is_some()),
            (BackendType::OpenTelemetry, "openTelemetry", self.open_telemetry.is_some()),
        ];
        match given.iter().filter(|(_, _, set)| *set).count() {
            0 => errors.add(at, "must have at least one defined: file, tcp, openTelemetry"),
            1 => {}
            _ => errors.add(at, "backend can have only one type defined: file, tcp, openTelemetry"),
        }
        if let Some(t) = self.type_ {
            for (kind, field, set) in given {
                if kind == t && !set {
                    errors.add(format!("{at}.{field}"), "must be defined");
                }
            }
        }
        if let Some(file) = &self.file {
            if file.path.is_empty() {
                errors.add(format!("{at}.file.path"), "file backend requires a valid path");
            }
            if let Some(f) = &file.format {
                f.validate(errors, &format!("{at}.file.format"));
            }
        }
        if let Some(tcp) = &self.tcp {
            if !is_host_port(&tcp.address) {
                errors.add(
                    format!("{at}.tcp.address"),
                    format!("tcp backend requires valid address (HOST:PORT), got {:?}", tcp.address),
                );
            }
            if let Some(f) = &tcp.format {
                f.validate(errors, &format!("{at}.tcp.format"));
            }
        }
        if self.open_telemetry.is_some() {
            errors.add(
                format!("{at}.openTelemetry"),
                "OpenTelemetry backends are not supported by higuma yet: use a file or tcp backend",
            );
        }
    }
}

impl SpecType for MeshAccessLogSpec {
    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        for (at, conf) in self.0.defaults() {
            match &conf.backends {
                None => errors.add(format!("{at}.backends"), "must be defined"),
                Some(backends) => {
                    for (i, b) in backends.iter().enumerate() {
                        b.validate(&mut errors, &format!("{at}.backends[{i}]"));
                    }
                }
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::*;
    use serde_json::{json, Value};

    fn mal(backends: Value) -> Value {
        policy(
            "MeshAccessLog",
            json!({"spec": {"targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "MeshService", "name": "backend"}, "default": {"backends": backends}}]}}),
        )
    }

    #[test]
    fn kumas_examples_round_trip() {
        assert_spec_round_trip(mal(json!([
            {"file": {"path": "/tmp/access.log", "format": {"plain": "%START_TIME% %KUMA_SOURCE_SERVICE%"}}},
            {"type": "Tcp", "tcp": {"address": "127.0.0.1:5000", "format": {"type": "Json",
                "json": [{"key": "start", "value": "%START_TIME%"}], "omitEmptyValues": true}}}
        ])));
        assert_spec_round_trip(policy(
            "MeshAccessLog",
            json!({"spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"backends": [{"file": {"path": "/dev/stdout"}}]}}]}}),
        ));
    }

    #[test]
    fn backends_and_formats() {
        assert_violation(
            policy("MeshAccessLog", json!({"spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {}}]}})),
            "spec.from[0].default.backends",
            "must be defined",
        );
        assert_violation(mal(json!([{}])), "spec.to[0].default.backends[0]", "at least one defined");
        assert_violation(
            mal(json!([{"file": {"path": "/a"}, "tcp": {"address": "a:1"}}])),
            "spec.to[0].default.backends[0]",
            "only one type",
        );
        assert_violation(
            mal(json!([{"file": {"path": ""}}])),
            "spec.to[0].default.backends[0].file.path",
            "valid path",
        );
        assert_violation(
            mal(json!([{"tcp": {"address": "logstash"}}])),
            "spec.to[0].default.backends[0].tcp.address",
            "\"logstash\"",
        );
        assert_violation(
            mal(json!([{"type": "File", "tcp": {"address": "a:1"}}])),
            "spec.to[0].default.backends[0].file",
            "must be defined",
        );
        assert_violation(
            mal(json!([{"openTelemetry": {"endpoint": "otel:4317"}}])),
            "spec.to[0].default.backends[0].openTelemetry",
            "not supported",
        );
        assert_violation(
            mal(json!([{"file": {"path": "/a", "format": {"plain": "%BAD"}}}])),
            "spec.to[0].default.backends[0].file.format.plain",
            "format string is not valid",
        );
        assert_violation(
            mal(json!([{"file": {"path": "/a", "format": {"json": [{"key": "", "value": "x"}]}}}])),
            "spec.to[0].default.backends[0].file.format.json[0].key",
            "cannot be empty",
        );
        assert_violation(
            mal(json!([{"file": {"path": "/a", "format": {"plain": "x", "json": []}}}])),
            "spec.to[0].default.backends[0].file.format",
            "only have one type",
        );
    }

    #[test]
    fn kinds() {
        assert_violation(policy("MeshAccessLog", json!({"spec": {}})), "spec", "at least one of 'to' or 'from'");
        assert_violation(
            policy(
                "MeshAccessLog",
                json!({"spec": {"from": [{"targetRef": {"kind": "MeshService", "name": "x"}, "default": {"backends": []}}]}}),
            ),
            "spec.from[0].targetRef.kind",
            "not supported",
        );
    }
}
