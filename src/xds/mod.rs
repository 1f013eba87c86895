//! xDS: what Envoy receives and how.
//!
//! - [`server`]: the ADS gRPC service (thin grpcio glue, limits, per-request auth check).
//! - [`auth`]: dataplane tokens checked for every stream and request.
//! - [`stream`]: the per-stream state machine (nonces, ACK, NACK, back-off).
//! - [`context`]: per-mesh data shared by all its dataplanes.
//! - [`encodings`]: the mesh's cache of encoded resources, keyed by what they are built from.
//! - [`generate`]: the generator chain that builds a dataplane's [`snapshot`].
//! - [`wire`]: encoded resources, content-hash versions and response encoding.
//! - [`debug`]: decoding what we serve back to JSON, for golden files and inspection.
//! - [`bootstrap`]: the Envoy bootstrap handed to dataplanes.
//! - [`inspect`]: what the inspect API may ask of the reconciler, and the config-dump view.

pub mod auth;
pub mod bootstrap;
pub mod context;
pub mod debug;
pub mod encodings;
pub mod generate;
pub mod inspect;
pub mod resource_kind;
pub mod server;
pub mod snapshot;
pub mod stream;
pub mod wire;
