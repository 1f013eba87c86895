//! Configuration of the control plane: Kuma's `kuma-cp` config keys, defaults and env vars.
//!
//! The struct tree mirrors Kuma 2.4's YAML (camelCase keys, same nesting), so an existing
//! `kuma-cp.yaml` and existing `KUMA_*` variables keep working. Only the keys relevant to
//! a Universal single-zone control plane are modelled; any other key in a file is reported
//! as a warning and ignored, as Kuma ignores unknown keys.
//!
//! * [`load`] builds a [`Config`] from defaults < file < env and validates it.
//! * [`Config::validate`] checks ranges and cross-field rules, naming the YAML key.
//! * [`Config::to_yaml`] / [`Config::sanitized`] print the effective config; the latter
//!   masks the Postgres password the way Kuma's `Sanitize()` does.
//!
//! `etc/higuma.yaml` is the commented copy of [`Config::default`]; a test keeps them equal.

mod api_server;
mod derive;
mod duration;
mod errors;
mod load;
mod validate;

use serde::{Deserialize, Serialize};

pub use api_server::*;
pub use derive::Derived;
pub use duration::{Duration, ParseDurationError};
pub use errors::ConfigError;
pub use load::{env_var_name, leaf_keys, load, load_from_process, Loaded};

/// What Kuma shows instead of secrets in `GET /config` and the startup log.
pub const SANITIZED_VALUE: &str = "*****";

// ---- top level ---------------------------------------------------------------------------

/// Kuma's default outside Kubernetes, and the only environment higuma implements.
pub const DEFAULT_ENVIRONMENT: Environment = Environment::Universal;
/// Kuma 2.4's default: a single zone without KDS, the only topology higuma implements.
pub const DEFAULT_MODE: Mode = Mode::Standalone;

