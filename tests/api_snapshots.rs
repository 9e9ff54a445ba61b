//! Snapshots, clones, revert/rollback, extend and metadata over the API (issue 3, items 1–7), on
//! SQLite and PostgreSQL: every Cinder (`/v2`, `/v3`) and EVS route, the status rules, the
//! error cases, and that bad input leaves no row and no file. Content checks run on the
//! harness's pool (whatever file system the temp dir is on); extent sharing is checked by the
//! privileged `reflink_pools` test.

#[macro_use]
mod common;
mod snapkit;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{link_path, next_link, project, query_param, s, shared, unique, Backend, Opts, TestServer, GIB};
use snapkit::{
    assert_content, cinder_snapshot, cinder_snapshot_available, db_strings, force_snapshot_status, force_volume_status,
    ids_in, mv, post_h, snapshot_file, snapshot_ids, tmp_entries, volume_file, wait_snapshot, wait_snapshot_gone,
    wait_volume_any, Model,
};

backend_tests!(
    cinder_snapshot_lifecycle,
    snapshot_routes_on_v2,
    snapshot_of_unknown_volume_is_404,
    force_rules,
    delete_snapshot_status_rules,
    snapshot_update_and_metadata_routes,
    volume_metadata_routes,
    metadata_limits_and_reserved_keys,
    snapshot_list_paging_and_filters,
    snapshot_microversion_fields,
    revert_rules,
    revert_to_an_older_snapshot_restores_its_content,
    extend_cinder,
    extend_evs,
    volume_with_snapshots_needs_cascade,
    clones_from_snapshot_and_volume,
    evs_snapshot_routes,
    evs_rollback,
    evs_batch_from_snapshot,
    busy_sources_are_protected,
    bad_input_leaves_no_row_and_no_file,
    failed_storage_steps_land_in_error_statuses,
);

/// A 1 GiB volume, available, on the shared daemon.
async fn volume(api: &common::Api, p: &str, extra: Value) -> String {
    let mut body = json!({"size": 1, "name": unique("vol")});
    for (k, v) in extra.as_object().expect("object") {
        body[k] = v.clone();
    }
    s(&api.cinder_create_available(p, body).await, "id")
}

async fn cinder_snapshot_lifecycle(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let name = unique("snap");
    let snap = cinder_snapshot(
        &api,
        &p,
        &vid,
        json!({"name": name, "description": "first", "metadata": {"k": "v"}, "force": false}),
    )
    .await;
    let sid = s(&snap, "id");
    assert!(uuid::Uuid::parse_str(&sid).is_ok(), "{snap}");
    assert!(matches!(snap["status"].as_str(), Some("creating") | Some("available")), "{snap}");
    assert_eq!(snap["name"], name.as_str());
    assert_eq!(snap["description"], "first");
    assert_eq!(snap["size"], 1);
    assert_eq!(snap["metadata"], json!({"k": "v"}));
    let shown = wait_snapshot(&api, &p, &sid, &["available"]).await;
    assert_eq!(shown["os-extended-snapshot-attributes:progress"], "100%", "{shown}");
    assert_eq!(shown["os-extended-snapshot-attributes:project_id"], p.as_str(), "{shown}");
    assert_eq!(shown["volume_id"], vid.as_str());
    assert!(shown["created_at"].is_string(), "{shown}");
    // The snapshot is a read-only file beside the volume, as long as the volume.
    let f = snapshot_file(&srv.pool, &sid);
    let md = std::fs::metadata(&f).unwrap_or_else(|e| panic!("snapshot file {}: {e}", f.display()));
    assert!(md.permissions().readonly(), "snapshot file must be read-only");
    assert_eq!(md.len(), GIB);
    // The volume stays available while and after it is snapshotted.
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], "available");

    // Lists: summary without the extended attributes, detail with them.
    let summary = api.get(&format!("/v3/{p}/snapshots")).await.expect(200).body;
    let one = &summary["snapshots"][0];
    assert_eq!(one["id"], sid.as_str(), "{summary}");
    assert!(one.get("os-extended-snapshot-attributes:progress").is_none(), "{summary}");
    let detail = api.get(&format!("/v3/{p}/snapshots/detail")).await.expect(200).body;
    assert_eq!(detail["snapshots"][0]["os-extended-snapshot-attributes:progress"], "100%", "{detail}");
    assert!(detail.get("snapshots_links").is_none(), "one page only: {detail}");

    // Update: name, then description via its display_ alias; null clears.
    let r = api.put(&format!("/v3/{p}/snapshots/{sid}"), json!({"snapshot": {"name": "renamed"}})).await.expect(200);
    assert_eq!(r.body["snapshot"]["name"], "renamed");
    assert_eq!(r.body["snapshot"]["description"], "first");
    let r = api
        .put(&format!("/v3/{p}/snapshots/{sid}"), json!({"snapshot": {"display_description": "second"}}))
        .await
        .expect(200);
    assert_eq!(r.body["snapshot"]["description"], "second");
    assert_eq!(r.body["snapshot"]["name"], "renamed");
    let r = api.put(&format!("/v3/{p}/snapshots/{sid}"), json!({"snapshot": {"description": null}})).await.expect(200);
    assert_eq!(r.body["snapshot"]["description"], Value::Null);
    assert!(r.body["snapshot"]["updated_at"].is_string(), "{}", r.text);
    api.put(&format!("/v3/{p}/snapshots/{sid}"), json!({"snapshot": {}})).await.expect_fault(400, "badRequest");
    api.put(&format!("/v3/{p}/snapshots/{sid}"), json!({"snapshot": {"name": "x".repeat(256)}}))
        .await
        .expect_fault(400, "badRequest");

    // Lists are per project (noauth callers are admins, so a show by id is not).
    let other = project();
    assert!(snapshot_ids(&api, &format!("/v3/{other}/snapshots")).await.is_empty());
    assert!(snapshot_ids(&api, &format!("/v3/{other}/snapshots/detail")).await.is_empty());
    let all = snapshot_ids(&api, &format!("/v3/{other}/snapshots?all_tenants=1")).await;
    assert!(all.contains(&sid), "all_tenants lists every project's snapshots");

    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect(202);
    wait_snapshot_gone(&api, &p, &sid).await;
    assert!(!f.exists(), "snapshot file left behind");
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(404, "itemNotFound");
    api.get(&format!("/v3/{p}/snapshots/not-a-uuid")).await.expect_fault(404, "itemNotFound");
    // The volume is deletable again without cascade.
    api.delete(&format!("/v3/{p}/volumes/{vid}")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
}

