//! Admin actions on snapshots and volumes (`os-reset_status`, `os-update_snapshot_status`,
//! `os-force_delete`), retype (with and without migration) and user messages (3.3). Noauth
//! daemons (the caller is its project's admin) plus one keystone daemon for the policy checks;
//! each test runs on SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use common::{enc, project, s, Api, Backend, Opts, Resp, TestServer};

backend_tests!(
    snapshot_reset_update_and_force_delete,
    snapshot_admin_actions_need_admin,
    messages_tell_the_project_why_a_create_failed,
    volume_reset_status_and_force_delete,
    driver_failures_leave_messages,
    retype_in_place_and_with_migration,
    retype_migration_survives_kill9,
    capability_specs_choose_the_pool,
    services_disable_and_freeze,
    force_detach_clears_attachments,
    manage_and_unmanage_volumes_and_snapshots,
    manage_refuses_unsafe_references,
    manage_survives_kill9,
);

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(50);

/// Poll a snapshot until its status is `want`; returns its body.
async fn wait_snapshot(api: &Api, p: &str, id: &str, want: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = api.get(&format!("/v3/{p}/snapshots/{id}")).await.expect(200);
        if r.body["snapshot"]["status"] == want {
            return r.body["snapshot"].clone();
        }
        assert!(Instant::now() < deadline, "snapshot {id} never reached {want}: {}", r.text);
        tokio::time::sleep(POLL).await;
    }
}

/// Poll until a snapshot answers 404.
async fn wait_snapshot_gone(api: &Api, p: &str, id: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = api.get(&format!("/v3/{p}/snapshots/{id}")).await;
        if r.status == 404 {
            return;
        }
        assert!(Instant::now() < deadline, "snapshot {id} not gone: {}", r.text);
        tokio::time::sleep(POLL).await;
    }
}

async fn available_snapshot(api: &Api, p: &str, volume: &str) -> String {
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": volume}})).await.expect(202);
    let id = s(&r.body["snapshot"], "id");
    wait_snapshot(api, p, &id, "available").await;
    id
}

async fn snap_action(api: &Api, p: &str, id: &str, body: Value) -> Resp {
    api.post(&format!("/v3/{p}/snapshots/{id}/action"), body).await
}

async fn snapshot_reset_update_and_force_delete(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let vid = s(&v, "id");
    let sid = available_snapshot(&api, &p, &vid).await;

    // Bad input is 400 and changes nothing.
    for bad in [
        json!({"os-reset_status": {"status": "bogus"}}),
        json!({"os-reset_status": {}}),
        json!({"os-reset_status": {"status": "error", "extra": 1}}),
        json!({"os-no_such_action": {}}),
        json!({"os-unmanage": {"extra": 1}}),
    ] {
        let r = snap_action(&api, &p, &sid, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    assert_eq!(wait_snapshot(&api, &p, &sid, "available").await["status"], "available");
    snap_action(&api, &p, &uuid::Uuid::new_v4().to_string(), json!({"os-reset_status": {"status": "error"}}))
        .await
        .expect(404);

    // Reset to creating, then report error with a progress.
    snap_action(&api, &p, &sid, json!({"os-reset_status": {"status": "creating"}})).await.expect(202);
    wait_snapshot(&api, &p, &sid, "creating").await;
    for bad in [
        json!({"os-update_snapshot_status": {"status": "deleting"}}),
        json!({"os-update_snapshot_status": {"status": "error", "progress": "180%"}}),
        json!({"os-update_snapshot_status": {"progress": "10%"}}),
    ] {
        let r = snap_action(&api, &p, &sid, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    snap_action(&api, &p, &sid, json!({"os-update_snapshot_status": {"status": "error", "progress": "80%"}}))
        .await
        .expect(202);
    let got = api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200);
    assert_eq!(got.body["snapshot"]["status"], "error");
    assert_eq!(got.body["snapshot"]["os-extended-snapshot-attributes:progress"], "80%");
    // From error, the creator may report nothing more.
    snap_action(&api, &p, &sid, json!({"os-update_snapshot_status": {"status": "available"}})).await.expect(400);
    snap_action(&api, &p, &sid, json!({"os-reset_status": {"status": "available"}})).await.expect(202);
    let got = wait_snapshot(&api, &p, &sid, "available").await;
    assert_eq!(got["os-extended-snapshot-attributes:progress"], "100%");

    // A snapshot being rolled back is not deleted under the rollback, even by force.
    snap_action(&api, &p, &sid, json!({"os-reset_status": {"status": "rollbacking"}})).await.expect(202);
    snap_action(&api, &p, &sid, json!({"os-force_delete": {}})).await.expect(400);
    snap_action(&api, &p, &sid, json!({"os-reset_status": {"status": "available"}})).await.expect(202);

    // Force delete works from every status and really removes the snapshot's file.
    for status in ["creating", "deleting", "error", "error_deleting", "available"] {
        let id = available_snapshot(&api, &p, &vid).await;
        let file = srv.pool.join("snapshots").join(format!("{id}.raw"));
        assert!(file.exists(), "{} missing", file.display());
        if status != "available" {
            snap_action(&api, &p, &id, json!({"os-reset_status": {"status": status}})).await.expect(202);
            wait_snapshot(&api, &p, &id, status).await;
        }
        // A plain delete refuses the transitional statuses; force does not.
        if status == "creating" || status == "deleting" {
            api.delete(&format!("/v3/{p}/snapshots/{id}")).await.expect(400);
        }
        snap_action(&api, &p, &id, json!({"os-force_delete": {}})).await.expect(202);
        wait_snapshot_gone(&api, &p, &id).await;
        assert!(!file.exists(), "force delete from {status} left {}", file.display());
    }
    // The shared snapshot and its volume are still fine.
    wait_snapshot(&api, &p, &sid, "available").await;
    api.wait_available(&p, &vid).await;
}

// ----- keystone: policy ------------------------------------------------------------------------

const PASSWORD: &str = "correct horse battery staple";

/// A user's token-carrying client.
#[derive(Clone)]
struct Client {
    api: Api,
    token: String,
}

impl Client {
    async fn login(api: &Api, user: &str, project: &str) -> Client {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": PASSWORD, "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
        }});
        let r = api.post("/identity/v3/auth/tokens", body).await.expect(201);
        Client { api: api.clone(), token: r.header("x-subject-token").expect("X-Subject-Token") }
    }
    async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        let h = [("X-Auth-Token", self.token.as_str()), ("OpenStack-API-Version", "volume 3.3")];
        self.api.request(method, path, &h, body.map(|b| b.to_string())).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, None).await
    }
    async fn wait_volume(&self, p: &str, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200);
            if r.body["volume"]["status"] == want {
                return r.body["volume"].clone();
            }
            assert!(Instant::now() < deadline, "volume {id} never reached {want}: {}", r.text);
            tokio::time::sleep(POLL).await;
        }
    }
    async fn wait_snapshot(&self, p: &str, id: &str, want: &str) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let r = self.get(&format!("/v3/{p}/snapshots/{id}")).await.expect(200);
            if r.body["snapshot"]["status"] == want {
                return;
            }
            assert!(Instant::now() < deadline, "snapshot {id} never reached {want}: {}", r.text);
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Keystone daemon with project A (boss: admin, alice: member) and project B (bob: member).
struct Keystone {
    _server: TestServer,
    a: String,
    b: String,
    boss: Client,
    alice: Client,
    bob: Client,
}

