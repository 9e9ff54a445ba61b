//! Identity and multi-tenancy (issue 5, items 1–5): the daemon runs with `auth.mode = keystone`
//! (`CINDERBLOCK_AUTH__MODE`), accounts are made with the `cinderblock admin` CLI against the same
//! config, and requests authenticate with tokens from `POST /identity/v3/auth/tokens` or with
//! AK/SK signatures. Each test has its own daemon (SQLite always, PostgreSQL with
//! `TEST_DATABASE_URL`).
//!
//! Accounts of every fixture: projects A and B; `boss` admin in A, `alice` member in A, `rita`
//! reader in A, `bob` member in B.

#[macro_use]
mod common;

use std::io::Write;
use std::process::Stdio;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use cinderblock::api::signature;
use common::{s, unique, Api, Backend, Opts, Resp, TestServer};

backend_tests!(
    cli_manages_accounts_and_first_start_says_how_to_make_an_admin,
    keystone_discovery_and_token_issue_with_catalog,
    requests_without_valid_credentials_are_refused,
    project_isolation_across_both_apis,
    reader_cannot_write_member_and_admin_can,
    aksk_signatures_pass_and_fail_with_the_right_codes,
    tokens_expire,
    rescoped_tokens_keep_their_expiry_and_revokes_stick,
    views_follow_the_call_and_the_callers_roles,
    routes_answer_404_and_405_before_policy,
    failed_logins_are_throttled_and_password_checks_bounded,
    keystone_admin_makes_and_removes_projects,
    aksk_replays_and_ambiguous_requests_are_refused,
    project_lookups_do_not_reveal_existence,
    keystone_admin_manages_users,
    keystone_admin_manages_role_assignments,
    keystone_user_admin_refuses_bad_input_and_non_admins,
    json_logs_have_access_and_job_lines_and_no_secrets,
);

const PASSWORD: &str = "correct horse battery staple";

/// Run `cinderblock <args> --config <server config>`, optionally feeding `stdin`; returns
/// stdout, panicking with stderr on failure.
fn cli(server: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    let (ok, out, err) = cli_status(server, args, stdin);
    assert!(ok, "cinderblock {args:?} failed:\nstdout: {out}\nstderr: {err}");
    out
}

/// Like [`cli`] but returns (success, stdout, stderr).
fn cli_status(server: &TestServer, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = server.command(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cinderblock admin");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        // A command refused before it reads its password closes stdin first: a broken pipe is
        // then expected, and the exit status below says what happened.
        if let Err(e) = pipe.write_all(input.as_bytes()) {
            assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "write stdin: {e}");
        }
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if child.try_wait().expect("wait").is_some() {
            break;
        }
        assert!(Instant::now() < deadline, "cinderblock {args:?} did not finish");
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = child.wait_with_output().expect("output");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A daemon in keystone mode.
fn keystone_server(backend: Backend, extra_env: &[(&str, &str)]) -> TestServer {
    let mut env = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    env.extend(extra_env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestServer::start(backend, Opts { env, ..Opts::default() })
}

/// A keystone daemon with the standard accounts, and tokens for each user.
struct Fixture {
    server: TestServer,
    a: String,
    b: String,
    boss: Client,
    alice: Client,
    rita: Client,
    bob: Client,
}

impl Fixture {
    async fn new(backend: Backend) -> Fixture {
        Fixture::with_env(backend, &[]).await
    }

    async fn with_env(backend: Backend, env: &[(&str, &str)]) -> Fixture {
        let server = keystone_server(backend, env);
        let a = cli(&server, &["admin", "project", "create", "proj-a"], None).trim().to_string();
        let b = cli(&server, &["admin", "project", "create", "proj-b"], None).trim().to_string();
        for (user, project, role) in [
            ("boss", "proj-a", "admin"),
            ("alice", "proj-a", "member"),
            ("rita", "proj-a", "reader"),
            ("bob", "proj-b", "member"),
        ] {
            let id = cli(
                &server,
                &["admin", "user", "create", user, "--project", project, "--role", role],
                Some(&format!("{PASSWORD}\n")),
            );
            assert_eq!(id.trim().len(), 32, "user create prints the id: {id:?}");
        }
        let api = server.api();
        let boss = Client::login(&api, "boss", "proj-a").await;
        let alice = Client::login(&api, "alice", "proj-a").await;
        let rita = Client::login(&api, "rita", "proj-a").await;
        let bob = Client::login(&api, "bob", "proj-b").await;
        Fixture { server, a, b, boss, alice, rita, bob }
    }
}

/// The password-auth body the OpenStack clients send.
fn password_body(user: &str, password: &str, project: &str) -> Value {
    json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
    }})
}

/// An HTTP client that sends one user's token.
#[derive(Clone)]
struct Client {
    api: Api,
    token: String,
}

impl Client {
    async fn login(api: &Api, user: &str, project: &str) -> Client {
        let r = api.post("/identity/v3/auth/tokens", password_body(user, PASSWORD, project)).await.expect(201);
        let token = r.header("x-subject-token").expect("X-Subject-Token");
        Client { api: api.clone(), token }
    }

    async fn req(&self, method: Method, path: &str, body: Option<Value>) -> Resp {
        self.api.request(method, path, &[("X-Auth-Token", &self.token)], body.map(|b| b.to_string())).await
    }
    async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path, None).await
    }
    async fn post(&self, path: &str, body: Value) -> Resp {
        self.req(Method::POST, path, Some(body)).await
    }
    async fn put(&self, path: &str, body: Value) -> Resp {
        self.req(Method::PUT, path, Some(body)).await
    }
    async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path, None).await
    }
    /// GET with `OpenStack-API-Version: volume 3.<minor>`.
    async fn get_at(&self, path: &str, minor: u32) -> Resp {
        let v = format!("volume 3.{minor}");
        self.api.request(Method::GET, path, &[("X-Auth-Token", &self.token), ("OpenStack-API-Version", &v)], None).await
    }

    /// Create a Cinder volume and wait until it is available.
    async fn volume(&self, p: &str, name: &str) -> String {
        let r = self.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "name": name}})).await.expect(202);
        let id = s(&r.body["volume"], "id");
        self.wait_status(p, &id, "available").await;
        id
    }

    /// Create an EVS disk and wait for its job.
    async fn disk(&self, p: &str, name: &str) -> String {
        let r = self
            .post(
                &format!("/v2/{p}/cloudvolumes"),
                json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": name}}),
            )
            .await
            .expect(200);
        self.wait_job(p, &s(&r.body, "job_id")).await;
        r.body["volume_ids"][0].as_str().expect("volume id").to_string()
    }

    async fn wait_job(&self, p: &str, job: &str) {
        let deadline = Instant::now() + common::WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v1/{p}/jobs/{job}")).await.expect(200);
            match r.body["status"].as_str() {
                Some("SUCCESS") => return,
                Some("FAIL") => panic!("job {job} failed: {}", r.text),
                _ => {}
            }
            assert!(Instant::now() < deadline, "job {job} never finished: {}", r.text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_status(&self, p: &str, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + common::WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200);
            if r.body["volume"]["status"] == want {
                return r.body["volume"].clone();
            }
            assert!(Instant::now() < deadline, "volume {id} never {want}: {}", r.text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_gone(&self, p: &str, id: &str) {
        let deadline = Instant::now() + common::WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v3/{p}/volumes/{id}")).await;
            if r.status == 404 {
                return;
            }
            assert!(Instant::now() < deadline, "volume {id} not gone: {}", r.text);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn keystone_error(r: &Resp, status: u16) {
    assert_eq!(r.status, status, "{} answered {}: {}", r.what, r.status, r.text);
    assert_eq!(r.body["error"]["code"], status, "{}: {}", r.what, r.text);
    assert!(r.body["error"]["title"].is_string(), "{}: {}", r.what, r.text);
}

// ----- item 1: accounts and the CLI -----------------------------------------------------------

async fn cli_manages_accounts_and_first_start_says_how_to_make_an_admin(backend: Backend) {
    let server = keystone_server(backend, &[]);
    assert!(
        server.log_tail(200).contains("cinderblock admin user create"),
        "a first start in keystone mode without an admin says how to create one:\n{}",
        server.log_tail(40)
    );
    let id = cli(&server, &["admin", "project", "create", "ops", "--description", "the ops team"], None);
    let id = id.trim();
    assert!(id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()), "project id {id:?}");
    let (ok, _, err) = cli_status(&server, &["admin", "project", "create", "ops"], None);
    assert!(!ok && err.contains("already exists"), "duplicate project: {err}");
    let list = cli(&server, &["admin", "project", "list"], None);
    assert!(list.contains(id) && list.contains("ops") && list.contains("the ops team"), "{list}");

    // A password comes from stdin; an empty one is refused.
    let (ok, _, err) = cli_status(&server, &["admin", "user", "create", "eve", "--project", "ops"], Some("\n"));
    assert!(!ok, "an empty password is refused: {err}");
    let (ok, _, err) =
        cli_status(&server, &["admin", "user", "create", "eve", "--project", "nope", "--role", "member"], Some("pw\n"));
    assert!(!ok && err.contains("nope"), "unknown project: {err}");
    let (ok, _, err) =
        cli_status(&server, &["admin", "user", "create", "eve", "--project", "ops", "--role", "root"], Some("pw\n"));
    assert!(!ok && err.contains("root"), "unknown role: {err}");
    let uid =
        cli(&server, &["admin", "user", "create", "eve", "--project", "ops", "--role", "member"], Some("pw-eve\n"));
    let users = cli(&server, &["admin", "user", "list"], None);
    assert!(users.contains(uid.trim()) && users.contains("ops:member"), "{users}");
    assert!(!users.contains("pw-eve") && !users.contains("argon2"), "no password material in listings: {users}");

    // Roles.
    cli(&server, &["admin", "role", "add", "--user", "eve", "--project", "ops", "--role", "reader"], None);
    let roles = cli(&server, &["admin", "role", "list", "--user", "eve"], None);
    assert!(roles.contains("member") && roles.contains("reader"), "{roles}");
    cli(&server, &["admin", "role", "remove", "--user", "eve", "--project", "ops", "--role", "reader"], None);
    assert!(!cli(&server, &["admin", "role", "list", "--user", "eve"], None).contains("reader"));

    // Credentials: both keys printed once; listing shows the access key only.
    let out = cli(&server, &["admin", "credential", "create", "--user", "eve", "--project", "ops"], None);
    let ak = field(&out, "access_key");
    let sk = field(&out, "secret_key");
    assert_eq!((ak.len(), sk.len()), (20, 40), "{out}");
    let creds = cli(&server, &["admin", "credential", "list"], None);
    assert!(creds.contains(&ak) && !creds.contains(&sk), "{creds}");
    let key_file = server.dir().join("credential.key");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key_file).expect("credential.key").permissions());
    assert_eq!(mode & 0o777, 0o600, "the credential key file is private");
    let db_text = String::from_utf8_lossy(&std::fs::read(server.dir().join("cb.db")).unwrap_or_default()).into_owned();
    assert!(!db_text.contains(&sk), "the secret key is not stored in clear");
    assert!(!server.log_tail(500).contains(&sk), "the secret key is never logged");

    // A project that owns volumes cannot be deleted; deletes cascade otherwise.
    let api = server.api();
    let eve = {
        let r = api.post("/identity/v3/auth/tokens", password_body("eve", "pw-eve", "ops")).await.expect(201);
        Client { api: api.clone(), token: r.header("x-subject-token").expect("token") }
    };
    let vol = eve.volume(id, &unique("eve")).await;
    let (ok, _, err) = cli_status(&server, &["admin", "project", "delete", "ops"], None);
    assert!(!ok && err.contains("volume"), "{err}");
    eve.delete(&format!("/v3/{id}/volumes/{vol}")).await.expect(202);
    eve.wait_gone(id, &vol).await;
    cli(&server, &["admin", "credential", "delete", &ak], None);
    assert!(!cli(&server, &["admin", "credential", "list"], None).contains(&ak));
    cli(&server, &["admin", "user", "delete", "eve"], None);
    eve.get(&format!("/v2/{id}/cloudvolumes/detail")).await.expect_evs_error(401, "Common.0013");
    cli(&server, &["admin", "project", "delete", id], None);
    assert!(!cli(&server, &["admin", "project", "list"], None).contains("ops"));
}

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {out:?}"))
        .trim()
        .to_string()
}

