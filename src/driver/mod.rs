//! Storage allocation: turning volume and snapshot ids into real block storage inside a pool.
//!
//! A driver knows nothing of HTTP, SQL or tenants; it is given validated UUIDs and sizes in
//! bytes. Every operation is idempotent, because a job recovered after a crash runs its steps
//! again, and every operation that replaces or creates a file builds it under a temporary name
//! and renames it into place, so a crash leaves the old or the new state, never a torn one.
//! Calls block (file system work) and are made from `spawn_blocking`.
//!
//! Each driver is a folder (as Incus lays out its drivers): `file/` (sparse files, reflink),
//! `lvm/` (LVM thin pools, driven through `lvm`'s JSON reports) and, with the cargo feature
//! `rbd`, `rbd/` (Ceph RBD images through librbd); [`conformance`] is the one suite of cases
//! every driver passes.

pub mod conformance;
mod file;
pub mod lvm;
#[cfg(feature = "rbd")]
pub mod rbd;
mod sparse_copy;

pub use file::FileDriver;
pub use lvm::{LvmDriver, LvmSettings};
#[cfg(feature = "rbd")]
pub use rbd::{RbdDriver, RbdSettings};
pub use sparse_copy::sparse_copy;

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
    /// The source of a copy, clone or revert does not exist.
    #[error("{0} does not exist in the pool")]
    Missing(String),
    /// An external command (`lvm …`) failed; `stderr` is what it printed.
    #[error("{cmd} failed ({}): {stderr}", code.map_or("killed".to_string(), |c| format!("exit {c}")))]
    Command {
        /// The command line.
        cmd: String,
        /// Exit status, `None` when killed by a signal.
        code: Option<i32>,
        /// Its standard error.
        stderr: String,
    },
    /// The pool refuses the allocation (over-subscription ratio or high-water mark).
    #[error("no space: {0}")]
    NoSpace(String),
    /// The pool's backing store is not usable as configured, or holds something not ours.
    #[error("{0}")]
    Invalid(String),
}

impl DriverError {
    pub(crate) fn io(op: impl Into<String>, source: std::io::Error) -> Self {
        DriverError::Io { op: op.into(), source }
    }
}

/// How a new volume gets its data from a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloneMode {
    /// Share extents with the source (reflink), O(1); falls back to a copy without reflink.
    Linked,
    /// An independent sparse copy sharing no extents.
    Full,
}

/// Byte access to a volume's data, whatever holds it: a file or block device (the export
/// path) or an RBD image through librbd. Copies between pools and the conformance suite use
/// it.
pub trait VolumeIo: Send {
    /// Size in bytes.
    fn size(&self) -> std::io::Result<u64>;
    /// Read exactly `buf.len()` bytes at `off`.
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()>;
    /// Write all of `buf` at `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()>;
    /// Make the writes durable.
    fn flush(&self) -> std::io::Result<()>;
}

