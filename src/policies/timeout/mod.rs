//! Timeout (old-style): [`api`] has the spec and its validation, [`plugin`] how it resolves
//! for a dataplane, [`conf`] the resolved timeouts it shares with MeshTimeout and how they
//! shape clusters and listeners.

pub mod api;
pub mod conf;
pub mod plugin;

#[cfg(test)]
pub(crate) mod testing;