// ----- item 2: Keystone subset ----------------------------------------------------------------

async fn keystone_discovery_and_token_issue_with_catalog(backend: Backend) {
    let f = Fixture::new(backend).await;
    let api = f.server.api();
    let base = api.base();

    let r = api.get("/identity").await.expect(300);
    let v = &r.body["versions"]["values"][0];
    assert_eq!(v["id"], "v3.14", "{}", r.text);
    let r = api.get("/identity/v3").await.expect(200);
    assert_eq!(r.body["version"]["id"], "v3.14");
    assert_eq!(r.body["version"]["media-types"][0]["type"], "application/vnd.openstack.identity-v3+json");
    assert_eq!(r.body["version"]["status"], "stable");
    // Volume version discovery needs no token, v1 included (reference 5.1, 5.2).
    for path in ["/", "/v1", "/v2", "/v3"] {
        let r = api.get(path).await;
        assert!(matches!(r.status, 200 | 300), "{path} without a token: {} {}", r.status, r.text);
    }

    // Password, user and project by name.
    let r = api.post("/identity/v3/auth/tokens", password_body("alice", PASSWORD, "proj-a")).await.expect(201);
    let token = r.header("x-subject-token").expect("X-Subject-Token");
    let t = &r.body["token"];
    assert_eq!(t["methods"], json!(["password"]));
    assert_eq!(t["user"]["name"], "alice");
    assert_eq!(t["user"]["domain"]["name"], "Default");
    assert_eq!(t["project"]["id"], f.a.as_str());
    assert_eq!(t["project"]["name"], "proj-a");
    assert!(t["expires_at"].as_str().is_some_and(|e| e.ends_with('Z')) && t["issued_at"].is_string());
    assert!(t["audit_ids"][0].is_string());
    let roles: Vec<&str> = t["roles"].as_array().expect("roles").iter().filter_map(|r| r["name"].as_str()).collect();
    assert!(roles.contains(&"member") && !roles.contains(&"admin"), "{roles:?}");
    let catalog = t["catalog"].as_array().expect("catalog");
    let url_of = |kind: &str| -> String {
        let svc = catalog.iter().find(|c| c["type"] == kind).unwrap_or_else(|| panic!("no {kind} in {catalog:?}"));
        let eps = svc["endpoints"].as_array().expect("endpoints");
        for iface in ["public", "internal", "admin"] {
            assert!(eps.iter().any(|e| e["interface"] == iface), "{kind}: no {iface} endpoint");
        }
        eps[0]["url"].as_str().expect("url").to_string()
    };
    assert_eq!(url_of("block-storage"), format!("{base}/v3/{}", f.a));
    assert_eq!(url_of("volumev3"), format!("{base}/v3/{}", f.a));
    assert_eq!(url_of("volumev2"), format!("{base}/v2/{}", f.a));
    assert_eq!(url_of("evs"), format!("{base}/v2/{}", f.a));
    // The legacy huaweicloud-sdk-python's service types (issue 11 A 9).
    assert_eq!(url_of("evsv2.1"), format!("{base}/v2.1/{}", f.a));
    assert_eq!(url_of("volume"), format!("{base}/v2/{}", f.a));
    assert_eq!(url_of("identity"), format!("{base}/identity"));
    // The token works on the catalog's URL; tokens are stored hashed.
    let alice = Client { api: api.clone(), token: token.clone() };
    alice.get(&format!("/v3/{}/volumes", f.a)).await.expect(200);
    let db = f.server.dir().join("cb.db");
    if db.exists() {
        let text = String::from_utf8_lossy(&std::fs::read(&db).unwrap_or_default()).into_owned();
        assert!(!text.contains(&token), "the token is not stored in clear");
    }

    // By ids, and without the domain on the project id.
    let uid = s(&t["user"], "id");
    let r = api
        .post(
            "/identity/v3/auth/tokens?nocatalog",
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"id": uid, "password": PASSWORD}}},
                   "scope": {"project": {"id": f.a}}}}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["token"]["project"]["id"], f.a.as_str());
    assert!(r.body["token"].get("catalog").is_none(), "nocatalog: {}", r.text);

    // Refusals: wrong password, unknown user, project without a role, other domain.
    for body in [
        password_body("alice", "wrong", "proj-a"),
        password_body("nobody", PASSWORD, "proj-a"),
        password_body("alice", PASSWORD, "proj-b"),
        password_body("alice", PASSWORD, "no-such-project"),
        json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "alice", "password": PASSWORD, "domain": {"name": "Other"}}}}}}),
    ] {
        let r = api.post("/identity/v3/auth/tokens", body.clone()).await;
        keystone_error(&r, 401);
        assert!(r.header("x-subject-token").is_none());
    }
    keystone_error(&api.post_raw("/identity/v3/auth/tokens", "{not json").await, 400);

    // No scope: the user's default project.
    let r = api
        .post(
            "/identity/v3/auth/tokens",
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "bob", "password": PASSWORD, "domain": {"id": "default"}}}}}}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["token"]["project"]["id"], f.b.as_str());

    // Validation, projects, revocation.
    let h = [("X-Auth-Token", token.as_str()), ("X-Subject-Token", token.as_str())];
    let r = api.get_h("/identity/v3/auth/tokens", &h).await.expect(200);
    assert_eq!(r.body["token"]["user"]["name"], "alice");
    keystone_error(
        &api.get_h("/identity/v3/auth/tokens", &[("X-Auth-Token", &token), ("X-Subject-Token", "nope")]).await,
        404,
    );
    keystone_error(&api.get_h("/identity/v3/auth/tokens", &[("X-Subject-Token", &token)]).await, 401);
    let names = |r: &Resp| -> Vec<String> {
        r.body["projects"].as_array().expect("projects").iter().map(|p| s(p, "name")).collect()
    };
    let r = api.get_h("/identity/v3/auth/projects", &[("X-Auth-Token", &token)]).await.expect(200);
    assert_eq!(names(&r), vec!["proj-a"]);
    let r = api.get_h("/identity/v3/projects", &[("X-Auth-Token", &token)]).await.expect(200);
    assert_eq!(names(&r), vec!["proj-a"], "a member sees its own projects");
    let r = api.get_h("/identity/v3/projects", &[("X-Auth-Token", &f.boss.token)]).await.expect(200);
    assert_eq!(names(&r), vec!["proj-a", "proj-b"], "an admin sees every project");
    keystone_error(&api.get_h("/identity/v3/projects", &[]).await, 401);
    let r = api.request(Method::DELETE, "/identity/v3/auth/tokens", &h, None).await;
    assert_eq!(r.status, 204, "{}", r.text);
    alice.get(&format!("/v3/{}/volumes", f.a)).await.expect_fault(401, "unauthorized");
}

// ----- item 4: auth required ------------------------------------------------------------------

async fn requests_without_valid_credentials_are_refused(backend: Backend) {
    let f = Fixture::new(backend).await;
    let api = f.server.api();
    let a = &f.a;
    // Version discovery needs nothing.
    api.get("/").await.expect(300);
    api.get("/v3/").await.expect(200);
    api.get("/v2").await.expect(200);
    // No credentials.
    api.get(&format!("/v2/{a}/cloudvolumes/detail")).await.expect_evs_error(401, "EVS.5401");
    let r = api.get(&format!("/v3/{a}/volumes")).await.expect_fault(401, "unauthorized");
    assert!(r.header("www-authenticate").is_some_and(|h| h.contains("/identity")), "WWW-Authenticate");
    api.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1}})).await.expect_fault(401, "unauthorized");
    api.get(&format!("/v1/{a}/jobs/x")).await.expect_evs_error(401, "EVS.5401");
    // The noauth forms and garbage tokens are invalid tokens.
    for t in ["admin:".to_string() + a, "notused".into(), "x".repeat(300)] {
        api.get_h(&format!("/v2/{a}/cloudvolumes/detail"), &[("X-Auth-Token", &t)])
            .await
            .expect_evs_error(401, "Common.0013");
        api.get_h(&format!("/v3/{a}/volumes"), &[("X-Auth-Token", &t)]).await.expect_fault(401, "unauthorized");
    }
    // Nothing was created by the refused create.
    let r = f.boss.get(&format!("/v3/{a}/volumes/detail?all_tenants=1")).await.expect(200);
    assert_eq!(r.body["volumes"], json!([]), "{}", r.text);
}

// ----- items 4 and 5: isolation ---------------------------------------------------------------

