//! Integration tests of `higuma::config`: precedence, every error path, the shipped
//! `etc/higuma.yaml`, and the output helpers. The process env is never touched: every
//! load gets its env from a map.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use higuma::config::{
    env_var_name, leaf_keys, load, Config, ConfigError, Duration, Environment, Loaded, Mode, StoreType, TlsMode,
};

fn env_from(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    move |name| map.get(name).cloned()
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn yaml_file(content: &str) -> tempfile::NamedTempFile {
    let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().expect("create temp file");
    f.write_all(content.as_bytes()).expect("write temp file");
    f
}

fn load_yaml(content: &str, env: &[(&str, &str)]) -> Result<Loaded, ConfigError> {
    let f = yaml_file(content);
    load(Some(f.path()), &env_from(env))
}

fn ok(result: Result<Loaded, ConfigError>) -> Loaded {
    result.unwrap_or_else(|e| panic!("unexpected error: {e}"))
}

/// Asserts an `Invalid` error for `key` and returns (value, reason, message).
fn expect_invalid(result: Result<impl std::fmt::Debug, ConfigError>, key: &str) -> (String, String, String) {
    match result {
        Err(e @ ConfigError::Invalid { .. }) => {
            let msg = e.to_string();
            let ConfigError::Invalid { key: k, value, reason } = e else { unreachable!() };
            assert_eq!(k, key, "wrong key in: {msg}");
            assert!(msg.contains(key), "{msg}");
            (value, reason, msg)
        }
        other => panic!("expected Invalid for {key}, got {other:?}"),
    }
}

fn expect_env(result: Result<Loaded, ConfigError>, var: &str, value: &str) -> String {
    match result {
        Err(e @ ConfigError::Env { .. }) => {
            let msg = e.to_string();
            let ConfigError::Env { var: v, value: val, .. } = e else { unreachable!() };
            assert_eq!(v, var, "{msg}");
            assert_eq!(val, value, "{msg}");
            msg
        }
        other => panic!("expected Env error for {var}, got {other:?}"),
    }
}

fn shipped_config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("etc").join("higuma.yaml")
}

// ---- precedence --------------------------------------------------------------------------

