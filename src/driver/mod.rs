//! Storage allocation: turning volume ids into real block storage inside a pool.
//!
//! A driver knows nothing of HTTP, SQL or tenants; it is given validated UUIDs and sizes in
//! bytes. Every operation is idempotent, because a job recovered after a crash runs its steps
//! again. Calls block (file system work) and are made from `spawn_blocking`.

mod file;

pub use file::FileDriver;

use uuid::Uuid;

/// What a pool can do, reported at start and in pool listings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capabilities {
    /// FICLONE works on this pool's filesystem.
    pub reflink: bool,
}

/// Space on the pool's backing store, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capacity {
    /// Size of the backing filesystem or volume group.
    pub total_bytes: u64,
    /// Free bytes.
    pub free_bytes: u64,
}

/// Errors from a driver.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// An I/O call failed; `op` says which step.
    #[error("{op}: {source}")]
    Io {
        /// The step that failed.
        op: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl DriverError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io { op: op.into(), source }
    }
}

/// A storage backend for one pool.
pub trait Driver: Send + Sync + std::fmt::Debug {
    /// Capabilities detected at start.
    fn capabilities(&self) -> Capabilities;
    /// Current capacity.
    fn capacity(&self) -> Result<Capacity, DriverError>;
    /// Make the volume exist with exactly `size_bytes` and no data (idempotent).
    fn create_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError>;
    /// Remove the volume and its data (idempotent: a missing volume is success).
    fn delete_volume(&self, id: Uuid) -> Result<(), DriverError>;
    /// Ids of every volume the pool holds (for consistency checks).
    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError>;
}
