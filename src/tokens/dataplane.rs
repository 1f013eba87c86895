//! Dataplane tokens: what `POST /tokens/dataplane` issues and what the DP server checks on
//! every request. Claims are Kuma's (`Name`, `Mesh`, `Tags`, `Type`, plus `jti`, `iat`,
//! `nbf`, `exp`); every claim is optional, and a token binds only what it names (Kuma's
//! `pkg/xds/auth/universal/authenticator.go`): name and mesh must be the dataplane's, and
//! every tag in the token must be on the dataplane with only allowed values.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Deserializer, Serialize};

use super::keys::MeshKeys;
use super::{jwt, keys, TokenError};
use crate::model::dataplane::DataplaneSpec;
use crate::model::{ResourceKey, ResourceType};
use crate::store::{ResourceStore, StoreError};

/// Kuma issues 10-year tokens when `validFor` is not given (kumahq/kuma#4001).
pub const DEFAULT_VALID_FOR: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Kuma backdates `nbf` by five minutes so a sidecar whose clock is a little behind the
/// control plane's can use a token at once.
const NOT_BEFORE_SKEW: Duration = Duration::from_secs(5 * 60);
/// The proxy type of a sidecar; zone ingress/egress tokens are not dataplane tokens.
pub const PROXY_TYPE_DATAPLANE: &str = "dataplane";

fn null_as_default<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(d: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The claims, with Kuma's JSON names (Go field names, no tags).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataplaneClaims {
    #[serde(rename = "Name", default, deserialize_with = "null_as_default")]
    pub name: String,
    #[serde(rename = "Mesh", default, deserialize_with = "null_as_default")]
    pub mesh: String,
    /// Tag → the values a dataplane may have for it.
    #[serde(rename = "Tags", default, deserialize_with = "null_as_default")]
    pub tags: BTreeMap<String, Vec<String>>,
    #[serde(rename = "Type", default, deserialize_with = "null_as_default")]
    pub r#type: String,
    /// The token id revocations name.
    #[serde(default, skip_serializing_if = "String::is_empty", deserialize_with = "null_as_default")]
    pub jti: String,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
}

/// RFC 7519 NumericDate: seconds, possibly fractional (golang-jwt can be set to write them).
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let n = Option::<serde_json::Number>::deserialize(d)?;
    Ok(n.and_then(|n| n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64))))
}

/// What a token is asked for (`POST /tokens/dataplane`'s body, minus `validFor`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub mesh: String,
    pub name: String,
    pub tags: BTreeMap<String, Vec<String>>,
    pub r#type: String,
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

