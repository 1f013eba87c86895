//! The reconciler: decides which dataplanes are due and hands them to the worker pool.
//!
//! Threads and what flows between them:
//!
//! ```text
//! gRPC streams ──Event──►  dispatcher (xds-dispatch) ──job──► workers (xds-worker-N)
//! store events ─────────►   │ timer wheel: each             │ mesh context (shared)
//!                           │ dataplane due every           │ input hash == last? skip
//!                           │ refresh interval              │ else generate snapshot
//!                           ▼                               ▼
//!                       status writer (xds-status) ◄── per-stream counters; responses
//!                       DataplaneInsight upserts         go straight onto the stream
//! ```
//!
//! - A Dataplane change updates the mesh context incrementally (only the services whose
//!   endpoints moved are re-encoded) and makes exactly the dataplanes it can affect due at
//!   once: the changed one and the consumers of those services. A policy change replaces
//!   that policy in the context and makes due the connected dataplanes it can reach (see
//!   `policies::core::reach`). A Mesh change rebuilds the context and makes the whole mesh
//!   due. Config reaches Envoy in milliseconds.
//! - The refresh interval is the safety net, and costs what changed, not what is connected:
//!   once per interval a sweep runs the jobs that are owed — dataplanes whose last job
//!   failed (store down), changes held back while event push is off, and the dataplanes of a
//!   mesh whose context was rebuilt since the last sweep and that have not run against it.
//!   A mesh that did not move is one integer compare; an idle fleet of any size is free.
//! - A dataplane's *input hash* covers its own resource's content, its mesh's policies
//!   (content, not versions, which restart on re-create) and the services its clusters read;
//!   when it is unchanged a job is a hash compare and nothing more.
//! - A dataplane is never worked on by two workers at once: a trigger that arrives while its
//!   job runs re-queues it once afterwards.
//! - Responses are only sent for types whose content changed and that Envoy is watching
//!   (see [`crate::xds::stream`]).

pub mod changes;
pub mod metrics;
pub mod reader;
pub mod status;
pub mod timer;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use crate::clock::Clock;
use crate::config::Config;
use crate::envoy::discovery::DiscoveryRequest;
use crate::logsafe::untrusted;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::ResourceReader;
use crate::store::{ChangeEvent, Operation, SharedStore};
use crate::threads;
use crate::xds::context::MeshContext;
use crate::xds::generate::{self, GenerateError, Generator};
use crate::xds::resource_kind::ResourceKind;
use crate::xds::server::{ResponseSender, StreamHub};
use crate::xds::snapshot::Snapshot;
use crate::xds::stream::{RequestOutcome, RequestView, SendDecision, StreamState};
use crate::xds::wire::{EncodedResponse, ResourceSet};

use changes::{ChangeLog, Watches};
pub use metrics::Metrics;
use reader::CachedReader;
use status::{StatusEvent, StatusWriter};
use timer::TimerWheel;

/// The timer wheel (deferred sends after a NACK) ticks this finely: far below the NACK
/// back-off, coarse enough that an idle wheel costs nothing.
const TIMER_TICK: Duration = Duration::from_millis(10);
/// 1024 slots of 10 ms: one rotation covers ~10 s, the common range of back-offs.
const TIMER_SLOTS: usize = 1024;
/// How long the dispatcher sleeps at most when nothing is scheduled.
const IDLE_WAIT: Duration = Duration::from_secs(1);
/// While deferred sends are scheduled the dispatcher wakes at most this often for them:
/// cheaper than asking the wheel for its next deadline, which scans slots.
const TIMER_BATCH: Duration = Duration::from_millis(50);

/// The reconciler's live settings (all reloadable).
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub refresh_interval: Duration,
    pub nack_backoff: Duration,
    pub status_flush_interval: Duration,
    pub cache_ttl: Duration,
    pub subscription_limit: usize,
    /// Push on store events; off = the refresh interval alone, as Kuma does.
    pub event_push: bool,
    /// Changes kept for delivery tracking (read at start only).
    pub change_history: usize,
    /// `metrics.dataplane.idleTimeout`: a live stream's subscription bumps its generation
    /// every half of it, so the leader's finalizer can tell it from a dead instance's.
    pub idle_timeout: Duration,
    /// How long a closed stream still shows connected in its insight (zero: written at
    /// once). On a store shared by several instances it is `dataplaneDeregistrationDelay`,
    /// so a dataplane moving to another instance never shows offline meanwhile.
    pub disconnect_delay: Duration,
}

impl Settings {
    pub fn from_config(c: &Config) -> Settings {
        let shared_store = c.store.r#type == crate::config::StoreType::Postgres;
        Settings {
            refresh_interval: c.xds_server.dataplane_configuration_refresh_interval.0,
            nack_backoff: c.xds_server.nack_backoff.0,
            status_flush_interval: c.xds_server.dataplane_status_flush_interval.0,
            cache_ttl: c.store.cache.expiration_time.0,
            subscription_limit: c.metrics.dataplane.subscription_limit as usize,
            event_push: c.xds_server.event_push,
            change_history: c.xds_server.change_history_size as usize,
            idle_timeout: c.metrics.dataplane.idle_timeout.0,
            disconnect_delay: if shared_store { c.xds_server.dataplane_deregistration_delay.0 } else { Duration::ZERO },
        }
    }
}

enum Event {
    Open {
        id: u64,
        peer: String,
        tx: ResponseSender,
    },
    Request {
        id: u64,
        req: Box<DiscoveryRequest>,
    },
    Close {
        id: u64,
    },
    RetryAt {
        dp: ResourceKey,
        at: Instant,
    },
    /// A dataplane's workload certificate was (re)issued: its job runs again.
    Due(ResourceKey),
    Settings(Settings),
    Stop,
}

