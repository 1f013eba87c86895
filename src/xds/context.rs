//! What config generation needs to know about a mesh, shared by every dataplane of the mesh:
//! its dataplanes, per service the endpoints plus the service's cluster and load assignment
//! (already encoded), who consumes each service, and the policies that shape outbounds.
//!
//! A context is immutable. A Dataplane change produces the next context incrementally
//! ([`MeshContext::with_dataplane`]): only the services whose endpoints moved are
//! re-encoded, and the answer says which dataplanes can be affected. A Mesh or policy change
//! re-reads those alone ([`MeshContext::with_policies`]); a resync rebuilds the context from
//! the store. Both start a new build (`MeshContext::build` id).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

use super::generate::{envoy_builders, GenerateError};
use super::wire::EncodedResource;
use crate::model::dataplane::{DataplaneSpec, Protocol};
use crate::model::policy::TimeoutSpec;
use crate::model::{Resource, ResourceKey, ResourceType, Spec};
use crate::store::StoreError;

/// Reads resources; implemented by the store and by the cache in front of it.
pub trait ResourceReader: Send + Sync {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError>;
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>, StoreError>;
}

impl<S: crate::store::ResourceStore + ?Sized> ResourceReader for S {
    fn get(&self, key: &ResourceKey) -> Result<Arc<Resource>, StoreError> {
        crate::store::ResourceStore::get(self, key)
    }
    fn list(&self, rtype: ResourceType, mesh: Option<&str>) -> Result<Vec<Arc<Resource>>, StoreError> {
        crate::store::ResourceStore::list(self, rtype, mesh)
    }
}

/// Build ids are unique in the process, so "seen build" comparisons never confuse two
/// contexts of different meshes or generations.
static NEXT_BUILD: AtomicU64 = AtomicU64::new(1);

fn next_build() -> u64 {
    NEXT_BUILD.fetch_add(1, Ordering::Relaxed)
}

/// One inbound of one dataplane, as other dataplanes reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: String,
    pub port: u32,
    pub dataplane: String,
    pub protocol: Protocol,
}

/// Outbound settings a Timeout policy gives one consumer of one service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OutboundTimeouts {
    pub connect: Duration,
    pub http_request: Duration,
    pub tcp_idle: Option<Duration>,
}

impl Default for OutboundTimeouts {
    fn default() -> Self {
        OutboundTimeouts {
            connect: envoy_builders::OUTBOUND_CONNECT_TIMEOUT,
            http_request: envoy_builders::OUTBOUND_REQUEST_TIMEOUT,
            tcp_idle: None,
        }
    }
}

// The caches hold encoded bytes only; a panic elsewhere cannot leave them half-written.
fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// Listeners by address, then (port, timeouts): looked up by `&str`, no key allocated.
type ListenerCache = HashMap<String, HashMap<(u32, OutboundTimeouts), Arc<EncodedResource>>>;

/// A service's resources that depend on how a consumer reaches it, not on its endpoints.
#[derive(Debug, Default)]
struct EncodedPerConsumer {
    /// The cluster per connect timeout in use; consumers with the same settings share it.
    clusters: RwLock<HashMap<Duration, Arc<EncodedResource>>>,
    /// Outbound listeners by (address, port, timeouts): consumers that reach the service
    /// the same way share the bytes.
    listeners: RwLock<ListenerCache>,
}

/// A service of the mesh (`kuma.io/service`) with its shared, encoded resources.
#[derive(Debug)]
pub struct ServiceResources {
    pub name: String,
    pub protocol: Protocol,
    /// Sorted.
    pub endpoints: Vec<Endpoint>,
    pub load_assignment: Arc<EncodedResource>,
    /// The encoded clusters and outbound listeners, which do not depend on the endpoints:
    /// shared with the service's next version when only its endpoints change, so churn
    /// re-encodes only the load assignment.
    encoded: Arc<EncodedPerConsumer>,
    /// Changes whenever the endpoints or the protocol change.
    pub hash: u64,
}

