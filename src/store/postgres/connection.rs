//! Opening connections: `postgres::Config` and the TLS connector from [`PostgresConfig`],
//! a start-up exchange bounded by the connection timeout, and the r2d2 pool.
//!
//! How Kuma's pool settings map onto r2d2:
//! - `maxOpenConnections` → `max_size` (0 = unlimited, see [`UNLIMITED_POOL_SIZE`]);
//! - `minOpenConnections` → `min_idle`: the pool keeps that many connections and opens none
//!   eagerly beyond it;
//! - `connectionTimeout` → both the wait for a pooled connection (`connection_timeout`) and
//!   the time one new connection may take, TCP connect and start-up exchange included;
//! - `maxConnectionLifetime` → `max_lifetime` (0 = no limit);
//! - `maxIdleConnections`: r2d2 has no cap on the number of idle connections, only an idle
//!   time-out. When `maxIdleConnections` is below `maxOpenConnections` (or the pool is
//!   unlimited), idle connections above `minOpenConnections` are closed after
//!   [`IDLE_CONNECTION_TIMEOUT`]; otherwise (Kuma's default, 50/50) they are kept, which is
//!   what `database/sql` does with that setting.
//! - `maxConnectionLifetimeJitter` and `healthCheckInterval` have no r2d2 equivalent. Instead
//!   of a periodic health check, r2d2 tests every connection when it is checked out (a
//!   one-round-trip empty query), so a connection the server closed is replaced before use.
//!   (The change listener does use `healthCheckInterval` to probe its own quiet connection.)

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use postgres::config::SslMode;
use postgres::Client;
use postgres_openssl::MakeTlsConnector;

use super::errors::{ConnectError, PostgresError};
use super::health::QueryCounts;
use crate::config::{PostgresConfig, PostgresTlsConfig, TlsMode};

/// `application_name` of the store's pooled connections (visible in `pg_stat_activity`).
pub const POOL_APPLICATION_NAME: &str = "higuma";
/// `application_name` of the change listener's connection.
pub const LISTENER_APPLICATION_NAME: &str = "higuma-listener";
/// `application_name` of `higuma migrate up`.
pub const MIGRATE_APPLICATION_NAME: &str = "higuma-migrate";

/// `maxOpenConnections: 0` means "no limit" in Kuma; r2d2 needs a number. Postgres' own
/// `max_connections` stops the pool long before this.
pub const UNLIMITED_POOL_SIZE: u32 = 10_000;
/// How long an idle connection above `minOpenConnections` lives when `maxIdleConnections`
/// asks for idle connections to be closed (r2d2 can only close them by age).
pub const IDLE_CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);
/// Connection attempts stuck on a server that accepts TCP but never answers are abandoned
/// after the timeout, but their threads stay blocked until the server closes the socket.
/// Past this many such threads, new attempts fail at once instead of adding more.
const MAX_HANGING_CONNECTS: usize = 4;

/// Opens single connections to one server with one `application_name`.
#[derive(Clone)]
pub(crate) struct Connector {
    config: postgres::Config,
    tls: MakeTlsConnector,
    /// `host:port`, for error messages.
    pub(crate) addr: String,
    pub(crate) timeout: Duration,
    /// Attempts given up on whose thread has not returned yet.
    hanging: Arc<AtomicUsize>,
    /// Where the pool counts its connects and checkout checks.
    queries: Option<Arc<QueryCounts>>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password; show only where it points.
        f.debug_struct("Connector").field("addr", &self.addr).field("timeout", &self.timeout).finish()
    }
}

impl Connector {
    pub(crate) fn new(cfg: &PostgresConfig, application_name: &str) -> Result<Connector, PostgresError> {
        let timeout = connection_timeout(cfg);
        let mut config = postgres::Config::new();
        config
            .host(&cfg.host)
            .port(cfg.port)
            .user(&cfg.user)
            .password(&cfg.password)
            .dbname(&cfg.db_name)
            .application_name(application_name)
            .connect_timeout(timeout)
            .ssl_mode(match cfg.tls.mode {
                TlsMode::Disable => SslMode::Disable,
                TlsMode::VerifyNone | TlsMode::VerifyCa | TlsMode::VerifyFull => SslMode::Require,
            });
        Ok(Connector {
            config,
            tls: tls_connector(&cfg.tls)?,
            addr: format!("{}:{}", cfg.host, cfg.port),
            timeout,
            hanging: Arc::new(AtomicUsize::new(0)),
            queries: None,
        })
    }

