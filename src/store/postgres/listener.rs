//! The change listener: one thread with its own connection (outside the pool, which could
//! recycle it) doing `LISTEN resource_events` and turning the trigger's notifications into
//! [`ChangeEvent`]s. Every instance sharing the database hears every write, its own included,
//! which is how the store emits events at all: writes do not publish directly, so each event
//! is published exactly once, in commit order.
//!
//! Because events arrive asynchronously, [`subscribe`](super::PostgresStore) places a marker
//! (`NOTIFY higuma_sync`) and the thread creates the new receiver when the marker comes
//! through: notifications are delivered in commit order across channels, so the receiver
//! gets exactly the changes committed after the marker, none from writes that had finished
//! before `subscribe` was called.
//!
//! When the connection is lost the thread tries again at once, then with a back-off from
//! 100 ms doubling to at most 500 ms (or `maxReconnectInterval`, if lower), and then publishes
//! [`ChangeEvent::Resync`]: what changed while it was away is unknown. Kuma's lib/pq defaults
//! (10 s doubling to 60 s) left an instance deaf to other instances' writes for up to a
//! minute after a blip of a second, while it still reported ready; a failed attempt costs a
//! refused TCP connect, so trying twice a second costs Postgres nothing. The thread also
//! keeps the store's [`Health`]: listening or not, Postgres known down or not.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde::Deserialize;

use super::connection::Connector;
use super::errors::describe;
use super::health::{Health, QueryCounts};
use crate::model::{ResourceKey, ResourceType};
use crate::store::{ChangeEvent, EventBus, Operation};

/// Kuma's channel name (migration 1610445956).
pub(crate) const CHANNEL: &str = "resource_events";
/// Higuma's own channel for subscription markers; Kuma never listens on it, so markers
/// cannot confuse a kuma-cp sharing the database.
pub(crate) const SYNC_CHANNEL: &str = "higuma_sync";
/// How long one wait for notifications lasts before the thread looks at its stop signal.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Notifications handled in one go before the stop signal is looked at again, so a steady
/// stream of writes cannot delay shutdown indefinitely.
const MAX_BATCH: usize = 1_000;
/// First wait between reconnect attempts (after an immediate first one).
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// The longest wait between reconnect attempts: bounds how long after Postgres answers again
/// this instance hears other instances' writes (plus one connect and the resync).
const MAX_BACKOFF: Duration = Duration::from_millis(500);
/// A quiet connection is checked at least this often (`healthCheckInterval` when lower): a
/// loss that closes nothing (a cut link) must show in readiness within seconds, not Kuma's
/// 30 s; one empty query per 5 s per instance.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Opens the listener's connection and subscribes to the channel.
pub(crate) fn listen(connector: &Connector) -> Result<Client, String> {
    let mut client = connector.connect().map_err(|e| e.to_string())?;
    subscribe(&mut client).map_err(|e| describe(&e))?;
    Ok(client)
}

pub(crate) fn subscribe(client: &mut Client) -> Result<(), postgres::Error> {
    client.batch_execute(&format!("LISTEN {CHANNEL}; LISTEN {SYNC_CHANNEL}"))
}

/// Subscribers waiting for their marker, by marker payload.
#[derive(Debug, Default)]
pub(crate) struct PendingSubscriptions {
    waiting: Mutex<HashMap<String, Sender<Receiver<ChangeEvent>>>>,
}

impl PendingSubscriptions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Sender<Receiver<ChangeEvent>>>> {
        // Inserts and removes cannot leave the map half-changed; a poisoned lock is usable.
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn add(&self, marker: String, tx: Sender<Receiver<ChangeEvent>>) {
        self.lock().insert(marker, tx);
    }

    pub(crate) fn remove(&self, marker: &str) -> Option<Sender<Receiver<ChangeEvent>>> {
        self.lock().remove(marker)
    }
}

/// Settings of the listener thread.
#[derive(Debug)]
pub(crate) struct Settings {
    /// `maxReconnectInterval`: caps the back-off when below [`MAX_BACKOFF`].
    pub(crate) max_backoff: Duration,
    /// How often an otherwise quiet connection is checked, so a server that vanished without
    /// closing the socket is noticed.
    pub(crate) health_check_interval: Duration,
}

