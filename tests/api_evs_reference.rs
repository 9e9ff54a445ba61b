//! The EVS reference, whole (issue 11 part A): every field of an EVS create (6.1.1, 7.1.1 and
//! the SDK's `CreateVolumeRequestBody`) is honoured or refused with appendix A.1's code; the
//! list filters and view fields of 6.1.2/7.1.5/7.3.5; `bssParam` beside `os-extend`; jobs,
//! `Common.0018` and version discovery (5.1, 8.1.1); transfers of system disks (7.4.1);
//! `/extensions` (7.1.16); clone sources we cannot serve; `count` on the v2 Cinder create.
//! One shared daemon per backend; each test uses its own project. Every refused request is
//! checked to have created nothing.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{enc, project, s, shared, unique, Api, Backend, Opts, TestServer};

backend_tests!(
    create_honours_tags_enterprise_project_server_and_pool,
    create_refuses_what_it_cannot_honour,
    snapshot_source_gives_its_type_and_encryption,
    system_disk_size_rule,
    encrypted_metadata_shows_in_every_view,
    list_filters_and_limits,
    snapshot_lists_filter_by_zone,
    view_fields_have_the_reference_types,
    extend_accepts_bss_param,
    unknown_jobs_and_versions,
    transfers_follow_the_reference_on_v2,
    extensions_list_what_is_served,
    clone_sources_are_cloned_or_refused,
    count_on_the_v2_cinder_create,
    iops_and_throughput_limit_the_nbd_export,
);

const DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(25);

/// The EVS create body with our zone and `extra` merged into `volume`.
fn body(extra: Value) -> Value {
    let mut v = json!({"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": unique("ref")});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        for (k, x) in e {
            o.insert(k.clone(), x.clone());
        }
    }
    json!({ "volume": v })
}

/// Create on `POST /v2/{p}/cloudvolumes` with a whole body; wait for the job; the disk.
async fn evs_create_body(api: &Api, p: &str, whole: Value) -> Value {
    let r = api.post(&format!("/v2/{p}/cloudvolumes"), whole).await.expect(200);
    api.wait_job_success(p, &s(&r.body, "job_id")).await;
    let id = r.body["volume_ids"][0].as_str().expect("volume id").to_string();
    api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body["volume"].clone()
}

/// How many disks the project has (a refused create must leave it unchanged).
async fn disk_count(api: &Api, p: &str) -> i64 {
    api.get(&format!("/v2/{p}/cloudvolumes/detail")).await.expect(200).body["count"].as_i64().expect("count")
}

async fn snapshot_of(api: &Api, p: &str, volume_id: &str) -> String {
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": volume_id}})).await.expect(202);
    let id = s(&r.body["snapshot"], "id");
    let deadline = Instant::now() + DEADLINE;
    loop {
        let r = api.get(&format!("/v3/{p}/snapshots/{id}")).await.expect(200);
        if r.body["snapshot"]["status"] == "available" {
            return id;
        }
        assert!(Instant::now() < deadline, "snapshot {id} never became available: {}", r.text);
        tokio::time::sleep(POLL).await;
    }
}

