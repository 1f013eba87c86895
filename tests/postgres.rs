//! The Postgres backend beyond the store contract (which `tests/store.rs` runs against it):
//! migrations, the pool's limits and timeouts, change notifications between instances, the
//! listener's reconnect, TLS modes and error mapping. Each test uses a database of its own on
//! the cluster named by `HIGUMA_TEST_PG_*`.

mod common;
mod store_contract;

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::pg::{admin_client, config_for, env, fresh_database, migrated_store};
use higuma::config::{PostgresConfig, TlsMode};
use higuma::model::{ResourceKey, ResourceType};
use higuma::store::postgres::{migrate_up, PostgresError, PostgresStore, KUMA_2_4_SCHEMA_VERSION, SCHEMA_VERSION};
use higuma::store::{BatchWrite, ChangeEvent, Operation, ResourceStore, StoreError};
use store_contract::{dataplane_spec, insight_spec, mesh_spec, permission_spec};

fn key(rtype: ResourceType, mesh: &str, name: &str) -> ResourceKey {
    ResourceKey::new(rtype, mesh, name)
}

fn migrated_config() -> PostgresConfig {
    let cfg = fresh_database();
    migrate_up(&cfg).unwrap();
    cfg
}

/// Waits for the first event matching `want`, skipping others.
fn expect_event(rx: &crossbeam_channel::Receiver<ChangeEvent>, timeout: Duration, want: &ChangeEvent) {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(ev) if &ev == want => return,
            Ok(_) => continue,
            Err(_) => panic!("no {want:?} within {timeout:?}"),
        }
    }
}

fn count_backends(monitor: &mut postgres::Client, db: &str, application_name: &str) -> i64 {
    monitor
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND datname = $2",
            &[&application_name, &db],
        )
        .unwrap()
        .get(0)
}

// ---------------------------------------------------------------------------------------
// Migrations

#[test]
fn connect_needs_a_migrated_database_and_migrate_up_is_idempotent() {
    let cfg = fresh_database();
    let err = PostgresStore::connect(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::NotMigrated { found: None, expected: SCHEMA_VERSION }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("higuma migrate up") && text.contains("none") && text.contains("1710856785"), "{text}");

    // Kuma 2.4's schema, then Kuma's three later steps up to 2.14's.
    let first = migrate_up(&cfg).unwrap();
    assert_eq!((first.from, first.to, first.applied), (None, SCHEMA_VERSION, 4));
    let second = migrate_up(&cfg).unwrap();
    assert_eq!((second.from, second.to, second.applied), (Some(SCHEMA_VERSION), SCHEMA_VERSION, 0));

    let store = PostgresStore::connect(&cfg).unwrap();
    assert_eq!(store.backend(), "postgres");
    // golang-migrate's bookkeeping, as kuma-cp 2.4 expects it.
    let mut admin = admin_client(&cfg.db_name);
    let rows = admin.query("SELECT version, dirty FROM schema_migrations", &[]).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].get::<_, i64>(0), rows[0].get::<_, bool>(1)), (SCHEMA_VERSION, false));
}

#[test]
fn a_newer_or_dirty_schema_is_refused() {
    let cfg = migrated_config();
    let mut admin = admin_client(&cfg.db_name);
    admin.execute("UPDATE schema_migrations SET version = $1", &[&(SCHEMA_VERSION + 1)]).unwrap();
    let err = PostgresStore::connect(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::NewerSchema { found, .. } if found == SCHEMA_VERSION + 1), "{err:?}");
    assert!(err.to_string().contains("upgrade higuma"), "{err}");
    let err = migrate_up(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::NewerSchema { .. }), "{err:?}");

    admin.execute("UPDATE schema_migrations SET version = $1, dirty = true", &[&SCHEMA_VERSION]).unwrap();
    let err = migrate_up(&cfg).unwrap_err();
    assert!(err.to_string().contains("dirty"), "{err}");
    assert!(PostgresStore::connect(&cfg).is_err());
}