/// The complete control-plane configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Config {
    /// Where the control plane runs. Only `universal` is supported.
    pub environment: Environment,
    /// Deployment topology. Only a single zone is supported.
    pub mode: Mode,
    pub store: StoreConfig,
    pub xds_server: XdsServerConfig,
    pub bootstrap_server: BootstrapServerConfig,
    pub dp_server: DpServerConfig,
    pub api_server: ApiServerConfig,
    pub diagnostics: DiagnosticsConfig,
    pub general: GeneralConfig,
    pub defaults: DefaultsConfig,
    pub runtime: RuntimeConfig,
    pub metrics: MetricsConfig,
    pub access: AccessConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            environment: DEFAULT_ENVIRONMENT,
            mode: DEFAULT_MODE,
            store: StoreConfig::default(),
            xds_server: XdsServerConfig::default(),
            bootstrap_server: BootstrapServerConfig::default(),
            dp_server: DpServerConfig::default(),
            api_server: ApiServerConfig::default(),
            diagnostics: DiagnosticsConfig::default(),
            general: GeneralConfig::default(),
            defaults: DefaultsConfig::default(),
            runtime: RuntimeConfig::default(),
            metrics: MetricsConfig::default(),
            access: AccessConfig::default(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Environment {
    Universal,
    /// Accepted so a Kubernetes config gives a clear validation error, not a parse error.
    Kubernetes,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// One zone, no KDS.
    Standalone,
    /// Rejected by validation: higuma has no KDS.
    Global,
    /// Kuma 2.6+ spells single-zone as `zone`; accepted (with a warning) as standalone.
    Zone,
}

// ---- store -------------------------------------------------------------------------------

/// Kuma's default: memory needs no setup, postgres must be chosen explicitly.
pub const DEFAULT_STORE_TYPE: StoreType = StoreType::Memory;
/// Kuma's default; deleting a Mesh that still has Dataplanes orphans them, so refuse.
pub const DEFAULT_STORE_UNSAFE_DELETE: bool = false;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StoreConfig {
    pub r#type: StoreType,
    pub postgres: PostgresConfig,
    pub cache: StoreCacheConfig,
    pub upsert: UpsertConfig,
    pub unsafe_delete: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            r#type: DEFAULT_STORE_TYPE,
            postgres: PostgresConfig::default(),
            cache: StoreCacheConfig::default(),
            upsert: UpsertConfig::default(),
            unsafe_delete: DEFAULT_STORE_UNSAFE_DELETE,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreType {
    Memory,
    Postgres,
}

/// Kuma's default: a Postgres on the same host.
pub const DEFAULT_POSTGRES_HOST: &str = "127.0.0.1";
/// Kuma's default, deliberately not 5432 so a dev CP never hits an unrelated local Postgres.
pub const DEFAULT_POSTGRES_PORT: u16 = 15432;
/// Kuma's default role name.
pub const DEFAULT_POSTGRES_USER: &str = "kuma";
/// Kuma's default; validation warns when it is left as is with the postgres store.
pub const DEFAULT_POSTGRES_PASSWORD: &str = "kuma";
/// Kuma's default database name, so a DB shared with Kuma needs no change.
pub const DEFAULT_POSTGRES_DB_NAME: &str = "kuma";
/// Kuma's default driver (pgx pool); `postgres` (lib/pq) is the other accepted value.
pub const DEFAULT_POSTGRES_DRIVER_NAME: &str = "pgx";
/// The drivers Kuma accepts; higuma maps both onto its own client.
pub const POSTGRES_DRIVER_NAMES: [&str; 2] = ["pgx", "postgres"];
/// Kuma's default `connect_timeout`, in whole seconds as Kuma stores it (not a Duration).
pub const DEFAULT_POSTGRES_CONNECTION_TIMEOUT_SECS: u64 = 5;
/// Kuma's default; recycling connections hourly follows DB failovers and DNS changes.
pub const DEFAULT_POSTGRES_MAX_CONNECTION_LIFETIME: Duration = Duration::from_hours(1);
/// Kuma's default; spreads recycling so the pool does not reconnect all at once.
pub const DEFAULT_POSTGRES_MAX_CONNECTION_LIFETIME_JITTER: Duration = Duration::from_mins(1);
/// Kuma's default pool health-check period.
pub const DEFAULT_POSTGRES_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// Kuma's default: open connections lazily.
pub const DEFAULT_POSTGRES_MIN_OPEN_CONNECTIONS: u32 = 0;
/// Kuma's default; 0 means unlimited.
pub const DEFAULT_POSTGRES_MAX_OPEN_CONNECTIONS: u32 = 50;
/// Kuma's default; equal to the max so a busy pool never closes connections it reuses.
pub const DEFAULT_POSTGRES_MAX_IDLE_CONNECTIONS: u32 = 50;
/// Kuma's default first back-off of the change listener after losing its connection.
pub const DEFAULT_POSTGRES_MIN_RECONNECT_INTERVAL: Duration = Duration::from_secs(10);
/// Kuma's default back-off ceiling of the change listener.
pub const DEFAULT_POSTGRES_MAX_RECONNECT_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PostgresConfig {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    pub db_name: String,
    pub driver_name: String,
    /// Whole seconds, as in Kuma (it goes into the connection string's `connect_timeout`).
    pub connection_timeout: u64,
    pub max_connection_lifetime: Duration,
    pub max_connection_lifetime_jitter: Duration,
    pub health_check_interval: Duration,
    pub min_open_connections: u32,
    pub max_open_connections: u32,
    pub max_idle_connections: u32,
    pub min_reconnect_interval: Duration,
    pub max_reconnect_interval: Duration,
    pub tls: PostgresTlsConfig,
    /// Kuma 2.5+: a replica that serves part of the REST API's reads.
    pub read_replica: ReadReplicaConfig,
    /// Kuma's rolling-upgrade switch: start on a database that a newer higuma or Kuma
    /// already migrated (its extra columns have defaults, so the writes of this version
    /// stay valid), instead of refusing it.
    #[serde(rename = "tolerateNewerDBVersions")]
    pub tolerate_newer_db_versions: bool,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        PostgresConfig {
            host: DEFAULT_POSTGRES_HOST.to_owned(),
            port: DEFAULT_POSTGRES_PORT,
            user: DEFAULT_POSTGRES_USER.to_owned(),
            password: DEFAULT_POSTGRES_PASSWORD.to_owned(),
            db_name: DEFAULT_POSTGRES_DB_NAME.to_owned(),
            driver_name: DEFAULT_POSTGRES_DRIVER_NAME.to_owned(),
            connection_timeout: DEFAULT_POSTGRES_CONNECTION_TIMEOUT_SECS,
            max_connection_lifetime: DEFAULT_POSTGRES_MAX_CONNECTION_LIFETIME,
            max_connection_lifetime_jitter: DEFAULT_POSTGRES_MAX_CONNECTION_LIFETIME_JITTER,
            health_check_interval: DEFAULT_POSTGRES_HEALTH_CHECK_INTERVAL,
            min_open_connections: DEFAULT_POSTGRES_MIN_OPEN_CONNECTIONS,
            max_open_connections: DEFAULT_POSTGRES_MAX_OPEN_CONNECTIONS,
            max_idle_connections: DEFAULT_POSTGRES_MAX_IDLE_CONNECTIONS,
            min_reconnect_interval: DEFAULT_POSTGRES_MIN_RECONNECT_INTERVAL,
            max_reconnect_interval: DEFAULT_POSTGRES_MAX_RECONNECT_INTERVAL,
            tls: PostgresTlsConfig::default(),
            read_replica: ReadReplicaConfig::default(),
            tolerate_newer_db_versions: DEFAULT_POSTGRES_TOLERATE_NEWER_DB_VERSIONS,
        }
    }
}

/// Kuma's default: a database newer than this binary is refused, so an instance that
/// was not upgraded cannot silently run on a schema it does not know.
pub const DEFAULT_POSTGRES_TOLERATE_NEWER_DB_VERSIONS: bool = false;
/// Kuma 2.5's default replica port (a replica usually runs on its own host, on 5432).
pub const DEFAULT_READ_REPLICA_PORT: u16 = 5432;
/// Kuma 2.5's default: when a replica is set, every API read goes to it.
pub const DEFAULT_READ_REPLICA_RATIO: u32 = 100;

/// `store.postgres.readReplica` (Kuma 2.5+). Credentials, database and TLS are the
/// primary's. Unlike Kuma, only the REST API's plain GETs use it (`store::postgres::replica`
/// says why).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ReadReplicaConfig {
    /// Empty = no replica.
    pub host: String,
    pub port: u16,
    /// Percentage (0-100) of API reads sent to the replica.
    pub ratio: u32,
}