async fn keystone(b: Backend) -> Keystone {
    let env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    let server = TestServer::start(b, Opts { env, ..Opts::default() });
    let a = server.cli(&["admin", "project", "create", "proj-a"], None).trim().to_string();
    let pb = server.cli(&["admin", "project", "create", "proj-b"], None).trim().to_string();
    for (user, project, role) in
        [("boss", "proj-a", "admin"), ("alice", "proj-a", "member"), ("bob", "proj-b", "member")]
    {
        server.cli(
            &["admin", "user", "create", user, "--project", project, "--role", role],
            Some(&format!("{PASSWORD}\n")),
        );
    }
    let api = server.api();
    let boss = Client::login(&api, "boss", "proj-a").await;
    let alice = Client::login(&api, "alice", "proj-a").await;
    let bob = Client::login(&api, "bob", "proj-b").await;
    Keystone { _server: server, a, b: pb, boss, alice, bob }
}

async fn snapshot_admin_actions_need_admin(b: Backend) {
    let k = keystone(b).await;
    let a = &k.a;
    let r = k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect(202);
    let vid = s(&r.body["volume"], "id");
    k.alice.wait_volume(a, &vid, "available").await;
    let r = k.alice.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": vid}})).await.expect(202);
    let sid = s(&r.body["snapshot"], "id");
    k.alice.wait_snapshot(a, &sid, "available").await;
    let vpath = format!("/v3/{a}/volumes/{vid}/action");
    k.alice.post(&vpath, json!({"os-reset_status": {"status": "error"}})).await.expect_fault(403, "forbidden");
    k.alice.post(&vpath, json!({"os-force_delete": {}})).await.expect_fault(403, "forbidden");
    k.alice.post(&vpath, json!({"os-migrate_volume": {"host": "x@y#y"}})).await.expect_fault(403, "forbidden");
    // manage: adopting and letting go of storage is the admin's, as in Cinder.
    k.alice.post(&vpath, json!({"os-unmanage": {}})).await.expect_fault(403, "forbidden");
    let manage = json!({"volume": {"host": "x", "ref": {"source-name": "f"}}});
    k.alice.post(&format!("/v3/{a}/os-volume-manage"), manage).await.expect_fault(403, "forbidden");
    k.alice.get(&format!("/v3/{a}/manageable_volumes?host=x")).await.expect_fault(403, "forbidden");
    // Retype is the owner's (Cinder: project member): in place here, the type names no pool.
    let tname = common::unique("plain");
    k.boss.post(&format!("/v3/{a}/types"), json!({"volume_type": {"name": tname}})).await.expect(200);
    k.alice.post(&vpath, json!({"os-retype": {"new_type": tname}})).await.expect(202);
    assert_eq!(k.alice.wait_volume(a, &vid, "available").await["volume_type"], tname.as_str());
    k.alice.wait_volume(a, &vid, "available").await;
    let path = format!("/v3/{a}/snapshots/{sid}/action");
    k.alice.post(&path, json!({"os-reset_status": {"status": "creating"}})).await.expect_fault(403, "forbidden");
    k.alice.post(&path, json!({"os-force_delete": {}})).await.expect_fault(403, "forbidden");
    k.alice.wait_snapshot(a, &sid, "available").await;
    // The admin resets; the member (its creator) may then report the outcome, as in Cinder.
    k.boss.post(&path, json!({"os-reset_status": {"status": "creating"}})).await.expect(202);
    k.alice
        .post(&path, json!({"os-update_snapshot_status": {"status": "available", "progress": "100%"}}))
        .await
        .expect(202);
    k.alice.wait_snapshot(a, &sid, "available").await;
    // Another project does not see it at all.
    let bp = &k.b;
    k.bob
        .post(&format!("/v3/{bp}/snapshots/{sid}/action"), json!({"os-update_snapshot_status": {"status": "error"}}))
        .await
        .expect(404);
    k.boss.post(&path, json!({"os-force_delete": {}})).await.expect(202);
    let deadline = Instant::now() + DEADLINE;
    while k.alice.get(&format!("/v3/{a}/snapshots/{sid}")).await.status != 404 {
        assert!(Instant::now() < deadline, "snapshot not force-deleted");
        tokio::time::sleep(POLL).await;
    }
}

async fn messages_tell_the_project_why_a_create_failed(b: Backend) {
    let k = keystone(b).await;
    let (a, pb) = (&k.a, &k.b);
    // A type asking for a protocol and vendor no pool has: accepted, then fails (no valid
    // backend), as Cinder's scheduler fails it.
    let specs = json!({"storage_protocol": "fibre_channel", "vendor_name": "acme"});
    let t = k
        .boss
        .post(
            &format!("/v3/{a}/types"),
            json!({"volume_type": {"name": common::unique("bogus"), "extra_specs": specs}}),
        )
        .await
        .expect(200);
    let tid = s(&t.body["volume_type"], "id");
    let r =
        k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1, "volume_type": tid}})).await.expect(202);
    let request_id = r.header("x-openstack-request-id").expect("request id");
    let vid = s(&r.body["volume"], "id");
    k.alice.wait_volume(a, &vid, "error").await;
    // A type whose capabilities match ours creates normally.
    let ok_specs = json!({"storage_protocol": "nbd", "vendor_name": "cinderblock"});
    let t2 = k
        .boss
        .post(
            &format!("/v3/{a}/types"),
            json!({"volume_type": {"name": common::unique("fine"), "extra_specs": ok_specs}}),
        )
        .await
        .expect(200);
    let r = k
        .alice
        .post(
            &format!("/v3/{a}/volumes"),
            json!({"volume": {"size": 1, "volume_type": s(&t2.body["volume_type"], "id")}}),
        )
        .await
        .expect(202);
    k.alice.wait_volume(a, &s(&r.body["volume"], "id"), "available").await;

    let list = k.alice.get(&format!("/v3/{a}/messages")).await.expect(200);
    let msgs = list.body["messages"].as_array().expect("messages").clone();
    assert_eq!(msgs.len(), 1, "{}", list.text);
    let m = &msgs[0];
    assert_eq!(m["resource_uuid"], vid.as_str());
    assert_eq!(m["resource_type"], "VOLUME");
    assert_eq!(m["event_id"], "VOLUME_VOLUME_001_003");
    assert_eq!(m["message_level"], "ERROR");
    assert_eq!(m["user_message"], "schedule allocate volume:Could not find any available weighted backend.");
    assert_eq!(m["request_id"], request_id.as_str());
    assert!(m["guaranteed_until"].as_str().unwrap_or_default() > m["created_at"].as_str().unwrap_or("~"), "{m}");
    let mid = s(m, "id");
    let show = k.alice.get(&format!("/v3/{a}/messages/{mid}")).await.expect(200);
    assert_eq!(&show.body["message"], m);
    // Messages need 3.3.
    let old = k
        .alice
        .api
        .request(Method::GET, &format!("/v3/{a}/messages"), &[("X-Auth-Token", k.alice.token.as_str())], None)
        .await;
    assert_eq!(old.status, 404, "{}", old.text);
    // Another project sees none of them; an admin sees every project's (Cinder's admin
    // context is not project-scoped).
    let other = k.bob.get(&format!("/v3/{pb}/messages")).await.expect(200);
    assert_eq!(other.body["messages"], json!([]));
    let all = k.boss.get(&format!("/v3/{a}/messages")).await.expect(200);
    assert_eq!(all.body["messages"].as_array().map(Vec::len), Some(1), "{}", all.text);
    let r =
        k.bob.post(&format!("/v3/{pb}/volumes"), json!({"volume": {"size": 1, "volume_type": tid}})).await.expect(202);
    k.bob.wait_volume(pb, &s(&r.body["volume"], "id"), "error").await;
    let all = k.boss.get(&format!("/v3/{a}/messages")).await.expect(200);
    assert_eq!(all.body["messages"].as_array().map(Vec::len), Some(2), "{}", all.text);
    assert_eq!(
        k.alice.get(&format!("/v3/{a}/messages")).await.expect(200).body["messages"].as_array().map(Vec::len),
        Some(1)
    );
    k.bob.get(&format!("/v3/{pb}/messages/{mid}")).await.expect(404);
    k.bob.delete(&format!("/v3/{pb}/messages/{mid}")).await.expect(404);
    k.alice.get(&format!("/v3/{a}/messages/{mid}")).await.expect(200);
    k.alice.get(&format!("/v3/{a}/messages/not-a-uuid")).await.expect(404);
    // Delete.
    k.alice.delete(&format!("/v3/{a}/messages/{mid}")).await.expect(204);
    k.alice.get(&format!("/v3/{a}/messages/{mid}")).await.expect(404);
    k.alice.delete(&format!("/v3/{a}/messages/{mid}")).await.expect(404);
    assert_eq!(k.alice.get(&format!("/v3/{a}/messages")).await.expect(200).body["messages"], json!([]));
}

