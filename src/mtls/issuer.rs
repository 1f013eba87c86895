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
//!
//! Signer: a leaf costs one signature by the CA's key. Kuma's builtin CA key is RSA 2048
//! (and so are most provided ones), whose signature is ~1 ms of CPU: 10,000 leaves are
//! ~10 s of a core, the largest part of an mTLS cold start (BENCHMARKS.md). So higuma signs
//! leaves with an issuing intermediate of its own ([`Signer::for_ca`]): a P-256 key kept in
//! memory only, certified once by the CA (pathLen 0, valid for [`SIGNER_LIFETIME`] or the
//! CA's remaining life), whose certificate travels in every leaf's chain. Peers verify
//! leaf → intermediate → the mesh root they already trust, so nothing else changes: the
//! trust bundle is still the stored CA, another higuma or a kuma-cp on the same database
//! verifies the same way, and a CA rotation replaces the intermediate with the CA. A CA
//! whose key is already ECDSA, or whose pathLenConstraint forbids intermediates, signs
//! leaves itself.

use std::time::{Duration, SystemTime};

use openssl::asn1::Asn1Integer;
use openssl::bn::{BigNum, MsbOption};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{Id, PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509Builder, X509NameBuilder, X509};

use super::ca::{add_saturating, asn1_time, CaMaterial, CLOCK_SKEW};
use openssl::asn1::Asn1Time;
use std::time::UNIX_EPOCH;

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

/// How long an issuing intermediate is valid (at most the CA's remaining life, at least
/// twice the longest leaf asked of it). A week keeps the CA's RSA signature a rare event;
/// it lives only in this process's memory, so a restart makes a new one.
pub const SIGNER_LIFETIME: Duration = Duration::from_secs(7 * 86400);

/// What signs workload certificates: the mesh CA itself or an issuing intermediate it
/// certified (module docs).
pub struct Signer {
    cert: X509,
    key: PKey<Private>,
    /// The certificates that travel with every leaf after it (the intermediate, then the
    /// CA's own intermediates); empty when a lone root signs.
    pub chain_pem: Vec<u8>,
    /// Leaves must end before this.
    pub not_after: SystemTime,
    /// Ends with the CA: no later signer could cover longer leaves.
    capped: bool,
}

impl std::fmt::Debug for Signer {
    // The key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// `t`, read from an X.509 time (saturating at the epoch).
fn system_time(t: &openssl::asn1::Asn1TimeRef) -> Result<SystemTime, openssl::error::ErrorStack> {
    let diff = Asn1Time::from_unix(0)?.diff(t)?;
    let secs = i64::from(diff.days) * 86400 + i64::from(diff.secs);
    Ok(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).unwrap_or(0)))
}

impl Signer {
    /// The signer for `ca` from `now`, good for leaves of up to `lifetime`.
    pub fn for_ca(ca: &CaMaterial, now: SystemTime, lifetime: Duration) -> Result<Signer, openssl::error::ErrorStack> {
        let ca_not_after = system_time(ca.cert.not_after())?;
        // The CA's own intermediates travel with the leaf; a lone root stays out (peers have it).
        let ca_chain = if X509::stack_from_pem(&ca.chain_pem).map(|c| c.len()).unwrap_or(0) > 1 {
            ca.chain_pem.clone()
        } else {
            Vec::new()
        };
        let der = ca.cert.to_der()?;
        let may_certify = matches!(super::der::ca_path_len(&der), Some(None) | Some(Some(1..)));
        if ca.key.id() != Id::RSA || !may_certify {
            return Ok(Signer {
                cert: ca.cert.clone(),
                key: ca.key.clone(),
                chain_pem: ca_chain,
                not_after: ca_not_after,
                capped: true,
            });
        }
        let key = new_key(KeyKind::EcdsaP256)?;
        let wanted = SIGNER_LIFETIME.max(lifetime.saturating_mul(2));
        let not_after = add_saturating(now, wanted).min(ca_not_after);
        let mut name = X509NameBuilder::new()?;
        name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Kuma")?;
        name.append_entry_by_nid(Nid::ORGANIZATIONALUNITNAME, "Mesh")?;
        let cn = ca
            .cert
            .subject_name()
            .entries_by_nid(Nid::COMMONNAME)
            .next()
            .and_then(|e| e.data().to_string().ok())
            .unwrap_or_default();
        name.append_entry_by_nid(Nid::COMMONNAME, &format!("{cn} workload issuer"))?;
        let name = name.build();
        let mut b = X509Builder::new()?;
        b.set_version(2)?;
        let sn = serial()?;
        b.set_serial_number(&sn)?;
        b.set_subject_name(&name)?;
        b.set_issuer_name(ca.cert.subject_name())?;
        b.set_pubkey(&key)?;
        let (from, until) = (asn1_time(now.checked_sub(CLOCK_SKEW).unwrap_or(now))?, asn1_time(not_after)?);
        b.set_not_before(&from)?;
        b.set_not_after(&until)?;
        b.append_extension(BasicConstraints::new().critical().ca().pathlen(0).build()?)?;
        b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
        b.append_extension(SubjectKeyIdentifier::new().build(&b.x509v3_context(Some(&ca.cert), None))?)?;
        if ca.cert.subject_key_id().is_some() {
            let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&ca.cert), None))?;
            b.append_extension(aki)?;
        }
        b.sign(&ca.key, MessageDigest::sha256())?;
        let cert = b.build();
        let mut chain_pem = cert.to_pem()?;
        push_pem(&mut chain_pem, &ca_chain);
        let capped = not_after >= ca_not_after;
        Ok(Signer { cert, key, chain_pem, not_after, capped })
    }

    /// Whether this signer is as good as any for a leaf issued at `now` for `lifetime`: the
    /// leaf ends before it does, or it ends with the CA (leaves outliving their CA are the
    /// CA's matter, as they were before intermediates).
    pub fn covers(&self, now: SystemTime, lifetime: Duration) -> bool {
        self.capped || add_saturating(now, lifetime) + CLOCK_SKEW <= self.not_after
    }
}

