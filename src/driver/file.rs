//! File driver: a pool is a directory; a volume is `volumes/<uuid>.raw`, a sparse file of exactly
//! its nominal size; a snapshot is `snapshots/<uuid>.raw`, a read-only reflink (FICLONE) of the
//! volume, or a sparse copy where the filesystem has no reflink.
//!
//! Invariants: file names come only from `Uuid` values; new files are built in `tmp/` and
//! renamed into place after `fsync`, then the directory is synced, so a crash leaves either the
//! old or the new file; `tmp/` is emptied at open (nothing runs then). Full copies never use
//! `copy_file_range`/`std::fs::copy` (they reflink on XFS/btrfs).

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{sparse_copy, Capabilities, Capacity, CloneMode, Driver, DriverError};

/// Sparse-file storage in a directory.
#[derive(Debug)]
pub struct FileDriver {
    root: PathBuf,
    caps: Capabilities,
}

fn io(op: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let op = format!("{op} {}", path.display());
    move |e| DriverError::io(op, e)
}

fn sync_dir(dir: &Path) -> Result<(), DriverError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

/// Try FICLONE between two temp files; true when the filesystem supports reflinks.
fn probe_reflink(tmp: &Path) -> bool {
    let src = tmp.join(format!("probe-{}.src", Uuid::new_v4().simple()));
    let dst = tmp.join(format!("probe-{}.dst", Uuid::new_v4().simple()));
    let ok = std::fs::write(&src, b"cinderblock reflink probe").is_ok() && reflink_copy::reflink(&src, &dst).is_ok();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    ok
}

impl FileDriver {
    /// Open (creating directories as needed) the pool at `root`, empty its `tmp/` and probe
    /// reflink support.
    pub fn open(root: &Path) -> Result<FileDriver, DriverError> {
        for sub in ["volumes", "snapshots", "tmp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(io("create", &d))?;
        }
        let tmp = root.join("tmp");
        for entry in std::fs::read_dir(&tmp).map_err(io("read", &tmp))? {
            let entry = entry.map_err(io("read", &tmp))?;
            tracing::warn!(file = %entry.path().display(), "removing a leftover temporary file");
            std::fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
        }
        let reflink = probe_reflink(&tmp);
        Ok(FileDriver { root: root.to_path_buf(), caps: Capabilities { reflink } })
    }

    /// Path of a volume's file.
    pub fn volume_path(&self, id: Uuid) -> PathBuf {
        self.root.join("volumes").join(format!("{}.raw", id.hyphenated()))
    }

    /// Path of a snapshot's file.
    pub fn snapshot_path(&self, id: Uuid) -> PathBuf {
        self.root.join("snapshots").join(format!("{}.raw", id.hyphenated()))
    }

    fn tmp_path(&self, id: Uuid, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{}.{what}", id.hyphenated()))
    }

    /// Build `final_path` from `src` under a temporary name: reflink (linked, when the pool
    /// has it) or sparse copy, grown to `size` bytes (0 = keep the source's size), synced and
    /// renamed into place. `readonly` files get mode 0444.
    fn materialize(
        &self,
        src: &Path,
        tmp: &Path,
        final_path: &Path,
        size: u64,
        mode: CloneMode,
        readonly: bool,
    ) -> Result<(), DriverError> {
        if !src.exists() {
            return Err(DriverError::Missing(src.display().to_string()));
        }
        let _ = std::fs::remove_file(tmp);
        let linked = mode == CloneMode::Linked && self.caps.reflink;
        let s = File::open(src).map_err(io("open", src))?;
        let len = s.metadata().map_err(io("stat", src))?.len();
        // We create the destination ourselves (mode 0644 under the umask) rather than let
        // `reflink_copy::reflink` copy the source's mode: sources may be read-only snapshots.
        let dst = OpenOptions::new().read(true).write(true).create_new(true).open(tmp).map_err(io("create", tmp))?;
        let built = if linked {
            reflink_copy::reflink_file(&s, &dst)
                .and_then(|()| if size > len { dst.set_len(size) } else { Ok(()) })
                .and_then(|()| dst.sync_all())
                .map_err(io("reflink into", tmp))
        } else {
            sparse_copy(&s, &dst, size.max(len)).map(|_| ()).map_err(io("copy into", tmp))
        };
        if let Err(e) = built {
            let _ = std::fs::remove_file(tmp);
            return Err(e);
        }
        if readonly {
            dst.set_permissions(Permissions::from_mode(0o444)).map_err(io("chmod", tmp))?;
        }
        drop(dst);
        tracing::debug!(src = %src.display(), dst = %final_path.display(), linked, "materialized");
        std::fs::rename(tmp, final_path).map_err(io("rename into", final_path))?;
        if let Some(dir) = final_path.parent() {
            sync_dir(dir)?;
        }
        Ok(())
    }

