//! Helpers of the file driver: error mapping, directory sync, the reflink probe, and building
//! a file under a temporary name then renaming it into place.

use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use uuid::Uuid;

use super::FileDriver;
use crate::driver::{sparse_copy, CloneMode, DriverError};

pub(super) fn io(op: &str, path: &Path) -> impl FnOnce(std::io::Error) -> DriverError {
    let op = format!("{op} {}", path.display());
    move |e| DriverError::io(op, e)
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), DriverError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io("fsync", dir))
}

/// Try FICLONE between two temp files; true when the filesystem supports reflinks.
pub(super) fn probe_reflink(tmp: &Path) -> bool {
    let src = tmp.join(format!("probe-{}.src", Uuid::new_v4().simple()));
    let dst = tmp.join(format!("probe-{}.dst", Uuid::new_v4().simple()));
    let ok = std::fs::write(&src, b"cinderblock reflink probe").is_ok() && reflink_copy::reflink(&src, &dst).is_ok();
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
    ok
}

impl FileDriver {
    /// Build `final_path` from `src` under a temporary name: reflink (linked, when the pool
    /// has it) or sparse copy, grown to `size` bytes (0 = keep the source's size), synced and
    /// renamed into place. `readonly` files get mode 0444.
    pub(super) fn materialize(
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

    pub(super) fn list_dir(&self, sub: &str) -> Result<Vec<Uuid>, DriverError> {
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

    pub(super) fn remove(&self, path: &Path) -> Result<(), DriverError> {
        match std::fs::remove_file(path) {
            Ok(()) => path.parent().map_or(Ok(()), sync_dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(DriverError::io(format!("remove {}", path.display()), e)),
        }
    }
}

/// manage: why the file at `path` (not followed if a symlink) cannot be adopted, or its size.
/// Only a regular file with one link qualifies: a symlink could point anywhere on the host,
/// and a hard link would leave the volume's data reachable under another name.
pub(super) fn adoptable(path: &Path) -> Result<Result<u64, String>, DriverError> {
    use std::os::unix::fs::MetadataExt;
    let md = match std::fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(DriverError::Missing(path.display().to_string()))
        }
        Err(e) => return Err(DriverError::io(format!("stat {}", path.display()), e)),
    };
    if !md.file_type().is_file() {
        return Ok(Err("not a regular file".into()));
    }
    if md.nlink() != 1 {
        return Ok(Err(format!("the file has {} hard links", md.nlink())));
    }
    if md.len() == 0 {
        return Ok(Err("the file is empty".into()));
    }
    Ok(Ok(md.len()))
}
