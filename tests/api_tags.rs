//! EVS tags (reference 6.3, the `os-vendor-tags` family of 9.6) and idempotent EVS create with
//! `X-Client-Token` (issue 3, items 8 and 9). Tag tests share one daemon per backend, each in its
//! own project; the client-token test runs its own daemon so it can count the pool's files.

#[macro_use]
mod common;
mod snapkit;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{enc, project, s, shared, unique, Api, Backend, Opts, TestServer};

backend_tests!(
    disk_tags_create_list_upsert_delete,
    tags_show_in_volume_bodies,
    tag_rules_are_enforced_and_a_bad_request_changes_nothing,
    project_tags_list_keys_and_values,
    filter_and_count_by_tags_and_matches,
    filter_request_errors,
    vendor_tags_on_volumes,
    vendor_tags_on_snapshots_and_backups,
    vendor_resource_instances_query_forms,
    tags_go_away_with_the_volume,
    tags_and_metadata_go_away_with_the_snapshot,
    concurrent_tag_adds_respect_the_limit,
    client_token_makes_create_idempotent,
);

/// Create one disk on EVS, wait for its job, return its id.
async fn disk(api: &Api, p: &str, name: &str) -> String {
    let r =
        api.evs_create(p, json!({"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": name})).await;
    api.wait_job_success(p, &s(&r, "job_id")).await;
    r["volume_ids"][0].as_str().unwrap_or_else(|| panic!("no volume id: {r}")).to_string()
}

/// `POST …/tags/action` with `action` and `tags`.
async fn tags_action(api: &Api, path: &str, action: &str, tags: Value) -> common::Resp {
    api.post(path, json!({"action": action, "tags": tags})).await
}

/// The `{"tags": [...]}` list of a disk as (key, value) pairs.
async fn disk_tags(api: &Api, p: &str, id: &str) -> Vec<(String, String)> {
    let r = api.get(&format!("/v2/{p}/cloudvolumes/{id}/tags")).await.expect(200);
    r.body["tags"]
        .as_array()
        .unwrap_or_else(|| panic!("tags is not a list: {}", r.text))
        .iter()
        .map(|t| (s(t, "key"), s(t, "value")))
        .collect()
}

fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    v.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

async fn disk_tags_create_list_upsert_delete(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "tagged").await;
    let action = format!("/v2/{p}/cloudvolumes/{id}/tags/action");

    assert_eq!(disk_tags(&api, &p, &id).await, vec![], "a new disk has no tags");
    // The SDK's request (captures_evs.txt) carries a CJK key.
    let r = tags_action(
        &api,
        &action,
        "create",
        json!([{"key": "环境", "value": "test"}, {"key": "env", "value": "v1.0"}]),
    )
    .await
    .expect(204);
    assert!(r.text.is_empty(), "204 has no body: {}", r.text);
    assert_eq!(disk_tags(&api, &p, &id).await, pairs(&[("env", "v1.0"), ("环境", "test")]));

    // create overwrites an existing key; an empty value is allowed.
    tags_action(&api, &action, "create", json!([{"key": "env", "value": "prod"}, {"key": "empty", "value": ""}]))
        .await
        .expect(204);
    assert_eq!(disk_tags(&api, &p, &id).await, pairs(&[("empty", ""), ("env", "prod"), ("环境", "test")]));

    // delete: by key; a value that does not match keeps the tag; unknown keys are ignored.
    tags_action(&api, &action, "delete", json!([{"key": "empty"}, {"key": "env", "value": "other"}, {"key": "nope"}]))
        .await
        .expect(204);
    assert_eq!(disk_tags(&api, &p, &id).await, pairs(&[("env", "prod"), ("环境", "test")]));
    tags_action(&api, &action, "delete", json!([{"key": "env", "value": "prod"}])).await.expect(204);
    assert_eq!(disk_tags(&api, &p, &id).await, pairs(&[("环境", "test")]));

    // The os-vendor-volumes aliases and the /v3 prefix reach the same tags.
    tags_action(
        &api,
        &format!("/v2/{p}/os-vendor-volumes/{id}/tags/action"),
        "create",
        json!([{"key": "a", "value": "1"}]),
    )
    .await
    .expect(204);
    tags_action(&api, &format!("/v3/{p}/cloudvolumes/{id}/tags/action"), "create", json!([{"key": "b", "value": "2"}]))
        .await
        .expect(204);
    let want =
        json!({"tags": [{"key": "a", "value": "1"}, {"key": "b", "value": "2"}, {"key": "环境", "value": "test"}]});
    for path in [format!("/v2/{p}/os-vendor-volumes/{id}/tags"), format!("/v3/{p}/cloudvolumes/{id}/tags")] {
        assert_eq!(api.get(&path).await.expect(200).body, want, "{path}");
    }
}

