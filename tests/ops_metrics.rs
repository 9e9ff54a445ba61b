//! Metrics and health (issue 14.2): a scrape after a known workload shows counters and
//! histograms moved by exactly that workload (API requests by route template and status, job
//! durations by kind and outcome, pool and per-volume bytes, NBD bytes and requests per pool),
//! the text passes `promtool check metrics`, `/healthz` and `/readyz` answer, and `/metrics` on
//! the API port follows policy (admins only in keystone mode) while `[metrics] listen` serves
//! it without authentication.

#[macro_use]
mod common;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};

use serde_json::json;

use common::{project, s, Backend, Opts, TestServer, GIB};

backend_tests!(scrape_after_a_workload_moves_the_right_series, metrics_follow_policy_on_the_api_port);

const MV: (&str, &str) = ("OpenStack-API-Version", "volume 3.71");
const PASSWORD: &str = "correct horse battery staple";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Samples of a Prometheus text scrape: `name{labels}` → value.
fn parse(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn get(m: &BTreeMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

async fn scrape(url: &str) -> (String, BTreeMap<String, f64>) {
    let r = reqwest::get(url).await.expect("scrape");
    assert_eq!(r.status(), 200, "{url}");
    let ct = r.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    assert!(ct.starts_with("text/plain; version=0.0.4"), "content type {ct}");
    let text = r.text().await.expect("text");
    let m = parse(&text);
    (text, m)
}

/// `promtool check metrics` on `text`; skips (or fails under CI) when promtool is missing.
fn promtool_check(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) => {
            assert!(
                std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() != Ok("1"),
                "promtool is missing ({e}); scripts/test.sh installs the Debian package prometheus"
            );
            eprintln!("skipped promtool check: promtool is missing ({e})");
            return;
        }
    };
    child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn nbd_uri(info: &serde_json::Value) -> String {
    let data = &info["data"];
    format!("nbd://{}:{}/{}", s(data, "host"), data["port"], s(data, "export_name"))
}

fn qemu_io(uri: &str, cmd: &str) {
    let out = Command::new("qemu-io").args(["-f", "raw", "-c", cmd, uri]).output().expect("run qemu-io");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && !text.contains("failed"), "qemu-io {cmd}: {text}");
}

