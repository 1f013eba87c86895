//! `higuma run`: builds the store and the servers from the config, creates the default mesh,
//! and tears everything down in reverse order on shutdown.

use std::sync::{Arc, RwLock};

use crate::api::{self, ApiContext, ApiServer};
use crate::clock::SystemClock;
use crate::reconcile::{Reconciler, Settings};
use crate::xds::server::{StreamHub, XdsServer, XdsServerError};
use crate::config::{Config, StoreType};
use crate::model::{rest, ResourceType};
use crate::store::{MemoryStore, SharedStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("store.type {0:?} is not supported by this build of higuma yet (supported: memory)")]
    UnsupportedStore(String),
    #[error(transparent)]
    Api(#[from] api::ServerError),
    #[error(transparent)]
    Xds(#[from] XdsServerError),
    #[error("creating the default mesh failed: {0}")]
    DefaultMesh(StoreError),
}

/// A running control plane.
pub struct Daemon {
    pub store: SharedStore,
    pub config: Arc<RwLock<Config>>,
    pub instance_id: String,
    api: Option<ApiServer>,
    xds: Option<XdsServer>,
    reconciler: Option<Arc<Reconciler>>,
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
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
        let reconciler =
            Arc::new(Reconciler::start(store.clone(), Settings::from_config(&config), instance_id.clone(), workers, SystemClock::shared()));
        let hub: Arc<dyn StreamHub> = reconciler.clone();
        let xds = XdsServer::start(&config.dp_server.interface, config.dp_server.port, hub)?;
        log::info!("xds: ADS listening on {}:{}", config.dp_server.interface, xds.port());
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
        Ok(Daemon { store, config, instance_id, api, xds: Some(xds), reconciler: Some(reconciler) })
    }

    /// The REST API's bound address, when enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// The xDS server's bound port.
    pub fn xds_port(&self) -> Option<u16> {
        self.xds.as_ref().map(|x| x.port())
    }

    pub fn reconciler(&self) -> Option<&Arc<Reconciler>> {
        self.reconciler.as_ref()
    }

    /// Stops taking API requests and xDS streams, finishes in-flight work, then flushes the
    /// dataplanes' status.
    pub fn shutdown(mut self) {
        if let Some(api) = self.api.take() {
            api.stop();
        }
        if let Some(xds) = self.xds.take() {
            xds.stop();
        }
        if let Some(r) = self.reconciler.take() {
            match Arc::try_unwrap(r) {
                Ok(r) => r.stop(),
                Err(_) => log::warn!("xds: reconciler still referenced at shutdown; status may not be flushed"),
            }
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