async fn tags_show_in_volume_bodies(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "body").await;
    let other = disk(&api, &p, "body-untagged").await;
    tags_action(
        &api,
        &format!("/v2/{p}/cloudvolumes/{id}/tags/action"),
        "create",
        json!([{"key": "k1", "value": "v1"}, {"key": "k2", "value": ""}]),
    )
    .await
    .expect(204);
    let want = json!({"k1": "v1", "k2": ""});
    for path in [format!("/v2/{p}/cloudvolumes/{id}"), format!("/v2/{p}/os-vendor-volumes/{id}")] {
        let v = api.get(&path).await.expect(200).body["volume"].clone();
        assert_eq!(v["tags"], want, "{path}: {v}");
    }
    for path in [format!("/v2/{p}/cloudvolumes/detail"), format!("/v2/{p}/os-vendor-volumes/detail")] {
        let vols = api.volumes(&path).await;
        let tagged = vols.iter().find(|v| v["id"] == id.as_str()).expect("tagged disk listed");
        assert_eq!(tagged["tags"], want, "{path}");
        let plain = vols.iter().find(|v| v["id"] == other.as_str()).expect("other disk listed");
        assert_eq!(plain["tags"], json!({}), "{path}");
    }
}

async fn tag_rules_are_enforced_and_a_bad_request_changes_nothing(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "rules").await;
    let action = format!("/v2/{p}/cloudvolumes/{id}/tags/action");
    let ten: Vec<Value> = (0..10).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    let before: Vec<(String, String)> = (0..10).map(|i| (format!("k{i}"), "v".to_string())).collect();

    // 11 tags in one request on an empty disk: refused, nothing written.
    let mut eleven = ten.clone();
    eleven.push(json!({"key": "k10", "value": "v"}));
    tags_action(&api, &action, "create", Value::Array(eleven)).await.expect_evs_error(400, "EVS.5400");
    assert_eq!(disk_tags(&api, &p, &id).await, vec![]);

    tags_action(&api, &action, "create", Value::Array(ten)).await.expect(204);
    let mut sorted = before.clone();
    sorted.sort();
    assert_eq!(disk_tags(&api, &p, &id).await, sorted);
    // The 11th tag is refused; overwriting one of the 10 is fine (the limit counts after the upsert).
    let r = tags_action(&api, &action, "create", json!([{"key": "k10", "value": "v"}])).await;
    let r = r.expect_evs_error(400, "EVS.5400");
    assert!(r.text.contains("10"), "the message names the limit: {}", r.text);
    tags_action(&api, &action, "create", json!([{"key": "k0", "value": "w"}])).await.expect(204);
    tags_action(&api, &action, "create", json!([{"key": "k0", "value": "v"}])).await.expect(204);
    assert_eq!(disk_tags(&api, &p, &id).await, sorted);

    // Each broken rule is a 400 EVS.5400 with a message, and a request holding one bad tag
    // among good ones changes nothing.
    let long_key = "k".repeat(37);
    let long_value = "v".repeat(44);
    let bad_bodies = [
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "bad key", "value": "v"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "a.b", "value": "v"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": long_key, "value": "v"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "k1", "value": long_value}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "k1", "value": "a/b"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "", "value": "v"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "k0", "value": "y"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": "x"}, {"key": "k1"}]}),
        json!({"action": "create", "tags": [{"key": "k0", "value": 5}]}),
        json!({"action": "update", "tags": [{"key": "k0", "value": "x"}]}),
        json!({"action": "create"}),
        json!({"tags": [{"key": "k0", "value": "x"}]}),
        json!({"action": "delete", "tags": [{"key": "k0"}, {"key": "bad key"}]}),
        json!({"action": "delete", "tags": [{"key": "k0", "value": "a=b"}]}),
    ];
    for body in bad_bodies {
        let r = api.post(&action, body.clone()).await;
        assert_eq!(r.status, 400, "{body} answered {}: {}", r.status, r.text);
        r.expect_evs_error(400, "EVS.5400");
    }
    api.post_raw(&action, "{not json").await.expect_evs_error(400, "EVS.5400");
    assert_eq!(disk_tags(&api, &p, &id).await, sorted, "refused requests changed nothing");

    // Edge lengths are accepted: a 36-character key and a 43-character value.
    tags_action(&api, &action, "delete", json!([{"key": "k9"}])).await.expect(204);
    tags_action(&api, &action, "create", json!([{"key": "k".repeat(36), "value": "v".repeat(43)}])).await.expect(204);
    assert_eq!(disk_tags(&api, &p, &id).await.len(), 10);

    // Unknown disks are 404 EVS.5404 on every route.
    for missing in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".to_string()] {
        api.get(&format!("/v2/{p}/cloudvolumes/{missing}/tags")).await.expect_evs_error(404, "EVS.5404");
        tags_action(
            &api,
            &format!("/v2/{p}/cloudvolumes/{missing}/tags/action"),
            "create",
            json!([{"key": "a", "value": "b"}]),
        )
        .await
        .expect_evs_error(404, "EVS.5404");
        api.get(&format!("/v2/{p}/os-vendor-tags/volumes/{missing}")).await.expect_evs_error(404, "EVS.5404");
    }
    // The keys listing is per project.
    let q = project();
    let tags = api.get(&format!("/v2/{q}/cloudvolumes/tags")).await.expect(200);
    assert_eq!(tags.body, json!({"tags": {}}), "another project sees no keys");
}

