//! QoS specs (Cinder's `qos-specs`, admin-only): CRUD, keys, associations with volume types and
//! the type's `qos_specs_id`, refusals that change nothing, and policy for non-admins. The
//! daemon runs in keystone mode with an admin (`boss`) and a member (`alice`) of one project;
//! each test runs on SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use common::{s, unique, Api, Backend, Opts, Resp, TestServer};

backend_tests!(
    qos_specs_crud_and_keys,
    qos_specs_associate_and_delete_in_use,
    qos_specs_refuse_bad_input_and_non_admins,
    back_end_specs_throttle_nbd_exports,
);

const PASSWORD: &str = "qos test password 1";

/// One user's token.
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
        self.api.request(method, path, &[("X-Auth-Token", &self.token)], body.map(|b| b.to_string())).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.req(Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, None).await
    }
}

/// A keystone daemon with project `qos-p`, its admin `boss` and its member `alice`.
struct Fixture {
    _server: TestServer,
    p: String,
    boss: Client,
    alice: Client,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        let env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
        let server = TestServer::start(backend, Opts { env, ..Opts::default() });
        let p = server.cli(&["admin", "project", "create", "qos-p"], None).trim().to_string();
        for (user, role) in [("boss", "admin"), ("alice", "member")] {
            server.cli(
                &["admin", "user", "create", user, "--project", "qos-p", "--role", role],
                Some(&format!("{PASSWORD}\n")),
            );
        }
        let api = server.api();
        let boss = Client::login(&api, "boss", "qos-p").await;
        let alice = Client::login(&api, "alice", "qos-p").await;
        Fixture { _server: server, p, boss, alice }
    }

    fn url(&self, rest: &str) -> String {
        format!("/v3/{}/qos-specs{rest}", self.p)
    }

    async fn create(&self, body: Value) -> Value {
        let r = self.boss.post(&self.url(""), json!({ "qos_specs": body })).await.expect(200);
        r.body["qos_specs"].clone()
    }

    async fn show(&self, id: &str) -> Value {
        self.boss.get(&self.url(&format!("/{id}"))).await.expect(200).body["qos_specs"].clone()
    }

    async fn associated_type_ids(&self, id: &str) -> Vec<String> {
        let r = self.boss.get(&self.url(&format!("/{id}/associations"))).await.expect(200);
        let mut ids: Vec<String> = r.body["qos_associations"]
            .as_array()
            .expect("qos_associations")
            .iter()
            .map(|a| {
                assert_eq!(a["association_type"], "volume_type", "{a}");
                s(a, "id")
            })
            .collect();
        ids.sort();
        ids
    }

    async fn new_type(&self) -> String {
        let r = self.boss.post(&format!("/v3/{}/types", self.p), json!({"volume_type": {"name": unique("qt")}})).await;
        s(&r.expect(200).body["volume_type"], "id")
    }

    /// The type's `qos_specs_id` as an admin's GET show sees it.
    async fn type_qos(&self, type_id: &str) -> Value {
        let r = self.boss.get(&format!("/v3/{}/types/{type_id}", self.p)).await.expect(200);
        r.body["volume_type"]["qos_specs_id"].clone()
    }
}

