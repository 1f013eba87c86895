//! The defaults job: what Kuma's leader creates (`pkg/defaults/components.go`, the default
//! signing-key and admin-token components): Mesh `default` with its default policies (unless
//! `defaults.skipMeshCreation`), every mesh's dataplane-token signing key, the user-token
//! signing key and, with `bootstrapAdminToken`, the admin token. Every create is
//! create-if-absent and only the leader tries, so nothing is created twice however many
//! instances start at once. It retries until everything exists (Kuma retries for ten
//! minutes), then re-checks the signing keys every minute: meshes created elsewhere (a kuma-cp
//! in the group, a create whose key failed) get theirs. The mesh CA joins this job when
//! builtin mTLS lands.

use std::time::Duration;

use super::jobs::{Job, JobContext};
use crate::config::Config;
use crate::model::{rest, ResourceType, Spec};
use crate::store::{SharedStore, StoreError};

/// Retry delay while something could not be created (store down, say).
const RETRY: Duration = Duration::from_secs(2);
/// How often the signing keys of every mesh are checked once everything exists.
const RESYNC: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum DefaultsError {
    #[error("creating the default mesh failed: {0}")]
    Mesh(StoreError),
    #[error("creating the default mesh's policies failed: {0}")]
    Policies(#[from] crate::policies::defaults::DefaultsError),
    #[error("creating the user token signing key or the admin token failed: {0}")]
    Tokens(#[from] crate::api::authn::TokenError),
    #[error("listing meshes for their signing keys failed: {0}")]
    Meshes(StoreError),
    #[error("creating the signing key of mesh {mesh:?} failed: {source}")]
    SigningKey { mesh: String, source: Box<crate::tokens::TokenError> },
}

/// What one pass created, for the log and the tests.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Created {
    pub default_mesh: bool,
    pub signing_keys: usize,
    pub admin_token: bool,
}

/// Creates Mesh `default` unless it exists, as kuma-cp's leader does, with its default
/// policies. An existing Mesh `default` is left alone, defaults included (Kuma creates them
/// with the Mesh only). Returns whether it was created.
pub fn ensure_default_mesh(store: &SharedStore, create_routing_resources: bool) -> Result<bool, DefaultsError> {
    let spec = rest::from_json(serde_json::json!({"type": ResourceType::Mesh.name(), "name": "default"}))
        .map_err(|e| DefaultsError::Mesh(StoreError::Internal(e.to_string())))?
        .spec;
    match store.create("", "default", spec) {
        Ok(mesh) => {
            log::info!("created Mesh \"default\" (set defaults.skipMeshCreation to skip)");
            if let Spec::Mesh(spec) = &mesh.spec {
                crate::policies::defaults::ensure(&**store, "default", spec, create_routing_resources)?;
            }
            Ok(true)
        }
        Err(StoreError::AlreadyExists(_)) => Ok(false),
        Err(e) => Err(DefaultsError::Mesh(e)),
    }
}

/// Creates the token signing key of every mesh that lacks one; returns how many it made.
pub fn ensure_signing_keys(store: &SharedStore) -> Result<usize, DefaultsError> {
    let meshes = store.list(ResourceType::Mesh, None).map_err(DefaultsError::Meshes)?;
    let mut created = 0;
    for m in meshes {
        match crate::tokens::keys::ensure_signing_key(&**store, &m.meta.name) {
            Ok(true) => created += 1,
            Ok(false) => {}
            // A mesh deleted meanwhile has no key to make; anything else is retried.
            Err(crate::tokens::TokenError::Store(StoreError::MeshNotFound(_))) => {}
            Err(source) => {
                return Err(DefaultsError::SigningKey { mesh: m.meta.name.clone(), source: Box::new(source) })
            }
        }
    }
    Ok(created)
}

/// Everything the leader creates at the start of its term.
pub fn ensure_all(store: &SharedStore, config: &Config) -> Result<Created, DefaultsError> {
    let mut out = Created::default();
    if !config.defaults.skip_mesh_creation {
        out.default_mesh = ensure_default_mesh(store, config.defaults.create_mesh_routing_resources)?;
    }
    out.signing_keys = ensure_signing_keys(store)?;
    if crate::api::authn::bootstrap(store, config)?.admin_token_created {
        out.admin_token = true;
        log::info!(
            "api: bootstrap of the admin user token is enabled. To extract it run 'curl http://localhost:{}/global-secrets/admin-user-token | jq -r .data | base64 -d' on this host; use it with --auth-token. To disable it set KUMA_API_SERVER_AUTHN_TOKENS_BOOTSTRAP_ADMIN_TOKEN to false",
            config.api_server.http.port
        );
    }
    Ok(out)
}

/// The job: [`ensure_all`] until it succeeds, then the signing keys every minute.
#[derive(Debug, Default)]
pub struct Defaults {
    done: bool,
}

impl Job for Defaults {
    fn name(&self) -> &'static str {
        "defaults"
    }

    fn start_term(&mut self) {
        // Another leader may have died halfway: check everything again.
        self.done = false;
    }

    fn run(&mut self, ctx: &JobContext) -> Duration {
        if !self.done {
            match ensure_all(&ctx.store, &ctx.config()) {
                Ok(_) => self.done = true,
                Err(e) => {
                    log::warn!("leader: {e}; retrying in {RETRY:?}");
                    return RETRY;
                }
            }
        } else if let Err(e) = ensure_signing_keys(&ctx.store) {
            log::warn!("leader: {e}; retrying in {RETRY:?}");
            return RETRY;
        }
        RESYNC
    }
}
