//! The API side of control-plane security: `apiServer.https`, `apiServer.authn`, the HTTP
//! limits both HTTP servers share, and `access` (who may do what), with Kuma's keys.
//!
//! Kuma's `access.static` has no rule for ordinary writes: an anonymous client may change
//! any resource but secrets. Higuma adds `access.static.writeResources` (default: any
//! authenticated user), so a remote client without a token can read but not write;
//! listing `mesh-system:unauthenticated` there gives Kuma's behaviour back.

use serde::{Deserialize, Serialize};

use super::Duration;

/// Kuma's default: the API is also served over TLS, so remote clients need not send
/// tokens in the clear.
pub const DEFAULT_API_SERVER_HTTPS_ENABLED: bool = true;
/// Kuma's default: all interfaces, as the plain HTTP port.
pub const DEFAULT_API_SERVER_HTTPS_INTERFACE: &str = "0.0.0.0";
/// Kuma's default; `kumactl` users point `https://<cp>:5682` at it.
pub const DEFAULT_API_SERVER_HTTPS_PORT: u16 = 5682;
/// Kuma's default: TLS 1.0 and 1.1 are broken or deprecated (RFC 8996).
pub const DEFAULT_TLS_MIN_VERSION: &str = "TLSv1_2";

/// `apiServer.https`: the same API over TLS. Empty cert and key files mean a certificate
/// generated at start (its CA written to `general.workDir`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiServerHttpsConfig {
    pub enabled: bool,
    pub interface: String,
    pub port: u16,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    /// `TLSv1_0` .. `TLSv1_3`, Kuma's spelling.
    pub tls_min_version: String,
    /// Empty = the highest the TLS library supports.
    pub tls_max_version: String,
    /// Go's names (`TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256`), as Kuma takes them; empty =
    /// the library's defaults. TLS 1.3 suites are not configurable, as in Go.
    pub tls_cipher_suites: Vec<String>,
}

impl Default for ApiServerHttpsConfig {
    fn default() -> Self {
        ApiServerHttpsConfig {
            enabled: DEFAULT_API_SERVER_HTTPS_ENABLED,
            interface: DEFAULT_API_SERVER_HTTPS_INTERFACE.to_owned(),
            port: DEFAULT_API_SERVER_HTTPS_PORT,
            tls_cert_file: String::new(),
            tls_key_file: String::new(),
            tls_min_version: DEFAULT_TLS_MIN_VERSION.to_owned(),
            tls_max_version: String::new(),
            tls_cipher_suites: Vec::new(),
        }
    }
}

/// Kuma's default and the only type higuma implements: user tokens (JWT).
pub const DEFAULT_API_SERVER_AUTHN_TYPE: &str = "tokens";
/// Kuma's default: whoever can reach the API on the CP's own host is admin, which is how
/// an operator reads the bootstrapped admin token in the first place.
pub const DEFAULT_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN: bool = true;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ApiServerAuthnConfig {
    pub r#type: String,
    pub localhost_is_admin: bool,
    pub tokens: AuthnTokensConfig,
}

impl Default for ApiServerAuthnConfig {
    fn default() -> Self {
        ApiServerAuthnConfig {
            r#type: DEFAULT_API_SERVER_AUTHN_TYPE.to_owned(),
            localhost_is_admin: DEFAULT_API_SERVER_AUTHN_LOCALHOST_IS_ADMIN,
            tokens: AuthnTokensConfig::default(),
        }
    }
}

/// Kuma's default: an admin token is created once, as the GlobalSecret `admin-user-token`.
pub const DEFAULT_BOOTSTRAP_ADMIN_TOKEN: bool = true;
/// Kuma's default: `POST /tokens/user` issues tokens (off when tokens are made offline).
pub const DEFAULT_TOKENS_ENABLE_ISSUER: bool = true;
/// Kuma's default: GlobalSecrets `user-token-signing-key-<kid>` verify tokens.
pub const DEFAULT_TOKENS_VALIDATOR_USE_SECRETS: bool = true;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AuthnTokensConfig {
    pub bootstrap_admin_token: bool,
    pub enable_issuer: bool,
    pub validator: TokensValidatorConfig,
}

