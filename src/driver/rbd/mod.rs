//! Ceph RBD driver (cargo feature `rbd`): a pool is a RADOS pool of a Ceph cluster, reached
//! through librbd (`ffi.rs` declares the C calls, `rados.rs` wraps them safely). A volume is
//! the image `cbv-<uuid>`, a snapshot the RBD snapshot `cbs-<uuid>` of its volume's image, a
//! linked clone an RBD clone (format 2: no protection, the parent snapshot may be removed
//! while clones need it; it then waits in the trash namespace), a full clone a clone flattened
//! before it gets its name. Every name comes from a validated UUID.
//!
//! Where a snapshot lives: RBD snapshots belong to an image, but our API names a snapshot by
//! its id alone, so each snapshot has a small RADOS object `cinderblock_snap.<uuid>` holding
//! its volume's id (written before the snapshot is taken, removed after it is gone).
//!
//! Deletion: a volume that still has snapshots becomes `cbd-<uuid>` (its data lives on for
//! them; it is removed with its last snapshot); an image whose removal fails because clones
//! still depend on it (trash-namespace snapshots) goes into the RBD trash and is purged once
//! they are gone (after each delete and at open).
//!
//! Crash safety: names encode state. `cbt-<uuid>` is a full copy being built (removed at open
//! and by a rerun, renamed to `cbv-` only when complete); `cbc-<uuid>` a snapshot of a live
//! volume taken for cloning it into volume `<uuid>` (removed once the clone exists); a revert
//! records the volume's size in the image metadata key [`REVERT_SIZE`] before
//! `snap_rollback` and removes it after restoring that size, so a rerun after a crash finishes
//! with the right size.
//!
//! Data access: there is no file for an image (no krbd or rbd-nbd here), so
//! [`Driver::open_volume`](super::Driver::open_volume) goes through librbd and the API refuses
//! to attach or export RBD volumes ([`Driver::export_unsupported`](super::Driver::export_unsupported)).
//! An upload to an image reads a snapshot exported once to `<path>/snapshots/<uuid>.raw`
//! (as Cinder's RBD driver exports to a temporary file), removed with the snapshot.
//!
//! Layout: this file holds the settings, the driver value and opening; `volumes.rs` the
//! `Driver` operations; `utils.rs` the data copies; `aio.rs` asynchronous I/O with completions
//! delivered to tokio (for a future NBD backend).

pub mod aio;
mod ffi;
pub mod rados;
mod utils;
mod volumes;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use uuid::Uuid;

use super::DriverError;
use rados::{ClusterKey, IoCtx};

/// Settings of one RBD pool (from the pool's `rbd` table).
#[derive(Debug, Clone)]
pub struct RbdSettings {
    /// Our pool's name (for messages).
    pub pool: String,
    /// The `ceph.conf` naming the monitors.
    pub conf: PathBuf,
    /// The Ceph client id (`cinderblock` = `client.cinderblock`).
    pub client_id: String,
    /// The client's keyring, when not the one `ceph.conf` names.
    pub keyring: Option<PathBuf>,
    /// The RADOS pool holding the images.
    pub rbd_pool: String,
    /// A local directory for snapshot exports (image uploads) and their temporary files.
    pub work_dir: PathBuf,
    /// RBD object size, a power of two from 64 KiB to 32 MiB (Cinder's `rbd_store_chunk_size`).
    pub object_size_bytes: u64,
    /// A linked clone deeper than this many parents is flattened (Cinder's
    /// `rbd_max_clone_depth`).
    pub max_clone_depth: u32,
}

/// Volumes as RBD images in one RADOS pool.
#[derive(Debug)]
pub struct RbdDriver {
    s: RbdSettings,
    io: Arc<IoCtx>,
    order: u8,
}

