//! MeshIdentity (Kuma 2.12+ on Kubernetes, 2.13+ on Universal): which dataplanes get which
//! workload identity (a SPIFFE id from templates) and from which provider. higuma issues
//! the `Bundled` provider's certificates with the same CA and issuing machinery as
//! `Mesh.mtls` (`crate::mtls`); a `Spire` identity is stored and validated but issues
//! nothing here (there is no SPIRE agent integration).

pub mod api;
pub mod template;
