//! MeshTrafficPermission (targetRef): which clients may reach the inbounds its top-level
//! targetRef selects. [`api`] has the spec and its validation; it is matched by the engine
//! (the inspect API shows its rules). Enforcement (inbound RBAC) needs mTLS and comes with
//! the identity work.

pub mod api;