/// A database kuma-cp 2.4 left (its schema and version) is taken to Kuma 2.14's schema by
/// `migrate up`, rows kept; kuma-cp 2.14's columns then take its positional INSERT.
#[test]
fn migrate_up_takes_a_kuma_2_4_database_to_kuma_2_14s_schema() {
    let cfg = migrated_config();
    let mut admin = admin_client(&cfg.db_name);
    admin
        .batch_execute(&format!(
            "ALTER TABLE resources DROP COLUMN labels; ALTER TABLE resources DROP COLUMN status; \
             UPDATE schema_migrations SET version = {KUMA_2_4_SCHEMA_VERSION}"
        ))
        .unwrap();
    admin
        .execute("INSERT INTO resources VALUES ('default', '', 'Mesh', 0, '{}', now(), now(), NULL, NULL, NULL)", &[])
        .unwrap();
    let err = PostgresStore::connect(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::NotMigrated { found: Some(KUMA_2_4_SCHEMA_VERSION), .. }), "{err:?}");
    let out = migrate_up(&cfg).unwrap();
    assert_eq!((out.from, out.to, out.applied), (Some(KUMA_2_4_SCHEMA_VERSION), SCHEMA_VERSION, 3));
    let cols: Vec<String> = admin
        .query(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'resources' \
             AND column_name IN ('labels', 'status') ORDER BY column_name",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(cols, ["labels", "status"]);
    // kuma-cp 2.14's INSERT: the 2.4 columns, then labels (status has its default).
    admin
        .execute(
            "INSERT INTO resources VALUES ('other', '', 'Mesh', 0, '{}', now(), now(), NULL, NULL, NULL, '{\"a\": \"b\"}')",
            &[],
        )
        .unwrap();
    let store = PostgresStore::connect(&cfg).unwrap();
    let meshes = store.list(ResourceType::Mesh, None).unwrap();
    assert_eq!(meshes.iter().map(|m| m.meta.name.as_str()).collect::<Vec<_>>(), ["default", "other"]);
}

/// Kuma's rolling-upgrade switch: a newer schema is refused unless tolerated, and
/// `migrate up` never touches it.
#[test]
fn tolerate_newer_db_versions_opens_a_newer_schema() {
    let mut cfg = migrated_config();
    let mut admin = admin_client(&cfg.db_name);
    admin.execute("UPDATE schema_migrations SET version = $1", &[&(SCHEMA_VERSION + 1)]).unwrap();
    assert!(matches!(PostgresStore::connect(&cfg), Err(PostgresError::NewerSchema { .. })));
    cfg.tolerate_newer_db_versions = true;
    let store = PostgresStore::connect(&cfg).unwrap();
    assert!(store.list(ResourceType::Mesh, None).unwrap().is_empty());
    assert!(matches!(migrate_up(&cfg), Err(PostgresError::NewerSchema { .. })));
}

#[test]
fn concurrent_migrations_serialize() {
    let cfg = fresh_database();
    let barrier = Arc::new(Barrier::new(2));
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (cfg, barrier) = (cfg.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                migrate_up(&cfg)
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect();
    let applied: usize = outcomes.iter().map(|o| o.applied).sum();
    assert_eq!(applied, 4, "every migration applied once: {outcomes:?}");
    let mut admin = admin_client(&cfg.db_name);
    let tables: i64 = admin
        .query_one("SELECT count(*) FROM pg_tables WHERE tablename IN ('resources', 'schema_migrations')", &[])
        .unwrap()
        .get(0);
    assert_eq!(tables, 2);
    let versions: i64 = admin.query_one("SELECT count(*) FROM schema_migrations", &[]).unwrap().get(0);
    assert_eq!(versions, 1);
    PostgresStore::connect(&cfg).unwrap();
}

// ---------------------------------------------------------------------------------------
// Pool

#[test]
fn a_batch_write_that_must_look_again_needs_one_connection() {
    // A lost compare-and-swap makes the batch read the row again to tell Conflict from
    // NotFound; with a single pooled connection that read must reuse the batch's own.
    let mut cfg = migrated_config();
    cfg.max_open_connections = 1;
    cfg.connection_timeout = 2;
    let store = PostgresStore::connect(&cfg).unwrap();
    store.create("", "default", mesh_spec()).unwrap();
    store.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    let stale = store.create("default", "dp-1", insight_spec()).unwrap();
    let key = ResourceKey::new(ResourceType::DataplaneInsight, "default", "dp-1");
    store.update(&key, insight_spec(), stale.meta.version).unwrap();
    // Waiting for a second connection would end in the checkout time-out: an Err here.
    let outcomes = store
        .write_batch(vec![BatchWrite::Update { key, spec: insight_spec(), expected_version: stale.meta.version }])
        .expect("the batch ran on one connection");
    assert!(matches!(outcomes[..], [Err(StoreError::Conflict(_))]), "{outcomes:?}");
}

#[test]
fn the_pool_never_opens_more_than_max_open_connections() {
    let mut cfg = migrated_config();
    cfg.max_open_connections = 4;
    // Waiting callers queue for a connection up to this long; more than the test holds the lock.
    cfg.connection_timeout = 20;
    let store = Arc::new(PostgresStore::connect(&cfg).unwrap());
    assert_eq!(store.pool_stats().max, 4);

    let mut locker = admin_client(&cfg.db_name);
    let mut monitor = admin_client(&cfg.db_name);
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE resources IN ACCESS EXCLUSIVE MODE").unwrap();
    let callers: Vec<_> = (0..20)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || store.list(ResourceType::Mesh, None))
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(5);
    while count_backends(&mut monitor, &cfg.db_name, "higuma") < 4 {
        assert!(Instant::now() < deadline, "the pool never reached 4 connections");
        std::thread::sleep(Duration::from_millis(50));
    }
    for _ in 0..5 {
        let open = count_backends(&mut monitor, &cfg.db_name, "higuma");
        assert!(open <= 4, "{open} pooled connections with maxOpenConnections = 4");
        assert!(store.pool_stats().open <= 4);
        std::thread::sleep(Duration::from_millis(100));
    }
    tx.rollback().unwrap();
    for caller in callers {
        caller.join().unwrap().expect("every caller gets a connection once the lock is gone");
    }
    assert!(count_backends(&mut monitor, &cfg.db_name, "higuma") <= 4);
}

