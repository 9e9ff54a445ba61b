//! The kill -9 matrix (issue 17, "the matrix that proves it stays fixed"): for every job kind
//! and every named step of it (`jobs::execute::STEPS`), the daemon kills itself with SIGKILL
//! at that step (the `jobs.crash_at` test hook, exactly a `kill -9` at that moment), starts
//! again and must finish the job. After each crash the test checks the final statuses, the
//! pool files against the rows (volumes and snapshots, in both pools), capacity and quota
//! usage against the data, the bytes of rolled-back and migrated volumes, and that the export
//! of an attached volume still answers over NBD.

#[macro_use]
mod common;
mod snapkit;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(kill9_at_every_step_of_every_job_kind);

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);
const CRASH_VAR: &str = "CINDERBLOCK_JOBS__CRASH_AT";
const SOCKET_VAR: &str = "CINDERBLOCK_EXPORTS__NBD_UNIX_SOCKET";
const MARK: &[u8] = b"the bytes a snapshot keeps";
const LATER: &[u8] = b"written after the snapshot";
const MARK_AT: u64 = 5 << 20;

/// Every job kind that does storage work (creates in each of their three forms), with the
/// steps it passes.
const CASES: &[(&str, &str, &[&str])] = &[
    ("createVolume", "blank", &["before_storage", "after_storage"]),
    ("createVolume", "clone", &["before_storage", "after_storage"]),
    ("createVolume", "fromsnap", &["before_storage", "after_storage"]),
    ("deleteVolume", "", &["before_storage", "after_storage"]),
    ("extendVolume", "", &["before_storage", "after_storage"]),
    ("createSnapshot", "", &["before_storage", "after_storage"]),
    ("deleteSnapshot", "", &["before_storage", "after_storage"]),
    ("rollbackSnapshot", "", &["before_storage", "after_storage"]),
    ("retypeVolume", "", &["before_storage", "after_storage", "after_commit"]),
    ("migrateVolume", "", &["before_storage", "after_storage", "after_commit"]),
];

struct Rig {
    srv: TestServer,
    second: tempfile::TempDir,
    api: Api,
    p: String,
    /// Type pinned to the first pool, and the name of the type pinned to the second.
    src_type: String,
    dst_type_name: String,
    /// Volume kept attached (initialize_connection) through every crash.
    anchor_info: Value,
    /// The NBD unix socket, and the daemon's environment without the crash hook.
    socket: std::path::PathBuf,
    env: Vec<(String, String)>,
}

fn write_at(path: &Path, data: &[u8]) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open volume file");
    f.seek(SeekFrom::Start(MARK_AT)).expect("seek");
    f.write_all(data).expect("write");
    f.sync_all().expect("fsync");
}

fn read_at(path: &Path, len: usize) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.seek(SeekFrom::Start(MARK_AT)).expect("seek");
    let mut buf = vec![0; len];
    f.read_exact(&mut buf).expect("read");
    buf
}

