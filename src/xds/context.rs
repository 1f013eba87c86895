//! What config generation needs to know about a mesh, built once per mesh change and shared
//! by every dataplane of the mesh: its dataplanes, and per service the endpoints plus the
//! service's cluster and load assignment, already encoded.

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use super::generate::{envoy_builders, GenerateError};
use super::wire::EncodedResource;
use crate::model::dataplane::{DataplaneSpec, Protocol};
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

/// One inbound of one dataplane, as other dataplanes reach it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: String,
    pub port: u32,
    pub dataplane: String,
    pub tags: BTreeMap<String, String>,
}

/// A service of the mesh (`kuma.io/service`) with its shared, encoded resources.
#[derive(Debug)]
pub struct ServiceResources {
    pub name: String,
    pub protocol: Protocol,
    pub endpoints: Vec<Endpoint>,
    pub cluster: Arc<EncodedResource>,
    pub load_assignment: Arc<EncodedResource>,
    /// Changes whenever anything a consumer of this service receives changes.
    pub hash: u64,
}

#[derive(Debug)]
pub struct MeshContext {
    pub mesh: Arc<Resource>,
    pub dataplanes: HashMap<String, Arc<Resource>>,
    pub services: HashMap<String, Arc<ServiceResources>>,
    /// Over the versions of everything the context was built from.
    pub hash: u64,
}

impl MeshContext {
    /// Builds the context of `mesh`, reusing the services of `previous` whose inputs did not
    /// change (their encoded bytes and hashes stay identical).
    pub fn build(
        reader: &dyn ResourceReader,
        mesh: &str,
        previous: Option<&MeshContext>,
    ) -> Result<MeshContext, GenerateError> {
        let mesh_res = reader.get(&ResourceKey::new(ResourceType::Mesh, "", mesh))?;
        let dataplanes = reader.list(ResourceType::Dataplane, Some(mesh))?;
        let mut h = std::collections::hash_map::DefaultHasher::new();
        mesh_res.meta.version.hash(&mut h);
        let mut endpoints: BTreeMap<String, Vec<Endpoint>> = BTreeMap::new();
        let mut protocols: BTreeMap<String, Option<Protocol>> = BTreeMap::new();
        for dp in &dataplanes {
            dp.meta.name.hash(&mut h);
            dp.meta.version.hash(&mut h);
            let Spec::Dataplane(spec) = &dp.spec else { continue };
            collect_endpoints(&dp.meta.name, spec, &mut endpoints, &mut protocols);
        }
        let mut services = HashMap::with_capacity(endpoints.len());
        for (name, mut eps) in endpoints {
            eps.sort();
            let protocol = protocols.get(&name).copied().flatten().unwrap_or(Protocol::Tcp);
            let reused = previous
                .and_then(|p| p.services.get(&name))
                .filter(|s| s.protocol == protocol && s.endpoints == eps)
                .cloned();
            let service = match reused {
                Some(s) => s,
                None => Arc::new(service_resources(&name, protocol, eps)),
            };
            services.insert(name, service);
        }
        Ok(MeshContext {
            mesh: mesh_res,
            dataplanes: dataplanes.into_iter().map(|d| (d.meta.name.clone(), d)).collect(),
            services,
            hash: h.finish(),
        })
    }

    /// The resources of a service no dataplane provides: a cluster with no endpoints, so
    /// Envoy answers its callers at once instead of waiting for endpoints that never come.
    pub fn service(&self, name: &str) -> Arc<ServiceResources> {
        match self.services.get(name) {
            Some(s) => s.clone(),
            None => Arc::new(service_resources(name, Protocol::Tcp, Vec::new())),
        }
    }
}

fn collect_endpoints(
    dp_name: &str,
    spec: &DataplaneSpec,
    endpoints: &mut BTreeMap<String, Vec<Endpoint>>,
    protocols: &mut BTreeMap<String, Option<Protocol>>,
) {
    let net = &spec.networking;
    for inbound in &net.inbound {
        if inbound.health.as_ref().is_some_and(|h| !h.ready) {
            continue;
        }
        let service = inbound.service().to_string();
        let address = match &net.advertised_address {
            Some(a) if inbound.address.is_none() => a.clone(),
            _ => inbound.effective_address(net).to_string(),
        };
        endpoints.entry(service.clone()).or_default().push(Endpoint {
            address,
            port: inbound.port,
            dataplane: dp_name.to_string(),
            tags: inbound.tags.clone(),
        });
        // Kuma infers a service's protocol from its endpoints; when they disagree the
        // only safe common ground is TCP.
        let p = inbound.protocol();
        protocols
            .entry(service)
            .and_modify(|seen| {
                if *seen != Some(p) {
                    *seen = Some(Protocol::Tcp)
                }
            })
            .or_insert(Some(p));
    }
}

fn service_resources(name: &str, protocol: Protocol, endpoints: Vec<Endpoint>) -> ServiceResources {
    let cluster = envoy_builders::eds_cluster(name, protocol);
    let load_assignment = envoy_builders::load_assignment(name, &endpoints);
    let mut h = std::collections::hash_map::DefaultHasher::new();
    cluster.hash.hash(&mut h);
    load_assignment.hash.hash(&mut h);
    protocol.as_str().hash(&mut h);
    ServiceResources { name: name.to_string(), protocol, endpoints, cluster, load_assignment, hash: h.finish() }
}
