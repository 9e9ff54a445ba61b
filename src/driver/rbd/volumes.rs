//! The `Driver` operations of the RBD driver (see the module docs of `rbd` for names, the
//! snapshot index, deletion through the trash and the crash-safety of each step).

use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use uuid::Uuid;

use super::rados::Image;
use super::utils::{file_to_image, image_to_file};
use super::{io_err, name, RbdDriver, BUILD, CLONE_SRC, KEPT, REVERT_SIZE, SNAP, VOL};
use crate::driver::{Capabilities, Capacity, CloneMode, Driver, DriverError, VolumeIo};

fn is(e: &io::Error, errno: Errno) -> bool {
    e.raw_os_error() == Some(errno as i32)
}

/// Treat "already there" as success.
fn exists_ok(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if is(&e, Errno::EEXIST) => Ok(()),
        r => r,
    }
}

impl RbdDriver {
    /// Open `image` read-write at its head; `None` when there is no such image.
    fn try_open(&self, image: &str) -> Result<Option<Image>, DriverError> {
        match self.io.open(image, None, false) {
            Ok(i) => Ok(Some(i)),
            Err(e) if is(&e, Errno::ENOENT) => Ok(None),
            Err(e) => Err(DriverError::io(format!("open {}", self.full(image)), e)),
        }
    }

    fn must_open(&self, image: &str) -> Result<Image, DriverError> {
        self.try_open(image)?.ok_or_else(|| DriverError::Missing(self.full(image)))
    }

    /// The image holding `snapshot` (the volume's, or its kept copy after the volume was
    /// deleted), opened; `None` when the snapshot does not exist.
    fn snap_home(&self, snapshot: Uuid) -> Result<Option<(String, Image)>, DriverError> {
        let oid = Self::index_oid(snapshot);
        let Some(raw) = self.io.read(&oid, 64).map_err(io_err(format!("read {oid}")))? else {
            return Ok(None);
        };
        let vol = std::str::from_utf8(&raw)
            .ok()
            .and_then(|s| Uuid::try_parse(s.trim()).ok())
            .ok_or_else(|| DriverError::Invalid(format!("{oid} does not hold a volume id")))?;
        let snap = name(SNAP, snapshot);
        for prefix in [VOL, KEPT] {
            let img = name(prefix, vol);
            if let Some(i) = self.try_open(&img)? {
                if i.snap_exists(&snap).map_err(io_err(format!("snapshots of {}", self.full(&img))))? {
                    return Ok(Some((img, i)));
                }
            }
        }
        Ok(None)
    }

    /// Remove an image; when clones still depend on it (its snapshots wait in the trash
    /// namespace) move it to the RBD trash instead, purged when they are gone.
    pub(crate) fn remove_or_trash(&self, image: &str) -> Result<(), DriverError> {
        match self.io.remove_image(image) {
            Ok(()) => Ok(()),
            Err(e) if is(&e, Errno::ENOENT) => Ok(()),
            Err(e) if is(&e, Errno::ENOTEMPTY) || is(&e, Errno::EBUSY) => {
                tracing::info!(image = %self.full(image), "clones depend on it: moving it to the RBD trash");
                self.io.trash_move(image).map_err(io_err(format!("move {} to the trash", self.full(image))))
            }
            Err(e) => Err(DriverError::io(format!("remove {}", self.full(image)), e)),
        }
    }

    /// Remove the images of ours from the trash that no clone needs any more (the others
    /// refuse and stay).
    pub(crate) fn purge_trash(&self) {
        let entries = match self.io.trash_list() {
            Ok(e) => e,
            Err(e) => return tracing::warn!(error = %e, "cannot list the RBD trash"),
        };
        for t in entries.iter().filter(|t| t.name.starts_with(VOL) || t.name.starts_with(KEPT)) {
            match self.io.trash_remove(&t.id) {
                Ok(()) => tracing::info!(image = %t.name, id = %t.id, "purged from the RBD trash"),
                Err(e) => tracing::debug!(image = %t.name, error = %e, "still needed by clones"),
            }
        }
    }