async fn create_honours_tags_enterprise_project_server_and_pool(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ep = uuid::Uuid::new_v4().to_string();
    let server = uuid::Uuid::new_v4().to_string();
    // The body the SDK's CreateVolumeRequestBody serialises, every field set.
    let v = evs_create_body(
        &api,
        &p,
        json!({
            "bssParam": {"chargingMode": "postPaid", "isAutoPay": "true"},
            "server_id": server,
            "OS-SCH-HNT:scheduler_hints": {"dedicated_storage_id": "default"},
            "volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 2, "name": "full",
                       "tags": {"env": "prod", "team": "storage"}, "enterprise_project_id": ep,
                       "iops": 3000, "throughput": 125, "multiattach": false, "metadata": {"k": "v"}},
        }),
    )
    .await;
    let id = s(&v, "id");
    assert_eq!(v["tags"], json!({"env": "prod", "team": "storage"}), "{v}");
    assert_eq!(v["enterprise_project_id"], ep.as_str(), "{v}");
    assert_eq!(v["dedicated_storage_id"], "default", "{v}");
    assert_eq!(v["dedicated_storage_name"], "default", "{v}");
    assert_eq!(v["iops"]["total_val"], 3000, "{v}");
    assert_eq!(v["throughput"]["total_val"], 125, "{v}");
    assert_eq!(v["status"], "in-use", "a disk created for a server is attached to it: {v}");
    let att = v["attachments"].as_array().expect("attachments");
    assert_eq!(att.len(), 1, "{v}");
    assert_eq!(att[0]["server_id"], server.as_str(), "{v}");
    // The tags are the disk's tags for the tag APIs too (6.3.4).
    let tags = api.get(&format!("/v2/{p}/cloudvolumes/{id}/tags")).await.expect(200).body;
    assert_eq!(tags["tags"].as_array().map(Vec::len), Some(2), "{tags}");
    // A plain disk beside it, for the filters.
    let plain = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    for list in [format!("/v2/{p}/cloudvolumes/detail"), format!("/v2/{p}/os-vendor-volumes/detail")] {
        assert_eq!(api.volume_ids(&format!("{list}?server_id={server}")).await, vec![id.clone()], "{list}");
        assert_eq!(api.volume_ids(&format!("{list}?enterprise_project_id={ep}")).await, vec![id.clone()]);
        assert_eq!(api.volume_ids(&format!("{list}?enterprise_project_id=0")).await, vec![plain.clone()]);
        assert_eq!(api.volume_ids(&format!("{list}?enterprise_project_id=all_granted_eps")).await.len(), 2);
        assert_eq!(api.volume_ids(&format!("{list}?dedicated_storage_id=default")).await, vec![id.clone()]);
        assert_eq!(api.volume_ids(&format!("{list}?dedicated_storage_name=efau")).await, vec![id.clone()]);
        assert!(api.volume_ids(&format!("{list}?dedicated_storage_name=%25")).await.is_empty(), "{list}");
        assert!(api.volume_ids(&format!("{list}?server_id={}", uuid::Uuid::new_v4())).await.is_empty());
    }
    // The Cinder v2 detail (7.1.5) takes the same filters.
    assert_eq!(api.volume_ids(&format!("/v2/{p}/volumes/detail?server_id={server}")).await, vec![id.clone()]);
    assert_eq!(api.volume_ids(&format!("/v2/{p}/volumes/detail?enterprise_project_id={ep}")).await, vec![id.clone()]);
    // The attachment is a real record: detaching frees the disk, which then deletes.
    api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({"os-detach": {}})).await.expect(202);
    api.wait_volume_status(&p, &id, &["available"]).await;
    let r = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    api.wait_job_success(&p, &s(&r.body, "job_id")).await;
}

