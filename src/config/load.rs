//! Loading: defaults < file < `KUMA_*` env, then deserialization and validation.
//!
//! The work happens on JSON trees rather than on the structs, so that every key gets its
//! env var and its unknown-key check without per-field code: the tree of
//! `Config::default()` is the schema. A key added to a struct is picked up automatically.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde_json::Value;

use super::{Config, ConfigError, Derived};

/// Prefix of every env var, kept from Kuma so existing deployments need no change.
const ENV_PREFIX: &str = "KUMA";

/// Keys whose Kuma env var does not follow the camelCase → UPPER_SNAKE rule; Kuma's
/// struct tags are the authority, so these are copied from them verbatim.
const ENV_OVERRIDES: &[(&str, &str)] = &[
    // Kuma's tag drops `_SERVER_` (pkg/config/xds/config.go, 2.4).
    ("xdsServer.dataplaneDeregistrationDelay", "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY"),
    // The camelCase rule keeps the acronym whole (`DBVERSIONS`); Kuma's tags split it.
    ("store.postgres.tolerateNewerDBVersions", "KUMA_STORE_POSTGRES_TOLERATE_NEWER_DB_VERSIONS"),
    // Kuma's tags name the config-dump rule GET_CONFIG_DUMP (pkg/config/access/config.go).
    ("access.static.viewConfigDump.users", "KUMA_ACCESS_STATIC_GET_CONFIG_DUMP_USERS"),
    ("access.static.viewConfigDump.groups", "KUMA_ACCESS_STATIC_GET_CONFIG_DUMP_GROUPS"),
];

/// The result of [`load`]: the config and what the operator should be told about it.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub config: Config,
    /// Unknown keys and suspicious values; the config is usable but these should be logged.
    /// Includes every derived value of a key the operator set explicitly.
    pub warnings: Vec<String>,
    /// Values higuma derived from related settings instead of the configured ones
    /// ([`Config::derive`]); those of keys left at their default are logged at info level.
    pub derived: Vec<Derived>,
}

/// Builds the config from defaults, then the YAML file at `path` (if any), then the env
/// vars returned by `env`, and validates it.
///
/// `env` is a lookup rather than `std::env::var` so tests never touch the process env.
pub fn load(path: Option<&Path>, env: &dyn Fn(&str) -> Option<String>) -> Result<Loaded, ConfigError> {
    let defaults = defaults_tree()?;
    let mut merged = defaults.clone();
    let mut warnings = Vec::new();
    // Keys the operator set (file or env), so derived values can tell a default that must
    // yield from a choice that contradicts another.
    let mut explicit = HashSet::new();

    if let Some(path) = path {
        let file = read_file(path)?;
        let mut unknown = Vec::new();
        merge(&mut merged, file, &mut String::new(), &mut unknown, &mut explicit);
        warnings.extend(
            unknown.into_iter().map(|key| format!("unknown config key {key} in {} is ignored", path.display())),
        );
    }

    let mut from_env = HashMap::new();
    overlay_env(&defaults, &mut merged, &mut Vec::new(), env, &mut from_env)?;

    explicit.extend(from_env.keys().cloned());

    let mut config = deserialize(&merged, &from_env)?;
    let derived = config.derive(&|key| explicit.contains(key));
    warnings.extend(derived.iter().filter(|d| d.explicit).map(|d| format!("{d}")));
    warnings.extend(config.validate()?);
    Ok(Loaded { config, warnings, derived })
}

/// [`load`] with the process environment.
pub fn load_from_process(path: Option<&Path>) -> Result<Loaded, ConfigError> {
    load(path, &|name| std::env::var(name).ok())
}

/// The env var that overrides the dotted YAML key `key`, e.g.
/// `store.postgres.dbName` → `KUMA_STORE_POSTGRES_DB_NAME`.
pub fn env_var_name(key: &str) -> String {
    if let Some((_, var)) = ENV_OVERRIDES.iter().find(|(k, _)| *k == key) {
        return (*var).to_owned();
    }
    let mut name = String::from(ENV_PREFIX);
    for segment in key.split('.') {
        name.push('_');
        name.push_str(&upper_snake(segment));
    }
    name
}

/// camelCase → UPPER_SNAKE, splitting only at a lower→upper boundary so acronyms stay
/// whole as in Kuma's tags (`dnsCacheTTL` → `DNS_CACHE_TTL`, `disableSSLSNI` → `DISABLE_SSLSNI`).
fn upper_snake(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len() + 4);
    let mut prev_lower = false;
    for c in segment.chars() {
        if c.is_ascii_uppercase() && prev_lower {
            out.push('_');
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        out.push(c.to_ascii_uppercase());
    }
    out
}

