//! Where CA material comes from: Kuma's `DataSource` (`api/system/v1alpha1/datasource.proto`:
//! a Secret of the mesh, a file on the control plane's host, inline bytes or an inline
//! string) and MeshIdentity's `SecureDataSource` (`type: File | Secret | EnvVar |
//! InsecureInline`).

use serde::{Deserialize, Serialize};

use crate::model::secret::Bytes;
use crate::model::{ResourceKey, ResourceType, Spec, ValidationError};
use crate::store::ResourceReader;

/// Files read for CA material are certificates and keys: a few kilobytes. The bound keeps a
/// mistyped path (a log file, a device) from being read whole into memory.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// Kuma's `DataSource`: exactly one of the fields.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSource {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Deprecated in Kuma (the file must be on every control-plane host), still honoured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Base64 in JSON (a protobuf `BytesValue`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<Bytes>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline_string: Option<String>,
}

impl DataSource {
    fn chosen(&self) -> usize {
        [self.secret.is_some(), self.file.is_some(), self.inline.is_some(), self.inline_string.is_some()]
            .iter()
            .filter(|b| **b)
            .count()
    }

    /// Kuma's `datasource.Validate`, violations under `at`.
    pub fn validate(&self, errors: &mut ValidationError, at: &str) {
        match self.chosen() {
            0 => errors.add(at, "data source has to be chosen. Available sources: secret, file, inline, inlineString"),
            1 => {}
            _ => errors.add(at, "only one data source may be set: secret, file, inline or inlineString"),
        }
        if self.secret.as_deref() == Some("") {
            errors.add(format!("{at}.secret"), "cannot be empty");
        }
        if self.file.as_deref() == Some("") {
            errors.add(format!("{at}.file"), "cannot be empty");
        }
        if self.inline.as_ref().is_some_and(|b| b.0.is_empty()) {
            errors.add(format!("{at}.inline"), "cannot be empty");
        }
        if self.inline_string.as_deref() == Some("") {
            errors.add(format!("{at}.inlineString"), "cannot be empty");
        }
    }

    /// The Secret it names, if any (a Secret in use cannot be deleted).
    pub fn secret_name(&self) -> Option<&str> {
        self.secret.as_deref()
    }

    /// Kuma's `datasource.Loader`: the bytes, or why they cannot be read ("could not load
    /// data: ...").
    pub fn load(&self, reader: &dyn ResourceReader, mesh: &str) -> Result<Vec<u8>, String> {
        if let Some(name) = &self.secret {
            return load_secret(reader, mesh, name);
        }
        if let Some(path) = &self.file {
            return read_file(path);
        }
        if let Some(b) = &self.inline {
            return Ok(b.0.clone());
        }
        if let Some(s) = &self.inline_string {
            return Ok(s.as_bytes().to_vec());
        }
        Err("could not load data: no data source is set".to_string())
    }
}

fn load_secret(reader: &dyn ResourceReader, mesh: &str, name: &str) -> Result<Vec<u8>, String> {
    let key = ResourceKey::new(ResourceType::Secret, mesh, name);
    match reader.get(&key) {
        Ok(r) => match &r.spec {
            Spec::Secret(s) => Ok(s.bytes().to_vec()),
            _ => Err(format!("could not load data: {key} is not a Secret")),
        },
        Err(crate::store::StoreError::NotFound(_)) => {
            Err(format!("could not load data: Secret {name:?} not found in mesh {mesh:?}"))
        }
        Err(e) => Err(format!("could not load data: {e}")),
    }
}

fn read_file(path: &str) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| format!("could not load data: {path}: {e}"))?;
    let mut out = Vec::new();
    file.take(MAX_FILE_BYTES + 1).read_to_end(&mut out).map_err(|e| format!("could not load data: {path}: {e}"))?;
    if out.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("could not load data: {path} is larger than {MAX_FILE_BYTES} bytes"));
    }
    Ok(out)
}

