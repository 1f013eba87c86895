//! Retry: see [`api`] for the spec and its validation.

pub mod api;
