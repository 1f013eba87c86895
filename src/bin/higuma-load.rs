//! `higuma-load`: simulates a fleet of dataplanes against a higuma it starts, runs the
//! benchmark scenarios and writes their figures as JSON; `higuma-load report` turns result
//! files into BENCHMARKS.md. See `scripts/bench.sh` for the full matrix.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand, ValueEnum};
use higuma::loadgen::scenarios::{encode_floor, Bench, Options, Target};
use higuma::loadgen::topology::Topology;
use serde_json::{json, Value};

#[derive(Parser)]
#[command(name = "higuma-load", about = "Load harness for higuma")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum, Debug)]
enum Store {
    Memory,
    Postgres,
}

#[derive(Subcommand)]
enum Cmd {
    /// Start higuma, run the scenarios, write the figures as JSON.
    Run {
        #[arg(long, value_enum, default_value_t = Store::Memory)]
        store: Store,
        /// Push on store events (false = refresh interval only, as Kuma).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
        push: bool,
        #[arg(long, default_value_t = 100)]
        services: usize,
        #[arg(long, default_value_t = 10)]
        instances: usize,
        #[arg(long, default_value_t = 10)]
        outbounds: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Seconds over which the dataplanes connect.
        #[arg(long, default_value_t = 2.0)]
        ramp: f64,
        #[arg(long, default_value_t = 60.0)]
        idle: f64,
        /// Seconds between the fleet being configured and the idle window: one status flush
        /// interval (10 s by default) and a margin, so the window sees the steady state and
        /// not the first status write of every new stream.
        #[arg(long, default_value_t = 12.0)]
        settle: f64,
        #[arg(long, default_value_t = 50)]
        changes: usize,
        /// Seconds of churn (0 = skip).
        #[arg(long, default_value_t = 60.0)]
        churn: f64,
        #[arg(long, default_value_t = 100)]
        churn_rate: u32,
        /// gRPC completion-queue threads of the simulated fleet. One by default: on a 2-core
        /// machine shared with higuma a second one was measured to slow every scenario (it
        /// takes CPU higuma needs); more cores, more threads.
        #[arg(long, default_value_t = 1)]
        completion_queues: usize,
        /// Share HTTP/2 connections between simulated dataplanes: all streams on one per
        /// instance (same as `--connections 1`).
        #[arg(long)]
        multiplex: bool,
        /// Spread the streams over this many HTTP/2 connections per instance (0: one per
        /// stream, as Envoy does). The DP server holds three file descriptors per sidecar
        /// connection (the TLS socket and a loopback pair to its internal gRPC server), so a
        /// machine whose open-file limit cannot be raised to 3 × N needs this at large N.
        #[arg(long, default_value_t = 0)]
        connections: usize,
        /// Apply the realistic policy mix (mesh-wide MeshTimeout, MeshRetry and
        /// MeshCircuitBreaker, MeshHealthCheck on 10 % and MeshHTTPRoute on 5 % of services).
        #[arg(long)]
        policy_mix: bool,
        /// The DP server with Kuma's Universal defaults: TLS with the certificate higuma
        /// generates (each simulated sidecar verifies it) and a dataplane token per dataplane,
        /// checked on every request. Without it, plaintext and no tokens, as
        /// `KUMA_DP_SERVER_TLS_ENABLED=false` and `..._AUTHN_DP_PROXY_TYPE=none`.
        #[arg(long)]
        secure: bool,
        /// Mesh mTLS (builtin CA) and an allow-all MeshTrafficPermission before the fleet
        /// connects: each simulated sidecar asks for its certificate over SDS, and the run
        /// adds a permission change on one service (3c) and a rotation wave (4b). Needs
        /// `--secure`: higuma serves private keys over TLS only.
        #[arg(long, requires = "secure")]
        mtls: bool,
        /// higuma instances on the one Postgres (needs `--store postgres` when above 1): the
        /// fleet is spread round-robin over them, writes go to the first, and the results
        /// add each instance's Postgres queries per second (idle, churn) and the time for a
        /// write to reach dataplanes on the other instances (`targeted.cross_instance`).
        #[arg(long, default_value_t = 1)]
        cp_instances: usize,
        /// The higuma binary (default: next to this one).
        #[arg(long)]
        higuma: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        /// Exit non-zero unless every dataplane is configured and no push was spurious or lost.
        #[arg(long)]
        check: bool,
    },
    /// Render result files as the BENCHMARKS.md tables.
    Report { files: Vec<PathBuf> },
}