fn defaults_tree() -> Result<Value, ConfigError> {
    // Only fails if a Serialize impl fails, which none of the config types can.
    serde_json::to_value(Config::default()).map_err(|e| ConfigError::Invalid {
        key: "<defaults>".to_owned(),
        value: String::new(),
        reason: format!("cannot serialize the defaults: {e}"),
    })
}

fn read_file(path: &Path) -> Result<Value, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
    let value: Value = match serde_yaml_ng::from_str::<Option<Value>>(&text) {
        Ok(v) => v.unwrap_or(Value::Null),
        Err(e) => return Err(ConfigError::Parse { path: path.to_owned(), message: e.to_string() }),
    };
    match value {
        // An empty file, or one with only comments, means "all defaults".
        Value::Null | Value::Object(_) => Ok(value),
        other => Err(ConfigError::Parse {
            path: path.to_owned(),
            message: format!("the top level must be a mapping of keys, found {}", kind_name(&other)),
        }),
    }
}

/// Deep-merges `file` into `base` (the defaults tree). Keys that `base` lacks are not
/// copied but recorded in `unknown` with their full dotted path; the leaves it sets are
/// recorded in `set`.
fn merge(base: &mut Value, file: Value, path: &mut String, unknown: &mut Vec<String>, set: &mut HashSet<String>) {
    match (base, file) {
        // `key:` with nothing after it is null in YAML; Go's YAML→JSON loader treats it as
        // "not set", so the default stays.
        (_, Value::Null) => {}
        (Value::Object(base), Value::Object(file)) => {
            for (key, value) in file {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                match base.get_mut(&key) {
                    Some(slot) => merge(slot, value, path, unknown, set),
                    None => unknown.push(path.clone()),
                }
                path.truncate(len);
            }
        }
        // A leaf, or a section replaced by a non-mapping: take the file's value and let
        // deserialization report a wrong type against this key.
        (slot, value) => {
            set.insert(path.clone());
            *slot = value
        }
    }
}

/// Sets every leaf that has its env var defined. The kind of the default value decides
/// how the text is read, since env vars carry no type. `from_env` records which key came
/// from which var so a later type error can name the var instead of the key.
fn overlay_env(
    defaults: &Value,
    merged: &mut Value,
    path: &mut Vec<String>,
    env: &dyn Fn(&str) -> Option<String>,
    from_env: &mut HashMap<String, (String, String)>,
) -> Result<(), ConfigError> {
    if let Value::Object(fields) = defaults {
        for (key, default) in fields {
            path.push(key.clone());
            if let Value::Object(target) = merged {
                let slot = target.entry(key.clone()).or_insert_with(|| default.clone());
                overlay_env(default, slot, path, env, from_env)?;
            }
            path.pop();
        }
        return Ok(());
    }
    let key = path.join(".");
    let var = env_var_name(&key);
    if let Some(text) = env(&var) {
        *merged = env_value(default_kind(defaults), &text).map_err(|reason| ConfigError::Env {
            var: var.clone(),
            value: text.clone(),
            reason,
        })?;
        from_env.insert(key, (var, text));
    }
    Ok(())
}

enum Kind {
    Bool,
    Integer,
    Float,
    String,
    StringList,
}

fn default_kind(default: &Value) -> Kind {
    match default {
        Value::Bool(_) => Kind::Bool,
        Value::Number(n) if n.is_f64() => Kind::Float,
        Value::Number(_) => Kind::Integer,
        Value::Array(_) => Kind::StringList,
        Value::String(_) | Value::Null | Value::Object(_) => Kind::String,
    }
}

fn env_value(kind: Kind, text: &str) -> Result<Value, String> {
    match kind {
        // Go's strconv.ParseBool set, which Kuma's envconfig uses.
        Kind::Bool => match text {
            "true" | "TRUE" | "True" | "t" | "T" | "1" => Ok(Value::Bool(true)),
            "false" | "FALSE" | "False" | "f" | "F" | "0" => Ok(Value::Bool(false)),
            _ => Err("expected a boolean (true or false)".to_owned()),
        },
        Kind::Integer => {
            let t = text.trim();
            if let Ok(n) = t.parse::<u64>() {
                Ok(Value::from(n))
            } else if let Ok(n) = t.parse::<i64>() {
                Ok(Value::from(n))
            } else {
                Err("expected an integer".to_owned())
            }
        }
        Kind::Float => match text.trim().parse::<f64>() {
            Ok(f) if f.is_finite() => Ok(Value::from(f)),
            _ => Err("expected a number".to_owned()),
        },
        Kind::String => Ok(Value::String(text.to_owned())),
        // Comma-separated, as Kuma's envconfig reads []string; empty means an empty list.
        Kind::StringList => Ok(Value::Array(
            text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.to_owned())).collect(),
        )),
    }
}

