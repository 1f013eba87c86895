//! Config generation: a chain of generators, one per concern (Kuma's generator pipeline),
//! each adding Envoy resources for one dataplane to a [`Snapshot`].
//!
//! - [`inbound`]: a listener per inbound and the local cluster behind it.
//! - [`outbound`]: a listener per outbound, and the shared cluster + endpoints of the
//!   service it reaches.

pub mod envoy_builders;
pub mod inbound;
pub mod outbound;

use std::sync::Arc;

use super::context::MeshContext;
use super::snapshot::Snapshot;
use super::wire::EncodedResource;
use crate::model::dataplane::DataplaneSpec;
use crate::model::Resource;
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
}

pub trait Generator: Send + Sync {
    fn name(&self) -> &'static str;
    fn generate(&self, ctx: &ProxyContext<'_>, out: &mut Vec<Arc<EncodedResource>>) -> Result<(), GenerateError>;
}

/// Kuma's default proxy profile, in order.
pub fn default_chain() -> Vec<Box<dyn Generator>> {
    vec![Box::new(inbound::InboundGenerator), Box::new(outbound::OutboundGenerator)]
}

/// Runs `chain` for `dataplane` and assembles the snapshot.
pub fn generate(chain: &[Box<dyn Generator>], mesh: &MeshContext, dataplane: &Resource) -> Result<Snapshot, GenerateError> {
    let crate::model::Spec::Dataplane(spec) = &dataplane.spec else {
        return Err(GenerateError::NotADataplane(dataplane.key().to_string()));
    };
    let ctx = ProxyContext { mesh, dataplane, spec };
    let mut out = Vec::new();
    for g in chain {
        g.generate(&ctx, &mut out)?;
    }
    Ok(Snapshot::new(out))
}

#[cfg(test)]
mod golden_tests;
