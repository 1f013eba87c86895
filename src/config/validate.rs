//! `Config::validate`: range and cross-field checks after loading.
//!
//! Errors name the YAML key and the bad value so the operator can fix the file or env var
//! without reading code. The rules follow Kuma's `Validate()` methods where they exist;
//! the Postgres section is checked only when the postgres store is selected, as in Kuma,
//! so a config that merely carries Postgres settings does not stop a memory-store CP.

use super::{Config, ConfigError, Duration, Environment, Mode, StoreType, TlsMode, POSTGRES_DRIVER_NAMES};

fn invalid(key: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { key: key.to_owned(), value: value.to_string(), reason: reason.into() }
}

fn positive(key: &str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, d, "must be greater than 0"));
    }
    Ok(())
}

fn not_empty(key: &str, s: &str) -> Result<(), ConfigError> {
    if s.trim().is_empty() {
        return Err(invalid(key, s, "must not be empty"));
    }
    Ok(())
}

impl Config {
    /// Checks the config; on success returns warnings worth logging (the config is usable).
    /// Returns the first error found.
    pub fn validate(&self) -> Result<Vec<String>, ConfigError> {
        let mut warnings = Vec::new();
        self.validate_topology(&mut warnings)?;
        self.validate_store(&mut warnings)?;
        self.validate_xds()?;
        self.validate_dp_server(&mut warnings)?;
        self.validate_ports()?;
        self.validate_misc(&mut warnings)?;
        self.validate_api_security()?;
        Ok(warnings)
    }

    fn validate_topology(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        if self.environment == Environment::Kubernetes {
            return Err(invalid("environment", "kubernetes", "higuma supports only universal"));
        }
        match self.mode {
            Mode::Standalone => {}
            Mode::Zone => {
                warnings.push("mode zone is treated as standalone: higuma has no multizone (KDS) support".to_owned())
            }
            Mode::Global => {
                return Err(invalid("mode", "global", "higuma supports only a single zone (standalone)"));
            }
        }
        Ok(())
    }

    fn validate_store(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        let store = &self.store;
        let cache = &store.cache;
        let refresh = self.xds_server.dataplane_configuration_refresh_interval;
        if cache.enabled && cache.expiration_time > refresh {
            warnings.push(format!(
                "store.cache.expirationTime ({}) is longer than \
                 xdsServer.dataplaneConfigurationRefreshInterval ({refresh}): \
                 proxies will be reconciled against stale data",
                cache.expiration_time
            ));
        }
        if store.r#type != StoreType::Postgres {
            return Ok(());
        }

        let pg = &store.postgres;
        not_empty("store.postgres.host", &pg.host)?;
        if pg.port == 0 {
            return Err(invalid("store.postgres.port", pg.port, "must be greater than 0"));
        }
        not_empty("store.postgres.user", &pg.user)?;
        not_empty("store.postgres.dbName", &pg.db_name)?;
        if !POSTGRES_DRIVER_NAMES.contains(&pg.driver_name.as_str()) {
            return Err(invalid(
                "store.postgres.driverName",
                &pg.driver_name,
                format!("must be one of {}", POSTGRES_DRIVER_NAMES.join(", ")),
            ));
        }
        if pg.connection_timeout == 0 {
            return Err(invalid(
                "store.postgres.connectionTimeout",
                pg.connection_timeout,
                "must be greater than 0 (whole seconds)",
            ));
        }
        positive("store.postgres.minReconnectInterval", pg.min_reconnect_interval)?;
        // Relations that a changed default must not turn into an error (idle vs open
        // connections, jitter vs lifetime, the reconnect back-off range) are resolved by
        // `Config::derive` before this runs; what is left here contradicts itself.
        if pg.max_reconnect_interval < pg.min_reconnect_interval {
            return Err(invalid(
                "store.postgres.maxReconnectInterval",
                pg.max_reconnect_interval,
                format!("must not be less than store.postgres.minReconnectInterval ({})", pg.min_reconnect_interval),
            ));
        }
        // 0 means unlimited, so the pool-size relation only applies to a real maximum. A
        // minimum above the maximum is the operator's own contradiction (its default is 0).
        if pg.max_open_connections > 0 && pg.min_open_connections > pg.max_open_connections {
            return Err(invalid(
                "store.postgres.minOpenConnections",
                pg.min_open_connections,
                format!("must not exceed store.postgres.maxOpenConnections ({})", pg.max_open_connections),
            ));
        }

