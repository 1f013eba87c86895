//! Dataplane status: each ADS stream is a DiscoverySubscription in its dataplane's
//! DataplaneInsight (connect/disconnect time, responses sent / ACKed / NACKed, in total and
//! per type), written by one thread so that status never slows config delivery.
//!
//! Connects and disconnects are written at once (the API shows a dataplane online or offline
//! right away); counters are written at most once per `dataplaneStatusFlushInterval` per
//! stream and only when they changed; stopping writes everything still pending.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{select, Receiver, Sender};

use super::{lock, Metrics, Settings, StreamHandle};
use crate::model::insight::{DataplaneInsightSpec, DiscoveryServiceStats, DiscoverySubscription};
use crate::model::rest::format_time;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::{SharedStore, StoreError};
use crate::threads;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::stream::Counters;

/// Lost compare-and-swap races are retried this many times before the write waits for the
/// next flush.
const CAS_ATTEMPTS: usize = 5;

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
    pub fn start(store: SharedStore, instance_id: String, settings: Settings, metrics: Arc<Metrics>) -> StatusWriter {
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread = threads::spawn(threads::XDS_STATUS.to_string(), move || {
            Tracker { store, instance_id, settings, metrics, streams: HashMap::new() }.run(rx)
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
    streams: HashMap<u64, Tracked>,
}

impl Tracker {
    fn run(mut self, rx: Receiver<StatusEvent>) {
        let tick = crossbeam_channel::tick(Duration::from_millis(500));
        loop {
            select! {
                recv(rx) -> ev => match ev {
                    Ok(StatusEvent::Connected(h)) => {
                        let Some(dp) = lock(&h.dataplane).clone() else { continue };
                        let id = h.id;
                        self.streams.insert(id, Tracked { handle: h, dataplane: dp, disconnected: None, written: None, written_activity: u64::MAX, last_write: None });
                        self.write(id);
                    }
                    Ok(StatusEvent::Disconnected(h, at)) => {
                        if let Some(t) = self.streams.get_mut(&h.id) {
                            t.disconnected = Some(at);
                            self.write(h.id);
                        }
                        self.streams.remove(&h.id);
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

    /// Writes the streams whose status changed and whose last write is older than the
    /// flush interval (all changed ones when `all`).
    fn flush_due(&mut self, all: bool) {
        let interval = self.settings.status_flush_interval;
        let due: Vec<u64> = self
            .streams
            .iter()
            .filter(|(_, t)| t.handle.activity.load(std::sync::atomic::Ordering::Relaxed) != t.written_activity)
            .filter(|(_, t)| all || t.last_write.is_none_or(|w| w.elapsed() >= interval))
            .map(|(id, _)| *id)
            .collect();
        for id in due {
            self.write(id);
        }
    }

    fn subscription(&self, t: &Tracked) -> DiscoverySubscription {
        let state = lock(&t.handle.state);
        let stats = |c: Counters| DiscoveryServiceStats {
            responses_sent: c.sent,
            responses_acknowledged: c.acked,
            responses_rejected: c.rejected,
        };
        let mut sub = DiscoverySubscription {
            id: t.handle.subscription_id.clone(),
            control_plane_instance_id: self.instance_id.clone(),
            connect_time: Some(format_time(t.handle.connect_time)),
            disconnect_time: t.disconnected.map(format_time),
            ..Default::default()
        };
        sub.status.total = stats(state.total());
        sub.status.cds = stats(state.counters(ResourceKind::Cluster));
        sub.status.eds = stats(state.counters(ResourceKind::Endpoint));
        sub.status.lds = stats(state.counters(ResourceKind::Listener));
        sub.status.rds = stats(state.counters(ResourceKind::Route));
        sub
    }

    fn write(&mut self, id: u64) {
        let Some(t) = self.streams.get(&id) else { return };
        let activity = t.handle.activity.load(std::sync::atomic::Ordering::Relaxed);
        let mut sub = self.subscription(t);
        if t.written.as_ref() == Some(&sub) {
            if let Some(t) = self.streams.get_mut(&id) {
                t.written_activity = activity;
            }
            return;
        }
        sub.status.last_update_time = Some(format_time(SystemTime::now()));
        let key = ResourceKey::new(ResourceType::DataplaneInsight, &t.dataplane.mesh, &t.dataplane.name);
        let result = upsert(&self.store, &key, sub.clone(), self.settings.subscription_limit);
        let t = self.streams.get_mut(&id).expect("checked above");
        t.last_write = Some(Instant::now());
        match result {
            Ok(()) => {
                sub.status.last_update_time = None;
                t.written = Some(sub);
                t.written_activity = activity;
                Metrics::inc(&self.metrics.insight_writes);
            }
            // The Dataplane does not exist (yet): nothing to attach status to; retried on the
            // next flush.
            Err(StoreError::OwnerNotFound { .. }) | Err(StoreError::MeshNotFound(_)) => {}
            Err(e) => {
                Metrics::inc(&self.metrics.insight_write_errors);
                log::warn!("xds: writing the status of {}.{} failed: {e}", key.mesh, key.name);
            }
        }
    }
}

/// Puts `sub` into the dataplane's insight, creating it if needed; retries lost races.
fn upsert(store: &SharedStore, key: &ResourceKey, sub: DiscoverySubscription, limit: usize) -> Result<(), StoreError> {
    let mut last = None;
    for _ in 0..CAS_ATTEMPTS {
        let result = match store.get(key) {
            Ok(current) => {
                let mut spec = match &current.spec {
                    Spec::DataplaneInsight(s) => s.clone(),
                    _ => DataplaneInsightSpec::default(),
                };
                spec.upsert_subscription(sub.clone(), limit);
                store.update(key, Spec::DataplaneInsight(spec), current.meta.version).map(|_| ())
            }
            Err(StoreError::NotFound(_)) => {
                let mut spec = DataplaneInsightSpec::default();
                spec.upsert_subscription(sub.clone(), limit);
                store.create(&key.mesh, &key.name, Spec::DataplaneInsight(spec)).map(|_| ())
            }
            Err(e) => Err(e),
        };
        match result {
            Err(e @ (StoreError::Conflict(_) | StoreError::AlreadyExists(_))) => last = Some(e),
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| StoreError::Internal("status write retries exhausted".into())))
}
