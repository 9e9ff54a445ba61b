//! Interop: cinderblock's NBD server (in-process, unix socket in a temp dir and TCP on
//! 127.0.0.1:0) against the real clients: `nbdinfo`, `nbdcopy` (libnbd-bin), `qemu-io`,
//! `qemu-img` (qemu-utils) and fio's nbd engine.
//!
//! A missing tool skips its test with a printed reason, unless `CINDERBLOCK_REQUIRE_PRIVILEGED=1`
//! (CI), which turns the skip into a failure.

use std::net::SocketAddr;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cinderblock::export::nbd::{NbdConfig, NbdServer};

const MIB: u64 = 1 << 20;

/// True when `tool` runs; otherwise skip (print why) or, under CI, fail.
fn have(tool: &str) -> bool {
    let ok = Command::new(tool).arg("--version").output().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!(
            "{tool} is not installed (Debian: libnbd-bin for nbdinfo/nbdcopy, qemu-utils for qemu-io/qemu-img, fio)"
        );
        if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{msg}; required because CINDERBLOCK_REQUIRE_PRIVILEGED=1");
        }
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// A server on its own runtime, serving files from a temp dir.
struct Served {
    rt: tokio::runtime::Runtime,
    server: NbdServer,
    dir: tempfile::TempDir,
    sock: PathBuf,
    tcp: SocketAddr,
}

impl Served {
    fn start() -> Served {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("nbd.sock");
        // This server is the generic one, not the daemon's: it may list its exports.
        let server = NbdServer::new(NbdConfig { allow_list: true, ..NbdConfig::default() });
        let tcp = rt.block_on(async {
            server.listen_unix(&sock).await.unwrap();
            server.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap()
        });
        Served { rt, server, dir, sock, tcp }
    }

    /// Create a sparse file of `size` bytes and export it as `name`.
    fn export(&self, name: &str, size: u64, readonly: bool) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.raw"));
        if !path.exists() {
            std::fs::File::create(&path).unwrap().set_len(size).unwrap();
        }
        self.server.add_export(name.to_string(), path.clone(), readonly).unwrap();
        path
    }

    fn uri(&self, name: &str) -> String {
        format!("nbd+unix:///{name}?socket={}", self.sock.display())
    }

    fn tcp_uri(&self, name: &str) -> String {
        format!("nbd://{}/{name}", self.tcp)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let server = self.server.clone();
        let _ = self.rt.block_on(async move { tokio::time::timeout(Duration::from_secs(20), server.shutdown()).await });
    }
}

/// Run a command; return stdout; fail with stderr on a non-zero exit.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Deterministic pseudo-random bytes (xorshift64*).
fn random_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed | 1;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    v
}

fn sha256(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    out.split_whitespace().next().unwrap().to_string()
}

#[test]
fn nbdinfo_json_shows_flags_contexts_and_block_sizes() {
    if !have("nbdinfo") {
        return;
    }
    let s = Served::start();
    s.export("vol", 16 * MIB, false);
    s.export("snap", 16 * MIB, true);
    for uri in [s.uri("vol"), s.tcp_uri("vol")] {
        let j: serde_json::Value = serde_json::from_str(&run(Command::new("nbdinfo").arg("--json").arg(&uri))).unwrap();
        assert_eq!(j["protocol"], "newstyle-fixed");
        assert_eq!(j["structured"], true);
        let e = &j["exports"][0];
        assert_eq!(e["export-name"], "vol");
        assert_eq!(e["export-size"], 16 * MIB);
        for flag in
            ["can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero", "can_df", "can_multi_conn", "can_cache"]
        {
            assert_eq!(e[flag], true, "{flag} in {e}");
        }
        assert_eq!(e["is_read_only"], false);
        assert_eq!(e["is_rotational"], false);
        assert!(e["contexts"].as_array().unwrap().iter().any(|c| c == "base:allocation"), "{e}");
        assert_eq!(e["block_size_minimum"], 1);
        assert_eq!(e["block_size_preferred"], 4096);
        assert_eq!(e["block_size_maximum"], 32 * MIB);
    }
    let j: serde_json::Value =
        serde_json::from_str(&run(Command::new("nbdinfo").arg("--json").arg(s.uri("snap")))).unwrap();
    let e = &j["exports"][0];
    assert_eq!(e["is_read_only"], true);
    assert_eq!(e["can_trim"], false);
    assert_eq!(e["can_zero"], false);

    // --list sees both exports.
    let list = run(Command::new("nbdinfo").arg("--list").arg("--json").arg(s.uri("")));
    let j: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut names: Vec<String> =
        j["exports"].as_array().unwrap().iter().map(|e| e["export-name"].as_str().unwrap().to_string()).collect();
    names.sort();
    assert_eq!(names, vec!["snap", "vol"]);
}

