//! Timeout (old-style): [`api`] has the spec and its validation, [`plugin`] how it shapes
//! outbound clusters and listeners.

pub mod api;
pub mod plugin;
