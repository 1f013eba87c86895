//! What config generation needs to know about a mesh, shared by every dataplane of the mesh:
//! the Mesh, its dataplanes, per service the endpoints and their encoded load assignments,
//! who consumes each service, the mesh's policies, and the cache of encoded resources.
//!
//! A context is immutable, and every change produces the next one incrementally:
//! - a Dataplane change ([`MeshContext::with_dataplane`]) re-encodes only the load
//!   assignments of the services whose endpoints moved, and says which dataplanes can be
//!   affected (the dataplane itself and those services' consumers);
//! - a policy change ([`MeshContext::with_policy`]) replaces one entry of the policy set,
//!   and [`MeshContext::affected_by_policy`] says which dataplanes it can reach;
//! - a Mesh change re-reads the Mesh and its policies ([`MeshContext::with_policies`]) and a
//!   resync rebuilds everything from the store; both start a new build (`build` id) and make
//!   the whole mesh due.

use crate::model::Tags;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::encodings::EncodingCache;
use super::generate::{envoy_builders, GenerateError};
use super::wire::EncodedResource;
use crate::model::dataplane::{DataplaneSpec, Protocol};
use crate::model::selector::SERVICE_TAG;
use crate::model::{Resource, ResourceKey, ResourceType, Spec};
use crate::policies::core::set::PolicySet;
use crate::policies::{self, resolved, PLUGINS};
use crate::store::ResourceReader;

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
    /// The inbound's tags: subset clusters (`backend-_0_` for `version: v2`) pick endpoints
    /// by them.
    pub tags: Tags,
}

/// Load assignments of subset clusters by (cluster name, tags).
type SubsetAssignments = HashMap<(String, Tags), Arc<EncodedResource>>;

/// A service of the mesh (`kuma.io/service`) with its endpoints, encoded.
#[derive(Debug)]
pub struct ServiceResources {
    pub name: String,
    pub protocol: Protocol,
    /// Sorted.
    pub endpoints: Vec<Endpoint>,
    /// The load assignment of the cluster named after the service (all endpoints).
    pub load_assignment: Arc<EncodedResource>,
    /// Load assignments of subset clusters, encoded on first use; they die with this value
    /// when the endpoints change.
    subsets: RwLock<SubsetAssignments>,
    /// Changes whenever the endpoints or the protocol change.
    pub hash: u64,
}

impl ServiceResources {
    fn new(name: &str, mut endpoints: Vec<Endpoint>) -> ServiceResources {
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
        // Subset clusters read the tags too.
        for e in &endpoints {
            e.tags.hash(&mut h);
        }
        ServiceResources {
            name: name.to_string(),
            protocol,
            endpoints,
            load_assignment,
            subsets: RwLock::default(),
            hash: h.finish(),
        }
    }

    /// The load assignment of cluster `cluster` of this service: every endpoint, or those
    /// whose tags include `tags` for a subset cluster.
    pub fn load_assignment_for(&self, cluster: &str, tags: &Tags) -> Arc<EncodedResource> {
        if cluster == self.name && tags.is_empty() {
            return self.load_assignment.clone();
        }
        let key = (cluster.to_string(), tags.clone());
        if let Some(hit) = self.subsets.read().unwrap_or_else(|p| p.into_inner()).get(&key) {
            return hit.clone();
        }
        let picked: Vec<Endpoint> =
            self.endpoints.iter().filter(|e| tags.iter().all(|(k, v)| e.tags.get(k) == Some(v))).cloned().collect();
        let encoded = envoy_builders::load_assignment(cluster, &picked);
        self.subsets.write().unwrap_or_else(|p| p.into_inner()).entry(key).or_insert(encoded).clone()
    }
}

/// The encoded resources of a mesh, shared by its successive contexts (see
/// [`EncodingCache`]).
#[derive(Debug, Default)]
pub struct Encodings {
    pub clusters: EncodingCache<resolved::ResolvedCluster>,
    pub outbound_listeners: EncodingCache<envoy_builders::OutboundKey>,
    pub inbound_listeners: EncodingCache<envoy_builders::InboundKey>,
    pub local_clusters: EncodingCache<envoy_builders::InboundKey>,
}

