//! The reconciler: decides which dataplanes are due and hands them to the worker pool.

pub mod timer;
