//! The Postgres backend (`store.type: postgres`), sharing Kuma's schema (2.4 up to 2.14) so kuma-cp and
//! higuma can use the same database.
//!
//! - `batch`: many reads or writes in a few statements (the status writer's flushes).
//! - `connection`: `postgres::Config` and TLS from the config, bounded connects, the r2d2 pool.
//! - `migrations`: the embedded schema, `migrate up`, the start-up version check.
//! - `listener`: the `LISTEN resource_events` thread that produces the store's change events.
//! - `replica`: `store.postgres.readReplica`, the pool and the view the REST API reads through.
//! - `health`: what the listener knows about the database (listening; known down, when every
//!   call fails at once), and the per-source query counters.
//! - `errors`: [`PostgresError`] and the mapping of driver errors onto [`StoreError`].
//!
//! Semantics follow Kuma's Postgres store: versions start at 0, every update is a
//! compare-and-swap on the `version` column, cascading deletes are done by Postgres through
//! the owner foreign key (mesh-scoped resources are owned by their Mesh row, a
//! DataplaneInsight by its Dataplane row), and change events come from the trigger's
//! notifications, so writes made by other instances are heard too.

mod batch;
mod connection;
mod errors;
mod health;
mod listener;
mod migrations;
mod replica;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use postgres::error::SqlState;
use postgres::Row;

pub use connection::{
    IDLE_CONNECTION_TIMEOUT, LISTENER_APPLICATION_NAME, MIGRATE_APPLICATION_NAME, POOL_APPLICATION_NAME,
    UNLIMITED_POOL_SIZE,
};
pub use errors::PostgresError;
pub use health::QueryCounts;
pub use migrations::{migrate_up, MigrateOutcome, KUMA_2_4_SCHEMA_VERSION, SCHEMA_VERSION};
pub use replica::{ReplicaReads, REPLICA_APPLICATION_NAME};

use self::connection::{Connector, Pool};
use self::errors::{pool_error, store_error};
use self::health::Health;
use self::listener::{Listener, PendingSubscriptions, SYNC_CHANNEL};
use super::{owner_of, BatchWrite, ChangeEvent, EventBus, ResourceStore, Result, StoreError};
use crate::config::PostgresConfig;
use crate::model::{Meta, Resource, ResourceKey, ResourceType, Spec};

/// Pool figures for metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// `maxOpenConnections` (or [`UNLIMITED_POOL_SIZE`] for 0).
    pub max: u32,
    /// Connections open now, busy or idle.
    pub open: u32,
    pub idle: u32,
}

/// A [`ResourceStore`] on Postgres: a connection pool for reads and writes, plus the change
/// listener thread, which is stopped and joined on drop.
#[derive(Debug)]
pub struct PostgresStore {
    pool: Pool,
    /// `host:port`, in every error message.
    addr: String,
    /// `connectionTimeout`: the longest wait for a pooled connection.
    timeout: Duration,
    events: Arc<EventBus>,
    /// Subscribers waiting for their marker to come through the listener.
    pending: Arc<PendingSubscriptions>,
    /// Makes markers unique among the instances sharing the database.
    instance_id: u64,
    next_marker: AtomicU64,
    health: Arc<Health>,
    queries: Arc<QueryCounts>,
    /// `store.postgres.readReplica`, when set (see [`ReplicaReads`]).
    replica: Option<replica::Replica>,
    listener: Listener,
}

