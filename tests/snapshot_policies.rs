//! EVS auto-snapshot policies (issue 11 B.1): the API (create, show, list with filters, count,
//! update, delete, associate, disassociate) with its invalid variants, and the scheduler on a
//! scaled test clock (`[snapshot_policies] clock_scale`: one real second is one policy hour):
//! runs on time, one snapshot per volume per run, retention trimming the oldest, and a kill -9
//! with runs falling due while the daemon is down (taken once at start, never twice). Runs on
//! SQLite and, with `TEST_DATABASE_URL`, PostgreSQL.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(snapshot_policies_api_and_invalid_input, scheduler_takes_trims_and_survives_kill9);

async fn volume(api: &Api, p: &str) -> String {
    s(&api.cinder_create_available(p, json!({"size": 1})).await, "id")
}

async fn snapshot_policies_api_and_invalid_input(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p).await;
    let base = format!("/v5/{p}/snapshot-policies");
    let ok =
        json!({"name": "nightly", "repeat_weekdays": ["1", "3", "5"], "time_points": ["2", "14"], "retention_days": 7});
    for bad in [
        json!({}),
        json!({"snapshot_policy": {}}),
        json!({"snapshot_policy": {"name": "x", "time_points": ["1"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["8"], "time_points": ["1"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1", "1"], "time_points": ["1"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "repeat_interval_days": 2, "time_points": ["1"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_interval_days": 31, "time_points": ["1"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "time_points": ["24"]}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "time_points": []}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "time_points": ["1"], "retention_days": 0}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "time_points": ["1"], "tags": {"b k": "v"}}}),
        json!({"snapshot_policy": {"name": "x", "repeat_weekdays": ["1"], "time_points": ["1"], "typo": 1}}),
        json!({"snapshot_policy": {"name": "", "repeat_weekdays": ["1"], "time_points": ["1"]}}),
    ] {
        api.post(&base, bad.clone()).await.expect_evs_error(400, "EVS.5400");
    }
    assert_eq!(api.get(&format!("{base}/count")).await.expect(200).body["count"], 0);
    let mut body = ok.clone();
    body["tags"] = json!({"env": "home"});
    let r = api.post(&base, json!({"snapshot_policy": body})).await.expect(200);
    let pol = r.body["snapshot_policy"].clone();
    let id = s(&pol, "id");
    assert_eq!(pol["repeat_weekdays"], json!(["1", "3", "5"]));
    assert_eq!(pol["time_points"], json!(["2", "14"]));
    assert_eq!(pol["retention_days"], 7);
    assert_eq!(pol["tags"], json!({"env": "home"}));
    // Names are unique per project.
    api.post(&base, json!({"snapshot_policy": ok})).await.expect_evs_error(400, "EVS.5409");
    let r = api
        .post(&base, json!({"snapshot_policy": {"name": "every2", "repeat_interval_days": 2, "time_points": [0]}}))
        .await
        .expect(200);
    let id2 = s(&r.body["snapshot_policy"], "id");
    assert_eq!(r.body["snapshot_policy"]["retention_days"], -1);

    let names = |q: &str| {
        let api = api.clone();
        let url = format!("{base}{q}");
        async move {
            let r = api.get(&url).await.expect(200);
            r.body["snapshot_policies"].as_array().unwrap().iter().map(|x| s(x, "name")).collect::<Vec<_>>()
        }
    };
    assert_eq!(names("?sort_key=name&sort_dir=asc").await, vec!["every2", "nightly"]);
    assert_eq!(names("?name=nightly").await, vec!["nightly"]);
    assert_eq!(names("?tag_key=env").await, vec!["nightly"]);
    assert_eq!(names(&format!("?id={id2}")).await, vec!["every2"]);
    assert_eq!(names("?limit=1&offset=1&sort_key=name&sort_dir=asc").await, vec!["nightly"]);
    for q in ["?limit=0", "?sort_key=size", "?sort_dir=up", "?tags=x"] {
        api.get(&format!("{base}{q}")).await.expect_evs_error(400, "EVS.5400");
    }
    assert_eq!(api.get(&format!("{base}/count?tag_key=env")).await.expect(200).body["count"], 1);

    // Update: switch to an interval; a taken name is a conflict.
    let r = api
        .put(&format!("{base}/{id}"), json!({"snapshot_policy": {"repeat_interval_days": 1, "retention_days": -1}}))
        .await
        .expect(200);
    assert_eq!(r.body["snapshot_policy"]["repeat_weekdays"], json!([]));
    assert_eq!(r.body["snapshot_policy"]["repeat_interval_days"], 1);
    api.put(&format!("{base}/{id}"), json!({"snapshot_policy": {"name": "every2"}}))
        .await
        .expect_evs_error(400, "EVS.5409");
    api.put(&format!("{base}/{id}"), json!({"snapshot_policy": {"tags": {}}})).await.expect_evs_error(400, "EVS.5400");

    // Associate and disassociate: all or none.
    let other = uuid::Uuid::new_v4().to_string();
    api.post(&format!("{base}/{id}/associate"), json!([v1, other])).await.expect_evs_error(404, "EVS.5404");
    assert_eq!(api.get(&format!("{base}/{id}")).await.expect(200).body["snapshot_policy"]["volume_ids"], json!([]));
    for bad in [json!([]), json!({"volume_ids": [v1]}), json!([v1, v1]), json!([1])] {
        api.post(&format!("{base}/{id}/associate"), bad).await.expect_evs_error(400, "EVS.5400");
    }
    api.post(&format!("{base}/{id}/associate"), json!([v1])).await.expect(204);
    assert_eq!(api.get(&format!("{base}/{id}")).await.expect(200).body["snapshot_policy"]["volume_ids"], json!([v1]));
    api.post(&format!("{base}/{id2}/disassociate"), json!([v1])).await.expect_evs_error(400, "EVS.5400");
    api.post(&format!("{base}/{id}/disassociate"), json!([v1])).await.expect(204);
    assert_eq!(api.get(&format!("{base}/{id}")).await.expect(200).body["snapshot_policy"]["volume_ids"], json!([]));

    // A deleted volume drops out of the policy.
    api.post(&format!("{base}/{id}/associate"), json!([v1])).await.expect(204);
    api.delete(&format!("/v3/{p}/volumes/{v1}")).await.expect(202);
    api.wait_volume_gone(&p, &v1).await;
    assert_eq!(api.get(&format!("{base}/{id}")).await.expect(200).body["snapshot_policy"]["volume_ids"], json!([]));

    // Another project sees nothing; unknown ids are 404.
    let q = project();
    api.get(&format!("/v5/{q}/snapshot-policies/{id}")).await.expect_evs_error(404, "EVS.5404");
    api.get(&format!("{base}/{}", uuid::Uuid::new_v4())).await.expect_evs_error(404, "EVS.5404");
    api.get(&format!("{base}/nope")).await.expect_evs_error(404, "EVS.5404");

    api.delete(&format!("{base}/{id}")).await.expect(204);
    api.delete(&format!("{base}/{id}")).await.expect_evs_error(404, "EVS.5404");
    assert_eq!(api.get(&format!("{base}/count")).await.expect(200).body["count"], 1);
}