#[test]
fn connect_gives_up_on_a_server_that_never_answers() {
    // The kernel completes the TCP handshake for a bound socket; nobody ever reads, so only
    // higuma's own time limit can end the start-up exchange.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let mut cfg = config_for("never_answers");
    cfg.port = port;
    cfg.connection_timeout = 2;
    let started = Instant::now();
    let err = PostgresStore::connect(&cfg).unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("timeout 2s"), "{text}");
    assert!(took >= Duration::from_millis(1900), "gave up after {took:?}, before the timeout");
    assert!(took < Duration::from_secs(10), "took {took:?}");
    drop(silent);
}

#[test]
fn connect_reports_an_unreachable_server_at_once() {
    let port = common::free_port();
    let mut cfg = config_for("unreachable");
    cfg.port = port;
    cfg.connection_timeout = 5;
    let started = Instant::now();
    let err = PostgresStore::connect(&cfg).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(2), "took {:?}", started.elapsed());
    let text = err.to_string();
    assert!(matches!(err, PostgresError::Connect { .. }), "{err:?}");
    assert!(text.starts_with(&format!("cannot connect to Postgres at 127.0.0.1:{port} (timeout 5s): ")), "{text}");
}

#[test]
fn terminated_pool_connections_are_unavailable_or_replaced_never_internal() {
    let cfg = migrated_config();
    let store = PostgresStore::connect(&cfg).unwrap();
    store.create("", "default", mesh_spec()).unwrap();
    store.ping().unwrap();
    let mut admin = admin_client(&cfg.db_name);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'higuma' AND datname = $1",
            &[&cfg.db_name],
        )
        .unwrap()
        .get(0);
    assert!(killed >= 1);
    match store.list(ResourceType::Mesh, None) {
        Ok(meshes) => assert_eq!(meshes.len(), 1),
        Err(StoreError::Unavailable(reason)) => assert!(reason.contains("127.0.0.1"), "{reason}"),
        Err(other) => panic!("a lost connection must be Unavailable, got {other:?}"),
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match store.get(&key(ResourceType::Mesh, "", "default")) {
            Ok(_) => break,
            Err(StoreError::Unavailable(_)) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Err(other) => panic!("retry after a lost connection failed: {other:?}"),
        }
    }
    store.ping().unwrap();
}

// ---------------------------------------------------------------------------------------
// Change events

