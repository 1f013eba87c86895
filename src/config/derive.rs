//! `Config::derive`: settings whose valid range depends on another setting.
//!
//! An operator who changes one key of such a pair (Kuma's advice for a small Postgres is to
//! lower `maxOpenConnections` alone) must not be refused because of the *default* of the
//! other key. Where kuma-cp's libraries quietly adjust the dependent value, higuma does the
//! same and says so: at info level when the adjusted key kept its default, as a warning
//! when the operator set both keys to values that contradict each other. None of these is
//! an error.

use super::{Config, StoreType};

/// One value higuma derived instead of the configured one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Derived {
    /// The dotted key whose effective value differs from the configured one.
    pub key: String,
    /// The configured value and the effective one, as the config file would spell them.
    pub configured: String,
    pub effective: String,
    /// Why, naming the key it was derived from.
    pub reason: String,
    /// The operator set `key` explicitly (file or env), so the adjustment is a warning.
    pub explicit: bool,
}

impl std::fmt::Display for Derived {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} = {} (configured {}: {})", self.key, self.effective, self.configured, self.reason)
    }
}

impl Config {
    /// Adjusts dependent settings to the ones they depend on. `explicit` tells whether a
    /// dotted key was set by the operator (file or env) rather than left at its default.
    pub fn derive(&mut self, explicit: &dyn Fn(&str) -> bool) -> Vec<Derived> {
        let mut out = Vec::new();
        if self.store.r#type == StoreType::Postgres {
            self.derive_postgres(explicit, &mut out);
        }
        out
    }

    fn derive_postgres(&mut self, explicit: &dyn Fn(&str) -> bool, out: &mut Vec<Derived>) {
        let pg = &mut self.store.postgres;
        // Go's database/sql (kuma-cp's pq pool) lowers the idle limit to the open limit
        // (`SetMaxOpenConns`); 0 open means unlimited, which any idle value fits.
        if pg.max_open_connections > 0 && pg.max_idle_connections > pg.max_open_connections {
            out.push(Derived {
                key: "store.postgres.maxIdleConnections".into(),
                configured: pg.max_idle_connections.to_string(),
                effective: pg.max_open_connections.to_string(),
                reason: "lowered to store.postgres.maxOpenConnections, as Go's database/sql does".into(),
                explicit: explicit("store.postgres.maxIdleConnections"),
            });
            pg.max_idle_connections = pg.max_open_connections;
        }
        // A jitter longer than the lifetime it spreads cannot be honoured; with no lifetime
        // (0) there is nothing to spread. Kuma 2.4 does not read the jitter key at all.
        if pg.max_connection_lifetime_jitter > pg.max_connection_lifetime {
            out.push(Derived {
                key: "store.postgres.maxConnectionLifetimeJitter".into(),
                configured: pg.max_connection_lifetime_jitter.to_string(),
                effective: pg.max_connection_lifetime.to_string(),
                reason: "lowered to store.postgres.maxConnectionLifetime".into(),
                explicit: explicit("store.postgres.maxConnectionLifetimeJitter"),
            });
            pg.max_connection_lifetime_jitter = pg.max_connection_lifetime;
        }
        // The listener's back-off runs from min to max (lib/pq's listener takes both as
        // given). Of a pair that contradicts itself, the key the operator set wins; when
        // both were set, the minimum does and the ceiling rises to it.
        if pg.max_reconnect_interval < pg.min_reconnect_interval {
            let (min_set, max_set) =
                (explicit("store.postgres.minReconnectInterval"), explicit("store.postgres.maxReconnectInterval"));
            if max_set && !min_set {
                out.push(Derived {
                    key: "store.postgres.minReconnectInterval".into(),
                    configured: pg.min_reconnect_interval.to_string(),
                    effective: pg.max_reconnect_interval.to_string(),
                    reason: "lowered to store.postgres.maxReconnectInterval".into(),
                    explicit: false,
                });
                pg.min_reconnect_interval = pg.max_reconnect_interval;
            } else {
                out.push(Derived {
                    key: "store.postgres.maxReconnectInterval".into(),
                    configured: pg.max_reconnect_interval.to_string(),
                    effective: pg.min_reconnect_interval.to_string(),
                    reason: "raised to store.postgres.minReconnectInterval".into(),
                    explicit: max_set,
                });
                pg.max_reconnect_interval = pg.min_reconnect_interval;
            }
        }
    }
}