impl Default for ReadReplicaConfig {
    fn default() -> Self {
        ReadReplicaConfig { host: String::new(), port: DEFAULT_READ_REPLICA_PORT, ratio: DEFAULT_READ_REPLICA_RATIO }
    }
}

/// Kuma's default: a local dev Postgres has no TLS.
pub const DEFAULT_POSTGRES_TLS_MODE: TlsMode = TlsMode::Disable;
/// Kuma's default: send SNI, which proxies in front of managed Postgres need.
pub const DEFAULT_POSTGRES_TLS_DISABLE_SSLSNI: bool = false;

/// Client TLS to Postgres. Empty paths mean "not set", as in Kuma.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PostgresTlsConfig {
    pub mode: TlsMode,
    pub cert_path: String,
    pub key_path: String,
    pub ca_path: String,
    /// Kuma's key is spelled with an all-caps acronym, which camelCase renaming cannot produce.
    #[serde(rename = "disableSSLSNI")]
    pub disable_sslsni: bool,
}

impl Default for PostgresTlsConfig {
    fn default() -> Self {
        PostgresTlsConfig {
            mode: DEFAULT_POSTGRES_TLS_MODE,
            cert_path: String::new(),
            key_path: String::new(),
            ca_path: String::new(),
            disable_sslsni: DEFAULT_POSTGRES_TLS_DISABLE_SSLSNI,
        }
    }
}

/// Kuma's Postgres TLS modes; the comments give the libpq `sslmode` each one means.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TlsMode {
    /// `sslmode=disable`.
    Disable,
    /// `sslmode=require`: encrypted, server not verified.
    VerifyNone,
    /// `sslmode=verify-ca`: needs `caPath`.
    VerifyCa,
    /// `sslmode=verify-full`: needs `caPath`; also checks the host name.
    VerifyFull,
}

impl TlsMode {
    /// The libpq `sslmode` value for this mode.
    pub fn sslmode(self) -> &'static str {
        match self {
            TlsMode::Disable => "disable",
            TlsMode::VerifyNone => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        }
    }
}

/// Kuma's default: without the read cache every xDS reconcile hits the store.
pub const DEFAULT_STORE_CACHE_ENABLED: bool = true;
/// Kuma's default; keep it <= the xDS refresh interval or workers read stale data twice.
pub const DEFAULT_STORE_CACHE_EXPIRATION_TIME: Duration = Duration::from_secs(1);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StoreCacheConfig {
    pub enabled: bool,
    pub expiration_time: Duration,
}

impl Default for StoreCacheConfig {
    fn default() -> Self {
        StoreCacheConfig { enabled: DEFAULT_STORE_CACHE_ENABLED, expiration_time: DEFAULT_STORE_CACHE_EXPIRATION_TIME }
    }
}

/// Kuma 2.4's default (2.5 doubled it); conflicts are rare insight writes racing.
pub const DEFAULT_UPSERT_CONFLICT_RETRY_BASE_BACKOFF: Duration = Duration::from_millis(100);
/// Kuma 2.4's default; with exponential back-off this gives up after ~3 s.
pub const DEFAULT_UPSERT_CONFLICT_RETRY_MAX_TIMES: u32 = 5;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UpsertConfig {
    pub conflict_retry_base_backoff: Duration,
    pub conflict_retry_max_times: u32,
}