async fn create_refuses_what_it_cannot_honour(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let eleven: serde_json::Map<String, Value> = (0..11).map(|i| (format!("k{i}"), json!("v"))).collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (body(json!({"tags": eleven})), 400, "EVS.5400"),
        (body(json!({"tags": {"bad key!": "v"}})), 400, "EVS.5400"),
        (body(json!({"tags": {"k": "bad/value"}})), 400, "EVS.5400"),
        (body(json!({"tags": {"k": 1}})), 400, "EVS.5400"),
        (body(json!({"enterprise_project_id": "not-a-project"})), 400, "EVS.5400"),
        (body(json!({"iops": 0})), 400, "EVS.2050"),
        (body(json!({"iops": "many"})), 400, "EVS.2050"),
        (body(json!({"throughput": 1_000_000_000})), 400, "EVS.2050"),
        (body(json!({"consistencygroup_id": "x"})), 400, "EVS.1009"),
        (body(json!({"source_volid": uuid::Uuid::new_v4().to_string()})), 400, "EVS.1009"),
        (body(json!({"source_replica": uuid::Uuid::new_v4().to_string()})), 400, "EVS.1009"),
        (body(json!({"source_volume_id": uuid::Uuid::new_v4().to_string()})), 400, "EVS.1009"),
        (body(json!({"backup_id": uuid::Uuid::new_v4().to_string()})), 400, "EVS.1006"),
    ];
    let with_top = |k: &str, v: Value| {
        let mut b = body(json!({}));
        b[k] = v;
        b
    };
    let more: Vec<(Value, u16, &str)> = vec![
        (with_top("bogus", json!(1)), 400, "EVS.5400"),
        (with_top("server_id", json!(7)), 400, "EVS.5400"),
        (with_top("server_id", json!("")), 400, "EVS.5400"),
        (
            with_top("bssParam", json!({"chargingMode": "prePaid", "periodType": "month", "periodNum": 1})),
            400,
            "EVS.2108",
        ),
        (with_top("bssParam", json!({"chargingMode": "free"})), 400, "EVS.2108"),
        (with_top("bssParam", json!({"isAutoPay": true})), 400, "EVS.2108"),
        (with_top("bssParam", json!({"coupon": "x"})), 400, "EVS.2108"),
        (with_top("bssParam", json!("postPaid")), 400, "EVS.2108"),
        (with_top("OS-SCH-HNT:scheduler_hints", json!({"dedicated_storage_id": "no-such-pool"})), 400, "EVS.5400"),
        (with_top("OS-SCH-HNT:scheduler_hints", json!({"same_host": "x"})), 400, "EVS.5400"),
        (with_top("OS-SCH-HNT:scheduler_hints", json!([])), 400, "EVS.5400"),
    ];
    for (req, status, code) in cases.into_iter().chain(more) {
        api.post(&format!("/v2/{p}/cloudvolumes"), req.clone()).await.expect_evs_error(status, code);
        api.post(&format!("/v2.1/{p}/cloudvolumes"), req).await.expect_evs_error(status, code);
    }
    assert_eq!(disk_count(&api, &p).await, 0, "a refused create must create nothing");
    // The hint's pool must be in the requested zone.
    let mut other_zone = body(json!({"availability_zone": "nova"}));
    other_zone["OS-SCH-HNT:scheduler_hints"] = json!({"dedicated_storage_id": "default"});
    other_zone["volume"]["availability_zone"] = json!("elsewhere");
    api.post(&format!("/v2/{p}/cloudvolumes"), other_zone).await.expect_evs_error(400, "EVS.1036");
    assert_eq!(disk_count(&api, &p).await, 0);
}

async fn snapshot_source_gives_its_type_and_encryption(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let cmk = uuid::Uuid::new_v4().to_string();
    let src =
        evs_create_body(&api, &p, body(json!({"metadata": {"__system__encrypted": "1", "__system__cmkid": cmk}})))
            .await;
    assert_eq!(src["encrypted"], true, "{src}");
    let snap = snapshot_of(&api, &p, &s(&src, "id")).await;
    // 6.1.1: from a snapshot the new disk has the source's type, whatever volume_type says.
    let v = evs_create_body(&api, &p, body(json!({"snapshot_id": snap, "volume_type": "SAS"}))).await;
    assert_eq!(v["volume_type"], "SSD", "{v}");
    assert_eq!(v["snapshot_id"], snap.as_str(), "{v}");
    // …and is encrypted as its source is.
    assert_eq!(v["encrypted"], true, "{v}");
    assert_eq!(v["metadata"]["__system__cmkid"], cmk.as_str(), "{v}");
    // A dedicated pool other than the snapshot's is refused; the snapshot's own is fine.
    let mut elsewhere = body(json!({"snapshot_id": snap}));
    elsewhere["OS-SCH-HNT:scheduler_hints"] = json!({"dedicated_storage_id": "nope"});
    api.post(&format!("/v2/{p}/cloudvolumes"), elsewhere).await.expect_evs_error(400, "EVS.5400");
    let mut same = body(json!({"snapshot_id": snap}));
    same["OS-SCH-HNT:scheduler_hints"] = json!({"dedicated_storage_id": "default"});
    let v = evs_create_body(&api, &p, same).await;
    assert_eq!(v["dedicated_storage_id"], "default", "{v}");
    // Encryption keys are refused from a snapshot (EVS.1043), not silently dropped.
    api.post(
        &format!("/v2/{p}/cloudvolumes"),
        body(json!({"snapshot_id": snap, "metadata": {"__system__encrypted": "0"}})),
    )
    .await
    .expect_evs_error(400, "EVS.1043");
}

