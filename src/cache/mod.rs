//! A mutex-sharded TTL cache with per-key fetch sharing: Kuma's cached read path
//! (`cachedManager`, `once.Cache`) for a synchronous, thread-pool daemon.
//!
//! # What it is for
//!
//! Every reconcile of a dataplane reads the same mesh-wide data (policies, the mesh, the
//! endpoint map). Without a cache, N dataplanes reconciled in the same second issue N
//! identical store reads; Kuma measured ~1000% → ~50% CPU at 300 dataplanes when it added this
//! cache (kumahq/kuma#634). [`ShardedTtlCache::get_or_fetch`] returns a value younger than the
//! TTL if there is one, and otherwise lets exactly one caller per key fetch it while concurrent
//! callers for that key wait for the same result (single flight, Kuma's `hit-wait`).
//!
//! # Why sharded
//!
//! The control plane typically runs on two cores but with many reader threads (the xDS
//! worker pool plus the REST API pool). A lookup is a write: it moves the entry to the front
//! of the LRU list, so a `RwLock` would not let readers proceed in parallel. One mutex would
//! therefore serialise every lookup of every thread; splitting the cache into
//! [`SHARD_COUNT`] (16) independent `Mutex<LruCache>` shards makes two threads collide only
//! when their keys land in the same shard. 16 is a few times the number of threads that can
//! run at once on a small box, which keeps collisions rare, while staying small enough that
//! splitting the capacity evenly (`capacity / 16` per shard, at least 1) does not make a
//! skewed key set evict much earlier than a single LRU would.
//!
//! The shard is chosen by hashing the key with SipHash-1-3 under fixed keys
//! (`BuildHasherDefault<DefaultHasher>`), so a key always lands in the same shard, in every
//! process; that keeps tests reproducible. A fixed seed lets someone who controls key names
//! pile them into one shard, but that only costs balance, not correctness or asymptotics: each
//! shard's own table (`lru`'s hashbrown map) uses a randomly seeded hasher.
//!
//! # Lock order
//!
//! At most one lock is held at any time:
//! - a caller holds at most one shard lock, never two (`clear` and `len` take the shards one
//!   after the other);
//! - the lock inside an in-flight slot (`InFlight`) is never taken while a shard lock is held,
//!   nor the other way round;
//! - `fetch` runs, and waiters block, with no cache lock held, so a slow store read only
//!   delays the callers of that key.
//!
//! # TTL semantics
//!
//! The same as Kuma's `store.cache.expirationTime` (default 1 s): an entry's age is measured
//! from the moment its fetch *completed* (Kuma's go-cache `SetDefault` after the read), and a
//! lookup is a hit while `age < ttl`. Unlike go-cache, the TTL is checked at lookup time rather
//! than stamped into each entry, so [`ShardedTtlCache::set_ttl`] (config reload) applies to
//! entries already cached. A TTL of zero disables caching but still shares concurrent fetches.
//! There is no janitor thread: an expired entry is dropped when it is next looked up or when
//! the LRU evicts it, so [`ShardedTtlCache::len`] may count expired entries.
//!
//! Errors are never cached: the next caller fetches again. Callers that were already waiting
//! on a failing fetch receive a clone of that same error.
//!
//! # What it is not
//!
//! - Not consistent across control-plane instances, nor with the store: a reader may see data
//!   up to one TTL old (Kuma: "designed to be used only for use cases of eventual
//!   consistency"). Use the store directly where read-your-writes matters.
//! - Not a copy: values are shared (`Arc`), so callers must treat them as immutable.
//! - Not a negative cache: an error or a "not found" returned as `Err` is fetched again.
//!
//! # Panics in `fetch`
//!
//! The caller that runs `fetch` (the leader) holds a drop guard. If `fetch` panics, the guard
//! removes the in-flight slot and wakes the waiters with "leader gone"; each of them then
//! retries from the start, so one becomes the new leader and the others wait for it or hit.
//! The panic itself continues to unwind in the leader's thread.

pub mod metrics;

pub use metrics::CacheStats;

use std::any::Any;
use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, BuildHasherDefault, Hash};
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use lru::LruCache;

