//! Protocol tests: a hand-written client over an in-memory pipe (`tokio::io::duplex`) against
//! the real server code, including malformed and hostile input.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream};

use super::proto::{self, *};
use super::server::{NbdConfig, NbdServer};

const SIZE: u64 = 8 << 20;
const T: Duration = Duration::from_secs(10);

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    server: NbdServer,
}

fn fixture() -> Fixture {
    fixture_with(NbdConfig::default())
}

fn fixture_with(config: NbdConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vol.raw");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(SIZE).unwrap();
    let server = NbdServer::new(config);
    server.add_export("vol".into(), path.clone(), false).unwrap();
    server.add_export("ro".into(), path.clone(), true).unwrap();
    Fixture { _dir: dir, path, server }
}

/// A connected raw client; over a pipe, the server side runs in a task.
struct Client<S = DuplexStream> {
    s: S,
    server_task: Option<tokio::task::JoinHandle<()>>,
}

impl Fixture {
    fn connect(&self) -> Client {
        let (c, s) = tokio::io::duplex(1 << 20);
        let server = self.server.clone();
        let server_task = tokio::spawn(async move { server.serve_stream(s).await });
        Client { s: c, server_task: Some(server_task) }
    }
}

#[derive(Debug)]
struct OptReply {
    reply_type: u32,
    data: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Reply {
    Simple { error: u32, cookie: u64 },
    Chunk { flags: u16, kind: u16, cookie: u64, payload: Vec<u8> },
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    async fn read_n(&mut self, n: usize) -> Vec<u8> {
        let mut b = vec![0u8; n];
        tokio::time::timeout(T, self.s.read_exact(&mut b)).await.expect("read timed out").expect("read");
        b
    }

    /// True when the server closed the connection (EOF) within the timeout.
    async fn closed(&mut self) -> bool {
        let mut b = [0u8; 1];
        matches!(tokio::time::timeout(T, self.s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
    }

    async fn send(&mut self, b: &[u8]) {
        self.s.write_all(b).await.unwrap();
    }

    async fn greet(&mut self, client_flags: u32) {
        let g = self.read_n(GREETING_LEN).await;
        assert_eq!(&g[..], &encode_greeting()[..]);
        self.send(&client_flags.to_be_bytes()).await;
    }

    async fn option(&mut self, opt: u32, data: &[u8]) -> Vec<OptReply> {
        let mut b = Vec::new();
        encode_option(&mut b, opt, data);
        self.send(&b).await;
        let mut out = Vec::new();
        loop {
            let h: [u8; 20] = self.read_n(20).await.try_into().unwrap();
            let h = parse_option_reply_header(&h).unwrap();
            assert_eq!(h.option, opt);
            let data = self.read_n(h.length as usize).await;
            let done = h.reply_type == REP_ACK || h.reply_type & REP_FLAG_ERROR != 0;
            out.push(OptReply { reply_type: h.reply_type, data });
            if done {
                return out;
            }
        }
    }

    /// Handshake with structured replies and base:allocation, then GO; returns (size, flags).
    async fn go(&mut self, name: &str, structured: bool) -> (u64, u16) {
        self.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        if structured {
            let r = self.option(OPT_STRUCTURED_REPLY, &[]).await;
            assert_eq!(r[0].reply_type, REP_ACK);
            let r = self.option(OPT_SET_META_CONTEXT, &encode_meta_payload(name, &[META_BASE_ALLOCATION])).await;
            assert_eq!(r[0].reply_type, REP_META_CONTEXT);
            assert_eq!(&r[0].data[..4], &META_BASE_ALLOCATION_ID.to_be_bytes());
            assert_eq!(&r[0].data[4..], META_BASE_ALLOCATION.as_bytes());
            assert_eq!(r[1].reply_type, REP_ACK);
        }
        let r = self.option(OPT_GO, &encode_info_payload(name, &[INFO_BLOCK_SIZE])).await;
        assert_eq!(r.last().unwrap().reply_type, REP_ACK, "{r:?}");
        let info = r.iter().find(|x| x.data[..2] == INFO_EXPORT.to_be_bytes()).unwrap();
        let size = u64::from_be_bytes(info.data[2..10].try_into().unwrap());
        let flags = u16::from_be_bytes(info.data[10..12].try_into().unwrap());
        (size, flags)
    }

    async fn request(&mut self, command: u16, flags: u16, cookie: u64, offset: u64, length: u32, payload: &[u8]) {
        let mut b = encode_request(&Request { flags, command, cookie, offset, length }).to_vec();
        b.extend_from_slice(payload);
        self.send(&b).await;
    }

    /// One reply message; for a simple reply to a successful READ the caller reads the data.
    async fn reply(&mut self) -> Reply {
        let m = self.read_n(4).await;
        let magic = u32::from_be_bytes(m[..4].try_into().unwrap());
        if magic == SIMPLE_REPLY_MAGIC {
            let mut b = m;
            b.extend(self.read_n(12).await);
            match parse_reply_header(&b).unwrap() {
                ReplyHeader::Simple { error, cookie } => Reply::Simple { error, cookie },
                _ => unreachable!(),
            }
        } else {
            let mut b = m;
            b.extend(self.read_n(16).await);
            match parse_reply_header(&b).unwrap() {
                ReplyHeader::Chunk { flags, kind, cookie, length } => {
                    let payload = self.read_n(length as usize).await;
                    Reply::Chunk { flags, kind, cookie, payload }
                }
                _ => unreachable!(),
            }
        }
    }
}

fn chunk_error(r: &Reply) -> Option<u32> {
    match r {
        Reply::Chunk { kind: REPLY_TYPE_ERROR, payload, .. } => {
            Some(u32::from_be_bytes(payload[..4].try_into().unwrap()))
        }
        Reply::Simple { error, .. } if *error != 0 => Some(*error),
        _ => None,
    }
}

fn cookie_of(r: &Reply) -> u64 {
    match r {
        Reply::Simple { cookie, .. } | Reply::Chunk { cookie, .. } => *cookie,
    }
}

#[tokio::test]
async fn listing_is_refused_by_default() {
    let fx = fixture();
    let mut c = fx.connect();
    c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
    let r = c.option(OPT_LIST, &[]).await;
    assert_eq!(r.len(), 1, "no export name may leak");
    assert_eq!(r[0].reply_type, REP_ERR_POLICY);
    // The connection stays usable.
    assert_eq!(c.option(OPT_STARTTLS, &[]).await[0].reply_type, REP_ERR_POLICY);
}

#[tokio::test]
async fn options_are_answered_per_protocol() {
    let fx = fixture_with(NbdConfig { allow_list: true, ..NbdConfig::default() });
    let mut c = fx.connect();
    c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;

    let r = c.option(OPT_LIST, &[]).await;
    let names: Vec<String> = r
        .iter()
        .filter(|x| x.reply_type == REP_SERVER)
        .map(|x| String::from_utf8(x.data[4..].to_vec()).unwrap())
        .collect();
    assert_eq!(names, vec!["ro".to_string(), "vol".to_string()]);
    assert_eq!(r.last().unwrap().reply_type, REP_ACK);
    assert_eq!(c.option(OPT_LIST, &[1]).await[0].reply_type, REP_ERR_INVALID);

    assert_eq!(c.option(OPT_STARTTLS, &[]).await[0].reply_type, REP_ERR_POLICY);
    assert_eq!(c.option(4242, b"whatever").await[0].reply_type, REP_ERR_UNSUP);
    assert_eq!(c.option(OPT_EXTENDED_HEADERS, &[]).await[0].reply_type, REP_ERR_UNSUP);
    assert_eq!(c.option(OPT_INFO, &encode_info_payload("nope", &[])).await[0].reply_type, REP_ERR_UNKNOWN);
    // Malformed INFO: the count says 5 requests but none follow.
    let mut bad = encode_info_payload("vol", &[]);
    let n = bad.len();
    bad[n - 1] = 5;
    assert_eq!(c.option(OPT_INFO, &bad).await[0].reply_type, REP_ERR_INVALID);
    assert_eq!(c.option(OPT_GO, &[0xff; 3]).await[0].reply_type, REP_ERR_INVALID);

    // Metadata contexts need structured replies first.
    let meta = encode_meta_payload("vol", &[]);
    assert_eq!(c.option(OPT_LIST_META_CONTEXT, &meta).await[0].reply_type, REP_ERR_INVALID);
    assert_eq!(c.option(OPT_STRUCTURED_REPLY, &[]).await[0].reply_type, REP_ACK);
    let r = c.option(OPT_LIST_META_CONTEXT, &meta).await;
    assert_eq!(r[0].reply_type, REP_META_CONTEXT);
    assert_eq!(&r[0].data[4..], b"base:allocation");
    assert_eq!(r[1].reply_type, REP_ACK);
    let r = c.option(OPT_LIST_META_CONTEXT, &encode_meta_payload("vol", &["qemu:dirty-bitmap:a"])).await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].reply_type, REP_ACK);
    let r = c.option(OPT_SET_META_CONTEXT, &encode_meta_payload("nope", &["base:allocation"])).await;
    assert_eq!(r[0].reply_type, REP_ERR_UNKNOWN);

    let r = c.option(OPT_INFO, &encode_info_payload("vol", &[INFO_NAME, INFO_BLOCK_SIZE, 999])).await;
    let kinds: Vec<u16> = r[..r.len() - 1].iter().map(|x| u16::from_be_bytes([x.data[0], x.data[1]])).collect();
    assert_eq!(kinds, vec![INFO_EXPORT, INFO_NAME, INFO_BLOCK_SIZE]);
    assert_eq!(&r[1].data[2..], b"vol");
    let bs = &r[2].data;
    assert_eq!(u32::from_be_bytes(bs[2..6].try_into().unwrap()), 1);
    assert_eq!(u32::from_be_bytes(bs[6..10].try_into().unwrap()), 4096);
    assert_eq!(u32::from_be_bytes(bs[10..14].try_into().unwrap()), 32 << 20);
    let size = u64::from_be_bytes(r[0].data[2..10].try_into().unwrap());
    assert_eq!(size, SIZE);

    // ABORT is acknowledged, then the server hangs up.
    assert_eq!(c.option(OPT_ABORT, &[]).await[0].reply_type, REP_ACK);
    assert!(c.closed().await);
    c.server_task.take().unwrap().await.unwrap();
}

#[tokio::test]
async fn framing_violations_close_the_connection() {
    let fx = fixture();

    // Unknown client flags.
    let mut c = fx.connect();
    c.greet(1 << 7 | 1).await;
    assert!(c.closed().await);

    // No fixed newstyle.
    let mut c = fx.connect();
    c.greet(0).await;
    assert!(c.closed().await);

    // Garbage instead of an option.
    let mut c = fx.connect();
    c.greet(1).await;
    c.send(&[0xAB; 64]).await;
    assert!(c.closed().await);

    // Oversize option payload: ERR_TOO_BIG, then hang up without reading the payload.
    let mut c = fx.connect();
    c.greet(1).await;
    let mut b = Vec::new();
    b.extend_from_slice(&IHAVEOPT.to_be_bytes());
    b.extend_from_slice(&OPT_GO.to_be_bytes());
    b.extend_from_slice(&u32::MAX.to_be_bytes());
    c.send(&b).await;
    let h: [u8; 20] = c.read_n(20).await.try_into().unwrap();
    assert_eq!(parse_option_reply_header(&h).unwrap().reply_type, REP_ERR_TOO_BIG);
    let len = parse_option_reply_header(&h).unwrap().length as usize;
    c.read_n(len).await;
    assert!(c.closed().await);

    // EXPORT_NAME of an unknown export: no error reply exists, the server hangs up.
    let mut c = fx.connect();
    c.greet(1).await;
    let mut b = Vec::new();
    encode_option(&mut b, OPT_EXPORT_NAME, b"missing");
    c.send(&b).await;
    assert!(c.closed().await);

    // Early disconnect in the middle of the greeting.
    let mut c = fx.connect();
    drop(c.s);
    c.server_task.take().unwrap().await.unwrap();

    tokio::time::timeout(T, async {
        while fx.server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn export_name_enters_transmission_with_or_without_zeroes() {
    let fx = fixture();
    for no_zeroes in [true, false] {
        let mut c = fx.connect();
        c.greet(FLAG_C_FIXED_NEWSTYLE | if no_zeroes { FLAG_C_NO_ZEROES } else { 0 }).await;
        let mut b = Vec::new();
        encode_option(&mut b, OPT_EXPORT_NAME, b"vol");
        c.send(&b).await;
        let r = c.read_n(10 + if no_zeroes { 0 } else { 124 }).await;
        assert_eq!(u64::from_be_bytes(r[..8].try_into().unwrap()), SIZE);
        let flags = u16::from_be_bytes(r[8..10].try_into().unwrap());
        assert_ne!(flags & TFLAG_SEND_TRIM, 0);
        assert_eq!(flags & TFLAG_SEND_DF, 0, "DF needs structured replies");
        // Simple replies: read back what was written.
        c.request(CMD_WRITE, 0, 1, 100, 5, b"hello").await;
        assert_eq!(c.reply().await, Reply::Simple { error: 0, cookie: 1 });
        c.request(CMD_READ, 0, 2, 100, 5, &[]).await;
        assert_eq!(c.reply().await, Reply::Simple { error: 0, cookie: 2 });
        assert_eq!(c.read_n(5).await, b"hello");
        // A failed simple READ carries no payload.
        c.request(CMD_READ, 0, 3, SIZE, 1, &[]).await;
        assert_eq!(c.reply().await, Reply::Simple { error: EINVAL, cookie: 3 });
        c.request(CMD_DISC, 0, 4, 0, 0, &[]).await;
        assert!(c.closed().await);
    }
}

#[tokio::test]
async fn structured_io_round_trip_and_errors() {
    let fx = fixture();
    let mut c = fx.connect();
    let (size, flags) = c.go("vol", true).await;
    assert_eq!(size, SIZE);
    for f in [
        TFLAG_HAS_FLAGS,
        TFLAG_SEND_FLUSH,
        TFLAG_SEND_FUA,
        TFLAG_SEND_TRIM,
        TFLAG_SEND_WRITE_ZEROES,
        TFLAG_SEND_FAST_ZERO,
        TFLAG_SEND_DF,
        TFLAG_SEND_CACHE,
        TFLAG_CAN_MULTI_CONN,
    ] {
        assert_ne!(flags & f, 0, "flag {f:#x} missing from {flags:#x}");
    }
    assert_eq!(flags & TFLAG_READ_ONLY, 0);

    // Write at an odd offset with FUA, read it back with DF.
    let data: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    c.request(CMD_WRITE, CMD_FLAG_FUA, 10, 12345, data.len() as u32, &data).await;
    let r = c.reply().await;
    assert_eq!(chunk_error(&r), None, "{r:?}");
    assert_eq!(cookie_of(&r), 10);
    c.request(CMD_READ, CMD_FLAG_DF, 11, 12345, data.len() as u32, &[]).await;
    match c.reply().await {
        Reply::Chunk { flags, kind, cookie, payload } => {
            assert_eq!((flags, kind, cookie), (REPLY_FLAG_DONE, REPLY_TYPE_OFFSET_DATA, 11));
            assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), 12345);
            assert_eq!(&payload[8..], &data[..]);
        }
        r => panic!("{r:?}"),
    }
    let mut on_disk = vec![0u8; data.len()];
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut on_disk, 12345).unwrap();
    assert_eq!(on_disk, data);

    // Zero-length read: a NONE chunk.
    c.request(CMD_READ, 0, 12, 0, 0, &[]).await;
    assert_eq!(
        c.reply().await,
        Reply::Chunk { flags: REPLY_FLAG_DONE, kind: REPLY_TYPE_NONE, cookie: 12, payload: vec![] }
    );

    // Errors: out of bounds, unknown command, bad flags, oversize.
    c.request(CMD_READ, 0, 20, SIZE - 1, 2, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    c.request(CMD_WRITE, 0, 21, SIZE - 1, 2, &[1, 2]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(ENOSPC));
    c.request(CMD_TRIM, 0, 22, u64::MAX - 1, 100, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(ENOSPC));
    c.request(77, 0, 23, 0, 0, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    c.request(CMD_READ, 1 << 12, 24, 0, 1, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    c.request(CMD_READ, 0, 25, 0, u32::MAX, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    // An oversize WRITE: its payload is read and discarded, and the stream stays in sync.
    let big = vec![0x5Au8; (MAX_PAYLOAD + 1) as usize];
    c.request(CMD_WRITE, 0, 26, 0, big.len() as u32, &big).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    // A refused write (out of bounds) also has its payload discarded.
    c.request(CMD_WRITE, 0, 27, SIZE, 3, b"abc").await;
    assert_eq!(chunk_error(&c.reply().await), Some(ENOSPC));
    c.request(CMD_READ, 0, 28, 12345, 3, &[]).await;
    match c.reply().await {
        Reply::Chunk { payload, cookie: 28, .. } => assert_eq!(&payload[8..], &data[..3]),
        r => panic!("{r:?}"),
    }

    // FLUSH, CACHE.
    c.request(CMD_FLUSH, 0, 30, 0, 0, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_CACHE, 0, 31, 0, 1 << 20, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_CACHE, 0, 32, SIZE, 1, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));

    c.request(CMD_DISC, 0, 99, 0, 0, &[]).await;
    assert!(c.closed().await);
}

fn extents(payload: &[u8]) -> Vec<(u32, u32)> {
    assert_eq!(u32::from_be_bytes(payload[..4].try_into().unwrap()), META_BASE_ALLOCATION_ID);
    payload[4..]
        .chunks(8)
        .map(|d| (u32::from_be_bytes(d[..4].try_into().unwrap()), u32::from_be_bytes(d[4..].try_into().unwrap())))
        .collect()
}

async fn block_status(c: &mut Client, flags: u16, offset: u64, len: u32) -> Vec<(u32, u32)> {
    c.request(CMD_BLOCK_STATUS, flags, 50, offset, len, &[]).await;
    match c.reply().await {
        Reply::Chunk { kind: REPLY_TYPE_BLOCK_STATUS, flags: REPLY_FLAG_DONE, payload, .. } => extents(&payload),
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn block_status_trim_and_write_zeroes() {
    let fx = fixture();
    let mut c = fx.connect();
    c.go("vol", true).await;
    let hz = STATE_HOLE | STATE_ZERO;
    assert_eq!(block_status(&mut c, 0, 0, SIZE as u32).await, vec![(SIZE as u32, hz)]);

    let mb = 1u32 << 20;
    let data = vec![0xEEu8; 2 * mb as usize];
    c.request(CMD_WRITE, 0, 1, mb as u64, 2 * mb, &data).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_FLUSH, 0, 2, 0, 0, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    assert_eq!(block_status(&mut c, 0, 0, SIZE as u32).await, vec![(mb, hz), (2 * mb, 0), (SIZE as u32 - 3 * mb, hz)]);
    assert_eq!(block_status(&mut c, CMD_FLAG_REQ_ONE, 0, SIZE as u32).await, vec![(mb, hz)]);
    assert_eq!(block_status(&mut c, 0, mb as u64 + 1, 10).await, vec![(10, 0)]);

    // TRIM punches a hole: allocated blocks drop, block status shows it.
    let before = std::fs::metadata(&fx.path).unwrap().blocks();
    c.request(CMD_TRIM, CMD_FLAG_FUA, 3, mb as u64, mb, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    assert!(std::fs::metadata(&fx.path).unwrap().blocks() < before);
    assert_eq!(block_status(&mut c, 0, 0, 3 * mb).await, vec![(2 * mb, hz), (mb, 0)]);

    // WRITE_ZEROES (hole allowed, NO_HOLE, FAST_ZERO) read back as zeroes.
    c.request(CMD_WRITE_ZEROES, 0, 4, 2 * mb as u64, 1000, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_WRITE_ZEROES, CMD_FLAG_NO_HOLE | CMD_FLAG_FAST_ZERO, 5, 2 * mb as u64 + 4096, 4096, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_READ, 0, 6, 2 * mb as u64, 8192, &[]).await;
    match c.reply().await {
        Reply::Chunk { payload, .. } => {
            assert!(payload[8..8 + 1000].iter().all(|&b| b == 0));
            assert!(payload[8 + 1000..8 + 4096].iter().all(|&b| b == 0xEE));
            assert!(payload[8 + 4096..].iter().all(|&b| b == 0));
        }
        r => panic!("{r:?}"),
    }

    // BLOCK_STATUS errors: zero length, out of bounds.
    c.request(CMD_BLOCK_STATUS, 0, 7, 0, 0, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
    c.request(CMD_BLOCK_STATUS, 0, 8, SIZE, 1, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
}

#[tokio::test]
async fn block_status_without_meta_context_is_refused() {
    let fx = fixture();
    let mut c = fx.connect();
    c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
    assert_eq!(c.option(OPT_STRUCTURED_REPLY, &[]).await[0].reply_type, REP_ACK);
    // Context selected for another export does not carry over.
    let r = c.option(OPT_SET_META_CONTEXT, &encode_meta_payload("ro", &[META_BASE_ALLOCATION])).await;
    assert_eq!(r[0].reply_type, REP_META_CONTEXT);
    let r = c.option(OPT_GO, &encode_info_payload("vol", &[])).await;
    assert_eq!(r.last().unwrap().reply_type, REP_ACK);
    c.request(CMD_BLOCK_STATUS, 0, 1, 0, 4096, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EINVAL));
}

#[tokio::test]
async fn requests_run_concurrently_and_answer_out_of_order() {
    let fx = fixture();
    let mut c = fx.connect();
    c.go("vol", true).await;
    // 200 requests pipelined without waiting (more than the in-flight cap of 64): every one is
    // answered exactly once.
    let n = 200u64;
    let mut b = Vec::new();
    for i in 0..n {
        let req = if i % 2 == 0 {
            Request { flags: 0, command: CMD_WRITE, cookie: i, offset: i * 4096, length: 4096 }
        } else {
            Request { flags: 0, command: CMD_READ, cookie: i, offset: (i - 1) * 4096, length: 4096 }
        };
        b.extend_from_slice(&encode_request(&req));
        if req.command == CMD_WRITE {
            b.extend(std::iter::repeat_n(i as u8, 4096));
        }
    }
    c.send(&b).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..n {
        let r = c.reply().await;
        assert_eq!(chunk_error(&r), None, "{r:?}");
        assert!(seen.insert(cookie_of(&r)), "duplicate reply {r:?}");
    }
    assert_eq!(seen.len() as u64, n);
}

#[tokio::test]
async fn read_only_export_refuses_writes_with_eperm() {
    let fx = fixture();
    let mut c = fx.connect();
    let (_, flags) = c.go("ro", true).await;
    assert_ne!(flags & TFLAG_READ_ONLY, 0);
    assert_eq!(flags & (TFLAG_SEND_TRIM | TFLAG_SEND_WRITE_ZEROES), 0);
    c.request(CMD_WRITE, 0, 1, 0, 4, b"abcd").await;
    assert_eq!(chunk_error(&c.reply().await), Some(EPERM));
    c.request(CMD_TRIM, 0, 2, 0, 4096, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EPERM));
    c.request(CMD_WRITE_ZEROES, 0, 3, 0, 4096, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), Some(EPERM));
    c.request(CMD_READ, 0, 4, 0, 4, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    c.request(CMD_FLUSH, 0, 5, 0, 0, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    let mut b = [1u8; 4];
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut b, 0).unwrap();
    assert_eq!(b, [0; 4]);
}

#[tokio::test]
async fn bad_request_magic_closes_only_that_connection() {
    let fx = fixture();
    let mut bad = fx.connect();
    bad.go("vol", true).await;
    let mut good = fx.connect();
    good.go("vol", true).await;
    bad.send(&[0u8; 28]).await;
    assert!(bad.closed().await);
    good.request(CMD_READ, 0, 1, 0, 512, &[]).await;
    assert_eq!(chunk_error(&good.reply().await), None);
}

#[tokio::test]
async fn remove_export_closes_its_connections() {
    let fx = fixture();
    let mut c = fx.connect();
    c.go("vol", true).await;
    let mut other = fx.connect();
    other.go("ro", true).await;
    let info = fx.server.list();
    assert_eq!(info.iter().find(|e| e.name == "vol").unwrap().connections, 1);

    assert!(tokio::time::timeout(T, fx.server.remove_export("vol")).await.unwrap());
    assert!(c.closed().await);
    assert!(!fx.server.remove_export("vol").await);
    assert_eq!(fx.server.list().iter().map(|e| e.name.as_str()).collect::<Vec<_>>(), vec!["ro"]);

    // The other export is untouched; a new client cannot choose the removed one.
    other.request(CMD_READ, 0, 1, 0, 512, &[]).await;
    assert_eq!(chunk_error(&other.reply().await), None);
    let mut late = fx.connect();
    late.greet(1).await;
    assert_eq!(late.option(OPT_GO, &encode_info_payload("vol", &[])).await[0].reply_type, REP_ERR_UNKNOWN);

    // Re-adding works; a conflicting re-add does not.
    fx.server.add_export("vol".into(), fx.path.clone(), false).unwrap();
    fx.server.add_export("vol".into(), fx.path.clone(), false).unwrap();
    assert!(fx.server.add_export("vol".into(), fx.path.clone(), true).is_err());
    assert!(fx.server.add_export("x".into(), fx._dir.path().join("missing"), false).is_err());
    assert!(fx.server.add_export("d".into(), fx._dir.path().to_path_buf(), false).is_err());
}

#[tokio::test]
async fn shutdown_closes_everything() {
    let fx = fixture();
    let mut a = fx.connect();
    a.go("vol", true).await;
    let mut b = fx.connect();
    b.greet(1).await; // still negotiating
    tokio::time::timeout(T, fx.server.shutdown()).await.unwrap();
    assert!(a.closed().await);
    assert!(b.closed().await);
    assert_eq!(fx.server.connection_count(), 0);
}

#[tokio::test]
async fn handshake_timeout_and_connection_limit() {
    let fx = fixture_with(NbdConfig {
        handshake_timeout: Duration::from_millis(200),
        max_connections: 2,
        ..Default::default()
    });
    let mut idle = fx.connect();
    idle.read_n(GREETING_LEN).await;
    // Second slot taken, third refused at once.
    let mut second = fx.connect();
    second.read_n(GREETING_LEN).await;
    let mut third = fx.connect();
    assert!(third.closed().await);
    // The idle client is dropped after the handshake timeout.
    assert!(idle.closed().await);
    assert!(second.closed().await);
}

#[tokio::test]
async fn many_connections_opened_and_dropped() {
    let fx = fixture();
    for i in 0..2000u32 {
        let mut c = fx.connect();
        match i % 4 {
            0 => drop(c.s),
            1 => {
                c.greet(1).await;
                drop(c.s);
            }
            2 => {
                c.go("vol", true).await;
                c.request(CMD_READ, 0, 1, 0, 1 << 20, &[]).await;
                drop(c.s); // disconnect with a request in flight
            }
            _ => {
                c.greet(3).await;
                c.send(&[0xff; 100]).await;
                drop(c.s);
            }
        }
    }
    tokio::time::timeout(T, async {
        while fx.server.connection_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("connections left open");
    // Still serving.
    let mut c = fx.connect();
    c.go("vol", true).await;
    c.request(CMD_READ, 0, 1, 0, 512, &[]).await;
    assert_eq!(chunk_error(&c.reply().await), None);
    let _ = proto::MAX_OPTION_LEN;
}

#[tokio::test]
async fn pipelined_writes_fua_and_flush_are_all_answered_and_durable() {
    let fx = fixture();
    let mut c = fx.connect();
    c.go("vol", true).await;
    // One burst mixing plain, FUA and large writes with FLUSH, TRIM and WRITE_ZEROES: they
    // share drainer rounds and one group fdatasync; every request gets exactly one reply.
    let mut b = Vec::new();
    let mut expect = std::collections::BTreeSet::new();
    for i in 0..100u64 {
        let (command, flags, length) = match i % 5 {
            0 => (CMD_WRITE, CMD_FLAG_FUA, 4096),
            1 => (CMD_FLUSH, 0, 0),
            2 => (CMD_WRITE, 0, 300_000),
            3 => (CMD_TRIM, 0, 4096),
            _ => (CMD_WRITE_ZEROES, CMD_FLAG_FUA, 4096),
        };
        let offset = if length == 0 { 0 } else { i * 65536 };
        b.extend_from_slice(&encode_request(&Request { flags, command, cookie: i, offset, length }));
        if command == CMD_WRITE {
            b.extend(std::iter::repeat_n((i % 251) as u8 + 1, length as usize));
        }
        expect.insert(i);
    }
    c.send(&b).await;
    for _ in 0..100 {
        let r = c.reply().await;
        assert_eq!(chunk_error(&r), None, "{r:?}");
        assert!(expect.remove(&cookie_of(&r)), "unexpected or duplicate {r:?}");
    }
    let f = std::fs::File::open(&fx.path).unwrap();
    let mut buf = vec![0u8; 4096];
    f.read_exact_at(&mut buf, 5 * 65536).unwrap();
    assert!(buf.iter().all(|&x| x == 6));
    f.read_exact_at(&mut buf, 7 * 65536 + 299_000).unwrap();
    assert!(buf[..1000].iter().all(|&x| x == 8));
}

/// Pseudo-random bytes, so a misplaced or reordered chunk cannot compare equal.
fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Pipelined READs of every size class on a real socket, answered out of order; each reply's
/// data must equal the file's bytes at its offset.
async fn check_pipelined_reads<S: AsyncRead + AsyncWrite + Unpin>(c: &mut Client<S>, file: &[u8], structured: bool) {
    let reads: Vec<(u64, u32)> = vec![
        (0, 1 << 20),
        (4097, 65_536),
        (12_345, 300_001),
        (SIZE - (1 << 20), 1 << 20),
        (77, 4096),
        ((3 << 20) + 1, 262_144),
        (SIZE - 1, 1),
        (5 << 20, 2 << 20),
    ];
    for (i, (off, len)) in reads.iter().enumerate() {
        c.request(CMD_READ, 0, 100 + i as u64, *off, *len, &[]).await;
    }
    let mut seen = vec![false; reads.len()];
    for _ in 0..reads.len() {
        let (cookie, data) = if structured {
            match c.reply().await {
                Reply::Chunk { flags, kind: REPLY_TYPE_OFFSET_DATA, cookie, payload } => {
                    assert_eq!(flags, REPLY_FLAG_DONE);
                    let (off, _) = reads[(cookie - 100) as usize];
                    assert_eq!(u64::from_be_bytes(payload[..8].try_into().unwrap()), off);
                    (cookie, payload[8..].to_vec())
                }
                r => panic!("{r:?}"),
            }
        } else {
            match c.reply().await {
                Reply::Simple { error: 0, cookie } => {
                    let (_, len) = reads[(cookie - 100) as usize];
                    (cookie, c.read_n(len as usize).await)
                }
                r => panic!("{r:?}"),
            }
        };
        let i = (cookie - 100) as usize;
        assert!(!seen[i], "cookie {cookie} answered twice");
        seen[i] = true;
        let (off, len) = reads[i];
        assert!(
            data == file[off as usize..(off + len as u64) as usize],
            "read {i} ({off}, {len}) differs from the file"
        );
    }
}

fn sendfile_reads(server: &NbdServer) -> u64 {
    server.list().iter().find(|e| e.name == "vol").unwrap().sendfile_reads
}

#[tokio::test]
async fn large_reads_over_sockets_use_sendfile_and_match_the_file() {
    let fx = fixture();
    let data = pattern(SIZE as usize, 42);
    std::fs::OpenOptions::new().write(true).open(&fx.path).unwrap().write_all_at(&data, 0).unwrap();
    let sock = fx._dir.path().join("nbd.sock");
    fx.server.listen_unix(&sock).await.unwrap();
    let tcp = fx.server.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();

    // A lone reader whose copies keep up (each READ waits for the previous reply) never uses
    // sendfile: its client would copy out of page-cache pages, which costs it more.
    let mut a = Client { s: tokio::net::UnixStream::connect(&sock).await.unwrap(), server_task: None };
    a.go("vol", true).await;
    for i in 0..8u64 {
        a.request(CMD_READ, 0, i, i << 20, 1 << 20, &[]).await;
        match a.reply().await {
            Reply::Chunk { kind: REPLY_TYPE_OFFSET_DATA, cookie, payload, .. } if cookie == i => {
                assert!(payload[8..] == data[(i << 20) as usize..((i + 1) << 20) as usize]);
            }
            r => panic!("{r:?}"),
        }
    }
    assert_eq!(sendfile_reads(&fx.server), 0);

    // Pipelined large READs arrive while earlier ones are still copying: the surplus goes out
    // with sendfile (rounds repeat in case a loaded machine lets every copy finish in time).
    for _ in 0..50 {
        check_pipelined_reads(&mut a, &data, true).await;
        if sendfile_reads(&fx.server) > 0 {
            break;
        }
    }
    let lone = sendfile_reads(&fx.server);
    assert!(lone > 0, "a lone pipelining reader never used sendfile");

    // A second one (simple replies, over TCP): from now on both send large cached reads with
    // sendfile; the data still matches, in both reply formats and on both transports.
    let mut b = Client { s: tokio::net::TcpStream::connect(tcp).await.unwrap(), server_task: None };
    b.go("vol", false).await;
    check_pipelined_reads(&mut b, &data, false).await;
    check_pipelined_reads(&mut a, &data, true).await;
    check_pipelined_reads(&mut b, &data, false).await;
    let after = sendfile_reads(&fx.server);
    assert!(after >= lone + 10, "sendfile used for {} reads by two readers", after - lone);

    // Pages not in the page cache are read on the blocking pool instead (never sendfile, which
    // would wait for the disk on the runtime thread). Dropping clean pages needs them written
    // back first.
    let f = std::fs::File::open(&fx.path).unwrap();
    f.sync_all().unwrap();
    nix::fcntl::posix_fadvise(&f, 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED).unwrap();
    assert!(!super::io::fully_cached(&f, 5 << 20, 2 << 20).unwrap(), "the kernel kept the pages cached");
    c_read_uncached(&mut a, &data).await;
    assert_eq!(sendfile_reads(&fx.server), after, "an uncached read went out with sendfile");

    // A write between reads is seen by the next read on either connection.
    let new = pattern(70_000, 7);
    a.request(CMD_WRITE, 0, 1, 2 << 20, new.len() as u32, &new).await;
    assert_eq!(chunk_error(&a.reply().await), None);
    b.request(CMD_READ, 0, 2, 2 << 20, new.len() as u32, &[]).await;
    assert_eq!(b.reply().await, Reply::Simple { error: 0, cookie: 2 });
    assert!(b.read_n(new.len()).await == new);

    a.request(CMD_DISC, 0, 0, 0, 0, &[]).await;
    assert!(a.closed().await);
    drop(b);
    fx.server.shutdown().await;
}

/// One large READ of a range just dropped from the page cache.
async fn c_read_uncached(c: &mut Client<tokio::net::UnixStream>, data: &[u8]) {
    let (off, len) = (5u64 << 20, 2u32 << 20);
    c.request(CMD_READ, 0, 200, off, len, &[]).await;
    match c.reply().await {
        Reply::Chunk { kind: REPLY_TYPE_OFFSET_DATA, cookie: 200, payload, .. } => {
            assert!(payload[8..] == data[off as usize..(off + len as u64) as usize]);
        }
        r => panic!("{r:?}"),
    }
}

#[tokio::test]
async fn a_bulk_reader_keeps_answering_everything_and_still_closes_on_removal() {
    let fx = fixture_with(NbdConfig { shutdown_grace: Duration::from_millis(200), ..Default::default() });
    let data = pattern(SIZE as usize, 9);
    std::fs::OpenOptions::new().write(true).open(&fx.path).unwrap().write_all_at(&data, 0).unwrap();
    let mut c = fx.connect();
    c.go("vol", true).await;
    // Reads over 256 KiB move the connection's writer into its reader task; everything after
    // that must still be answered: pipelined large and small reads, writes, FUA, FLUSH.
    check_pipelined_reads(&mut c, &data, true).await;
    let mut file = data.clone();
    let small = pattern(4096, 3);
    let mut expect = Vec::new();
    // More requests than the connection's 64 slots: the reader must let the writer run while
    // it waits for one.
    for i in 0..100u64 {
        let cookie = 1000 + i;
        match i % 4 {
            0 => c.request(CMD_READ, 0, cookie, i * 65_536, 4096, &[]).await,
            1 => {
                let off = (1 << 20) + i * 8192;
                c.request(CMD_WRITE, if i % 8 == 1 { CMD_FLAG_FUA } else { 0 }, cookie, off, 4096, &small).await;
                file[off as usize..off as usize + 4096].copy_from_slice(&small);
            }
            2 => c.request(CMD_READ, 0, cookie, (3 << 20) + i, 600_000, &[]).await,
            _ => c.request(CMD_FLUSH, 0, cookie, 0, 0, &[]).await,
        }
        expect.push(cookie);
    }
    let mut seen = Vec::new();
    for _ in 0..expect.len() {
        let r = c.reply().await;
        assert_eq!(chunk_error(&r), None, "{r:?}");
        let cookie = cookie_of(&r);
        if let Reply::Chunk { kind: REPLY_TYPE_OFFSET_DATA, payload, .. } = &r {
            let off = u64::from_be_bytes(payload[..8].try_into().unwrap()) as usize;
            // Reads do not overlap the writes of this batch, so the original data is expected.
            assert!(payload[8..] == data[off..off + payload.len() - 8], "read {cookie} differs");
        }
        seen.push(cookie);
    }
    seen.sort_unstable();
    assert_eq!(seen, expect);
    let mut on_disk = vec![0u8; file.len()];
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut on_disk, 0).unwrap();
    assert!(on_disk == file, "the writes did not land");

    // A client that stops reading replies stalls itself; removing the export still closes the
    // connection within the grace period.
    for i in 0..64u64 {
        c.request(CMD_READ, 0, 5000 + i, 0, 1 << 20, &[]).await;
    }
    assert!(tokio::time::timeout(T, fx.server.remove_export("vol")).await.unwrap());
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(T, c.s.read_to_end(&mut rest)).await.expect("connection not closed");
}

/// Whether `c` is closed by the server: polls for up to 20 ms (a bounded peek, not a sleep).
async fn closed_now<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut b = [0u8; 1];
    matches!(tokio::time::timeout(Duration::from_millis(20), s.read(&mut b)).await, Ok(Ok(0)) | Ok(Err(_)))
}

#[tokio::test]
async fn idle_connection_is_closed_while_an_active_one_keeps_working() {
    let fx = fixture_with(NbdConfig { idle_timeout: Duration::from_millis(300), ..Default::default() });
    let mut idle = fx.connect();
    idle.go("vol", true).await;
    let mut busy = fx.connect();
    busy.go("vol", true).await;
    let start = std::time::Instant::now();
    let mut cookie = 0;
    loop {
        assert!(start.elapsed() < T, "idle connection never closed");
        cookie += 1;
        busy.request(CMD_READ, 0, cookie, 0, 512, &[]).await;
        assert_eq!(chunk_error(&busy.reply().await), None);
        if closed_now(&mut idle.s).await {
            break;
        }
    }
    assert!(start.elapsed() >= Duration::from_millis(300));
    // The busy one outlived the idle timeout and still works.
    busy.request(CMD_READ, 0, 0, 0, 512, &[]).await;
    assert_eq!(chunk_error(&busy.reply().await), None);
}

#[tokio::test]
async fn per_address_cap_refuses_one_more_from_that_address_only() {
    let fx = fixture_with(NbdConfig { max_connections_per_address: 2, ..Default::default() });
    let addr = fx.server.listen_tcp("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let connect_from = |ip: &'static str| async move {
        let sock = tokio::net::TcpSocket::new_v4().unwrap();
        sock.bind(format!("{ip}:0").parse().unwrap()).unwrap();
        Client { s: sock.connect(addr).await.unwrap(), server_task: None }
    };
    let mut a = connect_from("127.0.0.1").await;
    a.read_n(GREETING_LEN).await;
    let mut b = connect_from("127.0.0.1").await;
    b.read_n(GREETING_LEN).await;
    let mut c = connect_from("127.0.0.1").await;
    assert!(c.closed().await, "third connection from one address was served");
    // Another address is not affected.
    let mut other = connect_from("127.0.0.2").await;
    other.go("vol", true).await;
    // Once one closes, that address may connect again.
    drop(a);
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < T, "slot never freed");
        let mut d = connect_from("127.0.0.1").await;
        let mut g = vec![0u8; GREETING_LEN];
        if tokio::time::timeout(T, d.s.read_exact(&mut g)).await.is_ok_and(|r| r.is_ok()) {
            break;
        }
    }
    drop(b);
}

#[tokio::test]
async fn per_export_cap_refuses_go_with_policy_error() {
    let fx = fixture_with(NbdConfig { max_connections_per_export: 1, ..Default::default() });
    let mut first = fx.connect();
    first.go("vol", true).await;
    let mut second = fx.connect();
    second.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
    let r = second.option(OPT_GO, &encode_info_payload("vol", &[])).await;
    assert_eq!(r.last().unwrap().reply_type, REP_ERR_POLICY, "{r:?}");
    assert!(second.closed().await);
    // Another export, and the first connection, are unaffected.
    let mut other = fx.connect();
    other.go("ro", true).await;
    first.request(CMD_READ, 0, 1, 0, 512, &[]).await;
    assert_eq!(chunk_error(&first.reply().await), None);
    // Once the first is gone, the export takes a connection again.
    drop(first);
    let start = std::time::Instant::now();
    loop {
        assert!(start.elapsed() < T, "export slot never freed");
        let mut c = fx.connect();
        c.greet(FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES).await;
        let r = c.option(OPT_GO, &encode_info_payload("vol", &[])).await;
        if r.last().unwrap().reply_type == REP_ACK {
            break;
        }
    }
}

#[tokio::test]
async fn partial_large_writes_cannot_buffer_more_than_the_budget() {
    let budget = proto::MAX_PAYLOAD as usize;
    let fx = fixture_with(NbdConfig {
        max_buffered_bytes: budget,
        request_timeout: Duration::from_secs(3),
        ..Default::default()
    });
    // Each attacker sends an 8 MiB WRITE header (the whole export) and 512 KiB of its payload,
    // then stalls: four fill the budget, the other four must not be buffered.
    let mut attackers = Vec::new();
    for i in 0..8u64 {
        let mut c = fx.connect();
        c.go("vol", true).await;
        c.request(CMD_WRITE, 0, i, 0, SIZE as u32, &vec![7u8; 512 << 10]).await;
        attackers.push(c);
    }
    let start = std::time::Instant::now();
    while fx.server.buffered_bytes() < budget {
        assert!(start.elapsed() < T, "the budget was never used up");
        tokio::task::yield_now().await;
    }
    // A well-behaved client's READs are served meanwhile, and the budget is never exceeded.
    let mut good = fx.connect();
    good.go("vol", true).await;
    for cookie in 0..20 {
        assert!(fx.server.buffered_bytes() <= budget);
        good.request(CMD_READ, 0, cookie, 0, 4096, &[]).await;
        assert_eq!(chunk_error(&good.reply().await), None);
    }
    // Its small WRITEs complete too, from its own share, while the stalled ones still hold the
    // whole budget (they are closed only at the request timeout).
    for cookie in 100..120 {
        good.request(CMD_WRITE, 0, cookie, 0, 4096, &[1u8; 4096]).await;
        assert_eq!(chunk_error(&good.reply().await), None);
    }
    assert_eq!(fx.server.buffered_bytes(), budget, "the attackers still hold the budget");
    for mut a in attackers {
        assert!(a.closed().await, "stalled writer not closed");
    }
    let start = std::time::Instant::now();
    while fx.server.buffered_bytes() != 0 {
        assert!(start.elapsed() < T, "budget not released");
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn readers_that_never_take_their_replies_are_bounded_and_closed() {
    let budget = proto::MAX_PAYLOAD as usize;
    let fx = fixture_with(NbdConfig {
        max_buffered_bytes: budget,
        request_timeout: Duration::from_secs(2),
        ..Default::default()
    });
    // 64 READs of 1 MiB (twice the budget) whose replies are never read.
    let mut hog = fx.connect();
    hog.go("vol", true).await;
    for cookie in 0..64u64 {
        hog.request(CMD_READ, 0, cookie, (cookie % 8) << 20, 1 << 20, &[]).await;
    }
    let start = std::time::Instant::now();
    while fx.server.buffered_bytes() < budget / 2 {
        assert!(start.elapsed() < T, "READ replies are not counted in the budget");
        assert!(fx.server.buffered_bytes() <= budget);
        tokio::task::yield_now().await;
    }
    // Another client's small requests go on meanwhile.
    let mut good = fx.connect();
    good.go("vol", true).await;
    for cookie in 0..20 {
        good.request(CMD_READ, 0, cookie, 4096, 4096, &[]).await;
        assert_eq!(chunk_error(&good.reply().await), None);
        good.request(CMD_WRITE, 0, 100 + cookie, 8192, 4096, &[3u8; 4096]).await;
        assert_eq!(chunk_error(&good.reply().await), None);
        assert!(fx.server.buffered_bytes() <= budget);
    }
    // The hog takes nothing for the request timeout: it is closed and its memory comes back.
    let start = std::time::Instant::now();
    while fx.server.buffered_bytes() != 0 {
        assert!(start.elapsed() < T, "a reader that never drains keeps its replies forever");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(hog);
}

#[tokio::test]
async fn quiesce_holds_writes_until_released_and_reads_go_on() {
    let fx = fixture();
    let mut w = fx.connect();
    w.go("vol", true).await;
    let mut r = fx.connect();
    r.go("vol", true).await;
    w.request(CMD_WRITE, 0, 1, 0, 4, b"aaaa").await;
    assert_eq!(chunk_error(&w.reply().await), None);
    let held = fx.server.quiesce(&["vol".to_string(), "no-such".to_string()], T).await.unwrap();
    assert_eq!(held.len(), 1);
    // A small write (done inline) and a large one (batched): neither lands while held.
    w.request(CMD_WRITE, 0, 2, 0, 4, b"bbbb").await;
    let big = vec![b'c'; 256 * 1024];
    w.request(CMD_WRITE, 0, 3, 4096, big.len() as u32, &big).await;
    // Nothing is answered, so nothing is half-read when the wait gives up.
    assert!(tokio::time::timeout(Duration::from_millis(300), w.reply()).await.is_err(), "a write went through");
    let mut b = [0u8; 4];
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"aaaa");
    // Another connection still reads.
    r.request(CMD_READ, 0, 9, 0, 4, &[]).await;
    assert_eq!(chunk_error(&r.reply().await), None);
    // A second quiesce of the same export waits for the first one.
    let server = fx.server.clone();
    assert!(server.quiesce(&["vol".to_string()], Duration::from_millis(200)).await.is_err());
    drop(held);
    let mut cookies = vec![cookie_of(&w.reply().await), cookie_of(&w.reply().await)];
    cookies.sort();
    assert_eq!(cookies, vec![2, 3]);
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut b, 0).unwrap();
    assert_eq!(&b, b"bbbb");
    let mut c = vec![0u8; big.len()];
    std::fs::File::open(&fx.path).unwrap().read_exact_at(&mut c, 4096).unwrap();
    assert_eq!(c, big);
    // And a new quiesce succeeds once the writes are done.
    assert_eq!(fx.server.quiesce(&["vol".to_string()], T).await.unwrap().len(), 1);
}
