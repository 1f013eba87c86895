//! RS256 JSON Web Tokens (RFC 7519) with OpenSSL, the shape Kuma's tokens have:
//! `base64url(header).base64url(claims).base64url(signature)`, header
//! `{"alg":"RS256","kid":"<serial>","typ":"JWT"}`. Only RS256 is accepted: `none` and
//! HMAC algorithms are refused before any key is looked up.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{HasPublic, PKeyRef, Private};
use openssl::sign::{Signer, Verifier};
use serde_json::{Map, Value};

/// Kuma's tokens are under 1 KiB; anything much larger is not one (and would cost a
/// decode per request).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the token is longer than {MAX_TOKEN_BYTES} bytes")]
    TooLong,
    #[error("the token is not three base64url parts separated by dots")]
    Shape,
    #[error("the token's {0} is not valid base64url")]
    Base64(&'static str),
    #[error("the token's {0} is not a JSON object")]
    Json(&'static str),
    #[error("unsupported token algorithm {0:?}; only RS256 is accepted")]
    Algorithm(String),
    #[error("the token has no kid header naming its signing key")]
    NoKeyId,
    #[error("the token's kid header {0:?} is not a signing key serial number")]
    BadKeyId(String),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("signing failed: {0}")]
    Sign(String),
}

/// A token whose shape and header were checked, not yet its signature.
#[derive(Debug, Clone)]
pub struct Parsed<'a> {
    /// `header.claims`, what the signature covers.
    signing_input: &'a str,
    signature: Vec<u8>,
    pub kid: u32,
    pub claims: Map<String, Value>,
}

fn part(text: &str, what: &'static str) -> Result<Vec<u8>, JwtError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| JwtError::Base64(what))
}

fn object(bytes: &[u8], what: &'static str) -> Result<Map<String, Value>, JwtError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(JwtError::Json(what)),
    }
}

/// Splits and decodes a token, checking the algorithm and key id.
pub fn parse(token: &str) -> Result<Parsed<'_>, JwtError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(JwtError::TooLong);
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(JwtError::Shape);
    };
    let header = object(&part(h, "header")?, "header")?;
    match header.get("alg") {
        Some(Value::String(a)) if a == "RS256" => {}
        Some(Value::String(a)) => return Err(JwtError::Algorithm(crate::http::conn::short(a))),
        _ => return Err(JwtError::Algorithm(String::new())),
    }
    let kid = match header.get("kid") {
        None => return Err(JwtError::NoKeyId),
        Some(Value::String(k)) => k
            .parse::<u32>()
            .ok()
            .filter(|_| k.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| JwtError::BadKeyId(crate::http::conn::short(k)))?,
        Some(other) => return Err(JwtError::BadKeyId(crate::http::conn::short(&other.to_string()))),
    };
    let claims = object(&part(c, "claims")?, "claims")?;
    let signature = part(s, "signature")?;
    let signing_input = token.get(..h.len() + 1 + c.len()).ok_or(JwtError::Shape)?;
    Ok(Parsed { signing_input, signature, kid, claims })
}

impl Parsed<'_> {
    /// Checks the RS256 signature with `key`.
    pub fn verify<T: HasPublic>(&self, key: &PKeyRef<T>) -> Result<(), JwtError> {
        let mut v = Verifier::new(MessageDigest::sha256(), key).map_err(|_| JwtError::Signature)?;
        v.update(self.signing_input.as_bytes()).map_err(|_| JwtError::Signature)?;
        match v.verify(&self.signature) {
            Ok(true) => Ok(()),
            _ => Err(JwtError::Signature),
        }
    }
}

/// Signs `claims` with RS256 under key id `kid`.
pub fn sign(claims: &Map<String, Value>, kid: u32, key: &PKeyRef<Private>) -> Result<String, JwtError> {
    let header = serde_json::json!({"alg": "RS256", "kid": kid.to_string(), "typ": "JWT"});
    let mut out = URL_SAFE_NO_PAD.encode(header.to_string());
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()));
    let sign_err = |e: openssl::error::ErrorStack| JwtError::Sign(e.to_string());
    let mut s = Signer::new(MessageDigest::sha256(), key).map_err(sign_err)?;
    s.update(out.as_bytes()).map_err(sign_err)?;
    let sig = s.sign_to_vec().map_err(sign_err)?;
    out.push('.');
    out.push_str(&URL_SAFE_NO_PAD.encode(sig));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    #[test]
    fn round_trip_and_tampering() {
        let k = key();
        let mut claims = Map::new();
        claims.insert("Name".into(), "john".into());
        let token = sign(&claims, 3, &k).unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.kid, 3);
        assert_eq!(parsed.claims["Name"], "john");
        parsed.verify(&k).unwrap();
        assert_eq!(parse(&token).unwrap().verify(&key()), Err(JwtError::Signature), "another key");
        // Claims swapped for an admin's: the signature no longer matches.
        let parts: Vec<&str> = token.split('.').collect();
        let forged = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(r#"{"Name":"mesh-system:admin"}"#), parts[2]);
        assert_eq!(parse(&forged).unwrap().verify(&k), Err(JwtError::Signature));
    }

    #[test]
    fn refuses_other_algorithms_and_shapes() {
        let none =
            format!("{}.{}.", URL_SAFE_NO_PAD.encode(r#"{"alg":"none","kid":"1"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert!(matches!(parse(&none), Err(JwtError::Algorithm(a)) if a == "none"));
        let hs =
            format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","kid":"1"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert!(matches!(parse(&hs), Err(JwtError::Algorithm(_))));
        assert_eq!(parse("a.b").unwrap_err(), JwtError::Shape);
        assert_eq!(parse("a.b.c.d").unwrap_err(), JwtError::Shape);
        assert_eq!(parse("!.b.c").unwrap_err(), JwtError::Base64("header"));
        let nokid = format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert_eq!(parse(&nokid).unwrap_err(), JwtError::NoKeyId);
        let badkid =
            format!("{}.{}.AA", URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","kid":"+1"}"#), URL_SAFE_NO_PAD.encode("{}"));
        assert!(matches!(parse(&badkid), Err(JwtError::BadKeyId(_))));
        assert_eq!(parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).unwrap_err(), JwtError::TooLong);
    }
}