use crate::clock::Clock;
use metrics::Counters;

/// Number of shards. See the module doc for why 16.
pub const SHARD_COUNT: usize = 16;

/// Fixed-seed hasher used only to pick the shard (see the module doc).
type ShardHasher = BuildHasherDefault<DefaultHasher>;

/// A cached value and when its fetch completed.
struct Entry<V> {
    value: V,
    inserted: Instant,
}

/// An in-flight slot, type-erased because the error type `E` is chosen per call of
/// `get_or_fetch`, not per cache. The concrete type is always `InFlight<V, E>`.
type FlightSlot = Arc<dyn Any + Send + Sync>;

/// One shard: the LRU of entries plus the keys currently being fetched.
struct Shard<K, V> {
    entries: LruCache<K, Entry<V>>,
    /// Keys whose leader is fetching right now. A caller that misses and finds the key here
    /// waits on the slot instead of fetching.
    in_flight: HashMap<K, FlightSlot>,
}

/// What a leader tells its waiters.
enum FlightState<V, E> {
    /// The leader is still fetching.
    Running,
    /// The fetch finished; every waiter gets a clone.
    Done(Result<V, E>),
    /// The leader panicked: waiters retry from the start.
    Abandoned,
}

/// The rendezvous between one leader and the callers waiting for it.
struct InFlight<V, E> {
    state: Mutex<FlightState<V, E>>,
    done: Condvar,
}

impl<V: Clone, E: Clone> InFlight<V, E> {
    fn new() -> Self {
        InFlight { state: Mutex::new(FlightState::Running), done: Condvar::new() }
    }

    fn publish(&self, state: FlightState<V, E>) {
        *lock(&self.state) = state;
        self.done.notify_all();
    }

    /// Blocks until the leader publishes. `None` means the leader is gone (panicked).
    fn wait(&self) -> Option<Result<V, E>> {
        let mut state = lock(&self.state);
        loop {
            match &*state {
                FlightState::Running => {
                    state = self.done.wait(state).unwrap_or_else(PoisonError::into_inner);
                }
                FlightState::Done(result) => return Some(result.clone()),
                FlightState::Abandoned => return None,
            }
        }
    }
}

/// Locks a mutex, recovering from poisoning. No user code (`fetch`) ever runs under a cache
/// lock, so a poisoned lock can only come from a panic in a key's `Hash`/`Eq`/`Clone` or a
/// value's `Clone`; the data behind it is then at worst missing an entry, which a cache may
/// always be. Refusing service forever would be worse.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Address of a slot's allocation, to tell "still my slot" from "a newer leader's slot".
fn slot_addr<T: ?Sized>(slot: &Arc<T>) -> *const () {
    Arc::as_ptr(slot) as *const ()
}

/// A TTL + LRU cache split into [`SHARD_COUNT`] mutex-protected shards, with single-flight
/// fetching. Share it as `Arc<ShardedTtlCache<..>>`; every method takes `&self`.
///
/// Values are meant to be `Arc<...>`: a hit clones the value under the shard lock, so cloning
/// must be cheap.
pub struct ShardedTtlCache<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: ShardHasher,
    /// TTL in nanoseconds; atomic so a config reload can change it without a lock.
    ttl_nanos: AtomicU64,
    per_shard_capacity: NonZeroUsize,
    clock: Arc<dyn Clock>,
    counters: Counters,
}

impl<K, V> ShardedTtlCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
{
    /// A cache whose entries live for `ttl` and that holds about `capacity` entries in total:
    /// each shard keeps `capacity / SHARD_COUNT` (at least 1) and evicts its least recently
    /// used entry beyond that.
    pub fn new(ttl: Duration, capacity: usize, clock: Arc<dyn Clock>) -> Self {
        let per_shard = NonZeroUsize::new(capacity / SHARD_COUNT).unwrap_or(NonZeroUsize::MIN);
        let shards = (0..SHARD_COUNT)
            .map(|_| Mutex::new(Shard { entries: LruCache::new(per_shard), in_flight: HashMap::new() }))
            .collect();
        ShardedTtlCache {
            shards,
            hasher: ShardHasher::default(),
            ttl_nanos: AtomicU64::new(duration_nanos(ttl)),
            per_shard_capacity: per_shard,
            clock,
            counters: Counters::default(),
        }
    }

