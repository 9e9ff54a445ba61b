//! NBD over TLS: the in-process server in forced-TLS mode (a CA, server and client
//! certificates made with `openssl`) against `nbdinfo`/`nbdcopy` (`nbds://…?tls-certificates=`)
//! and `qemu-img` (`tls-creds-x509`), and raw sockets for the protocol rules before STARTTLS.
//!
//! A missing tool skips its test with a printed reason, unless `CINDERBLOCK_REQUIRE_PRIVILEGED=1`
//! (CI), which turns the skip into a failure.

mod pki;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cinderblock::export::nbd::{export_digest, NbdConfig, NbdServer};
use cinderblock::tls::{server_config, ServerFiles};

const MIB: u64 = 1 << 20;

fn have(tool: &str) -> bool {
    let arg = if tool == "openssl" { "version" } else { "--version" };
    let ok = Command::new(tool).arg(arg).output().is_ok_and(|o| o.status.success());
    if !ok {
        let msg = format!("{tool} is not installed (Debian: libnbd-bin, qemu-utils, openssl)");
        if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
            panic!("{msg}; required because CINDERBLOCK_REQUIRE_PRIVILEGED=1");
        }
        eprintln!("SKIP: {msg}");
    }
    ok
}

/// A forced-TLS server on its own runtime with exports `vol-a` (bound to host `host-a`) and
/// `vol-b` (bound to `host-b`).
struct Served {
    rt: tokio::runtime::Runtime,
    server: NbdServer,
    dir: tempfile::TempDir,
    tcp: SocketAddr,
    pki: pki::Pki,
}

impl Served {
    fn start(require_client_cert: bool) -> Served {
        let pki = pki::Pki::new();
        let (cert, key, ca) = (pki.server_cert(), pki.server_key(), pki.ca());
        let tls =
            server_config(&ServerFiles { cert: &cert, key: &key, client_ca: Some(&ca), require_client_cert }, &[])
                .expect("tls config");
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let server = NbdServer::new(NbdConfig { tls: Some(tls), ..NbdConfig::default() });
        let tcp = rt.block_on(server.listen_tcp("127.0.0.1:0".parse().unwrap())).unwrap();
        let s = Served { rt, server, dir, tcp, pki };
        s.export("vol-a", "host-a");
        s.export("vol-b", "host-b");
        s
    }

    fn export(&self, name: &str, host: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.raw"));
        std::fs::File::create(&path).unwrap().set_len(16 * MIB).unwrap();
        self.server
            .add_bound_export_digest(export_digest(name), name.into(), "", path.clone(), false, Some(host.into()))
            .unwrap();
        path
    }

    fn uri(&self, name: &str, certs: &Path) -> String {
        format!("nbds://{}/{name}?tls-certificates={}", self.tcp, certs.display())
    }

    fn sendfile_reads(&self) -> u64 {
        self.server.list().iter().map(|e| e.sendfile_reads).sum()
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let server = self.server.clone();
        let _ = self.rt.block_on(async move { tokio::time::timeout(Duration::from_secs(20), server.shutdown()).await });
    }
}