impl Default for AuthnTokensConfig {
    fn default() -> Self {
        AuthnTokensConfig {
            bootstrap_admin_token: DEFAULT_BOOTSTRAP_ADMIN_TOKEN,
            enable_issuer: DEFAULT_TOKENS_ENABLE_ISSUER,
            validator: TokensValidatorConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct TokensValidatorConfig {
    pub use_secrets: bool,
}

impl Default for TokensValidatorConfig {
    fn default() -> Self {
        TokensValidatorConfig { use_secrets: DEFAULT_TOKENS_VALIDATOR_USE_SECRETS }
    }
}

// ---- access ------------------------------------------------------------------------------

/// Kuma's groups: every request is in exactly one of the last two.
pub const GROUP_ADMIN: &str = "mesh-system:admin";
pub const GROUP_AUTHENTICATED: &str = "mesh-system:authenticated";
pub const GROUP_UNAUTHENTICATED: &str = "mesh-system:unauthenticated";
/// The user localhost (and the bootstrapped admin token) acts as.
pub const USER_ADMIN: &str = "mesh-system:admin";

/// Kuma's only access type: users and groups listed in this config.
pub const DEFAULT_ACCESS_TYPE: &str = "static";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AccessConfig {
    pub r#type: String,
    pub r#static: StaticAccessConfig,
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig { r#type: DEFAULT_ACCESS_TYPE.to_owned(), r#static: StaticAccessConfig::default() }
    }
}

/// Who may do what; a request is allowed when its user is listed or one of its groups is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct StaticAccessConfig {
    /// Secrets and GlobalSecrets (signing keys, the admin token): read and write.
    pub admin_resources: AccessRule,
    pub generate_dp_token: AccessRule,
    pub generate_user_token: AccessRule,
    pub generate_zone_token: AccessRule,
    pub view_config_dump: AccessRule,
    pub view_stats: AccessRule,
    pub view_clusters: AccessRule,
    /// Higuma extension: PUT and DELETE of every other resource (see the module docs).
    pub write_resources: AccessRule,
}

impl Default for StaticAccessConfig {
    fn default() -> Self {
        let admins = || AccessRule::new(&[USER_ADMIN], &[GROUP_ADMIN]);
        let everyone = || AccessRule::new(&[], &[GROUP_UNAUTHENTICATED, GROUP_AUTHENTICATED]);
        StaticAccessConfig {
            admin_resources: admins(),
            generate_dp_token: admins(),
            generate_user_token: admins(),
            generate_zone_token: admins(),
            view_config_dump: everyone(),
            view_stats: everyone(),
            view_clusters: everyone(),
            write_resources: AccessRule::new(&[], &[GROUP_AUTHENTICATED]),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct AccessRule {
    pub users: Vec<String>,
    pub groups: Vec<String>,
}

impl AccessRule {
    pub fn new(users: &[&str], groups: &[&str]) -> AccessRule {
        AccessRule {
            users: users.iter().map(|s| (*s).to_owned()).collect(),
            groups: groups.iter().map(|s| (*s).to_owned()).collect(),
        }
    }

    /// Whether `user` with `groups` is listed, by name or by one of its groups.
    pub fn allows(&self, user: &str, groups: &[String]) -> bool {
        self.users.iter().any(|u| u == user) || groups.iter().any(|g| self.groups.contains(g))
    }
}

// ---- HTTP limits -------------------------------------------------------------------------

/// Kuma's value (later versions' `apiServer.readHeaderTimeout`): a request line and headers
/// take one round trip; a client trickling them holds a worker for at most this long.
pub const DEFAULT_API_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Kuma's value: the whole request, body included (bodies are at most a few KiB).
pub const DEFAULT_API_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Kuma's value: a client that stops reading its answer is dropped after this long.
pub const DEFAULT_API_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Kuma's value: an idle keep-alive connection is closed after this long (sooner when
/// other connections wait for a worker).
pub const DEFAULT_API_IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// Higuma's limit (Go's default of 1 MiB is far more than a request line, a bearer token and
/// a few headers need): bounds the memory one connection can make the server hold.
pub const DEFAULT_API_MAX_HEADER_BYTES: u64 = 64 * 1024;
/// Kuma's resources are a few KiB, so 1 MiB leaves room for any real one while bounding
/// memory per request.
pub const DEFAULT_API_MAX_BODY_BYTES: u64 = 1024 * 1024;

/// Kuma's diagnostics server value (`ReadHeaderTimeout: 1s`, fixed in its code).
pub const DEFAULT_DIAGNOSTICS_READ_HEADER_TIMEOUT: Duration = Duration::from_secs(1);
/// Probes and scrapes send no body: the whole request is its head.
pub const DEFAULT_DIAGNOSTICS_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A scrape's answer is a few KiB; a profile's a few hundred.
pub const DEFAULT_DIAGNOSTICS_WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Prometheus keeps its connection between scrapes (15 s to 1 min apart).
pub const DEFAULT_DIAGNOSTICS_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Probes and scrapers send a handful of short headers.
pub const DEFAULT_DIAGNOSTICS_MAX_HEADER_BYTES: u64 = 16 * 1024;
/// Every diagnostics endpoint is a GET: any body is refused.
pub const DEFAULT_DIAGNOSTICS_MAX_BODY_BYTES: u64 = 0;
