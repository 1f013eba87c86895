//! MeshTrafficPermission (targetRef): which clients may reach the inbounds its top-level
//! targetRef selects. [`api`] has the spec (`from` and the Kuma 2.12+ `rules`) and its
//! validation, [`plugin`] how it resolves into the inbound RBAC it shares with
//! TrafficPermission.

pub mod api;
pub mod plugin;