#[test]
fn no_file_no_env_gives_defaults() {
    let loaded = ok(load(None, &no_env));
    assert_eq!(loaded.config, Config::default());
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn precedence_is_defaults_then_file_then_env() {
    let yaml = "
dpServer:
  port: 6000          # in file, overridden by env
general:
  workDir: /var/lib/higuma   # only in file
store:
  postgres:
    user: alice       # only in file
";
    let env = [
        ("KUMA_DP_SERVER_PORT", "7000"),
        ("KUMA_API_SERVER_READ_ONLY", "true"), // only in env
    ];
    let c = ok(load_yaml(yaml, &env)).config;
    assert_eq!(c.dp_server.port, 7000);
    assert_eq!(c.general.work_dir, "/var/lib/higuma");
    assert_eq!(c.store.postgres.user, "alice");
    assert!(c.api_server.read_only);
    // Untouched keys keep their defaults, including siblings of keys set in the file.
    assert_eq!(c.store.postgres.port, 15432);
    assert_eq!(c.diagnostics.server_port, 5680);
}

#[test]
fn env_values_are_read_by_the_kind_of_their_key() {
    let env = [
        ("KUMA_STORE_TYPE", "postgres"),
        ("KUMA_STORE_POSTGRES_PASSWORD", "s3cret"),
        ("KUMA_STORE_POSTGRES_DB_NAME", "mesh"),
        ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "9"),
        ("KUMA_STORE_POSTGRES_TLS_MODE", "verifyNone"),
        ("KUMA_STORE_POSTGRES_TLS_DISABLE_SSLSNI", "true"),
        ("KUMA_STORE_CACHE_ENABLED", "false"),
        ("KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY", "30s"),
        ("KUMA_GENERAL_DNS_CACHE_TTL", "1m30s"),
        ("KUMA_API_SERVER_CORS_ALLOWED_DOMAINS", "https://a.example,https://b.example"),
        ("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE", "1.5h"),
        ("KUMA_MODE", "standalone"),
    ];
    let c = ok(load(None, &env_from(&env))).config;
    assert_eq!(c.store.r#type, StoreType::Postgres);
    assert_eq!(c.store.postgres.password, "s3cret");
    assert_eq!(c.store.postgres.db_name, "mesh");
    assert_eq!(c.store.postgres.connection_timeout, 9);
    assert_eq!(c.store.postgres.tls.mode, TlsMode::VerifyNone);
    assert!(c.store.postgres.tls.disable_sslsni);
    assert!(!c.store.cache.enabled);
    assert_eq!(c.xds_server.dataplane_deregistration_delay, Duration::from_secs(30));
    assert_eq!(c.general.dns_cache_ttl, Duration::from_secs(90));
    assert_eq!(c.api_server.cors_allowed_domains, ["https://a.example", "https://b.example"]);
    assert_eq!(c.runtime.universal.dataplane_cleanup_age, Duration::from_mins(90));
    assert_eq!(c.mode, Mode::Standalone);
}

#[test]
fn empty_env_list_is_an_empty_list() {
    let c = ok(load(None, &env_from(&[("KUMA_API_SERVER_CORS_ALLOWED_DOMAINS", "")]))).config;
    assert!(c.api_server.cors_allowed_domains.is_empty());
}

#[test]
fn deregistration_delay_uses_kumas_env_name_only() {
    // Kuma's tag has no _SERVER_; the regular name is not read, as in Kuma.
    assert_eq!(env_var_name("xdsServer.dataplaneDeregistrationDelay"), "KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY");
    let c = ok(load(None, &env_from(&[("KUMA_XDS_SERVER_DATAPLANE_DEREGISTRATION_DELAY", "99s")]))).config;
    assert_eq!(c.xds_server.dataplane_deregistration_delay, Duration::from_secs(10));
}

#[test]
fn empty_and_comment_only_files_give_defaults() {
    for content in ["", "\n", "# nothing here\n", "---\n"] {
        let loaded = ok(load_yaml(content, &[]));
        assert_eq!(loaded.config, Config::default(), "{content:?}");
        assert!(loaded.warnings.is_empty());
    }
}

#[test]
fn empty_section_keeps_defaults() {
    let loaded = ok(load_yaml("store:\nxdsServer:\n  nackBackoff:\n", &[]));
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn durations_in_file_accept_strings_and_nanoseconds() {
    let yaml = "
xdsServer:
  nackBackoff: 2000000000
  dataplaneStatusFlushInterval: 1h30m
store:
  upsert:
    conflictRetryBaseBackoff: 250ms
";
    let c = ok(load_yaml(yaml, &[])).config;
    assert_eq!(c.xds_server.nack_backoff, Duration::from_secs(2));
    assert_eq!(c.xds_server.dataplane_status_flush_interval, Duration::from_mins(90));
    assert_eq!(c.store.upsert.conflict_retry_base_backoff, Duration::from_millis(250));
}

// ---- unknown keys ------------------------------------------------------------------------

#[test]
fn unknown_keys_are_warned_with_their_full_path() {
    let yaml = "
store:
  postgres:
    hots: db.example   # typo of host
apiServer:
  gui:
    enabled: true
reports:
  enabled: false
";
    let loaded = ok(load_yaml(yaml, &[]));
    assert_eq!(loaded.config, Config::default());
    for key in ["store.postgres.hots", "apiServer.gui", "reports"] {
        assert!(
            loaded.warnings.iter().any(|w| w.contains(&format!(" {key} "))),
            "no warning for {key}: {:?}",
            loaded.warnings
        );
    }
    assert_eq!(loaded.warnings.len(), 3, "{:?}", loaded.warnings);
}

// ---- file errors -------------------------------------------------------------------------

#[test]
fn unreadable_file_is_a_read_error_naming_the_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("nope.yaml");
    match load(Some(&missing), &no_env) {
        Err(e @ ConfigError::Read { .. }) => {
            assert!(e.to_string().contains("nope.yaml"), "{e}");
            assert_eq!(e.label(), "read");
        }
        other => panic!("expected Read, got {other:?}"),
    }
    // A directory is not readable as a file either.
    assert!(matches!(load(Some(dir.path()), &no_env), Err(ConfigError::Read { .. })));
}

#[test]
fn yaml_syntax_error_is_a_parse_error_with_line_and_column() {
    let f = yaml_file("store:\n  type: memory\n   bad: [\n");
    match load(Some(f.path()), &no_env) {
        Err(e @ ConfigError::Parse { .. }) => {
            let msg = e.to_string();
            assert!(msg.starts_with("cannot parse "), "{msg}");
            assert!(msg.contains(&f.path().display().to_string()), "{msg}");
            assert!(msg.contains("line 3"), "{msg}");
            assert!(msg.contains("column"), "{msg}");
        }
        other => panic!("expected Parse, got {other:?}"),
    }
}

#[test]
fn top_level_must_be_a_mapping() {
    for content in ["- a\n- b\n", "just text\n", "42\n"] {
        assert!(matches!(load_yaml(content, &[]), Err(ConfigError::Parse { .. })), "{content:?}");
    }
}

#[test]
fn wrong_type_in_file_names_the_key_and_value() {
    let (value, reason, msg) =
        expect_invalid(load_yaml("store:\n  postgres:\n    port: abc\n", &[]), "store.postgres.port");
    assert_eq!(value, "abc");
    assert!(reason.contains("invalid type"), "{msg}");

    let (value, _, _) = expect_invalid(load_yaml("dpServer:\n  port: 70000\n", &[]), "dpServer.port");
    assert_eq!(value, "70000");

    let (value, reason, _) = expect_invalid(load_yaml("store:\n  type: mysql\n", &[]), "store.type");
    assert_eq!(value, "mysql");
    assert!(reason.contains("memory") && reason.contains("postgres"), "{reason}");

    let (value, reason, _) =
        expect_invalid(load_yaml("xdsServer:\n  nackBackoff: soon\n", &[]), "xdsServer.nackBackoff");
    assert_eq!(value, "soon");
    assert!(reason.contains("\"soon\""), "{reason}");

    let (_, _, _) = expect_invalid(
        load_yaml("store:\n  postgres:\n    connectionTimeout: 5s\n", &[]),
        "store.postgres.connectionTimeout",
    );
    let (_, _, _) = expect_invalid(load_yaml("apiServer:\n  readOnly: maybe\n", &[]), "apiServer.readOnly");
    let (value, _, _) = expect_invalid(load_yaml("store: 5\n", &[]), "store");
    assert_eq!(value, "5");
    let (_, _, _) = expect_invalid(
        load_yaml("apiServer:\n  corsAllowedDomains: [ok, 1]\n", &[]),
        "apiServer.corsAllowedDomains[1]",
    );
}

// ---- env errors --------------------------------------------------------------------------

#[test]
fn bad_env_int_names_the_var() {
    let msg = expect_env(load(None, &env_from(&[("KUMA_DP_SERVER_PORT", "abc")])), "KUMA_DP_SERVER_PORT", "abc");
    assert_eq!(msg, "environment variable KUMA_DP_SERVER_PORT=\"abc\": expected an integer");
}

#[test]
fn bad_env_bool_names_the_var() {
    let msg =
        expect_env(load(None, &env_from(&[("KUMA_API_SERVER_READ_ONLY", "yes")])), "KUMA_API_SERVER_READ_ONLY", "yes");
    assert!(msg.contains("boolean"), "{msg}");
}

#[test]
fn env_value_of_the_wrong_shape_names_the_var_not_the_key() {
    // These parse as the key's JSON kind but fail deserialization; the operator set an
    // env var, so the error must point at it.
    let msg = expect_env(load(None, &env_from(&[("KUMA_DP_SERVER_PORT", "70000")])), "KUMA_DP_SERVER_PORT", "70000");
    assert!(msg.contains("u16"), "{msg}");
    let msg = expect_env(
        load(None, &env_from(&[("KUMA_XDS_SERVER_NACK_BACKOFF", "soon")])),
        "KUMA_XDS_SERVER_NACK_BACKOFF",
        "soon",
    );
    assert!(msg.contains("\"soon\""), "{msg}");
    expect_env(load(None, &env_from(&[("KUMA_STORE_TYPE", "mysql")])), "KUMA_STORE_TYPE", "mysql");
}

#[test]
fn env_overrides_a_bad_file_value() {
    let c = ok(load_yaml("dpServer:\n  port: abc\n", &[("KUMA_DP_SERVER_PORT", "6000")])).config;
    assert_eq!(c.dp_server.port, 6000);
}

// ---- validate(): errors ------------------------------------------------------------------

fn postgres() -> Config {
    let mut c = Config::default();
    c.store.r#type = StoreType::Postgres;
    c.store.postgres.password = "not-the-default".to_owned();
    c
}

#[test]
fn defaults_and_a_sane_postgres_config_validate_cleanly() {
    assert_eq!(Config::default().validate().ok(), Some(vec![]));
    assert_eq!(postgres().validate().ok(), Some(vec![]));
}

#[test]
fn zero_xds_intervals_are_rejected() {
    let err = load(None, &env_from(&[("KUMA_XDS_SERVER_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL", "0s")])).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("invalid value \"0s\" for xdsServer.dataplaneConfigurationRefreshInterval: must be greater than 0")
    );

    let mut c = Config::default();
    c.xds_server.dataplane_status_flush_interval = Duration::ZERO;
    expect_invalid(c.validate(), "xdsServer.dataplaneStatusFlushInterval");

    let err = load(None, &env_from(&[("KUMA_DP_SERVER_KEEPALIVE_TIME", "0s")])).err();
    assert_eq!(
        err.map(|e| e.to_string()).as_deref(),
        Some("invalid value \"0s\" for dpServer.keepaliveTime: must be greater than 0")
    );
}

