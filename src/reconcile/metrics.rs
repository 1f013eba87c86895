//! Counters the reconciler keeps; the diagnostics server exports them.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::xds::resource_kind::ResourceKind;

#[derive(Debug)]
pub struct Metrics {
    /// Milliseconds per regeneration (Kuma's `xds_generation`).
    pub generation_ms: prometheus::Histogram,
    /// Milliseconds from sending a response to its ACK (Kuma's `xds_delivery`).
    pub delivery_ms: prometheus::Histogram,
    /// Nanoseconds workers spent on jobs (utilisation = rate / workers).
    pub worker_busy_nanos: AtomicU64,
    /// Inputs unchanged: a hash compare and nothing else.
    pub generation_skipped: AtomicU64,
    /// Regenerated, and the result equalled the previous snapshot.
    pub generation_unchanged: AtomicU64,
    /// Regenerated into a different snapshot.
    pub generation_changed: AtomicU64,
    /// Only the certificate changed: the last snapshot with the new SDS secrets.
    pub generation_secrets_only: AtomicU64,
    pub generation_errors: AtomicU64,
    /// Nanoseconds spent in generation (regenerations only).
    pub generation_nanos: AtomicU64,
    pub responses_sent: [AtomicU64; ResourceKind::COUNT],
    pub acks: [AtomicU64; ResourceKind::COUNT],
    pub nacks: [AtomicU64; ResourceKind::COUNT],
    pub requests_ignored: AtomicU64,
    pub streams_active: AtomicU64,
    pub jobs_dispatched: AtomicU64,
    /// Refresh-interval sweeps run.
    pub interval_sweeps: AtomicU64,
    /// Dataplanes the sweeps looked at (only those of meshes whose context was rebuilt).
    pub interval_checked: AtomicU64,
    pub insight_writes: AtomicU64,
    pub insight_write_errors: AtomicU64,
}

/// Millisecond buckets from sub-millisecond pushes to the multi-second tail.
const MS_BUCKETS: [f64; 14] = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0];

fn histogram(name: &str, help: &str) -> prometheus::Histogram {
    let opts = prometheus::HistogramOpts::new(name, help).buckets(MS_BUCKETS.to_vec());
    // Name, help and buckets are constants that satisfy prometheus' rules.
    prometheus::Histogram::with_opts(opts).expect("valid histogram options")
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            generation_ms: histogram("xds_generation", "Time to regenerate a dataplane's config, in milliseconds"),
            delivery_ms: histogram("xds_delivery", "Time from sending config to Envoy's ACK, in milliseconds"),
            worker_busy_nanos: AtomicU64::new(0),
            generation_skipped: AtomicU64::new(0),
            generation_unchanged: AtomicU64::new(0),
            generation_changed: AtomicU64::new(0),
            generation_secrets_only: AtomicU64::new(0),
            generation_errors: AtomicU64::new(0),
            generation_nanos: AtomicU64::new(0),
            responses_sent: Default::default(),
            acks: Default::default(),
            nacks: Default::default(),
            requests_ignored: AtomicU64::new(0),
            streams_active: AtomicU64::new(0),
            jobs_dispatched: AtomicU64::new(0),
            interval_sweeps: AtomicU64::new(0),
            interval_checked: AtomicU64::new(0),
            insight_writes: AtomicU64::new(0),
            insight_write_errors: AtomicU64::new(0),
        }
    }
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
