//! MeshTimeout (targetRef): [`api`] has the spec and its validation, [`plugin`] how its
//! `to` and `from` rules override Timeout's decisions (in the same conf fields, applied by
//! the Timeout plugin's configure hooks, `crate::policies::timeout::conf`).

pub mod api;
pub mod plugin;
