//! Three higuma instances on one throwaway Postgres with real Envoys: one leader elected
//! with Kuma's lock and the leader-only jobs run once, a write on any instance reaching the
//! Envoys of every instance, a burst of writes spread over the instances, the leader
//! SIGKILLed, one instance cut off from Postgres (a TCP proxy written for the test), a
//! dataplane moving between instances, Postgres restarted under load.
//!
//! One `#[test]`, one cluster, three Envoys: `web` (the client, whose `--cp-address` lists
//! all three instances; the links to the two it does not start on go through proxies that
//! are cut until the case that needs them), `backend-1` on instance B and `backend-2` on
//! instance C (whose Postgres link goes through a proxy).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::cluster::Cluster;
use common::mesh::dataplane;
use common::mesh::stat;
use common::{call, envoy_bin, free_port, get_text, higuma_bin, responders, wait_until, App, Daemon, Proc};
use serde_json::Value;

/// Kuma's lease plus one heartbeat (`leader::election`): the longest a dead leader's lock
/// can hold others back, plus a second for the metric scrape and the jobs thread.
const TAKEOVER_BOUND: Duration = Duration::from_secs(7);
/// The bound for a write on one instance to reach the Envoys of the others.
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);
const DEREGISTRATION_DELAY: &str = "5s";
const CLEANUP_AGE: Duration = Duration::from_secs(4);

/// A TCP proxy that can cut its link: existing connections are shut down and new ones
/// closed on accept, as a failed network path looks to both ends.
struct Proxy {
    port: u16,
    cut: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
}

impl Proxy {
    fn start(target: u16, cut: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicBool::new(cut));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (c, list) = (cut.clone(), conns.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else { continue };
                let mut l = list.lock().unwrap();
                l.push(client.try_clone().unwrap());
                l.push(server.try_clone().unwrap());
                drop(l);
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap());
                pipe(server, client);
            }
        });
        Proxy { port, cut, conns }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.store(cut, Ordering::SeqCst);
        if cut {
            for c in self.conns.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    std::thread::spawn(move || {
        let mut buf = [0u8; 16384];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
    });
}

struct Sidecar {
    _proc: Proc,
    admin: u16,
}

/// `higuma dp run` with several control-plane addresses (the first one gives the bootstrap).
fn sidecar(token_from: &Daemon, xds_ports: &[u16], dir: &Path, name: &str) -> Sidecar {
    let admin = free_port();
    let addresses: Vec<String> = xds_ports.iter().map(|p| format!("https://127.0.0.1:{p}")).collect();
    let token = dir.join(format!("{name}.token"));
    std::fs::write(&token, token_from.token("default", name)).unwrap();
    let mut cmd = Command::new(higuma_bin());
    cmd.args(["dp", "run", "--mesh", "default", "--name", name, "--cp-address", &addresses.join(",")])
        .arg("--ca-cert-file")
        .arg(&token_from.ca_file)
        .arg("--token-file")
        .arg(&token)
        .args(["--admin-port", &admin.to_string(), "--envoy"])
        .arg(envoy_bin())
        .args(["--", "--log-level", "warn"]);
    Sidecar { _proc: Proc::spawn(cmd, dir.join(format!("{name}.log"))), admin }
}

/// The `host:port`s of `cluster` in Envoy's `/clusters`.
fn hosts(admin: u16, cluster: &str) -> BTreeSet<String> {
    let text = get_text(&format!("http://127.0.0.1:{admin}/clusters")).unwrap_or_default();
    let prefix = format!("{cluster}::");
    text.lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter(|rest| rest.contains("::health_flags::"))
        .filter_map(|rest| rest.split("::").next().map(str::to_string))
        .collect()
}

fn instance_id(d: &Daemon) -> String {
    let text = get_text(&d.diag_url("/metrics")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("cp_info{instance_id=\""))
        .and_then(|rest| rest.split('"').next())
        .map(str::to_string)
        .expect("cp_info names the instance")
}

fn ready(d: &Daemon) -> u16 {
    common::agent().get(&d.diag_url("/ready")).call().map(|r| r.status().as_u16()).unwrap_or(0)
}