        let tls = &pg.tls;
        if matches!(tls.mode, TlsMode::VerifyCa | TlsMode::VerifyFull) && tls.ca_path.is_empty() {
            return Err(invalid(
                "store.postgres.tls.caPath",
                &tls.ca_path,
                format!("must be set when store.postgres.tls.mode is {}", tls_mode_name(tls.mode)),
            ));
        }
        if tls.cert_path.is_empty() != tls.key_path.is_empty() {
            let (key, value) = if tls.key_path.is_empty() {
                ("store.postgres.tls.keyPath", &tls.key_path)
            } else {
                ("store.postgres.tls.certPath", &tls.cert_path)
            };
            return Err(invalid(key, value, "store.postgres.tls.certPath and keyPath must be set together"));
        }

        let replica = &pg.read_replica;
        if replica.ratio > 100 {
            return Err(invalid("store.postgres.readReplica.ratio", replica.ratio, "must be a percentage (0-100)"));
        }
        if !replica.host.is_empty() && replica.port == 0 {
            return Err(invalid("store.postgres.readReplica.port", replica.port, "must be greater than 0"));
        }

        if pg.password == super::DEFAULT_POSTGRES_PASSWORD {
            warnings
                .push("store.postgres.password is the default \"kuma\"; set KUMA_STORE_POSTGRES_PASSWORD".to_owned());
        }
        Ok(())
    }

    fn validate_xds(&self) -> Result<(), ConfigError> {
        let xds = &self.xds_server;
        positive("xdsServer.dataplaneConfigurationRefreshInterval", xds.dataplane_configuration_refresh_interval)?;
        positive("xdsServer.dataplaneStatusFlushInterval", xds.dataplane_status_flush_interval)?;
        positive("dpServer.keepaliveTime", self.dp_server.keepalive_time)?;
        not_empty("bootstrapServer.params.adminAddress", &self.bootstrap_server.params.admin_address)?;
        if xds.change_history_size == 0 {
            return Err(invalid("xdsServer.changeHistorySize", 0, "must be at least 1"));
        }
        Ok(())
    }

    fn validate_dp_server(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        let dp = &self.dp_server;
        match dp.authn.dp_proxy.r#type.as_str() {
            "" | "dpToken" | "none" => {}
            "serviceAccountToken" => {
                return Err(invalid(
                    "dpServer.authn.dpProxy.type",
                    "serviceAccountToken",
                    "is Kubernetes only; higuma supports dpToken and none",
                ))
            }
            other => return Err(invalid("dpServer.authn.dpProxy.type", other, "must be dpToken or none")),
        }
        positive("dpServer.readHeaderTimeout", dp.read_header_timeout)?;
        let limits = [
            ("dpServer.limits.maxMessageSize", dp.limits.max_message_size, MIN_MESSAGE_SIZE),
            ("dpServer.limits.maxStreamsPerConnection", dp.limits.max_streams_per_connection, 1),
            ("dpServer.limits.maxStreamsPerDataplane", dp.limits.max_streams_per_dataplane, 1),
        ];
        for (key, value, min) in limits {
            if value < min {
                return Err(invalid(key, value, format!("must be at least {min}")));
            }
        }
        let g = &self.general;
        for (prefix, cert, key) in
            [("dpServer", &dp.tls_cert_file, &dp.tls_key_file), ("general", &g.tls_cert_file, &g.tls_key_file)]
        {
            if cert.is_empty() != key.is_empty() {
                let (k, v) = if key.is_empty() { ("tlsKeyFile", key) } else { ("tlsCertFile", cert) };
                return Err(invalid(
                    &format!("{prefix}.{k}"),
                    v,
                    format!("{prefix}.tlsCertFile and {prefix}.tlsKeyFile must be set together"),
                ));
            }
        }
        let tls_keys = [
            ("dpServer.tlsMinVersion", &dp.tls_min_version),
            ("dpServer.tlsMaxVersion", &dp.tls_max_version),
            ("general.tlsMinVersion", &g.tls_min_version),
            ("general.tlsMaxVersion", &g.tls_max_version),
        ];
        for (key, value) in tls_keys {
            crate::tls::settings::parse_version(value).map_err(|reason| invalid(key, value, reason))?;
        }
        for (key, value) in
            [("dpServer.tlsCipherSuites", &dp.tls_cipher_suites), ("general.tlsCipherSuites", &g.tls_cipher_suites)]
        {
            crate::tls::settings::parse_ciphers(value).map_err(|reason| invalid(key, value.join(","), reason))?;
        }
        if let Err(crate::tls::TlsError::Config { key, reason }) = crate::tls::dp_server_settings(self) {
            return Err(invalid(key, "", reason));
        }
        if !dp.tls_enabled {
            warnings.push(
                "dpServer.tlsEnabled is false: xDS and /bootstrap are plaintext (dataplane tokens travel in clear)"
                    .to_owned(),
            );
        }
        Ok(())
    }

    /// The listening ports must be set and distinct: two servers on one port fail at
    /// bind time with a message that names neither key.
    fn validate_ports(&self) -> Result<(), ConfigError> {
        let mut ports: Vec<(&str, u16)> = Vec::with_capacity(3);
        if self.api_server.http.enabled {
            not_empty("apiServer.http.interface", &self.api_server.http.interface)?;
            ports.push(("apiServer.http.port", self.api_server.http.port));
        }
        if self.api_server.https.enabled {
            not_empty("apiServer.https.interface", &self.api_server.https.interface)?;
            ports.push(("apiServer.https.port", self.api_server.https.port));
        }
        not_empty("dpServer.interface", &self.dp_server.interface)?;
        not_empty("diagnostics.interface", &self.diagnostics.interface)?;
        ports.push(("dpServer.port", self.dp_server.port));
        ports.push(("diagnostics.serverPort", self.diagnostics.server_port));
        for (i, &(key, port)) in ports.iter().enumerate() {
            if port == 0 {
                return Err(invalid(key, port, "must be greater than 0"));
            }
            if let Some((other, _)) = ports[..i].iter().find(|(_, p)| *p == port) {
                return Err(invalid(key, port, format!("already used by {other}")));
            }
        }
        Ok(())
    }

    fn validate_misc(&self, warnings: &mut Vec<String>) -> Result<(), ConfigError> {
        if !self.general.log_level.is_empty() && self.general.log_level.parse::<log::LevelFilter>().is_err() {
            return Err(invalid(
                "general.logLevel",
                &self.general.log_level,
                "must be one of off, error, warn, info, debug, trace (or empty for --log-level)",
            ));
        }
        let dp = &self.metrics.dataplane;
        positive("metrics.dataplane.idleTimeout", dp.idle_timeout)?;
        if dp.subscription_limit == 0 {
            // Kuma's comment says 0 = unlimited, but its code keeps no subscription at all.
            warnings.push(
                "metrics.dataplane.subscriptionLimit is 0: no subscription history is kept \
                 (it does not mean unlimited)"
                    .to_owned(),
            );
        }
        Ok(())
    }
}

