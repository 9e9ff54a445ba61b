//! TLS end to end on the daemon: `[tls]` with a CA made by `openssl` serves the HTTP API over
//! HTTPS (`curl --cacert`, the `openstack` CLI with `--os-cacert`; plaintext to that port and an
//! unverified client fail) and the NBD TCP port in forced-TLS mode: `os-initialize_connection`
//! says `tls: true`, `nbdinfo nbds://…?tls-certificates=` opens the export with the certificate
//! of the connector's host and is refused with another host's.
//!
//! Missing tools skip with a printed reason, unless `CINDERBLOCK_REQUIRE_PRIVILEGED=1` (CI);
//! the `openstack` part needs `CINDERBLOCK_CLIENT_VENV` (required by
//! `CINDERBLOCK_REQUIRE_CLIENTS=1`).

mod pki;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PROJECT: &str = "0123456789abcdef0123456789abcdef";

fn have(tool: &str, arg: &str) -> bool {
    let ok = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{tool} is not installed (Debian: curl, openssl, libnbd-bin)");
        if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{msg}; required because CINDERBLOCK_REQUIRE_PRIVILEGED=1");
        }
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// A daemon with `[tls]`, killed on drop.
struct Daemon {
    child: Child,
    url: String,
    dir: tempfile::TempDir,
    log: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn start(pki: &pki::Pki) -> Daemon {
        let dir = tempfile::tempdir().expect("temp dir");
        let pool = dir.path().join("pool");
        std::fs::create_dir_all(&pool).unwrap();
        let config = format!(
            r#"listen = "127.0.0.1:0"
node = "tls-test"
log = "info,cinderblock=debug"

[database]
url = "sqlite://{db}"

[auth]
mode = "noauth"

[exports]
nbd_listen = "127.0.0.1:0"

[tls]
cert = "{cert}"
key = "{key}"
client_ca = "{ca}"

[[pools]]
name = "default"
driver = "file"
path = "{pool}"
availability_zone = "nova"
volume_types = ["__DEFAULT__"]
"#,
            db = dir.path().join("cb.db").display(),
            cert = pki.server_cert().display(),
            key = pki.server_key().display(),
            ca = pki.ca().display(),
            pool = pool.display(),
        );
        let cfg = dir.path().join("config.toml");
        std::fs::write(&cfg, config).unwrap();
        let log = dir.path().join("daemon.log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinderblock"));
        cmd.arg("serve").arg("--config").arg(&cfg).current_dir(dir.path());
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("CINDERBLOCK_") {
                cmd.env_remove(k);
            }
        }
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
        let mut child = cmd.spawn().expect("spawn cinderblock");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let url = loop {
            match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(l) => {
                    if let Some(u) = l.strip_prefix("cinderblock listening on ") {
                        break u.trim().to_string();
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    panic!("daemon did not start ({e}):\n{}", std::fs::read_to_string(&log).unwrap_or_default());
                }
            }
        };
        assert!(url.starts_with("https://127.0.0.1:"), "listening line: {url}");
        Daemon { child, url, dir, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// `curl` with the test CA; returns (exit ok, body).
fn curl(ca: &Path, method: &str, url: &str, body: Option<&serde_json::Value>) -> (bool, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--fail-with-body", "--max-time", "20", "--cacert"]).arg(ca).args(["-X", method, url]);
    cmd.args(["-H", "Content-Type: application/json", "-H", "X-Auth-Token: notused"]);
    if let Some(b) = body {
        cmd.args(["-d", &b.to_string()]);
    }
    let out = cmd.output().expect("run curl");
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

fn json(ca: &Path, method: &str, url: &str, body: Option<&serde_json::Value>) -> serde_json::Value {
    let (ok, out) = curl(ca, method, url, body);
    assert!(ok, "curl {method} {url}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{method} {url}: {e}: {out}"))
}

#[test]
fn https_api_and_nbd_over_tls_end_to_end() {
    if !have("openssl", "version") || !have("curl", "--version") {
        return;
    }
    let pki = pki::Pki::new();
    let d = Daemon::start(&pki);
    let ca = pki.ca();

    // HTTPS with the CA: the version document, whose links say https.
    let v = json(&ca, "GET", &format!("{}/", d.url), None);
    assert!(v.to_string().contains("https://127.0.0.1:"), "links should be https: {v}");
    // No CA: the certificate does not verify.
    let out = Command::new("curl").args(["-sS", "--max-time", "10", &format!("{}/", d.url)]).output().unwrap();
    assert!(!out.status.success(), "curl without --cacert trusted the test certificate");
    // Plaintext HTTP to the TLS port: no HTTP answer.
    let plain = d.url.replace("https://", "http://");
    let out = Command::new("curl").args(["-sS", "--max-time", "10", &format!("{plain}/")]).output().unwrap();
    assert!(!out.status.success(), "plaintext HTTP was answered: {}", String::from_utf8_lossy(&out.stdout));
    // The daemon is still fine after those.
    json(&ca, "GET", &format!("{}/", d.url), None);

    // A volume, attached over NBD for host-a.
    let base = format!("{}/v3/{PROJECT}", d.url);
    let created = json(&ca, "POST", &format!("{base}/volumes"), Some(&serde_json::json!({"volume": {"size": 1}})));
    let id = created["volume"]["id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let v = json(&ca, "GET", &format!("{base}/volumes/{id}"), None);
        if v["volume"]["status"] == "available" {
            break;
        }
        assert!(Instant::now() < deadline, "volume not available: {v}\n{}", d.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let r = json(
        &ca,
        "POST",
        &format!("{base}/volumes/{id}/action"),
        Some(
            &serde_json::json!({"os-initialize_connection": {"connector": {"host": "host-a", "cinderblock_transport": "nbd"}}}),
        ),
    );
    let data = &r["connection_info"]["data"];
    assert_eq!(r["connection_info"]["driver_volume_type"], "nbd", "{r}");
    assert_eq!(data["tls"], true, "connection_info must say TLS is required: {r}");
    assert!(data.get("tls_client").is_none(), "stored-only fields leaked: {r}");

    if have("nbdinfo", "--version") {
        let uri = |dir: &Path| {
            format!(
                "nbds://{}:{}/{}?tls-certificates={}",
                data["host"].as_str().unwrap(),
                data["port"],
                data["export_name"].as_str().unwrap(),
                dir.display()
            )
        };
        let a = pki.client_dir("host-a");
        let j: serde_json::Value = serde_json::from_str(
            &String::from_utf8(Command::new("nbdinfo").arg("--json").arg(uri(&a)).output().unwrap().stdout).unwrap(),
        )
        .unwrap_or_else(|e| panic!("nbdinfo with host-a's certificate: {e}\n{}", d.log()));
        assert_eq!(j["exports"][0]["export-size"], 1u64 << 30, "{j}");
        assert_eq!(j["TLS"], true, "{j}");
        let b = pki.client_dir("host-b");
        let out = Command::new("nbdinfo").arg(uri(&b)).output().unwrap();
        assert!(!out.status.success(), "host-b's certificate opened host-a's export");
        let plain = format!(
            "nbd://{}:{}/{}",
            data["host"].as_str().unwrap(),
            data["port"],
            data["export_name"].as_str().unwrap()
        );
        assert!(!Command::new("nbdinfo").arg(plain).output().unwrap().status.success(), "plaintext NBD was served");
    }

    // The real openstack CLI, trusting the CA with --os-cacert.
    if let Some(venv) = client_venv() {
        let osc = |cacert: bool| {
            let mut c = Command::new(venv.join("bin/openstack"));
            c.args(["--os-auth-type", "none", "--os-endpoint", &base]);
            if cacert {
                c.arg("--os-cacert").arg(&ca);
            }
            c.args(["volume", "show", &id, "-f", "json"])
                .env("HOME", d.dir.path())
                .env("XDG_CACHE_HOME", d.dir.path().join("cache"));
            c.output().expect("run openstack")
        };
        let out = osc(true);
        assert!(out.status.success(), "openstack --os-cacert: {}", String::from_utf8_lossy(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["id"], id.as_str());
        assert!(!osc(false).status.success(), "openstack without --os-cacert trusted the test certificate");
    }
}

#[test]
fn an_unreadable_certificate_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-cert.pem");
    std::fs::write(dir.path().join("key.pem"), "not a key").unwrap();
    let cfg = dir.path().join("config.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"127.0.0.1:0\"\n[database]\nurl = \"sqlite://{}\"\n[exports]\nnbd_listen = \"127.0.0.1:0\"\n[tls]\ncert = \"{}\"\nkey = \"{}\"\n[[pools]]\nname = \"default\"\npath = \"{}\"\n",
            dir.path().join("cb.db").display(),
            missing.display(),
            dir.path().join("key.pem").display(),
            dir.path().join("pool").display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cinderblock"));
    cmd.arg("serve").arg("--config").arg(&cfg).current_dir(dir.path()).stdin(Stdio::null());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("CINDERBLOCK_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the daemon kept running with a missing certificate");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let out = child.wait_with_output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!status.success(), "started without its certificate: {text}");
    assert!(text.contains("no-such-cert.pem"), "the error should name the file: {text}");
    assert!(!text.contains("listening on"), "{text}");
}

fn client_venv() -> Option<PathBuf> {
    let required = std::env::var("CINDERBLOCK_REQUIRE_CLIENTS").as_deref() == Ok("1");
    match std::env::var_os("CINDERBLOCK_CLIENT_VENV").map(PathBuf::from) {
        Some(v) if v.join("bin/openstack").exists() => Some(v),
        _ if required => panic!("CINDERBLOCK_REQUIRE_CLIENTS=1 but CINDERBLOCK_CLIENT_VENV has no bin/openstack"),
        _ => {
            eprintln!("SKIP: CINDERBLOCK_CLIENT_VENV is not set, the openstack --os-cacert check is skipped");
            None
        }
    }
}
