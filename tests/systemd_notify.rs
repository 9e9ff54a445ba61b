//! systemd `Type=notify` (issue 14.1): a fake `NOTIFY_SOCKET` datagram socket receives what the
//! daemon tells systemd. `READY=1` arrives only when the HTTP and NBD listeners already answer;
//! `WATCHDOG=1` pings come at half of `WATCHDOG_USEC`; they stop while the job runner is
//! stalled by the `CINDERBLOCK_TEST_STALL_FILE` hook and resume after; SIGTERM sends
//! `STOPPING=1` with `EXTEND_TIMEOUT_USEC=` and the daemon exits.

#[macro_use]
mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Backend, Opts, TestServer};

backend_tests!(notify_ready_watchdog_stall_and_stopping);

/// The watchdog interval the test gives the daemon (it pings every half of it).
const WATCHDOG: Duration = Duration::from_millis(1000);

/// A free loopback port (bound then released; the daemon binds it right after).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// One datagram as received, with what the receiver saw the listeners do at that moment.
#[derive(Debug)]
struct Msg {
    at: Instant,
    text: String,
    /// For `READY=1`: the status line of `GET /` and the first 8 bytes from the NBD port,
    /// fetched by the receiver thread before it looked at anything else.
    probe: Option<(String, Vec<u8>)>,
}

fn probe(http: SocketAddr, nbd: SocketAddr) -> (String, Vec<u8>) {
    let mut status = String::new();
    if let Ok(mut s) = TcpStream::connect_timeout(&http, Duration::from_secs(2)) {
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        status = String::from_utf8_lossy(&buf).lines().next().unwrap_or("").to_string();
    }
    let mut magic = vec![0u8; 8];
    match TcpStream::connect_timeout(&nbd, Duration::from_secs(2)) {
        Ok(mut s) => {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.read_exact(&mut magic).is_err() {
                magic.clear();
            }
        }
        Err(_) => magic.clear(),
    }
    (status, magic)
}

/// Wait for the next datagram matching `pred`, returning it and those skipped.
fn wait_for(rx: &mpsc::Receiver<Msg>, within: Duration, what: &str, pred: impl Fn(&Msg) -> bool) -> Msg {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(m) if pred(&m) => return m,
            Ok(_) => {}
            Err(_) => panic!("no {what} within {within:?}"),
        }
    }
}

/// Watchdog pings received during `window`, with their times.
fn pings_during(rx: &mpsc::Receiver<Msg>, window: Duration) -> Vec<Instant> {
    let end = Instant::now() + window;
    let mut out = Vec::new();
    while let Ok(m) = rx.recv_timeout(end.saturating_duration_since(Instant::now())) {
        if m.text.lines().any(|l| l == "WATCHDOG=1") {
            out.push(m.at);
        }
        if Instant::now() >= end {
            break;
        }
    }
    out
}

async fn notify_ready_watchdog_stall_and_stopping(backend: Backend) {
    let dir = tempfile::tempdir().expect("tmp");
    let sock_path = dir.path().join("notify.sock");
    let stall = dir.path().join("stall");
    let sock = UnixDatagram::bind(&sock_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
    let nbd: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");

    let (tx, rx) = mpsc::channel::<Msg>();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop_rx = stop.clone();
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 4096];
        while !stop_rx.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok(n) = sock.recv(&mut buf) else { continue };
            let at = Instant::now();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            let probe = text.lines().any(|l| l == "READY=1").then(|| probe(http, nbd));
            if tx.send(Msg { at, text, probe }).is_err() {
                break;
            }
        }
    });

    let opts = Opts {
        env: vec![
            ("NOTIFY_SOCKET".into(), sock_path.display().to_string()),
            ("WATCHDOG_USEC".into(), WATCHDOG.as_micros().to_string()),
            ("CINDERBLOCK_TEST_STALL_FILE".into(), stall.display().to_string()),
            ("CINDERBLOCK_LISTEN".into(), http.to_string()),
            ("CINDERBLOCK_EXPORTS__NBD_LISTEN".into(), nbd.to_string()),
        ],
        workers: 2,
        ..Opts::default()
    };
    let srv = TestServer::start(backend, opts);

    // READY=1, with a status line, once both listeners answer.
    let ready = wait_for(&rx, Duration::from_secs(30), "READY=1", |m| m.text.lines().any(|l| l == "READY=1"));
    let status = ready.text.lines().find_map(|l| l.strip_prefix("STATUS=")).unwrap_or("");
    assert!(status.starts_with("serving: 1 pools, 0 volumes, 0 exports, 0 jobs in flight"), "{:?}", ready.text);
    let (http_status, magic) = ready.probe.clone().expect("probe");
    assert!(http_status.starts_with("HTTP/1.1 ") && !http_status.contains(" 5"), "GET / at READY: {http_status:?}");
    assert_eq!(magic, b"NBDMAGIC", "NBD listener at READY");

    // Pings at half the watchdog interval, never a full interval apart.
    let window = Duration::from_secs(4);
    let pings = pings_during(&rx, window);
    let expected = (window.as_millis() / (WATCHDOG.as_millis() / 2)) as usize;
    assert!(
        pings.len() + 3 >= expected && pings.len() <= expected + 3,
        "{} pings in {window:?}, expected about {expected}",
        pings.len()
    );
    for w in pings.windows(2) {
        assert!(w[1] - w[0] < WATCHDOG, "a gap of {:?} between pings", w[1] - w[0]);
    }

    // A stalled job runner: the pings stop (within the runner's 5 s staleness and one period).
    std::fs::write(&stall, b"").expect("stall file");
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let quiet = pings_during(&rx, Duration::from_secs(2));
        if quiet.is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "watchdog pings went on while the job runner was stalled");
    }
    assert!(pings_during(&rx, Duration::from_secs(2)).is_empty(), "a ping while stalled");
    assert!(srv.is_running(), "the daemon itself stays up (systemd is the one to restart it)");

    // Unstalled: the pings resume.
    std::fs::remove_file(&stall).expect("unstall");
    wait_for(&rx, Duration::from_secs(5), "WATCHDOG=1 after the stall", |m| m.text.lines().any(|l| l == "WATCHDOG=1"));

    // SIGTERM: STOPPING=1 with more time asked for, then a clean exit.
    let pid = srv.pid().expect("pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGTERM).expect("SIGTERM");
    let stopping = wait_for(&rx, Duration::from_secs(10), "STOPPING=1", |m| m.text.lines().any(|l| l == "STOPPING=1"));
    assert!(stopping.text.lines().any(|l| l.starts_with("EXTEND_TIMEOUT_USEC=")), "{:?}", stopping.text);
    let deadline = Instant::now() + Duration::from_secs(30);
    while srv.is_running() {
        assert!(Instant::now() < deadline, "the daemon did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = receiver.join();
}
