//! MeshRetry (targetRef): [`api`] has the spec and its validation, [`plugin`] how its `to`
//! rules add route-level retry policies and TCP connect attempts (in the conf field the
//! Retry plugin applies, `crate::policies::retry::conf`).

pub mod api;
pub mod plugin;
