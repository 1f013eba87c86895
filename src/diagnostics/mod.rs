//! The diagnostics server (`diagnostics.serverPort`, 5680): `/healthy`, `/ready`,
//! `/metrics`, and — only with `diagnostics.debugEndpoints` — CPU profiles under
//! `/debug/pprof/`.

pub mod metrics;
pub mod profile;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::config::Config;
use crate::http::{Options, Request, Response, Server, ServerError};
use crate::store::SharedStore;

/// Health checks and scrapes are tiny, but a profile holds a thread for its duration; three
/// threads keep `/ready` answering while one profiles.
const THREADS: usize = 3;

/// What `/ready` looks at.
pub struct Readiness {
    /// Set once the first sync is done (store reachable, servers up).
    pub started: AtomicBool,
    pub store: SharedStore,
}

impl Readiness {
    pub fn check(&self) -> Result<(), String> {
        if !self.started.load(Ordering::SeqCst) {
            return Err("starting up".into());
        }
        self.store.ping().map_err(|e| e.to_string())
    }
}

pub struct DiagnosticsServer(Server);

impl DiagnosticsServer {
    pub fn start(
        addr: &str,
        config: Arc<RwLock<Config>>,
        readiness: Arc<Readiness>,
        sources: metrics::Sources,
    ) -> Result<DiagnosticsServer, ServerError> {
        let limits = {
            let c = config.read().unwrap_or_else(|p| p.into_inner());
            let d = &c.diagnostics;
            crate::http::Limits {
                read_header_timeout: d.read_header_timeout.as_std(),
                read_timeout: d.read_timeout.as_std(),
                write_timeout: d.write_timeout.as_std(),
                idle_timeout: d.idle_timeout.as_std(),
                max_header_bytes: crate::http::byte_limit(d.max_header_bytes),
                max_body_bytes: crate::http::byte_limit(d.max_body_bytes),
            }
        };
        let opts = Options {
            addr: addr.to_string(),
            threads: THREADS,
            thread_name: crate::threads::DIAGNOSTICS,
            limits,
            tls: None,
            errors: crate::http::text_error,
        };
        let handler = Arc::new(move |req: &Request| route(req, &config, &readiness, &sources));
        Server::start(opts, handler).map(DiagnosticsServer)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.0.local_addr()
    }

    pub fn stop(self) {
        self.0.stop()
    }
}

fn route(req: &Request, config: &RwLock<Config>, readiness: &Readiness, sources: &metrics::Sources) -> Response {
    if req.method != "GET" {
        return Response::text(405, "only GET is served here\n");
    }
    let debug = config.read().unwrap_or_else(|p| p.into_inner()).diagnostics.debug_endpoints;
    match req.path.as_str() {
        "/healthy" => Response::text(200, "OK\n"),
        "/ready" => match readiness.check() {
            Ok(()) => Response::text(200, "OK\n"),
            Err(reason) => Response::text(503, format!("not ready: {reason}\n")),
        },
        "/metrics" => Response::new(200, "text/plain; version=0.0.4", metrics::render(sources)),
        "/debug/pprof/profile" if debug => profile::handle(req, profile::Format::Pprof),
        "/debug/pprof/flamegraph" if debug => profile::handle(req, profile::Format::Flamegraph),
        _ => Response::text(404, "404 page not found\n"),
    }
}