fn deserialize(merged: &Value, from_env: &HashMap<String, (String, String)>) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize::<_, Config>(merged).map_err(|err| {
        let (key, offending) = locate(merged, err.path());
        let reason = err.inner().to_string();
        match from_env.get(&key) {
            Some((var, value)) => ConfigError::Env { var: var.clone(), value: value.clone(), reason },
            None => ConfigError::Invalid { key, value: offending, reason },
        }
    })
}

/// The dotted key of a deserialization error and the offending value as text.
fn locate(root: &Value, path: &serde_path_to_error::Path) -> (String, String) {
    use serde_path_to_error::Segment;
    let mut key = String::new();
    let mut node = Some(root);
    for segment in path.iter() {
        match segment {
            Segment::Map { key: k } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(k);
                node = node.and_then(|n| n.get(k.as_str()));
            }
            Segment::Seq { index } => {
                key.push_str(&format!("[{index}]"));
                node = node.and_then(|n| n.get(*index));
            }
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    if key.is_empty() {
        key.push_str("<root>");
    }
    let value = match node {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    };
    (key, value)
}

fn kind_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// Every leaf key of the defaults tree, dotted, in declaration order. Used by tests to
/// keep `etc/higuma.yaml` complete.
pub fn leaf_keys() -> Vec<String> {
    fn walk(v: &Value, prefix: &str, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, child) in m {
                    let p = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                    walk(child, &p, out);
                }
            }
            _ => out.push(prefix.to_owned()),
        }
    }
    let mut out = Vec::new();
    if let Ok(tree) = defaults_tree() {
        walk(&tree, "", &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names copied from the tables in kuma-cp.md §1.2 (Kuma 2.4 struct tags).
    #[test]
    fn env_names_match_kuma() {
        let expected = [
            ("environment", "KUMA_ENVIRONMENT"),
            ("mode", "KUMA_MODE"),
            ("store.type", "KUMA_STORE_TYPE"),
            ("store.postgres.host", "KUMA_STORE_POSTGRES_HOST"),
            ("store.postgres.dbName", "KUMA_STORE_POSTGRES_DB_NAME"),
            ("store.postgres.driverName", "KUMA_STORE_POSTGRES_DRIVER_NAME"),
            ("store.postgres.connectionTimeout", "KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT"),
            ("store.postgres.maxConnectionLifetimeJitter", "KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME_JITTER"),
            ("store.postgres.maxIdleConnections", "KUMA_STORE_POSTGRES_MAX_IDLE_CONNECTIONS"),
            ("store.postgres.tls.mode", "KUMA_STORE_POSTGRES_TLS_MODE"),
            ("store.postgres.tls.caPath", "KUMA_STORE_POSTGRES_TLS_CA_PATH"),
            ("store.postgres.tls.disableSSLSNI", "KUMA_STORE_POSTGRES_TLS_DISABLE_SSLSNI"),
            ("store.cache.expirationTime", "KUMA_STORE_CACHE_EXPIRATION_TIME"),
            ("store.upsert.conflictRetryBaseBackoff", "KUMA_STORE_UPSERT_CONFLICT_RETRY_BASE_BACKOFF"),
            ("store.unsafeDelete", "KUMA_STORE_UNSAFE_DELETE"),
            (
                "xdsServer.dataplaneConfigurationRefreshInterval",
                "KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL",
            ),
            ("xdsServer.nackBackoff", "KUMA_XDS_SERVER_NACK_BACKOFF"),
            ("xdsServer.dataplaneDeregistrationDelay", "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY"),
            ("bootstrapServer.params.adminAccessLogPath", "KUMA_BOOTSTRAP_SERVER_PARAMS_ADMIN_ACCESS_LOG_PATH"),
            ("bootstrapServer.params.xdsConnectTimeout", "KUMA_BOOTSTRAP_SERVER_PARAMS_XDS_CONNECT_TIMEOUT"),
            ("dpServer.port", "KUMA_DP_SERVER_PORT"),
            ("dpServer.tlsCertFile", "KUMA_DP_SERVER_TLS_CERT_FILE"),
            ("dpServer.tlsKeyFile", "KUMA_DP_SERVER_TLS_KEY_FILE"),
            ("dpServer.tlsMinVersion", "KUMA_DP_SERVER_TLS_MIN_VERSION"),
            ("dpServer.tlsMaxVersion", "KUMA_DP_SERVER_TLS_MAX_VERSION"),
            ("dpServer.tlsCipherSuites", "KUMA_DP_SERVER_TLS_CIPHER_SUITES"),
            ("dpServer.readHeaderTimeout", "KUMA_DP_SERVER_READ_HEADER_TIMEOUT"),
            ("dpServer.authn.dpProxy.type", "KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE"),
            ("dpServer.authn.dpProxy.dpToken.enableIssuer", "KUMA_DP_SERVER_AUTHN_DP_PROXY_DP_TOKEN_ENABLE_ISSUER"),
            ("general.tlsCertFile", "KUMA_GENERAL_TLS_CERT_FILE"),
            ("general.tlsKeyFile", "KUMA_GENERAL_TLS_KEY_FILE"),
            ("general.tlsMinVersion", "KUMA_GENERAL_TLS_MIN_VERSION"),
            ("general.tlsMaxVersion", "KUMA_GENERAL_TLS_MAX_VERSION"),
            ("general.tlsCipherSuites", "KUMA_GENERAL_TLS_CIPHER_SUITES"),
            ("apiServer.http.interface", "KUMA_API_SERVER_HTTP_INTERFACE"),
            ("apiServer.readOnly", "KUMA_API_SERVER_READ_ONLY"),
            ("apiServer.corsAllowedDomains", "KUMA_API_SERVER_CORS_ALLOWED_DOMAINS"),
            ("diagnostics.serverPort", "KUMA_DIAGNOSTICS_SERVER_PORT"),
            ("diagnostics.debugEndpoints", "KUMA_DIAGNOSTICS_DEBUG_ENDPOINTS"),
            ("general.workDir", "KUMA_GENERAL_WORK_DIR"),
            ("general.dnsCacheTTL", "KUMA_GENERAL_DNS_CACHE_TTL"),
            ("defaults.skipMeshCreation", "KUMA_DEFAULTS_SKIP_MESH_CREATION"),
            ("defaults.skipTenantResources", "KUMA_DEFAULTS_SKIP_TENANT_RESOURCES"),
            ("defaults.createMeshRoutingResources", "KUMA_DEFAULTS_CREATE_MESH_ROUTING_RESOURCES"),
            ("runtime.universal.dataplaneCleanupAge", "KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE"),
            ("metrics.dataplane.subscriptionLimit", "KUMA_METRICS_DATAPLANE_SUBSCRIPTION_LIMIT"),
            ("metrics.dataplane.idleTimeout", "KUMA_METRICS_DATAPLANE_IDLE_TIMEOUT"),
        ];
        let leaves = leaf_keys();
        for (key, var) in expected {
            assert!(leaves.iter().any(|l| l == key), "{key} is not a config key");
            assert_eq!(env_var_name(key), var, "{key}");
        }
    }

    #[test]
    fn env_names_are_unique() {
        let mut names: Vec<String> = leaf_keys().iter().map(|k| env_var_name(k)).collect();
        let total = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), total);
    }

    #[test]
    fn null_in_file_keeps_default() {
        let mut base = serde_json::json!({"a": {"b": 1}, "c": "x"});
        let mut unknown = Vec::new();
        merge(
            &mut base,
            serde_json::json!({"a": null, "c": null, "d": {"e": 1}}),
            &mut String::new(),
            &mut unknown,
            &mut HashSet::new(),
        );
        assert_eq!(base, serde_json::json!({"a": {"b": 1}, "c": "x"}));
        assert_eq!(unknown, vec!["d".to_owned()]);
    }

    #[test]
    fn env_values_by_kind() {
        assert_eq!(env_value(Kind::Bool, "1"), Ok(Value::Bool(true)));
        assert!(env_value(Kind::Bool, "yes").is_err());
        assert_eq!(env_value(Kind::Integer, "42"), Ok(Value::from(42u64)));
        assert_eq!(env_value(Kind::Integer, "-1"), Ok(Value::from(-1i64)));
        assert!(env_value(Kind::Integer, "4.2").is_err());
        assert_eq!(env_value(Kind::StringList, ""), Ok(Value::Array(vec![])));
        assert_eq!(env_value(Kind::StringList, "a, b"), Ok(serde_json::json!(["a", "b"])));
    }
}
