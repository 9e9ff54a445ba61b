//! File driver: a pool is a directory; a volume is `volumes/<uuid>.raw`, a sparse file of exactly
//! its nominal size.
//!
//! Invariants: file names come only from `Uuid` values; a create leaves the file at full size
//! with no allocated blocks (`set_len`, never writes); each step syncs the file and the directory
//! so a crash after the job is marked done cannot lose the file.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::{Capabilities, Capacity, Driver, DriverError};

/// Sparse-file storage in a directory.
#[derive(Debug)]
pub struct FileDriver {
    root: PathBuf,
    caps: Capabilities,
}

impl FileDriver {
    /// Open (creating directories as needed) the pool at `root` and probe reflink support.
    pub fn open(root: &Path) -> Result<FileDriver, DriverError> {
        for sub in ["volumes", "snapshots", "tmp"] {
            let d = root.join(sub);
            std::fs::create_dir_all(&d).map_err(|e| DriverError::io(format!("create {}", d.display()), e))?;
        }
        let reflink = probe_reflink(&root.join("tmp"));
        Ok(FileDriver { root: root.to_path_buf(), caps: Capabilities { reflink } })
    }

    /// Path of a volume's file.
    pub fn volume_path(&self, id: Uuid) -> PathBuf {
        self.root.join("volumes").join(format!("{}.raw", id.hyphenated()))
    }
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

fn sync_dir(dir: &Path) -> Result<(), DriverError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| DriverError::io(format!("fsync {}", dir.display()), e))
}

impl Driver for FileDriver {
    fn capabilities(&self) -> Capabilities {
        self.caps
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let st = nix::sys::statvfs::statvfs(&self.root)
            .map_err(|e| DriverError::io(format!("statvfs {}", self.root.display()), e.into()))?;
        let frag = st.fragment_size() as u64;
        Ok(Capacity { total_bytes: st.blocks() as u64 * frag, free_bytes: st.blocks_available() as u64 * frag })
    }

    fn create_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let path = self.volume_path(id);
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| DriverError::io(format!("create {}", path.display()), e))?;
        f.set_len(size_bytes).map_err(|e| DriverError::io(format!("truncate {}", path.display()), e))?;
        f.sync_all().map_err(|e| DriverError::io(format!("fsync {}", path.display()), e))?;
        sync_dir(&self.root.join("volumes"))
    }

    fn delete_volume(&self, id: Uuid) -> Result<(), DriverError> {
        let path = self.volume_path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.root.join("volumes")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::io(format!("remove {}", path.display()), e)),
        }
    }

    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError> {
        let dir = self.root.join("volumes");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(|e| DriverError::io(format!("read {}", dir.display()), e))? {
            let entry = entry.map_err(|e| DriverError::io(format!("read {}", dir.display()), e))?;
            let name = entry.file_name();
            if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".raw")).and_then(|n| Uuid::try_parse(n).ok()) {
                out.push(id);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

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
}
