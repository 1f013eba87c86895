//! TrafficLog (old-style): [`api`] has the spec and its validation, [`plugin`] how it picks a
//! Mesh `logging` backend per outbound and adds the access logs.

pub mod api;
pub mod plugin;
