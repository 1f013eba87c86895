//! MeshTLS (Kuma 2.9+): per-dataplane inbound TLS mode (Strict or Permissive) and TLS
//! versions and ciphers, on the same listeners and clusters as mesh mTLS. [`api`] has the
//! spec; [`plugin`] overrides what the `mtls` plugin resolved.

pub mod api;
pub mod plugin;
