//! Huawei EVS routes (reference 6.1, 8.1.1, A.1; CLIENTS.md §1): create (single and batch) with
//! job polling, show, detail filters and paging, the deprecated list, update, delete, and the
//! error codes of appendix A.1. One shared daemon per backend; each test uses its own project.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{assert_sparse_file, enc, link_path, next_link, project, query_param, s, shared, Api, Backend};

backend_tests!(
    create_one_disk_and_follow_its_job,
    batch_create_on_v2_1_has_sub_jobs_and_suffixed_names,
    show_on_both_paths_has_evs_fields,
    detail_filters,
    detail_paging_sorting_and_count,
    vendor_detail_matches_cloudvolumes_detail,
    deprecated_list_has_id_links_name,
    update_name_and_description,
    delete_returns_a_job_and_removes_the_file,
    create_errors_use_evs_codes,
    list_errors_use_evs_codes,
    unknown_volume_and_job_are_404,
    delete_is_refused_in_error_deleting_free_statuses_only,
    decimal_size_and_count_are_truncated,
);

fn ids_of(body: &Value) -> Vec<String> {
    body["volumes"]
        .as_array()
        .unwrap_or_else(|| panic!("no volumes array: {body}"))
        .iter()
        .map(|v| s(v, "id"))
        .collect()
}

fn set(v: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    v.into_iter().collect()
}

/// Create one disk on EVS, wait for its job, return its id.
async fn evs_one(api: &Api, p: &str, volume: Value) -> String {
    let r = api.evs_create(p, volume).await;
    let id = r["volume_ids"][0].as_str().expect("volume id").to_string();
    api.wait_job_success(p, &s(&r, "job_id")).await;
    id
}

fn assert_evs_time(v: &Value, what: &str) {
    let t = v.as_str().unwrap_or_else(|| panic!("{what} is not a string: {v}"));
    // Reference 8.1.1: YYYY-MM-DDTHH:MM:SS.SSS'Z'
    assert!(t.len() >= 20 && t.as_bytes()[4] == b'-' && t.as_bytes()[10] == b'T' && t.ends_with('Z'), "{what}: {t:?}");
}

async fn create_one_disk_and_follow_its_job(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    // The request the Huawei SDK sends (captures_evs.txt), with our zone.
    let r = api
        .post(
            &format!("/v2/{p}/cloudvolumes"),
            json!({"volume": {"availability_zone": "nova", "count": 1, "metadata": {"k": "v"}, "name": "vol-1", "size": 10, "volume_type": "SSD"}}),
        )
        .await
        .expect(200);
    let job_id = s(&r.body, "job_id");
    assert!(r.body.get("order_id").is_some_and(Value::is_null), "order_id must be present and null: {}", r.text);
    let vids = r.body["volume_ids"].as_array().expect("volume_ids");
    assert_eq!(vids.len(), 1, "{}", r.text);
    let id = vids[0].as_str().unwrap().to_string();
    assert!(uuid::Uuid::parse_str(&id).is_ok());

    let job = api.wait_job_success(&p, &job_id).await;
    assert_eq!(job["job_id"], job_id.as_str(), "{job}");
    assert_eq!(job["job_type"], "createVolume", "{job}");
    let e = &job["entities"];
    assert_eq!(e["volume_id"], id.as_str(), "{job}");
    assert_eq!(e["size"], 10, "{job}");
    assert_eq!(e["name"], "vol-1", "{job}");
    assert_eq!(e["volume_type"], "SSD", "{job}");
    assert!(job.get("error_code").is_some_and(Value::is_null), "{job}");
    assert!(job.get("fail_reason").is_some_and(Value::is_null), "{job}");
    assert_evs_time(&job["begin_time"], "begin_time");
    assert_evs_time(&job["end_time"], "end_time");

    assert_sparse_file(&srv.volume_path(&id), 10);
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available");
    assert_eq!(v["metadata"], json!({"k": "v"}));
}

