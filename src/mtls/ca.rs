//! Mesh CAs: the builtin CA Kuma generates (and stores as two Secrets, so a kuma-cp or a
//! second higuma on the same database uses the very same one), a provided CA's key pair,
//! and Kuma's checks of a CA certificate.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openssl::asn1::{Asn1Integer, Asn1Time};
use openssl::bn::BigNum;
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::extension::{BasicConstraints, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier};
use openssl::x509::{X509Builder, X509KeyUsage, X509NameBuilder, X509};

use super::backend::BuiltinConf;
use super::{der, names, MtlsError};
use crate::model::secret::SecretSpec;
use crate::model::{ResourceKey, ResourceType, Spec, ValidationError};
use crate::store::{ResourceReader, ResourceStore, StoreError};

/// Kuma backdates every certificate by this much, so a peer whose clock runs slightly
/// behind accepts a certificate issued a moment ago (`DefaultAllowedClockSkew`).
pub const CLOCK_SKEW: Duration = Duration::from_secs(10);
/// The latest time X.509 can carry (9999-12-31T23:59:59Z); lifetimes beyond it saturate.
const MAX_UNIX_TIME: i64 = 253_402_300_799;

/// A CA that can sign: its certificate chain as stored (the signer first), the signer, and
/// its key.
pub struct CaMaterial {
    /// The PEM the CA was given as (the bundle dataplanes trust).
    pub chain_pem: Vec<u8>,
    pub cert: X509,
    pub key: PKey<Private>,
    /// Identifies this version of the CA (certificate and key bytes).
    pub fingerprint: u64,
}

impl std::fmt::Debug for CaMaterial {
    // The key never reaches a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaMaterial").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// An `Asn1Time` for `t`, saturating at the ends X.509 can carry.
pub fn asn1_time(t: SystemTime) -> Result<Asn1Time, openssl::error::ErrorStack> {
    let secs = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(MAX_UNIX_TIME).min(MAX_UNIX_TIME),
        Err(_) => 0,
    };
    Asn1Time::from_unix(secs)
}

/// `now + d`, saturating instead of overflowing `SystemTime`.
pub fn add_saturating(now: SystemTime, d: Duration) -> SystemTime {
    let max = UNIX_EPOCH + Duration::from_secs(MAX_UNIX_TIME as u64);
    now.checked_add(d).map_or(max, |t| t.min(max))
}

/// Go's `tls.X509KeyPair`: the PEM certificates (the first is the signer) and a private key
/// that belongs to the first one.
pub fn parse_pair(cert_pem: &[u8], key_pem: &[u8]) -> Result<CaMaterial, String> {
    let chain = X509::stack_from_pem(cert_pem).map_err(|e| format!("failed to parse certificate PEM: {e}"))?;
    let Some(cert) = chain.first().cloned() else {
        return Err("failed to find any PEM data in certificate input".to_string());
    };
    let key = PKey::private_key_from_pem(key_pem).map_err(|e| format!("failed to parse private key PEM: {e}"))?;
    let public = cert.public_key().map_err(|e| format!("failed to read the certificate's public key: {e}"))?;
    if !public.public_eq(&key) {
        return Err("private key does not match public key".to_string());
    }
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(cert_pem);
    h.update(&[0]);
    h.update(key_pem);
    Ok(CaMaterial { chain_pem: cert_pem.to_vec(), cert, key, fingerprint: h.digest() })
}

/// Kuma's provided-CA check (`provided/ca_cert_validator.go`) under `at` (the backend's
/// `conf`): a valid key pair, and every certificate a CA (X509-SVID §4.1) whose key usage
/// has keyCertSign (§4.3) and lacks keyAgreement (Appendix A).
pub fn check_ca_pair(cert_pem: &[u8], key_pem: &[u8], errors: &mut ValidationError, at: &str) {
    if let Err(e) = parse_pair(cert_pem, key_pem) {
        errors.add(format!("{at}.cert"), format!("not a valid TLS key pair: {e}"));
        return;
    }
    let chain = X509::stack_from_pem(cert_pem).unwrap_or_default();
    for (i, cert) in chain.iter().enumerate() {
        let path = format!("{at}.cert[{i}]");
        let der = match cert.to_der() {
            Ok(d) => d,
            Err(e) => {
                errors.add(path, format!("not a valid x509 certificate: {e}"));
                return;
            }
        };
        if !der::is_ca(&der) {
            errors.add(&path, "basic constraint 'CA' must be set to 'true' (see X509-SVID: 4.1. Basic Constraints)");
        }
        let usage = cert.key_usage().unwrap_or(X509KeyUsage::empty());
        if !usage.contains(X509KeyUsage::KEY_CERT_SIGN) {
            errors.add(&path, "key usage extension 'keyCertSign' must be set (see X509-SVID: 4.3. Key Usage)");
        }
        if usage.contains(X509KeyUsage::KEY_AGREEMENT) {
            errors.add(
                &path,
                "key usage extension 'keyAgreement' must NOT be set (see X509-SVID: Appendix A. X.509 Field Reference)",
            );
        }
    }
}