/// Raises the open-file limit to its hard limit (higuma inherits it); returns the limit.
fn raise_nofile() -> u64 {
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        let mut l = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
            return l.rlim_cur;
        }
        0
    }
}

/// File descriptors the DP server holds per sidecar connection: the sidecar's socket and
/// the loopback pair to its internal gRPC server.
const DP_SERVER_FDS_PER_CONNECTION: u64 = 3;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).unwrap_or(0)
}

struct Pg {
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
    port: u16,
    password: String,
}

impl Pg {
    /// A connection of the harness's own to `dbname` (the figures it reads, the writes it
    /// makes behind higuma's back); the harness cannot run without it.
    fn connect(&self, dbname: &str) -> postgres::Client {
        postgres::Config::new()
            .host("127.0.0.1")
            .port(self.port)
            .user("higuma")
            .password(&self.password)
            .dbname(dbname)
            .connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("the harness's connection to database {dbname:?}: {e}"))
    }
}

fn pg_sh() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scripts/pg.sh")
}

fn start_pg() -> anyhow::Result<Pg> {
    let dir = tempfile::tempdir()?;
    let out = Command::new("bash").arg(pg_sh()).arg("start").arg(dir.path()).output()?;
    if !out.status.success() {
        bail!("pg.sh start: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let var = |n: &str| text.lines().find_map(|l| l.strip_prefix(&format!("export {n}="))).unwrap_or("").to_string();
    let port: u16 = var("HIGUMA_TEST_PG_PORT").parse().context("pg port")?;
    let (user, password) = (var("HIGUMA_TEST_PG_USER"), var("HIGUMA_TEST_PG_PASSWORD"));
    let mut admin = postgres::Config::new()
        .host("127.0.0.1")
        .port(port)
        .user(&user)
        .password(&password)
        .dbname("postgres")
        .connect(postgres::NoTls)?;
    admin.batch_execute("CREATE DATABASE higuma")?;
    let env = vec![
        ("KUMA_STORE_TYPE".into(), "postgres".into()),
        ("KUMA_STORE_POSTGRES_HOST".into(), "127.0.0.1".into()),
        ("KUMA_STORE_POSTGRES_PORT".into(), port.to_string()),
        ("KUMA_STORE_POSTGRES_USER".into(), user),
        ("KUMA_STORE_POSTGRES_PASSWORD".into(), password.clone()),
        ("KUMA_STORE_POSTGRES_DB_NAME".into(), "higuma".into()),
    ];
    Ok(Pg { dir, env, port, password })
}

impl Drop for Pg {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(pg_sh()).arg("stop").arg(self.dir.path()).output();
    }
}

struct Higuma {
    child: Child,
}

impl Drop for Higuma {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child.
        unsafe {
            libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name").map(|v| v.trim_start_matches([' ', '\t', ':']).to_string()))
        })
        .unwrap_or_default();
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    json!({
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "memory_gib": mem,
    })
}