async fn snapshot_routes_on_v2(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let r = api
        .post(&format!("/v2/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "display_name": "v2snap"}}))
        .await
        .expect(202);
    let sid = s(&r.body["snapshot"], "id");
    assert_eq!(r.body["snapshot"]["name"], "v2snap");
    let href = r.body["snapshot"]["links"][0]["href"].as_str().map(str::to_string);
    if let Some(h) = href {
        assert!(h.contains("/v2/"), "v2 links: {h}");
    }
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    let shown = api.get(&format!("/v2/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"].clone();
    assert_eq!(shown["status"], "available");
    for k in ["group_snapshot_id", "user_id", "consumes_quota"] {
        assert!(shown.get(k).is_none(), "{k} must not appear on v2: {shown}");
    }
    assert_eq!(snapshot_ids(&api, &format!("/v2/{p}/snapshots")).await, vec![sid.clone()]);
    assert_eq!(snapshot_ids(&api, &format!("/v2/{p}/snapshots/detail")).await, vec![sid.clone()]);
    api.put(&format!("/v2/{p}/snapshots/{sid}"), json!({"snapshot": {"name": "n2"}})).await.expect(200);
    let m = api.post(&format!("/v2/{p}/snapshots/{sid}/metadata"), json!({"metadata": {"a": "1"}})).await.expect(200);
    assert_eq!(m.body["metadata"], json!({"a": "1"}));
    let m = api.post(&format!("/v2/{p}/volumes/{vid}/metadata"), json!({"metadata": {"b": "2"}})).await.expect(200);
    assert_eq!(m.body["metadata"], json!({"b": "2"}));
    api.post(&format!("/v2/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 2}})).await.expect(202);
    api.wait_available(&p, &vid).await;
    // Revert needs 3.40: never on v2.
    api.post(&format!("/v2/{p}/volumes/{vid}/action"), json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect_fault(404, "itemNotFound");
    api.delete(&format!("/v2/{p}/snapshots/{sid}")).await.expect(202);
    wait_snapshot_gone(&api, &p, &sid).await;
    api.delete(&format!("/v2/{p}/volumes/{vid}")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
}

async fn snapshot_of_unknown_volume_is_404(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ghost = uuid::Uuid::new_v4().to_string();
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": ghost}}))
        .await
        .expect_fault(404, "itemNotFound");
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": "nope"}}))
        .await
        .expect_fault(404, "itemNotFound");
    api.post(&format!("/v2/{p}/cloudsnapshots"), json!({"snapshot": {"volume_id": ghost}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    let other = project();
    let vid = volume(&api, &other, json!({})).await;
    // Missing volume_id and a malformed body are 400.
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"name": "x"}})).await.expect_fault(400, "badRequest");
    api.post_raw(&format!("/v3/{p}/snapshots"), "{not json").await.expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/snapshots"), json!({"volume_id": vid})).await.expect_fault(400, "badRequest");
    assert!(snapshot_ids(&api, &format!("/v3/{p}/snapshots")).await.is_empty());
    assert!(snapshot_ids(&api, &format!("/v3/{other}/snapshots")).await.is_empty());
}

async fn force_rules(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = volume(&api, &p, json!({})).await;
    // No attach route yet: mark the volume attached in the database.
    force_volume_status(&url, &vid, "in-use").await;
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "force": false}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v2/{p}/cloudsnapshots"), json!({"snapshot": {"volume_id": vid}}))
        .await
        .expect_evs_error(400, "EVS.2043");
    assert!(snapshot_ids(&api, &format!("/v3/{p}/snapshots")).await.is_empty());
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "force": "yes-please"}}))
        .await
        .expect_fault(400, "badRequest");
    let s1 = cinder_snapshot_available(&api, &p, &vid, json!({"force": true})).await;
    let s2 = cinder_snapshot_available(&api, &p, &vid, json!({"force": "True"})).await;
    // The snapshot does not change the volume's status.
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], "in-use");
    // force never helps a volume in another status.
    for st in ["error", "creating", "extending", "deleting", "rollbacking"] {
        force_volume_status(&url, &vid, st).await;
        api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "force": true}}))
            .await
            .expect_fault(400, "badRequest");
    }
    force_volume_status(&url, &vid, "available").await;
    let ids: BTreeSet<String> = snapshot_ids(&api, &format!("/v3/{p}/snapshots")).await.into_iter().collect();
    assert_eq!(ids, [s(&s1, "id"), s(&s2, "id")].into_iter().collect());
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
}

async fn delete_snapshot_status_rules(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = volume(&api, &p, json!({})).await;
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let sid2 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    for st in ["creating", "deleting", "rollbacking"] {
        force_snapshot_status(&url, &sid, st).await;
        api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(400, "badRequest");
        api.delete(&format!("/v2/{p}/snapshots/{sid}")).await.expect_fault(400, "badRequest");
        api.delete(&format!("/v2/{p}/cloudsnapshots/{sid}")).await.expect_evs_error(400, "EVS.1047");
        assert_eq!(
            api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"]["status"],
            st,
            "a refused delete must not change the status"
        );
    }
    assert!(snapshot_file(&srv.pool, &sid).exists());
    // `error` and `error_deleting` (a retry) are deletable.
    force_snapshot_status(&url, &sid, "error").await;
    force_snapshot_status(&url, &sid2, "error_deleting").await;
    for id in [&sid, &sid2] {
        api.delete(&format!("/v3/{p}/snapshots/{id}")).await.expect(202);
        wait_snapshot_gone(&api, &p, id).await;
        assert!(!snapshot_file(&srv.pool, id).exists());
    }
    api.delete(&format!("/v3/{p}/volumes/{vid}")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
}

async fn snapshot_update_and_metadata_routes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({"metadata": {"a": "1"}})).await, "id");
    let base = format!("/v3/{p}/snapshots/{sid}/metadata");
    assert_eq!(api.get(&base).await.expect(200).body, json!({"metadata": {"a": "1"}}));
    // POST merges.
    let r = api.post(&base, json!({"metadata": {"b": "2", "a": "one"}})).await.expect(200);
    assert_eq!(r.body, json!({"metadata": {"a": "one", "b": "2"}}));
    // PUT replaces.
    let r = api.put(&base, json!({"metadata": {"c": "3"}})).await.expect(200);
    assert_eq!(r.body, json!({"metadata": {"c": "3"}}));
    assert_eq!(api.get(&base).await.expect(200).body, json!({"metadata": {"c": "3"}}));
    // One key.
    assert_eq!(api.get(&format!("{base}/c")).await.expect(200).body, json!({"meta": {"c": "3"}}));
    api.get(&format!("{base}/zz")).await.expect_fault(404, "itemNotFound");
    let r = api.put(&format!("{base}/d"), json!({"meta": {"d": "4"}})).await.expect(200);
    assert_eq!(r.body, json!({"meta": {"d": "4"}}));
    api.put(&format!("{base}/d"), json!({"meta": {"e": "5"}})).await.expect_fault(400, "badRequest");
    api.put(&format!("{base}/d"), json!({"meta": {"d": "4", "e": "5"}})).await.expect_fault(400, "badRequest");
    api.put(&format!("{base}/d"), json!({"meta": {"d": null}})).await.expect_fault(400, "badRequest");
    api.delete(&format!("{base}/c")).await.expect(200);
    api.delete(&format!("{base}/c")).await.expect_fault(404, "itemNotFound");
    let shown = api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"].clone();
    assert_eq!(shown["metadata"], json!({"d": "4"}), "{shown}");
    // Limits on snapshots too.
    api.post(&base, json!({"metadata": {"k".repeat(256): "v"}})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({"metadata": {"k": "v".repeat(256)}})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({"metadata": {"k": null}})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({"metadata": {"k": 5}})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({"metadata": "flat"})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({})).await.expect_fault(400, "badRequest");
    let ok = api.post(&base, json!({"metadata": {"k".repeat(255): "v".repeat(255)}})).await.expect(200);
    assert_eq!(ok.body["metadata"].as_object().map(|m| m.len()), Some(2), "{}", ok.text);
    assert_eq!(api.get(&base).await.expect(200).body["metadata"]["d"], "4");
    // Unknown snapshot.
    let ghost = uuid::Uuid::new_v4();
    api.get(&format!("/v3/{p}/snapshots/{ghost}/metadata")).await.expect_fault(404, "itemNotFound");
    api.post(&format!("/v3/{p}/snapshots/{ghost}/metadata"), json!({"metadata": {"a": "b"}}))
        .await
        .expect_fault(404, "itemNotFound");
    // Create with bad metadata: nothing is created.
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "metadata": {"x": null}}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(
        &format!("/v3/{p}/snapshots"),
        json!({"snapshot": {"volume_id": vid, "metadata": {"x": "y".repeat(256)}}}),
    )
    .await
    .expect_fault(400, "badRequest");
    assert_eq!(snapshot_ids(&api, &format!("/v3/{p}/snapshots")).await, vec![sid.clone()]);
}

