//! kill -9 in the middle of storage work (issue 3: "A kill-9 test during rollback and during a
//! full clone"), on SQLite and PostgreSQL. The harness's pool is on a file system without
//! reflink here, so rollbacks, snapshots and full clones are sparse copies of hundreds of MiB
//! that take long enough to be killed half-way: the test watches `<pool>/tmp/` for the
//! half-built file and kills the daemon as soon as it appears. It also kills jobs while they wait
//! in the test-only `jobs.step_delay_ms` pause after their claim.
//!
//! After every kill: the volume file is whole, all of it the old content or all of it the new
//! (never torn; half-built files only ever live in `tmp/`). After the restart (no delay): the
//! interrupted job finishes, every volume and snapshot is in a final status with the content of
//! its point in time, and the pool holds exactly the files of the API's lists, `tmp/` empty.

#[macro_use]
mod common;
mod snapkit;

use std::collections::{BTreeSet, HashMap};
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer, GIB};
use snapkit::{ids_in, mv, post_h, random_bytes, snapshot_file, tmp_entries, wait_snapshot, BLOCK};

backend_tests!(kill9_during_rollback_keeps_the_volume_whole, kill9_during_snapshot_and_full_clone);

/// Data blocks written per generation (1 MiB each): enough that a copy takes a while.
const DATA_BLOCKS: u64 = 512;
/// Volume size in GiB (the data sits in its first `DATA_BLOCKS` MiB).
const SIZE_GB: u64 = 2;
/// How long a kill may wait for the half-built file to show up.
const CATCH_TIMEOUT: Duration = Duration::from_secs(60);

/// The content of block `idx` of generation `generation`: a random 1 MiB per generation, with
/// the generation and block number stamped in its first 16 bytes.
fn block(base: &[u8], generation: u64, idx: u64) -> Vec<u8> {
    let mut b = base.to_vec();
    b[..8].copy_from_slice(&generation.to_le_bytes());
    b[8..16].copy_from_slice(&idx.to_le_bytes());
    b
}

fn base_of(generation: u64) -> Vec<u8> {
    random_bytes(0xC0FFEE ^ generation, BLOCK as usize)
}

/// Overwrite the data blocks of `path` with generation `generation` (synced).
fn write_generation(path: &Path, generation: u64) {
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let base = base_of(generation);
    for idx in 0..DATA_BLOCKS {
        f.write_all_at(&block(&base, generation, idx), idx * BLOCK).expect("write");
    }
    f.sync_all().expect("fsync");
}

/// Which generation the whole file holds; `Err` describes how it is torn or damaged.
fn generation_of(path: &Path) -> Result<u64, String> {
    let f = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    if len != SIZE_GB * GIB {
        return Err(format!("{} is {len} bytes, not {SIZE_GB} GiB", path.display()));
    }
    let mut bases: HashMap<u64, Vec<u8>> = HashMap::new();
    let mut seen = BTreeSet::new();
    let mut buf = vec![0u8; BLOCK as usize];
    for idx in 0..DATA_BLOCKS {
        f.read_exact_at(&mut buf, idx * BLOCK).map_err(|e| e.to_string())?;
        let generation = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes"));
        let base = bases.entry(generation).or_insert_with(|| base_of(generation));
        if buf != block(base, generation, idx) {
            return Err(format!("block {idx} of {} is not a block of generation {generation}", path.display()));
        }
        seen.insert(generation);
    }
    // Nothing but zeros after the data.
    let zero = vec![0u8; BLOCK as usize];
    let mut pos = DATA_BLOCKS * BLOCK;
    while pos < len {
        let data = match nix::unistd::lseek(f.as_fd(), pos as i64, nix::unistd::Whence::SeekData) {
            Ok(o) => o as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => return Err(format!("SEEK_DATA: {e}")),
        };
        let start = data / BLOCK * BLOCK;
        let n = (len - start).min(BLOCK) as usize;
        f.read_exact_at(&mut buf[..n], start).map_err(|e| e.to_string())?;
        if buf[..n] != zero[..n] {
            return Err(format!("{} has data at {start} past the written blocks", path.display()));
        }
        pos = start + n as u64;
    }
    match seen.len() {
        1 => Ok(*seen.iter().next().expect("one")),
        _ => Err(format!("{} is torn: blocks of generations {seen:?}", path.display())),
    }
}

fn assert_generation(path: &Path, want: u64, what: &str) {
    match generation_of(path) {
        Ok(g) => assert_eq!(g, want, "{what}: {} holds generation {g}, expected {want}", path.display()),
        Err(e) => panic!("{what}: {e}"),
    }
}

