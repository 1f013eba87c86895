//! A hashed timer wheel that answers "which keys are due now?" for the reconciler.
//!
//! Every dataplane has one "reconcile next at" deadline. The wheel keeps them in `slots`
//! buckets of one `tick` each: a deadline `d` belongs to tick `floor((d - start) / tick)` and
//! lives in bucket `tick % slots`. One rotation of the wheel covers `tick * slots`.
//!
//! # Costs
//!
//! - [`TimerWheel::schedule`], [`TimerWheel::schedule_earliest`], [`TimerWheel::cancel`]: O(1)
//!   (amortised). Re-scheduling does not search the old bucket: each schedule gets a fresh
//!   generation number recorded in the key → deadline map, and a bucket entry whose
//!   generation no longer matches the map is stale and dropped when its bucket is next
//!   visited (lazy cancellation). If stale entries pile up (more than twice the live keys
//!   plus one per slot), the wheel compacts all buckets, which amortises to O(1) per schedule.
//! - [`TimerWheel::pop_due`]: visits the buckets of the ticks since the previous call, but at
//!   most `slots` buckets however long the wheel sat idle, plus the due keys' sort.
//!
//! # Deadlines beyond one rotation
//!
//! They stay in their bucket (no round counter, no re-insertion): each entry keeps its exact
//! deadline, and visiting a bucket only takes the entries with `deadline <= now`, leaving
//! later rotations' entries in place. The price is that a bucket visit also walks the entries
//! of later rotations; with deadlines a few rotations out at most (reconcile intervals of
//! seconds, a wheel of a second or more) that is a small constant.
//!
//! # Precision
//!
//! `pop_due(now)` returns exactly the keys with `deadline <= now`: the tick only decides
//! which buckets are looked at, every entry is compared with `now` itself. A deadline before
//! `start`, or in a tick that `pop_due` already passed, is filed under the current tick, so
//! it is returned by the next `pop_due`.
//!
//! The wheel does not read a clock: callers pass `now` (from an injected
//! [`Clock`](crate::clock::Clock)), so tests use explicit instants.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// The live deadline of a scheduled key.
#[derive(Debug, Clone, Copy)]
struct Scheduled {
    at: Instant,
    /// Generation of the bucket entry that is current for this key.
    generation: u64,
}

/// A bucket entry; current only while `generation` matches the key's [`Scheduled`].
#[derive(Debug)]
struct SlotEntry<K> {
    key: K,
    at: Instant,
    /// Absolute tick the entry was filed under (>= the wheel's `current_tick` while live).
    tick: u64,
    generation: u64,
}

/// Keys with deadlines, bucketed by tick. Not thread-safe by itself: the reconciler's timer
/// thread owns it (or wraps it in a mutex).
#[derive(Debug)]
pub struct TimerWheel<K: Hash + Eq + Clone> {
    tick_nanos: u64,
    start: Instant,
    slots: Vec<Vec<SlotEntry<K>>>,
    scheduled: HashMap<K, Scheduled>,
    next_generation: u64,
    /// The first tick not yet fully passed: every live entry has `tick >= current_tick`.
    current_tick: u64,
    /// Entries in all buckets, live or stale; drives compaction.
    stored: usize,
}

impl<K: Hash + Eq + Clone> TimerWheel<K> {
    /// A wheel of `slots` buckets of `tick` each, counting ticks from `start`.
    ///
    /// A zero `tick` is treated as 1 ns and zero `slots` as 1 (degenerate but correct), so a
    /// bad config value cannot make the constructor fail.
    pub fn new(tick: Duration, slots: usize, start: Instant) -> Self {
        let tick_nanos = u64::try_from(tick.as_nanos()).unwrap_or(u64::MAX).max(1);
        let slots = slots.max(1);
        TimerWheel {
            tick_nanos,
            start,
            slots: (0..slots).map(|_| Vec::new()).collect(),
            scheduled: HashMap::new(),
            next_generation: 0,
            current_tick: 0,
            stored: 0,
        }
    }

    /// The tick length.
    pub fn tick(&self) -> Duration {
        Duration::from_nanos(self.tick_nanos)
    }

