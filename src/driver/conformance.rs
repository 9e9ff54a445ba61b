//! The driver conformance suite: one set of cases every [`Driver`] passes (file on XFS,
//! btrfs and ext4 on the host; LVM thin inside the test VM; RBD on a throwaway Ceph cluster).
//!
//! Cases go through the trait only, reading and writing data through `open_volume` (the export
//! path's file or block device, or librbd). Each case makes its own volumes and removes them, so cases share one pool.
//! A case returns `Err(reason)` instead of panicking, so a runner (the VM's guest) can report
//! every result. The fixture supplies what the trait cannot: re-opening the pool (a restart)
//! and leaving a revert as a kill -9 in its middle would.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use uuid::Uuid;

use super::{CloneMode, Driver, DriverError};

/// A case's outcome.
pub type Outcome = Result<(), String>;

/// What a driver's test provides to the suite.
pub trait Fixture {
    /// The driver under test.
    fn driver(&self) -> &dyn Driver;
    /// Re-open the pool as a restart of the daemon would.
    fn reopen(&mut self) -> Outcome;
    /// Leave the revert of `volume` to `snapshot` as a crash during its step `step` (1, 2, …)
    /// would; returns false when the driver has no such step (the case then stops there).
    fn interrupt_revert(&self, volume: Uuid, snapshot: Uuid, step: u32) -> Result<bool, String>;
    /// A directory for source files of `create_volume_from_file` (the file driver wants them
    /// on the pool's file system, as its image cache is).
    fn scratch_dir(&self) -> std::path::PathBuf;
}

/// Size of the volumes the cases make: a multiple of LVM's 4 MiB extent.
pub const SIZE: u64 = 64 << 20;
const MIB: u64 = 1 << 20;

fn ensure(cond: bool, msg: impl FnOnce() -> String) -> Outcome {
    if cond {
        Ok(())
    } else {
        Err(msg())
    }
}

fn e(what: &str) -> impl FnOnce(DriverError) -> String + '_ {
    move |err| format!("{what}: {err}")
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| seed.wrapping_add((i % 251) as u8) | 1).collect()
}

/// Write `data` at `off` into the volume (through [`Driver::open_volume`]: its export path,
/// or librbd for RBD) and flush.
pub fn write(d: &dyn Driver, id: Uuid, off: u64, data: &[u8]) -> Outcome {
    let f = d.open_volume(id, true).map_err(|err| format!("open volume {id}: {err}"))?;
    f.write_at(data, off).map_err(|err| format!("write volume {id}: {err}"))?;
    f.flush().map_err(|err| format!("flush volume {id}: {err}"))
}

/// Read `len` bytes at `off` from the volume.
pub fn read(d: &dyn Driver, id: Uuid, off: u64, len: usize) -> Result<Vec<u8>, String> {
    let f = d.open_volume(id, false).map_err(|err| format!("open volume {id}: {err}"))?;
    let mut buf = vec![0u8; len];
    f.read_at(&mut buf, off).map_err(|err| format!("read volume {id}: {err}"))?;
    Ok(buf)
}

/// Size of the volume as its data shows it.
pub fn size(d: &dyn Driver, id: Uuid) -> Result<u64, String> {
    let f = d.open_volume(id, false).map_err(|err| format!("open volume {id}: {err}"))?;
    f.size().map_err(|err| format!("size of volume {id}: {err}"))
}

fn expect_data(d: &dyn Driver, id: Uuid, off: u64, want: &[u8], what: &str) -> Outcome {
    let got = read(d, id, off, want.len())?;
    ensure(got == want, || format!("{what}: data at {off} differs from what was written"))
}

fn expect_zero(d: &dyn Driver, id: Uuid, off: u64, len: usize, what: &str) -> Outcome {
    let got = read(d, id, off, len)?;
    ensure(got.iter().all(|&b| b == 0), || format!("{what}: expected zeroes at {off}"))
}

/// Removes what a case made even when it fails.
struct Cleanup<'a> {
    d: &'a dyn Driver,
    volumes: Vec<Uuid>,
    snapshots: Vec<Uuid>,
}

