//! `store.postgres.readReplica` (Kuma 2.5+): a pool on a read replica and [`ReplicaReads`],
//! the store view the REST API reads through.
//!
//! Only the API's plain reads (GET of a resource or a list) go to the replica, for `ratio`
//! percent of calls. Everything else stays on the primary: config generation reacts to the
//! primary's change notifications and must read what they announce (a lagging replica may
//! not have it yet, and nothing would correct the stale config until the next change), and
//! a read-modify-write (PUT) must compare against the primary's version. A replica that
//! fails a read is not retried on: the read goes to the primary, so a replica outage costs
//! nothing but the replica's share of the load. No LISTEN runs on the replica (a hot standby
//! refuses it).

use std::sync::Arc;

use super::connection::{self, Connector, Pool};
use super::errors::{pool_error, PostgresError};
use super::{PostgresStore, QueryCounts};
use crate::config::PostgresConfig;
use crate::model::{Resource, ResourceKey, ResourceType, Spec};
use crate::store::{ChangeEvent, ResourceStore, Result, StoreError};

/// `application_name` of the replica pool's connections.
pub const REPLICA_APPLICATION_NAME: &str = "higuma-replica";

#[derive(Debug)]
pub(crate) struct Replica {
    pool: Pool,
    addr: String,
    /// Percent of API reads sent here.
    ratio: u32,
}

impl Replica {
    /// The replica pool, when one is configured. Nothing connects yet: a replica that is
    /// down at start must not keep the primary's control plane from starting.
    pub(crate) fn from_config(
        cfg: &PostgresConfig,
        queries: &Arc<QueryCounts>,
    ) -> std::result::Result<Option<Replica>, PostgresError> {
        let r = &cfg.read_replica;
        if r.host.is_empty() {
            return Ok(None);
        }
        let mut replica_cfg = cfg.clone();
        replica_cfg.host = r.host.clone();
        replica_cfg.port = r.port;
        // Idle replica connections are not kept warm: reads are a share of API traffic.
        replica_cfg.min_open_connections = 0;
        let connector = Connector::new(&replica_cfg, REPLICA_APPLICATION_NAME)?.counting(queries.clone());
        let addr = connector.addr.clone();
        log::info!("store: API reads go to the read replica at {addr} ({}% of them)", r.ratio);
        Ok(Some(Replica { pool: connection::pool(&replica_cfg, connector), addr, ratio: r.ratio }))
    }
}

/// The REST API's view of a Postgres store with a read replica: `get` and `list` on the
/// replica for `ratio` percent of calls (on the primary when the replica fails), every
/// other call on the primary.
#[derive(Debug)]
pub struct ReplicaReads {
    primary: Arc<PostgresStore>,
}

impl ReplicaReads {
    /// The view, if `store` has a replica configured.
    pub fn of(store: &Arc<PostgresStore>) -> Option<ReplicaReads> {
        store.replica.as_ref()?;
        Some(ReplicaReads { primary: store.clone() })
    }

    /// A replica connection for this call, if this call goes to the replica.
    fn replica_conn(&self) -> Option<(r2d2::PooledConnection<connection::Manager>, &str)> {
        let r = self.primary.replica.as_ref()?;
        if fastrand::u32(0..100) >= r.ratio || self.primary.health.down_since().is_some() {
            return None;
        }
        match r.pool.get_timeout(self.primary.timeout) {
            Ok(conn) => Some((conn, r.addr.as_str())),
            Err(e) => {
                log::warn!("store: {}; reading from the primary", pool_error(&r.addr, &e));
                None
            }
        }
    }

    /// `read` on the replica when this call goes there and it answers, else on the primary.
    fn read<T>(
        &self,
        on: impl Fn(&mut postgres::Client, &str) -> Result<T>,
        primary: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        if let Some((mut conn, addr)) = self.replica_conn() {
            match on(&mut conn, addr) {
                Ok(v) => return Ok(v),
                Err(e @ (StoreError::NotFound(_) | StoreError::Internal(_))) => return Err(e),
                Err(e) => log::warn!("store: {e}; reading from the primary"),
            }
        }
        primary()
    }
}

impl ResourceStore for ReplicaReads {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>> {
        self.read(|conn, addr| self.primary.get_on(conn, addr, key), || self.primary.get(key))
    }

    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>> {
        self.read(|conn, addr| self.primary.list_on(conn, addr, rtype, mesh), || self.primary.list(rtype, mesh))
    }

    fn create(&self, mesh: &str, name: &str, spec: Spec) -> Result<Arc<Resource>> {
        self.primary.create(mesh, name, spec)
    }

    fn update(&self, key: &ResourceKey, spec: Spec, expected_version: u64) -> Result<Arc<Resource>> {
        self.primary.update(key, spec, expected_version)
    }

    fn delete(&self, key: &ResourceKey) -> Result<()> {
        self.primary.delete(key)
    }

    fn get_batch(&self, keys: &[ResourceKey]) -> Result<Vec<Option<Arc<Resource>>>> {
        self.primary.get_batch(keys)
    }

    fn write_batch(&self, writes: Vec<crate::store::BatchWrite>) -> Result<Vec<Result<()>>> {
        self.primary.write_batch(writes)
    }

    fn subscribe(&self) -> crossbeam_channel::Receiver<ChangeEvent> {
        self.primary.subscribe()
    }

    fn backend(&self) -> &'static str {
        self.primary.backend()
    }

    fn ping(&self) -> Result<()> {
        self.primary.ping()
    }
}