fn put(d: &Daemon, resource: &Value) -> u16 {
    call("PUT", &d.url(&common::mesh::path_of(resource)), Some(&resource.to_string())).0
}

fn count(pg: &Cluster, sql: &str) -> i64 {
    pg.admin("higuma").query_one(sql, &[]).unwrap().get(0)
}

fn leaders(cps: &[Option<Daemon>]) -> Vec<usize> {
    cps.iter()
        .enumerate()
        .filter(|(_, d)| d.as_ref().is_some_and(|d| d.metric("leader") == 1))
        .map(|(i, _)| i)
        .collect()
}

fn cp(cps: &[Option<Daemon>], i: usize) -> &Daemon {
    cps[i].as_ref().expect("a running instance")
}

/// A dataplane without a sidecar: an endpoint of `service` on `port`.
fn endpoint(name: &str, service: &str, port: u16) -> Value {
    dataplane(name, service, "http", port, port + 1, &[], &[])
}

#[test]
fn three_instances_on_one_postgres() {
    let pg = Cluster::start();
    pg.create_database("higuma");
    let env = pg.env("higuma");
    let out = Command::new(higuma_bin()).args(["migrate", "up"]).envs(env.iter().cloned()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let work = tempfile::tempdir().unwrap();
    // C reaches Postgres through a proxy the test can cut.
    let pg_proxy = Proxy::start(pg.port, false);
    let base: Vec<(String, String)> = env
        .iter()
        .cloned()
        .chain([
            // One DP-server certificate for the group (Kuma asks for a shared one too).
            ("KUMA_GENERAL_WORK_DIR".to_string(), work.path().display().to_string()),
            ("KUMA_XDS_DATAPLANE_DEREGISTRATION_DELAY".to_string(), DEREGISTRATION_DELAY.to_string()),
            ("KUMA_RUNTIME_UNIVERSAL_DATAPLANE_CLEANUP_AGE".to_string(), format!("{}s", CLEANUP_AGE.as_secs())),
        ])
        .collect();
    let mut cps: Vec<Option<Daemon>> = Vec::new();
    for i in 0..3 {
        let mut env: Vec<(&str, String)> = base.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        if i == 2 {
            env.push(("KUMA_STORE_POSTGRES_PORT", pg_proxy.port.to_string()));
        }
        let refs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cps.push(Some(Daemon::start(&refs)));
    }

    let leader = one_leader_and_the_defaults_once(&pg, &cps);
    let (b, c) = match leader {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    assert_ne!(leader, 2, "C (behind the proxy) started last and cannot have won the first election");
    let dir = tempfile::tempdir().unwrap();
    let (app1, app2) = (App::start("backend-1"), App::start("backend-2"));
    let out_backend = free_port();
    let out_probe = free_port();
    let out_burst = free_port();
    let outbounds = [("backend", out_backend), ("probe", out_probe), ("burst", out_burst)];
    let web_dp = dataplane("web", "web", "http", free_port(), free_port(), &[], &outbounds);
    assert_eq!(put(cp(&cps, leader), &web_dp), 201);
    assert_eq!(
        put(cp(&cps, b), &dataplane("backend-1", "backend", "http", free_port(), app1.port, &[], &outbounds)),
        201
    );
    assert_eq!(
        put(cp(&cps, c), &dataplane("backend-2", "backend", "http", free_port(), app2.port, &[], &outbounds)),
        201
    );
    assert_eq!(put(cp(&cps, c), &endpoint("probe-seed", "probe", free_port())), 201);
    // web starts on the leader: the links to B and C are cut until the leader dies.
    let to_b = Proxy::start(cp(&cps, b).xds_port, true);
    let to_c = Proxy::start(cp(&cps, c).xds_port, true);
    let web = sidecar(cp(&cps, leader), &[cp(&cps, leader).xds_port, to_b.port, to_c.port], dir.path(), "web");
    let be1 = sidecar(cp(&cps, b), &[cp(&cps, b).xds_port], dir.path(), "backend-1");
    let be2 = sidecar(cp(&cps, c), &[cp(&cps, c).xds_port], dir.path(), "backend-2");
    let url = format!("http://127.0.0.1:{out_backend}/");
    let both: BTreeSet<String> = ["backend-1".to_string(), "backend-2".to_string()].into();
    wait_until("traffic from web to both backends", Duration::from_secs(40), || responders(&url, 12) == both);
    let envoys = [web.admin, be1.admin, be2.admin];

    a_write_on_any_instance_reaches_every_envoy_within_a_second(&cps, &envoys);
    a_burst_of_1000_writes_over_three_instances_loses_none(&pg, &cps, &envoys);
    let _new_leader = sigkill_the_leader(&pg, &mut cps, leader, &web, &url, &both, [&to_b, &to_c]);
    an_instance_cut_off_from_postgres_answers_503_and_catches_up(&cps, b, c, &pg_proxy, &be2, &url, &both);
    a_moving_dataplane_is_never_offline_or_collected(&cps, &web, [&to_b, &to_c], &url);
    postgres_restarted_under_load(&pg, &cps, &envoys, &url, &both);
    a_maximum_stream_age_makes_envoy_reconnect(&base, dir.path());
    dp_run_deletes_on_exit_only_the_dataplane_it_created(cp(&cps, b), dir.path());
    drop((web, be1, be2));
}

fn one_leader_and_the_defaults_once(pg: &Cluster, cps: &[Option<Daemon>]) -> usize {
    wait_until("one leader", Duration::from_secs(10), || leaders(cps).len() == 1);
    // Stable: the followers keep following.
    std::thread::sleep(Duration::from_millis(1500));
    let l = leaders(cps);
    assert_eq!(l.len(), 1, "leaders: {l:?}");
    let leader = l[0];
    let owner: String =
        pg.admin("higuma").query_one("SELECT owner FROM locks WHERE name = 'kuma-cp-lock'", &[]).unwrap().get(0);
    assert_eq!(owner, instance_id(cp(cps, leader)), "Kuma's lock names the leader's instance id");
    let creators: Vec<usize> = (0..3).filter(|i| cp(cps, *i).log_text().contains("created Mesh \"default\"")).collect();
    assert_eq!(creators, vec![leader], "only the leader creates Mesh default");
    assert_eq!(count(pg, "SELECT count(*) FROM resources WHERE type = 'Mesh'"), 1);
    assert_eq!(
        count(pg, "SELECT count(*) FROM resources WHERE mesh = 'default' AND name LIKE 'dataplane-token-signing-key-default-%'"),
        1
    );
    leader
}

fn a_write_on_any_instance_reaches_every_envoy_within_a_second(cps: &[Option<Daemon>], envoys: &[u16]) {
    let mut worst = Duration::ZERO;
    for i in 0..3 {
        let port = free_port();
        let written = Instant::now();
        assert_eq!(put(cp(cps, i), &endpoint(&format!("probe-{i}"), "probe", port)), 201);
        let host = format!("127.0.0.1:{port}");
        let mut pending: BTreeSet<u16> = envoys.iter().copied().collect();
        while !pending.is_empty() {
            pending.retain(|admin| !hosts(*admin, "probe").contains(&host));
            assert!(written.elapsed() < Duration::from_secs(10), "probe-{i} never reached Envoys {pending:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
        worst = worst.max(written.elapsed());
    }
    eprintln!("multi: a write on each instance reached all three Envoys within {worst:?} (worst)");
    assert!(worst < PROPAGATION_BOUND, "slowest propagation {worst:?}");
}

fn a_burst_of_1000_writes_over_three_instances_loses_none(pg: &Cluster, cps: &[Option<Daemon>], envoys: &[u16]) {
    const DATAPLANES: u16 = 100;
    const VERSIONS: u16 = 10;
    const THREADS: u16 = 8;
    let base = 31000;
    let started = Instant::now();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for k in (t..DATAPLANES).step_by(THREADS as usize) {
                    for v in 0..VERSIONS {
                        let d = cp(cps, usize::from(k + v) % 3);
                        let status = put(d, &endpoint(&format!("burst-{k}"), "burst", base + k * VERSIONS + v));
                        assert!(status == 200 || status == 201, "burst-{k} v{v}: {status}");
                    }
                }
            });
        }
    });
    eprintln!("multi: 1000 writes over three instances took {:?}", started.elapsed());
    let want: BTreeSet<String> =
        (0..DATAPLANES).map(|k| format!("127.0.0.1:{}", base + k * VERSIONS + VERSIONS - 1)).collect();
    let rows = pg
        .admin("higuma")
        .query("SELECT spec FROM resources WHERE type = 'Dataplane' AND name LIKE 'burst-%'", &[])
        .unwrap();
    let stored: BTreeSet<String> = rows
        .iter()
        .map(|r| {
            let spec: Value = serde_json::from_str(&r.get::<_, String>(0)).unwrap();
            format!("127.0.0.1:{}", spec["networking"]["inbound"][0]["port"])
        })
        .collect();
    assert_eq!(stored, want, "every final state is in the database");
    for admin in envoys {
        wait_until(&format!("Envoy {admin} has every final burst endpoint"), Duration::from_secs(20), || {
            hosts(*admin, "burst") == want
        });
    }
}