async fn system_disk_size_rule(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let src = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    api.post(&format!("/v3/{p}/volumes/{src}/action"), json!({"os-set_bootable": {"bootable": true}}))
        .await
        .expect(200);
    let snap = snapshot_of(&api, &p, &src).await;
    let before = disk_count(&api, &p).await;
    // A bootable source makes a system disk: 1 to 1024 GB (6.1.1).
    api.post(&format!("/v2/{p}/cloudvolumes"), body(json!({"snapshot_id": snap, "size": 1025})))
        .await
        .expect_evs_error(400, "EVS.1010");
    assert_eq!(disk_count(&api, &p).await, before);
    let v = evs_create_body(&api, &p, body(json!({"snapshot_id": snap, "size": 2}))).await;
    assert_eq!(v["bootable"], "true", "{v}");
    assert_eq!(v["size"], 2, "{v}");
    // A data disk may be larger: the rule does not apply (the pool may still be too small).
    let r = api.post(&format!("/v2/{p}/cloudvolumes"), body(json!({"size": 1025}))).await;
    if r.status == 200 {
        api.wait_job_success(&p, &s(&r.body, "job_id")).await;
        let id = r.body["volume_ids"][0].as_str().expect("id").to_string();
        let d = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
        api.wait_job_success(&p, &s(&d.body, "job_id")).await;
    } else {
        r.expect_evs_error(400, "EVS.2072");
    }
    // An image given makes a system disk too.
    let image = raw_image(&srv, &api, &p).await;
    api.post(&format!("/v2/{p}/cloudvolumes"), body(json!({"imageRef": image, "size": 1025})))
        .await
        .expect_evs_error(400, "EVS.1010");
    assert_eq!(disk_count(&api, &p).await, before + 1);
    let v = evs_create_body(&api, &p, body(json!({"imageRef": image, "size": 2}))).await;
    assert_eq!(v["bootable"], "true", "{v}");
}

/// An active 1 MiB raw image of project `p`; its id.
async fn raw_image(srv: &TestServer, api: &Api, p: &str) -> String {
    let r = api
        .request(
            reqwest::Method::POST,
            "/image/v2/images",
            &[("X-Project-Id", p)],
            Some(json!({"name": unique("img"), "disk_format": "raw", "container_format": "bare"}).to_string()),
        )
        .await
        .expect(201);
    let id = s(&r.body, "id");
    let put = reqwest::Client::new()
        .put(format!("{}/image/v2/images/{id}/file", srv.base_url()))
        .header("X-Project-Id", p)
        .header("Content-Type", "application/octet-stream")
        .body(vec![0u8; 1 << 20])
        .send()
        .await
        .expect("upload");
    assert_eq!(put.status().as_u16(), 204, "upload: {:?}", put.text().await);
    let r = api.get_h(&format!("/image/v2/images/{id}"), &[("X-Project-Id", p)]).await.expect(200);
    assert_eq!(r.body["status"], "active", "{}", r.text);
    id
}

async fn encrypted_metadata_shows_in_every_view(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let cmk = uuid::Uuid::new_v4().to_string();
    let v = evs_create_body(&api, &p, body(json!({"metadata": {"__system__encrypted": "1", "__system__cmkid": cmk}})))
        .await;
    let id = s(&v, "id");
    assert_eq!(v["encrypted"], true, "EVS show: {v}");
    for path in
        [format!("/v2/{p}/os-vendor-volumes/{id}"), format!("/v2/{p}/volumes/{id}"), format!("/v3/{p}/volumes/{id}")]
    {
        let r = api.get(&path).await.expect(200);
        assert_eq!(r.body["volume"]["encrypted"], true, "{path}: {}", r.text);
    }
    for path in
        [format!("/v2/{p}/cloudvolumes/detail"), format!("/v2/{p}/volumes/detail"), format!("/v3/{p}/volumes/detail")]
    {
        let vols = api.volumes(&path).await;
        assert_eq!(vols[0]["encrypted"], true, "{path}: {vols:?}");
    }
    // `__system__encrypted = 0` is a plain disk.
    let plain = evs_create_body(&api, &p, body(json!({"metadata": {"__system__encrypted": "0"}}))).await;
    assert_eq!(plain["encrypted"], false, "{plain}");
}

