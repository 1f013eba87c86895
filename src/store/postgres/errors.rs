//! Errors of the Postgres backend: [`PostgresError`] for start-up and migrations (reported to
//! the operator, then higuma exits), and the mapping of driver errors onto [`StoreError`] for
//! the per-request path, where only connection-level failures are transient.

use postgres::error::SqlState;

use crate::store::StoreError;

/// Why the Postgres store could not be opened or migrated. All kinds are final for the command
/// that hit them: the operator has to fix the address, the schema or the TLS files.
#[derive(Debug, thiserror::Error)]
pub enum PostgresError {
    #[error("cannot connect to Postgres at {addr} (timeout {timeout_secs}s): {reason}")]
    Connect { addr: String, timeout_secs: u64, reason: String },
    #[error(
        "database is not migrated (schema version {}, this higuma needs {expected}): run \"higuma migrate up\"",
        found.map_or_else(|| "none".to_string(), |v| v.to_string())
    )]
    NotMigrated { found: Option<i64>, expected: i64 },
    #[error(
        "database schema version {found} was written by a newer higuma or Kuma (this higuma knows up to \
         {expected}): upgrade higuma, or set store.postgres.tolerateNewerDBVersions during a rolling upgrade"
    )]
    NewerSchema { found: i64, expected: i64 },
    #[error("Postgres TLS setup failed: {reason}")]
    Tls { reason: String },
    #[error("Postgres query failed: {reason}")]
    Query { reason: String },
}

impl PostgresError {
    /// Short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            PostgresError::Connect { .. } => "connect",
            PostgresError::NotMigrated { .. } => "not_migrated",
            PostgresError::NewerSchema { .. } => "newer_schema",
            PostgresError::Tls { .. } => "tls",
            PostgresError::Query { .. } => "query",
        }
    }

    pub(crate) fn query(context: &str, err: &postgres::Error) -> PostgresError {
        PostgresError::Query { reason: format!("{context}: {}", describe(err)) }
    }
}

/// Why opening one connection failed; the pool's `ManageConnection::Error`.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    #[error("{}", describe(.0))]
    Postgres(#[from] postgres::Error),
    /// The TCP connection was accepted but the server never finished the start-up exchange.
    #[error("no answer from the server within {0}s")]
    TimedOut(u64),
    /// Earlier attempts are still blocked on a server that accepts but never answers; starting
    /// more would only pile up blocked threads.
    #[error("{0} earlier connection attempts are still waiting for the server to answer")]
    TooManyHanging(usize),
}

/// The driver's message plus the server's detail, which `postgres::Error`'s `Display` leaves
/// out for some kinds (e.g. "error connecting to server" hides "Connection refused").
pub(crate) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        return format!("{}: {} (SQLSTATE {})", db.severity(), db.message(), db.code().code());
    }
    let mut text = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

/// True when the error says the connection (not the statement) failed: the server is
/// unreachable, restarting or shutting us out, so retrying later can succeed.
pub(crate) fn is_connection_error(err: &postgres::Error) -> bool {
    match err.code() {
        // Without a server error code the failure happened on the wire (I/O, closed
        // connection, TLS, time-out). Conversion errors also lack a code, but the store reads
        // columns through `row_error`, so they never reach this function.
        None => true,
        Some(code) => is_transient_state(code),
    }
}

fn is_transient_state(code: &SqlState) -> bool {
    let code = code.code();
    // Class 08: connection exception; 57P01-57P05: admin/crash shutdown, cannot connect now,
    // database dropped, idle session timeout; class 53: insufficient resources (too many
    // connections, out of memory or disk).
    code.starts_with("08") || code.starts_with("57P") || code.starts_with("53")
}

/// Maps a driver error of a store operation onto the store's error kinds.
pub(crate) fn store_error(addr: &str, err: &postgres::Error) -> StoreError {
    if is_connection_error(err) {
        StoreError::Unavailable(format!("postgres {addr}: {}", describe(err)))
    } else {
        StoreError::Internal(format!("postgres {addr}: {}", describe(err)))
    }
}

/// A checkout that failed: the pool gave up waiting for a connection, which means the server
/// is unreachable or every connection is busy for longer than the connection timeout.
pub(crate) fn pool_error(addr: &str, err: &r2d2::Error) -> StoreError {
    StoreError::Unavailable(format!("postgres {addr}: {err}"))
}
