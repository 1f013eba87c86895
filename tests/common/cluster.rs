//! A private throwaway Postgres cluster (scripts/pg.sh) for tests that stop and restart the
//! database; the shared test cluster must never go down under other tests.

use std::path::PathBuf;
use std::process::Command;

pub struct Cluster {
    dir: tempfile::TempDir,
    pub port: u16,
    pub user: String,
    pub password: String,
}

fn pg_sh(args: &[&str]) -> String {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh");
    let out = Command::new("bash").arg(script).args(args).output().expect("run scripts/pg.sh");
    assert!(out.status.success(), "pg.sh {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

impl Cluster {
    pub fn start() -> Cluster {
        let dir = tempfile::tempdir().unwrap();
        let out = pg_sh(&["start", dir.path().to_str().unwrap()]);
        let var = |name: &str| {
            out.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("pg.sh did not print {name}: {out}"))
                .to_string()
        };
        Cluster {
            port: var("HIGUMA_TEST_PG_PORT").parse().unwrap(),
            user: var("HIGUMA_TEST_PG_USER"),
            password: var("HIGUMA_TEST_PG_PASSWORD"),
            dir,
        }
    }

    pub fn stop(&self) {
        pg_sh(&["stop", self.dir.path().to_str().unwrap()]);
    }

    /// Starts it again on the same port with the same data.
    pub fn restart(&self) {
        pg_sh(&["start", self.dir.path().to_str().unwrap()]);
    }

    pub fn admin(&self, db: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user(&self.user)
            .password(&self.password)
            .dbname(db)
            .connect(postgres::NoTls)
            .expect("connect to the private cluster")
    }

    pub fn create_database(&self, db: &str) {
        self.admin("postgres").batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    }

    /// `KUMA_*` variables that point higuma at database `db` of this cluster.
    pub fn env(&self, db: &str) -> Vec<(String, String)> {
        [
            ("KUMA_STORE_TYPE", "postgres".to_string()),
            ("KUMA_STORE_POSTGRES_HOST", "127.0.0.1".to_string()),
            ("KUMA_STORE_POSTGRES_PORT", self.port.to_string()),
            ("KUMA_STORE_POSTGRES_USER", self.user.clone()),
            ("KUMA_STORE_POSTGRES_PASSWORD", self.password.clone()),
            ("KUMA_STORE_POSTGRES_DB_NAME", db.to_string()),
            ("KUMA_STORE_POSTGRES_CONNECTION_TIMEOUT", "2".to_string()),
            ("KUMA_STORE_POSTGRES_MIN_RECONNECT_INTERVAL", "100ms".to_string()),
            ("KUMA_STORE_POSTGRES_MAX_RECONNECT_INTERVAL", "1s".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh");
        let _ = Command::new("bash").arg(script).args(["stop", self.dir.path().to_str().unwrap()]).output();
    }
}