async fn project_tags_list_keys_and_values(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    assert_eq!(api.get(&format!("/v2/{p}/cloudvolumes/tags")).await.expect(200).body, json!({"tags": {}}));
    let a = disk(&api, &p, "keys-a").await;
    let b2 = disk(&api, &p, "keys-b").await;
    tags_action(
        &api,
        &format!("/v2/{p}/cloudvolumes/{a}/tags/action"),
        "create",
        json!([{"key": "env", "value": "prod"}, {"key": "team", "value": "x"}]),
    )
    .await
    .expect(204);
    tags_action(
        &api,
        &format!("/v2/{p}/cloudvolumes/{b2}/tags/action"),
        "create",
        json!([{"key": "env", "value": "dev"}, {"key": "team", "value": "x"}]),
    )
    .await
    .expect(204);
    let want = json!({"tags": {"env": ["dev", "prod"], "team": ["x"]}});
    for path in [
        format!("/v2/{p}/cloudvolumes/tags"),
        format!("/v3/{p}/cloudvolumes/tags"),
        format!("/v2/{p}/os-vendor-tags/volumes"),
    ] {
        assert_eq!(api.get(&path).await.expect(200).body, want, "{path}");
    }
    assert_eq!(api.get(&format!("/v2/{p}/os-vendor-tags/snapshots")).await.expect(200).body, json!({"tags": {}}));
    assert_eq!(api.get(&format!("/v2/{p}/os-vendor-tags/backups")).await.expect(200).body, json!({"tags": {}}));
    api.get(&format!("/v2/{p}/os-vendor-tags/servers")).await.expect_evs_error(400, "EVS.5400");
}

/// `POST …/resource_instances/action` on `/v2/{p}/cloudvolumes`.
async fn instances(api: &Api, p: &str, body: Value) -> Value {
    api.post(&format!("/v2/{p}/cloudvolumes/resource_instances/action"), body).await.expect(200).body
}

/// `resource_id`s of a filter answer, in order.
fn resource_ids(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("no resources list: {body}"))
        .iter()
        .map(|r| s(r, "resource_id"))
        .collect()
}

