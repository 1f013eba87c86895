//! Counters the reconciler keeps; the diagnostics server exports them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::xds::resource_kind::ResourceKind;

#[derive(Debug, Default)]
pub struct Metrics {
    /// Inputs unchanged: a hash compare and nothing else.
    pub generation_skipped: AtomicU64,
    /// Regenerated, and the result equalled the previous snapshot.
    pub generation_unchanged: AtomicU64,
    /// Regenerated into a different snapshot.
    pub generation_changed: AtomicU64,
    pub generation_errors: AtomicU64,
    /// Nanoseconds spent in generation (regenerations only).
    pub generation_nanos: AtomicU64,
    pub responses_sent: [AtomicU64; ResourceKind::COUNT],
    pub acks: [AtomicU64; ResourceKind::COUNT],
    pub nacks: [AtomicU64; ResourceKind::COUNT],
    pub requests_ignored: AtomicU64,
    pub streams_active: AtomicU64,
    pub jobs_dispatched: AtomicU64,
    pub insight_writes: AtomicU64,
    pub insight_write_errors: AtomicU64,
}

impl Metrics {
    pub fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }

    pub fn total(counters: &[AtomicU64; ResourceKind::COUNT]) -> u64 {
        counters.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    /// Generations that actually ran the generator chain.
    pub fn regenerations(&self) -> u64 {
        Self::get(&self.generation_unchanged) + Self::get(&self.generation_changed)
    }
}
