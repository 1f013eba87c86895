//! What a Mesh gets when it turns mTLS on.
//!
//! Kuma 2.4 created `allow-all-<mesh>` (a TrafficPermission from every service to every
//! service) with every Mesh, so turning mTLS on changed nothing for permitted traffic. Kuma
//! 2.6 stopped creating it (only with `defaults.createMeshRoutingResources`), and since then
//! a Mesh with mTLS on and no permission denies all traffic; its docs tell operators to
//! create a MeshTrafficPermission before enabling mTLS. higuma follows 2.6+, as its other
//! defaults do (`policies::defaults`): a permission appearing by itself when mTLS is turned on
//! would silently open a mesh its operator meant to close, and a control plane shared with
//! kuma-cp 2.6+ must enforce the same thing. To not surprise an operator who forgot, turning
//! mTLS on in a Mesh without any TrafficPermission or MeshTrafficPermission logs a warning
//! saying what to create.

use crate::model::mesh::MeshSpec;
use crate::model::ResourceType;
use crate::store::{ResourceStore, StoreError};

/// Whether `new` turns mTLS on (it was off in `old`, or the Mesh is new).
pub fn turns_mtls_on(old: Option<&MeshSpec>, new: &MeshSpec) -> bool {
    new.mtls_enabled() && !old.is_some_and(MeshSpec::mtls_enabled)
}

/// The warning for Mesh `mesh` turning mTLS on, when it has no permission at all.
pub fn missing_permission_warning(store: &dyn ResourceStore, mesh: &str) -> Result<Option<String>, StoreError> {
    for t in [ResourceType::MeshTrafficPermission, ResourceType::TrafficPermission] {
        if !store.list(t, Some(mesh))?.is_empty() {
            return Ok(None);
        }
    }
    Ok(Some(format!(
        "mesh {mesh:?} has mTLS enabled and no MeshTrafficPermission or TrafficPermission: every \
         request between its dataplanes is denied (Kuma 2.6+). Create one, e.g. a \
         MeshTrafficPermission with targetRef {{kind: Mesh}} and from [{{targetRef: {{kind: Mesh}}, \
         default: {{action: Allow}}}}] to allow all"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest::from_json;
    use crate::model::Spec;
    use crate::store::MemoryStore;
    use serde_json::json;

    fn mesh(mtls: bool) -> MeshSpec {
        let mut v = json!({"type": "Mesh", "name": "m"});
        if mtls {
            v["mtls"] = json!({"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin"}]});
        }
        match from_json(v).unwrap().spec {
            Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    #[test]
    fn only_turning_mtls_on_counts() {
        assert!(turns_mtls_on(None, &mesh(true)));
        assert!(turns_mtls_on(Some(&mesh(false)), &mesh(true)));
        assert!(!turns_mtls_on(Some(&mesh(true)), &mesh(true)), "already on: warned then");
        assert!(!turns_mtls_on(Some(&mesh(true)), &mesh(false)));
        assert!(!turns_mtls_on(None, &mesh(false)));
    }

    #[test]
    fn a_mesh_without_any_permission_is_warned_about_and_one_permission_of_either_kind_is_enough() {
        let store = MemoryStore::new();
        store.create("", "m", Spec::Mesh(mesh(true))).unwrap();
        store.create("", "other", Spec::Mesh(mesh(true))).unwrap();
        let w = missing_permission_warning(&store, "m").unwrap().expect("a warning");
        assert!(w.contains("\"m\"") && w.contains("denied") && w.contains("MeshTrafficPermission"), "{w}");
        let tp = from_json(json!({"type": "TrafficPermission", "mesh": "other", "name": "tp",
            "sources": [{"match": {"kuma.io/service": "*"}}], "destinations": [{"match": {"kuma.io/service": "*"}}]}))
        .unwrap();
        store.create("other", "tp", tp.spec.clone()).unwrap();
        assert!(missing_permission_warning(&store, "m").unwrap().is_some(), "another mesh's permission does not count");
        store.create("m", "tp", tp.spec).unwrap();
        assert_eq!(missing_permission_warning(&store, "m").unwrap(), None);
        let store = MemoryStore::new();
        store.create("", "m", Spec::Mesh(mesh(true))).unwrap();
        let mtp = from_json(json!({"type": "MeshTrafficPermission", "mesh": "m", "name": "mtp",
            "spec": {"from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}}))
        .unwrap();
        store.create("m", "mtp", mtp.spec).unwrap();
        assert_eq!(missing_permission_warning(&store, "m").unwrap(), None);
    }
}
