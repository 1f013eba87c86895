//! The embedded in-memory backend (`store.type: memory`), the default: one ordered map behind
//! a lock. Nothing survives a restart, as with Kuma's memory store.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::SystemTime;

use super::{owner_of, ChangeEvent, EventBus, Operation, ResourceStore, Result, StoreError};
use crate::model::{Meta, Resource, ResourceKey, ResourceType, Spec};

/// Ordered by (type, mesh, name) so a list is one range scan, already in the order the
/// contract promises.
type Map = BTreeMap<ResourceKey, Arc<Resource>>;

#[derive(Debug, Default)]
pub struct MemoryStore {
    resources: RwLock<Map>,
    events: EventBus,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn read(&self) -> RwLockReadGuard<'_, Map> {
        // Writers finish every map mutation before anything that could panic, so a poisoned
        // lock still guards a consistent map.
        self.resources.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.resources.write().unwrap_or_else(|p| p.into_inner())
    }

    fn range<'a>(map: &'a Map, rtype: ResourceType, mesh: Option<&'a str>) -> impl Iterator<Item = &'a Arc<Resource>> {
        let start = ResourceKey { rtype, mesh: mesh.unwrap_or("").to_string(), name: String::new() };
        map.range(start..)
            .take_while(move |(k, _)| k.rtype == rtype && mesh.is_none_or(|m| k.mesh == m))
            .map(|(_, v)| v)
    }
}

impl ResourceStore for MemoryStore {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>> {
        self.read().get(key).cloned().ok_or_else(|| StoreError::NotFound(key.clone()))
    }

    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>> {
        Ok(Self::range(&self.read(), rtype, mesh).cloned().collect())
    }

    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<Resource>> {
        let key = ResourceKey::new(spec.resource_type(), mesh, name);
        let mut map = self.write();
        if map.contains_key(&key) {
            return Err(StoreError::AlreadyExists(key));
        }
        if let Some(owner) = owner_of(&key) {
            if !map.contains_key(&owner) {
                return Err(match owner.rtype {
                    ResourceType::Mesh => StoreError::MeshNotFound(owner.name),
                    _ => StoreError::OwnerNotFound { key, owner },
                });
            }
        }
        let now = SystemTime::now();
        let res = Arc::new(Resource {
            meta: Meta {
                mesh: key.mesh.clone(),
                name: key.name.clone(),
                version: 1,
                creation_time: now,
                modification_time: now,
            },
            spec,
        });
        map.insert(key.clone(), res.clone());
        // Published under the lock so subscribers see writes in the order they happened.
        self.events.publish(ChangeEvent::Changed { op: Operation::Create, key });
        Ok(res)
    }

    fn update(&self, key: &ResourceKey, spec: Spec, expected_version: u64) -> Result<Arc<Resource>> {
        if spec.resource_type() != key.rtype {
            return Err(StoreError::Internal(format!("cannot store a {} spec under {key}", spec.resource_type())));
        }
        let mut map = self.write();
        let current = map.get(key).ok_or_else(|| StoreError::NotFound(key.clone()))?;
        if current.meta.version != expected_version {
            return Err(StoreError::Conflict(key.clone()));
        }
        let meta = Meta {
            version: current.meta.version + 1,
            modification_time: SystemTime::now().max(current.meta.creation_time),
            ..current.meta.clone()
        };
        let res = Arc::new(Resource { meta, spec });
        map.insert(key.clone(), res.clone());
        self.events.publish(ChangeEvent::Changed { op: Operation::Update, key: key.clone() });
        Ok(res)
    }

    fn delete(&self, key: &ResourceKey) -> Result<()> {
        let mut map = self.write();
        if !map.contains_key(key) {
            return Err(StoreError::NotFound(key.clone()));
        }
        // Owned resources go first, as Postgres' ON DELETE CASCADE would remove them.
        let owned: Vec<ResourceKey> = match key.rtype {
            ResourceType::Mesh => map.keys().filter(|k| !k.rtype.is_global() && k.mesh == key.name).cloned().collect(),
            ResourceType::Dataplane => {
                let insight = ResourceKey::new(ResourceType::DataplaneInsight, &key.mesh, &key.name);
                map.contains_key(&insight).then_some(insight).into_iter().collect()
            }
            _ => Vec::new(),
        };
        for k in owned.into_iter().chain(std::iter::once(key.clone())) {
            map.remove(&k);
            self.events.publish(ChangeEvent::Changed { op: Operation::Delete, key: k });
        }
        Ok(())
    }

    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent> {
        self.events.subscribe()
    }

    fn backend(&self) -> &'static str {
        "memory"
    }
}
