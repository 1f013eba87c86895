//! The benchmark scenarios. Each returns its figures as JSON; the `higuma-load` binary
//! collects them into a result file and renders BENCHMARKS.md.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::fleet::{Fleet, SimDataplane};
use super::procstat::{self, ProcStat};
use super::topology::{service_name, DataplaneDef, Topology};
use crate::http::retry_on_stale_connection;
use crate::xds::resource_kind::ResourceKind;

/// Waiting for a change longer than this counts it as lost.
const CHANGE_TIMEOUT: Duration = Duration::from_secs(30);
/// After a write that must reach nobody, how long the fleet is watched for responses: well
/// over a push's p99 and one refresh interval (1 s), so a push that would come does.
const QUIET_WINDOW: Duration = Duration::from_millis(2500);
/// Policy types whose stored policies the identical re-PUT writes back (the mix, the
/// scenarios' own and Kuma's defaults).
const REPUT_POLICY_TYPES: &[&str] = &[
    "meshtimeouts",
    "meshretries",
    "meshcircuitbreakers",
    "meshhealthchecks",
    "meshhttproutes",
    "meshtrafficpermissions",
];

/// Runs one SQL statement; rows affected.
pub type PgExecute = Box<dyn Fn(&str) -> Result<u64, String> + Send + Sync>;

/// The control plane under test.
pub struct Target {
    /// `http://127.0.0.1:5681`
    pub api: String,
    /// `127.0.0.1:5678`, one per control-plane instance (the fleet is spread round-robin;
    /// writes go to the first instance's `api`).
    pub xds: Vec<String>,
    /// Each instance's `/metrics` URL, for its own Postgres query counter.
    pub metrics: Vec<String>,
    /// The first instance's process (CPU and memory figures).
    pub pid: u32,
    /// Postgres transactions committed or rolled back so far in higuma's database, if any.
    pub pg_transactions: Option<Box<dyn Fn() -> u64 + Send + Sync>>,
    /// Runs one SQL statement on higuma's database (rows affected), for writes another
    /// instance would make (the status-write burst); `None` on the memory store.
    pub pg_execute: Option<PgExecute>,
    /// Each instance's DP server CA (as `xds`) when it speaks TLS: every simulated sidecar
    /// verifies its instance's; empty for plaintext.
    pub cas: Vec<Vec<u8>>,
    /// The DP server checks dataplane tokens: each simulated sidecar gets its own from
    /// `POST /tokens/dataplane`, as an operator provisions a VM.
    pub tokens: bool,
}

#[derive(Clone, Debug)]
pub struct Options {
    pub topology: Topology,
    pub ramp: Duration,
    pub idle: Duration,
    /// Wait before the idle window (see `higuma-load run --settle`).
    pub settle: Duration,
    pub changes: usize,
    pub churn: Duration,
    pub churn_rate: u32,
    /// Connections per instance all streams share (0: one per stream, as Envoy).
    pub connections: usize,
    pub completion_queues: usize,
    /// Apply the realistic policy mix ([`Topology::policy_mix`]) before the fleet connects.
    pub policy_mix: bool,
    /// Mesh mTLS (builtin CA, Kuma's default mode) and an allow-all MeshTrafficPermission
    /// before the fleet connects: every dataplane also waits for its certificate over SDS.
    pub mtls: bool,
}

pub struct Bench {
    target: Target,
    opts: Options,
    fleet: Fleet,
    defs: Vec<DataplaneDef>,
    sims: Vec<Arc<SimDataplane>>,
    /// Each dataplane's token (index as `defs`), when the DP server checks them.
    tokens: Vec<Option<String>>,
    /// Seconds spent issuing `tokens` (part of setup, not of the cold start).
    tokens_s: f64,
    /// Service → indices of the dataplanes consuming it.
    consumers: HashMap<String, Vec<usize>>,
    agent: ureq::Agent,
    rng: fastrand::Rng,
}

