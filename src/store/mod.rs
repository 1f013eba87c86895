//! Where resources live: the [`ResourceStore`] trait every backend implements, the change
//! events it emits, the embedded in-memory backend, and the Kuma-compatible Postgres backend
//! ([`postgres`]: pool, migrations, LISTEN/NOTIFY change events).
//!
//! Contract (checked by `tests/store_contract/`, run against every backend):
//! - `list` returns resources sorted by (mesh, name).
//! - `create` of a mesh-scoped resource fails with `MeshNotFound` when the mesh is missing; a
//!   DataplaneInsight needs its Dataplane (`OwnerNotFound`).
//! - `update` is a compare-and-swap on `Meta::version`: a stale version is `Conflict` and
//!   changes nothing.
//! - Deleting a Mesh deletes everything in it; deleting a Dataplane deletes its insight.
//! - Every successful write, including cascaded deletes, emits one [`ChangeEvent`] to every
//!   subscriber, in the order the writes happened.

pub mod errors;
pub mod events;
pub mod memory;
pub mod metered;
pub mod postgres;

use std::sync::Arc;

pub use errors::{Result, StoreError};
pub use events::{ChangeEvent, EventBus, Operation};
pub use memory::MemoryStore;

use crate::model::{Resource, ResourceKey, ResourceType, Spec};

/// A backend that keeps resources. Implementations are shared between threads; returned
/// resources are immutable snapshots (`Arc`), so callers never see a half-applied write.
pub trait ResourceStore: Send + Sync {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>>;

    /// All resources of `rtype`, optionally only those in `mesh`, sorted by (mesh, name).
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>>;

    /// Stores a new resource; its type is the spec's.
    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<Resource>>;

    /// Replaces the spec if the stored version still equals `expected_version`.
    fn update(&self, key: &ResourceKey, spec: Spec, expected_version: u64) -> Result<Arc<Resource>>;

    fn delete(&self, key: &ResourceKey) -> Result<()>;

    /// A new receiver of every change from now on.
    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent>;

    /// Reads many resources; `None` for each one that does not exist. Backends may answer
    /// in one round trip; the default reads them one by one.
    fn get_batch(&self, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        keys.iter()
            .map(|k| match self.get(k) {
                Ok(r) => Ok(Some(r)),
                Err(StoreError::NotFound(_)) => Ok(None),
                Err(e) => Err(e),
            })
            .collect()
    }

    /// Applies independent writes, each with the outcome `create` or `update` would give it
    /// (in order); every write that succeeds emits its event. `Err` means the batch as a
    /// whole did not run (nothing, or only some writes, may have landed: read again).
    /// Backends may do it in a few statements; the default writes one by one.
    fn write_batch(&self, writes: Vec<BatchWrite>) -> Result<Vec<Result<()>>> {
        Ok(writes
            .into_iter()
            .map(|w| match w {
                BatchWrite::Create { key, spec } => self.create(&key.mesh, &key.name, spec).map(drop),
                BatchWrite::Update { key, spec, expected_version } => {
                    self.update(&key, spec, expected_version).map(drop)
                }
            })
            .collect())
    }

    /// The backend's name as in `store.type`.
    fn backend(&self) -> &'static str;

    /// Whether the backend answers right now (readiness); the embedded store always does.
    fn ping(&self) -> Result<()> {
        Ok(())
    }
}

/// One write of [`ResourceStore::write_batch`]; the key's type must be the spec's.
#[derive(Clone, Debug)]
pub enum BatchWrite {
    Create { key: ResourceKey, spec: Spec },
    Update { key: ResourceKey, spec: Spec, expected_version: u64 },
}

impl BatchWrite {
    pub fn key(&self) -> &ResourceKey {
        match self {
            BatchWrite::Create { key, .. } | BatchWrite::Update { key, .. } => key,
        }
    }
}

/// The key of the owner a resource needs before it can be created, if any.
pub fn owner_of(key: &ResourceKey) -> Option<ResourceKey> {
    match key.rtype {
        t if t.is_global() => None,
        ResourceType::DataplaneInsight => Some(ResourceKey::new(ResourceType::Dataplane, &key.mesh, &key.name)),
        _ => Some(ResourceKey::new(ResourceType::Mesh, "", &key.mesh)),
    }
}

/// Reads resources; implemented by every store and by the cache in front of one (config
/// generation reads through the cache).
pub trait ResourceReader: Send + Sync {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>>;
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>>;
}

impl<S: ResourceStore + ?Sized> ResourceReader for S {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>> {
        ResourceStore::get(self, key)
    }
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>> {
        ResourceStore::list(self, rtype, mesh)
    }
}

/// Shared handle used across the daemon.
pub type SharedStore = Arc<dyn ResourceStore>;
