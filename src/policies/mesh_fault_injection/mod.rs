//! MeshFaultInjection (targetRef): [`api`] has the spec and its validation, [`plugin`] how its
//! `from` rules resolve per inbound into the conf FaultInjection also writes.

pub mod api;
pub mod plugin;