async fn project_isolation_across_both_apis(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.a.as_str(), f.b.as_str());
    let va = f.alice.volume(a, "alice-vol").await;
    let da = f.alice.disk(a, "alice-disk").await;
    let snap = f
        .alice
        .post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": va, "name": "s"}}))
        .await
        .expect(202);
    let sa = s(&snap.body["snapshot"], "id");
    let job = f
        .alice
        .post(&format!("/v2/{a}/cloudvolumes/{da}/action"), json!({"os-extend": {"new_size": 2}}))
        .await
        .expect(200);
    let job_id = s(&job.body, "job_id");
    f.alice.wait_job(a, &job_id).await;
    f.alice.wait_status(a, &va, "available").await;

    // B names A's project in the URL: Common.0018 (400 on EVS routes, as A.1 gives it; 403 on Cinder), in each API's format.
    f.bob.get(&format!("/v3/{a}/volumes/{va}")).await.expect_fault(403, "forbidden");
    f.bob.get(&format!("/v3/{a}/volumes/detail")).await.expect_fault(403, "forbidden");
    f.bob.get(&format!("/v2/{a}/cloudvolumes/{da}")).await.expect_evs_error(400, "Common.0018");
    f.bob.get(&format!("/v2/{a}/cloudvolumes/detail")).await.expect_evs_error(400, "Common.0018");
    f.bob.delete(&format!("/v2/{a}/cloudvolumes/{da}")).await.expect_evs_error(400, "Common.0018");
    f.bob.get(&format!("/v1/{a}/jobs/{job_id}")).await.expect_evs_error(400, "Common.0018");
    f.bob.delete(&format!("/v3/{a}/volumes/{va}")).await.expect_fault(403, "forbidden");

    // B in its own project cannot see, change, snapshot or attach A's disks: 404.
    let p = |s: &str| format!("/v3/{b}{s}");
    let e = |s: &str| format!("/v2/{b}{s}");
    f.bob.get(&p(&format!("/volumes/{va}"))).await.expect_fault(404, "itemNotFound");
    f.bob.get(&p(&format!("/volumes/{da}"))).await.expect_fault(404, "itemNotFound");
    f.bob
        .put(&p(&format!("/volumes/{va}")), json!({"volume": {"name": "stolen"}}))
        .await
        .expect_fault(404, "itemNotFound");
    f.bob.delete(&p(&format!("/volumes/{va}"))).await.expect_fault(404, "itemNotFound");
    f.bob
        .post(&p(&format!("/volumes/{va}/action")), json!({"os-extend": {"new_size": 5}}))
        .await
        .expect_fault(404, "itemNotFound");
    f.bob.post(&p(&format!("/volumes/{va}/action")), json!({"os-reserve": {}})).await.expect_fault(404, "itemNotFound");
    for action in [
        json!({"os-initialize_connection": {"connector": {"host": "x"}}}),
        json!({"os-attach": {"instance_uuid": "i", "mountpoint": "/dev/vdb"}}),
        json!({"os-detach": {}}),
    ] {
        f.bob.post(&p(&format!("/volumes/{va}/action")), action).await.expect_fault(404, "itemNotFound");
    }
    f.bob
        .post(&p("/os-volume-transfer"), json!({"transfer": {"volume_id": va}}))
        .await
        .expect_fault(404, "itemNotFound");
    f.bob.get(&p(&format!("/volumes/{va}/metadata"))).await.expect_fault(404, "itemNotFound");
    f.bob.post(&p("/snapshots"), json!({"snapshot": {"volume_id": va}})).await.expect_fault(404, "itemNotFound");
    f.bob.get(&p(&format!("/snapshots/{sa}"))).await.expect_fault(404, "itemNotFound");
    f.bob.delete(&p(&format!("/snapshots/{sa}"))).await.expect_fault(404, "itemNotFound");
    let r = f.bob.get(&p("/volumes/detail?all_tenants=1")).await.expect(200);
    assert_eq!(r.body["volumes"], json!([]), "all_tenants is ignored for members: {}", r.text);
    let r = f.bob.get(&p("/snapshots/detail?all_tenants=1")).await.expect(200);
    assert_eq!(r.body["snapshots"], json!([]), "{}", r.text);
    f.bob.get(&e(&format!("/cloudvolumes/{da}"))).await.expect_evs_error(404, "EVS.5404");
    f.bob
        .put(&e(&format!("/cloudvolumes/{da}")), json!({"volume": {"name": "stolen"}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    f.bob.delete(&e(&format!("/cloudvolumes/{da}"))).await.expect_evs_error(404, "EVS.5404");
    f.bob
        .post(&e(&format!("/cloudvolumes/{da}/action")), json!({"os-extend": {"new_size": 9}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    f.bob.get(&e(&format!("/cloudvolumes/{da}/tags"))).await.expect_evs_error(404, "EVS.5404");
    f.bob
        .post(&e(&format!("/cloudsnapshots/{sa}/rollback")), json!({"rollback": {"volume_id": va}}))
        .await
        .expect_evs_error(404, "EVS.5404");
    f.bob.post(&e("/cloudsnapshots"), json!({"snapshot": {"volume_id": da}})).await.expect_evs_error(404, "EVS.5404");
    let r = f.bob.get(&format!("/v1/{b}/jobs/{job_id}")).await;
    assert!(r.status == 404 || r.status == 400, "B reads A's job: {} {}", r.status, r.text);
    let r = f.bob.get(&e("/cloudvolumes/detail")).await.expect(200);
    assert_eq!(r.body["count"], 0, "{}", r.text);

    // Nothing changed.
    let v = f.alice.wait_status(a, &va, "available").await;
    assert_eq!((v["name"].as_str(), v["size"].as_i64()), (Some("alice-vol"), Some(1)));
    let d = f.alice.get(&format!("/v2/{a}/cloudvolumes/{da}")).await.expect(200);
    assert_eq!((d.body["volume"]["name"].as_str(), d.body["volume"]["size"].as_i64()), (Some("alice-disk"), Some(2)));

    // An admin (of A) sees and acts in every project.
    let vb = f.bob.volume(b, "bob-vol").await;
    let r = f.boss.get(&format!("/v3/{a}/volumes/detail?all_tenants=1")).await.expect(200);
    let ids: Vec<String> = r.body["volumes"].as_array().expect("volumes").iter().map(|v| s(v, "id")).collect();
    assert!(ids.contains(&va) && ids.contains(&vb) && ids.contains(&da), "{ids:?}");
    f.boss.get(&format!("/v3/{b}/volumes/{vb}")).await.expect(200);
    f.boss.get(&format!("/v2/{b}/cloudvolumes/{vb}")).await.expect(200);
    f.boss.put(&format!("/v3/{b}/volumes/{vb}"), json!({"volume": {"description": "by admin"}})).await.expect(200);
    f.boss.delete(&format!("/v3/{b}/volumes/{vb}")).await.expect(202);
    f.bob.wait_gone(b, &vb).await;
}

// ----- item 5: policy ---------------------------------------------------------------------------

async fn reader_cannot_write_member_and_admin_can(backend: Backend) {
    let f = Fixture::new(backend).await;
    let a = f.a.as_str();
    let va = f.alice.volume(a, "shared").await;
    let da = f.alice.disk(a, "shared-disk").await;

    // The reader reads…
    f.rita.get(&format!("/v3/{a}/volumes/detail")).await.expect(200);
    f.rita.get(&format!("/v3/{a}/volumes/{va}")).await.expect(200);
    f.rita.get(&format!("/v2/{a}/cloudvolumes/detail")).await.expect(200);
    f.rita.get(&format!("/v3/{a}/volumes/{va}/metadata")).await.expect(200);
    f.rita.get(&format!("/v2/{a}/cloudvolumes/{da}/tags")).await.expect(200);
    f.rita.get(&format!("/v3/{a}/types")).await.expect(200);
    f.rita.get(&format!("/v3/{a}/os-availability-zone")).await.expect(200);
    // …and writes nothing: 403 with EVS.5403 / forbidden, and nothing changes.
    let denied_cinder = [
        f.rita.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1, "name": "r"}})).await,
        f.rita.put(&format!("/v3/{a}/volumes/{va}"), json!({"volume": {"name": "renamed"}})).await,
        f.rita.delete(&format!("/v3/{a}/volumes/{va}")).await,
        f.rita.post(&format!("/v3/{a}/volumes/{va}/action"), json!({"os-extend": {"new_size": 3}})).await,
        f.rita.post(&format!("/v3/{a}/volumes/{va}/action"), json!({"os-reserve": {}})).await,
        f.rita.put(&format!("/v3/{a}/volumes/{va}/metadata"), json!({"metadata": {"k": "v"}})).await,
        f.rita.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": va}})).await,
    ];
    for r in denied_cinder {
        r.expect_fault(403, "forbidden");
    }
    let denied_evs = [
        f.rita
            .post(
                &format!("/v2/{a}/cloudvolumes"),
                json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": "r"}}),
            )
            .await,
        f.rita.delete(&format!("/v2/{a}/cloudvolumes/{da}")).await,
        f.rita.post(&format!("/v2.1/{a}/cloudvolumes/{da}/action"), json!({"os-extend": {"new_size": 3}})).await,
        f.rita
            .post(
                &format!("/v2/{a}/cloudvolumes/{da}/tags/action"),
                json!({"action": "create", "tags": [{"key": "k", "value": "v"}]}),
            )
            .await,
        f.rita.post(&format!("/v2/{a}/cloudsnapshots"), json!({"snapshot": {"volume_id": da}})).await,
    ];
    for r in denied_evs {
        r.expect_evs_error(403, "EVS.5403");
    }
    let v = f.alice.get(&format!("/v3/{a}/volumes/{va}")).await.expect(200);
    assert_eq!((v.body["volume"]["name"].as_str(), v.body["volume"]["size"].as_i64()), (Some("shared"), Some(1)));
    assert_eq!(v.body["volume"]["metadata"], json!({}));
    assert_eq!(v.body["volume"]["status"], "available");
    let n = f.alice.get(&format!("/v3/{a}/volumes/detail")).await.expect(200);
    assert_eq!(n.body["volumes"].as_array().map(Vec::len), Some(2), "{}", n.text);
    let snaps = f.alice.get(&format!("/v3/{a}/snapshots")).await.expect(200);
    assert_eq!(snaps.body["snapshots"], json!([]));
    let tags = f.alice.get(&format!("/v2/{a}/cloudvolumes/{da}/tags")).await.expect(200);
    assert_eq!(tags.body["tags"], json!([]), "{}", tags.text);

    // Admin-only actions are refused to a member (policy), not to an admin.
    f.alice
        .post(&format!("/v3/{a}/volumes/{va}/action"), json!({"os-reset_status": {"status": "error"}}))
        .await
        .expect_fault(403, "forbidden");
    let r =
        f.boss.post(&format!("/v3/{a}/volumes/{va}/action"), json!({"os-reset_status": {"status": "available"}})).await;
    assert_ne!(r.status, 403, "admin passes the policy: {}", r.text);
    // Members and admins write.
    f.alice.put(&format!("/v3/{a}/volumes/{va}"), json!({"volume": {"name": "renamed"}})).await.expect(200);
    f.boss.put(&format!("/v3/{a}/volumes/{va}/metadata"), json!({"metadata": {"k": "v"}})).await.expect(200);
    f.alice.delete(&format!("/v3/{a}/volumes/{va}")).await.expect(202);
    f.alice.wait_gone(a, &va).await;
    let r = f.boss.delete(&format!("/v2/{a}/cloudvolumes/{da}")).await.expect(200);
    f.boss.wait_job(a, &s(&r.body, "job_id")).await;
}

// ----- item 3: AK/SK ----------------------------------------------------------------------------

/// Sign and send a request the way the Huawei SDK does; `tamper` changes the body after
/// signing.
#[allow(clippy::too_many_arguments)]
async fn signed(
    api: &Api,
    method: Method,
    path_and_query: &str,
    ak: &str,
    sk: &str,
    project_header: &str,
    date: &str,
    body: Option<&str>,
    tamper: Option<&str>,
) -> Resp {
    let sig = Signing { ak, sk, project: project_header, date, sign_host: true };
    signed_as(api, method, path_and_query, path_and_query, &sig, body, tamper).await
}

/// What a signature is made with.
struct Signing<'a> {
    ak: &'a str,
    sk: &'a str,
    project: &'a str,
    date: &'a str,
    /// Sign `Host` (the SDK always does).
    sign_host: bool,
}