impl PostgresStore {
    /// Connects (failing within connectionTimeout with an error naming host:port), checks the
    /// schema version, starts the listener thread.
    pub fn connect(cfg: &PostgresConfig) -> std::result::Result<PostgresStore, PostgresError> {
        let queries = Arc::new(QueryCounts::default());
        let connector = Connector::new(cfg, POOL_APPLICATION_NAME)?.counting(queries.clone());
        let listener_connector = connector.with_application_name(LISTENER_APPLICATION_NAME);
        let (addr, timeout) = (connector.addr.clone(), connector.timeout);
        // The listener's connection comes first: it reports the driver's reason at once
        // (refused, bad password), where a pool checkout would wait out the whole timeout
        // while r2d2 retries in the background.
        let mut listen_client = listener_connector.connect_or_report()?;
        migrations::check_schema(&mut listen_client, cfg.tolerate_newer_db_versions)?;
        listener::subscribe(&mut listen_client).map_err(|e| PostgresError::query("LISTEN failed", &e))?;
        let pool = connection::pool(cfg, connector);
        // One checkout proves the pool's own settings work (e.g. its application_name).
        pool.get_timeout(timeout).map_err(|e| PostgresError::Connect {
            addr: addr.clone(),
            timeout_secs: timeout.as_secs(),
            reason: e.to_string(),
        })?;
        let events = Arc::new(EventBus::default());
        let pending = Arc::new(PendingSubscriptions::default());
        let health = Arc::new(Health::default());
        let listener = Listener::start(
            listen_client,
            listener_connector,
            events.clone(),
            pending.clone(),
            listener::Settings {
                max_backoff: cfg.max_reconnect_interval.as_std(),
                health_check_interval: cfg.health_check_interval.as_std(),
            },
            health.clone(),
            queries.clone(),
        );
        log::info!("connected to Postgres at {addr}, database {:?}", cfg.db_name);
        let replica = replica::Replica::from_config(cfg, &queries)?;
        Ok(PostgresStore {
            pool,
            addr,
            timeout,
            events,
            pending,
            instance_id: fastrand::u64(..),
            next_marker: AtomicU64::new(0),
            health,
            queries,
            replica,
            listener,
        })
    }

    /// Statements sent to Postgres so far, by source (`store_postgres_queries_total`).
    pub fn queries(&self) -> Arc<QueryCounts> {
        self.queries.clone()
    }

    /// Whether the change listener is connected: writes made on other instances reach this
    /// one only while it is (`store_postgres_listener_connected`).
    pub fn listening(&self) -> bool {
        self.health.listening()
    }

    /// Whether Postgres is known to be down right now (every call fails at once meanwhile).
    pub fn known_down(&self) -> bool {
        self.health.down_since().is_some()
    }

    /// A connector for another component's own connections (leader election) to the same
    /// server, counting its statements under `leader`.
    pub fn leader_connector(&self, cfg: &PostgresConfig) -> std::result::Result<LeaderConnection, PostgresError> {
        Ok(LeaderConnection { connector: Connector::new(cfg, LEADER_APPLICATION_NAME)?, queries: self.queries.clone() })
    }

    /// Pool figures for metrics: max size, open connections, idle connections.
    pub fn pool_stats(&self) -> PoolStats {
        let state = self.pool.state();
        PoolStats { max: self.pool.max_size(), open: state.connections, idle: state.idle_connections }
    }

    /// The readiness check: Postgres answers (a checkout, which the pool validates with an
    /// empty query bounded by the connection timeout) and the change listener is connected,
    /// without which writes made on other instances would not reach this instance's
    /// dataplanes.
    pub fn ping(&self) -> Result<()> {
        drop(self.conn()?);
        if !self.health.listening() {
            return Err(StoreError::Unavailable(format!(
                "postgres {}: the change listener is reconnecting; changes made on other instances cannot arrive",
                self.addr
            )));
        }
        Ok(())
    }

    fn count(&self, statements: u64) {
        QueryCounts::add(&self.queries.pool, statements);
    }

    /// Whether the pooled connection used for this call is encrypted; for the TLS tests.
    #[doc(hidden)]
    pub fn query_ssl_in_use(&self) -> Result<bool> {
        let mut conn = self.conn()?;
        let row = conn
            .query_one("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()", &[])
            .map_err(|e| store_error(&self.addr, &e))?;
        row.try_get(0).map_err(|e| StoreError::Internal(format!("postgres {}: pg_stat_ssl: {e}", self.addr)))
    }