impl ServiceResources {
    fn new(name: &str, endpoints: Vec<Endpoint>) -> ServiceResources {
        Self::build(name, endpoints, None)
    }

    /// The same service with other endpoints; keeps the encoded clusters and listeners
    /// unless the protocol changed with them.
    fn with_endpoints(&self, endpoints: Vec<Endpoint>) -> ServiceResources {
        Self::build(&self.name, endpoints, Some(self))
    }

    fn build(name: &str, mut endpoints: Vec<Endpoint>, previous: Option<&ServiceResources>) -> ServiceResources {
        endpoints.sort();
        // Kuma infers a service's protocol from its endpoints; when they disagree the only
        // safe common ground is TCP.
        let mut protocols = endpoints.iter().map(|e| e.protocol);
        let first = protocols.next().unwrap_or(Protocol::Tcp);
        let protocol = if protocols.all(|p| p == first) { first } else { Protocol::Tcp };
        let load_assignment = envoy_builders::load_assignment(name, &endpoints);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        load_assignment.hash.hash(&mut h);
        protocol.as_str().hash(&mut h);
        let encoded = previous.filter(|p| p.protocol == protocol).map(|p| p.encoded.clone()).unwrap_or_default();
        ServiceResources { name: name.to_string(), protocol, endpoints, load_assignment, encoded, hash: h.finish() }
    }

    /// The outbound listener on `address:port` to this service (encoded once).
    pub fn outbound_listener(&self, address: &str, port: u32, timeouts: OutboundTimeouts) -> Arc<EncodedResource> {
        let found = read(&self.encoded.listeners).get(address).and_then(|by_port| by_port.get(&(port, timeouts)).cloned());
        if let Some(l) = found {
            return l;
        }
        let filter = if self.protocol.is_http() {
            envoy_builders::http_filter(&self.name, &format!("outbound:{}", self.name), &self.name, Some(timeouts.http_request))
        } else {
            envoy_builders::tcp_proxy_filter(&self.name, &self.name, timeouts.tcp_idle)
        };
        let name = format!("outbound:{}", envoy_builders::join_host_port(address, port));
        let encoded = envoy_builders::listener(&name, address, port, crate::envoy::base::TrafficDirection::OUTBOUND, filter);
        // Two workers may both have encoded it: the same bytes, whichever lands first wins.
        write(&self.encoded.listeners).entry(address.to_string()).or_default().entry((port, timeouts)).or_insert(encoded).clone()
    }

    /// The cluster consumers with this connect timeout use (encoded once).
    pub fn cluster(&self, connect_timeout: Duration) -> Arc<EncodedResource> {
        if let Some(c) = read(&self.encoded.clusters).get(&connect_timeout) {
            return c.clone();
        }
        let encoded = envoy_builders::eds_cluster(&self.name, self.protocol, connect_timeout);
        write(&self.encoded.clusters).entry(connect_timeout).or_insert(encoded).clone()
    }
}

/// Encoded inbound resources by dataplane name, tagged with the (version, creation time) of
/// the Dataplane they were built from.
pub type InboundCache = Arc<Mutex<HashMap<String, ((u64, std::time::SystemTime), Vec<Arc<EncodedResource>>)>>>;

#[derive(Debug)]
pub struct MeshContext {
    pub mesh: Arc<Resource>,
    // Persistent maps: the next context after a Dataplane change shares all but the changed
    // entries with this one (O(log n) per change, not a copy of every entry, which made
    // churn at 10,000 dataplanes cost the dispatcher O(N) per event).
    pub dataplanes: imbl::HashMap<String, Arc<Resource>>,
    pub services: imbl::HashMap<String, Arc<ServiceResources>>,
    /// Service → names of the dataplanes with an outbound to it.
    pub consumers: imbl::HashMap<String, Arc<BTreeSet<String>>>,
    /// Timeout policies, most specific first (Kuma's ranking).
    pub timeouts: Arc<Vec<Arc<Resource>>>,
    /// Id of the full build this context descends from; Dataplane changes keep it. A
    /// dataplane that ran against a context of the same build and was not among a later
    /// change's affected set is up to date.
    pub build: u64,
    /// Inbound resources per dataplane, by name and (version, creation time) — a re-created
    /// dataplane restarts its version; shared by successive
    /// contexts of the mesh, so a dataplane whose own resource did not change re-encodes
    /// nothing when only its outbounds moved.
    pub inbound_cache: InboundCache,
    /// Over the versions of the mesh and its policies (not dataplanes, which have their own).
    pub policy_hash: u64,
}