// ----- retype -----------------------------------------------------------------------------------

/// A noauth daemon with a second pool `second` (in `second`'s own directory) beside `default`.
fn two_pools(b: Backend, step_delay_ms: u64) -> (TestServer, tempfile::TempDir) {
    let second = tempfile::tempdir().expect("second pool dir");
    let tail = format!(
        "[[pools]]\nname = \"second\"\npath = {:?}\navailability_zone = \"nova\"\n",
        second.path().display().to_string()
    );
    (TestServer::start(b, Opts { extra_tail: tail, step_delay_ms, ..Opts::default() }), second)
}

async fn make_type(api: &Api, p: &str, specs: Value) -> (String, String) {
    let name = common::unique("rt");
    let r = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": name, "extra_specs": specs}})).await;
    let r = r.expect(200);
    (s(&r.body["volume_type"], "id"), name)
}

async fn retype(api: &Api, p: &str, id: &str, args: Value) -> Resp {
    api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({ "os-retype": args })).await
}

/// Poll until the volume shows `type_name` and is available.
async fn wait_type(api: &Api, p: &str, id: &str, type_name: &str) -> Value {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
        if v["volume_type"] == type_name && v["status"] == "available" {
            return v;
        }
        assert!(Instant::now() < deadline, "volume {id} never became {type_name}: {v}");
        tokio::time::sleep(POLL).await;
    }
}

const MARK: &[u8] = b"cinderblock retype keeps these bytes";
const MARK_AT: u64 = 3 << 20;

fn write_mark(path: &std::path::Path) {
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(path).expect("open volume file");
    f.seek(SeekFrom::Start(MARK_AT)).expect("seek");
    f.write_all(MARK).expect("write");
    f.sync_all().expect("sync");
}

fn read_mark(path: &std::path::Path) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    f.seek(SeekFrom::Start(MARK_AT)).expect("seek");
    let mut buf = vec![0; MARK.len()];
    f.read_exact(&mut buf).expect("read");
    buf
}

fn file_of(pool: &std::path::Path, id: &str) -> std::path::PathBuf {
    pool.join("volumes").join(format!("{id}.raw"))
}

