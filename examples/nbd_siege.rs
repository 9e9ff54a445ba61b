//! NBD siege (issue 17): a well-behaved client's throughput alone, then while hundreds of
//! hostile connections attack the same server, and the server's memory meanwhile.
//!
//! ```text
//! nbd_siege --tcp 127.0.0.1:10809 --pid PID [--name NAME] [--attackers 1000] [--addresses 20]
//!           [--attack-prefix PREFIX] [--baseline 10] [--siege 20] [--size BYTES]
//! ```
//!
//! The server (usually `examples/nbd_serve`) must serve an export of at least `--size` bytes.
//! The well-behaved client connects from 127.0.0.1 and keeps 16 requests of 64 KiB in flight,
//! half random reads, half random writes, checking every reply. The attackers connect from
//! 127.0.1.1 … 127.0.1.N (`--addresses`, so the per-address cap does not simply refuse them) and
//! run, round robin, the attacks of issue 17. The attackers from address N use export
//! `PREFIX<N>` (`--attack-prefix`; default: the good client's own export): as in the daemon,
//! where export names carry a per-attachment secret, an attacker can open only its own exports,
//! and the per-export cap protects another tenant's export anyway.
//!
//! - `idle`: option haggling done, then nothing in transmission;
//! - `partial-write`: a 32 MiB WRITE header, 1 MiB of its payload, then nothing;
//! - `slow-handshake`: the greeting read, client flags sent, then nothing;
//! - `list`: `NBD_OPT_LIST` (must be refused) and unknown options, then nothing;
//! - `no-drain`: 64 READs of 1 MiB sent, replies never read.
//!
//! Each attacker reconnects when the server closes it, until the siege ends. Printed at the end:
//! one `key=value` line per figure (the bench script turns them into the table).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cinderblock::export::nbd::proto::{self, Request};

const KINDS: [&str; 5] = ["idle", "partial-write", "slow-handshake", "list", "no-drain"];
const GOOD_DEPTH: u64 = 16;
const GOOD_LEN: u32 = 64 << 10;

struct Args {
    target: SocketAddr,
    pid: Option<u32>,
    name: String,
    attackers: usize,
    addresses: u8,
    baseline: Duration,
    siege: Duration,
    size: u64,
    attack_prefix: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: nbd_siege --tcp ADDR [--pid PID] [--name NAME] [--attackers N] [--addresses N] [--baseline S] [--siege S] [--size BYTES]"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut a = Args {
        target: "127.0.0.1:10809".parse().expect("default address"),
        pid: None,
        name: String::new(),
        attackers: 1000,
        addresses: 20,
        baseline: Duration::from_secs(10),
        siege: Duration::from_secs(20),
        size: 1 << 30,
        attack_prefix: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<u64>().unwrap_or_else(|_| usage());
        match k.as_str() {
            "--tcp" => a.target = v.parse().unwrap_or_else(|_| usage()),
            "--pid" => a.pid = Some(num(&v) as u32),
            "--name" => a.name = v,
            "--attackers" => a.attackers = num(&v) as usize,
            "--addresses" => a.addresses = num(&v).clamp(1, 250) as u8,
            "--baseline" => a.baseline = Duration::from_secs(num(&v)),
            "--siege" => a.siege = Duration::from_secs(num(&v)),
            "--size" => a.size = num(&v),
            "--attack-prefix" => a.attack_prefix = Some(v),
            _ => usage(),
        }
    }
    a
}

/// Resident and peak resident memory of `pid`, in KiB.
fn rss_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|d| d.count()).unwrap_or(0)
}

/// Greeting, fixed newstyle, then GO on `name` without structured replies (simple replies are
/// enough for the well-behaved client and cheaper to parse).
fn handshake_blocking(s: &mut TcpStream, name: &str) -> std::io::Result<u64> {
    let mut g = [0u8; proto::GREETING_LEN];
    s.read_exact(&mut g)?;
    s.write_all(&3u32.to_be_bytes())?;
    let mut b = Vec::new();
    proto::encode_option(&mut b, proto::OPT_GO, &proto::encode_info_payload(name, &[]));
    s.write_all(&b)?;
    let mut size = 0;
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h)?;
        let h = proto::parse_option_reply_header(&h).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut d = vec![0u8; h.length as usize];
        s.read_exact(&mut d)?;
        if h.reply_type & proto::REP_FLAG_ERROR != 0 {
            return Err(std::io::Error::other(format!(
                "GO refused: {:#x} {}",
                h.reply_type,
                String::from_utf8_lossy(&d)
            )));
        }
        if h.reply_type == proto::REP_INFO && d.len() >= 10 && d[..2] == [0, 0] {
            size = u64::from_be_bytes(d[2..10].try_into().expect("8 bytes"));
        }
        if h.option == proto::OPT_GO && h.reply_type == proto::REP_ACK {
            return Ok(size);
        }
    }
}

