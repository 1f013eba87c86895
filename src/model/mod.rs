//! Kuma's resource model: the types an operator applies, their REST/YAML envelope and their
//! validation.
//!
//! - [`ResourceType`] is the registry: Kuma's type names, REST paths and kumactl names.
//! - [`Resource`] = [`Meta`] (mesh, name, version, times) + a typed [`Spec`].
//! - [`rest`] turns resources into Kuma's JSON envelope (spec fields flattened next to the
//!   meta) and back.
//! - Each spec module (`mesh`, `dataplane`, `insight`, `policy`) owns its serde types and its
//!   `validate()`, which reports every violation with the field path Kuma would name.

pub mod dataplane;
pub mod errors;
pub mod insight;
pub mod mesh;
pub mod policy;
pub mod rest;
pub mod selector;
pub mod types;

use std::time::SystemTime;

pub use errors::{ValidationError, Violation};
pub use types::ResourceType;

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

/// A typed spec; the variant decides the resource type.
#[derive(Clone, Debug, PartialEq)]
pub enum Spec {
    Mesh(mesh::MeshSpec),
    Dataplane(dataplane::DataplaneSpec),
    DataplaneInsight(insight::DataplaneInsightSpec),
    TrafficPermission(policy::TrafficPermissionSpec),
    TrafficRoute(policy::TrafficRouteSpec),
    HealthCheck(policy::HealthCheckSpec),
    CircuitBreaker(policy::CircuitBreakerSpec),
    Timeout(policy::TimeoutSpec),
    Retry(policy::RetrySpec),
}

impl Spec {
    pub fn resource_type(&self) -> ResourceType {
        match self {
            Spec::Mesh(_) => ResourceType::Mesh,
            Spec::Dataplane(_) => ResourceType::Dataplane,
            Spec::DataplaneInsight(_) => ResourceType::DataplaneInsight,
            Spec::TrafficPermission(_) => ResourceType::TrafficPermission,
            Spec::TrafficRoute(_) => ResourceType::TrafficRoute,
            Spec::HealthCheck(_) => ResourceType::HealthCheck,
            Spec::CircuitBreaker(_) => ResourceType::CircuitBreaker,
            Spec::Timeout(_) => ResourceType::Timeout,
            Spec::Retry(_) => ResourceType::Retry,
        }
    }

    /// Decodes the spec fields of a resource of type `rtype` (the envelope's meta keys already
    /// removed). Unknown fields and wrong value types are violations naming the field path.
    pub fn from_json(rtype: ResourceType, value: serde_json::Value) -> Result<Spec, ValidationError> {
        fn decode<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> Result<T, ValidationError> {
            serde_path_to_error::deserialize(value).map_err(|err| {
                let path = err.path().to_string();
                let field = if path == "." { String::new() } else { path };
                ValidationError::single(field, err.into_inner().to_string())
            })
        }
        Ok(match rtype {
            ResourceType::Mesh => Spec::Mesh(decode(value)?),
            ResourceType::Dataplane => Spec::Dataplane(decode(value)?),
            ResourceType::DataplaneInsight => Spec::DataplaneInsight(decode(value)?),
            ResourceType::TrafficPermission => Spec::TrafficPermission(decode(value)?),
            ResourceType::TrafficRoute => Spec::TrafficRoute(decode(value)?),
            ResourceType::HealthCheck => Spec::HealthCheck(decode(value)?),
            ResourceType::CircuitBreaker => Spec::CircuitBreaker(decode(value)?),
            ResourceType::Timeout => Spec::Timeout(decode(value)?),
            ResourceType::Retry => Spec::Retry(decode(value)?),
        })
    }

    /// The spec's fields as a JSON object, in Kuma's field names (camelCase).
    pub fn to_json(&self) -> serde_json::Value {
        let encoded = match self {
            Spec::Mesh(s) => serde_json::to_value(s),
            Spec::Dataplane(s) => serde_json::to_value(s),
            Spec::DataplaneInsight(s) => serde_json::to_value(s),
            Spec::TrafficPermission(s) => serde_json::to_value(s),
            Spec::TrafficRoute(s) => serde_json::to_value(s),
            Spec::HealthCheck(s) => serde_json::to_value(s),
            Spec::CircuitBreaker(s) => serde_json::to_value(s),
            Spec::Timeout(s) => serde_json::to_value(s),
            Spec::Retry(s) => serde_json::to_value(s),
        };
        // Serializing plain data structs with string keys cannot fail.
        encoded.expect("spec types serialize to JSON")
    }

    /// Checks the semantic rules of the spec (required fields, ranges, tag rules).
    pub fn validate(&self) -> Result<(), ValidationError> {
        match self {
            Spec::Mesh(s) => s.validate(),
            Spec::Dataplane(s) => s.validate(),
            Spec::DataplaneInsight(_) => Ok(()),
            Spec::TrafficPermission(s) => s.validate(),
            Spec::TrafficRoute(s) => s.validate(),
            Spec::HealthCheck(s) => s.validate(),
            Spec::CircuitBreaker(s) => s.validate(),
            Spec::Timeout(s) => s.validate(),
            Spec::Retry(s) => s.validate(),
        }
    }
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
}

/// Kuma's rule for resource and mesh names (`meta_validator.go`): non-empty, `^[0-9a-z-_]*$`.
/// Higuma also caps the length at Kuma's column width (253).
pub fn validate_name(field: &str, name: &str) -> Result<(), ValidationError> {
    let reason = if name.is_empty() {
        Some("cannot be empty".to_string())
    } else if name.len() > 253 {
        Some(format!("{name:?} is longer than 253 characters"))
    } else if !name.bytes().all(|b| b.is_ascii_digit() || b.is_ascii_lowercase() || b == b'-' || b == b'_') {
        Some(format!(
            "invalid characters in {name:?}: a name may contain only lowercase letters, digits, '-' and '_'"
        ))
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
