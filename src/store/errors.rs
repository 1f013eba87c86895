//! Store errors. `Unavailable` is the only transient kind (retry later, answer 503); every
//! other kind is final for the request that caused it.

use crate::model::ResourceKey;

#[derive(Clone, Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(ResourceKey),
    #[error("{0} already exists")]
    AlreadyExists(ResourceKey),
    /// The compare-and-swap on the version failed: somebody else wrote first.
    #[error("{0} was changed concurrently; read it again and retry")]
    Conflict(ResourceKey),
    #[error("mesh {0:?} does not exist")]
    MeshNotFound(String),
    #[error("cannot store {key}: its owner {owner} does not exist")]
    OwnerNotFound { key: ResourceKey, owner: ResourceKey },
    /// The backend cannot be reached; nothing was written.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// Short stable label for logs and metrics.
    pub fn label(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::Conflict(_) => "conflict",
            StoreError::MeshNotFound(_) => "mesh_not_found",
            StoreError::OwnerNotFound { .. } => "owner_not_found",
            StoreError::Unavailable(_) => "unavailable",
            StoreError::Internal(_) => "internal",
        }
    }
}

pub type Result<T> = std::result::Result<T, StoreError>;