async fn qos_specs_crud_and_keys(b: Backend) {
    let f = Fixture::new(b).await;
    let name = unique("gold");
    let q = f.create(json!({"name": name, "consumer": "front-end", "total_iops_sec": "500"})).await;
    let id = s(&q, "id");
    assert_eq!(q, json!({"id": id, "name": name, "consumer": "front-end", "specs": {"total_iops_sec": "500"}}));
    // Show carries links; v2 serves the same record.
    let r = f.boss.get(&f.url(&format!("/{id}"))).await.expect(200);
    assert_eq!(r.body["qos_specs"], q);
    assert!(
        r.body["links"][0]["href"].as_str().is_some_and(|h| h.ends_with(&format!("/qos-specs/{id}"))),
        "{}",
        r.text
    );
    let r = f.boss.get(&format!("/v2/{}/qos-specs/{id}", f.p)).await.expect(200);
    assert_eq!(r.body["qos_specs"], q);
    // Every consumer; none given is back-end, Cinder's default.
    for consumer in ["back-end", "both"] {
        let c = f.create(json!({"name": unique("c"), "consumer": consumer})).await;
        assert_eq!((c["consumer"].clone(), c["specs"].clone()), (json!(consumer), json!({})));
    }
    let d = f.create(json!({"name": unique("d")})).await;
    assert_eq!(d["consumer"], "back-end");
    // The list holds exactly the created bodies.
    let list = f.boss.get(&f.url("")).await.expect(200).body;
    let items = list["qos_specs"].as_array().expect("list");
    assert_eq!(items.len(), 4);
    assert!(items.contains(&q));
    // A name is unique (409), also after trimming.
    f.boss.post(&f.url(""), json!({"qos_specs": {"name": format!(" {name} ")}})).await.expect(409);

    // Set keys: the answer echoes the body; the consumer may change too.
    let r = f.boss.put(&f.url(&format!("/{id}")), json!({"qos_specs": {"read_iops_sec": "100"}})).await.expect(200);
    assert_eq!(r.body, json!({"qos_specs": {"read_iops_sec": "100"}}));
    f.boss
        .put(&f.url(&format!("/{id}")), json!({"qos_specs": {"total_iops_sec": "900", "consumer": "both"}}))
        .await
        .expect(200);
    let shown = f.show(&id).await;
    assert_eq!(shown["specs"], json!({"total_iops_sec": "900", "read_iops_sec": "100"}));
    assert_eq!(shown["consumer"], "both");

    // Delete keys: all or none; an unset key is 404 and deletes nothing.
    f.boss
        .put(&f.url(&format!("/{id}/delete_keys")), json!({"keys": ["read_iops_sec", "nope"]}))
        .await
        .expect_fault(404, "itemNotFound");
    assert_eq!(f.show(&id).await["specs"], json!({"total_iops_sec": "900", "read_iops_sec": "100"}));
    let r = f.boss.put(&f.url(&format!("/{id}/delete_keys")), json!({"keys": ["read_iops_sec"]})).await.expect(202);
    assert_eq!(r.text, "");
    assert_eq!(f.show(&id).await["specs"], json!({"total_iops_sec": "900"}));

    // Delete: 202, then 404 everywhere.
    f.boss.delete(&f.url(&format!("/{id}?force=False"))).await.expect(202);
    f.boss.get(&f.url(&format!("/{id}"))).await.expect_fault(404, "itemNotFound");
    f.boss.delete(&f.url(&format!("/{id}"))).await.expect(404);
    f.boss.put(&f.url(&format!("/{id}")), json!({"qos_specs": {"a": "b"}})).await.expect(404);
    f.boss.get(&f.url(&format!("/{id}/associations"))).await.expect(404);
    let list = f.boss.get(&f.url("")).await.expect(200).body;
    assert_eq!(list["qos_specs"].as_array().map(Vec::len), Some(3));
}

async fn qos_specs_associate_and_delete_in_use(b: Backend) {
    let f = Fixture::new(b).await;
    let q = s(&f.create(json!({"name": unique("q"), "consumer": "front-end"})).await, "id");
    let other = s(&f.create(json!({"name": unique("o")})).await, "id");
    let mut types = vec![f.new_type().await, f.new_type().await, f.new_type().await];
    types.sort();
    assert_eq!(f.type_qos(&types[0]).await, Value::Null);
    for t in &types {
        let r = f.boss.get(&f.url(&format!("/{q}/associate?vol_type_id={t}"))).await.expect(202);
        assert_eq!(r.text, "");
    }
    // Associating again with the same record is fine.
    f.boss.get(&f.url(&format!("/{q}/associate?vol_type_id={}", types[0]))).await.expect(202);
    assert_eq!(f.associated_type_ids(&q).await, types);
    assert_eq!(f.type_qos(&types[0]).await, json!(q));
    // Type lists show it to admins; members never see qos_specs_id.
    let list = f.boss.get(&format!("/v3/{}/types", f.p)).await.expect(200).body;
    let entry = list["volume_types"].as_array().expect("types").iter().find(|t| t["id"] == json!(types[1])).cloned();
    assert_eq!(entry.map(|e| e["qos_specs_id"].clone()), Some(json!(q)));
    let seen = f.alice.get(&format!("/v3/{}/types/{}", f.p, types[1])).await.expect(200).body;
    assert!(seen["volume_type"].get("qos_specs_id").is_none(), "{seen}");

    // A type has one record: another is refused (400) and nothing changes.
    f.boss.get(&f.url(&format!("/{other}/associate?vol_type_id={}", types[0]))).await.expect_fault(400, "badRequest");
    assert_eq!(f.associated_type_ids(&other).await, Vec::<String>::new());
    assert_eq!(f.type_qos(&types[0]).await, json!(q));
    // Unknown type, unknown record, no type id.
    let ghost = uuid::Uuid::new_v4();
    f.boss.get(&f.url(&format!("/{q}/associate?vol_type_id={ghost}"))).await.expect(404);
    f.boss.get(&f.url(&format!("/{ghost}/associate?vol_type_id={}", types[0]))).await.expect(404);
    f.boss.get(&f.url(&format!("/{q}/associate"))).await.expect_fault(400, "badRequest");
    f.boss.get(&f.url(&format!("/{q}/disassociate?vol_type_id={ghost}"))).await.expect(404);

    // In use: delete without force is 400 and changes nothing.
    f.boss.delete(&f.url(&format!("/{q}"))).await.expect_fault(400, "badRequest");
    f.boss.delete(&f.url(&format!("/{q}?force=false"))).await.expect_fault(400, "badRequest");
    f.boss.delete(&f.url(&format!("/{q}?force=maybe"))).await.expect(400);
    assert_eq!(f.associated_type_ids(&q).await, types);

    // Disassociate one, then all.
    f.boss.get(&f.url(&format!("/{q}/disassociate?vol_type_id={}", types[0]))).await.expect(202);
    assert_eq!(f.associated_type_ids(&q).await, types[1..].to_vec());
    assert_eq!(f.type_qos(&types[0]).await, Value::Null);
    f.boss.get(&f.url(&format!("/{q}/disassociate_all"))).await.expect(202);
    assert_eq!(f.associated_type_ids(&q).await, Vec::<String>::new());
    assert_eq!(f.type_qos(&types[1]).await, Value::Null);

    // Force deletes an associated record and its associations.
    f.boss.get(&f.url(&format!("/{q}/associate?vol_type_id={}", types[2]))).await.expect(202);
    f.boss.delete(&f.url(&format!("/{q}?force=True"))).await.expect(202);
    f.boss.get(&f.url(&format!("/{q}"))).await.expect(404);
    assert_eq!(f.type_qos(&types[2]).await, Value::Null);
    // The type may now take another record; deleting the type drops its association.
    f.boss.get(&f.url(&format!("/{other}/associate?vol_type_id={}", types[2]))).await.expect(202);
    f.boss.delete(&format!("/v3/{}/types/{}", f.p, types[2])).await.expect(202);
    assert_eq!(f.associated_type_ids(&other).await, Vec::<String>::new());
    f.boss.delete(&f.url(&format!("/{other}"))).await.expect(202);
}

