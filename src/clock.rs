//! Injectable time, so the TTL cache and the reconciler's timer can be tested without sleeps.
//!
//! Components that make decisions based on "how long ago" or "when next" take an
//! `Arc<dyn Clock>` instead of calling [`Instant::now`] themselves. Production code passes
//! [`SystemClock`]; tests pass a [`ManualClock`] and move time forward explicitly with
//! [`ManualClock::advance`], which makes expiry and scheduling deterministic. (Kuma does the same
//! by injecting `NewTicker`; this is cleaner for synchronous code than swapping a clock with
//! `#[cfg(test)]`.)

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A source of monotonic time. Shared between threads, hence `Send + Sync`.
pub trait Clock: Send + Sync + Debug {
    /// The current instant. Never goes backwards for a given clock.
    fn now(&self) -> Instant;
}

/// The real monotonic clock ([`Instant::now`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl SystemClock {
    /// A shared handle to the system clock, the form components take.
    pub fn shared() -> Arc<dyn Clock> {
        Arc::new(SystemClock)
    }
}

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that only moves when told to, for tests.
///
/// It starts at a fixed instant and reports `start + offset`; [`advance`](Self::advance) takes
/// `&self` so a test can keep an `Arc<ManualClock>` and hand a clone (as `Arc<dyn Clock>`) to
/// the component under test. The offset is an atomic, so reading it from many threads costs no
/// lock.
#[derive(Debug)]
pub struct ManualClock {
    start: Instant,
    /// Nanoseconds added to `start`; u64 nanos cover ~584 years, far beyond any test.
    offset_nanos: AtomicU64,
}

impl ManualClock {
    /// A clock frozen at `start` until advanced.
    pub fn new(start: Instant) -> Self {
        ManualClock { start, offset_nanos: AtomicU64::new(0) }
    }

    /// A clock frozen at the real current instant (a convenient fixed starting point).
    pub fn starting_now() -> Self {
        Self::new(Instant::now())
    }

    /// Moves the clock forward by `by` (saturating at ~584 years past the start).
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        // fetch_update instead of fetch_add so an absurd advance saturates instead of wrapping
        // around to an earlier instant. The closure always returns Some, so this cannot fail.
        let _ = self.offset_nanos.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| Some(old.saturating_add(by)));
    }

    /// The instant the clock started at.
    pub fn start(&self) -> Instant {
        self.start
    }
}

impl Default for ManualClock {
    fn default() -> Self {
        Self::starting_now()
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Instant {
        self.start + Duration::from_nanos(self.offset_nanos.load(Ordering::Acquire))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_advanced() {
        let start = Instant::now();
        let clock = Arc::new(ManualClock::new(start));
        let shared: Arc<dyn Clock> = clock.clone();
        assert_eq!(shared.now(), start);
        assert_eq!(shared.now(), start);
        clock.advance(Duration::from_millis(1500));
        assert_eq!(shared.now(), start + Duration::from_millis(1500));
        clock.advance(Duration::from_nanos(1));
        assert_eq!(shared.now() - start, Duration::from_nanos(1_500_000_001));
        assert_eq!(clock.start(), start);
    }

    #[test]
    fn manual_clock_advance_saturates() {
        let clock = ManualClock::starting_now();
        clock.advance(Duration::from_nanos(u64::MAX - 5));
        clock.advance(Duration::from_secs(10));
        assert_eq!(clock.now() - clock.start(), Duration::from_nanos(u64::MAX));
    }

    #[test]
    fn system_clock_is_monotonic() {
        let clock = SystemClock::shared();
        let a = clock.now();
        let b = clock.now();
        assert!(b >= a);
    }
}
