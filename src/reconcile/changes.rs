//! Change delivery tracking: for every write, which dataplanes it affected and whether each
//! one got it (sent, ACKed, NACKed with Envoy's error, not connected, still pending).
//!
//! How a write becomes a change:
//!
//! 1. The REST API *announces* a write before it runs it ([`ChangeLog::announce`]) and
//!    returns the change id in a response header. Writes of one key are ordered by a striped
//!    lock ([`ChangeLog::order`]) held across announce and write, so announcements and the
//!    store's events of a key come in the same order.
//! 2. The dispatcher, handling the write's store event, *claims* the oldest announcement of
//!    the key ([`ChangeLog::claim`]) and fills in the dataplanes the event made due
//!    ([`ChangeLog::observe`]), each connected one with a [`Watches`] entry on its dataplane.
//!    Store events nobody announced (the control plane's own writes, e.g. a new mesh's
//!    default policies, and writes on other instances heard over Postgres NOTIFY) get a
//!    change of origin `store` here, with an id of this instance, when they affect at least
//!    one dataplane connected to it; the instance that took the write has the API change.
//! 3. Workers arm a dataplane's watches once a job that started after the change has run:
//!    its snapshot's version per type is what Envoy must end up with. The dataplane is
//!    delivered when Envoy ACKed every one of those versions (`upToDate` if nothing had to
//!    be sent), NACKed when it rejected one, `notConnected` when it was not connected to
//!    this instance at the time or disconnected before answering.
//!
//! Memory is bounded: a ring of the latest `xdsServer.changeHistorySize` changes holding at
//! most [`MAX_TRACKED_DELIVERIES`] dataplane entries between them, nothing in the store.
//! The hot paths record ids and states only; counts and percentiles are computed
//! when a change is read.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crate::clock::Clock;
use crate::model::ResourceKey;
use crate::store::Operation;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::stream::{Answer, StreamState};

/// Writes of different keys rarely share a stripe at this count, and a shared stripe only
/// orders two API writes that would otherwise run side by side.
const ORDER_STRIPES: usize = 64;

/// Seconds buckets from a same-host push to a multi-second tail (a NACK back-off, a slow
/// Envoy warming clusters).
const DELIVERY_BUCKETS: [f64; 13] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Who made the change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A PUT or DELETE on this instance's REST API; its id was returned to the client.
    Api,
    /// A store event nobody announced here: the control plane's own write, or another
    /// instance's (Postgres NOTIFY).
    Store,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Api => "api",
            Origin::Store => "store",
        }
    }
}

/// Where one dataplane's delivery of a change stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Delivery {
    /// Its config is being (re)generated.
    Pending,
    /// Responses went out; Envoy has not answered all of them.
    Sent,
    /// Envoy ACKed every version the change led to.
    Acked,
    /// Nothing had to be sent: Envoy already runs the config the change leads to.
    UpToDate,
    /// Envoy rejected a version the change led to.
    Nacked,
    /// Not connected to this instance when the change was made, or disconnected before it
    /// answered; it gets the config whenever it connects.
    NotConnected,
}

impl DataplaneDelivery {
    /// Envoy's error for `Nacked`, or why a `NotConnected` dataplane has no delivery.
    pub fn detail(&self) -> Option<&str> {
        match (&self.detail, self.state) {
            (Some(d), _) => Some(d),
            (None, Delivery::NotConnected) => Some(NOT_CONNECTED),
            (None, _) => None,
        }
    }
}

impl Delivery {
    pub const ALL: [Delivery; 6] = [
        Delivery::Pending,
        Delivery::Sent,
        Delivery::Acked,
        Delivery::UpToDate,
        Delivery::Nacked,
        Delivery::NotConnected,
    ];

    pub fn is_final(self) -> bool {
        !matches!(self, Delivery::Pending | Delivery::Sent)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delivery::Pending => "pending",
            Delivery::Sent => "sent",
            Delivery::Acked => "acked",
            Delivery::UpToDate => "upToDate",
            Delivery::Nacked => "nacked",
            Delivery::NotConnected => "notConnected",
        }
    }
}

