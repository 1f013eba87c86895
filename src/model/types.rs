//! The type registry: one row per resource type with Kuma's type name, REST path and the
//! names kumactl accepts for it.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    Mesh,
    Dataplane,
    DataplaneInsight,
    TrafficPermission,
    TrafficRoute,
    HealthCheck,
    CircuitBreaker,
    Timeout,
    Retry,
}

struct Row {
    rtype: ResourceType,
    name: &'static str,
    ws_path: &'static str,
    /// Singular names kumactl accepts (`kumactl get dataplane x`); the plural is `ws_path`.
    singular: &'static [&'static str],
}

const REGISTRY: [Row; 9] = [
    Row { rtype: ResourceType::Mesh, name: "Mesh", ws_path: "meshes", singular: &["mesh"] },
    Row { rtype: ResourceType::Dataplane, name: "Dataplane", ws_path: "dataplanes", singular: &["dataplane", "dp"] },
    Row {
        rtype: ResourceType::DataplaneInsight,
        name: "DataplaneInsight",
        ws_path: "dataplane-insights",
        singular: &["dataplane-insight"],
    },
    Row {
        rtype: ResourceType::TrafficPermission,
        name: "TrafficPermission",
        ws_path: "traffic-permissions",
        singular: &["traffic-permission"],
    },
    Row {
        rtype: ResourceType::TrafficRoute,
        name: "TrafficRoute",
        ws_path: "traffic-routes",
        singular: &["traffic-route"],
    },
    Row {
        rtype: ResourceType::HealthCheck,
        name: "HealthCheck",
        ws_path: "health-checks",
        singular: &["healthcheck", "health-check", "healthchecks"],
    },
    Row {
        rtype: ResourceType::CircuitBreaker,
        name: "CircuitBreaker",
        ws_path: "circuit-breakers",
        singular: &["circuit-breaker"],
    },
    Row { rtype: ResourceType::Timeout, name: "Timeout", ws_path: "timeouts", singular: &["timeout"] },
    Row { rtype: ResourceType::Retry, name: "Retry", ws_path: "retries", singular: &["retry"] },
];

impl ResourceType {
    pub const ALL: [ResourceType; 9] = [
        ResourceType::Mesh,
        ResourceType::Dataplane,
        ResourceType::DataplaneInsight,
        ResourceType::TrafficPermission,
        ResourceType::TrafficRoute,
        ResourceType::HealthCheck,
        ResourceType::CircuitBreaker,
        ResourceType::Timeout,
        ResourceType::Retry,
    ];

    fn row(self) -> &'static Row {
        // REGISTRY lists the variants in declaration order.
        &REGISTRY[self as usize]
    }

    /// Kuma's type name, as in the `type` field of the envelope.
    pub fn name(self) -> &'static str {
        self.row().name
    }

    /// The REST collection path segment (`dataplanes`, `traffic-permissions`).
    pub fn ws_path(self) -> &'static str {
        self.row().ws_path
    }

    /// Global types live outside any mesh.
    pub fn is_global(self) -> bool {
        self == ResourceType::Mesh
    }

    /// Written only by the control plane itself, never through the API.
    pub fn is_read_only(self) -> bool {
        self == ResourceType::DataplaneInsight
    }

    /// Policies: the types that select dataplanes by tags.
    pub fn is_policy(self) -> bool {
        !matches!(self, ResourceType::Mesh | ResourceType::Dataplane | ResourceType::DataplaneInsight)
    }

    pub fn from_name(name: &str) -> Option<ResourceType> {
        REGISTRY.iter().find(|r| r.name == name).map(|r| r.rtype)
    }

    pub fn from_ws_path(path: &str) -> Option<ResourceType> {
        REGISTRY.iter().find(|r| r.ws_path == path).map(|r| r.rtype)
    }

    /// Accepts what kumactl accepts: the plural REST path, a singular name, or the type name
    /// in any case (`dataplanes`, `dataplane`, `Dataplane`).
    pub fn from_cli_arg(arg: &str) -> Option<ResourceType> {
        let lower = arg.to_ascii_lowercase();
        REGISTRY
            .iter()
            .find(|r| r.ws_path == lower || r.singular.contains(&lower.as_str()) || r.name.to_ascii_lowercase() == lower)
            .map(|r| r.rtype)
    }

    /// Every name `from_cli_arg` accepts, for error messages.
    pub fn cli_names() -> Vec<&'static str> {
        REGISTRY.iter().map(|r| r.ws_path).collect()
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_is_in_declaration_order() {
        for t in ResourceType::ALL {
            assert_eq!(t.row().rtype, t);
            assert_eq!(ResourceType::from_name(t.name()), Some(t));
            assert_eq!(ResourceType::from_ws_path(t.ws_path()), Some(t));
            assert_eq!(ResourceType::from_cli_arg(t.ws_path()), Some(t));
        }
    }

    #[test]
    fn cli_accepts_kumactl_spellings() {
        assert_eq!(ResourceType::from_cli_arg("dataplane"), Some(ResourceType::Dataplane));
        assert_eq!(ResourceType::from_cli_arg("Dataplane"), Some(ResourceType::Dataplane));
        assert_eq!(ResourceType::from_cli_arg("healthcheck"), Some(ResourceType::HealthCheck));
        assert_eq!(ResourceType::from_cli_arg("nope"), None);
    }
}
