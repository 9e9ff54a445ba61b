//! The `Driver` operations of the file driver.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::utils::{adoptable, io, sync_dir};
use super::FileDriver;
use crate::driver::{
    check_manage_name, unmanaged_name, Capabilities, Capacity, CloneMode, Driver, DriverError, Manageable, ManagedKind,
};

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

    fn list_manageable(&self) -> Result<Vec<Manageable>, DriverError> {
        let dir = self.root.join("import");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else { continue };
            if check_manage_name(&name).is_err() {
                continue;
            }
            let (size_bytes, reason_not_safe) = match adoptable(&entry.path()) {
                Ok(Ok(len)) => (len, None),
                Ok(Err(why)) => (std::fs::symlink_metadata(entry.path()).map_or(0, |m| m.len()), Some(why)),
                Err(_) => continue,
            };
            out.push(Manageable { name, size_bytes, reason_not_safe });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn manage_existing_get_size(&self, name: &str) -> Result<u64, DriverError> {
        let path = self.import_path(name)?;
        adoptable(&path)?.map_err(|why| DriverError::Invalid(format!("{name:?} cannot be managed: {why}")))
    }

    fn manage_existing(&self, kind: ManagedKind, id: Uuid, name: &str, size_bytes: u64) -> Result<(), DriverError> {
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let src = self.import_path(name)?;
        let dst = match kind {
            ManagedKind::Volume => self.volume_path(id),
            ManagedKind::Snapshot => self.snapshot_path(id),
        };
        if dst.exists() && !src.exists() {
            return Ok(()); // moved by an earlier run of this step
        }
        let len = self.manage_existing_get_size(name)?;
        // O_NOFOLLOW: the file must still be the regular file just checked, not a symlink
        // swapped in since; the inode is checked again after the rename.
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&src)
            .map_err(io("open", &src))?;
        let ino = f.metadata().map_err(io("stat", &src))?.ino();
        if kind == ManagedKind::Volume && len < size_bytes {
            f.set_len(size_bytes).map_err(io("grow", &src))?;
        }
        let mode = if kind == ManagedKind::Snapshot { 0o444 } else { 0o644 };
        f.set_permissions(std::fs::Permissions::from_mode(mode)).map_err(io("chmod", &src))?;
        f.sync_all().map_err(io("fsync", &src))?;
        std::fs::rename(&src, &dst).map_err(io("rename into", &dst))?;
        let moved = std::fs::symlink_metadata(&dst).map_err(io("stat", &dst))?;
        if !moved.file_type().is_file() || moved.ino() != ino {
            // Raced with someone replacing the file: put back what we moved and refuse.
            let _ = std::fs::rename(&dst, &src);
            return Err(DriverError::Invalid(format!("{name:?} changed while it was being managed")));
        }
        for dir in [dst.parent(), src.parent()].into_iter().flatten() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn unmanage(&self, kind: ManagedKind, id: Uuid) -> Result<(), DriverError> {
        let src = match kind {
            ManagedKind::Volume => self.volume_path(id),
            ManagedKind::Snapshot => self.snapshot_path(id),
        };
        let dst = self.import_path(&unmanaged_name(kind, id))?;
        match (src.exists(), dst.exists()) {
            (false, true) => return Ok(()), // moved by an earlier run of this step
            (false, false) => return Err(DriverError::Missing(src.display().to_string())),
            (true, true) => {
                return Err(DriverError::Invalid(format!("{} already exists; not overwriting it", dst.display())))
            }
            (true, false) => {}
        }
        std::fs::rename(&src, &dst).map_err(io("rename into", &dst))?;
        for dir in [dst.parent(), src.parent()].into_iter().flatten() {
            sync_dir(dir)?;
        }
        Ok(())
    }
}