enum Job {
    Reconcile(ResourceKey),
    Stop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JobState {
    Idle,
    Queued,
    Running,
    /// Triggered again while running: run once more afterwards.
    RunningDirty,
}

/// One ADS stream.
pub struct StreamHandle {
    pub id: u64,
    pub peer: String,
    /// Random id of this stream's DiscoverySubscription in the insight.
    pub subscription_id: String,
    pub connect_time: SystemTime,
    pub dataplane: Mutex<Option<ResourceKey>>,
    pub state: Mutex<StreamState>,
    /// Bumped on every request and response, so the status writer can tell without a lock
    /// whether anything worth writing happened.
    pub activity: std::sync::atomic::AtomicU64,
    tx: ResponseSender,
}

#[derive(Default)]
struct GenState {
    /// [`input_hash`] of the last generation: equal means the config is unchanged.
    config_hash: Option<u64>,
    /// [`Issued::id`](crate::mtls::identities::Issued) of the certificate in `snapshot`;
    /// another one for unchanged config swaps only the secrets.
    cert_id: Option<u64>,
    snapshot: Option<Arc<Snapshot>>,
    waiting_logged: bool,
}

struct DpEntry {
    key: ResourceKey,
    /// [`MeshContext::build`] of this dataplane's last successful job.
    seen_build: std::sync::atomic::AtomicU64,
    streams: Mutex<Vec<Arc<StreamHandle>>>,
    gen: Mutex<GenState>,
    job: Mutex<JobState>,
    /// Jobs started so far: a change watches for a job numbered above the count it saw.
    jobs_started: std::sync::atomic::AtomicU64,
    /// Changes being delivered to this dataplane (see [`changes`]). Locked before a
    /// stream's state, never after.
    deliveries: Mutex<Watches>,
}

struct MeshSlot {
    ctx: Option<Arc<MeshContext>>,
    /// Bumped by every change that needs a full rebuild (Mesh, policies, resync); a context
    /// is current only if it was built after the latest bump. Dataplane changes are applied
    /// to the context in place instead.
    changes: u64,
    built_from: u64,
    /// The next rebuild must read every Dataplane again (a resync, or a Dataplane change
    /// that found no current context to apply to); otherwise a rebuild after a Mesh or
    /// policy change re-reads only those and keeps the dataplanes the context holds.
    full_rebuild: bool,
    /// `(changes, build)` when the refresh sweep last visited this mesh's dataplanes; equal
    /// to the current pair means nothing is owed here.
    swept: Option<(u64, u64)>,
}

impl MeshSlot {
    /// The current context, unless a change is waiting for a rebuild.
    fn current(&self) -> Option<&Arc<MeshContext>> {
        self.ctx.as_ref().filter(|_| self.built_from == self.changes)
    }