#[allow(clippy::too_many_arguments)]
fn run(cli: &Cmd) -> anyhow::Result<()> {
    let Cmd::Run {
        store,
        push,
        services,
        instances,
        outbounds,
        seed,
        ramp,
        idle,
        settle,
        completion_queues,
        changes,
        churn,
        churn_rate,
        multiplex,
        connections,
        policy_mix,
        secure,
        mtls,
        cp_instances,
        higuma,
        out,
        check,
    } = cli
    else {
        unreachable!()
    };
    let nofile = raise_nofile();
    let cp_instances = (*cp_instances).max(1);
    if cp_instances > 1 && *store != Store::Postgres {
        bail!("--cp-instances {cp_instances} needs --store postgres: instances share state through Postgres only");
    }
    // Fail now rather than wait out a cold start whose last sidecars can never connect.
    let per_instance = ((*services * *instances) as u64).div_ceil(cp_instances as u64);
    let connections_each = match (*multiplex, *connections) {
        (true, _) => 1,
        (false, 0) => per_instance,
        (false, k) => (k as u64).min(per_instance),
    };
    let needed = connections_each * DP_SERVER_FDS_PER_CONNECTION + 1000;
    if nofile > 0 && needed > nofile {
        bail!(
            "{connections_each} sidecar connections per instance need about {needed} open files in higuma; the \
             limit here is {nofile} (raise the hard limit, or share connections with --connections K, K <= {})",
            nofile.saturating_sub(1000) / DP_SERVER_FDS_PER_CONNECTION
        );
    }
    let topology =
        Topology { services: *services, instances: *instances, outbounds: *outbounds, seed: *seed, http_every: 2 };
    let bin = match higuma {
        Some(p) => p.clone(),
        None => std::env::current_exe()?.with_file_name("higuma"),
    };
    let pg = if *store == Store::Postgres { Some(start_pg()?) } else { None };
    let env: Vec<(String, String)> = pg.as_ref().map(|p| p.env.clone()).unwrap_or_default();
    if pg.is_some() {
        let m = Command::new(&bin).args(["migrate", "up"]).envs(env.iter().cloned()).output()?;
        if !m.status.success() {
            bail!("migrate up: {}", String::from_utf8_lossy(&m.stderr));
        }
    }
    let log_dir = tempfile::tempdir()?;
    let mut cps: Vec<Higuma> = Vec::new();
    let (mut apis, mut xds, mut metrics) = (Vec::new(), Vec::new(), Vec::new());
    let mut cas: Vec<Vec<u8>> = Vec::new();
    for i in 0..cp_instances {
        let (api_port, xds_port, diag_port) = (free_port(), free_port(), free_port());
        let mut env = env.clone();
        env.extend([
            ("KUMA_API_SERVER_HTTP_PORT".into(), api_port.to_string()),
            ("KUMA_API_SERVER_HTTP_INTERFACE".into(), "127.0.0.1".into()),
            ("KUMA_DP_SERVER_PORT".into(), xds_port.to_string()),
            ("KUMA_DP_SERVER_INTERFACE".into(), "127.0.0.1".into()),
            ("KUMA_DIAGNOSTICS_SERVER_PORT".into(), diag_port.to_string()),
            ("KUMA_DIAGNOSTICS_INTERFACE".into(), "127.0.0.1".into()),
            ("KUMA_XDS_SERVER_EVENT_PUSH".into(), push.to_string()),
            // The harness measures xDS: no HTTPS listener (5682) or generated certificate.
            ("KUMA_API_SERVER_HTTPS_ENABLED".into(), "false".into()),
            ("KUMA_LOG_LEVEL".into(), "warn".into()),
            // `--multiplex` puts thousands of streams on one connection.
            ("KUMA_DP_SERVER_LIMITS_MAX_STREAMS_PER_CONNECTION".into(), "1000000".into()),
        ]);
        // Each instance generates its own DP server certificate and CA in its work dir;
        // the signing keys of dataplane tokens are in the shared store, so a token issued
        // through the first instance holds on every one.
        let work_dir = log_dir.path().join(format!("work-{i}"));
        if *secure {
            env.push(("KUMA_GENERAL_WORK_DIR".into(), work_dir.display().to_string()));
        } else {
            env.extend([
                ("KUMA_DP_SERVER_TLS_ENABLED".into(), "false".into()),
                ("KUMA_DP_SERVER_AUTHN_DP_PROXY_TYPE".into(), "none".into()),
            ]);
        }
        let log = log_dir.path().join(format!("higuma-{i}.log"));
        let child = Command::new(&bin)
            .arg("run")
            .envs(env.iter().cloned())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        cps.push(Higuma { child });
        let api = format!("http://127.0.0.1:{api_port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if ureq::get(&format!("{api}/")).call().is_ok() {
                break;
            }
            let exited = cps.last_mut().map(|c| c.child.try_wait()).transpose()?.flatten().is_some();
            if Instant::now() > deadline || exited {
                bail!("higuma {i} did not come up: {}", std::fs::read_to_string(&log).unwrap_or_default());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        apis.push(api);
        xds.push(format!("127.0.0.1:{xds_port}"));
        metrics.push(format!("http://127.0.0.1:{diag_port}/metrics"));
        // The CA the instance generated for its DP server certificate (SANs include 127.0.0.1).
        if *secure {
            cas.push(std::fs::read(work_dir.join("kuma-cp-ca.crt")).context("reading the DP server's generated CA")?);
        }
    }
    let pg_probe: Option<Box<dyn Fn() -> u64 + Send + Sync>> = pg.as_ref().map(|p| {
        let client = std::sync::Mutex::new(p.connect("postgres"));
        Box::new(move || {
            let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
            c.query_one(
                "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = 'higuma'",
                &[],
            )
            .map(|r| r.get::<_, i64>(0) as u64)
            .unwrap_or(0)
        }) as Box<dyn Fn() -> u64 + Send + Sync>
    });
    let pg_execute: Option<higuma::loadgen::scenarios::PgExecute> = pg.as_ref().map(|p| {
        let client = std::sync::Mutex::new(p.connect("higuma"));
        Box::new(move |sql: &str| {
            let mut c = client.lock().unwrap_or_else(|e| e.into_inner());
            c.execute(sql, &[]).map_err(|e| e.to_string())
        }) as higuma::loadgen::scenarios::PgExecute
    });
    let target = Target {
        api: apis.first().cloned().unwrap_or_default(),
        xds,
        metrics,
        pid: cps.first().map(|c| c.child.id()).unwrap_or(0),
        pg_transactions: pg_probe,
        pg_execute,
        cas,
        tokens: *secure,
    };
    let opts = Options {
        topology,
        ramp: Duration::from_secs_f64(*ramp),
        idle: Duration::from_secs_f64(*idle),
        settle: Duration::from_secs_f64(*settle),
        changes: *changes,
        churn: Duration::from_secs_f64(*churn),
        churn_rate: *churn_rate,
        connections: if *multiplex { 1 } else { *connections },
        completion_queues: (*completion_queues).max(1),
        policy_mix: *policy_mix,
        mtls: *mtls,
    };
    let started = Instant::now();
    eprintln!("creating {} dataplanes", topology.size());
    let mut bench = Bench::setup(target, opts).map_err(anyhow::Error::msg)?;
    let setup_s = started.elapsed().as_secs_f64();
    eprintln!("cold start");
    let cold = bench.cold();
    eprintln!("{cold}");
    let configured = bench.all_configured();
    eprintln!("idle");
    let idle_r = bench.idle();
    eprintln!("{idle_r}");
    eprintln!("targeted changes");
    let targeted = bench.targeted();
    eprintln!("{targeted}");
    eprintln!("targeted policy changes");
    let targeted_policy = bench.targeted_policy();
    eprintln!("{targeted_policy}");
    let (targeted_permission, rotation_wave) = if *mtls {
        eprintln!("targeted permission changes");
        let p = bench.targeted_permission();
        eprintln!("{p}");
        eprintln!("rotation wave");
        let r = bench.rotation_wave();
        eprintln!("{r}");
        (p, r)
    } else {
        (Value::Null, Value::Null)
    };
    eprintln!("field regressions");
    let field_regressions = bench.field_regressions();
    eprintln!("{field_regressions}");
    eprintln!("mesh-wide change");
    let mesh_wide = bench.mesh_wide();
    eprintln!("{mesh_wide}");
    let churn_r = if *churn > 0.0 {
        eprintln!("churn");
        bench.churn()
    } else {
        Value::Null
    };
    eprintln!("{churn_r}");
    eprintln!("encode floor");
    let floor = encode_floor(&topology);
    eprintln!("token check cost");
    let token_cost = higuma::loadgen::token_cost::measure();
    drop(bench);
    drop(cps);
    drop(pg);
    let result = json!({
        "date": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        "machine": machine(),
        "config": {
            "store": format!("{store:?}").to_lowercase(),
            "push": push,
            "dataplanes": topology.size(),
            "services": services, "instances": instances, "outbounds": outbounds, "seed": seed,
            "refresh_interval_s": 1, "multiplex": multiplex, "policy_mix": policy_mix,
            "connections": if *multiplex { 1 } else { *connections },
            "secure": secure, "mtls": mtls, "cp_instances": cp_instances,
        },
        "setup_s": setup_s,
        "cold": cold,
        "idle": idle_r,
        "targeted": targeted,
        "targeted_policy": targeted_policy,
        "targeted_permission": targeted_permission,
        "rotation_wave": rotation_wave,
        "field_regressions": field_regressions,
        "mesh_wide": mesh_wide,
        "churn": churn_r,
        "floor": floor,
        "token_cost": token_cost,
    });
    std::fs::write(out, serde_json::to_string_pretty(&result)?)?;
    if *check {
        let mut scenarios = vec!["targeted", "targeted_policy"];
        if *mtls {
            scenarios.push("targeted_permission");
        }
        let sum = |field: &str| -> u64 { scenarios.iter().map(|s| result[*s][field].as_u64().unwrap_or(1)).sum() };
        let (spurious, lost) = (sum("spurious_pushes"), sum("lost"));
        let rotated = !*mtls || !result["rotation_wave"]["all_rotated_ms"].is_null();
        // Every field-regression write landed and reached nobody.
        let regressions = result["field_regressions"].as_object().cloned().unwrap_or_default();
        let quiet = !regressions.is_empty()
            && regressions.values().all(|r| r["error"].is_null() && r["responses"].as_u64() == Some(0));
        if !configured
            || spurious != 0
            || lost != 0
            || result["mesh_wide"]["all_acked_ms"].is_null()
            || !rotated
            || !quiet
        {
            bail!(
                "check failed: configured={configured} spurious={spurious} lost={lost} mesh_wide={} rotation={} field_regressions={}",
                result["mesh_wide"],
                result["rotation_wave"],
                result["field_regressions"]
            );
        }
    }
    Ok(())
}

fn f(v: &Value, digits: usize) -> String {
    match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "n/a".into(),
    }
}