async fn volume_metadata_routes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({"metadata": {"a": "1"}})).await;
    let base = format!("/v3/{p}/volumes/{vid}/metadata");
    assert_eq!(api.get(&base).await.expect(200).body, json!({"metadata": {"a": "1"}}));
    let r = api.post(&base, json!({"metadata": {"b": "2"}})).await.expect(200);
    assert_eq!(r.body, json!({"metadata": {"a": "1", "b": "2"}}));
    let r = api.put(&base, json!({"metadata": {"c": "3"}})).await.expect(200);
    assert_eq!(r.body, json!({"metadata": {"c": "3"}}));
    assert_eq!(api.get(&format!("{base}/c")).await.expect(200).body, json!({"meta": {"c": "3"}}));
    api.get(&format!("{base}/a")).await.expect_fault(404, "itemNotFound");
    assert_eq!(
        api.put(&format!("{base}/c"), json!({"meta": {"c": "33"}})).await.expect(200).body,
        json!({"meta": {"c": "33"}})
    );
    api.put(&format!("{base}/c"), json!({"meta": {"x": "1"}})).await.expect_fault(400, "badRequest");
    api.put(&format!("{base}/c"), json!({"metadata": {"c": "1"}})).await.expect_fault(400, "badRequest");
    // The volume body shows the same metadata.
    let v = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["metadata"], json!({"c": "33"}));
    let evs = api.get(&format!("/v2/{p}/cloudvolumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!(evs["metadata"]["c"], "33", "{evs}");
    api.delete(&format!("{base}/c")).await.expect(200);
    api.delete(&format!("{base}/c")).await.expect_fault(404, "itemNotFound");
    assert_eq!(api.get(&base).await.expect(200).body, json!({"metadata": {}}));
    let ghost = uuid::Uuid::new_v4();
    api.get(&format!("/v3/{p}/volumes/{ghost}/metadata")).await.expect_fault(404, "itemNotFound");
    api.put(&format!("/v3/{p}/volumes/{ghost}/metadata/k"), json!({"meta": {"k": "v"}}))
        .await
        .expect_fault(404, "itemNotFound");
    api.delete(&format!("/v3/{p}/volumes/{ghost}/metadata/k")).await.expect_fault(404, "itemNotFound");
    assert_eq!(api.get(&base).await.expect(200).body, json!({"metadata": {}}));
}

async fn metadata_limits_and_reserved_keys(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({"metadata": {"hw:passthrough": "true"}})).await;
    let base = format!("/v3/{p}/volumes/{vid}/metadata");
    for bad in [
        json!({"metadata": {"k".repeat(256): "v"}}),
        json!({"metadata": {"k": "v".repeat(256)}}),
        json!({"metadata": {"": "v"}}),
        json!({"metadata": {"k": null}}),
        json!({"metadata": {"k": true}}),
        json!({"metadata": {"full_clone": "2"}}),
        json!({"metadata": {"__system__encrypted": "maybe"}}),
        json!({"metadata": null}),
    ] {
        api.post(&base, bad.clone()).await.expect_fault(400, "badRequest");
        api.put(&base, bad).await.expect_fault(400, "badRequest");
    }
    // Multibyte: 255 bytes is the limit, not 255 characters.
    let e_acute = "é".repeat(128); // 256 bytes
    api.post(&base, json!({"metadata": {"k": e_acute}})).await.expect_fault(400, "badRequest");
    api.post(&base, json!({"metadata": {"k".repeat(255): "v".repeat(255)}})).await.expect(200);
    // hw:passthrough is fixed at creation: neither changed nor removed.
    api.post(&base, json!({"metadata": {"hw:passthrough": "false"}})).await.expect_fault(400, "badRequest");
    api.delete(&format!("{base}/hw:passthrough")).await.expect_fault(400, "badRequest");
    api.put(&base, json!({"metadata": {"x": "y"}})).await.expect_fault(400, "badRequest");
    let m = api.get(&base).await.expect(200).body["metadata"].clone();
    assert_eq!(m["hw:passthrough"], "true", "{m}");
    assert_eq!(m.as_object().map(|o| o.len()), Some(2), "refused changes must change nothing: {m}");
    // full_clone 0/1 are accepted values.
    api.post(&base, json!({"metadata": {"full_clone": "1"}})).await.expect(200);

    // Reserved keys on create, on EVS and Cinder.
    let before = api.volume_ids(&format!("/v3/{p}/volumes")).await;
    let evs = |meta: Value| json!({"availability_zone": "nova", "size": 10, "volume_type": "SSD", "metadata": meta});
    for (meta, code) in [
        (json!({"full_clone": "2"}), "EVS.1063"),
        (json!({"full_clone": ""}), "EVS.1063"),
        (json!({"__system__encrypted": "2"}), "EVS.1063"),
        (json!({"__system__cmkid": "0123456789abcdef0123456789abcdef0123"}), "EVS.1063"),
        (json!({"__system__encrypted": "1", "__system__cmkid": "short"}), "EVS.1063"),
        (json!({"hw:passthrough": "maybe"}), "EVS.1057"),
        (json!({"hw:passthrough": "TRUE!"}), "EVS.1057"),
        (json!({"k".repeat(256): "v"}), "EVS.1005"),
        (json!({"k": "v".repeat(256)}), "EVS.1005"),
    ] {
        api.post(&format!("/v2/{p}/cloudvolumes"), json!({"volume": evs(meta.clone())}))
            .await
            .expect_evs_error(400, code);
        api.post(&format!("/v2.1/{p}/cloudvolumes"), json!({"volume": evs(meta.clone())}))
            .await
            .expect_evs_error(400, code);
        api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "metadata": meta}}))
            .await
            .expect_fault(400, "badRequest");
    }
    api.post(&format!("/v2/{p}/cloudvolumes"), json!({"volume": evs(json!({"k": null}))}))
        .await
        .expect_evs_error(400, "EVS.1005");
    assert_eq!(api.volume_ids(&format!("/v3/{p}/volumes")).await, before, "refused creates must create nothing");
    // Valid reserved values are kept.
    let ok = api
        .evs_create(&p, evs(json!({"full_clone": "0", "hw:passthrough": "false", "__system__encrypted": "0"})))
        .await;
    let id = ok["volume_ids"][0].as_str().expect("id").to_string();
    api.wait_available(&p, &id).await;
    let m = api.get(&format!("/v3/{p}/volumes/{id}/metadata")).await.expect(200).body["metadata"].clone();
    assert_eq!(m, json!({"full_clone": "0", "hw:passthrough": "false", "__system__encrypted": "0"}));
}