async fn filter_and_count_by_tags_and_matches(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    // Created one after another: the answer lists the newest first.
    let web_a = disk(&api, &p, "Web-A").await;
    let web_b = disk(&api, &p, "web-b").await;
    let db1 = disk(&api, &p, "db-1").await;
    let plain = disk(&api, &p, "web-plain").await;
    for (id, tags) in [
        (&web_a, json!([{"key": "env", "value": "prod"}, {"key": "role", "value": "web"}])),
        (&web_b, json!([{"key": "env", "value": "dev"}, {"key": "role", "value": "web"}])),
        (&db1, json!([{"key": "env", "value": "prod"}, {"key": "role", "value": "db"}, {"key": "tier", "value": ""}])),
    ] {
        tags_action(&api, &format!("/v2/{p}/cloudvolumes/{id}/tags/action"), "create", tags).await.expect(204);
    }

    // One key, one value.
    let r = instances(&api, &p, json!({"action": "filter", "tags": [{"key": "env", "values": ["prod"]}]})).await;
    assert_eq!(resource_ids(&r), vec![db1.clone(), web_a.clone()], "{r}");
    assert_eq!(r["total_count"], 2);
    let first = &r["resources"][0];
    assert_eq!(first["resource_name"], "db-1");
    assert_eq!(first["resource_detail"]["id"], db1.as_str());
    assert_eq!(first["resource_detail"]["name"], "db-1");
    assert_eq!(first["resource_detail"]["tags"], json!({"env": "prod", "role": "db", "tier": ""}));
    assert_eq!(
        first["tags"],
        json!([{"key": "env", "value": "prod"}, {"key": "role", "value": "db"}, {"key": "tier", "value": ""}])
    );
    // Several values of one key: any of them; several keys: all of them.
    let r = instances(&api, &p, json!({"action": "filter", "tags": [{"key": "env", "values": ["prod", "dev"]}]})).await;
    assert_eq!(resource_ids(&r), vec![db1.clone(), web_b.clone(), web_a.clone()]);
    let r = instances(
        &api,
        &p,
        json!({"action": "filter", "tags": [{"key": "env", "values": ["prod"]}, {"key": "role", "values": ["web"]}]}),
    )
    .await;
    assert_eq!(resource_ids(&r), vec![web_a.clone()]);
    // An empty value list matches any value; an empty tag list matches every disk.
    let r = instances(&api, &p, json!({"action": "filter", "tags": [{"key": "tier", "values": []}]})).await;
    assert_eq!(resource_ids(&r), vec![db1.clone()]);
    let r = instances(&api, &p, json!({"action": "filter", "tags": []})).await;
    assert_eq!(resource_ids(&r), vec![plain.clone(), db1.clone(), web_b.clone(), web_a.clone()]);
    let r = instances(&api, &p, json!({"action": "filter", "tags": [{"key": "env", "values": ["staging"]}]})).await;
    assert_eq!(r, json!({"resources": [], "total_count": 0}));

    // matches: resource_name is a fuzzy, case-insensitive match; service_type EVS matches all.
    let r = instances(
        &api,
        &p,
        json!({"action": "filter", "tags": [{"key": "role", "values": ["web"]}], "matches": [{"key": "resource_name", "value": "WEB-"}, {"key": "service_type", "value": "EVS"}]}),
    )
    .await;
    assert_eq!(resource_ids(&r), vec![web_b.clone(), web_a.clone()]);
    let r = instances(
        &api,
        &p,
        json!({"action": "filter", "tags": [], "matches": [{"key": "resource_name", "value": " plain "}]}),
    )
    .await;
    assert_eq!(resource_ids(&r), vec![plain.clone()]);
    let r = instances(
        &api,
        &p,
        json!({"action": "filter", "tags": [], "matches": [{"key": "resource_name", "value": "_"}]}),
    )
    .await;
    assert_eq!(resource_ids(&r), Vec::<String>::new(), "LIKE wildcards are literal");
    let r = instances(
        &api,
        &p,
        json!({"action": "filter", "tags": [], "matches": [{"key": "service_type", "value": "DSS"}]}),
    )
    .await;
    assert_eq!(r["total_count"], 0);

    // limit/offset (numbers or digit strings, as the reference's example sends).
    let r = instances(&api, &p, json!({"action": "filter", "tags": [], "limit": 2})).await;
    assert_eq!(resource_ids(&r), vec![plain.clone(), db1.clone()]);
    assert_eq!(r["total_count"], 4, "total_count ignores paging");
    let r = instances(&api, &p, json!({"action": "filter", "tags": [], "limit": "2", "offset": "2"})).await;
    assert_eq!(resource_ids(&r), vec![web_b.clone(), web_a.clone()]);
    assert_eq!(r["total_count"], 4);
    let r = instances(&api, &p, json!({"action": "filter", "tags": [], "offset": 10})).await;
    assert_eq!(r, json!({"resources": [], "total_count": 4}));

    // count answers total_count only; on the os-vendor-volumes alias and /v3 too.
    let count = json!({"action": "count", "tags": [{"key": "role", "values": ["web"]}], "matches": [{"key": "resource_name", "value": "a"}]});
    assert_eq!(instances(&api, &p, count.clone()).await, json!({"total_count": 1}));
    for path in [
        format!("/v2/{p}/os-vendor-volumes/resource_instances/action"),
        format!("/v3/{p}/cloudvolumes/resource_instances/action"),
    ] {
        assert_eq!(api.post(&path, count.clone()).await.expect(200).body, json!({"total_count": 1}), "{path}");
    }
    assert_eq!(instances(&api, &p, json!({"action": "count"})).await, json!({"total_count": 4}));
    let r = api
        .post(
            &format!("/v2/{p}/os-vendor-volumes/resource_instances/action"),
            json!({"action": "filter", "tags": [{"key": "role", "values": ["db"]}]}),
        )
        .await
        .expect(200);
    assert_eq!(resource_ids(&r.body), vec![db1.clone()]);

    // Another project sees none of these.
    let q = project();
    assert_eq!(instances(&api, &q, json!({"action": "count"})).await, json!({"total_count": 0}));
}

async fn filter_request_errors(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let path = format!("/v2/{p}/cloudvolumes/resource_instances/action");
    let eleven_keys: Vec<Value> = (0..11).map(|i| json!({"key": format!("k{i}"), "values": []})).collect();
    let eleven_values: Vec<String> = (0..11).map(|i| format!("v{i}")).collect();
    for body in [
        json!({"action": "filter", "tags": eleven_keys}),
        json!({"action": "filter", "tags": [{"key": "k", "values": eleven_values}]}),
        json!({"action": "filter", "tags": [{"key": "k", "values": []}, {"key": "k", "values": ["v"]}]}),
        json!({"action": "filter", "tags": [{"key": "k", "values": ["v", "v"]}]}),
        json!({"action": "filter", "tags": [{"key": "bad key", "values": []}]}),
        json!({"action": "filter", "tags": [{"key": "k"}]}),
        json!({"action": "filter"}),
        json!({"action": "list", "tags": []}),
        json!({"tags": []}),
        json!({"action": "filter", "tags": [], "limit": 0}),
        json!({"action": "filter", "tags": [], "limit": 1001}),
        json!({"action": "filter", "tags": [], "limit": "many"}),
        json!({"action": "filter", "tags": [], "offset": -1}),
        json!({"action": "filter", "tags": [], "matches": [{"key": "status", "value": "available"}]}),
        json!({"action": "filter", "tags": [], "matches": [{"key": "resource_name", "value": "a"}, {"key": "resource_name", "value": "b"}]}),
        json!({"action": "filter", "tags": [], "matches": [{"key": "resource_name", "value": "x".repeat(256)}]}),
        json!({"action": "filter", "tags": [], "tags_any": [{"key": "k", "values": []}]}),
    ] {
        let r = api.post(&path, body.clone()).await;
        assert_eq!(r.status, 400, "{body} answered {}: {}", r.status, r.text);
        r.expect_evs_error(400, "EVS.5400");
    }
    // Ten keys of ten values each is the most a filter may hold.
    let ten: Vec<Value> = (0..10)
        .map(|i| json!({"key": format!("k{i}"), "values": (0..10).map(|j| format!("v{j}")).collect::<Vec<_>>()}))
        .collect();
    assert_eq!(instances(&api, &p, json!({"action": "count", "tags": ten})).await, json!({"total_count": 0}));
}