async fn batch_create_on_v2_1_has_sub_jobs_and_suffixed_names(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let r = api
        .post(
            &format!("/v2.1/{p}/cloudvolumes"),
            json!({"volume": {"availability_zone": "nova", "count": 3, "name": "batch", "size": 1, "volume_type": "SAS"}}),
        )
        .await
        .expect(200);
    let job_id = s(&r.body, "job_id");
    assert!(r.body.get("order_id").is_some_and(Value::is_null), "{}", r.text);
    let vids: BTreeSet<String> =
        r.body["volume_ids"].as_array().expect("volume_ids").iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(vids.len(), 3, "{}", r.text);

    let job = api.wait_job_success(&p, &job_id).await;
    assert_eq!(job["job_type"], "batchCreateVolume", "{job}");
    let subs = job["entities"]["sub_jobs"].as_array().unwrap_or_else(|| panic!("no sub_jobs: {job}"));
    assert_eq!(subs.len(), 3, "{job}");
    let mut sub_vids = BTreeSet::new();
    let mut sub_ids = BTreeSet::new();
    for sj in subs {
        assert_eq!(sj["status"], "SUCCESS", "{sj}");
        assert_eq!(sj["job_type"], "createVolume", "{sj}");
        assert_eq!(sj["entities"]["size"], 1, "{sj}");
        assert_eq!(sj["entities"]["volume_type"], "SAS", "{sj}");
        assert_evs_time(&sj["begin_time"], "sub-job begin_time");
        assert_evs_time(&sj["end_time"], "sub-job end_time");
        sub_vids.insert(s(&sj["entities"], "volume_id"));
        sub_ids.insert(s(sj, "job_id"));
    }
    assert_eq!(sub_vids, vids, "sub-jobs must cover every created disk");
    assert_eq!(sub_ids.len(), 3);
    assert!(!sub_ids.contains(&job_id));
    // Each sub-job is a job of its own.
    let one = sub_ids.iter().next().unwrap();
    let sj = api.get(&format!("/v1/{p}/jobs/{one}")).await.expect(200).body;
    assert_eq!(sj["job_type"], "createVolume");
    assert_eq!(sj["status"], "SUCCESS");

    let r = api.get(&format!("/v2/{p}/cloudvolumes/detail?sort_key=id")).await.expect(200);
    assert_eq!(r.body["count"], 3);
    let names: BTreeSet<String> = r.body["volumes"].as_array().unwrap().iter().map(|v| s(v, "name")).collect();
    assert_eq!(names, set(["batch-0000".into(), "batch-0001".into(), "batch-0002".into()]));
    for v in r.body["volumes"].as_array().unwrap() {
        assert_eq!(v["status"], "available");
        assert_sparse_file(&srv.volume_path(&s(v, "id")), 1);
    }
    // A single disk on /v2.1 keeps its name unsuffixed.
    let r = api
        .post(
            &format!("/v2.1/{p}/cloudvolumes"),
            json!({"volume": {"availability_zone": "nova", "name": "solo", "size": 1, "volume_type": "SSD"}}),
        )
        .await
        .expect(200);
    api.wait_job_success(&p, &s(&r.body, "job_id")).await;
    let id = r.body["volume_ids"][0].as_str().unwrap();
    assert_eq!(api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body["volume"]["name"], "solo");
}

