//! `higuma run`: builds the store and the servers from the config, creates the default mesh,
//! applies reloads, and tears everything down in reverse order on shutdown.
//!
//! Start order: store (Postgres connected and migrated, or in-memory) → leader election
//! (Postgres; the memory store is its own leader) and, on the leader, the default mesh and
//! token signing keys → reconciler → token checks → internal xDS (gRPC) and `/bootstrap`
//! servers → the DP server's TLS front end on `dpServer.port` → REST API → diagnostics →
//! leader-only jobs → ready. Stop order is the reverse of the servers, then the leader-only
//! jobs and the election (releasing the lock, so another instance leads at once), then the
//! reconciler (which flushes dataplane status), then the store.

pub mod reload;

use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, RwLock};

use crate::api::{self, ApiContext, ApiServer};
use crate::clock::SystemClock;
use crate::config::{Config, DpAuthn, StoreType};
use crate::diagnostics::metrics::{PoolFigures, Sources};
use crate::diagnostics::{DiagnosticsServer, Readiness};
use crate::dpserver::bootstrap::BootstrapContext;
use crate::dpserver::{DpServer, DpServerError, DpServerOptions, Peers};
use crate::leader::defaults::DefaultsError;
use crate::leader::election::{Election, Elector};
use crate::leader::jobs::{Job, JobContext, Jobs};
use crate::leader::Leadership;
use crate::reconcile::{Reconciler, Settings};
use crate::store::metered::MeteredStore;
use crate::store::postgres::{PostgresError, PostgresStore};
use crate::store::{MemoryStore, SharedStore, StoreError};
use crate::tls::{CertSource, ServerTls, TlsError};
use crate::xds::auth::Authenticator;
use crate::xds::server::{Guards, Limits, StreamHub, XdsServer, XdsServerError};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    #[error(transparent)]
    Http(#[from] api::ServerError),
    #[error(transparent)]
    Xds(#[from] XdsServerError),
    #[error("creating the default mesh failed: {0}")]
    DefaultMesh(StoreError),
    #[error("creating the default mesh's policies failed: {0}")]
    DefaultPolicies(#[from] crate::policies::defaults::DefaultsError),
    #[error("creating the user token signing key or the admin token failed: {0}")]
    Tokens(#[from] api::authn::TokenError),
    #[error("HTTPS for the API (apiServer.https): {0}")]
    ApiTls(#[from] crate::http::tls::TlsError),
    #[error("DP server TLS: {0}")]
    Tls(#[from] TlsError),
    #[error(transparent)]
    DpServer(#[from] DpServerError),
    #[error(transparent)]
    Defaults(#[from] DefaultsError),
}

/// The `--log-level` flag's value, the fallback when `general.logLevel` is empty.
static CLI_LOG_LEVEL: OnceLock<log::LevelFilter> = OnceLock::new();

pub fn set_cli_log_level(level: log::LevelFilter) {
    let _ = CLI_LOG_LEVEL.set(level);
}

/// Applies `general.logLevel`, or the flag when it is empty.
pub fn apply_log_level(config: &Config) {
    let fallback = CLI_LOG_LEVEL.get().copied().unwrap_or(log::LevelFilter::Info);
    let level = config.general.log_level.parse().unwrap_or(fallback);
    log::set_max_level(level);
}

/// A running control plane.
pub struct Daemon {
    pub store: SharedStore,
    pub config: Arc<RwLock<Config>>,
    pub instance_id: String,
    /// Whether this instance leads (always, on the memory store).
    pub leadership: Arc<Leadership>,
    elector: Option<Elector>,
    jobs: Option<Jobs>,
    api: Option<ApiServer>,
    api_https: Option<ApiServer>,
    dp_server: Option<DpServer>,
    bootstrap: Option<crate::http::Server>,
    xds: Option<XdsServer>,
    auth: Arc<Authenticator>,
    dp_metrics: Arc<crate::dpserver::Metrics>,
    diagnostics: Option<DiagnosticsServer>,
    reconciler: Option<Arc<Reconciler>>,
    readiness: Arc<Readiness>,
}

impl Daemon {
    pub fn start(config: Config) -> Result<Daemon, DaemonError> {
        apply_log_level(&config);
        let mut pool: Option<Arc<dyn Fn() -> PoolFigures + Send + Sync>> = None;
        let mut postgres: Option<Arc<PostgresStore>> = None;
        let backend: SharedStore = match config.store.r#type {
            StoreType::Memory => Arc::new(MemoryStore::new()),
            StoreType::Postgres => {
                let pg = Arc::new(PostgresStore::connect(&config.store.postgres)?);
                let stats = pg.clone();
                pool = Some(Arc::new(move || {
                    let s = stats.pool_stats();
                    PoolFigures {
                        max: s.max,
                        open: s.open,
                        idle: s.idle,
                        queries: stats.queries().snapshot(),
                        listening: stats.listening(),
                    }
                }));
                postgres = Some(pg.clone());
                log::info!(
                    "store: Postgres at {}:{}, database {:?}",
                    config.store.postgres.host,
                    config.store.postgres.port,
                    config.store.postgres.db_name
                );
                pg
            }
        };
        let metered = Arc::new(MeteredStore::new(backend));
        let store: SharedStore = metered.clone();
        let instance_id = instance_id();
        let (leadership, elector) = match &postgres {
            None => (Arc::new(Leadership::sole()), None),
            Some(pg) => {
                let leadership = Arc::new(Leadership::default());
                let mut election = Election::new(
                    pg.leader_connector(&config.store.postgres)?,
                    instance_id.clone(),
                    leadership.clone(),
                );
                // One read now: a group's first instance leads at once and creates the
                // defaults before it serves, as a single instance always did.
                election.tick();
                (leadership, Some(Elector::start(election)))
            }
        };
        if leadership.is_leader() {
            match crate::leader::defaults::ensure_all(&store, &config) {
                Ok(_) => {}
                // Only delays tokens for that mesh: the job retries, and issuing one creates the key.
                Err(e @ (DefaultsError::SigningKey { .. } | DefaultsError::Meshes(_))) => log::warn!("tokens: {e}"),
                Err(e) => return Err(e.into()),
            }
        } else {
            log::info!("leader: another instance leads; the defaults are its job");
        }
        let https_tls = if config.api_server.https.enabled {
            let h = &config.api_server.https;
            let settings = crate::http::tls::TlsSettings {
                cert_file: h.tls_cert_file.clone(),
                key_file: h.tls_key_file.clone(),
                min_version: h.tls_min_version.clone(),
                max_version: h.tls_max_version.clone(),
                cipher_suites: h.tls_cipher_suites.clone(),
                work_dir: if h.tls_cert_file.is_empty() {
                    crate::http::tls::work_dir(&config.general.work_dir)?
                } else {
                    Default::default()
                },
            };
            Some(crate::http::tls::build(&settings)?)
        } else {
            None
        };
        let dp = config.dp_server.clone();
        // Certificate problems are configuration errors: found before anything starts.
        let tls = if dp.tls_enabled {
            let source = CertSource::for_dp_server(&config, &crate::tls::work_dir(&config)?)?;
            let tls = ServerTls::load(source, crate::tls::dp_server_settings(&config)?)?;
            log::info!("dp-server: TLS with {} (SANs {:?})", tls.source().cert.display(), tls.sans());
            Some(Arc::new(tls))
        } else {
            log::warn!(
                "dp-server: dpServer.tlsEnabled is false: xDS and /bootstrap are plaintext on port {}; tokens and configs can be read on the network",
                dp.port
            );
            None
        };
        if dp.authn.dp_proxy.mode() == DpAuthn::None {
            log::warn!(
                "xds: dpServer.authn.dpProxy.type is none: any client that reaches port {} gets any dataplane's config",
                dp.port
            );
        }
        let workers = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).max(2);
        let reconciler = Arc::new(Reconciler::start(
            store.clone(),
            Settings::from_config(&config),
            instance_id.clone(),
            workers,
            SystemClock::shared(),
        ));
        let hub: Arc<dyn StreamHub> = reconciler.clone();
        let auth = Authenticator::start(dp.authn.dp_proxy.mode(), store.clone());
        let peers = Arc::new(Peers::default());
        let dp_metrics = Arc::new(crate::dpserver::Metrics::default());
        let limits = Limits {
            max_message_size: dp.limits.max_message_size,
            max_streams_per_connection: dp.limits.max_streams_per_connection,
            max_streams_per_dataplane: dp.limits.max_streams_per_dataplane,
        };
        let guards = Arc::new(Guards::new(peers.clone(), auth.clone(), dp_metrics.clone(), limits));
        // Internal: only the front end below connects here (others are refused by `Peers`).
        let xds =
            XdsServer::start(INTERNAL_HOST, 0, dp.keepalive_time.0, config.xds_server.max_stream_age.0, hub, guards)?;
        let diag_addr = format!("{}:{}", config.diagnostics.interface, config.diagnostics.server_port);
        let api_addr = format!("{}:{}", config.api_server.http.interface, config.api_server.http.port);
        let api_enabled = config.api_server.http.enabled;
        let https_addr = crate::xds::generate::envoy_builders::join_host_port(
            &config.api_server.https.interface,
            config.api_server.https.port as u32,
        );
        if config.diagnostics.debug_endpoints {
            log::warn!(
                "diagnostics: debug endpoints are on: /debug/pprof exposes internals; keep port {} private",
                config.diagnostics.server_port
            );
        }
        let bootstrap_limits = api::limits(&config);
        let config = Arc::new(RwLock::new(config));
        let jobs: Vec<Box<dyn Job>> = vec![
            Box::new(crate::leader::defaults::Defaults::default()),
            Box::new(crate::leader::gc::Collector),
            Box::new(crate::leader::finalizer::Finalizer::default()),
        ];
        let jobs = Jobs::start(
            JobContext { store: store.clone(), config: config.clone(), leadership: leadership.clone() },
            jobs,
        );
        let mut ctx = ApiContext::new(store.clone(), config.clone(), instance_id.clone())
            .with_xds(reconciler.clone())
            .with_changes(reconciler.changes());
        if let Some(reads) = postgres.as_ref().and_then(crate::store::postgres::ReplicaReads::of) {
            ctx = ctx.with_reads(Arc::new(reads));
        }
        let bootstrap_ctx =
            BootstrapContext { store: store.clone(), config: config.clone(), tls: tls.clone(), auth: auth.clone() };
        let bootstrap = crate::http::Server::start(
            crate::http::Options {
                addr: format!("{INTERNAL_HOST}:0"),
                threads: BOOTSTRAP_THREADS,
                thread_name: crate::threads::DP_BOOTSTRAP,
                limits: bootstrap_limits,
                // TLS ends in the DP server's front end; this listener is loopback only.
                tls: None,
                errors: |status, title, detail| api::ApiError::new(status, title, detail).into_response(),
            },
            Arc::new(move |req: &crate::http::Request| crate::dpserver::bootstrap::handle(&bootstrap_ctx, req)),
        )?;
        let dp_server = DpServer::start(DpServerOptions {
            interface: dp.interface.clone(),
            port: dp.port,
            tls,
            grpc: std::net::SocketAddr::from(([127, 0, 0, 1], xds.port())),
            http: bootstrap.local_addr(),
            read_header_timeout: dp.read_header_timeout.0,
            peers,
            metrics: dp_metrics.clone(),
        })?;
        log::info!(
            "dp-server: ADS and /bootstrap listening on {}:{} ({workers} workers)",
            dp.interface,
            dp_server.local_addr().port()
        );
        let api = if api_enabled {
            let server = ApiServer::start(&api_addr, ctx.clone())?;
            log::info!("api: listening on http://{}", server.local_addr());
            Some(server)
        } else {
            log::info!("api: disabled (apiServer.http.enabled: false)");
            None
        };
        let api_https = match https_tls {
            Some(tls) => {
                let server = ApiServer::start_https(&https_addr, ctx, tls.acceptor)?;
                match &tls.generated_ca {
                    Some(ca) => log::info!(
                        "api: listening on https://{} (generated certificate; CA in {})",
                        server.local_addr(),
                        ca.display()
                    ),
                    None => log::info!("api: listening on https://{}", server.local_addr()),
                }
                Some(server)
            }
            None => None,
        };
        let readiness = Arc::new(Readiness { started: Default::default(), store: store.clone() });
        let sources = Sources {
            instance_id: instance_id.clone(),
            reconciler: reconciler.clone(),
            store_latency: metered.latency(),
            pool,
            dp_server: dp_metrics.clone(),
            leadership: leadership.clone(),
        };
        let diagnostics = DiagnosticsServer::start(&diag_addr, config.clone(), readiness.clone(), sources)?;
        log::info!("diagnostics: listening on http://{}", diagnostics.local_addr());
        readiness.started.store(true, Ordering::SeqCst);
        log::info!(
            "higuma {} started as instance {instance_id} on the {} store",
            env!("CARGO_PKG_VERSION"),
            store.backend()
        );
        Ok(Daemon {
            store,
            config,
            instance_id,
            leadership,
            elector,
            jobs: Some(jobs),
            api,
            api_https,
            dp_server: Some(dp_server),
            bootstrap: Some(bootstrap),
            xds: Some(xds),
            auth,
            dp_metrics,
            diagnostics: Some(diagnostics),
            reconciler: Some(reconciler),
            readiness,
        })
    }

    /// The REST API's bound address, when enabled.
    pub fn api_addr(&self) -> Option<std::net::SocketAddr> {
        self.api.as_ref().map(|a| a.local_addr())
    }

    /// The HTTPS API's bound address, when enabled.
    pub fn api_https_addr(&self) -> Option<std::net::SocketAddr> {
        self.api_https.as_ref().map(|a| a.local_addr())
    }

    /// The xDS server's bound port.
    pub fn xds_port(&self) -> Option<u16> {
        self.dp_server.as_ref().map(|x| x.local_addr().port())
    }

    /// The internal gRPC server's port, which refuses streams that bypass the DP server.
    pub fn internal_xds_port(&self) -> Option<u16> {
        self.xds.as_ref().map(|x| x.port())
    }

    pub fn dp_metrics(&self) -> Arc<crate::dpserver::Metrics> {
        self.dp_metrics.clone()
    }

    pub fn diagnostics_addr(&self) -> Option<std::net::SocketAddr> {
        self.diagnostics.as_ref().map(|d| d.local_addr())
    }

    pub fn reconciler(&self) -> Option<&Arc<Reconciler>> {
        self.reconciler.as_ref()
    }

    /// The config in force.
    pub fn config(&self) -> Config {
        self.config.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Stops taking API requests and xDS streams, finishes in-flight work, flushes the
    /// dataplanes' status, then closes the store.
    pub fn shutdown(mut self) {
        self.readiness.started.store(false, Ordering::SeqCst);
        if let Some(api) = self.api.take() {
            api.stop();
        }
        if let Some(api) = self.api_https.take() {
            api.stop();
        }
        if let Some(dp) = self.dp_server.take() {
            dp.stop();
        }
        if let Some(b) = self.bootstrap.take() {
            b.stop();
        }
        if let Some(xds) = self.xds.take() {
            xds.stop();
        }
        self.auth.stop();
        if let Some(d) = self.diagnostics.take() {
            d.stop();
        }
        if let Some(j) = self.jobs.take() {
            j.stop();
        }
        if let Some(e) = self.elector.take() {
            e.stop();
        }
        if let Some(mut r) = self.reconciler.take() {
            // Threads of the servers stopped above (gRPC's completion queues, API workers)
            // drop their clones as they finish; wait for them rather than skip the final
            // status flush.
            let deadline = std::time::Instant::now() + RECONCILER_RELEASE_WAIT;
            loop {
                match Arc::try_unwrap(r) {
                    Ok(r) => {
                        r.stop();
                        break;
                    }
                    Err(shared) if std::time::Instant::now() < deadline => {
                        r = shared;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(_) => {
                        log::warn!("xds: reconciler still referenced at shutdown; status may not be flushed");
                        break;
                    }
                }
            }
        }
        log::info!("higuma stopped");
    }
}

/// How long shutdown waits for the last clones of the reconciler to be dropped before it
/// gives up on the final status flush (threads finishing in-flight requests hold them).
const RECONCILER_RELEASE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Creates Mesh `default` unless it exists, as kuma-cp does at start, with its default
/// policies (Kuma's `defaults.createMeshRoutingResources` off).
pub fn ensure_default_mesh(store: &SharedStore) -> Result<(), DaemonError> {
    ensure_default_mesh_with(store, crate::config::DEFAULT_CREATE_MESH_ROUTING_RESOURCES)
}

/// [`ensure_default_mesh`] with `defaults.createMeshRoutingResources`. An existing Mesh
/// `default` is left alone, defaults included (Kuma creates them with the Mesh only).
pub fn ensure_default_mesh_with(store: &SharedStore, create_routing_resources: bool) -> Result<(), DaemonError> {
    crate::leader::defaults::ensure_default_mesh(store, create_routing_resources).map(drop).map_err(DaemonError::from)
}

/// Where the internal servers behind the DP server listen.
const INTERNAL_HOST: &str = "127.0.0.1";
/// `/bootstrap` is one request per sidecar start; two threads keep it responsive.
const BOOTSTRAP_THREADS: usize = 2;

/// `<hostname>-<4 hex digits>`, Kuma's instance id format.
pub fn instance_id() -> String {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    format!("{host}-{:04x}", fastrand::u16(..))
}