#[test]
fn nbdinfo_map_matches_the_file_holes() {
    if !have("nbdinfo") {
        return;
    }
    let s = Served::start();
    let path = s.export("vol", 16 * MIB, false);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    let data_ranges = [(MIB, 2 * MIB), (5 * MIB, 4096), (10 * MIB + 8192, 3 * 4096), (15 * MIB, MIB)];
    for (i, (off, len)) in data_ranges.iter().enumerate() {
        f.write_all_at(&random_bytes(i as u64 + 1, *len as usize), *off).unwrap();
    }
    f.sync_all().unwrap();

    // Expected map: data ranges as type 0, everything else hole+zero (3).
    let mut expected = Vec::new();
    let mut pos = 0;
    for (off, len) in data_ranges {
        if off > pos {
            expected.push((pos, off - pos, 3));
        }
        expected.push((off, len, 0));
        pos = off + len;
    }
    if pos < 16 * MIB {
        expected.push((pos, 16 * MIB - pos, 3));
    }

    let out = run(Command::new("nbdinfo").arg("--map").arg("--json").arg(s.uri("vol")));
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let got: Vec<(u64, u64, u64)> = j
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["offset"].as_u64().unwrap(), e["length"].as_u64().unwrap(), e["type"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, expected, "nbdinfo --map output: {out}");

    // Totals agree too.
    let totals = run(Command::new("nbdinfo").arg("--map").arg("--totals").arg(s.uri("vol")));
    let data_bytes: u64 = data_ranges.iter().map(|r| r.1).sum();
    assert!(totals.lines().any(|l| l.split_whitespace().next() == Some(&data_bytes.to_string())), "{totals}");
}

#[test]
fn nbdcopy_round_trips_random_data_both_ways() {
    if !have("nbdcopy") {
        return;
    }
    let s = Served::start();
    let size = 64 * MIB;
    let export = s.export("vol", size, false);

    // A sparse source with random data in some places (odd offsets and lengths).
    let src = s.dir.path().join("src.raw");
    let f = std::fs::File::create(&src).unwrap();
    f.set_len(size).unwrap();
    for (i, off) in [0, 3 * MIB + 512, 20 * MIB, 40 * MIB + 12345, size - MIB].into_iter().enumerate() {
        let len = (MIB + 777).min(size - off) as usize;
        f.write_all_at(&random_bytes(100 + i as u64, len), off).unwrap();
    }
    f.sync_all().unwrap();
    let want = sha256(&src);

    for (i, uri) in [s.uri("vol"), s.tcp_uri("vol")].into_iter().enumerate() {
        // Upload (NBD writes, zeroes for holes), then download (NBD reads, block status).
        // Garbage where the source has a hole: the upload must zero it.
        std::fs::OpenOptions::new().write(true).open(&export).unwrap().write_all_at(&[0xFF; 4096], 10 * MIB).unwrap();
        run(Command::new("nbdcopy").arg("--flush").arg(&src).arg(&uri));
        assert_eq!(sha256(&export), want, "export after upload #{i}");
        let dst = s.dir.path().join(format!("dst{i}.raw"));
        run(Command::new("nbdcopy").arg("--connections=4").arg(&uri).arg(&dst));
        assert_eq!(sha256(&dst), want, "download #{i}");
    }
}

#[test]
fn qemu_io_reads_and_writes_at_odd_offsets() {
    if !have("qemu-io") {
        return;
    }
    let s = Served::start();
    let path = s.export("vol", 8 * MIB, false);
    let out = run(Command::new("qemu-io")
        .args(["-f", "raw"])
        .args([
            "-c",
            "write -P 0xab 12345 10001",
            "-c",
            "read -P 0xab 12345 10001",
            "-c",
            "write -P 0xcd 4095 3",
            "-c",
            "read -P 0xcd 4095 3",
            "-c",
            "write -P 0x11 8388607 1",
            "-c",
            "write -z 77777 5000",
            "-c",
            "read -P 0 77777 5000",
            "-c",
            "aio_write -P 0x22 1000001 65537",
            "-c",
            "aio_flush",
            "-c",
            "read -P 0x22 1000001 65537",
            "-c",
            "flush",
        ])
        .arg(s.uri("vol")));
    assert!(!out.contains("fail"), "{out}");
    assert!(!out.to_lowercase().contains("error"), "{out}");

    let f = std::fs::File::open(&path).unwrap();
    let mut b = vec![0u8; 10001];
    f.read_exact_at(&mut b, 12345).unwrap();
    assert!(b.iter().all(|&x| x == 0xab));
    let mut b = [0u8; 5];
    f.read_exact_at(&mut b, 4094).unwrap();
    assert_eq!(b, [0, 0xcd, 0xcd, 0xcd, 0]);
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, 8 * MIB - 1).unwrap();
    assert_eq!(b, [0x11]);

    // A write past the end is refused by the server (qemu reports an error).
    let out =
        Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 1 8388607 2"]).arg(s.uri("vol")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("failed") || !out.status.success(), "{text}");
}

