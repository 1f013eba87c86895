//! FaultInjection (old-style): [`api`] has the spec and its validation, [`plugin`] how it
//! resolves per inbound and shapes the inbound HTTP filters (MeshFaultInjection writes the same
//! conf).

pub mod api;
pub mod plugin;