/// What a generated root is made of.
pub struct RootSpec<'a> {
    /// `CN`: the mesh (Mesh.mtls) or the trust domain (MeshIdentity).
    pub common_name: &'a str,
    /// The trust domain, the root's URI SAN `spiffe://<trust domain>`.
    pub trust_domain: &'a str,
    pub rsa_bits: u32,
    pub lifetime: Duration,
}

/// A self-signed root as Kuma's builtin CA makes it (pkg/plugins/ca/builtin/ca.go): RSA,
/// Subject `O=Kuma, OU=Mesh, CN=<name>`, serial 0, URI SAN `spiffe://<trust domain>`,
/// valid from now − 10 s for `lifetime`, keyCertSign and cRLSign, a CA. Returns the
/// certificate PEM and the PKCS#1 key PEM (`RSA PRIVATE KEY`), as Kuma stores them.
pub fn generate_root(spec: &RootSpec<'_>, now: SystemTime) -> Result<(Vec<u8>, Vec<u8>), openssl::error::ErrorStack> {
    let rsa = Rsa::generate(spec.rsa_bits)?;
    let key_pem = rsa.private_key_to_pem()?;
    let key = PKey::from_rsa(rsa)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Kuma")?;
    name.append_entry_by_nid(Nid::ORGANIZATIONALUNITNAME, "Mesh")?;
    name.append_entry_by_nid(Nid::COMMONNAME, spec.common_name)?;
    let name = name.build();
    let mut b = X509Builder::new()?;
    b.set_version(2)?;
    let serial: Asn1Integer = BigNum::from_u32(0)?.to_asn1_integer()?;
    b.set_serial_number(&serial)?;
    b.set_subject_name(&name)?;
    b.set_issuer_name(&name)?;
    b.set_pubkey(&key)?;
    let not_before = asn1_time(now.checked_sub(CLOCK_SKEW).unwrap_or(now))?;
    b.set_not_before(&not_before)?;
    let not_after = asn1_time(add_saturating(now, spec.lifetime))?;
    b.set_not_after(&not_after)?;
    b.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    b.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let san = SubjectAlternativeName::new()
        .uri(&format!("spiffe://{}", spec.trust_domain))
        .build(&b.x509v3_context(None, None))?;
    b.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&b.x509v3_context(None, None))?;
    b.append_extension(ski)?;
    b.sign(&key, MessageDigest::sha256())?;
    Ok((b.build().to_pem()?, key_pem))
}

fn secret_key(mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(ResourceType::Secret, mesh, name)
}

fn secret_bytes(r: &crate::model::Resource) -> &[u8] {
    match &r.spec {
        Spec::Secret(s) => s.bytes(),
        _ => &[],
    }
}

/// Creates `mesh`'s builtin CA of `backend` unless its certificate Secret exists; returns
/// whether it created one. A CA already in the store is used as is.
pub fn ensure_builtin(
    store: &dyn ResourceStore,
    mesh: &str,
    backend: &str,
    conf: &BuiltinConf,
    now: SystemTime,
) -> Result<bool, MtlsError> {
    let spec = RootSpec { common_name: mesh, trust_domain: mesh, rsa_bits: conf.rsa_bits(), lifetime: conf.lifetime() };
    ensure_pair(
        store,
        mesh,
        &names::builtin_cert_secret(mesh, backend),
        &names::builtin_key_secret(mesh, backend),
        &spec,
        now,
    )
}

