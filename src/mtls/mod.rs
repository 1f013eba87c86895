//! Mesh identity (the identity issue): mesh CAs, workload certificates, their rotation, and
//! the checks a Mesh write goes through.
//!
//! - [`backend`], [`datasource`]: `Mesh.mtls` backends and where CA material comes from.
//! - [`ca`]: the builtin CA (generated once per mesh and backend, stored as Kuma's Secrets),
//!   provided CAs, and Kuma's CA checks; [`der`] reads what the openssl crate does not.
//! - [`plan`]: what a dataplane's identity is made of (Mesh.mtls or a MeshIdentity).
//! - [`issuer`]: workload certificates; [`identities`]: the per-dataplane certificates of
//!   connected dataplanes, issued off the xDS workers' hot path, rotated at 4/5 of their
//!   lifetime, throttled when a CA fails.
//! - [`manager`]: Mesh writes (CAs created with the Mesh, Kuma's checks) and Secret deletes.
//! - [`names`]: Kuma's names for all of it.
//!
//! Private keys reach dataplanes only inside SDS responses on their authenticated ADS
//! stream, which the DP server carries over TLS.

pub mod backend;
pub mod ca;
pub mod datasource;
pub mod der;
pub mod identities;
pub mod issuer;
pub mod manager;
pub mod names;
pub mod plan;

#[derive(Debug, thiserror::Error)]
pub enum MtlsError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The CA is missing, incomplete or invalid.
    #[error("{0}")]
    Ca(String),
    #[error("cannot generate {what}: {source}")]
    Crypto {
        what: &'static str,
        #[source]
        source: openssl::error::ErrorStack,
    },
}

/// A store as a reader (`dyn ResourceStore` does not upcast to `dyn ResourceReader`).
pub struct Reader<'a>(pub &'a dyn crate::store::ResourceStore);

impl crate::store::ResourceReader for Reader<'_> {
    fn get(&self, key: &crate::model::ResourceKey) -> crate::store::Result<std::sync::Arc<crate::model::Resource>> {
        self.0.get(key)
    }
    fn list(
        &self,
        rtype: crate::model::ResourceType,
        mesh: Option<&str>,
    ) -> crate::store::Result<Vec<std::sync::Arc<crate::model::Resource>>> {
        self.0.list(rtype, mesh)
    }
}
