//! Dataplane status: each ADS stream is a DiscoverySubscription in its dataplane's
//! DataplaneInsight (connect/disconnect time, responses sent / ACKed / NACKed, in total and
//! per type), written by one thread so that status never slows config delivery.
//!
//! Connects are written on the next beat (a quarter second: the API shows a dataplane
//! online right away); disconnects too, or after `disconnect_delay` on a store shared by
//! several instances (a dataplane that moved on to another instance is never shown offline by
//! the one it left); counters at most once per `dataplaneStatusFlushInterval` per stream and
//! only when they changed; stopping writes everything still pending. A live stream bumps its
//! subscription's `generation` every half `metrics.dataplane.idleTimeout`, which is how the
//! leader's finalizer tells it from the stream of an instance that died. Each beat writes all
//! that is due as one batch — a read and a write statement or two for thousands of
//! dataplanes on Postgres, not two per dataplane.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use super::{lock, Metrics, Settings, StreamHandle};
use crate::model::insight::{DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription};
use crate::model::rest::format_time;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::mtls::identities::{CertInfo, Identities};
use crate::store::{BatchWrite, SharedStore, StoreError};
use crate::threads;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::stream::Counters;

/// Lost compare-and-swap races are retried this many times before the write waits for the
/// next flush.
const CAS_ATTEMPTS: usize = 5;
/// How often the writer looks for due status: bounds how late a connect or disconnect shows.
const BEAT: Duration = Duration::from_millis(250);
/// Insights per batch: bounds one statement's size (an insight is about half a kilobyte).
const BATCH_LIMIT: usize = 2000;

pub enum StatusEvent {
    Connected(Arc<StreamHandle>),
    Disconnected(Arc<StreamHandle>, SystemTime),
    Settings(Settings),
    Stop,
}

pub struct StatusWriter {
    tx: Sender<StatusEvent>,
    thread: Option<JoinHandle<()>>,
}

impl StatusWriter {
    pub fn start(
        store: SharedStore,
        instance_id: String,
        settings: Settings,
        metrics: Arc<Metrics>,
        identities: Arc<Identities>,
    ) -> StatusWriter {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = threads::spawn(threads::XDS_STATUS.to_string(), move || {
            Tracker { store, instance_id, settings, metrics, identities, streams: HashMap::new() }.run(rx)
        });
        StatusWriter { tx, thread: Some(thread) }
    }

    pub fn sender(&self) -> Sender<StatusEvent> {
        self.tx.clone()
    }

