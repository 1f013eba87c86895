//! The policies a new Mesh starts with (Kuma 2.6's `pkg/defaults/mesh/mesh.go`, reference
//! §3): created once, when the Mesh is created (through the API, or Mesh `default` at
//! start), never on a Mesh update, and never twice.
//!
//! - A Mesh's `skipCreatingInitialPolicies` lists the type names to leave out, or `*` for
//!   all of them.
//! - `allow-all-<mesh>` (TrafficPermission) and `route-all-<mesh>` (TrafficRoute) come only
//!   with `defaults.createMeshRoutingResources`: the targetRef policies need neither.
//! - Each default is created only if absent; "already exists" (another instance or request
//!   creating the same Mesh's defaults at the same moment, or an operator who created it
//!   first) is fine.
//!
//! The dataplane-token signing key Kuma also creates with a Mesh belongs to the token work,
//! not here.

use serde_json::Value;

use crate::model::mesh::MeshSpec;
use crate::model::{rest, ResourceKey, ValidationError};
use crate::store::{ResourceStore, StoreError};

/// One default policy: its envelope without `mesh` and `name`, which are `<mesh>` and
/// `<prefix>-<mesh>`.
#[derive(Clone, Copy, Debug)]
pub struct DefaultPolicy {
    /// Kuma's type name, as `skipCreatingInitialPolicies` names it.
    pub type_name: &'static str,
    pub prefix: &'static str,
    /// Created only with `defaults.createMeshRoutingResources`.
    pub routing: bool,
    /// The envelope as JSON (`type` and the spec).
    pub document: &'static str,
}

impl DefaultPolicy {
    pub fn name(&self, mesh: &str) -> String {
        format!("{}-{mesh}", self.prefix)
    }

    /// The full envelope for `mesh`.
    pub fn envelope(&self, mesh: &str) -> Value {
        // The documents are constants checked by the tests below.
        let mut v: Value = serde_json::from_str(self.document).unwrap_or_default();
        if let Value::Object(o) = &mut v {
            o.insert("mesh".into(), Value::from(mesh));
            o.insert("name".into(), Value::from(self.name(mesh)));
        }
        v
    }
}

/// Kuma 2.6's defaults (`pkg/defaults/mesh/{meshtimeout,meshcircuitbreaker,meshretry}.go`
/// at 2.6: the first release whose defaults are targetRef policies; their shape holds
/// through 2.9). Kuma 2.6 also creates `mesh-gateways-timeout-all` (a MeshTimeout on
/// MeshGateway proxies); higuma serves no built-in gateways, so it has no use for it.
pub const DEFAULTS: &[DefaultPolicy] = &[
    DefaultPolicy {
        type_name: "MeshTimeout",
        prefix: "mesh-timeout-all",
        routing: false,
        // Inbound values are larger than the outbound ones, or off, so the caller's side
        // decides (Kuma's comment on the same defaults).
        document: r#"{"type": "MeshTimeout", "spec": {"targetRef": {"kind": "Mesh"},
            "from": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "10s",
                "idleTimeout": "2h", "http": {"requestTimeout": "0s", "streamIdleTimeout": "1h",
                "maxStreamDuration": "0s"}}}],
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "5s",
                "idleTimeout": "1h", "http": {"requestTimeout": "15s", "streamIdleTimeout": "30m"}}}]}}"#,
    },
    DefaultPolicy {
        type_name: "MeshCircuitBreaker",
        prefix: "mesh-circuit-breaker-all",
        routing: false,
        document: r#"{"type": "MeshCircuitBreaker", "spec": {"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionLimits": {
                "maxConnections": 1024, "maxPendingRequests": 1024, "maxRequests": 1024,
                "maxRetries": 3}}}]}}"#,
    },
    DefaultPolicy {
        type_name: "MeshRetry",
        prefix: "mesh-retry-all",
        routing: false,
        document: r#"{"type": "MeshRetry", "spec": {"targetRef": {"kind": "Mesh"},
            "to": [{"targetRef": {"kind": "Mesh"}, "default": {"tcp": {"maxConnectAttempt": 5},
                "http": {"numRetries": 5, "perTryTimeout": "16s",
                    "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}},
                "grpc": {"numRetries": 5, "perTryTimeout": "16s",
                    "backOff": {"baseInterval": "25ms", "maxInterval": "250ms"}}}}]}}"#,
    },
    DefaultPolicy {
        type_name: "TrafficPermission",
        prefix: "allow-all",
        routing: true,
        document: r#"{"type": "TrafficPermission",
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": "*"}}]}"#,
    },
    DefaultPolicy {
        type_name: "TrafficRoute",
        prefix: "route-all",
        routing: true,
        document: r#"{"type": "TrafficRoute",
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": "*"}}],
            "conf": {"destination": {"kuma.io/service": "*"}, "loadBalancer": {"roundRobin": {}}}}"#,
    },
];

