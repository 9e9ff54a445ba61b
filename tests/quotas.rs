//! Quotas (issue 5 item 6): limits per project, per class and per type, the usage view,
//! `limits`, and enforcement that holds under concurrency on SQLite and PostgreSQL.

#[macro_use]
mod common;

use serde_json::json;

use common::{project, s, shared, Backend};

backend_tests!(
    concurrent_creates_never_pass_the_last_slot,
    limits_are_enforced_with_each_apis_error,
    quota_routes_show_update_reset_and_classes,
    cinder_checks_quota_before_capacity_in_cinders_words,
);

async fn concurrent_creates_never_pass_the_last_slot(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    const N: usize = 12;
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": N - 1}})).await.expect(200);
    let mut tasks = Vec::new();
    for i in 0..N {
        let api = api.clone();
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "name": format!("q{i}")}})).await
        }));
    }
    let mut ok = 0;
    let mut over = 0;
    for t in tasks {
        let r = t.await.expect("task");
        match r.status {
            202 => ok += 1,
            413 => {
                r.expect_fault(413, "overLimit");
                over += 1;
            }
            other => panic!("unexpected {other}: {}", r.text),
        }
    }
    assert_eq!((ok, over), (N - 1, 1), "quota of {} let {ok} creates through", N - 1);
    let vols = api.volumes(&format!("/v3/{p}/volumes/detail")).await;
    assert_eq!(vols.len(), N - 1);
    // The same through the EVS batch API: a batch that does not fit is refused whole.
    let r = api
        .post(
            &format!("/v2/{p}/cloudvolumes"),
            json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "count": 2}}),
        )
        .await;
    r.expect_evs_error(400, "EVS.1034");
    assert_eq!(api.volumes(&format!("/v3/{p}/volumes/detail")).await.len(), N - 1);
}

async fn limits_are_enforced_with_each_apis_error(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    api.put(
        &format!("/v3/{p}/os-quota-sets/{p}"),
        json!({"quota_set": {"gigabytes": 10, "per_volume_gigabytes": 6, "volumes_SAS": 1, "snapshots": 1}}),
    )
    .await
    .expect(200);
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 7}})).await.expect_fault(413, "overLimit");
    api.post(
        &format!("/v2/{p}/cloudvolumes"),
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 7}}),
    )
    .await
    .expect_evs_error(400, "EVS.1042");
    let a = api.cinder_create_available(&p, json!({"size": 6, "volume_type": "SAS"})).await;
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "volume_type": "SAS"}}))
        .await
        .expect_fault(413, "overLimit");
    let b2 = api.cinder_create_available(&p, json!({"size": 4})).await;
    // 10 GiB used: no more gigabytes for volumes, snapshots or extends.
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1}})).await.expect_fault(413, "overLimit");
    api.post(&format!("/v3/{p}/volumes/{}/action", s(&b2, "id")), json!({"os-extend": {"new_size": 5}}))
        .await
        .expect_fault(413, "overLimit");
    api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": s(&a, "id")}}))
        .await
        .expect_fault(413, "overLimit");
    let u = api.get(&format!("/v3/{p}/os-quota-sets/{p}?usage=True")).await.expect(200);
    let q = &u.body["quota_set"];
    assert_eq!(q["gigabytes"]["in_use"], 10, "{}", u.text);
    assert_eq!(q["gigabytes"]["limit"], 10);
    assert_eq!(q["volumes_SAS"]["in_use"], 1);
    assert_eq!(q["volumes"]["in_use"], 2);
    assert_eq!(q["volumes"]["limit"], -1);
    let l = api.get(&format!("/v3/{p}/limits")).await.expect(200);
    assert_eq!(l.body["limits"]["absolute"]["totalGigabytesUsed"], 10, "{}", l.text);
    assert_eq!(l.body["limits"]["absolute"]["maxTotalVolumeGigabytes"], 10);
}