/// Sign `sign_pq` (path and query) and send the request to `send_pq`: the two differ when a
/// test moves a signature onto another request.
async fn signed_as(
    api: &Api,
    method: Method,
    sign_pq: &str,
    send_pq: &str,
    sig: &Signing<'_>,
    body: Option<&str>,
    tamper: Option<&str>,
) -> Resp {
    let base = api.base();
    let host = base.trim_start_matches("http://").to_string();
    let (path, query) = match sign_pq.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (sign_pq, None),
    };
    // Content-Type is added (unsigned) by the test client when there is a body.
    let mut headers =
        vec![("User-Agent", "cinderblock-tests"), ("X-Project-Id", sig.project), ("X-Sdk-Date", sig.date)];
    if sig.sign_host {
        headers.push(("Host", host.as_str()));
    }
    let auth =
        signature::authorization(sig.ak, sig.sk, method.as_str(), path, query, &headers, body.unwrap_or("").as_bytes());
    let send: Vec<(&str, &str)> = vec![
        ("User-Agent", "cinderblock-tests"),
        ("X-Project-Id", sig.project),
        ("X-Sdk-Date", sig.date),
        ("Authorization", auth.as_str()),
    ];
    api.request(method, send_pq, &send, tamper.or(body).map(str::to_string)).await
}

/// Issue 17.11: a signed request that changes something is accepted once (a replay inside the
/// window made a second volume); `Host` must be signed; a signature cannot be moved onto a
/// query that means something else (`+` vs `%2B`, repeated keys, an encoded `/`).
async fn aksk_replays_and_ambiguous_requests_are_refused(backend: Backend) {
    let f = Fixture::new(backend).await;
    let a = f.a.as_str();
    let out = cli(&f.server, &["admin", "credential", "create", "--user", "alice", "--project", "proj-a"], None);
    let (ak, sk) = (field(&out, "access_key"), field(&out, "secret_key"));
    let api = f.server.api();
    let now = sdk_date(0);
    let sig = Signing { ak: &ak, sk: &sk, project: a, date: &now, sign_host: true };

    // The same signed POST twice: the first creates, the replay is refused and creates nothing.
    let body =
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": "once"}}).to_string();
    let create = format!("/v2.1/{a}/cloudvolumes");
    let r = signed_as(&api, Method::POST, &create, &create, &sig, Some(&body), None).await.expect(200);
    f.alice.wait_job(a, &s(&r.body, "job_id")).await;
    signed_as(&api, Method::POST, &create, &create, &sig, Some(&body), None).await.expect_evs_error(401, "Common.0013");
    let list = format!("/v2/{a}/cloudvolumes/detail");
    assert_eq!(f.alice.get(&list).await.expect(200).body["count"], 1, "the replay made nothing");
    // Reads repeat freely (a client may read twice within one second of X-Sdk-Date).
    for _ in 0..2 {
        signed_as(&api, Method::GET, &list, &list, &sig, None, None).await.expect(200);
    }
    // Signed again (another date): a new request, accepted.
    let later = sdk_date(-120);
    let sig2 = Signing { date: &later, ..sig };
    let r = signed_as(&api, Method::POST, &create, &create, &sig2, Some(&body), None).await.expect(200);
    f.alice.wait_job(a, &s(&r.body, "job_id")).await;
    let sig = Signing { date: &now, ..sig2 };

    // Host not among the signed headers: 401.
    let nohost = Signing { sign_host: false, ..sig };
    signed_as(&api, Method::GET, &list, &list, &nohost, None, None).await.expect_evs_error(401, "EVS.5401");

    // `+` is a space to the handler, `%2B` a plus: each signs as itself and cannot stand in
    // for the other.
    let plus = format!("{list}?name=a+b");
    let encoded = format!("{list}?name=a%2Bb");
    signed_as(&api, Method::GET, &plus, &plus, &sig, None, None).await.expect(200);
    signed_as(&api, Method::GET, &encoded, &encoded, &sig, None, None).await.expect(200);
    signed_as(&api, Method::GET, &encoded, &plus, &sig, None, None).await.expect_evs_error(401, "EVS.5401");
    signed_as(&api, Method::GET, &plus, &encoded, &sig, None, None).await.expect_evs_error(401, "EVS.5401");
    // A repeated key, or an encoded slash in the path, is ambiguous: refused even when signed.
    let twice = format!("{list}?name=a&name=b");
    signed_as(&api, Method::GET, &twice, &twice, &sig, None, None).await.expect_evs_error(401, "EVS.5401");
    let slash = format!("/v2/{a}/cloudvolumes/x%2Fdetail");
    signed_as(&api, Method::GET, &slash, &slash, &sig, None, None).await.expect_evs_error(401, "EVS.5401");
    assert_eq!(f.alice.get(&list).await.expect(200).body["count"], 2);
}

/// Issue 17.12: a non-admin asking for a project it has no role in hears the same 403 whether
/// the project exists or not.
async fn project_lookups_do_not_reveal_existence(backend: Backend) {
    let f = Fixture::new(backend).await;
    let ghost = "0123456789abcdef0123456789abcdef";
    let other = f.rita.get(&format!("/identity/v3/projects/{}", f.b)).await;
    let missing = f.rita.get(&format!("/identity/v3/projects/{ghost}")).await;
    keystone_error(&other, 403);
    keystone_error(&missing, 403);
    assert_eq!(other.text, missing.text, "the two answers are the same");
    f.rita.get(&format!("/identity/v3/projects/{}", f.a)).await.expect(200);
    // An admin still gets 404 for a missing project.
    keystone_error(&f.boss.get(&format!("/identity/v3/projects/{ghost}")).await, 404);
}

fn sdk_date(offset_secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(offset_secs)).format("%Y%m%dT%H%M%SZ").to_string()
}

async fn aksk_signatures_pass_and_fail_with_the_right_codes(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.a.as_str(), f.b.as_str());
    let out = cli(&f.server, &["admin", "credential", "create", "--user", "alice", "--project", "proj-a"], None);
    let (ak, sk) = (field(&out, "access_key"), field(&out, "secret_key"));
    let api = f.server.api();
    let now = sdk_date(0);

    // Signed requests pass: list with a query, create with a body, job, show, Cinder route.
    let r = signed(
        &api,
        Method::GET,
        &format!("/v2/{a}/cloudvolumes/detail?limit=10&name=x%20y"),
        &ak,
        &sk,
        a,
        &now,
        None,
        None,
    )
    .await;
    r.expect(200);
    let body =
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": "signed"}}).to_string();
    let r = signed(&api, Method::POST, &format!("/v2.1/{a}/cloudvolumes"), &ak, &sk, a, &now, Some(&body), None)
        .await
        .expect(200);
    let job = s(&r.body, "job_id");
    let vid = r.body["volume_ids"][0].as_str().expect("id").to_string();
    f.alice.wait_job(a, &job).await;
    let r = signed(&api, Method::GET, &format!("/v2/{a}/cloudvolumes/{vid}"), &ak, &sk, a, &now, None, None)
        .await
        .expect(200);
    assert_eq!(
        r.body["volume"]["user_id"].as_str().map(str::len),
        Some(32),
        "the volume is owned by alice: {}",
        r.text
    );
    signed(&api, Method::GET, &format!("/v3/{a}/volumes/{vid}"), &ak, &sk, a, &now, None, None).await.expect(200);
    // ±15 min is fine.
    signed(&api, Method::GET, &format!("/v2/{a}/cloudvolumes/detail"), &ak, &sk, a, &sdk_date(-800), None, None)
        .await
        .expect(200);

    // Wrong SK, unknown AK, tampered body or query: 401 EVS.5401 (and nothing is created).
    let list = format!("/v2/{a}/cloudvolumes/detail");
    signed(&api, Method::GET, &list, &ak, "wrong-secret", a, &now, None, None).await.expect_evs_error(401, "EVS.5401");
    signed(&api, Method::GET, &list, "UNKNOWNAK00000000000", &sk, a, &now, None, None)
        .await
        .expect_evs_error(401, "EVS.5401");
    let evil = body.replace("signed", "evil");
    signed(&api, Method::POST, &format!("/v2.1/{a}/cloudvolumes"), &ak, &sk, a, &now, Some(&body), Some(&evil))
        .await
        .expect_evs_error(401, "EVS.5401");
    let r = api
        .request(
            Method::GET,
            &format!("{list}?limit=1"),
            &[
                ("X-Project-Id", a),
                ("X-Sdk-Date", &now),
                (
                    "Authorization",
                    &signature::authorization(
                        &ak,
                        &sk,
                        "GET",
                        &list,
                        None,
                        &[
                            ("Host", api.base().trim_start_matches("http://")),
                            ("X-Project-Id", a),
                            ("X-Sdk-Date", &now),
                        ],
                        b"",
                    ),
                ),
            ],
            None,
        )
        .await;
    r.expect_evs_error(401, "EVS.5401");
    // Stale or malformed dates: 401 Common.0013.
    signed(&api, Method::GET, &list, &ak, &sk, a, &sdk_date(-16 * 60), None, None)
        .await
        .expect_evs_error(401, "Common.0013");
    signed(&api, Method::GET, &list, &ak, &sk, a, &sdk_date(16 * 60), None, None)
        .await
        .expect_evs_error(401, "Common.0013");
    signed(&api, Method::GET, &list, &ak, &sk, a, "2024-01-01", None, None).await.expect_evs_error(401, "Common.0013");
    // X-Project-Id not one of the owner's projects, or not the URL's: Common.0018 (400 on EVS, A.1).
    signed(&api, Method::GET, &format!("/v2/{b}/cloudvolumes/detail"), &ak, &sk, b, &now, None, None)
        .await
        .expect_evs_error(400, "Common.0018");
    signed(&api, Method::GET, &format!("/v2/{b}/cloudvolumes/detail"), &ak, &sk, a, &now, None, None)
        .await
        .expect_evs_error(400, "Common.0018");
    signed(&api, Method::GET, &format!("/v3/{b}/volumes"), &ak, &sk, a, &now, None, None)
        .await
        .expect_fault(403, "forbidden");
    // On Cinder routes the same failures use the OpenStack fault body.
    signed(&api, Method::GET, &format!("/v3/{a}/volumes"), &ak, "wrong", a, &now, None, None)
        .await
        .expect_fault(401, "unauthorized");
    let r = f.alice.get(&format!("/v2/{a}/cloudvolumes/detail")).await.expect(200);
    assert_eq!(r.body["count"], 1, "only the signed create made a disk: {}", r.text);

    // A reader's credential signs reads only.
    let out = cli(&f.server, &["admin", "credential", "create", "--user", "rita", "--project", "proj-a"], None);
    let (rak, rsk) = (field(&out, "access_key"), field(&out, "secret_key"));
    signed(&api, Method::GET, &list, &rak, &rsk, a, &now, None, None).await.expect(200);
    signed(&api, Method::DELETE, &format!("/v2/{a}/cloudvolumes/{vid}"), &rak, &rsk, a, &now, None, None)
        .await
        .expect_evs_error(403, "EVS.5403");

    // A deleted credential stops working.
    cli(&f.server, &["admin", "credential", "delete", &ak], None);
    signed(&api, Method::GET, &list, &ak, &sk, a, &now, None, None).await.expect_evs_error(401, "EVS.5401");
}

// ----- token expiry -----------------------------------------------------------------------------

async fn tokens_expire(backend: Backend) {
    let f = Fixture::with_env(backend, &[("CINDERBLOCK_AUTH__TOKEN_TTL_SECONDS", "2")]).await;
    let a = f.a.clone();
    let alice = Client::login(&f.server.api(), "alice", "proj-a").await;
    alice.get(&format!("/v3/{a}/volumes")).await.expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = alice.get(&format!("/v2/{a}/cloudvolumes/detail")).await;
        if r.status == 401 {
            r.expect_evs_error(401, "Common.0013");
            break;
        }
        r.expect(200);
        assert!(Instant::now() < deadline, "the token never expired");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A new login works again.
    Client::login(&f.server.api(), "alice", "proj-a").await.get(&format!("/v3/{a}/volumes")).await.expect(200);
}

