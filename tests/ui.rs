//! The web dashboard (issue 15) over HTTP, on SQLite and PostgreSQL: sign-in with the API's
//! accounts (keystone mode) and its throttling, server-side sessions (HttpOnly SameSite=Strict
//! cookie, hashed in the database, revocable, expiring), CSRF refusal, the policy table's role
//! checks, another project's volume answering 404, and the actions driven through forms until
//! their jobs end. A browser test in headless Chromium is `tests/ui_browser.rs`.

#[macro_use]
mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::{unique, Backend, Opts, TestServer};

backend_tests!(
    ui_sign_in_sessions_and_csrf,
    ui_pages_roles_and_projects,
    ui_actions_follow_their_jobs,
    ui_sessions_expire,
    ui_noauth_says_it_is_unauthenticated,
    ui_attach_detach_and_images,
);

const PASSWORD: &str = "correct horse battery staple";

/// A keystone daemon with projects `ui-a` and `ui-b` and users boss (admin of a), alice (member
/// of a), rita (reader of a), bob (member of b) and carol (member of a, for throttling).
fn keystone_server(backend: Backend, env: &[(&str, &str)]) -> TestServer {
    let mut e = vec![("CINDERBLOCK_AUTH__MODE".to_string(), "keystone".to_string())];
    e.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let server = TestServer::start(backend, Opts { env: e, ..Opts::default() });
    server.cli(&["admin", "project", "create", "ui-a"], None);
    server.cli(&["admin", "project", "create", "ui-b"], None);
    for (user, project, role) in [
        ("boss", "ui-a", "admin"),
        ("alice", "ui-a", "member"),
        ("rita", "ui-a", "reader"),
        ("bob", "ui-b", "member"),
        ("carol", "ui-a", "member"),
    ] {
        server.cli(
            &["admin", "user", "create", user, "--project", project, "--role", role],
            Some(&format!("{PASSWORD}\n")),
        );
    }
    server
}

/// The id of project `name` (from `cinderblock admin project list`).
fn project_id(server: &TestServer, name: &str) -> String {
    let projects = server.cli(&["admin", "project", "list"], None);
    let line = projects.lines().find(|l| l.split_whitespace().any(|w| w == name)).expect("project listed");
    line.split_whitespace()
        .find(|w| w.len() == 32 && w.bytes().all(|c| c.is_ascii_hexdigit()))
        .unwrap_or_else(|| panic!("an id in {line:?}"))
        .to_string()
}

/// One answer.
struct Page {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: String,
}

impl Page {
    fn expect(self, status: u16) -> Page {
        assert_eq!(self.status, status, "unexpected status; body:\n{}", self.body);
        self
    }
    fn location(&self) -> String {
        self.headers.get("location").and_then(|v| v.to_str().ok()).unwrap_or("").to_string()
    }
    fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_string).collect()
    }
    /// The page's CSRF token (the value of its first `csrf` field).
    fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").unwrap_or_else(|| panic!("no csrf field in\n{}", self.body));
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').expect("end of value")].to_string()
    }
    fn has(&self, s: &str) -> bool {
        self.body.contains(s)
    }
}

/// A browser-like client: keeps cookies, never follows redirects.
struct Browser {
    base: String,
    http: reqwest::Client,
    cookies: HashMap<String, String>,
    host: Option<String>,
}