async fn quota_routes_show_update_reset_and_classes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let d = api.get(&format!("/v3/{p}/os-quota-sets/{p}/defaults")).await.expect(200);
    assert_eq!(d.body["quota_set"]["volumes"], -1, "{}", d.text);
    assert!(d.body["quota_set"]["gigabytes_SSD"].is_number(), "{}", d.text);
    // Unknown keys and bad values change nothing.
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"bogus": 1}}))
        .await
        .expect_fault(400, "badRequest");
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": -5}}))
        .await
        .expect_fault(400, "badRequest");
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": "x"}}))
        .await
        .expect_fault(400, "badRequest");
    let r = api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": 3}})).await.expect(200);
    assert_eq!(r.body["quota_set"]["volumes"], 3);
    // A limit below the current use is refused.
    api.cinder_create_available(&p, json!({"size": 1})).await;
    api.cinder_create_available(&p, json!({"size": 1})).await;
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": 1}}))
        .await
        .expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/os-quota-sets/{p}")).await.expect(200);
    let r = api.get(&format!("/v3/{p}/os-quota-sets/{p}")).await.expect(200);
    assert_eq!(r.body["quota_set"]["volumes"], -1);
    // A class other than `default` is kept apart from the projects.
    let class = format!("c{}", &p[..8]);
    let r = api
        .put(&format!("/v3/{p}/os-quota-class-sets/{class}"), json!({"quota_class_set": {"snapshots": 7}}))
        .await
        .expect(200);
    assert_eq!(r.body["quota_class_set"]["snapshots"], 7, "{}", r.text);
    assert!(r.body["quota_class_set"].get("id").is_none(), "update answers without id, as Cinder: {}", r.text);
    let r = api.get(&format!("/v3/{p}/os-quota-class-sets/{class}")).await.expect(200);
    assert_eq!(r.body["quota_class_set"]["snapshots"], 7);
    assert_eq!(r.body["quota_class_set"]["id"], class.as_str());
}

/// Cinder's order and words: the quota is checked before the pool (a size over both is 413
/// `VolumeSizeExceedsAvailableQuota`, not the pool's 400), the size bound on Cinder routes is
/// Cinder's (not EVS's 32768 GiB), and nothing is created by a refused request.
async fn cinder_checks_quota_before_capacity_in_cinders_words(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"gigabytes": 5}})).await.expect(200);
    // 100,000 GiB is past the quota and past the pool's space (and past EVS's bound).
    let r =
        api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 100000}})).await.expect_fault(413, "overLimit");
    assert!(r.text.contains("VolumeSizeExceedsAvailableQuota"), "{}", r.text);
    assert!(r.text.contains("Requested 100000G, quota is 5G and 0G has been consumed"), "{}", r.text);
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"gigabytes": -1}})).await.expect(200);
    // Without a quota the pool refuses it: Cinder's bound is not EVS's 32768 GiB.
    let r = api
        .post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 100000}}))
        .await
        .expect_fault(400, "badRequest");
    assert!(r.text.contains("Insufficient free virtual space"), "{}", r.text);
    let r =
        api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": "abc"}})).await.expect_fault(400, "badRequest");
    assert!(r.text.contains("Invalid input for field/attribute size"), "{}", r.text);
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 0}})).await.expect_fault(400, "badRequest");
    // EVS keeps its own bound.
    api.post(
        &format!("/v2/{p}/cloudvolumes"),
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 40000}}),
    )
    .await
    .expect_evs_error(400, "EVS.1010");
    api.put(&format!("/v3/{p}/os-quota-sets/{p}"), json!({"quota_set": {"volumes": 0}})).await.expect(200);
    let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1}})).await.expect_fault(413, "overLimit");
    assert!(r.text.contains("VolumeLimitExceeded: Maximum number of volumes allowed (0)"), "{}", r.text);
    let listed = api.get(&format!("/v3/{p}/volumes")).await.expect(200).body["volumes"].clone();
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "refused creates leave nothing: {listed}");
}
