//! Retry (old-style): [`api`] has the spec and its validation, [`plugin`] how it resolves
//! for a dataplane, [`conf`] the resolved retries it shares with MeshRetry and how they
//! shape listeners.

pub mod api;
pub mod conf;
pub mod plugin;
