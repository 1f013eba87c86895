//! Typed views of `Mesh.mtls` backends (`api/mesh/v1alpha1/mesh.proto`,
//! `pkg/plugins/ca/{builtin,provided}/config`) and the checks that need nothing but the
//! Mesh itself. The checks that read the store (a provided CA's files and Secrets) are in
//! [`super::manager`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::datasource::DataSource;
use crate::model::mesh::CertificateAuthorityBackend;
use crate::model::ValidationError;

/// A workload certificate's lifetime when `dpCert.rotation.expiration` is unset (Kuma's
/// `DefaultWorkloadCertValidityPeriod`).
pub const DEFAULT_DP_CERT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A builtin CA's lifetime when `caCert.expiration` is unset: Kuma's ten years, so a mesh
/// without a PKI never meets an expired root.
pub const DEFAULT_CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// A builtin CA's RSA key size when `caCert.RSAbits` is unset (Kuma's `util_rsa.DefaultKeySize`).
pub const DEFAULT_RSA_BITS: u32 = 2048;
/// The widest RSA key a builtin CA may ask for: beyond it generation takes minutes and the
/// handshakes of every dataplane pay for it.
const MAX_RSA_BITS: u32 = 8192;
/// The smallest RSA key Envoy's BoringSSL accepts in a chain.
const MIN_RSA_BITS: u32 = 1024;

/// A builtin backend's `conf` (`BuiltinCertificateAuthorityConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BuiltinConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_cert: Option<BuiltinCaCert>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuiltinCaCert {
    /// The JSON name is literally `RSAbits` in Kuma's config proto.
    #[serde(rename = "RSAbits", default, skip_serializing_if = "Option::is_none")]
    pub rsa_bits: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expiration: Option<String>,
}

impl BuiltinConf {
    pub fn rsa_bits(&self) -> u32 {
        self.ca_cert.as_ref().and_then(|c| c.rsa_bits).filter(|b| *b > 0).unwrap_or(DEFAULT_RSA_BITS)
    }

    /// The CA's lifetime (validation made sure the expiration parses).
    pub fn lifetime(&self) -> Duration {
        self.ca_cert
            .as_ref()
            .and_then(|c| c.expiration.as_deref())
            .and_then(parse_kuma_duration)
            .unwrap_or(DEFAULT_CA_LIFETIME)
    }
}

/// A provided backend's `conf` (`ProvidedCertificateAuthorityConfig`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProvidedConf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<DataSource>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<DataSource>,
}

/// What a backend's `type` and `conf` say.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum BackendConf {
    Builtin(BuiltinConf),
    Provided(ProvidedConf),
    /// vault, acmpca, certmanager: stored and validated by name only (Kuma's enterprise
    /// plugins); a mesh that enables one gets no certificates from higuma.
    Unsupported(String),
}

/// Kuma's `ParseDuration` for mesh durations (pkg/core/resources/apis/mesh/mesh_helpers.go):
/// `<digits><y|w|d|h|m|s|ms>` or the literal `0`; `y` is 365 days, `w` 7 days. No compound
/// forms (`1h30m` is not one).
pub fn parse_kuma_duration(s: &str) -> Option<Duration> {
    if s == "0" {
        return Some(Duration::ZERO);
    }
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = s.split_at(digits);
    if number.is_empty() {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let secs = |per: u64| n.checked_mul(per).map(Duration::from_secs);
    match unit {
        "y" => secs(365 * 24 * 3600),
        "w" => secs(7 * 24 * 3600),
        "d" => secs(24 * 3600),
        "h" => secs(3600),
        "m" => secs(60),
        "s" => secs(1),
        "ms" => Some(Duration::from_millis(n)),
        _ => None,
    }
}

/// Decodes a backend's `conf` by its type; `Err` names what did not decode, as Kuma's
/// "could not convert backend config".
pub fn conf_of(b: &CertificateAuthorityBackend) -> Result<BackendConf, String> {
    let conf = b.conf.clone().unwrap_or(serde_json::Value::Object(Default::default()));
    let decode = |what: &str| format!("could not convert backend config: {what}");
    match b.type_.as_str() {
        "builtin" => serde_json::from_value(conf).map(BackendConf::Builtin).map_err(|e| decode(&e.to_string())),
        "provided" => serde_json::from_value(conf).map(BackendConf::Provided).map_err(|e| decode(&e.to_string())),
        other => Ok(BackendConf::Unsupported(other.to_string())),
    }
}

/// A backend's `dpCert.rotation.expiration`, if set.
fn dp_cert_expiration(b: &CertificateAuthorityBackend) -> Option<&serde_json::Value> {
    b.dp_cert.as_ref()?.get("rotation")?.get("expiration")
}

/// A workload certificate's lifetime under backend `b` (validation made sure it parses).
pub fn dp_cert_lifetime(b: &CertificateAuthorityBackend) -> Duration {
    dp_cert_expiration(b)
        .and_then(|v| v.as_str())
        .and_then(parse_kuma_duration)
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_DP_CERT_LIFETIME)
}