/// Cheap deterministic random numbers (xorshift), one stream per client.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Counters of the well-behaved client, read by the main thread at phase boundaries.
#[derive(Default)]
struct Good {
    ops: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    /// Longest wait for one reply, in microseconds, since the last reset.
    max_wait_us: AtomicU64,
}

/// The well-behaved client: `GOOD_DEPTH` requests in flight until `stop`.
fn good_client(
    target: SocketAddr,
    name: String,
    size: u64,
    good: Arc<Good>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<()> {
    let mut s = TcpStream::connect(target)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    let export = handshake_blocking(&mut s, &name)?;
    let span = size.min(export).max(GOOD_LEN as u64) / GOOD_LEN as u64;
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let payload = vec![0x5au8; GOOD_LEN as usize];
    let mut data = vec![0u8; GOOD_LEN as usize];
    let mut sent_at = std::collections::HashMap::new();
    let send = |s: &mut TcpStream,
                cookie: u64,
                rng: &mut Rng,
                sent_at: &mut std::collections::HashMap<u64, (Instant, bool)>| {
        let write = rng.next() & 1 == 0;
        let offset = (rng.next() % span) * GOOD_LEN as u64;
        let command = if write { proto::CMD_WRITE } else { proto::CMD_READ };
        let r = Request { flags: 0, command, cookie, offset, length: GOOD_LEN };
        s.write_all(&proto::encode_request(&r))?;
        if write {
            s.write_all(&payload)?;
        }
        sent_at.insert(cookie, (Instant::now(), write));
        std::io::Result::Ok(())
    };
    let mut cookie = 0;
    for _ in 0..GOOD_DEPTH {
        cookie += 1;
        send(&mut s, cookie, &mut rng, &mut sent_at)?;
    }
    while !stop.load(Ordering::Relaxed) {
        let mut h = [0u8; proto::SIMPLE_REPLY_LEN];
        s.read_exact(&mut h)?;
        let (error, got) = match proto::parse_reply_header(&h) {
            Ok(proto::ReplyHeader::Simple { error, cookie }) => (error, cookie),
            other => return Err(std::io::Error::other(format!("unexpected reply {other:?}"))),
        };
        let Some((at, write)) = sent_at.remove(&got) else {
            return Err(std::io::Error::other(format!("reply to unknown cookie {got}")));
        };
        if !write && error == 0 {
            s.read_exact(&mut data)?;
        }
        if error != 0 {
            good.errors.fetch_add(1, Ordering::Relaxed);
        }
        good.ops.fetch_add(1, Ordering::Relaxed);
        good.bytes.fetch_add(GOOD_LEN as u64, Ordering::Relaxed);
        good.max_wait_us.fetch_max(at.elapsed().as_micros() as u64, Ordering::Relaxed);
        cookie += 1;
        send(&mut s, cookie, &mut rng, &mut sent_at)?;
    }
    Ok(())
}

/// Counters of the attackers.
#[derive(Default)]
struct Siege {
    /// Connections that got through the attack's setup, per kind.
    established: [AtomicU64; 5],
    /// Connections the server closed (or refused at once), per kind.
    closed: [AtomicU64; 5],
    /// `NBD_OPT_LIST` answers that were not `NBD_REP_ERR_POLICY`.
    list_leaks: AtomicU64,
    /// Connect errors (listener backlog, descriptor limits on our side).
    connect_errors: AtomicU64,
}

async fn read_greeting_and_flags(s: &mut tokio::net::TcpStream) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut g = [0u8; proto::GREETING_LEN];
    s.read_exact(&mut g).await?;
    s.write_all(&3u32.to_be_bytes()).await
}

async fn go_async(s: &mut tokio::net::TcpStream, name: &str) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    read_greeting_and_flags(s).await?;
    let mut b = Vec::new();
    proto::encode_option(&mut b, proto::OPT_GO, &proto::encode_info_payload(name, &[]));
    s.write_all(&b).await?;
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).await?;
        let h = proto::parse_option_reply_header(&h).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
        let mut d = vec![0u8; h.length as usize];
        s.read_exact(&mut d).await?;
        if h.reply_type & proto::REP_FLAG_ERROR != 0 {
            return Err(std::io::Error::other("GO refused"));
        }
        if h.option == proto::OPT_GO && h.reply_type == proto::REP_ACK {
            return Ok(());
        }
    }
}

