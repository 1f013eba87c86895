//! The REST API (`apiServer.http.port`, 5681): Kuma's paths, shapes and errors, served by a
//! bounded pool of synchronous worker threads over `tiny_http`.
//!
//! - [`server`]: sockets, threads, body limits, shutdown.
//! - [`router`]: path + method → handler.
//! - [`resources`]: CRUD of every resource type, lists with Kuma's pagination.
//! - [`overview`]: `dataplanes+insights`.
//! - [`bootstrap`]: `POST /bootstrap`, the Envoy bootstrap of a dataplane.
//! - [`errors`]: Kuma's error JSON.

pub mod bootstrap;
pub mod errors;
pub mod overview;
pub mod resources;
pub mod router;
pub mod server;

use std::sync::{Arc, RwLock};

use serde_json::Value;

pub use errors::ApiError;
pub use server::{ApiServer, ServerError};

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

/// A request as handlers see it, independent of the HTTP library.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    pub query: Vec<(String, String)>,
    /// `Host` header, used to build absolute `next` links as Kuma does.
    pub host: Option<String>,
    pub body: Option<String>,
}

impl Request {
    pub fn query_param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

/// A handler's answer: status and an optional JSON body.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Reply { status, body: Some(body) }
    }

    pub fn empty(status: u16) -> Self {
        Reply { status, body: None }
    }
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Self {
        Reply::json(err.status, err.body())
    }
}
