//! The `Driver` operations of the LVM driver (see the module docs of `lvm` for names, tags and
//! the crash-safety of each multi-step operation).

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::command::{LvRow, VgGuard};
use super::utils::{block_copy, discard, size_of};
use super::{lv_name, LvmDriver, ASIDE, BUILD, FROZEN, SNAP, VOL};
use crate::driver::{Capabilities, Capacity, CloneMode, Driver, DriverError, Manageable, ManagedKind};

fn bytes(n: u64) -> String {
    format!("{n}b")
}

impl LvmDriver {
    /// Create a thin LV `name` of `size` bytes, active, activation skip off.
    fn create_thin(&self, g: &VgGuard<'_>, name: &str, size: u64) -> Result<(), DriverError> {
        let size = bytes(size);
        let mut args = vec!["--type", "thin", "-V", &size, "--thinpool", &self.s.thin_pool, "-n", name];
        args.extend(self.tag_args());
        args.extend(["--setactivationskip", "n", "--activate", "y", "--wipesignatures", "y", "--yes", &self.s.vg]);
        self.lvm.run(g, "lvcreate", &args).map(|_| ())
    }

    /// Thin snapshot `name` of `origin`: read-only with activation skip (`snapshot`) or a
    /// writable, active clone.
    fn thin_snapshot(&self, g: &VgGuard<'_>, origin: &str, name: &str, snapshot: bool) -> Result<(), DriverError> {
        let full = self.full(origin);
        let mut args = vec!["--snapshot", "-n", name];
        args.extend(self.tag_args());
        if snapshot {
            args.extend(["--setactivationskip", "y", "--permission", "r"]);
        } else {
            args.extend(["--setactivationskip", "n", "--permission", "rw"]);
        }
        args.extend(["--yes", &full]);
        self.lvm.run(g, "lvcreate", &args)?;
        if !snapshot {
            self.activate(g, name)?;
        }
        Ok(())
    }

    /// Grow `name` to at least `size` bytes.
    pub(super) fn grow(&self, g: &VgGuard<'_>, row: &LvRow, size: u64) -> Result<(), DriverError> {
        if row.lv_size.unwrap_or(0) < size {
            self.lvm.run(g, "lvextend", &["-L", &bytes(size), &self.full(&row.lv_name)])?;
        }
        Ok(())
    }

    fn must_find(&self, name: &str) -> Result<LvRow, DriverError> {
        self.find(name)?.ok_or_else(|| DriverError::Missing(self.full(name)))
    }

    fn open_dev(&self, name: &str, write: bool) -> Result<File, DriverError> {
        let p = self.dev(name);
        OpenOptions::new()
            .read(true)
            .write(write)
            .open(&p)
            .map_err(|e| DriverError::io(format!("open {}", p.display()), e))
    }

    /// Build `cbt-<volume>` (size bytes) as a copy of `src` (an LV name or a path), then rename
    /// it to `cbv-<volume>`, replacing an existing one (see the module docs).
    fn full_copy(&self, src: Source<'_>, volume: Uuid, size: u64) -> Result<(), DriverError> {
        let build = lv_name(BUILD, volume);
        let vol = lv_name(VOL, volume);
        let mut activated = None;
        {
            let g = self.lvm.change();
            let rows = self.rows()?;
            if self.find_in(&rows, &build)?.is_some() {
                self.lvm.run(&g, "lvremove", &["-y", &self.full(&build)])?;
            }
            if let Source::Lv(name) = src {
                let row = self.find_in(&rows, name)?.ok_or_else(|| DriverError::Missing(self.full(name)))?;
                if !row.active() {
                    self.activate(&g, name)?;
                    activated = Some(name.to_string());
                }
            }
            self.check_room(&rows, size)?;
            self.create_thin(&g, &build, size)?;
        }
        let copied = (|| {
            let (s, what) = match src {
                Source::Lv(name) => (self.open_dev(name, false)?, self.dev(name)),
                Source::Path(p) => {
                    (File::open(p).map_err(|e| DriverError::io(format!("open {}", p.display()), e))?, p.to_path_buf())
                }
            };
            let d = self.open_dev(&build, true)?;
            let len = size_of(&s).map_err(|e| DriverError::io(format!("size of {}", what.display()), e))?;
            let n = block_copy(&s, &d, len.min(size))
                .map_err(|e| DriverError::io(format!("copy {} into {build}", what.display()), e))?;
            tracing::debug!(src = %what.display(), dst = %build, data_bytes = n, "full copy");
            Ok::<_, DriverError>(())
        })();
        let g = self.lvm.change();
        if let Some(name) = activated {
            if let Err(e) = self.lvm.run(&g, "lvchange", &["-an", &self.full(&name)]) {
                tracing::warn!(lv = %name, error = %e, "could not deactivate a copy source");
            }
        }
        copied?;
        if self.find(&vol)?.is_some() {
            self.lvm.run(&g, "lvremove", &["-y", &self.full(&vol)])?;
        }
        self.lvm.run(&g, "lvrename", &[&self.s.vg, &build, &vol])?;
        Ok(())
    }