#[test]
fn ports_must_be_set_and_distinct() {
    let mut c = Config::default();
    c.api_server.http.port = 0;
    expect_invalid(c.validate(), "apiServer.http.port");

    let mut c = Config::default();
    c.dp_server.port = 0;
    expect_invalid(c.validate(), "dpServer.port");

    let mut c = Config::default();
    c.diagnostics.server_port = 0;
    expect_invalid(c.validate(), "diagnostics.serverPort");

    let mut c = Config::default();
    c.diagnostics.server_port = c.dp_server.port;
    let (value, reason, _) = expect_invalid(c.validate(), "diagnostics.serverPort");
    assert_eq!(value, "5678");
    assert!(reason.contains("dpServer.port"), "{reason}");

    let mut c = Config::default();
    c.dp_server.port = c.api_server.http.port;
    expect_invalid(c.validate(), "dpServer.port");

    // A disabled HTTP API does not claim its port.
    let mut c = Config::default();
    c.api_server.http.enabled = false;
    c.api_server.http.port = c.dp_server.port;
    assert!(c.validate().is_ok());

    let mut c = Config::default();
    c.api_server.http.interface = String::new();
    expect_invalid(c.validate(), "apiServer.http.interface");
}

#[test]
fn postgres_rules_apply_only_to_the_postgres_store() {
    let mut c = Config::default();
    c.store.postgres.port = 0;
    c.store.postgres.connection_timeout = 0;
    assert!(c.validate().is_ok(), "memory store ignores the postgres section");

    let mut c = postgres();
    c.store.postgres.port = 0;
    expect_invalid(c.validate(), "store.postgres.port");

    let mut c = postgres();
    c.store.postgres.connection_timeout = 0;
    let (value, _, _) = expect_invalid(c.validate(), "store.postgres.connectionTimeout");
    assert_eq!(value, "0");

    let mut c = postgres();
    c.store.postgres.host = String::new();
    expect_invalid(c.validate(), "store.postgres.host");

    let mut c = postgres();
    c.store.postgres.user = " ".to_owned();
    expect_invalid(c.validate(), "store.postgres.user");

    let mut c = postgres();
    c.store.postgres.db_name = String::new();
    expect_invalid(c.validate(), "store.postgres.dbName");

    let mut c = postgres();
    c.store.postgres.driver_name = "mysql".to_owned();
    let (value, _, _) = expect_invalid(c.validate(), "store.postgres.driverName");
    assert_eq!(value, "mysql");
}