impl VolumeIo for std::fs::File {
    fn size(&self) -> std::io::Result<u64> {
        // A block device's metadata says 0; its size is where a seek to the end lands
        // (positional reads and writes ignore the offset this moves).
        nix::unistd::lseek(self, 0, nix::unistd::Whence::SeekEnd).map(|n| n as u64).map_err(std::io::Error::from)
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(self, buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> std::io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(self, buf, off)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.sync_all()
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
    /// Grow the volume to `size_bytes` (never shrinks).
    fn extend_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError>;
    /// Take a read-only point-in-time copy of `volume` as `snapshot` (idempotent).
    fn create_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError>;
    /// Remove a snapshot (idempotent).
    fn delete_snapshot(&self, snapshot: Uuid) -> Result<(), DriverError>;
    /// Make `volume` from `snapshot`, `size_bytes` long (≥ the snapshot), linked or full.
    fn create_volume_from_snapshot(
        &self,
        snapshot: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError>;
    /// Make `volume` a copy of the live volume `source` at this instant, linked or full.
    fn create_cloned_volume(
        &self,
        source: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError>;
    /// Make `volume` in this pool a full copy of the volume data at `src` (another pool's export
    /// path), `size_bytes` long: Cinder's host-assisted `copy_volume_data` of a migration.
    /// Built under a temporary name and renamed into place, so a crash leaves no torn volume;
    /// running it again copies again.
    fn copy_volume_data(&self, volume: Uuid, src: &std::path::Path, size_bytes: u64) -> Result<(), DriverError>;
    /// images: make `volume` from the raw file `src` on this pool's filesystem (an image cache
    /// entry), `size_bytes` long: a reflink where the pool has them (O(1)), else a sparse copy.
    /// Built under a temporary name; idempotent. Drivers without files copy the data.
    fn create_volume_from_file(&self, volume: Uuid, src: &std::path::Path, size_bytes: u64) -> Result<(), DriverError> {
        self.copy_volume_data(volume, src, size_bytes)
    }
    /// Atomically replace `volume`'s content with `snapshot`'s, keeping the volume's size.
    fn revert_to_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError>;
    /// images: the file or block device holding a snapshot's data, ready to be read (an upload
    /// to an image reads a point-in-time snapshot); `Missing` when there is no such snapshot.
    /// Drivers whose snapshots are not plain files override it (LVM activates its
    /// activation-skip snapshot LV first).
    fn snapshot_data_path(&self, snapshot: Uuid) -> Result<std::path::PathBuf, DriverError> {
        let p = self.export_path(snapshot);
        if p.exists() {
            Ok(p)
        } else {
            Err(DriverError::Missing(format!("snapshot {snapshot}")))
        }
    }
    /// The file or block device holding the volume's data, for exports (never created here).
    fn export_path(&self, id: Uuid) -> std::path::PathBuf;
    /// Open the volume's data for reading (and writing when `write`): by default the file or
    /// block device at [`Driver::export_path`]; drivers without one (RBD) override it.
    fn open_volume(&self, id: Uuid, write: bool) -> Result<Box<dyn VolumeIo>, DriverError> {
        let p = self.export_path(id);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(&p)
            .map_err(|e| DriverError::io(format!("open {}", p.display()), e))?;
        Ok(Box::new(f))
    }
    /// Why this pool's volumes cannot be attached or exported (NBD or loop device), `None`
    /// when they can (every driver whose `export_path` is a real file or device).
    fn export_unsupported(&self) -> Option<String> {
        None
    }
    /// Ids of every volume the pool holds (for consistency checks).
    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError>;
    /// Ids of every snapshot the pool holds.
    fn list_snapshots(&self) -> Result<Vec<Uuid>, DriverError>;
    /// Bytes of backing storage the volume's data occupies (file blocks, LV data%).
    fn volume_allocated_bytes(&self, id: Uuid) -> Result<u64, DriverError>;
    /// manage: the storage this pool holds outside our bookkeeping that could be adopted
    /// (Cinder's manageable volumes): for the file driver, the files of its `import/` folder.
    fn list_manageable(&self) -> Result<Vec<Manageable>, DriverError> {
        Ok(Vec::new())
    }
    /// manage: the size in bytes of the unmanaged storage `name` (checked with
    /// [`check_manage_name`]; refused unless it is safe to adopt).
    fn manage_existing_get_size(&self, name: &str) -> Result<u64, DriverError> {
        Err(DriverError::Invalid(format!("this pool's driver cannot adopt existing storage ({name:?})")))
    }
    /// manage: adopt the unmanaged storage `name` as volume or snapshot `id`, by moving it
    /// (never copying); a volume grows to `size_bytes` when shorter. Idempotent: once moved,
    /// running it again succeeds.
    fn manage_existing(&self, kind: ManagedKind, id: Uuid, name: &str, size_bytes: u64) -> Result<(), DriverError> {
        let _ = (kind, id, size_bytes);
        Err(DriverError::Invalid(format!("this pool's driver cannot adopt existing storage ({name:?})")))
    }
    /// manage: let go of volume or snapshot `id` without destroying its data, which stays in
    /// the pool under [`unmanaged_name`] (or the driver's variant of it where its namespace
    /// reserves that name), where a later manage finds it. Idempotent.
    fn unmanage(&self, kind: ManagedKind, id: Uuid) -> Result<(), DriverError> {
        let _ = (kind, id);
        Err(DriverError::Invalid("this pool's driver cannot unmanage storage".into()))
    }
}

/// manage: whether a manage or unmanage works on a volume or a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManagedKind {
    /// A volume.
    Volume,
    /// A snapshot.
    Snapshot,
}

/// manage: one piece of unmanaged storage a pool offers for adoption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manageable {
    /// Its name (Cinder's `reference: {"source-name": …}`).
    pub name: String,
    /// Its size in bytes.
    pub size_bytes: u64,
    /// Why it cannot be adopted (not a regular file, hard-linked…); `None` when it can.
    pub reason_not_safe: Option<String>,
}

/// manage: the name under which an unmanaged volume or snapshot stays in its pool
/// (`volume-<uuid>`, `snapshot-<uuid>`, as Cinder's LVM driver names its LVs).
pub fn unmanaged_name(kind: ManagedKind, id: Uuid) -> String {
    match kind {
        ManagedKind::Volume => format!("volume-{}", id.hyphenated()),
        ManagedKind::Snapshot => format!("snapshot-{}", id.hyphenated()),
    }
}

/// manage: the one exception to "every path inside a pool comes from a UUID": a name an
/// admin gives for storage they placed in the pool. It must be a single plain path component
/// (1 to 255 bytes, no `/`, no NUL, not starting with `.`, printable), so it can never leave
/// the folder it is looked up in.
pub fn check_manage_name(name: &str) -> Result<(), DriverError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && !name.starts_with('.')
        && !name.contains('/')
        && !name.chars().any(|c| c.is_control());
    if ok {
        Ok(())
    } else {
        Err(DriverError::Invalid(format!(
            "invalid source-name {name:?}: it must be a plain file name of 1 to 255 bytes, without '/' and not starting with '.'"
        )))
    }
}
