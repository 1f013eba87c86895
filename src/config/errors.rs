//! `ConfigError`: everything that can stop `higuma` from starting with a given config.
//!
//! Every variant names where the problem is (file path, YAML key or env var) and the
//! offending text, because the reader is an operator looking at a failed start.

use std::path::PathBuf;

#[derive(thiserror::Error, Debug)]
pub enum ConfigError {
    /// The config file named on the command line could not be read.
    #[error("cannot read config file {}: {source} (check that it exists and is readable)", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The config file is not valid YAML, or its top level is not a mapping.
    /// `message` carries serde_yaml_ng's line and column.
    #[error("cannot parse {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },

    /// A `KUMA_*` environment variable holds text that does not fit its key.
    #[error("environment variable {var}={value:?}: {reason}")]
    Env { var: String, value: String, reason: String },

    /// A key (dotted YAML path) has a value of the wrong type or out of range, or breaks a
    /// cross-field rule checked by `Config::validate`.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Invalid { key: String, value: String, reason: String },
}

impl ConfigError {
    /// A short stable tag for logs and exit-status decisions.
    pub fn label(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Parse { .. } => "parse",
            ConfigError::Env { .. } => "env",
            ConfigError::Invalid { .. } => "invalid",
        }
    }
}
