//! A throwaway single-node Ceph cluster for the RBD tests (tests/rbd_conformance.rs,
//! tests/rbd_api.rs): `scripts/ceph/cluster.sh` bootstraps one monitor, one manager and one
//! bluestore OSD on a sparse file (about 12 s, under /var/tmp, on free localhost ports); the
//! guard stops it by its pid files and removes it on drop, also when the test panics.
//!
//! Without Ceph's daemons (Debian's ceph-mon, ceph-mgr, ceph-osd, ceph-common; scripts/test.sh
//! installs them as root) [`ceph_available`] prints why and the test passes, unless
//! `CINDERBLOCK_REQUIRE_PRIVILEGED=1`, which turns the skip into a failure.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

const TOOLS: [&str; 7] = ["ceph-mon", "ceph-mgr", "ceph-osd", "ceph", "rbd", "rados", "uuidgen"];

fn tool_exists(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/sbin", "/usr/sbin", "/usr/bin"].map(PathBuf::from))
        .any(|d| d.join(name).is_file())
}

/// Whether the cluster can be made; prints the reason (or panics under
/// CINDERBLOCK_REQUIRE_PRIVILEGED=1) when not.
pub fn ceph_available(test: &str) -> bool {
    let missing: Vec<&str> = TOOLS.iter().copied().filter(|t| !tool_exists(t)).collect();
    if missing.is_empty() {
        return true;
    }
    let why =
        format!("missing {missing:?} (Debian ceph-mon ceph-mgr ceph-osd ceph-common; scripts/test.sh installs them)");
    if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1") {
        panic!("{test}: CINDERBLOCK_REQUIRE_PRIVILEGED=1 but {why}");
    }
    eprintln!("SKIP {test}: {why}; set CINDERBLOCK_REQUIRE_PRIVILEGED=1 to make this a failure");
    false
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ceph/cluster.sh")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// A running throwaway cluster; stopped (by pid) and removed on drop.
pub struct Cluster {
    dir: PathBuf,
    /// Its ceph.conf.
    pub conf: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    /// Bootstrap a cluster without authentication (panics when that fails).
    pub fn start() -> Cluster {
        Cluster::start_with("none")
    }

    /// Bootstrap a cluster with cephx: `client.cinderblock` (Ceph's `profile rbd` on pool
    /// rbd) has its key in [`Cluster::client_keyring`].
    pub fn start_cephx() -> Cluster {
        Cluster::start_with("cephx")
    }

    /// The keyring of `client.cinderblock` (cephx clusters).
    pub fn client_keyring(&self) -> PathBuf {
        self.dir.join("cinderblock.keyring")
    }

    fn start_with(auth: &str) -> Cluster {
        let tmp = tempfile::Builder::new().prefix("cb-ceph").tempdir_in("/var/tmp").expect("tmp");
        let dir = tmp.path().join("c");
        let (v2, v1) = (free_port(), free_port());
        let started = std::time::Instant::now();
        // The guard exists before the start, so a start that fails half-way is stopped too.
        let c = Cluster { conf: dir.join("ceph.conf"), dir, _tmp: tmp };
        let out = Command::new("bash")
            .arg(script())
            .args(["start", c.dir.to_str().expect("utf-8"), &v2.to_string(), &v1.to_string(), auth])
            .output()
            .expect("run cluster.sh");
        assert!(
            out.status.success(),
            "ceph bootstrap failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("ceph cluster up in {:.1}s", started.elapsed().as_secs_f64());
        c
    }

    /// Run `ceph -c <conf> ARGS`; panics when it fails.
    pub fn ceph(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args(["60", "ceph", "-c", self.conf.to_str().expect("utf-8"), "--connect-timeout", "30"])
            .args(args)
            .output()
            .expect("run ceph");
        assert!(out.status.success(), "ceph {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Run `rbd -c <conf> -p rbd ARGS`; panics when it fails.
    pub fn rbd(&self, args: &[&str]) -> String {
        let out = Command::new("timeout")
            .args(["60", "rbd", "-c", self.conf.to_str().expect("utf-8"), "-p", "rbd"])
            .args(args)
            .output()
            .expect("run rbd");
        assert!(out.status.success(), "rbd {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).args(["stop", self.dir.to_str().unwrap_or("")]).status();
    }
}
