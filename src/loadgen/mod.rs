//! The load harness behind `higuma-load`: a seeded topology, a fleet of simulated
//! dataplanes, the control plane under test as a child process, and the scenarios whose
//! figures go into BENCHMARKS.md.
//!
//! - [`topology`]: S services × K instances, O outbounds each.
//! - [`fleet`]: one ADS stream per simulated dataplane.
//! - [`scenarios`]: cold, idle, targeted change, mesh-wide change, churn; the encode floor.
//! - [`procstat`]: CPU seconds and memory of a process, from /proc.

pub mod fleet;
pub mod procstat;
pub mod scenarios;
pub mod token_cost;
pub mod topology;