impl Browser {
    fn new(server: &TestServer) -> Browser {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client");
        Browser { base: server.base_url(), http, cookies: HashMap::new(), host: None }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, rb: reqwest::RequestBuilder) -> Page {
        let mut rb = rb.header("cookie", self.cookie_header());
        if let Some(h) = &self.host {
            rb = rb.header("host", h);
        }
        let r = rb.send().await.expect("request");
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        for c in headers.get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()) {
            let kv = c.split(';').next().unwrap_or("");
            if let Some((k, v)) = kv.split_once('=') {
                if v.is_empty() || c.contains("Max-Age=0") {
                    self.cookies.remove(k);
                } else {
                    self.cookies.insert(k.to_string(), v.to_string());
                }
            }
        }
        let body = r.text().await.unwrap_or_default();
        Page { status, headers, body }
    }

    async fn get(&mut self, path: &str) -> Page {
        let rb = self.http.get(format!("{}{path}", self.base));
        self.send(rb).await
    }

    async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(form).expect("form");
        let rb = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.send(rb).await
    }

    /// Sign in (keystone) and land on the overview.
    async fn sign_in(server: &TestServer, user: &str, project: &str) -> Browser {
        let mut b = Browser::new(server);
        let csrf = b.get("/ui/login").await.expect(200).csrf();
        let r =
            b.post("/ui/login", &[("csrf", &csrf), ("user", user), ("project", project), ("password", PASSWORD)]).await;
        assert_eq!((r.status, r.location().as_str()), (303, "/ui/"), "sign-in of {user}: {}", r.body);
        b
    }

    /// The CSRF token of this session (read from the overview).
    async fn csrf(&mut self) -> String {
        self.get("/ui/").await.expect(200).csrf()
    }

    /// Poll `path` until its body contains `want` (a deadline, never a sleep as sync).
    async fn wait_for(&mut self, path: &str, want: &str) -> Page {
        let deadline = Instant::now() + common::WAIT_TIMEOUT;
        loop {
            let p = self.get(path).await;
            if p.status == 200 && p.has(want) {
                return p;
            }
            assert!(Instant::now() < deadline, "{path} never showed {want:?}; last ({}):\n{}", p.status, p.body);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Create a volume through the form; returns (volume id, job id) once it is available.
    async fn create_volume(&mut self, name: &str, extra: &[(&str, &str)]) -> (String, String) {
        let csrf = self.csrf().await;
        let mut form = vec![("csrf", csrf.as_str()), ("name", name)];
        form.extend_from_slice(extra);
        if !extra.iter().any(|(k, _)| *k == "size" || *k == "source") {
            form.push(("size", "1"));
        }
        let r = self.post("/ui/volumes", &form).await.expect(303);
        let loc = r.location();
        let rest = loc.strip_prefix("/ui/volumes/").unwrap_or_else(|| panic!("redirect {loc}"));
        let (id, job) = rest.split_once("?job=").expect("job in redirect");
        self.wait_for(&format!("/ui/volumes/{id}/live"), "id=\"volume-status\">available<").await;
        (id.to_string(), job.to_string())
    }
}

/// The cookie `name` among Set-Cookie values.
fn cookie_attrs(p: &Page, name: &str) -> String {
    p.set_cookies().into_iter().find(|c| c.starts_with(&format!("{name}="))).unwrap_or_default()
}

async fn ui_sign_in_sessions_and_csrf(backend: Backend) {
    let server = keystone_server(backend, &[("CINDERBLOCK_AUTH__FAILED_LOGIN_LIMIT_PER_USER", "3")]);
    let mut anon = Browser::new(&server);
    // Nothing but the sign-in page and the assets without a session.
    for path in ["/ui/", "/ui/volumes", "/ui/jobs", "/ui/volumes/00000000-0000-0000-0000-000000000000"] {
        let r = anon.get(path).await.expect(303);
        assert_eq!(r.location(), "/ui/login", "{path}");
    }
    let login = anon.get("/ui/login").await.expect(200);
    assert!(login.has("name=\"password\""));
    let pre = cookie_attrs(&login, "cb_pre");
    assert!(pre.contains("HttpOnly") && pre.contains("SameSite=Strict"), "{pre}");
    assert_eq!(login.headers.get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert!(login.headers.get("content-security-policy").is_some());
    // The assets are embedded, named by their hash and cached for ever.
    let at = login.body.find("/ui/static/app.").expect("stylesheet link");
    let css = &login.body[at..at + login.body[at..].find('"').expect("end")];
    let r = anon.get(css).await.expect(200);
    assert!(r.headers["cache-control"].to_str().unwrap_or("").contains("immutable"));
    assert!(r.headers["content-type"].to_str().unwrap_or("").starts_with("text/css"));
    anon.get("/ui/static/htmx.000000000000.min.js").await.expect(404);

    // The sign-in form needs its CSRF token (bound to the pre-session cookie).
    let csrf = login.csrf();
    let no_token = anon.post("/ui/login", &[("user", "alice"), ("project", "ui-a"), ("password", PASSWORD)]).await;
    no_token.expect(403);
    let mut other = Browser::new(&server);
    let stolen = other.post("/ui/login", &[("csrf", &csrf), ("user", "alice"), ("password", PASSWORD)]).await;
    assert_eq!(stolen.status, 403, "a token without its cookie is refused");
    // A wrong password: 401, the form again, no session.
    let csrf = anon.get("/ui/login").await.csrf();
    let wrong =
        anon.post("/ui/login", &[("csrf", &csrf), ("user", "alice"), ("project", "ui-a"), ("password", "nope")]).await;
    let wrong = wrong.expect(401);
    assert!(wrong.has("Sign-in failed"));
    assert!(cookie_attrs(&wrong, "cb_session").is_empty());
    // A project the user holds no role in is refused the same way.
    let csrf = wrong.csrf();
    anon.post("/ui/login", &[("csrf", &csrf), ("user", "alice"), ("project", "ui-b"), ("password", PASSWORD)])
        .await
        .expect(401);

    // Signing in: an HttpOnly SameSite=Strict cookie; the database holds only its hash.
    let csrf = anon.get("/ui/login").await.csrf();
    let ok = anon
        .post("/ui/login", &[("csrf", &csrf), ("user", "alice"), ("project", "ui-a"), ("password", PASSWORD)])
        .await;
    let ok = ok.expect(303);
    let sc = cookie_attrs(&ok, "cb_session");
    assert!(sc.contains("HttpOnly") && sc.contains("SameSite=Strict") && sc.contains("Path=/ui"), "{sc}");
    let secret = anon.cookies["cb_session"].clone();
    let rows = server.db_query_pairs("SELECT id_hash, project_id FROM ui_sessions").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_ne!(rows[0].0, secret, "the secret itself is not stored");
    let mut alice = anon;
    let home = alice.get("/ui/").await.expect(200);
    assert!(home.has("alice") && home.has("ui-a") && home.has("member"), "{}", home.body);

    // Every form needs the session's token: a missing or foreign one is 403 and creates nothing.
    let before = server.db_volumes().await.len();
    let name = unique("csrf");
    alice.post("/ui/volumes", &[("name", &name), ("size", "1")]).await.expect(403);
    alice.post("/ui/volumes", &[("csrf", &"0".repeat(64)), ("name", &name), ("size", "1")]).await.expect(403);
    let mut rita = Browser::sign_in(&server, "rita", "ui-a").await;
    let ritas = rita.csrf().await;
    alice.post("/ui/volumes", &[("csrf", &ritas), ("name", &name), ("size", "1")]).await.expect(403);
    assert_eq!(server.db_volumes().await.len(), before, "refused forms create nothing");

    // Sessions are listed and revocable; a revoked one is signed out at once.
    let mut alice2 = Browser::sign_in(&server, "alice", "ui-a").await;
    let list = alice.get("/ui/sessions").await.expect(200);
    assert_eq!(list.body.matches("/revoke").count(), 2, "{}", list.body);
    let revoke_all_but_mine: Vec<String> =
        list.body.split("/ui/sessions/").skip(1).map(|s| s[..16].to_string()).collect();
    let csrf = list.csrf();
    let mine = alice.cookies["cb_session"].clone();
    let mine_hash = rows_hash_prefix(&server, &mine).await;
    let theirs = revoke_all_but_mine.iter().find(|h| **h != mine_hash).expect("the other session").clone();
    alice.post(&format!("/ui/sessions/{theirs}/revoke"), &[("csrf", &csrf)]).await.expect(303);
    assert_eq!(alice2.get("/ui/").await.status, 303, "the revoked session is signed out");
    // Another user's session cannot be revoked (404), and stays.
    let ritas_hash = rows_hash_prefix(&server, &rita.cookies["cb_session"].clone()).await;
    alice.post(&format!("/ui/sessions/{ritas_hash}/revoke"), &[("csrf", &csrf)]).await.expect(404);
    rita.get("/ui/").await.expect(200);

    // Signing out deletes the session: the old cookie no longer works.
    let old = alice.cookies["cb_session"].clone();
    let csrf = alice.csrf().await;
    let out = alice.post("/ui/logout", &[("csrf", &csrf)]).await.expect(303);
    assert_eq!(out.location(), "/ui/login");
    let mut replay = Browser::new(&server);
    replay.cookies.insert("cb_session".into(), old);
    assert_eq!(replay.get("/ui/").await.status, 303);
    // A polled fragment of an ended session tells htmx to go to the sign-in page.
    let rb = replay.http.get(format!("{}/ui/jobs/in-flight", replay.base)).header("hx-request", "true");
    let r = replay.send(rb).await.expect(401);
    assert_eq!(r.headers.get("hx-redirect").and_then(|v| v.to_str().ok()), Some("/ui/login"));

    // A disabled user's sessions end at once.
    let mut carol = Browser::sign_in(&server, "carol", "ui-a").await;
    server.cli(&["admin", "user", "disable", "carol"], None);
    assert_eq!(carol.get("/ui/").await.status, 303, "a disabled user is signed out");
    server.cli(&["admin", "user", "enable", "carol"], None);
    // A new password ends the user's sessions (their rows go with the old password's tokens).
    let mut carol = Browser::sign_in(&server, "carol", "ui-a").await;
    server.cli(&["admin", "user", "set-password", "carol"], Some(&format!("{PASSWORD}\n")));
    assert_eq!(carol.get("/ui/").await.status, 303, "a password change signs the user out");

    // The identity service's throttling applies: after 3 failures even the right password is 429.
    let mut t = Browser::new(&server);
    for _ in 0..3 {
        let csrf = t.get("/ui/login").await.csrf();
        t.post("/ui/login", &[("csrf", &csrf), ("user", "carol"), ("project", "ui-a"), ("password", "bad")])
            .await
            .expect(401);
    }
    let csrf = t.get("/ui/login").await.csrf();
    let r =
        t.post("/ui/login", &[("csrf", &csrf), ("user", "carol"), ("project", "ui-a"), ("password", PASSWORD)]).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.has("Too many failed logins"));
}

/// The 16-digit handle the sessions page shows for the session of `secret`.
async fn rows_hash_prefix(server: &TestServer, secret: &str) -> String {
    use sha2::Digest;
    let h: String = sha2::Sha256::digest(secret.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    let rows = server.db_query_pairs("SELECT id_hash, project_id FROM ui_sessions").await;
    assert!(rows.iter().any(|(r, _)| *r == h), "session row of the cookie");
    h[..16].to_string()
}

async fn ui_pages_roles_and_projects(backend: Backend) {
    let server = keystone_server(backend, &[]);
    let mut alice = Browser::sign_in(&server, "alice", "ui-a").await;
    let name = unique("vol");
    let (id, _) = alice.create_volume(&name, &[]).await;

    // Overview: counts by status; pools only for those the policy lets see them (admins).
    let home = alice.get("/ui/").await.expect(200);
    assert!(home.has("id=\"status-counts\"") && home.has("available"), "{}", home.body);
    assert!(!home.has("<h2>Pools</h2>"), "members do not see pools");
    let mut boss = Browser::sign_in(&server, "boss", "ui-a").await;
    let bh = boss.get("/ui/").await.expect(200);
    assert!(bh.has("<h2>Pools</h2>") && bh.has("default") && bh.has("Over-subscription"), "{}", bh.body);
    assert!(bh.has("<progress"), "capacity bars");

    // Volumes: filter, sort, paging.
    let list = alice.get("/ui/volumes").await.expect(200);
    assert!(list.has(&name) && list.has(&format!("/ui/volumes/{id}")) && list.has("<th>Allocated</th>"));
    assert!(alice.get("/ui/volumes?status=available").await.expect(200).has(&name));
    assert!(!alice.get("/ui/volumes?status=error").await.expect(200).has(&name));
    assert!(alice.get(&format!("/ui/volumes?name={name}")).await.expect(200).has(&name));
    assert!(!alice.get("/ui/volumes?name=nothing-by-this-name").await.expect(200).has(&name));
    alice.get("/ui/volumes?status=bogus").await.expect(400);
    alice.get("/ui/volumes?sort=bogus").await.expect(400);
    alice.get("/ui/volumes?page=x").await.expect(400);
    let prefix = unique("page");
    let mut names = Vec::new();
    let csrf = alice.csrf().await;
    for i in 0..21 {
        let n = format!("{prefix}-{i:02}");
        alice.post("/ui/volumes", &[("csrf", &csrf), ("name", &n), ("size", "1")]).await.expect(303);
        names.push(n);
    }
    let p1 = alice.get("/ui/volumes?sort=name&dir=asc").await.expect(200);
    assert!(p1.has("Page 1 of 2") && p1.has("rel=\"next\""), "{}", p1.body);
    assert!(p1.has(&names[0]) && !p1.has(&names[20]), "the 23rd by name is on page 2");
    let p2 = alice.get("/ui/volumes?sort=name&dir=asc&page=2").await.expect(200);
    assert!(p2.has(&names[20]) && p2.has("rel=\"prev\""));
    let desc = alice.get("/ui/volumes?sort=name&dir=desc").await.expect(200);
    let (a, b) = (desc.body.find(&names[20]).expect("20"), desc.body.find(&names[19]).expect("19"));
    assert!(a < b, "descending by name");

    // The volume page: details, snapshots, actions for members.
    let page = alice.get(&format!("/ui/volumes/{id}")).await.expect(200);
    assert!(page.has(&name) && page.has("id=\"take-snapshot\"") && page.has("id=\"delete-link\""));

    // A reader sees the volume but no action, and the policy refuses its forms.
    let mut rita = Browser::sign_in(&server, "rita", "ui-a").await;
    let rp = rita.get(&format!("/ui/volumes/{id}")).await.expect(200);
    assert!(rp.has(&name) && !rp.has("id=\"take-snapshot\"") && !rp.has("id=\"delete-link\""));
    assert!(!rita.get("/ui/volumes").await.expect(200).has("id=\"new-volume\""));
    let csrf = rita.csrf().await;
    let before = server.db_volumes().await.len();
    rita.post("/ui/volumes", &[("csrf", &csrf), ("name", "r"), ("size", "1")]).await.expect(403);
    rita.post(&format!("/ui/volumes/{id}/extend"), &[("csrf", &csrf), ("new_size", "2")]).await.expect(403);
    rita.post(&format!("/ui/volumes/{id}/delete"), &[("csrf", &csrf), ("confirm", &name)]).await.expect(403);
    rita.get(&format!("/ui/volumes/{id}/delete")).await.expect(403);
    rita.get("/ui/volumes/new").await.expect(403);
    assert_eq!(server.db_volumes().await.len(), before);

    // Another project's volume is 404, to read and to act on, and absent from its lists.
    let mut bob = Browser::sign_in(&server, "bob", "ui-b").await;
    bob.get(&format!("/ui/volumes/{id}")).await.expect(404);
    bob.get(&format!("/ui/volumes/{id}/live")).await.expect(404);
    bob.get(&format!("/ui/volumes/{id}/delete")).await.expect(404);
    let csrf = bob.csrf().await;
    bob.post(&format!("/ui/volumes/{id}/extend"), &[("csrf", &csrf), ("new_size", "2")]).await.expect(404);
    bob.post(&format!("/ui/volumes/{id}/snapshot"), &[("csrf", &csrf), ("name", "x")]).await.expect(404);
    bob.post(&format!("/ui/volumes/{id}/delete"), &[("csrf", &csrf), ("confirm", &name)]).await.expect(404);
    assert!(!bob.get("/ui/volumes").await.expect(200).has(&name));
    let alice_jobs = alice.get("/ui/jobs").await.expect(200);
    let job_id = alice_jobs.body.split("/ui/jobs/").nth(1).map(|s| s[..32].to_string()).expect("a job link");
    bob.get(&format!("/ui/jobs/{job_id}")).await.expect(404);
    alice.get(&format!("/ui/jobs/{job_id}")).await.expect(200);

    // The other pages answer, and unknown things are 404 pages.
    for path in [
        "/ui/snapshots",
        "/ui/jobs",
        "/ui/jobs/in-flight",
        "/ui/images",
        "/ui/quotas",
        "/ui/messages",
        "/ui/sessions",
        "/ui/volumes/new",
    ] {
        alice.get(path).await.expect(200);
    }
    assert!(alice.get("/ui/quotas").await.has("gigabytes"));
    // Another project's quotas: admins only (by id, as in the API).
    let b_id = project_id(&server, "ui-b");
    alice.get(&format!("/ui/quotas?project={b_id}")).await.expect(403);
    let bq = boss.get(&format!("/ui/quotas?project={b_id}")).await.expect(200);
    assert!(bq.has(&format!("id=\"quota-project\">{b_id}<")));
    alice.get("/ui/quotas?project=bad%20id").await.expect(400);
    let nf = alice.get("/ui/volumes/not-a-uuid").await.expect(404);
    assert!(nf.headers["content-type"].to_str().unwrap_or("").starts_with("text/html"));
    alice.get("/ui/no-such-page").await.expect(404);
}

async fn ui_actions_follow_their_jobs(backend: Backend) {
    let server = keystone_server(backend, &[]);
    let mut alice = Browser::sign_in(&server, "alice", "ui-a").await;
    let name = unique("act");
    let (id, job) = alice.create_volume(&name, &[]).await;
    let jp = alice.wait_for(&format!("/ui/jobs/{job}/progress"), "SUCCESS").await;
    assert!(!jp.has("hx-trigger"), "a finished job is no longer polled");
    let page = format!("/ui/volumes/{id}");
    let live = format!("/ui/volumes/{id}/live");

    // Snapshot, shown in the timeline once available.
    let csrf = alice.csrf().await;
    let snap = unique("snap");
    let r = alice.post(&format!("{page}/snapshot"), &[("csrf", &csrf), ("name", &snap)]).await.expect(303);
    assert_eq!(r.location(), page);
    let l = alice.wait_for(&live, &format!("data-name=\"{snap}\"")).await;
    let at = l.body.find(&format!("data-name=\"{snap}\"")).expect("snapshot");
    let snap_id = l.body[..at].rsplit("data-id=\"").next().map(|s| s[..36].to_string()).expect("snapshot id");
    alice.wait_for(&live, "rollback").await;

    // Extend, then roll back to the snapshot (the job is followed on the volume page).
    let r = alice.post(&format!("{page}/extend"), &[("csrf", &csrf), ("new_size", "2")]).await.expect(303);
    let ext_job = r.location().split("?job=").nth(1).expect("job").to_string();
    alice.wait_for(&format!("/ui/jobs/{ext_job}/progress"), "SUCCESS").await;
    alice.wait_for(&live, "id=\"volume-size\">2 GiB<").await;
    alice.post(&format!("{page}/extend"), &[("csrf", &csrf), ("new_size", "1")]).await.expect(400);
    let r = alice.post(&format!("{page}/rollback"), &[("csrf", &csrf), ("snapshot_id", &snap_id)]).await;
    let r = r.expect(303);
    let rb_job = r.location().split("?job=").nth(1).expect("job").to_string();
    let followed = alice.get(&r.location()).await.expect(200);
    assert!(followed.has(&format!("/ui/jobs/{rb_job}/progress")), "the page follows the job");
    alice.wait_for(&format!("/ui/jobs/{rb_job}/progress"), "SUCCESS").await;
    alice.wait_for(&live, "id=\"volume-status\">available<").await;

    // Rename.
    let new_name = unique("renamed");
    alice.post(&format!("{page}/rename"), &[("csrf", &csrf), ("name", &new_name)]).await.expect(303);
    assert!(alice.get(&page).await.expect(200).has(&new_name));

    // Clone (full) and a volume from the snapshot; both reach available and show as clones.
    let r = alice.post(&format!("{page}/clone"), &[("csrf", &csrf), ("name", "clone-1"), ("full_clone", "1")]).await;
    let loc = r.expect(303).location();
    let clone_id = loc.trim_start_matches("/ui/volumes/").split('?').next().expect("id").to_string();
    alice.wait_for(&format!("/ui/volumes/{clone_id}/live"), "id=\"volume-status\">available<").await;
    let (from_snap, _) = alice.create_volume("from-snap", &[("source", &format!("snapshot:{snap_id}"))]).await;
    let (from_vol, _) = alice.create_volume("from-vol", &[("source", &format!("volume:{id}"))]).await;
    let p = alice.get(&page).await.expect(200);
    for c in [&clone_id, &from_snap, &from_vol] {
        assert!(p.has(&format!("/ui/volumes/{c}")), "clone {c} listed:\n{}", p.body);
    }
    alice.post("/ui/volumes", &[("csrf", &csrf), ("source", "disk:x")]).await.expect(400);
    alice.post("/ui/volumes", &[("csrf", &csrf), ("name", "no-size")]).await.expect(400);

    // Delete: the confirmation names the volume; a wrong name changes nothing.
    let confirm = alice.get(&format!("{page}/delete")).await.expect(200);
    assert!(confirm.has(&format!("Delete volume “{new_name}”?")));
    alice.post(&format!("{page}/delete"), &[("csrf", &csrf), ("confirm", "wrong")]).await.expect(400);
    alice.get(&page).await.expect(200);
    // With its snapshot it is refused unless cascading, then goes.
    alice.post(&format!("{page}/delete"), &[("csrf", &csrf), ("confirm", &new_name)]).await.expect(400);
    let r = alice.post(&format!("{page}/delete"), &[("csrf", &csrf), ("confirm", &new_name), ("cascade", "1")]).await;
    let r = r.expect(303);
    assert!(r.location().starts_with("/ui/jobs/"), "{}", r.location());
    alice.wait_for(&format!("{}/progress", r.location()), "SUCCESS").await;
    alice.get(&page).await.expect(404);

    // A job that fails shows why, on its page, in the jobs list and as a user message: a type
    // asking for a capability no pool has (made by an admin through the Cinder API).
    let a_id = project_id(&server, "ui-a");
    let api = server.api();
    let auth = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": "boss", "password": PASSWORD, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": "ui-a", "domain": {"name": "Default"}}}
    }});
    let token = api.post("/identity/v3/auth/tokens", auth).await.expect(201).header("x-subject-token").expect("token");
    let body = serde_json::json!({"volume_type": {"name": "gold", "extra_specs": {"tier": "gold"}}});
    let t = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{a_id}/types"),
            &[("X-Auth-Token", &token)],
            Some(body.to_string()),
        )
        .await;
    assert_eq!(t.status, 200, "{}", t.text);
    let r =
        alice.post("/ui/volumes", &[("csrf", &csrf), ("name", "gold"), ("size", "1"), ("volume_type", "gold")]).await;
    let loc = r.expect(303).location();
    let (gold, job) = loc.trim_start_matches("/ui/volumes/").split_once("?job=").expect("job");
    let (gold, job) = (gold.to_string(), job.to_string());
    let p = alice.wait_for(&format!("/ui/jobs/{job}/progress"), "FAIL").await;
    assert!(p.has("class=\"error\"") && !p.has("hx-trigger"), "{}", p.body);
    alice.wait_for(&format!("/ui/volumes/{gold}/live"), "id=\"volume-status\">error<").await;
    let jobs = alice.get("/ui/jobs").await.expect(200);
    assert!(jobs.has("class=\"failed\""), "{}", jobs.body);
    let msgs = alice.wait_for("/ui/messages", &gold).await;
    assert!(msgs.has("schedule"), "a scheduling message: {}", msgs.body);
}

