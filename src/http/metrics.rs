//! Counts of requests and connections refused by a limit, per server (`api-worker`,
//! `diagnostics`), for `/metrics` (`http_limit_hits_total{server,limit}`). Process-wide:
//! a server started again under the same name keeps counting where the last one stopped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Which limit turned a client away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// Request line and headers above `maxHeaderBytes` (431).
    HeaderSize,
    /// Body above `maxBodyBytes` (413).
    BodySize,
    /// Head not complete within `readHeaderTimeout` (408).
    HeaderTimeout,
    /// Request not complete within `readTimeout` (408).
    ReadTimeout,
    /// Answer not taken within `writeTimeout` (connection dropped).
    WriteTimeout,
    /// Every worker busy and the queue of waiting connections full (connection closed).
    Backlog,
    /// The TLS handshake failed or did not finish within `readHeaderTimeout`.
    TlsHandshake,
}

impl Limit {
    pub const ALL: [Limit; 7] = [
        Limit::HeaderSize,
        Limit::BodySize,
        Limit::HeaderTimeout,
        Limit::ReadTimeout,
        Limit::WriteTimeout,
        Limit::Backlog,
        Limit::TlsHandshake,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Limit::HeaderSize => "header_size",
            Limit::BodySize => "body_size",
            Limit::HeaderTimeout => "header_timeout",
            Limit::ReadTimeout => "read_timeout",
            Limit::WriteTimeout => "write_timeout",
            Limit::Backlog => "backlog",
            Limit::TlsHandshake => "tls_handshake",
        }
    }
}

#[derive(Debug, Default)]
pub struct LimitCounters {
    counts: [AtomicU64; Limit::ALL.len()],
}

impl LimitCounters {
    pub fn hit(&self, limit: Limit) {
        self.counts[limit as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self, limit: Limit) -> u64 {
        self.counts[limit as usize].load(Ordering::Relaxed)
    }
}

type Registry = Vec<(&'static str, Arc<LimitCounters>)>;

static REGISTRY: Mutex<Registry> = Mutex::new(Vec::new());

/// The counters of the server named `server`, created on first use.
pub fn counters_for(server: &'static str) -> Arc<LimitCounters> {
    let mut reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, c)) = reg.iter().find(|(n, _)| *n == server) {
        return c.clone();
    }
    let c = Arc::new(LimitCounters::default());
    reg.push((server, c.clone()));
    c
}

/// Every `(server, limit, count)`, zeros included so dashboards see the series at once.
pub fn snapshot() -> Vec<(&'static str, &'static str, u64)> {
    let reg = REGISTRY.lock().unwrap_or_else(|p| p.into_inner());
    reg.iter().flat_map(|(server, c)| Limit::ALL.iter().map(move |l| (*server, l.label(), c.get(*l)))).collect()
}
