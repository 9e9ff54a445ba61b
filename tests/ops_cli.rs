//! The operator's CLI (issue 14.5) against a live keystone-mode daemon, each command in both
//! output formats: `status`, `volume list/show`, `job list/show` (a failed job with its
//! reason), `pool list`, `admin user disable/enable` and `admin project disable/enable` (the
//! user's token stops working and works again only after a new login), and `completion`.
//! SQLite always, PostgreSQL with `TEST_DATABASE_URL`.

#[macro_use]
mod common;

use std::io::Write;
use std::process::Stdio;

use reqwest::Method;
use serde_json::{json, Value};

use common::{s, Api, Backend, Opts, TestServer};

backend_tests!(
    operator_commands_in_both_formats,
    disabling_a_user_or_project_ends_its_tokens,
    long_copies_report_progress_and_keep_to_the_copy_limit,
);

const PASSWORD: &str = "operator test password 1";

/// Run `cinderblock <args>` with the server's config; (success, stdout, stderr).
fn run(server: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = server.command(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cinderblock");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    let o = child.wait_with_output().expect("wait");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The test daemon listens on a port it picked (`listen` is port 0 in its config).
fn daemon_addr(server: &TestServer) -> String {
    server.base_url().trim_start_matches("http://").trim_end_matches('/').to_string()
}

fn ok(server: &TestServer, args: &[&str]) -> String {
    let daemon = daemon_addr(server);
    let mut all = args.to_vec();
    if matches!(args.first(), Some(&"status") | Some(&"pool")) && !args.contains(&"--daemon") {
        all.extend(["--daemon", daemon.as_str()]);
    }
    let args = &all[..];
    let (good, out, err) = run(server, args, None);
    assert!(good, "cinderblock {args:?} failed:\n{out}\n{err}");
    out
}

fn json_of(server: &TestServer, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let daemon = daemon_addr(server);
    if matches!(args.first(), Some(&"status") | Some(&"pool")) {
        all.extend(["--daemon", daemon.as_str()]);
    }
    let out = ok(server, &all);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?} --format json is not JSON ({e}):\n{out}"))
}

/// A keystone daemon with project `ops` and its member `olga`; her token.
async fn setup(backend: Backend) -> (TestServer, String, String) {
    setup_with(backend, vec![]).await
}

async fn setup_with(backend: Backend, mut env: Vec<(String, String)>) -> (TestServer, String, String) {
    env.push(("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string()));
    let server = TestServer::start(backend, Opts { env, ..Opts::default() });
    let project = ok(&server, &["admin", "project", "create", "ops"]).trim().to_string();
    let (good, _, err) = run(
        &server,
        &["admin", "user", "create", "olga", "--project", "ops", "--role", "member"],
        Some(&format!("{PASSWORD}\n")),
    );
    assert!(good, "user create: {err}");
    let token = login(&server.api()).await.expect("login");
    (server, project, token)
}

async fn login(api: &Api) -> Option<String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": "olga", "password": PASSWORD, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "ops", "domain": {"name": "Default"}}}
    }});
    let r = api.post("/identity/v3/auth/tokens", body).await;
    (r.status == 201).then(|| r.header("x-subject-token").expect("token"))
}

async fn get(api: &Api, token: &str, path: &str) -> u16 {
    api.request(Method::GET, path, &[("X-Auth-Token", token)], None).await.status
}

