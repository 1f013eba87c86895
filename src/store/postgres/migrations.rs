//! Schema migrations, kept the way golang-migrate keeps them so that higuma and kuma-cp can
//! migrate and use the same database: one row in `schema_migrations (version, dirty)`, the
//! version being the number of the newest applied migration file.
//!
//! The first embedded migration creates Kuma 2.4's whole schema and carries the number of
//! Kuma 2.4's last migration ([`KUMA_2_4_SCHEMA_VERSION`]), so a database kuma-cp 2.4 migrated
//! is a database higuma can take forward. The later ones are Kuma's own steps up to the
//! schema of Kuma's latest 2.x release ([`SCHEMA_VERSION`]: the `owner_fk_index`, `labels` and
//! `status` columns), with Kuma's numbers: `higuma migrate up` takes a 2.4 database there, and
//! a database kuma-cp 2.14 migrated is current for higuma. A database left by a Kuma older
//! than 2.4 cannot be brought forward by higuma (it would need Kuma's intermediate steps);
//! `migrate up` says so.
//!
//! `run` never migrates: the version must be exactly [`SCHEMA_VERSION`], or newer with
//! `store.postgres.tolerateNewerDBVersions` (Kuma's rolling-upgrade switch: columns added
//! later have defaults, so this version's named-column writes stay valid).

use postgres::Client;

use super::connection::{Connector, MIGRATE_APPLICATION_NAME};
use super::errors::PostgresError;
use crate::config::PostgresConfig;

/// Kuma 2.4's last migration, `1677096751_update_resources_name_limit`.
pub const KUMA_2_4_SCHEMA_VERSION: i64 = 1677096751;

/// The schema version this higuma reads and writes: Kuma's `1710856785_add_status`, the
/// newest migration of Kuma 2.x.
pub const SCHEMA_VERSION: i64 = 1710856785;

struct Migration {
    version: i64,
    sql: &'static str,
}

/// In ascending version order; each one runs in its own transaction.
const MIGRATIONS: &[Migration] = &[
    Migration { version: KUMA_2_4_SCHEMA_VERSION, sql: include_str!("migrations/1677096751_kuma_2_4_schema.up.sql") },
    Migration { version: 1693473198, sql: include_str!("migrations/1693473198_add_foreign_key_idx.up.sql") },
    Migration { version: 1701180642, sql: include_str!("migrations/1701180642_add_labels.up.sql") },
    Migration { version: SCHEMA_VERSION, sql: include_str!("migrations/1710856785_add_status.up.sql") },
];

/// Key of the session-level advisory lock held while migrating, so that two instances
/// running `migrate up` at once apply each migration once. Advisory locks are per database,
/// so a constant is enough. (golang-migrate derives its own key; kuma-cp migrating the same
/// database at the same moment is not serialized with higuma.)
const MIGRATE_LOCK_KEY: i64 = 0x6869_6775_6d61; // "higuma"

/// What `migrate up` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateOutcome {
    /// The version before, `None` for a database never migrated.
    pub from: Option<i64>,
    /// The version now.
    pub to: i64,
    /// How many migrations were applied (0 when the database was already current).
    pub applied: usize,
}

/// Brings the database's schema to [`SCHEMA_VERSION`]. Already current → `applied: 0`;
/// migrated by a newer higuma or Kuma → `NewerSchema`; left dirty by a failed golang-migrate
/// run → `Query` (it needs fixing by hand, as with kuma-cp).
pub fn migrate_up(cfg: &PostgresConfig) -> Result<MigrateOutcome, PostgresError> {
    let connector = Connector::new(cfg, MIGRATE_APPLICATION_NAME)?;
    let mut client = connector.connect_or_report()?;
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK_KEY])
        .map_err(|e| PostgresError::query("cannot take the migration lock", &e))?;
    let outcome = apply_pending(&mut client);
    // Closing the session would release the lock too; unlocking explicitly keeps a pooled
    // or long-lived caller's session clean.
    let _ = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK_KEY]);
    outcome
}

