//! SIGHUP: re-read the config file (and env) and apply what can change live.
//!
//! Like TiKV's online config: parse → diff against the config in force → apply the
//! reloadable keys → keep everything else and say it needs a restart. An invalid file
//! changes nothing.

use std::path::Path;

use serde_json::Value;

use super::{apply_log_level, Daemon};
use crate::config::{self, Config, ConfigError};
use crate::reconcile::Settings;

/// Keys that take effect without a restart and without dropping any xDS stream.
pub const RELOADABLE: &[&str] = &[
    "xdsServer.dataplaneConfigurationRefreshInterval",
    "xdsServer.dataplaneStatusFlushInterval",
    "xdsServer.nackBackoff",
    "store.cache.expirationTime",
    "diagnostics.debugEndpoints",
    "general.logLevel",
    "metrics.dataplane.subscriptionLimit",
    "apiServer.readOnly",
    "store.unsafeDelete",
    "apiServer.authn.localhostIsAdmin",
];

/// Key prefixes whose every key is reloadable: access rules are read on every request.
pub const RELOADABLE_PREFIXES: &[&str] = &["access.static."];

/// What a reload did.
#[derive(Debug, Default, PartialEq)]
pub struct ReloadOutcome {
    /// `key: old -> new` for every key applied.
    pub applied: Vec<String>,
    /// `key` for every changed key that needs a restart (left as it was).
    pub needs_restart: Vec<String>,
}

fn leaves(prefix: &str, v: &Value, out: &mut Vec<(String, Value)>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                leaves(&key, child, out);
            }
        }
        other => out.push((prefix.to_string(), other.clone())),
    }
}

fn set_leaf(root: &mut Value, key: &str, value: Value) {
    let mut node = root;
    for part in key.split('.') {
        node = &mut node[part];
    }
    *node = value;
}

/// Computes the config to put in force: `current` with the reloadable keys of `incoming`.
pub fn merge(current: &Config, incoming: &Config) -> Result<(Config, ReloadOutcome), ConfigError> {
    let cur = serde_json::to_value(current).unwrap_or_default();
    let new = serde_json::to_value(incoming).unwrap_or_default();
    let (mut a, mut b) = (Vec::new(), Vec::new());
    leaves("", &cur, &mut a);
    leaves("", &new, &mut b);
    let mut effective = cur.clone();
    let mut outcome = ReloadOutcome::default();
    for ((key, old), (_, newv)) in a.iter().zip(b.iter()) {
        if old == newv {
            continue;
        }
        if RELOADABLE.contains(&key.as_str()) || RELOADABLE_PREFIXES.iter().any(|p| key.starts_with(p)) {
            set_leaf(&mut effective, key, newv.clone());
            outcome.applied.push(format!("{key}: {old} -> {newv}"));
        } else {
            outcome.needs_restart.push(key.clone());
        }
    }
    let config: Config = serde_json::from_value(effective).map_err(|e| ConfigError::Invalid {
        key: "(reload)".into(),
        value: String::new(),
        reason: e.to_string(),
    })?;
    config.validate()?;
    Ok((config, outcome))
}

impl Daemon {
    /// Re-reads `path` (and the environment) and applies the reloadable keys. An error means
    /// nothing changed.
    pub fn reload(&self, path: Option<&Path>) -> Result<ReloadOutcome, ConfigError> {
        let loaded = config::load_from_process(path)?;
        self.reload_with(loaded.config)
    }

    /// [`reload`](Self::reload) with an already loaded config.
    pub fn reload_with(&self, incoming: Config) -> Result<ReloadOutcome, ConfigError> {
        let current = self.config();
        let (effective, outcome) = merge(&current, &incoming)?;
        for key in &outcome.needs_restart {
            log::warn!("reload: {key} changed but needs a restart; keeping the value in force");
        }
        for change in &outcome.applied {
            log::info!("reload: applied {change}");
        }
        if let Some(r) = self.reconciler() {
            r.update_settings(Settings::from_config(&effective));
        }
        apply_log_level(&effective);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = effective;
        Ok(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn reloadable_keys_apply_and_others_wait_for_a_restart() {
        let current = Config::default();
        let mut incoming = Config::default();
        incoming.xds_server.dataplane_configuration_refresh_interval = Duration::from_secs(5).into();
        incoming.diagnostics.debug_endpoints = true;
        incoming.dp_server.port = 6000;
        incoming.store.r#type = crate::config::StoreType::Postgres;
        let (effective, outcome) = merge(&current, &incoming).unwrap();
        assert_eq!(effective.xds_server.dataplane_configuration_refresh_interval.0, Duration::from_secs(5));
        assert!(effective.diagnostics.debug_endpoints);
        assert_eq!(effective.dp_server.port, 5678, "ports need a restart");
        assert_eq!(effective.store.r#type, crate::config::StoreType::Memory);
        assert_eq!(outcome.needs_restart, ["store.type", "dpServer.port"]);
        assert_eq!(outcome.applied.len(), 2);
    }

    #[test]
    fn every_reloadable_key_exists() {
        let keys = crate::config::leaf_keys();
        for k in RELOADABLE {
            assert!(keys.iter().any(|l| l == k), "{k} is not a config key");
        }
    }
}