impl<'a> Cleanup<'a> {
    fn new(d: &'a dyn Driver) -> Self {
        Cleanup { d, volumes: Vec::new(), snapshots: Vec::new() }
    }
    fn vol(&mut self) -> Uuid {
        let id = Uuid::new_v4();
        self.volumes.push(id);
        id
    }
    fn snap(&mut self) -> Uuid {
        let id = Uuid::new_v4();
        self.snapshots.push(id);
        id
    }
}

impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        for s in &self.snapshots {
            let _ = self.d.delete_snapshot(*s);
        }
        for v in &self.volumes {
            let _ = self.d.delete_volume(*v);
        }
    }
}

/// Create is exact-sized, reads as zeroes, allocates nothing, is idempotent and listed;
/// delete removes it and is idempotent.
pub fn create_delete(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let v = c.vol();
    d.create_volume(v, SIZE).map_err(e("create"))?;
    d.create_volume(v, SIZE).map_err(e("create again"))?;
    ensure(size(d, v)? == SIZE, || format!("size {} != {SIZE}", size(d, v).unwrap_or(0)))?;
    expect_zero(d, v, 0, MIB as usize, "new volume")?;
    expect_zero(d, v, SIZE - MIB, MIB as usize, "new volume end")?;
    let alloc = d.volume_allocated_bytes(v).map_err(e("allocation"))?;
    ensure(alloc < MIB, || format!("a new volume allocates {alloc} bytes"))?;
    ensure(d.list_volumes().map_err(e("list"))?.contains(&v), || "volume not listed".into())?;
    d.delete_volume(v).map_err(e("delete"))?;
    d.delete_volume(v).map_err(e("delete again"))?;
    ensure(!d.list_volumes().map_err(e("list"))?.contains(&v), || "deleted volume still listed".into())
}

/// A volume made after another was deleted never sees its data.
pub fn delete_leaks_nothing(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let a = c.vol();
    d.create_volume(a, SIZE).map_err(e("create"))?;
    let data = pattern(7, 2 * MIB as usize);
    write(d, a, 0, &data)?;
    d.delete_volume(a).map_err(e("delete"))?;
    let b = c.vol();
    d.create_volume(b, SIZE).map_err(e("create next"))?;
    expect_zero(d, b, 0, 2 * MIB as usize, "volume after a delete")
}

/// Extend grows the volume (visible through the export path), keeps data, never shrinks, is
/// idempotent.
pub fn extend(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let v = c.vol();
    d.create_volume(v, SIZE).map_err(e("create"))?;
    let data = pattern(1, 4096);
    write(d, v, SIZE - 4096, &data)?;
    d.extend_volume(v, 2 * SIZE).map_err(e("extend"))?;
    d.extend_volume(v, 2 * SIZE).map_err(e("extend again"))?;
    ensure(size(d, v)? == 2 * SIZE, || "extend did not grow the volume".into())?;
    d.extend_volume(v, SIZE).map_err(e("extend smaller"))?;
    ensure(size(d, v)? == 2 * SIZE, || "extend to a smaller size shrank the volume".into())?;
    expect_data(d, v, SIZE - 4096, &data, "data after extend")?;
    expect_zero(d, v, 2 * SIZE - MIB, MIB as usize, "extended range")
}

/// A snapshot keeps the data of its instant (read through a linked clone), is idempotent,
/// listed, and survives the deletion of its volume.
pub fn snapshot(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let (v, s, k) = (c.vol(), c.snap(), c.vol());
    d.create_volume(v, SIZE).map_err(e("create"))?;
    let a = pattern(2, 64 << 10);
    write(d, v, MIB, &a)?;
    d.create_snapshot(v, s).map_err(e("snapshot"))?;
    d.create_snapshot(v, s).map_err(e("snapshot again"))?;
    ensure(d.list_snapshots().map_err(e("list"))?.contains(&s), || "snapshot not listed".into())?;
    write(d, v, MIB, &pattern(3, 64 << 10))?;
    d.delete_volume(v).map_err(e("delete origin"))?;
    d.create_volume_from_snapshot(s, k, SIZE, CloneMode::Linked).map_err(e("clone"))?;
    expect_data(d, k, MIB, &a, "snapshot content after its volume was deleted")?;
    d.delete_snapshot(s).map_err(e("delete snapshot"))?;
    d.delete_snapshot(s).map_err(e("delete snapshot again"))?;
    ensure(!d.list_snapshots().map_err(e("list"))?.contains(&s), || "deleted snapshot listed".into())
}

