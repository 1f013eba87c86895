//! Postgres for tests: the throwaway cluster described by `HIGUMA_TEST_PG_*` (started by
//! `scripts/test.sh`, or `scripts/pg.sh start DIR` by hand). Every test creates its own
//! database and touches no other.

use std::sync::Arc;

use higuma::config::{Duration, PostgresConfig, TlsMode};
use higuma::store::postgres::{migrate_up, PostgresStore};

/// How to reach the test cluster as its superuser.
#[derive(Clone, Debug)]
pub struct PgEnv {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
    /// The CA that signed the server's certificate (for 127.0.0.1 and localhost).
    pub ca: String,
}

fn var(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "Postgres tests need HIGUMA_TEST_PG_* (run ./scripts/test.sh, which starts a throwaway Postgres 15); \
             {name} is not set"
        )
    })
}

pub fn env() -> PgEnv {
    PgEnv {
        host: var("HIGUMA_TEST_PG_HOST"),
        port: var("HIGUMA_TEST_PG_PORT").parse().expect("HIGUMA_TEST_PG_PORT is a port number"),
        user: var("HIGUMA_TEST_PG_USER"),
        password: var("HIGUMA_TEST_PG_PASSWORD"),
        ca: var("HIGUMA_TEST_PG_CA"),
    }
}

/// A superuser connection to `db` (no TLS) for test-side SQL.
pub fn admin_client(db: &str) -> postgres::Client {
    let env = env();
    postgres::Config::new()
        .host(&env.host)
        .port(env.port)
        .user(&env.user)
        .password(&env.password)
        .dbname(db)
        .application_name("higuma-test-admin")
        .connect(postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot connect to the test Postgres at {}:{}: {e}", env.host, env.port))
}

/// A config for database `db` of the test cluster: no TLS, a 2 s connection timeout and fast
/// listener reconnects so tests do not wait on Kuma's defaults.
pub fn config_for(db: &str) -> PostgresConfig {
    let env = env();
    let mut cfg = PostgresConfig {
        host: env.host,
        port: env.port,
        user: env.user,
        password: env.password,
        db_name: db.to_string(),
        connection_timeout: 2,
        min_reconnect_interval: Duration::from_millis(100),
        max_reconnect_interval: Duration::from_secs(1),
        ..PostgresConfig::default()
    };
    cfg.tls.mode = TlsMode::Disable;
    cfg
}

/// Creates a new empty database `higuma_test_<random hex>` and returns a config for it.
pub fn fresh_database() -> PostgresConfig {
    let db = format!("higuma_test_{:016x}", fastrand::u64(..));
    admin_client("postgres").batch_execute(&format!("CREATE DATABASE {db}")).expect("create a test database");
    config_for(&db)
}

/// A store on a fresh, migrated database.
pub fn migrated_store() -> Arc<PostgresStore> {
    let cfg = fresh_database();
    migrate_up(&cfg).expect("migrate the test database");
    Arc::new(PostgresStore::connect(&cfg).expect("connect to the test database"))
}