async fn qos_specs_refuse_bad_input_and_non_admins(b: Backend) {
    let f = Fixture::new(b).await;
    let q = f.create(json!({"name": unique("keep"), "consumer": "back-end", "k": "v"})).await;
    let id = s(&q, "id");
    for bad in [
        json!({"qos_specs": {"name": unique("x"), "consumer": "middle"}}),
        json!({"qos_specs": {"name": "   "}}),
        json!({"qos_specs": {"consumer": "both"}}),
        json!({"qos_specs": {"name": 7}}),
        json!({"qos_specs": {"name": unique("x"), "k": 5}}),
        json!({"qos_specs": {"name": unique("x"), "k": "v".repeat(256)}}),
        json!({"qos_specs": {"name": "x".repeat(256)}}),
        json!({"qos_specs": {"name": unique("x")}, "extra": 1}),
        json!({"nope": {}}),
    ] {
        f.boss.post(&f.url(""), bad.clone()).await.expect_fault(400, "badRequest");
    }
    for bad in [
        json!({"qos_specs": {"consumer": "middle"}}),
        json!({"qos_specs": {"bad key!": "v"}}),
        json!({"qos_specs": {"k": 1}}),
        json!({"qos_specs": {"k": "w"}, "extra": 1}),
        json!({"qos_specs": "k"}),
    ] {
        f.boss.put(&f.url(&format!("/{id}")), bad).await.expect_fault(400, "badRequest");
    }
    for bad in [json!({"keys": "k"}), json!({"keys": ["k", "k"]}), json!({"keys": [""]}), json!({})] {
        f.boss.put(&f.url(&format!("/{id}/delete_keys")), bad).await.expect_fault(400, "badRequest");
    }
    // Nothing changed.
    let list = f.boss.get(&f.url("")).await.expect(200).body;
    assert_eq!(list["qos_specs"], json!([q]));

    // A member of the project is refused everything (403) and changes nothing.
    let t = f.new_type().await;
    let denied = [
        f.alice.get(&f.url("")).await,
        f.alice.post(&f.url(""), json!({"qos_specs": {"name": unique("m")}})).await,
        f.alice.get(&f.url(&format!("/{id}"))).await,
        f.alice.put(&f.url(&format!("/{id}")), json!({"qos_specs": {"k": "w"}})).await,
        f.alice.put(&f.url(&format!("/{id}/delete_keys")), json!({"keys": ["k"]})).await,
        f.alice.get(&f.url(&format!("/{id}/associations"))).await,
        f.alice.get(&f.url(&format!("/{id}/associate?vol_type_id={t}"))).await,
        f.alice.get(&f.url(&format!("/{id}/disassociate?vol_type_id={t}"))).await,
        f.alice.get(&f.url(&format!("/{id}/disassociate_all"))).await,
        f.alice.delete(&f.url(&format!("/{id}?force=true"))).await,
    ];
    for r in denied {
        r.expect_fault(403, "forbidden");
    }
    let list = f.boss.get(&f.url("")).await.expect(200).body;
    assert_eq!(list["qos_specs"], json!([q]));
    assert_eq!(f.type_qos(&t).await, Value::Null);
}