    /// Make `volume` (named `target`) a clone of `parent@snap` of at least `size` bytes,
    /// flattened when `flatten` or when deeper than the clone-depth limit.
    fn clone_to(&self, parent: &str, snap: &str, target: &str, size: u64, flatten: bool) -> Result<(), DriverError> {
        exists_ok(self.io.clone_image(parent, snap, target, self.order))
            .map_err(io_err(format!("clone {}@{snap} as {target}", self.full(parent))))?;
        let img = self.must_open(target)?;
        if flatten {
            if img.size().map_err(io_err(format!("size of {target}")))? < size {
                img.resize(size).map_err(io_err(format!("resize {target}")))?;
            }
            return img.flatten().map_err(io_err(format!("flatten {target}")));
        }
        drop(img);
        self.finish(target, size)
    }

    /// The tail of a linked clone (idempotent): at least `size` bytes, flattened when deeper
    /// than the clone-depth limit.
    fn finish(&self, image: &str, size: u64) -> Result<(), DriverError> {
        let img = self.must_open(image)?;
        if img.size().map_err(io_err(format!("size of {image}")))? < size {
            img.resize(size).map_err(io_err(format!("resize {image}")))?;
        }
        if self.depth(&img)? > self.s.max_clone_depth {
            img.flatten().map_err(io_err(format!("flatten {image}")))?;
        }
        Ok(())
    }

    /// How many parents an image has (stops counting past the limit).
    fn depth(&self, img: &Image) -> Result<u32, DriverError> {
        let mut depth = 0;
        let mut parent = img.parent().map_err(io_err("parent of a clone"))?;
        while let Some(p) = parent {
            depth += 1;
            if depth > self.s.max_clone_depth {
                break;
            }
            let up = self.io.open_by_id(&p.image_id).map_err(io_err(format!("open parent {}", p.image_name)))?;
            parent = up.parent().map_err(io_err(format!("parent of {}", p.image_name)))?;
        }
        Ok(depth)
    }

    /// Build `cbt-<volume>` of `size` bytes from the local file `src`, then rename it to
    /// `cbv-<volume>` (replacing one that exists).
    fn copy_in(&self, volume: Uuid, src: &Path, size: u64) -> Result<(), DriverError> {
        let (build, vol) = (name(BUILD, volume), name(VOL, volume));
        let f = File::open(src).map_err(io_err(format!("open {}", src.display())))?;
        let len = f.metadata().map_err(io_err(format!("stat {}", src.display())))?.len();
        // A block device reports 0 in its metadata; its size is where a seek to the end lands.
        let len = if len == 0 {
            nix::unistd::lseek(&f, 0, nix::unistd::Whence::SeekEnd).map(|n| n as u64).unwrap_or(0)
        } else {
            len
        };
        self.remove_or_trash(&build)?;
        self.io.create(&build, size, self.order).map_err(io_err(format!("create {}", self.full(&build))))?;
        {
            let img = self.must_open(&build)?;
            let n = file_to_image(&f, &img, len.min(size)).map_err(io_err(format!(
                "copy {} into {}",
                src.display(),
                self.full(&build)
            )))?;
            tracing::debug!(src = %src.display(), dst = %build, data_bytes = n, "copied a file into an image");
        }
        self.remove_or_trash(&vol)?;
        self.io.rename(&build, &vol).map_err(io_err(format!("rename {build} to {vol}")))
    }

    /// Ids of our images with `prefix`.
    fn list(&self, images: &[String], prefix: &str) -> Vec<Uuid> {
        images.iter().filter_map(|n| n.strip_prefix(prefix).and_then(|u| Uuid::try_parse(u).ok())).collect()
    }

    fn snapshot_file(&self, snapshot: Uuid) -> PathBuf {
        self.s.work_dir.join("snapshots").join(format!("{}.raw", snapshot.hyphenated()))
    }
}

/// Byte access to an image through librbd.
struct RbdIo(Image);

