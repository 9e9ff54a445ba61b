//! The driver conformance suite (`cinderblock::driver::conformance`) against the file driver on
//! XFS (reflink=1), btrfs and ext4 images, each attached with `losetup -f --show` and mounted
//! (privileged), and on the test's temp directory (always). The same cases run against the LVM
//! driver inside the test VM (`tests/lvm_vm.rs`).
//!
//! Not root: the XFS/btrfs/ext4 test prints why and passes, unless
//! `CINDERBLOCK_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure. Mounts and loop
//! devices are released by a guard, also when the test panics.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use cinderblock::driver::conformance::{self, Fixture, Outcome};
use cinderblock::driver::{Driver, FileDriver};
use uuid::Uuid;

const TOOLS: [&str; 6] = ["mkfs.xfs", "mkfs.btrfs", "mkfs.ext4", "losetup", "mount", "umount"];

fn tool_exists(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/sbin", "/usr/sbin"].map(PathBuf::from)).any(|d| d.join(name).is_file())
}

fn privileged(test: &str) -> bool {
    let required = std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX);
    let why = if euid != 0 {
        Some("not running as root".to_string())
    } else {
        let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !tool_exists(t)).collect();
        (!missing.is_empty()).then(|| format!("missing tools {missing:?} (scripts/test.sh installs them)"))
    };
    match why {
        None => true,
        Some(w) if required => panic!("{test}: CINDERBLOCK_REQUIRE_PRIVILEGED=1 but {w}"),
        Some(w) => {
            eprintln!("SKIP {test}: {w}; set CINDERBLOCK_REQUIRE_PRIVILEGED=1 to make this a failure");
            false
        }
    }
}

fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd)
        .args(args)
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A mounted file-system image on a loop device, released on drop.
struct Mount {
    mnt: PathBuf,
    dev: Option<String>,
}

impl Mount {
    fn new(img: &Path, size: u64, mkfs: &[&str], mnt: &Path) -> Mount {
        std::fs::File::create(img).and_then(|f| f.set_len(size)).expect("image file");
        let img_s = img.to_str().expect("utf-8");
        let mut args: Vec<&str> = mkfs[1..].to_vec();
        args.push(img_s);
        run(mkfs[0], &args);
        let dev = run("losetup", &["-f", "--show", img_s]).trim().to_string();
        assert!(dev.starts_with("/dev/loop"), "losetup printed {dev:?}");
        std::fs::create_dir_all(mnt).expect("mount point");
        let m = Mount { mnt: mnt.to_path_buf(), dev: Some(dev.clone()) };
        run("mount", &[&dev, mnt.to_str().expect("utf-8")]);
        m
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let m = self.mnt.to_string_lossy().into_owned();
        let mounted = || std::fs::read_to_string("/proc/self/mounts").unwrap_or_default().contains(&format!(" {m} "));
        let deadline = Instant::now() + Duration::from_secs(10);
        while mounted() {
            if Command::new("umount").arg(&m).status().is_ok_and(|s| s.success()) || Instant::now() > deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if mounted() {
            let _ = Command::new("umount").args(["-l", &m]).status();
        }
        if let Some(d) = self.dev.take() {
            let _ = Command::new("losetup").args(["-d", &d]).status();
        }
    }
}

/// The file driver as a conformance fixture.
struct FileFixture {
    root: PathBuf,
    driver: FileDriver,
}

impl Fixture for FileFixture {
    fn driver(&self) -> &dyn Driver {
        &self.driver
    }

    fn reopen(&mut self) -> Outcome {
        self.driver = FileDriver::open(&self.root).map_err(|e| format!("reopen: {e}"))?;
        Ok(())
    }

    /// The file driver's revert has one step that can be cut: the reflink or copy being built
    /// in `tmp/` (a kill -9 leaves a partial file there; the rename has not happened).
    fn interrupt_revert(&self, volume: Uuid, _snapshot: Uuid, step: u32) -> Result<bool, String> {
        if step > 1 {
            return Ok(false);
        }
        let tmp = self.root.join("tmp").join(format!("{}.revert", volume.hyphenated()));
        std::fs::write(&tmp, b"half a revert").map_err(|e| format!("{}: {e}", tmp.display()))?;
        Ok(true)
    }

    fn scratch_dir(&self) -> PathBuf {
        self.root.clone()
    }
}

fn run_suite(root: &Path, label: &str) {
    let driver = FileDriver::open(root).expect("open pool");
    let mut f = FileFixture { root: root.to_path_buf(), driver };
    let results = conformance::run_all(&mut f);
    let mut failed = Vec::new();
    for (name, r) in &results {
        match r {
            Ok(()) => eprintln!("conformance {label} {name}: ok"),
            Err(e) => {
                eprintln!("conformance {label} {name}: FAILED: {e}");
                failed.push(format!("{name}: {e}"));
            }
        }
    }
    assert_eq!(results.len(), conformance::CASES.len());
    assert!(failed.is_empty(), "{label}: {failed:#?}");
    assert!(f.driver.list_volumes().expect("list").is_empty(), "{label}: the suite left volumes behind");
    assert!(f.driver.list_snapshots().expect("list").is_empty(), "{label}: the suite left snapshots behind");
}

#[test]
fn file_driver_on_the_temp_dir() {
    let dir = tempfile::tempdir().expect("tmp");
    run_suite(dir.path(), "tmpdir");
}

#[test]
fn file_driver_on_xfs_btrfs_ext4() {
    if !privileged("file_driver_on_xfs_btrfs_ext4") {
        return;
    }
    let work = tempfile::tempdir().expect("tmp");
    let specs: [(&str, u64, &[&str]); 3] = [
        ("xfs", 512 << 20, &["mkfs.xfs", "-q", "-f", "-m", "reflink=1"]),
        ("btrfs", 512 << 20, &["mkfs.btrfs", "-q", "-f"]),
        ("ext4", 512 << 20, &["mkfs.ext4", "-q", "-F"]),
    ];
    for (fs, size, mkfs) in specs {
        let mnt = work.path().join(fs);
        let _m = Mount::new(&work.path().join(format!("{fs}.img")), size, mkfs, &mnt);
        run_suite(&mnt.join("pool"), fs);
    }
}
