//! The store as config generation reads it: through the sharded TTL cache, so that the
//! number of store queries does not grow with the number of connected dataplanes.
//!
//! Change events invalidate the entries they touch, so a write is visible to the next
//! generation at once; the TTL (`store.cache.expirationTime`) only bounds staleness when an
//! event is lost.

use std::sync::Arc;
use std::time::Duration;

use crate::cache::{CacheStats, ShardedTtlCache};
use crate::clock::Clock;
use crate::model::{Resource, ResourceKey, ResourceType};
use crate::store::ResourceReader;
use crate::store::{SharedStore, StoreError};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum CacheKey {
    Get(ResourceKey),
    List(ResourceType, Option<String>),
}

#[derive(Clone)]
enum CacheValue {
    One(Arc<Resource>),
    Many(Arc<Vec<Arc<Resource>>>),
}

/// Large enough for every mesh's lists and the gets of a large fleet; entries are `Arc`s.
const CACHE_CAPACITY: usize = 65_536;

pub struct CachedReader {
    store: SharedStore,
    cache: ShardedTtlCache<CacheKey, CacheValue>,
}

impl CachedReader {
    pub fn new(store: SharedStore, ttl: Duration, clock: Arc<dyn Clock>) -> Self {
        CachedReader { store, cache: ShardedTtlCache::new(ttl, CACHE_CAPACITY, clock) }
    }

    pub fn set_ttl(&self, ttl: Duration) {
        self.cache.set_ttl(ttl);
    }

    /// Drops what a change to `key` makes stale.
    pub fn invalidate(&self, key: &ResourceKey) {
        self.cache.invalidate(&CacheKey::Get(key.clone()));
        self.cache.invalidate(&CacheKey::List(key.rtype, None));
        let mesh = if key.rtype.is_global() { None } else { Some(key.mesh.clone()) };
        if mesh.is_some() {
            self.cache.invalidate(&CacheKey::List(key.rtype, mesh));
        }
    }

    pub fn clear(&self) {
        self.cache.clear();
    }

    pub fn stats(&self) -> CacheStats {
        self.cache.stats()
    }
}

impl ResourceReader for CachedReader {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        match self.cache.get_or_fetch(&CacheKey::Get(key.clone()), || self.store.get(key).map(CacheValue::One))? {
            CacheValue::One(r) => Ok(r),
            CacheValue::Many(_) => Err(StoreError::Internal("cache entry of the wrong shape".into())),
        }
    }

    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>, StoreError> {
        let key = CacheKey::List(rtype, mesh.map(str::to_string));
        match self.cache.get_or_fetch(&key, || self.store.list(rtype, mesh).map(|v| CacheValue::Many(Arc::new(v))))? {
            CacheValue::Many(v) => Ok(v.as_ref().clone()),
            CacheValue::One(_) => Err(StoreError::Internal("cache entry of the wrong shape".into())),
        }
    }
}
