//! Kuma's user tokens: RS256 JWTs with claims `Name`, `Groups`, `exp`, `nbf`, `iat`, `jti`,
//! signed by the GlobalSecrets `user-token-signing-key-<serial>` (a PKCS#1 PEM RSA key;
//! the token's `kid` is the serial, new tokens use the highest), and refused when their
//! `jti` is listed in the GlobalSecret `user-token-revocations` (comma-separated ids). The
//! same secrets in a database shared with kuma-cp mean the same tokens to both.
//!
//! Keys and the revocation list are read through a cache that lives as long as the store
//! cache (`store.cache.expirationTime`), as Kuma reads them through its cached manager: a
//! revocation or a new key takes effect within that time.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use serde_json::{Map, Value};

use super::jwt::{self, JwtError};
use super::User;
use crate::model::secret::{GlobalSecretSpec, SecretSpec};
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::{SharedStore, StoreError};

/// Kuma's names (`pkg/plugins/authn/api-server/tokens/issuer`).
pub const SIGNING_KEY_PREFIX: &str = "user-token-signing-key";
pub const REVOCATIONS_SECRET: &str = "user-token-revocations";
pub const ADMIN_TOKEN_SECRET: &str = "admin-user-token";
/// Kuma's default signing key serial.
const DEFAULT_SERIAL: u32 = 1;
/// Kuma's key size for signing keys.
const RSA_BITS: u32 = 2048;
/// Kuma back-dates `nbf` by five minutes so a client's clock running behind still works.
const NOT_BEFORE_SKEW: Duration = Duration::from_secs(5 * 60);
/// Kuma's admin token lasts ten years: it is the root credential, rotated by hand.
pub const ADMIN_TOKEN_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error(
        "there is no signing key with serial number {0}. GlobalSecret of name \"{SIGNING_KEY_PREFIX}-{0}\" is not found. If signing key was rotated, regenerate the token"
    )]
    NoSigningKey(u32),
    #[error("signing key {0:?} is not a PEM or DER RSA key")]
    BadSigningKey(String),
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token has no expiry (exp)")]
    NoExpiry,
    #[error("the token's {0} claim is missing or has the wrong type")]
    Claim(&'static str),
    #[error("token is revoked")]
    Revoked,
    #[error("reading signing keys: {0}")]
    Store(#[from] StoreError),
}

impl TokenError {
    /// Whether the token itself is at fault (401) rather than the control plane (503).
    pub fn is_client_error(&self) -> bool {
        !matches!(self, TokenError::Store(StoreError::Unavailable(_) | StoreError::Internal(_)))
    }
}

type Cached<T> = Mutex<HashMap<u32, (Instant, T)>>;

/// Issues and validates user tokens against the store's GlobalSecrets.
pub struct UserTokens {
    store: SharedStore,
    ttl: Duration,
    keys: Cached<Option<Arc<PKey<Private>>>>,
    revoked: Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
}

fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn key_name(serial: u32) -> String {
    format!("{SIGNING_KEY_PREFIX}-{serial}")
}

fn serial_of(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(SIGNING_KEY_PREFIX)?.strip_prefix('-')?;
    digits.bytes().all(|b| b.is_ascii_digit()).then(|| digits.parse().ok()).flatten()
}

fn secret_bytes(spec: &Spec) -> &[u8] {
    match spec {
        Spec::GlobalSecret(GlobalSecretSpec(s)) => s.bytes(),
        _ => &[],
    }
}

fn parse_key(name: &str, bytes: &[u8]) -> Result<PKey<Private>, TokenError> {
    // Kuma writes PKCS#1 PEM and still reads bare DER from old versions.
    let rsa = Rsa::private_key_from_pem(bytes)
        .or_else(|_| Rsa::private_key_from_der(bytes))
        .map_err(|_| TokenError::BadSigningKey(name.to_string()))?;
    PKey::from_rsa(rsa).map_err(|_| TokenError::BadSigningKey(name.to_string()))
}

/// A random UUID (v4), Kuma's token id format.
fn uuid() -> String {
    let mut b: [u8; 16] = fastrand::u128(..).to_be_bytes();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

impl UserTokens {
    pub fn new(store: SharedStore, ttl: Duration) -> UserTokens {
        UserTokens { store, ttl, keys: Mutex::new(HashMap::new()), revoked: Mutex::new(None) }
    }

    fn signing_key(&self, serial: u32) -> Result<Arc<PKey<Private>>, TokenError> {
        let now = Instant::now();
        if let Some((at, key)) = self.keys.lock().unwrap_or_else(|p| p.into_inner()).get(&serial) {
            if now.duration_since(*at) < self.ttl {
                return key.clone().ok_or(TokenError::NoSigningKey(serial));
            }
        }
        let name = key_name(serial);
        let key = match self.store.get(&ResourceKey::new(ResourceType::GlobalSecret, "", &name)) {
            Ok(res) => Some(Arc::new(parse_key(&name, secret_bytes(&res.spec))?)),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).insert(serial, (now, key.clone()));
        key.ok_or(TokenError::NoSigningKey(serial))
    }

    fn revocations(&self) -> Result<Arc<HashSet<String>>, TokenError> {
        let now = Instant::now();
        if let Some((at, ids)) = &*self.revoked.lock().unwrap_or_else(|p| p.into_inner()) {
            if now.duration_since(*at) < self.ttl {
                return Ok(ids.clone());
            }
        }
        let ids: HashSet<String> =
            match self.store.get(&ResourceKey::new(ResourceType::GlobalSecret, "", REVOCATIONS_SECRET)) {
                Ok(res) => String::from_utf8_lossy(secret_bytes(&res.spec))
                    .trim_end_matches('\n')
                    .split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect(),
                Err(StoreError::NotFound(_)) => HashSet::new(),
                Err(e) => return Err(e.into()),
            };
        let ids = Arc::new(ids);
        *self.revoked.lock().unwrap_or_else(|p| p.into_inner()) = Some((now, ids.clone()));
        Ok(ids)
    }

    /// Validates a token and returns its user (without the authenticated group).
    pub fn validate(&self, token: &str) -> Result<User, TokenError> {
        let parsed = jwt::parse(token)?;
        let key = self.signing_key(parsed.kid)?;
        parsed.verify(&key)?;
        let c = &parsed.claims;
        let now = now_secs();
        let time = |name: &'static str| -> Result<Option<i64>, TokenError> {
            match c.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Number(n)) => n
                    .as_i64()
                    .or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))
                    .map(Some)
                    .ok_or(TokenError::Claim(name)),
                Some(_) => Err(TokenError::Claim(name)),
            }
        };
        match time("exp")? {
            None => return Err(TokenError::NoExpiry),
            Some(exp) if now >= exp => return Err(TokenError::Expired),
            Some(_) => {}
        }
        if time("nbf")?.is_some_and(|nbf| now < nbf) {
            return Err(TokenError::NotYetValid);
        }
        let name = match c.get("Name") {
            Some(Value::String(n)) if !n.is_empty() => n.clone(),
            _ => return Err(TokenError::Claim("Name")),
        };
        let groups = match c.get("Groups") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|g| g.as_str().map(str::to_string).ok_or(TokenError::Claim("Groups")))
                .collect::<Result<_, _>>()?,
            Some(_) => return Err(TokenError::Claim("Groups")),
        };
        match c.get("jti") {
            Some(Value::String(id)) => {
                if self.revocations()?.contains(id) {
                    return Err(TokenError::Revoked);
                }
            }
            None | Some(Value::Null) => {}
            Some(_) => return Err(TokenError::Claim("jti")),
        }
        Ok(User { name, groups })
    }

    /// The newest signing key, created (serial 1) when there is none. Two control planes
    /// creating it at once is fine: the loser reads the winner's key.
    pub fn latest_signing_key(&self) -> Result<(u32, Arc<PKey<Private>>), TokenError> {
        let latest =
            self.store.list(ResourceType::GlobalSecret, None)?.iter().filter_map(|r| serial_of(&r.meta.name)).max();
        if let Some(serial) = latest {
            return Ok((serial, self.signing_key(serial)?));
        }
        let rsa = Rsa::generate(RSA_BITS).map_err(|e| StoreError::Internal(format!("generating an RSA key: {e}")))?;
        let pem = rsa.private_key_to_pem().map_err(|e| StoreError::Internal(format!("encoding an RSA key: {e}")))?;
        let name = key_name(DEFAULT_SERIAL);
        match self.store.create("", &name, Spec::GlobalSecret(GlobalSecretSpec(SecretSpec::new(pem)))) {
            Ok(_) => log::info!("api: created the user token signing key (GlobalSecret {name:?})"),
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).remove(&DEFAULT_SERIAL);
        Ok((DEFAULT_SERIAL, self.signing_key(DEFAULT_SERIAL)?))
    }

    /// A token for `user` valid for `valid_for`.
    pub fn issue(&self, user: &User, valid_for: Duration) -> Result<String, TokenError> {
        let (serial, key) = self.latest_signing_key()?;
        let now = now_secs();
        let mut claims = Map::new();
        claims.insert("Name".into(), Value::from(user.name.clone()));
        claims.insert("Groups".into(), Value::from(user.groups.clone()));
        claims.insert("exp".into(), Value::from(now.saturating_add(valid_for.as_secs().min(i64::MAX as u64) as i64)));
        claims.insert("nbf".into(), Value::from(now - NOT_BEFORE_SKEW.as_secs() as i64));
        claims.insert("iat".into(), Value::from(now));
        claims.insert("jti".into(), Value::from(uuid()));
        Ok(jwt::sign(&claims, serial, &key)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn tokens() -> UserTokens {
        UserTokens::new(Arc::new(MemoryStore::new()), Duration::ZERO)
    }

    fn user(name: &str, groups: &[&str]) -> User {
        User { name: name.into(), groups: groups.iter().map(|g| g.to_string()).collect() }
    }

    #[test]
    fn issued_tokens_validate_until_they_expire_or_are_revoked() {
        let t = tokens();
        let token = t.issue(&user("john", &["team-a"]), Duration::from_secs(3600)).unwrap();
        assert_eq!(t.validate(&token).unwrap(), user("john", &["team-a"]));
        let expired = t.issue(&user("john", &[]), Duration::ZERO).unwrap();
        assert!(matches!(t.validate(&expired), Err(TokenError::Expired)));
        let jti = jwt::parse(&token).unwrap().claims["jti"].as_str().unwrap().to_string();
        t.store
            .create(
                "",
                REVOCATIONS_SECRET,
                Spec::GlobalSecret(GlobalSecretSpec(SecretSpec::new(format!("x,{jti}\n").into_bytes()))),
            )
            .unwrap();
        assert!(matches!(t.validate(&token), Err(TokenError::Revoked)));
    }

    #[test]
    fn a_rotated_away_key_invalidates_its_tokens() {
        let t = tokens();
        let token = t.issue(&user("john", &[]), Duration::from_secs(60)).unwrap();
        t.store.delete(&ResourceKey::new(ResourceType::GlobalSecret, "", "user-token-signing-key-1")).unwrap();
        let err = t.validate(&token).unwrap_err();
        assert!(matches!(err, TokenError::NoSigningKey(1)), "{err}");
        assert!(err.to_string().contains("user-token-signing-key-1"));
    }

    #[test]
    fn serials_and_uuids() {
        assert_eq!(serial_of("user-token-signing-key-12"), Some(12));
        assert_eq!(serial_of("user-token-signing-key"), None);
        assert_eq!(serial_of("user-token-signing-key-1a"), None);
        assert_eq!(serial_of("user-token-revocations"), None);
        let u = uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
