//! `higuma run`: builds the store and the servers from the config, creates the default mesh,
//! and tears everything down in reverse order on shutdown.

use std::sync::{Arc, RwLock};

use crate::api::{self, ApiContext, ApiServer};
use crate::config::{Config, StoreType};
use crate::model::{rest, ResourceType};
use crate::store::{MemoryStore, SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store.type {0:?} is not supported by this build of higuma yet (supported: memory)")]
    UnsupportedStore(String),
    #[error(transparent)]
    Api(#[from] api::ServerError),
    #[error("creating the default mesh failed: {0}")]
    DefaultMesh(StoreError),
}

/// A running control plane.
pub struct Daemon {
    pub store: SharedStore,
    pub config: Arc<RwLock<Config>>,
    pub instance_id: String,
    api: Option<ApiServer>,
}

impl Daemon {
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        let store: SharedStore = match config.store.r#type {
            StoreType::Memory => Arc::new(MemoryStore::new()),
            other => return Err(DaemonError::UnsupportedStore(format!("{other:?}").to_lowercase())),
        };
        if !config.defaults.skip_mesh_creation {
            ensure_default_mesh(&store)?;
        }
        let instance_id = instance_id();
        let api_addr = format!("{}:{}", config.api_server.http.interface, config.api_server.http.port);
        let config = Arc::new(RwLock::new(config));
        let api = if config.read().unwrap_or_else(|p| p.into_inner()).api_server.http.enabled {
            let ctx = ApiContext { store: store.clone(), config: config.clone(), instance_id: instance_id.clone() };
            let server = ApiServer::start(&api_addr, ctx)?;
            log::info!("api: listening on http://{}", server.local_addr());
            Some(server)
        } else {
            log::info!("api: disabled (apiServer.http.enabled: false)");
            None
        };
        log::info!("higuma {} started as instance {instance_id} on the {} store", env!("CARGO_PKG_VERSION"), store.backend());
        Ok(Daemon { store, config, instance_id, api })
    }

    /// The REST API's bound address, when enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// Stops the servers, letting in-flight requests finish.
    pub fn shutdown(mut self) {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        log::info!("higuma stopped");
    }
}

/// Creates Mesh `default` unless it exists, as kuma-cp does at start.
pub fn ensure_default_mesh(store: &SharedStore) -> Result<(), DaemonError> {
    let spec = rest::from_json(serde_json::json!({"type": ResourceType::Mesh.name(), "name": "default"}))
        .map_err(|e| DaemonError::DefaultMesh(StoreError::Internal(e.to_string())))?
        .spec;
    match store.create("", "default", spec) {
        Ok(_) => {
            log::info!("created Mesh \"default\" (set defaults.skipMeshCreation to skip)");
            Ok(())
        }
        Err(StoreError::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(DaemonError::DefaultMesh(e)),
    }
}

/// `<hostname>-<4 hex digits>`, Kuma's instance id format.
pub fn instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{:04x}", fastrand::u16(..))
}
