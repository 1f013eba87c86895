//! The REST API (`apiServer.http.port`, 5681): Kuma's paths, shapes and errors, served by a
//! bounded pool of synchronous worker threads ([`crate::http`]).
//!
//! - [`router`]: path + method → handler.
//! - [`resources`]: CRUD of every resource type, lists with Kuma's pagination.
//! - [`overview`]: the `dataplanes+insights` view.
//! - [`inspect`]: which policies reach a dataplane, its rules, its xDS config, and which
//!   dataplanes a policy reaches.
//! - [`tokens`]: `POST /tokens/dataplane`, dataplane tokens.
//! - [`errors`]: Kuma's error JSON.
//! - [`authn`]: who a request is (localhost, user tokens) and what `access.static` lets it do.
//! - [`user_tokens`]: `POST /tokens/user` and `GET /who-am-i`.
//! - [`changes`]: change ids of writes and `/changes`, their delivery to each dataplane.
//! - [`control_plane`]: `GET /control-plane/status`, the instance and its store's health.
//! - [`gui`]: the web GUI at `/gui`, static assets calling this API.
//!
//! Both listeners serve the same API: plain HTTP on `apiServer.http.port` (kept open, as in
//! Kuma, for localhost tools and existing scripts; remote clients authenticate with tokens
//! and should use HTTPS so those tokens are not sent in the clear) and HTTPS on
//! `apiServer.https.port`.

pub mod authn;
pub mod changes;
pub mod control_plane;
pub mod errors;
pub mod gui;
pub mod inspect;
pub mod overview;
pub mod resources;
pub mod router;
pub mod tokens;
pub mod user_tokens;

use std::sync::{Arc, RwLock};

use serde_json::Value;

pub use errors::ApiError;

use crate::config::Config;
use crate::store::SharedStore;

/// What every handler can reach.
#[derive(Clone)]
pub struct ApiContext {
    pub store: SharedStore,
    /// What plain GETs (a resource, a list, `dataplanes+insights`) read: `store`, or a view
    /// that sends a share of them to `store.postgres.readReplica`.
    pub reads: SharedStore,
    /// The config in force; a reload swaps its contents.
    pub config: Arc<RwLock<Config>>,
    /// `<hostname>-<4 hex>`, as Kuma names control-plane instances.
    pub instance_id: String,
    /// What the xDS side serves each connected dataplane (`/dataplanes/{name}/xds`); `None`
    /// when the API runs without one.
    pub xds: Option<Arc<dyn crate::xds::inspect::XdsInspector>>,
    /// Issues and validates user tokens (signing keys read from the store, cached).
    pub tokens: Arc<authn::UserTokens>,
    /// Where writes announce themselves for delivery tracking (`/changes`); `None` when the
    /// API runs without a reconciler.
    pub changes: Option<Arc<crate::reconcile::changes::ChangeLog>>,
}

impl ApiContext {
    pub fn new(store: SharedStore, config: Arc<RwLock<Config>>, instance_id: String) -> ApiContext {
        let tokens = authn::user_tokens(&store, &config.read().unwrap_or_else(|p| p.into_inner()));
        ApiContext { reads: store.clone(), store, config, instance_id, tokens, xds: None, changes: None }
    }

    /// The context with plain GETs read through `reads` (a read replica).
    pub fn with_reads(mut self, reads: SharedStore) -> ApiContext {
        self.reads = reads;
        self
    }

    /// The context with the xDS side's view of connected dataplanes (the inspect API's
    /// `/xds` endpoint).
    pub fn with_xds(mut self, xds: Arc<dyn crate::xds::inspect::XdsInspector>) -> ApiContext {
        self.xds = Some(xds);
        self
    }

    /// The context with the reconciler's change log: writes get change ids.
    pub fn with_changes(mut self, changes: Arc<crate::reconcile::changes::ChangeLog>) -> ApiContext {
        self.changes = Some(changes);
        self
    }

    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

pub use crate::http::{Request, ServerError};

/// Requests are short store reads/writes; four threads keep the API responsive while a
/// slow client holds one, without competing with the xDS workers on a small VM.
pub const WORKER_THREADS: usize = 4;

/// The running REST API.
pub struct ApiServer(crate::http::Server);

impl ApiServer {
    /// Binds `addr` (`host:port`; port 0 picks a free one) and serves plain HTTP.
    pub fn start(addr: &str, ctx: ApiContext) -> Result<ApiServer, ServerError> {
        Self::start_with(addr, ctx, None)
    }

    /// Serves HTTPS with `tls` instead (`apiServer.https`).
    pub fn start_https(
        addr: &str,
        ctx: ApiContext,
        tls: Arc<openssl::ssl::SslAcceptor>,
    ) -> Result<ApiServer, ServerError> {
        Self::start_with(addr, ctx, Some(tls))
    }

    fn start_with(
        addr: &str,
        ctx: ApiContext,
        tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    ) -> Result<ApiServer, ServerError> {
        let opts = crate::http::Options {
            addr: addr.to_string(),
            threads: WORKER_THREADS,
            thread_name: if tls.is_some() { crate::threads::API_TLS_WORKER } else { crate::threads::API_WORKER },
            limits: limits(&ctx.config()),
            tls,
            errors: |status, title, detail| ApiError::new(status, title, detail).into_response(),
        };
        // GUI assets are public (they hold no data) and answered before authentication; the
        // pages' own API calls are authenticated as any other.
        let handler =
            Arc::new(move |req: &Request| gui::serve(req).unwrap_or_else(|| render(router::route(&ctx, req))));
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

/// The HTTP limits of both API listeners, from `apiServer.*`.
pub fn limits(config: &Config) -> crate::http::Limits {
    let a = &config.api_server;
    crate::http::Limits {
        read_header_timeout: a.read_header_timeout.as_std(),
        read_timeout: a.read_timeout.as_std(),
        write_timeout: a.write_timeout.as_std(),
        idle_timeout: a.idle_timeout.as_std(),
        max_header_bytes: crate::http::byte_limit(a.max_header_bytes),
        max_body_bytes: crate::http::byte_limit(a.max_body_bytes),
    }
}

/// A reply on the wire.
pub fn render(reply: Reply) -> crate::http::Response {
    let mut response = match (reply.body, reply.text) {
        (Some(body), _) => crate::http::Response::json(reply.status, &body),
        (None, Some(text)) => crate::http::Response::new(reply.status, "text/plain", text),
        (None, None) => crate::http::Response::new(reply.status, "application/json", Vec::new()),
    };
    if reply.status == 401 {
        // RFC 9110 §11.6.1: a 401 names the scheme that would work.
        response = response.with_header("WWW-Authenticate", "Bearer");
    }
    for (name, value) in reply.headers {
        response = response.with_header(name, value);
    }
    response
}

/// A handler's answer: status and an optional JSON body (or plain text, for tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
    pub text: Option<String>,
    /// Headers besides the content's (e.g. a write's change id).
    pub headers: Vec<(&'static str, String)>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply { status, body: Some(body), text: None, headers: Vec::new() }
    }

    pub fn empty(status: u16) -> Self {
        Reply { status, body: None, text: None, headers: Vec::new() }
    }

    pub fn text(status: u16, text: String) -> Self {
        Reply { status, body: None, text: Some(text), headers: Vec::new() }
    }

    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Self {
        Reply::json(err.status, err.body())
    }
}