/// Issue 17.8: a token bought with a token expires no later than the one it was bought with
/// (rescoping in a loop cannot renew access), and revoking a role kills the tokens scoped to
/// that project for good: granting the role again does not revive them.
async fn rescoped_tokens_keep_their_expiry_and_revokes_stick(backend: Backend) {
    let f = Fixture::new(backend).await;
    let (a, b) = (f.a.clone(), f.b.clone());
    let api = f.server.api();
    let login = api.post("/identity/v3/auth/tokens", password_body("alice", PASSWORD, "proj-a")).await.expect(201);
    let first = login.header("x-subject-token").expect("token");
    let first_exp = s(&login.body["token"], "expires_at");
    let mut token = first.clone();
    for _ in 0..3 {
        let r = api
            .post(
                "/identity/v3/auth/tokens",
                json!({"auth": {"identity": {"methods": ["token"], "token": {"id": token}},
                                "scope": {"project": {"id": a}}}}),
            )
            .await
            .expect(201);
        let exp = s(&r.body["token"], "expires_at");
        assert!(exp <= first_exp, "a rescoped token expires at {exp}, after its origin {first_exp}");
        token = r.header("x-subject-token").expect("token");
    }

    // bob gets reader in proj-a besides member in proj-b, logs in there, loses the role.
    cli(&f.server, &["admin", "role", "add", "--user", "bob", "--project", "proj-a", "--role", "reader"], None);
    let bob_a = Client::login(&api, "bob", "proj-a").await;
    bob_a.get(&format!("/v3/{a}/volumes")).await.expect(200);
    cli(&f.server, &["admin", "role", "remove", "--user", "bob", "--project", "proj-a", "--role", "reader"], None);
    bob_a.get(&format!("/v3/{a}/volumes")).await.expect_fault(401, "unauthorized");
    cli(&f.server, &["admin", "role", "add", "--user", "bob", "--project", "proj-a", "--role", "reader"], None);
    let r = bob_a.get(&format!("/v3/{a}/volumes")).await;
    assert_eq!(r.status, 401, "a token issued before the revoke came back with the new grant: {}", r.text);
    // His other project's token is untouched, and a new login works.
    f.bob.get(&format!("/v3/{b}/volumes")).await.expect(200);
    Client::login(&api, "bob", "proj-a").await.get(&format!("/v3/{a}/volumes")).await.expect(200);
}

/// The keys of a JSON object, for messages.
fn keys(v: &Value) -> Vec<String> {
    v.as_object().map(|o| o.keys().cloned().collect()).unwrap_or_default()
}

/// Cinder's view rules (issue 10, A): extension attributes only on show and detail lists, and
/// admin-only fields only for admins; for volumes, snapshots and types, per role.
async fn views_follow_the_call_and_the_callers_roles(backend: Backend) {
    let f = Fixture::new(backend).await;
    let a = f.a.as_str();
    const TENANT: &str = "os-vol-tenant-attr:tenant_id";
    const ADMIN_ONLY: [&str; 4] = [
        "os-vol-host-attr:host",
        "os-vol-mig-status-attr:migstat",
        "os-vol-mig-status-attr:name_id",
        "migration_status",
    ];

    // Create and update answer the plain view: no extension attribute for anyone.
    let r = f.alice.post(&format!("/v3/{a}/volumes"), json!({"volume": {"size": 1, "name": "v"}})).await.expect(202);
    let vol = &r.body["volume"];
    for k in ADMIN_ONLY.iter().chain([&TENANT]) {
        assert!(vol.get(*k).is_none(), "create answer has {k}: {:?}", keys(vol));
    }
    let id = s(vol, "id");
    f.alice.wait_status(a, &id, "available").await;
    let r = f.boss.put(&format!("/v3/{a}/volumes/{id}"), json!({"volume": {"name": "w"}})).await.expect(200);
    let upd = &r.body["volume"];
    for k in ["os-vol-host-attr:host", TENANT, "os-vol-mig-status-attr:migstat"] {
        assert!(upd.get(k).is_none(), "update answer has {k}: {:?}", keys(upd));
    }
    assert!(upd.get("migration_status").is_some(), "admins see migration_status in every volume view");

    // Show and detail: the tenant for every reader, host and migration for admins only.
    for (who, c, admin) in [("admin", &f.boss, true), ("member", &f.alice, false), ("reader", &f.rita, false)] {
        let show = c.get(&format!("/v3/{a}/volumes/{id}")).await.expect(200).body["volume"].clone();
        let detail = c.get(&format!("/v3/{a}/volumes/detail")).await.expect(200).body["volumes"][0].clone();
        for v in [&show, &detail] {
            assert_eq!(v[TENANT], a, "{who}: {:?}", keys(v));
            for k in ADMIN_ONLY {
                assert_eq!(v.get(k).is_some(), admin, "{who} and {k}: {:?}", keys(v));
            }
        }
        if admin {
            assert!(show["os-vol-host-attr:host"].as_str().is_some_and(|h| h.contains('@') && h.contains('#')));
        }
        // provider_id (3.21) and cluster_name (3.61) are admin-only; group_id (3.13) is for all.
        let v = c.get_at(&format!("/v3/{a}/volumes/{id}"), 61).await.expect(200).body["volume"].clone();
        assert!(v.get("group_id").is_some(), "{who}");
        assert_eq!(v.get("provider_id").is_some(), admin, "{who}: {:?}", keys(&v));
        assert_eq!(v.get("cluster_name").is_some(), admin, "{who}: {:?}", keys(&v));
        // The summary list is id, name, links only.
        let sum = c.get(&format!("/v3/{a}/volumes")).await.expect(200).body["volumes"][0].clone();
        assert_eq!(keys(&sum), ["id", "links", "name"], "{who}");
    }

    // Snapshots: the extended attributes on show and detail only; 3.x fields not in the summary list.
    const PROGRESS: &str = "os-extended-snapshot-attributes:progress";
    const PROJECT: &str = "os-extended-snapshot-attributes:project_id";
    let r = f.alice.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": id}})).await.expect(202);
    let snap = &r.body["snapshot"];
    assert!(snap.get(PROGRESS).is_none() && snap.get(PROJECT).is_none(), "create: {:?}", keys(snap));
    let sid = s(snap, "id");
    let deadline = Instant::now() + common::WAIT_TIMEOUT;
    while f.alice.get(&format!("/v3/{a}/snapshots/{sid}")).await.expect(200).body["snapshot"]["status"] != "available" {
        assert!(Instant::now() < deadline, "snapshot {sid} never available");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for c in [&f.alice, &f.rita] {
        let show = c.get(&format!("/v3/{a}/snapshots/{sid}")).await.expect(200).body["snapshot"].clone();
        assert_eq!(show[PROJECT], a);
        assert_eq!(show[PROGRESS], "100%");
        let detail = c.get_at(&format!("/v3/{a}/snapshots/detail"), 41).await.expect(200).body["snapshots"][0].clone();
        assert!(detail.get(PROJECT).is_some() && detail.get("user_id").is_some(), "{:?}", keys(&detail));
        let sum = c.get_at(&format!("/v3/{a}/snapshots"), 41).await.expect(200).body["snapshots"][0].clone();
        for k in [PROJECT, PROGRESS, "user_id", "group_snapshot_id"] {
            assert!(sum.get(k).is_none(), "summary list has {k}: {:?}", keys(&sum));
        }
    }
    let upd = f.alice.put(&format!("/v3/{a}/snapshots/{sid}"), json!({"snapshot": {"name": "n"}})).await.expect(200);
    assert!(upd.body["snapshot"].get(PROJECT).is_none(), "update: {}", upd.text);

    // Types: create and update use the legacy view; qos_specs_id and every extra spec for admins on
    // GET; the access attribute for members and admins.
    let body = json!({"volume_type": {"name": unique("t"), "extra_specs": {"volume_backend_name": "default", "multiattach": "<is> True"}}});
    let r = f.boss.post(&format!("/v3/{a}/types"), body).await.expect(200);
    let t = &r.body["volume_type"];
    assert!(t.get("qos_specs_id").is_none(), "create: {:?}", keys(t));
    assert_eq!(t["os-volume-type-access:is_public"], true, "create carries the access attribute");
    let tid = s(t, "id");
    let r = f.boss.put(&format!("/v3/{a}/types/{tid}"), json!({"volume_type": {"description": "d"}})).await.expect(200);
    let t = &r.body["volume_type"];
    assert!(t.get("qos_specs_id").is_none() && t.get("os-volume-type-access:is_public").is_none(), "{:?}", keys(t));
    for (who, c, admin, member) in
        [("admin", &f.boss, true, true), ("member", &f.alice, false, true), ("reader", &f.rita, false, false)]
    {
        let t = c.get(&format!("/v3/{a}/types/{tid}")).await.expect(200).body["volume_type"].clone();
        assert_eq!(t.get("qos_specs_id").is_some(), admin, "{who}: {:?}", keys(&t));
        assert_eq!(t.get("os-volume-type-access:is_public").is_some(), member, "{who}: {:?}", keys(&t));
        assert_eq!(t["extra_specs"].get("volume_backend_name").is_some(), admin, "{who}: {}", t["extra_specs"]);
        assert_eq!(t["extra_specs"]["multiattach"], "<is> True", "user-visible spec for {who}");
        let listed = c.get(&format!("/v3/{a}/types")).await.expect(200).body["volume_types"].clone();
        let entry = listed.as_array().and_then(|l| l.iter().find(|x| x["id"] == tid.as_str())).cloned();
        let entry = entry.unwrap_or_else(|| panic!("{who}: type {tid} not listed"));
        assert_eq!(entry.get("qos_specs_id").is_some(), admin, "{who} list: {:?}", keys(&entry));
    }
}

/// Each route names its policy action where it is registered, and the check runs after
/// routing: an unknown path is 404 and a known path with a wrong method 405 for every role
/// (never a 403 from a table that does not know the route), in the API's own error body;
/// without credentials everything is 401 first.
async fn routes_answer_404_and_405_before_policy(backend: Backend) {
    let f = Fixture::new(backend).await;
    let a = f.a.as_str();
    let va = f.alice.volume(a, "routed").await;
    for who in [&f.rita, &f.alice, &f.boss] {
        who.get(&format!("/v3/{a}/no-such-collection")).await.expect_fault(404, "itemNotFound");
        who.delete(&format!("/v3/{a}/volumes/detail")).await.expect_fault(405, "badMethod");
        who.req(Method::PATCH, &format!("/v3/{a}/volumes/{va}"), Some(json!({}))).await.expect_fault(405, "badMethod");
        who.put(&format!("/v3/{a}/snapshots"), json!({})).await.expect_fault(405, "badMethod");
        who.delete(&format!("/v2/{a}/cloudvolumes/detail")).await.expect(405);
    }
    // The policy still decides once the route matched: an admin-only action and a write.
    f.alice
        .post(&format!("/v3/{a}/volumes/{va}/action"), json!({"os-reset_status": {"status": "error"}}))
        .await
        .expect_fault(403, "forbidden");
    f.rita.delete(&format!("/v3/{a}/volumes/{va}")).await.expect_fault(403, "forbidden");
    assert_eq!(
        s(&f.alice.get(&format!("/v3/{a}/volumes/{va}")).await.expect(200).body["volume"], "status"),
        "available"
    );
    // No credentials: 401 whatever the path or method.
    let anon = f.server.api();
    assert_eq!(anon.request(Method::DELETE, &format!("/v3/{a}/volumes/detail"), &[], None).await.status, 401);
    assert_eq!(anon.request(Method::GET, &format!("/v3/{a}/no-such-collection"), &[], None).await.status, 401);
}

/// Peak resident memory of a process, in MiB (`VmHWM`).
fn peak_rss_mib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc status");
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM");
    kb / 1024
}

