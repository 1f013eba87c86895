//! Dataplane tokens, Kuma-compatible: RS256 JWTs ([`jwt`]) signed with per-mesh keys kept
//! as Secrets, with a per-mesh revocation list ([`keys`]), carrying Kuma's claims
//! ([`dataplane`]). A token issued by kuma-cp validates here and the other way round.

pub mod dataplane;
pub mod jwt;
pub mod keys;

use crate::model::ResourceKey;
use crate::store::StoreError;

/// Why a token was not issued or not accepted. The texts go to the client (gRPC status,
/// HTTP error) and, through `logsafe`, to the log; none of them repeats a claim value the
/// client could make arbitrarily long without bounding it first.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(String),
    #[error(
        "there is no signing key with serial number {kid}: Secret \"dataplane-token-signing-key-{mesh}-{kid}\" in mesh {mesh:?} is not found; if the signing key was rotated, regenerate the token"
    )]
    NoSigningKey { mesh: String, kid: u32 },
    #[error("the token's signature is not valid (tampered with, or signed by another key)")]
    BadSignature,
    #[error("the token expired at {} (unix time {at})", humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + std::time::Duration::from_secs((*at).max(0) as u64)))]
    Expired { at: i64 },
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token is revoked")]
    Revoked,
    #[error("{0}")]
    Mismatch(String),
    #[error("Dataplane {:?} not found in mesh {:?}; create it first", .0.name, .0.mesh)]
    DataplaneNotFound(ResourceKey),
    #[error("mesh {0:?} not found")]
    MeshNotFound(String),
    #[error("the signing key is not a usable RSA key: {0}")]
    BadKey(String),
    #[error("cryptography failed: {0}")]
    Crypto(String),
    #[error(transparent)]
    Store(StoreError),
}

impl TokenError {
    fn crypto(e: openssl::error::ErrorStack) -> TokenError {
        TokenError::Crypto(e.to_string())
    }

    /// The token does not prove an identity (as opposed to proving one that is not allowed
    /// here): gRPC's UNAUTHENTICATED rather than PERMISSION_DENIED.
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            TokenError::Malformed(_)
                | TokenError::NoSigningKey { .. }
                | TokenError::BadSignature
                | TokenError::Expired { .. }
                | TokenError::NotYetValid
                | TokenError::Revoked
        )
    }

    /// A failure of the control plane itself (store down), not of the token.
    pub fn is_internal(&self) -> bool {
        matches!(self, TokenError::Store(_) | TokenError::Crypto(_) | TokenError::BadKey(_))
    }
}
