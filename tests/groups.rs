//! Generic volume groups (Cinder 3.11–3.20): group types and specs, groups with members added
//! and removed, groups from a source, group snapshots, reset status, bad input (400, nothing
//! changes), tenancy (another project gets 404) and kill -9 during a group snapshot. Each test
//! runs on SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use common::{project, s, unique, Api, Backend, Opts, Resp, TestServer};

backend_tests!(
    group_types_and_specs,
    groups_create_update_and_delete,
    group_snapshots_and_groups_from_source,
    other_projects_and_roles,
    kill9_during_group_snapshot_settles,
    groups_quota_is_enforced,
);

/// `OpenStack-API-Version` for every call of these tests.
const LATEST: u32 = 71;

async fn call(api: &Api, m: Method, path: &str, minor: u32, body: Option<Value>, token: Option<&str>) -> Resp {
    let v = format!("volume 3.{minor}");
    let mut h = vec![("OpenStack-API-Version", v.as_str())];
    if let Some(t) = token {
        h.push(("X-Auth-Token", t));
    }
    api.request(m, path, &h, body.map(|b| b.to_string())).await
}

async fn get(api: &Api, path: &str) -> Resp {
    call(api, Method::GET, path, LATEST, None, None).await
}
async fn post(api: &Api, path: &str, body: Value) -> Resp {
    call(api, Method::POST, path, LATEST, Some(body), None).await
}
async fn put(api: &Api, path: &str, body: Value) -> Resp {
    call(api, Method::PUT, path, LATEST, Some(body), None).await
}

/// Poll `path` until `field` of `key` is `want` (panics on a deadline, or on an `error*`
/// status that is not wanted).
async fn wait_status(api: &Api, path: &str, key: &str, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = get(api, path).await.expect(200);
        let st = r.body[key]["status"].as_str().unwrap_or_default().to_string();
        if st == want {
            return r.body[key].clone();
        }
        assert!(want.starts_with("error") || !st.starts_with("error"), "{path} went to {st}: {}", r.text);
        assert!(Instant::now() < deadline, "{path} still {st}, never {want}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_gone(api: &Api, path: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while get(api, path).await.status != 404 {
        assert!(Instant::now() < deadline, "{path} never went away");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn group_type(api: &Api, p: &str) -> String {
    let r = post(api, &format!("/v3/{p}/group_types"), json!({"group_type": {"name": unique("gt")}})).await.expect(202);
    s(&r.body["group_type"], "id")
}

async fn volume_type_id(api: &Api, p: &str, name: &str) -> String {
    s(&get(api, &format!("/v3/{p}/types/{name}")).await.expect(200).body["volume_type"], "id")
}

/// A group of type SSD, available.
async fn group(api: &Api, p: &str, gt: &str) -> String {
    let r = post(
        api,
        &format!("/v3/{p}/groups"),
        json!({"group": {"name": unique("g"), "group_type": gt, "volume_types": ["SSD"]}}),
    )
    .await
    .expect(202);
    let id = s(&r.body["group"], "id");
    wait_status(api, &format!("/v3/{p}/groups/{id}"), "group", "available").await;
    id
}

/// A 1 GiB SSD volume in `group`, available.
async fn member(api: &Api, p: &str, group: &str) -> String {
    let r =
        post(api, &format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "volume_type": "SSD", "group_id": group}}))
            .await
            .expect(202);
    assert_eq!(r.body["volume"]["group_id"], group);
    let id = s(&r.body["volume"], "id");
    api.wait_available(p, &id).await;
    id
}