async fn retype_in_place_and_with_migration(b: Backend) {
    let (srv, second) = two_pools(b, 0);
    let api = srv.api();
    let p = project();
    let (src_t, src_name) = make_type(&api, &p, json!({"volume_backend_name": "default"})).await;
    let (dst_t, dst_name) = make_type(&api, &p, json!({"volume_backend_name": "second"})).await;
    let (_, plain_name) = make_type(&api, &p, json!({})).await;
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": src_t, "name": "moving"})).await;
    let id = s(&v, "id");
    let host = s(&v, "os-vol-host-attr:host");
    assert!(host.ends_with("#default"), "{host}");
    write_mark(&file_of(&srv.pool, &id));

    // Bad input: 400 and nothing changes.
    for bad in [
        json!({"new_type": "no-such-type"}),
        json!({"new_type": src_name}),
        json!({"new_type": plain_name, "migration_policy": "sometimes"}),
        json!({"new_type": plain_name, "extra": true}),
        json!({}),
        json!({"new_type": dst_t}),
        json!({"new_type": dst_name, "migration_policy": "never"}),
    ] {
        let r = retype(&api, &p, &id, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    let r = retype(&api, &p, &id, json!({"new_type": dst_name, "migration_policy": "never"})).await;
    assert!(r.text.contains("migration"), "{}", r.text);
    let now = api.wait_available(&p, &id).await;
    assert_eq!(
        (now["volume_type"].as_str(), now["os-vol-host-attr:host"].as_str()),
        (Some(src_name.as_str()), Some(host.as_str()))
    );
    assert_eq!(now["migration_status"], Value::Null);

    // Same pool: the type changes at once, nothing moves.
    retype(&api, &p, &id, json!({"new_type": plain_name, "migration_policy": "never"})).await.expect(202);
    let now = wait_type(&api, &p, &id, &plain_name).await;
    assert_eq!(now["os-vol-host-attr:host"], host.as_str());
    assert_eq!(now["migration_status"], Value::Null);
    assert_eq!(read_mark(&file_of(&srv.pool, &id)), MARK);

    // Per-type quotas follow the volume: no room in the destination type → 413, unchanged.
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {format!("volumes_{dst_name}"): 0}}))
        .await
        .expect(200);
    let r = retype(&api, &p, &id, json!({"new_type": dst_name, "migration_policy": "on-demand"})).await;
    assert_eq!(r.status, 413, "{}", r.text);
    let now = api.wait_available(&p, &id).await;
    assert_eq!(now["volume_type"], plain_name.as_str());
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {format!("volumes_{dst_name}"): -1}}))
        .await
        .expect(200);

    // Another pool: on-demand migrates the data, keeping id, name and size.
    retype(&api, &p, &id, json!({"new_type": dst_name, "migration_policy": "on-demand"})).await.expect(202);
    let now = wait_type(&api, &p, &id, &dst_name).await;
    assert_eq!(now["migration_status"], "success");
    assert_eq!(now["os-vol-mig-status-attr:migstat"], "success");
    assert!(s(&now, "os-vol-host-attr:host").ends_with("#second"), "{now}");
    assert_eq!(
        (now["id"].as_str(), now["name"].as_str(), now["size"].as_i64()),
        (Some(id.as_str()), Some("moving"), Some(1))
    );
    assert_eq!(read_mark(&file_of(second.path(), &id)), MARK);
    let deadline = Instant::now() + DEADLINE;
    while file_of(&srv.pool, &id).exists() {
        assert!(Instant::now() < deadline, "the old pool kept the migrated volume's file");
        tokio::time::sleep(POLL).await;
    }
    // And back.
    retype(&api, &p, &id, json!({"new_type": src_name, "migration_policy": "on-demand"})).await.expect(202);
    wait_type(&api, &p, &id, &src_name).await;
    assert_eq!(read_mark(&file_of(&srv.pool, &id)), MARK);
    // A volume with snapshots cannot migrate.
    let sid = available_snapshot(&api, &p, &id).await;
    let r = retype(&api, &p, &id, json!({"new_type": dst_name, "migration_policy": "on-demand"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect(202);
    wait_snapshot_gone(&api, &p, &sid).await;
    // The migrated volume's type pins it to `default`: an admin migration elsewhere is refused.
    let mig = |host: &str| json!({"os-migrate_volume": {"host": host}});
    vol_action(&api, &p, &id, mig("test-node@second#second")).await.expect(400);
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;

    // os-migrate_volume: same type, another pool of the zone.
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": plain_name})).await;
    let id = s(&v, "id");
    assert!(s(&v, "os-vol-host-attr:host").ends_with("#default"));
    write_mark(&file_of(&srv.pool, &id));
    for bad in ["other-node@second#second", "test-node@nowhere#nowhere", "test-node@default#default", ""] {
        let r = vol_action(&api, &p, &id, mig(bad)).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    vol_action(&api, &p, &id, mig("test-node@second#second")).await.expect(202);
    let deadline = Instant::now() + DEADLINE;
    let now = loop {
        let now = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
        if now["migration_status"] == "success" && now["status"] == "available" {
            break now;
        }
        assert!(Instant::now() < deadline, "migration never finished: {now}");
        tokio::time::sleep(POLL).await;
    };
    assert!(s(&now, "os-vol-host-attr:host").ends_with("#second"), "{now}");
    assert_eq!(now["volume_type"], plain_name.as_str());
    assert_eq!(read_mark(&file_of(second.path(), &id)), MARK);
}

async fn retype_migration_survives_kill9(b: Backend) {
    let (srv, second) = two_pools(b, 0);
    let api = srv.api();
    let p = project();
    let (src_t, _) = make_type(&api, &p, json!({"volume_backend_name": "default"})).await;
    let (_, dst_name) = make_type(&api, &p, json!({"volume_backend_name": "second"})).await;
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": src_t})).await;
    let id = s(&v, "id");
    write_mark(&file_of(&srv.pool, &id));
    // Slow jobs down so the daemon dies with the migration running.
    srv.restart_with(|o| o.step_delay_ms = 5000);
    let api = srv.api();
    retype(&api, &p, &id, json!({"new_type": dst_name, "migration_policy": "on-demand"})).await.expect(202);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let jobs = srv.db_jobs().await;
        if jobs.iter().any(|(_, st)| st == "RUNNING") {
            break;
        }
        assert!(Instant::now() < deadline, "the retype job never ran: {jobs:?}");
        tokio::time::sleep(POLL).await;
    }
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"]["status"], "retyping");
    srv.kill9();
    // Killed mid-migration: the data is still where the row says, untouched.
    assert_eq!(read_mark(&file_of(&srv.pool, &id)), MARK);
    srv.restart_with(|o| o.step_delay_ms = 0);
    let api = srv.api();
    let now = wait_type(&api, &p, &id, &dst_name).await;
    assert_eq!(now["migration_status"], "success");
    assert_eq!(read_mark(&file_of(second.path(), &id)), MARK);
    let deadline = Instant::now() + DEADLINE;
    while file_of(&srv.pool, &id).exists() {
        assert!(Instant::now() < deadline, "the old pool kept the migrated volume's file");
        tokio::time::sleep(POLL).await;
    }
}

async fn vol_action(api: &Api, p: &str, id: &str, body: Value) -> Resp {
    api.post(&format!("/v3/{p}/volumes/{id}/action"), body).await
}

async fn volume_reset_status_and_force_delete(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let id = s(&v, "id");
    for bad in [
        json!({"os-reset_status": {}}),
        json!({"os-reset_status": {"status": "bogus"}}),
        json!({"os-reset_status": {"status": "deleting"}}),
        json!({"os-reset_status": {"status": "in-use"}}),
        json!({"os-reset_status": {"attach_status": "half"}}),
        json!({"os-reset_status": {"migration_status": "flying"}}),
        json!({"os-reset_status": {"status": "error", "size": 3}}),
    ] {
        let r = vol_action(&api, &p, &id, bad.clone()).await;
        assert_eq!(r.status, 400, "{bad}: {}", r.text);
    }
    api.wait_available(&p, &id).await;
    vol_action(&api, &p, &id, json!({"os-reset_status": {"status": "error", "migration_status": "error"}}))
        .await
        .expect(202);
    let got = api.wait_volume_status(&p, &id, &["error"]).await;
    assert_eq!(got["migration_status"], "error");
    vol_action(&api, &p, &id, json!({"os-reset_status": {"status": "available", "migration_status": "none"}}))
        .await
        .expect(202);
    let got = api.wait_available(&p, &id).await;
    assert_eq!(got["migration_status"], Value::Null);

    // A snapshot depends on it: even force delete refuses.
    let sid = available_snapshot(&api, &p, &id).await;
    vol_action(&api, &p, &id, json!({"os-force_delete": {}})).await.expect(400);
    snap_action(&api, &p, &sid, json!({"os-force_delete": {}})).await.expect(202);
    wait_snapshot_gone(&api, &p, &sid).await;

    // A volume being retyped (its data may be on its way to another pool) is not deleted.
    vol_action(&api, &p, &id, json!({"os-reset_status": {"status": "retyping"}})).await.expect(202);
    vol_action(&api, &p, &id, json!({"os-force_delete": {}})).await.expect(400);
    vol_action(&api, &p, &id, json!({"os-reset_status": {"status": "available"}})).await.expect(202);
    // An export (initialize_connection leaves the volume available) blocks even force delete.
    let conn = json!({"connector": {"host": "h1"}});
    vol_action(&api, &p, &id, json!({"os-initialize_connection": conn.clone()})).await.expect(200);
    let r = vol_action(&api, &p, &id, json!({"os-force_delete": {}})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    vol_action(&api, &p, &id, json!({"os-terminate_connection": conn})).await.expect(202);
    api.wait_available(&p, &id).await;

    for status in ["creating", "attaching", "error", "maintenance", "available"] {
        let v = api.cinder_create_available(&p, json!({"size": 1})).await;
        let vid = s(&v, "id");
        let file = srv.volume_path(&vid);
        assert!(file.exists());
        if status != "available" {
            vol_action(&api, &p, &vid, json!({"os-reset_status": {"status": status}})).await.expect(202);
            api.wait_volume_status(&p, &vid, &[status]).await;
            if status != "error" {
                // A plain delete refuses what force allows.
                api.delete(&format!("/v3/{p}/volumes/{vid}")).await.expect(400);
            }
        }
        vol_action(&api, &p, &vid, json!({"os-force_delete": {}})).await.expect(202);
        api.wait_volume_gone(&p, &vid).await;
        assert!(!file.exists(), "force delete from {status} left {}", file.display());
    }
    api.wait_available(&p, &id).await;
}

/// A noauth admin GET at 3.3.
async fn get33(api: &Api, path: &str) -> Resp {
    api.get_h(path, &[("OpenStack-API-Version", "volume 3.3")]).await
}

async fn driver_failures_leave_messages(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    // Extend: the volume's file replaced by a directory makes the driver fail.
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let id = s(&v, "id");
    let file = srv.volume_path(&id);
    std::fs::remove_file(&file).expect("remove volume file");
    std::fs::create_dir(&file).expect("dir in its place");
    vol_action(&api, &p, &id, json!({"os-extend": {"new_size": 2}})).await.expect(202);
    api.wait_volume_status(&p, &id, &["error_extending"]).await;
    let deadline = Instant::now() + DEADLINE;
    let m = loop {
        let list = get33(&api, &format!("/v3/{p}/messages")).await.expect(200);
        if let Some(m) = list.body["messages"].as_array().and_then(|a| a.first()).cloned() {
            break m;
        }
        assert!(Instant::now() < deadline, "no message for the failed extend");
        tokio::time::sleep(POLL).await;
    };
    assert_eq!(m["resource_uuid"], id.as_str());
    assert_eq!(m["event_id"], "VOLUME_VOLUME_007_010");
    assert_eq!(m["user_message"], "extend volume:Volume Driver failed to extend volume.");
    // Create: the pool's volumes directory replaced by a file.
    let vols = srv.pool.join("volumes");
    let moved = srv.pool.join("volumes.away");
    std::fs::rename(&vols, &moved).expect("move volumes dir");
    std::fs::write(&vols, b"not a directory").expect("file in its place");
    let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1}})).await.expect(202);
    let nid = s(&r.body["volume"], "id");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let st = api.get(&format!("/v3/{p}/volumes/{nid}")).await.expect(200).body["volume"]["status"].clone();
        if st == "error" {
            break;
        }
        assert!(Instant::now() < deadline, "create did not fail: {st}");
        tokio::time::sleep(POLL).await;
    }
    std::fs::remove_file(&vols).expect("remove the file");
    std::fs::rename(&moved, &vols).expect("restore volumes dir");
    let list = get33(&api, &format!("/v3/{p}/messages")).await.expect(200);
    let msgs = list.body["messages"].as_array().expect("messages").clone();
    assert_eq!(msgs.len(), 2, "{}", list.text);
    // Newest first.
    assert_eq!(msgs[0]["resource_uuid"], nid.as_str());
    assert_eq!(msgs[0]["event_id"], "VOLUME_VOLUME_008_012");
    assert_eq!(msgs[0]["user_message"], "create volume from backend storage:Driver failed to create the volume.");
    // No internal detail (paths, OS errors) leaks into a message.
    assert!(!list.text.contains(&srv.pool.display().to_string()), "{}", list.text);

    // 3.5: filters, sort, limit and marker.
    let at = |minor: u32, q: &str| {
        let api = api.clone();
        let path = format!("/v3/{p}/messages{q}");
        async move { api.get_h(&path, &[("OpenStack-API-Version", &format!("volume 3.{minor}"))]).await }
    };
    let r = at(5, &format!("?resource_uuid={id}")).await.expect(200);
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(1), "{}", r.text);
    assert_eq!(r.body["messages"][0]["resource_uuid"], id.as_str());
    let r = at(5, "?event_id=VOLUME_VOLUME_008_012").await.expect(200);
    assert_eq!(r.body["messages"][0]["resource_uuid"], nid.as_str());
    let r = at(5, "?sort=created_at:asc").await.expect(200);
    assert_eq!(r.body["messages"][0]["resource_uuid"], id.as_str());
    let r = at(5, "?limit=1").await.expect(200);
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(1));
    let next = r.body["messages_links"][0]["href"].as_str().expect("next link").to_string();
    assert!(next.contains("marker="), "{next}");
    let first = s(&r.body["messages"][0], "id");
    let r = at(5, &format!("?limit=1&marker={first}")).await.expect(200);
    assert_eq!(r.body["messages"][0]["resource_uuid"], id.as_str());
    at(5, "?bogus=1").await.expect(400);
    at(5, "?sort=user_message").await.expect(400);
    at(5, &format!("?marker={}", uuid::Uuid::new_v4())).await.expect(404);
    // Below 3.5 the query is ignored, as in Cinder.
    let r = at(3, "?bogus=1&limit=1").await.expect(200);
    assert_eq!(r.body["messages"].as_array().map(Vec::len), Some(2));
    let r = api
        .get_h(&format!("/v3/{p}/resource_filters?resource=message"), &[("OpenStack-API-Version", "volume 3.33")])
        .await
        .expect(200);
    assert_eq!(r.body["resource_filters"][0]["filters"].as_array().map(Vec::len), Some(5), "{}", r.text);
}

