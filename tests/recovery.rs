//! Durable jobs (DESIGN.md §1, §4; issue 2 "kill-9 recovery test"): a daemon killed with
//! SIGKILL while jobs run finishes them at its next start, no volume stays in a transitional
//! status and the pool holds exactly the files the database lists. Uses the test-only
//! `jobs.step_delay_ms` hook to hold jobs between their claim and their storage step.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use serde_json::json;

use common::{assert_sparse_file, project, s, Backend, Opts, TestServer};

backend_tests!(
    kill9_during_create_recovers,
    kill9_during_delete_recovers,
    busy_volumes_cannot_be_deleted,
    another_node_takes_over_after_the_lease,
);

/// The pool's files are exactly the volume rows, and no row is in a transitional status.
async fn assert_pool_matches_db(srv: &TestServer) {
    let rows = srv.db_volumes().await;
    let row_ids: BTreeSet<String> = rows.iter().map(|r| r.0.clone()).collect();
    assert_eq!(srv.pool_files(), row_ids, "pool files vs volume rows ({rows:?})");
    for (id, status) in &rows {
        assert!(!matches!(status.as_str(), "creating" | "deleting"), "volume {id} stuck in {status}");
    }
    let jobs = srv.db_jobs().await;
    for (id, status) in &jobs {
        assert!(matches!(status.as_str(), "SUCCESS" | "FAIL"), "job {id} left {status}");
    }
}

async fn kill9_during_create_recovers(b: Backend) {
    // One worker: the first job is RUNNING (inside the step delay), the others wait in INIT.
    let srv = TestServer::start(b, Opts { step_delay_ms: 3000, workers: 1, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let single = api
        .evs_create(&p, json!({"availability_zone": "nova", "name": "single", "size": 2, "volume_type": "SSD"}))
        .await;
    let batch = api
        .evs_create(
            &p,
            json!({"availability_zone": "nova", "name": "pair", "count": 2, "size": 1, "volume_type": "SAS"}),
        )
        .await;
    // A Cinder create too, so both APIs' creates are covered.
    let cinder = api.cinder_create(&p, json!({"size": 3, "name": "cinder"})).await;
    let single_job = s(&single, "job_id");
    let single_id = single["volume_ids"][0].as_str().unwrap().to_string();
    api.wait_job_status(&p, &single_job, "RUNNING").await;
    let v = api.get(&format!("/v3/{p}/volumes/{single_id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "creating");
    let batch_job = api.get(&format!("/v1/{p}/jobs/{}", s(&batch, "job_id"))).await.expect(200).body;
    assert!(matches!(batch_job["status"].as_str(), Some("INIT") | Some("RUNNING")), "{batch_job}");
    assert!(srv.pool_files().is_empty(), "the storage step must not have run yet");

    srv.kill9();
    assert!(!srv.is_running());
    srv.restart_with(|o| o.step_delay_ms = 0);

    let job = api.wait_job_success(&p, &single_job).await;
    assert_eq!(job["entities"]["volume_id"], single_id.as_str());
    let job = api.wait_job_success(&p, &s(&batch, "job_id")).await;
    assert_eq!(job["entities"]["sub_jobs"].as_array().map(Vec::len), Some(2), "{job}");
    let cinder_id = s(&cinder, "id");
    for (id, size) in [(single_id.clone(), 2), (cinder_id.clone(), 3)] {
        api.wait_available(&p, &id).await;
        assert_sparse_file(&srv.volume_path(&id), size);
    }
    for id in batch["volume_ids"].as_array().unwrap() {
        let id = id.as_str().unwrap();
        api.wait_available(&p, id).await;
        assert_sparse_file(&srv.volume_path(id), 1);
    }
    assert_eq!(srv.db_volumes().await.len(), 4);
    assert_pool_matches_db(&srv).await;
}

async fn kill9_during_delete_recovers(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let mut ids = Vec::new();
    for name in ["evs-delete", "cinder-delete", "survivor"] {
        ids.push(s(&api.cinder_create_available(&p, json!({"size": 1, "name": name})).await, "id"));
    }
    assert_eq!(srv.pool_files().len(), 3);
    srv.restart_with(|o| o.step_delay_ms = 3000);

    let job_id = s(&api.delete(&format!("/v2/{p}/cloudvolumes/{}", ids[0])).await.expect(200).body, "job_id");
    api.delete(&format!("/v3/{p}/volumes/{}", ids[1])).await.expect(202);
    api.wait_job_status(&p, &job_id, "RUNNING").await;
    for id in &ids[..2] {
        let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
        assert_eq!(v["status"], "deleting", "{v}");
    }
    assert_eq!(srv.pool_files().len(), 3, "the storage step must not have run yet");

    srv.kill9();
    srv.restart_with(|o| o.step_delay_ms = 0);

    let job = api.wait_job_success(&p, &job_id).await;
    assert_eq!(job["job_type"], "deleteVolume");
    api.wait_volume_gone(&p, &ids[0]).await;
    api.wait_volume_gone(&p, &ids[1]).await;
    let survivor = api.wait_available(&p, &ids[2]).await;
    assert_eq!(survivor["name"], "survivor");
    assert_eq!(srv.pool_files(), BTreeSet::from([ids[2].clone()]));
    assert_pool_matches_db(&srv).await;
}

async fn busy_volumes_cannot_be_deleted(b: Backend) {
    let srv = TestServer::start(b, Opts { step_delay_ms: 3000, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let r = api.evs_create(&p, json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD"})).await;
    let id = r["volume_ids"][0].as_str().unwrap().to_string();
    let job_id = s(&r, "job_id");

    // While creating: refused on both APIs, nothing changes.
    api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect_evs_error(400, "EVS.1046");
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(400, "badRequest");
    let job = api.get(&format!("/v1/{p}/jobs/{job_id}")).await.expect(200).body;
    assert!(matches!(job["status"].as_str(), Some("INIT") | Some("RUNNING")), "{job}");
    assert!(job["end_time"].is_null() || job["end_time"] == "", "unfinished job has no end_time: {job}");
    let v = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "creating");
    // The list filters see it as creating.
    let r = api.get(&format!("/v2/{p}/cloudvolumes/detail?status=creating")).await.expect(200);
    assert_eq!(r.body["count"], 1, "{}", r.text);

    api.wait_job_success(&p, &job_id).await;
    api.wait_available(&p, &id).await;

    // While deleting: a second delete is refused on both APIs.
    let del = api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect_evs_error(400, "EVS.1046");
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(400, "badRequest");
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "deleting");
    api.wait_job_success(&p, &s(&del.body, "job_id")).await;
    api.wait_volume_gone(&p, &id).await;
    assert_pool_matches_db(&srv).await;
}

/// A job left RUNNING by a node that never comes back is taken over by another node once its
/// lease has run out (DESIGN.md §4: leases; §10: several nodes share one database).
async fn another_node_takes_over_after_the_lease(b: Backend) {
    let srv = TestServer::start(b, Opts { step_delay_ms: 3000, lease_seconds: 1, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let r = api.evs_create(&p, json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD"})).await;
    let job_id = s(&r, "job_id");
    let id = r["volume_ids"][0].as_str().unwrap().to_string();
    api.wait_job_status(&p, &job_id, "RUNNING").await;
    srv.kill9();
    srv.restart_with(|o| {
        o.node = "another-node".into();
        o.step_delay_ms = 0;
    });
    api.wait_job_success(&p, &job_id).await;
    api.wait_available(&p, &id).await;
    assert_sparse_file(&srv.volume_path(&id), 1);
    assert_pool_matches_db(&srv).await;
}