/// Services a routing policy can send an outbound's traffic to besides the outbound's own:
/// by outbound service, and for any outbound (`any`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RouteTargets {
    pub by_service: HashMap<String, BTreeSet<String>>,
    pub any: BTreeSet<String>,
}

impl RouteTargets {
    fn of(policies: &PolicySet) -> RouteTargets {
        let mut out = RouteTargets::default();
        for plugin in PLUGINS {
            for (from, to) in plugin.route_targets(policies) {
                match from {
                    Some(f) if f != to => {
                        out.by_service.entry(f).or_default().insert(to);
                    }
                    Some(_) => {}
                    None => {
                        out.any.insert(to);
                    }
                }
            }
        }
        out
    }

    /// The outbound services whose traffic may go to `target` (besides `target` itself);
    /// `None` when any outbound's may.
    fn routed_to(&self, target: &str) -> Option<Vec<&str>> {
        if self.any.contains(target) {
            return None;
        }
        Some(self.by_service.iter().filter(|(_, to)| to.contains(target)).map(|(from, _)| from.as_str()).collect())
    }
}

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
    pub policies: Arc<PolicySet>,
    pub route_targets: Arc<RouteTargets>,
    /// Id of the full build this context descends from; Dataplane and policy changes keep
    /// it. A dataplane that ran against a context of the same build and was not among a
    /// later change's affected set is up to date.
    pub build: u64,
    /// Over the content of the Mesh and its policies (not dataplanes, which have their own);
    /// part of every dataplane's input hash.
    pub policy_hash: u64,
    /// Encoded listeners and clusters, shared by the successive contexts of the mesh.
    pub encodings: Arc<Encodings>,
    /// Dataplanes whose Envoy acknowledged a certificate and TLS-accepting listeners, with
    /// the backend (or MeshIdentity) that issued it: PERMISSIVE clients switch to TLS towards
    /// a service once all its dataplanes are here. Kept across rebuilds while the mesh has
    /// identities; emptied when it has none, so turning mTLS on again starts from scratch.
    pub tls_ready: imbl::HashMap<String, Arc<str>>,
}

fn dataplane_spec(r: &Resource) -> Option<&DataplaneSpec> {
    match &r.spec {
        Spec::Dataplane(s) => Some(s),
        _ => None,
    }
}

/// The Mesh and every policy of the mesh by type.
fn read_policies(reader: &dyn ResourceReader, mesh: &str) -> Result<(Arc<Resource>, PolicySet), GenerateError> {
    let mesh_res = reader.get(&ResourceKey::new(ResourceType::Mesh, "", mesh))?;
    let mut lists = Vec::new();
    for t in policies::enforced_types() {
        lists.push((t, reader.list(t, Some(mesh))?));
    }
    Ok((mesh_res, PolicySet::from_lists(lists)))
}

/// Content, not versions: a resource deleted and created again restarts at version 1.
fn policy_hash(mesh: &Resource, set: &PolicySet) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    mesh.content_hash().hash(&mut h);
    set.content_hash(&policies::enforced_types()).hash(&mut h);
    h.finish()
}

