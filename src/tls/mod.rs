//! TLS for the control plane's servers: Kuma's settings ([`settings`]), a certificate
//! generated when the operator gives none ([`generate`]), and [`ServerTls`], an OpenSSL
//! acceptor that follows its certificate files on disk.
//!
//! A reload swaps the acceptor new connections use; connections already open keep the
//! session they negotiated, so rotating a certificate never drops a stream.

pub mod generate;
pub mod settings;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::SystemTime;

use openssl::pkey::PKey;
use openssl::ssl::{AlpnError, SslAcceptor, SslMethod, SslMode};
use openssl::x509::X509;

pub use settings::TlsSettings;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error("{key}: {reason}")]
    Config { key: &'static str, reason: String },
    #[error("cannot generate a certificate: {0}")]
    Generate(String),
    #[error("TLS setup failed: {0}")]
    OpenSsl(String),
    #[error("{cert} / {key}: {reason}")]
    Pair { cert: String, key: String, reason: String },
}

impl TlsError {
    fn io(path: &Path, e: std::io::Error) -> TlsError {
        TlsError::Io { path: path.display().to_string(), reason: e.to_string() }
    }

    fn openssl(e: openssl::error::ErrorStack) -> TlsError {
        TlsError::OpenSsl(e.to_string())
    }
}

/// ALPN ids. gRPC clients (Envoy, grpcio) offer only `h2`; HTTP clients (kuma-dp's Go
/// client, curl) offer `http/1.1` as well and get it, so one port tells them apart.
pub const ALPN_H2: &[u8] = b"h2";
pub const ALPN_HTTP1: &[u8] = b"http/1.1";

/// Where a server's certificate comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertSource {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CA that signed a generated certificate; `None` for the operator's own.
    pub generated_ca: Option<PathBuf>,
    /// The config keys that named the files, for error messages.
    pub cert_key: &'static str,
    pub key_key: &'static str,
}

impl CertSource {
    /// The DP server's certificate: `dpServer.tlsCertFile`, else `general.tlsCertFile`,
    /// else one generated (or reused) in `work_dir`.
    pub fn for_dp_server(config: &Config, work_dir: &Path) -> Result<CertSource, TlsError> {
        let dp = &config.dp_server;
        let general = &config.general;
        if !dp.tls_cert_file.is_empty() {
            return Ok(CertSource {
                cert: dp.tls_cert_file.clone().into(),
                key: dp.tls_key_file.clone().into(),
                generated_ca: None,
                cert_key: "dpServer.tlsCertFile",
                key_key: "dpServer.tlsKeyFile",
            });
        }
        if !general.tls_cert_file.is_empty() {
            return Ok(CertSource {
                cert: general.tls_cert_file.clone().into(),
                key: general.tls_key_file.clone().into(),
                generated_ca: None,
                cert_key: "general.tlsCertFile",
                key_key: "general.tlsKeyFile",
            });
        }
        let (files, created) = generate::ensure(work_dir, &generate::local_hosts())?;
        if created {
            log::info!(
                "tls: generated a certificate for the DP server in {} (CA: {}); give that CA to sidecars (higuma dp run --ca-cert-file), or set dpServer.tlsCertFile",
                work_dir.display(),
                files.ca.display()
            );
        }
        Ok(CertSource {
            cert: files.cert,
            key: files.key,
            generated_ca: Some(files.ca),
            cert_key: "general.workDir",
            key_key: "general.workDir",
        })
    }
}

/// The settings of the DP server: its own keys where set, else `general.*`, as Kuma's
/// autoconfiguration copies the general ones into every server.
pub fn dp_server_settings(config: &Config) -> Result<TlsSettings, TlsError> {
    let dp = &config.dp_server;
    let g = &config.general;
    let min = if dp.tls_min_version != crate::config::DEFAULT_TLS_MIN_VERSION {
        (&dp.tls_min_version, "dpServer.tlsMinVersion")
    } else {
        (&g.tls_min_version, "general.tlsMinVersion")
    };
    let max = if !dp.tls_max_version.is_empty() {
        (&dp.tls_max_version, "dpServer.tlsMaxVersion")
    } else {
        (&g.tls_max_version, "general.tlsMaxVersion")
    };
    let ciphers = if !dp.tls_cipher_suites.is_empty() {
        (&dp.tls_cipher_suites, "dpServer.tlsCipherSuites")
    } else {
        (&g.tls_cipher_suites, "general.tlsCipherSuites")
    };
    settings::parse_version(min.0).map_err(|reason| TlsError::Config { key: min.1, reason })?;
    settings::parse_version(max.0).map_err(|reason| TlsError::Config { key: max.1, reason })?;
    settings::parse_ciphers(ciphers.0).map_err(|reason| TlsError::Config { key: ciphers.1, reason })?;
    TlsSettings::parse(min.0, max.0, ciphers.0).map_err(|reason| TlsError::Config { key: max.1, reason })
}