fn output(cmd: &mut Command) -> std::process::Output {
    cmd.output().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

fn run(cmd: &mut Command) -> String {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn random_file(path: &Path, n: usize) {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut v = Vec::with_capacity(n + 8);
    while v.len() < n {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    v.truncate(n);
    std::fs::write(path, v).unwrap();
}

#[test]
fn nbdcopy_and_nbdinfo_over_tls_with_the_right_certificate() {
    if !have("nbdinfo") || !have("nbdcopy") || !have("openssl") {
        return;
    }
    let s = Served::start(false);
    let a = s.pki.client_dir("host-a");
    let j: serde_json::Value =
        serde_json::from_str(&run(Command::new("nbdinfo").arg("--json").arg(s.uri("vol-a", &a)))).unwrap();
    assert_eq!(j["exports"][0]["export-size"], 16 * MIB, "{j}");
    assert_eq!(j["TLS"], true, "{j}");

    let src = s.dir.path().join("src.raw");
    let back = s.dir.path().join("back.raw");
    random_file(&src, 16 * MIB as usize);
    run(Command::new("nbdcopy").arg(&src).arg(s.uri("vol-a", &a)));
    run(Command::new("nbdcopy").arg(s.uri("vol-a", &a)).arg(&back));
    assert!(std::fs::read(&src).unwrap() == std::fs::read(&back).unwrap(), "data read back over TLS differs");
    assert!(std::fs::read(&src).unwrap() == std::fs::read(s.dir.path().join("vol-a.raw")).unwrap());
    // Replies went through rustls, never sendfile (which would bypass the encryption).
    assert_eq!(s.sendfile_reads(), 0);

    // No client certificate: allowed (certificates are optional), the secret name suffices.
    let anon = s.pki.anonymous_dir();
    run(Command::new("nbdinfo").arg(s.uri("vol-b", &anon)));
}

#[test]
fn plaintext_and_foreign_certificates_are_refused() {
    if !have("nbdinfo") || !have("openssl") {
        return;
    }
    let s = Served::start(false);
    let a = s.pki.client_dir("host-a");
    // LIBNBD_DEBUG makes libnbd print the server's error message, which tells our refusals
    // apart (its own message is only "Operation not supported").
    let plain = output(Command::new("nbdinfo").env("LIBNBD_DEBUG", "1").arg(format!("nbd://{}/vol-a", s.tcp)));
    assert!(!plain.status.success(), "plaintext client was served");
    assert!(
        String::from_utf8_lossy(&plain.stderr).contains("requires TLS"),
        "{}",
        String::from_utf8_lossy(&plain.stderr)
    );
    // host-a's certificate for host-b's export.
    let other = output(Command::new("nbdinfo").env("LIBNBD_DEBUG", "1").arg(s.uri("vol-b", &a)));
    assert!(!other.status.success(), "a certificate for another host opened vol-b");
    assert!(
        String::from_utf8_lossy(&other.stderr).contains("does not allow"),
        "{}",
        String::from_utf8_lossy(&other.stderr)
    );
    // The right one still works after the refusals.
    run(Command::new("nbdinfo").arg(s.uri("vol-a", &a)));
}

#[test]
fn required_client_certificates_refuse_anonymous_clients() {
    if !have("nbdinfo") || !have("openssl") {
        return;
    }
    let s = Served::start(true);
    let anon = s.pki.anonymous_dir();
    let out = output(Command::new("nbdinfo").arg(s.uri("vol-a", &anon)));
    assert!(!out.status.success(), "a client without a certificate was served");
    let a = s.pki.client_dir("host-a");
    run(Command::new("nbdinfo").arg(s.uri("vol-a", &a)));
}

#[test]
fn qemu_img_with_tls_creds_x509() {
    if !have("qemu-img") || !have("openssl") {
        return;
    }
    let s = Served::start(false);
    let a = s.pki.client_dir("host-a");
    let src = s.dir.path().join("q.raw");
    random_file(&src, 4 * MIB as usize);
    let obj = format!("tls-creds-x509,id=tls0,dir={},endpoint=client", a.display());
    let target = format!("driver=nbd,host=127.0.0.1,port={},export=vol-a,tls-creds=tls0", s.tcp.port());
    run(Command::new("qemu-img")
        .args(["convert", "-n", "-f", "raw", "--object", &obj, "--target-image-opts"])
        .arg(&src)
        .arg(&target));
    let back = s.dir.path().join("q-back.raw");
    run(Command::new("qemu-img").args(["convert", "-O", "raw", "--object", &obj, "--image-opts", &target]).arg(&back));
    let got = std::fs::read(&back).unwrap();
    assert!(got[..4 * MIB as usize] == std::fs::read(&src).unwrap()[..], "qemu-img read back other data");
    // A foreign certificate.
    let b = s.pki.client_dir("host-c");
    let obj_c = format!("tls-creds-x509,id=tls0,dir={},endpoint=client", b.display());
    let out = output(Command::new("qemu-img").args(["info", "--object", &obj_c, "--image-opts", &target]));
    assert!(!out.status.success(), "qemu-img with host-c's certificate opened vol-a");
}

// ----- the protocol before STARTTLS, on raw sockets -----

const IHAVEOPT: u64 = 0x4948_4156_454F_5054;
const REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
const ERR_TLS_REQD: u32 = 0x8000_0005;

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let mut c = TcpStream::connect(addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut greet = [0u8; 18];
    c.read_exact(&mut greet).unwrap();
    c.write_all(&3u32.to_be_bytes()).unwrap(); // fixed newstyle, no zeroes
    c
}

fn option(opt: u32, data: &[u8]) -> Vec<u8> {
    let mut v = IHAVEOPT.to_be_bytes().to_vec();
    v.extend_from_slice(&opt.to_be_bytes());
    v.extend_from_slice(&(data.len() as u32).to_be_bytes());
    v.extend_from_slice(data);
    v
}

/// Read one option reply: (option, type, payload).
fn reply(c: &mut TcpStream) -> (u32, u32, Vec<u8>) {
    let mut h = [0u8; 20];
    c.read_exact(&mut h).unwrap();
    assert_eq!(u64::from_be_bytes(h[..8].try_into().unwrap()), REPLY_MAGIC);
    let len = u32::from_be_bytes(h[16..20].try_into().unwrap());
    let mut p = vec![0u8; len as usize];
    c.read_exact(&mut p).unwrap();
    (u32::from_be_bytes(h[8..12].try_into().unwrap()), u32::from_be_bytes(h[12..16].try_into().unwrap()), p)
}

/// Whether the server hangs up (within the read timeout) without having sent anything but,
/// at most, a TLS alert record (content type 21).
fn closed(c: &mut TcpStream) -> bool {
    let mut got = Vec::new();
    let ended = match c.read_to_end(&mut got) {
        Ok(_) => true,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    };
    ended && (got.is_empty() || got[0] == 21)
}

fn go_payload(name: &str) -> Vec<u8> {
    let mut d = (name.len() as u32).to_be_bytes().to_vec();
    d.extend_from_slice(name.as_bytes());
    d.extend_from_slice(&0u16.to_be_bytes());
    d
}

#[test]
fn every_option_before_starttls_is_tls_reqd_and_export_name_closes() {
    if !have("openssl") {
        return;
    }
    let s = Served::start(false);
    let mut c = raw_connect(s.tcp);
    // GO, INFO, LIST, STRUCTURED_REPLY, SET_META_CONTEXT, an unknown option.
    for (opt, data) in [
        (7u32, go_payload("vol-a")),
        (6, go_payload("vol-a")),
        (3, vec![]),
        (8, vec![]),
        (10, vec![1, 2, 3]),
        (999, vec![]),
    ] {
        c.write_all(&option(opt, &data)).unwrap();
        let (o, t, _) = reply(&mut c);
        assert_eq!((o, t), (opt, ERR_TLS_REQD), "option {opt}");
    }
    // EXPORT_NAME has no error reply: the server hangs up.
    c.write_all(&option(1, b"vol-a")).unwrap();
    assert!(closed(&mut c), "EXPORT_NAME before STARTTLS did not close the connection");

    // ABORT is acknowledged.
    let mut c = raw_connect(s.tcp);
    c.write_all(&option(2, &[])).unwrap();
    assert_eq!(reply(&mut c).1, 1);
}

#[test]
fn plaintext_behind_starttls_is_a_protocol_error() {
    if !have("openssl") {
        return;
    }
    let s = Served::start(false);
    let mut c = raw_connect(s.tcp);
    // STARTTLS with a plaintext GO right behind it, in one write: the GO must never be taken
    // as part of the TLS session.
    let mut b = option(5, &[]);
    b.extend_from_slice(&option(7, &go_payload("vol-a")));
    c.write_all(&b).unwrap();
    let (o, t, _) = reply(&mut c);
    assert_eq!((o, t), (5, 1), "STARTTLS acknowledged");
    assert!(closed(&mut c), "bytes after STARTTLS were accepted");
    // STARTTLS followed by anything that is not a TLS ClientHello: closed as well.
    let mut c = raw_connect(s.tcp);
    c.write_all(&option(5, &[])).unwrap();
    assert_eq!(reply(&mut c).1, 1);
    c.write_all(&option(7, &go_payload("vol-a"))).unwrap();
    assert!(closed(&mut c), "plaintext after STARTTLS was accepted");
}