    fn sweep_marker(&self) -> (u64, u64) {
        (self.changes, self.ctx.as_ref().map_or(0, |c| c.build))
    }
}

struct Shared {
    reader: CachedReader,
    settings: RwLock<Settings>,
    instance_id: String,
    metrics: Arc<Metrics>,
    clock: Arc<dyn Clock>,
    chain: Vec<Box<dyn Generator>>,
    /// Workload certificates of the connected dataplanes (mesh mTLS).
    identities: Arc<crate::mtls::identities::Identities>,
    dataplanes: Mutex<BTreeMap<ResourceKey, Arc<DpEntry>>>,
    meshes: Mutex<HashMap<String, MeshSlot>>,
    /// Dataplanes whose last job could not build their config (store unreachable): the next
    /// refresh sweep tries them again.
    failed: Mutex<HashSet<ResourceKey>>,
    /// One mesh-context build at a time: concurrent workers of a mesh wait for the build
    /// instead of repeating it.
    mesh_build: Mutex<()>,
    inbox: Sender<Event>,
    jobs: Sender<Job>,
    status: Sender<StatusEvent>,
    changes: Arc<ChangeLog>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent before anything can panic, so a
    // poisoned lock is still safe to use; the panic itself was logged by its worker.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The running reconciler; also the [`StreamHub`] the xDS server feeds.
pub struct Reconciler {
    shared: Arc<Shared>,
    dispatcher: Option<JoinHandle<()>>,
    workers: Vec<JoinHandle<()>>,
    status: Option<StatusWriter>,
    next_stream_id: std::sync::atomic::AtomicU64,
}

impl Reconciler {
    pub fn start(
        store: SharedStore,
        settings: Settings,
        instance_id: String,
        workers: usize,
        clock: Arc<dyn Clock>,
    ) -> Reconciler {
        let (inbox_tx, inbox_rx) = crossbeam_channel::unbounded();
        // Unbounded, yet bounded in practice: a dataplane is queued at most once at a time.
        let (jobs_tx, jobs_rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Metrics::default());
        let identities = crate::mtls::identities::Identities::start(store.clone(), clock.clone());
        {
            let inbox = inbox_tx.clone();
            identities.set_notify(move |dp| {
                let _ = inbox.send(Event::Due(dp.clone()));
            });
        }
        let status = StatusWriter::start(
            store.clone(),
            instance_id.clone(),
            settings.clone(),
            metrics.clone(),
            identities.clone(),
        );
        let changes = Arc::new(ChangeLog::new(settings.change_history, clock.clone()));
        let shared = Arc::new(Shared {
            reader: CachedReader::new(store.clone(), settings.cache_ttl, clock.clone()),
            settings: RwLock::new(settings),
            instance_id,
            metrics,
            clock,
            chain: generate::default_chain(),
            identities,
            dataplanes: Mutex::new(BTreeMap::new()),
            meshes: Mutex::new(HashMap::new()),
            failed: Mutex::new(HashSet::new()),
            mesh_build: Mutex::new(()),
            inbox: inbox_tx,
            jobs: jobs_tx,
            status: status.sender(),
            changes,
        });
        let store_events = store.subscribe();
        let dispatcher = {
            let shared = shared.clone();
            threads::spawn(threads::XDS_DISPATCH.to_string(), move || {
                Dispatcher::new(shared).run(inbox_rx, store_events)
            })
        };
        let workers = (0..workers.max(1))
            .map(|i| {
                let (shared, jobs) = (shared.clone(), jobs_rx.clone());
                threads::spawn(format!("{}-{i}", threads::XDS_WORKER), move || worker_loop(&shared, &jobs))
            })
            .collect();
        Reconciler {
            shared,
            dispatcher: Some(dispatcher),
            workers,
            status: Some(status),
            next_stream_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    pub fn metrics(&self) -> Arc<Metrics> {
        self.shared.metrics.clone()
    }

    /// The changes this instance tracks (the API's `/changes`).
    pub fn changes(&self) -> Arc<ChangeLog> {
        self.shared.changes.clone()
    }

    pub fn cache_stats(&self) -> crate::cache::CacheStats {
        self.shared.reader.stats()
    }

    /// Dataplanes waiting for a worker.
    pub fn queue_depth(&self) -> usize {
        self.shared.jobs.len()
    }

    pub fn workers(&self) -> usize {
        self.workers.len()
    }

    /// Applies reloaded settings without touching any stream.
    pub fn update_settings(&self, settings: Settings) {
        let _ = self.shared.inbox.send(Event::Settings(settings));
    }

    /// Stops the dispatcher after the events already queued (stream closes included), then
    /// the workers, then flushes pending status.
    pub fn stop(mut self) {
        let _ = self.shared.inbox.send(Event::Stop);
        if let Some(d) = self.dispatcher.take() {
            let _ = d.join();
        }
        for _ in &self.workers {
            let _ = self.shared.jobs.send(Job::Stop);
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        if let Some(s) = self.status.take() {
            s.stop();
        }
        self.shared.identities.stop();
    }
}

impl StreamHub for Reconciler {
    fn open(&self, peer: String, tx: ResponseSender) -> u64 {
        let id = self.next_stream_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _ = self.shared.inbox.send(Event::Open { id, peer, tx });
        id
    }

    fn request(&self, stream: u64, req: DiscoveryRequest) {
        let _ = self.shared.inbox.send(Event::Request { id: stream, req: Box::new(req) });
    }

    fn close(&self, stream: u64) {
        let _ = self.shared.inbox.send(Event::Close { id: stream });
    }
}

impl crate::xds::inspect::XdsInspector for Reconciler {
    /// Copies out of the dataplane's entry and its latest stream, one lock at a time (the
    /// order the dispatcher takes them), so an inspect call never blocks a worker for long.
    fn dataplane_xds(&self, dataplane: &ResourceKey) -> Option<crate::xds::inspect::DataplaneXds> {
        let entry = lock(&self.shared.dataplanes).get(dataplane).cloned()?;
        let stream = lock(&entry.streams).last().cloned()?;
        let snapshot = lock(&entry.gen).snapshot.clone();
        let state = lock(&stream.state);
        let types = ResourceKind::ALL
            .into_iter()
            .map(|kind| crate::xds::inspect::TypeXds {
                kind,
                set: snapshot.as_ref().map(|s| requested(s, &state, kind).into_owned()).unwrap_or_default(),
                status: state.status(kind),
            })
            .collect();
        Some(crate::xds::inspect::DataplaneXds {
            stream_id: stream.id,
            peer: stream.peer.clone(),
            connect_time: stream.connect_time,
            snapshot,
            types,
        })
    }

    /// Copies the entries out first, then one stream at a time, as `dataplane_xds` does.
    fn mesh_streams(&self, mesh: &str) -> Vec<crate::xds::inspect::StreamSummary> {
        let entries: Vec<Arc<DpEntry>> = {
            let dps = lock(&self.shared.dataplanes);
            mesh_range(&dps, mesh).map(|(_, e)| e.clone()).collect()
        };
        entries.iter().filter_map(|e| Self::stream_summary(e)).collect()
    }
}

impl Reconciler {
    fn stream_summary(entry: &DpEntry) -> Option<crate::xds::inspect::StreamSummary> {
        let stream = lock(&entry.streams).last().cloned()?;
        let state = lock(&stream.state);
        Some(crate::xds::inspect::StreamSummary {
            name: entry.key.name.clone(),
            stream_id: stream.id,
            peer: stream.peer.clone(),
            connect_time: stream.connect_time,
            types: ResourceKind::ALL.into_iter().map(|k| (k, state.status(k))).collect(),
        })
    }
}

/// Splits Kuma's node id `<mesh>.<name>`. Both parts must be valid resource names (no
/// dots, at most 253 characters): anything else can never name a stored Dataplane, and
/// refusing it here keeps client-chosen text of any length out of every later log line.
pub fn parse_node_id(id: &str) -> Option<ResourceKey> {
    let (mesh, name) = id.split_once('.')?;
    if crate::model::validate_name("mesh", mesh).is_err() || crate::model::validate_name("name", name).is_err() {
        return None;
    }
    Some(ResourceKey::new(ResourceType::Dataplane, mesh, name))
}

/// Moves the fields the state machine needs out of the request (no copies on the
/// dispatcher thread, which sees every request of every stream).
fn request_view(req: &mut DiscoveryRequest) -> RequestView {
    RequestView {
        type_url: std::mem::take(&mut req.type_url),
        version_info: std::mem::take(&mut req.version_info),
        response_nonce: std::mem::take(&mut req.response_nonce),
        resource_names: std::mem::take(&mut req.resource_names),
        error: req.error_detail.as_ref().map(|s| format!("{} (code {})", s.message, s.code)),
    }
}

struct Dispatcher {
    shared: Arc<Shared>,
    streams: HashMap<u64, Arc<StreamHandle>>,
    /// Deferred sends (NACK back-off), by dataplane.
    wheel: TimerWheel<ResourceKey>,
    /// Changes held back while event push is off: the next sweep runs their jobs.
    owed: HashSet<ResourceKey>,
    next_sweep: Instant,
    /// The policy types some plugin reads; changes of other types are stored only.
    enforced: HashSet<ResourceType>,
}

/// One store event on its way through the dispatcher, for the change log.
struct Track<'a> {
    /// The API write it answers.
    claimed: Option<u64>,
    key: &'a ResourceKey,
    op: Operation,
    /// Recorded already (or not to be recorded).
    done: bool,
}

impl Dispatcher {
    fn new(shared: Arc<Shared>) -> Self {
        let start = shared.clock.now();
        let next_sweep = start + shared.settings.read().unwrap_or_else(|p| p.into_inner()).refresh_interval;
        Dispatcher {
            shared,
            streams: HashMap::new(),
            wheel: TimerWheel::new(TIMER_TICK, TIMER_SLOTS, start),
            owed: HashSet::new(),
            next_sweep,
            enforced: crate::policies::enforced_types().into_iter().collect(),
        }
    }

    fn run(mut self, inbox: Receiver<Event>, store_events: Receiver<ChangeEvent>) {
        loop {
            let now = self.shared.clock.now();
            for key in self.wheel.pop_due(now) {
                self.dispatch(&key);
            }
            if now >= self.next_sweep {
                self.sweep();
                self.next_sweep = now + self.settings().refresh_interval;
            }
            let until_sweep = self.next_sweep.saturating_duration_since(now);
            let wait = until_sweep.min(if self.wheel.is_empty() { IDLE_WAIT } else { TIMER_BATCH });
            select! {
                recv(inbox) -> ev => match ev {
                    Ok(Event::Stop) | Err(_) => break,
                    Ok(ev) => self.handle(ev),
                },
                recv(store_events) -> ev => match ev {
                    Ok(ev) => self.on_store_event(ev),
                    Err(_) => log::error!("xds: the store's event stream ended; only the refresh interval drives updates now"),
                },
                default(wait) => {}
            }
        }
        log::debug!("xds: dispatcher stopped");
    }

    fn settings(&self) -> Settings {
        self.shared.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The refresh interval's sweep: runs the jobs that are owed (see the module docs).
    /// Visits a mesh's dataplanes only when its context was rebuilt since the last sweep.
    fn sweep(&mut self) {
        let mut jobs: Vec<ResourceKey> = self.owed.drain().collect();
        jobs.extend(lock(&self.shared.failed).drain());
        let mut checked = 0;
        {
            let dps = lock(&self.shared.dataplanes);
            let mut meshes = lock(&self.shared.meshes);
            for (mesh, slot) in meshes.iter_mut() {
                let marker = slot.sweep_marker();
                if slot.swept == Some(marker) {
                    continue;
                }
                slot.swept = Some(marker);
                let build = slot.current().map(|c| c.build);
                for (key, entry) in mesh_range(&dps, mesh) {
                    checked += 1;
                    if build != Some(entry.seen_build.load(std::sync::atomic::Ordering::Acquire)) {
                        jobs.push(key.clone());
                    }
                }
            }
        }
        let m = &self.shared.metrics;
        Metrics::inc(&m.interval_sweeps);
        m.interval_checked.fetch_add(checked, std::sync::atomic::Ordering::Relaxed);
        for key in jobs {
            self.dispatch(&key);
        }
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Open { id, peer, tx } => {
                let handle = Arc::new(StreamHandle {
                    id,
                    peer,
                    subscription_id: format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
                    connect_time: SystemTime::now(),
                    dataplane: Mutex::new(None),
                    state: Mutex::new(StreamState::new(self.settings().nack_backoff)),
                    activity: std::sync::atomic::AtomicU64::new(0),
                    tx,
                });
                log::debug!("xds: stream {id} opened from {}", handle.peer);
                self.streams.insert(id, handle);
                Metrics::inc(&self.shared.metrics.streams_active);
            }
            Event::Request { id, req } => self.on_request(id, req),
            Event::Close { id } => self.on_close(id),
            Event::RetryAt { dp, at } => self.wheel.schedule_earliest(dp, at),
            Event::Due(dp) => self.dispatch(&dp),
            Event::Settings(s) => {
                self.shared.reader.set_ttl(s.cache_ttl);
                // A shorter interval takes effect at once, not after the old one ran out.
                self.next_sweep = self.next_sweep.min(self.shared.clock.now() + s.refresh_interval);
                for h in self.streams.values() {
                    lock(&h.state).set_nack_backoff(s.nack_backoff);
                }
                let _ = self.shared.status.send(StatusEvent::Settings(s.clone()));
                *self.shared.settings.write().unwrap_or_else(|p| p.into_inner()) = s;
            }
            Event::Stop => {}
        }
    }

    fn on_request(&mut self, id: u64, mut req: Box<DiscoveryRequest>) {
        let Some(handle) = self.streams.get(&id).cloned() else {
            log::debug!("xds: request on unknown stream {id}");
            return;
        };
        let bound = lock(&handle.dataplane).clone();
        let node_id = req.node.as_ref().map(|n| n.id.as_str()).unwrap_or("");
        let dp = match bound {
            Some(dp) => {
                if !node_id.is_empty() && parse_node_id(node_id).as_ref() != Some(&dp) {
                    log::warn!(
                        "xds: stream {id} ({}): node id changed to {} mid-stream; ignoring the request",
                        handle.peer,
                        untrusted(node_id)
                    );
                    Metrics::inc(&self.shared.metrics.requests_ignored);
                    return;
                }
                dp
            }
            None => {
                if node_id.is_empty() {
                    log::warn!(
                        "xds: stream {id} ({}): request without a node id; Envoy must send node.id \"<mesh>.<name>\" first",
                        handle.peer
                    );
                    Metrics::inc(&self.shared.metrics.requests_ignored);
                    return;
                }
                let Some(dp) = parse_node_id(node_id) else {
                    log::warn!(
                        "xds: stream {id} ({}): node id {} is not \"<mesh>.<dataplane name>\"; ignoring the stream",
                        handle.peer,
                        untrusted(node_id)
                    );
                    Metrics::inc(&self.shared.metrics.requests_ignored);
                    return;
                };
                self.bind(&handle, dp.clone());
                dp
            }
        };
        let view = request_view(&mut req);
        handle.activity.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let outcome = lock(&handle.state).on_request(&view, self.shared.clock.now());
        let m = &self.shared.metrics;
        match &outcome {
            RequestOutcome::Ack { kind, version, after } => {
                Metrics::inc(&m.acks[kind.index()]);
                m.delivery_ms.observe(after.as_secs_f64() * 1000.0);
                log::debug!("xds: {}.{} ACKed {kind} version {version}", dp.mesh, dp.name);
                if *kind == ResourceKind::Secret {
                    self.on_secrets_acked(&dp);
                }
            }
            RequestOutcome::Nack { kind, version, detail } => {
                Metrics::inc(&m.nacks[kind.index()]);
                log::warn!("xds: {}.{} rejected {kind} version {version}: {}", dp.mesh, dp.name, untrusted(detail));
            }
            RequestOutcome::Subscribed(kind) | RequestOutcome::Resubscribed(kind) => {
                log::debug!(
                    "xds: {}.{} requests {kind} {}",
                    dp.mesh,
                    dp.name,
                    untrusted(&format!("{:?}", view.resource_names))
                );
            }
            RequestOutcome::Ignored(reason) => {
                Metrics::inc(&m.requests_ignored);
                log::debug!("xds: {}.{} request ignored: {}", dp.mesh, dp.name, untrusted(&format!("{reason:?}")));
                return;
            }
        }
        if matches!(outcome, RequestOutcome::Ack { .. } | RequestOutcome::Nack { .. })
            && self.shared.changes.any_unfinished()
        {
            self.settle_deliveries(&dp, &handle);
        }
        if self.has_work(&dp, &handle) {
            self.dispatch(&dp);
        }
    }

    /// Moves the changes being delivered to `dp` on after Envoy answered on `handle`.
    fn settle_deliveries(&self, dp: &ResourceKey, handle: &StreamHandle) {
        let Some(entry) = lock(&self.shared.dataplanes).get(dp).cloned() else { return };
        let updates = {
            let mut watches = lock(&entry.deliveries);
            if watches.is_empty() {
                return;
            }
            let state = lock(&handle.state);
            watches.settle(&state)
        };
        self.shared.changes.update(&updates);
    }

    /// Whether a request leaves something to send on this stream: no snapshot yet, or a type
    /// whose current content Envoy lacks (e.g. listeners held back until clusters were ACKed).
    /// Most requests are ACKs of what was just sent and need no job at all.
    fn has_work(&self, dp: &ResourceKey, handle: &StreamHandle) -> bool {
        let Some(entry) = lock(&self.shared.dataplanes).get(dp).cloned() else { return false };
        let Some(snapshot) = lock(&entry.gen).snapshot.clone() else { return true };
        let state = lock(&handle.state);
        let now = self.shared.clock.now();
        ResourceKind::ALL.into_iter().any(|kind| {
            if !state.is_subscribed(kind) {
                return false;
            }
            let set = requested(&snapshot, &state, kind);
            !withheld(kind, &set) && state.decide(kind, set.version(), now) != SendDecision::Skip
        })
    }

    fn bind(&mut self, handle: &Arc<StreamHandle>, dp: ResourceKey) {
        *lock(&handle.dataplane) = Some(dp.clone());
        let entry = {
            let mut dps = lock(&self.shared.dataplanes);
            dps.entry(dp.clone())
                .or_insert_with(|| {
                    Arc::new(DpEntry {
                        key: dp.clone(),
                        seen_build: std::sync::atomic::AtomicU64::new(0),
                        streams: Mutex::new(Vec::new()),
                        gen: Mutex::new(GenState::default()),
                        job: Mutex::new(JobState::Idle),
                        jobs_started: std::sync::atomic::AtomicU64::new(0),
                        deliveries: Mutex::new(Watches::default()),
                    })
                })
                .clone()
        };
        lock(&entry.streams).push(handle.clone());
        log::info!("xds: dataplane {}.{} connected (stream {}, {})", dp.mesh, dp.name, handle.id, handle.peer);
        let _ = self.shared.status.send(StatusEvent::Connected(handle.clone()));
    }

    fn on_close(&mut self, id: u64) {
        let Some(handle) = self.streams.remove(&id) else { return };
        self.shared.metrics.streams_active.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        let Some(dp) = lock(&handle.dataplane).clone() else {
            log::debug!("xds: stream {id} closed before identifying itself");
            return;
        };
        let mut dps = lock(&self.shared.dataplanes);
        let mut gone = None;
        if let Some(entry) = dps.get(&dp).cloned() {
            let mut streams = lock(&entry.streams);
            streams.retain(|s| s.id != id);
            if streams.is_empty() {
                dps.remove(&dp);
                self.wheel.cancel(&dp);
                gone = Some(entry.clone());
                self.shared.identities.forget(&dp);
            }
        }
        drop(dps);
        if let Some(entry) = gone {
            let updates = lock(&entry.deliveries).disconnected();
            self.shared.changes.update(&updates);
        }
        log::info!("xds: dataplane {}.{} disconnected (stream {id})", dp.mesh, dp.name);
        let _ = self.shared.status.send(StatusEvent::Disconnected(handle, SystemTime::now()));
    }

    fn on_store_event(&mut self, ev: ChangeEvent) {
        let push = self.settings().event_push;
        match ev {
            ChangeEvent::Changed { key, op } => {
                self.shared.reader.invalidate(&key);
                let mut track = Track { claimed: self.shared.changes.claim(&key), key: &key, op, done: false };
                match key.rtype {
                    ResourceType::Dataplane => self.on_dataplane_change(&key, push, &mut track),
                    ResourceType::Mesh => self.mesh_changed(Some(&key.name), push, false, &mut track),
                    t if self.enforced.contains(&t) => self.on_policy_change(&key, push, &mut track),
                    // Status writes (ours) and types no plugin reads never change anybody's
                    // Envoy config.
                    _ => {}
                }
                // Nothing was made due: an API write says so (zero affected).
                let mesh = if key.rtype == ResourceType::Mesh { key.name.clone() } else { key.mesh.clone() };
                self.track(&mut track, &mesh, Vec::new());
            }
            ChangeEvent::Resync => {
                self.shared.reader.clear();
                let key = ResourceKey::new(ResourceType::Mesh, "", "");
                let mut untracked = Track { claimed: None, key: &key, op: Operation::Update, done: true };
                self.mesh_changed(None, push, true, &mut untracked);
                // Announced writes whose events may be among the lost ones: the resync made
                // every connected dataplane of their mesh due.
                for (seq, key) in self.shared.changes.claim_all() {
                    let mesh = if key.rtype == ResourceType::Mesh { key.name.clone() } else { key.mesh.clone() };
                    let connected: Vec<String> = {
                        let dps = lock(&self.shared.dataplanes);
                        mesh_range(&dps, &mesh).map(|(k, _)| k.name.clone()).collect()
                    };
                    let mut track = Track { claimed: Some(seq), key: &key, op: Operation::Update, done: false };
                    self.track(&mut track, &mesh, connected);
                }
            }
        }
    }

    /// Records what a store event made due in the change log (once per event, before the
    /// jobs are dispatched, so that their workers see the watches): `affected` are names in
    /// `mesh`. An API write keeps every name (those not connected here too); any other event
    /// only the connected ones, and only when there are some.
    fn track(&self, track: &mut Track<'_>, mesh: &str, affected: Vec<String>) {
        if track.done {
            return;
        }
        track.done = true;
        // Most store events are nobody's write and change nobody's config (status writes):
        // nothing to record, and no lock taken for them.
        if track.claimed.is_none() && affected.is_empty() {
            return;
        }
        let dps = lock(&self.shared.dataplanes);
        let key_of = |name: &str| ResourceKey::new(ResourceType::Dataplane, mesh, name);
        let mut with: Vec<(String, bool)> = affected
            .into_iter()
            .map(|name| {
                let connected = dps.contains_key(&key_of(&name));
                (name, connected)
            })
            .collect();
        if track.claimed.is_none() {
            with.retain(|(_, connected)| *connected);
        }
        let Some((seq, watch)) = self.shared.changes.observe(track.claimed, track.key, track.op, with) else { return };
        for (name, index) in watch {
            if let Some(entry) = dps.get(&key_of(&name)) {
                let after = entry.jobs_started.load(std::sync::atomic::Ordering::SeqCst);
                lock(&entry.deliveries).add(seq, index, after);
            }
        }
    }

    /// A Mesh or policy change (or a resync when `mesh` is None): the next job rebuilds the
    /// context, and every connected dataplane of the mesh is due.
    fn mesh_changed(&mut self, mesh: Option<&str>, push: bool, full: bool, track: &mut Track<'_>) {
        // An API write also names the dataplanes that are not connected here.
        let mut known: Vec<String> = Vec::new();
        let mut had_context = false;
        {
            let mut meshes = lock(&self.shared.meshes);
            for (name, slot) in meshes.iter_mut() {
                if mesh.is_none_or(|m| m == name) {
                    slot.changes += 1;
                    slot.full_rebuild |= full;
                    if track.claimed.is_some() {
                        if let Some(ctx) = &slot.ctx {
                            known.extend(ctx.dataplanes.keys().cloned());
                            had_context = true;
                        }
                    }
                }
            }
        }
        if let (Some(m), Some(_), false) = (mesh, track.claimed, had_context) {
            // No context here (nothing of the mesh connected to this instance): the store
            // names its dataplanes, or the change would claim zero affected. A user write.
            match self.shared.reader.list(ResourceType::Dataplane, Some(m)) {
                Ok(dps) => known.extend(dps.iter().map(|d| d.meta.name.clone())),
                Err(e) => log::warn!("xds: cannot list the dataplanes of mesh {m:?} to track its change ({e})"),
            }
        }
        if !push && track.done {
            return;
        }
        let affected: Vec<ResourceKey> = {
            let dps = lock(&self.shared.dataplanes);
            match mesh {
                Some(m) => mesh_range(&dps, m).map(|(k, _)| k.clone()).collect(),
                None => dps.keys().cloned().collect(),
            }
        };
        if let Some(m) = mesh {
            known.extend(affected.iter().map(|k| k.name.clone()));
            self.track(track, m, known);
        }
        if !push {
            return;
        }
        for key in affected {
            self.dispatch(&key);
        }
    }

    /// Applies a Dataplane change to its mesh's context and makes the dataplanes it can
    /// affect due.
    fn on_dataplane_change(&mut self, key: &ResourceKey, push: bool, track: &mut Track<'_>) {
        let _building = lock(&self.shared.mesh_build);
        let current = {
            let mut meshes = lock(&self.shared.meshes);
            let slot = meshes.get_mut(&key.mesh);
            let current = slot.as_ref().and_then(|s| s.current().cloned());
            if let (None, Some(slot)) = (&current, slot) {
                // The pending rebuild must see this change: it reads every Dataplane.
                slot.full_rebuild = true;
            }
            current
        };
        let Some(ctx) = current else {
            // No context yet (or one due for a rebuild, which makes the whole mesh due):
            // the next job builds it from the store.
            drop(_building);
            let own = if track.op == Operation::Delete { Vec::new() } else { vec![key.name.clone()] };
            let tracked = match track.claimed {
                Some(_) => self.dataplane_reach_without_context(key, track.op).unwrap_or(own),
                None => own,
            };
            self.track(track, &key.mesh, tracked);
            self.push_or_owe(key.clone(), push);
            return;
        };
        let new = match self.shared.reader.get(key) {
            Ok(r) => Some(r),
            Err(crate::store::StoreError::NotFound(_)) => None,
            Err(e) => {
                log::warn!("xds: cannot read {key} after a change ({e}); rebuilding mesh {:?}", key.mesh);
                drop(_building);
                self.mesh_changed(Some(&key.mesh), push, true, track);
                return;
            }
        };
        let deleted = new.is_none();
        let Some((next, affected)) = ctx.with_dataplane(&key.name, new) else { return };
        {
            let mut meshes = lock(&self.shared.meshes);
            if let Some(slot) = meshes.get_mut(&key.mesh) {
                slot.ctx = Some(Arc::new(next));
            }
        }
        drop(_building);
        // A deleted dataplane is not served anything: it has nothing to receive.
        let tracked = affected.iter().filter(|n| !(deleted && **n == key.name)).cloned().collect();
        self.track(track, &key.mesh, tracked);
        for name in affected {
            self.push_or_owe(ResourceKey::new(ResourceType::Dataplane, &key.mesh, name), push);
        }
    }

    /// Applies a policy change to its mesh's context and makes the dataplanes it can reach
    /// due (not the whole mesh: a MeshTimeout on one service reaches that service's
    /// consumers).
    fn on_policy_change(&mut self, key: &ResourceKey, push: bool, track: &mut Track<'_>) {
        let building = lock(&self.shared.mesh_build);
        let current = lock(&self.shared.meshes).get(&key.mesh).and_then(|s| s.current().cloned());
        // No context yet, or one due for a rebuild: the rebuild reads every policy again and
        // makes the whole mesh due.
        let Some(ctx) = current else {
            drop(building);
            // The connected dataplanes' jobs (queued by the change that made the context
            // stale, or by the sweep) rebuild it with this write.
            let connected: Vec<String> = {
                let dps = lock(&self.shared.dataplanes);
                mesh_range(&dps, &key.mesh).map(|(k, _)| k.name.clone()).collect()
            };
            let tracked = match track.claimed {
                Some(_) => self.reach_without_context(key).unwrap_or(connected),
                None => connected,
            };
            self.track(track, &key.mesh, tracked);
            return;
        };
        let new = match self.shared.reader.get(key) {
            Ok(r) => Some(r),
            Err(crate::store::StoreError::NotFound(_)) => None,
            Err(e) => {
                log::warn!("xds: cannot read {key} after a change ({e}); rebuilding mesh {:?}", key.mesh);
                drop(building);
                self.mesh_changed(Some(&key.mesh), push, false, track);
                return;
            }
        };
        let old = ctx.policies.get(key).cloned();
        let Some(next) = ctx.with_policy(key, new.clone()) else { return };
        // A policy on named services is checked against their consumers only (a MeshTimeout on
        // one service visits ~its consumers, not the 10,000 dataplanes of the mesh).
        let candidates = next.policy_candidates(&ctx, old.as_deref(), new.as_deref());
        let (connected, others): (Vec<String>, Vec<String>) = {
            let dps = lock(&self.shared.dataplanes);
            match candidates {
                Some(names) => names.into_iter().partition(|n| {
                    dps.contains_key(&ResourceKey::new(ResourceType::Dataplane, key.mesh.as_str(), n.as_str()))
                }),
                None => {
                    let connected: Vec<String> = mesh_range(&dps, &key.mesh).map(|(k, _)| k.name.clone()).collect();
                    let others = if track.claimed.is_some() {
                        let here: HashSet<&str> = connected.iter().map(String::as_str).collect();
                        next.dataplanes.keys().filter(|n| !here.contains(n.as_str())).cloned().collect()
                    } else {
                        Vec::new()
                    };
                    (connected, others)
                }
            }
        };
        let affected =
            next.affected_by_policy(&ctx, old.as_deref(), new.as_deref(), connected.iter().map(String::as_str));
        let mut tracked = affected.clone();
        if track.claimed.is_some() {
            // An API write also names the dataplanes it reaches that are not connected here
            // (a user write, not a hot path).
            tracked.extend(next.affected_by_policy(
                &ctx,
                old.as_deref(),
                new.as_deref(),
                others.iter().map(String::as_str),
            ));
        }
        if let Some(slot) = lock(&self.shared.meshes).get_mut(&key.mesh) {
            slot.ctx = Some(Arc::new(next));
        }
        drop(building);
        log::debug!("xds: {key} changed; {} connected dataplane(s) affected", affected.len());
        self.track(track, &key.mesh, tracked);
        for name in affected {
            self.push_or_owe(ResourceKey::new(ResourceType::Dataplane, &key.mesh, name), push);
        }
    }

    /// Every dataplane an API write of policy `key` reaches, connected here or not, when
    /// the mesh has no current context (e.g. no dataplane of it is connected to this
    /// instance, so no job keeps one): the context is built now, as the next job would, and
    /// the policy's reach checked against the stale context's version of it, if any.
    /// Without this the change would claim zero affected. A user write, not a hot path.
    fn reach_without_context(&self, key: &ResourceKey) -> Option<Vec<String>> {
        let previous = lock(&self.shared.meshes).get(&key.mesh).and_then(|s| s.ctx.clone());
        let next = match mesh_context(&self.shared, &key.mesh) {
            Ok(ctx) => ctx,
            Err(e) => {
                log::warn!("xds: cannot build mesh {:?} to track {key} ({e})", key.mesh);
                return None;
            }
        };
        let old = previous.as_ref().and_then(|p| p.policies.get(key).cloned());
        let new = next.policies.get(key).cloned();
        let before = previous.as_deref().unwrap_or(&next);
        let names = next.dataplanes.keys().map(String::as_str);
        Some(next.affected_by_policy(before, old.as_deref(), new.as_deref(), names))
    }

    /// As [`Self::reach_without_context`], for an API write of Dataplane `key`: the
    /// context is built now (it has the write) and the write undone on it against the
    /// stale context's version of the dataplane (none: a new one), which touches the same
    /// dataplanes as the write did: itself and its services' consumers.
    fn dataplane_reach_without_context(&self, key: &ResourceKey, op: Operation) -> Option<Vec<String>> {
        let previous = lock(&self.shared.meshes).get(&key.mesh).and_then(|s| s.ctx.clone());
        let next = mesh_context(&self.shared, &key.mesh).ok()?;
        let old = previous.as_ref().and_then(|p| p.dataplanes.get(&key.name).cloned());
        let (_, affected) = next.with_dataplane(&key.name, old)?;
        // A deleted dataplane is not served anything: it has nothing to receive.
        Some(affected.into_iter().filter(|n| !(op == Operation::Delete && *n == key.name)).collect())
    }

    /// The dataplane's Envoy took its certificate (SDS ACKed; Envoy asks for secrets only
    /// once a listener or cluster references them, and starts those listeners with them):
    /// it serves mesh TLS now. Where clients switch to TLS by readiness (PERMISSIVE, or
    /// MeshIdentity), the consumers of its services are due.
    fn on_secrets_acked(&mut self, dp: &ResourceKey) {
        let Some(mark) = self.shared.identities.mark_of(dp) else { return };
        let building = lock(&self.shared.mesh_build);
        let mut meshes = lock(&self.shared.meshes);
        let Some(slot) = meshes.get_mut(&dp.mesh) else { return };
        let Some(ctx) = slot.ctx.clone() else { return };
        let Some(next) = ctx.with_tls_ready(&dp.name, &mark) else { return };
        let matters = next.tls_readiness_matters();
        let services: Vec<String> = match next.dataplanes.get(&dp.name).map(|r| &r.spec) {
            Some(Spec::Dataplane(spec)) => {
                spec.tags_of_inbounds().filter_map(|t| t.get(crate::model::selector::SERVICE_TAG).cloned()).collect()
            }
            _ => Vec::new(),
        };
        let consumers: Vec<String> =
            services.iter().filter_map(|s| next.consumers.get(s)).flat_map(|c| c.iter().cloned()).collect();
        slot.ctx = Some(Arc::new(next));
        drop(meshes);
        drop(building);
        log::debug!("xds: {}.{} serves mesh TLS from {mark:?}", dp.mesh, dp.name);
        if matters {
            let push = self.settings().event_push;
            for name in consumers {
                self.push_or_owe(ResourceKey::new(ResourceType::Dataplane, &dp.mesh, name), push);
            }
        }
    }

    /// Runs `key`'s job now, or at the next sweep when event push is off.
    fn push_or_owe(&mut self, key: ResourceKey, push: bool) {
        if push {
            self.dispatch(&key);
        } else if lock(&self.shared.dataplanes).contains_key(&key) {
            self.owed.insert(key);
        }
    }

    fn dispatch(&self, key: &ResourceKey) {
        let Some(entry) = lock(&self.shared.dataplanes).get(key).cloned() else { return };
        let mut job = lock(&entry.job);
        match *job {
            JobState::Idle => {
                *job = JobState::Queued;
                Metrics::inc(&self.shared.metrics.jobs_dispatched);
                let _ = self.shared.jobs.send(Job::Reconcile(key.clone()));
            }
            JobState::Running => *job = JobState::RunningDirty,
            JobState::Queued | JobState::RunningDirty => {}
        }
    }
}

fn worker_loop(shared: &Arc<Shared>, jobs: &Receiver<Job>) {
    while let Ok(Job::Reconcile(key)) = jobs.recv() {
        let Some(entry) = lock(&shared.dataplanes).get(&key).cloned() else { continue };
        *lock(&entry.job) = JobState::Running;
        let started = Instant::now();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| reconcile(shared, &entry)));
        shared
            .metrics
            .worker_busy_nanos
            .fetch_add(started.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
        if let Err(panic) = result {
            Metrics::inc(&shared.metrics.generation_errors);
            let msg =
                panic.downcast_ref::<String>().cloned().or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()));
            log::error!("xds: reconciling {}.{} panicked: {}", key.mesh, key.name, msg.unwrap_or_default());
        }
        let mut job = lock(&entry.job);
        if *job == JobState::RunningDirty {
            *job = JobState::Queued;
            let _ = shared.jobs.send(Job::Reconcile(key));
        } else {
            *job = JobState::Idle;
        }
    }
}

/// One job: bring a dataplane's snapshot up to date and answer its streams.
fn reconcile(shared: &Shared, entry: &DpEntry) {
    let key = &entry.key;
    let job = entry.jobs_started.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
    let ctx = match mesh_context(shared, &key.mesh) {
        Ok(ctx) => ctx,
        Err(e) => {
            // Nothing is withdrawn: Envoy keeps the last config it accepted. The next refresh
            // sweep tries again.
            Metrics::inc(&shared.metrics.generation_errors);
            log::warn!("xds: cannot build config for {}.{}: {e}", key.mesh, key.name);
            lock(&shared.failed).insert(key.clone());
            return;
        }
    };
    let mut gen = lock(&entry.gen);
    let Some(dp) = ctx.dataplanes.get(&key.name).cloned() else {
        if !gen.waiting_logged {
            log::warn!(
                "xds: {}.{} is connected but no such Dataplane exists in mesh {:?}; it will be served once it is created",
                key.mesh, key.name, key.mesh
            );
            gen.waiting_logged = true;
        }
        return;
    };
    gen.waiting_logged = false;
    // The certificate is asked for, never waited for: a missing one is issued off this
    // thread and its arrival makes this dataplane due again.
    let issued = match (&ctx.mesh.spec, &dp.spec) {
        (Spec::Mesh(m), Spec::Dataplane(d)) => {
            let plan = crate::mtls::plan::plan(&key.mesh, m, &ctx.policies, d).ok().flatten();
            shared.identities.current(key, plan.as_ref())
        }
        _ => None,
    };
    let config = input_hash(&ctx, &dp);
    let cert_id = issued.as_ref().map(|i| i.id);
    let unchanged = gen.snapshot.clone().filter(|_| gen.config_hash == Some(config));
    let snapshot = if let Some(old) = unchanged {
        if gen.cert_id == cert_id {
            Metrics::inc(&shared.metrics.generation_skipped);
        } else {
            // A new certificate (first issuance, rotation) for unchanged config: swap the secrets.
            Metrics::inc(&shared.metrics.generation_secrets_only);
            let secrets = issued.as_ref().map(|i| i.secrets.clone()).unwrap_or_default();
            gen.cert_id = cert_id;
            gen.snapshot = Some(Arc::new(old.with_secrets(secrets)));
        }
        gen.snapshot.clone()
    } else {
        let started = Instant::now();
        let secrets = issued.as_ref().map(|i| i.secrets.clone()).unwrap_or_default();
        match generate::generate_with(&shared.chain, &ctx, &dp, secrets) {
            Ok(s) => {
                let took = started.elapsed();
                shared.metrics.generation_nanos.fetch_add(took.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
                shared.metrics.generation_ms.observe(took.as_secs_f64() * 1000.0);
                let changed = gen.snapshot.as_ref().is_none_or(|old| old.hash() != s.hash());
                Metrics::inc(if changed {
                    &shared.metrics.generation_changed
                } else {
                    &shared.metrics.generation_unchanged
                });
                gen.config_hash = Some(config);
                gen.cert_id = cert_id;
                if changed {
                    gen.snapshot = Some(Arc::new(s));
                }
                gen.snapshot.clone()
            }
            Err(e) => {
                Metrics::inc(&shared.metrics.generation_errors);
                log::error!("xds: generating config for {}.{} failed: {e}", key.mesh, key.name);
                return;
            }
        }
    };
    drop(gen);
    entry.seen_build.store(ctx.build, std::sync::atomic::Ordering::Release);
    let Some(snapshot) = snapshot else { return };
    let streams = lock(&entry.streams).clone();
    let mut sent = false;
    for stream in &streams {
        sent |= flush(shared, key, stream, &snapshot);
    }
    if shared.changes.any_unfinished() {
        if let Some(stream) = streams.last() {
            arm_deliveries(shared, entry, job, sent, stream, &snapshot);
        }
    }
}

/// After job `job` flushed: the changes watched before it started now wait for the
/// versions it generated (the stream's requested part of each subscribed type).
fn arm_deliveries(shared: &Shared, entry: &DpEntry, job: u64, sent: bool, stream: &StreamHandle, snapshot: &Snapshot) {
    let updates = {
        let mut watches = lock(&entry.deliveries);
        if watches.is_empty() {
            return;
        }
        let state = lock(&stream.state);
        let mut targets: [Option<String>; ResourceKind::COUNT] = Default::default();
        for kind in ResourceKind::ALL {
            if state.is_subscribed(kind) {
                targets[kind.index()] = Some(requested(snapshot, &state, kind).version().to_string());
            }
        }
        watches.arm(job, targets, sent);
        watches.settle(&state)
    };
    shared.changes.update(&updates);
}

/// Covers everything a dataplane's config is made from: its own resource, its mesh and
/// policies, and the services its clusters read (each service's hash covers its endpoints).
fn input_hash(ctx: &MeshContext, dp: &crate::model::Resource) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    ctx.policy_hash.hash(&mut h);
    // Content, not the version, which restarts when the Dataplane is re-created.
    dp.content_hash().hash(&mut h);
    let readiness = ctx.tls_readiness_matters();
    if let Spec::Dataplane(spec) = &dp.spec {
        for service in ctx.services_read_by(spec) {
            ctx.services.get(&service).map(|s| s.hash).unwrap_or(0).hash(&mut h);
            if readiness {
                ctx.service_tls_ready(&service).hash(&mut h);
            }
            service.hash(&mut h);
        }
    }
    h.finish()
}

/// The connected dataplanes of `mesh` (the map is ordered by mesh, then name).
fn mesh_range<'a>(
    dps: &'a BTreeMap<ResourceKey, Arc<DpEntry>>,
    mesh: &'a str,
) -> impl Iterator<Item = (&'a ResourceKey, &'a Arc<DpEntry>)> + 'a {
    let start = ResourceKey { rtype: ResourceType::Dataplane, mesh: mesh.to_string(), name: String::new() };
    dps.range(start..).take_while(move |(k, _)| k.mesh == mesh)
}

