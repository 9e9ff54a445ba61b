//! Integration test harness: runs the real `cinderblock` binary on port 0 against a fresh
//! SQLite file (always) or a fresh PostgreSQL database (when `TEST_DATABASE_URL` is set), and
//! drives it over HTTP.
//!
//! * [`TestServer::start`] owns one daemon: its config, pool directory and database live in a
//!   temp dir (and, on PostgreSQL, a `cb_test_<pid>_<random>` database). Dropping it kills the
//!   daemon and drops the database, also when the test panicked.
//! * [`shared`] gives every test of one test binary the same daemon (per backend). Tests keep
//!   out of each other's way by using their own project id ([`project`]). A shared daemon is
//!   never dropped, so a small watchdog process (`sh`) holding a pipe from the test process
//!   cleans up (kill, drop database, remove temp dir) when the test binary exits.
//! * [`Api`] is a per-test HTTP client (a `reqwest::Client` must not outlive the tokio runtime
//!   of the test that used it, and every `#[tokio::test]` has its own runtime).
//!
//! Everything that waits polls with a deadline; nothing sleeps to synchronise.

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Bytes in one GiB.
pub const GIB: u64 = 1 << 30;

/// How long a daemon may take to print its listening line.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Default deadline for a job or a status change.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(60);
/// Interval between two polls.
const POLL: Duration = Duration::from_millis(20);

/// Generate one `#[tokio::test]` per backend for each async fn taking a [`Backend`]:
/// `sqlite::<name>` always runs, `postgres::<name>` runs when `TEST_DATABASE_URL` is set and
/// otherwise prints why it skipped.
macro_rules! backend_tests {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await;
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    match $crate::common::Backend::postgres() {
                        Some(b) => super::$name(b).await,
                        None => eprintln!(
                            "skipped {}: TEST_DATABASE_URL is not set",
                            stringify!($name)
                        ),
                    }
                }
            )+
        }
    };
}

/// Which metadata database a daemon uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file inside the test's temp dir.
    Sqlite,
    /// A fresh database on the PostgreSQL server at this (admin) URL.
    Postgres(String),
}

impl Backend {
    /// PostgreSQL from `TEST_DATABASE_URL`, when set.
    pub fn postgres() -> Option<Backend> {
        std::env::var("TEST_DATABASE_URL").ok().filter(|u| !u.trim().is_empty()).map(Backend::Postgres)
    }

    /// Short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres(_) => "postgres",
        }
    }
}

/// A fresh random project id (32 hex digits, as Keystone prints them).
pub fn project() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// A unique name for test resources, so filters never see other tests' volumes.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// What the generated config says.
#[derive(Debug, Clone)]
pub struct Opts {
    /// `node` (jobs left RUNNING by a node are requeued when that node starts again).
    pub node: String,
    /// `jobs.step_delay_ms`.
    pub step_delay_ms: u64,
    /// `jobs.workers`.
    pub workers: usize,
    /// `jobs.lease_seconds`.
    pub lease_seconds: u64,
    /// `pools[0].max_over_subscription_ratio`.
    pub max_over_subscription_ratio: f64,
    /// `database.max_connections`.
    pub max_connections: u32,
    /// Extra top-level TOML lines (placed before the first table).
    pub extra_top: String,
    /// Extra TOML appended at the end of the file.
    pub extra_tail: String,
    /// Extra environment variables for the daemon.
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            node: "test-node".into(),
            step_delay_ms: 0,
            workers: 4,
            lease_seconds: 60,
            max_over_subscription_ratio: 20.0,
            max_connections: 8,
            extra_top: String::new(),
            extra_tail: String::new(),
            env: Vec::new(),
        }
    }
}

/// The database a daemon uses, and how to get rid of it.
#[derive(Debug)]
enum Database {
    Sqlite { path: PathBuf },
    Postgres { admin_url: String, name: String, url: String, dropped: bool },
}

