//! A mesh's policies, by type: immutable, shared between successive mesh contexts, and
//! replaced one type at a time when a policy changes.
//!
//! Each type keeps a cache of the rules computed from its policies, keyed by which of them
//! matched (most dataplanes of a mesh match the same few), so a mesh-wide rebuild computes
//! each distinct outcome once. The cache belongs to the type's list: a change of that type
//! starts a new list and a new cache, and the old one goes with the last context using it.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};

use super::rules::Rules;
use crate::model::{Registered, Resource, ResourceKey, ResourceType};

/// Which rules of a type: `to` rules of a set of matched policies, or `from` rules of the
/// policies selecting one inbound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    To,
    From,
}

/// Rules by (side, indices of the policies they were computed from).
type RulesCache = HashMap<(Side, Vec<u32>), Arc<Rules>>;

#[derive(Debug, Default)]
struct TypeEntry {
    list: Vec<Arc<Resource>>,
    rules: Mutex<RulesCache>,
}

/// Policies of one mesh by type; each list sorted by name (the order Kuma's matchers start
/// from).
#[derive(Clone, Debug, Default)]
pub struct PolicySet {
    by_type: Vec<Arc<TypeEntry>>,
}

fn slot(t: ResourceType) -> usize {
    t as usize
}

impl PolicySet {
    /// From one list per policy type (any order within a list).
    pub fn from_lists(lists: impl IntoIterator<Item = (ResourceType, Vec<Arc<Resource>>)>) -> PolicySet {
        let mut by_type: Vec<Arc<TypeEntry>> = (0..ResourceType::ALL.len()).map(|_| Arc::default()).collect();
        for (t, mut list) in lists {
            list.sort_by(|a, b| a.meta.name.cmp(&b.meta.name));
            by_type[slot(t)] = Arc::new(TypeEntry { list, rules: Mutex::default() });
        }
        PolicySet { by_type }
    }

    /// The policies of `t`, sorted by name.
    pub fn of(&self, t: ResourceType) -> &[Arc<Resource>] {
        self.by_type.get(slot(t)).map(|e| e.list.as_slice()).unwrap_or(&[])
    }

    /// The policies of spec type `T` with their typed specs.
    pub fn typed<T: Registered + 'static>(&self) -> impl Iterator<Item = (&Arc<Resource>, &T)> {
        self.of(T::TYPE).iter().filter_map(|r| T::from_spec(&r.spec).map(|s| (r, s)))
    }

    pub fn get(&self, key: &ResourceKey) -> Option<&Arc<Resource>> {
        let list = self.of(key.rtype);
        list.binary_search_by(|r| r.meta.name.as_str().cmp(&key.name)).ok().map(|i| &list[i])
    }

    /// The set after `key` became `new` (`None`: deleted). Only that type's list (and its
    /// rules cache) is new; the others are shared.
    pub fn with(&self, key: &ResourceKey, new: Option<Arc<Resource>>) -> PolicySet {
        let mut by_type = self.by_type.clone();
        if by_type.len() < ResourceType::ALL.len() {
            by_type.resize_with(ResourceType::ALL.len(), Arc::default);
        }
        let mut list = by_type[slot(key.rtype)].list.clone();
        let at = list.binary_search_by(|r| r.meta.name.as_str().cmp(&key.name));
        match (at, new) {
            (Ok(i), Some(n)) => list[i] = n,
            (Ok(i), None) => {
                list.remove(i);
            }
            (Err(i), Some(n)) => list.insert(i, n),
            (Err(_), None) => {}
        }
        by_type[slot(key.rtype)] = Arc::new(TypeEntry { list, rules: Mutex::default() });
        // Policies of any type can target a MeshHTTPRoute, and their rules are made from the
        // route's rules: a route change starts every type's rules cache anew.
        if key.rtype == ResourceType::MeshHttpRoute {
            for e in &mut by_type {
                *e = Arc::new(TypeEntry { list: e.list.clone(), rules: Mutex::default() });
            }
        }
        PolicySet { by_type }
    }

    /// The rules of type `t` for the policies at `matched` (indices into [`of`](Self::of)),
    /// computed by `compute` once per distinct `(side, matched)`.
    pub fn rules(&self, t: ResourceType, side: Side, matched: Vec<u32>, compute: impl FnOnce() -> Rules) -> Arc<Rules> {
        let Some(entry) = self.by_type.get(slot(t)) else { return Arc::new(compute()) };
        let key = (side, matched);
        if let Some(r) = entry.rules.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return r.clone();
        }
        // Computed outside the lock: two workers may both compute it; either result is the
        // same value.
        let rules = Arc::new(compute());
        entry.rules.lock().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(rules).clone()
    }

    /// A hash of the content (not the versions, which restart on re-create) of every policy
    /// of the given types.
    pub fn content_hash(&self, types: &[ResourceType]) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for &t in types {
            t.hash(&mut h);
            for p in self.of(t) {
                p.meta.name.hash(&mut h);
                p.content_hash().hash(&mut h);
            }
        }
        h.finish()
    }

    pub fn is_empty(&self) -> bool {
        self.by_type.iter().all(|e| e.list.is_empty())
    }
}
