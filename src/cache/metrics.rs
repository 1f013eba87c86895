//! Counters of the TTL cache, the same outcomes Kuma labels `result=hit|hit-wait|miss|error`
//! on `store_cache` / `mesh_cache`; they are exported as Prometheus counters later.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a cache's counters. Each counter only grows; rates come from the scraper.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from a fresh entry.
    pub hits: u64,
    /// Lookups that found another caller already fetching the key and waited for its result
    /// (Kuma's `hit-wait`), whether that result was a value or an error.
    pub hit_waits: u64,
    /// Lookups that had to call `fetch` themselves.
    pub misses: u64,
    /// Calls of `fetch` that returned an error (a subset of `misses`; errors are not cached).
    pub fetch_errors: u64,
}

/// The live counters. Relaxed ordering: they are statistics, nothing synchronises on them.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) hits: AtomicU64,
    pub(crate) hit_waits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) fetch_errors: AtomicU64,
}

impl Counters {
    pub(crate) fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            hit_waits: self.hit_waits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            fetch_errors: self.fetch_errors.load(Ordering::Relaxed),
        }
    }
}
