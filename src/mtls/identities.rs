//! The workload certificates of connected dataplanes (reference §1.3).
//!
//! An xDS worker asks [`Identities::current`] for a dataplane's certificate under its plan
//! and never waits: it gets the certificate issued so far (possibly `None`), and when that
//! is missing, stale (another plan: tags or the Mesh's mTLS changed) or due (4/5 of its
//! lifetime gone), an issuance is queued for the issuer threads, which make the dataplane
//! due again once the new certificate is there. A scanner re-queues certificates that come
//! due while nothing else happens. Certificates exist only for connected dataplanes:
//! [`Identities::forget`] drops one at disconnect.
//!
//! When a CA cannot issue (a provided CA's Secret gone, the store down), the whole fleet
//! makes at most one attempt per [`FAILURE_COOLDOWN`] (Kuma issue #17448: every dataplane
//! retrying on its own turned a CA outage into a storm): after a failure, one probe is let
//! through per cooldown, and only its success releases the others.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender};
use protobuf::MessageField;

use super::ca::{self, CaMaterial};
use super::issuer::{self, push_pem, WORKLOAD_KEY};
use super::plan::{IdentityPlan, Issuer};
use super::{backend, names, MtlsError};
use crate::clock::Clock;
use crate::envoy::base::DataSource as EnvoyDataSource;
use crate::envoy::tls_common::{CertificateValidationContext, TlsCertificate};
use crate::envoy::tls_secret::Secret;
use crate::model::ResourceKey;
use crate::store::SharedStore;
use crate::xds::resource_kind::ResourceKind;
use crate::xds::wire::EncodedResource;

/// The readiness mark of a dataplane whose identity comes from a MeshIdentity (the mark of
/// a `Mesh.mtls` identity is its backend's name): `MeshIdentity/<name>`.
pub const IDENTITY_MARK_PREFIX: &str = "MeshIdentity/";

/// A certificate is re-issued once this share of its lifetime is gone (Kuma: 4/5).
const ROTATE_NUMERATOR: u32 = 4;
const ROTATE_DENOMINATOR: u32 = 5;
/// After a CA failed, the fleet makes one attempt per this long (Kuma #17448).
pub const FAILURE_COOLDOWN: Duration = Duration::from_secs(5);
/// Issuer threads: issuance is CPU work (key generation and a signature); two threads keep
/// a cold start of many dataplanes moving without taking the xDS workers' cores.
const ISSUER_THREADS: usize = 2;
/// How often the scanner looks for certificates that came due: well under the shortest
/// lifetime worth configuring (seconds, in tests).
const SCAN_INTERVAL: Duration = Duration::from_millis(250);
/// A loaded CA is reused this long before it is read from the store again, so a rotation
/// wave reads each CA once, and a CA replaced in the store is picked up soon.
const CA_CACHE_TTL: Duration = Duration::from_secs(5);

/// One issued certificate and the SDS secrets that carry it.
pub struct Issued {
    pub plan: IdentityPlan,
    /// `identity` then `trust`, ready for the snapshot.
    pub secrets: Vec<Arc<EncodedResource>>,
    /// Changes with every issuance: part of the dataplane's input hash.
    pub id: u64,
    pub issued_at: SystemTime,
    pub not_after: SystemTime,
    rotate_at: Instant,
    /// Issuances before this one for this dataplane (Kuma's `certificateRegenerations`).
    pub regenerations: u64,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").field("id", &self.id).field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// The `mTLS` part of a DataplaneInsight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertInfo {
    pub expiration: SystemTime,
    pub last_generated: SystemTime,
    pub issued_backend: String,
    pub regenerations: u64,
}

#[derive(Default)]
struct DpIdentity {
    wanted: Option<IdentityPlan>,
    current: Option<Arc<Issued>>,
    pending: bool,
    regenerations: u64,
}

#[derive(Default)]
struct Failure {
    until: Option<Instant>,
    probing: bool,
}

#[derive(Default)]
struct State {
    dps: HashMap<ResourceKey, DpIdentity>,
    failures: HashMap<Issuer, Failure>,
    cas: HashMap<Issuer, (Instant, Arc<CaMaterial>)>,
    /// The leaf signer of each CA in use (keyed by CA fingerprint; see `issuer::Signer`).
    signers: HashMap<u64, Arc<issuer::Signer>>,
    /// Trust secrets are the same for every dataplane of a mesh: one encoding each, keyed by
    /// (SDS name, bundle hash).
    trust: HashMap<(String, u64), Arc<EncodedResource>>,
}