    /// A pooled connection; fails at once while Postgres is known to be down (a checkout
    /// would wait out the whole connection timeout). A failed checkout has the listener
    /// check its own connection, which decides whether Postgres is down.
    fn conn(&self) -> Result<r2d2::PooledConnection<connection::Manager>> {
        if let Some(since) = self.health.down_since() {
            return Err(StoreError::Unavailable(format!(
                "postgres {}: not answering since {since}; retried in the background",
                self.addr
            )));
        }
        self.pool.get_timeout(self.timeout).map_err(|e| {
            self.health.request_probe();
            pool_error(&self.addr, &e)
        })
    }

    fn internal(&self, what: String) -> StoreError {
        StoreError::Internal(format!("postgres {}: {what}", self.addr))
    }

    /// Builds a resource from `spec, version, creation_time, modification_time` starting at
    /// column `first`. A row that no longer decodes is an error naming its key, never a panic.
    fn decode(&self, key: &ResourceKey, row: &Row, first: usize) -> Result<Arc<Resource>> {
        let bad = |what: &dyn std::fmt::Display| self.internal(format!("stored {key} cannot be read: {what}"));
        let spec: Option<String> = row.try_get(first).map_err(|e| bad(&e))?;
        let spec = spec.ok_or_else(|| bad(&"its spec is NULL"))?;
        let value: serde_json::Value = serde_json::from_str(&spec).map_err(|e| bad(&e))?;
        let spec = Spec::from_json(key.rtype, value).map_err(|e| bad(&e))?;
        let version: i32 = row.try_get(first + 1).map_err(|e| bad(&e))?;
        let version = u64::try_from(version).map_err(|_| bad(&format!("negative version {version}")))?;
        let creation_time: SystemTime = row.try_get(first + 2).map_err(|e| bad(&e))?;
        let modification_time: SystemTime = row.try_get(first + 3).map_err(|e| bad(&e))?;
        Ok(Arc::new(Resource {
            meta: Meta { mesh: key.mesh.clone(), name: key.name.clone(), version, creation_time, modification_time },
            spec,
        }))
    }

    fn encode(&self, spec: &Spec) -> Result<String> {
        serde_json::to_string(&spec.to_json()).map_err(|e| self.internal(format!("cannot encode a spec: {e}")))
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.listener.stop();
    }
}

/// Now, cut to the microseconds a `timestamp` column keeps, so the times a write returns are
/// exactly the ones a later read sees.
fn now_micros() -> SystemTime {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    UNIX_EPOCH + Duration::from_micros(u64::try_from(since_epoch.as_micros()).unwrap_or(u64::MAX))
}

