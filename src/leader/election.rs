//! Leader election on Postgres with Kuma's lock: the row `kuma-cp-lock` of the `locks` table
//! (migration `1592232449_add_leader_table`), held the way cirello.io/pglock v1.14 holds it
//! for kuma-cp (`pkg/plugins/leader/postgres/leader_elector.go`: lease 5 s, heartbeat 1 s,
//! owner = instance id):
//!
//! - The holder's `record_version_number` (rvn) changes with every heartbeat (a fresh value
//!   of the sequence `locks_rvn`); a heartbeat is a compare-and-swap on the rvn it wrote last,
//!   and one that matches nothing means the lock was taken over.
//! - A contender takes the lock when the row is missing, released (rvn NULL), or its rvn has
//!   not changed for a whole lease — the holder stopped heartbeating. No clocks are compared
//!   across machines: each contender times the rvn it saw with its own clock.
//! - Releasing deletes the row, so a successor takes over on its next read.
//!
//! pglock contenders sleep a lease between attempts; higuma reads the row every heartbeat
//! and takes over once an unchanged rvn is a lease old by its clock. A new leader therefore
//! follows a dead one within the lease plus one heartbeat (≤ 6 s after its last heartbeat),
//! and with a kuma-cp in the group each side respects the other's heartbeats.
//!
//! A leader whose heartbeats stop landing steps down once its last confirmed one is
//! `LEASE - HEARTBEAT` old: any contender waits a full lease from the moment it saw that
//! rvn, so the old leader has stopped before a new one can start. [`Leadership`] enforces
//! the same bound by itself should this thread hang on a connection.

use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender};
use postgres::Client;

use super::Leadership;
use crate::store::postgres::LeaderConnection;

/// Kuma's lock name (`pkg/plugins/leader/postgres/leader_elector.go`).
pub const LOCK_NAME: &str = "kuma-cp-lock";
/// Kuma's lease (`WithLeaseDuration(5 * time.Second)`).
pub const LEASE: Duration = Duration::from_secs(5);
/// Kuma's heartbeat (`WithHeartbeatFrequency(1 * time.Second)`); also how often a follower
/// reads the row.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A term lasts this long past the moment its last heartbeat was sent (see the module docs).
const TERM: Duration = LEASE.saturating_sub(HEARTBEAT);

/// The lock row as read: its rvn (None = released) and owner.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Row {
    rvn: Option<i64>,
    owner: Option<String>,
}

enum State {
    /// `seen`: the rvn last read and when it was first seen with that value.
    Follower {
        seen: Option<(Row, Instant)>,
    },
    Leader {
        rvn: i64,
    },
}

/// The election's state machine; [`Elector`] runs it on a thread, one `tick` per heartbeat.
pub struct Election {
    conn: LeaderConnection,
    owner: String,
    client: Option<Client>,
    state: State,
    leadership: Arc<Leadership>,
    /// Log "waiting for X" once per holder.
    logged_holder: Option<String>,
}

impl Election {
    pub fn new(conn: LeaderConnection, owner: String, leadership: Arc<Leadership>) -> Election {
        Election { conn, owner, client: None, state: State::Follower { seen: None }, leadership, logged_holder: None }
    }

    pub fn is_leader(&self) -> bool {
        self.leadership.is_leader()
    }

    fn client(&mut self) -> Result<&mut Client, String> {
        if self.client.is_none() {
            let mut client = self.conn.connect()?;
            // A statement stuck on a lock or a stalled server must not hold the thread
            // beyond the term it protects.
            let millis = self.conn.timeout().min(TERM).as_millis();
            self.conn.count(1);
            client
                .batch_execute(&format!("SET statement_timeout = {millis}"))
                .map_err(|e| format!("postgres {}: {e}", self.conn.addr()))?;
            self.client = Some(client);
        }
        self.client.as_mut().ok_or_else(|| "no connection".to_string())
    }

    /// One step: a heartbeat when leading, a read (and maybe a take-over) otherwise.
    pub fn tick(&mut self) {
        let sent = Instant::now();
        let result = match self.state {
            State::Leader { rvn } => self.heartbeat(rvn, sent),
            State::Follower { .. } => self.follow(sent),
        };
        if let Err(e) = result {
            // Reconnect on the next tick; a leader keeps its term until it runs out.
            self.client = None;
            if matches!(self.state, State::Leader { .. }) {
                if self.leadership.is_leader() {
                    log::warn!("leader: heartbeat failed ({e}); still leading for {:?}", self.leadership.remaining());
                } else {
                    log::warn!("leader: heartbeats failed for {TERM:?} ({e}); stepping down");
                    self.state = State::Follower { seen: None };
                    self.leadership.step_down();
                }
            } else {
                log::debug!("leader: cannot read the lock ({e})");
            }
        }
    }

