//! The certificate a control plane without `tlsCertFile` serves: a CA of its own and a
//! server certificate it signs, for the host's names and addresses. The CA's key is
//! dropped once the server certificate is signed, so only the server key lives on disk.
//!
//! Files in `general.workDir` (Kuma's names for the pair, plus the CA an operator hands to
//! `higuma dp run --ca-cert-file`):
//!
//! ```text
//! kuma-cp.crt     server certificate (PEM)
//! kuma-cp.key     its private key (PEM, mode 0600)
//! kuma-cp-ca.crt  the CA that signed it
//! ```
//!
//! An existing pair is reused, so a restart keeps the certificate every Envoy trusts.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use super::TlsError;

pub const CERT_FILE: &str = "kuma-cp.crt";
pub const KEY_FILE: &str = "kuma-cp.key";
pub const CA_FILE: &str = "kuma-cp-ca.crt";

/// Kuma's self-signed certificates last 10 years: a generated certificate is for setups
/// without a PKI, where expiry would only ever be an outage.
const VALIDITY_DAYS: u32 = 3650;

/// Where a generated (or reused) certificate lives.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GeneratedFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub ca: PathBuf,
}

/// Reuses the pair in `dir`, or generates one for `hosts` (DNS names and IP addresses).
pub fn ensure(dir: &Path, hosts: &[String]) -> Result<(GeneratedFiles, bool), TlsError> {
    let files = GeneratedFiles { cert: dir.join(CERT_FILE), key: dir.join(KEY_FILE), ca: dir.join(CA_FILE) };
    if files.cert.is_file() && files.key.is_file() && files.ca.is_file() {
        return Ok((files, false));
    }
    std::fs::create_dir_all(dir).map_err(|e| TlsError::io(dir, e))?;
    let (ca, cert, key) = generate(hosts).map_err(|e| TlsError::Generate(e.to_string()))?;
    write(&files.ca, &ca.to_pem().map_err(TlsError::openssl)?, 0o644)?;
    write(&files.key, &key.private_key_to_pem_pkcs8().map_err(TlsError::openssl)?, 0o600)?;
    // The certificate goes last: its presence is what marks the set as complete.
    write(&files.cert, &cert.to_pem().map_err(TlsError::openssl)?, 0o644)?;
    Ok((files, true))
}

fn write(path: &Path, bytes: &[u8], mode: u32) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| TlsError::io(&tmp, e))?;
    f.write_all(bytes).map_err(|e| TlsError::io(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(|e| TlsError::io(path, e))
}

/// This host's names and addresses: what a sidecar may use to reach the control plane.
pub fn local_hosts() -> Vec<String> {
    let mut hosts = vec![gethostname::gethostname().to_string_lossy().into_owned(), "localhost".to_string()];
    hosts.extend(local_addresses().into_iter().map(|ip| ip.to_string()));
    for fixed in ["127.0.0.1", "::1"] {
        hosts.push(fixed.to_string());
    }
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|h| !h.is_empty() && seen.insert(h.clone()));
    hosts
}

fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs allocates the list it returns through `head`; it is only read
    // here and released with freeifaddrs below, and each sockaddr is read according to
    // its sa_family.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(sin.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        let ip = std::net::Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                        // Link-local addresses need a zone, which a SAN cannot carry.
                        if (ip.segments()[0] & 0xffc0) != 0xfe80 {
                            out.push(IpAddr::V6(ip));
                        }
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out
}

fn new_key() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    // P-256: handshakes cost a fraction of RSA-2048's, which matters when a fleet
    // reconnects at once after a control-plane restart.
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut bn = BigNum::new()?;
    bn.rand(127, MsbOption::MAYBE_ZERO, false)?;
    bn.to_asn1_integer()
}

/// A CA, a server certificate for `hosts` signed by it, and the server's key.
pub fn generate(hosts: &[String]) -> Result<(X509, X509, PKey<Private>), openssl::error::ErrorStack> {
    let ca_key = new_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Higuma")?;
    name.append_entry_by_nid(Nid::COMMONNAME, "Higuma control plane CA")?;
    let ca_name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let sn = serial()?;
    b.set_serial_number(&sn)?;
    b.set_subject_name(&ca_name)?;
    b.set_issuer_name(&ca_name)?;
    b.set_pubkey(&ca_key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(VALIDITY_DAYS)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    let ca = b.build();

    let key = new_key()?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Higuma")?;
    name.append_entry_by_nid(Nid::COMMONNAME, hosts.first().map(String::as_str).unwrap_or("localhost"))?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let sn = serial()?;
    b.set_serial_number(&sn)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(ca.subject_name())?;
    b.set_pubkey(&key)?;
    let (from, until) = (Asn1Time::days_from_now(0)?, Asn1Time::days_from_now(VALIDITY_DAYS)?);
    b.set_not_before(&from)?;
    b.set_not_after(&until)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    for h in hosts {
        if h.parse::<IpAddr>().is_ok() {
            san.ip(h);
        } else {
            san.dns(h);
        }
    }
    let san = san.build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&ca), None))?;
    b.append_extension(aki)?;
    b.sign(&ca_key, MessageDigest::sha256())?;
    Ok((ca, b.build(), key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_certificate_verifies_against_its_ca_and_names_the_hosts() {
        let hosts = vec!["cp.example".to_string(), "127.0.0.1".to_string()];
        let (ca, cert, key) = generate(&hosts).unwrap();
        assert!(cert.verify(&ca.public_key().unwrap()).unwrap());
        assert!(cert.public_key().unwrap().public_eq(&key));
        let sans = super::super::sans(&cert);
        assert_eq!(sans, hosts);
    }

    #[test]
    fn ensure_generates_once_and_reuses() {
        let dir = tempfile::tempdir().unwrap();
        let (files, created) = ensure(dir.path(), &["localhost".to_string()]).unwrap();
        assert!(created);
        let first = std::fs::read(&files.cert).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&files.key).unwrap().permissions().mode() & 0o777, 0o600);
        let (again, created) = ensure(dir.path(), &["localhost".to_string()]).unwrap();
        assert!(!created);
        assert_eq!(again, files);
        assert_eq!(std::fs::read(&files.cert).unwrap(), first);
    }
}
