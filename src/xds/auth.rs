//! Who may hold an ADS stream: the dataplane token of `dpServer.authn.dpProxy.type: dpToken`
//! checked on every DiscoveryRequest, against the dataplane the stream's node id names.
//!
//! Checking a token in full (RSA signature, revocation list, the Dataplane's tags) reads
//! the store, which must not happen on gRPC's completion-queue threads (every stream of a
//! queue would wait for Postgres) nor on the reconciler's dispatcher. So it runs on one
//! thread of its own (`xds-auth`), once per stream and again only when something it read
//! changed, and answers with a [`Grant`]. Each later request checks the grant inline: the
//! expiry against the clock and a few atomic "epoch" counters that the auth thread bumps
//! when a signing key, the revocation list, or a tag-restricted dataplane changes. That
//! per-request check is a clock read and a few atomic loads, so a sidecar's ACKs never
//! wait; BENCHMARKS.md ("Dataplane tokens", measured by `higuma-load`) has what it, a first
//! check with its RSA verification and a cached check cost.
//!
//! Verified signatures are cached by token (bounded LRU), so a fleet reconnecting with the
//! same tokens costs one RSA verification per distinct token, not per stream.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_channel::{select, Receiver, Sender};
use grpcio::RpcStatusCode;

use crate::config::DpAuthn;
use crate::model::{ResourceKey, ResourceType, Spec};
use crate::store::{ChangeEvent, SharedStore, StoreError};
use crate::threads;
use crate::tokens::dataplane::{self, Verified};
use crate::tokens::keys::{self, MeshKeys};
use crate::tokens::TokenError;

/// Distinct tokens whose verified signature is remembered; a fleet of this many sidecars
/// reconnecting at once costs no RSA work twice.
const VERIFIED_CACHE: usize = 16_384;

/// Why a stream is closed: the gRPC status and a message for the client, plus a short
/// fixed text that keys the log's rate limiter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denial {
    pub code: RpcStatusCode,
    pub message: String,
    pub kind: &'static str,
}

impl Denial {
    pub fn new(code: RpcStatusCode, kind: &'static str, message: impl Into<String>) -> Denial {
        Denial { code, message: message.into(), kind }
    }

    fn from_token(e: &TokenError) -> Denial {
        let (code, kind) = if e.is_internal() {
            (RpcStatusCode::UNAVAILABLE, "token check failed")
        } else if e.is_unauthenticated() {
            (RpcStatusCode::UNAUTHENTICATED, "invalid dataplane token")
        } else {
            (RpcStatusCode::PERMISSION_DENIED, "dataplane token not valid for this dataplane")
        };
        Denial::new(code, kind, format!("authentication failed: {e}"))
    }
}

/// Permission for one stream to be served as one dataplane, while it holds.
#[derive(Clone, Debug)]
pub struct Grant {
    pub dataplane: ResourceKey,
    /// Unix seconds after which the token is expired.
    expires: i64,
    /// Epoch counters and their values when the grant was made: any bump means an input
    /// (key, revocations, tags) changed and the token must be checked again.
    deps: Vec<(Arc<AtomicU64>, u64)>,
}

impl Grant {
    /// The per-request check: nothing the grant rests on has changed and it has not
    /// expired.
    pub fn holds(&self, now: SystemTime) -> bool {
        let now = now.duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        now < self.expires && self.deps.iter().all(|(epoch, seen)| epoch.load(Ordering::Acquire) == *seen)
    }

    fn unconditional(dataplane: ResourceKey) -> Grant {
        Grant { dataplane, expires: i64::MAX, deps: Vec::new() }
    }
}

struct Job {
    token: String,
    node: ResourceKey,
    reply: futures::channel::oneshot::Sender<Result<Grant, Denial>>,
}

enum Msg {
    Check(Job),
    Stop,
}

/// Counters the auth thread bumps; grants hold clones of the ones they depend on.
#[derive(Default)]
struct Epochs {
    /// Bumped on a store resync (events may have been lost): every grant is re-checked.
    global: Arc<AtomicU64>,
    meshes: HashMap<String, Arc<AtomicU64>>,
    /// Only dataplanes some tag-restricted grant depends on.
    dataplanes: HashMap<ResourceKey, Arc<AtomicU64>>,
}

fn bump(epoch: &AtomicU64) {
    epoch.fetch_add(1, Ordering::AcqRel);
}