async fn list_filters_and_limits(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let a = s(&evs_create_body(&api, &p, body(json!({"metadata": {"tier": "gold"}}))).await, "id");
    let c = s(&evs_create_body(&api, &p, body(json!({"metadata": {"tier": "bronze"}}))).await, "id");
    let not_gold = enc(r#"{"tier":"gold"}"#);
    for list in [
        format!("/v2/{p}/cloudvolumes/detail"),
        format!("/v2/{p}/os-vendor-volumes/detail"),
        format!("/v2/{p}/volumes/detail"),
    ] {
        assert_eq!(api.volume_ids(&format!("{list}?not_metadata={not_gold}")).await, vec![c.clone()], "{list}");
        assert_eq!(api.volume_ids(&format!("{list}?metadata={not_gold}")).await, vec![a.clone()], "{list}");
    }
    api.get(&format!("/v2/{p}/cloudvolumes/detail?not_metadata=nope")).await.expect_evs_error(400, "EVS.1058");
    // limit=0 is refused as the reference says (1 to 1000).
    for list in [format!("/v2/{p}/cloudvolumes/detail"), format!("/v2/{p}/os-vendor-volumes/detail")] {
        api.get(&format!("{list}?limit=0")).await.expect_evs_error(400, "EVS.1023");
    }
    api.get(&format!("/v2/{p}/volumes/detail?limit=0")).await.expect_fault(400, "badRequest");
    api.get(&format!("/v2/{p}/volumes?limit=0")).await.expect_fault(400, "badRequest");
    // Cinder v3 keeps Cinder's answer: an empty page.
    let r = api.get(&format!("/v3/{p}/volumes/detail?limit=0")).await.expect(200);
    assert_eq!(r.body["volumes"], json!([]), "{}", r.text);
    // Another service type holds nothing here.
    assert!(api.volume_ids(&format!("/v2/{p}/cloudvolumes/detail?service_type=DSS")).await.is_empty());
    assert_eq!(api.volume_ids(&format!("/v2/{p}/cloudvolumes/detail?service_type=EVS")).await.len(), 2);
}

async fn snapshot_lists_filter_by_zone(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let v = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    let snap = snapshot_of(&api, &p, &v).await;
    for list in [
        format!("/v2/{p}/cloudsnapshots/detail"),
        format!("/v2/{p}/cloudsnapshots"),
        format!("/v2/{p}/snapshots/detail"),
        format!("/v3/{p}/snapshots/detail"),
    ] {
        let here = api.get(&format!("{list}?availability_zone=nova")).await.expect(200).body;
        let ids: Vec<String> = here["snapshots"].as_array().expect("snapshots").iter().map(|x| s(x, "id")).collect();
        assert_eq!(ids, vec![snap.clone()], "{list}: {here}");
        let there = api.get(&format!("{list}?availability_zone=elsewhere")).await.expect(200).body;
        assert_eq!(there["snapshots"], json!([]), "{list}: {there}");
    }
    // The SDK's ListSnapshotsRequest filters on cloudsnapshots: repeated id, service_type,
    // enterprise_project_id and the dedicated storage of the snapshot's disk.
    let ep = uuid::Uuid::new_v4().to_string();
    let mut placed = body(json!({"enterprise_project_id": ep}));
    placed["OS-SCH-HNT:scheduler_hints"] = json!({"dedicated_storage_id": "default"});
    let w = s(&evs_create_body(&api, &p, placed).await, "id");
    let snap2 = snapshot_of(&api, &p, &w).await;
    let ids_of = |b: &Value| -> Vec<String> {
        let mut v: Vec<String> = b["snapshots"].as_array().expect("snapshots").iter().map(|x| s(x, "id")).collect();
        v.sort();
        v
    };
    let d = format!("/v2/{p}/cloudsnapshots/detail");
    let mut both = vec![snap.clone(), snap2.clone()];
    both.sort();
    for (query, want) in [
        (format!("id={snap}&id={snap2}"), both.clone()),
        (format!("id={snap2}"), vec![snap2.clone()]),
        ("service_type=DSS".to_string(), vec![]),
        ("service_type=EVS".to_string(), both.clone()),
        (format!("enterprise_project_id={ep}"), vec![snap2.clone()]),
        ("enterprise_project_id=0".to_string(), vec![snap.clone()]),
        ("enterprise_project_id=all_granted_eps".to_string(), both.clone()),
        ("dedicated_storage_id=default".to_string(), vec![snap2.clone()]),
        ("dedicated_storage_name=faul".to_string(), vec![snap2.clone()]),
    ] {
        let r = api.get(&format!("{d}?{query}")).await.expect(200).body;
        assert_eq!(ids_of(&r), want, "{query}: {r}");
    }
}

async fn view_fields_have_the_reference_types(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let v = evs_create_body(&api, &p, body(json!({"multiattach": true}))).await;
    let id = s(&v, "id");
    let list = api.volumes(&format!("/v2/{p}/cloudvolumes/detail")).await;
    for (what, x) in [("show", &v), ("detail", &list[0])] {
        assert!(x["serial_number"].is_string(), "{what}: serial_number: {x}");
        assert_eq!(x["shareable"], "true", "{what}: shareable is a string: {x}");
        assert_eq!(x["multiattach"], true, "{what}: {x}");
        for k in ["storage_cluster_id", "os-volume-replication:extended_status", "os-volume-replication:driver_data"] {
            assert!(x.get(k).is_some_and(|f| f.is_null() || f.is_string()), "{what}: {k}: {x}");
        }
        assert!(x["volume_image_metadata"].is_object(), "{what}: volume_image_metadata: {x}");
        assert_eq!(x["enterprise_project_id"], "0", "{what}: {x}");
        assert!(x["dedicated_storage_id"].is_null(), "{what}: not placed by a hint: {x}");
        assert!(x.get("iops").is_none() && x.get("throughput").is_none(), "{what}: none asked for: {x}");
        assert_eq!(x["id"], id.as_str());
    }
    // The reference's v2 Cinder views (7.1.5, 7.1.6) carry them too; v3 stays Cinder's.
    let shown = api.get(&format!("/v2/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    let listed = api.volumes(&format!("/v2/{p}/volumes/detail")).await;
    for (what, x) in [("v2 show", &shown), ("v2 detail", &listed[0])] {
        assert_eq!(x["shareable"], "true", "{what}: {x}");
        assert!(x.get("storage_cluster_id").is_some_and(Value::is_null), "{what}: {x}");
        assert!(x.get("os-volume-replication:extended_status").is_some_and(Value::is_null), "{what}: {x}");
        assert!(x["volume_image_metadata"].is_object(), "{what}: {x}");
    }
    let v3 = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert!(v3.get("shareable").is_none() && v3.get("storage_cluster_id").is_none(), "v3 is Cinder's: {v3}");
}

async fn extend_accepts_bss_param(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    // The SDK's ResizeVolumeRequestBody: bssParam beside os-extend.
    let r = api
        .post(
            &format!("/v2.1/{p}/cloudvolumes/{id}/action"),
            json!({"bssParam": {"isAutoPay": "true"}, "os-extend": {"new_size": 3}}),
        )
        .await
        .expect(200);
    api.wait_job_success(&p, &s(&r.body, "job_id")).await;
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body;
    assert_eq!(v["volume"]["size"], 3, "{v}");
    for bad in [json!({"isAutoPay": 1}), json!({"chargingMode": "postPaid"}), json!([])] {
        api.post(&format!("/v2/{p}/cloudvolumes/{id}/action"), json!({"bssParam": bad, "os-extend": {"new_size": 4}}))
            .await
            .expect_evs_error(400, "EVS.2108");
    }
    // bssParam alone is no action.
    api.post(&format!("/v2/{p}/cloudvolumes/{id}/action"), json!({"bssParam": {"isAutoPay": "true"}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body;
    assert_eq!(v["volume"]["size"], 3, "a refused extend changes nothing: {v}");
}

async fn unknown_jobs_and_versions(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    // 8.1.1 / A.1: a job id that matches no job is Common.0011 (400).
    api.get(&format!("/v1/{p}/jobs/{}", uuid::Uuid::new_v4().simple())).await.expect_evs_error(400, "Common.0011");
    api.get(&format!("/v1/{p}/jobs/not-a-job")).await.expect_evs_error(400, "Common.0011");
    // Another project's job is unknown to this one.
    let r = api.post(&format!("/v2/{p}/cloudvolumes"), body(json!({}))).await.expect(200);
    let job = s(&r.body, "job_id");
    api.wait_job_success(&p, &job).await;
    // 5.1: GET / lists v3, v2 and v1; each answers alone (5.2).
    let r = api.get("/").await.expect(300);
    let ids: Vec<String> = r.body["versions"].as_array().expect("versions").iter().map(|v| s(v, "id")).collect();
    assert_eq!(ids, vec!["v3.0", "v2.0", "v1.0"], "{}", r.text);
    for v in r.body["versions"].as_array().expect("versions") {
        for k in ["min_version", "version", "status", "updated"] {
            assert!(v[k].is_string(), "{k} in {v}");
        }
        assert!(v["media-types"].is_array() && v["links"].is_array(), "{v}");
    }
    assert_eq!(r.body["versions"][1]["status"], "SUPPORTED");
    assert_eq!(r.body["versions"][2]["status"], "SUPPORTED");
    for (path, id) in [("/v1", "v1.0"), ("/v1/", "v1.0"), ("/v2", "v2.0")] {
        let r = api.get(path).await.expect(200);
        assert_eq!(r.body["versions"][0]["id"], id, "{path}: {}", r.text);
    }
}

async fn transfers_follow_the_reference_on_v2(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    // 7.4.1: name is mandatory on the reference's v2 API.
    for t in [json!({"volume_id": id}), json!({"volume_id": id, "name": null}), json!({"volume_id": id, "name": " "})] {
        api.post(&format!("/v2/{p}/os-volume-transfer"), json!({"transfer": t})).await.expect_fault(400, "badRequest");
    }
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body;
    assert_eq!(v["volume"]["status"], "available", "a refused transfer changes nothing: {v}");
    // A system (bootable) disk cannot be transferred on v2.
    api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({"os-set_bootable": {"bootable": true}})).await.expect(200);
    api.post(&format!("/v2/{p}/os-volume-transfer"), json!({"transfer": {"volume_id": id, "name": "t"}}))
        .await
        .expect_fault(400, "badRequest");
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body;
    assert_eq!(v["volume"]["status"], "available", "{v}");
    // A data disk with a name transfers.
    api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({"os-set_bootable": {"bootable": false}}))
        .await
        .expect(200);
    let r = api
        .post(&format!("/v2/{p}/os-volume-transfer"), json!({"transfer": {"volume_id": id, "name": "t"}}))
        .await
        .expect(202);
    assert!(r.body["transfer"]["auth_key"].is_string(), "{}", r.text);
}

async fn extensions_list_what_is_served(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let r = api.get(&format!("/v2/{p}/extensions")).await.expect(200);
    let aliases: Vec<String> =
        r.body["extensions"].as_array().expect("extensions").iter().map(|e| s(e, "alias")).collect();
    // The reference's list (7.1.16) less what is not served (backups, encryption metadata).
    for a in [
        "OS-SCH-HNT",
        "os-hosts",
        "os-vol-tenant-attr",
        "os-quota-sets",
        "os-types-manage",
        "os-snapshot-actions",
        "os-volume-actions",
        "os-used-limits",
        "os-volume-unmanage",
        "os-vol-host-attr",
        "encryption",
        "os-availability-zone",
        "qos-specs",
        "os-types-extra-specs",
        "os-vol-mig-status-attr",
        "os-image-create",
        "os-extended-services",
        "os-extended-snapshot-attributes",
        "os-vol-image-meta",
        "os-quota-class-sets",
        "os-volume-transfer",
        "os-volume-manage",
        "os-admin-actions",
        "os-services",
    ] {
        assert!(aliases.iter().any(|x| x == a), "{a} missing from {aliases:?}");
    }
    for a in ["backups", "os-volume-encryption-metadata"] {
        assert!(!aliases.iter().any(|x| x == a), "{a} is not served but listed");
    }
    for e in r.body["extensions"].as_array().expect("extensions") {
        for k in ["updated", "description", "alias", "name"] {
            assert!(e[k].is_string(), "{k} in {e}");
        }
        assert!(e["links"].is_array(), "{e}");
    }
}

async fn clone_sources_are_cloned_or_refused(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let src = s(&evs_create_body(&api, &p, body(json!({}))).await, "id");
    // 7.1.1's source_volume_id clones (the same as Cinder's source_volid).
    let r = api
        .post(&format!("/v2/{p}/volumes"), json!({"volume": {"size": 1, "source_volume_id": src}}))
        .await
        .expect(202);
    let id = s(&r.body["volume"], "id");
    let v = api.wait_available(&p, &id).await;
    assert_eq!(v["source_volid"], src.as_str(), "{v}");
    // source_replica needs replication, which is not served: refused, no empty disk made.
    let before = disk_count(&api, &p).await;
    api.post(&format!("/v2/{p}/volumes"), json!({"volume": {"size": 1, "source_replica": src}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(
        &format!("/v2/{p}/volumes"),
        json!({"volume": {"size": 1, "source_volid": src, "source_volume_id": uuid::Uuid::new_v4().to_string()}}),
    )
    .await
    .expect_fault(400, "badRequest");
    assert_eq!(disk_count(&api, &p).await, before);
}

async fn count_on_the_v2_cinder_create(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let r = api
        .post(&format!("/v2/{p}/volumes"), json!({"volume": {"size": 1, "count": 3, "name": "many"}}))
        .await
        .expect(202);
    assert_eq!(r.body["volume"]["name"], "many-0000", "{}", r.text);
    let deadline = Instant::now() + DEADLINE;
    loop {
        let vols = api.volumes(&format!("/v2/{p}/volumes/detail?sort_key=name&sort_dir=asc")).await;
        let names: Vec<String> = vols.iter().map(|v| s(v, "name")).collect();
        assert_eq!(names, vec!["many-0000", "many-0001", "many-0002"]);
        if vols.iter().all(|v| v["status"] == "available") {
            break;
        }
        assert!(Instant::now() < deadline, "batch never became available: {vols:?}");
        tokio::time::sleep(POLL).await;
    }
    for bad in [json!(0), json!(101), json!("x"), json!(1.5)] {
        api.post(&format!("/v2/{p}/volumes"), json!({"volume": {"size": 1, "count": bad}}))
            .await
            .expect_fault(400, "badRequest");
    }
    assert_eq!(disk_count(&api, &p).await, 3);
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

async fn iops_and_throughput_limit_the_nbd_export(b: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    let sock = dir.path().join("nbd.sock");
    let env = vec![("CINDERBLOCK_EXPORTS__NBD_UNIX_SOCKET".to_string(), sock.display().to_string())];
    let srv = TestServer::start(b, Opts { env, ..Opts::default() });
    let api = srv.api();
    let p = project();
    // 4 MiB/s asked for at create: the volume's own QoS, enforced by our NBD server.
    let slow = s(&evs_create_body(&api, &p, body(json!({"throughput": 4}))).await, "id");
    let fast = s(&evs_create_body(&api, &p, body(json!({"iops": 100000}))).await, "id");
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
        uris.push(format!("nbd+unix:///{}?socket={}", s(data, "export_name"), sock.display()));
    }
    // 12 MiB: a 4 MiB burst, then 8 MiB at 4 MiB/s ≈ 2 s; the generous one is not slowed.
    let limited = timed_read(&uris[0], "12M");
    let unlimited = timed_read(&uris[1], "12M");
    assert!(limited >= Duration::from_millis(1500), "the 4 MiB/s disk read 12 MiB in {limited:?}");
    assert!(unlimited < Duration::from_millis(1000), "the 100,000 IOPS disk took {unlimited:?}");
}