/// Issue 10 B.3: the type's capability extra specs, with Cinder's operators, choose among the
/// pools (the first configured that has them all); one asking for what no pool has is accepted
/// and fails with "No valid backend", as Cinder's scheduler does.
async fn capability_specs_choose_the_pool(b: Backend) {
    let (srv, _second) = two_pools(b, 0);
    let api = srv.api();
    let p = project();
    let host_of = |v: &Value| s(v, "os-vol-host-attr:host");
    let place = async |specs: Value| {
        let (tid, _) = make_type(&api, &p, specs).await;
        let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "volume_type": tid}})).await;
        let id = s(&r.expect(202).body["volume"], "id");
        let deadline = Instant::now() + DEADLINE;
        loop {
            let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
            if v["status"] == "available" || v["status"] == "error" {
                return v;
            }
            assert!(Instant::now() < deadline, "volume {id} stuck: {v}");
            tokio::time::sleep(POLL).await;
        }
    };
    // Operators: `<or>` on the pool name picks the second pool without naming the backend.
    let v = place(json!({"capabilities:pool_name": "<or> second <or> elsewhere"})).await;
    assert_eq!(v["status"], "available", "{v}");
    assert!(host_of(&v).ends_with("#second"), "{v}");
    let v = place(json!({"pool_name": "s== default", "thin_provisioning_support": "<is> True",
                         "free_capacity_gb": ">= 0", "vendor_name": "<in> block", "storage_protocol": "NBD"}))
    .await;
    assert_eq!(v["status"], "available", "{v}");
    assert!(host_of(&v).ends_with("#default"), "{v}");
    // Specs in other scopes are not the scheduler's.
    let v = place(json!({"qos:total_iops_sec": "100", "hw:passthrough": "true"})).await;
    assert_eq!(v["status"], "available", "{v}");
    // Nothing has these: accepted, then error.
    for specs in [
        json!({"thick_provisioning_support": "<is> True"}),
        json!({"replication_enabled": "<is> True"}),
        json!({"free_capacity_gb": ">= 100000000"}),
        json!({"capabilities:pool_name": "<or> nowhere"}),
    ] {
        let v = place(specs.clone()).await;
        assert_eq!(v["status"], "error", "{specs}: {v}");
    }
}

