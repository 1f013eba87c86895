//! MeshAccessLog (targetRef): [`api`] has the spec and its validation, [`plugin`] how its `to`
//! and `from` rules resolve into access loggers on outbound and inbound listeners.

pub mod api;
pub mod plugin;