fn apply_pending(client: &mut Client) -> Result<MigrateOutcome, PostgresError> {
    // golang-migrate's own definition of its bookkeeping table.
    client
        .batch_execute("CREATE TABLE IF NOT EXISTS schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL)")
        .map_err(|e| PostgresError::query("cannot create schema_migrations", &e))?;
    let from = match read_state(client)? {
        None => None,
        Some(SchemaState { version, dirty: true }) => return Err(dirty_error(version)),
        Some(SchemaState { version, .. }) if version > SCHEMA_VERSION => {
            return Err(PostgresError::NewerSchema { found: version, expected: SCHEMA_VERSION })
        }
        Some(SchemaState { version, .. }) if version < MIGRATIONS[0].version => {
            return Err(PostgresError::Query {
                reason: format!(
                "the database is at Kuma schema version {version}, older than Kuma 2.4 ({KUMA_2_4_SCHEMA_VERSION}); \
                     migrate it with \"kuma-cp migrate up\" of Kuma 2.4 first"
            ),
            })
        }
        Some(state) => Some(state.version),
    };
    let mut applied = 0;
    for migration in MIGRATIONS.iter().filter(|m| from.is_none_or(|v| m.version > v)) {
        let context = format!("migration {} failed", migration.version);
        let mut tx = client.transaction().map_err(|e| PostgresError::query(&context, &e))?;
        tx.batch_execute(migration.sql).map_err(|e| PostgresError::query(&context, &e))?;
        tx.execute("DELETE FROM schema_migrations", &[]).map_err(|e| PostgresError::query(&context, &e))?;
        tx.execute("INSERT INTO schema_migrations (version, dirty) VALUES ($1, false)", &[&migration.version])
            .map_err(|e| PostgresError::query(&context, &e))?;
        tx.commit().map_err(|e| PostgresError::query(&context, &e))?;
        log::info!("applied Postgres schema migration {}", migration.version);
        applied += 1;
    }
    Ok(MigrateOutcome { from, to: SCHEMA_VERSION, applied })
}

struct SchemaState {
    version: i64,
    dirty: bool,
}

/// The recorded version, `None` when the database was never migrated.
fn read_state(client: &mut Client) -> Result<Option<SchemaState>, PostgresError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .and_then(|row| row.try_get(0))
        .map_err(|e| PostgresError::query("cannot look for schema_migrations", &e))?;
    if !exists {
        return Ok(None);
    }
    // golang-migrate keeps a single row; the highest one wins should there be more.
    let row = client
        .query_opt("SELECT version, dirty FROM schema_migrations ORDER BY version DESC LIMIT 1", &[])
        .map_err(|e| PostgresError::query("cannot read schema_migrations", &e))?;
    match row {
        None => Ok(None),
        Some(row) => {
            let version = row.try_get(0).map_err(|e| PostgresError::query("cannot read schema_migrations", &e))?;
            let dirty = row.try_get(1).map_err(|e| PostgresError::query("cannot read schema_migrations", &e))?;
            Ok(Some(SchemaState { version, dirty }))
        }
    }
}

/// Checks, at start-up, that the database is at exactly [`SCHEMA_VERSION`] (or newer, when
/// `tolerate_newer`), as kuma-cp does: `run` never migrates.
pub(crate) fn check_schema(client: &mut Client, tolerate_newer: bool) -> Result<(), PostgresError> {
    match read_state(client)? {
        None => Err(PostgresError::NotMigrated { found: None, expected: SCHEMA_VERSION }),
        Some(SchemaState { version, dirty: true }) => Err(dirty_error(version)),
        Some(SchemaState { version, .. }) if version > SCHEMA_VERSION && tolerate_newer => {
            log::warn!(
                "postgres: the schema is at version {version}, newer than this higuma's {SCHEMA_VERSION}; \
                 starting anyway (store.postgres.tolerateNewerDBVersions)"
            );
            Ok(())
        }
        Some(SchemaState { version, .. }) if version > SCHEMA_VERSION => {
            Err(PostgresError::NewerSchema { found: version, expected: SCHEMA_VERSION })
        }
        Some(SchemaState { version, .. }) if version < SCHEMA_VERSION => {
            Err(PostgresError::NotMigrated { found: Some(version), expected: SCHEMA_VERSION })
        }
        Some(_) => Ok(()),
    }
}

fn dirty_error(version: i64) -> PostgresError {
    PostgresError::Query {
        reason: format!(
            "schema_migrations marks version {version} as dirty: a migration failed halfway; repair the schema \
             by hand, then set dirty = false"
        ),
    }
}