fn new_token_id() -> String {
    // A random (version 4) UUID, as Kuma's `core.NewUUID()` gives.
    let (a, b) = (fastrand::u64(..), fastrand::u64(..));
    let b = (b & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let a = (a & 0xffff_ffff_ffff_0fff) | 0x4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

/// Issues a token for `id`, valid for `valid_for` from `now`, signed with the mesh's newest
/// signing key (created first if the mesh has none).
pub fn issue(
    store: &dyn ResourceStore,
    id: &Identity,
    valid_for: Duration,
    now: SystemTime,
) -> Result<String, TokenError> {
    match store.get(&ResourceKey::new(ResourceType::Mesh, "", &id.mesh)) {
        Ok(_) => {}
        Err(StoreError::NotFound(_)) => return Err(TokenError::MeshNotFound(id.mesh.clone())),
        Err(e) => return Err(TokenError::Store(e)),
    }
    let (kid, key) = keys::latest_or_create(store, &id.mesh)?;
    let valid = i64::try_from(valid_for.as_secs()).unwrap_or(i64::MAX);
    let claims = DataplaneClaims {
        name: id.name.clone(),
        mesh: id.mesh.clone(),
        tags: id.tags.clone(),
        r#type: id.r#type.clone(),
        jti: new_token_id(),
        iat: Some(unix(now)),
        nbf: Some(unix(now) - NOT_BEFORE_SKEW.as_secs() as i64),
        exp: Some(unix(now).saturating_add(valid)),
    };
    let value = serde_json::to_value(&claims).map_err(|e| TokenError::Malformed(e.to_string()))?;
    jwt::sign(&value, &kid.to_string(), &key)
}

/// A token whose signature checked out against one of its mesh's keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    pub claims: DataplaneClaims,
    pub kid: u32,
    /// The key's fingerprint at verification: a changed key means verify again.
    pub key_fingerprint: u64,
}

/// Checks `token`'s signature with the key of `mesh` it names. The mesh is the one the
/// node id names, as in Kuma: a token of another mesh is signed by another key and fails.
pub fn verify(token: &str, mesh: &str, keys: &MeshKeys) -> Result<Verified, TokenError> {
    let parsed = jwt::parse(token)?;
    let Some(key) = keys.keys.get(&parsed.kid) else {
        return Err(TokenError::NoSigningKey { mesh: mesh.to_string(), kid: parsed.kid });
    };
    if !parsed.verify(&key.key)? {
        return Err(TokenError::BadSignature);
    }
    let claims: DataplaneClaims = serde_json::from_value(parsed.claims)
        .map_err(|e| TokenError::Malformed(format!("the claims do not have Kuma's shape: {e}")))?;
    Ok(Verified { claims, kid: parsed.kid, key_fingerprint: key.fingerprint })
}

/// Whether a verified token lets dataplane `dp` (with spec `spec`, when it exists) in at
/// `now`, given the mesh's revocation list.
pub fn authorize(
    v: &Verified,
    dp: &ResourceKey,
    spec: Option<&DataplaneSpec>,
    keys: &MeshKeys,
    now: SystemTime,
) -> Result<(), TokenError> {
    let c = &v.claims;
    let now = unix(now);
    // Kuma's tokens always carry an expiry; one without is refused rather than eternal.
    match c.exp {
        Some(exp) if exp > now => {}
        Some(exp) => return Err(TokenError::Expired { at: exp }),
        None => return Err(TokenError::Malformed("the token has no exp".into())),
    }
    if c.nbf.is_some_and(|nbf| nbf > now) {
        return Err(TokenError::NotYetValid);
    }
    if !c.jti.is_empty() && keys.revoked.contains(&c.jti) {
        return Err(TokenError::Revoked);
    }
    if !c.r#type.is_empty() && c.r#type != PROXY_TYPE_DATAPLANE {
        return Err(TokenError::Mismatch(format!("the token is for a {:?}, not a dataplane", c.r#type)));
    }
    if !c.mesh.is_empty() && c.mesh != dp.mesh {
        return Err(TokenError::Mismatch(format!("the token is for mesh {:?}, not {:?}", c.mesh, dp.mesh)));
    }
    if !c.name.is_empty() && c.name != dp.name {
        return Err(TokenError::Mismatch(format!("the token is for dataplane {:?}, not {:?}", c.name, dp.name)));
    }
    if c.tags.is_empty() {
        return Ok(());
    }
    let Some(spec) = spec else { return Err(TokenError::DataplaneNotFound(dp.clone())) };
    let dp_tags = tag_set(spec);
    for (tag, allowed) in &c.tags {
        let Some(values) = dp_tags.get(tag.as_str()) else {
            return Err(TokenError::Mismatch(format!("the dataplane has no tag {tag:?}, which the token requires")));
        };
        if let Some(bad) = values.iter().find(|v| !allowed.iter().any(|a| a == *v)) {
            return Err(TokenError::Mismatch(format!(
                "the dataplane's tag {tag:?} has value {bad:?}, which the token does not allow (allowed: {allowed:?})"
            )));
        }
    }
    Ok(())
}

/// Every tag of every inbound (Kuma's `Dataplane.TagSet()`), multi-valued.
fn tag_set(spec: &DataplaneSpec) -> BTreeMap<&str, BTreeSet<&str>> {
    let mut out: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for inbound in &spec.networking.inbound {
        for (k, v) in &inbound.tags {
            out.entry(k.as_str()).or_default().insert(v.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{rest, Spec};
    use crate::store::MemoryStore;

    fn setup() -> (MemoryStore, DataplaneSpec) {
        let store = MemoryStore::new();
        for mesh in ["default", "other"] {
            let m = rest::from_json(serde_json::json!({"type": "Mesh", "name": mesh})).unwrap();
            store.create("", mesh, m.spec).unwrap();
        }
        let dp = rest::from_json(serde_json::json!({
            "type": "Dataplane", "mesh": "default", "name": "web-1",
            "networking": {"address": "127.0.0.1", "inbound": [
                {"port": 1, "servicePort": 2, "tags": {"kuma.io/service": "web", "version": "v1"}}]}
        }))
        .unwrap();
        let Spec::Dataplane(spec) = dp.spec else { panic!() };
        (store, spec)
    }

    fn id(name: &str, tags: &[(&str, &[&str])]) -> Identity {
        Identity {
            mesh: "default".into(),
            name: name.into(),
            tags: tags.iter().map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect())).collect(),
            r#type: String::new(),
        }
    }

    fn check(store: &MemoryStore, spec: &DataplaneSpec, token: &str, node: (&str, &str)) -> Result<(), TokenError> {
        let keys = keys::load(store, node.0)?;
        let v = verify(token, node.0, &keys)?;
        let dp = ResourceKey::new(ResourceType::Dataplane, node.0, node.1);
        authorize(&v, &dp, Some(spec), &keys, SystemTime::now())
    }

    #[test]
    fn a_token_binds_what_it_names() {
        let (store, spec) = setup();
        let now = SystemTime::now();
        let by_name = issue(&store, &id("web-1", &[]), DEFAULT_VALID_FOR, now).unwrap();
        check(&store, &spec, &by_name, ("default", "web-1")).unwrap();
        let err = check(&store, &spec, &by_name, ("default", "web-2")).unwrap_err();
        assert!(matches!(err, TokenError::Mismatch(_)), "{err}");
        // Another mesh's keys did not sign it.
        let err = check(&store, &spec, &by_name, ("other", "web-1")).unwrap_err();
        assert!(matches!(err, TokenError::NoSigningKey { .. } | TokenError::BadSignature), "{err}");

        let by_tag = issue(&store, &id("", &[("kuma.io/service", &["web", "api"])]), DEFAULT_VALID_FOR, now).unwrap();
        check(&store, &spec, &by_tag, ("default", "web-1")).unwrap();
        let wrong = issue(&store, &id("", &[("kuma.io/service", &["api"])]), DEFAULT_VALID_FOR, now).unwrap();
        assert!(check(&store, &spec, &wrong, ("default", "web-1")).unwrap_err().to_string().contains("\"web\""));
        let missing = issue(&store, &id("", &[("zone", &["a"])]), DEFAULT_VALID_FOR, now).unwrap();
        assert!(check(&store, &spec, &missing, ("default", "web-1")).unwrap_err().to_string().contains("no tag"));
    }

    #[test]
    fn expiry_and_revocation() {
        let (store, spec) = setup();
        let long_ago = SystemTime::now() - Duration::from_secs(7200);
        let expired = issue(&store, &id("web-1", &[]), Duration::from_secs(3600), long_ago).unwrap();
        assert!(matches!(check(&store, &spec, &expired, ("default", "web-1")), Err(TokenError::Expired { .. })));

        let token = issue(&store, &id("web-1", &[]), DEFAULT_VALID_FOR, SystemTime::now()).unwrap();
        let keys = keys::load(&store, "default").unwrap();
        let jti = verify(&token, "default", &keys).unwrap().claims.jti;
        assert_eq!(jti.len(), 36);
        let data = format!("some-other-id,{jti}\n").into_bytes();
        store
            .create(
                "default",
                &keys::revocations_name("default"),
                Spec::Secret(crate::model::secret::SecretSpec::new(data)),
            )
            .unwrap();
        assert!(matches!(check(&store, &spec, &token, ("default", "web-1")), Err(TokenError::Revoked)));
    }

    #[test]
    fn claims_use_kumas_json_names() {
        let (store, _) = setup();
        let token = issue(&store, &id("web-1", &[("k", &["v"])]), DEFAULT_VALID_FOR, SystemTime::now()).unwrap();
        let parsed = jwt::parse(&token).unwrap();
        for key in ["Name", "Mesh", "Tags", "Type", "jti", "iat", "nbf", "exp"] {
            assert!(parsed.claims.get(key).is_some(), "{key} missing in {}", parsed.claims);
        }
        // Go writes a nil map as null; it means no tags.
        let c: DataplaneClaims = serde_json::from_value(serde_json::json!({"Tags": null, "exp": 1.5e9})).unwrap();
        assert!(c.tags.is_empty());
        assert_eq!(c.exp, Some(1_500_000_000));
    }
}
