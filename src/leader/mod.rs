//! Leadership among the instances that share one store, and the jobs only the leader runs.
//!
//! - `election`: on Postgres, Kuma's own leader lock (`kuma-cp-lock` in the `locks` table,
//!   pglock's lease: 5 s, heartbeat every second), so a group may mix kuma-cp 2.x and higuma
//!   instances and still elects one leader. The memory store is its own leader.
//! - `jobs`: the thread that runs the leader-only jobs while this instance leads, starting
//!   them on gaining leadership and stopping them on losing it.
//! - `defaults`: Mesh `default` and its default policies, every mesh's token signing key,
//!   the user-token signing key and the admin token — created once, however many instances
//!   start at once (creates are atomic; only the leader tries).
//! - `gc`: deletes Dataplanes offline for longer than `runtime.universal.dataplaneCleanupAge`.
//! - `finalizer`: marks subscriptions whose control plane died without closing them as
//!   disconnected (Kuma's subscription finalizer).
//!
//! Why Kuma's lock rather than a session advisory lock: an advisory lock is held by one
//! session, so it cannot be shared with kuma-cp instances (they would not see it), and it is
//! lost and retaken with every reconnect of that session; the lease survives a short
//! connection loss of the leader (it keeps leading while its heartbeats land within the
//! lease) and costs one small update per second on the leader and one read per second on
//! each follower.

pub mod defaults;
pub mod election;
pub mod finalizer;
pub mod gc;
pub mod jobs;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

/// Whether this instance leads right now; shared by the election, the jobs and `/metrics`.
///
/// A term is valid only until the election last confirmed it plus a bound the election
/// sets (see `election`): should the election thread hang on a connection that neither
/// answers nor fails, the jobs still stop acting as leader before another instance can take
/// the lock over.
#[derive(Debug)]
pub struct Leadership {
    leader: AtomicBool,
    /// Nanoseconds after `epoch` until which the current term holds.
    valid_until: AtomicU64,
    epoch: Instant,
    /// Told of every change (the jobs thread waits on it).
    watchers: Mutex<Vec<Sender<bool>>>,
}

impl Default for Leadership {
    fn default() -> Self {
        Leadership {
            leader: AtomicBool::new(false),
            valid_until: AtomicU64::new(0),
            epoch: Instant::now(),
            watchers: Mutex::new(Vec::new()),
        }
    }
}

impl Leadership {
    /// Leadership that never ends: the memory store has no other instance to share with.
    pub fn sole() -> Leadership {
        let l = Leadership::default();
        l.valid_until.store(u64::MAX, Ordering::SeqCst);
        l.leader.store(true, Ordering::SeqCst);
        l
    }

    pub fn is_leader(&self) -> bool {
        self.leader.load(Ordering::SeqCst) && self.nanos(Instant::now()) < self.valid_until.load(Ordering::SeqCst)
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Starts a term (or extends the current one) valid until `until`.
    pub fn hold_until(&self, until: Instant) {
        self.valid_until.store(self.nanos(until), Ordering::SeqCst);
        self.set(true);
    }

    /// How long the current term still holds (zero when not leading).
    pub fn remaining(&self) -> Duration {
        if !self.leader.load(Ordering::SeqCst) {
            return Duration::ZERO;
        }
        let left = self.valid_until.load(Ordering::SeqCst).saturating_sub(self.nanos(Instant::now()));
        Duration::from_nanos(left)
    }

    /// Ends the term.
    pub fn step_down(&self) {
        self.valid_until.store(0, Ordering::SeqCst);
        self.set(false);
    }

    /// Records a change and tells the watchers; a repeat of the current state is ignored.
    fn set(&self, leader: bool) {
        if self.leader.swap(leader, Ordering::SeqCst) == leader {
            return;
        }
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        watchers.retain(|w| w.send(leader).is_ok());
    }

    /// A receiver of every change from now on.
    pub fn watch(&self) -> Receiver<bool> {
        let (tx, rx) = crossbeam_channel::unbounded();
        self.watchers.lock().unwrap_or_else(|p| p.into_inner()).push(tx);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchers_hear_changes_once_and_a_term_expires_by_itself() {
        let l = Leadership::default();
        let rx = l.watch();
        assert!(!l.is_leader());
        l.hold_until(Instant::now() + Duration::from_secs(60));
        l.hold_until(Instant::now() + Duration::from_secs(60));
        assert!(l.is_leader());
        l.step_down();
        assert_eq!(rx.try_iter().collect::<Vec<_>>(), vec![true, false]);
        // A term nobody renewed is over, even without a step-down.
        l.hold_until(Instant::now() + Duration::from_millis(20));
        assert!(l.is_leader());
        std::thread::sleep(Duration::from_millis(40));
        assert!(!l.is_leader());
        assert_eq!(l.remaining(), Duration::ZERO);
        assert!(Leadership::sole().is_leader());
    }
}
