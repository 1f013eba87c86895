//! Secret and GlobalSecret (`api/system/v1alpha1/secret.proto`): opaque bytes, base64 in the
//! REST API as protojson writes a `google.protobuf.BytesValue`. Mesh CAs, dataplane token
//! signing keys and user token signing keys are stored as these, with Kuma's names, so a
//! database shared with kuma-cp means the same keys to both.

use base64::Engine;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ValidationError;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Bytes>,
}

impl SecretSpec {
    pub fn new(data: Vec<u8>) -> SecretSpec {
        SecretSpec { data: Some(Bytes(data)) }
    }

    /// The bytes (empty when unset; validation refuses that for stored secrets).
    pub fn bytes(&self) -> &[u8] {
        self.data.as_ref().map(|b| b.0.as_slice()).unwrap_or(&[])
    }
}

/// A GlobalSecret has the same shape; its own type keeps the registry one row per type.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct GlobalSecretSpec(pub SecretSpec);

impl super::SpecType for GlobalSecretSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        super::SpecType::validate(&self.0)
    }
}

impl super::SpecType for SecretSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        if self.bytes().is_empty() {
            return Err(ValidationError::single("data", "cannot be empty"));
        }
        Ok(())
    }
}

/// Bytes written as standard base64 (protojson's `bytes`); reading also accepts the
/// URL-safe alphabet, as protojson does.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Bytes(pub Vec<u8>);

impl std::fmt::Debug for Bytes {
    // Secret material never goes into logs or panic messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes(<{} bytes>)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let t = text.trim();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t))
            .or_else(|_| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t))
            .map_err(|_| serde::de::Error::custom("is not valid base64"))?;
        Ok(Bytes(decoded))
    }
}

#[cfg(test)]
mod tests {
    use crate::model::rest;
    use serde_json::json;

    #[test]
    fn data_is_base64_and_required() {
        let env =
            rest::from_json(json!({"type": "Secret", "mesh": "default", "name": "s", "data": "aGVsbG8="})).unwrap();
        let crate::model::Spec::Secret(s) = &env.spec else { panic!() };
        assert_eq!(s.bytes(), b"hello");
        assert_eq!(env.spec.to_json(), json!({"data": "aGVsbG8="}));
        let err = rest::from_json(json!({"type": "Secret", "mesh": "default", "name": "s"})).unwrap_err();
        assert_eq!(err.violations[0].field, "data");
        let err = rest::from_json(json!({"type": "GlobalSecret", "name": "g", "data": "%%%"})).unwrap_err();
        assert_eq!(err.violations[0].field, "data");
        assert!(format!("{s:?}").contains("5 bytes") && !format!("{s:?}").contains("hello"));
    }
}