    fn list_dir(&self, sub: &str) -> Result<Vec<Uuid>, DriverError> {
        let dir = self.root.join(sub);
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io("read", &dir))? {
            let entry = entry.map_err(io("read", &dir))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".raw")).and_then(|n| Uuid::try_parse(n).ok()) {
                out.push(id);
            }
        }
        Ok(out)
    }

    fn remove(&self, path: &Path) -> Result<(), DriverError> {
        match std::fs::remove_file(path) {
            Ok(()) => path.parent().map_or(Ok(()), sync_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::io(format!("remove {}", path.display()), e)),
        }
    }
}

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

    fn snapshot_data_path(&self, snapshot: Uuid) -> PathBuf {
        self.snapshot_path(snapshot)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{FileExt, MetadataExt};

    #[test]
    fn create_is_sparse_exact_and_idempotent() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = FileDriver::open(dir.path()).expect("open");
        let id = Uuid::new_v4();
        d.create_volume(id, 3 << 30).expect("create");
        d.create_volume(id, 3 << 30).expect("create again");
        let md = std::fs::metadata(d.volume_path(id)).expect("stat");
        assert_eq!(md.len(), 3 << 30);
        assert!(md.blocks() * 512 < 1 << 20, "allocated {} blocks", md.blocks());
        assert_eq!(d.list_volumes().expect("list"), vec![id]);
        d.delete_volume(id).expect("delete");
        d.delete_volume(id).expect("delete again");
        assert!(!d.volume_path(id).exists());
    }

    fn write(d: &FileDriver, id: Uuid, off: u64, data: &[u8]) {
        let f = OpenOptions::new().write(true).open(d.volume_path(id)).expect("open");
        f.write_all_at(data, off).expect("write");
    }

    fn read(path: &Path, off: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0; len];
        File::open(path).expect("open").read_exact_at(&mut buf, off).expect("read");
        buf
    }

    /// Works on any filesystem (reflink or the copy fallback): content semantics only.
    #[test]
    fn snapshot_clone_revert_extend() {
        let dir = tempfile::tempdir().expect("tmp");
        let d = FileDriver::open(dir.path()).expect("open");
        let (v, s, c) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
        d.create_volume(v, 8 << 20).expect("create");
        write(&d, v, 4096, b"first");
        d.create_snapshot(v, s).expect("snap");
        d.create_snapshot(v, s).expect("snap again");
        assert!(std::fs::metadata(d.snapshot_path(s)).expect("md").permissions().readonly());
        write(&d, v, 4096, b"later");
        d.create_volume_from_snapshot(s, c, 16 << 20, CloneMode::Full).expect("clone");
        assert_eq!(read(&d.volume_path(c), 4096, 5), b"first");
        assert_eq!(std::fs::metadata(d.volume_path(c)).expect("md").len(), 16 << 20);
        d.extend_volume(v, 12 << 20).expect("extend");
        d.revert_to_snapshot(v, s).expect("revert");
        assert_eq!(read(&d.volume_path(v), 4096, 5), b"first");
        assert_eq!(std::fs::metadata(d.volume_path(v)).expect("md").len(), 12 << 20);
        d.delete_snapshot(s).expect("del");
        assert!(d.list_snapshots().expect("list").is_empty());
        assert!(matches!(d.revert_to_snapshot(v, s), Err(DriverError::Missing(_))));
        assert_eq!(std::fs::read_dir(dir.path().join("tmp")).expect("tmp").count(), 0);
    }
}