/// One dataplane of a change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneDelivery {
    pub name: String,
    pub state: Delivery,
    /// Envoy's error for `Nacked`; why for `NotConnected` when it is not [`NOT_CONNECTED`].
    /// Read it through [`detail`](Self::detail).
    pub detail: Option<String>,
    /// The type Envoy rejected.
    pub rejected: Option<ResourceKind>,
    /// From the write to Envoy's ACK.
    pub latency: Option<Duration>,
}

/// One tracked change.
#[derive(Clone, Debug)]
pub struct Change {
    pub seq: u64,
    pub key: ResourceKey,
    pub op: Operation,
    pub origin: Origin,
    pub time: SystemTime,
    started: Instant,
    /// The dispatcher handled the write's store event: `dataplanes` is the whole set.
    pub observed: bool,
    /// A write the API announced but that failed: never shown.
    withdrawn: bool,
    pub dataplanes: Vec<DataplaneDelivery>,
    unfinished: usize,
}

impl Change {
    /// The mesh the change belongs to (a Mesh's own name for a Mesh).
    pub fn mesh(&self) -> &str {
        if self.key.rtype == crate::model::ResourceType::Mesh {
            &self.key.name
        } else {
            &self.key.mesh
        }
    }

    /// Every affected dataplane is in a final state (and the event was handled).
    pub fn complete(&self) -> bool {
        self.observed && self.unfinished == 0
    }

    pub fn count(&self, state: Delivery) -> usize {
        self.dataplanes.iter().filter(|d| d.state == state).count()
    }

    /// The `q` quantile (0..=1, nearest rank) of the ACK latencies so far.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut l: Vec<Duration> = self.dataplanes.iter().filter_map(|d| d.latency).collect();
        if l.is_empty() {
            return None;
        }
        l.sort();
        let rank = ((q * l.len() as f64).ceil() as usize).clamp(1, l.len());
        l.get(rank - 1).copied()
    }
}

struct Ring {
    capacity: usize,
    /// Dataplane entries over every kept change, held under [`MAX_TRACKED_DELIVERIES`].
    deliveries: usize,
    /// `seq` of `changes[0]`; seqs are consecutive.
    first: u64,
    changes: VecDeque<Change>,
    /// Announced API writes whose store event has not been handled yet, oldest first.
    announced: HashMap<ResourceKey, VecDeque<u64>>,
}

/// At most this many dataplane entries are kept over all changes (~100 bytes each, so
/// ~10 MB), the oldest changes going first; the newest change is always kept whatever its
/// size. Counting changes alone does not bound memory: at 10,000 dataplanes a mesh-wide
/// policy write holds 10,000 entries, and a policy mix applied at start (205 writes) held
/// ~1 million, ~90 MB of a 10,000-dataplane cold start's peak heap (heaptrack, BENCHMARKS.md).
pub const MAX_TRACKED_DELIVERIES: usize = 100_000;

/// Why a dataplane that was not connected when the change ran has no delivery to track
/// (the shared default of [`DataplaneDelivery::detail`], so no entry holds its own copy).
pub const NOT_CONNECTED: &str = "not connected to this control-plane instance";

impl Ring {
    fn get_mut(&mut self, seq: u64) -> Option<&mut Change> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.changes.get_mut(i)
    }

    fn get(&self, seq: u64) -> Option<&Change> {
        let i = usize::try_from(seq.checked_sub(self.first)?).ok()?;
        self.changes.get(i)
    }
}