/// `general.workDir`, or Kuma's default `$HOME/.kuma`.
pub fn work_dir(config: &Config) -> Result<PathBuf, TlsError> {
    if !config.general.work_dir.is_empty() {
        return Ok(PathBuf::from(&config.general.work_dir));
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".kuma")),
        _ => Err(TlsError::Config {
            key: "general.workDir",
            reason: "is empty and $HOME is not set; set KUMA_GENERAL_WORK_DIR (the generated certificate goes there)"
                .into(),
        }),
    }
}

/// The DNS names and IP addresses a certificate is valid for, in its order.
pub fn sans(cert: &X509) -> Vec<String> {
    let Some(names) = cert.subject_alt_names() else { return Vec::new() };
    names
        .iter()
        .filter_map(|n| {
            if let Some(dns) = n.dnsname() {
                return Some(dns.to_string());
            }
            match n.ipaddress()? {
                b if b.len() == 4 => Some(std::net::IpAddr::from(<[u8; 4]>::try_from(b).ok()?).to_string()),
                b if b.len() == 16 => Some(std::net::IpAddr::from(<[u8; 16]>::try_from(b).ok()?).to_string()),
                _ => None,
            }
        })
        .collect()
}

/// What a loaded certificate set looks like to the rest of the server.
struct Loaded {
    acceptor: Arc<SslAcceptor>,
    /// `(modification time, length)` of both files when loaded: a change means reload.
    stamp: [(Option<SystemTime>, u64); 2],
    /// The PEM Envoy should trust: the generated CA, or the certificate file itself.
    ca_pem: String,
    sans: Vec<String>,
}

/// A TLS acceptor following its certificate files.
pub struct ServerTls {
    source: CertSource,
    settings: TlsSettings,
    current: RwLock<Loaded>,
}

impl ServerTls {
    pub fn load(source: CertSource, settings: TlsSettings) -> Result<ServerTls, TlsError> {
        let loaded = build(&source, &settings)?;
        Ok(ServerTls { source, settings, current: RwLock::new(loaded) })
    }

    /// The acceptor for the next connection.
    pub fn acceptor(&self) -> Arc<SslAcceptor> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).acceptor.clone()
    }

    pub fn ca_pem(&self) -> String {
        self.current.read().unwrap_or_else(|p| p.into_inner()).ca_pem.clone()
    }

    pub fn sans(&self) -> Vec<String> {
        self.current.read().unwrap_or_else(|p| p.into_inner()).sans.clone()
    }

    pub fn source(&self) -> &CertSource {
        &self.source
    }

    /// Loads the files again if they changed since the last load. A set that does not
    /// load (half-written, key and certificate not matching) keeps the one in force and is
    /// retried at the next call: `Err` says why.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let stamp = stamp(&self.source);
        if self.current.read().unwrap_or_else(|p| p.into_inner()).stamp == stamp {
            return Ok(false);
        }
        let loaded = build(&self.source, &self.settings)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(true)
    }
}

fn stamp(source: &CertSource) -> [(Option<SystemTime>, u64); 2] {
    let one = |p: &Path| match std::fs::metadata(p) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    };
    [one(&source.cert), one(&source.key)]
}

