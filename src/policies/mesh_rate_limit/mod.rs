//! MeshRateLimit (targetRef): [`api`] has the spec and its validation, [`plugin`] how its
//! `from` rule resolves per inbound into the conf RateLimit also writes.

pub mod api;
pub mod plugin;