/// The recent changes of this instance (see the module docs).
pub struct ChangeLog {
    /// Random per start, so an id from before a restart names no change instead of a new one.
    boot: u32,
    clock: Arc<dyn Clock>,
    ring: Mutex<Ring>,
    order: Vec<Mutex<()>>,
    /// Announcements not yet claimed: lets the dispatcher skip the lock for every store event.
    announced: AtomicUsize,
    /// Dataplane deliveries not final yet: lets the dispatcher skip every ACK's lookup.
    unfinished: AtomicUsize,
    delivery: prometheus::Histogram,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves the ring consistent before anything can panic.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ChangeLog {
    pub fn new(capacity: usize, clock: Arc<dyn Clock>) -> ChangeLog {
        let opts = prometheus::HistogramOpts::new(
            "xds_change_delivery_seconds",
            "Time from a write to the ACK of each dataplane it affected, in seconds",
        )
        .buckets(DELIVERY_BUCKETS.to_vec());
        ChangeLog {
            boot: fastrand::u32(..),
            clock,
            ring: Mutex::new(Ring {
                capacity: capacity.max(1),
                deliveries: 0,
                first: 1,
                changes: VecDeque::new(),
                announced: HashMap::new(),
            }),
            order: (0..ORDER_STRIPES).map(|_| Mutex::new(())).collect(),
            announced: AtomicUsize::new(0),
            unfinished: AtomicUsize::new(0),
            // Name, help and buckets are constants that satisfy prometheus' rules.
            delivery: prometheus::Histogram::with_opts(opts).expect("valid histogram options"),
        }
    }

    /// `<boot>-<seq>`, the form the API hands out.
    pub fn id(&self, seq: u64) -> String {
        format!("{:08x}-{seq}", self.boot)
    }

    /// The seq of an id of this instance's current run.
    pub fn parse_id(&self, id: &str) -> Option<u64> {
        let (boot, seq) = id.split_once('-')?;
        (u32::from_str_radix(boot, 16).ok()? == self.boot).then_some(())?;
        seq.parse().ok()
    }

    /// Held across an API write's announce and the write itself (see the module docs).
    pub fn order(&self, key: &ResourceKey) -> MutexGuard<'_, ()> {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        key.hash(&mut h);
        let stripe = (h.finish() % ORDER_STRIPES as u64) as usize;
        lock(&self.order[stripe])
    }

    /// Records an API write about to run; returns its seq.
    pub fn announce(&self, key: &ResourceKey, op: Operation) -> u64 {
        let mut ring = lock(&self.ring);
        let seq = self.push(&mut ring, key.clone(), op, Origin::Api, false);
        ring.announced.entry(key.clone()).or_default().push_back(seq);
        self.announced.fetch_add(1, Ordering::SeqCst);
        seq
    }

    /// The announced write failed: it will have no store event.
    pub fn withdraw(&self, seq: u64) {
        let mut ring = lock(&self.ring);
        let key = match ring.get_mut(seq) {
            Some(c) => {
                c.withdrawn = true;
                c.key.clone()
            }
            None => return,
        };
        if let Some(q) = ring.announced.get_mut(&key) {
            let before = q.len();
            q.retain(|s| *s != seq);
            if q.len() < before {
                self.announced.fetch_sub(1, Ordering::SeqCst);
            }
            if q.is_empty() {
                ring.announced.remove(&key);
            }
        }
    }

    /// The announcement a store event of `key` answers, if any (oldest first).
    pub fn claim(&self, key: &ResourceKey) -> Option<u64> {
        if self.announced.load(Ordering::SeqCst) == 0 {
            return None;
        }
        let mut ring = lock(&self.ring);
        let q = ring.announced.get_mut(key)?;
        let seq = q.pop_front();
        if q.is_empty() {
            ring.announced.remove(key);
        }
        if seq.is_some() {
            self.announced.fetch_sub(1, Ordering::SeqCst);
        }
        seq
    }

    /// Every announcement still waiting: a resync stands for events that may be lost.
    pub fn claim_all(&self) -> Vec<(u64, ResourceKey)> {
        let mut ring = lock(&self.ring);
        let mut out: Vec<(u64, ResourceKey)> =
            ring.announced.drain().flat_map(|(k, q)| q.into_iter().map(move |s| (s, k.clone()))).collect();
        self.announced.fetch_sub(out.len(), Ordering::SeqCst);
        out.sort();
        out
    }