async fn snapshot_list_paging_and_filters(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p, json!({})).await;
    let v2 = volume(&api, &p, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let vol = if i % 2 == 0 { &v1 } else { &v2 };
        ids.push(s(&cinder_snapshot_available(&api, &p, vol, json!({"name": format!("s{i}")})).await, "id"));
    }
    let all = snapshot_ids(&api, &format!("/v3/{p}/snapshots/detail")).await;
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), ids.iter().cloned().collect::<BTreeSet<_>>());
    // Follow snapshots_links two by two, on both lists and on EVS.
    for path in [
        format!("/v3/{p}/snapshots?limit=2"),
        format!("/v3/{p}/snapshots/detail?limit=2"),
        format!("/v2/{p}/snapshots/detail?limit=2"),
        format!("/v2/{p}/cloudsnapshots/detail?limit=2"),
    ] {
        let mut seen = Vec::new();
        let mut next = Some(path.clone());
        let mut pages = 0;
        while let Some(pth) = next {
            pages += 1;
            assert!(pages <= 5, "{path}: too many pages");
            let r = api.get(&pth).await.expect(200);
            let page: Vec<String> =
                r.body["snapshots"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap().to_string()).collect();
            assert!(page.len() <= 2, "{pth}: {}", r.text);
            seen.extend(page);
            next = next_link(&r.body["snapshots_links"]).map(|h| {
                assert!(query_param(&h, "marker").is_some(), "{h}");
                assert_eq!(query_param(&h, "limit").as_deref(), Some("2"), "{h}");
                link_path(&h)
            });
            if path.contains("cloudsnapshots") {
                assert_eq!(r.body["count"], 5, "EVS count ignores paging: {}", r.text);
            }
        }
        assert_eq!(pages, 3, "{path}");
        assert_eq!(seen, all, "{path}: paging must give the whole list once, in order");
    }
    // Offset, sort direction.
    let off = snapshot_ids(&api, &format!("/v3/{p}/snapshots?offset=3")).await;
    assert_eq!(off, all[3..].to_vec());
    let mut asc = snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort_dir=asc")).await;
    asc.reverse();
    assert_eq!(asc, all);
    // Every sort key Cinder accepts, both spellings of name; paging follows the key.
    let by_name = snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort_key=name&sort_dir=asc")).await;
    assert_eq!(by_name, ids, "names s0..s4 ascending");
    let by_display_name = snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort=display_name:desc")).await;
    assert_eq!(by_display_name, ids.iter().rev().cloned().collect::<Vec<_>>());
    let mut sorted_ids = ids.clone();
    sorted_ids.sort();
    assert_eq!(snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort_key=id&sort_dir=asc")).await, sorted_ids);
    let after =
        snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort_key=id&sort_dir=asc&marker={}", sorted_ids[1])).await;
    assert_eq!(after, sorted_ids[2..].to_vec(), "the marker is placed by the sort key");
    for key in ["status", "size", "volume_size", "created_at", "updated_at", "volume_id"] {
        assert_eq!(snapshot_ids(&api, &format!("/v3/{p}/snapshots?sort_key={key}")).await.len(), 5, "{key}");
    }
    // Filters.
    assert_eq!(snapshot_ids(&api, &format!("/v3/{p}/snapshots?name=s3")).await, vec![ids[3].clone()]);
    let of_v2: BTreeSet<String> =
        snapshot_ids(&api, &format!("/v3/{p}/snapshots?volume_id={v2}")).await.into_iter().collect();
    assert_eq!(of_v2, [ids[1].clone(), ids[3].clone()].into_iter().collect());
    assert_eq!(snapshot_ids(&api, &format!("/v3/{p}/snapshots?status=available")).await.len(), 5);
    assert!(snapshot_ids(&api, &format!("/v3/{p}/snapshots?status=error")).await.is_empty());
    let evs = api.get(&format!("/v2/{p}/cloudsnapshots/detail?volume_id={v1}")).await.expect(200).body;
    assert_eq!(evs["count"], 3, "{evs}");
    // Marker of an unknown snapshot, bad numbers and statuses.
    for q in ["limit=-1", "limit=x", "offset=-2", "status=sleeping", "sort_dir=sideways", "sort_key=bogus"] {
        api.get(&format!("/v3/{p}/snapshots?{q}")).await.expect_fault(400, "badRequest");
    }
    api.get(&format!("/v3/{p}/snapshots?marker={}", uuid::Uuid::new_v4())).await.expect_fault(404, "itemNotFound");
}

async fn snapshot_microversion_fields(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let show = |minor: Option<u32>| {
        let api = api.clone();
        let path = format!("/v3/{p}/snapshots/{sid}");
        async move {
            let h = minor.map(mv);
            let hs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (*k, v.as_str())).collect();
            api.get_h(&path, &hs).await.expect(200).body["snapshot"].clone()
        }
    };
    let has = |v: &Value, k: &str| v.get(k).is_some();
    let v = show(None).await;
    assert!(!has(&v, "group_snapshot_id") && !has(&v, "user_id") && !has(&v, "consumes_quota"), "{v}");
    let v = show(Some(13)).await;
    assert!(!has(&v, "group_snapshot_id"), "{v}");
    let v = show(Some(14)).await;
    assert!(has(&v, "group_snapshot_id") && !has(&v, "user_id"), "{v}");
    let v = show(Some(40)).await;
    assert!(!has(&v, "user_id"), "{v}");
    let v = show(Some(41)).await;
    assert!(has(&v, "user_id") && !has(&v, "consumes_quota"), "{v}");
    let v = show(Some(64)).await;
    assert!(!has(&v, "consumes_quota"), "{v}");
    let v = show(Some(65)).await;
    assert!(has(&v, "group_snapshot_id") && has(&v, "user_id"), "{v}");
    assert_eq!(v["consumes_quota"], true, "{v}");
    // Lists and the create reply follow the same rules.
    let (k, val) = mv(65);
    let l = api.get_h(&format!("/v3/{p}/snapshots/detail"), &[(k, &val)]).await.expect(200).body;
    assert!(has(&l["snapshots"][0], "consumes_quota"), "{l}");
    let (k, val) = mv(13);
    let l = api.get_h(&format!("/v3/{p}/snapshots"), &[(k, &val)]).await.expect(200).body;
    assert!(!has(&l["snapshots"][0], "group_snapshot_id"), "{l}");
    let (k, val) = mv(41);
    let r = post_h(&api, &format!("/v3/{p}/snapshots"), &[(k, &val)], json!({"snapshot": {"volume_id": vid}}))
        .await
        .expect(202);
    assert!(has(&r.body["snapshot"], "user_id"), "{}", r.text);
    assert_eq!(r.header("OpenStack-API-Version").as_deref(), Some("volume 3.41"));
    wait_snapshot(&api, &p, &s(&r.body["snapshot"], "id"), &["available"]).await;
}

async fn revert_rules(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = volume(&api, &p, json!({})).await;
    let other = volume(&api, &p, json!({})).await;
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let foreign = s(&cinder_snapshot_available(&api, &p, &other, json!({})).await, "id");
    let act = format!("/v3/{p}/volumes/{vid}/action");
    let (k, v40) = mv(40);
    let (_, v39) = mv(39);
    let h40 = [(k, v40.as_str())];
    // Below 3.40 the action does not exist.
    post_h(&api, &act, &[(k, &v39)], json!({"revert": {"snapshot_id": sid}})).await.expect_fault(404, "itemNotFound");
    api.post(&act, json!({"revert": {"snapshot_id": sid}})).await.expect_fault(404, "itemNotFound");
    // A snapshot of another volume.
    post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": foreign}})).await.expect_fault(400, "badRequest");
    // Unknown snapshot, missing id, unknown volume.
    post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": uuid::Uuid::new_v4().to_string()}}))
        .await
        .expect_fault(404, "itemNotFound");
    post_h(&api, &act, &h40, json!({"revert": {}})).await.expect_fault(400, "badRequest");
    post_h(
        &api,
        &format!("/v3/{p}/volumes/{}/action", uuid::Uuid::new_v4()),
        &h40,
        json!({"revert": {"snapshot_id": sid}}),
    )
    .await
    .expect_fault(404, "itemNotFound");
    // The volume must be available (or error_rollbacking); the snapshot available.
    for st in ["in-use", "error", "extending", "creating"] {
        force_volume_status(&url, &vid, st).await;
        post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": sid}})).await.expect_fault(400, "badRequest");
        assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], st);
    }
    force_volume_status(&url, &vid, "available").await;
    force_snapshot_status(&url, &sid, "error").await;
    post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": sid}})).await.expect_fault(400, "badRequest");
    assert_eq!(
        api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"],
        "available",
        "a refused revert must leave the volume as it was"
    );
    force_snapshot_status(&url, &sid, "available").await;
    // error_rollbacking may be retried.
    force_volume_status(&url, &vid, "error_rollbacking").await;
    post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": sid}})).await.expect(202);
    api.wait_available(&p, &vid).await;
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    // Cinder refuses to revert a volume whose size differs from the snapshot's (EVS rollback
    // allows it); nothing changes.
    api.post(&act, json!({"os-extend": {"new_size": 2}})).await.expect(202);
    api.wait_available(&p, &vid).await;
    let r = post_h(&api, &act, &h40, json!({"revert": {"snapshot_id": sid}})).await.expect_fault(400, "badRequest");
    assert!(r.text.contains("The volume size must be equal to the snapshot size"), "{}", r.text);
    let v = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!((v["status"].as_str(), v["size"].as_i64()), (Some("available"), Some(2)));
    // Unknown action.
    api.post(&act, json!({"os-frobnicate": {}})).await.expect_fault(400, "badRequest");
    api.post(&act, json!({"os-extend": {"new_size": 3}, "revert": {}})).await.expect_fault(400, "badRequest");
}