/// Checks tokens for the xDS server; see the module docs.
pub struct Authenticator {
    mode: DpAuthn,
    jobs: Option<Sender<Msg>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Authenticator {
    /// Starts the auth thread (only for `dpToken`; `none` needs no thread).
    pub fn start(mode: DpAuthn, store: SharedStore) -> Arc<Authenticator> {
        if mode == DpAuthn::None {
            return Arc::new(Authenticator { mode, jobs: None, thread: Mutex::new(None) });
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let events = store.subscribe();
        let worker = AuthThread {
            store,
            keys: HashMap::new(),
            verified: lru::LruCache::new(NonZeroUsize::new(VERIFIED_CACHE).unwrap_or(NonZeroUsize::MIN)),
            epochs: Epochs::default(),
        };
        let thread = threads::spawn(threads::XDS_AUTH.to_string(), move || worker.run(rx, events));
        Arc::new(Authenticator { mode, jobs: Some(tx), thread: Mutex::new(Some(thread)) })
    }

    pub fn mode(&self) -> DpAuthn {
        self.mode
    }

    /// Checks `token` for the dataplane `node` names. Resolves on the auth thread's answer;
    /// awaiting it never blocks a gRPC thread.
    pub async fn authenticate(&self, token: Option<&str>, node: &ResourceKey) -> Result<Grant, Denial> {
        let Some(jobs) = &self.jobs else { return Ok(Grant::unconditional(node.clone())) };
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(Denial::new(
                RpcStatusCode::UNAUTHENTICATED,
                "no dataplane token",
                "authentication failed: the request has no dataplane token (gRPC metadata \"authorization\"); \
                 generate one with `higuma generate dataplane-token` and pass it to `higuma dp run --token-file`",
            ));
        };
        let (reply, answer) = futures::channel::oneshot::channel();
        let job = Job { token: token.to_string(), node: node.clone(), reply };
        if jobs.send(Msg::Check(job)).is_err() {
            return Err(Denial::new(RpcStatusCode::UNAVAILABLE, "shutting down", "the control plane is shutting down"));
        }
        answer.await.unwrap_or_else(|_| {
            Err(Denial::new(RpcStatusCode::UNAVAILABLE, "shutting down", "the control plane is shutting down"))
        })
    }

    /// Stops the auth thread; pending checks answer UNAVAILABLE.
    pub fn stop(&self) {
        let handle = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let (Some(jobs), Some(handle)) = (&self.jobs, handle) {
            let _ = jobs.send(Msg::Stop);
            let _ = handle.join();
        }
    }
}

struct AuthThread {
    store: SharedStore,
    /// Per mesh, dropped when one of its token Secrets changes.
    keys: HashMap<String, Arc<MeshKeys>>,
    verified: lru::LruCache<String, Verified>,
    epochs: Epochs,
}

impl AuthThread {
    fn run(mut self, jobs: Receiver<Msg>, events: Receiver<ChangeEvent>) {
        loop {
            select! {
                recv(jobs) -> msg => match msg {
                    Ok(Msg::Stop) | Err(_) => break,
                    Ok(Msg::Check(job)) => {
                        // Events already queued were written before this job was sent
                        // (a revocation, then the stream): apply them first.
                        while let Ok(ev) = events.try_recv() {
                            self.on_event(ev);
                        }
                        let answer = self.check(&job.token, &job.node);
                        let _ = job.reply.send(answer);
                    }
                },
                recv(events) -> ev => match ev {
                    Ok(ev) => self.on_event(ev),
                    Err(_) => {
                        log::error!("xds: auth lost the store's event stream; token changes now need a restart");
                        break;
                    }
                },
            }
        }
    }

    fn on_event(&mut self, ev: ChangeEvent) {
        match ev {
            ChangeEvent::Changed { key, .. } => match key.rtype {
                ResourceType::Secret if keys::affects_tokens(&key.mesh, &key.name) => {
                    self.keys.remove(&key.mesh);
                    if let Some(epoch) = self.epochs.meshes.get(&key.mesh) {
                        bump(epoch);
                    }
                }
                ResourceType::Dataplane => {
                    if let Some(epoch) = self.epochs.dataplanes.get(&key) {
                        bump(epoch);
                    }
                }
                // A deleted mesh takes its Secrets along, each with its own event.
                _ => {}
            },
            ChangeEvent::Resync => {
                self.keys.clear();
                bump(&self.epochs.global);
            }
        }
    }