impl Default for UpsertConfig {
    fn default() -> Self {
        UpsertConfig {
            conflict_retry_base_backoff: DEFAULT_UPSERT_CONFLICT_RETRY_BASE_BACKOFF,
            conflict_retry_max_times: DEFAULT_UPSERT_CONFLICT_RETRY_MAX_TIMES,
        }
    }
}

// ---- xdsServer / bootstrapServer ---------------------------------------------------------

/// Kuma's default; refresh faster than the cache expires and workers read stale data twice.
pub const DEFAULT_XDS_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL: Duration = Duration::from_secs(1);
/// Kuma's default; insight writes are batched this long to keep store load flat.
pub const DEFAULT_XDS_DATAPLANE_STATUS_FLUSH_INTERVAL: Duration = Duration::from_secs(10);
/// Kuma's default; a NACKed config is not re-sent sooner, so a bad policy cannot spin Envoy.
pub const DEFAULT_XDS_NACK_BACKOFF: Duration = Duration::from_secs(5);
/// Kuma's default; a disconnected proxy keeps its Dataplane this long so a quick reconnect
/// (CP restart, network blip) does not flap the service's endpoints.
pub const DEFAULT_XDS_DATAPLANE_DEREGISTRATION_DELAY: Duration = Duration::from_secs(10);
/// Off, as in Kuma: reconnecting costs every stream a full resend, so it is opt-in.
pub const DEFAULT_XDS_MAX_STREAM_AGE: Duration = Duration::ZERO;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct XdsServerConfig {
    pub dataplane_configuration_refresh_interval: Duration,
    pub dataplane_status_flush_interval: Duration,
    pub nack_backoff: Duration,
    pub dataplane_deregistration_delay: Duration,
    /// Higuma extension: push on store changes. Off = the refresh interval alone, as Kuma
    /// does (kept for side-by-side benchmarks).
    pub event_push: bool,
    /// Higuma extension: how many recent changes `/changes` keeps with their delivery
    /// status (memory only; read at start).
    pub change_history_size: u32,
    /// Higuma extension: after about this long (gRPC adds ±10% jitter) a dataplane's
    /// connection gets an HTTP/2 GOAWAY and is closed shortly after, so Envoy reconnects
    /// through whatever balances the instances and streams spread again after an instance
    /// joins. 0 = never (Kuma's behaviour: a stream stays where it landed).
    pub max_stream_age: Duration,
}

impl Default for XdsServerConfig {
    fn default() -> Self {
        XdsServerConfig {
            dataplane_configuration_refresh_interval: DEFAULT_XDS_DATAPLANE_CONFIGURATION_REFRESH_INTERVAL,
            dataplane_status_flush_interval: DEFAULT_XDS_DATAPLANE_STATUS_FLUSH_INTERVAL,
            nack_backoff: DEFAULT_XDS_NACK_BACKOFF,
            dataplane_deregistration_delay: DEFAULT_XDS_DATAPLANE_DEREGISTRATION_DELAY,
            event_push: true,
            change_history_size: DEFAULT_XDS_CHANGE_HISTORY_SIZE,
            max_stream_age: DEFAULT_XDS_MAX_STREAM_AGE,
        }
    }
}

/// Enough for a busy day of applies with their delivery status (a change with 100
/// dataplanes is ~10 KB), small enough to stay a few megabytes at most.
pub const DEFAULT_XDS_CHANGE_HISTORY_SIZE: u32 = 1024;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BootstrapServerConfig {
    pub params: BootstrapParamsConfig,
}

/// Kuma's default: Envoy's admin API listens only on the proxy's loopback.
pub const DEFAULT_BOOTSTRAP_ADMIN_ADDRESS: &str = "127.0.0.1";
/// Kuma's default; Envoy's conventional admin port.
pub const DEFAULT_BOOTSTRAP_ADMIN_PORT: u16 = 9901;
/// Kuma's default: the admin access log is noise in production.
pub const DEFAULT_BOOTSTRAP_ADMIN_ACCESS_LOG_PATH: &str = "/dev/null";
/// Kuma's default: empty means "the Host header of the /bootstrap request".
pub const DEFAULT_BOOTSTRAP_XDS_HOST: &str = "";
/// Kuma's default: 0 means "use dpServer.port".
pub const DEFAULT_BOOTSTRAP_XDS_PORT: u16 = 0;
/// Kuma's default connect timeout of Envoy's xDS cluster.
pub const DEFAULT_BOOTSTRAP_XDS_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Values written into the Envoy bootstrap returned by `POST /bootstrap`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct BootstrapParamsConfig {
    pub admin_address: String,
    pub admin_port: u16,
    pub admin_access_log_path: String,
    pub xds_host: String,
    pub xds_port: u16,
    pub xds_connect_timeout: Duration,
}