    /// Fills in a change's dataplanes once its event was handled: `claimed` for an API
    /// write, else a new change of origin `store` (only when it affects someone). `affected`
    /// is every dataplane the event made due, with whether it is connected here. Returns the
    /// seq and each connected dataplane's index, for its watches.
    pub fn observe(
        &self,
        claimed: Option<u64>,
        key: &ResourceKey,
        op: Operation,
        affected: Vec<(String, bool)>,
    ) -> Option<(u64, Vec<(String, usize)>)> {
        if claimed.is_none() && affected.is_empty() {
            return None;
        }
        let mut ring = lock(&self.ring);
        let seq = match claimed {
            Some(s) => s,
            None => self.push(&mut ring, key.clone(), op, Origin::Store, false),
        };
        let change = ring.get_mut(seq)?;
        let mut affected = affected;
        affected.sort();
        affected.dedup_by(|a, b| a.0 == b.0);
        let mut watch = Vec::new();
        let replaced = change.dataplanes.len();
        change.dataplanes = affected
            .into_iter()
            .enumerate()
            .map(|(i, (name, connected))| {
                let (state, detail) = if connected {
                    watch.push((name.clone(), i));
                    (Delivery::Pending, None)
                } else {
                    (Delivery::NotConnected, None)
                };
                DataplaneDelivery { name, state, detail, rejected: None, latency: None }
            })
            .collect();
        change.unfinished = watch.len();
        change.observed = true;
        let kept = change.dataplanes.len();
        ring.deliveries = ring.deliveries - replaced + kept;
        self.unfinished.fetch_add(watch.len(), Ordering::SeqCst);
        self.evict(&mut ring);
        Some((seq, watch))
    }

    fn push(&self, ring: &mut Ring, key: ResourceKey, op: Operation, origin: Origin, observed: bool) -> u64 {
        let seq = ring.first + ring.changes.len() as u64;
        ring.changes.push_back(Change {
            seq,
            key,
            op,
            origin,
            time: SystemTime::now(),
            started: self.clock.now(),
            observed,
            withdrawn: false,
            dataplanes: Vec::new(),
            unfinished: 0,
        });
        self.evict(ring);
        seq
    }

    /// Drops the oldest changes while more than `capacity` changes or more than
    /// [`MAX_TRACKED_DELIVERIES`] entries are kept, never the newest change.
    fn evict(&self, ring: &mut Ring) {
        while ring.changes.len() > ring.capacity || (ring.deliveries > MAX_TRACKED_DELIVERIES && ring.changes.len() > 1)
        {
            let Some(old) = ring.changes.pop_front() else { break };
            ring.first += 1;
            ring.deliveries -= old.dataplanes.len();
            self.unfinished.fetch_sub(old.unfinished, Ordering::SeqCst);
        }
    }

    /// Whether any delivery is still open (the dispatcher's fast path on every ACK).
    pub fn any_unfinished(&self) -> bool {
        self.unfinished.load(Ordering::SeqCst) > 0
    }

    /// Moves deliveries on; a final state is kept. Unknown (evicted) changes are ignored.
    pub fn update(&self, updates: &[Update]) {
        if updates.is_empty() {
            return;
        }
        let now = self.clock.now();
        let mut ring = lock(&self.ring);
        for u in updates {
            let Some(change) = ring.get_mut(u.seq) else { continue };
            let started = change.started;
            let Some(d) = change.dataplanes.get_mut(u.index) else { continue };
            if d.state.is_final() {
                continue;
            }
            d.state = u.state;
            d.detail = u.detail.clone();
            d.rejected = u.rejected;
            if u.state == Delivery::Acked {
                let took = now.saturating_duration_since(started);
                d.latency = Some(took);
                self.delivery.observe(took.as_secs_f64());
            }
            if u.state.is_final() {
                change.unfinished = change.unfinished.saturating_sub(1);
                self.unfinished.fetch_sub(1, Ordering::SeqCst);
            }
        }
    }

    pub fn get(&self, seq: u64) -> Option<Change> {
        lock(&self.ring).get(seq).filter(|c| !c.withdrawn).cloned()
    }

    /// The changes kept, newest first, that `keep` accepts.
    pub fn list(&self, keep: impl Fn(&Change) -> bool) -> Vec<Change> {
        lock(&self.ring).changes.iter().rev().filter(|c| !c.withdrawn && keep(c)).cloned().collect()
    }

    /// Changes not fully delivered yet (awaiting their event, or with open deliveries).
    pub fn undelivered(&self) -> usize {
        lock(&self.ring).changes.iter().filter(|c| !c.withdrawn && !c.complete()).count()
    }