    /// The current TTL.
    pub fn ttl(&self) -> Duration {
        Duration::from_nanos(self.ttl_nanos.load(Ordering::Relaxed))
    }

    /// Changes the TTL (config reload). Applies to the next lookup, including of entries
    /// cached before the change. Saturates at ~584 years.
    pub fn set_ttl(&self, ttl: Duration) {
        self.ttl_nanos.store(duration_nanos(ttl), Ordering::Relaxed);
    }

    /// The effective total capacity: the per-shard capacity times [`SHARD_COUNT`].
    pub fn capacity(&self) -> usize {
        self.per_shard_capacity.get() * SHARD_COUNT
    }

    /// Returns the cached value for `key` if it is younger than the TTL; otherwise calls
    /// `fetch`, caches a success and returns the result.
    ///
    /// Concurrent callers that miss on the same key share one `fetch`: the first runs it
    /// (counted as a miss), the others block until it finishes and receive a clone of the
    /// same value or the same error (counted as hit-waits). `fetch` runs with no lock held.
    /// Errors are not cached.
    ///
    /// `E` is chosen per call. If two callers fetch the same key at the same time with
    /// *different* error types, they cannot share a result, so the second fetches on its own
    /// without caching (a rare case that only costs one extra read).
    ///
    /// If another thread [`invalidate`](Self::invalidate)s the key or [`clear`](Self::clear)s
    /// the cache while `fetch` runs, the result is still returned to this caller and its
    /// waiters but not cached, so an invalidation is never undone by an older read.
    pub fn get_or_fetch<E>(&self, key: &K, fetch: impl FnOnce() -> Result<V, E>) -> Result<V, E>
    where
        V: 'static,
        E: Clone + Send + 'static,
    {
        let shard = self.shard(key);
        // Find out our role: hit (return), waiter (wait, maybe retry), leader or solo fetcher.
        let flight: Option<Arc<InFlight<V, E>>> = loop {
            let now = self.clock.now();
            let joined = {
                let mut guard = lock(shard);
                if let Some(value) = self.lookup_fresh(&mut guard, key, now) {
                    Counters::bump(&self.counters.hits);
                    return Ok(value);
                }
                match guard.in_flight.get(key) {
                    None => {
                        let flight = Arc::new(InFlight::<V, E>::new());
                        let slot: FlightSlot = flight.clone();
                        guard.in_flight.insert(key.clone(), slot);
                        break Some(flight);
                    }
                    Some(slot) => match Arc::clone(slot).downcast::<InFlight<V, E>>() {
                        Ok(flight) => flight,
                        // Someone fetches this key with another error type.
                        Err(_) => break None,
                    },
                }
            }; // Shard lock released here: waiting happens without it.
            match joined.wait() {
                Some(result) => {
                    Counters::bump(&self.counters.hit_waits);
                    return result;
                }
                // The leader panicked; start over (one of the retrying waiters leads next).
                None => continue,
            }
        };

        Counters::bump(&self.counters.misses);
        let Some(flight) = flight else {
            // Solo fetch: no in-flight slot of ours, so nothing to publish and, because
            // nothing tracks invalidations for us, nothing to cache.
            let result = fetch();
            if result.is_err() {
                Counters::bump(&self.counters.fetch_errors);
            }
            return result;
        };

        let mut guard = LeaderGuard { cache: self, key, flight: &flight, finished: false };
        let result = fetch();
        guard.finished = true;
        drop(guard);

        {
            let mut shard = lock(shard);
            // Cache only if our slot is still registered: if it is gone, the key was
            // invalidated (or the cache cleared) while we fetched and our value may be stale.
            let ours = Self::remove_slot_if_ours(&mut shard, key, slot_addr(&flight));
            if let (true, Ok(value)) = (ours, &result) {
                let entry = Entry { value: value.clone(), inserted: self.clock.now() };
                shard.entries.put(key.clone(), entry);
            }
        }
        if result.is_err() {
            Counters::bump(&self.counters.fetch_errors);
        }
        // Publish after the shard lock is released (lock order) and after the slot is gone,
        // so a caller arriving now hits the cache (or fetches anew after an error) instead of
        // joining a finished flight.
        flight.publish(FlightState::Done(result.clone()));
        result
    }