#[test]
fn qemu_img_compare_agrees() {
    if !have("qemu-img") || !have("qemu-io") {
        return;
    }
    let s = Served::start();
    let path = s.export("vol", 32 * MIB, false);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&random_bytes(7, 5 * MIB as usize), 3 * MIB + 1).unwrap();
    f.sync_all().unwrap();
    let copy = s.dir.path().join("copy.raw");
    std::fs::copy(&path, &copy).unwrap();

    let out = run(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw"]).arg(&copy).arg(s.uri("vol")));
    assert!(out.contains("Images are identical"), "{out}");
    let out =
        run(Command::new("qemu-img").args(["compare", "-f", "raw", "-F", "raw"]).arg(&copy).arg(s.tcp_uri("vol")));
    assert!(out.contains("Images are identical"), "{out}");

    // Change one byte through NBD: compare must see it, at that offset.
    run(Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 0x5a 20000000 1"]).arg(s.uri("vol")));
    let out = Command::new("qemu-img")
        .args(["compare", "-f", "raw", "-F", "raw"])
        .arg(&copy)
        .arg(s.uri("vol"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Content mismatch at offset 19999744"));
}

#[test]
fn trim_punches_a_hole() {
    if !have("qemu-io") || !have("nbdinfo") {
        return;
    }
    let s = Served::start();
    let path = s.export("vol", 16 * MIB, false);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.write_all_at(&random_bytes(9, 16 * MIB as usize), 0).unwrap();
    f.sync_all().unwrap();
    let before = std::fs::metadata(&path).unwrap().blocks();

    run(Command::new("qemu-io").args(["-f", "raw", "-c", "discard 4M 8M", "-c", "flush"]).arg(s.uri("vol")));
    let after = std::fs::metadata(&path).unwrap().blocks();
    assert!(before - after >= 8 * MIB / 512, "st_blocks {before} -> {after}: TRIM did not punch 8 MiB");

    let out = run(Command::new("nbdinfo").arg("--map").arg(s.uri("vol")));
    let lines: Vec<Vec<String>> = out
        .lines()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .filter(|v: &Vec<String>| v.len() >= 3)
        .collect();
    assert!(lines.iter().any(|v| v[0] == "4194304" && v[1] == "8388608" && v[2] == "3"), "{out}");
}

#[test]
fn read_only_export_refuses_writes() {
    if !have("qemu-io") || !have("nbdcopy") {
        return;
    }
    let s = Served::start();
    let path = s.export("snap", 8 * MIB, true);
    let src = s.dir.path().join("src.raw");
    std::fs::write(&src, random_bytes(3, 8 * MIB as usize)).unwrap();

    let out =
        Command::new("qemu-io").args(["-f", "raw", "-c", "write -P 1 0 4096"]).arg(s.uri("snap")).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() || text.contains("failed") || text.contains("read-only"), "{text}");

    let out = Command::new("nbdcopy").arg(&src).arg(s.uri("snap")).output().unwrap();
    assert!(!out.status.success(), "nbdcopy into a read-only export succeeded");

    // Reads work, and nothing was written.
    run(Command::new("qemu-io").args(["-f", "raw", "-r", "-c", "read -P 0 0 4096"]).arg(s.uri("snap")));
    assert_eq!(std::fs::metadata(&path).unwrap().blocks(), 0);
}

#[test]
fn fio_verifies_concurrent_random_writes() {
    if !have("fio") {
        return;
    }
    let s = Served::start();
    s.export("vol", 64 * MIB, false);
    // fio writes verify state files into its working directory: keep them in the temp dir.
    let out = run(Command::new("fio").current_dir(s.dir.path()).args([
        "--name=verify",
        "--ioengine=nbd",
        &format!("--uri={}", s.uri("vol")),
        "--rw=randwrite",
        "--bs=4k",
        "--iodepth=32",
        "--size=64M",
        "--verify=crc32c",
        "--do_verify=1",
        "--verify_fatal=1",
        "--verify_state_save=0",
    ]));
    assert!(out.contains("verify") || out.contains("WRITE"), "{out}");
}

#[test]
fn remove_export_disconnects_a_live_client() {
    if !have("qemu-io") {
        return;
    }
    let s = Served::start();
    s.export("vol", 8 * MIB, false);
    // qemu-io in interactive mode keeps its connection open while we remove the export.
    let mut child = Command::new("qemu-io")
        .args(["-f", "raw"])
        .arg(s.uri("vol"))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.server.list()[0].connections == 0 {
        assert!(std::time::Instant::now() < deadline, "qemu-io never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    let server = s.server.clone();
    let removed =
        s.rt.block_on(async move { tokio::time::timeout(Duration::from_secs(20), server.remove_export("vol")).await });
    assert_eq!(removed.ok(), Some(true));
    assert!(s.server.list().is_empty());
    drop(child.stdin.take());
    let _ = child.wait();
}
