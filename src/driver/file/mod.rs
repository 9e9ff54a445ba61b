//! File driver: a pool is a directory; a volume is `volumes/<uuid>.raw`, a sparse file of exactly
//! its nominal size; a snapshot is `snapshots/<uuid>.raw`, a read-only reflink (FICLONE) of the
//! volume, or a sparse copy where the filesystem has no reflink.
//!
//! Invariants: file names come only from `Uuid` values; new files are built in `tmp/` and
//! renamed into place after `fsync`, then the directory is synced, so a crash leaves either the
//! old or the new file; `tmp/` is emptied at open (nothing runs then). Full copies never use
//! `copy_file_range`/`std::fs::copy` (they reflink on XFS/btrfs).
//!
//! `import/` holds files outside our bookkeeping: an admin places a raw file there and adopts
//! it with `os-volume-manage` (moved in by rename, never copied); `os-unmanage` moves a volume
//! or snapshot there as `volume-<uuid>` / `snapshot-<uuid>` without touching its data. Names
//! in `import/` are the one kind of pool path not built from a UUID; they are checked by
//! [`crate::driver::check_manage_name`] and only regular, singly-linked files are adopted.
//!
//! Layout (as Incus splits its drivers): this file holds the driver value and opening a pool;
//! `volumes.rs` the `Driver` operations; `utils.rs` the helpers they share.

mod utils;
mod volumes;

use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{Capabilities, DriverError};
use utils::{io, probe_reflink};

/// Sparse-file storage in a directory.
#[derive(Debug)]
pub struct FileDriver {
    root: PathBuf,
    caps: Capabilities,
}

impl FileDriver {
    /// Open (creating directories as needed) the pool at `root`, empty its `tmp/` and probe
    /// reflink support.
    pub fn open(root: &Path) -> Result<FileDriver, DriverError> {
        for sub in ["volumes", "snapshots", "tmp", "import"] {
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

    /// Path of a file in `import/` (the name checked by `check_manage_name` first).
    fn import_path(&self, name: &str) -> Result<PathBuf, DriverError> {
        super::check_manage_name(name)?;
        Ok(self.root.join("import").join(name))
    }

    fn tmp_path(&self, id: Uuid, what: &str) -> PathBuf {
        self.root.join("tmp").join(format!("{}.{what}", id.hyphenated()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::driver::{CloneMode, Driver};
    use std::fs::{File, OpenOptions};
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