    fn check(&mut self, token: &str, node: &ResourceKey) -> Result<Grant, Denial> {
        // Epoch values are read before the inputs: a change that lands after this point
        // bumps them and invalidates the grant we are about to make.
        let global = self.epochs.global.clone();
        let mesh_epoch = self.epochs.meshes.entry(node.mesh.clone()).or_default().clone();
        let mut deps = vec![(global.clone(), global.load(Ordering::Acquire))];
        deps.push((mesh_epoch.clone(), mesh_epoch.load(Ordering::Acquire)));
        let keys = self.mesh_keys(&node.mesh).map_err(|e| Denial::from_token(&e))?;
        let verified = match self.verified.get(token) {
            // Same key bytes as when it was verified: the signature still holds.
            Some(v) if keys.keys.get(&v.kid).is_some_and(|k| k.fingerprint == v.key_fingerprint) => v.clone(),
            _ => {
                let v = dataplane::verify(token, &node.mesh, &keys).map_err(|e| Denial::from_token(&e))?;
                self.verified.put(token.to_string(), v.clone());
                v
            }
        };
        let spec = if verified.claims.tags.is_empty() {
            None
        } else {
            // Tags are checked against the stored Dataplane, so the grant lasts only as
            // long as the Dataplane does not change.
            let epoch = self.epochs.dataplanes.entry(node.clone()).or_default().clone();
            deps.push((epoch.clone(), epoch.load(Ordering::Acquire)));
            match self.store.get(node) {
                Ok(r) => match &r.spec {
                    Spec::Dataplane(d) => Some(d.clone()),
                    _ => None,
                },
                Err(StoreError::NotFound(_)) => None,
                Err(e) => return Err(Denial::from_token(&TokenError::Store(e))),
            }
        };
        dataplane::authorize(&verified, node, spec.as_ref(), &keys, SystemTime::now())
            .map_err(|e| Denial::from_token(&e))?;
        let expires = verified.claims.exp.unwrap_or(0);
        Ok(Grant { dataplane: node.clone(), expires, deps })
    }

    fn mesh_keys(&mut self, mesh: &str) -> Result<Arc<MeshKeys>, TokenError> {
        if let Some(k) = self.keys.get(mesh) {
            return Ok(k.clone());
        }
        let loaded = Arc::new(keys::load(&*self.store, mesh)?);
        self.keys.insert(mesh.to_string(), loaded.clone());
        Ok(loaded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest;
    use crate::store::MemoryStore;
    use crate::tokens::dataplane::{Identity, DEFAULT_VALID_FOR};
    use std::time::{Duration, Instant};

    fn store() -> SharedStore {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let m = rest::from_json(serde_json::json!({"type": "Mesh", "name": "default"})).unwrap();
        store.create("", "default", m.spec).unwrap();
        store
    }

    fn node(name: &str) -> ResourceKey {
        ResourceKey::new(ResourceType::Dataplane, "default", name)
    }

    fn token(store: &SharedStore, name: &str) -> String {
        let id = Identity { mesh: "default".into(), name: name.into(), ..Default::default() };
        dataplane::issue(&**store, &id, DEFAULT_VALID_FOR, SystemTime::now()).unwrap()
    }

    #[test]
    fn grants_hold_until_a_token_secret_changes() {
        let store = store();
        let auth = Authenticator::start(DpAuthn::DpToken, store.clone());
        let t = token(&store, "web-1");
        let grant = futures::executor::block_on(auth.authenticate(Some(&t), &node("web-1"))).unwrap();
        assert!(grant.holds(SystemTime::now()));
        let denied = futures::executor::block_on(auth.authenticate(Some(&t), &node("web-2"))).unwrap_err();
        assert_eq!(denied.code, RpcStatusCode::PERMISSION_DENIED);
        let none = futures::executor::block_on(auth.authenticate(None, &node("web-1"))).unwrap_err();
        assert_eq!(none.code, RpcStatusCode::UNAUTHENTICATED);

        // Revoking: the grant stops holding and a new check refuses the token.
        let jti = {
            let keys = keys::load(&*store, "default").unwrap();
            dataplane::verify(&t, "default", &keys).unwrap().claims.jti
        };
        let secret = crate::model::secret::SecretSpec::new(jti.into_bytes());
        store.create("default", &keys::revocations_name("default"), Spec::Secret(secret)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while grant.holds(SystemTime::now()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(!grant.holds(SystemTime::now()), "the revocation did not reach the grant");
        let denied = futures::executor::block_on(auth.authenticate(Some(&t), &node("web-1"))).unwrap_err();
        assert_eq!(denied.code, RpcStatusCode::UNAUTHENTICATED);
        assert!(denied.message.contains("revoked"), "{}", denied.message);
        auth.stop();
    }

    /// A granted stream's grant keeps holding request after request while nothing it rests
    /// on changes (what it costs is measured by `higuma-load`, see BENCHMARKS.md).
    #[test]
    fn a_grant_holds_for_every_request_while_its_inputs_stand() {
        let store = store();
        let auth = Authenticator::start(DpAuthn::DpToken, store.clone());
        let t = token(&store, "web-1");
        let grant = futures::executor::block_on(auth.authenticate(Some(&t), &node("web-1"))).unwrap();
        let n = 100_000u32;
        let held = (0..n).filter(|_| grant.holds(SystemTime::now())).count();
        assert_eq!(held, n as usize);
        // A second check of the same token is answered (from the verified cache) alike.
        let again = futures::executor::block_on(auth.authenticate(Some(&t), &node("web-1"))).unwrap();
        assert_eq!(again.dataplane, node("web-1"));
        assert!(again.holds(SystemTime::now()));
        auth.stop();
    }
}