#[test]
fn reconnect_intervals_must_not_shrink() {
    // Equal bounds are a constant back-off; only a ceiling below the floor contradicts.
    let mut c = postgres();
    c.store.postgres.max_reconnect_interval = c.store.postgres.min_reconnect_interval;
    assert!(c.validate().is_ok());
    c.store.postgres.max_reconnect_interval = Duration::from_secs(1);
    let (value, reason, _) = expect_invalid(c.validate(), "store.postgres.maxReconnectInterval");
    assert_eq!(value, "1s");
    assert!(reason.contains("minReconnectInterval"), "{reason}");

    let mut c = postgres();
    c.store.postgres.min_reconnect_interval = Duration::ZERO;
    expect_invalid(c.validate(), "store.postgres.minReconnectInterval");
}

#[test]
fn pool_minimum_must_fit_under_the_maximum() {
    let mut c = postgres();
    c.store.postgres.min_open_connections = 60;
    expect_invalid(c.validate(), "store.postgres.minOpenConnections");

    // maxOpenConnections 0 means unlimited.
    let mut c = postgres();
    c.store.postgres.max_open_connections = 0;
    c.store.postgres.max_idle_connections = 500;
    c.store.postgres.min_open_connections = 60;
    assert!(c.validate().is_ok());
}

// ---- derived values: one key changed alone never trips over another key's default ----------

const PG_ENV: [(&str, &str); 2] = [("KUMA_STORE_TYPE", "postgres"), ("KUMA_STORE_POSTGRES_PASSWORD", "secret")];

fn load_env(extra: &[(&str, &str)]) -> Loaded {
    let mut env: Vec<(&str, &str)> = PG_ENV.to_vec();
    env.extend_from_slice(extra);
    ok(load(None, &env_from(&env)))
}

#[test]
fn lowering_max_open_connections_alone_lowers_the_idle_limit_with_an_info_note() {
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS", "3")]);
    let pg = &loaded.config.store.postgres;
    assert_eq!((pg.max_open_connections, pg.max_idle_connections), (3, 3));
    assert_eq!(loaded.derived.len(), 1, "{:?}", loaded.derived);
    let d = &loaded.derived[0];
    assert_eq!(d.key, "store.postgres.maxIdleConnections");
    assert_eq!((d.configured.as_str(), d.effective.as_str()), ("50", "3"));
    assert!(!d.explicit, "the idle limit was a default");
    assert!(loaded.warnings.is_empty(), "a default that yields is no warning: {:?}", loaded.warnings);
}

#[test]
fn an_explicit_idle_limit_above_the_open_limit_is_a_warning_not_an_error() {
    let loaded = ok(load_yaml(
        "store:\n  type: postgres\n  postgres:\n    password: x\n    maxOpenConnections: 4\n    maxIdleConnections: 10\n",
        &[],
    ));
    assert_eq!(loaded.config.store.postgres.max_idle_connections, 4);
    assert!(loaded.derived[0].explicit);
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    let w = &loaded.warnings[0];
    assert!(w.contains("store.postgres.maxIdleConnections = 4") && w.contains("configured 10"), "{w}");
    assert!(w.contains("store.postgres.maxOpenConnections"), "{w}");
}

#[test]
fn unlimited_open_connections_keep_the_idle_limit() {
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS", "0")]);
    assert_eq!(loaded.config.store.postgres.max_idle_connections, 50);
    assert!(loaded.derived.is_empty());
}