async fn vendor_tags_on_volumes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "vendor").await;
    let base = format!("/v2/{p}/os-vendor-tags/volumes/{id}");

    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {}}));
    // POST adds or updates and answers the resulting tags.
    let r = api.post(&base, json!({"tags": {"key_0": "value_0", "key_1": "value_1"}})).await.expect(200);
    assert_eq!(r.body, json!({"tags": {"key_0": "value_0", "key_1": "value_1"}}));
    let r = api.post(&base, json!({"tags": {"key_1": "value_11", "key_2": ""}})).await.expect(200);
    assert_eq!(r.body, json!({"tags": {"key_0": "value_0", "key_1": "value_11", "key_2": ""}}));
    assert_eq!(api.get(&base).await.expect(200).body, r.body);
    // The same tags on the 6.3 routes.
    assert_eq!(disk_tags(&api, &p, &id).await, pairs(&[("key_0", "value_0"), ("key_1", "value_11"), ("key_2", "")]));

    // PUT replaces every tag.
    let r = api.put(&base, json!({"tags": {"key_new": "value_new"}})).await.expect(200);
    assert_eq!(r.body, json!({"tags": {"key_new": "value_new"}}));
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {"key_new": "value_new"}}));

    // One key: GET, PUT (body key must match the URI), DELETE.
    assert_eq!(api.get(&format!("{base}/key_new")).await.expect(200).body, json!({"tag": {"key_new": "value_new"}}));
    api.get(&format!("{base}/absent")).await.expect_evs_error(404, "EVS.5404");
    let r = api.put(&format!("{base}/key_0"), json!({"tag": {"key_0": "v0"}})).await.expect(200);
    assert_eq!(r.body, json!({"tag": {"key_0": "v0"}}));
    let r = api.put(&format!("{base}/key_0"), json!({"tag": {"key_9": "v0"}})).await.expect_evs_error(400, "EVS.5400");
    assert!(r.text.contains("mismatch"), "{}", r.text);
    api.put(&format!("{base}/key_0"), json!({"tag": {"key_0": "a", "key_1": "b"}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    api.put(&format!("{base}/key_0"), json!({"tag": {"key_0": "a/b"}})).await.expect_evs_error(400, "EVS.5400");
    // A CJK key in the URL (percent-encoded).
    let cjk = enc("环境");
    api.put(&format!("{base}/{cjk}"), json!({"tag": {"环境": "测试"}})).await.expect(200);
    assert_eq!(api.get(&format!("{base}/{cjk}")).await.expect(200).body, json!({"tag": {"环境": "测试"}}));
    api.delete(&format!("{base}/{cjk}")).await.expect(204);
    // A tag whose key is "action" shares its path with the batch-delete route.
    api.put(&format!("{base}/action"), json!({"tag": {"action": "x"}})).await.expect(200);
    assert_eq!(api.get(&format!("{base}/action")).await.expect(200).body, json!({"tag": {"action": "x"}}));
    api.delete(&format!("{base}/action")).await.expect(204);
    api.get(&format!("{base}/action")).await.expect_evs_error(404, "EVS.5404");

    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {"key_0": "v0", "key_new": "value_new"}}));
    api.delete(&format!("{base}/key_0")).await.expect(204);
    api.delete(&format!("{base}/key_0")).await.expect_evs_error(404, "EVS.5404");

    // Batch delete: os-delete_tags (a value must match) or the 6.3.3 body.
    api.post(&base, json!({"tags": {"a": "1", "b": "2", "c": "3"}})).await.expect(200);
    api.post(&format!("{base}/action"), json!({"os-delete_tags": {"a": "1", "b": "wrong"}})).await.expect(204);
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {"b": "2", "c": "3", "key_new": "value_new"}}));
    api.post(&format!("{base}/action"), json!({"action": "delete", "tags": [{"key": "b"}, {"key": "c"}]}))
        .await
        .expect(204);
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {"key_new": "value_new"}}));
    api.post(&format!("{base}/action"), json!({"action": "create", "tags": [{"key": "z", "value": "1"}]}))
        .await
        .expect_evs_error(400, "EVS.5400");

    // The 10-tag limit and the rules hold here too, and a refused request changes nothing.
    let ten: serde_json::Map<String, Value> = (0..10).map(|i| (format!("k{i}"), json!("v"))).collect();
    api.put(&base, json!({"tags": ten})).await.expect(200);
    api.post(&base, json!({"tags": {"k10": "v"}})).await.expect_evs_error(400, "EVS.5400");
    api.put(&format!("{base}/k10"), json!({"tag": {"k10": "v"}})).await.expect_evs_error(400, "EVS.5400");
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("n{i}"), json!("v"))).collect();
    api.put(&base, json!({"tags": eleven})).await.expect_evs_error(400, "EVS.5400");
    api.put(&base, json!({"tags": {"ok": "v", "bad key": "v"}})).await.expect_evs_error(400, "EVS.5400");
    api.post(&base, json!({"tags": {"k0": null}})).await.expect_evs_error(400, "EVS.5400");
    api.post(&base, json!({"tags": ["k0"]})).await.expect_evs_error(400, "EVS.5400");
    api.post(&base, json!({})).await.expect_evs_error(400, "EVS.5400");
    assert_eq!(api.get(&base).await.expect(200).body["tags"].as_object().map(|m| m.len()), Some(10));
    api.put(&base, json!({"tags": {}})).await.expect(200);
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {}}));
}