impl Default for BootstrapParamsConfig {
    fn default() -> Self {
        BootstrapParamsConfig {
            admin_address: DEFAULT_BOOTSTRAP_ADMIN_ADDRESS.to_owned(),
            admin_port: DEFAULT_BOOTSTRAP_ADMIN_PORT,
            admin_access_log_path: DEFAULT_BOOTSTRAP_ADMIN_ACCESS_LOG_PATH.to_owned(),
            xds_host: DEFAULT_BOOTSTRAP_XDS_HOST.to_owned(),
            xds_port: DEFAULT_BOOTSTRAP_XDS_PORT,
            xds_connect_timeout: DEFAULT_BOOTSTRAP_XDS_CONNECT_TIMEOUT,
        }
    }
}

// ---- servers -----------------------------------------------------------------------------

/// Kuma's default; `kuma-dp` connects here unless told otherwise.
pub const DEFAULT_DP_SERVER_PORT: u16 = 5678;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DpServerConfig {
    /// Higuma extension (Kuma binds every interface): the address the xDS server binds.
    pub interface: String,
    pub port: u16,
    /// Higuma extension (Kuma fixes it at 15 s): how often an HTTP/2 PING checks each
    /// sidecar's connection, and how long its answer may take before the stream is dropped.
    pub keepalive_time: Duration,
    /// Higuma extension: `false` serves xDS and `/bootstrap` in plaintext (development
    /// only; a warning is logged). Kuma's DP server is TLS only.
    pub tls_enabled: bool,
    /// Server certificate (PEM, leaf first) and key; empty = `general.tlsCertFile`, then a
    /// certificate generated at start in `general.workDir`. Reloaded when they change.
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// `TLSv1_2` or `TLSv1_3`; left at the default, `general.tlsMinVersion` applies.
    pub tls_min_version: String,
    /// Empty = the newest the library supports; left empty, `general.tlsMaxVersion` applies.
    pub tls_max_version: String,
    /// Go's cipher suite names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`, ...); empty =
    /// `general.tlsCipherSuites`, then the library's secure defaults.
    pub tls_cipher_suites: Vec<String>,
    /// How long a new connection has for its TLS handshake and the start of its first
    /// request; a client that trickles bytes is dropped after it.
    pub read_header_timeout: Duration,
    pub authn: DpServerAuthnConfig,
    /// Higuma extension: bounds on what one client can make the xDS port hold.
    pub limits: DpServerLimitsConfig,
}

/// Kuma's default: TLS on the DP server.
pub const DEFAULT_DP_SERVER_TLS_ENABLED: bool = true;
/// Kuma's default; TLS 1.0 and 1.1 are broken and Envoy never needs them.
pub const DEFAULT_TLS_MIN_VERSION: &str = "TLSv1_2";
/// Kuma's default; Go's `http.Server.ReadHeaderTimeout` on the DP server.
pub const DEFAULT_DP_SERVER_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DpServerAuthnConfig {
    pub dp_proxy: DpProxyAuthnConfig,
}

/// Kuma's default outside Kubernetes: empty means `dpToken`.
pub const DEFAULT_DP_PROXY_AUTHN_TYPE: &str = "";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DpProxyAuthnConfig {
    /// `dpToken` (empty means it) or `none` (development: any client gets any config).
    pub r#type: String,
    pub dp_token: DpTokenConfig,
}

impl Default for DpProxyAuthnConfig {
    fn default() -> Self {
        DpProxyAuthnConfig { r#type: DEFAULT_DP_PROXY_AUTHN_TYPE.to_owned(), dp_token: DpTokenConfig::default() }
    }
}

/// How sidecars prove who they are on the DP server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DpAuthn {
    /// Every request carries a dataplane token (Kuma's Universal default).
    DpToken,
    /// Nothing is checked.
    None,
}

impl DpProxyAuthnConfig {
    /// The mode in force; validation has refused anything else.
    pub fn mode(&self) -> DpAuthn {
        if self.r#type == "none" {
            DpAuthn::None
        } else {
            DpAuthn::DpToken
        }
    }
}