#[test]
fn a_short_or_no_connection_lifetime_lowers_the_jitter() {
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME", "30s")]);
    assert_eq!(loaded.config.store.postgres.max_connection_lifetime_jitter, Duration::from_secs(30));
    assert_eq!(loaded.derived[0].key, "store.postgres.maxConnectionLifetimeJitter");
    assert!(loaded.warnings.is_empty());
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME", "0s")]);
    assert_eq!(loaded.config.store.postgres.max_connection_lifetime_jitter, Duration::ZERO);
    // Both set: the operator's contradiction is a warning, still not an error.
    let loaded = load_env(&[
        ("KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME", "30s"),
        ("KUMA_STORE_POSTGRES_MAX_CONNECTION_LIFETIME_JITTER", "2m"),
    ]);
    assert_eq!(loaded.config.store.postgres.max_connection_lifetime_jitter, Duration::from_secs(30));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn the_reconnect_key_the_operator_set_wins_over_the_other_default() {
    // Floor raised above the default ceiling (60 s): the ceiling follows.
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MIN_RECONNECT_INTERVAL", "2m")]);
    let pg = &loaded.config.store.postgres;
    assert_eq!(
        (pg.min_reconnect_interval, pg.max_reconnect_interval),
        (Duration::from_mins(2), Duration::from_mins(2))
    );
    assert_eq!(loaded.derived[0].key, "store.postgres.maxReconnectInterval");
    assert!(loaded.warnings.is_empty());
    // Ceiling lowered below the default floor (10 s): the floor follows.
    let loaded = load_env(&[("KUMA_STORE_POSTGRES_MAX_RECONNECT_INTERVAL", "2s")]);
    let pg = &loaded.config.store.postgres;
    assert_eq!(
        (pg.min_reconnect_interval, pg.max_reconnect_interval),
        (Duration::from_secs(2), Duration::from_secs(2))
    );
    assert_eq!(loaded.derived[0].key, "store.postgres.minReconnectInterval");
    assert!(loaded.warnings.is_empty());
    // Both set against each other: the floor wins, with a warning.
    let loaded = load_env(&[
        ("KUMA_STORE_POSTGRES_MIN_RECONNECT_INTERVAL", "5s"),
        ("KUMA_STORE_POSTGRES_MAX_RECONNECT_INTERVAL", "2s"),
    ]);
    assert_eq!(loaded.config.store.postgres.max_reconnect_interval, Duration::from_secs(5));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
}

#[test]
fn the_memory_store_derives_nothing_from_postgres_settings() {
    let loaded = ok(load(None, &env_from(&[("KUMA_STORE_POSTGRES_MAX_OPEN_CONNECTIONS", "3")])));
    assert!(loaded.derived.is_empty());
    assert_eq!(loaded.config.store.postgres.max_idle_connections, 50);
}

#[test]
fn verifying_tls_needs_a_ca_and_client_certs_come_in_pairs() {
    for mode in [TlsMode::VerifyCa, TlsMode::VerifyFull] {
        let mut c = postgres();
        c.store.postgres.tls.mode = mode;
        let (_, reason, _) = expect_invalid(c.validate(), "store.postgres.tls.caPath");
        assert!(reason.contains("verify"), "{reason}");
        c.store.postgres.tls.ca_path = "/etc/ssl/ca.pem".to_owned();
        assert!(c.validate().is_ok());
    }

    let mut c = postgres();
    c.store.postgres.tls.cert_path = "/etc/ssl/client.pem".to_owned();
    expect_invalid(c.validate(), "store.postgres.tls.keyPath");

    let mut c = postgres();
    c.store.postgres.tls.key_path = "/etc/ssl/client.key".to_owned();
    expect_invalid(c.validate(), "store.postgres.tls.certPath");
}

#[test]
fn unsupported_topologies_are_rejected() {
    let c = Config { environment: Environment::Kubernetes, ..Config::default() };
    expect_invalid(c.validate(), "environment");

    let c = Config { mode: Mode::Global, ..Config::default() };
    expect_invalid(c.validate(), "mode");
}

#[test]
fn other_rules() {
    let mut c = Config::default();
    c.metrics.dataplane.idle_timeout = Duration::ZERO;
    expect_invalid(c.validate(), "metrics.dataplane.idleTimeout");

    let mut c = Config::default();
    c.bootstrap_server.params.admin_address = String::new();
    expect_invalid(c.validate(), "bootstrapServer.params.adminAddress");
}

#[test]
fn validate_errors_surface_through_load() {
    let result = load_yaml("store:\n  type: postgres\n  postgres:\n    connectionTimeout: 0\n", &[]);
    expect_invalid(result, "store.postgres.connectionTimeout");
}

// ---- validate(): warnings ----------------------------------------------------------------

#[test]
fn cache_outliving_the_refresh_interval_is_a_warning() {
    let loaded = ok(load(None, &env_from(&[("KUMA_STORE_CACHE_EXPIRATION_TIME", "5s")])));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("store.cache.expirationTime"));
    assert!(loaded.warnings[0].contains("dataplaneConfigurationRefreshInterval"));

    // Not when the cache is off.
    let loaded =
        ok(load(None, &env_from(&[("KUMA_STORE_CACHE_EXPIRATION_TIME", "5s"), ("KUMA_STORE_CACHE_ENABLED", "false")])));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn default_postgres_password_is_a_warning() {
    let loaded = ok(load(None, &env_from(&[("KUMA_STORE_TYPE", "postgres")])));
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("store.postgres.password"));

    let loaded = ok(load(None, &env_from(&[("KUMA_STORE_TYPE", "postgres"), ("KUMA_STORE_POSTGRES_PASSWORD", "x")])));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
}

#[test]
fn zero_subscription_limit_and_zone_mode_are_warnings() {
    let loaded = ok(load_yaml("mode: zone\nmetrics:\n  dataplane:\n    subscriptionLimit: 0\n", &[]));
    assert_eq!(loaded.config.mode, Mode::Zone);
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(loaded.warnings.iter().any(|w| w.contains("subscriptionLimit")));
    assert!(loaded.warnings.iter().any(|w| w.contains("mode zone")));
}

// ---- Duration ----------------------------------------------------------------------------

#[test]
fn duration_parses_go_syntax_and_round_trips() {
    let cases = [
        ("5s", Duration::from_secs(5), "5s"),
        ("500ms", Duration::from_millis(500), "500ms"),
        ("1h30m", Duration::from_mins(90), "1h30m"),
        ("72h", Duration::from_hours(72), "72h"),
        ("90s", Duration::from_secs(90), "1m30s"),
        ("0s", Duration::ZERO, "0s"),
    ];
    for (text, expected, canonical) in cases {
        let d: Duration = text.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(d, expected, "{text}");
        assert_eq!(d.to_string(), canonical);
        let back: Duration = canonical.parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, d);
        // Through serde as well, the way the config file is read and written.
        let json = serde_json::to_string(&d).unwrap_or_default();
        assert_eq!(json, format!("\"{canonical}\""));
        let from_json: Duration = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(from_json, d);
    }
}

#[test]
fn duration_accepts_integer_nanoseconds() {
    let d: Duration = serde_json::from_str("1500000000").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, Duration::from_millis(1500));
    let d: Duration = serde_yaml_ng::from_str("1000").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(d, Duration(std::time::Duration::from_nanos(1000)));
    assert!(serde_json::from_str::<Duration>("-1").is_err());
}