async fn operator_commands_in_both_formats(backend: Backend) {
    let (server, p, token) = setup(backend).await;
    let api = server.api();
    let body = json!({"volume": {"size": 1, "name": "cli-vol"}}).to_string();
    let r = api.request(Method::POST, &format!("/v3/{p}/volumes"), &[("X-Auth-Token", &token)], Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let vid = s(&r.body["volume"], "id");
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    loop {
        let r = api.request(Method::GET, &format!("/v3/{p}/volumes/{vid}"), &[("X-Auth-Token", &token)], None).await;
        if r.body["volume"]["status"] == json!("available") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "volume not available: {}", r.text);
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Write a little so allocation is not zero.
    let file = server.pool.join("volumes").join(format!("{vid}.raw"));
    let f = std::fs::OpenOptions::new().write(true).open(&file).expect("open volume file");
    std::os::unix::fs::FileExt::write_at(&f, &[7u8; 65536], 0).expect("write");
    f.sync_all().expect("sync");
    drop(f);

    // status
    let st = json_of(&server, &["status"]);
    assert_eq!(st["daemon"]["state"], json!("ready"), "{st}");
    assert!(st["daemon"]["uptime_seconds"].as_u64().is_some(), "{st}");
    assert_eq!(st["daemon"]["database"], json!("ok"), "{st}");
    assert_eq!(st["volumes_by_status"]["available"], json!(1), "{st}");
    assert_eq!(st["pools"][0]["health"], json!("ok"), "{st}");
    assert!(st["pools"][0]["total_bytes"].as_u64().is_some_and(|t| t > 0), "{st}");
    let table = ok(&server, &["status"]);
    assert!(table.contains("daemon: ready, up "), "{table}");
    assert!(table.contains("volumes: available 1"), "{table}");
    assert!(table.lines().any(|l| l.starts_with("POOL ") && l.contains("HEALTH")), "{table}");

    // volume list / show
    let vl = json_of(&server, &["volume", "list"]);
    let v = vl["volumes"].as_array().and_then(|a| a.iter().find(|v| v["id"] == json!(vid))).expect("volume listed");
    assert_eq!((v["project_id"].clone(), v["status"].clone()), (json!(p), json!("available")));
    assert!(v["allocated_bytes"].as_u64().is_some_and(|a| a >= 65536), "{v}");
    let table = ok(&server, &["volume", "list"]);
    assert!(table.starts_with("ID "), "{table}");
    assert!(table.lines().any(|l| l.starts_with(&vid) && l.contains(&p) && l.contains("cli-vol")), "{table}");
    let other = json_of(&server, &["volume", "list", "--project", "no-such-project"]);
    assert_eq!(other["volumes"], json!([]));
    let vs = json_of(&server, &["volume", "show", &vid]);
    assert_eq!(vs["volume"]["name"], json!("cli-vol"));
    let table = ok(&server, &["volume", "show", &vid]);
    assert!(table.lines().any(|l| l.starts_with("id ") && l.ends_with(&vid)), "{table}");
    let (good, _, err) = run(&server, &["volume", "show", "00000000-0000-0000-0000-000000000000"], None);
    assert!(!good && err.contains("no volume"), "{err}");

    // job list / show: the create job, then the same job marked failed with a reason.
    let jl = json_of(&server, &["job", "list"]);
    let job = jl["jobs"]
        .as_array()
        .and_then(|a| a.iter().find(|j| j["volume_id"] == json!(vid) && j["kind"] == json!("createVolume")))
        .expect("create job listed")
        .clone();
    assert_eq!(job["status"], json!("SUCCESS"), "{job}");
    let jid = s(&job, "id");
    fail_job(&server, &jid).await;
    let failed = json_of(&server, &["job", "list", "--status", "fail"]);
    assert_eq!(failed["jobs"].as_array().map(Vec::len), Some(1), "{failed}");
    assert_eq!(failed["jobs"][0]["fail_reason"], json!("the disk caught fire"), "{failed}");
    let table = ok(&server, &["job", "list", "--status", "FAIL"]);
    assert!(table.lines().any(|l| l.starts_with(&jid) && l.ends_with("the disk caught fire")), "{table}");
    let js = json_of(&server, &["job", "show", &jid]);
    assert_eq!(js["job"]["error_code"], json!("EVS.2024"), "{js}");
    assert!(js["job"]["entities"].is_object(), "{js}");
    assert!(ok(&server, &["job", "show", &jid]).contains("the disk caught fire"));
    let st = ok(&server, &["status"]);
    assert!(st.contains("recent failed jobs:") && st.contains(&jid), "{st}");

    // pool list
    let pl = json_of(&server, &["pool", "list"]);
    let pool = &pl["pools"][0];
    assert_eq!((pool["driver"].clone(), pool["volumes"].clone()), (json!("file"), json!(1)), "{pl}");
    assert_eq!(pool["provisioned_bytes"], json!(1u64 << 30), "{pl}");
    assert!(pool["allocated_bytes"].as_u64().is_some_and(|a| a >= 65536), "{pl}");
    let table = ok(&server, &["pool", "list"]);
    let name = s(pool, "name");
    assert!(table.lines().any(|l| l.starts_with(&name) && l.contains(" ok ") && l.contains("1.0 GiB")), "{table}");

    // With the daemon down the database views still work and say so.
    server.kill9();
    let st = json_of(&server, &["status"]);
    assert!(st["daemon"]["state"].as_str().is_some_and(|s| s.starts_with("not reachable")), "{st}");
    assert_eq!(st["volumes_by_status"]["available"], json!(1), "{st}");

    // Shell completion.
    let bash = ok(&server, &["completion", "bash"]);
    assert!(bash.contains("_cinderblock") && bash.contains("volume") && bash.contains("--format"), "{bash}");
    assert!(ok(&server, &["completion", "zsh"]).contains("#compdef cinderblock"));
}

/// Mark a finished job failed with a reason, straight in the database.
async fn fail_job(server: &TestServer, id: &str) {
    sqlx::any::install_default_drivers();
    let pool = sqlx::any::AnyPoolOptions::new().max_connections(1).connect(&server.database_url()).await.expect("db");
    sqlx::query(
        "UPDATE jobs SET status = 'FAIL', error_code = 'EVS.2024', fail_reason = 'the disk caught fire' WHERE id = $1",
    )
    .bind(id)
    .execute(&pool)
    .await
    .expect("update");
    pool.close().await;
}

async fn disabling_a_user_or_project_ends_its_tokens(backend: Backend) {
    let (server, p, token) = setup(backend).await;
    let api = server.api();
    let list = format!("/v3/{p}/volumes");
    assert_eq!(get(&api, &token, &list).await, 200);

    ok(&server, &["admin", "user", "disable", "olga"]);
    assert_eq!(get(&api, &token, &list).await, 401, "a disabled user's token still works");
    assert!(login(&api).await.is_none(), "a disabled user logged in");
    let users = ok(&server, &["admin", "user", "list"]);
    assert!(users.lines().any(|l| l.contains(" olga ") && l.contains(" no ")), "{users}");
    ok(&server, &["admin", "user", "enable", "olga"]);
    assert_eq!(get(&api, &token, &list).await, 401, "an ended token came back");
    let token = login(&api).await.expect("login after enable");
    assert_eq!(get(&api, &token, &list).await, 200);

    ok(&server, &["admin", "project", "disable", "ops"]);
    assert_eq!(get(&api, &token, &list).await, 401, "a token of a disabled project still works");
    assert!(login(&api).await.is_none(), "logged in to a disabled project");
    ok(&server, &["admin", "project", "enable", &p]);
    assert_eq!(get(&api, &token, &list).await, 200, "the project's tokens work again once enabled");

    let (good, _, err) = run(&server, &["admin", "user", "disable", "nobody"], None);
    assert!(!good && err.contains("no user"), "{err}");
}

async fn wait_available(api: &Api, token: &str, p: &str, id: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    loop {
        let r = api.request(Method::GET, &format!("/v3/{p}/volumes/{id}"), &[("X-Auth-Token", token)], None).await;
        if r.body["volume"]["status"] == "available" {
            return;
        }
        assert!(r.body["volume"]["status"] != "error", "{}", r.text);
        assert!(std::time::Instant::now() < deadline, "volume {id} never became available: {}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A full clone of a volume holding 160 MiB of data, with `jobs.copy_bps_limit` at 48 MiB/s:
/// the copy takes at least ~3 s, `job show --wait` draws its progress advancing (a line per
/// change, stderr not being a terminal) and ends with the job's final document, the EVS job
/// view shows `entities.progress` while it runs, and the clone holds the source's bytes.
async fn long_copies_report_progress_and_keep_to_the_copy_limit(backend: Backend) {
    const LIMIT: u64 = 48 << 20;
    const DATA: u64 = 160 << 20;
    let env = vec![("CINDERBLOCK_JOBS__COPY_BPS_LIMIT".to_string(), LIMIT.to_string())];
    let (server, p, token) = setup_with(backend, env).await;
    let api = server.api();
    let auth = [("X-Auth-Token", token.as_str())];
    let body = json!({"volume": {"size": 1, "name": "source"}}).to_string();
    let r = api.request(Method::POST, &format!("/v3/{p}/volumes"), &auth, Some(body)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let src = s(&r.body["volume"], "id");
    wait_available(&api, &token, &p, &src).await;
    // 160 MiB of data in four runs with holes between (the copy skips holes, reads data).
    let path = server.pool.join("volumes").join(format!("{src}.raw"));
    {
        use std::os::unix::fs::FileExt;
        let f = std::fs::OpenOptions::new().write(true).open(&path).expect("open the source file");
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let chunk: Vec<u8> = (0..(1 << 20))
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        for i in 0..DATA >> 20 {
            let off = (i / 40) * (256 << 20) + (i % 40) * (1 << 20);
            let mut c = chunk.clone();
            c[..8].copy_from_slice(&i.to_le_bytes());
            f.write_all_at(&c, off).expect("write");
        }
        f.sync_all().expect("sync");
    }
    let body = json!({"volume": {"size": 1, "name": "clone", "source_volid": src, "metadata": {"full_clone": "1"}}});
    let started = std::time::Instant::now();
    let r = api.request(Method::POST, &format!("/v3/{p}/volumes"), &auth, Some(body.to_string())).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let clone = s(&r.body["volume"], "id");
    // Its job, from the operator's job list.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let job = loop {
        let jobs = json_of(&server, &["job", "list", "--project", &p]);
        if let Some(j) = jobs["jobs"].as_array().into_iter().flatten().find(|j| j["volume_id"] == clone.as_str()) {
            break s(j, "id");
        }
        assert!(std::time::Instant::now() < deadline, "no job for the clone: {jobs}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // `job show --wait` in the background; meanwhile the EVS view is polled.
    let mut cmd = server.command(&["job", "show", &job, "--wait", "--format", "json"]);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let waiter = cmd.spawn().expect("spawn job show --wait");
    let mut seen_in_view = Vec::new();
    loop {
        let r = api.request(Method::GET, &format!("/v1/{p}/jobs/{job}"), &auth, None).await;
        assert_eq!(r.status, 200, "{}", r.text);
        if let Some(pct) = r.body["entities"]["progress"].as_str() {
            assert_eq!(r.body["status"], "RUNNING", "progress shown outside RUNNING: {}", r.text);
            seen_in_view.push(pct.trim_end_matches('%').parse::<u8>().expect("NN%"));
        }
        if r.body["status"] == "SUCCESS" {
            assert!(r.body["entities"].get("progress").is_none(), "{}", r.text);
            break;
        }
        assert_ne!(r.body["status"], "FAIL", "{}", r.text);
        assert!(started.elapsed() < std::time::Duration::from_secs(120), "the clone never finished");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let elapsed = started.elapsed();
    let out = waiter.wait_with_output().expect("wait for job show --wait");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "job show --wait: {stdout}\n{stderr}");
    // The copy keeps to the limit: 160 MiB at 48 MiB/s is 3.3 s; allow for the first chunk.
    assert!(elapsed >= std::time::Duration::from_millis(2_800), "the copy ran unthrottled: {elapsed:?}");
    assert!(
        seen_in_view.iter().any(|&p| p > 0 && p < 100),
        "the EVS job view never showed a partial progress: {seen_in_view:?}"
    );
    assert!(seen_in_view.windows(2).all(|w| w[0] <= w[1]), "progress went back: {seen_in_view:?}");
    // The bar: one line per change, percentages rising, ending with SUCCESS.
    let percents: Vec<u8> =
        stderr.lines().filter_map(|l| l.split_whitespace().find_map(|w| w.strip_suffix('%')?.parse().ok())).collect();
    assert!(percents.iter().filter(|&&p| p > 0 && p < 100).count() >= 2, "the bar did not advance:\n{stderr}");
    assert!(percents.windows(2).all(|w| w[0] <= w[1]), "the bar went back:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(last.ends_with("SUCCESS") && last.contains("100%"), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"));
    assert_eq!(doc["job"]["status"], "SUCCESS", "{doc}");
    assert_eq!(doc["job"]["progress"], "100%", "{doc}");
    wait_available(&api, &token, &p, &clone).await;
    let a = std::fs::read(&path).expect("read source");
    let b = std::fs::read(server.pool.join("volumes").join(format!("{clone}.raw"))).expect("read clone");
    assert!(a == b, "the throttled copy differs from its source");
    // A job that never reported shows no progress until it ends.
    let jobs = json_of(&server, &["job", "list", "--project", &p]);
    let create = jobs["jobs"].as_array().into_iter().flatten().find(|j| j["volume_id"] == src.as_str()).expect("job");
    assert_eq!(create["progress"], "100%", "{create}");
}