/// One attack of `kind` on a fresh connection; returns once the attack is in place.
async fn attack(
    s: &mut tokio::net::TcpStream,
    kind: usize,
    name: &str,
    siege: &Siege,
    seed: u64,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    match kind {
        0 => go_async(s, name).await,
        1 => {
            go_async(s, name).await?;
            let r = Request { flags: 0, command: proto::CMD_WRITE, cookie: 1, offset: 0, length: 32 << 20 };
            s.write_all(&proto::encode_request(&r)).await?;
            s.write_all(&vec![0xa5u8; 1 << 20]).await
        }
        2 => read_greeting_and_flags(s).await,
        3 => {
            read_greeting_and_flags(s).await?;
            let mut b = Vec::new();
            proto::encode_option(&mut b, proto::OPT_LIST, &[]);
            s.write_all(&b).await?;
            let mut h = [0u8; 20];
            s.read_exact(&mut h).await?;
            let h = proto::parse_option_reply_header(&h).map_err(|e| std::io::Error::other(format!("{e:?}")))?;
            if h.reply_type != proto::REP_ERR_POLICY {
                siege.list_leaks.fetch_add(1, Ordering::Relaxed);
            }
            let mut d = vec![0u8; h.length as usize];
            s.read_exact(&mut d).await?;
            let mut b = Vec::new();
            proto::encode_option(&mut b, 0x7777, &[]);
            s.write_all(&b).await
        }
        _ => {
            go_async(s, name).await?;
            let mut rng = Rng(seed | 1);
            let mut b = Vec::new();
            for c in 0..64 {
                let offset = (rng.next() % 1024) << 20;
                let r = Request { flags: 0, command: proto::CMD_READ, cookie: c, offset, length: 1 << 20 };
                b.extend_from_slice(&proto::encode_request(&r));
            }
            s.write_all(&b).await
        }
    }
}