#[test]
fn writes_of_another_instance_are_notified() {
    let cfg = migrated_config();
    let a = PostgresStore::connect(&cfg).unwrap();
    let b = PostgresStore::connect(&cfg).unwrap();
    let rx = a.subscribe();
    let mesh = key(ResourceType::Mesh, "", "default");
    let dp = key(ResourceType::Dataplane, "default", "dp-1");

    b.create("", "default", mesh_spec()).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Ok(ChangeEvent::Changed { op: Operation::Create, key: mesh.clone() })
    );
    let v = b.create("default", "dp-1", dataplane_spec("web", 8080)).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Ok(ChangeEvent::Changed { op: Operation::Create, key: dp.clone() })
    );
    b.update(&dp, dataplane_spec("web", 9090), v.meta.version).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Ok(ChangeEvent::Changed { op: Operation::Update, key: dp.clone() })
    );

    b.create("default", "dp-1", insight_spec()).unwrap();
    b.create("default", "allow", permission_spec()).unwrap();
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(1)).unwrap();
    }
    b.delete(&mesh).unwrap();
    let mut deleted = Vec::new();
    while deleted.len() < 4 {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(ChangeEvent::Changed { op: Operation::Delete, key }) => deleted.push(key),
            other => panic!("expected the cascade's deletes, got {other:?} after {deleted:?}"),
        }
    }
    deleted.sort();
    let mut expected = vec![
        mesh,
        dp,
        key(ResourceType::DataplaneInsight, "default", "dp-1"),
        key(ResourceType::TrafficPermission, "default", "allow"),
    ];
    expected.sort();
    assert_eq!(deleted, expected);
}

#[test]
fn the_listener_reconnects_and_asks_for_a_resync() {
    let cfg = migrated_config();
    let store = PostgresStore::connect(&cfg).unwrap();
    let rx = store.subscribe();
    let mut admin = admin_client(&cfg.db_name);
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE application_name = 'higuma-listener' AND datname = $1",
            &[&cfg.db_name],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1);
    expect_event(&rx, Duration::from_secs(5), &ChangeEvent::Resync);
    store.create("", "after", mesh_spec()).unwrap();
    expect_event(
        &rx,
        Duration::from_secs(2),
        &ChangeEvent::Changed { op: Operation::Create, key: key(ResourceType::Mesh, "", "after") },
    );
    assert_eq!(count_backends(&mut admin, &cfg.db_name, "higuma-listener"), 1);
}

// ---------------------------------------------------------------------------------------
// Concurrency and data shared with Kuma

