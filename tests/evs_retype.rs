//! EVS `retype_volume` (`POST /v2/{p}/volumes/{id}/retype`, issue 11 B.5) on the machinery of
//! Cinder's `os-retype`: in place (a job already `SUCCESS`), across pools (the migration job,
//! data kept), and the invalid variants (400 in the EVS format, nothing changes). Runs on
//! SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::os::unix::fs::FileExt;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(evs_retype_in_place_across_pools_and_invalid);

async fn make_type(api: &Api, p: &str, specs: Value) -> (String, String) {
    let name = common::unique("rt");
    let r = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": name, "extra_specs": specs}})).await;
    let r = r.expect(200);
    (s(&r.body["volume_type"], "id"), name)
}

async fn volume(api: &Api, p: &str, id: &str) -> Value {
    api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone()
}

async fn evs_retype_in_place_across_pools_and_invalid(b: Backend) {
    let second = tempfile::tempdir().expect("second pool dir");
    let tail = format!(
        "[[pools]]\nname = \"second\"\npath = {:?}\navailability_zone = \"nova\"\n",
        second.path().display().to_string()
    );
    let srv = TestServer::start(b, Opts { extra_tail: tail, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let (src_t, src_name) = make_type(&api, &p, json!({"volume_backend_name": "default"})).await;
    let (_, dst_name) = make_type(&api, &p, json!({"volume_backend_name": "second"})).await;
    let (_, plain_name) = make_type(&api, &p, json!({})).await;
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": src_t})).await;
    let id = s(&v, "id");
    let path = format!("/v2/{p}/volumes/{id}/retype");
    let mark = b"evs retype keeps these bytes";
    {
        let f = std::fs::OpenOptions::new().write(true).open(srv.volume_path(&id)).unwrap();
        f.write_all_at(mark, 1 << 20).unwrap();
        f.sync_all().unwrap();
    }

    for bad in [
        json!({}),
        json!({"os-retype": {}}),
        json!({"os-retype": "SSD"}),
        json!({"os-retype": {"new_type": ""}}),
        json!({"os-retype": {"new_type": "no-such-type"}}),
        json!({"os-retype": {"new_type": src_name}}),
        json!({"os-retype": {"new_type": plain_name, "iops": 3000}}),
        json!({"os-retype": {"new_type": plain_name, "throughput": 125}}),
        json!({"os-retype": {"new_type": plain_name, "migration_policy": "never"}}),
        json!({"os-retype": {"new_type": plain_name}, "extra": 1}),
        json!({"os-retype": {"new_type": plain_name}, "bssParam": "x"}),
    ] {
        api.post(&path, bad.clone()).await.expect_evs_error(400, "EVS.5400");
    }
    api.post(
        &format!("/v2/{p}/volumes/{}/retype", uuid::Uuid::new_v4()),
        json!({"os-retype": {"new_type": plain_name}}),
    )
    .await
    .expect_evs_error(404, "EVS.5404");
    assert_eq!(volume(&api, &p, &id).await["volume_type"], src_name.as_str());
    assert!(api.get(&format!("/v2/{p}/volumes/{id}/retype")).await.status >= 400);

    // In place: a finished job, the type changed, nothing moved.
    let r = api
        .post(&path, json!({"os-retype": {"new_type": plain_name}, "bssParam": {"isAutoPay": "true"}}))
        .await
        .expect(202);
    let j = api.wait_job_success(&p, &s(&r.body, "job_id")).await;
    assert_eq!(j["job_type"], "retypeVolume", "{j}");
    let now = volume(&api, &p, &id).await;
    assert_eq!(now["volume_type"], plain_name.as_str());
    assert!(s(&now, "os-vol-host-attr:host").ends_with("#default"), "{now}");

    // Across pools: the migration job moves the data.
    let r = api.post(&path, json!({"os-retype": {"new_type": dst_name}})).await.expect(202);
    api.wait_job_success(&p, &s(&r.body, "job_id")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let now = loop {
        let now = volume(&api, &p, &id).await;
        if now["volume_type"] == dst_name.as_str() && now["status"] == "available" {
            break now;
        }
        assert!(Instant::now() < deadline, "never retyped: {now}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(s(&now, "os-vol-host-attr:host").ends_with("#second"), "{now}");
    let f = std::fs::File::open(second.path().join("volumes").join(format!("{id}.raw"))).unwrap();
    let mut got = vec![0u8; mark.len()];
    f.read_exact_at(&mut got, 1 << 20).unwrap();
    assert_eq!(&got, mark);
}