async fn revert_to_an_older_snapshot_restores_its_content(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 3, 2, 1);
    let m1 = m.clone();
    let s1 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    assert_content(&snapshot_file(&srv.pool, &s1), &m1, "snapshot 1");
    m.write(&path, 3, 1, 2);
    m.write(&path, 700, 1, 3);
    let m2 = m.clone();
    let s2 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    assert_content(&snapshot_file(&srv.pool, &s2), &m2, "snapshot 2");
    m.write(&path, 0, 1, 4);
    let m3 = m.clone();
    let s3 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&path, 900, 1, 5);

    // Revert to the OLDEST snapshot (Cinder allows only the latest; we allow any).
    let (k, v) = mv(40);
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": s1}}))
        .await
        .expect(202);
    let vol = wait_volume_any(&api, &p, &vid, &["available", "error_rollbacking"]).await;
    assert_eq!(vol["status"], "available", "{vol}");
    assert_content(&path, &m1, "volume reverted to snapshot 1");
    // Every snapshot is intact and available, and can be reverted to in any order.
    for (sid, model) in [(&s1, &m1), (&s2, &m2), (&s3, &m3)] {
        assert_content(&snapshot_file(&srv.pool, sid), model, "snapshot after revert");
        wait_snapshot(&api, &p, sid, &["available"]).await;
    }
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": s3}}))
        .await
        .expect(202);
    api.wait_available(&p, &vid).await;
    assert_content(&path, &m3, "volume reverted to snapshot 3");
    let r = api
        .post(&format!("/v2/{p}/cloudsnapshots/{s2}/rollback"), json!({"rollback": {"volume_id": vid}}))
        .await
        .expect(202);
    assert_eq!(r.body, json!({"rollback": {"volume_id": vid}}));
    api.wait_available(&p, &vid).await;
    assert_content(&path, &m2, "volume rolled back to snapshot 2");
    assert!(tmp_entries(&srv.pool).iter().all(|e| !e.starts_with(&vid)), "revert left a temp file");
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    for sid in [&s1, &s2, &s3] {
        assert!(!snapshot_file(&srv.pool, sid).exists(), "cascade left snapshot {sid}");
    }
}

async fn extend_cinder(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = volume(&api, &p, json!({})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 10, 1, 11);
    let act = format!("/v3/{p}/volumes/{vid}/action");
    let r = api.post(&act, json!({"os-extend": {"new_size": 3}})).await.expect(202);
    assert!(r.text.is_empty() || r.body.is_null() || r.body.is_object(), "{}", r.text);
    let v = api.wait_available(&p, &vid).await;
    assert_eq!(v["size"], 3);
    assert_content(&path, &m.grown(3 * GIB), "extended volume");
    // Shrink, same size, nonsense: 400.
    for bad in
        [json!({"new_size": 2}), json!({"new_size": 3}), json!({"new_size": "x"}), json!({}), json!({"new_size": 0})]
    {
        api.post(&act, json!({"os-extend": bad})).await.expect_fault(400, "badRequest");
    }
    api.post(&act, json!({"os-extend": {"new_size": 40000}})).await.expect_fault(400, "badRequest");
    assert_eq!(common::GIB * 3, snapkit::file_len(&path));
    api.post(&format!("/v3/{p}/volumes/{}/action", uuid::Uuid::new_v4()), json!({"os-extend": {"new_size": 9}}))
        .await
        .expect_fault(404, "itemNotFound");
    // Attached: only from 3.42, and the volume goes back to in-use.
    force_volume_status(&url, &vid, "in-use").await;
    api.post(&act, json!({"os-extend": {"new_size": 4}})).await.expect_fault(400, "badRequest");
    let (k, v41) = mv(41);
    post_h(&api, &act, &[(k, &v41)], json!({"os-extend": {"new_size": 4}})).await.expect_fault(400, "badRequest");
    let (k, v42) = mv(42);
    post_h(&api, &act, &[(k, &v42)], json!({"os-extend": {"new_size": 4}})).await.expect(202);
    let v = wait_volume_any(&api, &p, &vid, &["in-use", "error_extending"]).await;
    assert_eq!(v["status"], "in-use", "{v}");
    assert_eq!(v["size"], 4);
    assert_eq!(snapkit::file_len(&path), 4 * GIB);
    // Other statuses are refused whatever the version.
    for st in ["error", "creating", "rollbacking"] {
        force_volume_status(&url, &vid, st).await;
        post_h(&api, &act, &[(k, &v42)], json!({"os-extend": {"new_size": 5}})).await.expect_fault(400, "badRequest");
    }
    force_volume_status(&url, &vid, "available").await;
    assert_content(&path, &m.grown(4 * GIB), "data after two extends");
    // Quota usage follows the new size.
    let q = api.get(&format!("/v3/{p}/os-quota-sets/{p}?usage=true")).await.expect(200).body;
    let used = &q["quota_set"]["gigabytes"]["in_use"];
    if !used.is_null() {
        assert_eq!(used, 4, "{q}");
    }
}

async fn extend_evs(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 1, 1, 21);
    for (pre, size) in [("/v2", 2), ("/v2.1", 3)] {
        let r = api
            .post(&format!("{pre}/{p}/cloudvolumes/{vid}/action"), json!({"os-extend": {"new_size": size}}))
            .await
            .expect(200);
        assert_eq!(r.body["order_id"], Value::Null, "{}", r.text);
        let job = s(&r.body, "job_id");
        let done = api.wait_job_success(&p, &job).await;
        assert_eq!(done["entities"]["volume_id"], vid.as_str(), "{done}");
        let v = api.wait_available(&p, &vid).await;
        assert_eq!(v["size"], size);
        assert_content(&path, &m.grown(size as u64 * GIB), "EVS-extended volume");
    }
    for bad in [2, 3] {
        api.post(&format!("/v2/{p}/cloudvolumes/{vid}/action"), json!({"os-extend": {"new_size": bad}}))
            .await
            .expect_evs_error(400, "EVS.1015");
        api.post(&format!("/v2.1/{p}/cloudvolumes/{vid}/action"), json!({"os-extend": {"new_size": bad}}))
            .await
            .expect_evs_error(400, "EVS.1015");
    }
    api.post(&format!("/v2/{p}/cloudvolumes/{vid}/action"), json!({"os-extend": {}}))
        .await
        .expect_evs_error(400, "EVS.1011");
    api.post(&format!("/v2/{p}/cloudvolumes/{vid}/action"), json!({"os-frob": {}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    api.post(&format!("/v2/{p}/cloudvolumes/{}/action", uuid::Uuid::new_v4()), json!({"os-extend": {"new_size": 9}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    assert_eq!(snapkit::file_len(&path), 3 * GIB, "refused extends must not touch the file");
}

async fn volume_with_snapshots_needs_cascade(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let s1 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let s2 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    // A linked clone of s1 outlives the volume and its snapshots.
    let clone = s(&api.cinder_create_available(&p, json!({"snapshot_id": s1})).await, "id");
    for path in [format!("/v3/{p}/volumes/{vid}"), format!("/v3/{p}/volumes/{vid}?cascade=false")] {
        api.delete(&path).await.expect_fault(400, "badRequest");
    }
    api.delete(&format!("/v2/{p}/cloudvolumes/{vid}")).await.expect_evs_error(400, "EVS.1046");
    let v = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available", "a refused delete must not change the status: {v}");
    // cascade refuses while a snapshot is not deletable.
    force_snapshot_status(&srv.database_url(), &s2, "creating").await;
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect_fault(400, "badRequest");
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], "available");
    assert_eq!(api.get(&format!("/v3/{p}/snapshots/{s1}")).await.expect(200).body["snapshot"]["status"], "available");
    force_snapshot_status(&srv.database_url(), &s2, "available").await;
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    for sid in [&s1, &s2] {
        api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(404, "itemNotFound");
        assert!(!snapshot_file(&srv.pool, sid).exists());
    }
    assert!(!srv.volume_path(&vid).exists());
    assert!(srv.volume_path(&clone).exists());
    api.wait_available(&p, &clone).await;
    // Cinder v2 (the reference's 7.1 delete) takes cascade too.
    let v2 = volume(&api, &p, json!({})).await;
    let s3 = s(&cinder_snapshot_available(&api, &p, &v2, json!({})).await, "id");
    api.delete(&format!("/v2/{p}/volumes/{v2}")).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v2/{p}/volumes/{v2}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &v2).await;
    assert!(!snapshot_file(&srv.pool, &s3).exists());
}

async fn clones_from_snapshot_and_volume(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({"volume_type": "SAS"})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 0, 2, 31);
    m.write(&path, 500, 1, 32);
    let at_snap = m.clone();
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&path, 0, 1, 33);
    let live = m.clone();

    // From the snapshot: default (linked), full, larger.
    let linked = api.cinder_create_available(&p, json!({"snapshot_id": sid})).await;
    assert_eq!(linked["size"], 1);
    assert_eq!(linked["snapshot_id"], sid.as_str());
    assert_eq!(linked["volume_type"], "SAS", "the type follows the source: {linked}");
    assert_eq!(linked["availability_zone"], "nova");
    let full = api.cinder_create_available(&p, json!({"snapshot_id": sid, "metadata": {"full_clone": "1"}})).await;
    assert_eq!(full["metadata"]["full_clone"], "1");
    let grown = api.cinder_create_available(&p, json!({"snapshot_id": sid, "size": 2, "volume_type": "SAS"})).await;
    assert_eq!(grown["size"], 2);
    assert_content(&srv.volume_path(&s(&linked, "id")), &at_snap, "linked clone");
    assert_content(&srv.volume_path(&s(&full, "id")), &at_snap, "full clone");
    assert_content(&srv.volume_path(&s(&grown, "id")), &at_snap.grown(2 * GIB), "grown clone");
    // From the live volume.
    let c1 = api.cinder_create_available(&p, json!({"source_volid": vid})).await;
    assert_eq!(c1["source_volid"], vid.as_str());
    assert_eq!(c1["volume_type"], "SAS");
    let c2 =
        api.cinder_create_available(&p, json!({"source_volid": vid, "size": 3, "metadata": {"full_clone": "1"}})).await;
    assert_content(&srv.volume_path(&s(&c1, "id")), &live, "clone of the live volume");
    assert_content(&srv.volume_path(&s(&c2, "id")), &live.grown(3 * GIB), "full clone of the live volume");
    // Clones are independent of their source.
    let mut changed = m.clone();
    changed.write(&path, 500, 1, 34);
    assert_content(&srv.volume_path(&s(&c1, "id")), &live, "clone after its source changed");
    assert_content(&srv.volume_path(&s(&linked, "id")), &at_snap, "linked clone after the source changed");
    // A clone is not a parent: deleting the source volume with cascade keeps every clone.
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    for c in [&linked, &full, &grown, &c1] {
        let v = api.wait_available(&p, &s(c, "id")).await;
        assert!(srv.volume_path(&s(&v, "id")).exists());
    }
    assert_content(&srv.volume_path(&s(&full, "id")), &at_snap, "full clone after the source was deleted");
}

