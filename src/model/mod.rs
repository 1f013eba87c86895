//! Kuma's resource model: the types an operator applies, their REST/YAML envelope and their
//! validation.
//!
//! - [`ResourceType`] is the registry: Kuma's type names, REST paths and kumactl names.
//! - [`Resource`] = [`Meta`] (mesh, name, version, times) + a typed [`Spec`].
//! - [`rest`] turns resources into Kuma's JSON envelope (spec fields flattened next to the
//!   meta) and back.
//! - Each spec module (`mesh`, `dataplane`, `insight`, and every policy's `api` module under
//!   `crate::policies`) owns its serde types and its `validate()`, which reports every
//!   violation with the field path Kuma would name.

pub mod dataplane;
pub mod duration;
pub mod errors;
pub mod insight;
pub mod mesh;
pub mod rest;
pub mod secret;
pub mod selector;
pub mod tags;
pub mod types;

use std::time::SystemTime;

pub use errors::{ValidationError, Violation};
pub use tags::Tags;
pub use types::{Registered, ResourceType, Spec, SpecType};

/// Identifies one stored resource. Global types (Mesh) use an empty `mesh`, as Kuma's
/// Postgres schema does.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub rtype: ResourceType,
    pub mesh: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(rtype: ResourceType, mesh: impl Into<String>, name: impl Into<String>) -> Self {
        let mesh = if rtype.is_global() { String::new() } else { mesh.into() };
        ResourceKey { rtype, mesh, name: name.into() }
    }
}

impl std::fmt::Display for ResourceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.rtype.is_global() {
            write!(f, "{} {:?}", self.rtype.name(), self.name)
        } else {
            write!(f, "{} {:?} in mesh {:?}", self.rtype.name(), self.name, self.mesh)
        }
    }
}

/// What every resource carries besides its spec.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    /// Empty for global types.
    pub mesh: String,
    pub name: String,
    /// Bumped by the store on every update; the compare-and-swap token for optimistic
    /// concurrency. Never shown in the REST API (Kuma does not show it either).
    pub version: u64,
    pub creation_time: SystemTime,
    pub modification_time: SystemTime,
}

/// A stored resource. Shared as `Arc<Resource>` between the store, caches and readers, so it
/// is never mutated in place: writers build a new one.
#[derive(Clone, Debug, PartialEq)]
pub struct Resource {
    pub meta: Meta,
    pub spec: Spec,
}

impl Resource {
    pub fn rtype(&self) -> ResourceType {
        self.spec.resource_type()
    }

    pub fn key(&self) -> ResourceKey {
        ResourceKey::new(self.rtype(), self.meta.mesh.clone(), self.meta.name.clone())
    }

    /// A hash of the spec's content: what "did this resource change?" compares. Versions
    /// cannot answer that: they restart at 1 when a resource is deleted and created again,
    /// on every backend.
    pub fn content_hash(&self) -> u64 {
        /// Feeds the serializer's output straight into the hash: every job hashes its
        /// Dataplane, and building a `serde_json::Value` and a byte vector first was ~5 % of
        /// a 10,000-dataplane cold start's CPU samples.
        struct Hashing(xxhash_rust::xxh3::Xxh3);
        impl std::io::Write for Hashing {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.update(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut h = Hashing(xxhash_rust::xxh3::Xxh3::new());
        h.0.update(self.rtype().name().as_bytes());
        h.0.update(&[0]);
        // The spec types hold ordered maps only, so equal specs serialize to equal bytes.
        // Plain data structs with string keys cannot fail to serialize.
        let _ = self.spec.write_json(&mut h);
        h.0.digest()
    }
}

/// Kuma's rule for resource and mesh names (`meta_validator.go`): non-empty, `^[0-9a-z-_]*$`.
/// Higuma also caps the length at Kuma's column width (253).
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let reason = if name.is_empty() {
        Some("cannot be empty".to_string())
    } else if name.len() > 253 {
        Some(format!("{name:?} is longer than 253 characters"))
    } else if !name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-' || b == b'_') {
        Some(format!("invalid characters in {name:?}: a name may contain only lowercase letters, digits, '-' and '_'"))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(ValidationError::single(field, reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_kumas_rule() {
        assert!(validate_name("name", "backend-1_a").is_ok());
        let err = validate_name("name", "").unwrap_err();
        assert_eq!(err.violations[0].field, "name");
        assert!(validate_name("name", "Backend").is_err());
        assert!(validate_name("name", "a.b").is_err());
        assert!(validate_name("name", &"a".repeat(254)).is_err());
    }

    #[test]
    fn global_keys_drop_the_mesh() {
        let key = ResourceKey::new(ResourceType::Mesh, "ignored", "default");
        assert_eq!(key.mesh, "");
        let key = ResourceKey::new(ResourceType::Dataplane, "default", "dp-1");
        assert_eq!(key.mesh, "default");
    }
}