#[test]
fn duration_garbage_is_an_error_naming_the_text() {
    for bad in ["soon", "5 parsecs", "1h30", ""] {
        let err = bad.parse::<Duration>().err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains(&format!("{bad:?}")), "{bad:?} -> {err:?}");
        let serde_err = serde_json::from_value::<Duration>(serde_json::json!(bad)).err().map(|e| e.to_string());
        assert!(serde_err.unwrap_or_default().contains(&format!("{bad:?}")));
    }
}

// ---- dpServer security ---------------------------------------------------------------------

#[test]
fn dp_server_security_settings_are_checked_naming_the_key() {
    let (value, reason, _) =
        expect_invalid(load_yaml("dpServer:\n  tlsMinVersion: TLSv1_0\n", &[]), "dpServer.tlsMinVersion");
    assert_eq!(value, "TLSv1_0");
    assert!(reason.contains("TLSv1_2, TLSv1_3"), "{reason}");
    let (_, reason, _) =
        expect_invalid(load_yaml("general:\n  tlsCipherSuites: [RC4]\n", &[]), "general.tlsCipherSuites");
    assert!(reason.contains("RC4"), "{reason}");
    let (_, reason, _) = expect_invalid(load_yaml("dpServer:\n  tlsCertFile: /a.crt\n", &[]), "dpServer.tlsKeyFile");
    assert!(reason.contains("together"), "{reason}");
    let (value, reason, _) = expect_invalid(
        load_yaml("dpServer:\n  authn:\n    dpProxy:\n      type: serviceAccountToken\n", &[]),
        "dpServer.authn.dpProxy.type",
    );
    assert_eq!(value, "serviceAccountToken");
    assert!(reason.contains("Kubernetes"), "{reason}");
    expect_invalid(
        load_yaml("dpServer:\n  limits:\n    maxStreamsPerDataplane: 0\n", &[]),
        "dpServer.limits.maxStreamsPerDataplane",
    );
    expect_invalid(load_yaml("dpServer:\n  readHeaderTimeout: 0s\n", &[]), "dpServer.readHeaderTimeout");
    // Env names are Kuma's; the plaintext opt-in warns.
    let loaded = ok(load(
        None,
        &env_from(&[("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE", "none"), ("KUMA_DP_SERVER_TLS_ENABLED", "false")]),
    ));
    assert_eq!(loaded.config.dp_server.authn.dp_proxy.mode(), higuma::config::DpAuthn::None);
    assert!(loaded.warnings.iter().any(|w| w.contains("plaintext")), "{:?}", loaded.warnings);
    assert_eq!(ok(load(None, &no_env)).config.dp_server.authn.dp_proxy.mode(), higuma::config::DpAuthn::DpToken);
}

// ---- etc/higuma.yaml ---------------------------------------------------------------------