/// Refused clone requests (checked here and again, for files, by the bad-input test).
async fn refused_clones(api: &common::Api, p: &str, vid: &str, sid: &str) {
    let cv = format!("/v3/{p}/volumes");
    let src_type = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["volume_type"].clone();
    let other_type = if src_type == "SSD" { "SAS" } else { "SSD" };
    let bad = [
        json!({"snapshot_id": sid, "size": 0}),
        json!({"snapshot_id": sid, "volume_type": other_type}),
        json!({"snapshot_id": sid, "availability_zone": "elsewhere"}),
        json!({"snapshot_id": sid, "source_volid": vid}),
        json!({"snapshot_id": sid, "metadata": {"full_clone": "2"}}),
        json!({"snapshot_id": sid, "metadata": {"hw:passthrough": "true"}}),
        json!({"source_volid": vid, "metadata": {"full_clone": "yes"}}),
        json!({"source_volid": vid, "volume_type": other_type}),
    ];
    for body in bad {
        let r = api.post(&cv, json!({ "volume": body })).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
    }
    // Smaller than the source.
    let big = api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"]["size"].as_i64().unwrap();
    if big > 1 {
        api.post(&cv, json!({"volume": {"snapshot_id": sid, "size": big - 1}})).await.expect_fault(400, "badRequest");
    }
    api.post(&cv, json!({"volume": {"snapshot_id": uuid::Uuid::new_v4().to_string()}}))
        .await
        .expect_fault(404, "itemNotFound");
    api.post(&cv, json!({"volume": {"source_volid": uuid::Uuid::new_v4().to_string()}}))
        .await
        .expect_fault(404, "itemNotFound");
    let evs = json!({"volume": {"snapshot_id": sid, "availability_zone": "nova", "volume_type": src_type,
        "metadata": {"full_clone": "2"}}});
    api.post(&format!("/v2/{p}/cloudvolumes"), evs).await.expect_evs_error(400, "EVS.1063");
    // EVS answers an unknown snapshot with 400 EVS.2045 (reference, appendix A).
    let evs = json!({"volume": {"snapshot_id": uuid::Uuid::new_v4().to_string(), "availability_zone": "nova",
        "volume_type": src_type, "size": 10}});
    api.post(&format!("/v2/{p}/cloudvolumes"), evs).await.expect_evs_error(400, "EVS.2045");
}

