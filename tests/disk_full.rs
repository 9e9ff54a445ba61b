//! Disk full (issue 17, "the matrix that proves it stays fixed"): a pool on a small real
//! filesystem (a tmpfs mount) that also holds the SQLite database, as on a one-disk homelab.
//! When it fills up, jobs fail cleanly (`error` with the reason in the log and a user message),
//! a failed copy leaves no temporary file behind, a failed rollback leaves the volume's bytes as
//! they were, the daemon keeps answering and recording, and work succeeds once space is freed.

#[macro_use]
mod common;
mod snapkit;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(a_full_pool_fails_jobs_cleanly_and_recovers);

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const MIB: usize = 1 << 20;
/// Filesystem size, and the data written into each of two volumes: together they leave less
/// free space than one more copy of a volume needs.
const FS_MIB: usize = 80;
const DATA_MIB: usize = 30;

/// True when the test can run; otherwise prints why (or panics when privileged tests are required).
fn privileged(test: &str) -> bool {
    let required = std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").is_ok_and(|v| v == "1");
    let euid = std::fs::metadata("/proc/self").map(|m| std::os::unix::fs::MetadataExt::uid(&m)).unwrap_or(u32::MAX);
    if euid == 0 {
        return true;
    }
    assert!(!required, "{test}: CINDERBLOCK_REQUIRE_PRIVILEGED=1 but not running as root");
    eprintln!("SKIP {test}: not running as root (mounts a tmpfs); set CINDERBLOCK_REQUIRE_PRIVILEGED=1 to make this a failure");
    false
}