async fn show_on_both_paths_has_evs_fields(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = evs_one(
        &api,
        &p,
        json!({"availability_zone": "nova", "size": 5, "volume_type": "SATA", "name": "shown", "description": "dsc", "multiattach": true}),
    )
    .await;
    let a = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    let b2 = api.get(&format!("/v2/{p}/os-vendor-volumes/{id}")).await.expect(200);
    for r in [&a, &b2] {
        let v = &r.body["volume"];
        assert_eq!(v["id"], id.as_str(), "{}", r.text);
        assert_eq!(v["name"], "shown");
        assert_eq!(v["description"], "dsc");
        assert_eq!(v["size"], 5);
        assert_eq!(v["status"], "available");
        assert_eq!(v["volume_type"], "SATA");
        assert_eq!(v["availability_zone"], "nova");
        assert_eq!(v["multiattach"], true, "{}", r.text);
        assert_eq!(v["bootable"], "false");
        assert_eq!(v["service_type"], "EVS", "{}", r.text);
        assert!(v["wwn"].as_str().is_some_and(|w| !w.is_empty()), "wwn: {}", r.text);
        assert!(v["tags"].is_object(), "tags must be a map: {}", r.text);
        assert!(v.get("shareable").is_some(), "{}", r.text);
        assert!(v["metadata"].is_object());
        assert_eq!(v["attachments"], json!([]));
        assert_eq!(v["os-vol-tenant-attr:tenant_id"], p.as_str());
        assert!(v.get("os-vol-host-attr:host").is_some(), "{}", r.text);
        assert!(v["links"].as_array().is_some_and(|l| !l.is_empty()), "{}", r.text);
        assert!(v["created_at"].is_string());
        assert_eq!(v["encrypted"], false);
    }
    assert_eq!(a.body["volume"]["wwn"], b2.body["volume"]["wwn"], "wwn is stable");
}

/// Three disks with distinct names, sizes, types, metadata and share flags; returns [a, b, c]
/// in creation order.
async fn three_disks(api: &Api, p: &str) -> Vec<String> {
    let mut ids = Vec::new();
    for spec in [
        json!({"availability_zone": "nova", "name": "ea", "size": 1, "volume_type": "SSD", "metadata": {"env": "prod"}}),
        json!({"availability_zone": "nova", "name": "eb", "size": 3, "volume_type": "SAS", "metadata": {"env": "dev"}, "multiattach": true}),
        json!({"availability_zone": "nova", "name": "ec", "size": 2, "volume_type": "SSD", "metadata": {"env": "prod", "x": "y"}}),
    ] {
        ids.push(evs_one(api, p, spec).await);
    }
    ids
}

