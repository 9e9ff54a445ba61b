//! Privileged: our loop module against the real kernel. Attach a sparse file, make ext4 on
//! `/dev/loopN`, mount, write, unmount, detach, re-attach read-only and read back; adoption by
//! backing file, LOOP_SET_CAPACITY after growing the file, idempotent detach.
//!
//! Needs root (and mkfs.ext4, mount). Skips with a printed reason otherwise, unless
//! `CINDERBLOCK_REQUIRE_PRIVILEGED=1` (CI), which turns the skip into a failure. Drop guards
//! unmount and detach whatever a failing assertion leaves behind.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use cinderblock::export::loopdev::{self, AttachOptions, LoopDevice};

fn privileged() -> bool {
    let required = std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() == Ok("1");
    // /proc/self belongs to the effective uid.
    let root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    let reason = if !root {
        Some("not root".to_string())
    } else if !Path::new("/dev/loop-control").exists() {
        Some("no /dev/loop-control".to_string())
    } else if !Command::new("mkfs.ext4").arg("-V").output().is_ok_and(|o| o.status.success()) {
        Some("mkfs.ext4 missing (Debian: e2fsprogs)".to_string())
    } else {
        None
    };
    match reason {
        None => true,
        Some(r) if required => panic!("loop device test required (CINDERBLOCK_REQUIRE_PRIVILEGED=1) but {r}"),
        Some(r) => {
            eprintln!("SKIP: loop device test needs privileges: {r}");
            false
        }
    }
}

/// Detaches on drop (unless already detached).
struct LoopGuard(Option<LoopDevice>);

impl Drop for LoopGuard {
    fn drop(&mut self) {
        if let Some(d) = self.0.take() {
            let _ = loopdev::detach(d);
        }
    }
}

/// Unmounts on drop.
struct MountGuard(Option<PathBuf>);

impl MountGuard {
    fn mount(dev: &Path, at: &Path, opts: &str) -> MountGuard {
        run(Command::new("mount").args(["-t", "ext4", "-o", opts]).arg(dev).arg(at));
        MountGuard(Some(at.to_path_buf()))
    }

    fn unmount(mut self) {
        if let Some(p) = self.0.take() {
            run(Command::new("umount").arg(&p));
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = Command::new("umount").arg("-l").arg(&p).status();
        }
    }
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn attach_mkfs_mount_write_detach_reattach_read_only() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vol.raw");
    std::fs::File::create(&file).unwrap().set_len(128 << 20).unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();

    // Read-write, direct I/O asked for (falls back if the filesystem refuses).
    let att = loopdev::attach(&file, AttachOptions::default()).unwrap();
    let mut guard = LoopGuard(Some(att.device));
    let dev = att.device.path();
    eprintln!("attached {} (direct I/O: {})", dev.display(), att.direct_io);
    assert_eq!(att.direct_io, att.device.is_direct_io());
    assert!(!att.device.is_read_only());
    assert_eq!(att.device.size_bytes(), Some(128 << 20));
    assert_eq!(att.device.backing_file(), Some(std::fs::canonicalize(&file).unwrap()));
    assert_eq!(loopdev::find_by_backing_file(&file).unwrap(), vec![att.device]);
    assert!(loopdev::list_attached().unwrap().iter().any(|(d, _)| *d == att.device));

    run(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&dev));
    let m = MountGuard::mount(&dev, &mnt, "rw");
    let payload: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(mnt.join("hello.bin"), &payload).unwrap();
    run(Command::new("sync").arg("-f").arg(mnt.join("hello.bin")));
    m.unmount();

    loopdev::detach(att.device).unwrap();
    guard.0 = None;
    assert_eq!(att.device.backing_file(), None, "still bound after detach");
    assert!(loopdev::find_by_backing_file(&file).unwrap().is_empty());
    // Detach is idempotent.
    loopdev::detach(att.device).unwrap();

    // Re-attach read-only: the data is there, writes are refused.
    let ro = loopdev::attach(&file, AttachOptions { readonly: true, ..AttachOptions::default() }).unwrap();
    let _ro_guard = LoopGuard(Some(ro.device));
    assert!(ro.device.is_read_only());
    let m = MountGuard::mount(&ro.device.path(), &mnt, "ro,noload");
    assert_eq!(std::fs::read(mnt.join("hello.bin")).unwrap(), payload);
    assert!(std::fs::write(mnt.join("other"), b"x").is_err());
    m.unmount();
    // Root may open the device for writing, but a write must fail (EPERM).
    use std::io::Write;
    let refused = match std::fs::OpenOptions::new().write(true).open(ro.device.path()) {
        Err(_) => true,
        Ok(mut w) => w.write_all(&[0u8; 4096]).and_then(|_| w.sync_all()).is_err(),
    };
    assert!(refused, "a write to a read-only loop device succeeded");
}

#[test]
fn set_capacity_after_growing_the_file() {
    if !privileged() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("grow.raw");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(16 << 20).unwrap();
    let att = loopdev::attach(&file, AttachOptions { direct_io: false, ..AttachOptions::default() }).unwrap();
    let _g = LoopGuard(Some(att.device));
    assert!(!att.direct_io);
    assert_eq!(att.device.size_bytes(), Some(16 << 20));
    f.set_len(48 << 20).unwrap();
    loopdev::set_capacity(att.device).unwrap();
    assert_eq!(att.device.size_bytes(), Some(48 << 20));
}
