//! MeshTrust (Kuma 2.12+): the CA bundles a mesh's dataplanes accept identities of one
//! trust domain from. Its bundles join the trust bundle of every dataplane of the mesh.

pub mod api;