/// Appends the PEM `pem` to `out` on a line of its own.
pub(super) fn push_pem(out: &mut Vec<u8>, pem: &[u8]) {
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(pem);
}

/// Whether the PEM chain `chain_pem` (the leaf first, then what travels with it) verifies
/// against `roots_pem` as the only trusted roots: what a peer does with the chain it is shown.
pub fn chain_verifies(chain_pem: &[u8], roots_pem: &[u8]) -> bool {
    use openssl::stack::Stack;
    use openssl::x509::store::X509StoreBuilder;
    use openssl::x509::X509StoreContext;
    let check = || -> Result<bool, openssl::error::ErrorStack> {
        let mut certs = X509::stack_from_pem(chain_pem)?.into_iter();
        let Some(leaf) = certs.next() else { return Ok(false) };
        let mut roots = X509StoreBuilder::new()?;
        for r in X509::stack_from_pem(roots_pem)? {
            roots.add_cert(r)?;
        }
        let roots = roots.build();
        let mut rest = Stack::new()?;
        for c in certs {
            rest.push(c)?;
        }
        X509StoreContext::new()?.init(&roots, &leaf, &rest, |c| c.verify_cert())
    };
    check().unwrap_or(false)
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
/// extended key usage (server and client auth), signed by `signer`.
pub fn issue(
    signer: &Signer,
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
    b.set_issuer_name(signer.cert.subject_name())?;
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
    let san = san.build(&b.x509v3_context(Some(&signer.cert), None))?;
    b.append_extension(san)?;
    if signer.cert.subject_key_id().is_some() {
        let aki = AuthorityKeyIdentifier::new().keyid(true).build(&b.x509v3_context(Some(&signer.cert), None))?;
        b.append_extension(aki)?;
    }
    b.sign(&signer.key, MessageDigest::sha256())?;
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
        let signer = Signer::for_ca(&ca, now, Duration::from_secs(86400)).unwrap();
        let issued = issue(&signer, &uris, Duration::from_secs(86400), now, WORKLOAD_KEY).unwrap();
        let cert = X509::from_pem(&issued.cert_pem).unwrap();
        let sans: Vec<String> =
            cert.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
        assert_eq!(sans, uris, "in Kuma's order");
        assert_eq!(cert.subject_name().entries().count(), 0, "no subject");
        // Signature links (the certificate is dated 2023, so no path validation at today's time).
        let inter = X509::from_pem(&signer.chain_pem).unwrap();
        assert!(cert.verify(&inter.public_key().unwrap()).unwrap(), "signed by the issuing intermediate");
        assert!(inter.verify(&ca.cert.public_key().unwrap()).unwrap(), "which the mesh CA certified");
        assert_eq!(cert.issuer_name().to_der().unwrap(), inter.subject_name().to_der().unwrap());
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
        let other = issue(&signer, &uris, Duration::from_secs(86400), now, WORKLOAD_KEY).unwrap();
        assert_ne!(other.serial, issued.serial, "random serials");
        assert_ne!(other.key_pem, issued.key_pem, "a new key per issuance");
        let key = PKey::private_key_from_pem(&issued.key_pem).unwrap();
        assert!(cert.public_key().unwrap().public_eq(&key));
        assert!(key.ec_key().is_ok(), "P-256");
    }

    /// The CA's own certificate signs, no intermediate.
    fn signs_itself(signer: &Signer, ca: &CaMaterial) -> bool {
        signer.cert.to_der().unwrap() == ca.cert.to_der().unwrap()
    }

    fn chains_to_root(leaf: &X509, signer: &Signer, ca: &CaMaterial) -> bool {
        let mut chain = leaf.to_pem().unwrap();
        chain.extend_from_slice(&signer.chain_pem);
        chain_verifies(&chain, &ca.cert.to_pem().unwrap())
    }

    #[test]
    fn an_rsa_ca_signs_through_a_p256_intermediate_that_outlives_its_leaves() {
        let now = SystemTime::now();
        let spec = crate::mtls::ca::RootSpec {
            common_name: "default",
            trust_domain: "default",
            rsa_bits: 2048,
            lifetime: Duration::from_secs(10 * 365 * 86400),
        };
        let (cert, key) = crate::mtls::ca::generate_root(&spec, now).unwrap();
        let long_ca = crate::mtls::ca::parse_pair(&cert, &key).unwrap();
        let short_ca = ca();
        let ca = long_ca;
        let signer = Signer::for_ca(&ca, now, Duration::from_secs(3600)).unwrap();
        assert!(!signs_itself(&signer, &ca));
        let inter = X509::from_pem(&signer.chain_pem).unwrap();
        assert!(inter.verify(&ca.cert.public_key().unwrap()).unwrap(), "certified by the mesh CA");
        assert!(inter.public_key().unwrap().ec_key().is_ok(), "P-256");
        let der = inter.to_der().unwrap();
        assert_eq!(der::ca_path_len(&der), Some(Some(0)), "a CA that can certify leaves only");
        assert!(inter.key_usage().unwrap().contains(X509KeyUsage::KEY_CERT_SIGN));
        assert!(signer.covers(now, Duration::from_secs(3600)));
        assert!(signer.covers(now, SIGNER_LIFETIME - Duration::from_secs(60)));
        assert!(!signer.covers(now, SIGNER_LIFETIME + Duration::from_secs(1)), "a longer leaf needs a new signer");
        let long = Signer::for_ca(&ca, now, SIGNER_LIFETIME * 3).unwrap();
        assert!(long.covers(now, SIGNER_LIFETIME * 3), "twice the longest leaf");
        let leaf =
            issue(&long, &["spiffe://default/web".to_string()], Duration::from_secs(60), now, WORKLOAD_KEY).unwrap();
        assert!(
            chains_to_root(&X509::from_pem(&leaf.cert_pem).unwrap(), &long, &ca),
            "a peer trusting the root accepts it"
        );
        // A CA ending within the wanted life caps the intermediate, which then covers any leaf.
        let capped = Signer::for_ca(&short_ca, now, Duration::from_secs(86400)).unwrap();
        assert!(!signs_itself(&capped, &short_ca) && capped.covers(now, Duration::from_secs(86400)));
    }

    #[test]
    fn an_ecdsa_ca_or_one_that_forbids_intermediates_signs_leaves_itself() {
        use openssl::x509::extension::BasicConstraints;
        let make = |ec: bool, pathlen: Option<u32>| {
            let key = if ec { new_key(KeyKind::EcdsaP256).unwrap() } else { new_key(KeyKind::Rsa2048).unwrap() };
            let mut name = X509NameBuilder::new().unwrap();
            name.append_entry_by_nid(Nid::COMMONNAME, "m").unwrap();
            let name = name.build();
            let mut b = X509Builder::new().unwrap();
            b.set_version(2).unwrap();
            b.set_subject_name(&name).unwrap();
            b.set_issuer_name(&name).unwrap();
            b.set_pubkey(&key).unwrap();
            b.set_not_before(&asn1_time(SystemTime::now()).unwrap()).unwrap();
            b.set_not_after(&asn1_time(SystemTime::now() + Duration::from_secs(86400)).unwrap()).unwrap();
            let mut bc = BasicConstraints::new();
            bc.critical().ca();
            if let Some(n) = pathlen {
                bc.pathlen(n);
            }
            b.append_extension(bc.build().unwrap()).unwrap();
            b.sign(&key, MessageDigest::sha256()).unwrap();
            let cert = b.build();
            crate::mtls::ca::parse_pair(&cert.to_pem().unwrap(), &key.private_key_to_pem_pkcs8().unwrap()).unwrap()
        };
        let now = SystemTime::now();
        for (ec, pathlen, itself) in [(true, None, true), (false, Some(0), true), (false, Some(1), false)] {
            let ca = make(ec, pathlen);
            let signer = Signer::for_ca(&ca, now, Duration::from_secs(3600)).unwrap();
            assert_eq!(signs_itself(&signer, &ca), itself, "ec {ec}, pathlen {pathlen:?}");
            let leaf =
                issue(&signer, &["spiffe://m/s".to_string()], Duration::from_secs(3600), now, WORKLOAD_KEY).unwrap();
            let leaf = X509::from_pem(&leaf.cert_pem).unwrap();
            assert!(chains_to_root(&leaf, &signer, &ca), "ec {ec}, pathlen {pathlen:?}");
        }
    }

    #[test]
    fn absurd_lifetimes_saturate_instead_of_overflowing() {
        let ca = ca();
        let now = SystemTime::now();
        let signer = Signer::for_ca(&ca, now, Duration::MAX).unwrap();
        let issued = issue(&signer, &["spiffe://m/s".to_string()], Duration::MAX, now, WORKLOAD_KEY).unwrap();
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
        let signer = Signer::for_ca(&ca, SystemTime::now(), Duration::from_secs(86400)).unwrap();
        for kind in [KeyKind::Rsa2048, KeyKind::EcdsaP256] {
            let n = 50;
            let started = Instant::now();
            let mut last = None;
            for _ in 0..n {
                last = Some(issue(&signer, &uris, Duration::from_secs(86400), SystemTime::now(), kind).unwrap());
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