    /// Make `cbv-<volume>` a writable thin snapshot of `origin`, `size` bytes or more.
    fn linked(&self, origin: &str, volume: Uuid, size: u64) -> Result<(), DriverError> {
        let vol = lv_name(VOL, volume);
        let g = self.lvm.change();
        let rows = self.rows()?;
        if self.find_in(&rows, &vol)?.is_none() {
            let o = self.find_in(&rows, origin)?.ok_or_else(|| DriverError::Missing(self.full(origin)))?;
            self.check_room(&rows, size.max(o.lv_size.unwrap_or(0)))?;
            self.thin_snapshot(&g, origin, &vol, false)?;
        }
        let row = self.find(&vol)?.ok_or_else(|| DriverError::Missing(self.full(&vol)))?;
        if !row.active() || row.activation_skip() {
            self.lvm.run(&g, "lvchange", &["--setactivationskip", "n", &self.full(&vol)])?;
            self.activate(&g, &vol)?;
        }
        self.grow(&g, &row, size)
    }

    /// Remove an LV of ours, discarding its data first when `discard_first`.
    fn remove(&self, name: &str, discard_first: bool) -> Result<(), DriverError> {
        let g = self.lvm.change();
        let Some(row) = self.find(name)? else { return Ok(()) };
        if discard_first {
            if !row.active() {
                self.activate(&g, name)?;
            }
            let f = self.open_dev(name, true)?;
            match discard(&f) {
                Ok(true) => {}
                Ok(false) => tracing::warn!(lv = name, "discard not supported; relying on thin-pool zeroing"),
                Err(e) => return Err(DriverError::io(format!("discard {}", self.dev(name).display()), e)),
            }
        }
        self.lvm.run(&g, "lvremove", &["-y", &self.full(name)]).map(|_| ())
    }

    fn list(&self, prefix: &str) -> Result<Vec<Uuid>, DriverError> {
        Ok(self
            .rows()?
            .iter()
            .filter(|r| self.ours(r))
            .filter_map(|r| r.lv_name.strip_prefix(prefix).and_then(|u| Uuid::try_parse(u).ok()))
            .collect())
    }
}