/// The checks of Kuma's `MeshResource.Validate` and the plugins' conf decoding for backend
/// `i`, which need nothing beyond the Mesh.
pub fn validate(b: &CertificateAuthorityBackend, i: usize, errors: &mut ValidationError) {
    if let Some(exp) = dp_cert_expiration(b) {
        if exp.as_str().is_none_or(|s| parse_kuma_duration(s).is_none()) {
            // Kuma's path, lower-case `dpcert` and no backend index included (sic).
            errors.add("mtls.dpcert.rotation.expiration", format!("has to be a valid format, got {exp}"));
        }
    }
    check_shape(errors, &format!("mtls.backends[{i}].dpCert"), b.dp_cert.as_ref(), &["rotation", "requestTimeout"]);
    if let Some(rotation) = b.dp_cert.as_ref().and_then(|d| d.get("rotation")) {
        check_shape(errors, &format!("mtls.backends[{i}].dpCert.rotation"), Some(rotation), &["expiration"]);
    }
    check_shape(errors, &format!("mtls.backends[{i}].rootChain"), b.root_chain.as_ref(), &["requestTimeout"]);
    let at = format!("mtls.backends[{i}].conf");
    match conf_of(b) {
        Err(e) => errors.add(at, e),
        Ok(BackendConf::Builtin(c)) => {
            if let Some(exp) = c.ca_cert.as_ref().and_then(|c| c.expiration.as_deref()) {
                if parse_kuma_duration(exp).is_none_or(|d| d.is_zero()) {
                    errors.add(format!("{at}.caCert.expiration"), format!("has to be a valid format, got {exp:?}"));
                }
            }
            if let Some(bits) = c.ca_cert.as_ref().and_then(|c| c.rsa_bits).filter(|b| *b != 0) {
                if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
                    errors.add(
                        format!("{at}.caCert.RSAbits"),
                        format!("has to be between {MIN_RSA_BITS} and {MAX_RSA_BITS}, got {bits}"),
                    );
                }
            }
        }
        Ok(BackendConf::Provided(c)) => {
            match &c.cert {
                None => errors.add(format!("{at}.cert"), "has to be defined"),
                Some(ds) => ds.validate(errors, &format!("{at}.cert")),
            }
            match &c.key {
                None => errors.add(format!("{at}.key"), "has to be defined"),
                Some(ds) => ds.validate(errors, &format!("{at}.key")),
            }
        }
        Ok(BackendConf::Unsupported(_)) => {}
    }
}