/// Policy seconds per real second in the scheduler test.
const SCALE: i64 = 3600;

/// `name → count` of the policy's snapshots of each volume (`volume → {stamp → n}`).
async fn auto_snapshots(api: &Api, p: &str) -> BTreeMap<String, BTreeMap<String, usize>> {
    let r = api.get(&format!("/v3/{p}/snapshots/detail?limit=1000")).await.expect(200);
    let mut out: BTreeMap<String, BTreeMap<String, usize>> = BTreeMap::new();
    for x in r.body["snapshots"].as_array().unwrap() {
        let name = x["name"].as_str().unwrap_or_default();
        if let Some(stamp) = name.strip_prefix("autosnap-hourly-") {
            *out.entry(s(x, "volume_id")).or_default().entry(stamp.to_string()).or_default() += 1;
        }
    }
    out
}

fn stamp_epoch(stamp: &str) -> i64 {
    chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%d%H%M").expect("stamp").and_utc().timestamp()
}

fn assert_no_double(snaps: &BTreeMap<String, BTreeMap<String, usize>>) {
    for (v, stamps) in snaps {
        for (st, n) in stamps {
            assert_eq!(*n, 1, "volume {v} has {n} snapshots of the run {st}");
        }
    }
}

async fn wait_for<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "{what}: not within {secs}s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn scheduler_takes_trims_and_survives_kill9(b: Backend) {
    let base = chrono::Utc::now().timestamp();
    let env = vec![
        ("CINDERBLOCK_SNAPSHOT_POLICIES__CLOCK_SCALE".to_string(), SCALE.to_string()),
        ("CINDERBLOCK_SNAPSHOT_POLICIES__CLOCK_BASE".to_string(), base.to_string()),
        ("CINDERBLOCK_SNAPSHOT_POLICIES__TICK_MS".to_string(), "100".to_string()),
    ];
    let srv = TestServer::start(b, Opts { env, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let v1 = volume(&api, &p).await;
    let v2 = volume(&api, &p).await;
    let hours: Vec<String> = (0..24).map(|h| h.to_string()).collect();
    let r = api
        .post(
            &format!("/v5/{p}/snapshot-policies"),
            json!({"snapshot_policy": {"name": "hourly", "repeat_interval_days": 1, "time_points": hours, "retention_days": 1}}),
        )
        .await
        .expect(200);
    let id = s(&r.body["snapshot_policy"], "id");
    api.post(&format!("/v5/{p}/snapshot-policies/{id}/associate"), json!([v1, v2])).await.expect(204);

    // On time: runs every policy hour (a real second), each one snapshot per volume.
    wait_for("three runs", 30, || async { auto_snapshots(&api, &p).await.get(&v2).is_some_and(|m| m.len() >= 3) })
        .await;
    let snaps = auto_snapshots(&api, &p).await;
    assert_no_double(&snaps);
    let stamps: Vec<i64> = snaps[&v1].keys().map(|s| stamp_epoch(s)).collect();
    // Runs sit on the hour grid; a pass the machine delays past the next hour takes only the
    // latest due run (by design), so gaps are whole hours and mostly one.
    for w in stamps.windows(2) {
        assert!(w[1] > w[0] && (w[1] - w[0]) % 3600 == 0, "runs off the hour grid: {stamps:?}");
    }
    assert!(stamps.windows(2).any(|w| w[1] - w[0] == 3600), "no two runs an hour apart: {stamps:?}");

    // kill -9; policy hours pass while the daemon is down; the restart takes the latest due
    // run once (not one per missed hour, never a run twice).
    let policy_time = |real: i64| base + (real - base) * SCALE;
    srv.kill9();
    let killed_at = policy_time(chrono::Utc::now().timestamp()) + 1;
    tokio::time::sleep(Duration::from_secs(4)).await; // four policy hours with no daemon
    let restarted_at = policy_time(chrono::Utc::now().timestamp()) - 1;
    srv.restart();
    wait_for("the missed run taken at start", 30, || async {
        auto_snapshots(&api, &p).await.get(&v1).is_some_and(|m| m.keys().any(|s| stamp_epoch(s) >= restarted_at - 3600))
    })
    .await;
    let after = auto_snapshots(&api, &p).await;
    assert_no_double(&after);
    for (v, m) in &after {
        for st in m.keys() {
            let t = stamp_epoch(st);
            assert!(
                t <= killed_at || t >= restarted_at - 3600,
                "volume {v}: run {st} fell due while the daemon was down and was taken on its own"
            );
        }
    }

    // Retention: one policy day (24 real seconds): the oldest runs are trimmed.
    let oldest = stamps[0];
    wait_for("the oldest run trimmed", 60, || async {
        let now = auto_snapshots(&api, &p).await;
        now.get(&v1).is_some_and(|m| m.keys().all(|s| stamp_epoch(s) > oldest))
    })
    .await;
    let snaps = auto_snapshots(&api, &p).await;
    assert_no_double(&snaps);
    for (v, m) in &snaps {
        assert!(m.len() <= 30, "volume {v} keeps {} runs with a one-day retention", m.len());
    }
    // Each run is a job.
    let jobs = srv.db_jobs().await;
    assert!(jobs.iter().filter(|(_, st)| st == "SUCCESS").count() >= 6, "{jobs:?}");
    // Disassociated volumes are no longer taken.
    api.delete(&format!("/v5/{p}/snapshot-policies/{id}")).await.expect(204);
}