async fn evs_snapshot_routes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let r = api
        .post(
            &format!("/v2/{p}/cloudsnapshots"),
            json!({"snapshot": {"volume_id": vid, "name": "evs-snap", "description": "d", "metadata": {"m": "1"}}}),
        )
        .await
        .expect(202);
    let snap = r.body["snapshot"].clone();
    let sid = s(&snap, "id");
    assert_eq!(snap["name"], "evs-snap");
    assert_eq!(snap["volume_id"], vid.as_str());
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    let shown = api.get(&format!("/v2/{p}/cloudsnapshots/{sid}")).await.expect(200).body["snapshot"].clone();
    assert_eq!(shown["status"], "available", "{shown}");
    assert_eq!(shown["service_type"], "EVS", "{shown}");
    assert_eq!(shown["metadata"], json!({"m": "1"}));
    assert_eq!(shown["os-extended-snapshot-attributes:project_id"], p.as_str());
    assert_eq!(shown["os-extended-snapshot-attributes:progress"], "100%");
    assert_eq!(shown["size"], 1);
    for path in [format!("/v2/{p}/cloudsnapshots"), format!("/v2/{p}/cloudsnapshots/detail")] {
        let l = api.get(&path).await.expect(200).body;
        assert_eq!(l["count"], 1, "{l}");
        assert_eq!(l["snapshots"][0]["id"], sid.as_str(), "{l}");
    }
    let l = api.get(&format!("/v2/{p}/cloudsnapshots/detail?name=evs-snap&status=available")).await.expect(200).body;
    assert_eq!(l["count"], 1, "{l}");
    let l = api.get(&format!("/v2/{p}/cloudsnapshots/detail?name=other")).await.expect(200).body;
    assert_eq!(l["count"], 0, "{l}");
    assert_eq!(l["snapshots"], json!([]), "{l}");
    let r = api
        .put(&format!("/v2/{p}/cloudsnapshots/{sid}"), json!({"snapshot": {"name": "renamed", "description": "d2"}}))
        .await
        .expect(200);
    assert_eq!(r.body["snapshot"]["name"], "renamed");
    assert_eq!(r.body["snapshot"]["description"], "d2");
    api.put(&format!("/v2/{p}/cloudsnapshots/{sid}"), json!({"snapshot": {"name": "n".repeat(256)}}))
        .await
        .expect_evs_error(400, "EVS.1003");
    let ghost = uuid::Uuid::new_v4();
    api.get(&format!("/v2/{p}/cloudsnapshots/{ghost}")).await.expect_evs_error(404, "EVS.5404");
    api.put(&format!("/v2/{p}/cloudsnapshots/{ghost}"), json!({"snapshot": {"name": "x"}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    api.delete(&format!("/v2/{p}/cloudsnapshots/{ghost}")).await.expect_evs_error(404, "EVS.5404");
    api.post(&format!("/v2/{p}/cloudsnapshots"), json!({"snapshot": {}})).await.expect_evs_error(400, "EVS.1002");
    // The same routes answer under /v3 for Cinder v3 clients.
    api.get(&format!("/v3/{p}/cloudsnapshots/{sid}")).await.expect(200);
    // Delete (the reference, 7.3.2, answers 202).
    api.delete(&format!("/v2/{p}/cloudsnapshots/{sid}")).await.expect(202);
    wait_snapshot_gone(&api, &p, &sid).await;
    assert!(!snapshot_file(&srv.pool, &sid).exists());
    assert_eq!(api.get(&format!("/v2/{p}/cloudsnapshots")).await.expect(200).body["count"], 0);
}

async fn evs_rollback(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = volume(&api, &p, json!({})).await;
    let other = volume(&api, &p, json!({})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 7, 1, 41);
    let m1 = m.clone();
    let s1 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&path, 7, 1, 42);
    let m2 = m.clone();
    let s2 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&path, 8, 1, 43);

    // Both routes, to an older snapshot; `name` renames the disk.
    let r = api
        .post(
            &format!("/v2/{p}/os-vendor-snapshots/{s1}/rollback"),
            json!({"rollback": {"volume_id": vid, "name": "rolled"}}),
        )
        .await
        .expect(202);
    assert_eq!(r.body, json!({"rollback": {"volume_id": vid}}));
    let v = api.wait_available(&p, &vid).await;
    assert_eq!(v["name"], "rolled");
    assert_content(&path, &m1, "rolled back to snapshot 1");
    let r = api
        .post(&format!("/v2/{p}/cloudsnapshots/{s2}/rollback"), json!({"rollback": {"volume_id": vid}}))
        .await
        .expect(202);
    assert_eq!(r.body["rollback"]["volume_id"], vid.as_str());
    api.wait_available(&p, &vid).await;
    assert_content(&path, &m2, "rolled back to snapshot 2");

    // Errors: another disk, no volume_id, unknown snapshot, bad name, wrong statuses.
    let rb = format!("/v2/{p}/cloudsnapshots/{s1}/rollback");
    api.post(&rb, json!({"rollback": {"volume_id": other}})).await.expect_evs_error(400, "EVS.5400");
    api.post(&rb, json!({"rollback": {}})).await.expect_evs_error(400, "EVS.1002");
    api.post(&rb, json!({"rollback": {"volume_id": vid, "name": "n".repeat(256)}}))
        .await
        .expect_evs_error(400, "EVS.1003");
    api.post(&rb, json!({"volume_id": vid})).await.expect_evs_error(400, "EVS.5400");
    api.post(
        &format!("/v2/{p}/cloudsnapshots/{}/rollback", uuid::Uuid::new_v4()),
        json!({"rollback": {"volume_id": vid}}),
    )
    .await
    .expect_evs_error(404, "EVS.5404");
    for st in ["in-use", "error", "extending", "rollbacking"] {
        force_volume_status(&url, &vid, st).await;
        api.post(&rb, json!({"rollback": {"volume_id": vid}})).await.expect_evs_error(400, "EVS.5400");
    }
    force_volume_status(&url, &vid, "available").await;
    force_snapshot_status(&url, &s1, "creating").await;
    api.post(&rb, json!({"rollback": {"volume_id": vid}})).await.expect_evs_error(400, "EVS.2043");
    let v = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available", "a refused rollback must leave the volume available: {v}");
    assert_eq!(v["name"], "rolled", "a refused rollback must not rename: {v}");
    force_snapshot_status(&url, &s1, "available").await;
    assert_content(&path, &m2, "refused rollbacks change nothing");
    // A snapshot can be rolled back while being the source of clones.
    let clone = s(&api.cinder_create_available(&p, json!({"snapshot_id": s1})).await, "id");
    api.post(&rb, json!({"rollback": {"volume_id": vid}})).await.expect(202);
    api.wait_available(&p, &vid).await;
    assert_content(&path, &m1, "rolled back to snapshot 1 again");
    assert_content(&srv.volume_path(&clone), &m1, "clone of snapshot 1");
}

async fn evs_batch_from_snapshot(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({"volume_type": "SSD"})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 100, 1, 51);
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let name = unique("batch");
    let r = api
        .evs_create(&p, json!({"snapshot_id": sid, "count": 3, "name": name, "availability_zone": "nova", "volume_type": "SSD", "size": 1}))
        .await;
    let ids: Vec<String> =
        r["volume_ids"].as_array().expect("volume_ids").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(ids.len(), 3, "{r}");
    let job = api.wait_job_success(&p, &s(&r, "job_id")).await;
    assert_eq!(job["entities"]["sub_jobs"].as_array().map(Vec::len), Some(3), "{job}");
    for id in &ids {
        let v = api.wait_available(&p, id).await;
        assert_eq!(v["snapshot_id"], sid.as_str(), "{v}");
        assert_eq!(v["volume_type"], "SSD", "{v}");
        assert!(v["name"].as_str().unwrap().starts_with(&name), "{v}");
        assert_content(&srv.volume_path(id), &m, "batch clone");
    }
    // Smaller than the snapshot: refused, nothing made.
    let before = api.volume_ids(&format!("/v3/{p}/volumes")).await;
    let big = s(&api.cinder_create_available(&p, json!({"snapshot_id": sid, "size": 3})).await, "id");
    let big_snap = s(&cinder_snapshot_available(&api, &p, &big, json!({})).await, "id");
    api.post(
        &format!("/v2/{p}/cloudvolumes"),
        json!({"volume": {"snapshot_id": big_snap, "count": 2, "size": 2, "availability_zone": "nova", "volume_type": "SSD"}}),
    )
    .await
    .expect_evs_error(400, "EVS.1010");
    assert_eq!(api.volume_ids(&format!("/v3/{p}/volumes")).await.len(), before.len() + 1);
    refused_clones(&api, &p, &vid, &sid).await;
}

/// Sources in use by a running create: neither the snapshot nor (with cascade) its volume, nor a
/// source volume, may be deleted until the clone is made. Uses a daemon whose jobs wait 1.5 s
/// after their claim.
async fn busy_sources_are_protected(b: Backend) {
    let srv = TestServer::start(b, Opts { step_delay_ms: 1500, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let vid = s(&api.cinder_create_available(&p, json!({"size": 1})).await, "id");
    let mut m = Model::zeros(GIB);
    m.write(&srv.volume_path(&vid), 3, 1, 60);
    let s0 = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&srv.volume_path(&vid), 4, 1, 61);
    let sid = s(&cinder_snapshot(&api, &p, &vid, json!({})).await, "id");
    let (k, v) = mv(40);
    let revert_to_s0 = json!({"revert": {"snapshot_id": s0}});
    // While the snapshot is being taken: it cannot be deleted; the volume cannot be deleted,
    // rolled back to it or cloned from it.
    assert_eq!(api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"]["status"], "creating");
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"snapshot_id": sid}}))
        .await
        .expect_fault(400, "badRequest");
    // A rollback now would give the snapshot the rolled-back data.
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], revert_to_s0.clone())
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v2/{p}/cloudsnapshots/{s0}/rollback"), json!({"rollback": {"volume_id": vid}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    // An extend now would make the snapshot longer than its size.
    api.post(&format!("/v3/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 2}}))
        .await
        .expect_fault(400, "badRequest");
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    assert_eq!(snapkit::file_len(&snapshot_file(&srv.pool, &sid)), GIB);
    assert_content(&snapshot_file(&srv.pool, &sid), &m, "snapshot taken while a rollback was asked for");
    // While a clone of the snapshot is being made.
    let clone = s(&api.cinder_create(&p, json!({"snapshot_id": sid})).await, "id");
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v2/{p}/cloudsnapshots/{sid}")).await.expect_evs_error(400, "EVS.1047");
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect_fault(400, "badRequest");
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], "available");
    api.wait_available(&p, &clone).await;
    assert_content(&srv.volume_path(&clone), &m, "clone made while its source was busy");
    // While a clone of the live volume is being made.
    let live = s(&api.cinder_create(&p, json!({"source_volid": vid})).await, "id");
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect_fault(400, "badRequest");
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], revert_to_s0.clone())
        .await
        .expect_fault(400, "badRequest");
    api.wait_available(&p, &live).await;
    assert_content(&srv.volume_path(&live), &m, "clone of a live volume");
    // While rolling back: no second rollback, no delete, no snapshot, no extend.
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect(202);
    let st = api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"].clone();
    assert_eq!(st, "rollbacking");
    assert_eq!(
        api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"]["status"],
        "rollbacking"
    );
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid, "force": true}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 2}}))
        .await
        .expect_fault(400, "badRequest");
    api.wait_available(&p, &vid).await;
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    // While extending.
    api.post(&format!("/v3/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 2}})).await.expect(202);
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{vid}")).await.expect(200).body["volume"]["status"], "extending");
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid}}))
        .await
        .expect_fault(400, "badRequest");
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"source_volid": vid}}))
        .await
        .expect_fault(400, "badRequest");
    let v = api.wait_available(&p, &vid).await;
    assert_eq!(v["size"], 2);
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    assert!(!snapshot_file(&srv.pool, &sid).exists());
    for c in [&clone, &live] {
        assert_content(&srv.volume_path(c), &m, "clones outlive their source");
    }
}