fn secs(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e6
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Per-instance rates between two counter readings (null where either is missing).
fn per_second(before: &[Option<u64>], after: &[Option<u64>], seconds: f64) -> Value {
    before
        .iter()
        .zip(after)
        .map(|(b, a)| match (b, a) {
            (Some(b), Some(a)) if seconds > 0.0 => json!(a.saturating_sub(*b) as f64 / seconds),
            _ => Value::Null,
        })
        .collect()
}

fn ms_stats(mut v: Vec<f64>) -> Value {
    v.sort_by(|a, b| a.total_cmp(b));
    json!({
        "count": v.len(),
        "p50_ms": percentile(&v, 0.50),
        "p99_ms": percentile(&v, 0.99),
        "max_ms": v.last().copied().unwrap_or(0.0),
    })
}

impl Bench {
    /// Creates every dataplane of the topology through the API (4 writers).
    pub fn setup(target: Target, opts: Options) -> Result<Bench, String> {
        let defs = opts.topology.dataplanes();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .into();
        if opts.mtls {
            put(&agent, &target.api, "/meshes/default", &mtls_mesh(None))?;
            let allow = json!({"type": "MeshTrafficPermission", "mesh": "default", "name": "allow-all",
                "spec": {"targetRef": {"kind": "Mesh"},
                         "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": "Allow"}}]}});
            put(&agent, &target.api, &policy_path(&allow), &allow)?;
        }
        let chunks: Vec<Vec<DataplaneDef>> = defs.chunks(defs.len().div_ceil(4).max(1)).map(|c| c.to_vec()).collect();
        let tokens_busy = std::sync::atomic::AtomicU64::new(0);
        let results: Vec<Result<Vec<Option<String>>, String>> = std::thread::scope(|s| {
            let handles: Vec<_> = chunks
                .iter()
                .map(|chunk| {
                    let (agent, api, busy) = (agent.clone(), target.api.clone(), &tokens_busy);
                    let with_tokens = target.tokens;
                    s.spawn(move || {
                        let mut tokens = Vec::with_capacity(chunk.len());
                        for d in chunk {
                            put(&agent, &api, &format!("/meshes/default/dataplanes/{}", d.name), &d.to_json())?;
                            let t0 = Instant::now();
                            tokens.push(if with_tokens { Some(dataplane_token(&agent, &api, &d.name)?) } else { None });
                            busy.fetch_add(t0.elapsed().as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
                        }
                        Ok(tokens)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("setup thread panicked".into()))).collect()
        });
        let mut tokens = Vec::with_capacity(defs.len());
        for r in results {
            tokens.extend(r?);
        }
        // Wall time of the issuing, as the 4 writers shared it.
        let tokens_s = tokens_busy.into_inner() as f64 / 1e9 / chunks.len().max(1) as f64;
        if opts.policy_mix {
            for p in opts.topology.policy_mix() {
                let path = policy_path(&p);
                put(&agent, &target.api, &path, &p)?;
            }
        }
        let mut consumers: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, d) in defs.iter().enumerate() {
            for svc in &d.outbounds {
                consumers.entry(svc.clone()).or_default().push(i);
            }
        }
        let mut fleet = Fleet::new(&target.xds, opts.completion_queues, opts.connections, target.cas.clone());
        if opts.mtls {
            use crate::mtls::names;
            fleet = fleet.with_secrets(vec![names::identity_cert_sds("default"), names::mesh_ca_sds("default")]);
        }
        let seed = opts.topology.seed;
        Ok(Bench {
            target,
            opts,
            fleet,
            defs,
            sims: Vec::new(),
            tokens,
            tokens_s,
            consumers,
            agent,
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
        })
    }

    fn cp(&self) -> ProcStat {
        procstat::read(self.target.pid).unwrap_or_default()
    }

    /// Scenario 1: every dataplane connects (over the ramp); time until all are configured.
    pub fn cold(&mut self) -> Value {
        let before = self.cp();
        let me = procstat::read_self();
        let started = Instant::now();
        let nodes: Vec<(String, Vec<String>, Option<String>)> = self
            .defs
            .iter()
            .zip(&self.tokens)
            .map(|(d, token)| (format!("default.{}", d.name), d.outbounds.clone(), token.clone()))
            .collect();
        self.sims = self.fleet.connect_all(&nodes, self.opts.ramp);
        let connected = started.elapsed();
        let deadline = Instant::now() + Duration::from_secs(600);
        let mut configured = 0;
        while Instant::now() < deadline {
            configured = self.sims.iter().filter(|s| s.configured()).count();
            if configured == self.sims.len() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let all = started.elapsed();
        let after = self.cp();
        json!({
            "dataplanes": self.sims.len(),
            "configured": configured,
            "tls": !self.target.cas.is_empty(),
            "tokens": self.target.tokens,
            "tokens_issued_s": self.tokens_s,
            "ramp_s": secs(self.opts.ramp),
            "connect_s": secs(connected),
            "all_configured_s": secs(all),
            "cp_cpu_s": after.cpu_secs - before.cpu_secs,
            "cp_peak_rss_mb": after.peak_rss_bytes as f64 / 1048576.0,
            "cp_rss_mb": after.rss_bytes as f64 / 1048576.0,
            "loadgen_cpu_s": procstat::read_self().cpu_secs - me.cpu_secs,
        })
    }

    fn totals(&self) -> (u64, u64) {
        let responses = self.sims.iter().map(|s| s.stats.total()).sum();
        let bytes = self.sims.iter().map(|s| s.stats.bytes.load(std::sync::atomic::Ordering::Relaxed)).sum();
        (responses, bytes)
    }

    /// Scenario 2: nothing changes for a while.
    pub fn idle(&self) -> Value {
        std::thread::sleep(self.opts.settle);
        let (r0, b0) = self.totals();
        let tx0 = self.target.pg_transactions.as_ref().map(|f| f());
        let q0 = self.queries_by_instance();
        let cp0 = self.cp();
        let me = procstat::read_self();
        let started = Instant::now();
        std::thread::sleep(self.opts.idle);
        let elapsed = started.elapsed().as_secs_f64();
        let qps = per_second(&q0, &self.queries_by_instance(), elapsed);
        let cp1 = self.cp();
        let (r1, b1) = self.totals();
        let pg_qps = match (tx0, self.target.pg_transactions.as_ref()) {
            // One transaction of the two is this probe's own.
            (Some(a), Some(f)) => Some((f().saturating_sub(a).saturating_sub(1)) as f64 / elapsed),
            _ => None,
        };
        json!({
            "seconds": elapsed,
            "settle_s": self.opts.settle.as_secs_f64(),
            "cp_cpu_percent": (cp1.cpu_secs - cp0.cpu_secs) / elapsed * 100.0,
            "responses_sent": r1 - r0,
            "bytes_sent": b1 - b0,
            "pg_transactions_per_s": pg_qps,
            "pg_queries_per_s_by_instance": qps,
            "loadgen_cpu_percent": (procstat::read_self().cpu_secs - me.cpu_secs) / elapsed * 100.0,
        })
    }

    /// If every dataplane in `watch` has received a response of `kind` newer than `before`,
    /// the latest arrival after `t0` in milliseconds.
    fn arrived_kind(&self, watch: &[usize], kind: ResourceKind, before: &[u64], t0: u64) -> Option<f64> {
        if !watch.iter().zip(before).all(|(i, b)| self.sims[*i].stats.count(kind) > *b) {
            return None;
        }
        let last = watch
            .iter()
            .map(|i| self.sims[*i].stats.last_at[kind.index()].load(std::sync::atomic::Ordering::Relaxed))
            .max()
            .unwrap_or(t0);
        Some(last.saturating_sub(t0) as f64 / 1e6)
    }

    /// Waits until [`arrived_kind`](Self::arrived_kind) says so (None: timed out).
    fn wait_for(&self, watch: &[usize], kind: ResourceKind, before: &[u64], t0: u64) -> Option<f64> {
        let deadline = Instant::now() + CHANGE_TIMEOUT;
        loop {
            if let Some(ms) = self.arrived_kind(watch, kind, before, t0) {
                return Some(ms);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }

    /// Scenario 3: changes that each affect one service (an instance appears or goes away).
    pub fn targeted(&mut self) -> Value {
        let mut latencies = Vec::new();
        let mut cross = Vec::new();
        let (mut lost, mut spurious, mut affected_total, mut received_total) = (0usize, 0usize, 0usize, 0usize);
        let mut extra: Option<(String, String)> = None;
        for i in 0..self.opts.changes {
            let (service, path, body) = match extra.take() {
                Some((name, service)) => (service, format!("/meshes/default/dataplanes/{name}"), None),
                None => {
                    let s = loop {
                        let s = service_name(self.rng.usize(..self.opts.topology.services));
                        if self.consumers.get(&s).is_some_and(|c| !c.is_empty()) {
                            break s;
                        }
                    };
                    let name = format!("extra-{i}");
                    let def = DataplaneDef {
                        name: name.clone(),
                        service: s.clone(),
                        address: format!("10.255.{}.{}", i / 250, i % 250 + 1),
                        http: false,
                        outbounds: Vec::new(),
                    };
                    extra = Some((name.clone(), s.clone()));
                    (s, format!("/meshes/default/dataplanes/{name}"), Some(def.to_json()))
                }
            };
            let affected = self.consumers.get(&service).cloned().unwrap_or_default();
            let before_eds: Vec<u64> =
                affected.iter().map(|i| self.sims[*i].stats.count(ResourceKind::Endpoint)).collect();
            let before_all: Vec<u64> = self.sims.iter().map(|s| s.stats.total()).collect();
            let result = match &body {
                Some(b) => put(&self.agent, &self.target.api, &path, b),
                None => delete(&self.agent, &self.target.api, &path),
            };
            let t0 = self.fleet.now_nanos();
            if let Err(e) = result {
                log::error!("change {i} failed: {e}");
                lost += 1;
                continue;
            }
            match self.wait_for(&affected, ResourceKind::Endpoint, &before_eds, t0) {
                Some(ms) => {
                    latencies.push(ms);
                    // The write went to instance 0: the consumers on the others measure
                    // how long a write takes to cross instances.
                    let (remote, before): (Vec<usize>, Vec<u64>) = affected
                        .iter()
                        .zip(&before_eds)
                        .filter(|(i, _)| self.sims[**i].instance != 0)
                        .map(|(i, b)| (*i, *b))
                        .unzip();
                    if !remote.is_empty() {
                        if let Some(ms) = self.arrived_kind(&remote, ResourceKind::Endpoint, &before, t0) {
                            cross.push(ms);
                        }
                    }
                }
                None => lost += 1,
            }
            // Late pushes to anybody else would show up here.
            std::thread::sleep(Duration::from_millis(100));
            let affected_set: std::collections::HashSet<usize> = affected.iter().copied().collect();
            for (j, s) in self.sims.iter().enumerate() {
                if s.stats.total() > before_all[j] {
                    received_total += 1;
                    if !affected_set.contains(&j) {
                        spurious += 1;
                    }
                }
            }
            affected_total += affected.len();
        }
        let mut v = ms_stats(latencies);
        v["changes"] = json!(self.opts.changes);
        v["lost"] = json!(lost);
        v["affected_dataplanes"] = json!(affected_total);
        v["dataplanes_that_received"] = json!(received_total);
        v["spurious_pushes"] = json!(spurious);
        v["instances"] = json!(self.fleet.instances());
        if self.fleet.instances() > 1 {
            v["cross_instance"] = ms_stats(cross);
        }
        v
    }

    /// Scenario 3b: a MeshTimeout on one service at a time; only that service's consumers may
    /// receive anything (their clusters' connect timeout changes).
    pub fn targeted_policy(&mut self) -> Value {
        self.targeted_writes(ResourceKind::Cluster, |bench, i| {
            let service = loop {
                let s = service_name(bench.rng.usize(..bench.opts.topology.services));
                if bench.consumers.get(&s).is_some_and(|c| !c.is_empty()) {
                    break s;
                }
            };
            let affected = bench.consumers.get(&service).cloned().unwrap_or_default();
            // One policy per service, updated when the service comes up again: a second
            // policy with an equal targetRef would lose to the first on name order (the
            // smallest name wins) and change nothing. The timeout is new on every change.
            let name = format!("bench-targeted-{service}");
            let policy = json!({"type": "MeshTimeout", "mesh": "default", "name": name, "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": {"kind": "MeshService", "name": service},
                        "default": {"connectionTimeout": format!("{}s", 7 + i)}}]}});
            (affected, policy)
        })
    }

    /// Scenario 3c (mesh mTLS): a MeshTrafficPermission on one service, denying then
    /// allowing the mesh in turn; only that service's own instances (its providers, whose
    /// inbound listeners carry the RBAC filter) may receive anything.
    pub fn targeted_permission(&mut self) -> Value {
        let mut denied: std::collections::HashSet<String> = Default::default();
        self.targeted_writes(ResourceKind::Listener, |bench, _| {
            let service = service_name(bench.rng.usize(..bench.opts.topology.services));
            let affected: Vec<usize> = (0..bench.defs.len()).filter(|j| bench.defs[*j].service == service).collect();
            // One policy per service whose action flips on every write, so a repeat pick of
            // a service changes something too.
            let action = if denied.insert(service.clone()) {
                "Deny"
            } else {
                denied.remove(&service);
                "AllowWithShadowDeny"
            };
            let policy = json!({"type": "MeshTrafficPermission", "mesh": "default", "name": format!("bench-mtp-{service}"),
                "spec": {"targetRef": {"kind": "MeshService", "name": service},
                         "from": [{"targetRef": {"kind": "Mesh"}, "default": {"action": action}}]}});
            (affected, policy)
        })
    }

    /// `changes` policy writes, each of which must reach its `affected` dataplanes (their
    /// `kind` ACKed) and nobody else; `next(bench, i)` picks write `i` and who it affects.
    fn targeted_writes(
        &mut self,
        kind: ResourceKind,
        mut next: impl FnMut(&mut Bench, usize) -> (Vec<usize>, Value),
    ) -> Value {
        let mut latencies = Vec::new();
        let (mut lost, mut spurious, mut affected_total) = (0usize, 0usize, 0usize);
        for i in 0..self.opts.changes {
            let (affected, policy) = next(self, i);
            let before: Vec<u64> = affected.iter().map(|j| self.sims[*j].stats.count(kind)).collect();
            let before_all: Vec<u64> = self.sims.iter().map(|s| s.stats.total()).collect();
            let result = put(&self.agent, &self.target.api, &policy_path(&policy), &policy);
            let t0 = self.fleet.now_nanos();
            if let Err(e) = result {
                log::error!("policy change {i} failed: {e}");
                lost += 1;
                continue;
            }
            match self.wait_for(&affected, kind, &before, t0) {
                Some(ms) => latencies.push(ms),
                None => lost += 1,
            }
            std::thread::sleep(Duration::from_millis(100));
            let affected_set: std::collections::HashSet<usize> = affected.iter().copied().collect();
            spurious += self
                .sims
                .iter()
                .enumerate()
                .filter(|(j, s)| s.stats.total() > before_all[*j] && !affected_set.contains(j))
                .count();
            affected_total += affected.len();
        }
        let mut v = ms_stats(latencies);
        v["changes"] = json!(self.opts.changes);
        v["lost"] = json!(lost);
        v["affected_dataplanes"] = json!(affected_total);
        v["spurious_pushes"] = json!(spurious);
        v
    }

    /// Runs `write`, then watches the fleet for [`QUIET_WINDOW`]: `writes` writes that must
    /// reach nobody, and what reached whom anyway.
    fn quiet(&mut self, writes: usize, write: impl FnOnce(&mut Bench) -> Result<(), String>) -> Value {
        let before: Vec<u64> = self.sims.iter().map(|s| s.stats.total()).collect();
        let started = Instant::now();
        let result = write(self);
        let wrote = started.elapsed();
        std::thread::sleep(QUIET_WINDOW);
        let (mut responses, mut receivers) = (0u64, 0usize);
        for (s, b) in self.sims.iter().zip(&before) {
            let n = s.stats.total().saturating_sub(*b);
            responses += n;
            receivers += usize::from(n > 0);
        }
        json!({
            "writes": writes,
            "write_s": secs(wrote),
            "error": result.err(),
            "responses": responses,
            "dataplanes_that_received": receivers,
        })
    }

    /// Field regressions as scenarios (Kuma #17062, Istio #60629: writes that change nothing
    /// a proxy is configured from pushed to every proxy): each must reach nobody.
    /// - `dataplane_reput`: up to 1,000 Dataplanes PUT again unchanged;
    /// - `policy_reput`: every stored policy of the mesh PUT again unchanged;
    /// - `metadata_only`: 1,000 Dataplanes PUT with the read-only `creationTime` and
    ///   `modificationTime` a client echoes back (`kumactl get -o yaml | kumactl apply`);
    ///   Kuma's `labels` need its 2.6 schema, which higuma does not have yet;
    /// - `other_mesh`: a Mesh and a MeshTimeout written (and deleted) in another mesh;
    /// - `status_burst` (Postgres): every DataplaneInsight row rewritten in one statement, as
    ///   the status writers of other instances would, each a change event here.
    pub fn field_regressions(&mut self) -> Value {
        let n = self.defs.len().min(1000);
        let dataplanes: Vec<(String, Value)> =
            self.defs[..n].iter().map(|d| (format!("/meshes/default/dataplanes/{}", d.name), d.to_json())).collect();
        let dataplane_reput =
            self.quiet(n, |b| dataplanes.iter().try_for_each(|(path, body)| put(&b.agent, &b.target.api, path, body)));
        let mut policies: Vec<(String, Value)> = Vec::new();
        for ws in REPUT_POLICY_TYPES {
            match get_json(&self.agent, &self.target.api, &format!("/meshes/default/{ws}")) {
                Ok(list) => {
                    for item in list["items"].as_array().cloned().unwrap_or_default() {
                        policies.push((policy_path(&item), strip_read_only(item)));
                    }
                }
                Err(e) => log::error!("listing {ws}: {e}"),
            }
        }
        let policy_reput = self.quiet(policies.len(), |b| {
            policies.iter().try_for_each(|(path, body)| put(&b.agent, &b.target.api, path, body))
        });
        let metadata_only = self.quiet(n, |b| {
            dataplanes.iter().try_for_each(|(path, body)| {
                let mut body = body.clone();
                body["creationTime"] = json!("2020-01-01T00:00:00Z");
                body["modificationTime"] = json!("2020-01-01T00:00:00Z");
                put(&b.agent, &b.target.api, path, &body)
            })
        });
        let other_mesh = self.quiet(4, |b| {
            let api = b.target.api.clone();
            put(&b.agent, &api, "/meshes/bench-other", &json!({"type": "Mesh", "name": "bench-other"}))?;
            let timeout = json!({"type": "MeshTimeout", "mesh": "bench-other", "name": "bench-other-timeout",
                "spec": {"targetRef": {"kind": "Mesh"},
                         "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "3s"}}]}});
            put(&b.agent, &api, "/meshes/bench-other/meshtimeouts/bench-other-timeout", &timeout)?;
            delete(&b.agent, &api, "/meshes/bench-other/meshtimeouts/bench-other-timeout")?;
            delete(&b.agent, &api, "/meshes/bench-other")
        });
        let mut v = json!({
            "dataplane_reput": dataplane_reput,
            "policy_reput": policy_reput,
            "metadata_only": metadata_only,
            "other_mesh": other_mesh,
        });
        if self.target.pg_execute.is_some() {
            let rows = std::cell::Cell::new(0u64);
            let mut burst = self.quiet(0, |b| {
                let exec = b.target.pg_execute.as_ref().ok_or("no Postgres")?;
                rows.set(exec(
                    "UPDATE resources SET version = version + 1, modification_time = now() \
                     WHERE type = 'DataplaneInsight' AND mesh = 'default'",
                )?);
                Ok(())
            });
            burst["writes"] = json!(rows.get());
            v["status_burst"] = burst;
        }
        v
    }

    /// Scenario 4b (mesh mTLS): a rotation wave. The Mesh's certificate lifetime changes,
    /// so every dataplane's certificate is issued again; time until every one of them has
    /// its new certificate over SDS, and higuma's CPU over the wave.
    pub fn rotation_wave(&self) -> Value {
        let watch: Vec<usize> = (0..self.sims.len()).collect();
        let before: Vec<u64> = watch.iter().map(|i| self.sims[*i].stats.count(ResourceKind::Secret)).collect();
        let cp0 = self.cp();
        let result = put(&self.agent, &self.target.api, "/meshes/default", &mtls_mesh(Some("23h")));
        let t0 = self.fleet.now_nanos();
        let latency = result.ok().and_then(|_| self.wait_for(&watch, ResourceKind::Secret, &before, t0));
        let cp1 = self.cp();
        json!({
            "dataplanes": watch.len(),
            "all_rotated_ms": latency,
            "cp_cpu_s": cp1.cpu_secs - cp0.cpu_secs,
            "cp_rss_mb": cp1.rss_bytes as f64 / 1048576.0,
        })
    }

    /// Scenario 4: one change every dataplane's config depends on: a mesh-wide MeshTimeout
    /// whose name sorts before the default `mesh-timeout-all-default`, so on equal targetRef
    /// kinds it wins (Kuma 2.6+: the smallest name wins) and every cluster's connect timeout
    /// changes.
    pub fn mesh_wide(&self) -> Value {
        let watch: Vec<usize> = (0..self.sims.len()).filter(|i| !self.defs[*i].outbounds.is_empty()).collect();
        let before: Vec<u64> = watch.iter().map(|i| self.sims[*i].stats.count(ResourceKind::Cluster)).collect();
        let cp0 = self.cp();
        let policy = json!({
            "type": "MeshTimeout", "mesh": "default", "name": "bench-mesh-wide",
            "spec": {"targetRef": {"kind": "Mesh"},
                     "to": [{"targetRef": {"kind": "Mesh"}, "default": {"connectionTimeout": "6s"}}]}
        });
        let result = put(&self.agent, &self.target.api, "/meshes/default/meshtimeouts/bench-mesh-wide", &policy);
        let t0 = self.fleet.now_nanos();
        let latency = result.ok().and_then(|_| self.wait_for(&watch, ResourceKind::Cluster, &before, t0));
        json!({
            "dataplanes": watch.len(),
            "all_acked_ms": latency,
            "cp_cpu_s": self.cp().cpu_secs - cp0.cpu_secs,
        })
    }

    /// Scenario 5: dataplanes leave and join at `churn_rate` per second; how long each
    /// endpoint change takes to reach the consumers of its service.
    pub fn churn(&mut self) -> Value {
        /// One endpoint change on its way to the consumers of its service. Consumers are
        /// confirmed in order and never re-checked (a count only grows), so checking
        /// hundreds of pending events costs the harness what arrived, not what is pending.
        struct Pending {
            watch: Vec<usize>,
            before: Vec<u64>,
            t0: u64,
            confirmed: usize,
            /// Latest arrival among the confirmed consumers (fleet nanoseconds).
            last: u64,
        }
        impl Pending {
            /// Milliseconds from the change to its last consumer, once all have it.
            fn advance(&mut self, sims: &[Arc<SimDataplane>]) -> Option<f64> {
                while let Some(&i) = self.watch.get(self.confirmed) {
                    let stats = &sims[i].stats;
                    if stats.count(ResourceKind::Endpoint) <= self.before[self.confirmed] {
                        return None;
                    }
                    let at = stats.last_at[ResourceKind::Endpoint.index()].load(std::sync::atomic::Ordering::Relaxed);
                    self.last = self.last.max(at);
                    self.confirmed += 1;
                }
                Some(self.last.max(self.t0).saturating_sub(self.t0) as f64 / 1e6)
            }
        }
        let period = Duration::from_secs_f64(1.0 / self.opts.churn_rate.max(1) as f64);
        let cp0 = self.cp();
        let q0 = self.queries_by_instance();
        let started = Instant::now();
        let mut pending: Vec<Pending> = Vec::new();
        let mut latencies = Vec::new();
        let mut joined: std::collections::VecDeque<(String, String, Arc<SimDataplane>)> = Default::default();
        let (mut events, mut lost, mut n) = (0usize, 0usize, 0usize);
        let mut next = Instant::now();
        while started.elapsed() < self.opts.churn {
            if Instant::now() >= next {
                next += period;
                let leave = joined.len() >= 10 && n % 2 == 1;
                n += 1;
                // Counters are read before the write: a push can beat the API's answer.
                let snapshot = |bench: &Bench, service: &str| -> (Vec<usize>, Vec<u64>) {
                    let watch = bench.consumers.get(service).cloned().unwrap_or_default();
                    let before = watch.iter().map(|i| bench.sims[*i].stats.count(ResourceKind::Endpoint)).collect();
                    (watch, before)
                };
                let (watch, before, result) = if leave {
                    let (name, service, sim) = joined.pop_front().expect("checked len");
                    sim.close();
                    let (watch, before) = snapshot(self, &service);
                    (
                        watch,
                        before,
                        delete(&self.agent, &self.target.api, &format!("/meshes/default/dataplanes/{name}")),
                    )
                } else {
                    let svc = service_name(self.rng.usize(..self.opts.topology.services));
                    let (watch, before) = snapshot(self, &svc);
                    let name = format!("churn-{n}");
                    let def = DataplaneDef {
                        name: name.clone(),
                        service: svc.clone(),
                        address: format!("10.254.{}.{}", (n / 250) % 250, n % 250 + 1),
                        http: false,
                        outbounds: vec![service_name(self.rng.usize(..self.opts.topology.services))],
                    };
                    // As an operator provisions a VM: its token, its Dataplane, its sidecar.
                    let token = match self.target.tokens {
                        true => dataplane_token(&self.agent, &self.target.api, &name).map(Some),
                        false => Ok(None),
                    };
                    let r = token.and_then(|token| {
                        put(
                            &self.agent,
                            &self.target.api,
                            &format!("/meshes/default/dataplanes/{name}"),
                            &def.to_json(),
                        )
                        .map(|()| token)
                    });
                    if let Ok(token) = &r {
                        let sim =
                            self.fleet.connect(&format!("default.{name}"), def.outbounds.clone(), token.as_deref());
                        joined.push_back((name.clone(), svc.clone(), sim));
                    }
                    let r = r.map(|_| ());
                    (watch, before, r)
                };
                let t0 = self.fleet.now_nanos();
                events += 1;
                if result.is_err() {
                    lost += 1;
                } else {
                    pending.push(Pending { watch, before, t0, confirmed: 0, last: 0 });
                }
            }
            let now = self.fleet.now_nanos();
            let sims = &self.sims;
            pending.retain_mut(|p| match p.advance(sims) {
                Some(ms) => {
                    latencies.push(ms);
                    false
                }
                None if now.saturating_sub(p.t0) > CHANGE_TIMEOUT.as_nanos() as u64 => {
                    lost += 1;
                    false
                }
                None => true,
            });
            std::thread::sleep(Duration::from_micros(500));
        }
        // Let the last events land.
        let drain = Instant::now() + Duration::from_secs(5);
        while !pending.is_empty() && Instant::now() < drain {
            std::thread::sleep(Duration::from_millis(5));
            let sims = &self.sims;
            pending.retain_mut(|p| match p.advance(sims) {
                Some(ms) => {
                    latencies.push(ms);
                    false
                }
                None => true,
            });
        }
        lost += pending.len();
        let elapsed = started.elapsed().as_secs_f64();
        for (_, _, sim) in joined {
            sim.close();
        }
        let mut v = ms_stats(latencies);
        v["events"] = json!(events);
        v["events_per_s"] = json!(events as f64 / elapsed);
        v["lost"] = json!(lost);
        v["cp_cpu_percent"] = json!((self.cp().cpu_secs - cp0.cpu_secs) / elapsed * 100.0);
        v["pg_queries_per_s_by_instance"] = per_second(&q0, &self.queries_by_instance(), elapsed);
        v
    }

    /// Each instance's `store_postgres_queries_total` (every source summed); None for an
    /// instance that did not answer or has no Postgres store.
    fn queries_by_instance(&self) -> Vec<Option<u64>> {
        self.target
            .metrics
            .iter()
            .map(|url| {
                let mut r = self.agent.get(url).call().ok()?;
                let text = r.body_mut().read_to_string().ok()?;
                let values: Vec<u64> = text
                    .lines()
                    .filter(|l| l.starts_with("store_postgres_queries_total{"))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .map(|v| v as u64)
                    .collect();
                (!values.is_empty()).then(|| values.iter().sum())
            })
            .collect()
    }

    /// Every simulated dataplane got its config and none lost a stream (smoke check).
    pub fn all_configured(&self) -> bool {
        !self.sims.is_empty() && self.sims.iter().all(|s| s.configured())
    }
}

/// The floor: encoding every dataplane's full snapshot once, each resource encoded per
/// dataplane (no sharing), protobuf encode only — built in this process from the same
/// topology with higuma's own generator.
pub fn encode_floor(topology: &Topology) -> Value {
    use crate::model::rest;
    use crate::store::{MemoryStore, ResourceStore};
    use crate::xds::context::MeshContext;
    use protobuf::Message;
    let store = MemoryStore::new();
    let mesh = rest::from_json(json!({"type": "Mesh", "name": "default"})).expect("valid Mesh");
    let _ = store.create("", "default", mesh.spec);
    for d in topology.dataplanes() {
        if let Ok(env) = rest::from_json(d.to_json()) {
            let _ = store.create("default", &d.name, env.spec);
        }
    }
    let Ok(ctx) = MeshContext::build(&store, "default", None) else { return json!({"error": "build failed"}) };
    let chain = crate::xds::generate::default_chain();
    let gen_started = Instant::now();
    let mut messages: Vec<Vec<Box<dyn protobuf::MessageDyn>>> = Vec::new();
    let mut generated = 0usize;
    for dp in ctx.dataplanes.values() {
        let Ok(snapshot) = crate::xds::generate::generate(&chain, &ctx, dp) else { continue };
        generated += 1;
        let mut msgs: Vec<Box<dyn protobuf::MessageDyn>> = Vec::new();
        for r in snapshot.resources() {
            let Ok(any) = protobuf::well_known_types::any::Any::parse_from_bytes(&r.any) else { continue };
            let decoded: Option<Box<dyn protobuf::MessageDyn>> = match r.kind {
                ResourceKind::Cluster => {
                    crate::envoy::cluster::Cluster::parse_from_bytes(&any.value).ok().map(|m| Box::new(m) as _)
                }
                ResourceKind::Endpoint => crate::envoy::endpoint::ClusterLoadAssignment::parse_from_bytes(&any.value)
                    .ok()
                    .map(|m| Box::new(m) as _),
                ResourceKind::Listener => {
                    crate::envoy::listener::Listener::parse_from_bytes(&any.value).ok().map(|m| Box::new(m) as _)
                }
                ResourceKind::Route | ResourceKind::Secret => None,
            };
            msgs.extend(decoded);
        }
        messages.push(msgs);
    }
    let generate_with_sharing = gen_started.elapsed();
    let started = Instant::now();
    let mut bytes = 0usize;
    for msgs in &messages {
        for m in msgs {
            bytes += m.write_to_bytes_dyn().map(|b| b.len()).unwrap_or(0);
        }
    }
    let floor = started.elapsed();
    let mut per_type: BTreeMap<String, usize> = BTreeMap::new();
    for msgs in &messages {
        for m in msgs {
            *per_type.entry(m.descriptor_dyn().name().to_string()).or_default() += 1;
        }
    }
    json!({
        "dataplanes": generated,
        "encode_floor_ms": floor.as_secs_f64() * 1000.0,
        "encoded_bytes": bytes,
        "resources": per_type,
        "generate_with_sharing_ms": generate_with_sharing.as_secs_f64() * 1000.0,
    })
}

/// The REST path of a policy given as its envelope.
/// Mesh `default` with a builtin CA in Kuma's default mode, its certificates living
/// `expiration` (Kuma's default when `None`).
fn mtls_mesh(expiration: Option<&str>) -> Value {
    let mut backend = json!({"name": "ca-1", "type": "builtin"});
    if let Some(e) = expiration {
        backend["dpCert"] = json!({"rotation": {"expiration": e}});
    }
    json!({"type": "Mesh", "name": "default", "mtls": {"enabledBackend": "ca-1", "backends": [backend]}})
}

fn policy_path(p: &Value) -> String {
    let t = p["type"].as_str().unwrap_or("");
    let ws = crate::model::ResourceType::from_name(t).map(|t| t.ws_path()).unwrap_or("unknown");
    format!("/meshes/default/{ws}/{}", p["name"].as_str().unwrap_or(""))
}

fn put(agent: &ureq::Agent, api: &str, path: &str, body: &Value) -> Result<(), String> {
    let url = format!("{api}{path}");
    let body = body.to_string();
    let r = retry_on_stale_connection(|| agent.put(&url).header("Content-Type", "application/json").send(&body))
        .map_err(|e| format!("PUT {url}: {e}"))?;
    match r.status().as_u16() {
        200 | 201 => Ok(()),
        s => Err(format!("PUT {url}: {s}")),
    }
}

/// A token for dataplane `name` of mesh `default` (issuing one twice is harmless, so a
/// connection closed under the request is retried like the idempotent calls).
fn dataplane_token(agent: &ureq::Agent, api: &str, name: &str) -> Result<String, String> {
    let url = format!("{api}/tokens/dataplane");
    let body = json!({"mesh": "default", "name": name}).to_string();
    let mut r = retry_on_stale_connection(|| agent.post(&url).header("Content-Type", "application/json").send(&body))
        .map_err(|e| format!("POST {url}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().map_err(|e| format!("POST {url}: {e}"))?;
    match status {
        200 => Ok(text.trim().to_string()),
        s => Err(format!("POST {url} for {name}: {s} {text}")),
    }
}

fn get_json(agent: &ureq::Agent, api: &str, path: &str) -> Result<Value, String> {
    let url = format!("{api}{path}");
    let mut r = retry_on_stale_connection(|| agent.get(&url).call()).map_err(|e| format!("GET {url}: {e}"))?;
    let status = r.status().as_u16();
    let text = r.body_mut().read_to_string().map_err(|e| format!("GET {url}: {e}"))?;
    match status {
        200 => serde_json::from_str(&text).map_err(|e| format!("GET {url}: {e}")),
        s => Err(format!("GET {url}: {s} {text}")),
    }
}

/// A listed resource as a client PUTs it back: without the fields the server sets.
fn strip_read_only(mut item: Value) -> Value {
    if let Some(o) = item.as_object_mut() {
        o.remove("creationTime");
        o.remove("modificationTime");
    }
    item
}

fn delete(agent: &ureq::Agent, api: &str, path: &str) -> Result<(), String> {
    let url = format!("{api}{path}");
    let r = retry_on_stale_connection(|| agent.delete(&url).call()).map_err(|e| format!("DELETE {url}: {e}"))?;
    match r.status().as_u16() {
        200 => Ok(()),
        s => Err(format!("DELETE {url}: {s}")),
    }
}