/// Linked clone of a snapshot: the snapshot's data, larger size, independent writes, idempotent.
pub fn linked_clone(f: &mut dyn Fixture) -> Outcome {
    clone_case(f, CloneMode::Linked)
}

/// Full clone of a snapshot: the snapshot's data, independent, allocating only data.
pub fn full_clone(f: &mut dyn Fixture) -> Outcome {
    clone_case(f, CloneMode::Full)
}

fn clone_case(f: &mut dyn Fixture, mode: CloneMode) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let (v, s, k) = (c.vol(), c.snap(), c.vol());
    d.create_volume(v, SIZE).map_err(e("create"))?;
    let a = pattern(4, 2 * MIB as usize);
    write(d, v, 8 * MIB, &a)?;
    d.create_snapshot(v, s).map_err(e("snapshot"))?;
    d.create_volume_from_snapshot(s, k, 2 * SIZE, mode).map_err(e("clone"))?;
    d.create_volume_from_snapshot(s, k, 2 * SIZE, mode).map_err(e("clone again"))?;
    ensure(size(d, k)? == 2 * SIZE, || format!("clone size {} != {}", size(d, k).unwrap_or(0), 2 * SIZE))?;
    expect_data(d, k, 8 * MIB, &a, "clone")?;
    expect_zero(d, k, 0, MIB as usize, "clone's unwritten range")?;
    write(d, k, 8 * MIB, &pattern(5, 4096))?;
    expect_data(d, v, 8 * MIB, &a[..4096], "origin after writing the clone")?;
    if mode == CloneMode::Full {
        let alloc = d.volume_allocated_bytes(k).map_err(e("allocation"))?;
        ensure(alloc <= a.len() as u64 + 2 * MIB, || format!("a full clone of 2 MiB of data allocates {alloc} bytes"))?;
    }
    // A live volume can be cloned too, and the clone has its current data.
    let (k2, b) = (c.vol(), pattern(6, 4096));
    write(d, v, 0, &b)?;
    d.create_cloned_volume(v, k2, SIZE, mode).map_err(e("clone a live volume"))?;
    d.create_cloned_volume(v, k2, SIZE, mode).map_err(e("clone a live volume again"))?;
    expect_data(d, k2, 0, &b, "clone of a live volume")?;
    expect_data(d, k2, 8 * MIB, &a, "clone of a live volume")?;
    ensure(
        matches!(d.create_volume_from_snapshot(Uuid::new_v4(), c.vol(), SIZE, mode), Err(DriverError::Missing(_))),
        || "a clone of a missing snapshot must fail with Missing".into(),
    )
}

/// Revert to ANY snapshot (not only the latest), keeping the volume's size; idempotent.
pub fn revert_any(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let (v, s1, s2) = (c.vol(), c.snap(), c.snap());
    d.create_volume(v, SIZE).map_err(e("create"))?;
    let (a, b, x) = (pattern(10, 64 << 10), pattern(11, 64 << 10), pattern(12, 64 << 10));
    write(d, v, 0, &a)?;
    d.create_snapshot(v, s1).map_err(e("snapshot 1"))?;
    write(d, v, 0, &b)?;
    d.create_snapshot(v, s2).map_err(e("snapshot 2"))?;
    write(d, v, 0, &x)?;
    d.extend_volume(v, 2 * SIZE).map_err(e("extend"))?;
    d.revert_to_snapshot(v, s1).map_err(e("revert to the older snapshot"))?;
    expect_data(d, v, 0, &a, "after revert to snapshot 1")?;
    ensure(size(d, v)? == 2 * SIZE, || "revert changed the volume's size".into())?;
    d.revert_to_snapshot(v, s1).map_err(e("revert again"))?;
    expect_data(d, v, 0, &a, "after revert again")?;
    d.revert_to_snapshot(v, s2).map_err(e("revert to the newer snapshot"))?;
    expect_data(d, v, 0, &b, "after revert to snapshot 2")?;
    ensure(matches!(d.revert_to_snapshot(v, Uuid::new_v4()), Err(DriverError::Missing(_))), || {
        "revert to a missing snapshot must fail with Missing".into()
    })?;
    expect_data(d, v, 0, &b, "after a failed revert")
}