/// MeshIdentity's `SecureDataSource` type.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecureKind {
    File,
    Secret,
    EnvVar,
    InsecureInline,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRef {
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NameRef {
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValueRef {
    pub value: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretRef {
    /// Always `Secret`.
    pub kind: String,
    pub name: String,
}

/// Kuma's `SecureDataSource` (`api/common/v1alpha1/datasource`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecureDataSource {
    #[serde(rename = "type")]
    pub kind: SecureKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<PathRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env_var: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_inline: Option<ValueRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretRef>,
}

impl SecureDataSource {
    /// Kuma's `ValidateSecureDataSource`, violations under `at`.
    pub fn validate(&self, errors: &mut ValidationError, at: &str) {
        const MUST: &str = "must be defined";
        match self.kind {
            SecureKind::EnvVar => match &self.env_var {
                None => errors.add(format!("{at}.envVar"), MUST),
                Some(v) if v.name.is_empty() => errors.add(format!("{at}.envVar.name"), MUST),
                _ => {}
            },
            SecureKind::InsecureInline => match &self.insecure_inline {
                None => errors.add(format!("{at}.insecureInline"), MUST),
                Some(v) if v.value.is_empty() => errors.add(format!("{at}.insecureInline.value"), MUST),
                _ => {}
            },
            SecureKind::File => match &self.file {
                None => errors.add(format!("{at}.file"), MUST),
                Some(v) if v.path.is_empty() => errors.add(format!("{at}.file.path"), MUST),
                _ => {}
            },
            SecureKind::Secret => match &self.secret_ref {
                None => errors.add(format!("{at}.secretRef"), MUST),
                Some(r) => {
                    if r.kind != "Secret" {
                        errors.add(format!("{at}.secretRef.kind"), format!("{:?} must be one of [\"Secret\"]", r.kind));
                    }
                    if r.name.is_empty() {
                        errors.add(format!("{at}.secretRef.name"), MUST);
                    }
                }
            },
        }
    }

    pub fn secret_name(&self) -> Option<&str> {
        match self.kind {
            SecureKind::Secret => self.secret_ref.as_ref().map(|r| r.name.as_str()),
            _ => None,
        }
    }

    pub fn load(&self, reader: &dyn ResourceReader, mesh: &str) -> Result<Vec<u8>, String> {
        match self.kind {
            SecureKind::File => read_file(self.file.as_ref().map(|f| f.path.as_str()).unwrap_or_default()),
            SecureKind::Secret => load_secret(reader, mesh, self.secret_name().unwrap_or_default()),
            SecureKind::EnvVar => {
                let name = self.env_var.as_ref().map(|v| v.name.as_str()).unwrap_or_default();
                std::env::var(name).map(String::into_bytes).map_err(|e| format!("could not load data: ${name}: {e}"))
            }
            SecureKind::InsecureInline => {
                Ok(self.insecure_inline.as_ref().map(|v| v.value.as_bytes().to_vec()).unwrap_or_default())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryStore, ResourceStore};

    #[test]
    fn loads_each_kind() {
        let store = MemoryStore::new();
        store.create("", "m", Spec::Mesh(Default::default())).unwrap();
        store.create("m", "ca", Spec::Secret(crate::model::secret::SecretSpec::new(b"PEM".to_vec()))).unwrap();
        let ds: DataSource = serde_json::from_value(serde_json::json!({"secret": "ca"})).unwrap();
        assert_eq!(ds.load(&store, "m").unwrap(), b"PEM");
        let err = ds.load(&store, "other").unwrap_err();
        assert!(err.contains("not found"), "{err}");
        let ds: DataSource = serde_json::from_value(serde_json::json!({"inline": "UEVN"})).unwrap();
        assert_eq!(ds.load(&store, "m").unwrap(), b"PEM");
        let ds: DataSource = serde_json::from_value(serde_json::json!({"inlineString": "PEM"})).unwrap();
        assert_eq!(ds.load(&store, "m").unwrap(), b"PEM");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, b"PEM").unwrap();
        let ds = DataSource { file: Some(path.display().to_string()), ..Default::default() };
        assert_eq!(ds.load(&store, "m").unwrap(), b"PEM");
        let ds = DataSource { file: Some("/nonexistent/ca.pem".into()), ..Default::default() };
        assert!(ds.load(&store, "m").unwrap_err().contains("/nonexistent/ca.pem"));
    }

    #[test]
    fn validation_names_the_field() {
        let mut e = ValidationError::default();
        DataSource { secret: Some("a".into()), file: Some("b".into()), ..Default::default() }.validate(&mut e, "x");
        assert_eq!(e.violations[0].field, "x");
        let mut e = ValidationError::default();
        let s: SecureDataSource =
            serde_json::from_value(serde_json::json!({"type": "Secret", "secretRef": {"kind": "Other", "name": ""}}))
                .unwrap();
        s.validate(&mut e, "ca.certificate");
        let fields: Vec<&str> = e.violations.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["ca.certificate.secretRef.kind", "ca.certificate.secretRef.name"]);
    }
}
