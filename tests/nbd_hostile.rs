//! Hostile and broken clients against the real listeners (unix socket and TCP): garbage bytes,
//! huge lengths, early disconnects, and 10,000 connections opened and dropped. The process must
//! keep serving, and file descriptors and memory must come back to where they were.
//!
//! One test function on purpose: it measures this process's fd table and RSS, which other
//! tests running in parallel threads would disturb.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use cinderblock::export::nbd::proto::{self, Request};
use cinderblock::export::nbd::{NbdConfig, NbdServer};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Greeting, fixed newstyle + no zeroes, GO with structured replies on `name`.
fn go<S: Read + Write>(s: &mut S, name: &str) {
    let mut g = [0u8; proto::GREETING_LEN];
    s.read_exact(&mut g).unwrap();
    s.write_all(&3u32.to_be_bytes()).unwrap();
    let mut b = Vec::new();
    proto::encode_option(&mut b, proto::OPT_STRUCTURED_REPLY, &[]);
    proto::encode_option(&mut b, proto::OPT_GO, &proto::encode_info_payload(name, &[]));
    s.write_all(&b).unwrap();
    // Read option replies until the GO's ACK.
    loop {
        let mut h = [0u8; 20];
        s.read_exact(&mut h).unwrap();
        let h = proto::parse_option_reply_header(&h).unwrap();
        let mut d = vec![0u8; h.length as usize];
        s.read_exact(&mut d).unwrap();
        assert_eq!(h.reply_type & proto::REP_FLAG_ERROR, 0);
        if h.option == proto::OPT_GO && h.reply_type == proto::REP_ACK {
            return;
        }
    }
}

fn read_ok<S: Read + Write>(s: &mut S, len: u32) {
    let r = Request { flags: 0, command: proto::CMD_READ, cookie: 1, offset: 0, length: len };
    s.write_all(&proto::encode_request(&r)).unwrap();
    let mut h = [0u8; proto::CHUNK_HEADER_LEN];
    s.read_exact(&mut h).unwrap();
    match proto::parse_reply_header(&h).unwrap() {
        proto::ReplyHeader::Chunk { kind, length, .. } => {
            assert_eq!(kind, proto::REPLY_TYPE_OFFSET_DATA);
            let mut d = vec![0u8; length as usize];
            s.read_exact(&mut d).unwrap();
        }
        other => panic!("{other:?}"),
    }
}