/// Kuma's default: `POST /tokens/dataplane` issues tokens.
pub const DEFAULT_DP_TOKEN_ENABLE_ISSUER: bool = true;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DpTokenConfig {
    pub enable_issuer: bool,
}

impl Default for DpTokenConfig {
    fn default() -> Self {
        DpTokenConfig { enable_issuer: DEFAULT_DP_TOKEN_ENABLE_ISSUER }
    }
}

/// Go gRPC's default receive limit, which Kuma's DP server keeps: a sidecar's requests are
/// a few KiB (node metadata, resource names), so this only stops abuse.
pub const DEFAULT_DP_SERVER_MAX_MESSAGE_SIZE: u32 = 4 * 1024 * 1024;
/// Envoy opens one ADS stream per connection; this leaves room for gRPC clients that
/// multiplex (the load harness, tools) while bounding what one connection can hold.
pub const DEFAULT_DP_SERVER_MAX_STREAMS_PER_CONNECTION: u32 = 100;
/// A sidecar holds one ADS stream; after a network cut its new stream can overlap the old
/// one until keepalive notices (up to two keepalive periods). Eight leaves room for that
/// and bounds the work one stolen token can cause.
pub const DEFAULT_DP_SERVER_MAX_STREAMS_PER_DATAPLANE: u32 = 8;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DpServerLimitsConfig {
    /// Bytes; a larger request ends its stream with RESOURCE_EXHAUSTED.
    pub max_message_size: u32,
    /// ADS streams open at once on one connection; the next is refused.
    pub max_streams_per_connection: u32,
    /// ADS streams open at once for one dataplane (node id); the next is refused.
    pub max_streams_per_dataplane: u32,
}

impl Default for DpServerLimitsConfig {
    fn default() -> Self {
        DpServerLimitsConfig {
            max_message_size: DEFAULT_DP_SERVER_MAX_MESSAGE_SIZE,
            max_streams_per_connection: DEFAULT_DP_SERVER_MAX_STREAMS_PER_CONNECTION,
            max_streams_per_dataplane: DEFAULT_DP_SERVER_MAX_STREAMS_PER_DATAPLANE,
        }
    }
}

/// Kuma binds the dataplane server on every interface; sidecars on other hosts connect.
pub const DEFAULT_DP_SERVER_INTERFACE: &str = "0.0.0.0";
/// Kuma's DP server value: a dead sidecar is noticed within 30 s. Each PING costs the
/// control plane CPU, so at tens of thousands of sidecars a longer interval trades slower
/// detection for idle CPU (see BENCHMARKS.md).
pub const DEFAULT_DP_SERVER_KEEPALIVE_TIME: Duration = Duration::from_secs(15);

impl Default for DpServerConfig {
    fn default() -> Self {
        DpServerConfig {
            interface: DEFAULT_DP_SERVER_INTERFACE.to_string(),
            port: DEFAULT_DP_SERVER_PORT,
            keepalive_time: DEFAULT_DP_SERVER_KEEPALIVE_TIME,
            tls_enabled: DEFAULT_DP_SERVER_TLS_ENABLED,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_min_version: DEFAULT_TLS_MIN_VERSION.to_owned(),
            tls_max_version: String::new(),
            tls_cipher_suites: Vec::new(),
            read_header_timeout: DEFAULT_DP_SERVER_READ_HEADER_TIMEOUT,
            authn: DpServerAuthnConfig::default(),
            limits: DpServerLimitsConfig::default(),
        }
    }
}