    fn heartbeat(&mut self, rvn: i64, sent: Instant) -> Result<(), String> {
        let addr = self.conn.addr().to_string();
        let client = self.client()?;
        let row = client
            .query_opt(
                "UPDATE locks SET record_version_number = nextval('locks_rvn') \
                 WHERE name = $1 AND record_version_number = $2 RETURNING record_version_number",
                &[&LOCK_NAME, &rvn],
            )
            .map_err(|e| format!("postgres {addr}: {e}"))?;
        self.conn.count(1);
        match row.map(|r| r.try_get::<_, i64>(0)) {
            Some(Ok(next)) => {
                self.state = State::Leader { rvn: next };
                self.leadership.hold_until(sent + TERM);
            }
            Some(Err(e)) => return Err(format!("postgres {addr}: unreadable rvn: {e}")),
            None => {
                log::warn!("leader: the lock {LOCK_NAME:?} was taken over; stepping down");
                self.state = State::Follower { seen: None };
                self.leadership.step_down();
            }
        }
        Ok(())
    }

    fn follow(&mut self, now: Instant) -> Result<(), String> {
        let addr = self.conn.addr().to_string();
        let client = self.client()?;
        let row = client
            .query_opt("SELECT record_version_number, owner FROM locks WHERE name = $1", &[&LOCK_NAME])
            .map_err(|e| format!("postgres {addr}: {e}"))?;
        self.conn.count(1);
        let row = match row {
            None => None,
            Some(r) => Some(Row {
                rvn: r.try_get(0).map_err(|e| format!("postgres {addr}: unreadable rvn: {e}"))?,
                owner: r.try_get(1).map_err(|e| format!("postgres {addr}: unreadable owner: {e}"))?,
            }),
        };
        let expected = match (&row, &self.state) {
            // Missing or released: free to take.
            (None, _) | (Some(Row { rvn: None, .. }), _) => None,
            (Some(current), State::Follower { seen: Some((last, since)) }) if last == current => {
                if now.saturating_duration_since(*since) < LEASE {
                    return Ok(());
                }
                log::info!(
                    "leader: {:?} has not renewed {LOCK_NAME:?} for {LEASE:?}; taking over",
                    current.owner.as_deref().unwrap_or("")
                );
                current.rvn
            }
            (Some(current), _) => {
                if self.logged_holder.as_ref() != current.owner.as_ref() {
                    log::info!("leader: {:?} leads; following", current.owner.as_deref().unwrap_or(""));
                    self.logged_holder = current.owner.clone();
                }
                self.state = State::Follower { seen: Some((current.clone(), now)) };
                return Ok(());
            }
        };
        self.acquire(expected, now)
    }

    /// pglock's acquisition in one statement: insert the row, or take it over if it is
    /// released or still has the rvn seen a lease ago.
    fn acquire(&mut self, expected: Option<i64>, sent: Instant) -> Result<(), String> {
        let addr = self.conn.addr().to_string();
        let owner = self.owner.clone();
        let client = self.client()?;
        let row = client
            .query_opt(
                "INSERT INTO locks (name, record_version_number, data, owner) \
                 VALUES ($1, nextval('locks_rvn'), NULL, $2) \
                 ON CONFLICT (name) DO UPDATE SET record_version_number = EXCLUDED.record_version_number, \
                   owner = EXCLUDED.owner \
                 WHERE locks.record_version_number IS NULL OR locks.record_version_number = $3 \
                 RETURNING record_version_number",
                &[&LOCK_NAME, &owner, &expected],
            )
            .map_err(|e| format!("postgres {addr}: {e}"))?;
        self.conn.count(1);
        match row.map(|r| r.try_get::<_, i64>(0)) {
            Some(Ok(rvn)) => {
                log::info!("leader: this instance ({owner}) leads now");
                self.state = State::Leader { rvn };
                self.leadership.hold_until(sent + TERM);
                self.logged_holder = None;
            }
            Some(Err(e)) => return Err(format!("postgres {addr}: unreadable rvn: {e}")),
            // Someone else moved first; read again next tick.
            None => self.state = State::Follower { seen: None },
        }
        Ok(())
    }

    /// Gives the lock up (pglock's release deletes the row), so another instance leads on
    /// its next read instead of after a lease.
    pub fn release(&mut self) {
        let State::Leader { rvn } = self.state else { return };
        self.leadership.step_down();
        self.state = State::Follower { seen: None };
        let Ok(client) = self.client() else { return };
        let done =
            client.execute("DELETE FROM locks WHERE name = $1 AND record_version_number = $2", &[&LOCK_NAME, &rvn]);
        self.conn.count(1);
        match done {
            Ok(1) => log::info!("leader: released {LOCK_NAME:?}"),
            Ok(_) => log::info!("leader: {LOCK_NAME:?} was already taken over"),
            Err(e) => log::warn!("leader: releasing {LOCK_NAME:?} failed ({e}); others take over after the lease"),
        }
    }
}

/// Runs an [`Election`] on its own thread until stopped; stopping releases the lock.
pub struct Elector {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Elector {
    pub fn start(mut election: Election) -> Elector {
        let (stop_tx, stop_rx) = crossbeam_channel::bounded::<()>(0);
        let thread = crate::threads::spawn(crate::threads::LEADER_ELECTION.to_string(), move || {
            loop {
                let started = Instant::now();
                election.tick();
                let wait = HEARTBEAT.saturating_sub(started.elapsed());
                match stop_rx.recv_timeout(wait) {
                    Err(RecvTimeoutError::Timeout) => {}
                    _ => break,
                }
            }
            election.release();
        });
        Elector { stop: Some(stop_tx), thread: Some(thread) }
    }

    /// Stops the election and releases the lock if held.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Elector {
    fn drop(&mut self) {
        self.halt();
    }
}
