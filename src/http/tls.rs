//! TLS for the HTTP servers, terminated with OpenSSL (already linked for Postgres):
//! the acceptor from `apiServer.https.*`, and a certificate generated at start when no
//! files are configured.
//!
//! The generated pair is a small CA and a server certificate it signs (SANs: the host
//! name, `localhost`, and every address of the host), kept in the work directory and
//! reused across restarts so that clients keep trusting it: `higuma-api-ca.crt` is the
//! file to hand to `--ca-cert-file`. Several control planes behind one address need one
//! shared certificate configured instead, as Kuma warns for its own generated one.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslAcceptor, SslFiletype, SslMethod, SslVersion};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509NameBuilder, X509};

/// File names of the generated certificate in the work directory.
pub const GENERATED_CA_FILE: &str = "higuma-api-ca.crt";
pub const GENERATED_CERT_FILE: &str = "higuma-api.crt";
pub const GENERATED_KEY_FILE: &str = "higuma-api.key";
/// Kuma's generated certificates last ten years: nobody rotates what they did not create.
const GENERATED_VALIDITY_DAYS: u32 = 3650;
/// A generated certificate this close to expiry is replaced at start.
const RENEW_BEFORE_DAYS: u32 = 30;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Certificate { path: String, reason: String },
    #[error("cannot set up TLS: {0}")]
    Setup(String),
    #[error(
        "no work directory for the generated TLS certificate: set general.workDir (KUMA_GENERAL_WORK_DIR) or HOME, or configure apiServer.https.tlsCertFile and tlsKeyFile"
    )]
    NoWorkDir,
    #[error("writing the generated TLS certificate to {path}: {reason}")]
    Write { path: String, reason: String },
}

/// What the acceptor is built from.
#[derive(Clone, Debug, Default)]
pub struct TlsSettings {
    /// PEM files; both empty = generate (see the module docs).
    pub cert_file: String,
    pub key_file: String,
    /// Kuma's names: `TLSv1_0` .. `TLSv1_3`; empty = no bound.
    pub min_version: String,
    pub max_version: String,
    /// Go's cipher suite names.
    pub cipher_suites: Vec<String>,
    /// Where a generated certificate lives.
    pub work_dir: PathBuf,
}

/// The acceptor, and the CA file to trust when the certificate was generated.
pub struct Tls {
    pub acceptor: Arc<SslAcceptor>,
    pub generated_ca: Option<PathBuf>,
}

/// Go's TLS 1.2 cipher suite names (what Kuma's `tlsCipherSuites` takes) and OpenSSL's.
const CIPHERS: &[(&str, &str)] = &[
    ("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"),
    ("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"),
    ("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"),
    ("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"),
    ("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"),
    ("TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"),
    ("TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"),
    ("TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"),
    ("TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"),
];
/// TLS 1.3 suites: accepted as Go accepts them, and, as in Go, not configurable (every
/// TLS 1.3 suite is considered secure).
const TLS13_SUITES: [&str; 3] = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"];

/// OpenSSL's name of a Go cipher suite name; `Some("")` for TLS 1.3 suites.
pub fn openssl_cipher_name(go_name: &str) -> Option<&'static str> {
    if TLS13_SUITES.contains(&go_name) {
        return Some("");
    }
    CIPHERS.iter().find(|(go, _)| *go == go_name).map(|(_, ossl)| *ossl)
}

pub fn known_cipher_suites() -> Vec<&'static str> {
    CIPHERS.iter().map(|(go, _)| *go).chain(TLS13_SUITES).collect()
}

fn ssl_version(name: &str) -> Option<SslVersion> {
    match name {
        "TLSv1_0" => Some(SslVersion::TLS1),
        "TLSv1_1" => Some(SslVersion::TLS1_1),
        "TLSv1_2" => Some(SslVersion::TLS1_2),
        "TLSv1_3" => Some(SslVersion::TLS1_3),
        _ => None,
    }
}

fn setup(e: impl std::fmt::Display) -> TlsError {
    TlsError::Setup(e.to_string())
}