/// Name prefixes: volume, snapshot, deleted volume kept for its snapshots, full copy being
/// built, snapshot of a live volume being cloned.
pub(crate) const VOL: &str = "cbv-";
pub(crate) const SNAP: &str = "cbs-";
pub(crate) const KEPT: &str = "cbd-";
pub(crate) const BUILD: &str = "cbt-";
pub(crate) const CLONE_SRC: &str = "cbc-";
/// Image metadata key of a revert in progress: the size to restore after the rollback.
pub const REVERT_SIZE: &str = "cinderblock.revert_size";
/// Prefix of the RADOS objects saying which volume a snapshot belongs to.
const SNAP_INDEX: &str = "cinderblock_snap.";

/// `prefix<uuid>`.
pub(crate) fn name(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.hyphenated())
}

pub(crate) fn io_err(op: impl Into<String>) -> impl FnOnce(std::io::Error) -> DriverError {
    let op = op.into();
    move |e| DriverError::io(op, e)
}

impl RbdDriver {
    /// Connect (sharing the cluster handle of any pool with the same configuration), open the
    /// RADOS pool, remove half-built images and temporary files a crash left, and purge the
    /// trash of images no clone needs any more.
    pub fn open(s: RbdSettings) -> Result<RbdDriver, DriverError> {
        let o = s.object_size_bytes;
        if !o.is_power_of_two() || !(64 << 10..=32 << 20).contains(&o) {
            return Err(DriverError::Invalid(format!(
                "pool {}: the RBD object size must be a power of two from 64 KiB to 32 MiB, not {o}",
                s.pool
            )));
        }
        let order = o.trailing_zeros() as u8;
        let key = ClusterKey { conf: s.conf.clone(), client_id: s.client_id.clone(), keyring: s.keyring.clone() };
        let cluster = rados::Cluster::connect(&key)
            .map_err(|e| DriverError::Invalid(format!("pool {}: ceph cluster: {e}", s.pool)))?;
        let io = cluster.ioctx(&s.rbd_pool).map_err(|e| DriverError::Invalid(format!("pool {}: {e}", s.pool)))?;
        for d in [s.work_dir.join("snapshots"), s.work_dir.join("tmp")] {
            std::fs::create_dir_all(&d).map_err(io_err(format!("create {}", d.display())))?;
        }
        let d = RbdDriver { s, io, order };
        let tmp = d.s.work_dir.join("tmp");
        for e in std::fs::read_dir(&tmp).map_err(io_err(format!("list {}", tmp.display())))?.flatten() {
            let _ = std::fs::remove_file(e.path());
        }
        for img in d.images()? {
            if img.starts_with(BUILD) {
                tracing::warn!(image = %img, "removing a half-built image left by an interrupted job");
                d.remove_or_trash(&img)?;
            }
        }
        d.purge_trash();
        Ok(d)
    }

    /// Every image name in the pool.
    pub(crate) fn images(&self) -> Result<Vec<String>, DriverError> {
        self.io.list_images().map_err(io_err(format!("list the images of RADOS pool {}", self.s.rbd_pool)))
    }

    /// `rbd_pool/name`, for messages.
    pub(crate) fn full(&self, name: &str) -> String {
        format!("{}/{name}", self.s.rbd_pool)
    }

    /// The I/O context (for tests and tools).
    pub fn ioctx(&self) -> &Arc<IoCtx> {
        &self.io
    }

    /// Open volume `id` for asynchronous I/O (the NBD backend's building block; see `aio`).
    pub fn open_async(&self, id: Uuid) -> Result<aio::AioImage, DriverError> {
        let vol = name(VOL, id);
        let img = self.io.open(&vol, None, false).map_err(|e| {
            if e.raw_os_error() == Some(nix::errno::Errno::ENOENT as i32) {
                DriverError::Missing(self.full(&vol))
            } else {
                DriverError::io(format!("open {}", self.full(&vol)), e)
            }
        })?;
        Ok(aio::AioImage::new(img))
    }

    /// The local work directory.
    pub fn work_dir(&self) -> &Path {
        &self.s.work_dir
    }

    /// The RADOS object naming a snapshot's volume.
    pub(crate) fn index_oid(snapshot: Uuid) -> String {
        format!("{SNAP_INDEX}{}", snapshot.hyphenated())
    }
}