impl ResourceStore for PostgresStore {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>> {
        let mut conn = self.conn()?;
        self.get_on(&mut conn, &self.addr, key)
    }

    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>> {
        let mut conn = self.conn()?;
        self.list_on(&mut conn, &self.addr, rtype, mesh)
    }

    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<Resource>> {
        let key = ResourceKey::new(spec.resource_type(), mesh, name);
        let spec_text = self.encode(&spec)?;
        let now = now_micros();
        let owner = owner_of(&key);
        let (owner_name, owner_mesh, owner_type) = match &owner {
            Some(o) => (Some(o.name.as_str()), Some(o.mesh.as_str()), Some(o.rtype.name())),
            None => (None, None, None),
        };
        // Named columns, unlike Kuma's positional VALUES, so columns later Kuma versions add
        // (labels, status: both with defaults) do not break higuma on a shared database.
        let mut conn = self.conn()?;
        self.count(1);
        let inserted = conn.execute(
            "INSERT INTO resources (name, mesh, type, version, spec, creation_time, modification_time, \
             owner_name, owner_mesh, owner_type) VALUES ($1, $2, $3, 0, $4, $5, $5, $6, $7, $8)",
            &[&key.name, &key.mesh, &key.rtype.name(), &spec_text, &now, &owner_name, &owner_mesh, &owner_type],
        );
        match inserted {
            Ok(_) => {}
            Err(e) if e.code() == Some(&SqlState::UNIQUE_VIOLATION) => return Err(StoreError::AlreadyExists(key)),
            Err(e) if e.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                return Err(match owner {
                    Some(owner) if owner.rtype == ResourceType::Mesh => StoreError::MeshNotFound(owner.name),
                    Some(owner) => StoreError::OwnerNotFound { key, owner },
                    None => store_error(&self.addr, &e),
                })
            }
            Err(e) => return Err(store_error(&self.addr, &e)),
        }
        Ok(Arc::new(Resource {
            meta: Meta { mesh: key.mesh, name: key.name, version: 0, creation_time: now, modification_time: now },
            spec,
        }))
    }

    fn update(&self, key: &ResourceKey, spec: Spec, expected_version: u64) -> Result<Arc<Resource>> {
        if spec.resource_type() != key.rtype {
            return Err(StoreError::Internal(format!("cannot store a {} spec under {key}", spec.resource_type())));
        }
        let spec_text = self.encode(&spec)?;
        let mut conn = self.conn()?;
        // The column is an integer: a version beyond it cannot be the stored one.
        let Ok(expected) = i32::try_from(expected_version) else {
            return Err(self.missing_or_conflict(&mut conn, key));
        };
        // GREATEST keeps modification >= creation should the clock step back.
        self.count(1);
        let row = conn
            .query_opt(
                "UPDATE resources SET spec = $1, version = version + 1, \
                 modification_time = GREATEST($2, creation_time) \
                 WHERE name = $3 AND mesh = $4 AND type = $5 AND version = $6 \
                 RETURNING version, creation_time, modification_time",
                &[&spec_text, &now_micros(), &key.name, &key.mesh, &key.rtype.name(), &expected],
            )
            .map_err(|e| store_error(&self.addr, &e))?;
        let Some(row) = row else {
            return Err(self.missing_or_conflict(&mut conn, key));
        };
        let bad = |e: postgres::Error| self.internal(format!("updated {key} cannot be read: {e}"));
        let version: i32 = row.try_get(0).map_err(bad)?;
        Ok(Arc::new(Resource {
            meta: Meta {
                mesh: key.mesh.clone(),
                name: key.name.clone(),
                version: u64::try_from(version).map_err(|_| self.internal(format!("{key} has version {version}")))?,
                creation_time: row.try_get(1).map_err(bad)?,
                modification_time: row.try_get(2).map_err(bad)?,
            },
            spec,
        }))
    }

    fn delete(&self, key: &ResourceKey) -> Result<()> {
        // Owned rows go with it through ON DELETE CASCADE; the trigger notifies each of them.
        let mut conn = self.conn()?;
        self.count(1);
        let deleted = conn
            .execute(
                "DELETE FROM resources WHERE name = $1 AND mesh = $2 AND type = $3",
                &[&key.name, &key.mesh, &key.rtype.name()],
            )
            .map_err(|e| store_error(&self.addr, &e))?;
        if deleted == 0 {
            return Err(StoreError::NotFound(key.clone()));
        }
        Ok(())
    }

    /// Waits (at most the connection timeout) for a marker to pass through the listener, so
    /// the receiver starts exactly after every write that finished before this call. If the
    /// marker cannot be sent or does not come back (database unreachable), the receiver is
    /// created at once and may also see a few earlier changes, which subscribers tolerate
    /// like any duplicate event.
    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent> {
        let marker = format!("{:016x}-{}", self.instance_id, self.next_marker.fetch_add(1, Ordering::Relaxed));
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.pending.add(marker.clone(), tx);
        let sent = self
            .conn()
            .and_then(|mut conn| {
                self.count(1);
                conn.execute("SELECT pg_notify($1, $2)", &[&SYNC_CHANNEL, &marker])
                    .map_err(|e| store_error(&self.addr, &e))
            })
            .map(drop);
        if let Err(e) = &sent {
            log::debug!("postgres {}: subscribing without a marker: {e}", self.addr);
        } else if let Ok(receiver) = rx.recv_timeout(self.timeout) {
            return receiver;
        }
        // The listener may have answered between the time-out and this removal.
        self.pending.remove(&marker);
        rx.try_recv().unwrap_or_else(|_| self.events.subscribe())
    }

    fn get_batch(&self, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        self.get_batch_rows(keys)
    }

    fn write_batch(&self, writes: Vec<BatchWrite>) -> Result<Vec<Result<()>>> {
        self.write_batch_rows(writes)
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn ping(&self) -> Result<()> {
        PostgresStore::ping(self)
    }
}