/// Handle of the running thread; dropping it stops and joins the thread.
#[derive(Debug)]
pub(crate) struct Listener {
    /// Dropped to stop the thread (it sees the channel disconnect).
    stop: Option<Sender<()>>,
    handle: Option<JoinHandle<()>>,
}

impl Listener {
    /// Starts the thread on a connection that already LISTENs, so no write made after the
    /// store's `connect` returned is missed.
    pub(crate) fn start(
        client: Client,
        connector: Connector,
        events: Arc<EventBus>,
        pending: Arc<PendingSubscriptions>,
        settings: Settings,
        health: Arc<Health>,
        queries: Arc<QueryCounts>,
    ) -> Listener {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded(0);
        let worker = Worker { connector, events, pending, settings, health, queries, stop: stop_rx };
        let handle = crate::threads::spawn(crate::threads::PG_LISTENER.to_string(), move || worker.run(client));
        Listener { stop: Some(stop_tx), handle: Some(handle) }
    }

    /// Stops the thread and waits for it; at most one poll interval, or the connection
    /// timeout when a reconnect is under way.
    pub(crate) fn stop(&mut self) {
        drop(self.stop.take());
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                log::error!("the Postgres change listener panicked");
            }
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Worker {
    connector: Connector,
    events: Arc<EventBus>,
    pending: Arc<PendingSubscriptions>,
    settings: Settings,
    health: Arc<Health>,
    queries: Arc<QueryCounts>,
    stop: Receiver<()>,
}

impl Worker {
    fn run(self, mut client: Client) {
        loop {
            let Some(reason) = self.wait(&mut client) else { return };
            self.health.set_listening(false);
            log::warn!(
                "postgres {}: the change listener lost its connection ({reason}); writes made on other instances \
                 cannot reach this instance until it reconnects",
                self.connector.addr
            );
            drop(client);
            let lost = Instant::now();
            client = match self.reconnect() {
                Some(client) => client,
                None => return,
            };
            if self.health.set_down(false) {
                log::info!("postgres {}: answering again", self.connector.addr);
            }
            // Before readiness returns: the reconciler sees the resync before any request
            // that /ready lets through.
            self.events.publish(ChangeEvent::Resync);
            self.health.set_listening(true);
            log::info!(
                "postgres {}: the change listener is connected again after {:?}; resynchronizing",
                self.connector.addr,
                lost.elapsed()
            );
        }
    }

    fn probe_interval(&self) -> Duration {
        self.settings.health_check_interval.min(MAX_PROBE_INTERVAL)
    }

    fn stopping(&self) -> bool {
        !matches!(self.stop.try_recv(), Err(TryRecvError::Empty))
    }

    /// Forwards notifications until the connection fails (`Some(reason)`) or the thread is
    /// asked to stop (`None`).
    fn wait(&self, client: &mut Client) -> Option<String> {
        let mut last_check = Instant::now();
        loop {
            if self.stopping() {
                return None;
            }
            if let Err(reason) = self.forward_batch(client) {
                return Some(reason);
            }
            // `timeout_iter` also ends quietly when the server closed the connection.
            if client.is_closed() {
                return Some("the server closed the connection".to_string());
            }
            // A failed pool checkout asks for a check now (see `Health`).
            if self.health.take_probe_request() || last_check.elapsed() >= self.probe_interval() {
                QueryCounts::add(&self.queries.listener, 1);
                if let Err(e) = client.is_valid(self.connector.timeout) {
                    return Some(describe(&e));
                }
                last_check = Instant::now();
            }
        }
    }

    /// Publishes the notifications that arrive within one poll interval (at most
    /// `MAX_BATCH`).
    fn forward_batch(&self, client: &mut Client) -> Result<(), String> {
        let mut notifications = client.notifications();
        let mut iter = notifications.timeout_iter(POLL_INTERVAL);
        for _ in 0..MAX_BATCH {
            match iter.next() {
                Ok(Some(n)) if n.channel() == SYNC_CHANNEL => {
                    // Markers of other instances sharing the database are not found here.
                    if let Some(waiter) = self.pending.remove(n.payload()) {
                        let _ = waiter.send(self.events.subscribe());
                    }
                }
                Ok(Some(n)) => {
                    if let Some(event) = parse(n.channel(), n.payload()) {
                        self.events.publish(event);
                    }
                }
                Ok(None) => break,
                Err(e) => return Err(describe(&e)),
            }
        }
        Ok(())
    }