    /// Schedules `key` at `at`, replacing any earlier deadline of `key` (earlier or later).
    /// An `at` in the past makes the key due at the next [`pop_due`](Self::pop_due).
    pub fn schedule(&mut self, key: K, at: Instant) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let tick = self.tick_of(at).max(self.current_tick);
        let slot = self.slot_of(tick);
        self.slots[slot].push(SlotEntry { key: key.clone(), at, tick, generation });
        self.stored += 1;
        self.scheduled.insert(key, Scheduled { at, generation });
        self.maybe_compact();
    }

    /// Schedules `key` at `at` unless it is already scheduled no later than `at`: keeps the
    /// earlier of the two. Used to make a dataplane due now without postponing one that is
    /// already due sooner.
    pub fn schedule_earliest(&mut self, key: K, at: Instant) {
        match self.scheduled.get(&key) {
            Some(existing) if existing.at <= at => {}
            _ => self.schedule(key, at),
        }
    }

    /// Removes `key`'s deadline, if any. Its bucket entry is dropped lazily.
    pub fn cancel(&mut self, key: &K) {
        self.scheduled.remove(key);
    }

    /// Removes and returns every key whose deadline is `<= now`, each once, in deadline order
    /// (ties in no particular order).
    pub fn pop_due(&mut self, now: Instant) -> Vec<K> {
        // Never move backwards: a `now` earlier than the ticks already passed only looks at
        // the current tick's bucket.
        let now_tick = self.tick_of(now).max(self.current_tick);
        let span = now_tick - self.current_tick;
        // Ticks current..=now_tick, but each bucket at most once after a long idle gap.
        let visits = span.min(self.slots.len() as u64 - 1) + 1;
        let mut due: Vec<(Instant, K)> = Vec::new();
        for t in self.current_tick..self.current_tick + visits {
            let slot = self.slot_of(t);
            let scheduled = &mut self.scheduled;
            let before = self.slots[slot].len();
            self.slots[slot].retain(|entry| {
                let live = matches!(scheduled.get(&entry.key),
                    Some(s) if s.generation == entry.generation);
                if !live {
                    return false; // stale: cancelled or rescheduled
                }
                if entry.at <= now {
                    scheduled.remove(&entry.key);
                    due.push((entry.at, entry.key.clone()));
                    return false;
                }
                true
            });
            self.stored -= before - self.slots[slot].len();
        }
        // Tick `now_tick` may hold entries later in the same tick, so it stays current.
        self.current_tick = now_tick;
        due.sort_by_key(|(at, _)| *at);
        due.into_iter().map(|(_, key)| key).collect()
    }

    /// The earliest deadline, or `None` when nothing is scheduled. Exact (not rounded to a
    /// tick). Walks the buckets from the current tick until the first one holding an entry of
    /// that very tick, so it costs O(slots + entries walked); when every deadline is more than
    /// one rotation away it falls back to a scan of all live keys.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.scheduled.is_empty() {
            return None;
        }
        for t in self.current_tick..self.current_tick + self.slots.len() as u64 {
            let earliest = self.slots[self.slot_of(t)]
                .iter()
                .filter(|entry| entry.tick == t && self.is_live(entry))
                .map(|entry| entry.at)
                .min();
            if earliest.is_some() {
                // Every live entry of a later tick has a later deadline, and entries filed
                // under earlier ticks cannot exist (they are popped or re-filed at the
                // current tick), so this is the global minimum.
                return earliest;
            }
        }
        self.scheduled.values().map(|s| s.at).min()
    }

    /// Number of scheduled keys.
    pub fn len(&self) -> usize {
        self.scheduled.len()
    }

    /// Whether no key is scheduled.
    pub fn is_empty(&self) -> bool {
        self.scheduled.is_empty()
    }

    /// Whether `key` has a deadline.
    pub fn is_scheduled(&self, key: &K) -> bool {
        self.scheduled.contains_key(key)
    }

    /// `key`'s current deadline, if scheduled.
    pub fn deadline(&self, key: &K) -> Option<Instant> {
        self.scheduled.get(key).map(|s| s.at)
    }

    fn is_live(&self, entry: &SlotEntry<K>) -> bool {
        matches!(self.scheduled.get(&entry.key), Some(s) if s.generation == entry.generation)
    }

    /// Absolute tick of `at`; instants before `start` are tick 0. Saturates after ~584 years.
    fn tick_of(&self, at: Instant) -> u64 {
        let nanos = u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX);
        nanos / self.tick_nanos
    }

    fn slot_of(&self, tick: u64) -> usize {
        (tick % self.slots.len() as u64) as usize
    }

    /// Drops stale entries once they outnumber live ones by enough that the O(stored) walk
    /// pays for itself; keeps memory bounded when keys are rescheduled far ahead many times
    /// per rotation.
    fn maybe_compact(&mut self) {
        if self.stored <= 2 * self.scheduled.len() + self.slots.len() {
            return;
        }
        let scheduled = &self.scheduled;
        for slot in &mut self.slots {
            slot.retain(|entry| matches!(scheduled.get(&entry.key), Some(s) if s.generation == entry.generation));
        }
        self.stored = self.slots.iter().map(Vec::len).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: Duration = Duration::from_millis(10);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn wheel(slots: usize) -> (TimerWheel<u32>, Instant) {
        let start = Instant::now();
        (TimerWheel::new(TICK, slots, start), start)
    }

    #[test]
    fn pops_due_keys_in_deadline_order() {
        let (mut w, t0) = wheel(64);
        w.schedule(3, t0 + ms(35));
        w.schedule(1, t0 + ms(12));
        w.schedule(2, t0 + ms(18)); // same tick as key 1
        w.schedule(4, t0 + ms(100));
        assert_eq!(w.len(), 4);
        assert!(w.pop_due(t0 + ms(11)).is_empty());
        assert_eq!(w.pop_due(t0 + ms(15)), vec![1]); // exact, not per tick
        assert_eq!(w.pop_due(t0 + ms(40)), vec![2, 3]);
        assert!(!w.is_scheduled(&2));
        assert!(w.is_scheduled(&4));
        assert_eq!(w.pop_due(t0 + ms(100)), vec![4]);
        assert!(w.is_empty());
        // Each key once.
        assert!(w.pop_due(t0 + ms(500)).is_empty());
    }

    #[test]
    fn due_order_across_buckets_popped_together() {
        let (mut w, t0) = wheel(8);
        for (key, at) in [(5, 75), (1, 5), (4, 61), (2, 22), (3, 40)] {
            w.schedule(key, t0 + ms(at));
        }
        assert_eq!(w.pop_due(t0 + ms(79)), vec![1, 2, 3, 4, 5]);
    }

    #[test]
    fn reschedule_replaces_the_earlier_deadline() {
        let (mut w, t0) = wheel(64);
        w.schedule(1, t0 + ms(20));
        w.schedule(1, t0 + ms(50)); // later
        assert_eq!(w.deadline(&1), Some(t0 + ms(50)));
        assert!(w.pop_due(t0 + ms(30)).is_empty());
        assert_eq!(w.pop_due(t0 + ms(50)), vec![1]);

        w.schedule(2, t0 + ms(200));
        w.schedule(2, t0 + ms(60)); // earlier
        assert_eq!(w.pop_due(t0 + ms(60)), vec![2]);
        assert!(w.pop_due(t0 + ms(300)).is_empty(), "the replaced entry must not fire");
        assert_eq!(w.len(), 0);
    }

    #[test]
    fn schedule_earliest_keeps_the_earlier() {
        let (mut w, t0) = wheel(64);
        w.schedule(1, t0 + ms(30));
        w.schedule_earliest(1, t0 + ms(90));
        assert_eq!(w.deadline(&1), Some(t0 + ms(30)));
        w.schedule_earliest(1, t0 + ms(10));
        assert_eq!(w.deadline(&1), Some(t0 + ms(10)));
        w.schedule_earliest(2, t0 + ms(40)); // not scheduled yet: schedules
        assert_eq!(w.pop_due(t0 + ms(10)), vec![1]);
        assert_eq!(w.pop_due(t0 + ms(100)), vec![2]);
    }

    #[test]
    fn cancel_removes_the_key() {
        let (mut w, t0) = wheel(64);
        w.schedule(1, t0 + ms(10));
        w.schedule(2, t0 + ms(10));
        w.cancel(&1);
        w.cancel(&99); // unknown: no-op
        assert!(!w.is_scheduled(&1));
        assert_eq!(w.len(), 1);
        assert_eq!(w.pop_due(t0 + ms(20)), vec![2]);
        // Scheduling again after a cancel works.
        w.schedule(1, t0 + ms(30));
        assert_eq!(w.pop_due(t0 + ms(30)), vec![1]);
    }

    #[test]
    fn past_deadlines_are_due_at_the_next_pop() {
        let (mut w, t0) = wheel(16);
        assert!(w.pop_due(t0 + ms(500)).is_empty());
        w.schedule(1, t0 + ms(5)); // long past
        w.schedule(2, t0 - ms(1)); // before the wheel started
        assert_eq!(w.next_deadline(), Some(t0 - ms(1)));
        // Even a `now` that went backwards sees them.
        assert_eq!(w.pop_due(t0 + ms(6)), vec![2, 1]);
    }

    #[test]
    fn far_future_deadlines_fire_on_time_not_early() {
        // 8 slots of 10 ms: one rotation is 80 ms; 1005 ms is 12+ rotations away.
        let (mut w, t0) = wheel(8);
        w.schedule(1, t0 + ms(1005));
        w.schedule(2, t0 + ms(85)); // one rotation + a bit, same bucket as 5 ms
        let mut fired = Vec::new();
        for step in 0..=110u64 {
            let now = t0 + ms(step * 10);
            for key in w.pop_due(now) {
                fired.push((key, step * 10));
            }
        }
        assert_eq!(fired, vec![(2, 90), (1, 1010)]);
    }

    #[test]
    fn ten_thousand_keys_over_one_second_pop_in_their_ticks() {
        let (mut w, t0) = wheel(64); // 640 ms rotation, so deadlines wrap around the wheel
        const N: u32 = 10_000;
        // Key i is due at i * 100 µs; insert in a scrambled order.
        let at = |i: u32| t0 + Duration::from_micros(u64::from(i) * 100);
        for j in 0..N {
            let i = (j * 7919) % N; // 7919 is prime and coprime with N: a permutation
            w.schedule(i, at(i));
        }
        assert_eq!(w.len(), N as usize);
        let mut expected_next = 0u32;
        for step in 0..=100u64 {
            let now = t0 + TICK * step as u32;
            let popped = w.pop_due(now);
            // Everything up to and including `now`, nothing after, in deadline order.
            let end = ((step * 100) as u32 + 1).min(N);
            let expected: Vec<u32> = (expected_next..end).collect();
            assert_eq!(popped, expected, "at {} ms", step * 10);
            expected_next = end;
        }
        assert!(w.is_empty());
    }

    #[test]
    fn long_idle_gap_visits_each_bucket_once() {
        let (mut w, t0) = wheel(32);
        w.schedule(1, t0 + ms(15));
        w.schedule(2, t0 + ms(3_600_000)); // an hour out
        w.schedule(3, t0 + ms(7_200_000));
        // A day later: 8.6 million ticks, but only 32 buckets are visited.
        let now = t0 + Duration::from_secs(86_400);
        assert_eq!(w.pop_due(now), vec![1, 2, 3]);
        // And the wheel keeps working from there.
        w.schedule(4, now + ms(25));
        assert!(w.pop_due(now + ms(24)).is_empty());
        assert_eq!(w.pop_due(now + ms(25)), vec![4]);
    }

    #[test]
    fn next_deadline_is_exact_and_tracks_changes() {
        let (mut w, t0) = wheel(16);
        assert_eq!(w.next_deadline(), None);
        w.schedule(1, t0 + ms(47));
        w.schedule(2, t0 + ms(43));
        assert_eq!(w.next_deadline(), Some(t0 + ms(43)));
        w.cancel(&2);
        assert_eq!(w.next_deadline(), Some(t0 + ms(47)));
        // More than one rotation (160 ms) away: found by the fallback scan.
        w.schedule(1, t0 + ms(5_000));
        w.schedule(3, t0 + ms(900));
        assert_eq!(w.next_deadline(), Some(t0 + ms(900)));
        // A next-rotation entry in a bucket that comes up earlier does not win: tick 21
        // shares bucket 5 with tick 5, which the walk reaches before tick 10.
        w.schedule(4, t0 + ms(215));
        w.schedule(5, t0 + ms(100));
        assert_eq!(w.next_deadline(), Some(t0 + ms(100)));
        assert_eq!(w.pop_due(t0 + ms(150)), vec![5]);
        assert_eq!(w.next_deadline(), Some(t0 + ms(215)));
    }

    #[test]
    fn repeated_rescheduling_keeps_storage_bounded() {
        let (mut w, t0) = wheel(16);
        for round in 0..10_000u64 {
            w.schedule(1, t0 + ms(1_000 + round));
            w.schedule(2, t0 + ms(2_000 + round));
        }
        assert_eq!(w.len(), 2);
        assert!(w.stored <= 2 * w.len() + 16 + 1, "stored {} entries", w.stored);
        assert_eq!(w.pop_due(t0 + ms(20_000)), vec![1, 2]);
    }

    #[test]
    fn degenerate_sizes_still_work() {
        let t0 = Instant::now();
        let mut w: TimerWheel<&str> = TimerWheel::new(Duration::ZERO, 0, t0);
        assert_eq!(w.tick(), Duration::from_nanos(1));
        w.schedule("a", t0 + ms(2));
        w.schedule("b", t0 + ms(1));
        assert_eq!(w.next_deadline(), Some(t0 + ms(1)));
        assert_eq!(w.pop_due(t0 + ms(2)), vec!["b", "a"]);
    }
}