/// Every refused request on a fresh daemon: afterwards the database holds only the rows the
/// test made on purpose and the pool only their files.
async fn bad_input_leaves_no_row_and_no_file(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let url = srv.database_url();
    let vid = s(&api.cinder_create_available(&p, json!({"size": 1, "volume_type": "SATA"})).await, "id");
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    let volumes_before = db_strings(&url, "SELECT id FROM volumes ORDER BY id", &[]).await;
    let snapshots_before = db_strings(&url, "SELECT id FROM snapshots ORDER BY id", &[]).await;
    let jobs_before = db_strings(&url, "SELECT id FROM jobs ORDER BY id", &[]).await;

    // Snapshots.
    for body in [
        json!({"snapshot": {"volume_id": uuid::Uuid::new_v4().to_string()}}),
        json!({"snapshot": {"volume_id": vid, "metadata": {"k": null}}}),
        json!({"snapshot": {"volume_id": vid, "name": "n".repeat(256)}}),
        json!({"snapshot": {"volume_id": vid, "force": "maybe"}}),
        json!({"snapshot": {"name": "no volume"}}),
        json!({"snapshot": null}),
    ] {
        let r = api.post(&format!("/v3/{p}/snapshots"), body.clone()).await;
        assert!(matches!(r.status, 400 | 404), "{body}: {} {}", r.status, r.text);
        let r = api.post(&format!("/v2/{p}/cloudsnapshots"), body.clone()).await;
        assert!(matches!(r.status, 400 | 404), "{body}: {} {}", r.status, r.text);
    }
    // Volumes from sources, reserved metadata.
    refused_clones(&api, &p, &vid, &sid).await;
    for meta in [json!({"full_clone": "2"}), json!({"hw:passthrough": "maybe"}), json!({"x": "y".repeat(256)})] {
        let r = api
            .post(
                &format!("/v2/{p}/cloudvolumes"),
                json!({"volume": {"size": 10, "availability_zone": "nova", "volume_type": "SSD", "metadata": meta}}),
            )
            .await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
    // Extend and revert.
    api.post(&format!("/v3/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 1}})).await.expect(400);
    let (k, v) = mv(40);
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": "x"}}))
        .await
        .expect(404);
    // Metadata.
    api.post(&format!("/v3/{p}/volumes/{vid}/metadata"), json!({"metadata": {"k": null}})).await.expect(400);
    api.put(&format!("/v3/{p}/snapshots/{sid}/metadata"), json!({"metadata": {"k": "v".repeat(256)}}))
        .await
        .expect(400);

    assert_eq!(db_strings(&url, "SELECT id FROM volumes ORDER BY id", &[]).await, volumes_before);
    assert_eq!(db_strings(&url, "SELECT id FROM snapshots ORDER BY id", &[]).await, snapshots_before);
    assert_eq!(db_strings(&url, "SELECT id FROM jobs ORDER BY id", &[]).await, jobs_before);
    assert!(db_strings(&url, "SELECT key FROM volume_metadata WHERE volume_id = $1", &[&vid]).await.is_empty());
    assert!(db_strings(&url, "SELECT key FROM snapshot_metadata WHERE snapshot_id = $1", &[&sid]).await.is_empty());
    assert_eq!(ids_in(&srv.pool, "volumes"), [vid.clone()].into_iter().collect());
    assert_eq!(ids_in(&srv.pool, "snapshots"), [sid.clone()].into_iter().collect());
    assert!(tmp_entries(&srv.pool).is_empty(), "tmp/: {:?}", tmp_entries(&srv.pool));
    assert_content(&volume_file(&srv.pool, &vid), &Model::zeros(GIB), "untouched volume");
}

/// Storage steps that fail (files removed behind the daemon's back) end in `error*` statuses with
/// a FAIL job, leave the volume's data as it was, and can be cleaned up through the API.
async fn failed_storage_steps_land_in_error_statuses(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let vid = volume(&api, &p, json!({})).await;
    let path = srv.volume_path(&vid);
    let mut m = Model::zeros(GIB);
    m.write(&path, 2, 1, 71);
    let sid = s(&cinder_snapshot_available(&api, &p, &vid, json!({})).await, "id");
    m.write(&path, 2, 1, 72);
    // Rollback to a snapshot whose file is gone: error_rollbacking, the volume untouched, the
    // snapshot available again.
    std::fs::remove_file(snapshot_file(&srv.pool, &sid)).expect("remove the snapshot file");
    let (k, v) = mv(40);
    post_h(&api, &format!("/v3/{p}/volumes/{vid}/action"), &[(k, &v)], json!({"revert": {"snapshot_id": sid}}))
        .await
        .expect(202);
    let vol = wait_volume_any(&api, &p, &vid, &["error_rollbacking", "available"]).await;
    assert_eq!(vol["status"], "error_rollbacking", "{vol}");
    assert_content(&path, &m, "volume after a failed rollback");
    wait_snapshot(&api, &p, &sid, &["available"]).await;
    assert!(tmp_entries(&srv.pool).iter().all(|e| !e.starts_with(&vid)), "a failed rollback left a temp file");
    // error_rollbacking: no snapshot, no extend, but delete (with cascade) works.
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vid}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes/{vid}/action"), json!({"os-extend": {"new_size": 2}}))
        .await
        .expect_fault(400, "badRequest");
    // A snapshot of a volume whose file is gone: error, and deletable.
    let v2 = volume(&api, &p, json!({})).await;
    std::fs::remove_file(srv.volume_path(&v2)).expect("remove the volume file");
    let bad = s(&cinder_snapshot(&api, &p, &v2, json!({})).await, "id");
    let st = wait_snapshot(&api, &p, &bad, &["error", "available"]).await;
    assert_eq!(st["status"], "error", "{st}");
    assert!(!snapshot_file(&srv.pool, &bad).exists());
    api.delete(&format!("/v3/{p}/snapshots/{bad}")).await.expect(202);
    wait_snapshot_gone(&api, &p, &bad).await;
    // A clone of a volume whose file is gone: error, and deletable.
    let c = s(&api.cinder_create(&p, json!({"source_volid": v2})).await, "id");
    let cv = wait_volume_any(&api, &p, &c, &["error", "available"]).await;
    assert_eq!(cv["status"], "error", "{cv}");
    assert!(!srv.volume_path(&c).exists());
    for id in [&c, &v2] {
        api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
        api.wait_volume_gone(&p, id).await;
    }
    api.delete(&format!("/v3/{p}/volumes/{vid}?cascade=true")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    assert!(!path.exists());
}