/// Creates a generated CA as the Secrets `cert_name` and `key_name` of `mesh` unless the
/// certificate exists; returns whether it created one.
///
/// Like Kuma, the certificate is written first and then the key: a creator that loses the
/// race for the certificate (another higuma, or kuma-cp, on the same database) writes
/// nothing more, so the two Secrets always come from one creator.
pub fn ensure_pair(
    store: &dyn ResourceStore,
    mesh: &str,
    cert_name: &str,
    key_name: &str,
    spec: &RootSpec<'_>,
    now: SystemTime,
) -> Result<bool, MtlsError> {
    match store.get(&secret_key(mesh, cert_name)) {
        Ok(_) => return Ok(false),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (cert_pem, key_pem) =
        generate_root(spec, now).map_err(|source| MtlsError::Crypto { what: "a mesh CA", source })?;
    match store.create(mesh, cert_name, Spec::Secret(SecretSpec::new(cert_pem.clone()))) {
        Ok(_) => {}
        Err(StoreError::AlreadyExists(_)) => return Ok(false),
        Err(e) => return Err(e.into()),
    }
    let key_spec = Spec::Secret(SecretSpec::new(key_pem));
    match store.create(mesh, key_name, key_spec.clone()) {
        Ok(_) => {}
        // A key left behind by a CA whose certificate was deleted: ours replaces it, since
        // the certificate just written is the one dataplanes will be issued from.
        Err(StoreError::AlreadyExists(_)) => {
            let current = store.get(&secret_key(mesh, key_name))?;
            if parse_pair(&cert_pem, secret_bytes(&current)).is_err() {
                store.update(&secret_key(mesh, key_name), key_spec, current.meta.version)?;
            }
        }
        Err(e) => return Err(e.into()),
    }
    log::info!("mtls: created a CA in mesh {mesh:?}: Secrets {cert_name:?} and {key_name:?}");
    Ok(true)
}

/// Loads `mesh`'s builtin CA of `backend` from its Secrets.
pub fn load_builtin(reader: &dyn ResourceReader, mesh: &str, backend: &str) -> Result<CaMaterial, MtlsError> {
    load_pair(reader, mesh, &names::builtin_cert_secret(mesh, backend), &names::builtin_key_secret(mesh, backend))
}

/// Loads a CA stored as the Secrets `cert_name` and `key_name` of `mesh`.
pub fn load_pair(
    reader: &dyn ResourceReader,
    mesh: &str,
    cert_name: &str,
    key_name: &str,
) -> Result<CaMaterial, MtlsError> {
    let read = |name: &str| match reader.get(&secret_key(mesh, name)) {
        Ok(r) => Ok(Some(secret_bytes(&r).to_vec())),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(MtlsError::from(e)),
    };
    match (read(cert_name)?, read(key_name)?) {
        (Some(cert), Some(key)) => parse_pair(&cert, &key).map_err(|e| {
            MtlsError::Ca(format!("the CA in Secrets {cert_name:?} and {key_name:?} of mesh {mesh:?} is invalid: {e}"))
        }),
        (None, _) => Err(MtlsError::Ca(format!("Secret {cert_name:?} of mesh {mesh:?} does not exist"))),
        (Some(_), None) => Err(MtlsError::Ca(format!(
            "Secret {key_name:?} of mesh {mesh:?} does not exist (yet: the CA may be being created)"
        ))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::MemoryStore;
    use std::sync::OnceLock;

    /// A test root (RSA 2048 is slow to generate in bulk: one per test binary).
    pub fn test_root() -> &'static (Vec<u8>, Vec<u8>) {
        static ROOT: OnceLock<(Vec<u8>, Vec<u8>)> = OnceLock::new();
        ROOT.get_or_init(|| {
            let spec = RootSpec {
                common_name: "default",
                trust_domain: "default",
                rsa_bits: 2048,
                lifetime: Duration::from_secs(3600),
            };
            generate_root(&spec, SystemTime::now()).unwrap()
        })
    }

    #[test]
    fn builtin_root_has_kumas_fields() {
        let now = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let spec = RootSpec {
            common_name: "mesh-1",
            trust_domain: "mesh-1",
            rsa_bits: 2048,
            lifetime: Duration::from_secs(10 * 365 * 86400),
        };
        let (cert_pem, key_pem) = generate_root(&spec, now).unwrap();
        assert!(String::from_utf8_lossy(&key_pem).starts_with("-----BEGIN RSA PRIVATE KEY-----"), "PKCS#1 as Kuma");
        let cert = X509::from_pem(&cert_pem).unwrap();
        let subject: Vec<(String, String)> = cert
            .subject_name()
            .entries()
            .map(|e| (e.object().nid().short_name().unwrap().to_string(), e.data().to_string().unwrap()))
            .collect();
        assert_eq!(
            subject,
            [("O".into(), "Kuma".into()), ("OU".into(), "Mesh".into()), ("CN".into(), "mesh-1".into())]
        );
        assert_eq!(cert.serial_number().to_bn().unwrap(), BigNum::from_u32(0).unwrap(), "serial 0 as Kuma");
        let sans: Vec<String> =
            cert.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
        assert_eq!(sans, ["spiffe://mesh-1"]);
        assert_eq!(cert.not_before(), &*asn1_time(now - CLOCK_SKEW).unwrap());
        assert_eq!(cert.not_after(), &*asn1_time(now + Duration::from_secs(10 * 365 * 86400)).unwrap());
        let der = cert.to_der().unwrap();
        assert!(der::is_ca(&der));
        let exts = der::extensions(&der).unwrap();
        let bc = exts.iter().find(|e| e.oid == der::OID_BASIC_CONSTRAINTS).unwrap();
        let ku = exts.iter().find(|e| e.oid == der::OID_KEY_USAGE).unwrap();
        assert!(bc.critical && ku.critical, "as Go marks them");
        assert_eq!(cert.key_usage(), Some(X509KeyUsage::KEY_CERT_SIGN | X509KeyUsage::CRL_SIGN));
        assert!(cert.verify(&cert.public_key().unwrap()).unwrap(), "self-signed");
        let mut errors = ValidationError::default();
        check_ca_pair(&cert_pem, &key_pem, &mut errors, "conf");
        assert!(errors.is_empty(), "{errors}");
    }

    #[test]
    fn a_leaf_or_a_mismatched_key_is_refused_with_kumas_messages() {
        let (ca_pem, ca_key) = test_root();
        // A certificate that is not a CA (the DP server's generated one).
        let (_, leaf, leaf_key) = crate::tls::generate::generate(&["x".to_string()]).unwrap();
        let mut errors = ValidationError::default();
        check_ca_pair(&leaf.to_pem().unwrap(), &leaf_key.private_key_to_pem_pkcs8().unwrap(), &mut errors, "c");
        let reasons: Vec<(&str, &str)> =
            errors.violations.iter().map(|v| (v.field.as_str(), v.reason.as_str())).collect();
        assert!(
            reasons.iter().any(|(f, r)| *f == "c.cert[0]" && r.contains("basic constraint 'CA' must be set to 'true'")),
            "{reasons:?}"
        );
        assert!(
            reasons.iter().any(|(f, r)| *f == "c.cert[0]" && r.contains("'keyCertSign' must be set")),
            "{reasons:?}"
        );
        let mut errors = ValidationError::default();
        check_ca_pair(ca_pem, &leaf_key.private_key_to_pem_pkcs8().unwrap(), &mut errors, "c");
        assert_eq!(errors.violations[0].field, "c.cert");
        assert!(errors.violations[0].reason.contains("not a valid TLS key pair"), "{errors}");
        let mut errors = ValidationError::default();
        check_ca_pair(
            b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n",
            ca_key,
            &mut errors,
            "c",
        );
        assert!(errors.violations[0].reason.contains("not a valid TLS key pair"), "{errors}");
    }

    #[test]
    fn ensure_creates_once_and_a_stored_ca_is_used_as_is() {
        let store = MemoryStore::new();
        store.create("", "m", Spec::Mesh(Default::default())).unwrap();
        assert!(ensure_builtin(&store, "m", "ca-1", &BuiltinConf::default(), SystemTime::now()).unwrap());
        let first = load_builtin(&store, "m", "ca-1").unwrap();
        assert!(!ensure_builtin(&store, "m", "ca-1", &BuiltinConf::default(), SystemTime::now()).unwrap());
        assert_eq!(load_builtin(&store, "m", "ca-1").unwrap().fingerprint, first.fingerprint);
        // A CA somebody else wrote (kuma-cp) is used as is.
        let (cert, key) = test_root();
        store
            .create("m", &names::builtin_cert_secret("m", "ca-2"), Spec::Secret(SecretSpec::new(cert.clone())))
            .unwrap();
        store.create("m", &names::builtin_key_secret("m", "ca-2"), Spec::Secret(SecretSpec::new(key.clone()))).unwrap();
        assert!(!ensure_builtin(&store, "m", "ca-2", &BuiltinConf::default(), SystemTime::now()).unwrap());
        assert_eq!(load_builtin(&store, "m", "ca-2").unwrap().chain_pem, *cert);
        // A certificate without its key yet: another creator is half-way.
        store
            .create("m", &names::builtin_cert_secret("m", "ca-3"), Spec::Secret(SecretSpec::new(cert.clone())))
            .unwrap();
        assert!(!ensure_builtin(&store, "m", "ca-3", &BuiltinConf::default(), SystemTime::now()).unwrap());
        let err = load_builtin(&store, "m", "ca-3").unwrap_err().to_string();
        assert!(err.contains("ca-builtin-key-ca-3"), "{err}");
    }
}
