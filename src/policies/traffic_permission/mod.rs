//! TrafficPermission (old-style): [`api`] has the spec and its validation, [`plugin`] how it
//! resolves for a dataplane, [`rbac`] the resolved permissions it shares with
//! MeshTrafficPermission and the network RBAC filter they become, [`mtls`] what a mesh turning
//! mTLS on gets by default.

pub mod api;
pub mod mtls;
pub mod plugin;
pub mod rbac;
