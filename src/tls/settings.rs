//! Kuma's TLS knobs (`tlsMinVersion`, `tlsMaxVersion`, `tlsCipherSuites`) in Go's
//! spelling, and what they mean to OpenSSL.

use openssl::ssl::SslVersion;

/// The versions Kuma accepts (`pkg/config/types/tls.go`): Go's TLS 1.0/1.1 are refused.
pub const VERSIONS: [&str; 2] = ["TLSv1_2", "TLSv1_3"];

/// Go's names of the cipher suites it supports (`tls.CipherSuites()` and
/// `tls.InsecureCipherSuites()` that OpenSSL 3 still offers) and OpenSSL's names for them.
/// TLS 1.3 suites are configured separately in OpenSSL (`set_ciphersuites`), as the
/// third column says.
const CIPHERS: &[(&str, &str, bool)] = &[
    ("TLS_AES_128_GCM_SHA256", "TLS_AES_128_GCM_SHA256", true),
    ("TLS_AES_256_GCM_SHA384", "TLS_AES_256_GCM_SHA384", true),
    ("TLS_CHACHA20_POLY1305_SHA256", "TLS_CHACHA20_POLY1305_SHA256", true),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256", false),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384", false),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305", false),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA", false),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA", false),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256", false),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256", false),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256", false),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384", false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA", false),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA", false),
    ("TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256", false),
];

/// A version name as OpenSSL's constant; `""` is `None` (no bound).
pub fn parse_version(name: &str) -> Result<Option<SslVersion>, String> {
    match name {
        "" => Ok(None),
        "TLSv1_2" => Ok(Some(SslVersion::TLS1_2)),
        "TLSv1_3" => Ok(Some(SslVersion::TLS1_3)),
        other => Err(format!("unsupported TLS version {other:?}; supported: {}", VERSIONS.join(", "))),
    }
}

/// Go cipher-suite names as OpenSSL's TLS 1.2 cipher list and TLS 1.3 suite list.
pub fn parse_ciphers(names: &[String]) -> Result<(Vec<&'static str>, Vec<&'static str>), String> {
    let (mut tls12, mut tls13) = (Vec::new(), Vec::new());
    for name in names {
        match CIPHERS.iter().find(|(go, _, _)| go == name) {
            Some((_, ossl, true)) => tls13.push(*ossl),
            Some((_, ossl, false)) => tls12.push(*ossl),
            None => {
                return Err(format!(
                    "unsupported TLS cipher suite {name:?}; supported: {}",
                    CIPHERS.iter().map(|c| c.0).collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    Ok((tls12, tls13))
}

/// Version bounds and cipher suites of one TLS server, already checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsSettings {
    pub min: Option<SslVersion>,
    pub max: Option<SslVersion>,
    /// OpenSSL names; empty = the library's secure defaults.
    pub tls12_ciphers: Vec<&'static str>,
    pub tls13_suites: Vec<&'static str>,
}

impl TlsSettings {
    pub fn parse(min: &str, max: &str, ciphers: &[String]) -> Result<TlsSettings, String> {
        let (min, max) = (parse_version(min)?, parse_version(max)?);
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo == SslVersion::TLS1_3 && hi == SslVersion::TLS1_2 {
                return Err("tlsMaxVersion TLSv1_2 is below tlsMinVersion TLSv1_3".into());
            }
        }
        let (tls12_ciphers, tls13_suites) = parse_ciphers(ciphers)?;
        Ok(TlsSettings { min, max, tls12_ciphers, tls13_suites })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_ciphers_use_gos_names() {
        assert_eq!(parse_version("TLSv1_3"), Ok(Some(SslVersion::TLS1_3)));
        assert_eq!(parse_version(""), Ok(None));
        assert!(parse_version("TLSv1_0").unwrap_err().contains("TLSv1_2, TLSv1_3"));
        let (t12, t13) =
            parse_ciphers(&["TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256".to_string(), "TLS_AES_256_GCM_SHA384".to_string()])
                .unwrap();
        assert_eq!((t12, t13), (vec!["ECDHE-RSA-AES128-GCM-SHA256"], vec!["TLS_AES_256_GCM_SHA384"]));
        assert!(parse_ciphers(&["RC4".to_string()]).unwrap_err().contains("\"RC4\""));
        assert!(TlsSettings::parse("TLSv1_3", "TLSv1_2", &[]).is_err());
    }
}
