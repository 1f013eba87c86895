//! MeshHealthCheck (targetRef): [`api`] has the spec and its validation, [`plugin`] how its
//! rules add active health checks to outbound clusters; golden files in `testdata/`.

pub mod api;
pub mod plugin;
