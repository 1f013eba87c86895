//! TrafficRoute (old-style): [`api`] has the spec and its validation, [`plugin`] how it
//! routes and load-balances outbounds.

pub mod api;
pub mod plugin;
