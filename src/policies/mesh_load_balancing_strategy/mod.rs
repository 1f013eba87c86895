//! MeshLoadBalancingStrategy: [`api`] has the spec and its validation, [`plugin`] how it sets
//! the load balancer of outbound clusters and the hash policies of their routes.

pub mod api;
pub mod plugin;
