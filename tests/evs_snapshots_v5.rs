//! EVS v5 standard snapshots and snapshot chains (issue 11 B.4) as views over our snapshots:
//! create with tags, show, list with the SDK's filters, count, update, tags, rollback (data
//! checked through the volume file), delete, chains; and the invalid variants (400/404 in the
//! EVS format, nothing made). Runs on SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::os::unix::fs::FileExt;

use serde_json::{json, Value};

use common::{enc, project, s, Api, Backend, Opts, TestServer};

backend_tests!(v5_snapshots_and_chains);

async fn volume(api: &Api, p: &str) -> String {
    s(&api.cinder_create_available(p, json!({"size": 1})).await, "id")
}

async fn create(api: &Api, p: &str, body: Value) -> (String, String) {
    let r = api.post(&format!("/v5/{p}/snapshots"), json!({ "snapshot": body })).await.expect(202);
    let sid = s(&r.body, "snapshot_id");
    let job = s(&r.body, "job_id");
    api.wait_job_success(p, &job).await;
    (sid, job)
}

async fn v5_snapshots_and_chains(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p).await;
    let v2 = volume(&api, &p).await;
    let base = format!("/v5/{p}/snapshots");

    for bad in [
        json!({}),
        json!({"snapshot": {}}),
        json!({"snapshot": {"volume_id": v1, "retention_days": 3}}),
        json!({"snapshot": {"volume_id": v1, "enterprise_project_id": "other"}}),
        json!({"snapshot": {"volume_id": v1, "nmae": "typo"}}),
        json!({"snapshot": {"volume_id": v1, "tags": {"bad key": "v"}}}),
        json!({"snapshot": {"volume_id": v1, "instant_access": "maybe"}}),
    ] {
        api.post(&base, bad.clone()).await.expect_evs_error(400, "EVS.5400");
    }
    api.post(&base, json!({"snapshot": {"volume_id": uuid::Uuid::new_v4().to_string()}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    assert!(api.get(&format!("{base}/detail")).await.expect(200).body["snapshots"].as_array().unwrap().is_empty());

    std::fs::OpenOptions::new().write(true).open(srv.volume_path(&v1)).unwrap().write_all_at(b"before", 0).unwrap();
    let (s1, job) =
        create(&api, &p, json!({"volume_id": v1, "name": "one", "tags": {"env": "t"}, "incremental": true})).await;
    assert_eq!(api.wait_job_success(&p, &job).await["job_type"], "createSnapshot");
    let (s2, _) = create(&api, &p, json!({"volume_id": v2, "name": "two", "enterprise_project_id": "0"})).await;
    let (s3, _) = create(&api, &p, json!({"volume_id": v1, "name": "three"})).await;

    let shown = api.get(&format!("{base}/{s1}")).await.expect(200).body["snapshot"].clone();
    for (k, want) in [
        ("id", json!(s1)),
        ("volume_id", json!(v1)),
        ("name", json!("one")),
        ("size", json!(1)),
        ("status", json!("available")),
        ("project_id", json!(p)),
        ("tags", json!({"env": "t"})),
        ("category", json!("standard")),
        ("snapshot_type", json!("user")),
        ("availability_zone", json!("nova")),
        ("progress", json!("100%")),
    ] {
        assert_eq!(shown[k], want, "{k} in {shown}");
    }
    assert_eq!(shown["snapshot_chains"][0]["id"], v1.as_str());

    let ids = |path: String| {
        let api = api.clone();
        async move {
            let r = api.get(&path).await.expect(200);
            let mut v: Vec<String> = r.body["snapshots"].as_array().unwrap().iter().map(|x| s(x, "id")).collect();
            v.sort();
            v
        }
    };
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    assert_eq!(ids(format!("{base}/detail")).await, sorted(vec![s1.clone(), s2.clone(), s3.clone()]));
    assert_eq!(ids(format!("{base}/detail?volume_id={v1}")).await, sorted(vec![s1.clone(), s3.clone()]));
    assert_eq!(ids(format!("{base}/detail?snapshot_chain_id={v2}")).await, vec![s2.clone()]);
    assert_eq!(ids(format!("{base}/detail?name=two")).await, vec![s2.clone()]);
    assert_eq!(ids(format!("{base}/detail?tag_key=env")).await, vec![s1.clone()]);
    let tq = enc(r#"[{"key":"env","value":"t"}]"#);
    assert_eq!(ids(format!("{base}/detail?tags={tq}")).await, vec![s1.clone()]);
    assert_eq!(ids(format!("{base}/detail?ids={s1},{s2}")).await, sorted(vec![s1.clone(), s2.clone()]));
    assert_eq!(ids(format!("{base}/detail?availability_zone=nova&name=one")).await, vec![s1.clone()]);
    assert!(ids(format!("{base}/detail?availability_zone=elsewhere")).await.is_empty());
    assert!(ids(format!("{base}/detail?snapshot_type=auto")).await.is_empty());
    assert_eq!(ids(format!("{base}/detail?limit=2")).await.len(), 2);
    assert_eq!(ids(format!("{base}/detail?limit=2&offset=2")).await.len(), 1);
    for q in ["limit=0", "limit=x", "status=bogus", "snapshot_type=other", "tags=notjson", "enterprise_project_id=x"] {
        api.get(&format!("{base}/detail?{q}")).await.expect_evs_error(400, "EVS.5400");
    }
    assert_eq!(api.get(&format!("{base}/count")).await.expect(200).body["count"], 3);
    assert_eq!(api.get(&format!("{base}/count?volume_id={v1}&tag_key=env")).await.expect(200).body["count"], 1);

    // Update.
    let r = api.put(&format!("{base}/{s2}"), json!({"snapshot": {"name": "two-b", "instant_access": true}})).await;
    assert_eq!(r.expect(200).body["snapshot"]["name"], "two-b");
    for bad in [json!({"snapshot": {}}), json!({"snapshot": {"instant_access": false}}), json!({"snapshot": {"x": 1}})]
    {
        api.put(&format!("{base}/{s2}"), bad).await.expect_evs_error(400, "EVS.5400");
    }

    // Tags.
    api.post(&format!("{base}/{s2}/tags/create"), json!({"tags": [{"key": "tier", "value": "gold"}]}))
        .await
        .expect(204);
    api.post(&format!("{base}/{s2}/tags/create"), json!({"tags": [{"key": "tier"}]}))
        .await
        .expect_evs_error(400, "EVS.5400");
    let t = api.get(&format!("{base}/tags")).await.expect(200).body["tags"].clone();
    let keys: Vec<String> = t.as_array().unwrap().iter().map(|x| s(x, "key")).collect();
    assert_eq!(keys, vec!["env".to_string(), "tier".to_string()], "{t}");
    api.post(&format!("{base}/{s2}/tags/delete"), json!({"tags": [{"key": "tier"}]})).await.expect(204);
    assert_eq!(api.get(&format!("{base}/{s2}")).await.expect(200).body["snapshot"]["tags"], json!({}));

    // Rollback onto the volume (renaming it), data back as it was.
    std::fs::OpenOptions::new().write(true).open(srv.volume_path(&v1)).unwrap().write_all_at(b"after!", 0).unwrap();
    api.post(&format!("{base}/{s1}/rollback"), json!({"rollback": {"volume_id": v2}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    api.post(&format!("{base}/{s1}/rollback"), json!({"rollback": {"bogus": 1}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    let r = api.post(&format!("{base}/{s1}/rollback"), json!({"rollback": {"volume_id": v1, "name": "rolled"}})).await;
    api.wait_job_success(&p, &s(&r.expect(202).body, "job_id")).await;
    let v = api.wait_available(&p, &v1).await;
    assert_eq!(v["name"], "rolled");
    let mut got = [0u8; 6];
    std::fs::File::open(srv.volume_path(&v1)).unwrap().read_exact_at(&mut got, 0).unwrap();
    assert_eq!(&got, b"before");

    // Chains: one per volume with snapshots.
    let ch = api.get(&format!("/v5/{p}/snapshot-chains")).await.expect(200).body["snapshot_chains"].clone();
    assert_eq!(ch.as_array().unwrap().len(), 2, "{ch}");
    let c1 = ch.as_array().unwrap().iter().find(|c| c["id"] == v1.as_str()).expect("chain of v1").clone();
    assert_eq!((c1["snapshot_count"].as_i64(), c1["volume_id"].as_str()), (Some(2), Some(v1.as_str())));
    assert_eq!(api.get(&format!("/v5/{p}/snapshot-chains/count?volume_id={v2}")).await.expect(200).body["count"], 1);
    assert_eq!(
        api.get(&format!("/v5/{p}/snapshot-chains?limit=1")).await.expect(200).body["snapshot_chains"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    for q in ["limit=0", "category=x"] {
        api.get(&format!("/v5/{p}/snapshot-chains?{q}")).await.expect_evs_error(400, "EVS.5400");
    }

    // Delete: 202 with the job.
    let r = api.delete(&format!("{base}/{s3}")).await.expect(202);
    api.wait_job_success(&p, &s(&r.body, "job_id")).await;
    api.get(&format!("{base}/{s3}")).await.expect_evs_error(404, "EVS.5404");
    api.delete(&format!("{base}/{s3}")).await.expect_evs_error(404, "EVS.5404");
}