/// Failed logins are counted per user (and per address): past the limit the user gets 429 with
/// `Retry-After`, even with the right password, while others log in; and hundreds of parallel
/// password checks run a few at a time, so the daemon's memory stays bounded (each argon2 check
/// takes ~19 MiB: 200 at once took 3.8 GiB before).
async fn failed_logins_are_throttled_and_password_checks_bounded(backend: Backend) {
    let f = Fixture::with_env(
        backend,
        &[
            ("CINDERBLOCK_AUTH__FAILED_LOGIN_LIMIT_PER_USER", "3"),
            ("CINDERBLOCK_AUTH__FAILED_LOGIN_LIMIT_PER_ADDRESS", "1000"),
            ("CINDERBLOCK_AUTH__PASSWORD_CHECK_MEMORY_MIB", "76"),
        ],
    )
    .await;
    let api = f.server.api();
    const TOKENS: &str = "/identity/v3/auth/tokens";
    for _ in 0..3 {
        api.post(TOKENS, password_body("alice", "wrong password", "proj-a")).await.expect(401);
    }
    let r = api.post(TOKENS, password_body("alice", PASSWORD, "proj-a")).await.expect(429);
    let retry: u64 = r.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.body["error"]["code"], 429, "{}", r.text);
    // Another user is not affected, and alice's existing token still works.
    Client::login(&api, "rita", "proj-a").await;
    f.alice.get(&format!("/v3/{}/volumes", f.a)).await.expect(200);

    let pid = f.server.pid().expect("daemon pid");
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let api = api.clone();
        tasks
            .spawn(async move { api.post(TOKENS, password_body(&format!("ghost{i}"), "nope", "proj-a")).await.status });
    }
    while let Some(status) = tasks.join_next().await {
        assert_eq!(status.expect("task"), 401);
    }
    let peak = peak_rss_mib(pid);
    eprintln!("peak RSS after 200 parallel password checks: {peak} MiB");
    assert!(peak < 400, "peak RSS {peak} MiB after 200 parallel password checks: they are not bounded");
}

// ----- Keystone admin subset (tempest's credential client) -----------------------------------

/// Admins list the `Default` domain and create and delete projects through Keystone's v3 API
/// (what tempest's `identity_utils` calls); everyone else is refused and changes nothing.
async fn keystone_admin_makes_and_removes_projects(backend: Backend) {
    let f = Fixture::new(backend).await;
    let r = f.boss.get("/identity/v3/domains?name=Default").await.expect(200);
    let domains = r.body["domains"].as_array().expect("domains");
    assert_eq!(domains.len(), 1, "{}", r.text);
    assert_eq!((domains[0]["id"].clone(), domains[0]["name"].clone()), (json!("default"), json!("Default")));
    let r = f.boss.get("/identity/v3/domains?name=Other").await.expect(200);
    assert_eq!(r.body["domains"], json!([]));
    assert_eq!(f.boss.get("/identity/v3/domains/default").await.expect(200).body["domain"]["name"], "Default");
    keystone_error(&f.boss.get("/identity/v3/domains/nope").await, 404);

    // Create: 201 with Keystone's project; the new project is listed and has Cinder defaults.
    let name = unique("kp");
    let r = f
        .boss
        .post("/identity/v3/projects", json!({"project": {"name": name, "description": "d", "domain_id": "default"}}))
        .await
        .expect(201);
    let p = r.body["project"].clone();
    let pid = s(&p, "id");
    assert_eq!(pid.len(), 32, "{}", r.text);
    assert_eq!(
        (p["name"].clone(), p["description"].clone(), p["domain_id"].clone(), p["enabled"].clone()),
        (json!(name), json!("d"), json!("default"), json!(true))
    );
    let listed = f.boss.get(&format!("/identity/v3/projects?name={name}")).await.expect(200);
    assert_eq!(listed.body["projects"][0]["id"], json!(pid), "{}", listed.text);
    assert_eq!(
        f.boss.get(&format!("/identity/v3/projects/{pid}")).await.expect(200).body["project"]["name"],
        json!(name)
    );
    let q = f.boss.get(&format!("/v3/{}/os-quota-sets/{pid}/defaults", f.a)).await.expect(200);
    assert!(q.body["quota_set"]["volumes"].is_i64(), "{}", q.text);

    // Refusals change nothing: a taken name (409), bad bodies (400), non-admins (403), no token.
    keystone_error(&f.boss.post("/identity/v3/projects", json!({"project": {"name": name}})).await, 409);
    for bad in [
        json!({"project": {}}),
        json!({"project": {"name": ""}}),
        json!({"project": {"name": 5}}),
        json!({"project": {"name": "x".repeat(65)}}),
        json!({"project": {"name": unique("kp"), "domain_id": "elsewhere"}}),
        json!({"project": {"name": unique("kp"), "enabled": "yes"}}),
        json!({"nope": {}}),
    ] {
        keystone_error(&f.boss.post("/identity/v3/projects", bad).await, 400);
    }
    for who in [&f.alice, &f.rita] {
        keystone_error(&who.get("/identity/v3/domains").await, 403);
        keystone_error(&who.post("/identity/v3/projects", json!({"project": {"name": unique("kp")}})).await, 403);
        keystone_error(&who.delete(&format!("/identity/v3/projects/{pid}")).await, 403);
    }
    let anon = f.server.api();
    keystone_error(&anon.post("/identity/v3/projects", json!({"project": {"name": unique("kp")}})).await, 401);
    let all = f.boss.get("/identity/v3/projects").await.expect(200);
    assert_eq!(all.body["projects"].as_array().map(Vec::len), Some(3), "{}", all.text);

    // A project that still owns volumes is kept (409); an empty one is deleted (204, then 404).
    let a = f.a.clone();
    f.alice.volume(&a, "keeps-a").await;
    keystone_error(&f.boss.delete(&format!("/identity/v3/projects/{a}")).await, 409);
    assert_eq!(f.boss.get(&format!("/identity/v3/projects/{a}")).await.expect(200).body["project"]["id"], json!(a));
    let r = f.boss.delete(&format!("/identity/v3/projects/{pid}")).await.expect(204);
    assert_eq!(r.text, "");
    keystone_error(&f.boss.get(&format!("/identity/v3/projects/{pid}")).await, 404);
    keystone_error(&f.boss.delete(&format!("/identity/v3/projects/{pid}")).await, 404);
}

// ----- issue 10 B.11: users, roles and role assignments through the Keystone API -------------

/// Log in with a password; the token, or the failed response.
async fn login_with(api: &Api, user: &str, password: &str, project: &str) -> Result<String, Resp> {
    let r = api.post("/identity/v3/auth/tokens", password_body(user, password, project)).await;
    if r.status == 201 {
        Ok(r.header("x-subject-token").expect("X-Subject-Token"))
    } else {
        Err(r)
    }
}

/// Whether a token still works (`GET /identity/v3/auth/projects`).
async fn token_works(api: &Api, token: &str) -> bool {
    let r = api.request(Method::GET, "/identity/v3/auth/projects", &[("X-Auth-Token", token)], None).await;
    assert!(r.status == 200 || r.status == 401, "{}: {}", r.status, r.text);
    r.status == 200
}

async fn user_id(f: &Fixture, name: &str) -> String {
    let r = f.boss.get(&format!("/identity/v3/users?name={name}")).await.expect(200);
    s(&r.body["users"][0], "id")
}

async fn role_id(f: &Fixture, name: &str) -> String {
    let r = f.boss.get(&format!("/identity/v3/roles?name={name}")).await.expect(200);
    assert_eq!(r.body["roles"].as_array().map(Vec::len), Some(1), "{}", r.text);
    s(&r.body["roles"][0], "id")
}

async fn patch(c: &Client, path: &str, body: Value) -> Resp {
    c.req(Method::PATCH, path, Some(body)).await
}

