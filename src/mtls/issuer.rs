//! Workload certificates (Kuma's `pkg/core/ca/issuer`): a new key per issuance, no subject,
//! the identity in URI SANs, signed by the mesh CA.
//!
//! Key type: Kuma uses RSA 2048; higuma issues ECDSA P-256 keys. Measured on this project's
//! shared 2-core machine (`cargo test --lib bench_workload_key_types -- --ignored
//! --nocapture`; the work is OpenSSL's C code, so a debug build measures it too; figures in
//! README.md): an RSA 2048 key and its certificate took ~446 ms (key generation searches for
//! primes: its cost varies widely), a P-256 one ~1.3 ms; a full TLS 1.3 handshake with the
//! leaf ~4.5 ms against ~3.2 ms. Issuance is what decides it: a cold start or a fleet-wide
//! rotation of 10,000 dataplanes is ~13 s of one core with P-256 and over an hour with RSA.
//! Envoy, Go's TLS stack and kuma-dp accept P-256 leaves under an RSA CA, so a mixed fleet
//! (some dataplanes served by kuma-cp) interoperates: both verify against the same root.

use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1Integer;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName,
};
use openssl::x509::{X509Builder, X509NameBuilder};

use super::ca::{add_saturating, asn1_time, CaMaterial, CLOCK_SKEW};

/// The key type of a workload certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyKind {
    EcdsaP256,
    Rsa2048,
}

/// What higuma issues (see the module docs for the measurements behind the choice).
pub const WORKLOAD_KEY: KeyKind = KeyKind::EcdsaP256;

/// An issued certificate and its key, PEM.
pub struct WorkloadCert {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub not_after: SystemTime,
    /// Hex, for logs and tests.
    pub serial: String,
}