/// What a run changed from the plain one: TLS + tokens, the policy mix, multiplexing.
fn variant(r: &Value) -> String {
    let c = &r["config"];
    let mut flags: Vec<String> =
        [("secure", "TLS + tokens"), ("mtls", "mTLS"), ("policy_mix", "policy mix"), ("multiplex", "multiplexed")]
            .into_iter()
            .filter(|(key, _)| c[*key].as_bool().unwrap_or(false))
            .map(|(_, label)| label.to_string())
            .collect();
    if let Some(k) = c["connections"].as_u64().filter(|k| *k > 1) {
        flags.push(format!("{k} connections"));
    }
    if let Some(n) = c["cp_instances"].as_u64().filter(|n| *n > 1) {
        flags.push(format!("{n} instances"));
    }
    if flags.is_empty() {
        "plain".into()
    } else {
        flags.join(", ")
    }
}

fn report(files: &[PathBuf]) -> anyhow::Result<()> {
    let mut runs: Vec<Value> = Vec::new();
    for p in files {
        let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
        runs.push(serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?);
    }
    runs.sort_by_key(|r| {
        (
            r["config"]["dataplanes"].as_u64().unwrap_or(0),
            r["config"]["store"].as_str().unwrap_or("").to_string(),
            !r["config"]["push"].as_bool().unwrap_or(false),
            variant(r),
        )
    });
    let mut out = String::new();
    let header = |title: &str, cols: &[&str]| {
        format!(
            "\n### {title}\n\n| N | store | push | variant | {} |\n|---|---|---|---|{}\n",
            cols.join(" | "),
            "---|".repeat(cols.len())
        )
    };
    let row = |r: &Value, cells: Vec<String>| {
        format!(
            "| {} | {} | {} | {} | {} |\n",
            r["config"]["dataplanes"],
            r["config"]["store"].as_str().unwrap_or(""),
            if r["config"]["push"].as_bool().unwrap_or(false) { "on" } else { "off" },
            variant(r),
            cells.join(" | ")
        )
    };
    out += &header(
        "1. Cold start",
        &["all configured (s)", "ramp (s)", "higuma CPU (s)", "higuma peak RSS (MB)", "load generator CPU (s)"],
    );
    for r in &runs {
        let c = &r["cold"];
        out += &row(
            r,
            vec![
                f(&c["all_configured_s"], 2),
                f(&c["ramp_s"], 1),
                f(&c["cp_cpu_s"], 2),
                f(&c["cp_peak_rss_mb"], 0),
                f(&c["loadgen_cpu_s"], 2),
            ],
        );
    }
    out += &header(
        "2. Idle",
        &[
            "seconds",
            "higuma CPU (% of a core)",
            "responses sent",
            "bytes sent",
            "Postgres transactions/s",
            "load generator CPU (%)",
        ],
    );
    for r in &runs {
        let c = &r["idle"];
        out += &row(
            r,
            vec![
                f(&c["seconds"], 0),
                f(&c["cp_cpu_percent"], 2),
                c["responses_sent"].to_string(),
                c["bytes_sent"].to_string(),
                f(&c["pg_transactions_per_s"], 1),
                f(&c["loadgen_cpu_percent"], 1),
            ],
        );
    }
    out += &header(
        "3. Targeted changes (API return → last affected ACK)",
        &["changes", "p50 (ms)", "p99 (ms)", "max (ms)", "affected", "received", "spurious", "lost"],
    );
    for r in &runs {
        let c = &r["targeted"];
        out += &row(
            r,
            vec![
                c["changes"].to_string(),
                f(&c["p50_ms"], 1),
                f(&c["p99_ms"], 1),
                f(&c["max_ms"], 1),
                c["affected_dataplanes"].to_string(),
                c["dataplanes_that_received"].to_string(),
                c["spurious_pushes"].to_string(),
                c["lost"].to_string(),
            ],
        );
    }
    // 3b and 3c: one write on one service, the same figures.
    for (title, key) in [
        ("3b. Targeted policy (a MeshTimeout on one service → its consumers' clusters ACKed)", "targeted_policy"),
        (
            "3c. Targeted permission (mTLS: a MeshTrafficPermission on one service → its instances' listeners ACKed)",
            "targeted_permission",
        ),
    ] {
        out += &header(title, &["changes", "p50 (ms)", "p99 (ms)", "max (ms)", "affected", "spurious", "lost"]);
        for r in runs.iter().filter(|r| !r[key].is_null()) {
            let c = &r[key];
            out += &row(
                r,
                vec![
                    c["changes"].to_string(),
                    f(&c["p50_ms"], 1),
                    f(&c["p99_ms"], 1),
                    f(&c["max_ms"], 1),
                    c["affected_dataplanes"].to_string(),
                    c["spurious_pushes"].to_string(),
                    c["lost"].to_string(),
                ],
            );
        }
    }
    out += &header(
        "4b. Rotation wave (mTLS: the Mesh's certificate lifetime changes → every dataplane's new certificate ACKed)",
        &["dataplanes", "all rotated (ms)", "higuma CPU (s)", "higuma RSS after (MB)"],
    );
    for r in runs.iter().filter(|r| !r["rotation_wave"].is_null()) {
        let c = &r["rotation_wave"];
        out += &row(
            r,
            vec![c["dataplanes"].to_string(), f(&c["all_rotated_ms"], 0), f(&c["cp_cpu_s"], 2), f(&c["cp_rss_mb"], 0)],
        );
    }
    out += &header(
        "4c. Field regressions (writes that change no config: responses must be 0)",
        &[
            "identical Dataplane re-PUT",
            "identical policy re-PUT",
            "metadata-only Dataplane PUT",
            "another mesh's Mesh + policy",
            "DataplaneInsight burst (SQL)",
        ],
    );
    for r in runs.iter().filter(|r| !r["field_regressions"].is_null()) {
        let c = &r["field_regressions"];
        let cell = |key: &str| match &c[key] {
            Value::Null => "n/a".to_string(),
            v if !v["error"].is_null() => format!("error: {}", v["error"].as_str().unwrap_or("")),
            v => format!("{} writes → {} responses", v["writes"], v["responses"]),
        };
        out += &row(
            r,
            ["dataplane_reput", "policy_reput", "metadata_only", "other_mesh", "status_burst"].map(cell).to_vec(),
        );
    }
    out += &header(
        "4. Mesh-wide change (every dataplane's clusters)",
        &["dataplanes", "all ACKed (ms)", "encode floor (ms)", "× floor", "higuma CPU (s)"],
    );
    for r in &runs {
        let c = &r["mesh_wide"];
        let floor = r["floor"]["encode_floor_ms"].as_f64();
        let ratio = match (c["all_acked_ms"].as_f64(), floor) {
            (Some(a), Some(fl)) if fl > 0.0 => format!("{:.1}", a / fl),
            _ => "n/a".into(),
        };
        out += &row(
            r,
            vec![
                c["dataplanes"].to_string(),
                f(&c["all_acked_ms"], 1),
                f(&r["floor"]["encode_floor_ms"], 1),
                ratio,
                f(&c["cp_cpu_s"], 2),
            ],
        );
    }
    out += &header(
        "5. Churn (endpoint change → all consumers ACKed)",
        &["events", "events/s", "p50 (ms)", "p99 (ms)", "max (ms)", "lost", "higuma CPU (%)"],
    );
    for r in &runs {
        let c = &r["churn"];
        if c.is_null() {
            continue;
        }
        out += &row(
            r,
            vec![
                c["events"].to_string(),
                f(&c["events_per_s"], 0),
                f(&c["p50_ms"], 1),
                f(&c["p99_ms"], 1),
                f(&c["max_ms"], 1),
                c["lost"].to_string(),
                f(&c["cp_cpu_percent"], 1),
            ],
        );
    }
    out += &header(
        "6. Dataplane tokens (costs measured in the load generator's process on higuma's code)",
        &["issue (µs)", "first check, RSA (µs)", "cached check (µs)", "per request (µs)", "all granted"],
    );
    for r in runs.iter().filter(|r| !r["token_cost"].is_null()) {
        let c = &r["token_cost"];
        out += &row(
            r,
            vec![
                f(&c["issue_us"], 0),
                f(&c["first_check_us"], 0),
                f(&c["cached_check_us"], 1),
                f(&c["per_request_us"], 3),
                c["all_granted"].to_string(),
            ],
        );
    }
    out += &header(
        "7. Several instances on one Postgres (writes on the first instance)",
        &[
            "instances",
            "idle Postgres queries/s per instance",
            "churn Postgres queries/s per instance",
            "cross-instance p50 (ms)",
            "cross-instance p99 (ms)",
        ],
    );
    let per_instance = |v: &Value| -> String {
        let list: Vec<String> = v.as_array().into_iter().flatten().map(|q| f(q, 1)).collect();
        if list.is_empty() {
            "n/a".into()
        } else {
            list.join(" / ")
        }
    };
    for r in runs.iter().filter(|r| r["config"]["cp_instances"].as_u64().is_some_and(|n| n > 1)) {
        out += &row(
            r,
            vec![
                r["config"]["cp_instances"].to_string(),
                per_instance(&r["idle"]["pg_queries_per_s_by_instance"]),
                per_instance(&r["churn"]["pg_queries_per_s_by_instance"]),
                f(&r["targeted"]["cross_instance"]["p50_ms"], 1),
                f(&r["targeted"]["cross_instance"]["p99_ms"], 1),
            ],
        );
    }
    out += &targets(&runs);
    if let Some(first) = runs.first() {
        // Runs of a subset (`VARIANTS=secure ./scripts/bench.sh`) sit next to older ones.
        let mut dates: Vec<&str> = runs.iter().filter_map(|r| r["date"].as_str()).collect();
        dates.sort_unstable();
        let dated = match (dates.first(), dates.last()) {
            (Some(a), Some(b)) if a.get(..10) != b.get(..10) => format!("from {a} to {b}"),
            (Some(a), _) => a.to_string(),
            _ => "?".into(),
        };
        out = format!(
            "Machine: {} ({} cores, {} GiB). Runs dated {dated}.\n{out}",
            first["machine"]["cpu"].as_str().unwrap_or("?"),
            first["machine"]["cores"],
            first["machine"]["memory_gib"],
        );
    }
    print!("{out}");
    Ok(())
}

