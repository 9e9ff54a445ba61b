//! The LVM driver for real, inside a VM: this host's kernel has no device-mapper, so
//! `lvm_in_vm` builds a small VM from Debian packages (`scripts/vm/build-initramfs.sh`: a
//! Debian 6.1 kernel, a busybox initramfs with lvm2, thin-provisioning-tools and this very test
//! binary), gives it a sparse disk image as its only disk, boots it under QEMU with software
//! emulation (`-accel tcg -M pc`; KVM does not work here), and reads the serial console. Inside,
//! `/init` runs this binary's `guest_lvm_suite`, which makes a VG and thin pool on `/dev/vda`
//! and runs the driver conformance suite, the LVM-specific cases and the daemon itself on an
//! LVM pool driven over its API and NBD server (`daemon_on_lvm`), printing one
//! `[vm] RESULT <case> ok|FAILED <reason>` line each and `VMTEST rc=N` at the end. Any guest
//! failure, a missing result, or no `rc=0` fails the host test.
//!
//! `guest_lvm_suite` does nothing outside the VM (no `CINDERBLOCK_IN_VM`). Without QEMU's
//! ingredients (not root, or no network for the first download) the host test skips with a
//! reason, and fails instead under `CINDERBLOCK_REQUIRE_PRIVILEGED=1`. The VM is killed and its
//! files removed on every exit path. `CINDERBLOCK_VM_CACHE` (default `/var/tmp/cinderblock-vm`)
//! caches the downloads.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cinderblock::driver::conformance::{self, Fixture, Outcome};
use cinderblock::driver::{CloneMode, Driver, DriverError, LvmDriver, LvmSettings};
use uuid::Uuid;

/// The whole VM stage must finish within this (measured on 2 shared vCPUs: boot ≈ 30 s,
/// suite ≈ 4–5 min under TCG, most of it in LVM's own start-up per command).
const VM_DEADLINE: Duration = Duration::from_secs(540);

fn in_vm() -> bool {
    std::env::var("CINDERBLOCK_IN_VM").is_ok_and(|v| v == "1")
}

fn skip_or_fail(why: &str) {
    if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
        panic!("lvm_in_vm: CINDERBLOCK_REQUIRE_PRIVILEGED=1 but {why}");
    }
    eprintln!("SKIP lvm_in_vm: {why}; set CINDERBLOCK_REQUIRE_PRIVILEGED=1 to make this a failure");
}