    /// Writes what is pending and stops.
    pub fn stop(mut self) {
        let _ = self.tx.send(StatusEvent::Stop);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Tracked {
    handle: Arc<StreamHandle>,
    dataplane: ResourceKey,
    disconnected: Option<SystemTime>,
    /// When the disconnect is to be written.
    disconnect_due: Option<Instant>,
    /// Kuma's subscription `generation`, bumped every half idle timeout while connected.
    generation: u32,
    bumped: Instant,
    written: Option<DiscoverySubscription>,
    /// The stream's activity counter when `written` was built.
    written_activity: u64,
    last_write: Option<Instant>,
}

struct Tracker {
    store: SharedStore,
    instance_id: String,
    settings: Settings,
    metrics: Arc<Metrics>,
    /// Where the insight's `mTLS` comes from.
    identities: Arc<Identities>,
    streams: HashMap<u64, Tracked>,
}

impl Tracker {
    fn run(mut self, rx: Receiver<StatusEvent>) {
        let tick = crossbeam_channel::tick(BEAT);
        loop {
            select! {
                recv(rx) -> ev => match ev {
                    Ok(StatusEvent::Connected(h)) => {
                        let Some(dp) = lock(&h.dataplane).clone() else { continue };
                        // Never written, so due on the next beat.
                        self.streams.insert(h.id, Tracked {
                            handle: h,
                            dataplane: dp,
                            disconnected: None,
                            disconnect_due: None,
                            generation: 0,
                            bumped: Instant::now(),
                            written: None,
                            written_activity: u64::MAX,
                            last_write: None,
                        });
                    }
                    Ok(StatusEvent::Disconnected(h, at)) => {
                        let delay = self.settings.disconnect_delay;
                        if let Some(t) = self.streams.get_mut(&h.id) {
                            t.disconnected = Some(at);
                            t.disconnect_due = Some(Instant::now() + delay);
                        }
                    }
                    Ok(StatusEvent::Settings(s)) => self.settings = s,
                    Ok(StatusEvent::Stop) | Err(_) => break,
                },
                recv(tick) -> _ => self.flush_due(false),
            }
        }
        self.flush_due(true);
        log::debug!("xds: status writer stopped");
    }

    /// Writes the streams that connected or disconnected since the last beat, and those whose
    /// counters changed and whose last write is older than the flush interval (all changed
    /// ones when `all`). Closed streams are forgotten once written.
    fn flush_due(&mut self, all: bool) {
        let interval = self.settings.status_flush_interval;
        let bump_every = self.settings.idle_timeout / 2;
        let now = Instant::now();
        for t in self.streams.values_mut() {
            if t.disconnected.is_none() && !bump_every.is_zero() && t.bumped.elapsed() >= bump_every {
                t.generation = t.generation.wrapping_add(1);
                t.bumped = now;
            }
        }
        let disconnect_due = |t: &Tracked| all || t.disconnect_due.is_some_and(|d| d <= now);
        let due: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, t)| {
                t.last_write.is_none()
                    || (t.disconnected.is_some() && disconnect_due(t))
                    || t.written.as_ref().is_some_and(|w| w.generation != t.generation)
                    || (t.handle.activity.load(std::sync::atomic::Ordering::Relaxed) != t.written_activity
                        && (all || t.last_write.is_some_and(|w| w.elapsed() >= interval)))
            })
            .map(|(id, _)| *id)
            .collect();
        for chunk in due.chunks(BATCH_LIMIT) {
            self.write(chunk, now, all);
        }
        self.streams.retain(|_, t| t.disconnected.is_none() || !disconnect_due(t));
    }

    fn subscription(&self, t: &Tracked, now: Instant, all: bool) -> DiscoverySubscription {
        let state = lock(&t.handle.state);
        let stats = |c: Counters| DiscoveryServiceStats {
            responses_sent: c.sent,
            responses_acknowledged: c.acked,
            responses_rejected: c.rejected,
        };
        // Until the delayed disconnect is due, the stream still shows as connected.
        let disconnected = t.disconnected.filter(|_| t.disconnect_due.is_some_and(|d| d <= now) || all);
        let mut sub = DiscoverySubscription {
            id: t.handle.subscription_id.clone(),
            control_plane_instance_id: self.instance_id.clone(),
            connect_time: Some(format_time(t.handle.connect_time)),
            disconnect_time: disconnected.map(format_time),
            generation: t.generation,
            ..Default::default()
        };
        sub.status.total = stats(state.total());
        sub.status.cds = stats(state.counters(ResourceKind::Cluster));
        sub.status.eds = stats(state.counters(ResourceKind::Endpoint));
        sub.status.lds = stats(state.counters(ResourceKind::Listener));
        sub.status.rds = stats(state.counters(ResourceKind::Route));
        sub
    }