/// Kuma's TLS version names, lowest first.
pub const TLS_VERSIONS: [&str; 4] = ["TLSv1_0", "TLSv1_1", "TLSv1_2", "TLSv1_3"];

impl Config {
    fn validate_api_security(&self) -> Result<(), ConfigError> {
        let api = &self.api_server;
        let https = &api.https;
        if https.tls_cert_file.is_empty() != https.tls_key_file.is_empty() {
            let (key, value) = if https.tls_key_file.is_empty() {
                ("apiServer.https.tlsKeyFile", &https.tls_key_file)
            } else {
                ("apiServer.https.tlsCertFile", &https.tls_cert_file)
            };
            return Err(invalid(key, value, "apiServer.https.tlsCertFile and tlsKeyFile must be set together"));
        }
        let version = |key: &str, v: &str| -> Result<Option<usize>, ConfigError> {
            if v.is_empty() {
                return Ok(None);
            }
            match TLS_VERSIONS.iter().position(|t| *t == v) {
                Some(i) => Ok(Some(i)),
                None => Err(invalid(key, v, format!("must be one of {} (or empty)", TLS_VERSIONS.join(", ")))),
            }
        };
        let min = version("apiServer.https.tlsMinVersion", &https.tls_min_version)?;
        let max = version("apiServer.https.tlsMaxVersion", &https.tls_max_version)?;
        if let (Some(lo), Some(hi)) = (min, max) {
            if hi < lo {
                return Err(invalid(
                    "apiServer.https.tlsMaxVersion",
                    &https.tls_max_version,
                    format!("must not be below apiServer.https.tlsMinVersion ({})", https.tls_min_version),
                ));
            }
        }
        for (i, suite) in https.tls_cipher_suites.iter().enumerate() {
            if crate::http::tls::openssl_cipher_name(suite).is_none() {
                return Err(invalid(
                    &format!("apiServer.https.tlsCipherSuites[{i}]"),
                    suite,
                    format!("unknown cipher suite; known: {}", crate::http::tls::known_cipher_suites().join(", ")),
                ));
            }
        }
        if api.authn.r#type != super::DEFAULT_API_SERVER_AUTHN_TYPE {
            return Err(invalid(
                "apiServer.authn.type",
                &api.authn.r#type,
                "higuma supports only \"tokens\" (user tokens); adminClientCerts is not implemented",
            ));
        }
        if self.access.r#type != super::DEFAULT_ACCESS_TYPE {
            return Err(invalid("access.type", &self.access.r#type, "higuma supports only \"static\""));
        }
        self.validate_http_limits(
            "apiServer",
            api.read_header_timeout,
            api.read_timeout,
            api.write_timeout,
            api.idle_timeout,
            api.max_header_bytes,
        )?;
        let d = &self.diagnostics;
        self.validate_http_limits(
            "diagnostics",
            d.read_header_timeout,
            d.read_timeout,
            d.write_timeout,
            d.idle_timeout,
            d.max_header_bytes,
        )?;
        Ok(())
    }

