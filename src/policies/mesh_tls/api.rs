//! Kuma's MeshTLS (`pkg/plugins/policies/meshtls/api/v1alpha1`) and its validation
//! (`validator.go`, `api/common/v1alpha1/tls`): `from` entries of kind Mesh only, `mode`,
//! `tlsVersion` and `tlsCiphers` (the last two only with a top-level Mesh).

use serde::{Deserialize, Serialize};

use crate::model::{SpecType, ValidationError};
use crate::policies::core::api::{Allowed, ToFromPolicy};
use crate::policies::core::targetref::{TargetKind, TargetRefPolicy};

pub const ALLOWED: Allowed = Allowed {
    top: &[TargetKind::Mesh, TargetKind::MeshSubset],
    to: &[],
    from: &[TargetKind::Mesh],
    require_entries: false,
};

pub const MODES: [&str; 2] = ["Strict", "Permissive"];
pub const VERSIONS: [&str; 5] = ["TLSAuto", "TLS10", "TLS11", "TLS12", "TLS13"];
pub const CIPHERS: [&str; 6] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Conf {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_version: Option<Version>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ciphers: Option<Vec<String>>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Version {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct MeshTlsSpec(pub ToFromPolicy<Conf>);

fn one_of(name: &str, values: &[&str]) -> String {
    let quoted: Vec<String> = values.iter().map(|v| format!("{v:?}")).collect();
    format!("{name:?} must be one of [{}]", quoted.join(", "))
}

/// Kuma's order of specific versions (`TlsVersionOrder`); `TLSAuto` has none.
pub fn version_order(v: &str) -> Option<usize> {
    VERSIONS.iter().position(|x| *x == v).filter(|i| *i > 0)
}

impl SpecType for MeshTlsSpec {
    const TARGET_REF_KINDS: Option<Allowed> = Some(ALLOWED);

    fn target_ref(&self) -> Option<&dyn TargetRefPolicy> {
        Some(&self.0)
    }

    fn validate(&self) -> Result<(), ValidationError> {
        let mut errors = ValidationError::default();
        self.0.validate_refs(&mut errors, ALLOWED);
        let top_is_mesh = self.0.target_ref.as_ref().is_none_or(|t| t.kind() == TargetKind::Mesh);
        for (path, conf) in self.0.defaults() {
            if let Some(m) = &conf.mode {
                if !MODES.contains(&m.as_str()) {
                    errors.add(format!("{path}.mode"), one_of("mode", &MODES));
                }
            }
            if let Some(ciphers) = &conf.tls_ciphers {
                if !ciphers.is_empty() && !top_is_mesh {
                    errors.add(
                        format!("{path}.tlsCiphers"),
                        "tlsCiphers can only be defined with top level targetRef kind: Mesh",
                    );
                } else if ciphers.iter().any(|c| !CIPHERS.contains(&c.as_str())) {
                    errors.add(format!("{path}.tlsCiphers"), one_of("tlsCiphers", &CIPHERS));
                }
            }
            if let Some(v) = &conf.tls_version {
                if !top_is_mesh {
                    errors.add(
                        format!("{path}.tlsVersion"),
                        "tlsVersion can only be defined with top level targetRef kind: Mesh",
                    );
                    continue;
                }
                for (field, value) in [("min", &v.min), ("max", &v.max)] {
                    if value.as_deref().is_some_and(|x| !VERSIONS.contains(&x)) {
                        errors.add(format!("{path}.tlsVersion.{field}"), one_of(field, &VERSIONS));
                    }
                }
                if let (Some(min), Some(max)) =
                    (v.min.as_deref().and_then(version_order), v.max.as_deref().and_then(version_order))
                {
                    if min > max {
                        errors.add(format!("{path}.tlsVersion.min"), "min version can't be greater than max version");
                    }
                }
            }
        }
        errors.into_result()
    }
}

#[cfg(test)]
mod tests {
    use crate::policies::core::testing::assert_violation;
    use serde_json::json;

    fn tls(spec: serde_json::Value) -> serde_json::Value {
        json!({"type": "MeshTLS", "mesh": "default", "name": "t", "spec": spec})
    }

    #[test]
    fn kumas_messages() {
        let bad = tls(json!({"targetRef": {"kind": "Mesh"}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {
            "mode": "Lax", "tlsCiphers": ["RC4"], "tlsVersion": {"min": "TLS14", "max": "SSL3"}}}]}));
        assert_violation(
            bad.clone(),
            "spec.from[0].default.mode",
            "\"mode\" must be one of [\"Strict\", \"Permissive\"]",
        );
        assert_violation(bad.clone(), "spec.from[0].default.tlsCiphers", "\"tlsCiphers\" must be one of");
        assert_violation(bad.clone(), "spec.from[0].default.tlsVersion.min", "\"min\" must be one of [\"TLSAuto\"");
        assert_violation(bad, "spec.from[0].default.tlsVersion.max", "\"max\" must be one of");
        let order = tls(
            json!({"from": [{"targetRef": {"kind": "Mesh"}, "default": {"tlsVersion": {"min": "TLS13", "max": "TLS12"}}}]}),
        );
        assert_violation(order, "spec.from[0].default.tlsVersion.min", "greater than max");
        let subset = tls(
            json!({"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}}, "from": [{"targetRef": {"kind": "Mesh"}, "default": {"tlsVersion": {"min": "TLS12"}}}]}),
        );
        assert_violation(
            subset,
            "spec.from[0].default.tlsVersion",
            "only be defined with top level targetRef kind: Mesh",
        );
        let kind =
            tls(json!({"from": [{"targetRef": {"kind": "MeshService", "name": "x"}, "default": {"mode": "Strict"}}]}));
        assert_violation(kind, "spec.from[0].targetRef.kind", "MeshService");
        crate::model::rest::from_json(tls(json!({"targetRef": {"kind": "MeshSubset", "tags": {"a": "b"}},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"mode": "Permissive"}}]})))
        .unwrap();
    }
}
