//! Configuration and start-up (issue 2 §1): unknown keys fail the start naming the key,
//! `migrate` runs migrations alone, `CINDERBLOCK_*` variables override the file, and with no
//! config at all the daemon starts on its embedded defaults under `./data`.

#[macro_use]
mod common;

use std::process::Child;
use std::time::Duration;

use serde_json::json;

use common::{daemon_command, project, run_to_exit, s, spawn_and_wait_listening, Backend, Opts, TestServer};

backend_tests!(migrate_alone_then_serve);

/// Kills the child on drop.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A valid config with `extra` lines added to each section (top level, `[database]`,
/// `[auth]`, `[jobs]`, `[[pools]]`).
fn config(dir: &std::path::Path, listen: &str, extra: [&str; 5]) -> String {
    let d = dir.display();
    let [top, database, auth, jobs, pool] = extra;
    format!(
        "listen = \"{listen}\"\nnode = \"cfg-test\"\n{top}\n\
         [database]\nurl = \"sqlite://{d}/cb.db\"\n{database}\n\
         [auth]\nmode = \"noauth\"\n{auth}\n\
         [jobs]\nworkers = 1\n{jobs}\n\
         [[pools]]\nname = \"default\"\npath = \"{d}/pool\"\n{pool}\n"
    )
}

/// Run `sub` on `text`; it must fail, naming `what`, without ever listening.
fn assert_start_fails(text: &str, what: &str) {
    let dir = tempfile::tempdir().expect("tmp");
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, text).expect("write");
    for sub in ["serve", "migrate"] {
        let mut cmd = daemon_command(dir.path(), &dir.path().join("log"), &[]);
        cmd.arg(sub).arg("--config").arg(&cfg);
        let (status, out, err) = run_to_exit(cmd, Duration::from_secs(30));
        assert!(!status.success(), "{sub} accepted a config with a bad {what:?}:\n{text}");
        assert!(
            err.contains(what) || out.contains(what),
            "{sub}: the error must name {what:?}; stderr: {err}\nstdout: {out}"
        );
        assert!(!out.contains("listening on"), "{sub} must not start listening: {out}");
    }
}

#[test]
fn unknown_keys_fail_the_start_and_are_named() {
    let dir = tempfile::tempdir().expect("tmp");
    let ok = "127.0.0.1:0";
    let cases = [
        (["bogus_top_level = 1", "", "", "", ""], "bogus_top_level"),
        (["", "urll = \"sqlite://x.db\"", "", "", ""], "urll"),
        (["", "", "modus = \"noauth\"", "", ""], "modus"),
        (["", "", "", "step_delay = 5", ""], "step_delay"),
        (["", "", "", "", "colour = \"red\""], "colour"),
    ];
    for (extra, key) in cases {
        assert_start_fails(&config(dir.path(), ok, extra), key);
    }
}

#[test]
fn invalid_values_fail_the_start() {
    let dir = tempfile::tempdir().expect("tmp");
    assert_start_fails(&config(dir.path(), "not an address", [""; 5]), "listen");
    assert_start_fails(
        &config(dir.path(), "127.0.0.1:0", ["default_volume_type = \"NOPE\"", "", "", "", ""]),
        "default_volume_type",
    );
}

async fn migrate_alone_then_serve(b: Backend) {
    let srv = TestServer::prepare(b, Opts::default());
    for _ in 0..2 {
        // Twice: migrations are idempotent.
        let (status, out, err) = run_to_exit(srv.command(&["migrate"]), Duration::from_secs(60));
        assert!(status.success(), "migrate failed: {err}");
        assert!(!out.contains("listening on"), "migrate must not serve: {out}");
    }
    // The schema exists (these queries fail on a missing table) and is empty.
    assert!(srv.db_volumes().await.is_empty());
    assert!(srv.db_jobs().await.is_empty());
    srv.start_daemon();
    let api = srv.api();
    let p = project();
    let v = api.cinder_create_available(&p, json!({"size": 1})).await;
    assert!(srv.volume_path(&s(&v, "id")).exists());
    assert_eq!(srv.db_volumes().await.len(), 1);
}

