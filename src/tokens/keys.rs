//! A mesh's dataplane-token signing keys and revocation list, stored as Kuma stores them:
//! Secrets `dataplane-token-signing-key-<mesh>-<kid>` (an RSA private key, PEM) and
//! `dataplane-token-revocations-<mesh>` (revoked token ids, comma-separated), so a
//! database shared with kuma-cp means the same keys to both.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use openssl::pkey::{PKey, Private, Public};
use openssl::rsa::Rsa;

use super::TokenError;
use crate::model::secret::SecretSpec;
use crate::model::{Resource, ResourceKey, ResourceType, Spec};
use crate::store::{ResourceReader, ResourceStore, StoreError};

/// Kuma's default key id: the key a new mesh gets.
pub const DEFAULT_KID: u32 = 1;
/// Kuma's key size (`util_rsa.DefaultKeySize`).
const RSA_BITS: u32 = 2048;

/// `dataplane-token-signing-key-<mesh>`; a key's Secret appends `-<kid>`.
pub fn signing_key_prefix(mesh: &str) -> String {
    format!("dataplane-token-signing-key-{mesh}")
}

pub fn signing_key_name(mesh: &str, kid: u32) -> String {
    format!("{}-{kid}", signing_key_prefix(mesh))
}

pub fn revocations_name(mesh: &str) -> String {
    format!("dataplane-token-revocations-{mesh}")
}

/// Whether a change to Secret `name` in `mesh` can change which tokens are valid there.
pub fn affects_tokens(mesh: &str, name: &str) -> bool {
    name == revocations_name(mesh) || name.starts_with(&format!("{}-", signing_key_prefix(mesh)))
}

/// The kid of Secret `name` if it is one of `mesh`'s signing keys.
fn kid_of(mesh: &str, name: &str) -> Option<u32> {
    let rest = name.strip_prefix(&signing_key_prefix(mesh))?.strip_prefix('-')?;
    if rest.is_empty() || !rest.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    rest.parse().ok()
}

fn secret_bytes(r: &Resource) -> &[u8] {
    match &r.spec {
        Spec::Secret(s) => s.bytes(),
        _ => &[],
    }
}

/// A signing key as Kuma stores it: PEM (PKCS#1 or PKCS#8), or bare PKCS#1 DER as keys of
/// old Kuma versions are.
fn private_key(bytes: &[u8]) -> Result<PKey<Private>, TokenError> {
    let rsa = if bytes.starts_with(b"-----") {
        PKey::private_key_from_pem(bytes).and_then(|k| k.rsa())
    } else {
        Rsa::private_key_from_der(bytes)
    };
    rsa.and_then(PKey::from_rsa).map_err(|e| TokenError::BadKey(e.to_string()))
}

/// The validating half of one signing key.
pub struct VerifyKey {
    pub key: PKey<Public>,
    /// Hash of the stored bytes: a token verified against another version of the key is
    /// verified again.
    pub fingerprint: u64,
}

/// What validating a mesh's tokens needs, read in one go.
#[derive(Default)]
pub struct MeshKeys {
    pub keys: BTreeMap<u32, VerifyKey>,
    pub revoked: HashSet<String>,
}

/// Reads `mesh`'s signing keys and revocation list (one list of the mesh's Secrets, as
/// Kuma's revocation check does, because that list is usually in the cache already).
pub fn load<R: ResourceReader + ?Sized>(reader: &R, mesh: &str) -> Result<MeshKeys, TokenError> {
    let secrets = reader.list(ResourceType::Secret, Some(mesh)).map_err(TokenError::Store)?;
    let mut out = MeshKeys::default();
    let revocations = revocations_name(mesh);
    for s in &secrets {
        if s.meta.name == revocations {
            out.revoked = parse_revocations(secret_bytes(s));
        } else if let Some(kid) = kid_of(mesh, &s.meta.name) {
            let bytes = secret_bytes(s);
            // A key that does not parse is skipped: tokens naming it fail as "no such key"
            // and the log says why, instead of one bad Secret disabling the whole mesh.
            match private_key(bytes).and_then(|k| public_of(&k)) {
                Ok(key) => {
                    out.keys.insert(kid, VerifyKey { key, fingerprint: fingerprint(bytes) });
                }
                Err(e) => log::warn!("tokens: Secret {:?} in mesh {mesh:?} is not an RSA key: {e}", s.meta.name),
            }
        }
    }
    Ok(out)
}

fn public_of(key: &PKey<Private>) -> Result<PKey<Public>, TokenError> {
    let der = key.public_key_to_der().map_err(TokenError::crypto)?;
    PKey::public_key_from_der(&der).map_err(TokenError::crypto)
}

fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Kuma's format: ids separated by commas, a trailing newline tolerated.
pub fn parse_revocations(data: &[u8]) -> HashSet<String> {
    String::from_utf8_lossy(data)
        .trim_end_matches('\n')
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The newest signing key of `mesh` (highest kid), creating the default one if the mesh has
/// none yet, as Kuma issues with "the latest signing key".
pub fn latest_or_create(store: &dyn ResourceStore, mesh: &str) -> Result<(u32, PKey<Private>), TokenError> {
    if let Some(found) = latest(store, mesh)? {
        return Ok(found);
    }
    ensure_signing_key(store, mesh)?;
    latest(store, mesh)?.ok_or_else(|| TokenError::NoSigningKey { mesh: mesh.to_string(), kid: DEFAULT_KID })
}

fn latest(store: &dyn ResourceStore, mesh: &str) -> Result<Option<(u32, PKey<Private>)>, TokenError> {
    let secrets = store.list(ResourceType::Secret, Some(mesh)).map_err(TokenError::Store)?;
    let newest: Option<(u32, &Arc<Resource>)> =
        secrets.iter().filter_map(|s| kid_of(mesh, &s.meta.name).map(|kid| (kid, s))).max_by_key(|(kid, _)| *kid);
    match newest {
        Some((kid, s)) => Ok(Some((kid, private_key(secret_bytes(s))?))),
        None => Ok(None),
    }
}

/// Creates `mesh`'s default signing key unless it has one. Safe with several creators at
/// once (two API requests, two instances on one Postgres): the store's create is atomic,
/// so exactly one key is stored and the others find it.
pub fn ensure_signing_key(store: &dyn ResourceStore, mesh: &str) -> Result<bool, TokenError> {
    let key = ResourceKey::new(ResourceType::Secret, mesh, signing_key_name(mesh, DEFAULT_KID));
    match store.get(&key) {
        Ok(_) => return Ok(false),
        Err(StoreError::NotFound(_)) => {}
        Err(e) => return Err(TokenError::Store(e)),
    }
    let rsa = Rsa::generate(RSA_BITS).map_err(TokenError::crypto)?;
    let pem = rsa.private_key_to_pem().map_err(TokenError::crypto)?;
    match store.create(mesh, &key.name, Spec::Secret(SecretSpec::new(pem))) {
        Ok(_) => {
            log::info!("tokens: created the dataplane token signing key {:?} of mesh {mesh:?}", key.name);
            Ok(true)
        }
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(TokenError::Store(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn store_with_mesh(name: &str) -> MemoryStore {
        let store = MemoryStore::new();
        let mesh = crate::model::rest::from_json(serde_json::json!({"type": "Mesh", "name": name})).unwrap();
        store.create("", name, mesh.spec).unwrap();
        store
    }

    #[test]
    fn names_follow_kuma() {
        assert_eq!(signing_key_name("default", 1), "dataplane-token-signing-key-default-1");
        assert_eq!(revocations_name("default"), "dataplane-token-revocations-default");
        assert_eq!(kid_of("default", "dataplane-token-signing-key-default-12"), Some(12));
        // Another mesh's prefix, or a suffix that is not a number, is not a key of this one.
        assert_eq!(kid_of("a", "dataplane-token-signing-key-a-b-1"), None);
        assert_eq!(kid_of("a", "dataplane-token-signing-key-a-"), None);
        assert!(affects_tokens("a", "dataplane-token-revocations-a"));
        assert!(!affects_tokens("a", "some-other-secret"));
        assert_eq!(parse_revocations(b"id1, id2,\n"), HashSet::from(["id1".to_string(), "id2".to_string()]));
    }

    #[test]
    fn concurrent_creators_store_exactly_one_key() {
        let store = Arc::new(store_with_mesh("m"));
        let created: Vec<bool> = (0..4)
            .map(|_| {
                let s = store.clone();
                std::thread::spawn(move || ensure_signing_key(&*s, "m").unwrap())
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
        let secrets = ResourceStore::list(&*store, ResourceType::Secret, Some("m")).unwrap();
        assert_eq!(secrets.len(), 1);
        let keys = load(&*store, "m").unwrap();
        assert_eq!(keys.keys.keys().copied().collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn latest_key_is_the_highest_kid() {
        let store = store_with_mesh("m");
        let (kid, _) = latest_or_create(&store, "m").unwrap();
        assert_eq!(kid, 1);
        let pem = Rsa::generate(2048).unwrap().private_key_to_pem().unwrap();
        store.create("m", &signing_key_name("m", 2), Spec::Secret(SecretSpec::new(pem))).unwrap();
        assert_eq!(latest_or_create(&store, "m").unwrap().0, 2);
        assert!(matches!(latest_or_create(&store, "nope"), Err(TokenError::Store(_))));
    }
}