fn mesh_context(shared: &Shared, mesh: &str) -> Result<Arc<MeshContext>, GenerateError> {
    let current = |slot: &MeshSlot| slot.current().cloned();
    if let Some(ctx) = lock(&shared.meshes).get(mesh).and_then(current) {
        return Ok(ctx);
    }
    let _building = lock(&shared.mesh_build);
    let (previous, changes, full) = {
        let meshes = lock(&shared.meshes);
        match meshes.get(mesh) {
            Some(slot) => {
                if let Some(ctx) = current(slot) {
                    return Ok(ctx);
                }
                (slot.ctx.clone(), slot.changes, slot.full_rebuild)
            }
            None => (None, 0, true),
        }
    };
    let ctx = Arc::new(match &previous {
        Some(p) if !full => p.with_policies(&shared.reader)?,
        _ => MeshContext::build(&shared.reader, mesh, previous.as_deref())?,
    });
    let mut meshes = lock(&shared.meshes);
    let slot = meshes.entry(mesh.to_string()).or_insert(MeshSlot {
        ctx: None,
        changes,
        built_from: 0,
        full_rebuild: false,
        swept: None,
    });
    slot.ctx = Some(ctx.clone());
    slot.built_from = changes;
    // A resync that arrived during the build leaves the flag for the next one.
    if slot.changes == changes {
        slot.full_rebuild = false;
    }
    Ok(ctx)
}

