//! Kuma's MeshTrust (`pkg/core/resources/apis/meshtrust/api/v1alpha1`).

use serde::{Deserialize, Serialize};

use crate::model::{SpecType, ValidationError};

/// Kuma's limit (`kubebuilder:validation:MaxLength=253`), a DNS name's.
const MAX_TRUST_DOMAIN: usize = 253;

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshTrustSpec {
    /// Set when the control plane made it from a MeshIdentity.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
    #[serde(default)]
    pub trust_domain: String,
    #[serde(rename = "caBundles", default)]
    pub ca_bundles: Vec<CaBundle>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Origin {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kri: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CaBundleType {
    Pem,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CaBundle {
    #[serde(rename = "type")]
    pub kind: CaBundleType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pem: Option<Pem>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pem {
    pub value: String,
}

impl MeshTrustSpec {
    /// The PEM bundles, in order.
    pub fn pems(&self) -> impl Iterator<Item = &str> {
        self.ca_bundles.iter().filter_map(|b| b.pem.as_ref().map(|p| p.value.as_str()))
    }
}

impl SpecType for MeshTrustSpec {
    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        if self.trust_domain.is_empty() {
            errors.add("spec.trustDomain", "must be defined");
        } else if self.trust_domain.len() > MAX_TRUST_DOMAIN {
            errors.add("spec.trustDomain", format!("must be at most {MAX_TRUST_DOMAIN} characters"));
        } else if !self
            .trust_domain
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        {
            errors.add(
                "spec.trustDomain",
                format!(
                    "{:?} is not a SPIFFE trust domain: lowercase letters, digits, '.', '-' and '_' only",
                    self.trust_domain
                ),
            );
        }
        if self.ca_bundles.is_empty() {
            errors.add("spec.caBundles", "must have at least one element");
        }
        for (i, b) in self.ca_bundles.iter().enumerate() {
            let at = format!("spec.caBundles[{i}].pem");
            match &b.pem {
                None => errors.add(at, "must be defined"),
                Some(p) => match openssl::x509::X509::stack_from_pem(p.value.as_bytes()) {
                    Ok(certs) if !certs.is_empty() => {}
                    Ok(_) => errors.add(format!("{at}.value"), "has no PEM certificate"),
                    Err(e) => errors.add(format!("{at}.value"), format!("is not a PEM certificate bundle: {e}")),
                },
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::assert_violation;
    use serde_json::json;

    #[test]
    fn bundles_must_be_certificates() {
        let (cert, _) = crate::mtls::ca::tests::test_root();
        let pem = String::from_utf8(cert.clone()).unwrap();
        let ok = json!({"type": "MeshTrust", "mesh": "default", "name": "t", "spec": {
            "trustDomain": "default.default.mesh.local", "caBundles": [{"type": "Pem", "pem": {"value": pem}}]}});
        crate::model::rest::from_json(ok).unwrap();
        let bad = json!({"type": "MeshTrust", "mesh": "default", "name": "t", "spec": {
            "trustDomain": "x", "caBundles": [{"type": "Pem", "pem": {"value": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"}}]}});
        assert_violation(bad, "spec.caBundles[0].pem.value", "is not a PEM certificate bundle");
        let none =
            json!({"type": "MeshTrust", "mesh": "default", "name": "t", "spec": {"trustDomain": "", "caBundles": []}});
        assert_violation(none.clone(), "spec.trustDomain", "must be defined");
        assert_violation(none, "spec.caBundles", "at least one");
    }
}
