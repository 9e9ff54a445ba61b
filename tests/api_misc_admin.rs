//! Misc admin APIs (issue 10 B.10): volume summary, resource filters, type encryption records,
//! default types, and addProjectAccess validation. Noauth daemon (the caller is its project's
//! admin); each test runs on SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use serde_json::json;

use common::{project, s, unique, Api, Backend, Opts, TestServer};

backend_tests!(
    summary_and_resource_filters,
    encryption_records_follow_the_type,
    default_types_per_project,
    add_project_access_refuses_malformed_input,
);

async fn get_v(api: &Api, path: &str, minor: u32) -> common::Resp {
    let v = format!("volume 3.{minor}");
    api.get_h(path, &[("OpenStack-API-Version", v.as_str())]).await
}

async fn req_v(api: &Api, m: reqwest::Method, path: &str, minor: u32, body: Option<serde_json::Value>) -> common::Resp {
    let v = format!("volume 3.{minor}");
    api.request(m, path, &[("OpenStack-API-Version", v.as_str())], body.map(|b| b.to_string())).await
}

async fn summary_and_resource_filters(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    get_v(&api, &format!("/v3/{p}/volumes/summary"), 11).await.expect(404);
    let r = get_v(&api, &format!("/v3/{p}/volumes/summary"), 12).await.expect(200);
    assert_eq!(r.body, json!({"volume-summary": {"total_count": 0, "total_size": 0}}));
    api.cinder_create_available(&p, json!({"size": 1, "metadata": {"k": "a"}})).await;
    api.cinder_create_available(&p, json!({"size": 2, "metadata": {"k": "b"}})).await;
    let r = get_v(&api, &format!("/v3/{p}/volumes/summary"), 36).await.expect(200);
    assert_eq!(r.body, json!({"volume-summary": {"total_count": 2, "total_size": 3, "metadata": {"k": ["a", "b"]}}}));
    // The list's filters apply.
    let r = get_v(&api, &format!("/v3/{p}/volumes/summary?metadata=%7B%22k%22%3A%22a%22%7D"), 12).await.expect(200);
    assert_eq!(r.body["volume-summary"]["total_size"], 1, "{}", r.text);
    // Another project sees nothing of these.
    let r = get_v(&api, &format!("/v3/{}/volumes/summary", project()), 12).await.expect(200);
    assert_eq!(r.body["volume-summary"]["total_count"], 0);

    get_v(&api, &format!("/v3/{p}/resource_filters"), 32).await.expect(404);
    let r = get_v(&api, &format!("/v3/{p}/resource_filters?resource=volume"), 33).await.expect(200);
    assert_eq!(
        r.body["resource_filters"],
        json!([{"resource": "volume", "filters": ["name", "status", "metadata", "availability_zone", "group_id"]}])
    );
    let r = get_v(&api, &format!("/v3/{p}/resource_filters"), 33).await.expect(200);
    assert_eq!(r.body["resource_filters"].as_array().map(Vec::len), Some(4));
}

async fn encryption_records_follow_the_type(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let t = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": unique("enc")}})).await.expect(200);
    let tid = s(&t.body["volume_type"], "id");
    let base = format!("/v3/{p}/types/{tid}/encryption");
    assert_eq!(api.get(&base).await.expect(200).body, json!({}));
    // Bad input changes nothing.
    for bad in [
        json!({"encryption": {"provider": "luks"}}),
        json!({"encryption": {"provider": "luks", "control_location": "middle"}}),
        json!({"encryption": {"provider": "luks", "control_location": "front-end", "key_size": "x"}}),
        json!({"nope": {}}),
    ] {
        api.post(&base, bad).await.expect(400);
    }
    assert_eq!(api.get(&base).await.expect(200).body, json!({}));
    api.post(
        &format!("/v3/{p}/types/{}/encryption", uuid::Uuid::new_v4()),
        json!({"encryption": {"provider": "luks", "control_location": "front-end"}}),
    )
    .await
    .expect(404);
    let spec =
        json!({"provider": "luks", "cipher": "aes-xts-plain64", "key_size": 256, "control_location": "front-end"});
    let r = api.post(&base, json!({"encryption": spec})).await.expect(200);
    let eid = s(&r.body["encryption"], "encryption_id");
    assert_eq!(r.body["encryption"]["volume_type_id"], tid.as_str());
    api.post(&base, json!({"encryption": spec})).await.expect(409);
    let r = api.get(&base).await.expect(200);
    assert_eq!((r.body["provider"].clone(), r.body["key_size"].clone()), (json!("luks"), json!(256)));
    let r = api.get(&format!("{base}/cipher")).await.expect(200);
    assert_eq!(r.body, json!({"cipher": "aes-xts-plain64"}));
    let r = api.put(&format!("{base}/{eid}"), json!({"encryption": {"key_size": 128}})).await.expect(200);
    assert_eq!(r.body, json!({"encryption": {"key_size": 128}}));

    // A volume of the type is encrypted; while it exists the record cannot change.
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": tid})).await;
    assert_eq!(v["encrypted"], true);
    let shown = api.get(&format!("/v3/{p}/volumes/{}", s(&v, "id"))).await.expect(200);
    assert_eq!(shown.body["volume"]["encrypted"], true);
    api.delete(&format!("{base}/{eid}")).await.expect(400);
    api.put(&format!("{base}/{eid}"), json!({"encryption": {"key_size": 512}})).await.expect(400);
    assert_eq!(api.get(&base).await.expect(200).body["key_size"], 128);
    api.delete(&format!("/v3/{p}/volumes/{}", s(&v, "id"))).await.expect(202);
    api.wait_volume_gone(&p, &s(&v, "id")).await;
    api.delete(&format!("{base}/{eid}")).await.expect(202);
    assert_eq!(api.get(&base).await.expect(200).body, json!({}));
    api.delete(&format!("{base}/{eid}")).await.expect(404);
    let plain = api.cinder_create_available(&p, json!({"size": 1})).await;
    assert_eq!(plain["encrypted"], false);
}