fn dataplane_spec(r: &Resource) -> Option<&DataplaneSpec> {
    match &r.spec {
        Spec::Dataplane(s) => Some(s),
        _ => None,
    }
}

/// The Mesh, its Timeout policies (most specific first) and a hash over their versions.
type Policies = (Arc<Resource>, Vec<Arc<Resource>>, u64);

fn read_policies(reader: &dyn ResourceReader, mesh: &str) -> Result<Policies, GenerateError> {
    let mesh_res = reader.get(&ResourceKey::new(ResourceType::Mesh, "", mesh))?;
    let mut timeouts = reader.list(ResourceType::Timeout, Some(mesh))?;
    sort_by_specificity(&mut timeouts);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    mesh_res.meta.version.hash(&mut h);
    for t in &timeouts {
        t.meta.name.hash(&mut h);
        t.meta.version.hash(&mut h);
    }
    Ok((mesh_res, timeouts, h.finish()))
}

/// The endpoints one dataplane contributes, by service.
fn endpoints_of(name: &str, spec: &DataplaneSpec) -> BTreeMap<String, Vec<Endpoint>> {
    let net = &spec.networking;
    let mut out: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
    for inbound in &net.inbound {
        if inbound.health.as_ref().is_some_and(|h| !h.ready) {
            continue;
        }
        let address = match &net.advertised_address {
            Some(a) if inbound.address.is_none() => a.clone(),
            _ => inbound.effective_address(net).to_string(),
        };
        out.entry(inbound.service().to_string()).or_default().push(Endpoint {
            address,
            port: inbound.port,
            dataplane: name.to_string(),
            protocol: inbound.protocol(),
        });
    }
    out
}

fn outbound_services(spec: &DataplaneSpec) -> BTreeSet<String> {
    spec.networking.outbound.iter().map(|o| o.service().to_string()).collect()
}

impl MeshContext {
    /// Builds the context of `mesh` from the store, reusing the services of `previous` whose
    /// endpoints did not change (their encoded bytes and hashes stay identical).
    pub fn build(reader: &dyn ResourceReader, mesh: &str, previous: Option<&MeshContext>) -> Result<MeshContext, GenerateError> {
        let (mesh_res, timeouts, policy_hash) = read_policies(reader, mesh)?;
        let dataplanes = reader.list(ResourceType::Dataplane, Some(mesh))?;
        let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        let mut consumers: HashMap<String, BTreeSet<String>> = HashMap::new();
        for dp in &dataplanes {
            let Some(spec) = dataplane_spec(dp) else { continue };
            for (svc, eps) in endpoints_of(&dp.meta.name, spec) {
                endpoints.entry(svc).or_default().extend(eps);
            }
            for svc in outbound_services(spec) {
                consumers.entry(svc).or_default().insert(dp.meta.name.clone());
            }
        }
        let mut services = imbl::HashMap::new();
        for (name, mut eps) in endpoints {
            eps.sort();
            let service = match previous.and_then(|p| p.services.get(&name)) {
                Some(s) if s.endpoints == eps => s.clone(),
                Some(s) => Arc::new(s.with_endpoints(eps)),
                None => Arc::new(ServiceResources::new(&name, eps)),
            };
            services.insert(name.clone(), service);
        }
        Ok(MeshContext {
            mesh: mesh_res,
            dataplanes: dataplanes.into_iter().map(|d| (d.meta.name.clone(), d)).collect(),
            services,
            consumers: consumers.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            timeouts: Arc::new(timeouts),
            build: next_build(),
            inbound_cache: previous.map(|p| p.inbound_cache.clone()).unwrap_or_default(),
            policy_hash,
        })
    }

