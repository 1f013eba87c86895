//! A store decorator that times every operation (Kuma's `store` histogram, seconds, by
//! operation and resource type).

use std::sync::Arc;
use std::time::Instant;

use super::{BatchWrite, ChangeEvent, ResourceStore, Result, SharedStore};
use crate::model::{Resource, ResourceKey, ResourceType, Spec};

pub struct MeteredStore {
    inner: SharedStore,
    latency: prometheus::HistogramVec,
}

impl MeteredStore {
    pub fn new(inner: SharedStore) -> MeteredStore {
        let opts = prometheus::HistogramOpts::new("store", "Store operation latency in seconds")
            .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]);
        // Constant name, help, buckets and labels that satisfy prometheus' rules.
        let latency = prometheus::HistogramVec::new(opts, &["operation", "resource_type"]).expect("valid histogram");
        MeteredStore { inner, latency }
    }

    /// The histogram, for registration with the diagnostics registry.
    pub fn latency(&self) -> prometheus::HistogramVec {
        self.latency.clone()
    }

    fn time<T>(&self, op: &str, rtype: ResourceType, f: impl FnOnce() -> T) -> T {
        let started = Instant::now();
        let out = f();
        self.latency.with_label_values(&[op, rtype.name()]).observe(started.elapsed().as_secs_f64());
        out
    }
}

impl ResourceStore for MeteredStore {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>> {
        self.time("get", key.rtype, || self.inner.get(key))
    }

    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>> {
        self.time("list", rtype, || self.inner.list(rtype, mesh))
    }

    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<Resource>> {
        let rtype = spec.resource_type();
        self.time("create", rtype, || self.inner.create(mesh, name, spec))
    }

    fn update(&self, key: &ResourceKey, spec: Spec, expected_version: u64) -> Result<Arc<Resource>> {
        self.time("update", key.rtype, || self.inner.update(key, spec, expected_version))
    }

    fn delete(&self, key: &ResourceKey) -> Result<()> {
        self.time("delete", key.rtype, || self.inner.delete(key))
    }

    fn get_batch(&self, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        let Some(first) = keys.first() else { return Ok(Vec::new()) };
        self.time("get_batch", first.rtype, || self.inner.get_batch(keys))
    }

    fn write_batch(&self, writes: Vec<BatchWrite>) -> Result<Vec<Result<()>>> {
        let Some(rtype) = writes.first().map(|w| w.key().rtype) else { return Ok(Vec::new()) };
        self.time("write_batch", rtype, || self.inner.write_batch(writes))
    }

    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent> {
        self.inner.subscribe()
    }

    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    fn ping(&self) -> Result<()> {
        self.inner.ping()
    }
}