async fn vendor_tags_on_snapshots_and_backups(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vol = disk(&api, &p, "snap-src").await;
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vol, "name": "snap-1"}})).await;
    let snap = s(&r.expect(202).body["snapshot"], "id");
    let base = format!("/v2/{p}/os-vendor-tags/snapshots/{snap}");

    api.post(&base, json!({"tags": {"backup": "daily", "env": "prod"}})).await.expect(200);
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {"backup": "daily", "env": "prod"}}));
    assert_eq!(api.get(&format!("{base}/env")).await.expect(200).body, json!({"tag": {"env": "prod"}}));
    assert_eq!(
        api.get(&format!("/v2/{p}/os-vendor-tags/snapshots")).await.expect(200).body,
        json!({"tags": {"backup": ["daily"], "env": ["prod"]}})
    );
    // Snapshot tags are not disk tags.
    assert_eq!(api.get(&format!("/v2/{p}/cloudvolumes/tags")).await.expect(200).body, json!({"tags": {}}));
    assert_eq!(disk_tags(&api, &p, &vol).await, vec![]);

    let r = api
        .get(&format!("/v2/{p}/os-vendor-tags/snapshots/resource_instances?tags={}", enc("{'env': ['prod']}")))
        .await;
    let r = r.expect(200);
    assert_eq!(r.body["total_count"], 1, "{}", r.text);
    let res = &r.body["resources"][0];
    assert_eq!(res["resource_id"], snap.as_str());
    assert_eq!(res["resource_name"], "snap-1");
    assert_eq!(res["resource_detail"]["volume_id"], vol.as_str());
    assert_eq!(res["tags"], json!({"backup": "daily", "env": "prod"}));

    api.delete(&format!("{base}/backup")).await.expect(204);
    api.post(&format!("{base}/action"), json!({"os-delete_tags": {"env": "prod"}})).await.expect(204);
    assert_eq!(api.get(&base).await.expect(200).body, json!({"tags": {}}));
    // A volume id is not a snapshot id.
    api.get(&format!("/v2/{p}/os-vendor-tags/snapshots/{vol}")).await.expect_evs_error(404, "EVS.5404");

    // backups: empty answers, and no backup is ever found.
    let bid = uuid::Uuid::new_v4();
    assert_eq!(api.get(&format!("/v2/{p}/os-vendor-tags/backups")).await.expect(200).body, json!({"tags": {}}));
    assert_eq!(
        api.get(&format!("/v2/{p}/os-vendor-tags/backups/resource_instances")).await.expect(200).body,
        json!({"resources": [], "total_count": 0})
    );
    api.get(&format!("/v2/{p}/os-vendor-tags/backups/{bid}")).await.expect_evs_error(404, "EVS.5404");
    api.post(&format!("/v2/{p}/os-vendor-tags/backups/{bid}"), json!({"tags": {"a": "b"}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    api.get(&format!("/v2/{p}/os-vendor-tags/disks/{bid}")).await.expect_evs_error(400, "EVS.5400");
}

async fn vendor_resource_instances_query_forms(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let one = disk(&api, &p, "q-one").await;
    let two = disk(&api, &p, "q-two").await;
    let three = disk(&api, &p, "q-three").await;
    for (id, tags) in
        [(&one, json!({"a": "b", "d": "e"})), (&two, json!({"a": "c"})), (&three, json!({"d": "e", "x": "y"}))]
    {
        api.post(&format!("/v2/{p}/os-vendor-tags/volumes/{id}"), json!({ "tags": tags })).await.expect(200);
    }
    let ids = |body: &Value| -> BTreeSet<String> { resource_ids(body).into_iter().collect() };
    let set = |v: &[&String]| -> BTreeSet<String> { v.iter().map(|s| s.to_string()).collect() };
    let get = |q: String| {
        let api = api.clone();
        let path = format!("/v2/{p}/os-vendor-tags/volumes/resource_instances{q}");
        async move { api.get(&path).await.expect(200).body }
    };

    let all = get(String::new()).await;
    assert_eq!(ids(&all), set(&[&one, &two, &three]));
    assert_eq!(all["total_count"], 3);
    // The deprecated route lists tags as a map.
    let first = all["resources"].as_array().unwrap().iter().find(|r| r["resource_id"] == one.as_str()).unwrap().clone();
    assert_eq!(first["tags"], json!({"a": "b", "d": "e"}));
    assert_eq!(first["resource_name"], "q-one");

    // tags: every key matches (a value of the list); tags_any: one of them; not_*: the rest.
    let q = |k: &str, v: &str| format!("?{k}={}", enc(v));
    assert_eq!(ids(&get(q("tags", "{'a': ['b', 'c'], 'd': ['e']}")).await), set(&[&one]));
    assert_eq!(ids(&get(q("tags", r#"{"a": []}"#)).await), set(&[&one, &two]));
    assert_eq!(ids(&get(q("tags_any", "{'a': ['c'], 'x': ['y']}")).await), set(&[&two, &three]));
    assert_eq!(ids(&get(q("not_tags", "{'a': ['b'], 'd': ['e']}")).await), set(&[&two, &three]));
    assert_eq!(ids(&get(q("not_tags_any", "{'a': ['b'], 'x': ['y']}")).await), set(&[&two]));
    let combined = format!("?tags={}&not_tags_any={}", enc("{'d': 'e'}"), enc("{'x': []}"));
    assert_eq!(ids(&get(combined).await), set(&[&one]));
    let paged = get(format!("?tags={}&limit=1", enc("{'a': []}"))).await;
    assert_eq!(paged["resources"].as_array().map(Vec::len), Some(1));
    assert_eq!(paged["total_count"], 2);

    for bad in [
        q("tags", "a=b"),
        q("tags", "{'bad key': []}"),
        q("tags_any", &format!("{{{}}}", (0..11).map(|i| format!("'k{i}': []")).collect::<Vec<_>>().join(","))),
        "?limit=0".to_string(),
    ] {
        let path = format!("/v2/{p}/os-vendor-tags/volumes/resource_instances{bad}");
        api.get(&path).await.expect_evs_error(400, "EVS.5400");
    }
}

async fn tags_go_away_with_the_volume(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "doomed").await;
    tags_action(&api, &format!("/v2/{p}/cloudvolumes/{id}/tags/action"), "create", json!([{"key": "k", "value": "v"}]))
        .await
        .expect(204);
    let job = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body;
    api.wait_job_success(&p, &s(&job, "job_id")).await;
    assert_eq!(api.get(&format!("/v2/{p}/cloudvolumes/tags")).await.expect(200).body, json!({"tags": {}}));
    assert_eq!(
        instances(&api, &p, json!({"action": "count", "tags": [{"key": "k", "values": []}]})).await,
        json!({"total_count": 0})
    );
    api.get(&format!("/v2/{p}/cloudvolumes/{id}/tags")).await.expect_evs_error(404, "EVS.5404");
    assert_no_rows_for(&srv, "SELECT resource_id, key FROM tags", &id).await;
}

async fn tags_and_metadata_go_away_with_the_snapshot(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vol = disk(&api, &p, "snap-doomed-src").await;
    let r = api
        .post(
            &format!("/v3/{p}/snapshots"),
            json!({"snapshot": {"volume_id": vol, "name": "doomed", "metadata": {"m": "1"}}}),
        )
        .await;
    let snap = s(&r.expect(202).body["snapshot"], "id");
    snapkit::wait_snapshot(&api, &p, &snap, &["available"]).await;
    let base = format!("/v2/{p}/os-vendor-tags/snapshots/{snap}");
    api.post(&base, json!({"tags": {"k": "v"}})).await.expect(200);
    api.delete(&format!("/v3/{p}/snapshots/{snap}")).await.expect(202);
    snapkit::wait_snapshot_gone(&api, &p, &snap).await;
    assert_eq!(api.get(&format!("/v2/{p}/os-vendor-tags/snapshots")).await.expect(200).body, json!({"tags": {}}));
    api.get(&base).await.expect_evs_error(404, "EVS.5404");
    assert_no_rows_for(&srv, "SELECT snapshot_id, key FROM snapshot_metadata", &snap).await;
    assert_no_rows_for(&srv, "SELECT resource_id, key FROM tags", &snap).await;
}

/// The rows are gone from the database, not just hidden by the API: no (id, key) row that
/// `sql` selects belongs to `id`.
async fn assert_no_rows_for(srv: &TestServer, sql: &'static str, id: &str) {
    let rows = srv.db_query_pairs(sql).await;
    assert!(rows.iter().all(|(rid, _)| rid != id), "rows of {id} left behind ({sql}): {rows:?}");
}

async fn concurrent_tag_adds_respect_the_limit(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = disk(&api, &p, "race-tags").await;
    let action = format!("/v2/{p}/cloudvolumes/{id}/tags/action");
    let eight: Vec<Value> = (0..8).map(|i| json!({"key": format!("k{i}"), "value": "v"})).collect();
    tags_action(&api, &action, "create", Value::Array(eight)).await.expect(204);
    // Ten requests race to add one new key each: exactly two fit.
    let mut tasks = Vec::new();
    for i in 0..10 {
        let api = api.clone();
        let action = action.clone();
        tasks.push(tokio::spawn(async move {
            tags_action(&api, &action, "create", json!([{"key": format!("new{i}"), "value": "v"}])).await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            204 => ok += 1,
            _ => {
                r.expect_evs_error(400, "EVS.5400");
            }
        }
    }
    assert_eq!(ok, 2, "two of ten concurrent adds fit under the limit");
    assert_eq!(disk_tags(&api, &p, &id).await.len(), 10);
}

/// `POST /v2/{p}/cloudvolumes` with an `X-Client-Token`.
async fn create_with_token(api: &Api, path: &str, token: &str, name: &str, count: i64) -> common::Resp {
    let body =
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": name, "count": count}});
    api.request(reqwest::Method::POST, path, &[("X-Client-Token", token)], Some(body.to_string())).await
}

fn ids_of(reply: &Value) -> Vec<String> {
    reply["volume_ids"]
        .as_array()
        .unwrap_or_else(|| panic!("no volume_ids: {reply}"))
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

async fn client_token_makes_create_idempotent(b: Backend) {
    // Its own daemon: the pool must hold exactly the disks this test made.
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let path = format!("/v2/{p}/cloudvolumes");
    let token = unique("tok");

    let first = create_with_token(&api, &path, &token, "idem", 2).await.expect(200).body;
    let ids = ids_of(&first);
    assert_eq!(ids.len(), 2);
    // Repeats (also on /v2.1, and after the job finished) answer the first reply and create nothing.
    let again = create_with_token(&api, &path, &token, "idem", 2).await.expect(200).body;
    assert_eq!(again, first);
    api.wait_job_success(&p, &s(&first, "job_id")).await;
    let v21 =
        create_with_token(&api, &format!("/v2.1/{p}/cloudvolumes"), &token, "other-name", 5).await.expect(200).body;
    assert_eq!(v21, first, "the token, not the body, identifies the create");
    assert_eq!(srv.pool_files(), ids.iter().cloned().collect::<BTreeSet<_>>());
    assert_eq!(api.volume_ids(&format!("/v2/{p}/cloudvolumes/detail")).await.len(), 2);

    // Another token, or the same token in another project, is another create.
    let second = create_with_token(&api, &path, &unique("tok"), "idem2", 1).await.expect(200).body;
    let q = project();
    let other = create_with_token(&api, &format!("/v2/{q}/cloudvolumes"), &token, "idem3", 1).await.expect(200).body;
    assert_ne!(second["job_id"], first["job_id"]);
    assert_ne!(other["job_id"], first["job_id"]);
    api.wait_job_success(&p, &s(&second, "job_id")).await;
    api.wait_job_success(&q, &s(&other, "job_id")).await;
    assert_eq!(srv.pool_files().len(), 4);

    // A failed create stores no token: the retry really creates.
    let failing = unique("tok");
    let bad = json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 0, "count": 1}});
    api.request(reqwest::Method::POST, &path, &[("X-Client-Token", failing.as_str())], Some(bad.to_string()))
        .await
        .expect_evs_error(400, "EVS.1010");
    let retried = create_with_token(&api, &path, &failing, "retried", 1).await.expect(200).body;
    api.wait_job_success(&p, &s(&retried, "job_id")).await;
    assert_eq!(srv.pool_files().len(), 5);

    // Concurrent repeats of one token make one set of disks.
    let token = unique("race");
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let api = api.clone();
        let path = path.clone();
        let token = token.clone();
        tasks.push(tokio::spawn(async move { create_with_token(&api, &path, &token, "race", 3).await }));
    }
    let mut replies = Vec::new();
    for t in tasks {
        replies.push(t.await.expect("task").expect(200).body);
    }
    for r in &replies {
        assert_eq!(r, &replies[0], "every concurrent repeat answers the same reply");
    }
    assert_eq!(ids_of(&replies[0]).len(), 3);
    api.wait_job_success(&p, &s(&replies[0], "job_id")).await;
    assert_eq!(srv.pool_files().len(), 8, "one set of 3 disks for 8 concurrent requests");
    let rows = srv.db_volumes().await;
    assert_eq!(rows.len(), 8, "{rows:?}");

    // Token rules: 1 to 64 printable ASCII characters.
    let before = srv.pool_files();
    for bad in ["t".repeat(65), String::new()] {
        create_with_token(&api, &path, &bad, "bad-token", 1).await.expect_evs_error(400, "EVS.5400");
    }
    let long = create_with_token(&api, &path, &"t".repeat(64), "long-token", 1).await.expect(200).body;
    api.wait_job_success(&p, &s(&long, "job_id")).await;
    assert_eq!(srv.pool_files().len(), before.len() + 1);
}