/// Distinct trust secrets kept before the map is cleared (meshes × CA versions in use).
const TRUST_SECRETS_KEPT: usize = 256;

struct Job {
    dp: ResourceKey,
    plan: IdentityPlan,
}

type Notify = Box<dyn Fn(&ResourceKey) + Send + Sync>;

pub struct Identities {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
    jobs: Sender<Option<Job>>,
    notify: Mutex<Option<Arc<Notify>>>,
    next_id: std::sync::atomic::AtomicU64,
    /// Issuance attempts (successful or not), for tests and metrics.
    pub attempts: std::sync::atomic::AtomicU64,
    stopping: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// When a certificate valid from `issued` for `lifetime` is due again.
fn rotate_at(issued: Instant, lifetime: Duration) -> Instant {
    issued + lifetime * ROTATE_NUMERATOR / ROTATE_DENOMINATOR
}

impl Identities {
    /// A manager without threads: issuance runs only through [`run_one`](Self::run_one)
    /// (tests).
    fn unstarted(store: SharedStore, clock: Arc<dyn Clock>) -> (Arc<Identities>, Receiver<Option<Job>>) {
        let (tx, rx) = crossbeam_channel::unbounded();
        let ids = Arc::new(Identities {
            store,
            clock,
            state: Mutex::default(),
            jobs: tx,
            notify: Mutex::new(None),
            next_id: std::sync::atomic::AtomicU64::new(1),
            attempts: std::sync::atomic::AtomicU64::new(0),
            stopping: std::sync::atomic::AtomicBool::new(false),
        });
        (ids, rx)
    }

    /// Starts the issuer threads and the scanner; they end when the last handle is dropped
    /// or [`stop`](Self::stop) is called.
    pub fn start(store: SharedStore, clock: Arc<dyn Clock>) -> Arc<Identities> {
        let (ids, rx) = Self::unstarted(store, clock);
        for i in 0..ISSUER_THREADS {
            let (weak, rx) = (Arc::downgrade(&ids), rx.clone());
            crate::threads::spawn(format!("{}-{i}", crate::threads::MTLS_ISSUER), move || {
                while let Ok(Some(job)) = rx.recv() {
                    let Some(ids) = weak.upgrade() else { return };
                    ids.issue(job);
                }
            });
        }
        let weak = Arc::downgrade(&ids);
        crate::threads::spawn(crate::threads::MTLS_SCAN.to_string(), move || loop {
            std::thread::sleep(SCAN_INTERVAL);
            let Some(ids) = weak.upgrade() else { return };
            if ids.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                return;
            }
            ids.scan();
        });
        ids
    }

