//! What the store knows about the database between its own queries, and how many queries it
//! sends.
//!
//! The change listener owns the verdict: its connection is the one that is always open, so
//! it is the first to see the database go and come back. While it is disconnected this
//! instance cannot hear other instances' writes (readiness says so); once one of its
//! reconnect attempts has failed, Postgres is *known to be down* and every store call fails
//! at once with `Unavailable` (a 503), instead of each waiting out the connection timeout.
//! A pool checkout that fails asks the listener to check its own connection at once, so a
//! silent loss (no FIN, no RST) is found by the first request that hits it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::model::rest::format_time;

#[derive(Debug)]
pub(crate) struct Health {
    /// The listener's connection is up and LISTENing.
    listening: AtomicBool,
    /// A reconnect attempt failed and none succeeded since.
    down: AtomicBool,
    /// When `down` was set, for the error messages.
    down_since: Mutex<Option<SystemTime>>,
    /// Asks the listener to check its connection now.
    probe: AtomicBool,
}

impl Default for Health {
    fn default() -> Self {
        // A store exists only once its listener connected.
        Health {
            listening: AtomicBool::new(true),
            down: AtomicBool::new(false),
            down_since: Mutex::new(None),
            probe: AtomicBool::new(false),
        }
    }
}

impl Health {
    pub(crate) fn listening(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
    }

    pub(crate) fn set_listening(&self, up: bool) {
        self.listening.store(up, Ordering::SeqCst);
    }

    /// `Some(since)` while Postgres is known to be down.
    pub(crate) fn down_since(&self) -> Option<String> {
        if !self.down.load(Ordering::SeqCst) {
            return None;
        }
        let since = *self.down_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(since.map(format_time).unwrap_or_default())
    }

    /// Returns whether this changed the verdict (to log it once).
    pub(crate) fn set_down(&self, down: bool) -> bool {
        let was = self.down.swap(down, Ordering::SeqCst);
        if down && !was {
            *self.down_since.lock().unwrap_or_else(|p| p.into_inner()) = Some(SystemTime::now());
        }
        was != down
    }

    pub(crate) fn request_probe(&self) {
        self.probe.store(true, Ordering::SeqCst);
    }

    pub(crate) fn take_probe_request(&self) -> bool {
        self.probe.swap(false, Ordering::SeqCst)
    }
}

/// Statements (and connection checks) sent to Postgres, by who sent them: what "Postgres
/// load per instance" is measured in (`store_postgres_queries_total`).
#[derive(Debug, Default)]
pub struct QueryCounts {
    /// Store reads and writes, the pool's checkout checks, subscription markers.
    pub pool: AtomicU64,
    /// The change listener's LISTEN and its connection checks.
    pub listener: AtomicU64,
    /// Leader election: lease reads, acquisitions, heartbeats.
    pub leader: AtomicU64,
}

impl QueryCounts {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// `(pool, listener, leader)`.
    pub fn snapshot(&self) -> (u64, u64, u64) {
        (self.pool.load(Ordering::Relaxed), self.listener.load(Ordering::Relaxed), self.leader.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn down_is_reported_with_its_start_and_changes_are_told_once() {
        let h = Health::default();
        assert!(h.listening());
        assert_eq!(h.down_since(), None);
        assert!(h.set_down(true));
        assert!(!h.set_down(true), "already down: no second log line");
        assert!(h.down_since().is_some_and(|s| !s.is_empty()));
        assert!(h.set_down(false));
        assert_eq!(h.down_since(), None);
        h.request_probe();
        assert!(h.take_probe_request());
        assert!(!h.take_probe_request());
    }
}
