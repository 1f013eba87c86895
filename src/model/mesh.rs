//! Mesh (`api/mesh/v1alpha1/mesh.proto`) and the rules of Kuma's `mesh_validator.go`:
//! unique, non-empty backend names, a default/enabled backend that exists, and known backend
//! types. Backend-specific `conf` blocks are kept as JSON (checked where they are used).

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::ValidationError;

pub const MTLS_BACKEND_TYPES: [&str; 5] = ["builtin", "provided", "vault", "acmpca", "certmanager"];
pub const MTLS_MODES: [&str; 2] = ["STRICT", "PERMISSIVE"];
pub const TRACING_BACKEND_TYPES: [&str; 2] = ["zipkin", "datadog"];
pub const LOGGING_BACKEND_TYPES: [&str; 2] = ["file", "tcp"];
pub const METRICS_BACKEND_TYPES: [&str; 1] = ["prometheus"];

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<Mtls>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracing: Option<Tracing>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logging: Option<Logging>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub networking: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraints: Option<serde_json::Value>,
    /// `["*"]` or policy type names whose default policies are not created with the mesh.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skip_creating_initial_policies: Vec<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Mtls {
    /// Empty: mTLS disabled.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub enabled_backend: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<CertificateAuthorityBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateAuthorityBackend {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    /// STRICT (default) or PERMISSIVE.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    /// `{rotation{expiration}, requestTimeout}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dp_cert: Option<serde_json::Value>,
    /// `{requestTimeout}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_chain: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<serde_json::Value>,
}