/// Issue 10 B.1: os-services as Cinder: admins only; a disabled pool takes no new volumes (and
/// says why), a frozen one also refuses deletes and snapshot creates and deletes (Cinder's
/// `assert_not_frozen`), with nothing changed; enable and thaw restore everything.
async fn services_disable_and_freeze(b: Backend) {
    let k = keystone(b).await;
    let a = &k.a;
    let put = |who: &Client, what: &str, body: Value| {
        let (who, path) = (who.clone(), format!("/v3/{a}/os-services/{what}"));
        async move { who.req(Method::PUT, &path, Some(body)).await }
    };
    // Admin only: a member is refused, and nothing changes.
    k.alice.get(&format!("/v3/{a}/os-services")).await.expect(403);
    put(&k.alice, "freeze", json!({"host": "test-node@default"})).await.expect(403);
    let list = k.boss.get(&format!("/v3/{a}/os-services")).await.expect(200);
    let services = list.body["services"].as_array().expect("services").clone();
    let names: Vec<(String, String)> = services.iter().map(|x| (s(x, "binary"), s(x, "host"))).collect();
    assert!(names.contains(&("cinder-scheduler".into(), "test-node".into())), "{}", list.text);
    assert!(names.contains(&("cinder-volume".into(), "test-node@default".into())), "{}", list.text);
    assert!(services.iter().all(|x| x["status"] == "enabled"), "{}", list.text);
    assert!(services.iter().filter(|x| x["binary"] == "cinder-volume").all(|x| x["frozen"] == false), "{}", list.text);

    // A volume and a snapshot made while the pool is normal.
    let r = k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect(202);
    let vid = s(&r.body["volume"], "id");
    k.alice.wait_volume(a, &vid, "available").await;
    let r = k.alice.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": vid}})).await.expect(202);
    let sid = s(&r.body["snapshot"], "id");
    k.alice.wait_snapshot(a, &sid, "available").await;
    let count = |c: &Client| {
        let (c, path) = (c.clone(), format!("/v3/{a}/volumes"));
        async move { c.get(&path).await.expect(200).body["volumes"].as_array().map_or(0, Vec::len) }
    };

    // Disabled with a reason: no new volume, the reason is shown; the existing ones work.
    let r = put(
        &k.boss,
        "disable-log-reason",
        json!({"host": "test-node@default", "binary": "cinder-volume", "disabled_reason": "disk swap"}),
    )
    .await
    .expect(200);
    assert_eq!(r.body["disabled_reason"], "disk swap", "{}", r.text);
    let shown = k.boss.get(&format!("/v3/{a}/os-services?binary=cinder-volume")).await.expect(200);
    assert_eq!(shown.body["services"][0]["status"], "disabled", "{}", shown.text);
    assert_eq!(shown.body["services"][0]["disabled_reason"], "disk swap", "{}", shown.text);
    k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect(400);
    assert_eq!(count(&k.alice).await, 1, "the refused create left nothing");
    put(&k.boss, "enable", json!({"host": "test-node@default", "binary": "cinder-volume"})).await.expect(200);

    // Frozen: creates, deletes and snapshot changes are refused with Cinder's message.
    put(&k.boss, "freeze", json!({"host": "test-node@default"})).await.expect(200);
    let frozen_msg = "Modification operations are not allowed on frozen storage backends";
    for r in [
        k.alice.delete(&format!("/v3/{a}/volumes/{vid}")).await,
        k.alice.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": vid}})).await,
        k.alice.delete(&format!("/v3/{a}/snapshots/{sid}")).await,
        k.boss.post(&format!("/v3/{a}/volumes/{vid}/action"), json!({"os-force_delete": {}})).await,
        k.boss.post(&format!("/v3/{a}/snapshots/{sid}/action"), json!({"os-force_delete": {}})).await,
    ] {
        let r = r.expect(400);
        assert!(r.text.contains(frozen_msg), "{}", r.text);
    }
    k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect(400);
    // Nothing changed; reads and other actions go on.
    assert_eq!(k.alice.wait_volume(a, &vid, "available").await["id"], vid.as_str());
    k.alice.wait_snapshot(a, &sid, "available").await;
    assert_eq!(count(&k.alice).await, 1);
    let frozen = k.boss.get(&format!("/v3/{a}/os-services?binary=cinder-volume")).await.expect(200);
    assert_eq!(frozen.body["services"][0]["frozen"], true, "{}", frozen.text);
    // Frozen pools are not offered by get_pools.
    let pools = k.boss.get(&format!("/v3/{a}/scheduler-stats/get_pools")).await.expect(200);
    assert_eq!(pools.body["pools"], json!([]), "{}", pools.text);

    // Thawed: everything works again.
    put(&k.boss, "thaw", json!({"host": "test-node@default"})).await.expect(200);
    k.alice.delete(&format!("/v3/{a}/snapshots/{sid}")).await.expect(202);
    let deadline = Instant::now() + DEADLINE;
    while k.alice.get(&format!("/v3/{a}/snapshots/{sid}")).await.status != 404 {
        assert!(Instant::now() < deadline, "snapshot not deleted");
        tokio::time::sleep(POLL).await;
    }
    k.alice.delete(&format!("/v3/{a}/volumes/{vid}")).await.expect(202);
    // Unknown hosts are refused.
    put(&k.boss, "freeze", json!({"host": "nowhere@x"})).await.expect(400);
    put(&k.boss, "disable", json!({"host": "nowhere@x", "binary": "cinder-volume"})).await.expect(404);
}

/// Issue 10 B.6: `os-force_detach` (admin) removes an attachment whatever its state and
/// whatever status a reset left the volume in; a member may not.
async fn force_detach_clears_attachments(b: Backend) {
    let k = keystone(b).await;
    let a = &k.a;
    let r = k.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect(202);
    let vid = s(&r.body["volume"], "id");
    k.alice.wait_volume(a, &vid, "available").await;
    let act = format!("/v3/{a}/volumes/{vid}/action");
    k.alice
        .post(&act, json!({"os-attach": {"instance_uuid": uuid::Uuid::new_v4().to_string(), "mountpoint": "/dev/vdb"}}))
        .await
        .expect(202);
    let v = k.alice.wait_volume(a, &vid, "in-use").await;
    let aid = s(&v["attachments"][0], "attachment_id");
    // A member may not; an unknown attachment is 404; bad bodies are 400; nothing changes.
    k.alice.post(&act, json!({"os-force_detach": {"attachment_id": aid}})).await.expect(403);
    let ghost = uuid::Uuid::new_v4().to_string();
    k.boss.post(&act, json!({"os-force_detach": {"attachment_id": ghost}})).await.expect(404);
    k.boss.post(&act, json!({"os-force_detach": {"attachment_id": aid, "bogus": 1}})).await.expect(400);
    k.boss.post(&act, json!({"os-force_detach": {"connector": "x"}})).await.expect(400);
    assert_eq!(k.alice.wait_volume(a, &vid, "in-use").await["attachments"].as_array().map(Vec::len), Some(1));
    // After a reset to error, the admin still gets it off.
    k.boss.post(&act, json!({"os-reset_status": {"status": "error"}})).await.expect(202);
    k.boss.post(&act, json!({"os-force_detach": {"attachment_id": aid, "connector": {"host": "h"}}})).await.expect(202);
    let v = k.alice.wait_volume(a, &vid, "available").await;
    assert_eq!(v["attachments"], json!([]), "{v}");
    // A reservation (os-reserve: `attaching`, never completed) goes too.
    k.alice.post(&act, json!({"os-reserve": {}})).await.expect(202);
    k.alice.wait_volume(a, &vid, "attaching").await;
    k.boss.post(&act, json!({"os-force_detach": {}})).await.expect(202);
    let v = k.alice.wait_volume(a, &vid, "available").await;
    assert_eq!(v["attachments"], json!([]), "{v}");
    k.alice.delete(&format!("/v3/{a}/volumes/{vid}")).await.expect(202);
}