fn wait_idle(server: &NbdServer) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.connection_count() > 0 {
        assert!(Instant::now() < deadline, "{} connections still open", server.connection_count());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// One abusive connection of kind `i % 8`.
fn abuse<S: Read + Write>(mut s: S, i: usize) {
    let _ = match i % 8 {
        0 => Ok(()), // connect and drop
        1 => {
            let mut g = [0u8; 5];
            s.read_exact(&mut g) // half the greeting, then drop
        }
        2 => s.write_all(&[0xAA; 300]), // garbage straight away
        3 => {
            let mut g = [0u8; proto::GREETING_LEN];
            let _ = s.read_exact(&mut g);
            let _ = s.write_all(&1u32.to_be_bytes());
            // An option header announcing a 4 GiB payload, then drop.
            let mut b = Vec::new();
            b.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
            b.extend_from_slice(&proto::OPT_GO.to_be_bytes());
            b.extend_from_slice(&u32::MAX.to_be_bytes());
            s.write_all(&b)
        }
        4 => {
            go(&mut s, "vol");
            // A WRITE announcing 4 GiB of payload, a little of it, then drop.
            let r = Request { flags: 0, command: proto::CMD_WRITE, cookie: 9, offset: 0, length: u32::MAX };
            let _ = s.write_all(&proto::encode_request(&r));
            s.write_all(&[0u8; 65536])
        }
        5 => {
            go(&mut s, "vol");
            // A burst of reads, disconnect without reading the replies. (Kept small: each burst
            // costs the server real reads, and debug builds are slow.)
            let mut b = Vec::new();
            for c in 0..32 {
                let r = Request { flags: 0, command: proto::CMD_READ, cookie: c, offset: c * 4096, length: 128 << 10 };
                b.extend_from_slice(&proto::encode_request(&r));
            }
            s.write_all(&b)
        }
        6 => {
            go(&mut s, "vol");
            s.write_all(&[0x55; 1000]) // garbage in transmission
        }
        _ => {
            go(&mut s, "vol");
            // Huge-length read (refused), then a proper one, then DISC.
            let r = Request { flags: 0, command: proto::CMD_READ, cookie: 2, offset: 0, length: u32::MAX };
            let _ = s.write_all(&proto::encode_request(&r));
            let mut h = [0u8; proto::CHUNK_HEADER_LEN];
            let _ = s.read_exact(&mut h);
            let mut d = [0u8; 64];
            if let Ok(proto::ReplyHeader::Chunk { length, .. }) = proto::parse_reply_header(&h) {
                let _ = s.read_exact(&mut d[..length as usize]);
            }
            read_ok(&mut s, 4096);
            let r = Request { flags: 0, command: proto::CMD_DISC, cookie: 3, offset: 0, length: 0 };
            s.write_all(&proto::encode_request(&r))
        }
    };
}

fn unix(path: &Path) -> UnixStream {
    let s = UnixStream::connect(path).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

#[test]
fn hostile_clients_never_crash_or_leak() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("vol.raw");
    std::fs::File::create(&file).unwrap().set_len(64 << 20).unwrap();
    let sock = dir.path().join("nbd.sock");
    let server = NbdServer::new(NbdConfig { handshake_timeout: Duration::from_secs(5), ..Default::default() });
    server.add_export("vol".into(), file, false).unwrap();
    let tcp = rt.block_on(async {
        server.listen_unix(&sock).await.unwrap();
        server.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap()
    });

    // Warm up (blocking pool threads, buffers) before taking the baseline; the warm-up
    // connection's descriptors must be gone again first.
    let fds_initial = open_fds();
    let mut s = unix(&sock);
    go(&mut s, "vol");
    read_ok(&mut s, 1 << 20);
    drop(s);
    wait_idle(&server);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open_fds() > fds_initial {
        assert!(Instant::now() < deadline, "the warm-up connection leaked descriptors");
        std::thread::sleep(Duration::from_millis(10));
    }
    let fds_before = open_fds();
    let rss_before = rss_kib();

    // 10,000 connections over the unix socket, every kind of abuse.
    let t0 = Instant::now();
    let mut per_kind = [Duration::ZERO; 8];
    for i in 0..10_000 {
        let t = Instant::now();
        abuse(unix(&sock), i);
        per_kind[i % 8] += t.elapsed();
    }
    eprintln!("per kind: {per_kind:?}");
    eprintln!("10,000 unix connections in {:?}", t0.elapsed());
    // 1,000 over TCP.
    for i in 0..1_000 {
        let s = TcpStream::connect(tcp).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        abuse(s, i);
    }
    // 300 held open at once, then all dropped.
    let held: Vec<UnixStream> = (0..300).map(|_| unix(&sock)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.connection_count() < 300 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    drop(held);
    wait_idle(&server);

    // Still serving, over both transports.
    let mut s = unix(&sock);
    go(&mut s, "vol");
    read_ok(&mut s, 4096);
    drop(s);
    let mut s = TcpStream::connect(tcp).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    go(&mut s, "vol");
    read_ok(&mut s, 4096);
    drop(s);
    wait_idle(&server);

    let fds_after = open_fds();
    let rss_after = rss_kib();
    eprintln!("fds {fds_before} -> {fds_after}, RSS {rss_before} KiB -> {rss_after} KiB");
    assert!(fds_after <= fds_before, "file descriptors leaked: {fds_before} -> {fds_after}");
    assert!(rss_after < rss_before + 128 * 1024, "RSS grew from {rss_before} KiB to {rss_after} KiB");

    let s2 = server.clone();
    rt.block_on(async move { tokio::time::timeout(Duration::from_secs(20), s2.shutdown()).await.unwrap() });
    assert!(!sock.exists(), "unix socket left behind");
}