/// `skipCreatingInitialPolicies` value that skips every default.
pub const SKIP_ALL: &str = "*";

#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    /// A default document does not validate: a bug in [`DEFAULTS`], caught by its tests.
    #[error("default policy {name:?} is invalid: {source}")]
    Invalid { name: String, source: ValidationError },
    #[error("creating the default policies failed: {0}")]
    Store(#[from] StoreError),
}

/// The defaults a new Mesh with `spec` gets, in creation order.
pub fn wanted<'a>(
    spec: &MeshSpec,
    create_routing_resources: bool,
    defaults: &'a [DefaultPolicy],
) -> Vec<&'a DefaultPolicy> {
    let skip = &spec.skip_creating_initial_policies;
    if skip.iter().any(|s| s == SKIP_ALL) {
        return Vec::new();
    }
    defaults
        .iter()
        .filter(|d| create_routing_resources || !d.routing)
        .filter(|d| !skip.iter().any(|s| s == d.type_name))
        .collect()
}

/// Creates the defaults of Mesh `mesh` (just created with `spec`) that do not exist yet;
/// returns the keys it created.
pub fn ensure(
    store: &dyn ResourceStore,
    mesh: &str,
    spec: &MeshSpec,
    create_routing_resources: bool,
) -> Result<Vec<ResourceKey>, DefaultsError> {
    ensure_from(store, mesh, spec, create_routing_resources, DEFAULTS)
}

