//! Mesh TLS on listeners and clusters (reference §1.5, §1.6), from the dataplane's identity
//! plan (`crate::mtls::plan`: `Mesh.mtls` or a MeshIdentity): [`plugin`] resolves which
//! inbounds accept TLS (STRICT or PERMISSIVE) and which clusters speak it; [`conf`] has the
//! resolved confs and the Envoy TLS contexts they make. The certificates themselves reach
//! Envoy as SDS secrets (`crate::xds::generate::secrets`), referenced here by name, so a
//! rotation changes no listener or cluster.

pub mod conf;
pub mod plugin;