    /// Counts the pool's connects and checkout checks into `queries`.
    pub(crate) fn counting(mut self, queries: Arc<QueryCounts>) -> Connector {
        self.queries = Some(queries);
        self
    }

    fn count(&self) {
        if let Some(q) = &self.queries {
            QueryCounts::add(&q.pool, 1);
        }
    }

    /// The same server with another `application_name` (and its own hanging-attempt budget).
    pub(crate) fn with_application_name(&self, application_name: &str) -> Connector {
        let mut other = self.clone();
        other.config.application_name(application_name);
        other.hanging = Arc::new(AtomicUsize::new(0));
        other.queries = None;
        other
    }

    /// Opens one connection, giving up after the connection timeout. The driver's
    /// `connect_timeout` bounds only the TCP connect; a server (or proxy) that accepts and
    /// then stays silent would block the start-up exchange forever, so the attempt runs on a
    /// helper thread and is abandoned when the timeout passes.
    pub(crate) fn connect(&self) -> Result<Client, ConnectError> {
        let hanging = self.hanging.load(Ordering::SeqCst);
        if hanging >= MAX_HANGING_CONNECTS {
            return Err(ConnectError::TooManyHanging(hanging));
        }
        // A rendezvous channel: the helper's `send` returns only once the result was taken or
        // the receiver is gone, so an abandoned helper always knows it was abandoned.
        let (tx, rx) = crossbeam_channel::bounded(0);
        let (config, tls, hanging) = (self.config.clone(), self.tls.clone(), self.hanging.clone());
        crate::threads::spawn(crate::threads::PG_CONNECT.to_string(), move || {
            if tx.send(config.connect(tls)).is_err() {
                // Abandoned (counted by the caller before it dropped the receiver); the client,
                // if the server finally answered, is dropped here.
                hanging.fetch_sub(1, Ordering::SeqCst);
            }
        });
        match rx.recv_timeout(self.timeout) {
            Ok(result) => Ok(result?),
            Err(_) => {
                self.hanging.fetch_add(1, Ordering::SeqCst);
                drop(rx);
                Err(ConnectError::TimedOut(self.timeout.as_secs()))
            }
        }
    }
}

/// `connectionTimeout` as a Duration. Validation rejects 0; should one get here anyway, one
/// second keeps r2d2 (which panics on a zero timeout) and the bounded connect working.
fn connection_timeout(cfg: &PostgresConfig) -> Duration {
    Duration::from_secs(cfg.connection_timeout.max(1))
}

/// Builds the TLS connector for `store.postgres.tls`. With `mode: disable` the connector is
/// never used (the driver does not ask for TLS), but one connector type keeps the pool simple.
fn tls_connector(tls: &PostgresTlsConfig) -> Result<MakeTlsConnector, PostgresError> {
    let tls_err = |what: &str, e: &dyn std::fmt::Display| PostgresError::Tls { reason: format!("{what}: {e}") };
    let mut builder =
        SslConnector::builder(SslMethod::tls()).map_err(|e| tls_err("cannot create a TLS context", &e))?;
    match tls.mode {
        TlsMode::Disable | TlsMode::VerifyNone => builder.set_verify(SslVerifyMode::NONE),
        TlsMode::VerifyCa | TlsMode::VerifyFull => {
            // Without caPath the system's trust store (set by `SslConnector::builder`) is used.
            if !tls.ca_path.is_empty() {
                check_readable(&tls.ca_path, "caPath")?;
                builder
                    .set_ca_file(&tls.ca_path)
                    .map_err(|e| tls_err(&format!("cannot load CA certificates from caPath {:?}", tls.ca_path), &e))?;
            }
        }
    }
    if !tls.cert_path.is_empty() {
        check_readable(&tls.cert_path, "certPath")?;
        builder.set_certificate_chain_file(&tls.cert_path).map_err(|e| {
            tls_err(&format!("cannot load the client certificate from certPath {:?}", tls.cert_path), &e)
        })?;
    }
    if !tls.key_path.is_empty() {
        check_readable(&tls.key_path, "keyPath")?;
        builder
            .set_private_key_file(&tls.key_path, SslFiletype::PEM)
            .map_err(|e| tls_err(&format!("cannot load the client key from keyPath {:?}", tls.key_path), &e))?;
    }
    let mut connector = MakeTlsConnector::new(builder.build());
    // libpq's verify-ca checks the chain only; verify-full (openssl's default here) also
    // checks that the certificate names the host (an IP SAN for an IP address).
    let verify_hostname = tls.mode == TlsMode::VerifyFull;
    let sni = !tls.disable_sslsni;
    connector.set_callback(move |c, _domain| {
        c.set_verify_hostname(verify_hostname);
        c.set_use_server_name_indication(sni);
        Ok(())
    });
    Ok(connector)
}

