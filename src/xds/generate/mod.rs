//! Config generation: the policies are resolved for the dataplane once
//! ([`crate::policies::resolve`]), then a chain of generators, one per concern (Kuma's
//! generator pipeline), adds the Envoy resources to a [`Snapshot`]. Generators read only
//! the resolved confs; every resource comes from the mesh's encoding cache, keyed by what it
//! is built from, so dataplanes with equal outcomes share the bytes.
//!
//! - [`inbound`]: a listener per inbound and the local cluster behind it.
//! - [`outbound`]: a listener per outbound, and the clusters and endpoints it routes to.

pub mod envoy_builders;
pub mod inbound;
pub mod outbound;

use std::sync::Arc;

use super::context::MeshContext;
use super::snapshot::Snapshot;
use super::wire::EncodedResource;
use crate::model::dataplane::DataplaneSpec;
use crate::model::Resource;
use crate::policies::resolved::ResolvedProxy;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0} is not a Dataplane")]
    NotADataplane(String),
    #[error("generator {generator}: {reason}")]
    Generator { generator: &'static str, reason: String },
}

/// Everything a generator may look at for one dataplane.
pub struct ProxyContext<'a> {
    pub mesh: &'a MeshContext,
    pub dataplane: &'a Resource,
    pub spec: &'a DataplaneSpec,
    pub resolved: &'a ResolvedProxy,
}

pub trait Generator: Send + Sync {
    fn name(&self) -> &'static str;
    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError>;
}

/// Kuma's default proxy profile, in order.
pub fn default_chain() -> Vec<Box<dyn Generator>> {
    vec![Box::new(inbound::InboundGenerator), Box::new(outbound::OutboundGenerator)]
}

/// Resolves `dataplane`'s policies, runs `chain` and assembles the snapshot.
pub fn generate(
    chain: &[Box<dyn Generator>],
    mesh: &MeshContext,
    dataplane: &Resource,
) -> Result<Snapshot, GenerateError> {
    generate_with(chain, mesh, dataplane, Vec::new())
}

/// [`generate`], with `extra` resources made elsewhere (the dataplane's SDS secrets, issued
/// off the workers' path by `crate::mtls::identities`).
pub fn generate_with(
    chain: &[Box<dyn Generator>],
    mesh: &MeshContext,
    dataplane: &Resource,
    extra: Vec<Arc<EncodedResource>>,
) -> Result<Snapshot, GenerateError> {
    let crate::model::Spec::Dataplane(spec) = &dataplane.spec else {
        return Err(GenerateError::NotADataplane(dataplane.key().to_string()));
    };
    let resolved = mesh.resolve(dataplane, spec);
    let ctx = ProxyContext { mesh, dataplane, spec, resolved: &resolved };
    let mut out = extra;
    for g in chain {
        g.generate(&ctx, &mut out)?;
    }
    Ok(Snapshot::new(out))
}

#[cfg(test)]
mod golden_tests;