impl Database {
    fn create(backend: &Backend, dir: &Path) -> Database {
        match backend {
            Backend::Sqlite => Database::Sqlite { path: dir.join("cb.db") },
            Backend::Postgres(admin) => {
                let name =
                    format!("cb_test_{}_{}", std::process::id(), &uuid::Uuid::new_v4().simple().to_string()[..12]);
                psql(admin, &format!("CREATE DATABASE \"{name}\""))
                    .unwrap_or_else(|e| panic!("cannot create test database {name}: {e}"));
                let url = pg_url_with_db(admin, &name);
                Database::Postgres { admin_url: admin.clone(), name, url, dropped: false }
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Database::Sqlite { path } => format!("sqlite://{}", path.display()),
            Database::Postgres { url, .. } => url.clone(),
        }
    }

    fn drop_now(&mut self) {
        if let Database::Postgres { admin_url, name, dropped, .. } = self {
            if !*dropped {
                *dropped = true;
                if let Err(e) = psql(admin_url, &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")) {
                    eprintln!("warning: could not drop test database {name}: {e}");
                }
            }
        }
    }
}

/// Run one SQL statement with `psql` against `url`.
fn psql(url: &str, sql: &str) -> Result<(), String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-X", "-c", sql])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run psql: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// `postgres://u@h:p/admin?x` → `postgres://u@h:p/<db>?x`.
pub fn pg_url_with_db(admin: &str, db: &str) -> String {
    let (head, query) = match admin.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (admin, None),
    };
    let scheme_end = head.find("://").map(|i| i + 3).unwrap_or(0);
    let base = match head[scheme_end..].find('/') {
        Some(i) => &head[..scheme_end + i],
        None => head,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

/// One daemon process plus everything it owns.
pub struct TestServer {
    /// Which database engine.
    pub backend: Backend,
    /// Temp dir holding config, pool, SQLite file and the daemon's log.
    dir: Option<tempfile::TempDir>,
    dir_path: PathBuf,
    /// The pool directory (`<pool>/volumes/<uuid>.raw`).
    pub pool: PathBuf,
    /// The config file the daemon was started with.
    pub config_path: PathBuf,
    /// The daemon's stderr (appended across restarts).
    pub log_path: PathBuf,
    opts: Mutex<Opts>,
    db: Mutex<Database>,
    base: Arc<RwLock<String>>,
    child: Mutex<Option<Child>>,
    /// For shared servers: the pipe whose closing tells the watchdog to clean up.
    _watchdog: Option<Mutex<ChildStdin>>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("backend", &self.backend.name())
            .field("base", &self.base_url())
            .field("dir", &self.dir_path)
            .finish()
    }
}

impl TestServer {
    /// Start a daemon with `opts` on `backend`, waiting for its listening line.
    pub fn start(backend: Backend, opts: Opts) -> TestServer {
        let server = TestServer::prepare(backend, opts);
        server.spawn();
        server
    }

    /// Write the config and create the database, without starting the daemon
    /// (see [`TestServer::start_daemon`] and [`TestServer::command`]).
    pub fn prepare(backend: Backend, opts: Opts) -> TestServer {
        let dir = tempfile::Builder::new().prefix("cinderblock-test-").tempdir().expect("temp dir");
        let dir_path = dir.path().to_path_buf();
        let pool = dir_path.join("pool");
        std::fs::create_dir_all(&pool).expect("pool dir");
        let db = Database::create(&backend, &dir_path);
        let server = TestServer {
            backend,
            pool,
            config_path: dir_path.join("cinderblock.toml"),
            log_path: dir_path.join("server.log"),
            dir: Some(dir),
            dir_path,
            opts: Mutex::new(opts),
            db: Mutex::new(db),
            base: Arc::new(RwLock::new(String::new())),
            child: Mutex::new(None),
            _watchdog: None,
        };
        server.write_config();
        server
    }

    /// Start the daemon (after [`TestServer::prepare`] or [`TestServer::kill9`]).
    pub fn start_daemon(&self) {
        self.spawn();
    }

    /// A command running the binary with `args` then `--config <this config>`, in the temp
    /// dir, with this server's environment (for `migrate`).
    pub fn command(&self, args: &[&str]) -> Command {
        let env = self.opts.lock().expect("lock").env.clone();
        let mut cmd = daemon_command(&self.dir_path, &self.log_path, &env);
        cmd.args(args).arg("--config").arg(&self.config_path);
        cmd
    }

