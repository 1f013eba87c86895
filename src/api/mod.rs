//! The REST API (`apiServer.http.port`, 5681): Kuma's paths, shapes and errors, served by a
//! bounded pool of synchronous worker threads ([`crate::http`]).
//!
//! - [`router`]: path + method → handler.
//! - [`resources`]: CRUD of every resource type, lists with Kuma's pagination.
//! - [`overview`]: the `dataplanes+insights` view.
//! - [`tokens`]: `POST /tokens/dataplane`, dataplane tokens.
//! - [`errors`]: Kuma's error JSON.

pub mod errors;
pub mod overview;
pub mod resources;
pub mod router;
pub mod tokens;

use std::sync::{Arc, RwLock};

use serde_json::Value;

pub use errors::ApiError;

use crate::config::Config;
use crate::store::SharedStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiContext {
    pub store: SharedStore,
    /// The config in force; a reload swaps its contents.
    pub config: Arc<RwLock<Config>>,
    /// `<hostname>-<4 hex>`, as Kuma names control-plane instances.
    pub instance_id: String,
}

impl ApiContext {
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub use crate::http::{Request, ServerError};

/// Bodies above this are refused with 413 before they are read; Kuma's resources are a few
/// KiB, so 1 MiB leaves room for any real one while bounding memory per request.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Requests are short store reads/writes; four threads keep the API responsive while a
/// slow client holds one, without competing with the xDS workers on a small VM.
pub const WORKER_THREADS: usize = 4;

/// The running REST API.
pub struct ApiServer(crate::http::Server);

impl ApiServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and starts the workers.
    pub fn start(addr: &str, ctx: ApiContext) -> Result<ApiServer, ServerError> {
        let opts = crate::http::Options {
            addr: addr.to_string(),
            threads: WORKER_THREADS,
            thread_name: crate::threads::API_WORKER,
            max_body: MAX_BODY_BYTES,
        };
        let handler = std::sync::Arc::new(move |req: &Request| {
            let reply = router::route(&ctx, req);
            match (reply.body, reply.text) {
                (_, Some(text)) => crate::http::Response::text(reply.status, text),
                (Some(body), None) => crate::http::Response::json(reply.status, &body),
                (None, None) => crate::http::Response::new(reply.status, "application/json", Vec::new()),
            }
        });
        crate::http::Server::start(opts, handler).map(ApiServer)
    }

    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.0.local_addr()
    }

    /// Stops taking requests, lets in-flight ones finish, and joins the workers.
    pub fn stop(self) {
        self.0.stop()
    }
}

/// A handler's answer: status and an optional JSON body (or, for the few endpoints Kuma
/// answers in plain text, such as issued tokens, a text body).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub text: Option<String>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply { status, body: Some(body), text: None }
    }

    pub fn empty(status: u16) -> Self {
        Reply { status, body: None, text: None }
    }

    pub fn text(status: u16, text: String) -> Self {
        Reply { status, body: None, text: Some(text) }
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Self {
        Reply::json(err.status, err.body())
    }
}