/// A revert interrupted at each of its steps (and a restart) finishes when run again.
pub fn revert_interrupted(f: &mut dyn Fixture) -> Outcome {
    let (v, s) = (Uuid::new_v4(), Uuid::new_v4());
    let (a, b) = (pattern(20, 64 << 10), pattern(21, 64 << 10));
    {
        let d = f.driver();
        d.create_volume(v, SIZE).map_err(e("create"))?;
        write(d, v, 0, &a)?;
        d.create_snapshot(v, s).map_err(e("snapshot"))?;
        d.extend_volume(v, 2 * SIZE).map_err(e("extend"))?;
    }
    let mut result = Ok(());
    for step in 1.. {
        write(f.driver(), v, 0, &b)?;
        if !f.interrupt_revert(v, s, step)? {
            break;
        }
        f.reopen()?;
        let d = f.driver();
        result = d
            .revert_to_snapshot(v, s)
            .map_err(e("revert after an interrupted one"))
            .and_then(|()| expect_data(d, v, 0, &a, &format!("revert interrupted at step {step}")))
            .and_then(|()| ensure(size(d, v)? == 2 * SIZE, || format!("size after revert interrupted at step {step}")))
            .and_then(|()| {
                let vols = d.list_volumes().map_err(e("list"))?;
                ensure(vols.iter().filter(|x| **x == v).count() == 1, || "volume listed once".into())
            });
        if result.is_err() {
            break;
        }
    }
    let d = f.driver();
    let _ = d.delete_snapshot(s);
    let _ = d.delete_volume(v);
    result
}

/// A volume from a raw file (an image cache entry): the file's data at the volume's size,
/// zeroes past the file's end, the file's holes not allocated, independent of the file,
/// idempotent.
pub fn volume_from_file(f: &mut dyn Fixture) -> Outcome {
    let src = f.scratch_dir().join(format!("conformance-{}.raw", Uuid::new_v4()));
    let d = f.driver();
    let r = (|| {
        let (a, b) = (pattern(40, MIB as usize), pattern(41, MIB as usize));
        {
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&src)
                .map_err(|err| format!("create {}: {err}", src.display()))?;
            file.set_len(12 * MIB).map_err(|err| format!("truncate {}: {err}", src.display()))?;
            file.write_all_at(&a, 0)
                .and_then(|()| file.write_all_at(&b, 8 * MIB))
                .map_err(|err| format!("write: {err}"))?;
            file.sync_all().map_err(|err| format!("fsync: {err}"))?;
        }
        let mut c = Cleanup::new(d);
        let v = c.vol();
        d.create_volume_from_file(v, &src, SIZE).map_err(e("volume from file"))?;
        d.create_volume_from_file(v, &src, SIZE).map_err(e("volume from file again"))?;
        ensure(d.list_volumes().map_err(e("list"))?.contains(&v), || "volume from a file not listed".into())?;
        ensure(size(d, v)? == SIZE, || format!("size {} != {SIZE}", size(d, v).unwrap_or(0)))?;
        expect_data(d, v, 0, &a, "volume from file")?;
        expect_data(d, v, 8 * MIB, &b, "volume from file")?;
        expect_zero(d, v, 4 * MIB, MIB as usize, "the file's hole")?;
        expect_zero(d, v, SIZE - MIB, MIB as usize, "past the file's end")?;
        let alloc = d.volume_allocated_bytes(v).map_err(e("allocation"))?;
        ensure(alloc <= 4 * MIB, || format!("2 MiB of data in a 12 MiB file allocate {alloc} bytes"))?;
        write(d, v, 0, &pattern(42, 4096))?;
        let back = std::fs::read(&src).map_err(|err| format!("read {}: {err}", src.display()))?;
        ensure(back.get(..4096) == Some(&a[..4096]), || "writing the volume changed its source file".into())?;
        ensure(
            matches!(
                d.create_volume_from_file(c.vol(), &src.with_extension("missing"), SIZE),
                Err(DriverError::Io { .. } | DriverError::Missing(_))
            ),
            || "a volume from a missing file must fail".into(),
        )
    })();
    let _ = std::fs::remove_file(&src);
    r
}