async fn ui_sessions_expire(backend: Backend) {
    let server = keystone_server(backend, &[("CINDERBLOCK_UI__SESSION_TTL_SECONDS", "2")]);
    let mut alice = Browser::sign_in(&server, "alice", "ui-a").await;
    alice.get("/ui/").await.expect(200);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = alice.get("/ui/").await;
        if r.status == 303 {
            assert_eq!(r.location(), "/ui/login");
            break;
        }
        assert_eq!(r.status, 200);
        assert!(Instant::now() < deadline, "the session never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let rows = server.db_query_pairs("SELECT id_hash, project_id FROM ui_sessions").await;
    assert!(rows.is_empty(), "an expired session's row is removed: {rows:?}");
}

async fn ui_noauth_says_it_is_unauthenticated(backend: Backend) {
    // The job workers wait while this file exists (the runner's stall hook), so the create is
    // still in flight when the overview is read, however loaded the machine is.
    let stall_dir = tempfile::tempdir().expect("tmp");
    let stall = stall_dir.path().join("stall");
    std::fs::write(&stall, b"").expect("stall file");
    let env = vec![("CINDERBLOCK_TEST_STALL_FILE".to_string(), stall.display().to_string())];
    let server = TestServer::start(backend, Opts { env, ..Opts::default() });
    let mut b = Browser::new(&server);
    b.get("/ui/").await.expect(303);
    let login = b.get("/ui/login").await.expect(200);
    assert!(login.has("noauth") && !login.has("name=\"password\""), "{}", login.body);
    b.post("/ui/login", &[]).await.expect(403);
    let csrf = login.csrf();
    b.post("/ui/login", &[("csrf", &csrf)]).await.expect(303);
    let home = b.get("/ui/").await.expect(200);
    assert!(home.has("Unauthenticated") && home.has("noauth"), "{}", home.body);
    // noauth answers only for this machine's names, as its API does (DNS rebinding).
    b.host = Some("evil.example".into());
    b.get("/ui/").await.expect(403);
    b.host = None;
    let name = unique("na");
    let csrf = b.csrf().await;
    let r = b.post("/ui/volumes", &[("csrf", &csrf), ("name", &name), ("size", "1")]).await.expect(303);
    let id = r.location().trim_start_matches("/ui/volumes/").split('?').next().expect("id").to_string();
    // The overview's jobs in flight show the create while it runs, and nothing once it ended.
    let f = b.get("/ui/jobs/in-flight").await.expect(200);
    assert!(f.has("createVolume") && f.has(&format!("/ui/volumes/{id}")), "{}", f.body);
    assert!(f.has("hx-trigger=\"every 3s\""));
    std::fs::remove_file(&stall).expect("release the workers");
    b.wait_for(&format!("/ui/volumes/{id}/live"), "id=\"volume-status\">available<").await;
    b.wait_for("/ui/jobs/in-flight", "None.").await;
    assert!(b.get("/ui/volumes").await.expect(200).has(&id));
}

async fn ui_attach_detach_and_images(backend: Backend) {
    let server = keystone_server(backend, &[]);
    let mut alice = Browser::sign_in(&server, "alice", "ui-a").await;
    let name = unique("att");
    let (id, _) = alice.create_volume(&name, &[]).await;
    let page = format!("/ui/volumes/{id}");
    let live = format!("/ui/volumes/{id}/live");

    // Readers cannot attach; another project's member gets 404.
    let mut rita = Browser::sign_in(&server, "rita", "ui-a").await;
    let csrf = rita.csrf().await;
    rita.post(&format!("{page}/attach"), &[("csrf", &csrf), ("host", "127.0.0.1")]).await.expect(403);
    let mut bob = Browser::sign_in(&server, "bob", "ui-b").await;
    let csrf = bob.csrf().await;
    bob.post(&format!("{page}/attach"), &[("csrf", &csrf), ("host", "127.0.0.1")]).await.expect(404);
    let csrf = alice.csrf().await;
    alice.post(&format!("{page}/attach"), &[("csrf", &csrf), ("host", "")]).await.expect(400);

    // Attach: the connection info is shown, and a real NBD client reads the export through it.
    let a = alice.post(&format!("{page}/attach"), &[("csrf", &csrf), ("host", "127.0.0.1")]).await.expect(200);
    let at = a.body.find("id=\"connection-uri\" class=\"copy\">").expect("connection uri");
    let rest = &a.body[at..];
    let uri = rest[rest.find('>').expect(">") + 1..rest.find("</code>").expect("end")].to_string();
    assert!(uri.starts_with("nbd://"), "{uri}");
    if std::path::Path::new("/usr/bin/nbdinfo").exists() {
        let out = std::process::Command::new("nbdinfo").args(["--size", &uri]).output().expect("nbdinfo");
        assert!(out.status.success(), "nbdinfo {uri}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), (1u64 << 30).to_string());
    } else {
        eprintln!("nbdinfo not installed: the export was not read (scripts/test.sh installs libnbd-bin)");
    }
    alice.wait_for(&live, "id=\"volume-status\">in-use<").await;
    let p = alice.get(&page).await.expect(200);
    let at = p.body.find("name=\"attachment_id\" value=\"").expect("detach form");
    let aid = p.body[at + 28..at + 28 + 36].to_string();
    assert!(!p.has(&uri), "the secret export name is shown only once");
    let bobs = bob.csrf().await;
    bob.post(&format!("{page}/detach"), &[("csrf", &bobs), ("attachment_id", &aid)]).await.expect(404);
    alice.post(&format!("{page}/detach"), &[("csrf", &csrf), ("attachment_id", "nope")]).await.expect(404);
    alice.post(&format!("{page}/detach"), &[("csrf", &csrf), ("attachment_id", &aid)]).await.expect(303);
    alice.wait_for(&live, "id=\"volume-status\">available<").await;

    // Upload to image, then a volume from that image.
    let image = unique("img");
    let r = alice.post(&format!("{page}/upload"), &[("csrf", &csrf), ("image_name", &image)]).await.expect(303);
    let job = r.location().split("?job=").nth(1).expect("job").to_string();
    alice.wait_for(&format!("/ui/jobs/{job}/progress"), "SUCCESS").await;
    let imgs = alice.wait_for("/ui/images", "active").await;
    assert!(imgs.has(&image), "{}", imgs.body);
    let at = imgs.body.find(&image).expect("image row");
    let image_id = imgs.body[..at].rsplit("data-id=\"").next().map(|s| s[..36].to_string()).expect("image id");
    let form = alice.get(&format!("/ui/volumes/new?image={image_id}")).await.expect(200);
    assert!(form.has(&format!("value=\"image:{image_id}\" selected")));
    let (from_image, _) = alice.create_volume("from-image", &[("source", &format!("image:{image_id}"))]).await;
    assert!(alice.get(&format!("/ui/volumes/{from_image}")).await.expect(200).has(&format!("image {image_id}")));
}