fn build(source: &CertSource, settings: &TlsSettings) -> Result<Loaded, TlsError> {
    let stamp = stamp(source);
    let pair_err = |reason: String| TlsError::Pair {
        cert: format!("{} ({})", source.cert.display(), source.cert_key),
        key: format!("{} ({})", source.key.display(), source.key_key),
        reason,
    };
    let cert_pem = std::fs::read(&source.cert).map_err(|e| TlsError::io(&source.cert, e))?;
    let chain = X509::stack_from_pem(&cert_pem).map_err(|e| pair_err(format!("not a PEM certificate: {e}")))?;
    let Some(leaf) = chain.first() else { return Err(pair_err("the certificate file holds no certificate".into())) };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(TlsError::openssl)?;
    b.set_certificate_chain_file(&source.cert).map_err(|e| pair_err(format!("cannot use the certificate: {e}")))?;
    let key_pem = std::fs::read(&source.key).map_err(|e| TlsError::io(&source.key, e))?;
    let key = PKey::private_key_from_pem(&key_pem).map_err(|e| pair_err(format!("not a PEM private key: {e}")))?;
    if !leaf.public_key().is_ok_and(|public| public.public_eq(&key)) {
        return Err(pair_err("the private key does not belong to the certificate".into()));
    }
    b.set_private_key(&key).map_err(|e| pair_err(format!("cannot use the private key: {e}")))?;
    b.set_min_proto_version(settings.min.or(Some(openssl::ssl::SslVersion::TLS1_2))).map_err(TlsError::openssl)?;
    b.set_max_proto_version(settings.max).map_err(TlsError::openssl)?;
    if !settings.tls12_ciphers.is_empty() {
        b.set_cipher_list(&settings.tls12_ciphers.join(":")).map_err(TlsError::openssl)?;
    }
    if !settings.tls13_suites.is_empty() {
        b.set_ciphersuites(&settings.tls13_suites.join(":")).map_err(TlsError::openssl)?;
    }
    b.set_alpn_select_callback(|_, offered| select_alpn(offered).ok_or(AlpnError::NOACK));
    // Without it OpenSSL keeps a ~17 KB read and a ~17 KB write buffer per connection for
    // the connection's life; sidecar streams are idle nearly all the time, so at 10,000
    // sidecars that is ~340 MB held for nothing. Released buffers come back on the next
    // record (jemalloc serves them from its per-thread cache).
    b.set_mode(SslMode::RELEASE_BUFFERS);
    let ca_pem = match &source.generated_ca {
        Some(ca) => std::fs::read_to_string(ca).map_err(|e| TlsError::io(ca, e))?,
        None => String::from_utf8_lossy(&cert_pem).into_owned(),
    };
    Ok(Loaded { acceptor: Arc::new(b.build()), stamp, ca_pem, sans: sans(leaf) })
}

/// `http/1.1` when offered (an HTTP client), else `h2` (a gRPC client), else none.
fn select_alpn(offered: &[u8]) -> Option<&[u8]> {
    let mut h2 = None;
    let mut rest = offered;
    while let Some((&len, tail)) = rest.split_first() {
        let len = len as usize;
        let Some(proto) = tail.get(..len) else { break };
        if proto == ALPN_HTTP1 {
            return Some(proto);
        }
        if proto == ALPN_H2 {
            h2 = Some(proto);
        }
        rest = &tail[len..];
    }
    h2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alpn_prefers_http1_when_offered() {
        assert_eq!(select_alpn(b"\x02h2\x08http/1.1"), Some(ALPN_HTTP1));
        assert_eq!(select_alpn(b"\x08grpc-exp\x02h2"), Some(ALPN_H2));
        assert_eq!(select_alpn(b"\x03foo"), None);
        // A length running past the end is ignored, not a panic.
        assert_eq!(select_alpn(b"\x09h2"), None);
    }

    #[test]
    fn reload_follows_the_files_and_keeps_the_old_set_on_a_bad_one() {
        let dir = tempfile::tempdir().unwrap();
        let (files, _) = generate::ensure(dir.path(), &["localhost".into()]).unwrap();
        let source = CertSource {
            cert: files.cert.clone(),
            key: files.key.clone(),
            generated_ca: Some(files.ca.clone()),
            cert_key: "dpServer.tlsCertFile",
            key_key: "dpServer.tlsKeyFile",
        };
        let tls = ServerTls::load(source, TlsSettings::parse("TLSv1_2", "", &[]).unwrap()).unwrap();
        assert!(!tls.reload_if_changed().unwrap());
        let first = tls.acceptor();
        // A certificate whose key is still the old one is refused; the old set stays.
        let (_, cert, _) = generate::generate(&["other".into()]).unwrap();
        std::fs::write(&files.cert, cert.to_pem().unwrap()).unwrap();
        let err = tls.reload_if_changed().unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        assert!(Arc::ptr_eq(&first, &tls.acceptor()));
        assert_eq!(tls.sans(), vec!["localhost".to_string()]);
        // A full new pair is taken.
        let (_, cert, key) = generate::generate(&["renamed".into()]).unwrap();
        std::fs::write(&files.key, key.private_key_to_pem_pkcs8().unwrap()).unwrap();
        std::fs::write(&files.cert, cert.to_pem().unwrap()).unwrap();
        assert!(tls.reload_if_changed().unwrap());
        assert_eq!(tls.sans(), vec!["renamed".to_string()]);
        assert!(!Arc::ptr_eq(&first, &tls.acceptor()));
    }
}