    /// The next context after a change of the Mesh or its policies: those are read again,
    /// the dataplanes and services (kept current by [`with_dataplane`](Self::with_dataplane))
    /// are shared. On Postgres this reads a few rows instead of every Dataplane of the mesh.
    pub fn with_policies(&self, reader: &dyn ResourceReader) -> Result<MeshContext, GenerateError> {
        let (mesh_res, timeouts, policy_hash) = read_policies(reader, &self.mesh.meta.name)?;
        Ok(MeshContext {
            mesh: mesh_res,
            dataplanes: self.dataplanes.clone(),
            services: self.services.clone(),
            consumers: self.consumers.clone(),
            timeouts: Arc::new(timeouts),
            build: next_build(),
            inbound_cache: self.inbound_cache.clone(),
            policy_hash,
        })
    }

    /// The next context after Dataplane `name` became `new` (`None`: deleted), and the names
    /// of the dataplanes whose config can have changed: the dataplane itself and the
    /// consumers of every service whose endpoints moved. `None` when nothing changed.
    pub fn with_dataplane(&self, name: &str, new: Option<Arc<Resource>>) -> Option<(MeshContext, BTreeSet<String>)> {
        let old = self.dataplanes.get(name);
        if old.map(|o| o.meta.version) == new.as_ref().map(|n| n.meta.version)
            && old.map(|o| o.meta.creation_time) == new.as_ref().map(|n| n.meta.creation_time)
        {
            return None;
        }
        let old_eps = old.and_then(|o| dataplane_spec(o)).map(|s| endpoints_of(name, s)).unwrap_or_default();
        let new_eps = new.as_deref().and_then(dataplane_spec).map(|s| endpoints_of(name, s)).unwrap_or_default();
        let old_out = old.and_then(|o| dataplane_spec(o)).map(outbound_services).unwrap_or_default();
        let new_out = new.as_deref().and_then(dataplane_spec).map(outbound_services).unwrap_or_default();

        let mut dataplanes = self.dataplanes.clone();
        match &new {
            Some(n) => dataplanes.insert(name.to_string(), n.clone()),
            None => dataplanes.remove(name),
        };
        let mut services = self.services.clone();
        let mut affected = BTreeSet::from([name.to_string()]);
        let touched: BTreeSet<&String> = old_eps.keys().chain(new_eps.keys()).collect();
        for svc in touched {
            if old_eps.get(svc) == new_eps.get(svc) {
                continue;
            }
            let mut eps: Vec<Endpoint> = services
                .get(svc)
                .map(|s| s.endpoints.iter().filter(|e| e.dataplane != name).cloned().collect())
                .unwrap_or_default();
            eps.extend(new_eps.get(svc).cloned().unwrap_or_default());
            if eps.is_empty() {
                services.remove(svc);
            } else {
                let next = match services.get(svc) {
                    Some(current) => current.with_endpoints(eps),
                    None => ServiceResources::new(svc, eps),
                };
                services.insert(svc.clone(), Arc::new(next));
            }
            if let Some(c) = self.consumers.get(svc) {
                affected.extend(c.iter().cloned());
            }
        }
        let mut consumers = self.consumers.clone();
        for svc in old_out.difference(&new_out) {
            if let Some(set) = consumers.get_mut(svc) {
                Arc::make_mut(set).remove(name);
            }
        }
        for svc in new_out.difference(&old_out) {
            Arc::make_mut(consumers.entry(svc.clone()).or_default()).insert(name.to_string());
        }
        if new.is_none() {
            self.inbound_cache.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
        }
        let next = MeshContext {
            mesh: self.mesh.clone(),
            dataplanes,
            services,
            consumers,
            timeouts: self.timeouts.clone(),
            build: self.build,
            inbound_cache: self.inbound_cache.clone(),
            policy_hash: self.policy_hash,
        };
        Some((next, affected))
    }

