//! RS256 JSON Web Tokens (RFC 7519) with OpenSSL: exactly what Kuma's golang-jwt issues and
//! accepts for dataplane tokens, nothing more (no `none`, no HMAC, no JWE).

use base64::Engine;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKeyRef, Private, Public};
use openssl::sign::{Signer, Verifier};
use serde_json::Value;

use super::TokenError;

/// Far above any real token (a few hundred bytes; tags can add a few KiB), so a client
/// cannot make us base64-decode or parse megabytes.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The only algorithm Kuma's dataplane tokens use (its HS256 tokens predate 1.4).
const ALG: &str = "RS256";

fn b64() -> base64::engine::GeneralPurpose {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
}

/// `header.claims.signature` for `claims`, signed with `key` and naming key `kid`.
pub fn sign(claims: &Value, kid: &str, key: &PKeyRef<Private>) -> Result<String, TokenError> {
    // Go marshals the header map with sorted keys; the same bytes keep tokens comparable.
    let header = serde_json::json!({"alg": ALG, "kid": kid, "typ": "JWT"});
    let mut token = b64().encode(header.to_string());
    token.push('.');
    token.push_str(&b64().encode(claims.to_string()));
    let mut signer = Signer::new(MessageDigest::sha256(), key).map_err(TokenError::crypto)?;
    signer.update(token.as_bytes()).map_err(TokenError::crypto)?;
    let signature = signer.sign_to_vec().map_err(TokenError::crypto)?;
    token.push('.');
    token.push_str(&b64().encode(signature));
    Ok(token)
}

/// A token split and decoded, its signature not yet checked.
#[derive(Debug)]
pub struct Unverified<'a> {
    signed: &'a str,
    signature: Vec<u8>,
    /// The `kid` header: which of the mesh's signing keys signed it.
    pub kid: u32,
    pub claims: Value,
}

/// Splits and decodes `token`; refuses anything but a well-formed RS256 JWT with a numeric
/// `kid`.
pub fn parse(token: &str) -> Result<Unverified<'_>, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::Malformed(format!("longer than {MAX_TOKEN_BYTES} bytes")));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed("not three base64url parts separated by dots".into()));
    };
    let decode = |part: &str, what: &str| {
        b64().decode(part).map_err(|_| TokenError::Malformed(format!("the {what} is not base64url")))
    };
    let header: Value = serde_json::from_slice(&decode(h, "header")?)
        .map_err(|_| TokenError::Malformed("the header is not JSON".into()))?;
    match header.get("alg").and_then(Value::as_str) {
        Some(ALG) => {}
        Some(other) => {
            return Err(TokenError::Malformed(format!("alg {:?} is not {ALG}", other.get(..16).unwrap_or(other))))
        }
        None => return Err(TokenError::Malformed("the header has no alg".into())),
    }
    // Kuma writes the key id as a decimal string ("1").
    let kid = match header.get("kid") {
        Some(Value::String(s)) => s.parse::<u32>().ok(),
        _ => None,
    }
    .ok_or_else(|| TokenError::Malformed("the header has no numeric kid".into()))?;
    let claims: Value = serde_json::from_slice(&decode(c, "payload")?)
        .map_err(|_| TokenError::Malformed("the payload is not JSON".into()))?;
    if !claims.is_object() {
        return Err(TokenError::Malformed("the payload is not a JSON object".into()));
    }
    let signature = decode(s, "signature")?;
    Ok(Unverified { signed: &token[..h.len() + 1 + c.len()], signature, kid, claims })
}

impl Unverified<'_> {
    /// Whether `key` made the signature.
    pub fn verify(&self, key: &PKeyRef<Public>) -> Result<bool, TokenError> {
        let mut v = Verifier::new(MessageDigest::sha256(), key).map_err(TokenError::crypto)?;
        v.update(self.signed.as_bytes()).map_err(TokenError::crypto)?;
        // OpenSSL reports a signature of the wrong length as an error, not as `false`.
        Ok(v.verify(&self.signature).unwrap_or(false))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;

    fn keypair() -> (PKey<Private>, PKey<Public>) {
        let rsa = Rsa::generate(2048).unwrap();
        let public = PKey::public_key_from_pem(&rsa.public_key_to_pem().unwrap()).unwrap();
        (PKey::from_rsa(rsa).unwrap(), public)
    }

    #[test]
    fn signed_tokens_verify_and_tampering_is_caught() {
        let (private, public) = keypair();
        let token = sign(&serde_json::json!({"Name": "web-1", "exp": 10}), "1", &private).unwrap();
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.kid, 1);
        assert_eq!(parsed.claims["Name"], "web-1");
        assert!(parsed.verify(&public).unwrap());

        // Another key, or a payload edited after signing, fails.
        let (_, other) = keypair();
        assert!(!parsed.verify(&other).unwrap());
        let parts: Vec<&str> = token.split('.').collect();
        let forged = b64().encode(r#"{"Name":"admin","exp":10}"#);
        let tampered = format!("{}.{forged}.{}", parts[0], parts[2]);
        assert!(!parse(&tampered).unwrap().verify(&public).unwrap());
        // A truncated signature is a failed verification, not an error.
        let short = format!("{}.{}.AAAA", parts[0], parts[1]);
        assert!(!parse(&short).unwrap().verify(&public).unwrap());
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_crypto() {
        for bad in ["", "a.b", "a.b.c.d", "!!!.e30.AA", "e30.e30.AA"] {
            assert!(matches!(parse(bad), Err(TokenError::Malformed(_))), "{bad:?}");
        }
        let none_alg = format!("{}.{}.", b64().encode(r#"{"alg":"none","kid":"1"}"#), b64().encode("{}"));
        assert!(parse(&none_alg).unwrap_err().to_string().contains("\"none\""));
        let no_kid = format!("{}.{}.AA", b64().encode(r#"{"alg":"RS256"}"#), b64().encode("{}"));
        assert!(parse(&no_kid).unwrap_err().to_string().contains("kid"));
        assert!(parse(&"a".repeat(MAX_TOKEN_BYTES + 1)).is_err());
    }
}
