//! A dataplane's complete Envoy configuration: one [`ResourceSet`] per type.

use super::resource_kind::ResourceKind;
use super::wire::{EncodedResource, ResourceSet};
use std::sync::Arc;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    sets: [ResourceSet; ResourceKind::COUNT],
    /// xxh3 over every resource's name and hash: equal snapshots, equal hash.
    hash: u64,
}

impl Snapshot {
    pub fn new(resources: Vec<Arc<EncodedResource>>) -> Snapshot {
        let mut by_kind: [Vec<Arc<EncodedResource>>; ResourceKind::COUNT] = Default::default();
        for r in resources {
            by_kind[r.kind.index()].push(r);
        }
        let sets = by_kind.map(ResourceSet::new);
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for set in &sets {
            h.update(set.version().as_bytes());
            h.update(&[0xff]);
        }
        Snapshot { sets, hash: h.digest() }
    }

    /// This snapshot with its SDS secrets replaced by `secrets` (a new certificate for
    /// config that did not change otherwise: nothing is generated again).
    pub fn with_secrets(&self, secrets: Vec<Arc<EncodedResource>>) -> Snapshot {
        let mut all = secrets;
        all.extend(self.resources().filter(|r| r.kind != ResourceKind::Secret).cloned());
        Snapshot::new(all)
    }

    pub fn set(&self, kind: ResourceKind) -> &ResourceSet {
        &self.sets[kind.index()]
    }

    pub fn hash(&self) -> u64 {
        self.hash
    }

    pub fn resources(&self) -> impl Iterator<Item = &Arc<EncodedResource>> {
        self.sets.iter().flat_map(|s| s.resources.iter())
    }
}