/// Kuma's default: `kumactl` and the GUI expect the REST API on plain HTTP.
pub const DEFAULT_API_SERVER_HTTP_ENABLED: bool = true;
/// Kuma's default: all interfaces, so remote `kumactl` works out of the box.
pub const DEFAULT_API_SERVER_HTTP_INTERFACE: &str = "0.0.0.0";
/// Kuma's default; `kumactl` assumes it.
pub const DEFAULT_API_SERVER_HTTP_PORT: u16 = 5681;
/// Kuma's default: writes allowed (read-only is for CPs managed elsewhere).
pub const DEFAULT_API_SERVER_READ_ONLY: bool = false;
/// Kuma's default: any origin, so a separately hosted GUI can call the API.
pub const DEFAULT_API_SERVER_CORS_ALLOWED_DOMAINS: &[&str] = &[".*"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiServerConfig {
    pub http: ApiServerHttpConfig,
    pub https: ApiServerHttpsConfig,
    pub authn: ApiServerAuthnConfig,
    pub read_only: bool,
    /// Regular expressions matched against the `Origin` header.
    pub cors_allowed_domains: Vec<String>,
    /// Slow-client and size limits of both API listeners (see `crate::http`).
    pub read_header_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    /// Higuma extension: request line plus headers, in bytes (431 above).
    pub max_header_bytes: u64,
    /// Higuma extension: request body, in bytes (413 above).
    pub max_body_bytes: u64,
}

impl Default for ApiServerConfig {
    fn default() -> Self {
        ApiServerConfig {
            http: ApiServerHttpConfig::default(),
            https: ApiServerHttpsConfig::default(),
            authn: ApiServerAuthnConfig::default(),
            read_only: DEFAULT_API_SERVER_READ_ONLY,
            cors_allowed_domains: DEFAULT_API_SERVER_CORS_ALLOWED_DOMAINS.iter().map(|s| (*s).to_owned()).collect(),
            read_header_timeout: DEFAULT_API_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_API_READ_TIMEOUT,
            write_timeout: DEFAULT_API_WRITE_TIMEOUT,
            idle_timeout: DEFAULT_API_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_API_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_API_MAX_BODY_BYTES,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiServerHttpConfig {
    pub enabled: bool,
    pub interface: String,
    pub port: u16,
}

impl Default for ApiServerHttpConfig {
    fn default() -> Self {
        ApiServerHttpConfig {
            enabled: DEFAULT_API_SERVER_HTTP_ENABLED,
            interface: DEFAULT_API_SERVER_HTTP_INTERFACE.to_owned(),
            port: DEFAULT_API_SERVER_HTTP_PORT,
        }
    }
}

/// Kuma's default; health probes and Prometheus scrape configs assume it.
pub const DEFAULT_DIAGNOSTICS_SERVER_PORT: u16 = 5680;
/// Kuma's default: profiling endpoints leak internals, so they are opt-in.
pub const DEFAULT_DIAGNOSTICS_DEBUG_ENDPOINTS: bool = false;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DiagnosticsConfig {
    /// Higuma extension (Kuma binds every interface): the address the server binds.
    pub interface: String,
    pub server_port: u16,
    pub debug_endpoints: bool,
    /// Higuma extensions (Kuma fixes a 1 s header time-out): slow-client and size limits.
    pub read_header_timeout: Duration,
    pub read_timeout: Duration,
    pub write_timeout: Duration,
    pub idle_timeout: Duration,
    pub max_header_bytes: u64,
    pub max_body_bytes: u64,
}

/// Kuma binds diagnostics on every interface so health probes and scrapers reach it.
pub const DEFAULT_DIAGNOSTICS_INTERFACE: &str = "0.0.0.0";

impl Default for DiagnosticsConfig {
    fn default() -> Self {
        DiagnosticsConfig {
            interface: DEFAULT_DIAGNOSTICS_INTERFACE.to_owned(),
            server_port: DEFAULT_DIAGNOSTICS_SERVER_PORT,
            debug_endpoints: DEFAULT_DIAGNOSTICS_DEBUG_ENDPOINTS,
            read_header_timeout: DEFAULT_DIAGNOSTICS_READ_HEADER_TIMEOUT,
            read_timeout: DEFAULT_DIAGNOSTICS_READ_TIMEOUT,
            write_timeout: DEFAULT_DIAGNOSTICS_WRITE_TIMEOUT,
            idle_timeout: DEFAULT_DIAGNOSTICS_IDLE_TIMEOUT,
            max_header_bytes: DEFAULT_DIAGNOSTICS_MAX_HEADER_BYTES,
            max_body_bytes: DEFAULT_DIAGNOSTICS_MAX_BODY_BYTES,
        }
    }
}

// ---- general / defaults / runtime / metrics ----------------------------------------------

/// Kuma's default: empty means `$HOME/.kuma`, resolved at startup, not at load time.
pub const DEFAULT_GENERAL_WORK_DIR: &str = "";
/// Kuma's default; Dataplane addresses given as host names are re-resolved this often.
pub const DEFAULT_GENERAL_DNS_CACHE_TTL: Duration = Duration::from_secs(10);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct GeneralConfig {
    pub work_dir: String,
    /// Higuma extension, reloadable: off, error, warn, info, debug or trace; empty = the
    /// `--log-level` flag (`KUMA_LOG_LEVEL`).
    pub log_level: String,
    /// Kuma's key has an all-caps acronym, which camelCase renaming cannot produce.
    #[serde(rename = "dnsCacheTTL")]
    pub dns_cache_ttl: Duration,
    /// Certificate and key every TLS server uses unless its own keys are set; empty = one
    /// generated at start (its CA written to `<workDir>/kuma-cp-ca.crt`).
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub tls_min_version: String,
    pub tls_max_version: String,
    pub tls_cipher_suites: Vec<String>,
}

impl Default for GeneralConfig {
    fn default() -> Self {
        GeneralConfig {
            work_dir: DEFAULT_GENERAL_WORK_DIR.to_owned(),
            log_level: String::new(),
            dns_cache_ttl: DEFAULT_GENERAL_DNS_CACHE_TTL,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_min_version: DEFAULT_TLS_MIN_VERSION.to_owned(),
            tls_max_version: String::new(),
            tls_cipher_suites: Vec::new(),
        }
    }
}

/// Kuma's default: a fresh CP creates Mesh `default` so a first Dataplane has somewhere to go.
pub const DEFAULT_SKIP_MESH_CREATION: bool = false;
/// Kuma's default: create the per-tenant default resources (signing keys and the like).
pub const DEFAULT_SKIP_TENANT_RESOURCES: bool = false;
/// Kuma 2.6's default: a new Mesh gets no `allow-all` TrafficPermission or `route-all`
/// TrafficRoute, since the targetRef policies that replace them need neither.
pub const DEFAULT_CREATE_MESH_ROUTING_RESOURCES: bool = false;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DefaultsConfig {
    pub skip_mesh_creation: bool,
    pub skip_tenant_resources: bool,
    /// Create `allow-all-<mesh>` and `route-all-<mesh>` with every new Mesh (Kuma 2.6+).
    pub create_mesh_routing_resources: bool,
}

impl Default for DefaultsConfig {
    fn default() -> Self {
        DefaultsConfig {
            skip_mesh_creation: DEFAULT_SKIP_MESH_CREATION,
            skip_tenant_resources: DEFAULT_SKIP_TENANT_RESOURCES,
            create_mesh_routing_resources: DEFAULT_CREATE_MESH_ROUTING_RESOURCES,
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct RuntimeConfig {
    pub universal: UniversalRuntimeConfig,
}

/// Kuma's default; an offline Dataplane is deleted after three days, long enough to
/// survive a weekend outage without re-registering by hand.
pub const DEFAULT_DATAPLANE_CLEANUP_AGE: Duration = Duration::from_hours(72);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct UniversalRuntimeConfig {
    pub dataplane_cleanup_age: Duration,
}

impl Default for UniversalRuntimeConfig {
    fn default() -> Self {
        UniversalRuntimeConfig { dataplane_cleanup_age: DEFAULT_DATAPLANE_CLEANUP_AGE }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct MetricsConfig {
    pub dataplane: DataplaneMetricsConfig,
}

/// Kuma's default: the current subscription plus the previous one, enough to debug a
/// reconnect without letting DataplaneInsight grow without bound.
pub const DEFAULT_DATAPLANE_SUBSCRIPTION_LIMIT: u32 = 2;
/// Kuma's default; a subscription without traffic for this long is considered gone.
pub const DEFAULT_DATAPLANE_IDLE_TIMEOUT: Duration = Duration::from_mins(5);

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DataplaneMetricsConfig {
    pub subscription_limit: u32,
    pub idle_timeout: Duration,
}

impl Default for DataplaneMetricsConfig {
    fn default() -> Self {
        DataplaneMetricsConfig {
            subscription_limit: DEFAULT_DATAPLANE_SUBSCRIPTION_LIMIT,
            idle_timeout: DEFAULT_DATAPLANE_IDLE_TIMEOUT,
        }
    }
}

// ---- output ------------------------------------------------------------------------------

impl Config {
    /// The full effective config as YAML, every key present. Secrets are included: use
    /// [`Config::sanitized`] for anything that reaches a log or an HTTP response.
    pub fn to_yaml(&self) -> String {
        match serde_yaml_ng::to_string(self) {
            Ok(text) => text,
            // Only reachable through a serializer bug: every field is a plain value.
            Err(e) => format!("# cannot render the config as YAML: {e}\n"),
        }
    }

    /// The config as JSON with `store.postgres.password` replaced by `*****`, for the
    /// startup log and `GET /config`, as Kuma's `Sanitize()` does.
    pub fn sanitized(&self) -> serde_json::Value {
        let mut copy = self.clone();
        copy.store.postgres.password = SANITIZED_VALUE.to_owned();
        serde_json::to_value(&copy)
            .unwrap_or_else(|e| serde_json::Value::String(format!("cannot render the config as JSON: {e}")))
    }
}