impl std::fmt::Debug for WorkloadCert {
    // The key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkloadCert")
            .field("serial", &self.serial)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

pub fn new_key(kind: KeyKind) -> Result<PKey<Private>, openssl::error::ErrorStack> {
    match kind {
        KeyKind::EcdsaP256 => {
            let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
            PKey::from_ec_key(EcKey::generate(&group)?)
        }
        KeyKind::Rsa2048 => PKey::from_rsa(Rsa::generate(2048)?),
    }
}

/// A random serial in [1, 2^128 − 1], as Kuma's issuer draws it.
fn serial() -> Result<Asn1Integer, openssl::error::ErrorStack> {
    loop {
        let mut bn = BigNum::new()?;
        bn.rand(128, MsbOption::MAYBE_ZERO, false)?;
        if bn.num_bits() > 0 {
            return bn.to_asn1_integer();
        }
    }
}

/// A certificate for `uris` (the first one is the SPIFFE id), valid from now − 10 s for
/// `lifetime`, with Kuma's key usage (digitalSignature, keyEncipherment, keyAgreement) and
/// extended key usage (server and client auth), signed by `ca`.
pub fn issue(
    ca: &CaMaterial,
    uris: &[String],
    lifetime: Duration,
    now: SystemTime,
    kind: KeyKind,
) -> Result<WorkloadCert, openssl::error::ErrorStack> {
    let key = new_key(kind)?;
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let sn = serial()?;
    b.set_serial_number(&sn)?;
    // No subject, as Kuma: the identity is in the SANs, which are then critical (RFC 5280
    // §4.2.1.6), as Go marks them.
    b.set_subject_name(&X509NameBuilder::new()?.build())?;
    b.set_issuer_name(ca.cert.subject_name())?;
    b.set_pubkey(&key)?;
    let not_after = add_saturating(now, lifetime);
    let not_before = asn1_time(now.checked_sub(CLOCK_SKEW).unwrap_or(now))?;
    b.set_not_before(&not_before)?;
    let not_after_asn1 = asn1_time(not_after)?;
    b.set_not_after(&not_after_asn1)?;
    b.append_extension(BasicConstraints::new().critical().build()?)?;
    b.append_extension(KeyUsage::new().critical().digital_signature().key_encipherment().key_agreement().build()?)?;
    b.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
    let mut san = SubjectAlternativeName::new();
    san.critical();
    for u in uris {
        san.uri(u);
    }
    let san = san.build(&b.x509v3_context(Some(&ca.cert), None))?;
    b.append_extension(san)?;
    if ca.cert.subject_key_id().is_some() {
        let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&ca.cert), None))?;
        b.append_extension(aki)?;
    }
    b.sign(&ca.key, MessageDigest::sha256())?;
    let cert = b.build();
    let serial = cert.serial_number().to_bn()?.to_hex_str()?.to_string();
    Ok(WorkloadCert { cert_pem: cert.to_pem()?, key_pem: key.private_key_to_pem_pkcs8()?, not_after, serial })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mtls::ca::{parse_pair, tests::test_root};
    use crate::mtls::der;
    use openssl::x509::{X509KeyUsage, X509};
    use std::time::UNIX_EPOCH;

    fn ca() -> CaMaterial {
        let (c, k) = test_root();
        parse_pair(c, k).unwrap()
    }

    #[test]
    fn workload_certificate_has_kumas_sans_usage_validity_and_serial() {
        let ca = ca();
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let uris = vec![
            "spiffe://default/web".to_string(),
            "kuma://kuma.io/service/web".to_string(),
            "kuma://version/1.0".to_string(),
        ];
        let issued = issue(&ca, &uris, Duration::from_secs(86400), now, WORKLOAD_KEY).unwrap();
        let cert = X509::from_pem(&issued.cert_pem).unwrap();
        let sans: Vec<String> =
            cert.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
        assert_eq!(sans, uris, "in Kuma's order");
        assert_eq!(cert.subject_name().entries().count(), 0, "no subject");
        assert!(cert.verify(&ca.cert.public_key().unwrap()).unwrap(), "signed by the mesh CA");
        assert_eq!(cert.not_before(), &*asn1_time(now - Duration::from_secs(10)).unwrap());
        assert_eq!(cert.not_after(), &*asn1_time(now + Duration::from_secs(86400)).unwrap());
        assert_eq!(issued.not_after, now + Duration::from_secs(86400));
        assert_eq!(
            cert.key_usage(),
            Some(X509KeyUsage::DIGITAL_SIGNATURE | X509KeyUsage::KEY_ENCIPHERMENT | X509KeyUsage::KEY_AGREEMENT)
        );
        let eku = cert.extended_key_usage().unwrap();
        assert!(eku.contains(
            openssl::x509::X509ExtendedKeyUsage::SSL_SERVER | openssl::x509::X509ExtendedKeyUsage::SSL_CLIENT
        ));
        let der = cert.to_der().unwrap();
        assert!(!der::is_ca(&der));
        let san = der::extensions(&der).unwrap().into_iter().find(|e| e.oid == der::OID_SUBJECT_ALT_NAME).unwrap();
        assert!(san.critical, "no subject: the SANs are critical");
        let sn = cert.serial_number().to_bn().unwrap();
        assert!(sn.num_bits() >= 1 && sn.num_bits() <= 128, "{} bits", sn.num_bits());
        let other = issue(&ca, &uris, Duration::from_secs(86400), now, WORKLOAD_KEY).unwrap();
        assert_ne!(other.serial, issued.serial, "random serials");
        assert_ne!(other.key_pem, issued.key_pem, "a new key per issuance");
        let key = PKey::private_key_from_pem(&issued.key_pem).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert!(key.ec_key().is_ok(), "P-256");
    }

    #[test]
    fn absurd_lifetimes_saturate_instead_of_overflowing() {
        let ca = ca();
        let issued = issue(&ca, &["spiffe://m/s".to_string()], Duration::MAX, SystemTime::now(), WORKLOAD_KEY).unwrap();
        let cert = X509::from_pem(&issued.cert_pem).unwrap();
        assert!(cert.not_after().to_string().contains("9999"), "{}", cert.not_after());
    }

    /// RSA 2048 (Kuma's) against ECDSA P-256: issuance and the server's handshake cost.
    /// Not a timed assertion; run with `cargo test --lib bench_workload_key_types -- --ignored
    /// --nocapture` and read the figures (recorded in README.md).
    #[test]
    #[ignore]
    fn bench_workload_key_types() {
        use openssl::ssl::{SslAcceptor, SslConnector, SslMethod, SslVerifyMode};
        use std::time::Instant;
        let ca = ca();
        let uris = vec!["spiffe://default/web".to_string()];
        for kind in [KeyKind::Rsa2048, KeyKind::EcdsaP256] {
            let n = 50;
            let started = Instant::now();
            let mut last = None;
            for _ in 0..n {
                last = Some(issue(&ca, &uris, Duration::from_secs(86400), SystemTime::now(), kind).unwrap());
            }
            let issuance = started.elapsed() / n;
            let w = last.unwrap();
            let cert = X509::from_pem(&w.cert_pem).unwrap();
            let key = PKey::private_key_from_pem(&w.key_pem).unwrap();
            let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls()).unwrap();
            acceptor.set_certificate(&cert).unwrap();
            acceptor.set_private_key(&key).unwrap();
            let acceptor = acceptor.build();
            let mut connector = SslConnector::builder(SslMethod::tls()).unwrap();
            connector.set_verify(SslVerifyMode::NONE);
            let connector = connector.build();
            let handshakes = 200;
            let started = Instant::now();
            for _ in 0..handshakes {
                let (a, b) = std::os::unix::net::UnixStream::pair().unwrap();
                let acc = acceptor.clone();
                let server = std::thread::spawn(move || acc.accept(a).map(drop).is_ok());
                let mut cfg = connector.configure().unwrap();
                cfg.set_verify_hostname(false);
                assert!(cfg.connect("x", b).is_ok());
                assert!(server.join().unwrap());
            }
            let handshake = started.elapsed() / handshakes;
            println!("{kind:?}: issuance {issuance:?} per certificate, full TLS 1.3 handshake {handshake:?} (client and server on one host)");
        }
    }
}
