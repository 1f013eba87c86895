//! MeshTCPRoute: [`api`] has the spec and its validation, [`plugin`] how its backends become
//! an outbound's TCP proxy.

pub mod api;
pub mod plugin;
