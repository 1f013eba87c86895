//! The one cache of encoded listeners and clusters of a mesh, keyed by what each is built
//! from (the resolved conf included), so every dataplane with the same outcome shares one
//! encoding.
//!
//! Entries are weak: the snapshots that use an encoding keep it alive, and once the last
//! one is replaced the bytes are freed. The dead keys are swept when a shard has doubled
//! since its last sweep, so the map stays proportional to what is in use.
//!
//! The map holds a 128-bit hash of each key (xxh3 over the key's `Hash`), not the key: keys
//! carry whole resolved confs (routes, policies), a few hundred bytes each inline plus
//! their heap, and at 10,000 dataplanes the keys (live and awaiting a sweep) and their
//! clones were the largest item of a cold start's peak heap (heaptrack: ~130 MB of ~770 MB
//! in an mTLS run, BENCHMARKS.md). Equal hashes stand for equal keys: a collision among
//! n keys has probability about n² / 2¹²⁹, far below that of the 64-bit content hashes
//! Envoy versions already rest on.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};

use super::wire::EncodedResource;

const SHARDS: usize = 16;

/// The cache for one kind of key.
pub struct EncodingCache<K> {
    shards: Vec<Mutex<Shard>>,
    key: std::marker::PhantomData<fn(&K)>,
}

struct Shard {
    map: HashMap<u128, Weak<EncodedResource>>,
    /// Live entries after the last sweep; the next one runs at twice as many.
    live_after_sweep: usize,
}

impl<K: Hash + Eq> Default for EncodingCache<K> {
    fn default() -> Self {
        EncodingCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard { map: HashMap::new(), live_after_sweep: 0 })).collect(),
            key: std::marker::PhantomData,
        }
    }
}

impl<K> std::fmt::Debug for EncodingCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodingCache").finish_non_exhaustive()
    }
}

impl<K: Hash + Eq> EncodingCache<K> {
    /// The encoding for `key`, made by `encode` if no live one exists. `encode` must be a
    /// pure function of `key`.
    pub fn get_or_encode(&self, key: &K, encode: impl FnOnce(&K) -> Arc<EncodedResource>) -> Arc<EncodedResource> {
        let id = {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            key.hash(&mut h);
            h.digest128()
        };
        let shard = &self.shards[(id as usize) % SHARDS];
        if let Some(hit) = lock(shard).map.get(&id).and_then(Weak::upgrade) {
            return hit;
        }
        // Encoded outside the lock; two workers may both encode the same key, and the bytes
        // are equal either way.
        let encoded = encode(key);
        let mut s = lock(shard);
        if let Some(hit) = s.map.get(&id).and_then(Weak::upgrade) {
            return hit;
        }
        s.map.insert(id, Arc::downgrade(&encoded));
        if s.map.len() > 2 * s.live_after_sweep.max(64) {
            s.map.retain(|_, w| w.strong_count() > 0);
            s.live_after_sweep = s.map.len();
        }
        encoded
    }

    /// Live entries (for tests and metrics).
    pub fn live(&self) -> usize {
        self.shards.iter().map(|s| lock(s).map.values().filter(|w| w.strong_count() > 0).count()).sum()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Entries are inserted whole; a panic elsewhere cannot leave a shard half-written.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::xds::resource_kind::ResourceKind;

    fn encode(name: &str) -> Arc<EncodedResource> {
        let mut c = crate::envoy::cluster::Cluster::new();
        c.name = name.to_string();
        EncodedResource::encode(ResourceKind::Cluster, name, &c)
    }

    #[test]
    fn equal_keys_share_and_unused_entries_are_freed() {
        let cache: EncodingCache<String> = EncodingCache::default();
        let a = cache.get_or_encode(&"a".into(), |k| encode(k));
        let again = cache.get_or_encode(&"a".into(), |_| panic!("must hit"));
        let other = cache.get_or_encode(&"b".into(), |k| encode(k));
        assert!(!Arc::ptr_eq(&a, &other), "another key, another encoding");
        drop(other);
        assert!(Arc::ptr_eq(&a, &again));
        assert_eq!(cache.live(), 1);
        drop((a, again));
        assert_eq!(cache.live(), 0, "nothing uses it any more");
        let mut calls = 0;
        let _b = cache.get_or_encode(&"a".into(), |k| {
            calls += 1;
            encode(k)
        });
        assert_eq!(calls, 1, "a freed entry is encoded again");
    }

    #[test]
    fn dead_keys_are_swept() {
        let cache: EncodingCache<u32> = EncodingCache::default();
        for i in 0..10_000 {
            drop(cache.get_or_encode(&i, |_| encode("x")));
        }
        let total: usize = cache.shards.iter().map(|s| lock(s).map.len()).sum();
        assert!(total < 10_000 / 4, "dead keys pile up: {total}");
    }
}