impl VolumeIo for RbdIo {
    fn size(&self) -> io::Result<u64> {
        self.0.size()
    }
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.0.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.0.write_at(buf, off)
    }
    fn flush(&self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Driver for RbdDriver {
    fn capabilities(&self) -> Capabilities {
        // Snapshots and clones are copy-on-write and O(1), like reflinks.
        Capabilities { reflink: true }
    }

    /// What the RADOS pool can hold, after replication: the cluster's raw size divided by the
    /// pool's replica count (stable while volumes are written), and free = the pool's
    /// `max_avail` from `ceph df` (replication and the full ratio already counted), as
    /// Cinder's RBD driver reports it. The statistics need a running ceph-mgr.
    fn capacity(&self) -> Result<Capacity, DriverError> {
        let cluster = self.io.cluster();
        let (raw_total, _) = cluster.stat().map_err(io_err("cluster stat"))?;
        let pool = serde_json::to_string(&self.s.rbd_pool).unwrap_or_default();
        let size_cmd = format!(r#"{{"prefix": "osd pool get", "pool": {pool}, "var": "size", "format": "json"}}"#);
        let size_out = cluster.mon_command(&size_cmd).map_err(io_err("osd pool get size"))?;
        let replicas = serde_json::from_str::<serde_json::Value>(&size_out)
            .ok()
            .and_then(|v| v["size"].as_u64())
            .filter(|n| *n > 0)
            .ok_or_else(|| DriverError::Invalid(format!("osd pool get size answered {size_out:?}")))?;
        let df = cluster.mon_command(r#"{"prefix": "df", "format": "json"}"#).map_err(io_err("ceph df"))?;
        let df: serde_json::Value =
            serde_json::from_str(&df).map_err(|e| DriverError::Invalid(format!("ceph df answered no JSON: {e}")))?;
        let max_avail = df["pools"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == self.s.rbd_pool.as_str()))
            .and_then(|p| p["stats"]["max_avail"].as_u64())
            .ok_or_else(|| DriverError::Invalid(format!("ceph df does not list pool {}", self.s.rbd_pool)))?;
        let total = raw_total / replicas;
        Ok(Capacity { total_bytes: total, free_bytes: max_avail.min(total) })
    }

    fn create_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let vol = name(VOL, id);
        exists_ok(self.io.create(&vol, size_bytes, self.order)).map_err(io_err(format!("create {}", self.full(&vol))))
    }

    fn delete_volume(&self, id: Uuid) -> Result<(), DriverError> {
        let vol = name(VOL, id);
        let Some(img) = self.try_open(&vol)? else { return Ok(()) };
        let snaps = img.snaps().map_err(io_err(format!("snapshots of {}", self.full(&vol))))?;
        // Leftovers of an interrupted clone of this live volume (they go to the trash namespace
        // while their clones exist).
        for s in snaps.iter().filter(|s| s.name.starts_with(CLONE_SRC)) {
            img.snap_remove(&s.name).map_err(io_err(format!("remove {}@{}", self.full(&vol), s.name)))?;
        }
        let keep = snaps.iter().any(|s| s.name.starts_with(SNAP));
        drop(img);
        if keep {
            // Its snapshots outlive it: keep the data under a name that is no volume's.
            let kept = name(KEPT, id);
            self.io.rename(&vol, &kept).map_err(io_err(format!("rename {vol} to {kept}")))?;
        } else {
            self.remove_or_trash(&vol)?;
        }
        self.purge_trash();
        Ok(())
    }

    fn extend_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let vol = name(VOL, id);
        let img = self.must_open(&vol)?;
        if img.size().map_err(io_err(format!("size of {vol}")))? < size_bytes {
            img.resize(size_bytes).map_err(io_err(format!("resize {}", self.full(&vol))))?;
        }
        Ok(())
    }

    fn create_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let (vol, snap) = (name(VOL, volume), name(SNAP, snapshot));
        let img = self.must_open(&vol)?;
        if img.snap_exists(&snap).map_err(io_err(format!("snapshots of {vol}")))? {
            return Ok(());
        }
        let oid = Self::index_oid(snapshot);
        self.io.write_full(&oid, volume.hyphenated().to_string().as_bytes()).map_err(io_err(format!("write {oid}")))?;
        exists_ok(img.snap_create(&snap)).map_err(io_err(format!("snapshot {}@{snap}", self.full(&vol))))
    }

    fn delete_snapshot(&self, snapshot: Uuid) -> Result<(), DriverError> {
        let snap = name(SNAP, snapshot);
        if let Some((home, img)) = self.snap_home(snapshot)? {
            match img.snap_remove(&snap) {
                Err(e) if !is(&e, Errno::ENOENT) => {
                    return Err(DriverError::io(format!("remove {}@{snap}", self.full(&home)), e))
                }
                _ => {}
            }
            if home.starts_with(KEPT) {
                let left = img.snaps().map_err(io_err(format!("snapshots of {home}")))?;
                drop(img);
                if !left.iter().any(|s| s.name.starts_with(SNAP)) {
                    self.remove_or_trash(&home)?;
                }
            }
        }
        let file = self.snapshot_file(snapshot);
        match std::fs::remove_file(&file) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                return Err(DriverError::io(format!("remove {}", file.display()), e))
            }
            _ => {}
        }
        let oid = Self::index_oid(snapshot);
        self.io.remove(&oid).map_err(io_err(format!("remove {oid}")))?;
        self.purge_trash();
        Ok(())
    }

    fn create_volume_from_snapshot(
        &self,
        snapshot: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError> {
        let (vol, snap) = (name(VOL, volume), name(SNAP, snapshot));
        if self.try_open(&vol)?.is_some() {
            // Done before (a rerun): a linked clone may still miss its size or flattening (a
            // full one gets its name only when complete).
            return self.finish(&vol, size_bytes);
        }
        let Some((home, img)) = self.snap_home(snapshot)? else {
            return Err(DriverError::Missing(format!("snapshot {snapshot}")));
        };
        drop(img);
        match mode {
            CloneMode::Linked => self.clone_to(&home, &snap, &vol, size_bytes, false),
            CloneMode::Full => {
                let build = name(BUILD, volume);
                self.remove_or_trash(&build)?;
                self.clone_to(&home, &snap, &build, size_bytes, true)?;
                self.io.rename(&build, &vol).map_err(io_err(format!("rename {build} to {vol}")))
            }
        }
    }

    fn create_cloned_volume(
        &self,
        source: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError> {
        let (src, vol, frozen) = (name(VOL, source), name(VOL, volume), name(CLONE_SRC, volume));
        if self.try_open(&vol)?.is_some() {
            // A rerun: the clone exists; finish its size and depth, and drop the snapshot if
            // still there (the source may be gone by now).
            self.finish(&vol, size_bytes)?;
            if let Some(src_img) = self.try_open(&src)? {
                if src_img.snap_exists(&frozen).map_err(io_err(format!("snapshots of {src}")))? {
                    src_img.snap_remove(&frozen).map_err(io_err(format!("remove {}@{frozen}", self.full(&src))))?;
                }
            }
            return Ok(());
        }
        let src_img = self.must_open(&src)?;
        // A point-in-time snapshot of the live volume to clone from.
        if !src_img.snap_exists(&frozen).map_err(io_err(format!("snapshots of {src}")))? {
            src_img.snap_create(&frozen).map_err(io_err(format!("snapshot {}@{frozen}", self.full(&src))))?;
        }
        match mode {
            CloneMode::Linked => self.clone_to(&src, &frozen, &vol, size_bytes, false)?,
            CloneMode::Full => {
                let build = name(BUILD, volume);
                self.remove_or_trash(&build)?;
                self.clone_to(&src, &frozen, &build, size_bytes, true)?;
                self.io.rename(&build, &vol).map_err(io_err(format!("rename {build} to {vol}")))?;
            }
        }
        // The snapshot is not ours to keep: with a linked clone it waits in the trash
        // namespace until the clone is gone or flattened.
        if src_img.snap_exists(&frozen).map_err(io_err(format!("snapshots of {src}")))? {
            src_img.snap_remove(&frozen).map_err(io_err(format!("remove {}@{frozen}", self.full(&src))))?;
        }
        Ok(())
    }

    fn copy_volume_data(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        self.copy_in(volume, src, size_bytes)
    }

    fn create_volume_from_file(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        if self.try_open(&name(VOL, volume))?.is_some() {
            return Ok(());
        }
        self.copy_in(volume, src, size_bytes)
    }

    /// The snapshot exported once into `<path>/snapshots/<uuid>.raw` (sparse; built in
    /// `tmp/` and renamed, so the file is complete when it exists; a snapshot never changes).
    fn snapshot_data_path(&self, snapshot: Uuid) -> Result<PathBuf, DriverError> {
        let file = self.snapshot_file(snapshot);
        if file.exists() {
            return Ok(file);
        }
        let Some((home, _)) = self.snap_home(snapshot)? else {
            return Err(DriverError::Missing(format!("snapshot {snapshot}")));
        };
        let snap = name(SNAP, snapshot);
        let img =
            self.io.open(&home, Some(&snap), true).map_err(io_err(format!("open {}@{snap}", self.full(&home))))?;
        let size = img.size().map_err(io_err(format!("size of {home}@{snap}")))?;
        // A name of its own per call: two uploads of one snapshot never write the same file.
        let tmp =
            self.s.work_dir.join("tmp").join(format!("{}.{}.raw", snapshot.hyphenated(), Uuid::new_v4().simple()));
        let r = (|| {
            let f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&tmp)
                .map_err(io_err(format!("create {}", tmp.display())))?;
            f.set_len(size).map_err(io_err(format!("truncate {}", tmp.display())))?;
            image_to_file(&img, &f).map_err(io_err(format!("export {home}@{snap} to {}", tmp.display())))?;
            std::fs::rename(&tmp, &file).map_err(io_err(format!("rename {} to {}", tmp.display(), file.display())))
        })();
        if r.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        r.map(|()| file)
    }

    fn revert_to_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let (vol, snap) = (name(VOL, volume), name(SNAP, snapshot));
        let img = self.must_open(&vol)?;
        if !img.snap_exists(&snap).map_err(io_err(format!("snapshots of {vol}")))? {
            return Err(DriverError::Missing(format!("snapshot {snapshot} of volume {volume}")));
        }
        // Step 1: remember the size (a rerun finds the value of the first run).
        let size = match img.metadata_get(REVERT_SIZE).map_err(io_err(format!("metadata of {vol}")))? {
            Some(v) => v.parse::<u64>().map_err(|_| DriverError::Invalid(format!("{vol}: bad {REVERT_SIZE} {v:?}")))?,
            None => {
                let s = img.size().map_err(io_err(format!("size of {vol}")))?;
                img.metadata_set(REVERT_SIZE, &s.to_string()).map_err(io_err(format!("metadata of {vol}")))?;
                s
            }
        };
        // Step 2: roll the content back (object by object; a rerun rolls back again).
        img.snap_rollback(&snap).map_err(io_err(format!("roll {} back to {snap}", self.full(&vol))))?;
        // Step 3: the volume keeps its size (the rollback gave it the snapshot's).
        if img.size().map_err(io_err(format!("size of {vol}")))? != size {
            img.resize(size).map_err(io_err(format!("resize {vol}")))?;
        }
        // Step 4: done.
        img.metadata_remove(REVERT_SIZE).map_err(io_err(format!("metadata of {vol}")))
    }

    /// Never a file: RBD images are reached through librbd (see `open_volume`); exports and
    /// attachments of RBD volumes are refused (`export_unsupported`).
    fn export_path(&self, id: Uuid) -> PathBuf {
        self.s.work_dir.join("no-local-device").join(id.hyphenated().to_string())
    }

    fn open_volume(&self, id: Uuid, write: bool) -> Result<Box<dyn VolumeIo>, DriverError> {
        let vol = name(VOL, id);
        let img = self.io.open(&vol, None, !write).map_err(|e| {
            if is(&e, Errno::ENOENT) {
                DriverError::Missing(self.full(&vol))
            } else {
                DriverError::io(format!("open {}", self.full(&vol)), e)
            }
        })?;
        Ok(Box::new(RbdIo(img)))
    }

    fn export_unsupported(&self) -> Option<String> {
        Some(format!(
            "volumes of the RBD pool {} cannot be attached or exported yet: there is no RBD backend in the NBD \
             server, and a loop device needs a local file (krbd and rbd-nbd need kernel modules)",
            self.s.pool
        ))
    }

    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError> {
        Ok(self.list(&self.images()?, VOL))
    }

    fn list_snapshots(&self) -> Result<Vec<Uuid>, DriverError> {
        let images = self.images()?;
        let mut out = Vec::new();
        for img in images.iter().filter(|n| n.starts_with(VOL) || n.starts_with(KEPT)) {
            let Some(i) = self.try_open(img)? else { continue };
            let snaps = i.snaps().map_err(io_err(format!("snapshots of {img}")))?;
            out.extend(snaps.iter().filter_map(|s| s.name.strip_prefix(SNAP).and_then(|u| Uuid::try_parse(u).ok())));
        }
        Ok(out)
    }

    /// Objects the image itself holds (fast-diff's object map; a clone's parent data is not
    /// counted), times the object size.
    fn volume_allocated_bytes(&self, id: Uuid) -> Result<u64, DriverError> {
        let vol = name(VOL, id);
        let img = self.must_open(&vol)?;
        let ext = img.extents(false, true).map_err(io_err(format!("usage of {}", self.full(&vol))))?;
        Ok(ext.iter().map(|(_, l)| l).sum())
    }
}