#[derive(Clone, Copy)]
enum Source<'a> {
    Lv(&'a str),
    Path(&'a Path),
}

impl Driver for LvmDriver {
    fn capabilities(&self) -> Capabilities {
        // Thin snapshots share blocks: clones and snapshots are O(1), like reflinks.
        Capabilities { reflink: true }
    }

    fn list_manageable(&self) -> Result<Vec<Manageable>, DriverError> {
        self.lvm_list_manageable()
    }

    fn manage_existing_get_size(&self, name: &str) -> Result<u64, DriverError> {
        self.lvm_manage_existing_get_size(name)
    }

    fn manage_existing(&self, kind: ManagedKind, id: Uuid, name: &str, size_bytes: u64) -> Result<(), DriverError> {
        self.lvm_manage_existing(kind, id, name, size_bytes)
    }

    fn unmanage(&self, kind: ManagedKind, id: Uuid) -> Result<(), DriverError> {
        self.lvm_unmanage(kind, id)
    }

    fn capacity(&self) -> Result<Capacity, DriverError> {
        let pool = self.must_find(&self.s.thin_pool)?;
        let total = pool.lv_size.unwrap_or(0);
        let used = pool.allocated_bytes().min(total);
        Ok(Capacity { total_bytes: total, free_bytes: total - used })
    }

    fn create_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let name = lv_name(VOL, id);
        let g = self.lvm.change();
        let rows = self.rows()?;
        if self.find_in(&rows, &name)?.is_some() {
            return Ok(());
        }
        self.check_room(&rows, size_bytes)?;
        self.create_thin(&g, &name, size_bytes)
    }

    fn delete_volume(&self, id: Uuid) -> Result<(), DriverError> {
        self.remove(&lv_name(VOL, id), true)
    }

    fn extend_volume(&self, id: Uuid, size_bytes: u64) -> Result<(), DriverError> {
        let name = lv_name(VOL, id);
        let g = self.lvm.change();
        let rows = self.rows()?;
        let row = self.find_in(&rows, &name)?.ok_or_else(|| DriverError::Missing(self.full(&name)))?;
        let have = row.lv_size.unwrap_or(0);
        if have >= size_bytes {
            return Ok(());
        }
        self.check_room(&rows, size_bytes - have)?;
        self.grow(&g, &row, size_bytes)
    }

    fn create_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let (vol, snap) = (lv_name(VOL, volume), lv_name(SNAP, snapshot));
        let g = self.lvm.change();
        let rows = self.rows()?;
        if self.find_in(&rows, &snap)?.is_some() {
            return Ok(());
        }
        if self.find_in(&rows, &vol)?.is_none() {
            return Err(DriverError::Missing(self.full(&vol)));
        }
        self.check_room(&rows, 0)?;
        self.thin_snapshot(&g, &vol, &snap, true)
    }

    fn delete_snapshot(&self, snapshot: Uuid) -> Result<(), DriverError> {
        self.remove(&lv_name(SNAP, snapshot), false)
    }

    fn create_volume_from_snapshot(
        &self,
        snapshot: Uuid,
        volume: Uuid,
        size_bytes: u64,
        mode: CloneMode,
    ) -> Result<(), DriverError> {
        let snap = lv_name(SNAP, snapshot);
        match mode {
            CloneMode::Linked => self.linked(&snap, volume, size_bytes),
            CloneMode::Full => {
                if self.find(&lv_name(VOL, volume))?.is_some() {
                    return Ok(());
                }
                self.full_copy(Source::Lv(&snap), volume, size_bytes)
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
        let src = lv_name(VOL, source);
        match mode {
            CloneMode::Linked => self.linked(&src, volume, size_bytes),
            CloneMode::Full => {
                if self.find(&lv_name(VOL, volume))?.is_some() {
                    return Ok(());
                }
                // Copy from a point-in-time thin snapshot, not from a volume changing underneath.
                let frozen = lv_name(FROZEN, volume);
                {
                    let g = self.lvm.change();
                    let rows = self.rows()?;
                    if self.find_in(&rows, &frozen)?.is_none() {
                        if self.find_in(&rows, &src)?.is_none() {
                            return Err(DriverError::Missing(self.full(&src)));
                        }
                        self.thin_snapshot(&g, &src, &frozen, true)?;
                    }
                }
                let r = self.full_copy(Source::Lv(&frozen), volume, size_bytes);
                self.remove(&frozen, false)?;
                r
            }
        }
    }

    fn copy_volume_data(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        self.full_copy(Source::Path(src), volume, size_bytes)
    }

    /// A new thin LV holding the raw file `src` (an image cache entry): built as `cbt-` with
    /// a copy that skips the file's holes and its all-zero 64 KiB blocks (the LV reads as
    /// zeroes already, so they stay unallocated in the thin pool), renamed to `cbv-` when
    /// complete. A `cbv-` of that name is therefore complete: running it again is a no-op.
    fn create_volume_from_file(&self, volume: Uuid, src: &Path, size_bytes: u64) -> Result<(), DriverError> {
        if self.find(&lv_name(VOL, volume))?.is_some() {
            return Ok(());
        }
        self.full_copy(Source::Path(src), volume, size_bytes)
    }

    /// The snapshot's device, activated: snapshots carry activation skip, so their device node
    /// does not exist until `lvchange -ay -K` (idempotent; the LV stays read-only).
    fn snapshot_data_path(&self, snapshot: Uuid) -> Result<PathBuf, DriverError> {
        let snap = lv_name(SNAP, snapshot);
        let g = self.lvm.change();
        let row = self.find(&snap)?.ok_or_else(|| DriverError::Missing(self.full(&snap)))?;
        if !row.active() {
            self.activate(&g, &snap)?;
        }
        Ok(self.dev(&snap))
    }

    fn revert_to_snapshot(&self, volume: Uuid, snapshot: Uuid) -> Result<(), DriverError> {
        let (vol, snap, aside) = (lv_name(VOL, volume), lv_name(SNAP, snapshot), lv_name(ASIDE, volume));
        let g = self.lvm.change();
        let rows = self.rows()?;
        if self.find_in(&rows, &snap)?.is_none() {
            return Err(DriverError::Missing(self.full(&snap)));
        }
        let mut v = self.find_in(&rows, &vol)?;
        let mut r = self.find_in(&rows, &aside)?;
        // Step 1: set the volume aside (no aside LV yet means the revert has not started).
        if r.is_none() {
            let Some(cur) = v.take() else { return Err(DriverError::Missing(self.full(&vol))) };
            self.lvm.run(&g, "lvrename", &[&self.s.vg, &vol, &aside])?;
            r = Some(LvRow { lv_name: aside.clone(), ..cur });
        }
        let Some(old) = r else { return Err(DriverError::Missing(self.full(&aside))) };
        // Step 2: a writable thin snapshot of the snapshot under the volume's name.
        if v.is_none() {
            self.thin_snapshot(&g, &snap, &vol, false)?;
        }
        // Step 3: the volume keeps its size (it may have grown since the snapshot).
        let now = self.find(&vol)?.ok_or_else(|| DriverError::Missing(self.full(&vol)))?;
        if !now.active() {
            self.activate(&g, &vol)?;
        }
        self.grow(&g, &now, old.lv_size.unwrap_or(0))?;
        // Step 4: remove the old content last.
        self.lvm.run(&g, "lvremove", &["-y", &self.full(&aside)])?;
        Ok(())
    }

    fn export_path(&self, id: Uuid) -> PathBuf {
        self.dev(&lv_name(VOL, id))
    }

    fn list_volumes(&self) -> Result<Vec<Uuid>, DriverError> {
        self.list(VOL)
    }

    fn list_snapshots(&self) -> Result<Vec<Uuid>, DriverError> {
        self.list(SNAP)
    }

    fn volume_allocated_bytes(&self, id: Uuid) -> Result<u64, DriverError> {
        Ok(self.must_find(&lv_name(VOL, id))?.allocated_bytes())
    }
}
