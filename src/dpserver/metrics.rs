//! Counters of the DP server (front end, limits, authentication); `/metrics` renders them.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default)]
pub struct Metrics {
    pub connections_accepted: AtomicU64,
    pub connections_active: AtomicI64,
    /// Routed to the internal gRPC server (ADS) or HTTP server (`/bootstrap`).
    pub connections_grpc: AtomicU64,
    pub connections_http: AtomicU64,
    pub tls_handshake_failures: AtomicU64,
    /// Plaintext clients on a TLS port.
    pub plaintext_refused: AtomicU64,
    /// No TLS handshake and first request within `dpServer.readHeaderTimeout`.
    pub handshake_timeouts: AtomicU64,
    /// Limits hit (`dpServer.limits.*`).
    pub limit_message_size: AtomicU64,
    pub limit_streams_per_connection: AtomicU64,
    pub limit_streams_per_dataplane: AtomicU64,
    /// Streams closed by the authentication check, by gRPC status.
    pub denied_unauthenticated: AtomicU64,
    pub denied_permission: AtomicU64,
    pub denied_invalid: AtomicU64,
    pub denied_unavailable: AtomicU64,
    /// Streams opened on the internal gRPC port without going through the front end.
    pub bypass_refused: AtomicU64,
    pub certificate_reloads: AtomicU64,
    pub certificate_reload_failures: AtomicU64,
}

impl Metrics {
    pub fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}