impl PostgresStore {
    /// `get` on `conn` (the primary's or the replica's, at `addr`).
    fn get_on(&self, conn: &mut postgres::Client, addr: &str, key: &ResourceKey) -> Result<Arc<Resource>> {
        self.count(1);
        let row = conn
            .query_opt(
                "SELECT spec, version, creation_time, modification_time FROM resources \
                 WHERE name = $1 AND mesh = $2 AND type = $3",
                &[&key.name, &key.mesh, &key.rtype.name()],
            )
            .map_err(|e| store_error(addr, &e))?;
        match row {
            Some(row) => self.decode(key, &row, 0),
            None => Err(StoreError::NotFound(key.clone())),
        }
    }

    /// `list` on `conn` (the primary's or the replica's, at `addr`).
    fn list_on(
        &self,
        conn: &mut postgres::Client,
        addr: &str,
        rtype: ResourceType,
        mesh: Option<&str>,
    ) -> Result<Vec<Arc<Resource>>> {
        // Byte order (COLLATE "C"), as the memory store sorts, whatever the database's
        // collation. Filtering on a known type name skips rows of types higuma does not know.
        const COLUMNS: &str = "SELECT name, mesh, spec, version, creation_time, modification_time FROM resources";
        const ORDER: &str = "ORDER BY mesh COLLATE \"C\", name COLLATE \"C\"";
        self.count(1);
        let rows = match mesh {
            Some(mesh) => {
                conn.query(&format!("{COLUMNS} WHERE type = $1 AND mesh = $2 {ORDER}"), &[&rtype.name(), &mesh])
            }
            None => conn.query(&format!("{COLUMNS} WHERE type = $1 {ORDER}"), &[&rtype.name()]),
        }
        .map_err(|e| store_error(addr, &e))?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get(0).map_err(|e| self.internal(format!("a {rtype} row: {e}")))?;
                let mesh: String = row.try_get(1).map_err(|e| self.internal(format!("a {rtype} row: {e}")))?;
                self.decode(&ResourceKey { rtype, mesh, name }, row, 2)
            })
            .collect()
    }

    /// After a compare-and-swap matched no row: `Conflict` if the resource exists (another
    /// writer moved its version), else `NotFound`.
    fn missing_or_conflict(&self, conn: &mut postgres::Client, key: &ResourceKey) -> StoreError {
        self.count(1);
        match conn.query_opt(
            "SELECT 1 FROM resources WHERE name = $1 AND mesh = $2 AND type = $3",
            &[&key.name, &key.mesh, &key.rtype.name()],
        ) {
            Ok(Some(_)) => StoreError::Conflict(key.clone()),
            Ok(None) => StoreError::NotFound(key.clone()),
            Err(e) => store_error(&self.addr, &e),
        }
    }
}

/// `application_name` of the leader election's connection.
pub const LEADER_APPLICATION_NAME: &str = "higuma-leader";

/// Opens the leader election's own connections (outside the pool, so a busy pool never
/// delays a heartbeat) and counts their statements.
#[derive(Clone, Debug)]
pub struct LeaderConnection {
    connector: Connector,
    queries: Arc<QueryCounts>,
}

impl LeaderConnection {
    /// One connection, within the connection timeout; the error names the server.
    pub fn connect(&self) -> std::result::Result<postgres::Client, String> {
        QueryCounts::add(&self.queries.leader, 1);
        self.connector.connect().map_err(|e| format!("postgres {}: {e}", self.connector.addr))
    }

    /// Counts `n` statements sent on a connection from [`connect`](Self::connect).
    pub fn count(&self, n: u64) {
        QueryCounts::add(&self.queries.leader, n);
    }

    /// `host:port`, for log lines.
    pub fn addr(&self) -> &str {
        &self.connector.addr
    }

    /// The connection timeout, which bounds each statement's wait too.
    pub fn timeout(&self) -> Duration {
        self.connector.timeout
    }
}