/// Builds the acceptor; generates (or reuses) a certificate when no files are set.
pub fn build(settings: &TlsSettings) -> Result<Tls, TlsError> {
    let (cert_file, key_file, generated_ca) = if settings.cert_file.is_empty() {
        let files = ensure_generated(&settings.work_dir)?;
        (files.cert, files.key, Some(files.ca))
    } else {
        (PathBuf::from(&settings.cert_file), PathBuf::from(&settings.key_file), None)
    };
    let mut b = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(setup)?;
    b.set_min_proto_version(ssl_version(&settings.min_version)).map_err(setup)?;
    b.set_max_proto_version(ssl_version(&settings.max_version)).map_err(setup)?;
    let suites: Vec<&str> =
        settings.cipher_suites.iter().filter_map(|s| openssl_cipher_name(s)).filter(|s| !s.is_empty()).collect();
    if !suites.is_empty() {
        b.set_cipher_list(&suites.join(":")).map_err(setup)?;
    }
    let cert_err = |path: &Path, e: openssl::error::ErrorStack| TlsError::Certificate {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    b.set_certificate_chain_file(&cert_file).map_err(|e| cert_err(&cert_file, e))?;
    b.set_private_key_file(&key_file, SslFiletype::PEM).map_err(|e| cert_err(&key_file, e))?;
    b.check_private_key().map_err(|e| cert_err(&key_file, e))?;
    // Only HTTP/1.1 is served; a client offering h2 alone gets no ALPN and falls back.
    b.set_alpn_select_callback(|_, offered| {
        openssl::ssl::select_next_proto(b"\x08http/1.1", offered).ok_or(openssl::ssl::AlpnError::NOACK)
    });
    Ok(Tls { acceptor: Arc::new(b.build()), generated_ca })
}

/// `general.workDir`, or Kuma's default `$HOME/.kuma`.
pub fn work_dir(configured: &str) -> Result<PathBuf, TlsError> {
    if !configured.is_empty() {
        return Ok(PathBuf::from(configured));
    }
    match std::env::var_os("HOME") {
        Some(home) if !home.is_empty() => Ok(PathBuf::from(home).join(".kuma")),
        _ => Err(TlsError::NoWorkDir),
    }
}

struct GeneratedFiles {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn ensure_generated(dir: &Path) -> Result<GeneratedFiles, TlsError> {
    let files = GeneratedFiles {
        ca: dir.join(GENERATED_CA_FILE),
        cert: dir.join(GENERATED_CERT_FILE),
        key: dir.join(GENERATED_KEY_FILE),
    };
    if reusable(&files) {
        return Ok(files);
    }
    let write_err = |path: &Path, e: &dyn std::fmt::Display| TlsError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| write_err(dir, &e))?;
    let (ca_pem, chain_pem, key_pem) = generate(&host_names(), &host_addresses()).map_err(setup)?;
    write_private(&files.key, &key_pem).map_err(|e| write_err(&files.key, &e))?;
    std::fs::write(&files.cert, chain_pem).map_err(|e| write_err(&files.cert, &e))?;
    std::fs::write(&files.ca, ca_pem).map_err(|e| write_err(&files.ca, &e))?;
    log::info!(
        "api: generated a TLS certificate for HTTPS in {}; clients verify it with --ca-cert-file {} (several control planes behind one address need one shared certificate: set apiServer.https.tlsCertFile)",
        dir.display(),
        files.ca.display()
    );
    Ok(files)
}

fn write_private(path: &Path, pem: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.write_all(pem)
}

fn reusable(files: &GeneratedFiles) -> bool {
    let Ok(pem) = std::fs::read(&files.cert) else { return false };
    let (Ok(_), Ok(_)) = (std::fs::metadata(&files.key), std::fs::metadata(&files.ca)) else { return false };
    let Ok(cert) = X509::from_pem(&pem) else { return false };
    let Ok(soon) = Asn1Time::days_from_now(RENEW_BEFORE_DAYS) else { return false };
    cert.not_after().compare(&soon).map(|o| o == std::cmp::Ordering::Greater).unwrap_or(false)
}

fn host_names() -> Vec<String> {
    let mut names = vec!["localhost".to_string()];
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    if !host.is_empty() && !names.contains(&host) {
        names.push(host);
    }
    names
}

/// Every address of the host's interfaces, loopback included.
fn host_addresses() -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from(std::net::Ipv6Addr::LOCALHOST)];
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a linked list we only read and then free with freeifaddrs.
    unsafe {
        if libc::getifaddrs(&mut ifap) != 0 {
            return out;
        }
        let mut cur = ifap;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                let ip = match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        Some(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        Some(IpAddr::from(sin6.sin6_addr.s6_addr))
                    }
                    _ => None,
                };
                if let Some(ip) = ip {
                    if !out.contains(&ip) {
                        out.push(ip);
                    }
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(ifap);
    }
    out
}

