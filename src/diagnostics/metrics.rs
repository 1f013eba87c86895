//! `/metrics`: the control plane's figures in Prometheus' text format. Counters live where
//! the work happens (atomics in the reconciler, the cache and the pool); a scrape reads them
//! into a fresh registry, so nothing here is on a hot path. Names follow Kuma's where Kuma
//! has one (`xds_*`, `store`, `store_cache`, `store_postgres_*`, `cp_info`).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};

use crate::reconcile::{Metrics, Reconciler};
use crate::xds::resource_kind::ResourceKind;

/// Pool figures of the Postgres store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PoolFigures {
    pub max: u32,
    pub open: u32,
    pub idle: u32,
    /// Statements sent so far by the pool, the change listener and the leader election.
    pub queries: (u64, u64, u64),
    /// The change listener is connected (other instances' writes can arrive).
    pub listening: bool,
}

/// Where the figures come from.
#[derive(Clone)]
pub struct Sources {
    pub instance_id: String,
    pub reconciler: Arc<Reconciler>,
    pub store_latency: prometheus::HistogramVec,
    pub pool: Option<Arc<dyn Fn() -> PoolFigures + Send + Sync>>,
    pub dp_server: Arc<crate::dpserver::Metrics>,
    /// Drives Kuma's `leader` gauge.
    pub leadership: Arc<crate::leader::Leadership>,
}

fn counters(r: &Registry, name: &str, help: &str, labels: &[&str], values: &[(&[&str], u64)]) {
    // Names and label names are constants valid for Prometheus.
    let vec = IntCounterVec::new(Opts::new(name, help), labels).expect("valid counter");
    for (lv, v) in values {
        vec.with_label_values(lv).inc_by(*v);
    }
    let _ = r.register(Box::new(vec));
}

fn gauges(r: &Registry, name: &str, help: &str, labels: &[&str], values: &[(&[&str], i64)]) {
    let vec = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid gauge");
    for (lv, v) in values {
        vec.with_label_values(lv).set(*v);
    }
    let _ = r.register(Box::new(vec));
}

/// Renders every metric in Prometheus' text format.
pub fn render(s: &Sources) -> String {
    let r = Registry::new();
    let m: Arc<Metrics> = s.reconciler.metrics();
    let get = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
    gauges(
        &r,
        "cp_info",
        "Control-plane instance",
        &["instance_id", "product", "version"],
        &[(&[&s.instance_id, "Higuma", env!("CARGO_PKG_VERSION")], 1)],
    );
    // Kuma's gauge: 1 on the instance that runs the leader-only jobs.
    gauges(&r, "leader", "1 while this instance is the leader", &[], &[(&[], i64::from(s.leadership.is_leader()))]);
    counters(
        &r,
        "xds_generation_total",
        "Config generation jobs by result: skip (inputs unchanged), generated (same result), changed, secrets (a new certificate only)",
        &["proxy_type", "result"],
        &[
            (&["dataplane", "skip"], get(&m.generation_skipped)),
            (&["dataplane", "generated"], get(&m.generation_unchanged)),
            (&["dataplane", "changed"], get(&m.generation_changed)),
            (&["dataplane", "secrets"], get(&m.generation_secrets_only)),
        ],
    );
    counters(&r, "xds_generation_errors", "Config generation failures", &[], &[(&[], get(&m.generation_errors))]);
    let _ = r.register(Box::new(m.generation_ms.clone()));
    let _ = r.register(Box::new(m.delivery_ms.clone()));
    let per_type = |arr: &[std::sync::atomic::AtomicU64; ResourceKind::COUNT]| -> Vec<(ResourceKind, u64)> {
        ResourceKind::ALL.iter().map(|k| (*k, get(&arr[k.index()]))).collect()
    };
    let sent = per_type(&m.responses_sent);
    let urls: Vec<[&str; 1]> = sent.iter().map(|(k, _)| [k.type_url()]).collect();
    let sent_rows: Vec<(&[&str], u64)> = urls.iter().zip(&sent).map(|(u, (_, v))| (&u[..], *v)).collect();
    counters(&r, "xds_responses_sent", "xDS responses sent", &["type_url"], &sent_rows);
    let acks = per_type(&m.acks);
    let nacks = per_type(&m.nacks);
    let ack_labels: Vec<[&str; 2]> = ResourceKind::ALL.iter().map(|k| [k.type_url(), "ACK"]).collect();
    let nack_labels: Vec<[&str; 2]> = ResourceKind::ALL.iter().map(|k| [k.type_url(), "NACK"]).collect();
    let mut req_rows: Vec<(&[&str], u64)> = ack_labels.iter().zip(&acks).map(|(l, (_, v))| (&l[..], *v)).collect();
    req_rows.extend(nack_labels.iter().zip(&nacks).map(|(l, (_, v))| (&l[..], *v)));
    counters(
        &r,
        "xds_requests_received",
        "xDS requests answering a response",
        &["type_url", "confirmation"],
        &req_rows,
    );
    counters(
        &r,
        "xds_requests_ignored",
        "xDS requests ignored (stale nonce, unknown type, no node)",
        &[],
        &[(&[], get(&m.requests_ignored))],
    );
    gauges(&r, "xds_streams_active", "Open ADS streams", &[], &[(&[], get(&m.streams_active) as i64)]);
    let changes = s.reconciler.changes();
    let _ = r.register(Box::new(changes.delivery_histogram()));
    gauges(
        &r,
        "xds_changes_undelivered",
        "Tracked changes not delivered to every affected dataplane yet",
        &[],
        &[(&[], changes.undelivered() as i64)],
    );
    let cache = s.reconciler.cache_stats();
    counters(
        &r,
        "store_cache",
        "Reads through the TTL cache by result",
        &["operation", "result"],
        &[
            (&["read", "hit"], cache.hits),
            (&["read", "hit-wait"], cache.hit_waits),
            (&["read", "miss"], cache.misses),
            (&["read", "error"], cache.fetch_errors),
        ],
    );
    let _ = r.register(Box::new(s.store_latency.clone()));
    if let Some(pool) = &s.pool {
        let p = pool();
        gauges(
            &r,
            "store_postgres_connections",
            "Postgres pool connections by state",
            &["type"],
            &[
                (&["open_connections"], p.open as i64),
                (&["in_use"], (p.open.saturating_sub(p.idle)) as i64),
                (&["idle"], p.idle as i64),
            ],
        );
        gauges(&r, "store_postgres_connections_max", "Postgres pool size limit", &[], &[(&[], p.max as i64)]);
        let (pool_q, listener_q, leader_q) = p.queries;
        counters(
            &r,
            "store_postgres_queries_total",
            "Statements and connection checks sent to Postgres by this instance, by source",
            &["source"],
            &[(&["pool"], pool_q), (&["listener"], listener_q), (&["leader"], leader_q)],
        );
        gauges(
            &r,
            "store_postgres_listener_connected",
            "1 while the change listener is connected (other instances' writes reach this one)",
            &[],
            &[(&[], i64::from(p.listening))],
        );
    }
    gauges(
        &r,
        "reconciler_queue_depth",
        "Dataplanes waiting for a worker",
        &[],
        &[(&[], s.reconciler.queue_depth() as i64)],
    );
    gauges(&r, "reconciler_workers", "Worker threads", &[], &[(&[], s.reconciler.workers() as i64)]);
    let busy = prometheus::Counter::new(
        "reconciler_worker_busy_seconds_total",
        "Seconds workers spent on jobs; rate / workers = utilisation",
    )
    .expect("valid counter");
    busy.inc_by(get(&m.worker_busy_nanos) as f64 / 1e9);
    let _ = r.register(Box::new(busy));
    counters(&r, "reconciler_jobs_total", "Jobs handed to workers", &[], &[(&[], get(&m.jobs_dispatched))]);
    counters(&r, "reconciler_interval_sweeps_total", "Refresh-interval sweeps", &[], &[(&[], get(&m.interval_sweeps))]);
    counters(
        &r,
        "reconciler_interval_checked_total",
        "Dataplanes the refresh-interval sweeps looked at",
        &[],
        &[(&[], get(&m.interval_checked))],
    );
    counters(&r, "insight_writes_total", "DataplaneInsight writes", &[], &[(&[], get(&m.insight_writes))]);
    counters(
        &r,
        "insight_write_errors_total",
        "Failed DataplaneInsight writes",
        &[],
        &[(&[], get(&m.insight_write_errors))],
    );
    let hits = crate::http::metrics::snapshot();
    let hit_labels: Vec<[&str; 2]> = hits.iter().map(|(server, limit, _)| [*server, *limit]).collect();
    let hit_rows: Vec<(&[&str], u64)> = hit_labels.iter().zip(&hits).map(|(l, (_, _, v))| (&l[..], *v)).collect();
    counters(
        &r,
        "http_limit_hits_total",
        "HTTP requests and connections refused by a limit (size, time-out, full queue, TLS handshake)",
        &["server", "limit"],
        &hit_rows,
    );
    dp_server(&r, &s.dp_server);
    let mut out = Vec::new();
    let _ = TextEncoder::new().encode(&r.gather(), &mut out);
    String::from_utf8(out).unwrap_or_default()
}