    /// The resources of `name`; a service no dataplane provides gets a cluster with no
    /// endpoints, so Envoy answers its callers at once instead of waiting.
    pub fn service(&self, name: &str) -> Arc<ServiceResources> {
        match self.services.get(name) {
            Some(s) => s.clone(),
            None => Arc::new(ServiceResources::new(name, Vec::new())),
        }
    }

    /// The Timeout policy settings for `dp`'s outbound to `service`: the most specific policy
    /// whose sources match one of `dp`'s inbounds and whose destinations match the service
    /// (Kuma's ranking), else Kuma's defaults.
    pub fn outbound_timeouts(&self, dp: &DataplaneSpec, service: &str) -> OutboundTimeouts {
        for policy in self.timeouts.iter() {
            let Spec::Timeout(t) = &policy.spec else { continue };
            // Destinations first: a one-tag compare, and it rules most policies out.
            if !t.destinations.iter().any(|d| d.matches_service(service)) {
                continue;
            }
            let source_ok = t.sources.iter().any(|s| dp.networking.inbound.iter().any(|i| s.matches(&i.tags)));
            if source_ok {
                return timeouts_of(t);
            }
        }
        OutboundTimeouts::default()
    }
}

fn timeouts_of(t: &TimeoutSpec) -> OutboundTimeouts {
    let d = OutboundTimeouts::default();
    let conf = &t.conf;
    OutboundTimeouts {
        connect: conf.connect_timeout.map(|c| c.0).unwrap_or(d.connect),
        http_request: conf.http.as_ref().and_then(|h| h.request_timeout).map(|c| c.0).unwrap_or(d.http_request),
        tcp_idle: conf.tcp.as_ref().and_then(|t| t.idle_timeout).map(|c| c.0),
    }
}