/// Time `qemu-io` takes to read `len` bytes from the start of an NBD export.
fn timed_read(uri: &str, len: &str) -> Duration {
    let t = Instant::now();
    let out = std::process::Command::new("qemu-io")
        .args(["-f", "raw", "-c", &format!("read 0 {len}"), uri])
        .output()
        .expect("run qemu-io (Debian: qemu-utils)");
    assert!(out.status.success(), "qemu-io {uri}: {}", String::from_utf8_lossy(&out.stderr));
    t.elapsed()
}

async fn back_end_specs_throttle_nbd_exports(b: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("nbd.sock");
    let env = vec![("CINDERBLOCK_EXPORTS__NBD_UNIX_SOCKET".to_string(), sock.display().to_string())];
    let srv = TestServer::start(b, Opts { env, ..Opts::default() });
    let api = srv.api();
    let p = common::project();
    // 4 MiB/s with a 4 MiB burst, enforced by our NBD server (consumer back-end).
    let r = api
        .post(
            &format!("/v3/{p}/qos-specs"),
            json!({"qos_specs": {"name": unique("slow"), "consumer": "back-end", "total_bytes_sec": "4194304"}}),
        )
        .await
        .expect(200);
    let q = s(&r.body["qos_specs"], "id");
    let r = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": unique("slow")}})).await.expect(200);
    let t = s(&r.body["volume_type"], "id");
    api.get(&format!("/v3/{p}/qos-specs/{q}/associate?vol_type_id={t}")).await.expect(202);
    let slow = s(&api.cinder_create_available(&p, json!({"size": 1, "volume_type": t})).await, "id");
    let fast = s(&api.cinder_create_available(&p, json!({"size": 1})).await, "id");
    let mut uris = Vec::new();
    for id in [&slow, &fast] {
        let r = api
            .post(
                &format!("/v3/{p}/volumes/{id}/action"),
                json!({"os-initialize_connection": {"connector": {"host": "h1"}}}),
            )
            .await
            .expect(200);
        let data = &r.body["connection_info"]["data"];
        // Back-end specs are ours to apply: none handed to the consumer.
        assert!(data["qos_specs"].is_null(), "{data}");
        uris.push(format!("nbd+unix:///{}?socket={}", s(data, "export_name"), sock.display()));
    }
    // 12 MiB: the burst, then 8 MiB at 4 MiB/s ≈ 2 s; the unlimited volume beside it is not slowed.
    let limited = timed_read(&uris[0], "12M");
    let unlimited = timed_read(&uris[1], "12M");
    assert!(limited >= Duration::from_millis(1500), "the limited export read 12 MiB in {limited:?}");
    assert!(unlimited < Duration::from_millis(1000), "the unlimited export took {unlimited:?}");
    // A change applies to the live export at once: raise the limit, then drop the key.
    api.put(&format!("/v3/{p}/qos-specs/{q}"), json!({"qos_specs": {"total_bytes_sec": "1073741824"}}))
        .await
        .expect(200);
    let raised = timed_read(&uris[0], "12M");
    assert!(raised < Duration::from_millis(1000), "after raising the limit: {raised:?}");
    api.put(&format!("/v3/{p}/qos-specs/{q}"), json!({"qos_specs": {"total_bytes_sec": "2097152"}})).await.expect(200);
    let lowered = timed_read(&uris[0], "6M");
    assert!(lowered >= Duration::from_millis(1500), "after lowering it to 2 MiB/s, 6 MiB took {lowered:?}");
    // Front-end (or both) specs are handed to the consumer in the connection info.
    api.put(&format!("/v3/{p}/qos-specs/{q}"), json!({"qos_specs": {"consumer": "front-end"}})).await.expect(200);
    let r = api
        .post(
            &format!("/v3/{p}/volumes/{slow}/action"),
            json!({"os-initialize_connection": {"connector": {"host": "h2"}}}),
        )
        .await
        .expect(200);
    let data = &r.body["connection_info"]["data"];
    assert_eq!(data["qos_specs"], json!({"total_bytes_sec": "2097152"}), "{data}");
    let uri = format!("nbd+unix:///{}?socket={}", s(data, "export_name"), sock.display());
    let free = timed_read(&uri, "12M");
    assert!(free < Duration::from_millis(1000), "a front-end spec is not ours to enforce: {free:?}");
}