fn ec_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    // P-256: fast to generate at start and supported by every TLS client.
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

/// PEM files of a generated certificate: the CA, the leaf followed by the CA, the key.
pub type GeneratedPems = (Vec<u8>, Vec<u8>, Vec<u8>);

/// A CA and a server certificate for `names` and `ips`.
pub fn generate(names: &[String], ips: &[IpAddr]) -> Result<GeneratedPems, openssl::error::ErrorStack> {
    let ca_key = ec_key()?;
    let mut ca_name = X509NameBuilder::new()?;
    ca_name.append_entry_by_nid(Nid::COMMONNAME, "higuma API CA")?;
    let ca_name = ca_name.build();
    let mut ca = X509::builder()?;
    ca.set_version(2)?;
    let sn = serial()?;
    ca.set_serial_number(&sn)?;
    ca.set_subject_name(&ca_name)?;
    ca.set_issuer_name(&ca_name)?;
    ca.set_pubkey(&ca_key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(GENERATED_VALIDITY_DAYS)?);
    ca.set_not_before(&from)?;
    ca.set_not_after(&until)?;
    ca.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    ca.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&ca.x509v3_context(None, None))?;
    ca.append_extension(ski)?;
    ca.sign(&ca_key, MessageDigest::sha256())?;
    let ca = ca.build();

    let key = ec_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, names.first().map(String::as_str).unwrap_or("localhost"))?;
    let name = name.build();
    let mut leaf = X509::builder()?;
    leaf.set_version(2)?;
    let sn = serial()?;
    leaf.set_serial_number(&sn)?;
    leaf.set_subject_name(&name)?;
    leaf.set_issuer_name(ca.subject_name())?;
    leaf.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(GENERATED_VALIDITY_DAYS)?);
    leaf.set_not_before(&from)?;
    leaf.set_not_after(&until)?;
    leaf.append_extension(BasicConstraints::new().critical().build()?)?;
    leaf.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
    leaf.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for n in names {
        san.dns(n);
    }
    for ip in ips {
        san.ip(&ip.to_string());
    }
    let san = san.build(&leaf.x509v3_context(Some(&ca), None))?;
    leaf.append_extension(san)?;
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&leaf.x509v3_context(Some(&ca), None))?;
    leaf.append_extension(aki)?;
    leaf.sign(&ca_key, MessageDigest::sha256())?;
    let leaf = leaf.build();

    let ca_pem = ca.to_pem()?;
    let mut chain = leaf.to_pem()?;
    chain.extend_from_slice(&ca_pem);
    Ok((ca_pem, chain, key.private_key_to_pem_pkcs8()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_certificate_is_signed_by_its_ca_and_names_the_host() {
        let (ca_pem, chain, key) = generate(&["localhost".into()], &[IpAddr::from([127, 0, 0, 1])]).unwrap();
        let ca = X509::from_pem(&ca_pem).unwrap();
        let leaf = X509::stack_from_pem(&chain).unwrap().remove(0);
        assert!(leaf.verify(&ca.public_key().unwrap()).unwrap());
        let sans: Vec<String> = leaf
            .subject_alt_names()
            .unwrap()
            .iter()
            .map(|n| n.dnsname().map(str::to_string).unwrap_or_else(|| format!("{:?}", n.ipaddress())))
            .collect();
        assert!(sans.contains(&"localhost".to_string()), "{sans:?}");
        assert!(sans.iter().any(|s| s.contains("127, 0, 0, 1")), "{sans:?}");
        assert!(PKey::private_key_from_pem(&key).is_ok());
    }

    #[test]
    fn cipher_names_map_from_go_to_openssl() {
        assert_eq!(openssl_cipher_name("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"), Some("ECDHE-RSA-AES128-GCM-SHA256"));
        assert_eq!(openssl_cipher_name("TLS_AES_128_GCM_SHA256"), Some(""));
        assert_eq!(openssl_cipher_name("nope"), None);
    }
}
