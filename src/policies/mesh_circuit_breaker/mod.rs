//! MeshCircuitBreaker (targetRef): [`api`] has the spec and its validation, [`plugin`] how
//! its `to` rules shape outbound clusters and its `from` rules the inbound local clusters;
//! golden files in `testdata/`.

pub mod api;
pub mod plugin;