/// What this stream asked for of `kind`: the whole set for wildcard types, else the names
/// Envoy subscribed to.
fn requested<'a>(snapshot: &'a Snapshot, state: &StreamState, kind: ResourceKind) -> std::borrow::Cow<'a, ResourceSet> {
    if kind.is_wildcard() {
        std::borrow::Cow::Borrowed(snapshot.set(kind))
    } else {
        snapshot.set(kind).filtered(state.requested_names(kind))
    }
}

/// An SDS answer without any of the secrets Envoy named is not sent: Envoy rejects one
/// ("Missing SDS resources"), and a certificate still being issued arrives in a moment, its
/// issuance making the dataplane due again.
fn withheld(kind: ResourceKind, set: &ResourceSet) -> bool {
    kind == ResourceKind::Secret && set.is_empty()
}

/// Sends every type whose content Envoy lacks, in ADS order; says whether it sent any.
fn flush(shared: &Shared, key: &ResourceKey, stream: &StreamHandle, snapshot: &Snapshot) -> bool {
    let mut state = lock(&stream.state);
    let now = shared.clock.now();
    let mut sent = false;
    for kind in ResourceKind::ALL {
        if !state.is_subscribed(kind) {
            continue;
        }
        let set = requested(snapshot, &state, kind);
        if withheld(kind, &set) {
            continue;
        }
        let version = set.version();
        match state.decide(kind, version, now) {
            SendDecision::Send => {
                let nonce = state.record_sent_at(kind, version, now);
                let response = EncodedResponse::encode(version, kind, &set, &nonce, &shared.instance_id);
                if stream.tx.unbounded_send(response).is_err() {
                    log::debug!("xds: stream {} closed while sending", stream.id);
                    return sent;
                }
                sent = true;
                Metrics::inc(&shared.metrics.responses_sent[kind.index()]);
                stream.activity.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                log::debug!(
                    "xds: sent {kind} version {version} ({} resources) to {}.{} nonce {nonce}",
                    set.len(),
                    key.mesh,
                    key.name
                );
            }
            SendDecision::RetryAt(at) => {
                let _ = shared.inbox.send(Event::RetryAt { dp: key.clone(), at });
            }
            SendDecision::Skip => {}
        }
    }
    sent
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_mesh_dot_name() {
        assert_eq!(parse_node_id("default.web-1"), Some(ResourceKey::new(ResourceType::Dataplane, "default", "web-1")));
        assert_eq!(parse_node_id("web-1"), None);
        assert_eq!(parse_node_id(".web"), None);
        assert_eq!(parse_node_id("default."), None);
        assert_eq!(parse_node_id("a.b.c"), None);
        assert_eq!(parse_node_id("default.Web"), None);
        assert_eq!(parse_node_id(&format!("default.{}", "a".repeat(254))), None);
    }
}