async fn type_id(api: &Api, p: &str, name: &str) -> String {
    api.get(&format!("/v2/{p}/types")).await.expect(200).body["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .map(|t| s(t, "id"))
        .unwrap_or_else(|| panic!("no type {name}"))
}

async fn detail_filters(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ids = three_disks(&api, &p).await;
    let (a, b2, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    let d = format!("/v2/{p}/cloudvolumes/detail");
    let q = |query: String| {
        let api = api.clone();
        let d = d.clone();
        async move {
            let r = api.get(&format!("{d}?{query}")).await.expect(200);
            let got = set(ids_of(&r.body));
            assert_eq!(r.body["count"].as_u64(), Some(got.len() as u64), "{query}: count vs page: {}", r.text);
            got
        }
    };
    assert_eq!(q(String::new()).await, set(ids.clone()));
    let bogus = uuid::Uuid::new_v4();
    assert_eq!(q(format!("ids={}", enc(&format!("['{a}','{c}']")))).await, set([a.clone(), c.clone()]));
    assert_eq!(
        q(format!("ids={}", enc(&format!("['{a}','{bogus}']")))).await,
        set([a.clone()]),
        "invalid ids are ignored"
    );
    assert_eq!(q(format!("id={b2}")).await, set([b2.clone()]));
    assert_eq!(q(format!("id={b2}&ids={}", enc(&format!("['{a}']")))).await, set([a.clone()]), "ids wins over id");
    assert_eq!(q("name=eb".into()).await, set([b2.clone()]));
    assert_eq!(q("name=e".into()).await, set([]));
    assert_eq!(q("status=available".into()).await, set(ids.clone()));
    assert_eq!(q("status=creating".into()).await, set([]));
    assert_eq!(q("availability_zone=nova".into()).await, set(ids.clone()));
    assert_eq!(q("availability_zone=az-x".into()).await, set([]));
    assert_eq!(q(format!("metadata={}", enc(r#"{"env":"prod"}"#))).await, set([a.clone(), c.clone()]));
    assert_eq!(q(format!("metadata={}", enc(r#"{"env":"prod","x":"y"}"#))).await, set([c.clone()]));
    assert_eq!(q("multiattach=true".into()).await, set([b2.clone()]));
    assert_eq!(q("multiattach=false".into()).await, set([a.clone(), c.clone()]));
    let ssd = type_id(&api, &p, "SSD").await;
    assert_eq!(q(format!("volume_type_id={ssd}")).await, set([a.clone(), c.clone()]));
    assert_eq!(q(format!("volume_type_id={ssd}&name=ec&status=available")).await, set([c.clone()]));
}

async fn detail_paging_sorting_and_count(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ids = three_disks(&api, &p).await;
    let d = format!("/v2/{p}/cloudvolumes/detail");
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let get = |query: String| {
        let api = api.clone();
        let d = d.clone();
        async move { api.get(&format!("{d}?{query}")).await.expect(200).body }
    };
    // Default: created_at desc.
    assert_eq!(ids_of(&get(String::new()).await), newest_first);

    let page = get("limit=1".into()).await;
    assert_eq!(ids_of(&page), newest_first[..1].to_vec());
    assert_eq!(page["count"], 3, "count is not affected by paging: {page}");
    let next = next_link(&page["volumes_links"]).unwrap_or_else(|| panic!("no next link: {page}"));
    assert_eq!(query_param(&next, "marker").as_deref(), Some(newest_first[0].as_str()), "{next}");
    let page2 = api.get(&link_path(&next)).await.expect(200).body;
    assert_eq!(ids_of(&page2), newest_first[1..2].to_vec(), "following {next}");

    let r = get("offset=1".into()).await;
    assert_eq!(ids_of(&r), newest_first[1..].to_vec());
    assert_eq!(r["count"], 3);
    let r = get("offset=1&limit=1".into()).await;
    assert_eq!(ids_of(&r), newest_first[1..2].to_vec());
    assert_eq!(r["count"], 3);
    let r = get(format!("marker={}", newest_first[0])).await;
    assert_eq!(ids_of(&r), newest_first[1..].to_vec());
    assert_eq!(r["count"], 3);
    let r = get("limit=1000".into()).await;
    assert_eq!(ids_of(&r).len(), 3);
    assert!(next_link(&r["volumes_links"]).is_none(), "no next link when everything fits: {r}");

    // sizes: a=1, b=3, c=2
    let (a, b2, c) = (ids[0].clone(), ids[1].clone(), ids[2].clone());
    assert_eq!(ids_of(&get("sort_key=size&sort_dir=asc".into()).await), vec![a.clone(), c.clone(), b2.clone()]);
    assert_eq!(ids_of(&get("sort_key=size&sort_dir=desc".into()).await), vec![b2.clone(), c.clone(), a.clone()]);
    assert_eq!(ids_of(&get("sort_key=size".into()).await), vec![b2.clone(), c.clone(), a.clone()], "desc by default");
    assert_eq!(ids_of(&get("sort_key=created_at&sort_dir=asc".into()).await), ids);
    assert_eq!(ids_of(&get("sort_dir=asc".into()).await), ids);
    let mut by_id = ids.clone();
    by_id.sort();
    assert_eq!(ids_of(&get("sort_key=id&sort_dir=asc".into()).await), by_id);
    assert_eq!(ids_of(&get("sort_key=status&sort_dir=asc".into()).await).len(), 3);
    // Paging follows the sort.
    let r = get("sort_key=size&sort_dir=asc&limit=2".into()).await;
    assert_eq!(ids_of(&r), vec![a.clone(), c.clone()]);
    let next = next_link(&r["volumes_links"]).expect("next");
    assert_eq!(ids_of(&api.get(&link_path(&next)).await.expect(200).body), vec![b2.clone()], "{next}");
}

async fn vendor_detail_matches_cloudvolumes_detail(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ids = three_disks(&api, &p).await;
    for query in ["", "limit=2", "name=ea", "sort_key=size&sort_dir=asc", "multiattach=true"] {
        let x = api.get(&format!("/v2/{p}/cloudvolumes/detail?{query}")).await.expect(200).body;
        let y = api.get(&format!("/v2/{p}/os-vendor-volumes/detail?{query}")).await.expect(200).body;
        assert_eq!(ids_of(&x), ids_of(&y), "{query}");
        assert_eq!(x["count"], y["count"], "{query}");
        assert!(y["volumes"][0]["service_type"] == "EVS", "{y}");
    }
    let _ = ids;
}

async fn deprecated_list_has_id_links_name(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id =
        evs_one(&api, &p, json!({"availability_zone": "nova", "name": "old-list", "size": 1, "volume_type": "SSD"}))
            .await;
    let r = api.get(&format!("/v2/{p}/cloudvolumes")).await.expect(200);
    let vols = r.body["volumes"].as_array().unwrap_or_else(|| panic!("{}", r.text));
    assert_eq!(vols.len(), 1);
    let keys: BTreeSet<&str> = vols[0].as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, BTreeSet::from(["id", "links", "name"]), "{}", r.text);
    assert_eq!(vols[0]["id"], id.as_str());
    assert_eq!(vols[0]["name"], "old-list");
}

async fn update_name_and_description(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = evs_one(&api, &p, json!({"availability_zone": "nova", "name": "before", "size": 1, "volume_type": "SSD"}))
        .await;
    let path = format!("/v2/{p}/cloudvolumes/{id}");
    // Reference 6.1.4 (and the SDK's UpdateVolumeResponse): the disk's fields at top level.
    let r = api.put(&path, json!({"volume": {"name": "after", "description": "new desc"}})).await.expect(200);
    assert_eq!(r.body["id"], id.as_str(), "{}", r.text);
    assert_eq!(r.body["name"], "after", "{}", r.text);
    assert_eq!(r.body["description"], "new desc", "{}", r.text);
    assert_eq!(r.body["status"], "available", "{}", r.text);
    let v = api.get(&path).await.expect(200).body["volume"].clone();
    assert_eq!(v["name"], "after");
    assert_eq!(v["description"], "new desc");
    // Only the name.
    let r = api.put(&path, json!({"volume": {"name": "only-name"}})).await.expect(200);
    assert_eq!(r.body["name"], "only-name");
    assert_eq!(r.body["description"], "new desc");
    // Errors.
    api.put(&path, json!({"volume": {"name": "n".repeat(256)}})).await.expect_evs_error(400, "EVS.1003");
    api.put(&path, json!({"volume": {"description": "d".repeat(256)}})).await.expect_evs_error(400, "EVS.1004");
    for body in [json!({"volume": {}}), json!({"volume": {"name": null, "description": null}})] {
        let r = api.put(&path, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        assert!(r.body["error"]["code"].as_str().is_some_and(|c| c.starts_with("EVS.")), "{body}: {}", r.text);
    }
    api.request(reqwest::Method::PUT, &path, &[], Some("{bad".into())).await.expect_evs_error(400, "EVS.5400");
    api.put(&format!("/v2/{p}/cloudvolumes/{}", uuid::Uuid::new_v4()), json!({"volume": {"name": "x"}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    assert_eq!(api.get(&path).await.expect(200).body["volume"]["name"], "only-name");
}

async fn delete_returns_a_job_and_removes_the_file(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = evs_one(&api, &p, json!({"availability_zone": "nova", "name": "doomed", "size": 2, "volume_type": "SSD"}))
        .await;
    assert!(srv.volume_path(&id).exists());
    let r = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    let job_id = s(&r.body, "job_id");
    let job = api.wait_job_success(&p, &job_id).await;
    assert_eq!(job["job_type"], "deleteVolume", "{job}");
    assert_eq!(job["entities"]["volume_id"], id.as_str(), "{job}");
    assert!(!srv.volume_path(&id).exists(), "file still there after deleteVolume SUCCESS");
    api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect_evs_error(404, "EVS.5404");
    api.get(&format!("/v2/{p}/os-vendor-volumes/{id}")).await.expect_evs_error(404, "EVS.5404");
    api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect_evs_error(404, "EVS.5404");
    // The job stays readable after the disk is gone.
    let job = api.get(&format!("/v1/{p}/jobs/{job_id}")).await.expect(200).body;
    assert_eq!(job["status"], "SUCCESS");
    let r = api.get(&format!("/v2/{p}/cloudvolumes/detail")).await.expect(200);
    assert_eq!(r.body["count"], 0, "{}", r.text);
}

async fn create_errors_use_evs_codes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let base = json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD", "name": "bad"});
    let with = |patch: Value| {
        let mut v = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        json!({ "volume": v })
    };
    let cases = [
        (with(json!({"size": 0})), "EVS.1010"),
        (with(json!({"size": 32769})), "EVS.1010"),
        (with(json!({"size": -5})), "EVS.1010"),
        (with(json!({"count": 0})), "EVS.1021"),
        (with(json!({"count": 101})), "EVS.1021"),
        (with(json!({"availability_zone": "no-such-az"})), "EVS.1036"),
        (with(json!({"volume_type": "NO-SUCH-TYPE"})), "EVS.1020"),
        (with(json!({"snapshot_id": uuid::Uuid::new_v4(), "imageRef": uuid::Uuid::new_v4()})), "EVS.1016"),
        (with(json!({"snapshot_id": uuid::Uuid::new_v4(), "backup_id": uuid::Uuid::new_v4()})), "EVS.1016"),
        (with(json!({"name": "n".repeat(256)})), "EVS.1003"),
        (with(json!({"name": "n".repeat(251), "count": 2})), "EVS.1003"),
        (with(json!({"description": "d".repeat(256)})), "EVS.1004"),
        (with(json!({"metadata": {"full_clone": "2"}})), "EVS.1063"),
        (with(json!({"metadata": {"hw:passthrough": "maybe"}})), "EVS.1057"),
    ];
    for prefix in ["v2", "v2.1"] {
        let path = format!("/{prefix}/{p}/cloudvolumes");
        for (body, code) in &cases {
            let r = api.post(&path, body.clone()).await;
            assert_eq!(r.status, 400, "{path} {body} answered {}: {}", r.status, r.text);
            r.expect_evs_error(400, code);
        }
        for raw in ["{not json", "", "[1,2]", "{\"volume\": \"x\"}"] {
            let r = api.post_raw(&path, raw).await;
            assert_eq!(r.status, 400, "{path} {raw:?}: {}", r.text);
            if raw == "{not json" || raw.is_empty() {
                r.expect_evs_error(400, "EVS.5400");
            } else {
                assert!(r.body["error"]["code"].as_str().is_some_and(|c| c.starts_with("EVS.")), "{raw:?}: {}", r.text);
            }
        }
        // The maximum is accepted in shape (size 32768 fits with over-subscription on most
        // machines, but we do not create it here); count 100 is checked in the batch test.
    }
    let r = api.get(&format!("/v2/{p}/cloudvolumes/detail")).await.expect(200);
    assert_eq!(r.body["count"], 0, "bad input left a disk behind: {}", r.text);
}

async fn list_errors_use_evs_codes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    evs_one(&api, &p, json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD"})).await;
    for list in ["cloudvolumes/detail", "os-vendor-volumes/detail"] {
        let d = format!("/v2/{p}/{list}");
        api.get(&format!("{d}?limit=0")).await.expect_evs_error(400, "EVS.1023");
        let r = api.get(&format!("{d}?limit=1001")).await;
        assert_eq!(r.status, 400, "{}", r.text);
        let code = r.body["error"]["code"].as_str().unwrap_or_default().to_string();
        assert!(code == "EVS.1023" || code == "EVS.2142", "limit=1001: {}", r.text);
        let r = api.get(&format!("{d}?limit=abc")).await;
        assert_eq!(r.status, 400, "{}", r.text);
        let code = r.body["error"]["code"].as_str().unwrap_or_default().to_string();
        assert!(code == "EVS.1023" || code == "EVS.5400", "limit=abc: {}", r.text);
        api.get(&format!("{d}?marker={}", uuid::Uuid::new_v4())).await.expect_evs_error(400, "EVS.1024");
        api.get(&format!("{d}?marker=not-a-uuid")).await.expect_evs_error(400, "EVS.1024");
        api.get(&format!("{d}?sort_key=bogus")).await.expect_evs_error(400, "EVS.1039");
        api.get(&format!("{d}?sort_dir=sideways")).await.expect_evs_error(400, "EVS.1040");
        let r = api.get(&format!("{d}?offset=-1")).await;
        assert_eq!(r.status, 400, "offset=-1: {}", r.text);
        assert!(r.body["error"]["code"].as_str().is_some_and(|c| c.starts_with("EVS.")), "{}", r.text);
    }
}

async fn unknown_volume_and_job_are_404(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let missing = uuid::Uuid::new_v4();
    for path in [
        format!("/v2/{p}/cloudvolumes/{missing}"),
        format!("/v2/{p}/os-vendor-volumes/{missing}"),
        format!("/v2/{p}/cloudvolumes/does-not-exist"),
    ] {
        api.get(&path).await.expect_evs_error(404, "EVS.5404");
    }
    api.delete(&format!("/v2/{p}/cloudvolumes/{missing}")).await.expect_evs_error(404, "EVS.5404");
    api.delete(&format!("/v2/{p}/cloudvolumes/does-not-exist")).await.expect_evs_error(404, "EVS.5404");
    let r = api.get(&format!("/v1/{p}/jobs/{}", uuid::Uuid::new_v4().simple())).await;
    assert!(matches!(r.status, 400 | 404), "unknown job answered {}: {}", r.status, r.text);
    assert!(r.body["error"]["code"].is_string(), "unknown job needs an EVS error body: {}", r.text);
}

/// Deleting is only allowed from the statuses EVS.1046 lists; an `available` disk deletes, a
/// disk already `deleting` does not (checked here through the race-free path: a second delete
/// after the first job finished is a 404, and a delete while the first is in flight is 400).
async fn delete_is_refused_in_error_deleting_free_statuses_only(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = evs_one(&api, &p, json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD"})).await;
    let first = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    let second = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await;
    match second.status {
        400 => {
            second.expect_evs_error(400, "EVS.1046");
        }
        404 => {
            second.expect_evs_error(404, "EVS.5404");
        }
        other => panic!("second delete answered {other}: {}", second.text),
    }
    api.wait_job_success(&p, &s(&first.body, "job_id")).await;
}

/// Reference 6.1.1: "If the specified value is a decimal, the number part of the value will be
/// used" (for `size` and `count`).
async fn decimal_size_and_count_are_truncated(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let r = api
        .evs_create(
            &p,
            json!({"availability_zone": "nova", "name": "dec", "size": 2.7, "count": 2.9, "volume_type": "SSD"}),
        )
        .await;
    let ids = r["volume_ids"].as_array().expect("volume_ids").clone();
    assert_eq!(ids.len(), 2, "count 2.9 means 2: {r}");
    api.wait_job_success(&p, &s(&r, "job_id")).await;
    for id in ids {
        let id = id.as_str().unwrap();
        let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body["volume"].clone();
        assert_eq!(v["size"], 2, "size 2.7 means 2: {v}");
        assert_sparse_file(&srv.volume_path(id), 2);
    }
}