    pub fn capacity(&self) -> usize {
        lock(&self.ring).capacity
    }

    pub fn delivery_histogram(&self) -> prometheus::Histogram {
        self.delivery.clone()
    }
}

/// A delivery moving on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Update {
    pub seq: u64,
    pub index: usize,
    pub state: Delivery,
    pub detail: Option<String>,
    pub rejected: Option<ResourceKind>,
}

/// One change waiting on one dataplane.
#[derive(Clone, Debug)]
struct Watch {
    seq: u64,
    index: usize,
    /// The dataplane's job count when the watch was added: only a later job saw the change.
    after_job: u64,
    /// A job that saw the change has run: `Watches::targets` apply.
    armed: bool,
    /// Something was sent since the watch was armed.
    sent: bool,
    /// `Sent` was reported already.
    reported_sent: bool,
}

/// The open deliveries of one dataplane, kept on its reconciler entry.
#[derive(Debug, Default)]
pub struct Watches {
    list: Vec<Watch>,
    /// Per type, the version the latest job generated for the stream: what Envoy must ACK.
    /// Shared by every armed watch, as every later snapshot includes the earlier changes.
    targets: [Option<String>; ResourceKind::COUNT],
}

impl Watches {
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn add(&mut self, seq: u64, index: usize, after_job: u64) {
        self.list.push(Watch { seq, index, after_job, armed: false, sent: false, reported_sent: false });
    }

    /// After job number `job` flushed the stream: it saw every change watched before it
    /// started; `targets` are its versions per type, `sent` whether it sent anything.
    pub fn arm(&mut self, job: u64, targets: [Option<String>; ResourceKind::COUNT], sent: bool) {
        let mut any = false;
        for w in self.list.iter_mut().filter(|w| w.after_job < job) {
            w.armed = true;
            w.sent |= sent;
            any = true;
        }
        if any {
            self.targets = targets;
        }
    }

    /// Where the armed watches stand against `state` (the stream's answers); removes the
    /// settled ones and returns what changed.
    pub fn settle(&mut self, state: &StreamState) -> Vec<Update> {
        if !self.list.iter().any(|w| w.armed) {
            return Vec::new();
        }
        let mut verdict: Option<(Delivery, Option<String>, Option<ResourceKind>)> = None;
        let mut open = false;
        for kind in ResourceKind::ALL {
            let Some(target) = &self.targets[kind.index()] else { continue };
            match state.answer(kind, target) {
                Answer::Acked => {}
                Answer::Nacked(detail) => {
                    verdict = Some((Delivery::Nacked, Some(detail.to_string()), Some(kind)));
                    break;
                }
                Answer::Open => open = true,
            }
        }
        let mut out = Vec::new();
        self.list.retain_mut(|w| {
            if !w.armed {
                return true;
            }
            let (d, detail, rejected) = match &verdict {
                Some(v) => v.clone(),
                None if open => {
                    if w.sent && !w.reported_sent {
                        w.reported_sent = true;
                        out.push(Update {
                            seq: w.seq,
                            index: w.index,
                            state: Delivery::Sent,
                            detail: None,
                            rejected: None,
                        });
                    }
                    return true;
                }
                None if w.sent => (Delivery::Acked, None, None),
                None => (Delivery::UpToDate, None, None),
            };
            out.push(Update { seq: w.seq, index: w.index, state: d, detail, rejected });
            false
        });
        out
    }