    fn validate_http_limits(
        &self,
        section: &str,
        read_header: Duration,
        read: Duration,
        write: Duration,
        idle: Duration,
        max_header_bytes: u64,
    ) -> Result<(), ConfigError> {
        // Unlike Go's servers, 0 does not mean "no limit": a worker held forever by a client
        // that stops sending is exactly what these keys prevent.
        positive(&format!("{section}.readHeaderTimeout"), read_header)?;
        positive(&format!("{section}.readTimeout"), read)?;
        positive(&format!("{section}.writeTimeout"), write)?;
        positive(&format!("{section}.idleTimeout"), idle)?;
        if max_header_bytes < MIN_HEADER_BYTES {
            return Err(invalid(
                &format!("{section}.maxHeaderBytes"),
                max_header_bytes,
                format!("must be at least {MIN_HEADER_BYTES} (a request line and a bearer token must fit)"),
            ));
        }
        Ok(())
    }
}

/// Below this no real request fits: a request line, `Host`, and a ~1 KiB bearer token.
const MIN_HEADER_BYTES: u64 = 4096;
/// Below this, an Envoy's own first request (node metadata, resource names) may not fit.
const MIN_MESSAGE_SIZE: u32 = 64 * 1024;

fn tls_mode_name(mode: TlsMode) -> &'static str {
    match mode {
        TlsMode::Disable => "disable",
        TlsMode::VerifyNone => "verifyNone",
        TlsMode::VerifyCa => "verifyCa",
        TlsMode::VerifyFull => "verifyFull",
    }
}