async fn scrape_after_a_workload_moves_the_right_series(b: Backend) {
    let port = free_port();
    let opts = Opts {
        extra_tail: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\nper_volume = true\n"),
        ..Opts::default()
    };
    let srv = TestServer::start(b, opts);
    let api = srv.api();
    let url = format!("http://127.0.0.1:{port}/metrics");
    let (_, before) = scrape(&url).await;

    // The workload: two creates, three reads of one volume, one read of a missing one.
    let p = project();
    let v1 = s(&api.cinder_create_available(&p, json!({"size": 1})).await, "id");
    let v2 = s(&api.cinder_create_available(&p, json!({"size": 2})).await, "id");
    // (Waiting for `available` polled the volumes: reads are counted from here.)
    let (_, mid) = scrape(&url).await;
    for _ in 0..3 {
        api.get(&format!("/v3/{p}/volumes/{v1}")).await.expect(200);
    }
    api.get(&format!("/v3/{p}/volumes/{}", uuid::Uuid::new_v4())).await.expect(404);
    // NBD: export v1, write 64 KiB and read 4 KiB in two client connections.
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{p}/volumes/{v1}/action"),
            &[MV],
            Some(json!({"os-initialize_connection": {"connector": {"host": "h"}}}).to_string()),
        )
        .await
        .expect(200);
    let uri = nbd_uri(&r.body["connection_info"]);
    qemu_io(&uri, "write -P 0x5a 0 65536");
    qemu_io(&uri, "read -P 0x5a 0 4096");

    let (text, after) = scrape(&url).await;
    let d = |k: &str| get(&after, k) - get(&before, k);
    let dm = |k: &str| get(&after, k) - get(&mid, k);
    let show = || text.lines().filter(|l| !l.contains("_bucket")).collect::<Vec<_>>().join("\n");

    // API requests and latency by route template and status.
    let show_route = "{method=\"GET\",route=\"/v3/{p}/volumes/{id}\",status=\"200\"}";
    let missing_route = "{method=\"GET\",route=\"/v3/{p}/volumes/{id}\",status=\"404\"}";
    let create_route = "{method=\"POST\",route=\"/v3/{p}/volumes\",status=\"202\"}";
    assert_eq!(dm(&format!("cinderblock_http_requests_total{show_route}")), 3.0, "{}", show());
    assert_eq!(dm(&format!("cinderblock_http_request_duration_seconds_count{show_route}")), 3.0);
    assert!(dm(&format!("cinderblock_http_request_duration_seconds_sum{show_route}")) > 0.0);
    let inf = "cinderblock_http_request_duration_seconds_bucket{le=\"+Inf\",method=\"GET\",route=\"/v3/{p}/volumes/{id}\",status=\"200\"}";
    assert_eq!(dm(inf), 3.0, "{}", show());
    assert_eq!(dm(&format!("cinderblock_http_requests_total{missing_route}")), 1.0);
    assert_eq!(d(&format!("cinderblock_http_requests_total{create_route}")), 2.0);

    // Jobs: two successful creates; nothing left in flight.
    let job = "{kind=\"createVolume\",outcome=\"SUCCESS\"}";
    assert_eq!(d(&format!("cinderblock_job_duration_seconds_count{job}")), 2.0, "{}", show());
    assert_eq!(get(&after, "cinderblock_jobs_queued{kind=\"createVolume\"}"), 0.0);

    // Pools and volumes.
    let pool = "{pool=\"default\"}";
    assert_eq!(get(&after, &format!("cinderblock_pool_provisioned_bytes{pool}")), (3 * GIB) as f64);
    assert!(get(&after, &format!("cinderblock_pool_capacity_bytes{pool}")) > 0.0);
    assert_eq!(get(&after, &format!("cinderblock_pool_up{pool}")), 1.0);
    assert_eq!(get(&after, &format!("cinderblock_pool_max_over_subscription_ratio{pool}")), 20.0);
    let v1_alloc = get(&after, &format!("cinderblock_volume_allocated_bytes{{pool=\"default\",volume=\"{v1}\"}}"));
    assert!(v1_alloc >= 65536.0, "v1 allocated {v1_alloc}: {}", show());
    let v2_key = format!("cinderblock_volume_allocated_bytes{{pool=\"default\",volume=\"{v2}\"}}");
    assert!(after.contains_key(&v2_key), "{}", show());
    assert!(get(&after, &format!("cinderblock_pool_allocated_bytes{pool}")) >= v1_alloc);

    // NBD, per pool: exactly the bytes the client moved, two connections.
    assert_eq!(d("cinderblock_nbd_bytes_total{pool=\"default\",direction=\"write\"}"), 65536.0, "{}", show());
    assert_eq!(d("cinderblock_nbd_bytes_total{pool=\"default\",direction=\"read\"}"), 4096.0, "{}", show());
    assert_eq!(d("cinderblock_nbd_requests_total{pool=\"default\",op=\"write\"}"), 1.0, "{}", show());
    assert_eq!(d("cinderblock_nbd_connections_total{pool=\"default\"}"), 2.0, "{}", show());
    assert_eq!(get(&after, "cinderblock_exports"), 1.0);

    promtool_check(&text);

    // The same text on the API port (noauth: every caller is an admin), and the probes.
    let (_, on_api) = scrape(&format!("{}/metrics", srv.base_url())).await;
    assert!(on_api.keys().any(|k| k.starts_with("cinderblock_http_requests_total")));
    for base in [srv.base_url(), format!("http://127.0.0.1:{port}")] {
        let r = api.get(&format!("{base}/healthz")).await.expect(200);
        assert_eq!(r.body["status"], "alive");
        let r = api.get(&format!("{base}/readyz")).await.expect(200);
        assert_eq!(r.body["status"], "ready", "{}", r.text);
        assert_eq!(r.body["checks"]["database"], "ok");
        assert_eq!(r.body["checks"]["pools"]["default"], "ok");
    }
    // A pool whose storage is gone: not ready, and the pool is down in the metrics.
    let _ = std::fs::rename(&srv.pool, srv.dir().join("pool-moved"));
    let r = api.get(&format!("{}/readyz", srv.base_url())).await.expect(503);
    assert_eq!(r.body["status"], "not ready", "{}", r.text);
    assert!(r.body["checks"]["pools"]["default"].as_str().unwrap_or("").starts_with("failed"), "{}", r.text);
    let (_, down) = scrape(&url).await;
    assert_eq!(get(&down, &format!("cinderblock_pool_up{pool}")), 0.0);
    let _ = std::fs::rename(srv.dir().join("pool-moved"), &srv.pool);
    api.get(&format!("{}/readyz", srv.base_url())).await.expect(200);
}

async fn metrics_follow_policy_on_the_api_port(b: Backend) {
    let port = free_port();
    let env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    let opts = Opts { env, extra_tail: format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n"), ..Opts::default() };
    let srv = TestServer::start(b, opts);
    srv.cli(&["admin", "project", "create", "ops"], None);
    srv.cli(
        &["admin", "user", "create", "boss", "--project", "ops", "--role", "admin"],
        Some(&format!("{PASSWORD}\n")),
    );
    srv.cli(
        &["admin", "user", "create", "alice", "--project", "ops", "--role", "member"],
        Some(&format!("{PASSWORD}\n")),
    );
    let api = srv.api();
    let boss = common::password_login(&api, "boss", "ops", PASSWORD).await;
    let alice = common::password_login(&api, "alice", "ops", PASSWORD).await;

    // Probes need no token.
    api.get("/healthz").await.expect(200);
    api.get("/readyz").await.expect(200);
    // /metrics on the API port: 401 without a token, 403 for a member, 200 for an admin.
    api.get("/metrics").await.expect(401);
    api.get_h("/metrics", &[("X-Auth-Token", &alice)]).await.expect(403);
    let r = api.get_h("/metrics", &[("X-Auth-Token", &boss)]).await.expect(200);
    assert!(r.text.contains("cinderblock_http_requests_total"), "{}", r.text);
    // The metrics address needs none (it is meant for a private network).
    let (_, m) = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert!(
        m.keys().any(|k| k.starts_with("cinderblock_http_requests_total{method=\"GET\",route=\"/metrics\",status=\"403\"}")),
        "the refused scrape is counted"
    );
}