impl CertificateAuthorityBackend {
    /// PERMISSIVE accepts plaintext too; STRICT (or unset) does not.
    pub fn is_permissive(&self) -> bool {
        self.mode.as_deref() == Some("PERMISSIVE")
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Tracing {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_backend: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<TracingBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TracingBackend {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    /// Percentage 0..100 (Kuma's default when unset: 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<serde_json::Value>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Logging {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_backend: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<LoggingBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoggingBackend {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// file: `{path}`; tcp: `{address}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<serde_json::Value>,
}

impl LoggingBackend {
    /// A file backend's `conf.path`.
    pub fn file_path(&self) -> Option<&str> {
        self.conf.as_ref()?.get("path")?.as_str().filter(|p| !p.is_empty())
    }

    /// A tcp backend's `conf.address` (`HOST:PORT`).
    pub fn tcp_address(&self) -> Option<&str> {
        self.conf.as_ref()?.get("address")?.as_str().filter(|a| !a.is_empty())
    }

    /// Kuma's `validateLoggingBackend` beyond name and type: the format parses, a file has a
    /// path, a tcp backend a `HOST:PORT` address. Kuma names the conf block `config` in its
    /// paths; higuma names the field as written (`conf`).
    fn validate(&self, errors: &mut ValidationError, at: &str) {
        if let Some(format) = &self.format {
            if let Err(e) = crate::policies::access_log::format::validate(format) {
                errors.add(format!("{at}.format"), e.to_string());
            }
        }
        let (key, known): (&str, &[&str]) = match self.type_.as_str() {
            "file" => ("path", &["path"]),
            "tcp" => ("address", &["address"]),
            _ => return,
        };
        let conf = self.conf.as_ref().and_then(|c| c.as_object());
        if let Some(obj) = conf {
            for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
                errors.add(format!("{at}.conf.{k}"), format!("unknown field `{k}` for a {} backend", self.type_));
            }
        } else if self.conf.is_some() {
            errors.add(format!("{at}.conf"), "must be an object");
            return;
        }
        let value = conf.and_then(|o| o.get(key));
        let text = match value {
            None => None,
            Some(serde_json::Value::String(s)) if s.is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(s.as_str()),
            Some(other) => {
                errors.add(format!("{at}.conf.{key}"), format!("must be a string, got {other}"));
                return;
            }
        };
        match (key, text) {
            (_, None) => errors.add(format!("{at}.conf.{key}"), "cannot be empty"),
            ("address", Some(a)) if !is_host_port(a) => {
                errors.add(format!("{at}.conf.address"), format!("has to be in format of HOST:PORT, got {a:?}"))
            }
            _ => {}
        }
    }
}

/// `host:port` or `[v6]:port` with a host and a port number (Go's `net.SplitHostPort`, and a
/// port that can be dialled).
pub fn is_host_port(s: &str) -> bool {
    let Some((host, port)) = s.rsplit_once(':') else { return false };
    let host = match host.strip_prefix('[') {
        Some(h) => match h.strip_suffix(']') {
            Some(inner) => inner,
            None => return false,
        },
        None if host.contains(':') || host.contains(['[', ']']) => return false,
        None => host,
    };
    !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metrics {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub enabled_backend: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<MetricsBackend>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricsBackend {
    #[serde(default)]
    pub name: String,
    #[serde(rename = "type", default)]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conf: Option<serde_json::Value>,
}

impl MeshSpec {
    /// The enabled mTLS backend, when mTLS is on.
    pub fn mtls_backend(&self) -> Option<&CertificateAuthorityBackend> {
        let mtls = self.mtls.as_ref()?;
        if mtls.enabled_backend.is_empty() {
            return None;
        }
        mtls.backends.iter().find(|b| b.name == mtls.enabled_backend)
    }

    pub fn mtls_enabled(&self) -> bool {
        self.mtls_backend().is_some()
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        if let Some(mtls) = &self.mtls {
            let names: Vec<&str> = mtls.backends.iter().map(|b| b.name.as_str()).collect();
            check_names(&mut errors, "mtls.backends", &names);
            check_reference(&mut errors, "mtls.enabledBackend", &mtls.enabled_backend, &names);
            for (i, b) in mtls.backends.iter().enumerate() {
                check_type(&mut errors, &format!("mtls.backends[{i}].type"), &b.type_, &MTLS_BACKEND_TYPES);
                crate::mtls::backend::validate(b, i, &mut errors);
                if let Some(mode) = &b.mode {
                    if !MTLS_MODES.contains(&mode.as_str()) {
                        errors.add(
                            format!("mtls.backends[{i}].mode"),
                            format!("unknown mode {mode:?}. Allowed values: {}", MTLS_MODES.join(", ")),
                        );
                    }
                }
            }
        }
        if let Some(tracing) = &self.tracing {
            let names: Vec<&str> = tracing.backends.iter().map(|b| b.name.as_str()).collect();
            check_names(&mut errors, "tracing.backends", &names);
            check_reference(&mut errors, "tracing.defaultBackend", &tracing.default_backend, &names);
            for (i, b) in tracing.backends.iter().enumerate() {
                check_type(&mut errors, &format!("tracing.backends[{i}].type"), &b.type_, &TRACING_BACKEND_TYPES);
                if let Some(s) = b.sampling {
                    if !(0.0..=100.0).contains(&s) {
                        errors.add(
                            format!("tracing.backends[{i}].sampling"),
                            format!("has to be in [0.0 - 100.0] range, got {s}"),
                        );
                    }
                }
            }
        }
        if let Some(logging) = &self.logging {
            let names: Vec<&str> = logging.backends.iter().map(|b| b.name.as_str()).collect();
            check_names(&mut errors, "logging.backends", &names);
            check_reference(&mut errors, "logging.defaultBackend", &logging.default_backend, &names);
            for (i, b) in logging.backends.iter().enumerate() {
                check_type(&mut errors, &format!("logging.backends[{i}].type"), &b.type_, &LOGGING_BACKEND_TYPES);
                b.validate(&mut errors, &format!("logging.backends[{i}]"));
            }
        }
        if let Some(metrics) = &self.metrics {
            let names: Vec<&str> = metrics.backends.iter().map(|b| b.name.as_str()).collect();
            check_names(&mut errors, "metrics.backends", &names);
            check_reference(&mut errors, "metrics.enabledBackend", &metrics.enabled_backend, &names);
            for (i, b) in metrics.backends.iter().enumerate() {
                check_type(&mut errors, &format!("metrics.backends[{i}].type"), &b.type_, &METRICS_BACKEND_TYPES);
            }
        }
        errors.into_result()
    }
}

fn check_names(errors: &mut ValidationError, field: &str, names: &[&str]) {
    let mut seen = HashSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            errors.add(format!("{field}[{i}].name"), "cannot be empty");
        } else if !seen.insert(*name) {
            errors.add(format!("{field}[{i}].name"), format!("{name:?} name is already used for another backend"));
        }
    }
}

fn check_reference(errors: &mut ValidationError, field: &str, value: &str, names: &[&str]) {
    if !value.is_empty() && !names.contains(&value) {
        let known = if names.is_empty() { "(none)".to_string() } else { names.join(", ") };
        errors
            .add(field, format!("has to be set to one of the backends in the mesh: {value:?} is not one of: {known}"));
    }
}

fn check_type(errors: &mut ValidationError, field: &str, value: &str, allowed: &[&str]) {
    if !allowed.contains(&value) {
        let what =
            if value.is_empty() { "cannot be empty".to_string() } else { format!("unknown backend type {value:?}") };
        errors.add(field, format!("{what}. Available backends: {}", allowed.join(", ")));
    }
}

impl super::SpecType for MeshSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        MeshSpec::validate(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::{from_json, parse_document};
    use crate::model::Spec;
    use serde_json::{json, Value};

    const DOCS_MESH: &str = r#"
type: Mesh
name: default
mtls:
  enabledBackend: ca-1
  backends:
    - name: ca-1
      type: builtin
      dpCert:
        rotation:
          expiration: 1d
      conf:
        caCert:
          RSAbits: 2048
          expiration: 10y
"#;

    fn mesh(body: Value) -> Value {
        let mut v = json!({"type": "Mesh", "name": "m"});
        v.as_object_mut().unwrap().extend(body.as_object().unwrap().clone());
        v
    }

    #[track_caller]
    fn assert_violation(v: Value, field: &str, reason: &str) {
        let err = from_json(v).expect_err("expected a validation error");
        assert!(
            err.violations.iter().any(|x| x.field == field && x.reason.contains(reason)),
            "no violation at {field:?} containing {reason:?}: {err}"
        );
    }

    fn spec_json(v: &Value) -> Value {
        let mut o = v.as_object().unwrap().clone();
        o.remove("type");
        o.remove("name");
        Value::Object(o)
    }

    #[test]
    fn docs_example_round_trips() {
        let doc = parse_document(DOCS_MESH).unwrap();
        let env = from_json(doc.clone()).unwrap();
        let Spec::Mesh(m) = &env.spec else { panic!() };
        assert!(m.mtls_enabled());
        assert_eq!(m.mtls_backend().unwrap().type_, "builtin");
        assert_eq!(env.spec.to_json(), spec_json(&doc));
    }

    #[test]
    fn full_mesh_round_trips() {
        let v = mesh(json!({
            "mtls": {"enabledBackend": "ca", "backends": [{"name": "ca", "type": "provided", "mode": "PERMISSIVE",
                "conf": {"cert": {"secret": "c"}, "key": {"secret": "k"}}}]},
            "tracing": {"defaultBackend": "z", "backends": [{"name": "z", "type": "zipkin", "sampling": 50.5,
                "conf": {"url": "http://zipkin:9411/api/v2/spans"}}]},
            "logging": {"defaultBackend": "f", "backends": [{"name": "f", "type": "file", "format": "%START_TIME%",
                "conf": {"path": "/tmp/log"}}]},
            "metrics": {"enabledBackend": "p", "backends": [{"name": "p", "type": "prometheus", "conf": {"port": 5670}}]},
            "networking": {"outbound": {"passthrough": false}},
            "routing": {"localityAwareLoadBalancing": true},
            "constraints": {"dataplaneProxy": {"requirements": [{"tags": {"zone": "a"}}]}},
            "skipCreatingInitialPolicies": ["*"]
        }));
        let env = from_json(v.clone()).unwrap();
        assert_eq!(env.spec.to_json(), spec_json(&v));
        // An empty mesh serializes to nothing.
        assert_eq!(Spec::Mesh(MeshSpec::default()).to_json(), json!({}));
    }

    #[test]
    fn backend_names_unique_and_non_empty() {
        let v =
            mesh(json!({"mtls": {"backends": [{"name": "a", "type": "builtin"}, {"name": "a", "type": "builtin"}]}}));
        assert_violation(v, "mtls.backends[1].name", "\"a\" name is already used");
        let v = mesh(json!({"tracing": {"backends": [{"name": "", "type": "zipkin"}]}}));
        assert_violation(v, "tracing.backends[0].name", "cannot be empty");
        let v = mesh(json!({"logging": {"backends": [{"name": "l", "type": "tcp"}, {"name": "l", "type": "file"}]}}));
        assert_violation(v, "logging.backends[1].name", "already used");
        let v = mesh(json!({"metrics": {"backends": [{"name": "", "type": "prometheus"}]}}));
        assert_violation(v, "metrics.backends[0].name", "cannot be empty");
    }

    #[test]
    fn referenced_backends_exist() {
        let v = mesh(json!({"mtls": {"enabledBackend": "ca-2", "backends": [{"name": "ca-1", "type": "builtin"}]}}));
        assert_violation(v, "mtls.enabledBackend", "\"ca-2\"");
        assert_violation(mesh(json!({"tracing": {"defaultBackend": "t"}})), "tracing.defaultBackend", "\"t\"");
        assert_violation(mesh(json!({"logging": {"defaultBackend": "l"}})), "logging.defaultBackend", "\"l\"");
        assert_violation(mesh(json!({"metrics": {"enabledBackend": "p"}})), "metrics.enabledBackend", "\"p\"");
    }

    #[test]
    fn backend_types_and_modes() {
        assert_violation(
            mesh(json!({"mtls": {"backends": [{"name": "a", "type": "magic"}]}})),
            "mtls.backends[0].type",
            "\"magic\"",
        );
        assert_violation(
            mesh(json!({"mtls": {"backends": [{"name": "a", "type": "builtin", "mode": "LAX"}]}})),
            "mtls.backends[0].mode",
            "\"LAX\"",
        );
        assert_violation(
            mesh(json!({"tracing": {"backends": [{"name": "a", "type": "jaeger"}]}})),
            "tracing.backends[0].type",
            "\"jaeger\"",
        );
        assert_violation(
            mesh(json!({"tracing": {"backends": [{"name": "a", "type": "zipkin", "sampling": 100.5}]}})),
            "tracing.backends[0].sampling",
            "[0.0 - 100.0]",
        );
        assert_violation(
            mesh(json!({"logging": {"backends": [{"name": "a", "type": "syslog"}]}})),
            "logging.backends[0].type",
            "\"syslog\"",
        );
        assert_violation(
            mesh(json!({"metrics": {"backends": [{"name": "a", "type": "statsd"}]}})),
            "metrics.backends[0].type",
            "\"statsd\"",
        );
        for t in MTLS_BACKEND_TYPES {
            // A provided CA must say where its cert and key are (Kuma's provided plugin).
            let conf =
                if t == "provided" { json!({"cert": {"secret": "c"}, "key": {"secret": "k"}}) } else { json!({}) };
            let m = mesh(json!({"mtls": {"backends": [{"name": "a", "type": t, "conf": conf}]}}));
            assert!(from_json(m).is_ok(), "{t}");
        }
    }

    #[test]
    fn logging_backends_conf_and_format() {
        let backend = |b: Value| mesh(json!({"logging": {"backends": [b]}}));
        assert_violation(
            backend(json!({"name": "f", "type": "file", "conf": {}})),
            "logging.backends[0].conf.path",
            "cannot be empty",
        );
        assert_violation(
            backend(json!({"name": "f", "type": "file"})),
            "logging.backends[0].conf.path",
            "cannot be empty",
        );
        assert_violation(
            backend(json!({"name": "t", "type": "tcp", "conf": {"address": "logstash"}})),
            "logging.backends[0].conf.address",
            "HOST:PORT",
        );
        assert_violation(
            backend(json!({"name": "t", "type": "tcp", "conf": {"address": ""}})),
            "logging.backends[0].conf.address",
            "cannot be empty",
        );
        assert_violation(
            backend(json!({"name": "t", "type": "tcp", "conf": {"address": "a:1", "path": "/x"}})),
            "logging.backends[0].conf.path",
            "unknown field",
        );
        assert_violation(
            backend(json!({"name": "f", "type": "file", "format": "%START_TIME", "conf": {"path": "/x"}})),
            "logging.backends[0].format",
            "format string is not valid",
        );
        for ok in [
            json!({"name": "f", "type": "file", "format": "%REQ(:PATH)% %KUMA_SOURCE_SERVICE%", "conf": {"path": "/x"}}),
            json!({"name": "t", "type": "tcp", "conf": {"address": "[::1]:5000"}}),
        ] {
            from_json(backend(ok.clone())).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert!(is_host_port("logstash:1234") && is_host_port("127.0.0.1:9") && is_host_port("[::1]:1"));
        assert!(!is_host_port("::1:1") && !is_host_port(":1") && !is_host_port("a:") && !is_host_port("a:x"));
    }

    #[test]
    fn unknown_fields_are_named() {
        assert_violation(mesh(json!({"mtsl": {}})), "mtsl", "unknown field `mtsl`");
        let err =
            from_json(mesh(json!({"mtls": {"backends": [{"name": "a", "type": "builtin", "extra": 1}]}}))).unwrap_err();
        assert_eq!(err.violations[0].field, "mtls.backends[0].extra");
        assert!(err.violations[0].reason.contains("extra"), "{err}");
    }
}