#[test]
fn shipped_config_equals_the_defaults() {
    let loaded = ok(load(Some(&shipped_config()), &no_env));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn shipped_config_lists_every_key_and_its_env_var() {
    let text = std::fs::read_to_string(shipped_config()).expect("read etc/higuma.yaml");
    let tree: serde_json::Value = serde_yaml_ng::from_str(&text).expect("parse etc/higuma.yaml");
    let keys = leaf_keys();
    assert!(keys.len() > 40, "suspiciously few keys: {}", keys.len());
    for key in keys {
        let pointer = format!("/{}", key.replace('.', "/"));
        assert!(tree.pointer(&pointer).is_some(), "etc/higuma.yaml lacks {key}");
        let var = env_var_name(&key);
        assert!(text.contains(&format!("ENV: {var}")), "etc/higuma.yaml does not document {var} for {key}");
    }
}

// ---- output helpers ----------------------------------------------------------------------

#[test]
fn to_yaml_of_defaults_reloads_to_defaults() {
    let f = yaml_file(&Config::default().to_yaml());
    let loaded = ok(load(Some(f.path()), &no_env));
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    assert_eq!(loaded.config, Config::default());
}

#[test]
fn to_yaml_round_trips_a_fully_customised_config() {
    let mut c = postgres();
    c.mode = Mode::Zone;
    let pg = &mut c.store.postgres;
    pg.host = "db.internal".to_owned();
    pg.port = 5432;
    pg.user = "higuma".to_owned();
    pg.db_name = "mesh: prod".to_owned(); // needs quoting in YAML
    pg.driver_name = "postgres".to_owned();
    pg.connection_timeout = 10;
    pg.max_connection_lifetime = Duration::from_mins(30);
    pg.max_connection_lifetime_jitter = Duration::from_secs(30);
    pg.health_check_interval = Duration::from_secs(15);
    pg.min_open_connections = 2;
    pg.max_open_connections = 20;
    pg.max_idle_connections = 10;
    pg.min_reconnect_interval = Duration::from_secs(1);
    pg.max_reconnect_interval = Duration::from_millis(1500);
    pg.tls.mode = TlsMode::VerifyFull;
    pg.tls.cert_path = "/c.pem".to_owned();
    pg.tls.key_path = "/k.pem".to_owned();
    pg.tls.ca_path = "/ca.pem".to_owned();
    pg.tls.disable_sslsni = true;
    pg.read_replica.host = "replica.internal".to_owned();
    pg.read_replica.port = 5433;
    pg.read_replica.ratio = 50;
    pg.tolerate_newer_db_versions = true;
    c.store.cache.enabled = false;
    c.store.cache.expiration_time = Duration::from_millis(500);
    c.store.upsert.conflict_retry_base_backoff = Duration::from_millis(200);
    c.store.upsert.conflict_retry_max_times = 10;
    c.store.unsafe_delete = true;
    c.xds_server.dataplane_configuration_refresh_interval = Duration::from_secs(2);
    c.xds_server.dataplane_status_flush_interval = Duration::from_secs(20);
    c.xds_server.nack_backoff = Duration::from_secs(1);
    c.xds_server.event_push = false;
    c.xds_server.change_history_size = 16;
    c.xds_server.dataplane_deregistration_delay = Duration::ZERO;
    c.xds_server.max_stream_age = Duration::from_mins(30);
    c.bootstrap_server.params.admin_address = "0.0.0.0".to_owned();
    c.bootstrap_server.params.admin_port = 9902;
    c.bootstrap_server.params.admin_access_log_path = "/tmp/admin.log".to_owned();
    c.bootstrap_server.params.xds_host = "cp.internal".to_owned();
    c.bootstrap_server.params.xds_port = 15678;
    c.bootstrap_server.params.xds_connect_timeout = Duration::from_secs(3);
    c.dp_server.interface = "127.0.0.2".to_owned();
    c.dp_server.port = 15678;
    c.dp_server.keepalive_time = Duration::from_secs(40);
    c.dp_server.tls_enabled = false;
    c.dp_server.tls_cert_file = "/dp.crt".to_owned();
    c.dp_server.tls_key_file = "/dp.key".to_owned();
    c.dp_server.tls_min_version = "TLSv1_3".to_owned();
    c.dp_server.tls_max_version = "TLSv1_3".to_owned();
    c.dp_server.tls_cipher_suites = vec!["TLS_AES_128_GCM_SHA256".to_owned()];
    c.dp_server.read_header_timeout = Duration::from_secs(2);
    c.dp_server.authn.dp_proxy.r#type = "none".to_owned();
    c.dp_server.authn.dp_proxy.dp_token.enable_issuer = false;
    c.dp_server.limits.max_message_size = 1 << 20;
    c.dp_server.limits.max_streams_per_connection = 3;
    c.dp_server.limits.max_streams_per_dataplane = 2;
    c.api_server.http.enabled = false;
    c.api_server.http.interface = "127.0.0.1".to_owned();
    c.api_server.http.port = 15681;
    c.api_server.read_only = true;
    c.api_server.cors_allowed_domains = vec![];
    c.diagnostics.interface = "127.0.0.3".to_owned();
    c.diagnostics.server_port = 15680;
    c.diagnostics.debug_endpoints = true;
    c.diagnostics.read_header_timeout = Duration::from_secs(2);
    c.diagnostics.read_timeout = Duration::from_secs(6);
    c.diagnostics.write_timeout = Duration::from_secs(31);
    c.diagnostics.idle_timeout = Duration::from_secs(91);
    c.diagnostics.max_header_bytes = 8192;
    c.diagnostics.max_body_bytes = 10;
    c.api_server.https.enabled = false;
    c.api_server.https.interface = "127.0.0.1".to_owned();
    c.api_server.https.port = 15682;
    c.api_server.https.tls_cert_file = "/etc/higuma/tls.crt".to_owned();
    c.api_server.https.tls_key_file = "/etc/higuma/tls.key".to_owned();
    c.api_server.https.tls_min_version = "TLSv1_3".to_owned();
    c.api_server.https.tls_max_version = "TLSv1_3".to_owned();
    c.api_server.https.tls_cipher_suites = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()];
    c.api_server.authn.localhost_is_admin = false;
    c.api_server.authn.tokens.bootstrap_admin_token = false;
    c.api_server.authn.tokens.enable_issuer = false;
    c.api_server.authn.tokens.validator.use_secrets = false;
    c.api_server.read_header_timeout = Duration::from_secs(3);
    c.api_server.read_timeout = Duration::from_secs(11);
    c.api_server.write_timeout = Duration::from_secs(29);
    c.api_server.idle_timeout = Duration::from_secs(60);
    c.api_server.max_header_bytes = 32768;
    c.api_server.max_body_bytes = 2048;
    let s = &mut c.access.r#static;
    for rule in [
        &mut s.admin_resources,
        &mut s.generate_dp_token,
        &mut s.generate_user_token,
        &mut s.generate_zone_token,
        &mut s.view_config_dump,
        &mut s.view_stats,
        &mut s.view_clusters,
        &mut s.write_resources,
    ] {
        *rule = higuma::config::AccessRule::new(&["ops"], &["operators"]);
    }
    c.general.work_dir = "/var/lib/higuma".to_owned();
    c.general.log_level = "debug".to_owned();
    c.general.dns_cache_ttl = Duration::from_secs(1);
    c.general.tls_cert_file = "/g.crt".to_owned();
    c.general.tls_key_file = "/g.key".to_owned();
    c.general.tls_min_version = "TLSv1_3".to_owned();
    c.general.tls_max_version = "TLSv1_3".to_owned();
    c.general.tls_cipher_suites = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_owned()];
    c.defaults.skip_mesh_creation = true;
    c.defaults.skip_tenant_resources = true;
    c.defaults.create_mesh_routing_resources = true;
    c.runtime.universal.dataplane_cleanup_age = Duration::from_hours(1);
    c.metrics.dataplane.subscription_limit = 5;
    c.metrics.dataplane.idle_timeout = Duration::from_mins(1);

    let f = yaml_file(&c.to_yaml());
    let loaded = ok(load(Some(f.path()), &no_env));
    assert_eq!(loaded.config, c);
    // Every value differs from its default, so every leaf was really read from the file.
    // `environment`, `apiServer.authn.type` and `access.type` have a single valid value,
    // so they cannot differ.
    let custom = serde_json::to_value(&c).unwrap_or_default();
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let single_valued = ["environment", "apiServer.authn.type", "access.type"];
    for key in leaf_keys().into_iter().filter(|k| !single_valued.contains(&k.as_str())) {
        let pointer = format!("/{}", key.replace('.', "/"));
        assert_ne!(custom.pointer(&pointer), defaults.pointer(&pointer), "{key} is not customised");
    }
}