async fn keystone_admin_manages_users(backend: Backend) {
    let f = Fixture::new(backend).await;
    let api = f.server.api();
    let name = unique("ku");
    let pw = "s3cret-pw-for-ku";
    let r = f
        .boss
        .post(
            "/identity/v3/users",
            json!({"user": {"name": name, "password": pw, "default_project_id": f.a, "domain_id": "default",
                            "enabled": true, "description": "a user", "email": "ku@example.org"}}),
        )
        .await
        .expect(201);
    assert!(!r.text.contains(pw), "the password is never echoed: {}", r.text);
    let u = r.body["user"].clone();
    let uid = s(&u, "id");
    assert_eq!(uid.len(), 32, "{}", r.text);
    assert_eq!(
        (u["name"].clone(), u["domain_id"].clone(), u["enabled"].clone(), u["default_project_id"].clone()),
        (json!(name), json!("default"), json!(true), json!(f.a))
    );
    assert_eq!((u["description"].clone(), u["email"].clone()), (json!("a user"), json!("ku@example.org")));
    assert!(s(&u["links"], "self").ends_with(&format!("/identity/v3/users/{uid}")), "{}", r.text);
    assert!(u.get("password").is_none() && u.get("password_hash").is_none(), "{}", r.text);

    // List and filters; show.
    let all = f.boss.get("/identity/v3/users").await.expect(200);
    assert_eq!(all.body["users"].as_array().map(Vec::len), Some(5), "{}", all.text);
    assert!(all.body["links"]["self"].is_string(), "{}", all.text);
    assert!(!all.text.contains("argon2"), "no hashes in lists: {}", all.text);
    let one = f.boss.get(&format!("/identity/v3/users?name={name}")).await.expect(200);
    assert_eq!(one.body["users"][0]["id"], json!(uid), "{}", one.text);
    let dom = f.boss.get(&format!("/identity/v3/users?name={name}&domain_id=default")).await.expect(200);
    assert_eq!(dom.body["users"].as_array().map(Vec::len), Some(1), "{}", dom.text);
    assert_eq!(f.boss.get("/identity/v3/users?domain_id=other").await.expect(200).body["users"], json!([]));
    assert_eq!(f.boss.get("/identity/v3/users?enabled=false").await.expect(200).body["users"], json!([]));
    let shown = f.boss.get(&format!("/identity/v3/users/{uid}")).await.expect(200);
    assert_eq!(shown.body["user"]["name"], json!(name), "{}", shown.text);

    // No role yet: the password is right but there is nothing to scope to.
    login_with(&api, &name, pw, "proj-a").await.expect_err("no role in proj-a yet");
    let member = role_id(&f, "member").await;
    f.boss.put(&format!("/identity/v3/projects/{}/users/{uid}/roles/{member}", f.a), json!(null)).await.expect(204);
    let token = login_with(&api, &name, pw, "proj-a").await.expect("a user made over the API logs in");
    let me = Client { api: api.clone(), token: token.clone() };
    // A user reads itself, not others.
    me.get(&format!("/identity/v3/users/{uid}")).await.expect(200);
    let alice = user_id(&f, "alice").await;
    keystone_error(&me.get(&format!("/identity/v3/users/{alice}")).await, 403);

    // PATCH: the password (old tokens end, the new password works), name, enabled.
    let r = patch(&f.boss, &format!("/identity/v3/users/{uid}"), json!({"user": {"password": "new-pw-ku"}})).await;
    let r = r.expect(200);
    assert!(!r.text.contains("new-pw-ku"), "{}", r.text);
    assert!(!token_works(&api, &token).await, "a new password ends the old tokens");
    login_with(&api, &name, pw, "proj-a").await.expect_err("the old password is gone");
    let token = login_with(&api, &name, "new-pw-ku", "proj-a").await.expect("the new password works");

    // Self-service password change (`openstack user password set`): only the user itself, only
    // with the right original password; the change ends every token of the user.
    let me = Client { api: api.clone(), token: token.clone() };
    let change = |o: &str, p: &str| json!({"user": {"original_password": o, "password": p}});
    let path = format!("/identity/v3/users/{uid}/password");
    keystone_error(&me.post(&path, change("wrong", "self-pw-ku")).await, 401);
    keystone_error(&me.post(&path, json!({"user": {"password": "self-pw-ku"}})).await, 400);
    keystone_error(&me.post(&path, json!({"user": {"original_password": "new-pw-ku"}})).await, 400);
    keystone_error(&me.post(&path, change("new-pw-ku", "")).await, 400);
    keystone_error(&f.boss.post(&path, change("new-pw-ku", "self-pw-ku")).await, 403);
    keystone_error(&me.post(&format!("/identity/v3/users/{alice}/password"), change("x", "y")).await, 403);
    keystone_error(&api.post(&path, change("new-pw-ku", "self-pw-ku")).await, 401);
    assert!(token_works(&api, &token).await, "refused changes change nothing");
    let r = me.post(&path, change("new-pw-ku", "self-pw-ku")).await.expect(204);
    assert_eq!(r.text, "");
    assert!(!token_works(&api, &token).await, "a changed password ends the user's tokens");
    login_with(&api, &name, "new-pw-ku", "proj-a").await.expect_err("the original password is gone");
    let token = login_with(&api, &name, "self-pw-ku", "proj-a").await.expect("the changed password works");
    let r = patch(&f.boss, &format!("/identity/v3/users/{uid}"), json!({"user": {"enabled": false}})).await.expect(200);
    assert_eq!(r.body["user"]["enabled"], json!(false), "{}", r.text);
    assert!(!token_works(&api, &token).await, "disabling a user ends its tokens");
    login_with(&api, &name, "self-pw-ku", "proj-a").await.expect_err("a disabled user cannot log in");
    let disabled = f.boss.get("/identity/v3/users?enabled=false").await.expect(200);
    assert_eq!(disabled.body["users"][0]["id"], json!(uid), "{}", disabled.text);
    let renamed = unique("ku2");
    let r = patch(
        &f.boss,
        &format!("/identity/v3/users/{uid}"),
        json!({"user": {"enabled": true, "name": renamed, "default_project_id": f.b, "email": null}}),
    )
    .await
    .expect(200);
    assert_eq!(
        (r.body["user"]["name"].clone(), r.body["user"]["default_project_id"].clone()),
        (json!(renamed), json!(f.b))
    );
    assert!(r.body["user"].get("email").is_none(), "email cleared: {}", r.text);
    assert_eq!(r.body["user"]["description"], json!("a user"), "untouched fields stay: {}", r.text);
    let token = login_with(&api, &renamed, "self-pw-ku", "proj-a").await.expect("enabled again, renamed");

    // Credentials and tokens go with the user.
    cli(&f.server, &["admin", "credential", "create", "--user", &renamed, "--project", "proj-a"], None);
    assert!(cli(&f.server, &["admin", "credential", "list"], None).contains(&renamed));
    f.boss.delete(&format!("/identity/v3/users/{uid}")).await.expect(204);
    assert!(!token_works(&api, &token).await, "a deleted user's tokens end");
    let r = login_with(&api, &renamed, "self-pw-ku", "proj-a").await.expect_err("a deleted user cannot log in");
    keystone_error(&r, 401);
    assert!(!cli(&f.server, &["admin", "credential", "list"], None).contains(&renamed), "credentials deleted");
    keystone_error(&f.boss.get(&format!("/identity/v3/users/{uid}")).await, 404);
    keystone_error(&f.boss.delete(&format!("/identity/v3/users/{uid}")).await, 404);
    let all = f.boss.get("/identity/v3/users").await.expect(200);
    assert_eq!(all.body["users"].as_array().map(Vec::len), Some(4), "{}", all.text);

    // A user created disabled exists but cannot log in until enabled.
    let off = unique("ku-off");
    let r = f
        .boss
        .post(
            "/identity/v3/users",
            json!({"user": {"name": off, "password": pw, "default_project_id": f.a, "enabled": false}}),
        )
        .await
        .expect(201);
    assert_eq!(r.body["user"]["enabled"], json!(false), "{}", r.text);
    let off_id = s(&r.body["user"], "id");
    f.boss.put(&format!("/identity/v3/projects/{}/users/{off_id}/roles/{member}", f.a), json!(null)).await.expect(204);
    keystone_error(&login_with(&api, &off, pw, "proj-a").await.expect_err("disabled at creation"), 401);
    patch(&f.boss, &format!("/identity/v3/users/{off_id}"), json!({"user": {"enabled": true}})).await.expect(200);
    login_with(&api, &off, pw, "proj-a").await.expect("enabled later");
}

async fn keystone_admin_manages_role_assignments(backend: Backend) {
    let f = Fixture::new(backend).await;
    let api = f.server.api();
    // The three fixed roles, with stable ids.
    let roles = f.boss.get("/identity/v3/roles").await.expect(200);
    let names: Vec<Value> = roles.body["roles"].as_array().expect("roles").iter().map(|r| r["name"].clone()).collect();
    assert_eq!(names, vec![json!("reader"), json!("member"), json!("admin")], "{}", roles.text);
    let (reader, member, admin) =
        (role_id(&f, "reader").await, role_id(&f, "member").await, role_id(&f, "admin").await);
    assert_eq!(admin, "6a1a3b3a2f9c4b0e9d7f0c1b2a3d4e03");
    assert_eq!(f.boss.get(&format!("/identity/v3/roles/{member}")).await.expect(200).body["role"]["name"], "member");
    keystone_error(&f.boss.get("/identity/v3/roles/nope").await, 404);
    assert_eq!(f.boss.get("/identity/v3/roles?name=root").await.expect(200).body["roles"], json!([]));

    let bob = user_id(&f, "bob").await;
    let boss = user_id(&f, "boss").await;
    let (a, b) = (f.a.clone(), f.b.clone());
    let path = |p: &str, u: &str, r: &str| format!("/identity/v3/projects/{p}/users/{u}/roles/{r}");
    // HEAD: 404 before the grant, 204 after; a second PUT is fine.
    keystone_error(&f.boss.req(Method::GET, &path(&a, &bob, &reader), None).await, 404);
    assert_eq!(f.boss.req(Method::HEAD, &path(&a, &bob, &reader), None).await.status, 404);
    f.boss.put(&path(&a, &bob, &reader), json!(null)).await.expect(204);
    f.boss.put(&path(&a, &bob, &reader), json!(null)).await.expect(204);
    assert_eq!(f.boss.req(Method::HEAD, &path(&a, &bob, &reader), None).await.status, 204);
    let listed = f.boss.get(&format!("/identity/v3/projects/{a}/users/{bob}/roles")).await.expect(200);
    assert_eq!(listed.body["roles"].as_array().map(Vec::len), Some(1), "{}", listed.text);
    assert_eq!(listed.body["roles"][0]["id"], json!(reader), "{}", listed.text);
    let token = login_with(&api, "bob", PASSWORD, "proj-a").await.expect("bob reads proj-a now");
    let bob_c = Client { api: api.clone(), token: token.clone() };
    bob_c.get(&format!("/identity/v3/projects/{a}/users/{bob}/roles")).await.expect(200);

    // Assignment list: filters, names, effective (implied roles name their prior role).
    let r = f.boss.get(&format!("/identity/v3/role_assignments?user.id={bob}")).await.expect(200);
    let list = r.body["role_assignments"].as_array().expect("list").clone();
    assert_eq!(list.len(), 2, "{}", r.text);
    let ra = list.iter().find(|x| x["scope"]["project"]["id"] == json!(a)).expect("bob in A");
    assert_eq!(ra["role"], json!({"id": reader}), "{}", r.text);
    assert_eq!(ra["user"], json!({"id": bob}), "{}", r.text);
    assert!(s(&ra["links"], "assignment").ends_with(&path(&a, &bob, &reader)), "{}", r.text);
    let r = f
        .boss
        .get(&format!("/identity/v3/role_assignments?user.id={bob}&scope.project.id={a}&include_names=True"))
        .await
        .expect(200);
    let ra = &r.body["role_assignments"][0];
    assert_eq!(r.body["role_assignments"].as_array().map(Vec::len), Some(1), "{}", r.text);
    assert_eq!(ra["role"], json!({"id": reader, "name": "reader"}), "{}", r.text);
    assert_eq!(ra["user"]["name"], json!("bob"), "{}", r.text);
    assert_eq!(ra["user"]["domain"], json!({"id": "default", "name": "Default"}), "{}", r.text);
    assert_eq!(ra["scope"]["project"]["name"], json!("proj-a"), "{}", r.text);
    let r = f.boss.get(&format!("/identity/v3/role_assignments?role.id={admin}")).await.expect(200);
    assert_eq!(r.body["role_assignments"].as_array().map(Vec::len), Some(1), "{}", r.text);
    assert_eq!(r.body["role_assignments"][0]["user"]["id"], json!(boss), "{}", r.text);
    let r = f.boss.get(&format!("/identity/v3/role_assignments?user.id={boss}&effective")).await.expect(200);
    let eff = r.body["role_assignments"].as_array().expect("list");
    assert_eq!(eff.len(), 3, "admin implies member and reader: {}", r.text);
    assert!(eff.iter().filter(|x| x["links"]["prior_role"].is_string()).count() == 2, "{}", r.text);
    assert_eq!(
        f.boss.get("/identity/v3/role_assignments?scope.domain.id=default").await.expect(200).body["role_assignments"],
        json!([])
    );
    // A non-admin lists its own assignments only.
    bob_c.get(&format!("/identity/v3/role_assignments?user.id={bob}")).await.expect(200);
    keystone_error(&bob_c.get("/identity/v3/role_assignments").await, 403);
    keystone_error(&bob_c.get(&format!("/identity/v3/role_assignments?user.id={boss}")).await, 403);

    // Removing the role ends bob's tokens for that project; a second removal is 404.
    f.boss.delete(&path(&a, &bob, &reader)).await.expect(204);
    assert!(!token_works(&api, &token).await, "the revoked role's tokens end");
    keystone_error(&f.boss.delete(&path(&a, &bob, &reader)).await, 404);
    login_with(&api, "bob", PASSWORD, "proj-a").await.expect_err("no role in proj-a any more");
    login_with(&api, "bob", PASSWORD, "proj-b").await.expect("bob keeps proj-b");

    // The last admin assignment of the deployment stays (409), whichever way it would go.
    keystone_error(&f.boss.delete(&path(&a, &boss, &admin)).await, 409);
    keystone_error(&f.boss.delete(&format!("/identity/v3/users/{boss}")).await, 409);
    keystone_error(
        &patch(&f.boss, &format!("/identity/v3/users/{boss}"), json!({"user": {"enabled": false}})).await,
        409,
    );
    f.boss.get(&format!("/identity/v3/users/{boss}")).await.expect(200);
    assert!(token_works(&api, &f.boss.token).await, "the refused changes changed nothing");
    // With a second admin, the first one's admin role can go.
    f.boss.put(&path(&b, &bob, &admin), json!(null)).await.expect(204);
    f.boss.delete(&path(&a, &boss, &admin)).await.expect(204);
    assert!(!token_works(&api, &f.boss.token).await);
    let bob_admin = Client::login(&api, "bob", "proj-b").await;
    keystone_error(&bob_admin.delete(&path(&b, &bob, &admin)).await, 409);
    bob_admin.put(&path(&a, &boss, &member), json!(null)).await.expect(204);
}