#[test]
fn two_instances_racing_on_one_version_get_one_conflict() {
    let cfg = migrated_config();
    let a = Arc::new(PostgresStore::connect(&cfg).unwrap());
    let b = Arc::new(PostgresStore::connect(&cfg).unwrap());
    a.create("", "default", mesh_spec()).unwrap();
    let dp = key(ResourceType::Dataplane, "default", "dp-1");
    let mut version = a.create("default", "dp-1", dataplane_spec("web", 1)).unwrap().meta.version;
    assert_eq!(version, 0, "versions start at 0, as in Kuma's Postgres store");
    for round in 0..10u32 {
        let barrier = Arc::new(Barrier::new(2));
        let handles: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .enumerate()
            .map(|(i, store)| {
                let (barrier, dp) = (barrier.clone(), dp.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    store.update(&dp, dataplane_spec("web", 1000 + 10 * round + i as u32), version)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        assert_eq!(winners.len(), 1, "round {round}: {results:?}");
        assert!(results.iter().any(|r| matches!(r, Err(StoreError::Conflict(_)))), "round {round}: {results:?}");
        version = winners[0].meta.version;
    }
    assert_eq!(a.get(&dp).unwrap().meta.version, 10);
}

#[test]
fn rows_kuma_writes_are_read_and_foreign_or_broken_rows_do_not_break_anything() {
    let cfg = migrated_config();
    let store = PostgresStore::connect(&cfg).unwrap();
    let mut admin = admin_client(&cfg.db_name);
    // kuma-cp 2.4's INSERT: positional VALUES in Kuma's column order.
    admin
        .batch_execute(
            "INSERT INTO resources VALUES ('default', '', 'Mesh', 0, '{}', now() at time zone 'utc', now() at time zone 'utc', NULL, NULL, NULL);
             INSERT INTO resources VALUES ('cp', 'default', 'ContainerPatch', 0, '{\"sidecarPatch\":[]}', now(), now(), 'default', '', 'Mesh');
             INSERT INTO resources VALUES ('broken', 'default', 'TrafficPermission', 0, 'not json', now(), now(), 'default', '', 'Mesh');",
        )
        .unwrap();
    let mesh = store.get(&key(ResourceType::Mesh, "", "default")).unwrap();
    assert_eq!((mesh.meta.version, mesh.spec.clone()), (0, mesh_spec()));
    let err = store.get(&key(ResourceType::TrafficPermission, "default", "broken")).unwrap_err();
    assert!(matches!(&err, StoreError::Internal(m) if m.contains("\"broken\"")), "{err:?}");
    assert!(matches!(store.list(ResourceType::TrafficPermission, None), Err(StoreError::Internal(_))));
    admin.batch_execute("DELETE FROM resources WHERE name = 'broken'").unwrap();
    assert!(store.list(ResourceType::TrafficPermission, None).unwrap().is_empty());
    assert_eq!(store.list(ResourceType::Mesh, None).unwrap().len(), 1);
    // Deleting the mesh cascades to the foreign row too; its notification is ignored.
    let rx = store.subscribe();
    store.delete(&key(ResourceType::Mesh, "", "default")).unwrap();
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(1)),
        Ok(ChangeEvent::Changed { op: Operation::Delete, key: key(ResourceType::Mesh, "", "default") })
    );
    let left: i64 = admin.query_one("SELECT count(*) FROM resources", &[]).unwrap().get(0);
    assert_eq!(left, 0);
}

// ---------------------------------------------------------------------------------------
// TLS

fn tls_config(mode: TlsMode, ca_path: &str) -> PostgresConfig {
    let mut cfg = migrated_config();
    cfg.tls.mode = mode;
    cfg.tls.ca_path = ca_path.to_string();
    cfg
}

#[test]
fn verify_full_checks_the_chain_and_the_ip_address() {
    let cfg = tls_config(TlsMode::VerifyFull, &env().ca);
    assert_eq!(cfg.host, "127.0.0.1");
    let store = PostgresStore::connect(&cfg).unwrap();
    assert!(store.query_ssl_in_use().unwrap(), "verifyFull must use TLS");
    store.create("", "default", mesh_spec()).unwrap();
    assert_eq!(store.list(ResourceType::Mesh, None).unwrap().len(), 1);
}

#[test]
fn verify_ca_and_verify_none_use_tls_and_disable_does_not() {
    let store = PostgresStore::connect(&tls_config(TlsMode::VerifyCa, &env().ca)).unwrap();
    assert!(store.query_ssl_in_use().unwrap());
    let store = PostgresStore::connect(&tls_config(TlsMode::VerifyNone, "")).unwrap();
    assert!(store.query_ssl_in_use().unwrap());
    let store = PostgresStore::connect(&tls_config(TlsMode::Disable, "")).unwrap();
    assert!(!store.query_ssl_in_use().unwrap());
}

#[test]
fn verify_full_rejects_a_server_signed_by_another_ca() {
    let dir = tempfile::tempdir().unwrap();
    let other_ca = dir.path().join("other-ca.crt");
    std::fs::write(&other_ca, self_signed_ca_pem()).unwrap();
    let cfg = tls_config(TlsMode::VerifyFull, other_ca.to_str().unwrap());
    match PostgresStore::connect(&cfg) {
        Ok(_) => panic!("connected to a server whose certificate the configured CA did not sign"),
        Err(err) => assert!(matches!(err, PostgresError::Connect { .. } | PostgresError::Tls { .. }), "{err:?}"),
    }
}

#[test]
fn unreadable_tls_files_are_tls_errors_naming_the_path() {
    let cfg = tls_config(TlsMode::VerifyFull, "/nonexistent/higuma-ca.crt");
    let err = PostgresStore::connect(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::Tls { .. }), "{err:?}");
    assert!(err.to_string().contains("/nonexistent/higuma-ca.crt"), "{err}");

    let mut cfg = tls_config(TlsMode::VerifyNone, "");
    cfg.tls.cert_path = "/nonexistent/client.crt".into();
    cfg.tls.key_path = "/nonexistent/client.key".into();
    let err = migrate_up(&cfg).unwrap_err();
    assert!(matches!(err, PostgresError::Tls { .. }) && err.to_string().contains("/nonexistent/client.crt"), "{err}");
}

/// A CA certificate that signed nothing the test server presents.
fn self_signed_ca_pem() -> Vec<u8> {
    use openssl::asn1::Asn1Time;
    use openssl::bn::BigNum;
    use openssl::hash::MessageDigest;
    use openssl::pkey::PKey;
    use openssl::rsa::Rsa;
    use openssl::x509::extension::BasicConstraints;
    use openssl::x509::{X509NameBuilder, X509};

    let key = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_text("CN", "not-the-test-ca").unwrap();
    let name = name.build();
    let mut cert = X509::builder().unwrap();
    cert.set_version(2).unwrap();
    cert.set_serial_number(&BigNum::from_u32(1).unwrap().to_asn1_integer().unwrap()).unwrap();
    cert.set_subject_name(&name).unwrap();
    cert.set_issuer_name(&name).unwrap();
    cert.set_pubkey(&key).unwrap();
    cert.set_not_before(&Asn1Time::days_from_now(0).unwrap()).unwrap();
    cert.set_not_after(&Asn1Time::days_from_now(1).unwrap()).unwrap();
    cert.append_extension(BasicConstraints::new().critical().ca().build().unwrap()).unwrap();
    cert.sign(&key, MessageDigest::sha256()).unwrap();
    cert.build().to_pem().unwrap()
}