/// Fails with the file's path and the OS reason, which openssl's error stack does not name.
fn check_readable(path: &str, key: &str) -> Result<(), PostgresError> {
    std::fs::File::open(path)
        .map(drop)
        .map_err(|e| PostgresError::Tls { reason: format!("cannot read {key} {path:?}: {e}") })
}

/// r2d2's view of a [`Connector`].
#[derive(Debug)]
pub(crate) struct Manager(pub(crate) Connector);

impl r2d2::ManageConnection for Manager {
    type Connection = Client;
    type Error = ConnectError;

    fn connect(&self) -> Result<Client, ConnectError> {
        self.0.count();
        self.0.connect()
    }

    fn is_valid(&self, client: &mut Client) -> Result<(), ConnectError> {
        // Bounded, so a checkout never waits on a server that stopped answering.
        self.0.count();
        Ok(client.is_valid(self.0.timeout)?)
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }
}

/// Logs failed connection attempts as warnings (r2d2's default logs them as errors, once per
/// retry, which floods the log while the database is down).
#[derive(Debug)]
struct WarnOnError(String);

impl r2d2::HandleError<ConnectError> for WarnOnError {
    fn handle_error(&self, error: ConnectError) {
        log::warn!("postgres {}: cannot open a pooled connection: {error}", self.0);
    }
}

pub(crate) type Pool = r2d2::Pool<Manager>;

/// Builds the pool without opening anything: `build` would block until `min_idle`
/// connections exist, with no bound when the server is unreachable. The caller checks
/// connectivity with one bounded checkout.
pub(crate) fn pool(cfg: &PostgresConfig, connector: Connector) -> Pool {
    let max_size = if cfg.max_open_connections == 0 { UNLIMITED_POOL_SIZE } else { cfg.max_open_connections };
    let max_lifetime = cfg.max_connection_lifetime.as_std();
    // `Config::derive` lowers the idle limit to the open one, so "idle = open" means every
    // open connection may stay.
    let keep_idle = cfg.max_open_connections != 0 && cfg.max_idle_connections >= cfg.max_open_connections;
    r2d2::Pool::builder()
        .max_size(max_size)
        // r2d2 panics when min_idle exceeds max_size; validation already rejects that.
        .min_idle(Some(cfg.min_open_connections.min(max_size)))
        .connection_timeout(connector.timeout)
        .max_lifetime((!max_lifetime.is_zero()).then_some(max_lifetime))
        .idle_timeout((!keep_idle).then_some(IDLE_CONNECTION_TIMEOUT))
        .test_on_check_out(true)
        .error_handler(Box::new(WarnOnError(connector.addr.clone())))
        .build_unchecked(Manager(connector))
}

impl Connector {
    /// [`Connector::connect`] for start-up, where a failure ends the command and the operator
    /// needs the address and the timeout.
    pub(crate) fn connect_or_report(&self) -> Result<Client, PostgresError> {
        self.connect().map_err(|e| PostgresError::Connect {
            addr: self.addr.clone(),
            timeout_secs: self.timeout.as_secs(),
            reason: e.to_string(),
        })
    }
}
