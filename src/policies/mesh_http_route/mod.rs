//! MeshHTTPRoute: [`api`] has the spec and its validation, [`plugin`] how its rules become
//! the HTTP routes of outbounds.

pub mod api;
pub mod plugin;
