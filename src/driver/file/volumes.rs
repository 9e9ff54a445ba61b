//! The `Driver` operations of the file driver.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::utils::{io, sync_dir};
use super::FileDriver;
use crate::driver::{Capabilities, Capacity, CloneMode, Driver, DriverError};

impl Driver for FileDriver {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let st = nix::sys::statvfs::statvfs(&self.root).map_err(|e| io("statvfs", &self.root)(e.into()))?;
        let frag = st.fragment_size() as u64;
        Ok(Capacity { total_bytes: st.blocks() as u64 * frag, free_bytes: st.blocks_available() as u64 * frag })
    }

    fn create_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let path = self.volume_path(id);
        let f = OpenOptions::new().write(true).create(true).truncate(false).open(&path).map_err(io("create", &path))?;
        f.set_len(size_bytes).map_err(io("truncate", &path))?;
        f.sync_all().map_err(io("fsync", &path))?;
        sync_dir(&self.root.join("volumes"))
    }

    fn delete_volume(&self, id: Uuid) -> Result<(), DriverError> {
        self.remove(&self.volume_path(id))
    }

    fn extend_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let path = self.volume_path(id);
        let f = OpenOptions::new().write(true).open(&path).map_err(io("open", &path))?;
        if f.metadata().map_err(io("stat", &path))?.len() < size_bytes {
            f.set_len(size_bytes).map_err(io("grow", &path))?;
        }
        f.sync_all().map_err(io("fsync", &path))
    }

    fn create_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let final_path = self.snapshot_path(snapshot);
        if final_path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path(snapshot, "snap");
        self.materialize(&self.volume_path(volume), &tmp, &final_path, 0, CloneMode::Linked, true)
    }

    fn delete_snapshot(&self, snapshot: Uuid) -> Result<(), DriverError> {
        self.remove(&self.snapshot_path(snapshot))
    }

    fn create_volume_from_snapshot(
        &self,
        snapshot: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError> {
        let final_path = self.volume_path(volume);
        if final_path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path(volume, "clone");
        self.materialize(&self.snapshot_path(snapshot), &tmp, &final_path, size_bytes, mode, false)
    }

    fn create_cloned_volume(
        &self,
        source: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError> {
        let final_path = self.volume_path(volume);
        if final_path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path(volume, "clone");
        let src = self.volume_path(source);
        if mode == CloneMode::Full && self.caps.reflink {
            // Copy from a point-in-time reflink, not from a volume that may change underneath.
            let frozen = self.tmp_path(volume, "source");
            self.materialize(&src, &self.tmp_path(volume, "source.tmp"), &frozen, 0, CloneMode::Linked, true)?;
            let r = self.materialize(&frozen, &tmp, &final_path, size_bytes, CloneMode::Full, false);
            let _ = std::fs::remove_file(&frozen);
            return r;
        }
        self.materialize(&src, &tmp, &final_path, size_bytes, mode, false)
    }

    fn copy_volume_data(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        // Always a sparse byte copy: the source lives on another file system (reflinks cannot
        // cross it) and a migrated volume must share nothing with what it leaves behind.
        let tmp = self.tmp_path(volume, "migrate");
        self.materialize(src, &tmp, &self.volume_path(volume), size_bytes, CloneMode::Full, false)
    }

    fn create_volume_from_file(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        let final_path = self.volume_path(volume);
        if final_path.exists() {
            return Ok(());
        }
        let tmp = self.tmp_path(volume, "image");
        self.materialize(src, &tmp, &final_path, size_bytes, CloneMode::Linked, false)
    }

    fn revert_to_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let vol = self.volume_path(volume);
        let size = std::fs::metadata(&vol).map_err(io("stat", &vol))?.len();
        let tmp = self.tmp_path(volume, "revert");
        self.materialize(&self.snapshot_path(snapshot), &tmp, &vol, size, CloneMode::Linked, false)
    }

    fn snapshot_data_path(&self, snapshot: Uuid) -> Result<PathBuf, DriverError> {
        let p = self.snapshot_path(snapshot);
        if p.is_file() {
            Ok(p)
        } else {
            Err(DriverError::Missing(format!("snapshot file {}", p.display())))
        }
    }

    fn export_path(&self, id: Uuid) -> PathBuf {
        self.volume_path(id)
    }

    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError> {
        self.list_dir("volumes")
    }

    fn list_snapshots(&self) -> Result<Vec<Uuid>, DriverError> {
        self.list_dir("snapshots")
    }

    fn volume_allocated_bytes(&self, id: Uuid) -> Result<u64, DriverError> {
        use std::os::unix::fs::MetadataExt;
        let path = self.volume_path(id);
        Ok(std::fs::metadata(&path).map_err(io("stat", &path))?.blocks() * 512)
    }
}