    /// Ends the issuer threads.
    pub fn stop(&self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Relaxed);
        for _ in 0..ISSUER_THREADS {
            let _ = self.jobs.send(None);
        }
    }

    /// Who is told that a dataplane has a new certificate (the reconciler makes it due).
    pub fn set_notify(&self, f: impl Fn(&ResourceKey) + Send + Sync + 'static) {
        *lock(&self.notify) = Some(Arc::new(Box::new(f)));
    }

    /// The certificate to serve `dp` under `plan` now; queues an issuance when there is
    /// none yet, or it is of another plan, or due. `plan == None`: the dataplane has no
    /// identity any more, its certificate is dropped.
    pub fn current(&self, dp: &ResourceKey, plan: Option<&IdentityPlan>) -> Option<Arc<Issued>> {
        let Some(plan) = plan else {
            lock(&self.state).dps.remove(dp);
            return None;
        };
        let now = self.clock.now();
        let mut st = lock(&self.state);
        let entry = st.dps.entry(dp.clone()).or_default();
        if entry.wanted.as_ref() != Some(plan) {
            entry.wanted = Some(plan.clone());
        }
        let current = entry.current.clone();
        let fresh = current.as_ref().is_some_and(|c| c.plan == *plan && now < c.rotate_at);
        if !fresh {
            self.queue(&mut st, dp, now);
        }
        // A stale certificate is still served until its successor exists: its peers accept it
        // until it expires (or until a CA change, which the operator went through PERMISSIVE
        // or mTLS-off for).
        current
    }

    /// Queues `dp`'s issuance unless one is pending or its CA is cooling down.
    fn queue(&self, st: &mut State, dp: &ResourceKey, now: Instant) {
        let Some(entry) = st.dps.get(dp) else { return };
        if entry.pending {
            return;
        }
        let Some(plan) = entry.wanted.clone() else { return };
        let failure = st.failures.entry(plan.issuer.clone()).or_default();
        if let Some(until) = failure.until {
            if now < until || failure.probing {
                return;
            }
            failure.probing = true;
        }
        if let Some(entry) = st.dps.get_mut(dp) {
            entry.pending = true;
        }
        let _ = self.jobs.send(Some(Job { dp: dp.clone(), plan }));
    }

    /// Queues every connected dataplane whose certificate came due or is missing.
    pub fn scan(&self) {
        let now = self.clock.now();
        let mut st = lock(&self.state);
        let due: Vec<ResourceKey> = st
            .dps
            .iter()
            .filter(|(_, e)| {
                !e.pending
                    && e.wanted.is_some()
                    && e.current.as_ref().is_none_or(|c| Some(&c.plan) != e.wanted.as_ref() || now >= c.rotate_at)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for dp in due {
            self.queue(&mut st, &dp, now);
        }
    }

    /// Drops a disconnected dataplane's certificate.
    pub fn forget(&self, dp: &ResourceKey) {
        lock(&self.state).dps.remove(dp);
    }

    /// The insight's `mTLS` of `dp`, if it has a certificate.
    pub fn info(&self, dp: &ResourceKey) -> Option<CertInfo> {
        let st = lock(&self.state);
        let c = st.dps.get(dp)?.current.clone()?;
        Some(CertInfo {
            expiration: c.not_after,
            last_generated: c.issued_at,
            issued_backend: c.plan.issuer.backend().to_string(),
            regenerations: c.regenerations,
        })
    }

    /// The readiness mark of `dp`'s current certificate, if it has one.
    pub fn mark_of(&self, dp: &ResourceKey) -> Option<String> {
        let st = lock(&self.state);
        st.dps.get(dp)?.current.as_ref().map(|c| Self::mark(&c.plan))
    }

    /// The readiness mark of a plan's issuer (see [`IDENTITY_MARK_PREFIX`]).
    pub fn mark(plan: &IdentityPlan) -> String {
        match &plan.issuer {
            Issuer::Bundled { identity, .. } => format!("{IDENTITY_MARK_PREFIX}{identity}"),
            other => other.backend().to_string(),
        }
    }

    /// Runs one queued job on this thread (tests without issuer threads).
    #[cfg(test)]
    fn run_one(&self, rx: &Receiver<Option<Job>>) -> bool {
        match rx.try_recv() {
            Ok(Some(job)) => {
                self.issue(job);
                true
            }
            _ => false,
        }
    }

    fn issue(&self, job: Job) {
        self.attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.make(&job.plan);
        let now = self.clock.now();
        let notify = {
            let mut st = lock(&self.state);
            match result {
                Ok((secrets, issued_at, not_after)) => {
                    st.failures.remove(&job.plan.issuer);
                    let id = self.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let released: Vec<ResourceKey> = match st.dps.get_mut(&job.dp) {
                        Some(entry) => {
                            entry.pending = false;
                            let regenerations = entry.regenerations;
                            entry.regenerations += 1;
                            entry.current = Some(Arc::new(Issued {
                                rotate_at: rotate_at(now, job.plan.lifetime),
                                plan: job.plan.clone(),
                                secrets,
                                id,
                                issued_at,
                                not_after,
                                regenerations,
                            }));
                            vec![job.dp.clone()]
                        }
                        // Disconnected meanwhile: the certificate is dropped.
                        None => Vec::new(),
                    };
                    // Dataplanes held back by a cooldown of this CA go now.
                    let waiting: Vec<ResourceKey> = st
                        .dps
                        .iter()
                        .filter(|(_, e)| {
                            !e.pending
                                && e.current.is_none()
                                && e.wanted.as_ref().is_some_and(|p| p.issuer == job.plan.issuer)
                        })
                        .map(|(k, _)| k.clone())
                        .collect();
                    for dp in waiting {
                        self.queue(&mut st, &dp, now);
                    }
                    released
                }
                Err(e) => {
                    log::warn!(
                        "mtls: cannot issue a certificate for {}.{} from {:?}: {e}; the mesh retries in {FAILURE_COOLDOWN:?}",
                        job.dp.mesh,
                        job.dp.name,
                        job.plan.issuer.backend()
                    );
                    st.failures.insert(
                        job.plan.issuer.clone(),
                        Failure { until: Some(now + FAILURE_COOLDOWN), probing: false },
                    );
                    st.cas.remove(&job.plan.issuer);
                    if let Some(entry) = st.dps.get_mut(&job.dp) {
                        entry.pending = false;
                    }
                    Vec::new()
                }
            }
        };
        let f = lock(&self.notify).clone();
        if let Some(f) = f {
            for dp in &notify {
                f(dp);
            }
        }
    }

    /// The CA of `issuer`, cached for [`CA_CACHE_TTL`].
    fn ca(&self, mesh: &str, issuer: &Issuer) -> Result<Arc<CaMaterial>, MtlsError> {
        let now = self.clock.now();
        if let Some((at, ca)) = lock(&self.state).cas.get(issuer) {
            if now < *at + CA_CACHE_TTL {
                return Ok(ca.clone());
            }
        }
        let ca = Arc::new(load_ca(&self.store, mesh, issuer)?);
        lock(&self.state).cas.insert(issuer.clone(), (now, ca.clone()));
        Ok(ca)
    }

    /// The signer of leaves of `ca` valid from `now` for `lifetime`: kept while it covers
    /// them, made again (one signature by the CA) when it does not or the CA changed.
    fn signer(&self, ca: &CaMaterial, now: SystemTime, lifetime: Duration) -> Result<Arc<issuer::Signer>, MtlsError> {
        if let Some(s) = lock(&self.state).signers.get(&ca.fingerprint) {
            if s.covers(now, lifetime) {
                return Ok(s.clone());
            }
        }
        let signer = Arc::new(
            issuer::Signer::for_ca(ca, now, lifetime)
                .map_err(|source| MtlsError::Crypto { what: "an issuing intermediate", source })?,
        );
        let mut st = lock(&self.state);
        let in_use: std::collections::HashSet<u64> = st.cas.values().map(|(_, c)| c.fingerprint).collect();
        st.signers.retain(|fp, _| in_use.contains(fp));
        st.signers.insert(ca.fingerprint, signer.clone());
        Ok(signer)
    }

    /// The trust secret `name` carrying `bundle`, shared by every dataplane it is the same for.
    fn trust_secret(&self, name: &str, bundle: &[u8]) -> Arc<EncodedResource> {
        let key = (name.to_string(), xxhash_rust::xxh3::xxh3_64(bundle));
        let mut st = lock(&self.state);
        if let Some(s) = st.trust.get(&key) {
            return s.clone();
        }
        if st.trust.len() >= TRUST_SECRETS_KEPT {
            st.trust.clear();
        }
        let s = trust_secret(name, bundle);
        st.trust.insert(key, s.clone());
        s
    }

    /// Issues `plan`'s certificate and encodes its two SDS secrets.
    #[allow(clippy::type_complexity)]
    fn make(&self, plan: &IdentityPlan) -> Result<(Vec<Arc<EncodedResource>>, SystemTime, SystemTime), MtlsError> {
        let ca = self.ca(&plan.mesh, &plan.issuer)?;
        let issued_at = SystemTime::now();
        let signer = self.signer(&ca, issued_at, plan.lifetime)?;
        let cert = issuer::issue(&signer, &plan.uris, plan.lifetime, issued_at, WORKLOAD_KEY)
            .map_err(|source| MtlsError::Crypto { what: "a workload certificate", source })?;
        let mut bundle = ca.chain_pem.clone();
        for other in &plan.trusted_issuers {
            match self.ca(&plan.mesh, other) {
                Ok(c) => push_pem(&mut bundle, &c.chain_pem),
                Err(e) => log::debug!("mtls: not trusting {:?} yet: {e}", other.backend()),
            }
        }
        for pem in &plan.extra_trust {
            push_pem(&mut bundle, pem.as_bytes());
        }
        let mut chain = cert.cert_pem.clone();
        push_pem(&mut chain, &signer.chain_pem);
        let secrets = vec![
            identity_secret(&plan.identity_sds, &chain, &cert.key_pem),
            self.trust_secret(&plan.trust_sds, &bundle),
        ];
        Ok((secrets, issued_at, cert.not_after))
    }
}

fn inline(bytes: &[u8]) -> EnvoyDataSource {
    let mut d = EnvoyDataSource::new();
    d.set_inline_bytes(bytes.to_vec());
    d
}

/// `identity_cert:secret:<mesh>` (or a MeshIdentity's KRI): the certificate and its key.
pub fn identity_secret(name: &str, chain_pem: &[u8], key_pem: &[u8]) -> Arc<EncodedResource> {
    let mut c = TlsCertificate::new();
    c.certificate_chain = MessageField::some(inline(chain_pem));
    c.private_key = MessageField::some(inline(key_pem));
    let mut s = Secret::new();
    s.name = name.to_string();
    s.set_tls_certificate(c);
    EncodedResource::encode(ResourceKind::Secret, name, &s)
}

/// `mesh_ca:secret:<mesh>` (or the trust bundle): the CAs peers are verified against.
pub fn trust_secret(name: &str, bundle_pem: &[u8]) -> Arc<EncodedResource> {
    let mut v = CertificateValidationContext::new();
    v.trusted_ca = MessageField::some(inline(bundle_pem));
    let mut s = Secret::new();
    s.name = name.to_string();
    s.set_validation_context(v);
    EncodedResource::encode(ResourceKind::Secret, name, &s)
}

/// Loads the CA of `issuer`; a generated CA that is missing is created (create-if-absent:
/// the Mesh or MeshIdentity write normally made it already).
fn load_ca(store: &SharedStore, mesh: &str, issuer: &Issuer) -> Result<CaMaterial, MtlsError> {
    let store: &dyn crate::store::ResourceStore = store.as_ref();
    let reader = super::Reader(store);
    let reader: &dyn crate::store::ResourceReader = &reader;
    match issuer {
        Issuer::Builtin { backend, conf } => match ca::load_builtin(reader, mesh, backend) {
            Ok(c) => Ok(c),
            Err(MtlsError::Ca(_)) => {
                ca::ensure_builtin(store, mesh, backend, conf, SystemTime::now())?;
                ca::load_builtin(reader, mesh, backend)
            }
            Err(e) => Err(e),
        },
        Issuer::Provided { conf, .. } => {
            let (Some(cert), Some(key)) = (&conf.cert, &conf.key) else {
                return Err(MtlsError::Ca("the provided CA has no cert or key".to_string()));
            };
            let cert = cert.load(reader, mesh).map_err(MtlsError::Ca)?;
            let key = key.load(reader, mesh).map_err(MtlsError::Ca)?;
            ca::parse_pair(&cert, &key).map_err(MtlsError::Ca)
        }
        Issuer::Bundled { identity, bundled, trust_domain } => {
            if let Some(c) = &bundled.ca {
                let cert = c.certificate.load(reader, mesh).map_err(MtlsError::Ca)?;
                let key = c.private_key.load(reader, mesh).map_err(MtlsError::Ca)?;
                return ca::parse_pair(&cert, &key).map_err(MtlsError::Ca);
            }
            let (cert, key) = (names::identity_root_ca_secret(identity), names::identity_private_key_secret(identity));
            match ca::load_pair(reader, mesh, &cert, &key) {
                Ok(c) => Ok(c),
                Err(MtlsError::Ca(_)) => {
                    let spec = ca::RootSpec {
                        common_name: trust_domain,
                        trust_domain,
                        rsa_bits: backend::DEFAULT_RSA_BITS,
                        lifetime: backend::DEFAULT_CA_LIFETIME,
                    };
                    ca::ensure_pair(store, mesh, &cert, &key, &spec, SystemTime::now())?;
                    ca::load_pair(reader, mesh, &cert, &key)
                }
                Err(e) => Err(e),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::model::mesh::MeshSpec;
    use crate::model::{rest, ResourceType, Spec};
    use crate::policies::core::set::PolicySet;
    use crate::store::MemoryStore;
    use protobuf::Message;
    use std::sync::atomic::Ordering;

    fn mesh(v: serde_json::Value) -> MeshSpec {
        let mut body = serde_json::json!({"type": "Mesh", "name": "default"});
        body.as_object_mut().unwrap().extend(v.as_object().unwrap().clone());
        match rest::from_json(body).unwrap().spec {
            Spec::Mesh(m) => m,
            _ => unreachable!(),
        }
    }

    fn dp_spec(service: &str) -> crate::model::dataplane::DataplaneSpec {
        let body = serde_json::json!({"type": "Dataplane", "mesh": "default", "name": "x", "networking": {
            "address": "127.0.0.1", "inbound": [{"port": 1, "servicePort": 2, "tags": {"kuma.io/service": service}}]}});
        match rest::from_json(body).unwrap().spec {
            Spec::Dataplane(d) => d,
            _ => unreachable!(),
        }
    }

    fn plan_of(m: &MeshSpec, service: &str) -> IdentityPlan {
        super::super::plan::plan("default", m, &PolicySet::default(), &dp_spec(service)).unwrap().unwrap()
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(ResourceType::Dataplane, "default", name)
    }

    fn builtin_5s() -> MeshSpec {
        mesh(serde_json::json!({"mtls": {"enabledBackend": "ca-1", "backends": [{"name": "ca-1", "type": "builtin",
            "dpCert": {"rotation": {"expiration": "5s"}}}]}}))
    }

    #[test]
    fn issues_off_the_caller_rotates_at_four_fifths_and_forgets() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store.create("", "default", Spec::Mesh(builtin_5s())).unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let (ids, rx) = Identities::unstarted(store.clone(), clock.clone());
        let m = builtin_5s();
        let plan = plan_of(&m, "backend");
        assert!(ids.current(&key("b-1"), Some(&plan)).is_none(), "the caller never waits for an issuance");
        assert!(ids.current(&key("b-1"), Some(&plan)).is_none());
        assert!(ids.run_one(&rx));
        assert!(!ids.run_one(&rx), "asking twice queued one issuance");
        let first = ids.current(&key("b-1"), Some(&plan)).expect("issued");
        assert_eq!(first.secrets.len(), 2);
        assert_eq!(first.secrets[0].name, "identity_cert:secret:default");
        assert_eq!(first.secrets[1].name, "mesh_ca:secret:default");
        let any = protobuf::well_known_types::any::Any::parse_from_bytes(&first.secrets[0].any).unwrap();
        let s = Secret::parse_from_bytes(&any.value).unwrap();
        let pem = s.tls_certificate().certificate_chain.inline_bytes().to_vec();
        let cert = openssl::x509::X509::from_pem(&pem).unwrap();
        let uris: Vec<String> =
            cert.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
        assert_eq!(uris[0], "spiffe://default/backend");
        let ca = ca::load_builtin(&crate::mtls::Reader(store.as_ref()), "default", "ca-1").unwrap();
        assert!(issuer::chain_verifies(&pem, &ca.chain_pem), "the chain leads to the mesh CA in the store");
        // 3.9 s of 5: not due yet.
        clock.advance(Duration::from_millis(3900));
        ids.scan();
        assert!(!ids.run_one(&rx));
        assert_eq!(ids.current(&key("b-1"), Some(&plan)).unwrap().id, first.id);
        // 4 s: due.
        clock.advance(Duration::from_millis(100));
        ids.scan();
        assert!(ids.run_one(&rx));
        let second = ids.current(&key("b-1"), Some(&plan)).unwrap();
        assert_ne!(second.id, first.id);
        assert_eq!(ids.info(&key("b-1")).unwrap().regenerations, 1);
        // A new plan (another service tag) means a new certificate at once.
        let other = plan_of(&m, "backend-v2");
        assert_eq!(ids.current(&key("b-1"), Some(&other)).unwrap().id, second.id, "the old one is served meanwhile");
        assert!(ids.run_one(&rx));
        assert_eq!(ids.current(&key("b-1"), Some(&other)).unwrap().plan, other);
        ids.forget(&key("b-1"));
        assert!(ids.info(&key("b-1")).is_none());
        // A job finished for a forgotten dataplane leaves nothing behind.
        ids.current(&key("b-2"), Some(&plan));
        ids.forget(&key("b-2"));
        ids.run_one(&rx);
        assert!(ids.info(&key("b-2")).is_none());
    }

    /// A bundled MeshIdentity issues from its autogenerated CA, stored as Kuma's Secrets.
    #[test]
    fn a_mesh_identity_issues_from_its_autogenerated_ca() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        store.create("", "default", Spec::Mesh(MeshSpec::default())).unwrap();
        let mid = rest::from_json(serde_json::json!({"type": "MeshIdentity", "mesh": "default", "name": "identity",
            "spec": {"selector": {"dataplane": {"matchLabels": {}}},
                     "provider": {"type": "Bundled", "bundled": {"autogenerate": {"enabled": true}}}}}))
        .unwrap();
        store.create("default", "identity", mid.spec).unwrap();
        let ctx =
            crate::xds::context::MeshContext::build(&crate::mtls::Reader(store.as_ref()), "default", None).unwrap();
        let mut spec = dp_spec("web");
        spec.networking.inbound[0].tags.insert("kuma.io/workload".into(), "web".into());
        let plan = super::super::plan::plan("default", &MeshSpec::default(), &ctx.policies, &spec)
            .unwrap()
            .expect("an identity");
        let (ids, rx) = Identities::unstarted(store.clone(), Arc::new(ManualClock::starting_now()));
        ids.current(&key("web-1"), Some(&plan));
        assert!(ids.run_one(&rx));
        let issued = ids.current(&key("web-1"), Some(&plan)).expect("issued");
        assert_eq!(issued.secrets[0].name, "kri_mid_default_default__identity_");
        assert_eq!(issued.secrets[1].name, "system_trust_bundle");
        let ca =
            ca::load_pair(&crate::mtls::Reader(store.as_ref()), "default", "identity-root-ca", "identity-private-key")
                .expect("the CA is in the store under Kuma's names");
        let any = protobuf::well_known_types::any::Any::parse_from_bytes(&issued.secrets[0].any).unwrap();
        let s = Secret::parse_from_bytes(&any.value).unwrap();
        let chain = s.tls_certificate().certificate_chain.inline_bytes();
        let cert = openssl::x509::X509::from_pem(chain).unwrap();
        assert!(issuer::chain_verifies(chain, &ca.chain_pem));
        let uris: Vec<String> =
            cert.subject_alt_names().unwrap().iter().filter_map(|n| n.uri().map(str::to_string)).collect();
        assert_eq!(uris, ["spiffe://default.default.mesh.local/workload/web"]);
        assert_eq!(Identities::mark(&plan), "MeshIdentity/identity");
    }

    #[test]
    fn a_failing_ca_is_tried_once_per_cooldown_by_the_whole_fleet() {
        let store: SharedStore = Arc::new(MemoryStore::new());
        let m = mesh(serde_json::json!({"mtls": {"enabledBackend": "p", "backends": [{"name": "p", "type": "provided",
            "conf": {"cert": {"secret": "ca-cert"}, "key": {"secret": "ca-key"}}}]}}));
        store.create("", "default", Spec::Mesh(m.clone())).unwrap();
        let clock = Arc::new(ManualClock::starting_now());
        let (ids, rx) = Identities::unstarted(store.clone(), clock.clone());
        let plan = plan_of(&m, "web");
        let fleet: Vec<ResourceKey> = (0..20).map(|i| key(&format!("web-{i}"))).collect();
        // The first asks, fails; the rest are held back.
        ids.current(&fleet[0], Some(&plan));
        while ids.run_one(&rx) {}
        for k in &fleet {
            ids.current(k, Some(&plan));
        }
        ids.scan();
        while ids.run_one(&rx) {}
        assert_eq!(ids.attempts.load(Ordering::Relaxed), 1);
        // One probe per cooldown, however many ask.
        for round in 2..=3 {
            clock.advance(FAILURE_COOLDOWN);
            for k in &fleet {
                ids.current(k, Some(&plan));
            }
            ids.scan();
            while ids.run_one(&rx) {}
            assert_eq!(ids.attempts.load(Ordering::Relaxed), round);
        }
        // The CA appears: the next probe succeeds and releases everyone.
        let (cert, k) = ca::tests::test_root();
        store.create("default", "ca-cert", Spec::Secret(crate::model::secret::SecretSpec::new(cert.clone()))).unwrap();
        store.create("default", "ca-key", Spec::Secret(crate::model::secret::SecretSpec::new(k.clone()))).unwrap();
        clock.advance(FAILURE_COOLDOWN);
        ids.scan();
        while ids.run_one(&rx) {}
        assert!(fleet.iter().all(|k| ids.info(k).is_some()), "every dataplane got its certificate");
        assert_eq!(ids.info(&fleet[0]).unwrap().issued_backend, "p");
    }
}