/// Unmounts on drop (after the daemon, which is declared later and so dropped first).
#[derive(Default)]
struct Mount(Option<PathBuf>);

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(m) = self.0.take() {
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let ok = Command::new("umount").arg(&m).status().is_ok_and(|s| s.success());
                if ok || Instant::now() > deadline {
                    if !ok {
                        let _ = Command::new("umount").arg("-l").arg(&m).status();
                    }
                    break;
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

fn write_data(path: &Path, seed: u64) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open volume file");
    f.write_all(&snapkit::random_bytes(seed, DATA_MIB * MIB)).expect("fill the volume");
    f.sync_all().expect("fsync");
}

fn free_bytes(path: &Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64
}

async fn messages_about(api: &Api, p: &str, id: &str) -> Vec<Value> {
    let r = api.get_h(&format!("/v3/{p}/messages"), &[("OpenStack-API-Version", "volume 3.3")]).await.expect(200);
    r.body["messages"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|m| m["resource_uuid"] == id)
        .collect()
}

async fn wait_snapshot(api: &Api, p: &str, id: &str) -> Value {
    snapkit::wait_snapshot(api, p, id, &["available", "error"]).await
}

async fn a_full_pool_fails_jobs_cleanly_and_recovers(b: Backend) {
    if !privileged("a_full_pool_fails_jobs_cleanly_and_recovers") {
        return;
    }
    let mut mount = Mount::default();
    let sqlite = matches!(b, Backend::Sqlite);
    // Sparse volumes of 1 GiB on an 80 MiB filesystem: the over-subscription must allow it.
    let srv = TestServer::prepare(b, Opts { max_over_subscription_ratio: 1000.0, ..Opts::default() });
    let pool = srv.pool.clone();
    let out = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={FS_MIB}m,mode=0700"), "tmpfs"])
        .arg(&pool)
        .output()
        .expect("run mount");
    assert!(out.status.success(), "mount tmpfs: {}", String::from_utf8_lossy(&out.stderr));
    mount.0 = Some(pool.clone());
    if sqlite {
        // The database shares the full filesystem, as it does on a one-disk machine.
        srv.restart_with(|o| {
            o.env.push(("CINDERBLOCK_DATABASE__URL".into(), format!("sqlite://{}", pool.join("meta.db").display())))
        });
    } else {
        srv.start_daemon();
    }
    let api = srv.api();
    let p = project();
    let a = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "a"})).await, "id");
    let b_id = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "b"})).await, "id");
    write_data(&snapkit::volume_file(&pool, &a), 1);
    write_data(&snapkit::volume_file(&pool, &b_id), 2);
    assert!(free_bytes(&pool) < (DATA_MIB * MIB) as u64, "the pool should be too full for one more copy");

    // A snapshot needs a copy of A's data (no reflink on tmpfs): it fails cleanly.
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": a, "name": "full"}})).await;
    let sid = s(&r.expect(202).body["snapshot"], "id");
    let snap = wait_snapshot(&api, &p, &sid).await;
    assert_eq!(snap["status"], "error", "{snap}");
    assert!(!messages_about(&api, &p, &sid).await.is_empty(), "no user message for the failed snapshot");
    // So does a clone.
    let clone = api.cinder_create(&p, json!({"size": 1, "name": "clone", "source_volid": a})).await;
    let cid = s(&clone, "id");
    let v = snapkit::wait_volume_any(&api, &p, &cid, &["available", "error"]).await;
    assert_eq!(v["status"], "error", "{v}");
    let msgs = messages_about(&api, &p, &cid).await;
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(s(&msgs[0], "user_message").contains("create volume from backend storage"), "{msgs:?}");
    assert!(srv.log_tail(200).contains("No space left on device"), "the reason is not in the log");
    // Nothing half-made stays behind, and the volumes are untouched.
    assert!(snapkit::tmp_entries(&pool).is_empty(), "leftovers: {:?}", snapkit::tmp_entries(&pool));
    assert!(!snapkit::snapshot_file(&pool, &sid).exists(), "the failed snapshot left its file");
    assert!(!snapkit::volume_file(&pool, &cid).exists(), "the failed clone left its file");
    let want_a = snapkit::checksum(&snapkit::volume_file(&pool, &a));
    // The daemon still answers and records: a blank (sparse) volume needs no space.
    api.cinder_create_available(&p, json!({"size": 2, "name": "blank"})).await;
    // Failed resources can be deleted while the pool is full.
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect(202);
    snapkit::wait_snapshot_gone(&api, &p, &sid).await;
    api.delete(&format!("/v3/{p}/volumes/{cid}")).await.expect(202);
    api.wait_volume_gone(&p, &cid).await;

    // Space freed: the same snapshot now succeeds.
    api.delete(&format!("/v3/{p}/volumes/{b_id}")).await.expect(202);
    api.wait_volume_gone(&p, &b_id).await;
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": a, "name": "ok"}})).await;
    let sid = s(&r.expect(202).body["snapshot"], "id");
    let snap = wait_snapshot(&api, &p, &sid).await;
    assert_eq!(snap["status"], "available", "{snap}");
    assert_eq!(snapkit::checksum(&snapkit::snapshot_file(&pool, &sid)), want_a);

    // Full again (A and its snapshot): a rollback needs a third copy and fails, and the volume
    // keeps exactly the bytes it had.
    write_data(&snapkit::volume_file(&pool, &a), 3);
    let before = snapkit::checksum(&snapkit::volume_file(&pool, &a));
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{p}/volumes/{a}/action"),
            &[("OpenStack-API-Version", "volume 3.40")],
            Some(json!({"revert": {"snapshot_id": sid}}).to_string()),
        )
        .await;
    r.expect(202);
    let deadline = Instant::now() + DEADLINE;
    let v = loop {
        let v = api.get(&format!("/v3/{p}/volumes/{a}")).await.expect(200).body["volume"].clone();
        if v["status"] != "reverting" && v["status"] != "rollbacking" {
            break v;
        }
        assert!(Instant::now() < deadline, "revert never ended: {v}");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(snapkit::checksum(&snapkit::volume_file(&pool, &a)), before, "a failed rollback changed the volume");
    assert!(snapkit::tmp_entries(&pool).is_empty(), "leftovers: {:?}", snapkit::tmp_entries(&pool));
    // EVS's status for a failed rollback, which may be retried; the snapshot is untouched.
    assert_eq!(v["status"], "error_rollbacking", "{v}");
    let snap = wait_snapshot(&api, &p, &sid).await;
    assert_eq!(snap["status"], "available", "{snap}");
    assert!(srv.log_tail(50).contains("No space left on device"), "the rollback's reason is not in the log");

    // Space freed (the operator grows the filesystem): the retried rollback succeeds.
    let out = Command::new("mount")
        .args(["-o", &format!("remount,size={}m", FS_MIB * 2)])
        .arg(&pool)
        .output()
        .expect("run mount");
    assert!(out.status.success(), "remount: {}", String::from_utf8_lossy(&out.stderr));
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{p}/volumes/{a}/action"),
            &[("OpenStack-API-Version", "volume 3.40")],
            Some(json!({"revert": {"snapshot_id": sid}}).to_string()),
        )
        .await;
    r.expect(202);
    api.wait_available(&p, &a).await;
    assert_eq!(snapkit::checksum(&snapkit::volume_file(&pool, &a)), want_a, "the rollback's bytes");

    // Completely full, the database too: writes are refused with a clear error, reads go on,
    // and everything works again once the space is back.
    let filler = pool.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).expect("filler");
        let chunk = vec![0x5au8; MIB];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.sync_all();
    }
    // No room in the pool: the scheduler refuses the create.
    let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "name": "nospace"}})).await;
    r.expect_fault(400, "badRequest");
    if sqlite {
        // No room for the database: a write answers 503 in each API's format, nothing half-made.
        let r = api.post(&format!("/v3/{p}/volumes/{a}/metadata"), json!({"metadata": {"k": "v"}})).await;
        let r = r.expect_fault(503, "serviceUnavailable");
        assert!(r.text.contains("no space left"), "{}", r.text);
        api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": a, "name": "nospace"}}))
            .await
            .expect_fault(503, "serviceUnavailable");
        let r = api.put(&format!("/v2/{p}/cloudvolumes/{a}"), json!({"volume": {"name": "renamed"}})).await;
        r.expect_evs_error(503, "EVS.5503");
    }
    api.get(&format!("/v3/{p}/volumes/{a}")).await.expect(200);
    std::fs::remove_file(&filler).expect("remove filler");
    api.cinder_create_available(&p, json!({"size": 1, "name": "after"})).await;
    let v = api.get(&format!("/v3/{p}/volumes/{a}")).await.expect(200).body["volume"].clone();
    assert_eq!(
        (v["name"].as_str(), v["metadata"].get("k")),
        (Some("a"), None),
        "a refused write changed the volume: {v}"
    );
    let r = api.post(&format!("/v3/{p}/volumes/{a}/metadata"), json!({"metadata": {"k": "v"}})).await;
    r.expect(200);
    drop(srv);
}