// ----- manage ------------------------------------------------------------------------------------

const V38: [(&str, &str); 1] = [("OpenStack-API-Version", "volume 3.8")];

/// Poll until GET `path` answers 404.
async fn wait_gone(api: &Api, path: &str) {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = api.get(path).await;
        if r.status == 404 {
            return;
        }
        assert!(Instant::now() < deadline, "{path} never went away: {}", r.text);
        tokio::time::sleep(POLL).await;
    }
}

fn write_at(path: &std::path::Path, off: u64, data: &[u8]) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(path).expect("open for write");
    f.write_all_at(data, off).expect("write");
}

fn read_at(path: &std::path::Path, off: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    std::fs::File::open(path).expect("open").read_exact_at(&mut buf, off).expect("read");
    buf
}

async fn manage_and_unmanage_volumes_and_snapshots(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let import = srv.pool.join("import");
    let v = api.cinder_create_available(&p, json!({"size": 1, "name": "orig"})).await;
    let vid = s(&v, "id");
    let shown = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    let host = s(&shown, "os-vol-host-attr:host");
    write_at(&srv.volume_path(&vid), 3 << 20, b"kept across unmanage");
    let sid = available_snapshot(&api, &p, &vid).await;
    write_at(&srv.volume_path(&vid), 3 << 20, b"written after the snap");

    // A volume with snapshots cannot be unmanaged (Cinder's rule for delete).
    let vact = format!("/v3/{p}/volumes/{vid}/action");
    api.post(&vact, json!({"os-unmanage": {}})).await.expect(400);

    // Unmanage the snapshot: the row goes, the data stays in import/ under Cinder LVM's name.
    snap_action(&api, &p, &sid, json!({"os-unmanage": {}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/snapshots/{sid}")).await;
    let snap_file = import.join(format!("snapshot-{sid}"));
    assert_eq!(read_at(&snap_file, 3 << 20, 20), b"kept across unmanage");
    assert!(!srv.pool.join("snapshots").join(format!("{sid}.raw")).exists());

    // Manage it back as a snapshot of the same volume (the v2 view, 202).
    let meta = json!({"k1": "v1"});
    let body = json!({"snapshot": {"volume_id": vid, "ref": {"source-name": format!("snapshot-{sid}")},
        "name": "adopted", "description": "back again", "metadata": meta}});
    let r = api.post(&format!("/v3/{p}/os-snapshot-manage"), body).await.expect(202);
    let snap = &r.body["snapshot"];
    let keys: std::collections::BTreeSet<&str> = snap.as_object().expect("object").keys().map(String::as_str).collect();
    let want: std::collections::BTreeSet<&str> =
        ["id", "created_at", "updated_at", "name", "description", "volume_id", "status", "size", "metadata"].into();
    assert_eq!(keys, want, "{snap}");
    let new_sid = s(snap, "id");
    let got = wait_snapshot(&api, &p, &new_sid, "available").await;
    assert_eq!((got["size"].as_i64(), &got["metadata"], &got["name"]), (Some(1), &meta, &json!("adopted")));
    assert!(!snap_file.exists(), "the snapshot's file was moved in, not copied");
    // The adopted snapshot is a real snapshot: revert reads it back.
    let h = [("OpenStack-API-Version", "volume 3.40")];
    let revert = json!({"revert": {"snapshot_id": new_sid}}).to_string();
    api.request(Method::POST, &vact, &h, Some(revert)).await.expect(202);
    api.wait_available(&p, &vid).await;
    assert_eq!(read_at(&srv.volume_path(&vid), 3 << 20, 20), b"kept across unmanage");
    snap_action(&api, &p, &new_sid, json!({"os-unmanage": {}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/snapshots/{new_sid}")).await;

    // Unmanage the volume: gone from every list, its file in import/ as volume-<id>.
    api.post(&vact, json!({"os-unmanage": {}})).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    let all = api.volume_ids(&format!("/v3/{p}/volumes/detail?all_tenants=1")).await;
    assert!(!all.contains(&vid));
    let vol_file = import.join(format!("volume-{vid}"));
    assert_eq!(read_at(&vol_file, 3 << 20, 20), b"kept across unmanage");
    assert!(!srv.volume_path(&vid).exists());

    // The manageable list (3.8; none below it; host required).
    api.get(&format!("/v3/{p}/manageable_volumes?host={}", enc(&host))).await.expect(404);
    api.get_h(&format!("/v3/{p}/manageable_volumes"), &V38).await.expect(400);
    let r = api.get_h(&format!("/v3/{p}/manageable_volumes/detail?host={}", enc(&host)), &V38).await.expect(200);
    let items = r.body["manageable-volumes"].as_array().expect("list").clone();
    let me = items.iter().find(|m| m["reference"]["source-name"] == format!("volume-{vid}")).expect("listed");
    assert_eq!((me["size"].as_i64(), me["safe_to_manage"].as_bool()), (Some(1), Some(true)), "{me}");
    assert!(me["reason_not_safe"].is_null());
    let r = api.get(&format!("/v2/{p}/os-volume-manage?host={}", enc(&host))).await.expect(200);
    assert!(r.body["manageable-volumes"].as_array().expect("list").iter().any(|m| m["size"] == 1));

    // Manage it back (tempest's flow: same host, type and zone), then a file of our own that
    // is not a whole GiB: it is rounded up and grown, sparse.
    let body = json!({"volume": {"name": "managed", "host": host, "ref": {"source-name": format!("volume-{vid}")},
        "volume_type": shown["volume_type"], "availability_zone": shown["availability_zone"]}});
    let r = api.post(&format!("/v3/{p}/os-volume-manage"), body).await.expect(202);
    let new_vid = s(&r.body["volume"], "id");
    assert_ne!(new_vid, vid);
    assert!(r.body["volume"].get("os-vol-host-attr:host").is_none(), "the plain view: {}", r.text);
    let got = api.wait_available(&p, &new_vid).await;
    let shown2 = api.get(&format!("/v3/{p}/volumes/{new_vid}")).await.expect(200).body["volume"].clone();
    for key in ["size", "volume_type", "availability_zone", "os-vol-host-attr:host"] {
        assert_eq!(shown2[key], shown[key], "{key}");
    }
    assert_eq!(got["name"], "managed");
    assert_eq!(read_at(&srv.volume_path(&new_vid), 3 << 20, 20), b"kept across unmanage");
    assert!(!vol_file.exists());

    let own = import.join("disk.img");
    std::fs::write(&own, vec![7u8; 3 << 19]).expect("write own file");
    let body = json!({"volume": {"host": host, "ref": {"source-name": "disk.img"}, "bootable": true}});
    let r = api.post(&format!("/v2/{p}/os-volume-manage"), body).await.expect(202);
    let own_id = s(&r.body["volume"], "id");
    let got = api.wait_available(&p, &own_id).await;
    assert_eq!((got["size"].as_i64(), &got["bootable"]), (Some(1), &json!("true")), "{got}");
    {
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(srv.volume_path(&own_id)).expect("stat");
        assert_eq!(md.len(), 1 << 30, "grown to the whole GiB");
        assert!(md.blocks() * 512 <= 2 << 20, "grown sparse: {} bytes allocated", md.blocks() * 512);
    }
    assert_eq!(read_at(&srv.volume_path(&own_id), (3 << 19) - 4, 4), vec![7u8; 4]);
    // Usable like any volume: extend, then delete removes its data for real.
    api.post(&format!("/v3/{p}/volumes/{own_id}/action"), json!({"os-extend": {"new_size": 2}})).await.expect(202);
    api.wait_available(&p, &own_id).await;
    for id in [&own_id, &new_vid] {
        api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
        api.wait_volume_gone(&p, id).await;
        assert!(!srv.volume_path(id).exists());
    }
    // What is left in import/ is the snapshot unmanaged last, and nothing else.
    let left: Vec<String> = std::fs::read_dir(&import)
        .expect("import")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(left, vec![format!("snapshot-{new_sid}")]);
}

async fn manage_refuses_unsafe_references(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let import = srv.pool.join("import");
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let vid = s(&v, "id");
    let shown = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    let host = s(&shown, "os-vol-host-attr:host");
    // Host files reachable by a symlink or a hard link, an empty file, a directory.
    let outside = tempfile::tempdir().expect("tmp");
    let secret = outside.path().join("secret");
    std::fs::write(&secret, b"host secret").expect("secret");
    std::os::unix::fs::symlink(&secret, import.join("link")).expect("symlink");
    std::fs::hard_link(&secret, import.join("hard")).expect("hard link");
    std::fs::write(import.join("empty"), b"").expect("empty");
    std::fs::create_dir(import.join("dir")).expect("dir");
    std::fs::write(import.join("good"), vec![1u8; 4096]).expect("good");
    let before = srv.db_volumes().await;
    let files_before = srv.pool_files();
    for (what, name) in [
        ("parent", json!("../volumes/x")),
        ("absolute", json!("/etc/passwd")),
        ("hidden", json!(".good")),
        ("missing", json!("nothing-here")),
        ("symlink", json!("link")),
        ("hard link", json!("hard")),
        ("empty", json!("empty")),
        ("directory", json!("dir")),
        ("not a string", json!(5)),
        ("empty name", json!("")),
    ] {
        let body = json!({"volume": {"host": host, "ref": {"source-name": name}}});
        let r = api.post(&format!("/v3/{p}/os-volume-manage"), body).await;
        assert_eq!(r.status, 400, "{what}: {}", r.text);
        assert!(r.body["badRequest"]["message"].is_string(), "{what}: {}", r.text);
        let body = json!({"snapshot": {"volume_id": vid, "ref": {"source-name": name}}});
        let r = api.post(&format!("/v3/{p}/os-snapshot-manage"), body).await;
        assert_eq!(r.status, 400, "snapshot {what}: {}", r.text);
    }
    for (what, body) in [
        ("unknown host", json!({"volume": {"host": "nowhere@x#x", "ref": {"source-name": "good"}}})),
        ("no ref", json!({"volume": {"host": host}})),
        ("source-id", json!({"volume": {"host": host, "ref": {"source-id": "good"}}})),
        ("no host", json!({"volume": {"ref": {"source-name": "good"}}})),
        ("extra key", json!({"volume": {"host": host, "ref": {"source-name": "good"}, "bogus": 1}})),
        ("unknown type", json!({"volume": {"host": host, "ref": {"source-name": "good"}, "volume_type": "nope"}})),
    ] {
        let r = api.post(&format!("/v3/{p}/os-volume-manage"), body).await;
        assert!(r.status == 400 || r.status == 404, "{what}: {}", r.text);
    }
    let body = json!({"snapshot": {"volume_id": uuid::Uuid::new_v4().to_string(), "ref": {"source-name": "good"}}});
    api.post(&format!("/v3/{p}/os-snapshot-manage"), body).await.expect(404);
    // Nothing changed: no rows, no pool files, every import file where it was, the host file intact.
    assert_eq!(srv.db_volumes().await, before);
    assert_eq!(srv.pool_files(), files_before);
    for name in ["link", "hard", "empty", "dir", "good"] {
        assert!(std::fs::symlink_metadata(import.join(name)).is_ok(), "{name} is still in import/");
    }
    assert_eq!(std::fs::read(&secret).expect("secret"), b"host secret");
    // The manageable list says which are unsafe, and why.
    let r = api.get_h(&format!("/v3/{p}/manageable_volumes/detail?host={}", enc(&host)), &V38).await.expect(200);
    let items = r.body["manageable-volumes"].as_array().expect("list").clone();
    let by_name = |n: &str| items.iter().find(|m| m["reference"]["source-name"] == n).cloned().expect(n);
    assert_eq!(by_name("good")["safe_to_manage"], true);
    for n in ["link", "hard", "empty", "dir"] {
        assert_eq!(by_name(n)["safe_to_manage"], false, "{n}");
        assert!(by_name(n)["reason_not_safe"].is_string(), "{n}");
    }
}

async fn manage_survives_kill9(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let vid = s(&v, "id");
    let host = s(&api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"], "os-vol-host-attr:host");
    let import = srv.pool.join("import");
    std::fs::write(import.join("a.raw"), b"adopt me after a crash").expect("write");
    for step in ["before_storage", "after_storage"] {
        // The daemon dies at the step; the next start finishes the move.
        srv.restart_with(|o| {
            o.env = vec![("CINDERBLOCK_JOBS__CRASH_AT".into(), format!("createVolume:{step}"))];
        });
        let url = format!("{}/v3/{p}/os-volume-manage", api.base());
        let body = json!({"volume": {"host": host, "name": format!("crash-{step}"), "ref": {"source-name": "a.raw"}}});
        let _ = reqwest::Client::new().post(&url).json(&body).send().await;
        let deadline = Instant::now() + DEADLINE;
        while srv.is_running() {
            assert!(Instant::now() < deadline, "{step}: never crashed\n{}", srv.log_tail(20));
            tokio::time::sleep(POLL).await;
        }
        srv.restart_with(|o| o.env = Vec::new());
        let list = api.volumes(&format!("/v3/{p}/volumes/detail?name=crash-{step}")).await;
        assert_eq!(list.len(), 1, "{step}: {list:?}");
        let id = s(&list[0], "id");
        api.wait_available(&p, &id).await;
        assert_eq!(read_at(&srv.volume_path(&id), 0, 22), b"adopt me after a crash");
        assert!(!import.join("a.raw").exists());
        // Unmanage it again, crashing after its storage step this time.
        srv.restart_with(|o| {
            o.env = vec![("CINDERBLOCK_JOBS__CRASH_AT".into(), format!("deleteVolume:{step}"))];
        });
        let url = format!("{}/v3/{p}/volumes/{id}/action", api.base());
        let _ = reqwest::Client::new().post(&url).json(&json!({"os-unmanage": {}})).send().await;
        let deadline = Instant::now() + DEADLINE;
        while srv.is_running() {
            assert!(Instant::now() < deadline, "{step}: unmanage never crashed\n{}", srv.log_tail(20));
            tokio::time::sleep(POLL).await;
        }
        srv.restart_with(|o| o.env = Vec::new());
        api.wait_volume_gone(&p, &id).await;
        let back = import.join(format!("volume-{id}"));
        assert_eq!(read_at(&back, 0, 22), b"adopt me after a crash", "{step}: the data survives");
        std::fs::rename(&back, import.join("a.raw")).expect("rename for the next round");
    }
}