/// Poll until `tmp/` holds an entry starting with `prefix` (the half-built file), then kill -9
/// the daemon at once. Returns whether the file was caught (false: the step finished first).
async fn kill_when_building(srv: &TestServer, prefix: &str, finished: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + CATCH_TIMEOUT;
    loop {
        if tmp_entries(&srv.pool).iter().any(|e| e.starts_with(prefix)) {
            srv.kill9();
            return true;
        }
        if finished() {
            srv.kill9();
            return false;
        }
        assert!(Instant::now() < deadline, "no temp file for {prefix} within {CATCH_TIMEOUT:?}:\n{}", srv.log_tail(30));
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// The generation stamped in the first block of a file (cheap: 16 bytes).
fn first_generation(path: &Path) -> Option<u64> {
    let mut b = [0u8; 16];
    File::open(path).ok()?.read_exact_at(&mut b, 0).ok()?;
    Some(u64::from_le_bytes(b[..8].try_into().ok()?))
}

/// On a pool without reflink a copy of `DATA_BLOCKS` MiB takes long enough to be caught; on a
/// reflink pool (the harness's temp dir on XFS or btrfs) a revert or a snapshot is a reflink
/// that may finish first, which is fine: the kill then came after the step.
fn require_caught(srv: &TestServer, caught: bool, what: &str) {
    let reflink = std::fs::read_to_string(&srv.log_path)
        .unwrap_or_default()
        .lines()
        .any(|l| l.contains("pool ready") && l.contains("pool=default ") && l.contains("reflink=true"));
    if reflink && !caught {
        eprintln!("note: the {what} finished before the kill (reflink pool): no mid-copy kill this time");
        return;
    }
    assert!(caught, "the {what} finished before the test saw its temp file; make DATA_BLOCKS larger");
    eprintln!("killed half-way through the {what}");
}

/// Poll the database until some job is RUNNING (claimed, inside the step delay).
async fn wait_running_job(srv: &TestServer) {
    let deadline = Instant::now() + CATCH_TIMEOUT;
    while !srv.db_jobs().await.iter().any(|(_, st)| st == "RUNNING") {
        assert!(Instant::now() < deadline, "no job became RUNNING");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ids of a list of the API (all projects).
async fn listed(api: &Api, path: &str, key: &str) -> BTreeSet<String> {
    let r = api.get(path).await.expect(200);
    r.body[key]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: {}", r.text))
        .iter()
        .map(|v| v["id"].as_str().expect("id").to_string())
        .collect()
}

/// The pool holds exactly the listed volumes and snapshots, `tmp/` is empty, nothing is in a
/// transitional status and every job is finished.
async fn assert_consistent(srv: &TestServer, api: &Api, p: &str) {
    let vols = listed(api, &format!("/v3/{p}/volumes/detail?all_tenants=1"), "volumes").await;
    let snaps = listed(api, &format!("/v3/{p}/snapshots/detail?all_tenants=1"), "snapshots").await;
    assert_eq!(ids_in(&srv.pool, "volumes"), vols, "volume files vs the API's list");
    assert_eq!(ids_in(&srv.pool, "snapshots"), snaps, "snapshot files vs the API's list");
    assert!(tmp_entries(&srv.pool).is_empty(), "tmp/ is not empty: {:?}", tmp_entries(&srv.pool));
    for (id, st) in srv.db_volumes().await {
        assert!(matches!(st.as_str(), "available" | "in-use"), "volume {id} left {st}");
    }
    for id in &snaps {
        let st = api.get(&format!("/v3/{p}/snapshots/{id}")).await.expect(200).body["snapshot"]["status"].clone();
        assert_eq!(st, "available", "snapshot {id}");
    }
    for (id, st) in srv.db_jobs().await {
        assert_eq!(st, "SUCCESS", "job {id}");
    }
}

async fn volume_with_data(srv: &TestServer, api: &Api, p: &str, generation: u64) -> (String, PathBuf) {
    let v = api.cinder_create_available(p, json!({"size": SIZE_GB, "name": "big"})).await;
    let id = s(&v, "id");
    let path = srv.volume_path(&id);
    write_generation(&path, generation);
    (id, path)
}

async fn kill9_during_rollback_keeps_the_volume_whole(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let (vid, vpath) = volume_with_data(&srv, &api, &p, 1).await;
    let sid = s(&snapkit::cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    assert_generation(&snapshot_file(&srv.pool, &sid), 1, "snapshot");
    write_generation(&vpath, 2);

    // 1. Killed while the rollback job waits between its claim and its storage step.
    srv.restart_with(|o| o.step_delay_ms = 600_000);
    let r = api
        .post(&format!("/v2/{p}/cloudsnapshots/{sid}/rollback"), json!({"rollback": {"volume_id": vid}}))
        .await
        .expect(202);
    assert_eq!(r.body["rollback"]["volume_id"], vid.as_str());
    wait_running_job(&srv).await;
    let v = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "rollbacking", "{v}");
    srv.kill9();
    assert_generation(&vpath, 2, "volume after a kill before the rollback step");
    srv.restart_with(|o| o.step_delay_ms = 0);
    let v = snapkit::wait_volume_any(&api, &p, &vid, &["available", "error_rollbacking"]).await;
    assert_eq!(v["status"], "available", "{v}");
    assert_generation(&vpath, 1, "volume after the recovered rollback");
    assert_consistent(&srv, &api, &p).await;

    // 2. Killed half-way through the copy of a Cinder revert.
    write_generation(&vpath, 3);
    let (k, v40) = mv(40);
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v40)], json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect(202);
    let caught = kill_when_building(&srv, &vid, || first_generation(&vpath) == Some(1)).await;
    require_caught(&srv, caught, "revert");
    // Right after the kill, before any recovery: old or new, never a mix.
    let g = generation_of(&vpath).unwrap_or_else(|e| panic!("volume after a kill during the revert copy: {e}"));
    assert!(g == 3 || g == 1, "volume holds generation {g}");
    eprintln!("killed during the revert copy; the volume held generation {g} (3 = old, 1 = snapshot)");
    srv.restart_with(|o| o.step_delay_ms = 0);
    let v = snapkit::wait_volume_any(&api, &p, &vid, &["available", "error_rollbacking"]).await;
    assert_eq!(v["status"], "available", "{v}");
    assert_generation(&vpath, 1, "volume after the recovered revert");
    assert_generation(&snapshot_file(&srv.pool, &sid), 1, "snapshot after the recovered revert");
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    assert_consistent(&srv, &api, &p).await;
}

async fn kill9_during_snapshot_and_full_clone(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let (vid, vpath) = volume_with_data(&srv, &api, &p, 1).await;

    // 1. A snapshot killed half-way through its copy.
    let snap = snapkit::cinder_snapshot(&api, &p, &vid, json!({})).await;
    let sid = s(&snap, "id");
    let spath = snapshot_file(&srv.pool, &sid);
    let caught = kill_when_building(&srv, &sid, || spath.exists()).await;
    require_caught(&srv, caught, "snapshot");
    assert!(!spath.exists() || generation_of(&spath) == Ok(1), "a half-built snapshot is visible");
    srv.restart_with(|o| o.step_delay_ms = 0);
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    assert_generation(&spath, 1, "snapshot after recovery");
    assert_consistent(&srv, &api, &p).await;
    write_generation(&vpath, 2);

    // 2. A full clone of the snapshot killed half-way through its copy.
    let clone: Value = api.cinder_create(&p, json!({"snapshot_id": sid, "metadata": {"full_clone": "1"}})).await;
    let cid = s(&clone, "id");
    let cpath = srv.volume_path(&cid);
    let caught = kill_when_building(&srv, &cid, || cpath.exists()).await;
    require_caught(&srv, caught, "full clone");
    assert!(!cpath.exists(), "a half-built clone is visible as a volume");
    srv.restart_with(|o| o.step_delay_ms = 0);
    let v = snapkit::wait_volume_any(&api, &p, &cid, &["available", "error"]).await;
    assert_eq!(v["status"], "available", "{v}");
    assert_generation(&cpath, 1, "full clone after recovery");
    assert_generation(&vpath, 2, "source volume");
    assert_consistent(&srv, &api, &p).await;

    // 3. A full clone of the live volume killed in the pause before its storage step.
    srv.restart_with(|o| o.step_delay_ms = 600_000);
    let live = api.cinder_create(&p, json!({"source_volid": vid, "metadata": {"full_clone": "1"}})).await;
    let lid = s(&live, "id");
    wait_running_job(&srv).await;
    srv.kill9();
    assert!(!srv.volume_path(&lid).exists());
    srv.restart_with(|o| o.step_delay_ms = 0);
    let v = snapkit::wait_volume_any(&api, &p, &lid, &["available", "error"]).await;
    assert_eq!(v["status"], "available", "{v}");
    assert_generation(&srv.volume_path(&lid), 2, "full clone of the live volume after recovery");
    assert_consistent(&srv, &api, &p).await;

    // Cleanup through the API leaves an empty pool.
    for id in [&cid, &lid] {
        api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
        api.wait_volume_gone(&p, id).await;
    }
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    assert_consistent(&srv, &api, &p).await;
    assert!(ids_in(&srv.pool, "volumes").is_empty() && ids_in(&srv.pool, "snapshots").is_empty());
}
