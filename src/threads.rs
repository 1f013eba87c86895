//! Names of the threads higuma starts.
//!
//! Linux keeps 15 bytes of a thread name (`comm`), so each prefix stays short enough to leave
//! room for a `-N` index. Listed in start-up order.

/// gRPC's completion-queue threads (xDS streams); grpcio appends an index.
pub const GRPC: &str = "grpc";
/// The reconciler's dispatcher: timer wheel, stream events, store events.
pub const XDS_DISPATCH: &str = "xds-dispatch";
/// The reconciler's workers: config generation and responses.
pub const XDS_WORKER: &str = "xds-worker";
/// Checks dataplane tokens of new (and changed) ADS streams.
pub const XDS_AUTH: &str = "xds-auth";
/// The DP server's front end: accepts connections on `dpServer.port`.
pub const DP_ACCEPT: &str = "dp-accept";
/// The DP server's event loops: TLS and the bytes between clients and the internal servers.
pub const DP_REACTOR: &str = "dp-reactor";
/// Follows the DP server's certificate files on disk.
pub const TLS_RELOAD: &str = "tls-reload";
/// Threads of the internal `/bootstrap` HTTP server behind the DP server.
pub const DP_BOOTSTRAP: &str = "dp-boot";
/// Writes DataplaneInsight status.
pub const XDS_STATUS: &str = "xds-status";
/// Workload certificate issuance (mesh mTLS), `mtls-issuer-N`.
pub const MTLS_ISSUER: &str = "mtls-issuer";
/// Re-queues workload certificates that come due.
pub const MTLS_SCAN: &str = "mtls-scan";
/// Threads of the diagnostics server (health, metrics, profiles).
pub const DIAGNOSTICS: &str = "diagnostics";
/// Threads of the REST API's bounded pool (plain HTTP).
pub const API_WORKER: &str = "api-worker";
/// Threads of the REST API's HTTPS listener.
pub const API_TLS_WORKER: &str = "api-tls";
/// The Postgres store's change listener (`LISTEN resource_events`).
pub const PG_LISTENER: &str = "pg-listener";
/// One Postgres connection attempt, run aside so that it can be abandoned at the timeout.
pub const PG_CONNECT: &str = "pg-connect";
/// Leader election on Postgres (Kuma's `kuma-cp-lock`): heartbeats or follows.
pub const LEADER_ELECTION: &str = "pg-leader";
/// The leader-only jobs (defaults, dataplane GC, subscription finalizer).
pub const LEADER_JOBS: &str = "leader-jobs";
/// `higuma dp run`: forwards access-log lines from the dataplane's pipe to TCP collectors.
pub const ACCESS_LOGS: &str = "access-logs";

/// Spawns a named thread; every thread in higuma is started through here so that `top -H`
/// and panics name the pool a thread belongs to.
pub fn spawn<F, T>(name: String, f: F) -> std::thread::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    debug_assert!(name.len() <= 15, "thread name {name:?} exceeds Linux's 15-byte limit");
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .expect("the OS refused to start a thread (out of memory or thread limit)")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The HTTP servers name their acceptor `<prefix>-acc` and workers `<prefix>-<n>`: each
    /// must fit Linux's 15 bytes (a name that does not panics the start-up in debug builds).
    #[test]
    fn http_server_thread_names_fit_with_their_suffixes() {
        for prefix in [DP_BOOTSTRAP, DIAGNOSTICS, API_WORKER, API_TLS_WORKER] {
            assert!(format!("{prefix}-acc").len() <= 15, "{prefix}-acc");
            assert!(format!("{prefix}-99").len() <= 15, "{prefix}-99");
        }
        for prefix in [XDS_WORKER, DP_REACTOR] {
            assert!(format!("{prefix}-99").len() <= 15, "{prefix}-99");
        }
    }
}
