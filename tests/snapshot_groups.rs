//! EVS v5 snapshot groups (issue 11 B.3) and crash-consistent group snapshots: the API as the
//! SDK models shape it (create by volumes or by server, show, list with filters and paging,
//! count, update, tags, delete, rollback of the whole group) with its invalid variants; two
//! writers over real NBD connections on two member volumes while snapshot groups and Cinder
//! group snapshots are taken (every set must be consistent across its members); and a kill -9
//! after the members were taken, before the outcome was recorded. Each test runs on SQLite and,
//! with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{project, s, unique, Api, Backend, Opts, TestServer};

backend_tests!(
    snapshot_groups_api_and_invalid_input,
    snapshot_group_rollback_restores_every_member,
    group_snapshots_are_crash_consistent_under_writers,
    kill9_after_members_taken_retakes_the_set,
    other_projects_and_roles,
);

const MV: (&str, &str) = ("OpenStack-API-Version", "volume 3.71");

async fn post_v(api: &Api, path: &str, body: Value) -> common::Resp {
    api.request(reqwest::Method::POST, path, &[MV], Some(body.to_string())).await
}

async fn get_v(api: &Api, path: &str) -> common::Resp {
    api.get_h(path, &[MV]).await
}

/// Poll a snapshot group until it has `want` (panics on a deadline or an unwanted `error`).
async fn wait_group(api: &Api, p: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = api.get(&format!("/v5/{p}/snapshot-groups/{id}")).await.expect(200);
        let g = r.body["snapshot_group"].clone();
        if g["status"] == want {
            return g;
        }
        assert!(g["status"] != "error", "snapshot group {id} went to error: {g}");
        assert!(Instant::now() < deadline, "snapshot group {id} never {want}: {g}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_group_gone(api: &Api, p: &str, id: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while api.get(&format!("/v5/{p}/snapshot-groups/{id}")).await.status != 404 {
        assert!(Instant::now() < deadline, "snapshot group {id} never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn volume(api: &Api, p: &str, extra: Value) -> String {
    let mut body = json!({"size": 1, "name": unique("sg")});
    if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    s(&api.cinder_create_available(p, body).await, "id")
}

/// `(volume id, snapshot id)` of each member snapshot of a set, from the database.
async fn members(srv: &TestServer, set: &str) -> Vec<(String, String)> {
    let rows = srv
        .db_query_pairs("SELECT id, volume_id || '|' || COALESCE(group_snapshot_id, '') FROM snapshots ORDER BY id")
        .await;
    let mut out: Vec<(String, String)> = rows
        .into_iter()
        .filter_map(|(sid, rest)| {
            let (vid, gid) = rest.split_once('|')?;
            (gid == set).then(|| (vid.to_string(), sid))
        })
        .collect();
    out.sort();
    out
}

fn snapshot_file(srv: &TestServer, sid: &str) -> PathBuf {
    let vols = srv.volume_path(sid);
    vols.parent().and_then(|d| d.parent()).expect("pool dir").join("snapshots").join(format!("{sid}.raw"))
}

fn read_u64(path: &std::path::Path, offset: u64) -> u64 {
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut b = [0u8; 8];
    f.read_exact_at(&mut b, offset).expect("read");
    u64::from_le_bytes(b)
}

fn write_at(path: &std::path::Path, offset: u64, data: &[u8]) {
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open volume file");
    f.write_all_at(data, offset).expect("write");
    f.sync_all().expect("sync");
}

async fn snapshot_groups_api_and_invalid_input(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p, json!({})).await;
    let v2 = volume(&api, &p, json!({})).await;
    let base = format!("/v5/{p}/snapshot-groups");
    let before = srv.db_query_pairs("SELECT id, status FROM snapshots ORDER BY id").await.len();

    // Invalid variants: each one is refused with the EVS format and makes nothing.
    let bad: Vec<(Value, u16, &str)> = vec![
        (json!({}), 400, "EVS.5400"),
        (json!({"snapshot_group": "x"}), 400, "EVS.5400"),
        (json!({"snapshot_group": {}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": []}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": "abc"}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [1]}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [v1, v1]}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": ["not-a-uuid"]}}), 404, "EVS.5404"),
        (json!({"snapshot_group": {"volume_ids": [uuid::Uuid::new_v4().to_string()]}}), 404, "EVS.5404"),
        (json!({"snapshot_group": {"volume_ids": [v1], "nmae": "typo"}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [v1], "name": "n".repeat(256)}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [v1], "tags": {"bad key!": "v"}}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [v1], "tags": {"k": 1}}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"volume_ids": [v1], "instant_access": "maybe"}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"server_id": "nope"}}), 400, "EVS.5400"),
        (json!({"snapshot_group": {"server_id": uuid::Uuid::new_v4().to_string()}}), 400, "EVS.5400"),
    ];
    for (body, status, code) in bad {
        api.post(&base, body.clone()).await.expect_evs_error(status, code);
    }
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    api.post(&base, json!({"snapshot_group": {"volume_ids": [v1], "tags": eleven}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    api.post_raw(&base, "{not json").await.expect_evs_error(400, "EVS.5400");
    assert_eq!(srv.db_query_pairs("SELECT id, status FROM snapshots ORDER BY id").await.len(), before);
    assert!(api.get(&format!("{base}/detail")).await.expect(200).body["snapshot_groups"]
        .as_array()
        .unwrap()
        .is_empty());

    // Create by volumes: 202 with the job and the group id; the job succeeds.
    let r = api
        .post(
            &base,
            json!({"snapshot_group": {"volume_ids": [v1, v2], "name": "sg-one", "description": "d",
                    "tags": {"env": "test"}, "enterprise_project_id": "0", "instant_access": false,
                    "incremental": false}}),
        )
        .await
        .expect(202);
    let g1 = s(&r.body, "snapshot_group_id");
    let job = s(&r.body, "job_id");
    let j = api.wait_job_success(&p, &job).await;
    assert_eq!(j["job_type"], "createGroupSnapshot", "{j}");
    let g = wait_group(&api, &p, &g1, "available").await;
    for k in ["id", "project_id", "created_at", "status", "name", "description", "enterprise_project_id", "tags"] {
        assert!(g.get(k).is_some(), "{k} missing in {g}");
    }
    assert_eq!(g["name"], "sg-one");
    assert_eq!(g["tags"], json!({"env": "test"}));
    let m = members(&srv, &g1).await;
    assert_eq!(m.len(), 2);
    let mut vols: Vec<&str> = m.iter().map(|(v, _)| v.as_str()).collect();
    vols.sort();
    let mut want = vec![v1.as_str(), v2.as_str()];
    want.sort();
    assert_eq!(vols, want);
    for (_, sid) in &m {
        let sv = api.get(&format!("/v2/{p}/cloudsnapshots/{sid}")).await.expect(200);
        assert_eq!(sv.body["snapshot"]["status"], "available");
    }

    // Create by server: the disks attached to it.
    let server = uuid::Uuid::new_v4().to_string();
    let v3 = volume(&api, &p, json!({})).await;
    post_v(&api, &format!("/v3/{p}/volumes/{v3}/action"), json!({"os-reserve": {}})).await.expect(202);
    post_v(
        &api,
        &format!("/v3/{p}/volumes/{v3}/action"),
        json!({"os-attach": {"instance_uuid": server, "mountpoint": "/dev/vdb", "host_name": "h1"}}),
    )
    .await
    .expect(202);
    // A listed disk must be attached to the server.
    api.post(&base, json!({"snapshot_group": {"server_id": server, "volume_ids": [v1]}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    let r = api.post(&base, json!({"snapshot_group": {"server_id": server, "name": "by-server"}})).await.expect(202);
    let g2 = s(&r.body, "snapshot_group_id");
    let g = wait_group(&api, &p, &g2, "available").await;
    assert_eq!(g["server_id"], server.as_str());
    assert_eq!(members(&srv, &g2).await.iter().map(|(v, _)| v.clone()).collect::<Vec<_>>(), vec![v3.clone()]);

    // List, filters, paging, sorting, count.
    let list = |q: String| {
        let api = api.clone();
        let base = base.clone();
        async move { api.get(&format!("{base}/detail{q}")).await.expect(200).body["snapshot_groups"].clone() }
    };
    assert_eq!(list(String::new()).await.as_array().unwrap().len(), 2);
    assert_eq!(list("?name=sg-one".into()).await[0]["id"], g1.as_str());
    assert_eq!(list(format!("?id={g2}")).await.as_array().unwrap().len(), 1);
    assert_eq!(list(format!("?server_id={server}")).await[0]["id"], g2.as_str());
    assert_eq!(list("?tag_key=env".into()).await.as_array().unwrap().len(), 1);
    let tq = common::enc(r#"[{"key":"env","value":"test"}]"#);
    assert_eq!(list(format!("?tags={tq}")).await[0]["id"], g1.as_str());
    assert_eq!(list("?status=error".into()).await.as_array().unwrap().len(), 0);
    assert_eq!(list("?limit=1".into()).await.as_array().unwrap().len(), 1);
    assert_eq!(list("?limit=1&offset=1".into()).await.as_array().unwrap().len(), 1);
    assert_eq!(list("?offset=2".into()).await.as_array().unwrap().len(), 0);
    let asc = list("?sort_key=name&sort_dir=asc".into()).await;
    assert_eq!(asc[0]["name"], "by-server");
    for q in ["?limit=0", "?limit=-1", "?limit=x", "?sort_dir=up", "?sort_key=size", "?status=bogus", "?tags=notjson"] {
        api.get(&format!("{base}/detail{q}")).await.expect_evs_error(400, "EVS.5400");
    }
    assert_eq!(api.get(&format!("{base}/count")).await.expect(200).body["count"], 2);
    assert_eq!(api.get(&format!("{base}/count?name=sg-one")).await.expect(200).body["count"], 1);
    api.get(&format!("{base}/count?status=bogus")).await.expect_evs_error(400, "EVS.5400");

    // Update.
    let r = api.put(&format!("{base}/{g1}"), json!({"snapshot_group": {"name": "renamed"}})).await.expect(200);
    assert_eq!(r.body["snapshot_group"]["name"], "renamed");
    assert_eq!(r.body["snapshot_group"]["description"], "d");
    api.put(&format!("{base}/{g1}"), json!({"snapshot_group": {}})).await.expect_evs_error(400, "EVS.5400");
    api.put(&format!("{base}/{g1}"), json!({"snapshot_group": {"status": "x"}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    api.put(&format!("{base}/{g1}"), json!({"snapshot_group": {"name": 5}})).await.expect_evs_error(400, "EVS.5400");
    api.put(&format!("{base}/{}", uuid::Uuid::new_v4()), json!({"snapshot_group": {"name": "x"}}))
        .await
        .expect_evs_error(404, "EVS.5404");

    // Tags.
    let tags = format!("{base}/{g1}/tags");
    api.post(&format!("{tags}/create"), json!({"tags": [{"key": "tier", "value": "gold"}]})).await.expect(204);
    let g = api.get(&format!("{base}/{g1}")).await.expect(200).body["snapshot_group"].clone();
    assert_eq!(g["tags"], json!({"env": "test", "tier": "gold"}));
    let pt = api.get(&format!("{base}/tags")).await.expect(200).body["tags"].clone();
    assert!(pt.as_array().unwrap().iter().any(|t| t["key"] == "tier" && t["value"] == json!(["gold"])), "{pt}");
    for body in [
        json!({}),
        json!({"tags": []}),
        json!({"tags": [{"key": "k"}]}),
        json!({"tags": [{"key": "bad key", "value": "v"}]}),
        json!({"tags": [{"key": "a", "value": "1"}, {"key": "a", "value": "2"}]}),
    ] {
        api.post(&format!("{tags}/create"), body).await.expect_evs_error(400, "EVS.5400");
    }
    let many: Vec<Value> = (0..9).map(|i| json!({"key": format!("m{i}"), "value": "v"})).collect();
    api.post(&format!("{tags}/create"), json!({"tags": many})).await.expect_evs_error(400, "EVS.5400");
    // A delete with another value keeps the tag; without a value removes it.
    api.post(&format!("{tags}/delete"), json!({"tags": [{"key": "tier", "value": "silver"}]})).await.expect(204);
    api.post(&format!("{tags}/delete"), json!({"tags": [{"key": "env"}]})).await.expect(204);
    let g = api.get(&format!("{base}/{g1}")).await.expect(200).body["snapshot_group"].clone();
    assert_eq!(g["tags"], json!({"tier": "gold"}));

    api.get(&format!("{base}/not-a-uuid")).await.expect_evs_error(404, "EVS.5404");

    // A volume with group members cannot be deleted; the group deletes with its members.
    api.delete(&format!("/v3/{p}/volumes/{v1}")).await.expect_fault(400, "badRequest");
    let r = api.delete(&format!("{base}/{g1}")).await.expect(202);
    assert!(r.body["job_id"].is_string(), "{}", r.text);
    wait_group_gone(&api, &p, &g1).await;
    assert!(members(&srv, &g1).await.is_empty());
    api.delete(&format!("{base}/{g1}")).await.expect_evs_error(404, "EVS.5404");
}

async fn snapshot_group_rollback_restores_every_member(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p, json!({})).await;
    let v2 = volume(&api, &p, json!({})).await;
    write_at(&srv.volume_path(&v1), 0, b"one-before");
    write_at(&srv.volume_path(&v2), 4096, b"two-before");
    let base = format!("/v5/{p}/snapshot-groups");
    let r = api.post(&base, json!({"snapshot_group": {"volume_ids": [v1, v2]}})).await.expect(202);
    let g = s(&r.body, "snapshot_group_id");
    wait_group(&api, &p, &g, "available").await;
    write_at(&srv.volume_path(&v1), 0, b"one-after!");
    write_at(&srv.volume_path(&v2), 4096, b"two-after!");

    // Refused while one member volume is attached: nothing moves.
    post_v(&api, &format!("/v3/{p}/volumes/{v2}/action"), json!({"os-reserve": {}})).await.expect(202);
    api.post(&format!("{base}/{g}/rollback"), json!({})).await.expect_evs_error(400, "EVS.5400");
    for v in [&v1, &v2] {
        let st = get_v(&api, &format!("/v3/{p}/volumes/{v}")).await.expect(200).body["volume"]["status"].clone();
        assert_ne!(st, "rollbacking", "{v} moved although the rollback was refused");
    }
    post_v(&api, &format!("/v3/{p}/volumes/{v2}/action"), json!({"os-unreserve": {}})).await.expect(202);
    api.post(&format!("/v5/{p}/snapshot-groups/{}/rollback", uuid::Uuid::new_v4()), json!({}))
        .await
        .expect_evs_error(404, "EVS.5404");

    let r = api.post(&format!("{base}/{g}/rollback"), json!({})).await.expect(202);
    let jobs = r.body["job_ids"].as_array().expect("job_ids").clone();
    assert_eq!(jobs.len(), 2, "{}", r.text);
    for j in &jobs {
        api.wait_job_success(&p, j.as_str().unwrap()).await;
    }
    for v in [&v1, &v2] {
        api.wait_available(&p, v).await;
    }
    let mut b1 = [0u8; 10];
    std::fs::File::open(srv.volume_path(&v1)).unwrap().read_exact_at(&mut b1, 0).unwrap();
    assert_eq!(&b1, b"one-before");
    let mut b2 = [0u8; 10];
    std::fs::File::open(srv.volume_path(&v2)).unwrap().read_exact_at(&mut b2, 4096).unwrap();
    assert_eq!(&b2, b"two-before");
    wait_group(&api, &p, &g, "available").await;
}

// ---- a minimal NBD client (fixed newstyle, NBD_OPT_EXPORT_NAME, simple replies) -----------

struct Nbd {
    sock: TcpStream,
    cookie: u64,
}

impl Nbd {
    fn connect(info: &Value) -> Nbd {
        let data = &info["data"];
        let addr = format!("{}:{}", s(data, "host"), data["port"]);
        let mut sock = TcpStream::connect(&addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        sock.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut hello = [0u8; 18];
        sock.read_exact(&mut hello).expect("server greeting");
        assert_eq!(&hello[..8], b"NBDMAGIC");
        assert_eq!(&hello[8..16], b"IHAVEOPT");
        // NBD_FLAG_C_FIXED_NEWSTYLE | NBD_FLAG_C_NO_ZEROES.
        sock.write_all(&3u32.to_be_bytes()).unwrap();
        let name = s(data, "export_name");
        let mut opt = Vec::new();
        opt.extend_from_slice(b"IHAVEOPT");
        opt.extend_from_slice(&1u32.to_be_bytes()); // NBD_OPT_EXPORT_NAME
        opt.extend_from_slice(&(name.len() as u32).to_be_bytes());
        opt.extend_from_slice(name.as_bytes());
        sock.write_all(&opt).unwrap();
        let mut export = [0u8; 10];
        sock.read_exact(&mut export).expect("export info");
        Nbd { sock, cookie: 0 }
    }

    /// WRITE `data` at `offset` and wait for its reply.
    fn write(&mut self, offset: u64, data: &[u8]) {
        self.cookie += 1;
        let mut req = Vec::with_capacity(28 + data.len());
        req.extend_from_slice(&0x2560_9513u32.to_be_bytes());
        req.extend_from_slice(&0u16.to_be_bytes());
        req.extend_from_slice(&1u16.to_be_bytes()); // NBD_CMD_WRITE
        req.extend_from_slice(&self.cookie.to_be_bytes());
        req.extend_from_slice(&offset.to_be_bytes());
        req.extend_from_slice(&(data.len() as u32).to_be_bytes());
        req.extend_from_slice(data);
        self.sock.write_all(&req).expect("send write");
        let mut reply = [0u8; 16];
        self.sock.read_exact(&mut reply).expect("write reply");
        assert_eq!(&reply[..4], &0x6744_6698u32.to_be_bytes(), "simple reply magic");
        assert_eq!(&reply[4..8], &[0, 0, 0, 0], "write failed");
        assert_eq!(&reply[8..16], &self.cookie.to_be_bytes());
    }
}

/// Attach a volume (legacy actions) and return its NBD connection info.
async fn attach_nbd(api: &Api, p: &str, id: &str) -> Value {
    let act = format!("/v3/{p}/volumes/{id}/action");
    post_v(api, &act, json!({"os-reserve": {}})).await.expect(202);
    let r = post_v(api, &act, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    assert_eq!(info["driver_volume_type"], "nbd", "{}", r.text);
    let inst = uuid::Uuid::new_v4().to_string();
    post_v(api, &act, json!({"os-attach": {"instance_uuid": inst, "mountpoint": "/dev/vdb", "host_name": "h1"}}))
        .await
        .expect(202);
    info
}

/// Writers: each writes its increasing counter to volume A, then (after A's reply) to B, at
/// its own offset. In any consistent cut, B's counter is A's or one less, never more.
struct Writers {
    stop: Arc<AtomicBool>,
    counts: Vec<Arc<AtomicU64>>,
    handles: Vec<std::thread::JoinHandle<()>>,
}

const WRITERS: u64 = 2;

fn offset_of(w: u64) -> u64 {
    w * 65536
}

fn start_writers(a: &Value, b: &Value) -> Writers {
    let stop = Arc::new(AtomicBool::new(false));
    let mut counts = Vec::new();
    let mut handles = Vec::new();
    for w in 0..WRITERS {
        let (mut ca, mut cb) = (Nbd::connect(a), Nbd::connect(b));
        let stop = stop.clone();
        let count = Arc::new(AtomicU64::new(0));
        counts.push(count.clone());
        handles.push(std::thread::spawn(move || {
            let mut i: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                i += 1;
                let mut block = vec![0u8; 4096];
                block[..8].copy_from_slice(&i.to_le_bytes());
                ca.write(offset_of(w), &block);
                cb.write(offset_of(w), &block);
                count.store(i, Ordering::Relaxed);
            }
        }));
    }
    Writers { stop, counts, handles }
}

impl Writers {
    fn progress(&self) -> Vec<u64> {
        self.counts.iter().map(|c| c.load(Ordering::Relaxed)).collect()
    }

    fn finish(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for h in std::mem::take(&mut self.handles) {
            h.join().expect("writer panicked");
        }
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Check one set: for every writer, B's counter is A's or one less.
fn check_consistent(srv: &TestServer, what: &str, set: &[(String, String)], a: &str, b: &str) -> Vec<u64> {
    let file_of = |vid: &str| {
        let sid = &set.iter().find(|(v, _)| v == vid).unwrap_or_else(|| panic!("{what}: no member of {vid}")).1;
        snapshot_file(srv, sid)
    };
    let (fa, fb) = (file_of(a), file_of(b));
    let mut seen = Vec::new();
    for w in 0..WRITERS {
        let (ca, cb) = (read_u64(&fa, offset_of(w)), read_u64(&fb, offset_of(w)));
        assert!(
            cb <= ca && ca - cb <= 1,
            "{what}: writer {w} has A={ca} B={cb}: the members are from different moments"
        );
        seen.push(ca);
    }
    seen
}

async fn wait_progress(writers: &Writers, past: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while writers.progress().iter().zip(past).any(|(now, was)| now <= was) {
        assert!(Instant::now() < deadline, "the writers stopped making progress");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn group_snapshots_are_crash_consistent_under_writers(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    // A Cinder group with two volumes: the same volumes are taken by both kinds of set.
    let r =
        post_v(&api, &format!("/v3/{p}/group_types"), json!({"group_type": {"name": unique("gt")}})).await.expect(202);
    let gt = s(&r.body["group_type"], "id");
    let vt = s(&get_v(&api, &format!("/v3/{p}/types/SSD")).await.expect(200).body["volume_type"], "id");
    let r = post_v(&api, &format!("/v3/{p}/groups"), json!({"group": {"group_type": gt, "volume_types": [vt]}}))
        .await
        .expect(202);
    let group = s(&r.body["group"], "id");
    let mut vols = Vec::new();
    for _ in 0..2 {
        let r = post_v(
            &api,
            &format!("/v3/{p}/volumes"),
            json!({"volume": {"size": 1, "volume_type": "SSD", "group_id": group}}),
        )
        .await
        .expect(202);
        let id = s(&r.body["volume"], "id");
        api.wait_available(&p, &id).await;
        vols.push(id);
    }
    let (a, b) = (vols[0].clone(), vols[1].clone());
    let (ia, ib) = (attach_nbd(&api, &p, &a).await, attach_nbd(&api, &p, &b).await);
    let writers = start_writers(&ia, &ib);
    let mut last = vec![0; WRITERS as usize];
    wait_progress(&writers, &last).await;
    for round in 0..4 {
        // EVS snapshot group.
        let r = api
            .post(&format!("/v5/{p}/snapshot-groups"), json!({"snapshot_group": {"volume_ids": [a, b]}}))
            .await
            .expect(202);
        let g = s(&r.body, "snapshot_group_id");
        wait_group(&api, &p, &g, "available").await;
        let seen = check_consistent(&srv, &format!("snapshot group {round}"), &members(&srv, &g).await, &a, &b);
        assert!(seen.iter().all(|c| *c > 0), "round {round}: the writers had not written yet: {seen:?}");
        wait_progress(&writers, &seen).await;
        last = seen;
        // Cinder group snapshot.
        let r = post_v(&api, &format!("/v3/{p}/group_snapshots"), json!({"group_snapshot": {"group_id": group}}))
            .await
            .expect(202);
        let gs = s(&r.body["group_snapshot"], "id");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let st = get_v(&api, &format!("/v3/{p}/group_snapshots/{gs}")).await.expect(200).body["group_snapshot"]
                ["status"]
                .clone();
            if st == "available" {
                break;
            }
            assert!(st != "error" && Instant::now() < deadline, "group snapshot {gs}: {st}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen = check_consistent(&srv, &format!("group snapshot {round}"), &members(&srv, &gs).await, &a, &b);
        wait_progress(&writers, &seen).await;
    }
    assert!(last.iter().all(|c| *c > 0));
    writers.finish();
}

async fn kill9_after_members_taken_retakes_the_set(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p, json!({})).await;
    let v2 = volume(&api, &p, json!({})).await;
    // Killed with nothing done, and with the members taken but the outcome not recorded: the
    // restarted daemon retakes the set and finishes it, never leaving it `creating`.
    for step in ["before_storage", "after_storage"] {
        let crash = format!("createGroupSnapshot:{step}");
        srv.restart_with(|o| o.env.push(("CINDERBLOCK_JOBS__CRASH_AT".into(), crash.clone())));
        let url = format!("{}/v5/{p}/snapshot-groups", api.base());
        let name = format!("crash-{step}");
        let body = json!({"snapshot_group": {"volume_ids": [v1, v2], "name": name}}).to_string();
        // The daemon may die while answering; the group is found by name afterwards.
        let _ = reqwest::Client::new().post(&url).header("Content-Type", "application/json").body(body).send().await;
        let deadline = Instant::now() + Duration::from_secs(60);
        while srv.is_running() {
            assert!(Instant::now() < deadline, "{step}: the crash point was never reached\n{}", srv.log_tail(30));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let log = std::fs::read_to_string(&srv.log_path).expect("read log");
        assert!(
            log.lines().any(|l| l.contains("jobs.crash_at: killing") && l.contains(&format!("step=\"{step}\""))),
            "{step}: the daemon died, but not at the hook\n{}",
            srv.log_tail(20)
        );
        srv.restart_with(|o| o.env.retain(|(k, _)| k != "CINDERBLOCK_JOBS__CRASH_AT"));
        let list = api.get(&format!("/v5/{p}/snapshot-groups/detail?name={name}")).await.expect(200);
        let g = s(&list.body["snapshot_groups"][0], "id");
        wait_group(&api, &p, &g, "available").await;
        let m = members(&srv, &g).await;
        assert_eq!(m.len(), 2, "{step}");
        for (_, sid) in &m {
            assert!(snapshot_file(&srv, sid).exists(), "{step}: member {sid} has no storage");
        }
        let jobs = srv.db_jobs().await;
        assert!(jobs.iter().all(|(_, st)| st == "SUCCESS"), "{step}: {jobs:?}");
    }
}

const PASSWORD: &str = "correct horse battery staple";

/// Members create, readers only read, another project sees and changes nothing (404).
async fn other_projects_and_roles(b: Backend) {
    let env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    let srv = TestServer::start(b, Opts { env, ..Opts::default() });
    let pa = srv.cli(&["admin", "project", "create", "proj-a"], None).trim().to_string();
    let pb = srv.cli(&["admin", "project", "create", "proj-b"], None).trim().to_string();
    for (user, project, role) in
        [("alice", "proj-a", "member"), ("rita", "proj-a", "reader"), ("bob", "proj-b", "member")]
    {
        srv.cli(
            &["admin", "user", "create", user, "--project", project, "--role", role],
            Some(&format!("{PASSWORD}\n")),
        );
    }
    let api = srv.api();
    let alice = common::password_login(&api, "alice", "proj-a", PASSWORD).await;
    let rita = common::password_login(&api, "rita", "proj-a", PASSWORD).await;
    let bob = common::password_login(&api, "bob", "proj-b", PASSWORD).await;
    let go = |m: reqwest::Method, path: String, body: Option<Value>, t: &str| {
        let api = api.clone();
        let t = t.to_string();
        async move { api.request(m, &path, &[("X-Auth-Token", t.as_str())], body.map(|b| b.to_string())).await }
    };
    use reqwest::Method;
    let r =
        go(Method::POST, format!("/v3/{pa}/volumes"), Some(json!({"volume": {"size": 1}})), &alice).await.expect(202);
    let v = s(&r.body["volume"], "id");
    let deadline = Instant::now() + Duration::from_secs(60);
    while go(Method::GET, format!("/v3/{pa}/volumes/{v}"), None, &alice).await.body["volume"]["status"] != "available" {
        assert!(Instant::now() < deadline, "volume never available");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let base = format!("/v5/{pa}/snapshot-groups");
    let body = json!({"snapshot_group": {"volume_ids": [v]}});
    go(Method::POST, base.clone(), Some(body.clone()), &rita).await.expect(403);
    // Bob cannot take another project's disk, even through his own project's route.
    go(Method::POST, format!("/v5/{pb}/snapshot-groups"), Some(body.clone()), &bob)
        .await
        .expect_evs_error(404, "EVS.5404");
    let r = go(Method::POST, base.clone(), Some(body), &alice).await.expect(202);
    let g = s(&r.body, "snapshot_group_id");
    go(Method::GET, format!("{base}/{g}"), None, &rita).await.expect(200);
    go(Method::GET, format!("{base}/detail"), None, &rita).await.expect(200);
    go(Method::DELETE, format!("{base}/{g}"), None, &rita).await.expect(403);
    go(Method::GET, format!("/v5/{pb}/snapshot-groups/{g}"), None, &bob).await.expect_evs_error(404, "EVS.5404");
    go(Method::PUT, format!("/v5/{pb}/snapshot-groups/{g}"), Some(json!({"snapshot_group": {"name": "x"}})), &bob)
        .await
        .expect_evs_error(404, "EVS.5404");
    go(Method::DELETE, format!("/v5/{pb}/snapshot-groups/{g}"), None, &bob).await.expect_evs_error(404, "EVS.5404");
    let list = go(Method::GET, format!("/v5/{pb}/snapshot-groups/detail"), None, &bob).await.expect(200);
    assert!(list.body["snapshot_groups"].as_array().unwrap().is_empty(), "{}", list.text);
    // Bob's token does not open project A's routes.
    go(Method::GET, format!("{base}/{g}"), None, &bob).await.expect(403);
}