/// Kills the VM on drop (panic included).
struct Vm(Child);

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn lvm_in_vm() {
    if in_vm() {
        return;
    }
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX);
    if euid != 0 {
        return skip_or_fail("not running as root (the VM is built with apt-get download)");
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = tempfile::tempdir().expect("tmp");
    let exe = std::env::current_exe().expect("test binary");
    let started = Instant::now();
    let out = Command::new("bash")
        .arg(root.join("scripts/vm/build-initramfs.sh"))
        .arg(&exe)
        .arg(work.path())
        .arg(env!("CARGO_BIN_EXE_cinderblock"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run build-initramfs.sh");
    if !out.status.success() {
        return skip_or_fail(&format!("scripts/vm/build-initramfs.sh failed ({})", out.status));
    }
    let vars: std::collections::HashMap<String, String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    let var = |k: &str| vars.get(k).cloned().unwrap_or_default();
    eprintln!("VM built in {:.1}s", started.elapsed().as_secs_f64());
    let pv = work.path().join("pv.img");
    std::fs::File::create(&pv).and_then(|f| f.set_len(2 << 30)).expect("sparse PV image");
    let mut cmd = Command::new(var("QEMU"));
    for d in var("QEMU_DATA").split(':').filter(|d| !d.is_empty()) {
        cmd.arg("-L").arg(d);
    }
    if !var("QEMU_LIB").is_empty() {
        cmd.env("LD_LIBRARY_PATH", var("QEMU_LIB"));
    }
    cmd.args(["-M", "pc", "-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1536"])
        .arg("-kernel")
        .arg(var("KERNEL"))
        .arg("-initrd")
        .arg(var("INITRD"))
        .args(["-append", "console=ttyS0 panic=-1 quiet loglevel=3", "-nographic", "-no-reboot", "-nic", "none"])
        .arg("-drive")
        // discard=unmap: the guest's discards punch holes in pv.img, so discarded data reads
        // back as zeroes (lvm_discard_on_delete looks at the thin pool's data device).
        .arg(format!("file={},format=raw,if=virtio,cache=unsafe,discard=unmap", pv.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    let mut child = match cmd.spawn() {
        Ok(c) => Vm(c),
        Err(e) => return skip_or_fail(&format!("cannot start {}: {e}", var("QEMU"))),
    };
    let stdout = child.0.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + VM_DEADLINE;
    let (mut results, mut rc, mut booted) = (Vec::new(), None, false);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                eprintln!("[{:6.1}s] {line}", started.elapsed().as_secs_f64());
                booted |= line.contains("VMTEST booted");
                // libtest's "test guest_lvm_suite ... " has no newline: the first RESULT
                // shares its line.
                if let Some((_, r)) = line.strip_prefix("[vm] ").and_then(|l| l.split_once("RESULT ")) {
                    results.push(r.to_string());
                }
                if let Some(c) = line.strip_prefix("[vm] VMTEST rc=") {
                    rc = c.trim().parse::<i32>().ok();
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => panic!("the VM did not finish within {VM_DEADLINE:?}"),
        }
    }
    let status = child.0.wait().expect("wait for qemu");
    assert!(booted, "the VM never booted (qemu {status})");
    let failed: Vec<&String> = results.iter().filter(|r| !r.contains(" ok")).collect();
    assert!(failed.is_empty(), "guest failures: {failed:#?}");
    let want = conformance::CASES.len() + LVM_CASES.len() + 1;
    assert_eq!(results.len(), want, "expected {want} results from the guest, got {results:#?}");
    assert_eq!(rc, Some(0), "the guest's test run did not end with rc=0");
    eprintln!("VM stage: {} cases ok in {:.1}s", results.len(), started.elapsed().as_secs_f64());
}

// ---------------------------------------------------------------- guest side

const VG: &str = "cbvg";
const POOL: &str = "thin";

fn settings() -> LvmSettings {
    LvmSettings {
        pool: "lvmtest".into(),
        vg: VG.into(),
        thin_pool: POOL.into(),
        thin_pool_size_bytes: Some(1536 << 20),
        devices: vec![PathBuf::from("/dev/vda")],
        system_dir: None,
        lvm_binary: PathBuf::from("/sbin/lvm"),
        max_over_subscription_ratio: 20.0,
        data_high_water_percent: 90.0,
        metadata_high_water_percent: 80.0,
    }
}

fn sh(cmd: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(cmd).args(args).output().map_err(|e| format!("{cmd}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr)));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

struct LvmFixture {
    s: LvmSettings,
    d: LvmDriver,
}

impl LvmFixture {
    fn lvm(&self, sub: &str, args: &[&str]) -> Result<String, String> {
        let l = self.d.lvm();
        let g = l.change();
        l.run(&g, sub, args).map_err(|e| e.to_string())
    }
}

impl Fixture for LvmFixture {
    fn driver(&self) -> &dyn Driver {
        &self.d
    }

    fn reopen(&mut self) -> Outcome {
        self.d = LvmDriver::open(self.s.clone()).map_err(|e| format!("reopen: {e}"))?;
        Ok(())
    }

    /// Steps of the LVM revert: 1 = the volume was renamed aside (`cbr-`), 2 = the thin
    /// snapshot of the snapshot exists under the volume's name too (not yet extended, the
    /// aside LV not yet removed).
    fn interrupt_revert(&self, volume: Uuid, snapshot: Uuid, step: u32) -> Result<bool, String> {
        let (vol, snap, aside) = (format!("cbv-{volume}"), format!("cbs-{snapshot}"), format!("cbr-{volume}"));
        if step > 2 {
            return Ok(false);
        }
        self.lvm("lvrename", &[VG, &vol, &aside])?;
        if step == 2 {
            let full = format!("{VG}/{snap}");
            self.lvm(
                "lvcreate",
                &[
                    "--snapshot",
                    "-n",
                    &vol,
                    "--addtag",
                    "cinderblock",
                    "--addtag",
                    "cinderblock_pool:lvmtest",
                    "--setactivationskip",
                    "n",
                    "--yes",
                    &full,
                ],
            )?;
        }
        Ok(true)
    }

    fn scratch_dir(&self) -> PathBuf {
        std::env::temp_dir()
    }
}

fn lvs(f: &LvmFixture) -> Result<Vec<cinderblock::driver::lvm::command::LvRow>, String> {
    f.d.lvm()
        .report("lvs", "lv", &["-a", "-o", cinderblock::driver::lvm::command::LV_FIELDS, VG])
        .map_err(|e| e.to_string())
}

/// Foreign LVs (no tag of ours) are never listed, changed or removed, and a name of ours held
/// by a foreign LV is refused.
fn foreign_lvs_untouched(f: &mut LvmFixture) -> Outcome {
    let id = Uuid::new_v4();
    let squat = format!("cbv-{id}");
    f.lvm("lvcreate", &["--type", "thin", "-V", "8m", "--thinpool", POOL, "-n", "theirs", "--yes", VG])?;
    f.lvm("lvcreate", &["--type", "thin", "-V", "8m", "--thinpool", POOL, "-n", &squat, "--yes", VG])?;
    let r = (|| {
        let d = &f.d;
        if d.list_volumes().map_err(|e| e.to_string())?.contains(&id) {
            return Err("a foreign LV named like ours was listed".to_string());
        }
        match d.delete_volume(id) {
            Err(DriverError::Invalid(_)) => {}
            other => return Err(format!("deleting a foreign LV must be refused, got {other:?}")),
        }
        if !matches!(d.create_volume(id, 8 << 20), Err(DriverError::Invalid(_))) {
            return Err("creating over a foreign LV must be refused".into());
        }
        let names: Vec<String> = lvs(f)?.into_iter().map(|r| r.lv_name).collect();
        if !names.contains(&"theirs".to_string()) || !names.contains(&squat) {
            return Err(format!("foreign LVs changed: {names:?}"));
        }
        Ok(())
    })();
    f.lvm("lvremove", &["-y", &format!("{VG}/theirs"), &format!("{VG}/{squat}")])?;
    r
}

/// Tags, activation skip on snapshots, clones active without it.
fn tags_and_activation_skip(f: &mut LvmFixture) -> Outcome {
    let (v, s, k) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let d = &f.d;
    d.create_volume(v, 16 << 20).map_err(|e| e.to_string())?;
    d.create_snapshot(v, s).map_err(|e| e.to_string())?;
    d.create_volume_from_snapshot(s, k, 16 << 20, CloneMode::Linked).map_err(|e| e.to_string())?;
    let rows = lvs(f)?;
    let get = |n: String| rows.iter().find(|r| r.lv_name == n).cloned().ok_or(format!("{n} missing"));
    let (rv, rs, rk) = (get(format!("cbv-{v}"))?, get(format!("cbs-{s}"))?, get(format!("cbv-{k}"))?);
    let r = (|| {
        for r in [&rv, &rs, &rk] {
            if !(r.has_tag("cinderblock") && r.has_tag("cinderblock_pool:lvmtest")) {
                return Err(format!("{} lacks our tags: {}", r.lv_name, r.lv_tags));
            }
        }
        if !rs.activation_skip() || rs.lv_attr.as_bytes().get(1) != Some(&b'r') {
            return Err(format!("snapshot attr {} (want read-only, activation skip)", rs.lv_attr));
        }
        if !rk.active() || rk.activation_skip() {
            return Err(format!("linked clone attr {} (want active, no activation skip)", rk.lv_attr));
        }
        // Deactivated (as after a reboot: activation skip keeps it so), the snapshot's data
        // path activates it again and reads its data.
        conformance::write(d, v, 0, b"after")?;
        f.lvm("lvchange", &["-an", &format!("{VG}/cbs-{s}")])?;
        if Path::new(&format!("/dev/{VG}/cbs-{s}")).exists() {
            return Err("a deactivated snapshot still has its device node".into());
        }
        let p = d.snapshot_data_path(s).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        std::fs::File::open(&p)
            .and_then(|file| std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0))
            .map_err(|e| format!("read {}: {e}", p.display()))?;
        if buf != [0u8; 5] {
            return Err(format!("the snapshot's data path shows {buf:?}, written after the snapshot"));
        }
        Ok(())
    })();
    let _ = d.delete_volume(k);
    let _ = d.delete_snapshot(s);
    let _ = d.delete_volume(v);
    r
}

/// Creation past the over-subscription ratio is refused with a clear error, nothing made.
fn oversubscription_refused(f: &mut LvmFixture) -> Outcome {
    let mut s = f.s.clone();
    s.max_over_subscription_ratio = 1.0;
    let d = LvmDriver::open(s).map_err(|e| e.to_string())?;
    let id = Uuid::new_v4();
    match d.create_volume(id, 4 << 30) {
        Err(DriverError::NoSpace(m)) if m.contains("provision") => {}
        other => return Err(format!("want NoSpace, got {other:?}")),
    }
    if d.list_volumes().map_err(|e| e.to_string())?.contains(&id) {
        return Err("a refused volume exists".into());
    }
    Ok(())
}

/// At the data high-water mark new allocations are refused.
fn high_water_mark_refuses(f: &mut LvmFixture) -> Outcome {
    let v = Uuid::new_v4();
    f.d.create_volume(v, 64 << 20).map_err(|e| e.to_string())?;
    let r = (|| {
        conformance::write(&f.d, v, 0, &vec![0x5a; 32 << 20])?;
        let pool = lvs(f)?.into_iter().find(|r| r.lv_name == POOL).ok_or("no pool")?;
        let used = pool.data_percent.unwrap_or(0.0);
        let mut s = f.s.clone();
        s.data_high_water_percent = (used / 2.0).max(0.01);
        let d = LvmDriver::open(s).map_err(|e| e.to_string())?;
        match d.create_volume(Uuid::new_v4(), 8 << 20) {
            Err(DriverError::NoSpace(m)) if m.contains("high-water") => {}
            other => return Err(format!("want a high-water refusal at {used}% used, got {other:?}")),
        }
        match d.create_snapshot(v, Uuid::new_v4()) {
            Err(DriverError::NoSpace(_)) => Ok(()),
            other => Err(format!("a snapshot above the high-water mark must be refused, got {other:?}")),
        }
    })();
    let _ = f.d.delete_volume(v);
    r
}

/// A crash in the middle of a full clone leaves `cbt-`; reopening removes it; the clone is
/// made again.
fn interrupted_full_clone_cleaned(f: &mut LvmFixture) -> Outcome {
    let (v, k) = (Uuid::new_v4(), Uuid::new_v4());
    f.d.create_volume(v, 16 << 20).map_err(|e| e.to_string())?;
    let build = format!("cbt-{k}");
    f.lvm(
        "lvcreate",
        &[
            "--type",
            "thin",
            "-V",
            "16m",
            "--thinpool",
            POOL,
            "-n",
            &build,
            "--addtag",
            "cinderblock",
            "--addtag",
            "cinderblock_pool:lvmtest",
            "--yes",
            VG,
        ],
    )?;
    f.reopen()?;
    let r = (|| {
        if lvs(f)?.iter().any(|r| r.lv_name == build) {
            return Err("reopen left a half-built LV".into());
        }
        conformance::write(&f.d, v, 0, b"full")?;
        f.d.create_cloned_volume(v, k, 16 << 20, CloneMode::Full).map_err(|e| e.to_string())?;
        if conformance::read(&f.d, k, 0, 4)? != b"full" {
            return Err("clone data".into());
        }
        Ok(())
    })();
    let _ = f.d.delete_volume(k);
    let _ = f.d.delete_volume(v);
    r
}

/// The thin pool's data device (where volume data physically is).
fn tdata() -> PathBuf {
    PathBuf::from(format!("/dev/mapper/{VG}-{POOL}_tdata"))
}

/// Offsets on the pool's data device of 64 KiB blocks starting with `marker`, scanning from
/// the start until `want` are found or the device ends.
fn find_marker(marker: &[u8; 16], want: usize) -> Result<Vec<u64>, String> {
    use std::io::Read;
    let mut f = std::fs::File::open(tdata()).map_err(|e| format!("open {}: {e}", tdata().display()))?;
    let mut buf = vec![0u8; 4 << 20];
    let (mut found, mut base) = (Vec::new(), 0u64);
    while found.len() < want {
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]).map_err(|e| format!("read {}: {e}", tdata().display()))? {
                0 => break,
                k => n += k,
            }
        }
        if n == 0 {
            break;
        }
        for (i, block) in buf[..n].chunks(64 << 10).enumerate() {
            if block.starts_with(marker) {
                found.push(base + (i as u64) * (64 << 10));
            }
        }
        base += n as u64;
    }
    Ok(found)
}

/// Delete discards first: the deleted volume's data is gone from the thin pool's data device
/// (thin-pool discard passdown, down to the disk), not merely unmapped. A thin pool's
/// `lvremove` alone would leave the blocks' old contents on the disk.
fn discard_on_delete(f: &mut LvmFixture) -> Outcome {
    let v = Uuid::new_v4();
    let marker = *Uuid::new_v4().as_bytes();
    let mut data = vec![0x77u8; 4 << 20];
    for block in data.chunks_mut(64 << 10) {
        block[..16].copy_from_slice(&marker);
    }
    f.d.create_volume(v, 16 << 20).map_err(|e| e.to_string())?;
    let r = (|| {
        conformance::write(&f.d, v, 0, &data)?;
        let at = find_marker(&marker, 64)?;
        if at.len() != 64 {
            return Err(format!("found {} of the 64 written blocks on the data device", at.len()));
        }
        f.d.delete_volume(v).map_err(|e| e.to_string())?;
        let file = std::fs::File::open(tdata()).map_err(|e| e.to_string())?;
        // The scan above left the blocks in the data device's page cache, which discards
        // issued below it do not invalidate: drop them, so the reads below see the disk.
        nix::fcntl::posix_fadvise(&file, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED)
            .map_err(|e| format!("fadvise: {e}"))?;
        let left = at
            .iter()
            .filter(|&&off| {
                let mut b = [0u8; 16];
                std::os::unix::fs::FileExt::read_exact_at(&file, &mut b, off).is_ok() && b == marker
            })
            .count();
        if left > 0 {
            let status = sh("/sbin/dmsetup", &["status", &format!("{VG}-{POOL}-tpool")]).unwrap_or_else(|e| e);
            let max = std::fs::read_to_string("/sys/block/vda/queue/discard_max_bytes").unwrap_or_default();
            return Err(format!(
                "{left} of 64 blocks of a deleted volume are still on the disk (pool: {}; vda discard_max_bytes {})",
                status.trim(),
                max.trim()
            ));
        }
        Ok(())
    })();
    let _ = f.d.delete_volume(v);
    r
}

/// Linked clones (of a snapshot and of a live volume) are O(1): the thin pool allocates no
/// data for them, whatever the source holds.
fn linked_clone_is_o1(f: &mut LvmFixture) -> Outcome {
    let (v, s, k1, k2) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    let pool_bytes = |f: &LvmFixture| -> Result<u64, String> {
        Ok(lvs(f)?.into_iter().find(|r| r.lv_name == POOL).ok_or("no pool")?.allocated_bytes())
    };
    let d = &f.d;
    d.create_volume(v, 32 << 20).map_err(|e| e.to_string())?;
    let r = (|| {
        conformance::write(d, v, 0, &vec![0x42; 16 << 20])?;
        d.create_snapshot(v, s).map_err(|e| e.to_string())?;
        let before = pool_bytes(f)?;
        d.create_volume_from_snapshot(s, k1, 32 << 20, CloneMode::Linked).map_err(|e| e.to_string())?;
        d.create_cloned_volume(v, k2, 32 << 20, CloneMode::Linked).map_err(|e| e.to_string())?;
        let after = pool_bytes(f)?;
        // data_percent has two decimals: 0.01% of the 1.5 GiB pool is about 160 KiB.
        if after > before + (1 << 20) {
            return Err(format!("two linked clones of 16 MiB allocated {} bytes", after - before));
        }
        if conformance::read(d, k1, 0, 4)? != [0x42; 4] || conformance::read(d, k2, 0, 4)? != [0x42; 4] {
            return Err("linked clones lack their source's data".into());
        }
        Ok(())
    })();
    let _ = d.delete_volume(k1);
    let _ = d.delete_volume(k2);
    let _ = d.delete_snapshot(s);
    let _ = d.delete_volume(v);
    r
}

type LvmCase = fn(&mut LvmFixture) -> Outcome;
const LVM_CASES: &[(&str, LvmCase)] = &[
    // First, while the pool's data device is nearly empty: its scan stops early.
    ("lvm_discard_on_delete", discard_on_delete),
    ("lvm_linked_clone_is_o1", linked_clone_is_o1),
    ("lvm_foreign_lvs_untouched", foreign_lvs_untouched),
    ("lvm_tags_and_activation_skip", tags_and_activation_skip),
    ("lvm_oversubscription_refused", oversubscription_refused),
    ("lvm_high_water_mark_refuses", high_water_mark_refuses),
    ("lvm_interrupted_full_clone_cleaned", interrupted_full_clone_cleaned),
    ("lvm_manage_and_unmanage", manage_and_unmanage),
];

/// manage/unmanage (issue 10 B.10 on LVM): a foreign thin LV is listed as manageable and
/// adopted by rename and tags (data kept, grown to the asked size), a thick LV and an LV of
/// ours are refused, unmanage gives it back as `volume-<id>` untagged, both idempotent; a
/// snapshot goes out as `_snapshot-<id>` and comes back read-only with activation skip.
fn manage_and_unmanage(f: &mut LvmFixture) -> Outcome {
    use cinderblock::driver::ManagedKind;
    let (id, id2, v, s) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    f.lvm("lvcreate", &["--type", "thin", "-V", "16m", "--thinpool", POOL, "-n", "legacy", "--yes", VG])?;
    f.lvm("lvcreate", &["-L", "8m", "-n", "thick", "--yes", VG])?;
    let r = (|| {
        {
            let dev = std::fs::OpenOptions::new()
                .write(true)
                .open(format!("/dev/{VG}/legacy"))
                .map_err(|e| format!("open legacy: {e}"))?;
            std::os::unix::fs::FileExt::write_all_at(&dev, b"legacy data", 4096).map_err(|e| e.to_string())?;
            dev.sync_all().map_err(|e| e.to_string())?;
        }
        let d = &f.d;
        let list = d.list_manageable().map_err(|e| e.to_string())?;
        let get = |n: &str| list.iter().find(|m| m.name == n).cloned();
        let legacy = get("legacy").ok_or(format!("legacy not listed: {list:?}"))?;
        if legacy.reason_not_safe.is_some() || legacy.size_bytes != 16 << 20 {
            return Err(format!("legacy listed as {legacy:?}"));
        }
        if get("thick").and_then(|m| m.reason_not_safe).is_none() {
            return Err(format!("a thick LV must be listed as not safe: {list:?}"));
        }
        if list.iter().any(|m| m.name == POOL || m.name.starts_with("cbv-")) {
            return Err(format!("the thin pool or our own LVs listed as manageable: {list:?}"));
        }
        for bad in ["thick", "nonexistent", "../legacy", ".hidden"] {
            if !matches!(d.manage_existing_get_size(bad), Err(DriverError::Invalid(_))) {
                return Err(format!("manage of {bad:?} must be refused"));
            }
        }
        if d.manage_existing_get_size("legacy").map_err(|e| e.to_string())? != 16 << 20 {
            return Err("wrong size for legacy".into());
        }
        d.manage_existing(ManagedKind::Volume, id, "legacy", 32 << 20).map_err(|e| e.to_string())?;
        d.manage_existing(ManagedKind::Volume, id, "legacy", 32 << 20).map_err(|e| format!("again: {e}"))?;
        if conformance::read(d, id, 4096, 11)? != b"legacy data" || conformance::size(d, id)? != 32 << 20 {
            return Err("the adopted volume lost its data or size".into());
        }
        if !d.list_volumes().map_err(|e| e.to_string())?.contains(&id) {
            return Err("the adopted volume is not listed".into());
        }
        let rows = lvs(f)?;
        let row = rows.iter().find(|r| r.lv_name == format!("cbv-{id}")).ok_or("no cbv- LV after manage")?;
        if !row.has_tag("cinderblock") || !row.has_tag("cinderblock_pool:lvmtest") {
            return Err(format!("adopted LV lacks our tags: {}", row.lv_tags));
        }
        // Our own LV cannot be managed a second time.
        if !matches!(d.manage_existing_get_size(&format!("cbv-{id}")), Err(DriverError::Invalid(_))) {
            return Err("an LV of ours must not be manageable".into());
        }
        d.unmanage(ManagedKind::Volume, id).map_err(|e| e.to_string())?;
        d.unmanage(ManagedKind::Volume, id).map_err(|e| format!("unmanage again: {e}"))?;
        let out = format!("volume-{id}");
        let rows = lvs(f)?;
        let row = rows.iter().find(|r| r.lv_name == out).ok_or(format!("no {out} after unmanage"))?;
        if !row.lv_tags.is_empty() || d.list_volumes().map_err(|e| e.to_string())?.contains(&id) {
            return Err(format!("unmanaged LV still ours: tags {:?}", row.lv_tags));
        }
        d.manage_existing(ManagedKind::Volume, id2, &out, 0).map_err(|e| e.to_string())?;
        if conformance::read(d, id2, 4096, 11)? != b"legacy data" {
            return Err("data lost across unmanage and manage".into());
        }
        d.delete_volume(id2).map_err(|e| e.to_string())?;
        // A snapshot out and back in.
        d.create_volume(v, 16 << 20).map_err(|e| e.to_string())?;
        conformance::write(d, v, 0, b"snap")?;
        d.create_snapshot(v, s).map_err(|e| e.to_string())?;
        d.unmanage(ManagedKind::Snapshot, s).map_err(|e| e.to_string())?;
        if d.list_snapshots().map_err(|e| e.to_string())?.contains(&s) {
            return Err("an unmanaged snapshot is still listed".into());
        }
        // LVM reserves names starting with "snapshot": it comes back as _snapshot-<id>.
        d.manage_existing(ManagedKind::Snapshot, s, &format!("_snapshot-{s}"), 0).map_err(|e| e.to_string())?;
        let rows = lvs(f)?;
        let row = rows.iter().find(|r| r.lv_name == format!("cbs-{s}")).ok_or("no cbs- LV after manage")?;
        if !row.activation_skip() || row.lv_attr.as_bytes().get(1) != Some(&b'r') || !row.has_tag("cinderblock") {
            return Err(format!("re-managed snapshot attr {} tags {}", row.lv_attr, row.lv_tags));
        }
        let p = d.snapshot_data_path(s).map_err(|e| e.to_string())?;
        let mut buf = [0u8; 4];
        std::fs::File::open(&p)
            .and_then(|file| std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, 0))
            .map_err(|e| format!("read {}: {e}", p.display()))?;
        if &buf != b"snap" {
            return Err(format!("the re-managed snapshot reads {buf:?}"));
        }
        Ok(())
    })();
    let _ = f.d.delete_snapshot(s);
    let _ = f.d.delete_volume(v);
    let _ = f.d.delete_volume(id);
    let _ = f.d.delete_volume(id2);
    for n in ["legacy".to_string(), "thick".to_string(), format!("volume-{id}")] {
        let _ = f.lvm("lvremove", &["-y", &format!("{VG}/{n}")]);
    }
    r
}

// ---------------------------------------------------------------- the daemon in the VM

/// The result line of [`daemon_on_lvm`].
const DAEMON_CASE: &str = "daemon_on_lvm_pool";

/// The daemon binary inside the VM (build-initramfs.sh puts it there) and qemu-io.
const GUEST_DAEMON: &str = "/cinderblock";
const GUEST_QEMU_IO: &str = "/usr/bin/qemu-io";

/// One HTTP/1.1 exchange with `Connection: close` (the guest has no HTTP client crate at hand
/// that needs no runtime; the daemon sends `Content-Length` on every body).
fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<(u16, serde_json::Value), String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(120))).map_err(|e| e.to_string())?;
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\n\
         OpenStack-API-Version: volume 3.40\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).map_err(|e| format!("{method} {path}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("{method} {path}: reading: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.get(9..12).and_then(|c| c.parse().ok()).ok_or(format!("{method} {path}: no status: {text}"))?;
    let json = text.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or_default();
    Ok((status, serde_json::from_str(json).unwrap_or(serde_json::Value::Null)))
}

/// The daemon, started on `dir/config.toml`; killed (SIGKILL) on drop.
struct Daemon {
    child: Child,
    addr: String,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(dir: &Path, env: &[(&str, &str)]) -> Result<Daemon, String> {
        let mut cmd = Command::new(GUEST_DAEMON);
        cmd.arg("serve").arg("--config").arg(dir.join("config.toml"));
        // The daemon reads CINDERBLOCK_* as configuration: none of the guest's may reach it.
        for (k, _) in std::env::vars() {
            if k.starts_with("CINDERBLOCK_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env.iter().copied());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("daemon.log"))
            .map_err(|e| e.to_string())?;
        cmd.stdout(Stdio::piped()).stderr(log).stdin(Stdio::null());
        let mut child = cmd.spawn().map_err(|e| format!("start the daemon: {e}"))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(a) = line.strip_prefix("cinderblock listening on http://") {
                    let _ = tx.send(a.split_whitespace().next().unwrap_or_default().to_string());
                }
            }
        });
        let mut d = Daemon { child, addr: String::new() };
        d.addr = rx.recv_timeout(Duration::from_secs(120)).map_err(|_| {
            let log = std::fs::read_to_string(dir.join("daemon.log")).unwrap_or_default();
            format!(
                "the daemon printed no listening line: {}",
                log.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
            )
        })?;
        Ok(d)
    }

    /// Wait (without a deadline of its own: the daemon SIGKILLs itself at a crash point) for
    /// the process to end.
    fn wait_killed(&mut self, within: Duration) -> Result<(), String> {
        let end = Instant::now() + within;
        loop {
            if self.child.try_wait().map_err(|e| e.to_string())?.is_some() {
                return Ok(());
            }
            if Instant::now() > end {
                return Err("the daemon did not stop at its crash point".into());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<serde_json::Value>,
        want: u16,
    ) -> Result<serde_json::Value, String> {
        let (st, v) = http(&self.addr, method, path, body.as_ref())?;
        if st != want {
            return Err(format!("{method} {path}: {st} (want {want}): {v}"));
        }
        Ok(v)
    }

    /// Poll `path` until `.{key}.status` is `want` (an `error*` status fails at once).
    fn wait_status(&self, path: &str, key: &str, want: &str) -> Result<(), String> {
        let end = Instant::now() + Duration::from_secs(180);
        loop {
            let v = self.call("GET", path, None, 200)?;
            let st = v[key]["status"].as_str().unwrap_or_default().to_string();
            if st == want {
                return Ok(());
            }
            if st.starts_with("error") || Instant::now() > end {
                return Err(format!("{path}: status {st}, want {want}: {v}"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `os-initialize_connection`: the NBD URI of the volume's new export.
    fn attach(&self, p: &str, vol: &str) -> Result<String, String> {
        let body = serde_json::json!({"os-initialize_connection": {"connector": {"host": "vm"}}});
        let v = self.call("POST", &format!("/v3/{p}/volumes/{vol}/action"), Some(body), 200)?;
        let d = &v["connection_info"]["data"];
        let (host, port, name) = (d["host"].as_str(), d["port"].as_u64(), d["export_name"].as_str());
        match (host, port, name) {
            (Some(h), Some(port), Some(n)) => Ok(format!("nbd://{h}:{port}/{n}")),
            _ => Err(format!("connection_info without an NBD address: {v}")),
        }
    }

    fn detach(&self, p: &str, vol: &str) -> Result<(), String> {
        let body = serde_json::json!({"os-terminate_connection": {"connector": {"host": "vm"}}});
        self.call("POST", &format!("/v3/{p}/volumes/{vol}/action"), Some(body), 202).map(|_| ())
    }
}

/// `qemu-io -f raw URI -c CMD`; a failed command or pattern check is an error.
fn qemu_io(uri: &str, cmd: &str) -> Result<(), String> {
    let out = Command::new(GUEST_QEMU_IO)
        .args(["-f", "raw", uri, "-c", cmd])
        .output()
        .map_err(|e| format!("qemu-io: {e}"))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() || text.contains("failed") || text.contains("error") {
        return Err(format!("qemu-io {cmd:?} on {uri}: {}", text.trim()));
    }
    Ok(())
}

/// The daemon itself on an LVM pool, driven over its API with the data path over its NBD
/// server (issue 12): create → attach → write with qemu-io → snapshot → write more → clone →
/// revert to the first snapshot → read back by pattern; then a revert killed (SIGKILL) after
/// its storage step and before its database step, finished by the restarted daemon.
fn daemon_on_lvm() -> Outcome {
    let dir = PathBuf::from("/tmp/cbd");
    std::fs::create_dir_all(dir.join("files")).map_err(|e| e.to_string())?;
    let config = format!(
        r#"listen = "127.0.0.1:0"
log = "info"
[database]
url = "sqlite://{db}"
[exports]
nbd_listen = "127.0.0.1:0"
[images]
pool = "files"
[[pools]]
name = "files"
path = "{files}"
volume_types = ["files"]
[[pools]]
name = "lvmd"
driver = "lvm"
volume_types = ["__DEFAULT__"]
lvm = {{ vg = "{VG}", thin_pool = "{POOL}", devices = ["/dev/vda"], lvm_binary = "/sbin/lvm" }}
"#,
        db = dir.join("db.sqlite").display(),
        files = dir.join("files").display(),
    );
    std::fs::write(dir.join("config.toml"), config).map_err(|e| e.to_string())?;
    let p = "0123456789abcdef0123456789abcdef";
    let d = Daemon::start(&dir, &[])?;
    let vols = format!("/v3/{p}/volumes");
    let snaps = format!("/v3/{p}/snapshots");
    let v = d.call("POST", &vols, Some(serde_json::json!({"volume": {"size": 1, "name": "vm-vol"}})), 202)?;
    let vol = v["volume"]["id"].as_str().ok_or("no volume id")?.to_string();
    d.wait_status(&format!("{vols}/{vol}"), "volume", "available")?;
    let shown = d.call("GET", &format!("{vols}/{vol}"), None, 200)?;
    if !shown["volume"]["os-vol-host-attr:host"].as_str().is_some_and(|h| h.ends_with("#lvmd")) {
        return Err(format!("the volume is not on the LVM pool: {shown}"));
    }
    if !Path::new(&format!("/dev/{VG}/cbv-{vol}")).exists() {
        return Err(format!("no thin LV cbv-{vol}"));
    }
    let uri = d.attach(p, &vol)?;
    qemu_io(&uri, "write -P 0xaa 0 4M")?;
    qemu_io(&uri, "write -P 0xa1 512M 1M")?;
    let snap = |name: &str| -> Result<String, String> {
        let body = serde_json::json!({"snapshot": {"volume_id": vol, "name": name, "force": true}});
        let s = d.call("POST", &snaps, Some(body), 202)?;
        let id = s["snapshot"]["id"].as_str().ok_or("no snapshot id")?.to_string();
        d.wait_status(&format!("{snaps}/{id}"), "snapshot", "available")?;
        Ok(id)
    };
    let s1 = snap("first")?;
    qemu_io(&uri, "write -P 0xbb 0 4M")?;
    // A clone of the volume as it is now (0xbb), read over its own export.
    let c = d.call("POST", &vols, Some(serde_json::json!({"volume": {"size": 1, "source_volid": vol}})), 202)?;
    let clone = c["volume"]["id"].as_str().ok_or("no clone id")?.to_string();
    d.wait_status(&format!("{vols}/{clone}"), "volume", "available")?;
    let curi = d.attach(p, &clone)?;
    qemu_io(&curi, "read -P 0xbb 0 4M")?;
    qemu_io(&curi, "read -P 0xa1 512M 1M")?;
    d.detach(p, &clone)?;
    // Revert needs the volume unexported (a live export would keep the old data).
    d.detach(p, &vol)?;
    let revert = |d: &Daemon, s: &str| {
        d.call("POST", &format!("{vols}/{vol}/action"), Some(serde_json::json!({"revert": {"snapshot_id": s}})), 202)
    };
    revert(&d, &s1)?;
    d.wait_status(&format!("{vols}/{vol}"), "volume", "available")?;
    let uri = d.attach(p, &vol)?;
    qemu_io(&uri, "read -P 0xaa 0 4M")?;
    qemu_io(&uri, "read -P 0xa1 512M 1M")?;
    // The clone kept its own data through the revert.
    let curi = d.attach(p, &clone)?;
    qemu_io(&curi, "read -P 0xbb 0 4M")?;
    d.detach(p, &clone)?;
    // kill -9 during a revert: write 0xcc, snapshot it, revert to the first snapshot with the
    // daemon set to SIGKILL itself once the storage step is done and before the database
    // step; the restarted daemon runs the job again (every step is idempotent) and finishes.
    qemu_io(&uri, "write -P 0xcc 0 4M")?;
    let s2 = snap("second")?;
    d.detach(p, &vol)?;
    drop(d);
    let mut d = Daemon::start(&dir, &[("CINDERBLOCK_JOBS__CRASH_AT", "rollbackSnapshot:after_storage")])?;
    revert(&d, &s1)?;
    d.wait_killed(Duration::from_secs(120))?;
    drop(d);
    let d = Daemon::start(&dir, &[])?;
    d.wait_status(&format!("{vols}/{vol}"), "volume", "available")?;
    let uri = d.attach(p, &vol)?;
    qemu_io(&uri, "read -P 0xaa 0 4M")?;
    qemu_io(&uri, "read -P 0xa1 512M 1M")?;
    d.detach(p, &vol)?;
    // And forward again, to the second snapshot, by the same daemon.
    revert(&d, &s2)?;
    d.wait_status(&format!("{vols}/{vol}"), "volume", "available")?;
    let uri = d.attach(p, &vol)?;
    qemu_io(&uri, "read -P 0xcc 0 4M")?;
    d.detach(p, &vol)?;
    // Clean up through the API: snapshots, clone, volume; no LV of ours is left.
    for s in [&s1, &s2] {
        d.call("DELETE", &format!("{snaps}/{s}"), None, 202)?;
    }
    for id in [&clone, &vol] {
        let end = Instant::now() + Duration::from_secs(180);
        loop {
            let (st, body) = http(&d.addr, "DELETE", &format!("{vols}/{id}"), None)?;
            if st == 202 {
                break;
            }
            // Snapshot deletions still running: the volume is refused until they are gone.
            if st != 400 || Instant::now() > end {
                return Err(format!("DELETE volume {id}: {st} {body}"));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    let end = Instant::now() + Duration::from_secs(180);
    loop {
        let lvs = sh("/sbin/lvm", &["lvs", "--noheadings", "-o", "lv_name,lv_tags", VG])?;
        let ours: Vec<&str> = lvs.lines().filter(|l| l.contains("cinderblock_pool:lvmd")).collect();
        if ours.is_empty() {
            break;
        }
        if Instant::now() > end {
            return Err(format!("LVs of the daemon's pool left after deleting everything: {ours:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn report(name: &str, r: &Outcome, t: Instant) -> bool {
    let secs = t.elapsed().as_secs_f64();
    match r {
        Ok(()) => println!("RESULT {name} ok {secs:.1}s"),
        Err(e) => println!("RESULT {name} FAILED {}", e.replace('\n', " | ")),
    }
    r.is_ok()
}

#[test]
fn guest_lvm_suite() {
    if !in_vm() {
        return;
    }
    sh("/sbin/lvm", &["pvcreate", "-y", "/dev/vda"]).expect("pvcreate");
    sh("/sbin/lvm", &["vgcreate", VG, "/dev/vda"]).expect("vgcreate");
    let s = settings();
    let d = LvmDriver::open(s.clone()).expect("open the LVM pool (creates the thin pool)");
    let mut f = LvmFixture { s, d };
    let mut ok = true;
    println!();
    for (name, case) in LVM_CASES {
        let t = Instant::now();
        ok &= report(name, &case(&mut f), t);
    }
    for (name, case) in conformance::CASES {
        let t = Instant::now();
        ok &= report(name, &case(&mut f), t);
    }
    let t = Instant::now();
    ok &= report(DAEMON_CASE, &daemon_on_lvm(), t);
    let left: Vec<_> = f.d.list_volumes().unwrap_or_default();
    println!("volumes left: {left:?}");
    println!("{}", sh("/sbin/lvm", &["lvs", "-a", VG]).unwrap_or_default());
    assert!(ok, "some guest cases failed");
}