async fn keystone_user_admin_refuses_bad_input_and_non_admins(backend: Backend) {
    let f = Fixture::new(backend).await;
    let before = f.boss.get("/identity/v3/users").await.expect(200).body["users"].clone();
    let member = role_id(&f, "member").await;
    let bob = user_id(&f, "bob").await;
    let a = f.a.clone();
    keystone_error(&f.boss.post("/identity/v3/users", json!({"user": {"name": "alice", "password": "x"}})).await, 409);
    for (bad, status) in [
        (json!({"user": {"password": "x"}}), 400),
        (json!({"user": {"name": "", "password": "x"}}), 400),
        (json!({"user": {"name": 5, "password": "x"}}), 400),
        (json!({"user": {"name": "a\u{7}b", "password": "x"}}), 400),
        (json!({"user": {"name": "x".repeat(256), "password": "x"}}), 400),
        (json!({"user": {"name": unique("ku")}}), 400),
        (json!({"user": {"name": unique("ku"), "password": ""}}), 400),
        (json!({"user": {"name": unique("ku"), "password": "p".repeat(1025)}}), 400),
        (json!({"user": {"name": unique("ku"), "password": "x", "enabled": "yes"}}), 400),
        (json!({"user": {"name": unique("ku"), "password": "x", "description": "d".repeat(256)}}), 400),
        (json!({"user": {"name": unique("ku"), "password": "x", "email": "a\nb"}}), 400),
        (json!({"user": {"name": unique("ku"), "password": "x", "default_project_id": "nope"}}), 404),
        (json!({"user": {"name": unique("ku"), "password": "x", "domain_id": "other"}}), 404),
        (json!({"nope": {}}), 400),
    ] {
        let r = f.boss.post("/identity/v3/users", bad.clone()).await;
        keystone_error(&r, status);
        assert!(!r.text.contains("\"password\""), "{bad}: {}", r.text);
    }
    let path = format!("/identity/v3/users/{bob}");
    for (bad, status) in [
        (json!({"user": {"name": "alice"}}), 409),
        (json!({"user": {"name": "a\u{1}"}}), 400),
        (json!({"user": {"password": ""}}), 400),
        (json!({"user": {"enabled": 1}}), 400),
        (json!({"user": {"default_project_id": "nope"}}), 404),
        (json!({"user": {"name": unique("ok"), "default_project_id": "nope"}}), 404),
    ] {
        keystone_error(&patch(&f.boss, &path, bad).await, status);
    }
    keystone_error(&patch(&f.boss, "/identity/v3/users/nope", json!({"user": {"name": "z"}})).await, 404);
    login_with(&f.server.api(), "bob", PASSWORD, "proj-b").await.expect("bob is unchanged");
    keystone_error(&f.boss.put(&format!("/identity/v3/projects/{a}/users/{bob}/roles/nope"), json!(null)).await, 404);
    keystone_error(
        &f.boss.put(&format!("/identity/v3/projects/{a}/users/nope/roles/{member}"), json!(null)).await,
        404,
    );
    keystone_error(
        &f.boss.put(&format!("/identity/v3/projects/nope/users/{bob}/roles/{member}"), json!(null)).await,
        404,
    );
    keystone_error(&f.boss.get("/identity/v3/users/nope").await, 404);
    assert_eq!(f.boss.get("/identity/v3/users").await.expect(200).body["users"], before, "bad input changed nothing");
    let r = f.boss.get(&format!("/identity/v3/role_assignments?user.id={bob}")).await.expect(200);
    assert_eq!(r.body["role_assignments"].as_array().map(Vec::len), Some(1), "{}", r.text);

    // Members and readers are refused every admin call (Keystone's 403 body); no token is 401.
    let rita = user_id(&f, "rita").await;
    for who in [&f.alice, &f.rita] {
        keystone_error(&who.get("/identity/v3/users").await, 403);
        keystone_error(&who.get(&format!("/identity/v3/users/{bob}")).await, 403);
        keystone_error(
            &who.post("/identity/v3/users", json!({"user": {"name": unique("ku"), "password": "x"}})).await,
            403,
        );
        keystone_error(
            &patch(who, &format!("/identity/v3/users/{rita}"), json!({"user": {"enabled": true}})).await,
            403,
        );
        keystone_error(&who.delete(&format!("/identity/v3/users/{bob}")).await, 403);
        keystone_error(&who.get("/identity/v3/roles").await, 403);
        keystone_error(
            &who.put(&format!("/identity/v3/projects/{a}/users/{rita}/roles/{member}"), json!(null)).await,
            403,
        );
        keystone_error(&who.delete(&format!("/identity/v3/projects/{a}/users/{bob}/roles/{member}")).await, 403);
    }
    let anon = f.server.api();
    keystone_error(&anon.get("/identity/v3/users").await, 401);
    keystone_error(
        &anon.post("/identity/v3/users", json!({"user": {"name": unique("ku"), "password": "x"}})).await,
        401,
    );
    assert_eq!(f.boss.get("/identity/v3/users").await.expect(200).body["users"], before, "refusals changed nothing");
    let r = f.boss.get(&format!("/identity/v3/role_assignments?user.id={rita}")).await.expect(200);
    assert_eq!(r.body["role_assignments"][0]["role"]["id"], json!(role_id(&f, "reader").await), "{}", r.text);
}

// ----- issue 14.6: access log, job lines, JSON format, no secrets ---------------------------

/// The daemon's log lines as JSON objects (`log_format = "json"`); a line that is not JSON
/// fails the test.
fn json_log_lines(server: &TestServer) -> Vec<Value> {
    let text = std::fs::read_to_string(&server.log_path).expect("read log");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {l}")))
        .collect()
}

/// With `log_format = "json"` at `debug`, every request has one access line (method, route
/// template, status, duration, request id, project) and jobs have start/finish lines with a
/// duration; a password login, the token it gave, and an AK/SK request never put the password,
/// the token or the secret key in the log.
async fn json_logs_have_access_and_job_lines_and_no_secrets(backend: Backend) {
    let f = Fixture::with_env(backend, &[("CINDERBLOCK_LOG_FORMAT", "json"), ("CINDERBLOCK_LOG", "debug")]).await;
    let a = f.a.as_str();
    let api = f.server.api();
    // A login with a password (the fixture logged in too), and a failed one.
    let token = login_with(&api, "alice", PASSWORD, "proj-a").await.expect("login");
    login_with(&api, "alice", "not-the-password-xyzzy", "proj-a").await.expect_err("wrong password");
    let out = cli(&f.server, &["admin", "credential", "create", "--user", "alice", "--project", "proj-a"], None);
    let (ak, sk) = (field(&out, "access_key"), field(&out, "secret_key"));
    let body =
        json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1, "name": "logged"}}).to_string();
    let r =
        signed(&api, Method::POST, &format!("/v2.1/{a}/cloudvolumes"), &ak, &sk, a, &sdk_date(0), Some(&body), None)
            .await
            .expect(200);
    let request_id = r.header("x-openstack-request-id").expect("request id");
    f.alice.wait_job(a, &s(&r.body, "job_id")).await;
    let r = f.alice.get(&format!("/v3/{a}/volumes/detail")).await.expect(200);
    let list_id = r.header("x-openstack-request-id").expect("request id");

    let deadline = Instant::now() + Duration::from_secs(30);
    let lines = loop {
        let lines = json_log_lines(&f.server);
        let done = lines.iter().any(|l| l["fields"]["request_id"] == json!(list_id));
        if done || Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let text = std::fs::read_to_string(&f.server.log_path).expect("read log");
    for secret in [PASSWORD, "not-the-password-xyzzy", sk.as_str(), token.as_str(), f.alice.token.as_str()] {
        assert!(!text.contains(secret), "a secret is in the log: {secret:?}");
    }

    let access: Vec<&Value> = lines.iter().filter(|l| l["target"] == json!("cinderblock::access")).collect();
    let one = |rid: &str| -> &Value {
        let hits: Vec<&&Value> = access.iter().filter(|l| l["fields"]["request_id"] == json!(rid)).collect();
        assert_eq!(hits.len(), 1, "want one access line for {rid}: {hits:?}");
        &hits[0]["fields"]
    };
    let create = one(&request_id);
    assert_eq!(create["method"], json!("POST"), "{create}");
    assert_eq!(create["route"], json!("/v2.1/{p}/cloudvolumes"), "{create}");
    assert_eq!(create["status"], json!(200), "{create}");
    assert_eq!(create["project"], json!(a), "{create}");
    assert!(create["duration_ms"].as_f64().is_some_and(|d| d >= 0.0), "{create}");
    let list = one(&list_id);
    assert_eq!((list["method"].clone(), list["route"].clone()), (json!("GET"), json!("/v3/{p}/volumes/detail")));
    // Logins: the identity route, 201 and 401, the project of the token issued (or none).
    let logins: Vec<&Value> =
        access.iter().map(|l| &l["fields"]).filter(|l| l["route"] == json!("/identity/v3/auth/tokens")).collect();
    assert!(logins.iter().any(|l| l["status"] == json!(201)), "{logins:?}");
    assert!(logins.iter().any(|l| l["status"] == json!(401) && l["project"] == json!("-")), "{logins:?}");

    let job_line = |msg: &str| {
        lines
            .iter()
            .map(|l| &l["fields"])
            .find(|l| l["message"] == json!(msg) && l["kind"] == json!("createVolume") && l["project"] == json!(a))
            .unwrap_or_else(|| panic!("no {msg:?} line for the createVolume job"))
            .clone()
    };
    job_line("job started");
    let finished = job_line("job finished");
    assert_eq!(finished["outcome"], json!("SUCCESS"), "{finished}");
    assert!(finished["duration_ms"].as_u64().is_some(), "{finished}");
}