/// Kuma ranks old-style policies by the number of exact tags in their selectors, then by
/// name; the first match wins.
fn sort_by_specificity(policies: &mut [Arc<Resource>]) {
    let rank = |r: &Resource| -> usize {
        match crate::model::policy::selectors_of(&r.spec) {
            Some((sources, destinations)) => {
                sources.iter().map(|s| s.specificity()).max().unwrap_or(0)
                    + destinations.iter().map(|s| s.specificity()).max().unwrap_or(0)
            }
            None => 0,
        }
    };
    policies.sort_by(|a, b| rank(b).cmp(&rank(a)).then_with(|| a.meta.name.cmp(&b.meta.name)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest;
    use crate::store::{MemoryStore, ResourceStore};
    use serde_json::json;

    fn dp(name: &str, service: &str, port: u32, outbound: &[&str]) -> Spec {
        let out: Vec<_> = outbound.iter().map(|s| json!({"port": 20000, "tags": {"kuma.io/service": s}})).collect();
        rest::from_json(json!({
            "type": "Dataplane", "mesh": "default", "name": name,
            "networking": {"address": "10.0.0.1", "outbound": out,
                "inbound": [{"port": port, "tags": {"kuma.io/service": service}}]}
        }))
        .unwrap()
        .spec
    }

    fn store() -> MemoryStore {
        let s = MemoryStore::new();
        s.create("", "default", rest::from_json(json!({"type": "Mesh", "name": "default"})).unwrap().spec).unwrap();
        s.create("default", "web-1", dp("web-1", "web", 80, &["backend"])).unwrap();
        s.create("default", "web-2", dp("web-2", "web", 81, &["db"])).unwrap();
        s.create("default", "backend-1", dp("backend-1", "backend", 90, &[])).unwrap();
        s
    }

    fn key(name: &str) -> ResourceKey {
        ResourceKey::new(ResourceType::Dataplane, "default", name)
    }

    fn same(a: &MeshContext, b: &MeshContext) {
        let mut sa: Vec<_> = a.services.iter().map(|(k, v)| (k.clone(), v.hash, v.endpoints.clone())).collect();
        let mut sb: Vec<_> = b.services.iter().map(|(k, v)| (k.clone(), v.hash, v.endpoints.clone())).collect();
        sa.sort();
        sb.sort();
        assert_eq!(sa, sb);
        let mut ca: Vec<_> = a.consumers.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), (**v).clone())).collect();
        let mut cb: Vec<_> = b.consumers.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), (**v).clone())).collect();
        ca.sort();
        cb.sort();
        assert_eq!(ca, cb);
        let mut da: Vec<_> = a.dataplanes.keys().collect();
        let mut db: Vec<_> = b.dataplanes.keys().collect();
        da.sort();
        db.sort();
        assert_eq!(da, db);
    }

    #[test]
    fn a_new_instance_affects_only_its_service_consumers() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        let created = s.create("default", "backend-2", dp("backend-2", "backend", 91, &[])).unwrap();
        let (next, affected) = ctx.with_dataplane("backend-2", Some(created)).unwrap();
        assert_eq!(affected, BTreeSet::from(["backend-2".to_string(), "web-1".to_string()]));
        assert_eq!(next.build, ctx.build, "a Dataplane change is no new build");
        assert_eq!(next.services["backend"].endpoints.len(), 2);
        assert!(Arc::ptr_eq(&next.services["web"], &ctx.services["web"]), "untouched services are shared");
        same(&next, &MeshContext::build(&s, "default", None).unwrap());
    }

    #[test]
    fn deletes_and_moves_match_a_full_rebuild() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        s.delete(&key("backend-1")).unwrap();
        let (next, affected) = ctx.with_dataplane("backend-1", None).unwrap();
        assert_eq!(affected, BTreeSet::from(["backend-1".to_string(), "web-1".to_string()]));
        assert!(!next.services.contains_key("backend"));
        same(&next, &MeshContext::build(&s, "default", None).unwrap());
        // web-2 now consumes backend instead of db and serves on another port.
        let cur = ResourceStore::get(&s, &key("web-2")).unwrap();
        let moved = s.update(&key("web-2"), dp("web-2", "web", 82, &["backend"]), cur.meta.version).unwrap();
        let (third, affected) = next.with_dataplane("web-2", Some(moved)).unwrap();
        // Nobody consumes `web`, so only web-2 itself is affected.
        assert_eq!(affected, BTreeSet::from(["web-2".to_string()]));
        same(&third, &MeshContext::build(&s, "default", None).unwrap());
    }

    #[test]
    fn a_policy_rebuild_keeps_the_dataplanes_and_reads_the_policies() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        let timeout = rest::from_json(json!({
            "type": "Timeout", "mesh": "default", "name": "slow",
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": "backend"}}],
            "conf": {"connectTimeout": "9s"}
        }))
        .unwrap()
        .spec;
        s.create("default", "slow", timeout).unwrap();
        let next = ctx.with_policies(&s).unwrap();
        same(&next, &MeshContext::build(&s, "default", None).unwrap());
        assert_ne!(next.policy_hash, ctx.policy_hash);
        assert_ne!(next.build, ctx.build, "a policy change is a new build: every dataplane is due");
        assert_eq!(next.timeouts.len(), 1);
        let web = dataplane_spec(&next.dataplanes["web-1"]).unwrap().clone();
        assert_eq!(next.outbound_timeouts(&web, "backend").connect, Duration::from_secs(9));
        assert_eq!(ctx.outbound_timeouts(&web, "backend").connect, OutboundTimeouts::default().connect);
    }

    #[test]
    fn an_unchanged_dataplane_changes_nothing() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        let same_dp = ResourceStore::get(&s, &key("web-1")).unwrap();
        assert!(ctx.with_dataplane("web-1", Some(same_dp)).is_none());
    }
}