#[test]
fn migrated_store_helper_works() {
    let store = migrated_store();
    assert_eq!(store.pool_stats().max, 50);
    assert!(store.pool_stats().open >= 1);
    // Readiness through the trait reaches the database too.
    let shared: higuma::store::SharedStore = store.clone();
    shared.ping().unwrap();
}

/// A TCP proxy that counts the bytes clients send through it and can refuse and cut its
/// connections: the stand-in read replica (a replica serves the same rows as the primary).
struct CountingProxy {
    port: u16,
    sent: Arc<std::sync::atomic::AtomicU64>,
    cut: Arc<std::sync::atomic::AtomicBool>,
    conns: Arc<std::sync::Mutex<Vec<std::net::TcpStream>>>,
}

impl CountingProxy {
    fn start(target: u16) -> CountingProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let proxy = CountingProxy { port, sent: Arc::default(), cut: Arc::default(), conns: Arc::default() };
        let (sent, cut, conns) = (proxy.sent.clone(), proxy.cut.clone(), proxy.conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", target)) else { continue };
                conns.lock().unwrap().extend([client.try_clone().unwrap(), server.try_clone().unwrap()]);
                let pipe = |mut from: std::net::TcpStream,
                            mut to: std::net::TcpStream,
                            count: Option<Arc<std::sync::atomic::AtomicU64>>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 8192];
                        while let Ok(n @ 1..) = from.read(&mut buf) {
                            if let Some(c) = &count {
                                c.fetch_add(n as u64, Ordering::SeqCst);
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), Some(sent.clone()));
                pipe(server, client, None);
            }
        });
        proxy
    }

    fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn cut(&self) {
        self.cut.store(true, std::sync::atomic::Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            let _ = c.shutdown(std::net::Shutdown::Both);
        }
    }
}

/// `store.postgres.readReplica`: the API's reads go to the replica (at `ratio` 100), writes
/// never do, nothing connects to it before a read, and a replica that fails sends the read
/// to the primary; at `ratio` 0 the replica is never used.
#[test]
fn api_reads_go_to_the_read_replica_and_fall_back_to_the_primary() {
    use higuma::store::postgres::ReplicaReads;
    let mut cfg = migrated_config();
    let replica = CountingProxy::start(cfg.port);
    cfg.read_replica.host = "127.0.0.1".into();
    cfg.read_replica.port = replica.port;
    cfg.read_replica.ratio = 100;
    let store = Arc::new(PostgresStore::connect(&cfg).unwrap());
    let reads = ReplicaReads::of(&store).expect("a replica is configured");
    assert_eq!(replica.sent(), 0, "nothing connects to the replica before a read");
    reads.create("", "m", mesh_spec()).unwrap();
    assert_eq!(replica.sent(), 0, "writes go to the primary");
    let key = ResourceKey::new(ResourceType::Mesh, "", "m");
    assert_eq!(reads.get(&key).unwrap().meta.name, "m");
    let after_get = replica.sent();
    assert!(after_get > 0, "the read went to the replica");
    assert_eq!(reads.list(ResourceType::Mesh, None).unwrap().len(), 1);
    assert!(replica.sent() > after_get, "the list too");
    let before = replica.sent();
    store.get(&key).unwrap();
    assert_eq!(replica.sent(), before, "the store's own reads (config generation) stay on the primary");
    replica.cut();
    assert_eq!(reads.get(&key).unwrap().meta.name, "m", "a failed replica read is answered by the primary");

    cfg.read_replica.ratio = 0;
    let quiet = CountingProxy::start(cfg.port);
    cfg.read_replica.port = quiet.port;
    let store = Arc::new(PostgresStore::connect(&cfg).unwrap());
    let reads = ReplicaReads::of(&store).unwrap();
    for _ in 0..5 {
        reads.get(&key).unwrap();
    }
    assert_eq!(quiet.sent(), 0, "ratio 0 sends nothing to the replica");
}