    /// Run `cinderblock <args>` on this server's config (the operator CLI, `admin …`), feeding
    /// `stdin` when given (passwords), within a minute; its stdout. A failure fails the test.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut cmd = self.command(args);
        cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn cinderblock");
        if let Some(input) = stdin {
            child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
        }
        let deadline = Instant::now() + Duration::from_secs(60);
        while child.try_wait().expect("wait").is_none() {
            assert!(Instant::now() < deadline, "cinderblock {args:?} did not finish");
            std::thread::sleep(Duration::from_millis(20));
        }
        let o = child.wait_with_output().expect("output");
        assert!(o.status.success(), "cinderblock {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// The temp dir of this server.
    pub fn dir(&self) -> &Path {
        &self.dir_path
    }

    /// `http://127.0.0.1:PORT` of the running daemon.
    pub fn base_url(&self) -> String {
        self.base.read().expect("lock").clone()
    }

    /// The database URL the daemon uses.
    pub fn database_url(&self) -> String {
        self.db.lock().expect("lock").url()
    }

    /// The config text for the current options.
    fn config_text(&self) -> String {
        let o = self.opts.lock().expect("lock").clone();
        let mut s = String::new();
        writeln!(s, "listen = \"127.0.0.1:0\"").unwrap();
        writeln!(s, "node = {}", toml_str(&o.node)).unwrap();
        writeln!(s, "log = \"info\"").unwrap();
        s.push_str(&o.extra_top);
        s.push('\n');
        writeln!(s, "[database]").unwrap();
        writeln!(s, "url = {}", toml_str(&self.database_url())).unwrap();
        writeln!(s, "max_connections = {}", o.max_connections).unwrap();
        writeln!(s, "[auth]\nmode = \"noauth\"").unwrap();
        writeln!(s, "[jobs]").unwrap();
        writeln!(s, "workers = {}", o.workers).unwrap();
        writeln!(s, "lease_seconds = {}", o.lease_seconds).unwrap();
        writeln!(s, "step_delay_ms = {}", o.step_delay_ms).unwrap();
        // Many daemons run at once: each takes a free NBD port.
        writeln!(s, "[exports]\nnbd_listen = \"127.0.0.1:0\"").unwrap();
        writeln!(s, "[[pools]]").unwrap();
        writeln!(s, "name = \"default\"").unwrap();
        writeln!(s, "path = {}", toml_str(&self.pool.display().to_string())).unwrap();
        writeln!(s, "availability_zone = \"nova\"").unwrap();
        writeln!(s, "volume_types = [\"__DEFAULT__\", \"SSD\", \"SAS\", \"SATA\"]").unwrap();
        writeln!(s, "max_over_subscription_ratio = {:?}", o.max_over_subscription_ratio).unwrap();
        s.push_str(&o.extra_tail);
        s
    }

    fn write_config(&self) {
        std::fs::write(&self.config_path, self.config_text()).expect("write config");
    }

    fn spawn(&self) {
        let env = self.opts.lock().expect("lock").env.clone();
        let mut cmd = daemon_command(&self.dir_path, &self.log_path, &env);
        cmd.arg("serve").arg("--config").arg(&self.config_path);
        let (child, base) = spawn_and_wait_listening(cmd, &self.log_path);
        *self.base.write().expect("lock") = base;
        *self.child.lock().expect("lock") = Some(child);
    }

    /// SIGKILL the daemon and reap it.
    pub fn kill9(&self) {
        if let Some(mut c) = self.child.lock().expect("lock").take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Whether the daemon process is still running.
    pub fn is_running(&self) -> bool {
        match self.child.lock().expect("lock").as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kill (SIGKILL) and start again on the same database and pool.
    pub fn restart(&self) {
        self.kill9();
        self.spawn();
    }

    /// Change the options, rewrite the config and restart.
    pub fn restart_with(&self, f: impl FnOnce(&mut Opts)) {
        self.kill9();
        f(&mut self.opts.lock().expect("lock"));
        self.write_config();
        self.spawn();
    }

    /// A new HTTP client bound to this server (follows restarts).
    pub fn api(&self) -> Api {
        Api::new(self.base.clone())
    }

    /// Ids of the volume files in the pool (`volumes/<uuid>.raw`).
    pub fn pool_files(&self) -> BTreeSet<String> {
        pool_files(&self.pool)
    }

    /// Path of a volume's file.
    pub fn volume_path(&self, id: &str) -> PathBuf {
        self.pool.join("volumes").join(format!("{id}.raw"))
    }

    /// `(id, status)` of every volume row, read straight from the database.
    pub async fn db_volumes(&self) -> Vec<(String, String)> {
        self.db_query_pairs("SELECT id, status FROM volumes ORDER BY id").await
    }

    /// `(id, status)` of every job row, read straight from the database.
    pub async fn db_jobs(&self) -> Vec<(String, String)> {
        self.db_query_pairs("SELECT id, status FROM jobs ORDER BY id").await
    }

    /// The first two (text) columns of every row `sql` selects, read straight from the database.
    pub async fn db_query_pairs(&self, sql: &'static str) -> Vec<(String, String)> {
        use sqlx::Row;
        sqlx::any::install_default_drivers();
        let url = self.database_url();
        let pool = sqlx::any::AnyPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .unwrap_or_else(|e| panic!("test cannot open {url}: {e}"));
        let rows = sqlx::query(sql).fetch_all(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        let out = rows
            .iter()
            .map(|r| (r.try_get::<String, _>(0).expect("col 0"), r.try_get::<String, _>(1).expect("col 1")))
            .collect();
        pool.close().await;
        out
    }

    /// The daemon's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().expect("lock").as_ref().map(|c| c.id())
    }

    /// The last `n` lines of the daemon's log.
    pub fn log_tail(&self, n: usize) -> String {
        log_tail(&self.log_path, n)
    }

    /// Hand cleanup to a watchdog process and keep the temp dir (for shared servers, which are
    /// never dropped): when this test process exits, the watchdog kills the daemon, drops the
    /// database and removes the temp dir.
    fn detach_to_watchdog(mut self) -> TestServer {
        let pid = self.child.lock().expect("lock").as_ref().map(|c| c.id()).unwrap_or(0);
        let (admin, db) = match &*self.db.lock().expect("lock") {
            Database::Postgres { admin_url, name, .. } => (admin_url.clone(), name.clone()),
            Database::Sqlite { .. } => (String::new(), String::new()),
        };
        let script = r#"read _ignored
kill -9 "$1" 2>/dev/null
if [ -n "$3" ]; then psql "$3" -q -X -c "DROP DATABASE IF EXISTS \"$4\" WITH (FORCE)" >/dev/null 2>&1; fi
rm -rf "$2""#;
        let dir = self.dir.take().expect("dir").keep();
        // Never waited for on purpose: the watchdog outlives this process (it is reparented
        // and reaped by init once it has cleaned up).
        #[allow(clippy::zombie_processes)]
        let mut w = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("cinderblock-test-watchdog")
            .arg(pid.to_string())
            .arg(&dir)
            .arg(&admin)
            .arg(&db)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn watchdog");
        self._watchdog = Some(Mutex::new(w.stdin.take().expect("watchdog stdin")));
        // The daemon and the database now belong to the watchdog.
        if let Database::Postgres { dropped, .. } = &mut *self.db.lock().expect("lock") {
            *dropped = true;
        }
        self
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if self._watchdog.is_some() {
            return;
        }
        self.kill9();
        if std::thread::panicking() {
            eprintln!(
                "---- cinderblock log ({}, {}) ----\n{}\n---- end of log ----",
                self.backend.name(),
                self.log_path.display(),
                self.log_tail(60)
            );
        }
        self.db.lock().map(|mut d| d.drop_now()).unwrap_or(());
    }
}

/// The shared daemon of this test binary for `backend` (started on first use).
pub fn shared(backend: &Backend) -> Arc<TestServer> {
    static SQLITE: OnceLock<Arc<TestServer>> = OnceLock::new();
    static POSTGRES: OnceLock<Arc<TestServer>> = OnceLock::new();
    let cell = match backend {
        Backend::Sqlite => &SQLITE,
        Backend::Postgres(_) => &POSTGRES,
    };
    cell.get_or_init(|| Arc::new(TestServer::start(backend.clone(), Opts::default()).detach_to_watchdog())).clone()
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).expect("string")
}

/// A `Command` for the daemon binary with a clean `CINDERBLOCK_*` environment, its stderr
/// appended to `log`.
pub fn daemon_command(cwd: &Path, log: &Path, env: &[(String, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinderblock"));
    cmd.current_dir(cwd);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CINDERBLOCK_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("open log");
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(log_file));
    cmd
}

/// Spawn `cmd` and wait (with a deadline) for `cinderblock listening on http://…`.
/// Panics with the log tail when the daemon exits or stays silent.
pub fn spawn_and_wait_listening(mut cmd: Command, log: &Path) -> (Child, String) {
    let mut child = cmd.spawn().expect("spawn cinderblock");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel::<String>();
    std::thread::spawn(move || {
        // Keep draining stdout for the daemon's whole life.
        for line in BufReader::new(stdout).lines() {
            match line {
                Ok(l) => {
                    let _ = tx.send(l);
                }
                Err(_) => break,
            }
        }
    });
    let deadline = Instant::now() + START_TIMEOUT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                if let Some(url) = line.strip_prefix("cinderblock listening on ") {
                    let url = url.trim().trim_end_matches('/').to_string();
                    // A daemon on every address is reached through loopback.
                    let url = url.replace("http://0.0.0.0:", "http://127.0.0.1:");
                    assert!(url.starts_with("http://127.0.0.1:"), "unexpected listening line {line:?}");
                    return (child, url);
                }
                seen.push(line);
            }
            Err(e) => {
                let status = match e {
                    mpsc::RecvTimeoutError::Timeout => {
                        let _ = child.kill();
                        format!("no listening line within {START_TIMEOUT:?}")
                    }
                    mpsc::RecvTimeoutError::Disconnected => "daemon closed stdout".to_string(),
                };
                let code = child.wait().ok();
                panic!(
                    "cinderblock did not start ({status}, exit {code:?}); stdout: {seen:?}\nlog:\n{}",
                    log_tail(log, 60)
                );
            }
        }
    }
}

/// Run the daemon binary to completion (with a deadline), returning status, stdout, stderr.
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> (ExitStatus, String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cinderblock");
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("cinderblock did not exit within {timeout:?}");
        }
        std::thread::sleep(POLL);
    };
    (status, t_out.join().unwrap_or_default(), t_err.join().unwrap_or_default())
}

fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Volume ids that have a file in `<pool>/volumes`.
pub fn pool_files(pool: &Path) -> BTreeSet<String> {
    let dir = pool.join("volumes");
    let Ok(rd) = std::fs::read_dir(&dir) else { return BTreeSet::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).map(str::to_string))
        .collect()
}

/// Assert a volume file exists with exactly `size_gb` GiB and (almost) no allocated blocks.
pub fn assert_sparse_file(path: &Path, size_gb: u64) {
    let md = std::fs::metadata(path).unwrap_or_else(|e| panic!("volume file {}: {e}", path.display()));
    assert!(md.is_file(), "{} is not a regular file", path.display());
    assert_eq!(md.len(), size_gb * GIB, "size of {}", path.display());
    assert!(
        md.blocks() * 512 <= 1 << 20,
        "{} allocates {} bytes; a new volume must be sparse",
        path.display(),
        md.blocks() * 512
    );
}

/// One HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    /// Status code.
    pub status: u16,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body parsed as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// Raw body.
    pub text: String,
    /// `METHOD path` for messages.
    pub what: String,
}

impl Resp {
    /// Header value as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap_or("<non-ascii>").to_string())
    }

    /// Panic with the whole answer unless the status is `code`.
    pub fn expect(self, code: u16) -> Resp {
        assert_eq!(self.status, code, "{} answered {}: {}", self.what, self.status, self.text);
        self
    }

    /// Assert an EVS error `{"error": {"code": code, "message"}}` with HTTP `status`.
    pub fn expect_evs_error(self, status: u16, code: &str) -> Resp {
        assert_eq!(self.status, status, "{} answered {}: {}", self.what, self.status, self.text);
        let err = &self.body["error"];
        assert_eq!(err["code"], code, "{}: wrong EVS error code in {}", self.what, self.text);
        assert!(
            err["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: EVS error without a message: {}",
            self.what,
            self.text
        );
        self
    }

    /// Assert an OpenStack fault `{"<fault>": {"code": status, "message"}}`.
    pub fn expect_fault(self, status: u16, fault: &str) -> Resp {
        assert_eq!(self.status, status, "{} answered {}: {}", self.what, self.status, self.text);
        let f = &self.body[fault];
        assert!(f.is_object(), "{}: expected a {fault:?} fault, got {}", self.what, self.text);
        assert_eq!(f["code"], status, "{}: fault code in {}", self.what, self.text);
        assert!(
            f["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{}: fault without a message: {}",
            self.what,
            self.text
        );
        self
    }
}

/// Per-test HTTP client for one server.
#[derive(Clone)]
pub struct Api {
    client: reqwest::Client,
    base: Arc<RwLock<String>>,
}

impl Api {
    fn new(base: Arc<RwLock<String>>) -> Api {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .build()
            .expect("http client");
        Api { client, base }
    }

    /// Base URL (changes after a restart).
    pub fn base(&self) -> String {
        self.base.read().expect("lock").clone()
    }

    /// Send a request; `path` starts with `/` (or is a full URL).
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<String>,
    ) -> Resp {
        let url = if path.starts_with("http://") { path.to_string() } else { format!("{}{path}", self.base()) };
        let what = format!("{method} {path}");
        let mut rb = self.client.request(method, &url);
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        if let Some(b) = body {
            rb = rb.header("Content-Type", "application/json").body(b);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap_or_else(|e| panic!("{what}: reading body: {e}"));
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Resp { status, headers, body, text, what }
    }

    /// GET.
    pub async fn get(&self, path: &str) -> Resp {
        self.request(reqwest::Method::GET, path, &[], None).await
    }

    /// GET with headers.
    pub async fn get_h(&self, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request(reqwest::Method::GET, path, headers, None).await
    }

    /// POST a JSON body.
    pub async fn post(&self, path: &str, body: Value) -> Resp {
        self.request(reqwest::Method::POST, path, &[], Some(body.to_string())).await
    }

    /// POST a raw body (sent as `application/json`).
    pub async fn post_raw(&self, path: &str, body: &str) -> Resp {
        self.request(reqwest::Method::POST, path, &[], Some(body.to_string())).await
    }

    /// PUT a JSON body.
    pub async fn put(&self, path: &str, body: Value) -> Resp {
        self.request(reqwest::Method::PUT, path, &[], Some(body.to_string())).await
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Resp {
        self.request(reqwest::Method::DELETE, path, &[], None).await
    }

    /// Poll `GET /v1/{p}/jobs/{id}` until SUCCESS or FAIL; returns the job body.
    pub async fn wait_job(&self, project: &str, job_id: &str) -> Value {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v1/{project}/jobs/{job_id}")).await.expect(200);
            match r.body["status"].as_str() {
                Some("SUCCESS") | Some("FAIL") => return r.body,
                Some("INIT") | Some("RUNNING") => {}
                other => panic!("job {job_id}: unexpected status {other:?} in {}", r.text),
            }
            assert!(Instant::now() < deadline, "job {job_id} still {} after {WAIT_TIMEOUT:?}", r.body["status"]);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Poll the job until SUCCESS (panics on FAIL).
    pub async fn wait_job_success(&self, project: &str, job_id: &str) -> Value {
        let job = self.wait_job(project, job_id).await;
        assert_eq!(job["status"], "SUCCESS", "job {job_id} failed: {job}");
        job
    }

    /// Poll the job until it reports `status` (e.g. RUNNING).
    pub async fn wait_job_status(&self, project: &str, job_id: &str, status: &str) -> Value {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v1/{project}/jobs/{job_id}")).await.expect(200);
            if r.body["status"] == status {
                return r.body;
            }
            assert!(
                !matches!(r.body["status"].as_str(), Some("SUCCESS") | Some("FAIL")),
                "job {job_id} finished ({}) while waiting for {status}",
                r.body["status"]
            );
            assert!(Instant::now() < deadline, "job {job_id} never reached {status}: {}", r.text);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Poll `GET /v3/{p}/volumes/{id}` until its status is one of `want`; returns the volume.
    /// Panics early if it reaches `error`/`error_deleting` (unless wanted).
    pub async fn wait_volume_status(&self, project: &str, id: &str, want: &[&str]) -> Value {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v3/{project}/volumes/{id}")).await.expect(200);
            let st = r.body["volume"]["status"].as_str().unwrap_or_default().to_string();
            if want.contains(&st.as_str()) {
                return r.body["volume"].clone();
            }
            assert!(!st.starts_with("error"), "volume {id} went to {st}: {}", r.text);
            assert!(Instant::now() < deadline, "volume {id} still {st} after {WAIT_TIMEOUT:?}");
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until the volume is `available`.
    pub async fn wait_available(&self, project: &str, id: &str) -> Value {
        self.wait_volume_status(project, id, &["available"]).await
    }

    /// Poll until `GET /v3/{p}/volumes/{id}` answers 404.
    pub async fn wait_volume_gone(&self, project: &str, id: &str) {
        let deadline = Instant::now() + WAIT_TIMEOUT;
        loop {
            let r = self.get(&format!("/v3/{project}/volumes/{id}")).await;
            if r.status == 404 {
                return;
            }
            assert_eq!(r.status, 200, "{}", r.text);
            assert!(r.body["volume"]["status"] != "error_deleting", "volume {id} went to error_deleting: {}", r.text);
            assert!(Instant::now() < deadline, "volume {id} not gone after {WAIT_TIMEOUT:?}: {}", r.text);
            tokio::time::sleep(POLL).await;
        }
    }

    /// Create a volume on the Cinder v3 API (202) and return its body.
    pub async fn cinder_create(&self, project: &str, volume: Value) -> Value {
        let r = self.post(&format!("/v3/{project}/volumes"), serde_json::json!({ "volume": volume })).await;
        r.expect(202).body["volume"].clone()
    }

    /// Create a volume on Cinder and wait until it is available.
    pub async fn cinder_create_available(&self, project: &str, volume: Value) -> Value {
        let v = self.cinder_create(project, volume).await;
        let id = v["id"].as_str().expect("id").to_string();
        self.wait_available(project, &id).await
    }

    /// Create disks on EVS (`POST /v2/{p}/cloudvolumes`, 200) and return the reply.
    pub async fn evs_create(&self, project: &str, volume: Value) -> Value {
        let r = self.post(&format!("/v2/{project}/cloudvolumes"), serde_json::json!({ "volume": volume })).await;
        r.expect(200).body
    }

    /// The `volumes` array of `GET path`.
    pub async fn volumes(&self, path: &str) -> Vec<Value> {
        let r = self.get(path).await.expect(200);
        r.body["volumes"].as_array().unwrap_or_else(|| panic!("{path}: no volumes array: {}", r.text)).clone()
    }

    /// Ids of the `volumes` array of `GET path`, in order.
    pub async fn volume_ids(&self, path: &str) -> Vec<String> {
        self.volumes(path).await.iter().map(|v| v["id"].as_str().expect("id").to_string()).collect()
    }
}

/// The string value of `v[key]`.
pub fn s(v: &Value, key: &str) -> String {
    v[key].as_str().unwrap_or_else(|| panic!("{key:?} is not a string in {v}")).to_string()
}

/// Percent-encode a query value.
pub fn enc(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            write!(out, "%{b:02X}").unwrap();
        }
    }
    out
}

/// The path and query of a link (`http://host:port/v3/...` → `/v3/...`).
pub fn link_path(href: &str) -> String {
    let rest = href.split_once("://").map(|x| x.1).unwrap_or(href);
    match rest.find('/') {
        Some(i) => rest[i..].to_string(),
        None => "/".to_string(),
    }
}

/// The `rel: next` href of a `*_links` array, when present.
pub fn next_link(links: &Value) -> Option<String> {
    links.as_array()?.iter().find(|l| l["rel"] == "next").and_then(|l| l["href"].as_str()).map(str::to_string)
}

/// A query parameter's value in a URL.
pub fn query_param(url: &str, key: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').filter_map(|kv| kv.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v.to_string())
}

/// A project-scoped token for `user` of `project` (password authentication, domain Default).
pub async fn password_login(api: &Api, user: &str, project: &str, password: &str) -> String {
    let body = serde_json::json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": password, "domain": {"name": "Default"}}}},
        "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
    }});
    api.post("/identity/v3/auth/tokens", body).await.expect(201).header("x-subject-token").expect("token")
}