#[tokio::test]
async fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let other = dir.path().join("from-env.db");
    let srv = TestServer::prepare(
        Backend::Sqlite,
        Opts {
            env: vec![
                ("CINDERBLOCK_DATABASE__URL".into(), format!("sqlite://{}", other.display())),
                ("CINDERBLOCK_DEFAULT_AVAILABILITY_ZONE".into(), "nova".into()),
            ],
            ..Opts::default()
        },
    );
    srv.start_daemon();
    let api = srv.api();
    let p = project();
    api.cinder_create_available(&p, json!({"size": 1})).await;
    assert!(other.exists(), "CINDERBLOCK_DATABASE__URL was not used");
    assert!(!srv.dir().join("cb.db").exists(), "the file's database.url should have been overridden");
}

#[tokio::test]
async fn starts_with_no_config_on_embedded_defaults() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = dir.path().join("log");
    // Free ports instead of 8776/10809: other daemons (tests, benchmarks) may hold those.
    let env = [
        ("CINDERBLOCK_LISTEN".into(), "127.0.0.1:0".into()),
        ("CINDERBLOCK_EXPORTS__NBD_LISTEN".into(), "127.0.0.1:0".into()),
    ];
    let mut cmd = daemon_command(dir.path(), &log, &env);
    cmd.arg("serve");
    let (child, base) = spawn_and_wait_listening(cmd, &log);
    let _guard = ChildGuard(child);
    let client = reqwest::Client::new();
    let p = project();
    let types: serde_json::Value =
        client.get(format!("{base}/v3/{p}/types")).send().await.expect("types").json().await.expect("json");
    let names: Vec<&str> =
        types["volume_types"].as_array().expect("types").iter().filter_map(|t| t["name"].as_str()).collect();
    for want in ["__DEFAULT__", "SSD", "SAS", "SATA"] {
        assert!(names.contains(&want), "{want} missing from {names:?}");
    }
    let zones: serde_json::Value =
        client.get(format!("{base}/v3/{p}/os-availability-zone")).send().await.expect("az").json().await.expect("json");
    assert_eq!(zones["availabilityZoneInfo"].as_array().map(Vec::len), Some(1), "{zones}");
    let r = client
        .post(format!("{base}/v3/{p}/volumes"))
        .json(&json!({"volume": {"size": 1}}))
        .send()
        .await
        .expect("create");
    assert_eq!(r.status().as_u16(), 202);
    let v: serde_json::Value = r.json().await.expect("json");
    let id = s(&v["volume"], "id");
    let file = dir.path().join("data/pools/default/volumes").join(format!("{id}.raw"));
    let deadline = std::time::Instant::now() + common::WAIT_TIMEOUT;
    while !file.exists() {
        assert!(std::time::Instant::now() < deadline, "{} never appeared", file.display());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(dir.path().join("data/cinderblock.db").exists(), "default database is ./data/cinderblock.db");
}

/// A daemon built without the cargo feature `rbd` refuses an RBD pool at start, saying how to
/// get one, and never listens.
#[cfg(not(feature = "rbd"))]
#[test]
fn rbd_pool_needs_the_rbd_feature() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut text = config(dir.path(), "127.0.0.1:0", [""; 5]);
    text.push_str(&format!(
        "[[pools]]\nname = \"ceph\"\ndriver = \"rbd\"\npath = \"{}/ceph\"\nrbd = {{ pool = \"volumes\" }}\n",
        dir.path().display()
    ));
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, &text).expect("write");
    let mut cmd = daemon_command(dir.path(), &dir.path().join("log"), &[]);
    cmd.arg("serve").arg("--config").arg(&cfg);
    let (status, out, err) = run_to_exit(cmd, Duration::from_secs(30));
    assert!(!status.success(), "serve started with an rbd pool and no rbd feature");
    assert!(err.contains("cargo feature `rbd`") || out.contains("cargo feature `rbd`"), "stderr: {err}\nstdout: {out}");
    assert!(!out.contains("listening on"), "{out}");
}