    /// Reconnects: at once, then with a short back-off (see the module docs); `None` when
    /// asked to stop meanwhile. The first failure marks Postgres down.
    fn reconnect(&self) -> Option<Client> {
        let max = self.settings.max_backoff.clamp(MIN_BACKOFF, MAX_BACKOFF);
        let mut delay = Duration::ZERO;
        let mut attempts = 0u64;
        loop {
            if !delay.is_zero() {
                match self.stop.recv_timeout(delay) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => return None,
                }
            } else if self.stopping() {
                return None;
            }
            attempts += 1;
            // The connect's start-up exchange and the LISTEN.
            QueryCounts::add(&self.queries.listener, 1);
            match listen(&self.connector) {
                Ok(client) => return Some(client),
                Err(reason) => {
                    if self.health.set_down(true) {
                        log::warn!(
                            "postgres {}: unreachable ({reason}); store calls answer 503 at once until it is back",
                            self.connector.addr
                        );
                    } else if attempts.is_power_of_two() {
                        // 1, 2, 4, 8... attempts: a line every few seconds, then rarer.
                        log::warn!(
                            "postgres {}: still unreachable after {attempts} attempts ({reason})",
                            self.connector.addr
                        );
                    }
                    delay = if delay.is_zero() { MIN_BACKOFF } else { (delay * 2).min(max) };
                }
            }
        }
    }
}

#[derive(Deserialize)]
struct Payload {
    action: String,
    data: PayloadKey,
}

#[derive(Deserialize)]
struct PayloadKey {
    name: String,
    mesh: String,
    #[serde(rename = "type")]
    rtype: String,
}

/// Turns a trigger payload into an event. Types higuma does not know (a database shared with
/// a newer Kuma holds more) and malformed payloads are ignored.
pub(crate) fn parse(channel: &str, payload: &str) -> Option<ChangeEvent> {
    if channel != CHANNEL {
        return None;
    }
    let payload: Payload = match serde_json::from_str(payload) {
        Ok(p) => p,
        Err(e) => {
            log::warn!("ignoring a malformed {CHANNEL} notification {payload:?}: {e}");
            return None;
        }
    };
    let op = match payload.action.as_str() {
        "INSERT" => Operation::Create,
        "UPDATE" => Operation::Update,
        "DELETE" => Operation::Delete,
        other => {
            log::debug!("ignoring a {CHANNEL} notification with action {other:?}");
            return None;
        }
    };
    let Some(rtype) = ResourceType::from_name(&payload.data.rtype) else {
        log::debug!("ignoring a change of a resource of unknown type {:?}", payload.data.rtype);
        return None;
    };
    Some(ChangeEvent::Changed { op, key: ResourceKey::new(rtype, payload.data.mesh, payload.data.name) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kumas_payload() {
        let event = parse(
            CHANNEL,
            r#"{"action" : "DELETE", "data" : {"name" : "dp-1", "mesh" : "default", "type" : "Dataplane"}}"#,
        );
        assert_eq!(
            event,
            Some(ChangeEvent::Changed {
                op: Operation::Delete,
                key: ResourceKey::new(ResourceType::Dataplane, "default", "dp-1")
            })
        );
    }

    #[test]
    fn ignores_unknown_types_and_garbage() {
        let unknown = r#"{"action": "INSERT", "data": {"name": "x", "mesh": "m", "type": "ContainerPatch"}}"#;
        assert_eq!(parse(CHANNEL, unknown), None);
        assert_eq!(parse(CHANNEL, "not json"), None);
        assert_eq!(parse("other", r#"{"action": "INSERT", "data": {"name": "x", "mesh": "", "type": "Mesh"}}"#), None);
    }
}
