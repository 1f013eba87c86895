//! HealthCheck (old-style): [`api`] has the spec and its validation, [`plugin`] how it
//! selects, [`conf`] the resolved checks both generations write and how they shape a
//! cluster.

pub mod api;
pub mod conf;
pub mod plugin;