/// The targets (N = 10,000, Postgres, push on) checked against the measured run.
fn targets(runs: &[Value]) -> String {
    let at_10k = |r: &&Value| {
        r["config"]["dataplanes"] == 10000 && r["config"]["store"] == "postgres" && r["config"]["push"] == true
    };
    // Shared connections change what a connection costs, not which features run.
    let features = |r: &Value| {
        let mut plain = r.clone();
        plain["config"]["connections"] = json!(0);
        variant(&plain)
    };
    let Some(r) = runs.iter().filter(at_10k).find(|r| features(r) == "plain") else {
        return "\n### Targets\n\nNo plain run at N = 10,000 on Postgres with push on.\n".into();
    };
    let secure = runs.iter().filter(at_10k).find(|r| features(r) == "TLS + tokens");
    let mtls = runs.iter().filter(at_10k).find(|r| r["config"]["mtls"] == true);
    let mix = runs.iter().filter(at_10k).find(|r| features(r) == "policy mix");
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let floor = num(&r["floor"]["encode_floor_ms"]);
    let mesh = num(&r["mesh_wide"]["all_acked_ms"]);
    let rows: Vec<(&str, String, bool)> = vec![
        (
            "cold: all configured ≤ 10 s",
            format!("{:.2} s", num(&r["cold"]["all_configured_s"])),
            num(&r["cold"]["all_configured_s"]) <= 10.0,
        ),
        (
            "cold: higuma RSS ≤ 500 MB",
            format!("{:.0} MB", num(&r["cold"]["cp_peak_rss_mb"])),
            num(&r["cold"]["cp_peak_rss_mb"]) <= 500.0,
        ),
        (
            "idle: higuma CPU ≤ 2 % of a core",
            format!("{:.2} %", num(&r["idle"]["cp_cpu_percent"])),
            num(&r["idle"]["cp_cpu_percent"]) <= 2.0,
        ),
        ("idle: no xDS bytes sent", format!("{} bytes", r["idle"]["bytes_sent"]), r["idle"]["bytes_sent"] == 0),
        (
            "idle: Postgres ≤ 20 queries/s",
            format!("{:.1} transactions/s", num(&r["idle"]["pg_transactions_per_s"])),
            num(&r["idle"]["pg_transactions_per_s"]) <= 20.0,
        ),
        (
            "targeted: p99 ≤ 100 ms",
            format!("{:.1} ms", num(&r["targeted"]["p99_ms"])),
            num(&r["targeted"]["p99_ms"]) <= 100.0,
        ),
        (
            "targeted: max ≤ 250 ms",
            format!("{:.1} ms", num(&r["targeted"]["max_ms"])),
            num(&r["targeted"]["max_ms"]) <= 250.0,
        ),
        (
            "targeted: zero spurious pushes",
            r["targeted"]["spurious_pushes"].to_string(),
            r["targeted"]["spurious_pushes"] == 0,
        ),
        ("mesh-wide: all ACKed ≤ 2 s", format!("{mesh:.0} ms"), mesh <= 2000.0),
        ("mesh-wide: ≤ 3 × encode floor", format!("{:.1} × ({floor:.0} ms floor)", mesh / floor), mesh <= 3.0 * floor),
        (
            "churn: p99 ≤ 1 s",
            format!("{:.0} ms at {:.0} events/s", num(&r["churn"]["p99_ms"]), num(&r["churn"]["events_per_s"])),
            num(&r["churn"]["p99_ms"]) <= 1000.0,
        ),
    ];
    let mut rows = rows;
    if let Some(s) = secure {
        rows.push((
            "cold with TLS + tokens: all configured ≤ 10 s",
            format!("{:.2} s ({})", num(&s["cold"]["all_configured_s"]), variant(s)),
            num(&s["cold"]["all_configured_s"]) <= 10.0,
        ));
    }
    if let Some(m) = mix {
        rows.push((
            "policy mix: higuma peak RSS ≤ 500 MB",
            format!("{:.0} MB", num(&m["cold"]["cp_peak_rss_mb"])),
            num(&m["cold"]["cp_peak_rss_mb"]) <= 500.0,
        ));
        rows.push((
            "targeted policy (3b): p99 ≤ 100 ms, zero spurious",
            format!(
                "{:.1} ms, {} spurious",
                num(&m["targeted_policy"]["p99_ms"]),
                m["targeted_policy"]["spurious_pushes"]
            ),
            num(&m["targeted_policy"]["p99_ms"]) <= 100.0 && m["targeted_policy"]["spurious_pushes"] == 0,
        ));
    }
    if let Some(m) = mtls {
        rows.push((
            "cold with mTLS (issuance included): all configured ≤ 10 s",
            format!("{:.2} s ({})", num(&m["cold"]["all_configured_s"]), variant(m)),
            num(&m["cold"]["all_configured_s"]) <= 10.0,
        ));
        rows.push((
            "cold with mTLS: higuma peak RSS ≤ 500 MB",
            format!("{:.0} MB", num(&m["cold"]["cp_peak_rss_mb"])),
            num(&m["cold"]["cp_peak_rss_mb"]) <= 500.0,
        ));
        rows.push((
            "permission change: zero spurious pushes",
            m["targeted_permission"]["spurious_pushes"].to_string(),
            m["targeted_permission"]["spurious_pushes"] == 0,
        ));
    }
    let mut out = format!("\n### Targets (N = 10,000, Postgres, push on; the plain row: {})\n\n", variant(r));
    out += "| target | measured | met |\n|---|---|---|\n";
    for (t, m, ok) in rows {
        out += &format!("| {t} | {m} | {} |\n", if ok { "yes" } else { "**no**" });
    }
    out
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::new().filter_level(log::LevelFilter::Warn).init();
    let cli = Cli::parse();
    let result = match &cli.command {
        c @ Cmd::Run { .. } => run(c),
        Cmd::Report { files } => report(files),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