/// The snapshot's data path (what an upload to an image reads) is readable and has the
/// snapshot's data and size, also after a restart; a missing snapshot is `Missing`.
pub fn snapshot_data_path(f: &mut dyn Fixture) -> Outcome {
    let (v, s) = (Uuid::new_v4(), Uuid::new_v4());
    let a = pattern(50, 64 << 10);
    let check = |d: &dyn Driver, what: &str| -> Outcome {
        let p = d.snapshot_data_path(s).map_err(e("snapshot data path"))?;
        let file =
            OpenOptions::new().read(true).open(&p).map_err(|err| format!("{what}: open {}: {err}", p.display()))?;
        let mut buf = vec![0u8; a.len()];
        file.read_exact_at(&mut buf, MIB).map_err(|err| format!("{what}: read {}: {err}", p.display()))?;
        ensure(buf == a, || format!("{what}: {} does not hold the snapshot's data", p.display()))?;
        let len = nix::unistd::lseek(&file, 0, nix::unistd::Whence::SeekEnd).map_err(|err| format!("seek: {err}"))?;
        ensure(len as u64 == SIZE, || format!("{what}: {} is {len} bytes, not {SIZE}", p.display()))
    };
    let r = (|| {
        let d = f.driver();
        d.create_volume(v, SIZE).map_err(e("create"))?;
        write(d, v, MIB, &a)?;
        d.create_snapshot(v, s).map_err(e("snapshot"))?;
        write(d, v, MIB, &pattern(51, 64 << 10))?;
        check(d, "snapshot")?;
        check(d, "snapshot, asked again")?;
        f.reopen()?;
        let d = f.driver();
        check(d, "snapshot after a restart")?;
        ensure(matches!(d.snapshot_data_path(Uuid::new_v4()), Err(DriverError::Missing(_))), || {
            "the data path of a missing snapshot must be Missing".into()
        })
    })();
    let d = f.driver();
    let _ = d.delete_snapshot(s);
    let _ = d.delete_volume(v);
    r
}

/// Sparseness and accounting: written data is counted, holes are not; capacity is sane.
pub fn accounting(f: &mut dyn Fixture) -> Outcome {
    let d = f.driver();
    let mut c = Cleanup::new(d);
    let cap = d.capacity().map_err(e("capacity"))?;
    ensure(cap.total_bytes > 0 && cap.free_bytes <= cap.total_bytes, || format!("capacity {cap:?}"))?;
    let v = c.vol();
    d.create_volume(v, SIZE).map_err(e("create"))?;
    write(d, v, 16 * MIB, &pattern(30, 4 * MIB as usize))?;
    let alloc = d.volume_allocated_bytes(v).map_err(e("allocation"))?;
    ensure((4 * MIB..=6 * MIB).contains(&alloc), || format!("4 MiB written, {alloc} bytes allocated"))?;
    let after = d.capacity().map_err(e("capacity"))?;
    ensure(after.total_bytes == cap.total_bytes, || "pool size changed".into())
}

/// One case of the suite.
pub type Case = fn(&mut dyn Fixture) -> Outcome;

/// Every case, by name.
pub const CASES: &[(&str, Case)] = &[
    ("create_delete", create_delete),
    ("delete_leaks_nothing", delete_leaks_nothing),
    ("extend", extend),
    ("snapshot", snapshot),
    ("linked_clone", linked_clone),
    ("full_clone", full_clone),
    ("revert_any", revert_any),
    ("revert_interrupted", revert_interrupted),
    ("accounting", accounting),
    ("volume_from_file", volume_from_file),
    ("snapshot_data_path", snapshot_data_path),
];

/// Run every case; returns each name with its outcome.
pub fn run_all(f: &mut dyn Fixture) -> Vec<(&'static str, Outcome)> {
    CASES.iter().map(|(name, case)| (*name, case(f))).collect()
}