/// Requests through `url` in the background until `stop`; counts the failures.
fn traffic(url: String, stop: Arc<AtomicBool>) -> (std::thread::JoinHandle<()>, Arc<AtomicU64>, Arc<AtomicU64>) {
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let (o, f) = (ok.clone(), failed.clone());
    let h = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            match get_text(&url) {
                Some(_) => o.fetch_add(1, Ordering::SeqCst),
                None => f.fetch_add(1, Ordering::SeqCst),
            };
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    (h, ok, failed)
}

fn sigkill_the_leader(
    pg: &Cluster,
    cps: &mut [Option<Daemon>],
    leader: usize,
    web: &Sidecar,
    url: &str,
    both: &BTreeSet<String>,
    links: [&Proxy; 2],
) -> usize {
    for l in links {
        l.set_cut(false);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let (h, ok, failed) = traffic(url.to_string(), stop.clone());
    let dead_id = instance_id(cp(cps, leader));
    let mut dead = cps[leader].take().unwrap();
    dead.child.kill().unwrap(); // SIGKILL
    let _ = dead.child.wait();
    let killed = Instant::now();
    wait_until("a new leader", TAKEOVER_BOUND + Duration::from_secs(5), || leaders(cps).len() == 1);
    let took = killed.elapsed();
    let new_leader = leaders(cps)[0];
    eprintln!("multi: instance {new_leader} leads {took:?} after the leader was SIGKILLed");
    assert!(took <= TAKEOVER_BOUND, "takeover took {took:?}");
    let owner: String =
        pg.admin("higuma").query_one("SELECT owner FROM locks WHERE name = 'kuma-cp-lock'", &[]).unwrap().get(0);
    assert_eq!(owner, instance_id(cp(cps, new_leader)));
    wait_until("the new leader's jobs ran", Duration::from_secs(5), || {
        cp(cps, new_leader).log_text().contains("starting the leader-only jobs")
    });
    assert_eq!(count(pg, "SELECT count(*) FROM resources WHERE type = 'Mesh'"), 1, "no second default mesh");
    assert_eq!(
        count(pg, "SELECT count(*) FROM resources WHERE mesh = 'default' AND name LIKE 'dataplane-token-signing-key-default-%'"),
        1,
        "no second signing key"
    );
    // web's Envoy reconnects to a live instance: a change made now reaches it.
    let port = free_port();
    assert_eq!(put(cp(cps, new_leader), &endpoint("probe-after-kill", "probe", port)), 201);
    wait_until("web's Envoy gets config from another instance", Duration::from_secs(30), || {
        hosts(web.admin, "probe").contains(&format!("127.0.0.1:{port}"))
    });
    let insight = call("GET", &cp(cps, new_leader).url("/meshes/default/dataplanes+insights/web"), None).1;
    let last = insight["dataplaneInsight"]["subscriptions"].as_array().and_then(|s| s.last()).cloned();
    let last = last.unwrap_or_default();
    assert_ne!(last["controlPlaneInstanceId"].as_str(), Some(dead_id.as_str()), "{insight}");
    assert!(last["disconnectTime"].is_null(), "{insight}");
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
    let (ok, failed) = (ok.load(Ordering::SeqCst), failed.load(Ordering::SeqCst));
    eprintln!("multi: traffic during the takeover: {ok} ok, {failed} failed");
    assert_eq!(failed, 0, "traffic kept flowing");
    assert_eq!(&responders(url, 12), both);
    drop(dead);
    new_leader
}

#[allow(clippy::too_many_arguments)]
fn an_instance_cut_off_from_postgres_answers_503_and_catches_up(
    cps: &[Option<Daemon>],
    other: usize,
    c: usize,
    pg_link: &Proxy,
    be2: &Sidecar,
    url: &str,
    both: &BTreeSet<String>,
) {
    let cut_off = cp(cps, c);
    assert_eq!(ready(cut_off), 200);
    pg_link.set_cut(true);
    wait_until("C not ready", Duration::from_secs(10), || ready(cut_off) == 503);
    let asked = Instant::now();
    let status = put(cut_off, &endpoint("written-on-c", "probe", free_port()));
    let took = asked.elapsed();
    assert_eq!(status, 503);
    assert!(took < Duration::from_secs(1), "a write on a cut-off instance took {took:?} to fail");
    let (status, _) = call("GET", &cut_off.url("/meshes/default/dataplanes/web"), None);
    assert_eq!(status, 503, "reads too");
    // Should C lead, its term runs out and another instance takes over (never two at once).
    wait_until("a leader that can reach Postgres", TAKEOVER_BOUND + Duration::from_secs(3), || {
        let l = leaders(cps);
        assert!(l.len() <= 1, "two leaders: {l:?}");
        l.len() == 1 && l[0] != c
    });
    // C's Envoy keeps its config: traffic still reaches backend-2 through it.
    assert_eq!(&responders(url, 12), both);
    // A write elsewhere meanwhile; C's Envoy gets it once the link returns.
    let port = free_port();
    assert_eq!(put(cp(cps, other), &endpoint("written-during-cut", "probe", port)), 201);
    std::thread::sleep(Duration::from_millis(500));
    assert!(!hosts(be2.admin, "probe").contains(&format!("127.0.0.1:{port}")), "C cannot have heard of it yet");
    let back = Instant::now();
    pg_link.set_cut(false);
    wait_until("C ready again", Duration::from_secs(10), || ready(cut_off) == 200);
    eprintln!("multi: C ready {:?} after its Postgres link returned", back.elapsed());
    wait_until("C's Envoy catches up", Duration::from_secs(10), || {
        hosts(be2.admin, "probe").contains(&format!("127.0.0.1:{port}"))
    });
    eprintln!("multi: C's Envoy caught up {:?} after the link returned", back.elapsed());
    assert!(back.elapsed() < Duration::from_secs(4), "catching up took {:?}", back.elapsed());
    assert_eq!(put(cut_off, &endpoint("written-on-c", "probe", free_port())), 201);
    assert_eq!(leaders(cps).len(), 1, "one leader after the link returned");
}

fn subscriptions(d: &Daemon) -> Value {
    call("GET", &d.url("/meshes/default/dataplanes+insights/web"), None).1["dataplaneInsight"]["subscriptions"].clone()
}

fn a_moving_dataplane_is_never_offline_or_collected(
    cps: &[Option<Daemon>],
    web: &Sidecar,
    links: [&Proxy; 2],
    url: &str,
) {
    let live: Vec<usize> = (0..cps.len()).filter(|i| cps[*i].is_some()).collect();
    let any = cp(cps, live[0]);
    let ids: BTreeMap<String, usize> = live.iter().map(|i| (instance_id(cp(cps, *i)), *i)).collect();
    let current = |subs: &Value| -> Option<String> {
        subs.as_array()?
            .iter()
            .rfind(|s| s["disconnectTime"].is_null())
            .and_then(|s| s["controlPlaneInstanceId"].as_str().map(str::to_string))
    };
    let from = current(&subscriptions(any)).expect("web is connected");
    let from_ix = ids[&from];
    // Cut web off from the instance it is on (its link is one of the proxies).
    let (cut, keep) =
        if live.iter().position(|i| *i == from_ix) == Some(0) { (links[0], links[1]) } else { (links[1], links[0]) };
    keep.set_cut(false);
    cut.set_cut(true);
    let watch_until = Instant::now() + Duration::from_secs(5) + CLEANUP_AGE + Duration::from_secs(2);
    let mut moved = None;
    while Instant::now() < watch_until {
        let (status, body) = call("GET", &any.url("/meshes/default/dataplanes+insights/web"), None);
        assert_eq!(status, 200, "web was never collected: {body}");
        let subs = &body["dataplaneInsight"]["subscriptions"];
        let online = subs.as_array().is_some_and(|s| s.iter().any(|s| s["disconnectTime"].is_null()));
        // Between the cut and the reconnect the old stream is still open (delayed disconnect).
        assert!(online, "web shown offline while moving: {body}");
        if let Some(now) = current(subs).filter(|c| *c != from) {
            moved.get_or_insert(now);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let moved = moved.expect("web moved to another instance");
    eprintln!("multi: web moved from {from} to {moved}; never offline, never collected");
    assert!(get_text(url).is_some());
    let _ = web;
    cut.set_cut(false);
}

/// The ports written to one key in order, and the last one answered 2xx.
type Writes = (Vec<u16>, Option<u16>);

fn postgres_restarted_under_load(
    pg: &Cluster,
    cps: &[Option<Daemon>],
    envoys: &[u16],
    url: &str,
    both: &BTreeSet<String>,
) {
    let live: Vec<usize> = (0..cps.len()).filter(|i| cps[*i].is_some()).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let (h, _ok, failed) = traffic(url.to_string(), stop.clone());
    // Per key: the ports of every write in order, and the last one answered 2xx.
    let acked: Mutex<BTreeMap<String, Writes>> = Mutex::default();
    let writing = AtomicBool::new(true);
    std::thread::scope(|s| {
        for t in 0..4u16 {
            let (acked, writing, live) = (&acked, &writing, &live);
            s.spawn(move || {
                let mut n = 0u16;
                while writing.load(Ordering::SeqCst) {
                    let name = format!("load-{t}");
                    let port = 40000 + t * 1000 + n;
                    let status = put(cp(cps, live[usize::from(n) % live.len()]), &endpoint(&name, "load", port));
                    let mut a = acked.lock().unwrap();
                    let e = a.entry(name).or_default();
                    e.0.push(port);
                    if status == 200 || status == 201 {
                        e.1 = Some(port);
                    }
                    drop(a);
                    n += 1;
                    std::thread::sleep(Duration::from_millis(50));
                }
            });
        }
        std::thread::sleep(Duration::from_secs(1));
        pg.stop();
        std::thread::sleep(Duration::from_secs(2));
        pg.restart();
        let back = Instant::now();
        for i in live.iter() {
            wait_until("every instance ready again", Duration::from_secs(15), || ready(cp(cps, *i)) == 200);
        }
        eprintln!("multi: every instance ready {:?} after Postgres restarted", back.elapsed());
        std::thread::sleep(Duration::from_secs(1));
        writing.store(false, Ordering::SeqCst);
    });
    stop.store(true, Ordering::SeqCst);
    h.join().unwrap();
    assert_eq!(failed.load(Ordering::SeqCst), 0, "Envoys kept routing while Postgres was down");
    let rows = pg
        .admin("higuma")
        .query("SELECT name, spec FROM resources WHERE type = 'Dataplane' AND name LIKE 'load-%'", &[])
        .unwrap();
    let stored: BTreeMap<String, u16> = rows
        .iter()
        .map(|r| {
            let spec: Value = serde_json::from_str(&r.get::<_, String>(1)).unwrap();
            (r.get::<_, String>(0), spec["networking"]["inbound"][0]["port"].as_u64().unwrap() as u16)
        })
        .collect();
    for (name, (tried, last_ok)) in acked.lock().unwrap().iter() {
        let Some(last_ok) = last_ok else { continue };
        let stored = stored.get(name).unwrap_or_else(|| panic!("{name}: an acknowledged write is lost"));
        // The last acknowledged write, or a later one whose answer was lost with the link.
        let later = tried.iter().skip_while(|p| *p != last_ok).collect::<Vec<_>>();
        assert!(later.contains(&stored), "{name}: stored port {stored}, last acknowledged {last_ok}");
    }
    // A write after the recovery reaches the Envoys of every instance.
    let port = free_port();
    assert_eq!(put(cp(cps, live[0]), &endpoint("after-restart", "probe", port)), 201);
    for admin in envoys {
        wait_until("the write after the restart reaches every Envoy", Duration::from_secs(10), || {
            hosts(*admin, "probe").contains(&format!("127.0.0.1:{port}"))
        });
    }
    assert_eq!(&responders(url, 12), both);
}

/// A fourth instance joins with `xdsServer.maxStreamAge`: its Envoy's connection gets a
/// GOAWAY every ~2 s (through the DP server's TLS front end) and Envoy reconnects, keeping
/// its config; the instance's stream gauge counts the one stream.
fn a_maximum_stream_age_makes_envoy_reconnect(base: &[(String, String)], dir: &Path) {
    let mut env: Vec<(&str, &str)> = base.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env.push(("KUMA_XDS_SERVER_MAX_STREAM_AGE", "2s"));
    let d = Daemon::start(&env);
    let outbound = free_port();
    assert_eq!(put(&d, &dataplane("aged", "aged", "http", free_port(), free_port(), &[], &[("probe", outbound)])), 201);
    let aged = sidecar(&d, &[d.xds_port], dir, "aged");
    wait_until("aged's Envoy has its config", Duration::from_secs(30), || !hosts(aged.admin, "probe").is_empty());
    let connects = || stat(aged.admin, "cluster.ads_cluster.upstream_cx_total").unwrap_or(0);
    let first = connects();
    let since = Instant::now();
    wait_until("two reconnects after GOAWAYs", Duration::from_secs(12), || connects() >= first + 2);
    eprintln!("multi: with maxStreamAge 2s, Envoy reconnected twice in {:?}", since.elapsed());
    assert!(!hosts(aged.admin, "probe").is_empty(), "Envoy kept its config");
    wait_until("one stream on the instance", Duration::from_secs(5), || d.metric("xds_streams_active") == 1);
}

/// `higuma dp run --dataplane-file` then SIGTERM: the Dataplane it created is deleted, one
/// that existed before (it only updated it) is kept, as kuma-dp's lifecycle does.
fn dp_run_deletes_on_exit_only_the_dataplane_it_created(d: &Daemon, dir: &Path) {
    let existing = dataplane("kept", "kept", "http", free_port(), free_port(), &[], &[]);
    assert_eq!(put(d, &existing), 201);
    let mut runs = Vec::new();
    for name in ["created", "kept"] {
        let file = dir.join(format!("{name}.json"));
        std::fs::write(&file, dataplane(name, name, "http", free_port(), free_port(), &[], &[]).to_string()).unwrap();
        let token = dir.join(format!("{name}.token"));
        std::fs::write(&token, d.token("default", name)).unwrap();
        let admin = free_port();
        let mut cmd = Command::new(higuma_bin());
        cmd.args(["dp", "run", "--mesh", "default", "--name", name, "--cp-address", &d.dp_address()])
            .args(["--api-address", &d.url("")])
            .arg("--dataplane-file")
            .arg(&file)
            .arg("--ca-cert-file")
            .arg(&d.ca_file)
            .arg("--token-file")
            .arg(&token)
            .args(["--admin-port", &admin.to_string(), "--envoy"])
            .arg(envoy_bin())
            .args(["--", "--log-level", "warn"]);
        let proc = Proc::spawn(cmd, dir.join(format!("{name}.log")));
        wait_until(&format!("{name}'s Envoy is up"), Duration::from_secs(30), || {
            get_text(&format!("http://127.0.0.1:{admin}/ready")).is_some()
        });
        runs.push((name, proc));
    }
    for (name, mut proc) in runs {
        // SIGTERM to dp run alone: it passes it on to Envoy and waits for it.
        let _ = Command::new("kill").args(["-TERM", &proc.child.id().to_string()]).status();
        let status = proc.child.wait().unwrap();
        assert!(status.success(), "{name}: dp run exited with {status}: {}", proc.log_text());
        let got = call("GET", &d.url(&format!("/meshes/default/dataplanes/{name}")), None).0;
        let want = if name == "created" { 404 } else { 200 };
        assert_eq!(got, want, "{name} after a clean exit: {}", proc.log_text());
    }
}