async fn members(api: &Api, p: &str, group: &str) -> Vec<String> {
    let r = get(api, &format!("/v3/{p}/volumes/detail")).await.expect(200);
    let mut ids: Vec<String> = r.body["volumes"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .filter(|v| v["group_id"] == group)
        .map(|v| s(v, "id"))
        .collect();
    ids.sort();
    ids
}

async fn group_types_and_specs(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let base = format!("/v3/{p}/group_types");
    // Group types need 3.11.
    call(&api, Method::GET, &base, 10, None, None).await.expect_fault(404, "itemNotFound");
    let name = unique("gt");
    let r = post(
        &api,
        &base,
        json!({"group_type": {"name": name, "description": "d", "is_public": false, "group_specs": {"a": "1"}}}),
    )
    .await
    .expect(202);
    let t = r.body["group_type"].clone();
    assert_eq!(t["name"], name.as_str());
    assert_eq!(t["is_public"], false);
    assert_eq!(t["group_specs"], json!({"a": "1"}));
    let id = s(&t, "id");
    // Bad input is 400 and creates nothing; a taken name is 409.
    let before = get(&api, &format!("{base}?is_public=None")).await.expect(200).body["group_types"].clone();
    for bad in [
        json!({"group_type": {}}),
        json!({"group_type": {"name": ""}}),
        json!({"group_type": {"name": "x", "bogus": 1}}),
        json!({"group_type": {"name": "x", "group_specs": {"k": 1}}}),
        json!({"group_type": {"name": "x", "is_public": "maybe"}}),
    ] {
        post(&api, &base, bad).await.expect_fault(400, "badRequest");
    }
    post(&api, &base, json!({"group_type": {"name": name}})).await.expect_fault(409, "conflictingRequest");
    assert_eq!(get(&api, &format!("{base}?is_public=None")).await.expect(200).body["group_types"], before);
    // is_public filters (admins only); the default lists public types.
    let ids = |v: &Value| -> Vec<String> { v["group_types"].as_array().unwrap().iter().map(|t| s(t, "id")).collect() };
    assert!(!ids(&get(&api, &base).await.expect(200).body).contains(&id));
    assert!(ids(&get(&api, &format!("{base}?is_public=false")).await.expect(200).body).contains(&id));
    // Update.
    let r = put(&api, &format!("{base}/{id}"), json!({"group_type": {"description": "new"}})).await.expect(200);
    assert_eq!(r.body["group_type"]["description"], "new");
    put(&api, &format!("{base}/{id}"), json!({"group_type": {}})).await.expect_fault(400, "badRequest");
    // Specs.
    let specs = format!("{base}/{id}/group_specs");
    let r = post(&api, &specs, json!({"group_specs": {"b": "2", "a": "3"}})).await.expect(202);
    assert_eq!(r.body, json!({"group_specs": {"b": "2", "a": "3"}}));
    assert_eq!(get(&api, &specs).await.expect(200).body, json!({"group_specs": {"a": "3", "b": "2"}}));
    assert_eq!(get(&api, &format!("{specs}/b")).await.expect(200).body, json!({"b": "2"}));
    put(&api, &format!("{specs}/b"), json!({"c": "x"})).await.expect_fault(400, "badRequest");
    put(&api, &format!("{specs}/b"), json!({"b": "x", "c": "y"})).await.expect_fault(400, "badRequest");
    assert_eq!(put(&api, &format!("{specs}/b"), json!({"b": "4"})).await.expect(200).body, json!({"b": "4"}));
    call(&api, Method::DELETE, &format!("{specs}/b"), LATEST, None, None).await.expect(202);
    get(&api, &format!("{specs}/b")).await.expect_fault(404, "itemNotFound");
    call(&api, Method::DELETE, &format!("{specs}/b"), LATEST, None, None).await.expect_fault(404, "itemNotFound");
    assert_eq!(get(&api, &specs).await.expect(200).body, json!({"group_specs": {"a": "3"}}));
    // A type in use cannot go; `default` is the type named "default" when there is one.
    get(&api, &format!("{base}/default")).await.expect_fault(404, "itemNotFound");
    post(&api, &base, json!({"group_type": {"name": "default"}})).await.expect(202);
    assert_eq!(get(&api, &format!("{base}/default")).await.expect(200).body["group_type"]["name"], "default");
    let g = group(&api, &p, &id).await;
    call(&api, Method::DELETE, &format!("{base}/{id}"), LATEST, None, None).await.expect_fault(400, "badRequest");
    post(&api, &format!("/v3/{p}/groups/{g}/action"), json!({"delete": {"delete-volumes": false}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/groups/{g}")).await;
    call(&api, Method::DELETE, &format!("{base}/{id}"), LATEST, None, None).await.expect(202);
    get(&api, &format!("{base}/{id}")).await.expect_fault(404, "itemNotFound");
}

async fn groups_create_update_and_delete(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let gt = group_type(&api, &p).await;
    let ssd = volume_type_id(&api, &p, "SSD").await;
    // Bad creates: 400 (404 for unknown types), and no group appears.
    for (bad, code) in [
        (json!({"group": {"group_type": gt}}), 400),
        (json!({"group": {"group_type": gt, "volume_types": []}}), 400),
        (json!({"group": {"volume_types": ["SSD"]}}), 400),
        (json!({"group": {"group_type": gt, "volume_types": ["SSD"], "extra": 1}}), 400),
        (json!({"group": {"group_type": gt, "volume_types": ["SSD"], "availability_zone": "nowhere"}}), 400),
        (json!({"group": {"group_type": gt, "volume_types": ["no-such-type"]}}), 404),
        (json!({"group": {"group_type": uuid::Uuid::new_v4().to_string(), "volume_types": ["SSD"]}}), 404),
    ] {
        let r = post(&api, &format!("/v3/{p}/groups"), bad).await;
        assert_eq!(r.status, code, "{}", r.text);
    }
    assert_eq!(get(&api, &format!("/v3/{p}/groups")).await.expect(200).body, json!({"groups": []}));
    // Groups need 3.13.
    call(&api, Method::GET, &format!("/v3/{p}/groups"), 12, None, None).await.expect_fault(404, "itemNotFound");

    let g = group(&api, &p, &gt).await;
    let shown = get(&api, &format!("/v3/{p}/groups/{g}")).await.expect(200).body["group"].clone();
    assert_eq!(shown["group_type"], gt.as_str());
    assert_eq!(shown["volume_types"], json!([ssd]));
    assert_eq!(shown["group_snapshot_id"], Value::Null);
    let v1 = member(&api, &p, &g).await;
    let v2 = member(&api, &p, &g).await;
    // A volume of a type the group does not have cannot join it.
    post(&api, &format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "volume_type": "SAS", "group_id": g}}))
        .await
        .expect_fault(400, "badRequest");
    // group_id shows from 3.13 only.
    let at12 = call(&api, Method::GET, &format!("/v3/{p}/volumes/{v1}"), 12, None, None).await.expect(200);
    assert!(at12.body["volume"].get("group_id").is_none());
    let mut both = vec![v1.clone(), v2.clone()];
    both.sort();
    assert_eq!(members(&api, &p, &g).await, both);
    // The volume list filters by group_id from 3.10 (and ignores it before).
    let filtered = format!("/v3/{p}/volumes?group_id={g}");
    assert_eq!(get(&api, &filtered).await.expect(200).body["volumes"].as_array().map(Vec::len), Some(2));
    let r = call(&api, Method::GET, &filtered, 9, None, None).await.expect(200);
    assert_eq!(r.body["volumes"].as_array().map(Vec::len), Some(2));
    let other = format!("/v3/{p}/volumes?group_id={}", uuid::Uuid::new_v4());
    assert_eq!(get(&api, &other).await.expect(200).body["volumes"], json!([]));
    assert_eq!(
        call(&api, Method::GET, &other, 9, None, None).await.expect(200).body["volumes"].as_array().map(Vec::len),
        Some(2)
    );
    // Group lists filter, sort and page as Cinder's.
    let g_other = group(&api, &p, &gt).await;
    let ids = |r: Resp| -> Vec<String> { r.body["groups"].as_array().unwrap().iter().map(|x| s(x, "id")).collect() };
    let all = ids(get(&api, &format!("/v3/{p}/groups?sort=created_at:asc")).await.expect(200));
    assert_eq!(all, vec![g.clone(), g_other.clone()]);
    let r = get(&api, &format!("/v3/{p}/groups?sort=created_at:asc&limit=1&marker={g}")).await.expect(200);
    assert_eq!(ids(r), vec![g_other.clone()]);
    let name = s(&shown, "name");
    assert_eq!(ids(get(&api, &format!("/v3/{p}/groups?name={name}")).await.expect(200)), vec![g.clone()]);
    get(&api, &format!("/v3/{p}/groups?sort=bogus:asc")).await.expect_fault(400, "badRequest");
    get(&api, &format!("/v3/{p}/groups?marker={}", uuid::Uuid::new_v4())).await.expect_fault(404, "itemNotFound");
    post(&api, &format!("/v3/{p}/groups/{g_other}/action"), json!({"delete": {"delete-volumes": false}}))
        .await
        .expect(202);
    wait_gone(&api, &format!("/v3/{p}/groups/{g_other}")).await;
    let r = get(&api, &format!("/v3/{p}/groups/{g}?list_volume=true")).await.expect(200);
    assert_eq!(r.body["group"]["volumes"].as_array().map(Vec::len), Some(2));

    // Bad updates are 400 and change nothing.
    let outsider = api.cinder_create_available(&p, json!({"size": 1, "volume_type": "SAS"})).await;
    let outsider = s(&outsider, "id");
    for bad in [
        json!({"group": {}}),
        json!({"group": {"remove_volumes": uuid::Uuid::new_v4().to_string()}}),
        json!({"group": {"add_volumes": uuid::Uuid::new_v4().to_string()}}),
        json!({"group": {"add_volumes": outsider}}),
        json!({"group": {"add_volumes": v1, "remove_volumes": v1}}),
        json!({"group": {"name": "renamed", "remove_volumes": format!("{v2},{}", uuid::Uuid::new_v4())}}),
    ] {
        put(&api, &format!("/v3/{p}/groups/{g}"), bad).await.expect_fault(400, "badRequest");
    }
    assert_eq!(members(&api, &p, &g).await, both);
    assert_eq!(get(&api, &format!("/v3/{p}/groups/{g}")).await.expect(200).body["group"]["name"], shown["name"]);

    put(
        &api,
        &format!("/v3/{p}/groups/{g}"),
        json!({"group": {"name": "renamed", "description": "d", "remove_volumes": v2}}),
    )
    .await
    .expect(202);
    let now = wait_status(&api, &format!("/v3/{p}/groups/{g}"), "group", "available").await;
    assert_eq!((now["name"].clone(), now["description"].clone()), (json!("renamed"), json!("d")));
    assert_eq!(members(&api, &p, &g).await, vec![v1.clone()]);
    put(&api, &format!("/v3/{p}/groups/{g}"), json!({"group": {"add_volumes": format!(",{v2},")}})).await.expect(202);
    assert_eq!(members(&api, &p, &g).await, both);

    // reset_status: admin, 3.20; any group status, nothing else.
    let action = format!("/v3/{p}/groups/{g}/action");
    call(&api, Method::POST, &action, 19, Some(json!({"reset_status": {"status": "error"}})), None)
        .await
        .expect_fault(404, "itemNotFound");
    post(&api, &action, json!({"reset_status": {"status": "bogus"}})).await.expect_fault(400, "badRequest");
    for st in ["creating", "error", "available"] {
        post(&api, &action, json!({"reset_status": {"status": st}})).await.expect(202);
        wait_status(&api, &format!("/v3/{p}/groups/{g}"), "group", st).await;
    }
    // A member cannot be deleted on its own (Cinder: it must not belong to a group).
    call(&api, Method::DELETE, &format!("/v3/{p}/volumes/{v1}"), LATEST, None, None)
        .await
        .expect_fault(400, "badRequest");
    api.wait_available(&p, &v1).await;
    // A group with volumes needs delete-volumes; then its volumes go with it.
    post(&api, &action, json!({"delete": {}})).await.expect_fault(400, "badRequest");
    post(&api, &action, json!({"delete": {"delete-volumes": true}})).await.expect(202);
    for v in &both {
        api.wait_volume_gone(&p, v).await;
    }
    wait_gone(&api, &format!("/v3/{p}/groups/{g}")).await;
    api.wait_available(&p, &outsider).await;
}

async fn group_snapshots_and_groups_from_source(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let gt = group_type(&api, &p).await;
    let g = group(&api, &p, &gt).await;
    let v1 = member(&api, &p, &g).await;
    let v2 = member(&api, &p, &g).await;
    let base = format!("/v3/{p}/group_snapshots");
    // Bad input: 400/404, and no group snapshot appears.
    post(&api, &base, json!({"group_snapshot": {}})).await.expect_fault(400, "badRequest");
    post(&api, &base, json!({"group_snapshot": {"group_id": g, "x": 1}})).await.expect_fault(400, "badRequest");
    post(&api, &base, json!({"group_snapshot": {"group_id": uuid::Uuid::new_v4().to_string()}}))
        .await
        .expect_fault(404, "itemNotFound");
    call(&api, Method::GET, &base, 13, None, None).await.expect_fault(404, "itemNotFound");
    assert_eq!(get(&api, &base).await.expect(200).body, json!({"group_snapshots": []}));

    let r = post(&api, &base, json!({"group_snapshot": {"group_id": g, "name": "gs"}})).await.expect(202);
    assert_eq!(r.body["group_snapshot"]["group_type_id"], gt.as_str());
    let gs = s(&r.body["group_snapshot"], "id");
    let shown = wait_status(&api, &format!("{base}/{gs}"), "group_snapshot", "available").await;
    assert_eq!(shown["group_id"], g.as_str());
    // One member snapshot per volume, each available and naming the group snapshot.
    let snaps = get(&api, &format!("/v3/{p}/snapshots/detail")).await.expect(200).body["snapshots"].clone();
    let snaps: Vec<&Value> =
        snaps.as_array().unwrap().iter().filter(|x| x["group_snapshot_id"] == gs.as_str()).collect();
    let mut vols: Vec<String> = snaps.iter().map(|x| s(x, "volume_id")).collect();
    vols.sort();
    let mut want = vec![v1.clone(), v2.clone()];
    want.sort();
    assert_eq!(vols, want);
    assert!(snaps.iter().all(|x| x["status"] == "available"));
    // A member goes only with its group snapshot; the group cannot go while it has one.
    call(&api, Method::DELETE, &format!("/v3/{p}/snapshots/{}", s(snaps[0], "id")), LATEST, None, None)
        .await
        .expect_fault(400, "badRequest");
    post(&api, &format!("/v3/{p}/groups/{g}/action"), json!({"delete": {"delete-volumes": true}}))
        .await
        .expect_fault(400, "badRequest");
    // Summary list: id and name; detail adds the rest.
    let list = get(&api, &base).await.expect(200).body;
    assert_eq!(list["group_snapshots"][0], json!({"id": gs, "name": "gs"}));

    // From the group snapshot and from the source group: one new volume per member.
    let from = format!("/v3/{p}/groups/action");
    post(&api, &from, json!({"create-from-src": {"name": "x"}})).await.expect_fault(400, "badRequest");
    post(&api, &from, json!({"create-from-src": {"group_snapshot_id": gs, "source_group_id": g}}))
        .await
        .expect_fault(400, "badRequest");
    call(&api, Method::POST, &from, 13, Some(json!({"create-from-src": {"source_group_id": g}})), None)
        .await
        .expect(404);
    for src in [json!({"group_snapshot_id": gs}), json!({"source_group_id": g})] {
        let mut body = src.clone();
        body["name"] = json!("copy");
        let r = post(&api, &from, json!({"create-from-src": body})).await.expect(202);
        assert_eq!(r.body["group"]["name"], "copy");
        let g2 = s(&r.body["group"], "id");
        let shown = wait_status(&api, &format!("/v3/{p}/groups/{g2}"), "group", "available").await;
        assert_eq!(shown["group_type"], gt.as_str());
        assert_eq!(shown["group_snapshot_id"], src.get("group_snapshot_id").cloned().unwrap_or(Value::Null));
        assert_eq!(shown["source_group_id"], src.get("source_group_id").cloned().unwrap_or(Value::Null));
        let copies = members(&api, &p, &g2).await;
        assert_eq!(copies.len(), 2);
        for c in &copies {
            api.wait_available(&p, c).await;
        }
        post(&api, &format!("/v3/{p}/groups/{g2}/action"), json!({"delete": {"delete-volumes": true}}))
            .await
            .expect(202);
        wait_gone(&api, &format!("/v3/{p}/groups/{g2}")).await;
    }

    // reset_status: 3.19, known statuses only.
    let action = format!("{base}/{gs}/action");
    call(&api, Method::POST, &action, 18, Some(json!({"reset_status": {"status": "error"}})), None)
        .await
        .expect_fault(404, "itemNotFound");
    post(&api, &action, json!({"reset_status": {"status": "nope"}})).await.expect_fault(400, "badRequest");
    post(&api, &action, json!({"reset_status": {"status": "creating"}})).await.expect(202);
    call(&api, Method::DELETE, &format!("{base}/{gs}"), LATEST, None, None).await.expect_fault(400, "badRequest");
    post(&api, &action, json!({"reset_status": {"status": "error"}})).await.expect(202);
    wait_status(&api, &format!("{base}/{gs}"), "group_snapshot", "error").await;
    // Delete: the members go with it, then the group can go.
    call(&api, Method::DELETE, &format!("{base}/{gs}"), LATEST, None, None).await.expect(202);
    wait_gone(&api, &format!("{base}/{gs}")).await;
    for x in &snaps {
        wait_gone(&api, &format!("/v3/{p}/snapshots/{}", s(x, "id"))).await;
    }
    post(&api, &format!("/v3/{p}/groups/{g}/action"), json!({"delete": {"delete-volumes": true}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/groups/{g}")).await;
    assert!(srv.pool_files().is_empty(), "files left: {:?}", srv.pool_files());
}

const PASSWORD: &str = "correct horse battery staple";

async fn other_projects_and_roles(b: Backend) {
    let env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    let srv = TestServer::start(b, Opts { env, ..Opts::default() });
    let a = srv.cli(&["admin", "project", "create", "proj-a"], None).trim().to_string();
    let bp = srv.cli(&["admin", "project", "create", "proj-b"], None).trim().to_string();
    for (user, project, role) in [
        ("boss", "proj-a", "admin"),
        ("alice", "proj-a", "member"),
        ("rita", "proj-a", "reader"),
        ("bob", "proj-b", "member"),
    ] {
        srv.cli(
            &["admin", "user", "create", user, "--project", project, "--role", role],
            Some(&format!("{PASSWORD}\n")),
        );
    }
    let api = srv.api();
    let boss = common::password_login(&api, "boss", "proj-a", PASSWORD).await;
    let alice = common::password_login(&api, "alice", "proj-a", PASSWORD).await;
    let rita = common::password_login(&api, "rita", "proj-a", PASSWORD).await;
    let bob = common::password_login(&api, "bob", "proj-b", PASSWORD).await;
    let go = |m: Method, path: String, body: Option<Value>, t: String| {
        let api = api.clone();
        async move { call(&api, m, &path, LATEST, body, Some(&t)).await }
    };
    // Group types: admins write, members read public ones (without specs).
    let gt_body = json!({"group_type": {"name": unique("gt"), "group_specs": {"k": "v"}}});
    go(Method::POST, format!("/v3/{a}/group_types"), Some(gt_body.clone()), alice.clone()).await.expect(403);
    let r = go(Method::POST, format!("/v3/{a}/group_types"), Some(gt_body), boss.clone()).await.expect(202);
    let gt = s(&r.body["group_type"], "id");
    let seen = go(Method::GET, format!("/v3/{a}/group_types/{gt}"), None, alice.clone()).await.expect(200);
    assert!(seen.body["group_type"].get("group_specs").is_none(), "{}", seen.text);
    go(Method::GET, format!("/v3/{a}/group_types/{gt}/group_specs"), None, alice.clone()).await.expect(403);
    // Groups: members create; readers only read.
    let body = json!({"group": {"group_type": gt, "volume_types": ["SSD"]}});
    go(Method::POST, format!("/v3/{a}/groups"), Some(body.clone()), rita.clone()).await.expect(403);
    let r = go(Method::POST, format!("/v3/{a}/groups"), Some(body), alice.clone()).await.expect(202);
    let g = s(&r.body["group"], "id");
    go(Method::GET, format!("/v3/{a}/groups/{g}"), None, rita.clone()).await.expect(200);
    let r = go(
        Method::POST,
        format!("/v3/{a}/group_snapshots"),
        Some(json!({"group_snapshot": {"group_id": g}})),
        alice.clone(),
    )
    .await
    .expect(202);
    let gs = s(&r.body["group_snapshot"], "id");
    // reset_status is for admins.
    let reset = json!({"reset_status": {"status": "error"}});
    go(Method::POST, format!("/v3/{a}/groups/{g}/action"), Some(reset.clone()), alice.clone()).await.expect(403);
    go(Method::POST, format!("/v3/{a}/group_snapshots/{gs}/action"), Some(reset.clone()), alice.clone())
        .await
        .expect(403);
    // Another project sees none of it: 404 everywhere, and empty lists.
    for path in [format!("/v3/{bp}/groups/{g}"), format!("/v3/{bp}/group_snapshots/{gs}")] {
        go(Method::GET, path, None, bob.clone()).await.expect_fault(404, "itemNotFound");
    }
    go(Method::PUT, format!("/v3/{bp}/groups/{g}"), Some(json!({"group": {"name": "mine"}})), bob.clone())
        .await
        .expect(404);
    go(Method::POST, format!("/v3/{bp}/groups/{g}/action"), Some(json!({"delete": {}})), bob.clone()).await.expect(404);
    go(Method::DELETE, format!("/v3/{bp}/group_snapshots/{gs}"), None, bob.clone()).await.expect(404);
    go(
        Method::POST,
        format!("/v3/{bp}/group_snapshots"),
        Some(json!({"group_snapshot": {"group_id": g}})),
        bob.clone(),
    )
    .await
    .expect(404);
    go(
        Method::POST,
        format!("/v3/{bp}/volumes"),
        Some(json!({"volume": {"size": 1, "volume_type": "SSD", "group_id": g}})),
        bob.clone(),
    )
    .await
    .expect(404);
    go(
        Method::POST,
        format!("/v3/{bp}/groups/action"),
        Some(json!({"create-from-src": {"source_group_id": g}})),
        bob.clone(),
    )
    .await
    .expect(404);
    let r = go(Method::GET, format!("/v3/{bp}/groups/detail"), None, bob.clone()).await.expect(200);
    assert_eq!(r.body, json!({"groups": []}));
    let r = go(Method::GET, format!("/v3/{bp}/group_snapshots/detail"), None, bob.clone()).await.expect(200);
    assert_eq!(r.body, json!({"group_snapshots": []}));
    // The owner's group is untouched.
    let r = go(Method::GET, format!("/v3/{a}/groups/{g}"), None, alice.clone()).await.expect(200);
    assert_eq!(r.body["group"]["status"], "available");
    // Admins may reset.
    go(Method::POST, format!("/v3/{a}/groups/{g}/action"), Some(reset), boss.clone()).await.expect(202);
}

async fn kill9_during_group_snapshot_settles(b: Backend) {
    // One worker held in the step delay: the member snapshots' jobs are RUNNING/INIT when the
    // daemon dies.
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let gt = group_type(&api, &p).await;
    let g = group(&api, &p, &gt).await;
    let v1 = member(&api, &p, &g).await;
    let v2 = member(&api, &p, &g).await;
    srv.restart_with(|o| {
        o.step_delay_ms = 3000;
        o.workers = 1;
    });
    let r =
        post(&api, &format!("/v3/{p}/group_snapshots"), json!({"group_snapshot": {"group_id": g}})).await.expect(202);
    let gs = s(&r.body["group_snapshot"], "id");
    let path = format!("/v3/{p}/group_snapshots/{gs}");
    assert_eq!(get(&api, &path).await.expect(200).body["group_snapshot"]["status"], "creating");
    srv.kill9();
    srv.restart_with(|o| o.step_delay_ms = 0);
    // The requeued member jobs finish the set: available, never stuck in creating.
    wait_status(&api, &path, "group_snapshot", "available").await;
    let snaps = get(&api, &format!("/v3/{p}/snapshots/detail")).await.expect(200).body["snapshots"].clone();
    let n = snaps.as_array().unwrap().iter().filter(|x| x["group_snapshot_id"] == gs.as_str()).count();
    assert_eq!(n, 2);
    // A group created from that group snapshot when the daemon dies: its volumes' jobs are
    // requeued and the group ends available.
    srv.restart_with(|o| o.step_delay_ms = 3000);
    let r = post(&api, &format!("/v3/{p}/groups/action"), json!({"create-from-src": {"group_snapshot_id": gs}}))
        .await
        .expect(202);
    let g2 = s(&r.body["group"], "id");
    assert_eq!(get(&api, &format!("/v3/{p}/groups/{g2}")).await.expect(200).body["group"]["status"], "creating");
    srv.kill9();
    srv.restart_with(|o| o.step_delay_ms = 0);
    wait_status(&api, &format!("/v3/{p}/groups/{g2}"), "group", "available").await;
    let copies = members(&api, &p, &g2).await;
    assert_eq!(copies.len(), 2);
    for c in &copies {
        api.wait_available(&p, c).await;
    }
    post(&api, &format!("/v3/{p}/groups/{g2}/action"), json!({"delete": {"delete-volumes": true}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/groups/{g2}")).await;
    // And a group snapshot being deleted when the daemon dies goes away after the restart.
    srv.restart_with(|o| o.step_delay_ms = 3000);
    call(&api, Method::DELETE, &path, LATEST, None, None).await.expect(202);
    srv.kill9();
    srv.restart_with(|o| o.step_delay_ms = 0);
    wait_gone(&api, &path).await;
    post(&api, &format!("/v3/{p}/groups/{g}/action"), json!({"delete": {"delete-volumes": true}})).await.expect(202);
    srv.kill9();
    srv.restart();
    wait_gone(&api, &format!("/v3/{p}/groups/{g}")).await;
    for v in [v1, v2] {
        api.wait_volume_gone(&p, &v).await;
    }
}

/// The `groups` quota counts the project's groups and refuses one more (413, nothing made),
/// for a plain create and for a group from a source alike.
async fn groups_quota_is_enforced(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let gt = group_type(&api, &p).await;
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"groups": 1}})).await.expect(200);
    let g = group(&api, &p, &gt).await;
    member(&api, &p, &g).await;
    let u = api.get(&format!("/v3/{p}/os-quota-sets/{p}?usage=True")).await.expect(200);
    assert_eq!(u.body["quota_set"]["groups"]["in_use"], 1, "{}", u.text);
    assert_eq!(u.body["quota_set"]["groups"]["limit"], 1, "{}", u.text);
    let r = post(
        &api,
        &format!("/v3/{p}/groups"),
        json!({"group": {"name": unique("g"), "group_type": gt, "volume_types": ["SSD"]}}),
    )
    .await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert!(r.text.contains("GroupLimitExceeded"), "{}", r.text);
    let r = post(&api, &format!("/v3/{p}/groups/action"), json!({"create-from-src": {"source_group_id": g}})).await;
    assert_eq!(r.status, 413, "{}", r.text);
    let listed = get(&api, &format!("/v3/{p}/groups")).await.expect(200);
    assert_eq!(listed.body["groups"].as_array().map(Vec::len), Some(1), "nothing was made: {}", listed.text);
    // Room again after a delete.
    let vols = get(&api, &format!("/v3/{p}/volumes")).await.expect(200);
    assert_eq!(vols.body["volumes"].as_array().map(Vec::len), Some(1), "no member was cloned: {}", vols.text);
    post(&api, &format!("/v3/{p}/groups/{g}/action"), json!({"delete": {"delete-volumes": true}})).await.expect(202);
    wait_gone(&api, &format!("/v3/{p}/groups/{g}")).await;
    group(&api, &p, &gt).await;
}