#[test]
fn sanitized_masks_only_the_password() {
    let mut c = Config::default();
    c.store.postgres.password = "s3cret".to_owned();
    let json = c.sanitized();
    assert_eq!(json["store"]["postgres"]["password"], "*****");
    assert!(!json.to_string().contains("s3cret"));
    assert_eq!(c.store.postgres.password, "s3cret", "the config itself is untouched");

    let mut expected = serde_json::to_value(&c).unwrap_or_default();
    expected["store"]["postgres"]["password"] = serde_json::json!("*****");
    assert_eq!(json, expected);
    assert_eq!(json["apiServer"]["http"]["port"], 5681);
}

#[test]
fn error_labels_and_messages() {
    let e = ConfigError::Invalid {
        key: "xdsServer.dataplaneConfigurationRefreshInterval".to_owned(),
        value: "0s".to_owned(),
        reason: "must be greater than 0".to_owned(),
    };
    assert_eq!(e.label(), "invalid");
    assert_eq!(
        e.to_string(),
        "invalid value \"0s\" for xdsServer.dataplaneConfigurationRefreshInterval: must be greater than 0"
    );
}

#[test]
fn log_level_and_interfaces_are_validated() {
    let mut c = Config::default();
    c.general.log_level = "loud".to_owned();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("general.logLevel") && err.contains("loud"), "{err}");
    c.general.log_level = "debug".to_owned();
    assert!(c.validate().is_ok());
    c.dp_server.interface = " ".to_owned();
    let err = c.validate().unwrap_err().to_string();
    assert!(err.contains("dpServer.interface"), "{err}");
}

#[test]
fn api_security_keys_have_kumas_env_names_and_are_validated() {
    for (key, var) in [
        ("apiServer.https.tlsMinVersion", "KUMA_API_SERVER_HTTPS_TLS_MIN_VERSION"),
        ("apiServer.authn.localhostIsAdmin", "KUMA_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN"),
        ("apiServer.authn.tokens.bootstrapAdminToken", "KUMA_API_SERVER_AUTHN_TOKENS_BOOTSTRAP_ADMIN_TOKEN"),
        ("apiServer.readHeaderTimeout", "KUMA_API_SERVER_READ_HEADER_TIMEOUT"),
        ("access.static.adminResources.groups", "KUMA_ACCESS_STATIC_ADMIN_RESOURCES_GROUPS"),
        ("access.static.generateDpToken.users", "KUMA_ACCESS_STATIC_GENERATE_DP_TOKEN_USERS"),
        ("access.static.viewConfigDump.groups", "KUMA_ACCESS_STATIC_GET_CONFIG_DUMP_GROUPS"),
    ] {
        assert!(leaf_keys().iter().any(|k| k == key), "{key}");
        assert_eq!(env_var_name(key), var);
    }
    let loaded = ok(load(None, &env_from(&[("KUMA_ACCESS_STATIC_ADMIN_RESOURCES_GROUPS", "ops, admins")])));
    assert_eq!(loaded.config.access.r#static.admin_resources.groups, vec!["ops".to_string(), "admins".to_string()]);

    let mut c = Config::default();
    c.api_server.https.tls_cert_file = "/x.crt".into();
    let (value, reason, _) = expect_invalid(c.validate(), "apiServer.https.tlsKeyFile");
    assert_eq!(value, "");
    assert!(reason.contains("together"), "{reason}");
    let mut c = Config::default();
    c.api_server.https.tls_min_version = "TLSv1_9".into();
    expect_invalid(c.validate(), "apiServer.https.tlsMinVersion");
    let mut c = Config::default();
    c.api_server.https.tls_max_version = "TLSv1_1".into();
    expect_invalid(c.validate(), "apiServer.https.tlsMaxVersion");
    let mut c = Config::default();
    c.api_server.https.tls_cipher_suites = vec!["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".into(), "RC4".into()];
    expect_invalid(c.validate(), "apiServer.https.tlsCipherSuites[1]");
    let mut c = Config::default();
    c.api_server.https.port = c.api_server.http.port;
    expect_invalid(c.validate(), "apiServer.https.port");
    let mut c = Config::default();
    c.api_server.authn.r#type = "adminClientCerts".into();
    expect_invalid(c.validate(), "apiServer.authn.type");
    let mut c = Config::default();
    c.access.r#type = "rbac".into();
    expect_invalid(c.validate(), "access.type");
    let mut c = Config::default();
    c.api_server.read_header_timeout = Duration::ZERO;
    expect_invalid(c.validate(), "apiServer.readHeaderTimeout");
    let mut c = Config::default();
    c.diagnostics.max_header_bytes = 100;
    expect_invalid(c.validate(), "diagnostics.maxHeaderBytes");
    let err = load(None, &env_from(&[("KUMA_API_SERVER_MAX_BODY_BYTES", "lots")])).err();
    assert!(err.map(|e| e.to_string()).unwrap_or_default().contains("KUMA_API_SERVER_MAX_BODY_BYTES"));
}