    /// Drops `key`'s entry. A fetch of `key` in progress still answers its callers but its
    /// result will not be cached; callers arriving after this start a new fetch.
    pub fn invalidate(&self, key: &K) {
        let mut shard = lock(self.shard(key));
        shard.entries.pop(key);
        // Waiters keep their Arc to the slot and still get the old leader's result.
        shard.in_flight.remove(key);
    }

    /// Drops every entry (one shard at a time, so a concurrent reader may briefly see some
    /// shards cleared and others not). Fetches in progress are not cached, as for
    /// [`invalidate`](Self::invalidate).
    pub fn clear(&self) {
        for shard in self.shards.iter() {
            let mut shard = lock(shard);
            shard.entries.clear();
            shard.in_flight.clear();
        }
    }

    /// Number of stored entries, including expired ones not yet dropped. Takes each shard lock
    /// in turn, so the sum is not an atomic snapshot under concurrent writes.
    pub fn len(&self) -> usize {
        self.shards.iter().map(|shard| lock(shard).entries.len()).sum()
    }

    /// Whether no entries are stored (same caveats as [`len`](Self::len)).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the hit / hit-wait / miss / error counters.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    fn shard_index(&self, key: &K) -> usize {
        // Modulo of the full 64-bit hash: SipHash spreads all bits, so the low ones are fine.
        (self.hasher.hash_one(key) % SHARD_COUNT as u64) as usize
    }

    fn shard(&self, key: &K) -> &Mutex<Shard<K, V>> {
        &self.shards[self.shard_index(key)]
    }

    /// The value if it is fresh at `now`; drops an expired entry so it stops taking space.
    fn lookup_fresh(&self, shard: &mut Shard<K, V>, key: &K, now: Instant) -> Option<V> {
        let ttl = self.ttl();
        // `get` (not `peek`) so a hit also refreshes the entry's LRU position.
        match shard.entries.get(key) {
            None => return None,
            Some(entry) if now.saturating_duration_since(entry.inserted) < ttl => {
                return Some(entry.value.clone());
            }
            Some(_) => {}
        }
        shard.entries.pop(key);
        None
    }

    /// Removes `key`'s in-flight slot if it is still the one at `addr`; false when an
    /// invalidation removed it (and maybe a newer leader replaced it) in the meantime.
    fn remove_slot_if_ours(shard: &mut Shard<K, V>, key: &K, addr: *const ()) -> bool {
        match shard.in_flight.get(key) {
            Some(slot) if std::ptr::eq(slot_addr(slot), addr) => {
                shard.in_flight.remove(key);
                true
            }
            _ => false,
        }
    }
}

/// Held by the leader while `fetch` runs. If `fetch` panics, dropping the guard during the
/// unwind removes the in-flight slot and tells the waiters to retry, so none blocks forever.
struct LeaderGuard<'a, K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    E: Clone,
{
    cache: &'a ShardedTtlCache<K, V>,
    key: &'a K,
    flight: &'a Arc<InFlight<V, E>>,
    finished: bool,
}

impl<K, V, E> Drop for LeaderGuard<'_, K, V, E>
where
    K: Hash + Eq + Clone + Send + Sync,
    V: Clone + Send + Sync,
    E: Clone,
{
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        {
            let mut shard = lock(self.cache.shard(self.key));
            ShardedTtlCache::remove_slot_if_ours(&mut shard, self.key, slot_addr(self.flight));
        }
        self.flight.publish(FlightState::Abandoned);
    }
}

impl<K, V> fmt::Debug for ShardedTtlCache<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShardedTtlCache")
            .field("shards", &SHARD_COUNT)
            .field("per_shard_capacity", &self.per_shard_capacity)
            .field("ttl", &Duration::from_nanos(self.ttl_nanos.load(Ordering::Relaxed)))
            .field("clock", &self.clock)
            .field("stats", &self.counters.snapshot())
            .finish()
    }
}

fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{mpsc, Barrier};
    use std::thread;

    const TTL: Duration = Duration::from_secs(1);

    fn cache_with_clock(capacity: usize) -> (ShardedTtlCache<String, Arc<u64>>, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::starting_now());
        let cache = ShardedTtlCache::new(TTL, capacity, clock.clone());
        (cache, clock)
    }

    /// A fetch that counts its calls and returns `value`.
    fn counted(calls: &AtomicUsize, value: u64) -> impl FnOnce() -> Result<Arc<u64>, String> + '_ {
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok(Arc::new(value))
        }
    }

    fn key(s: &str) -> String {
        s.to_string()
    }

    #[test]
    fn hit_within_ttl() {
        let (cache, clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 7)).unwrap(), 7);
        clock.advance(TTL - Duration::from_nanos(1));
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 8)).unwrap(), 7);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        assert_eq!(cache.stats(), CacheStats { hits: 1, hit_waits: 0, misses: 1, fetch_errors: 0 });
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn miss_after_ttl() {
        let (cache, clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch(&key("a"), counted(&calls, 1)).unwrap();
        clock.advance(TTL);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 2)).unwrap(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // The refetched value is fresh again from the new fetch's completion.
        clock.advance(TTL / 2);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 3)).unwrap(), 2);
        assert_eq!(cache.stats(), CacheStats { hits: 1, hit_waits: 0, misses: 2, fetch_errors: 0 });
    }

    #[test]
    fn set_ttl_applies_to_existing_entries() {
        let (cache, clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch(&key("a"), counted(&calls, 1)).unwrap();
        clock.advance(Duration::from_millis(1500));
        cache.set_ttl(Duration::from_secs(5));
        assert_eq!(cache.ttl(), Duration::from_secs(5));
        // 1.5 s old: stale under the old 1 s TTL, fresh under the new 5 s.
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 2)).unwrap(), 1);
        cache.set_ttl(Duration::from_millis(100));
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 3)).unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        // A zero TTL disables caching.
        cache.set_ttl(Duration::ZERO);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 4)).unwrap(), 4);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[test]
    fn errors_are_not_cached() {
        let (cache, _clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        let err = cache.get_or_fetch(&key("a"), || {
            calls.fetch_add(1, Ordering::SeqCst);
            Err::<Arc<u64>, _>("store down".to_string())
        });
        assert_eq!(err, Err("store down".to_string()));
        assert!(cache.is_empty());
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 5)).unwrap(), 5);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats(), CacheStats { hits: 0, hit_waits: 0, misses: 2, fetch_errors: 1 });
    }

    #[test]
    fn invalidate_and_clear() {
        let (cache, _clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch(&key("a"), counted(&calls, 1)).unwrap();
        cache.get_or_fetch(&key("b"), counted(&calls, 1)).unwrap();
        assert_eq!(cache.len(), 2);
        cache.invalidate(&key("a"));
        assert_eq!(cache.len(), 1);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 2)).unwrap(), 2);
        cache.clear();
        assert!(cache.is_empty());
        assert_eq!(*cache.get_or_fetch(&key("b"), counted(&calls, 3)).unwrap(), 3);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn invalidate_during_fetch_prevents_caching_the_old_read() {
        let (cache, _clock) = cache_with_clock(1024);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let leader = s.spawn(|| {
                cache.get_or_fetch(&key("a"), move || {
                    started_tx.send(()).map_err(|e| e.to_string())?;
                    release_rx.recv().map_err(|e| e.to_string())?;
                    Ok::<_, String>(Arc::new(1))
                })
            });
            started_rx.recv().unwrap();
            cache.invalidate(&key("a"));
            release_tx.send(()).unwrap();
            assert_eq!(*leader.join().unwrap().unwrap(), 1);
        });
        assert!(cache.is_empty(), "a read older than the invalidation must not be cached");
        let calls = AtomicUsize::new(0);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 2)).unwrap(), 2);
    }

    #[test]
    fn lru_evicts_least_recently_used_per_shard() {
        // Two entries per shard.
        let (cache, _clock) = cache_with_clock(2 * SHARD_COUNT);
        assert_eq!(cache.capacity(), 2 * SHARD_COUNT);
        let same_shard: Vec<String> =
            (0..).map(|i| format!("k{i}")).filter(|k| cache.shard_index(k) == 0).take(3).collect();
        let [a, b, c] = [&same_shard[0], &same_shard[1], &same_shard[2]];
        let calls = AtomicUsize::new(0);
        cache.get_or_fetch(a, counted(&calls, 1)).unwrap();
        cache.get_or_fetch(b, counted(&calls, 2)).unwrap();
        cache.get_or_fetch(a, counted(&calls, 0)).unwrap(); // hit: `a` becomes most recent
        cache.get_or_fetch(c, counted(&calls, 3)).unwrap(); // evicts `b`
        assert_eq!(cache.len(), 2);
        assert_eq!(calls.load(Ordering::SeqCst), 3);
        assert_eq!(*cache.get_or_fetch(a, counted(&calls, 9)).unwrap(), 1);
        assert_eq!(*cache.get_or_fetch(b, counted(&calls, 9)).unwrap(), 9);
        assert_eq!(calls.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn tiny_capacity_keeps_one_entry_per_shard() {
        let (cache, _clock) = cache_with_clock(0);
        assert_eq!(cache.capacity(), SHARD_COUNT);
        let calls = AtomicUsize::new(0);
        for i in 0..100 {
            cache.get_or_fetch(&format!("k{i}"), counted(&calls, i)).unwrap();
        }
        assert!(cache.len() <= SHARD_COUNT);
    }

    #[test]
    fn concurrent_cold_misses_share_one_fetch() {
        const THREADS: usize = 16;
        let (cache, _clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache.get_or_fetch(&key("cold"), || {
                            calls.fetch_add(1, Ordering::SeqCst);
                            // Long enough for the other threads to arrive and wait.
                            thread::sleep(Duration::from_millis(20));
                            Ok::<_, String>(Arc::new(42))
                        })
                    })
                })
                .collect();
            for handle in handles {
                assert_eq!(*handle.join().unwrap().unwrap(), 42);
            }
        });
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(stats.misses, 1);
        assert_eq!(stats.hits + stats.hit_waits, (THREADS - 1) as u64);
        assert_eq!(stats.fetch_errors, 0);
    }

    #[test]
    fn waiters_receive_the_leaders_error() {
        const THREADS: usize = 8;
        let (cache, _clock) = cache_with_clock(1024);
        let calls = AtomicUsize::new(0);
        let barrier = Barrier::new(THREADS);
        thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        cache.get_or_fetch(&key("bad"), || {
                            let n = calls.fetch_add(1, Ordering::SeqCst);
                            thread::sleep(Duration::from_millis(20));
                            Err::<Arc<u64>, _>(format!("failure {n}"))
                        })
                    })
                })
                .collect();
            for handle in handles {
                // A thread that arrives after the error was published fetches again (errors
                // are not cached), so only the shared ones are guaranteed to be "failure 0".
                assert!(handle.join().unwrap().is_err());
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.misses as usize, calls.load(Ordering::SeqCst));
        assert_eq!(stats.fetch_errors, stats.misses);
        assert_eq!(stats.hits, 0);
        assert_eq!(stats.hit_waits + stats.misses, THREADS as u64);
        assert!(cache.is_empty());
    }

    #[test]
    fn many_keys_from_many_threads_stay_consistent() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 5_000;
        const KEYS: u64 = 200;
        let clock = Arc::new(ManualClock::starting_now());
        // Smaller than the key set, so eviction runs concurrently too.
        let cache: ShardedTtlCache<u64, Arc<u64>> = ShardedTtlCache::new(TTL, 128, clock.clone());
        let fetches = AtomicUsize::new(0);
        thread::scope(|s| {
            for t in 0..THREADS {
                let (cache, fetches, clock) = (&cache, &fetches, &clock);
                s.spawn(move || {
                    let mut rng = fastrand::Rng::with_seed(t as u64);
                    for round in 0..ROUNDS {
                        let k = rng.u64(0..KEYS);
                        let v = cache
                            .get_or_fetch(&k, || {
                                fetches.fetch_add(1, Ordering::SeqCst);
                                Ok::<_, ()>(Arc::new(k * 3))
                            })
                            .unwrap();
                        assert_eq!(*v, k * 3, "key {k} returned another key's value");
                        match round % 97 {
                            0 => cache.invalidate(&k),
                            1 if t == 0 => clock.advance(Duration::from_millis(300)),
                            _ => {}
                        }
                    }
                });
            }
        });
        let stats = cache.stats();
        assert_eq!(stats.hits + stats.hit_waits + stats.misses, (THREADS * ROUNDS) as u64);
        assert_eq!(stats.misses as usize, fetches.load(Ordering::SeqCst));
        assert!(cache.len() <= cache.capacity());
        for shard in cache.shards.iter() {
            assert!(lock(shard).in_flight.is_empty(), "an in-flight slot leaked");
        }
    }

    /// References to `key`'s in-flight slot: the map's, the leader's and one per waiter.
    fn in_flight_refs(cache: &ShardedTtlCache<String, Arc<u64>>, k: &String) -> usize {
        lock(cache.shard(k)).in_flight.get(k).map_or(0, Arc::strong_count)
    }

    #[test]
    fn panicking_fetch_does_not_hang_waiters() {
        const WAITERS: usize = 4;
        let (cache, _clock) = cache_with_clock(1024);
        let k = key("boom");
        let calls = AtomicUsize::new(0);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let leader = s.spawn(|| {
                cache.get_or_fetch(&k, move || -> Result<Arc<u64>, String> {
                    started_tx.send(()).map_err(|e| e.to_string())?;
                    let _ = release_rx.recv();
                    panic!("fetch panicked on purpose");
                })
            });
            started_rx.recv().unwrap();
            let waiters: Vec<_> =
                (0..WAITERS).map(|_| s.spawn(|| cache.get_or_fetch(&k, counted(&calls, 11)))).collect();
            // Release the leader only once every waiter is parked on its slot
            // (map + leader + one reference per waiter).
            while in_flight_refs(&cache, &k) < 2 + WAITERS {
                thread::yield_now();
            }
            release_tx.send(()).unwrap();
            assert!(leader.join().is_err(), "the leader's panic propagates to its own thread");
            for waiter in waiters {
                assert_eq!(*waiter.join().unwrap().unwrap(), 11);
            }
        });
        // Exactly one waiter took over as leader; the rest waited for it or hit.
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(stats.misses, 2); // the panicked leader + the new one
        assert_eq!(stats.hits + stats.hit_waits, (WAITERS - 1) as u64);
        assert_eq!(in_flight_refs(&cache, &k), 0);
        assert_eq!(cache.len(), 1);
    }

    #[test]
    fn different_error_types_on_one_key_do_not_confuse_each_other() {
        let (cache, _clock) = cache_with_clock(1024);
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        thread::scope(|s| {
            let leader = s.spawn(|| {
                cache.get_or_fetch(&key("a"), move || {
                    started_tx.send(()).map_err(|e| e.to_string())?;
                    release_rx.recv().map_err(|e| e.to_string())?;
                    Ok::<_, String>(Arc::new(1))
                })
            });
            started_rx.recv().unwrap();
            // Same key, error type u8: cannot join the String flight, fetches on its own.
            let solo = cache.get_or_fetch(&key("a"), || Ok::<_, u8>(Arc::new(2)));
            assert_eq!(*solo.unwrap(), 2);
            release_tx.send(()).unwrap();
            assert_eq!(*leader.join().unwrap().unwrap(), 1);
        });
        assert_eq!(cache.stats().misses, 2);
        let calls = AtomicUsize::new(0);
        assert_eq!(*cache.get_or_fetch(&key("a"), counted(&calls, 3)).unwrap(), 1);
    }
}
