//! Storage hygiene on a daemon of its own (so the pool and the database can be counted
//! exactly): bad input never leaves a row, a job or a file behind (issue 2 §5), and space
//! accounting refuses a create beyond free space × over-subscription ratio (issue 2 §2).

#[macro_use]
mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{assert_sparse_file, project, s, Backend, Opts, TestServer, GIB};

backend_tests!(bad_input_leaves_no_row_job_or_file, oversubscription_limit_refuses_cleanly);

async fn bad_input_leaves_no_row_job_or_file(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let rnd = || uuid::Uuid::new_v4().to_string();
    let cinder: Vec<Value> = vec![
        json!({"volume": {"size": 0}}),
        json!({"volume": {"size": 32769}}),
        json!({"volume": {"size": 1, "availability_zone": "nowhere"}}),
        json!({"volume": {"size": 1, "volume_type": "nothing"}}),
        json!({"volume": {"size": 1, "snapshot_id": rnd(), "imageRef": rnd()}}),
        json!({"volume": {"size": 1, "snapshot_id": rnd()}}),
        json!({"volume": {"size": 1, "source_volid": rnd()}}),
        json!({"volume": {"size": 1, "imageRef": rnd()}}),
        json!({"volume": {"size": 1, "name": "x".repeat(300)}}),
        json!({"volume": {"size": 1, "metadata": {"full_clone": "7"}}}),
    ];
    for body in cinder {
        let r = api.post(&format!("/v3/{p}/volumes"), body.clone()).await;
        assert!((400..500).contains(&r.status), "{body} answered {}: {}", r.status, r.text);
    }
    let base = json!({"availability_zone": "nova", "size": 1, "volume_type": "SSD", "name": "bad"});
    let evs: Vec<Value> = vec![
        json!({"count": 101}),
        json!({"count": 0}),
        json!({"size": 0}),
        json!({"size": 40000}),
        json!({"availability_zone": "nowhere"}),
        json!({"volume_type": "nothing"}),
        json!({"snapshot_id": rnd(), "imageRef": rnd()}),
        json!({"backup_id": rnd()}),
        json!({"name": "n".repeat(251), "count": 3}),
        json!({"metadata": {"hw:passthrough": "perhaps"}}),
        json!({"description": "d".repeat(300), "count": 5}),
    ];
    for patch in evs {
        let mut v = base.clone();
        for (k, val) in patch.as_object().unwrap() {
            v[k] = val.clone();
        }
        for prefix in ["v2", "v2.1"] {
            let r = api.post(&format!("/{prefix}/{p}/cloudvolumes"), json!({ "volume": v })).await;
            assert!((400..500).contains(&r.status), "{prefix} {v} answered {}: {}", r.status, r.text);
            assert!(r.body["error"]["code"].as_str().is_some_and(|c| c.starts_with("EVS.")), "{}", r.text);
        }
    }
    for raw in ["{", "null", "{\"volume\": null}", "{\"volume\": {\"size\": \"big\"}}"] {
        let r = api.post_raw(&format!("/v3/{p}/volumes"), raw).await;
        assert_eq!(r.status, 400, "cinder {raw:?}: {}", r.text);
        let r = api.post_raw(&format!("/v2/{p}/cloudvolumes"), raw).await;
        assert_eq!(r.status, 400, "evs {raw:?}: {}", r.text);
    }
    assert!(srv.db_volumes().await.is_empty(), "bad input left volume rows: {:?}", srv.db_volumes().await);
    assert!(srv.db_jobs().await.is_empty(), "bad input left jobs: {:?}", srv.db_jobs().await);
    assert!(srv.pool_files().is_empty(), "bad input left files: {:?}", srv.pool_files());
    // The quota usage agrees.
    let r = api.get(&format!("/v3/{p}/os-quota-sets/{p}?usage=True")).await.expect(200);
    assert_eq!(r.body["quota_set"]["volumes"]["in_use"], 0);
    assert_eq!(r.body["quota_set"]["gigabytes"]["in_use"], 0);
}

/// Free GiB of the filesystem holding `path`.
fn free_gib(path: &std::path::Path) -> u64 {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    st.blocks_available() as u64 * st.fragment_size() as u64 / GIB
}

async fn oversubscription_limit_refuses_cleanly(b: Backend) {
    let srv = TestServer::start(b, Opts { max_over_subscription_ratio: 1.0, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let free = free_gib(&srv.pool);
    // Well beyond the free space (ratio 1.0: no over-subscription), but a valid size.
    let too_big = (free * 2 + 1).min(32768);
    if too_big <= free {
        eprintln!("skipped: the test filesystem has {free} GiB free, more than the largest volume");
        return;
    }
    let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": too_big}})).await;
    assert!(
        matches!(r.status, 400 | 413),
        "cinder create of {too_big} GiB with {free} GiB free: {} {}",
        r.status,
        r.text
    );
    let (status, fault) = if r.status == 400 { (400, "badRequest") } else { (413, "overLimit") };
    r.expect_fault(status, fault);

    let r = api
        .post(
            &format!("/v2/{p}/cloudvolumes"),
            json!({"volume": {"availability_zone": "nova", "size": too_big, "volume_type": "SSD"}}),
        )
        .await;
    r.expect_evs_error(400, "EVS.2072");
    // A batch whose disks each fit but whose total does not is refused as a whole.
    let each = (free * 6 / 10 + 1).min(32768);
    if each * 2 > free {
        let r = api
            .post(
                &format!("/v2/{p}/cloudvolumes"),
                json!({"volume": {"availability_zone": "nova", "size": each, "count": 2, "volume_type": "SSD"}}),
            )
            .await;
        r.expect_evs_error(400, "EVS.2072");
    }
    assert!(srv.db_volumes().await.is_empty(), "refused creates left rows");
    assert!(srv.db_jobs().await.is_empty(), "refused creates left jobs");
    assert!(srv.pool_files().is_empty(), "refused creates left files");

    // Small volumes still fit.
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    let id = s(&v, "id");
    assert_sparse_file(&srv.volume_path(&id), 1);
    assert_eq!(srv.pool_files(), BTreeSet::from([id]));
}