    /// The dataplane's last stream closed: every open delivery ends here.
    pub fn disconnected(&mut self) -> Vec<Update> {
        self.list
            .drain(..)
            .map(|w| Update {
                seq: w.seq,
                index: w.index,
                state: Delivery::NotConnected,
                detail: Some("disconnected before answering".to_string()),
                rejected: None,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::ResourceType;
    use crate::xds::stream::RequestView;

    fn log(capacity: usize) -> (ChangeLog, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::starting_now());
        (ChangeLog::new(capacity, clock.clone()), clock)
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(ResourceType::MeshTimeout, "default", name)
    }

    #[test]
    fn ids_round_trip_and_name_only_this_run() {
        let (l, _) = log(4);
        let seq = l.announce(&key("a"), Operation::Create);
        assert_eq!(l.parse_id(&l.id(seq)), Some(seq));
        let (other, _) = log(4);
        assert_eq!(other.parse_id(&l.id(seq)).filter(|_| other.boot != l.boot), None);
        assert_eq!(l.parse_id("garbage"), None);
        assert_eq!(l.parse_id("zz-1"), None);
    }

    #[test]
    fn announcements_are_claimed_in_order_and_withdrawn_ones_vanish() {
        let (l, _) = log(8);
        let a = l.announce(&key("a"), Operation::Create);
        let b = l.announce(&key("a"), Operation::Update);
        let failed = l.announce(&key("b"), Operation::Update);
        l.withdraw(failed);
        assert!(l.get(failed).is_none());
        assert_eq!(l.claim(&key("b")), None);
        assert_eq!(l.claim(&key("a")), Some(a));
        assert_eq!(l.claim(&key("a")), Some(b));
        assert_eq!(l.claim(&key("a")), None);
        assert_eq!(l.announced.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_change_that_affects_nothing_is_complete_with_zero_dataplanes() {
        let (l, _) = log(8);
        let seq = l.announce(&key("noop"), Operation::Update);
        assert!(!l.get(seq).unwrap().complete(), "not complete before its event");
        assert_eq!(l.undelivered(), 1);
        let (s, watch) = l.observe(l.claim(&key("noop")), &key("noop"), Operation::Update, vec![]).unwrap();
        assert_eq!((s, watch.len()), (seq, 0));
        let c = l.get(seq).unwrap();
        assert!(c.complete() && c.dataplanes.is_empty());
        assert_eq!(l.undelivered(), 0);
        assert!(l.observe(None, &key("x"), Operation::Update, vec![]).is_none(), "unannounced no-ops are not kept");
    }

    #[test]
    fn the_ring_keeps_at_most_max_tracked_deliveries_entries_but_always_the_newest_change() {
        let (l, _) = log(1024);
        let half = MAX_TRACKED_DELIVERIES / 2;
        let many = |prefix: &str, n: usize, connected: bool| -> Vec<(String, bool)> {
            (0..n).map(|i| (format!("{prefix}-{i}"), connected)).collect()
        };
        let first = l.observe(None, &key("a"), Operation::Update, many("a", half, true)).unwrap().0;
        let second = l.observe(None, &key("b"), Operation::Update, many("b", half, true)).unwrap().0;
        assert!(l.get(first).is_some() && l.get(second).is_some(), "exactly at the bound: both kept");
        assert_eq!(l.unfinished.load(Ordering::SeqCst), 2 * half);
        let third = l.observe(None, &key("c"), Operation::Update, many("c", 10, true)).unwrap().0;
        assert!(l.get(first).is_none(), "the oldest change goes once the entries exceed the bound");
        assert!(l.get(second).is_some() && l.get(third).is_some());
        assert_eq!(l.unfinished.load(Ordering::SeqCst), half + 10, "its open deliveries are forgotten with it");
        let huge = l.announce(&key("d"), Operation::Update);
        l.observe(l.claim(&key("d")), &key("d"), Operation::Update, many("d", MAX_TRACKED_DELIVERIES + 1, false));
        let kept = l.get(huge).expect("the newest change is kept whatever its size");
        assert_eq!(kept.dataplanes.len(), MAX_TRACKED_DELIVERIES + 1);
        assert!(l.get(second).is_none() && l.get(third).is_none());
        assert_eq!(kept.dataplanes[0].detail(), Some(NOT_CONNECTED), "not-connected entries share one text");
        assert!(kept.dataplanes[0].detail.is_none());
        assert_eq!(l.unfinished.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn the_ring_is_bounded_and_forgets_open_deliveries_it_evicts() {
        let (l, _) = log(2);
        let first = l.announce(&key("a"), Operation::Create);
        l.observe(l.claim(&key("a")), &key("a"), Operation::Create, vec![("dp-1".into(), true)]);
        assert!(l.any_unfinished());
        l.announce(&key("b"), Operation::Create);
        l.announce(&key("c"), Operation::Create);
        assert!(l.get(first).is_none());
        assert!(!l.any_unfinished(), "the evicted change's delivery no longer counts");
        assert_eq!(l.list(|_| true).len(), 2);
        l.update(&[Update { seq: first, index: 0, state: Delivery::Acked, detail: None, rejected: None }]);
    }

    #[test]
    fn latency_quantiles_use_nearest_rank() {
        let (l, clock) = log(4);
        let seq = l.announce(&key("a"), Operation::Update);
        let dps = (1..=4).map(|i| (format!("dp-{i}"), true)).collect();
        l.observe(l.claim(&key("a")), &key("a"), Operation::Update, dps);
        for i in 0..4 {
            clock.advance(Duration::from_millis(10));
            l.update(&[Update { seq, index: i, state: Delivery::Acked, detail: None, rejected: None }]);
        }
        let c = l.get(seq).unwrap();
        assert_eq!(c.latency_quantile(0.5), Some(Duration::from_millis(20)));
        assert_eq!(c.latency_quantile(0.99), Some(Duration::from_millis(40)));
        assert_eq!(c.count(Delivery::Acked), 4);
        assert!(c.complete());
    }

    fn request(kind: ResourceKind, nonce: &str, error: Option<&str>) -> RequestView {
        RequestView {
            type_url: kind.type_url().to_string(),
            response_nonce: nonce.to_string(),
            error: error.map(str::to_string),
            ..Default::default()
        }
    }

    fn targets(cds: &str, lds: &str) -> [Option<String>; ResourceKind::COUNT] {
        let mut t: [Option<String>; ResourceKind::COUNT] = Default::default();
        t[ResourceKind::Cluster.index()] = Some(cds.into());
        t[ResourceKind::Listener.index()] = Some(lds.into());
        t
    }

    #[test]
    fn watches_settle_on_acks_and_nacks_of_the_versions_a_later_job_generated() {
        let now = Instant::now();
        let mut s = StreamState::new(Duration::from_secs(1));
        s.on_request(&request(ResourceKind::Cluster, "", None), now);
        s.on_request(&request(ResourceKind::Listener, "", None), now);
        let mut w = Watches::default();
        w.add(7, 0, 3);
        w.arm(3, targets("c1", "l1"), true);
        assert!(w.settle(&s).is_empty(), "job 3 started before the change: not armed");
        w.arm(4, targets("c1", "l1"), true);
        let sent = w.settle(&s);
        assert_eq!(sent.iter().map(|u| u.state).collect::<Vec<_>>(), [Delivery::Sent]);
        let cds = s.record_sent_at(ResourceKind::Cluster, "c1", now);
        s.on_request(&request(ResourceKind::Cluster, &cds, None), now);
        assert!(w.settle(&s).is_empty(), "listeners not answered yet");
        let lds = s.record_sent_at(ResourceKind::Listener, "l1", now);
        s.on_request(&request(ResourceKind::Listener, &lds, Some("cannot bind")), now);
        let done = w.settle(&s);
        assert_eq!(done.len(), 1);
        assert_eq!(done[0].state, Delivery::Nacked);
        assert_eq!(done[0].detail.as_deref(), Some("cannot bind"));
        assert_eq!(done[0].rejected, Some(ResourceKind::Listener));
        assert!(w.is_empty());
    }

    #[test]
    fn a_watch_with_nothing_to_send_is_up_to_date() {
        let now = Instant::now();
        let mut s = StreamState::new(Duration::from_secs(1));
        s.on_request(&request(ResourceKind::Cluster, "", None), now);
        let n = s.record_sent_at(ResourceKind::Cluster, "c1", now);
        s.on_request(&request(ResourceKind::Cluster, &n, None), now);
        let mut w = Watches::default();
        w.add(1, 2, 0);
        let mut t: [Option<String>; ResourceKind::COUNT] = Default::default();
        t[ResourceKind::Cluster.index()] = Some("c1".into());
        w.arm(1, t, false);
        let done = w.settle(&s);
        assert_eq!(done, [Update { seq: 1, index: 2, state: Delivery::UpToDate, detail: None, rejected: None }]);
        w.add(2, 0, 1);
        assert_eq!(w.disconnected()[0].state, Delivery::NotConnected);
    }
}