/// `value` is an object with only `known` keys (protojson refuses the others).
fn check_shape(errors: &mut ValidationError, at: &str, value: Option<&serde_json::Value>, known: &[&str]) {
    let Some(value) = value else { return };
    let Some(obj) = value.as_object() else {
        errors.add(at, format!("must be an object, got {value}"));
        return;
    };
    for k in obj.keys().filter(|k| !known.contains(&k.as_str())) {
        errors.add(format!("{at}.{k}"), format!("unknown field `{k}`, expected one of: {}", known.join(", ")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kuma_durations() {
        assert_eq!(parse_kuma_duration("1d"), Some(Duration::from_secs(86400)));
        assert_eq!(parse_kuma_duration("2y"), Some(Duration::from_secs(2 * 365 * 86400)));
        assert_eq!(parse_kuma_duration("3w"), Some(Duration::from_secs(21 * 86400)));
        assert_eq!(parse_kuma_duration("5s"), Some(Duration::from_secs(5)));
        assert_eq!(parse_kuma_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_kuma_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_kuma_duration("0"), Some(Duration::ZERO));
        for bad in ["", "1h30m", "1.5h", "h", "-1s", "1 s", "1S", "99999999999999999999y", "1000000000000000y"] {
            assert_eq!(parse_kuma_duration(bad), None, "{bad}");
        }
    }

    fn backend(v: serde_json::Value) -> CertificateAuthorityBackend {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn lifetimes_and_defaults() {
        let b = backend(serde_json::json!({"name": "ca", "type": "builtin"}));
        assert_eq!(dp_cert_lifetime(&b), DEFAULT_DP_CERT_LIFETIME);
        let BackendConf::Builtin(c) = conf_of(&b).unwrap() else { panic!() };
        assert_eq!((c.rsa_bits(), c.lifetime()), (2048, DEFAULT_CA_LIFETIME));
        let b =
            backend(serde_json::json!({"name": "ca", "type": "builtin", "dpCert": {"rotation": {"expiration": "5s"}},
            "conf": {"caCert": {"RSAbits": 3072, "expiration": "1y"}}}));
        assert_eq!(dp_cert_lifetime(&b), Duration::from_secs(5));
        let BackendConf::Builtin(c) = conf_of(&b).unwrap() else { panic!() };
        assert_eq!((c.rsa_bits(), c.lifetime()), (3072, Duration::from_secs(365 * 86400)));
    }

    fn violations(v: serde_json::Value) -> Vec<(String, String)> {
        let mut e = ValidationError::default();
        validate(&backend(v), 0, &mut e);
        e.violations.into_iter().map(|v| (v.field, v.reason)).collect()
    }

    #[test]
    fn shape_errors_name_the_field() {
        let v = violations(
            serde_json::json!({"name": "ca", "type": "builtin", "dpCert": {"rotation": {"expiration": "1h30m"}}}),
        );
        assert!(
            v.iter().any(|(f, r)| f == "mtls.dpcert.rotation.expiration" && r.contains("has to be a valid format")),
            "{v:?}"
        );
        let v = violations(serde_json::json!({"name": "ca", "type": "builtin", "conf": {"caCert": {"bits": 1}}}));
        assert!(
            v.iter().any(|(f, r)| f == "mtls.backends[0].conf"
                && r.contains("could not convert backend config")
                && r.contains("bits")),
            "{v:?}"
        );
        let v = violations(serde_json::json!({"name": "ca", "type": "builtin", "conf": {"caCert": {"RSAbits": 100}}}));
        assert!(v.iter().any(|(f, _)| f == "mtls.backends[0].conf.caCert.RSAbits"), "{v:?}");
        let v = violations(serde_json::json!({"name": "ca", "type": "provided", "conf": {}}));
        assert!(v.contains(&("mtls.backends[0].conf.cert".into(), "has to be defined".into())), "{v:?}");
        assert!(v.contains(&("mtls.backends[0].conf.key".into(), "has to be defined".into())), "{v:?}");
        let v = violations(
            serde_json::json!({"name": "ca", "type": "provided", "conf": {"cert": {}, "key": {"secret": ""}}}),
        );
        assert!(
            v.iter().any(|(f, r)| f == "mtls.backends[0].conf.cert" && r.contains("data source has to be chosen")),
            "{v:?}"
        );
        assert!(v.contains(&("mtls.backends[0].conf.key.secret".into(), "cannot be empty".into())), "{v:?}");
        let v = violations(serde_json::json!({"name": "ca", "type": "builtin", "dpCert": {"rotaton": {}}}));
        assert!(v.iter().any(|(f, _)| f == "mtls.backends[0].dpCert.rotaton"), "{v:?}");
        assert!(violations(serde_json::json!({"name": "ca", "type": "builtin", "dpCert": {"rotation": {"expiration": "1d"}, "requestTimeout": "10s"}})).is_empty());
    }
}