/// [`ensure`] with another list of defaults.
pub fn ensure_from(
    store: &dyn ResourceStore,
    mesh: &str,
    spec: &MeshSpec,
    create_routing_resources: bool,
    defaults: &[DefaultPolicy],
) -> Result<Vec<ResourceKey>, DefaultsError> {
    let mut created = Vec::new();
    for d in wanted(spec, create_routing_resources, defaults) {
        let name = d.name(mesh);
        let envelope = rest::from_json(d.envelope(mesh))
            .map_err(|source| DefaultsError::Invalid { name: name.clone(), source })?;
        match store.create(mesh, &name, envelope.spec) {
            Ok(r) => {
                log::info!("created default {} {name:?} in mesh {mesh:?}", d.type_name);
                created.push(r.key());
            }
            Err(StoreError::AlreadyExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(created)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::model::{ResourceType, Spec};
    use crate::store::MemoryStore;

    fn store_with_mesh(mesh: &str, skip: &[&str]) -> (Arc<MemoryStore>, MeshSpec) {
        let store = Arc::new(MemoryStore::new());
        let spec = MeshSpec {
            skip_creating_initial_policies: skip.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        };
        store.create("", mesh, Spec::Mesh(spec.clone())).unwrap();
        (store, spec)
    }

    fn names(store: &MemoryStore, t: ResourceType, mesh: &str) -> Vec<String> {
        store.list(t, Some(mesh)).unwrap().iter().map(|r| r.meta.name.clone()).collect()
    }

    #[test]
    fn every_default_document_is_a_valid_resource_of_its_type() {
        for d in DEFAULTS {
            let env = rest::from_json(d.envelope("demo")).unwrap_or_else(|e| panic!("{}: {e}", d.prefix));
            assert_eq!(env.rtype.name(), d.type_name);
            assert_eq!(env.name, format!("{}-demo", d.prefix));
        }
    }

    #[test]
    fn routing_resources_only_on_request_and_each_created_once() {
        let (store, spec) = store_with_mesh("demo", &[]);
        let created = ensure(&*store, "demo", &spec, false).unwrap();
        let created: Vec<&str> = created.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(
            created,
            ["mesh-timeout-all-demo", "mesh-circuit-breaker-all-demo", "mesh-retry-all-demo"],
            "Kuma 2.6: the targetRef defaults, no routing resources"
        );
        assert!(names(&store, ResourceType::TrafficPermission, "demo").is_empty());
        let created = ensure(&*store, "demo", &spec, true).unwrap();
        let created: Vec<&str> = created.iter().map(|k| k.name.as_str()).collect();
        assert_eq!(created, ["allow-all-demo", "route-all-demo"]);
        assert_eq!(names(&store, ResourceType::TrafficPermission, "demo"), ["allow-all-demo"]);
        assert_eq!(names(&store, ResourceType::TrafficRoute, "demo"), ["route-all-demo"]);
        let before = store.get(&ResourceKey::new(ResourceType::TrafficRoute, "demo", "route-all-demo")).unwrap();
        assert!(ensure(&*store, "demo", &spec, true).unwrap().is_empty(), "a second run creates nothing");
        let after = store.get(&ResourceKey::new(ResourceType::TrafficRoute, "demo", "route-all-demo")).unwrap();
        assert_eq!(before.meta.version, after.meta.version, "and touches nothing");
    }

    #[test]
    fn skipped_per_type_and_with_a_star() {
        let (store, spec) = store_with_mesh("demo", &["TrafficRoute", "MeshRetry"]);
        ensure(&*store, "demo", &spec, true).unwrap();
        assert_eq!(names(&store, ResourceType::TrafficPermission, "demo"), ["allow-all-demo"]);
        assert!(names(&store, ResourceType::TrafficRoute, "demo").is_empty());
        assert!(names(&store, ResourceType::MeshRetry, "demo").is_empty());
        assert_eq!(names(&store, ResourceType::MeshTimeout, "demo"), ["mesh-timeout-all-demo"]);

        let (store, spec) = store_with_mesh("demo", &["*"]);
        assert!(ensure(&*store, "demo", &spec, true).unwrap().is_empty());
        assert!(names(&store, ResourceType::TrafficPermission, "demo").is_empty());
        assert!(names(&store, ResourceType::TrafficRoute, "demo").is_empty());
        assert!(names(&store, ResourceType::MeshTimeout, "demo").is_empty());
    }

    #[test]
    fn a_default_someone_else_created_is_left_as_it_is() {
        let (store, spec) = store_with_mesh("demo", &[]);
        // An operator (or another instance) created allow-all-demo first, differently.
        let own = rest::from_json(serde_json::json!({
            "type": "TrafficPermission", "mesh": "demo", "name": "allow-all-demo",
            "sources": [{"match": {"kuma.io/service": "web"}}],
            "destinations": [{"match": {"kuma.io/service": "*"}}]
        }))
        .unwrap();
        store.create("demo", "allow-all-demo", own.spec.clone()).unwrap();
        let created = ensure(&*store, "demo", &spec, true).unwrap();
        assert_eq!(created.len(), DEFAULTS.len() - 1, "all but allow-all were missing: {created:?}");
        let kept = store.get(&ResourceKey::new(ResourceType::TrafficPermission, "demo", "allow-all-demo")).unwrap();
        assert_eq!(kept.spec, own.spec);
    }

    #[test]
    fn concurrent_creators_make_one_copy_and_all_succeed() {
        let (store, spec) = store_with_mesh("demo", &[]);
        let results: Vec<Result<Vec<ResourceKey>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> =
                (0..8).map(|_| s.spawn(|| ensure(&*store, "demo", &spec, true).map_err(|e| e.to_string()))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let mut created = 0;
        for r in results {
            created += r.unwrap().len();
        }
        assert_eq!(created, DEFAULTS.len(), "each default is created by exactly one of the racers");
        assert_eq!(names(&store, ResourceType::TrafficPermission, "demo"), ["allow-all-demo"]);
        assert_eq!(names(&store, ResourceType::TrafficRoute, "demo"), ["route-all-demo"]);
    }

    #[test]
    fn a_store_failure_is_reported() {
        let store = MemoryStore::new();
        // No Mesh "gone": the store refuses the policies.
        let err = ensure(&store, "gone", &MeshSpec::default(), true).unwrap_err();
        assert!(matches!(err, DefaultsError::Store(StoreError::MeshNotFound(_))), "{err}");
    }
}