    /// Writes the status of `ids` in one batch (per insight: all its streams' subscriptions).
    fn write(&mut self, ids: &[u64], now: Instant, all: bool) {
        // Insight key → (stream id, activity when read, subscription).
        let mut pending: BTreeMap<ResourceKey, Vec<(u64, u64, DiscoverySubscription)>> = BTreeMap::new();
        for &id in ids {
            let Some(t) = self.streams.get(&id) else { continue };
            let activity = t.handle.activity.load(std::sync::atomic::Ordering::Relaxed);
            let mut sub = self.subscription(t, now, all);
            if t.written.as_ref() == Some(&sub) {
                if let Some(t) = self.streams.get_mut(&id) {
                    t.written_activity = activity;
                }
                continue;
            }
            sub.status.last_update_time = Some(format_time(SystemTime::now()));
            let key = ResourceKey::new(ResourceType::DataplaneInsight, &t.dataplane.mesh, &t.dataplane.name);
            pending.entry(key).or_default().push((id, activity, sub));
        }
        for &id in ids {
            if let Some(t) = self.streams.get_mut(&id) {
                t.last_write = Some(now);
            }
        }
        let limit = self.settings.subscription_limit;
        let mtls: BTreeMap<ResourceKey, Option<serde_json::Value>> = pending
            .keys()
            .map(|k| {
                let dp = ResourceKey::new(ResourceType::Dataplane, &k.mesh, &k.name);
                (k.clone(), self.identities.info(&dp).as_ref().map(mtls_json))
            })
            .collect();
        for _ in 0..CAS_ATTEMPTS {
            if pending.is_empty() {
                return;
            }
            let outcomes = match upsert_batch(&self.store, &pending, &mtls, limit) {
                Ok(o) => o,
                Err(e) => {
                    self.metrics
                        .insight_write_errors
                        .fetch_add(pending.len() as u64, std::sync::atomic::Ordering::Relaxed);
                    log::warn!("xds: writing the status of {} dataplanes failed: {e}", pending.len());
                    return;
                }
            };
            let mut retry = BTreeMap::new();
            for ((key, subs), outcome) in std::mem::take(&mut pending).into_iter().zip(outcomes) {
                match outcome {
                    Ok(()) => {
                        for (id, activity, mut sub) in subs {
                            let Some(t) = self.streams.get_mut(&id) else { continue };
                            sub.status.last_update_time = None;
                            t.written = Some(sub);
                            t.written_activity = activity;
                        }
                        Metrics::inc(&self.metrics.insight_writes);
                    }
                    // Somebody else (another instance, another of our streams' batches) wrote
                    // first: read again and retry.
                    Err(StoreError::Conflict(_) | StoreError::AlreadyExists(_) | StoreError::NotFound(_)) => {
                        retry.insert(key, subs);
                    }
                    // The Dataplane does not exist (yet): nothing to attach status to;
                    // retried on the next flush.
                    Err(StoreError::OwnerNotFound { .. }) | Err(StoreError::MeshNotFound(_)) => {}
                    Err(e) => {
                        Metrics::inc(&self.metrics.insight_write_errors);
                        log::warn!("xds: writing the status of {}.{} failed: {e}", key.mesh, key.name);
                    }
                }
            }
            pending = retry;
        }
        if !pending.is_empty() {
            log::debug!("xds: {} status writes kept losing races; retrying on the next flush", pending.len());
        }
    }
}

/// One read and one write round for a batch of insights: each gets its streams'
/// subscriptions put in, created when missing. Outcomes in the order of `pending`.
/// Kuma's `DataplaneInsight.MTLS` of a certificate.
fn mtls_json(c: &CertInfo) -> serde_json::Value {
    serde_json::json!({
        "certificateExpirationTime": format_time(c.expiration),
        "lastCertificateRegeneration": format_time(c.last_generated),
        "certificateRegenerations": c.regenerations,
        "issuedBackend": c.issued_backend,
        "supportedBackends": [c.issued_backend],
    })
}

fn upsert_batch(
    store: &SharedStore,
    pending: &BTreeMap<ResourceKey, Vec<(u64, u64, DiscoverySubscription)>>,
    mtls: &BTreeMap<ResourceKey, Option<serde_json::Value>>,
    limit: usize,
) -> Result<Vec<Result<(), StoreError>>, StoreError> {
    let keys: Vec<ResourceKey> = pending.keys().cloned().collect();
    let current = store.get_batch(&keys)?;
    let writes = pending
        .iter()
        .zip(current)
        .map(|((key, subs), current)| {
            let mut spec = match current.as_ref().map(|c| &c.spec) {
                Some(Spec::DataplaneInsight(s)) => s.clone(),
                _ => DataplaneInsightSpec::default(),
            };
            for (_, _, sub) in subs {
                spec.upsert_subscription(sub.clone(), limit);
            }
            // Only a dataplane served here has its certificate known here; another
            // instance's record is left as it is.
            if let Some(Some(m)) = mtls.get(key) {
                spec.m_tls = Some(m.clone());
            }
            let spec = Spec::DataplaneInsight(spec);
            match current {
                Some(c) => BatchWrite::Update { key: key.clone(), spec, expected_version: c.meta.version },
                None => BatchWrite::Create { key: key.clone(), spec },
            }
        })
        .collect();
    store.write_batch(writes)
}