/// The DP server's front end, limits and authentication.
fn dp_server(r: &Registry, d: &crate::dpserver::Metrics) {
    use crate::dpserver::Metrics as M;
    counters(
        r,
        "dp_server_connections_total",
        "Connections to dpServer.port by outcome",
        &["result"],
        &[
            (&["accepted"], M::get(&d.connections_accepted)),
            (&["grpc"], M::get(&d.connections_grpc)),
            (&["http"], M::get(&d.connections_http)),
            (&["tls_handshake_failed"], M::get(&d.tls_handshake_failures)),
            (&["plaintext_refused"], M::get(&d.plaintext_refused)),
            (&["handshake_timeout"], M::get(&d.handshake_timeouts)),
        ],
    );
    gauges(
        r,
        "dp_server_connections_active",
        "Open connections to dpServer.port",
        &[],
        &[(&[], d.connections_active.load(Ordering::Relaxed))],
    );
    counters(
        r,
        "dp_server_limit_exceeded_total",
        "Requests or streams refused by a dpServer.limits setting",
        &["limit"],
        &[
            (&["maxMessageSize"], M::get(&d.limit_message_size)),
            (&["maxStreamsPerConnection"], M::get(&d.limit_streams_per_connection)),
            (&["maxStreamsPerDataplane"], M::get(&d.limit_streams_per_dataplane)),
        ],
    );
    counters(
        r,
        "xds_auth_denied_total",
        "ADS streams closed by the dataplane authentication, by gRPC status",
        &["code"],
        &[
            (&["UNAUTHENTICATED"], M::get(&d.denied_unauthenticated)),
            (&["PERMISSION_DENIED"], M::get(&d.denied_permission)),
            (&["INVALID_ARGUMENT"], M::get(&d.denied_invalid)),
            (&["UNAVAILABLE"], M::get(&d.denied_unavailable)),
            (&["bypass"], M::get(&d.bypass_refused)),
        ],
    );
    counters(
        r,
        "dp_server_certificate_reloads_total",
        "Certificate file changes picked up (or refused) by the DP server",
        &["result"],
        &[(&["loaded"], M::get(&d.certificate_reloads)), (&["failed"], M::get(&d.certificate_reload_failures))],
    );
}