/// One attacker: connect from `source`, attack, wait for the server to close, again; until stop.
async fn attacker(
    i: usize,
    source: IpAddr,
    target: SocketAddr,
    name: Arc<String>,
    siege: Arc<Siege>,
    stop: Arc<AtomicBool>,
) {
    use tokio::io::AsyncReadExt;
    let kind = i % KINDS.len();
    while !stop.load(Ordering::Relaxed) {
        let sock = match tokio::net::TcpSocket::new_v4() {
            Ok(s) => s,
            Err(_) => {
                siege.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if sock.bind(SocketAddr::new(source, 0)).is_err() {
            siege.connect_errors.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let mut s = match sock.connect(target).await {
            Ok(s) => s,
            Err(_) => {
                siege.connect_errors.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
        };
        if attack(&mut s, kind, &name, &siege, i as u64).await.is_ok() {
            siege.established[kind].fetch_add(1, Ordering::Relaxed);
            // Hold on (never reading replies) until the server gives up on us or the siege
            // ends. The no-drain kind must not read; the others have nothing to read.
            if kind == 4 {
                // Never read: unread replies (and a close behind them) cannot be seen without
                // reading, so this kind holds on until the siege ends; it is not counted as
                // closed by the server.
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                return;
            } else {
                let mut sink = [0u8; 4096];
                loop {
                    tokio::select! {
                        r = s.read(&mut sink) => if matches!(r, Ok(0) | Err(_)) { break },
                        _ = tokio::time::sleep(Duration::from_millis(200)) => if stop.load(Ordering::Relaxed) { break },
                    }
                }
            }
        }
        siege.closed[kind].fetch_add(1, Ordering::Relaxed);
        // A refused or closed attacker comes back, but not in a busy loop: on this machine
        // that would measure the attackers' CPU, not the server.
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn snapshot(good: &Good) -> (u64, u64, u64) {
    (good.ops.load(Ordering::Relaxed), good.bytes.load(Ordering::Relaxed), good.errors.load(Ordering::Relaxed))
}

fn main() {
    let args = parse_args();
    let good = Arc::new(Good::default());
    let stop_good = Arc::new(AtomicBool::new(false));
    let g = {
        let (good, stop, name) = (good.clone(), stop_good.clone(), args.name.clone());
        let (target, size) = (args.target, args.size);
        std::thread::spawn(move || good_client(target, name, size, good, stop))
    };
    let sample_rss = |pid: Option<u32>| pid.map(rss_kib).unwrap_or((0, 0));

    // Baseline.
    std::thread::sleep(Duration::from_secs(2)); // warm-up, not measured
    let (ops0, bytes0, _) = snapshot(&good);
    let t0 = Instant::now();
    let mut base_rss_max = 0;
    while t0.elapsed() < args.baseline {
        std::thread::sleep(Duration::from_millis(100));
        base_rss_max = base_rss_max.max(sample_rss(args.pid).0);
        if g.is_finished() {
            break;
        }
    }
    let (ops1, bytes1, _) = snapshot(&good);
    let base_secs = t0.elapsed().as_secs_f64();
    good.max_wait_us.store(0, Ordering::Relaxed);

    // Siege.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let siege = Arc::new(Siege::default());
    let stop_siege = Arc::new(AtomicBool::new(false));
    for i in 0..args.attackers {
        let n = i % args.addresses as usize;
        let source = IpAddr::V4(Ipv4Addr::new(127, 0, 1, 1 + n as u8));
        let name = Arc::new(match &args.attack_prefix {
            Some(p) => format!("{p}{n}"),
            None => args.name.clone(),
        });
        rt.spawn(attacker(i, source, args.target, name, siege.clone(), stop_siege.clone()));
    }
    // Ramp-up: until every attacker got in once, or 10 s.
    let ramp = Instant::now();
    while ramp.elapsed() < Duration::from_secs(10) {
        let got: u64 = siege.established.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        if got as usize >= args.attackers {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let ramp_secs = ramp.elapsed().as_secs_f64();
    good.max_wait_us.store(0, Ordering::Relaxed);
    let (ops2, bytes2, _) = snapshot(&good);
    let t1 = Instant::now();
    let mut siege_rss_max = 0;
    let mut fds_max = 0;
    while t1.elapsed() < args.siege {
        std::thread::sleep(Duration::from_millis(100));
        siege_rss_max = siege_rss_max.max(sample_rss(args.pid).0);
        fds_max = fds_max.max(args.pid.map(open_fds).unwrap_or(0));
        if g.is_finished() {
            break;
        }
    }
    let (ops3, bytes3, errors) = snapshot(&good);
    let siege_secs = t1.elapsed().as_secs_f64();
    let siege_max_wait_ms = good.max_wait_us.load(Ordering::Relaxed) as f64 / 1000.0;
    stop_siege.store(true, Ordering::Relaxed);
    stop_good.store(true, Ordering::Relaxed);
    rt.shutdown_timeout(Duration::from_secs(2));
    let good_result = g.join().expect("good client thread");

    let mib = |b: u64, s: f64| b as f64 / s / (1 << 20) as f64;
    let base = mib(bytes1 - bytes0, base_secs);
    let under = mib(bytes3 - bytes2, siege_secs);
    println!("baseline_mib_s={base:.1}");
    println!("baseline_iops={:.0}", (ops1 - ops0) as f64 / base_secs);
    println!("siege_mib_s={under:.1}");
    println!("siege_iops={:.0}", (ops3 - ops2) as f64 / siege_secs);
    println!("siege_ratio={:.3}", if base > 0.0 { under / base } else { 0.0 });
    println!("siege_max_reply_wait_ms={siege_max_wait_ms:.1}");
    println!("good_client_errors={errors}");
    println!(
        "good_client_result={}",
        match &good_result {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        }
    );
    println!("ramp_seconds={ramp_secs:.1}");
    for (k, name) in KINDS.iter().enumerate() {
        println!(
            "attack_{}=established {} closed_by_server {}",
            name.replace('-', "_"),
            siege.established[k].load(Ordering::Relaxed),
            siege.closed[k].load(Ordering::Relaxed)
        );
    }
    println!("attack_connect_errors={}", siege.connect_errors.load(Ordering::Relaxed));
    println!("list_leaks={}", siege.list_leaks.load(Ordering::Relaxed));
    if let Some(pid) = args.pid {
        println!("server_rss_baseline_max_mib={:.0}", base_rss_max as f64 / 1024.0);
        println!("server_rss_siege_max_mib={:.0}", siege_rss_max as f64 / 1024.0);
        println!("server_rss_peak_mib={:.0}", rss_kib(pid).1 as f64 / 1024.0);
        println!("server_fds_max={fds_max}");
    }
    if good_result.is_err() {
        std::process::exit(1);
    }
}