async fn default_types_per_project(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let name = unique("dflt");
    let t = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": name}})).await.expect(200);
    let tid = s(&t.body["volume_type"], "id");
    let path = format!("/v3/{p}/default-types/{p}");
    use reqwest::Method;
    req_v(&api, Method::GET, &path, 61, None).await.expect(404);
    req_v(&api, Method::GET, &path, 62, None).await.expect(404);
    req_v(&api, Method::PUT, &path, 62, Some(json!({"default_type": {"volume_type": "no-such-type"}})))
        .await
        .expect(400);
    req_v(&api, Method::PUT, &path, 62, Some(json!({"default_type": {"volume_type": name, "x": 1}}))).await.expect(400);
    req_v(
        &api,
        Method::PUT,
        &format!("/v3/{p}/default-types/bad%2Fid"),
        62,
        Some(json!({"default_type": {"volume_type": name}})),
    )
    .await
    .expect(400);
    req_v(&api, Method::GET, &path, 62, None).await.expect(404);
    let r = req_v(&api, Method::PUT, &path, 62, Some(json!({"default_type": {"volume_type": name}}))).await.expect(200);
    assert_eq!(r.body, json!({"default_type": {"project_id": p, "volume_type_id": tid}}));
    let r = req_v(&api, Method::GET, &path, 62, None).await.expect(200);
    assert_eq!(r.body["default_type"]["volume_type_id"], tid.as_str());
    let r = req_v(&api, Method::GET, &format!("/v3/{p}/default-types"), 62, None).await.expect(200);
    assert!(r.body["default_types"].as_array().is_some_and(|l| l.iter().any(|d| d["project_id"] == p.as_str())));
    // A create without a type gets the project's default; another project keeps the global one.
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    assert_eq!(v["volume_type"], name.as_str());
    let q = project();
    let w = api.cinder_create_available(&q, json!({"size": 1})).await;
    assert_ne!(w["volume_type"], name.as_str());
    // A project's default type cannot be deleted.
    api.delete(&format!("/v3/{p}/types/{tid}")).await.expect(400);
    req_v(&api, Method::DELETE, &path, 62, None).await.expect(204);
    req_v(&api, Method::DELETE, &path, 62, None).await.expect(204);
    req_v(&api, Method::GET, &path, 62, None).await.expect(404);
}

async fn add_project_access_refuses_malformed_input(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let t = api
        .post(
            &format!("/v3/{p}/types"),
            json!({"volume_type": {"name": unique("priv"), "os-volume-type-access:is_public": false}}),
        )
        .await
        .expect(200);
    let tid = s(&t.body["volume_type"], "id");
    let action = format!("/v3/{p}/types/{tid}/action");
    for bad in [
        json!({"addProjectAccess": {"project": "../etc"}}),
        json!({"addProjectAccess": {"project": ""}}),
        json!({"addProjectAccess": {"project": 5}}),
        json!({"addProjectAccess": {}}),
        json!({"addProjectAccess": {"project": "abc", "extra": 1}}),
        json!({"addProjectAccess": {"project": "x".repeat(300)}}),
    ] {
        api.post(&action, bad.clone()).await.expect(400);
    }
    let r = api.get(&format!("/v3/{p}/types/{tid}/os-volume-type-access")).await.expect(200);
    assert_eq!(r.body["volume_type_access"], json!([]), "nothing changed: {}", r.text);
    let q = project();
    api.post(&action, json!({"addProjectAccess": {"project": q}})).await.expect(202);
    let r = api.get(&format!("/v3/{p}/types/{tid}/os-volume-type-access")).await.expect(200);
    assert_eq!(r.body["volume_type_access"].as_array().map(Vec::len), Some(1));
}