impl Rig {
    async fn new(b: Backend) -> Rig {
        let second = tempfile::tempdir().expect("second pool dir");
        let tail = format!(
            "[[pools]]\nname = \"second\"\npath = {:?}\navailability_zone = \"nova\"\n",
            second.path().display().to_string()
        );
        // The NBD TCP port changes at each start; the unix socket's path does not, so the test
        // can reach the same export (by its secret name) across restarts.
        let socket = second.path().join("nbd.sock");
        let env = vec![(SOCKET_VAR.to_string(), socket.display().to_string())];
        let srv = TestServer::start(b, Opts { extra_tail: tail, env: env.clone(), ..Opts::default() });
        let api = srv.api();
        let p = project();
        let mk = |name: String, backend: &str| json!({"volume_type": {"name": name, "extra_specs": {"volume_backend_name": backend}}});
        let r = api.post(&format!("/v3/{p}/types"), mk(common::unique("src"), "default")).await.expect(200);
        let src_type = s(&r.body["volume_type"], "id");
        let dst_type_name = common::unique("dst");
        api.post(&format!("/v3/{p}/types"), mk(dst_type_name.clone(), "second")).await.expect(200);
        let anchor = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "anchor"})).await, "id");
        let r = api
            .post(
                &format!("/v3/{p}/volumes/{anchor}/action"),
                json!({"os-initialize_connection": {"connector": {"host": "h1"}}}),
            )
            .await
            .expect(200);
        let anchor_info = r.body["connection_info"].clone();
        Rig { srv, second, api, p, src_type, dst_type_name, anchor_info, socket, env }
    }

    fn pool_of(&self, host: &str) -> &Path {
        if host.ends_with("#second") {
            self.second.path()
        } else {
            &self.srv.pool
        }
    }

    async fn volume(&self, id: &str) -> Value {
        self.api.get(&format!("/v3/{}/volumes/{id}", self.p)).await.expect(200).body["volume"].clone()
    }

    async fn volume_file(&self, id: &str) -> std::path::PathBuf {
        let v = self.volume(id).await;
        snapkit::volume_file(self.pool_of(&s(&v, "os-vol-host-attr:host")), id)
    }

    async fn available_volume(&self, name: &str, extra: Value) -> String {
        let mut body = json!({"size": 1, "name": name});
        if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        s(&self.api.cinder_create_available(&self.p, body).await, "id")
    }

    async fn available_snapshot(&self, volume: &str, name: &str) -> String {
        let r = snapkit::cinder_snapshot_available(&self.api, &self.p, volume, json!({"name": name})).await;
        s(&r, "id")
    }

    /// Send a request the daemon may die while answering: the job it queues is what counts,
    /// and the test finds its effect by name or id after the restart.
    fn fire(&self, method: reqwest::Method, path: String, headers: Vec<(&'static str, &'static str)>, body: Value) {
        let url = format!("{}{path}", self.api.base());
        tokio::spawn(async move {
            let mut rb = reqwest::Client::new().request(method, &url).header("Content-Type", "application/json");
            for (k, v) in headers {
                rb = rb.header(k, v);
            }
            let _ = rb.body(body.to_string()).send().await;
        });
    }

    fn post(&self, path: String, body: Value) {
        self.fire(reqwest::Method::POST, path, Vec::new(), body);
    }

    /// Poll until the daemon has killed itself at the crash point.
    async fn wait_crashed(&self, case: &str, crashes: usize) {
        let deadline = Instant::now() + DEADLINE;
        while self.srv.is_running() {
            assert!(Instant::now() < deadline, "{case}: the crash point was never reached\n{}", self.srv.log_tail(30));
            tokio::time::sleep(POLL).await;
        }
        // The daemon must have died at this case's hook, not of anything else.
        let log = std::fs::read_to_string(&self.srv.log_path).expect("read log");
        let hooks: Vec<&str> = log.lines().filter(|l| l.contains("jobs.crash_at: killing")).collect();
        let (kind, step) = case.split_once(':').expect("kind:step");
        let last = hooks.last().copied().unwrap_or("");
        assert_eq!(hooks.len(), crashes, "{case}: the daemon died, but not at the hook:\n{}", self.srv.log_tail(20));
        assert!(
            last.contains(&format!("kind=\"{kind}\"")) && last.contains(&format!("step=\"{step}\"")),
            "{case}: died at another hook: {last}"
        );
    }

    /// Poll until no job is queued or running, then require every job to have succeeded.
    async fn wait_jobs_settled(&self, case: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let jobs = self.srv.db_jobs().await;
            if jobs.iter().all(|(_, st)| st == "SUCCESS" || st == "FAIL") {
                let failed: Vec<_> = jobs.iter().filter(|(_, st)| st == "FAIL").collect();
                assert!(failed.is_empty(), "{case}: jobs failed after recovery: {failed:?}\n{}", self.srv.log_tail(30));
                return;
            }
            assert!(Instant::now() < deadline, "{case}: jobs never settled: {jobs:?}\n{}", self.srv.log_tail(30));
            tokio::time::sleep(POLL).await;
        }
    }

    async fn find_volume(&self, name: &str) -> Value {
        let list = self.api.volumes(&format!("/v3/{}/volumes/detail?name={name}", self.p)).await;
        assert_eq!(list.len(), 1, "exactly one volume named {name}: {list:?}");
        list[0].clone()
    }

    /// The invariants every crash must leave intact.
    async fn check_invariants(&self, case: &str) {
        let p = &self.p;
        let vols = self.api.volumes(&format!("/v3/{p}/volumes/detail")).await;
        let snaps = self.api.get(&format!("/v3/{p}/snapshots/detail")).await.expect(200).body["snapshots"].clone();
        let snaps = snaps.as_array().cloned().unwrap_or_default();
        for v in &vols {
            let st = s(v, "status");
            assert!(matches!(st.as_str(), "available" | "in-use"), "{case}: volume stuck: {v}");
            let ms = v["migration_status"].as_str().unwrap_or("");
            assert!(matches!(ms, "" | "success" | "error"), "{case}: migration stuck: {v}");
        }
        for sn in &snaps {
            assert_eq!(sn["status"], "available", "{case}: snapshot stuck: {sn}");
        }
        // Pool files against rows, pool by pool.
        let mut want: BTreeMap<&Path, BTreeSet<String>> = BTreeMap::new();
        let mut allocated: BTreeMap<&Path, i64> = BTreeMap::new();
        want.insert(&self.srv.pool, BTreeSet::new());
        want.insert(self.second.path(), BTreeSet::new());
        for v in &vols {
            let pool = self.pool_of(&s(v, "os-vol-host-attr:host"));
            want.get_mut(pool).expect("pool").insert(s(v, "id"));
            *allocated.entry(pool).or_default() += v["size"].as_i64().expect("size");
        }
        for (pool, ids) in &want {
            assert_eq!(&snapkit::ids_in(pool, "volumes"), ids, "{case}: volume files in {}", pool.display());
            assert!(snapkit::tmp_entries(pool).is_empty(), "{case}: leftovers {:?}", snapkit::tmp_entries(pool));
        }
        let snap_rows: BTreeSet<String> = snaps.iter().map(|x| s(x, "id")).collect();
        let mut snap_files = snapkit::ids_in(&self.srv.pool, "snapshots");
        snap_files.extend(snapkit::ids_in(self.second.path(), "snapshots"));
        assert_eq!(snap_files, snap_rows, "{case}: snapshot files against rows");
        // Capacity as the scheduler sees it.
        let pools = self.api.get(&format!("/v3/{p}/scheduler-stats/get_pools?detail=true")).await.expect(200);
        for pool in pools.body["pools"].as_array().expect("pools") {
            let name = s(pool, "name");
            let dir = self.pool_of(&name);
            let got = pool["capabilities"]["allocated_capacity_gb"].as_i64().expect("allocated_capacity_gb");
            assert_eq!(got, allocated.get(dir).copied().unwrap_or(0), "{case}: allocated capacity of {name}");
        }
        // Quota usage against the data.
        let u = self.api.get(&format!("/v3/{p}/os-quota-sets/{p}?usage=True")).await.expect(200);
        let q = &u.body["quota_set"];
        let gb: i64 = vols.iter().chain(snaps.iter()).map(|x| x["size"].as_i64().unwrap_or(0)).sum();
        assert_eq!(q["volumes"]["in_use"].as_i64(), Some(vols.len() as i64), "{case}: volumes in use");
        assert_eq!(q["snapshots"]["in_use"].as_i64(), Some(snaps.len() as i64), "{case}: snapshots in use");
        assert_eq!(q["gigabytes"]["in_use"].as_i64(), Some(gb), "{case}: gigabytes in use");
        // The attached volume's export came back with the daemon and still serves its bytes.
        let export = s(&self.anchor_info["data"], "export_name");
        let uri = format!("nbd+unix:///{export}?socket={}", self.socket.display());
        let out = Command::new("nbdinfo").args(["--size", &uri]).output().expect("run nbdinfo");
        assert!(out.status.success(), "{case}: the anchor's export is gone: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (1u64 << 30).to_string(), "{case}: export size");
    }

    /// Make the resources a case needs, with the daemon running normally.
    async fn setup(&self, kind: &str, tag: &str) -> BTreeMap<&'static str, String> {
        let mut ids = BTreeMap::new();
        match kind {
            "createVolume" => {
                let base = self.available_volume(&format!("{tag}-base"), json!({})).await;
                write_at(&self.volume_file(&base).await, MARK);
                ids.insert("snap", self.available_snapshot(&base, &format!("{tag}-snap")).await);
                ids.insert("base", base);
            }
            "deleteVolume" | "extendVolume" | "createSnapshot" => {
                ids.insert("vol", self.available_volume(&format!("{tag}-vol"), json!({})).await);
            }
            "deleteSnapshot" => {
                let vol = self.available_volume(&format!("{tag}-vol"), json!({})).await;
                ids.insert("snap", self.available_snapshot(&vol, &format!("{tag}-snap")).await);
                ids.insert("vol", vol);
            }
            "rollbackSnapshot" => {
                let vol = self.available_volume(&format!("{tag}-vol"), json!({})).await;
                write_at(&self.volume_file(&vol).await, MARK);
                ids.insert("snap", self.available_snapshot(&vol, &format!("{tag}-snap")).await);
                write_at(&self.volume_file(&vol).await, LATER);
                ids.insert("vol", vol);
            }
            "retypeVolume" => {
                let vol = self.available_volume(&format!("{tag}-vol"), json!({"volume_type": self.src_type})).await;
                write_at(&self.volume_file(&vol).await, MARK);
                ids.insert("vol", vol);
            }
            "migrateVolume" => {
                let vol = self.available_volume(&format!("{tag}-vol"), json!({})).await;
                write_at(&self.volume_file(&vol).await, MARK);
                ids.insert("vol", vol);
            }
            other => panic!("no setup for {other}"),
        }
        ids
    }

    /// Start the operation whose job the daemon will die in.
    fn trigger(&self, kind: &str, variant: &str, tag: &str, ids: &BTreeMap<&'static str, String>) {
        let p = &self.p;
        let action = |id: &str| format!("/v3/{p}/volumes/{id}/action");
        match kind {
            "createVolume" => {
                let (size, source) = match variant {
                    "clone" => (2, json!({"source_volid": ids["base"]})),
                    "fromsnap" => (1, json!({"snapshot_id": ids["snap"]})),
                    _ => (1, json!({})),
                };
                let mut vol = json!({"size": size, "name": format!("{tag}-new")});
                if let (Some(o), Some(e)) = (vol.as_object_mut(), source.as_object()) {
                    o.extend(e.clone());
                }
                self.post(format!("/v3/{p}/volumes"), json!({ "volume": vol }));
            }
            "deleteVolume" => {
                self.fire(reqwest::Method::DELETE, format!("/v3/{p}/volumes/{}", ids["vol"]), Vec::new(), json!({}))
            }
            "extendVolume" => self.post(action(&ids["vol"]), json!({"os-extend": {"new_size": 3}})),
            "createSnapshot" => self.post(
                format!("/v3/{p}/snapshots"),
                json!({"snapshot": {"volume_id": ids["vol"], "name": format!("{tag}-snap")}}),
            ),
            "deleteSnapshot" => {
                self.fire(reqwest::Method::DELETE, format!("/v3/{p}/snapshots/{}", ids["snap"]), Vec::new(), json!({}))
            }
            "rollbackSnapshot" => self.fire(
                reqwest::Method::POST,
                action(&ids["vol"]),
                vec![("OpenStack-API-Version", "volume 3.40")],
                json!({"revert": {"snapshot_id": ids["snap"]}}),
            ),
            "retypeVolume" => self.post(
                action(&ids["vol"]),
                json!({"os-retype": {"new_type": self.dst_type_name, "migration_policy": "on-demand"}}),
            ),
            "migrateVolume" => {
                self.post(action(&ids["vol"]), json!({"os-migrate_volume": {"host": "test-node@second#second"}}))
            }
            other => panic!("no trigger for {other}"),
        }
    }

    /// What the finished operation must have left.
    async fn check_outcome(&self, kind: &str, variant: &str, tag: &str, ids: &BTreeMap<&'static str, String>) {
        let p = &self.p;
        let case = format!("{kind} {variant} ({tag})");
        match kind {
            "createVolume" => {
                let size = if variant == "clone" { 2 } else { 1 };
                let v = self.find_volume(&format!("{tag}-new")).await;
                assert_eq!(v["status"], "available", "{case}: {v}");
                assert_eq!(v["size"], size, "{case}: {v}");
                let file = self.volume_file(&s(&v, "id")).await;
                assert_eq!(snapkit::file_len(&file), size as u64 * common::GIB, "{case}: {}", file.display());
                if variant != "blank" {
                    assert_eq!(read_at(&file, MARK.len()), MARK, "{case}: the source's bytes");
                }
            }
            "deleteVolume" => {
                let r = self.api.get(&format!("/v3/{p}/volumes/{}", ids["vol"])).await;
                assert_eq!(r.status, 404, "{case}: the volume survived: {}", r.text);
            }
            "extendVolume" => {
                let v = self.volume(&ids["vol"]).await;
                assert_eq!((v["status"].as_str(), v["size"].as_i64()), (Some("available"), Some(3)), "{case}: {v}");
                assert_eq!(snapkit::file_len(&self.volume_file(&ids["vol"]).await), 3 * common::GIB, "{case}");
            }
            "createSnapshot" => {
                let r = self.api.get(&format!("/v3/{p}/snapshots/detail?name={tag}-snap")).await.expect(200);
                let list = r.body["snapshots"].as_array().cloned().unwrap_or_default();
                assert_eq!(list.len(), 1, "{case}: {}", r.text);
                assert_eq!(list[0]["status"], "available", "{case}: {}", r.text);
            }
            "deleteSnapshot" => {
                let r = self.api.get(&format!("/v3/{p}/snapshots/{}", ids["snap"])).await;
                assert_eq!(r.status, 404, "{case}: the snapshot survived: {}", r.text);
            }
            "rollbackSnapshot" => {
                let v = self.volume(&ids["vol"]).await;
                assert_eq!(v["status"], "available", "{case}: {v}");
                let got = read_at(&self.volume_file(&ids["vol"]).await, MARK.len());
                assert_eq!(got, MARK, "{case}: the volume does not hold the snapshot's bytes");
            }
            "retypeVolume" | "migrateVolume" => {
                let deadline = Instant::now() + DEADLINE;
                let v = loop {
                    let v = self.volume(&ids["vol"]).await;
                    if v["status"] == "available" && v["migration_status"] == "success" {
                        break v;
                    }
                    assert!(Instant::now() < deadline, "{case}: migration never finished: {v}");
                    tokio::time::sleep(POLL).await;
                };
                assert!(s(&v, "os-vol-host-attr:host").ends_with("#second"), "{case}: {v}");
                if kind == "retypeVolume" {
                    assert_eq!(v["volume_type"], self.dst_type_name.as_str(), "{case}: {v}");
                }
                let file = snapkit::volume_file(self.second.path(), &ids["vol"]);
                assert_eq!(read_at(&file, MARK.len()), MARK, "{case}: the migrated bytes");
                // The old copy goes once the switch is recorded, even when the crash came between.
                let old = snapkit::volume_file(&self.srv.pool, &ids["vol"]);
                let deadline = Instant::now() + DEADLINE;
                while old.exists() {
                    assert!(Instant::now() < deadline, "{case}: the old pool kept {}", old.display());
                    tokio::time::sleep(POLL).await;
                }
            }
            other => panic!("no outcome for {other}"),
        }
    }
}

async fn kill9_at_every_step_of_every_job_kind(b: Backend) {
    let rig = Rig::new(b).await;
    let mut crashes = 0;
    for (kind, variant, steps) in CASES {
        for step in *steps {
            let case = format!("{kind}:{step}");
            let tag = common::unique(&format!("{kind}-{step}").replace('_', "-"));
            let ids = rig.setup(kind, &tag).await;
            let mut env = rig.env.clone();
            env.push((CRASH_VAR.to_string(), case.clone()));
            rig.srv.restart_with(|o| o.env = env);
            rig.trigger(kind, variant, &tag, &ids);
            crashes += 1;
            rig.wait_crashed(&case, crashes).await;
            rig.srv.restart_with(|o| o.env = rig.env.clone());
            rig.wait_jobs_settled(&case).await;
            rig.check_outcome(kind, variant, &tag, &ids).await;
            rig.check_invariants(&case).await;
        }
    }
}