/// The readiness marks a rebuilt context keeps: the previous ones while the mesh can have
/// identities, none once it cannot (mTLS turned off, the last MeshIdentity deleted).
fn carried_tls_ready(
    previous: Option<&MeshContext>,
    mesh: &Resource,
    set: &PolicySet,
) -> imbl::HashMap<String, Arc<str>> {
    let has = match &mesh.spec {
        Spec::Mesh(m) => crate::mtls::plan::mesh_has_identities(m, set),
        _ => false,
    };
    match previous {
        Some(p) if has => p.tls_ready.clone(),
        _ => imbl::HashMap::new(),
    }
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
            tags: inbound.tags.iter().filter(|(k, _)| *k != SERVICE_TAG).map(|(k, v)| (k.clone(), v.clone())).collect(),
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
    pub fn build(
        reader: &dyn ResourceReader,
        mesh: &str,
        previous: Option<&MeshContext>,
    ) -> Result<MeshContext, GenerateError> {
        let (mesh_res, set) = read_policies(reader, mesh)?;
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
                _ => Arc::new(ServiceResources::new(&name, eps)),
            };
            services.insert(name.clone(), service);
        }
        let tls_ready = carried_tls_ready(previous, &mesh_res, &set);
        let dataplanes: imbl::HashMap<String, Arc<Resource>> =
            dataplanes.into_iter().map(|d| (d.meta.name.clone(), d)).collect();
        let tls_ready = tls_ready.into_iter().filter(|(name, _)| dataplanes.contains_key(name)).collect();
        Ok(MeshContext {
            policy_hash: policy_hash(&mesh_res, &set),
            route_targets: Arc::new(RouteTargets::of(&set)),
            mesh: mesh_res,
            dataplanes,
            services,
            consumers: consumers.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            policies: Arc::new(set),
            build: next_build(),
            encodings: previous.map(|p| p.encodings.clone()).unwrap_or_default(),
            tls_ready,
        })
    }

    /// The next context after a change of the Mesh itself: the Mesh and the policies are
    /// read again, the dataplanes and services (kept current by
    /// [`with_dataplane`](Self::with_dataplane)) are shared. On Postgres this reads a few
    /// rows instead of every Dataplane of the mesh.
    pub fn with_policies(&self, reader: &dyn ResourceReader) -> Result<MeshContext, GenerateError> {
        let (mesh_res, set) = read_policies(reader, &self.mesh.meta.name)?;
        Ok(MeshContext {
            policy_hash: policy_hash(&mesh_res, &set),
            route_targets: Arc::new(RouteTargets::of(&set)),
            tls_ready: carried_tls_ready(Some(self), &mesh_res, &set),
            mesh: mesh_res,
            dataplanes: self.dataplanes.clone(),
            services: self.services.clone(),
            consumers: self.consumers.clone(),
            policies: Arc::new(set),
            build: next_build(),
            encodings: self.encodings.clone(),
        })
    }

    /// The next context after policy `key` became `new` (`None`: deleted); `None` when its
    /// content did not change (an identical re-PUT, or a delete and re-create of the same
    /// policy). Keeps the build: only the dataplanes it can affect are due.
    pub fn with_policy(&self, key: &ResourceKey, new: Option<Arc<Resource>>) -> Option<MeshContext> {
        let old = self.policies.get(key);
        if old.map(|o| &o.spec) == new.as_ref().map(|n| &n.spec) {
            return None;
        }
        let set = self.policies.with(key, new);
        Some(MeshContext {
            policy_hash: policy_hash(&self.mesh, &set),
            route_targets: Arc::new(RouteTargets::of(&set)),
            tls_ready: carried_tls_ready(Some(self), &self.mesh, &set),
            mesh: self.mesh.clone(),
            dataplanes: self.dataplanes.clone(),
            services: self.services.clone(),
            consumers: self.consumers.clone(),
            policies: Arc::new(set),
            build: self.build,
            encodings: self.encodings.clone(),
        })
    }

    /// Of the dataplanes named by `candidates`, those whose config the change of a policy
    /// from `old` to `new` can affect (either version reaching them counts).
    pub fn affected_by_policy<'a>(
        &self,
        previous: &MeshContext,
        old: Option<&Resource>,
        new: Option<&Resource>,
        candidates: impl Iterator<Item = &'a str>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        for name in candidates {
            let Some(spec) = self.dataplanes.get(name).and_then(|d| dataplane_spec(d)) else { continue };
            let hit = |ctx: &MeshContext, p: Option<&Resource>| {
                p.is_some_and(|p| {
                    ctx.enforces(p)
                        && policies::core::reach::affects(&ctx.policies, p, spec, &|svc| ctx.consumes(spec, svc))
                })
            };
            if hit(previous, old) || hit(self, new) {
                out.push(name.to_string());
            }
        }
        out
    }

    /// The only dataplanes a change of a policy from `old` (in `previous`) to `new` (in this
    /// context) can affect, when both versions reach only consumers of named services
    /// ([`reach::consumed_services`]); `None`: any dataplane may be, check them all. A
    /// superset: [`affected_by_policy`](Self::affected_by_policy) still decides each one.
    pub fn policy_candidates(
        &self,
        previous: &MeshContext,
        old: Option<&Resource>,
        new: Option<&Resource>,
    ) -> Option<BTreeSet<String>> {
        let mut out = BTreeSet::new();
        for (ctx, p) in [(previous, old), (self, new)] {
            let Some(p) = p else { continue };
            for service in policies::core::reach::consumed_services(p)? {
                ctx.add_consumers_of(&service, &mut out)?;
            }
        }
        Some(out)
    }

    /// Adds the dataplanes [`consumes`](Self::consumes) says have a cluster of `service`;
    /// `None` when that can be any dataplane with an outbound.
    fn add_consumers_of(&self, service: &str, out: &mut BTreeSet<String>) -> Option<()> {
        let from = self.route_targets.routed_to(service)?;
        for s in std::iter::once(service).chain(from) {
            if let Some(c) = self.consumers.get(s) {
                out.extend(c.iter().cloned());
            }
        }
        Some(())
    }

    /// Whether `policy` can shape anything in this mesh as it is: permissions are RBAC on
    /// mesh-TLS inbounds, so without the Mesh's mTLS their plugins emit nothing and a write
    /// of one reaches nobody (Kuma regenerates anyway; nothing would change).
    fn enforces(&self, policy: &Resource) -> bool {
        let permission =
            matches!(policy.rtype(), ResourceType::TrafficPermission | ResourceType::MeshTrafficPermission);
        !permission || matches!(&self.mesh.spec, Spec::Mesh(m) if m.mtls_enabled())
    }

    /// Whether `dp` can have a cluster of `service`: an outbound to it, or an outbound whose
    /// traffic a routing policy can send there.
    pub fn consumes(&self, dp: &DataplaneSpec, service: &str) -> bool {
        let outbounds = || dp.networking.outbound.iter().map(|o| o.service());
        if outbounds().any(|s| s == service) {
            return true;
        }
        match self.route_targets.routed_to(service) {
            None => !dp.networking.outbound.is_empty(),
            Some(from) => outbounds().any(|s| from.contains(&s)),
        }
    }

    /// The next context after Dataplane `name` became `new` (`None`: deleted), and the names
    /// of the dataplanes whose config can have changed: the dataplane itself and the
    /// consumers of every service whose endpoints moved. `None` when nothing changed.
    pub fn with_dataplane(&self, name: &str, new: Option<Arc<Resource>>) -> Option<(MeshContext, BTreeSet<String>)> {
        let old = self.dataplanes.get(name);
        // Content decides: a Dataplane deleted and created again restarts at version 1, and
        // an identical re-PUT bumps the version without changing anything.
        if old.map(|o| &o.spec) == new.as_ref().map(|n| &n.spec) {
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
        let mut everyone = false;
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
                services.insert(svc.clone(), Arc::new(ServiceResources::new(svc, eps)));
            }
            if let Some(c) = self.consumers.get(svc) {
                affected.extend(c.iter().cloned());
            }
            match self.route_targets.routed_to(svc) {
                None => everyone = true,
                Some(from) => {
                    for f in from {
                        if let Some(c) = self.consumers.get(f) {
                            affected.extend(c.iter().cloned());
                        }
                    }
                }
            }
        }
        if everyone {
            affected.extend(self.dataplanes.keys().cloned());
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
        let mut tls_ready = self.tls_ready.clone();
        if new.is_none() {
            tls_ready.remove(name);
        }
        let next = MeshContext {
            mesh: self.mesh.clone(),
            tls_ready,
            dataplanes,
            services,
            consumers,
            policies: self.policies.clone(),
            route_targets: self.route_targets.clone(),
            build: self.build,
            policy_hash: self.policy_hash,
            encodings: self.encodings.clone(),
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

    /// The protocol of `service` from its endpoints (TCP when nobody provides it).
    pub fn protocol_of(&self, service: &str) -> Protocol {
        self.services.get(service).map(|s| s.protocol).unwrap_or(Protocol::Tcp)
    }

    /// Every policy of the mesh resolved for dataplane `dp`.
    pub fn resolve(&self, dp: &Resource, spec: &DataplaneSpec) -> resolved::ResolvedProxy {
        let fallback = crate::model::mesh::MeshSpec::default();
        let mesh_spec = match &self.mesh.spec {
            Spec::Mesh(m) => m,
            _ => &fallback,
        };
        let protocol_of = |s: &str| self.protocol_of(s);
        let tls_ready = |s: &str| self.service_tls_ready(s);
        policies::resolve(&policies::ResolveCx {
            mesh_name: &self.mesh.meta.name,
            mesh: mesh_spec,
            policies: &self.policies,
            name: &dp.meta.name,
            dataplane: spec,
            protocol_of: &protocol_of,
            tls_ready: &tls_ready,
        })
    }

    fn mesh_spec(&self) -> Option<&crate::model::mesh::MeshSpec> {
        match &self.mesh.spec {
            Spec::Mesh(m) => Some(m),
            _ => None,
        }
    }

    /// Whether TLS readiness can change any client's config in this mesh (PERMISSIVE
    /// Mesh.mtls, or MeshIdentities): otherwise a readiness change is no change.
    pub fn tls_readiness_matters(&self) -> bool {
        self.mesh_spec().is_some_and(|m| crate::mtls::plan::readiness_matters(m, &self.policies))
    }

    /// Whether every dataplane serving `service` has acknowledged mesh TLS (see
    /// [`tls_ready`](Self::tls_ready)); a mark from a backend other than the Mesh's enabled
    /// one does not count (it predates a change of CA). A service nobody serves is not ready.
    pub fn service_tls_ready(&self, service: &str) -> bool {
        if self.tls_ready.is_empty() {
            return false;
        }
        let enabled = self.mesh_spec().and_then(|m| m.mtls_backend()).map(|b| b.name.as_str());
        let Some(s) = self.services.get(service) else { return false };
        !s.endpoints.is_empty()
            && s.endpoints.iter().all(|e| {
                self.tls_ready.get(&e.dataplane).is_some_and(|backend| {
                    backend.starts_with(crate::mtls::identities::IDENTITY_MARK_PREFIX) || Some(&**backend) == enabled
                })
            })
    }

    /// The next context after dataplane `name`'s Envoy acknowledged mesh TLS from `backend`;
    /// `None` when that was known already.
    pub fn with_tls_ready(&self, name: &str, backend: &str) -> Option<MeshContext> {
        if self.tls_ready.get(name).is_some_and(|b| &**b == backend) || !self.dataplanes.contains_key(name) {
            return None;
        }
        let mut tls_ready = self.tls_ready.clone();
        tls_ready.insert(name.to_string(), Arc::from(backend));
        Some(MeshContext {
            mesh: self.mesh.clone(),
            dataplanes: self.dataplanes.clone(),
            services: self.services.clone(),
            consumers: self.consumers.clone(),
            policies: self.policies.clone(),
            route_targets: self.route_targets.clone(),
            build: self.build,
            policy_hash: self.policy_hash,
            encodings: self.encodings.clone(),
            tls_ready,
        })
    }

    /// The services `dp`'s clusters read (its outbounds and what routing adds), for input
    /// hashes: a change of any of them must regenerate it.
    pub fn services_read_by(&self, spec: &DataplaneSpec) -> Vec<String> {
        let mut out: HashSet<String> = HashSet::new();
        for o in &spec.networking.outbound {
            out.insert(o.service().to_string());
            if let Some(extra) = self.route_targets.by_service.get(o.service()) {
                out.extend(extra.iter().cloned());
            }
        }
        if !spec.networking.outbound.is_empty() {
            out.extend(self.route_targets.any.iter().cloned());
        }
        let mut v: Vec<String> = out.into_iter().collect();
        v.sort();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::rest;
    use crate::store::{MemoryStore, ResourceStore};
    use serde_json::{json, Value};
    use std::time::Duration;

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
        let mut ca: Vec<_> =
            a.consumers.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), (**v).clone())).collect();
        let mut cb: Vec<_> =
            b.consumers.iter().filter(|(_, v)| !v.is_empty()).map(|(k, v)| (k.clone(), (**v).clone())).collect();
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

    fn slow(name: &str, dest: &str, connect: &str) -> Spec {
        rest::from_json(json!({
            "type": "Timeout", "mesh": "default", "name": name,
            "sources": [{"match": {"kuma.io/service": "*"}}],
            "destinations": [{"match": {"kuma.io/service": dest}}],
            "conf": {"connectTimeout": connect}
        }))
        .unwrap()
        .spec
    }

    #[test]
    fn a_mesh_rebuild_keeps_the_dataplanes_and_reads_the_policies() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        s.create("default", "slow", slow("slow", "backend", "9s")).unwrap();
        let next = ctx.with_policies(&s).unwrap();
        same(&next, &MeshContext::build(&s, "default", None).unwrap());
        assert_ne!(next.policy_hash, ctx.policy_hash);
        assert_ne!(next.build, ctx.build, "a Mesh change is a new build: every dataplane is due");
        assert_eq!(next.policies.of(ResourceType::Timeout).len(), 1);
    }

    #[test]
    fn a_policy_change_reaches_only_the_consumers_it_names() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        let created = s.create("default", "slow", slow("slow", "backend", "9s")).unwrap();
        let key = created.key();
        let next = ctx.with_policy(&key, Some(created.clone())).unwrap();
        assert_eq!(next.build, ctx.build, "a targeted policy change keeps the build");
        assert_ne!(next.policy_hash, ctx.policy_hash);
        let names = ["web-1", "web-2", "backend-1"];
        let affected = next.affected_by_policy(&ctx, None, Some(&created), names.into_iter());
        assert_eq!(affected, ["web-1"], "only backend's consumer");
        let web = dataplane_spec(&next.dataplanes["web-1"]).unwrap().clone();
        let resolved = next.resolve(&next.dataplanes["web-1"], &web);
        assert_eq!(resolved.clusters[0].conf.timeouts.connect, Some(Duration::from_secs(9)));
        // The same content again is no change at all.
        assert!(next.with_policy(&key, Some(created.clone())).is_none());
        // Only backend's consumers are candidates at all; moving the policy to db makes both
        // versions' consumers candidates.
        let only = next.policy_candidates(&ctx, None, Some(&created));
        assert_eq!(only, Some(BTreeSet::from(["web-1".to_string()])));
        let moved = s.update(&key, slow("slow", "db", "9s"), created.meta.version).unwrap();
        let third = next.with_policy(&key, Some(moved.clone())).unwrap();
        let both = third.policy_candidates(&next, Some(&created), Some(&moved));
        assert_eq!(both, Some(BTreeSet::from(["web-1".to_string(), "web-2".to_string()])));
        // A policy for every destination has no narrower candidates than the mesh.
        let all = s.create("default", "all", slow("all", "*", "5s")).unwrap();
        let fourth = third.with_policy(&all.key(), Some(all.clone())).unwrap();
        assert_eq!(fourth.policy_candidates(&third, None, Some(&all)), None);
        let mesh_timeout = |name: &str, to: Value| {
            let doc = json!({"type": "MeshTimeout", "mesh": "default", "name": name, "spec": {
                "targetRef": {"kind": "Mesh"},
                "to": [{"targetRef": to, "default": {"connectionTimeout": "2s"}}]}});
            s.create("default", name, rest::from_json(doc).unwrap().spec).unwrap()
        };
        let mesh_wide = mesh_timeout("mt", json!({"kind": "Mesh"}));
        assert_eq!(fourth.policy_candidates(&fourth, None, Some(&mesh_wide)), None);
        let one = mesh_timeout("mt-db", json!({"kind": "MeshService", "name": "db"}));
        assert_eq!(fourth.policy_candidates(&fourth, None, Some(&one)), Some(BTreeSet::from(["web-2".to_string()])));
    }

    #[test]
    fn a_policy_deleted_and_created_again_with_other_values_is_a_change() {
        let s = store();
        let first = s.create("default", "slow", slow("slow", "backend", "9s")).unwrap();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        s.delete(&first.key()).unwrap();
        let again = s.create("default", "slow", slow("slow", "backend", "3s")).unwrap();
        assert_eq!(again.meta.version, first.meta.version, "versions restart");
        let next = ctx.with_policy(&again.key(), Some(again)).expect("the content differs");
        assert_ne!(next.policy_hash, ctx.policy_hash);
        assert_ne!(MeshContext::build(&s, "default", None).unwrap().policy_hash, ctx.policy_hash);
    }

    #[test]
    fn an_unchanged_dataplane_changes_nothing() {
        let s = store();
        let ctx = MeshContext::build(&s, "default", None).unwrap();
        let same_dp = ResourceStore::get(&s, &key("web-1")).unwrap();
        assert!(ctx.with_dataplane("web-1", Some(same_dp)).is_none());
    }
}
