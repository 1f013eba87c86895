//! What every policy plugin builds on: targetRef selection and rules, old-style ranking,
//! the policy set of a mesh, shared validation helpers.
//!
//! - [`api`]: the `targetRef` + `to`/`from` spec shape most targetRef policies share.
//! - [`targetref`]: `targetRef` kinds, validation, which inbounds a top-level targetRef
//!   selects.
//! - [`rules`]: `to`/`from` items → rules over subsets, merged least to most specific.
//! - [`matching`]: the targetRef policies of one type that select a dataplane, in Kuma's
//!   order, and their rules (cached per distinct outcome).
//! - [`oldstyle`]: `sources`/`destinations` ranking and the selection functions.
//! - [`set`]: a mesh's policies by type, immutable and cheap to change one at a time.
//! - [`reach`]: which dataplanes a policy can affect, so a write regenerates only those.
//! - [`validate`]: shared validation helpers with Kuma's messages.

pub mod api;
pub mod matching;
pub mod oldstyle;
pub mod reach;
pub mod rules;
pub mod set;
pub mod targetref;
pub mod validate;

#[cfg(test)]
pub mod testing;
