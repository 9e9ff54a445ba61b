//! The transmission phase of one connection.
//!
//! The reader (this task) decodes request headers, checks each request before any I/O, reads
//! WRITE payloads, and hands every request to `spawn_blocking`; the blocking job does the file
//! call and encodes the complete reply; a writer task sends replies in completion order (out of
//! order, matched by cookie) and batches small ones into one syscall.
//!
//! Invariants:
//! - at most `max_requests` requests and `max_bytes` READ/WRITE payload bytes are in flight per
//!   connection (permits travel with the reply and are released once it is written), so a client
//!   that stops reading replies stalls itself, not the server's memory;
//! - a malformed header (bad magic) ends the connection: the stream cannot be resynchronised;
//!   every other bad request gets an error reply (its WRITE payload is read and discarded);
//! - on stop (export removed, server shutdown) the reader stops at once; replies to requests in
//!   flight are still sent for up to `shutdown_grace`, then the socket is dropped.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use super::io;
use super::negotiate::Negotiated;
use super::proto::{self, Request, Session};
use super::server::{ExportEntry, NbdConfig};

/// One encoded reply (or a batch of inline replies), with the permits it holds until written.
struct Reply {
    buf: Vec<u8>,
    _slot: Option<OwnedSemaphorePermit>,
    _bytes: Option<OwnedSemaphorePermit>,
    _batch: Vec<OwnedSemaphorePermit>,
}

/// READs and WRITEs up to this size are first tried inline on the reader task with
/// `RWF_NOWAIT` (page-cache hits need no thread hop); larger ones, and misses, go to the
/// blocking pool where several can copy in parallel.
const INLINE_MAX: u32 = 128 * 1024;
/// Inline replies are handed to the writer in one message once this many bytes are pending,
/// or earlier when the reader is about to wait for the socket.
const BATCH_BYTES: usize = 256 * 1024;

/// Replies answered inline and not yet handed to the writer, with their permits.
#[derive(Default)]
struct Pending {
    buf: Vec<u8>,
    permits: Vec<OwnedSemaphorePermit>,
}

impl Pending {
    /// Hand everything pending to the writer. Must be called before the reader waits on
    /// anything (socket, permits), or the permits held here could deadlock it.
    fn flush(&mut self, tx: &mpsc::UnboundedSender<Reply>) {
        if self.buf.is_empty() {
            return;
        }
        let buf = std::mem::take(&mut self.buf);
        let permits = std::mem::take(&mut self.permits);
        let _ = tx.send(Reply { buf, _slot: None, _bytes: None, _batch: permits });
    }

    fn push(&mut self, slot: OwnedSemaphorePermit, bytes: Option<OwnedSemaphorePermit>) {
        self.permits.push(slot);
        if let Some(b) = bytes {
            self.permits.push(b);
        }
    }
}

/// Stop signals a connection obeys: server shutdown and removal of its export.
#[derive(Clone)]
pub(crate) struct Stop {
    server: watch::Receiver<bool>,
    export: Option<watch::Receiver<bool>>,
}

impl Stop {
    pub(crate) fn new(server: watch::Receiver<bool>, export: Option<watch::Receiver<bool>>) -> Self {
        Stop { server, export }
    }

    /// Resolves once either signal is raised (or its sender is gone).
    pub(crate) async fn wait(&mut self) {
        let server = &mut self.server;
        let export = &mut self.export;
        tokio::select! {
            _ = server.wait_for(|v| *v) => {}
            _ = async {
                match export {
                    Some(rx) => { let _ = rx.wait_for(|v| *v).await; }
                    None => std::future::pending::<()>().await,
                }
            } => {}
        }
    }
}

/// Serve requests until the client disconnects, sends DISC, breaks the framing, or `stop` fires.
pub(crate) async fn run<R, W>(mut rd: BufReader<R>, wr: W, neg: Negotiated, config: &NbdConfig, mut stop: Stop)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Negotiated { entry, guard, session, .. } = neg;
    // In-flight jobs keep the connection counted as a user of the export until they finish.
    let guard = Arc::new(guard);
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let writer = tokio::spawn(write_replies(wr, rx, stop.clone(), config.shutdown_grace));
    let slots = Arc::new(Semaphore::new(config.max_requests_per_connection.max(1)));
    let max_bytes = config.max_bytes_per_connection.clamp(proto::MAX_PAYLOAD as usize, u32::MAX as usize) as u32;
    let bytes = Arc::new(Semaphore::new(max_bytes as usize));
    let mut pending = Pending::default();
    let mut nowait_reads = std::env::var("CB_NO_INLINE_READ").is_err();
    let mut nowait_writes = std::env::var("CB_NO_INLINE_WRITE").is_err();

    loop {
        if rd.buffer().len() < proto::REQUEST_HEADER_LEN {
            pending.flush(&tx);
        }
        let mut hb = [0u8; proto::REQUEST_HEADER_LEN];
        tokio::select! {
            biased;
            _ = stop.wait() => break,
            _ = tx.closed() => break,
            r = rd.read_exact(&mut hb) => if r.is_err() { break },
        }
        let req = match proto::parse_request(&hb) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(export = %entry.name, error = %e, "nbd: bad request header, closing");
                break;
            }
        };
        if req.command == proto::CMD_DISC {
            break;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                pending.flush(&tx);
                tokio::select! {
                    biased;
                    _ = stop.wait() => break,
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                }
            }
        };

        if let Err(err) = proto::validate_request(&req, &session) {
            let payload = req.payload_len();
            if payload > 0 {
                pending.flush(&tx);
                let discard = async {
                    let mut take = (&mut rd).take(payload as u64);
                    tokio::io::copy(&mut take, &mut tokio::io::sink()).await
                };
                let ok = tokio::select! {
                    biased;
                    _ = stop.wait() => false,
                    r = discard => matches!(r, Ok(n) if n == payload as u64),
                };
                if !ok {
                    break;
                }
            }
            let msg = format!("request refused: {}", proto::nbd_error_name(err));
            proto::encode_error_reply(&mut pending.buf, session.structured, req.cookie, err, &msg);
            pending.push(slot, None);
            continue;
        }

        let cost = match req.command {
            proto::CMD_READ | proto::CMD_WRITE => req.length.min(max_bytes),
            _ => 0,
        };
        let bytes_permit = if cost > 0 {
            match bytes.clone().try_acquire_many_owned(cost) {
                Ok(p) => Some(p),
                Err(_) => {
                    pending.flush(&tx);
                    tokio::select! {
                        biased;
                        _ = stop.wait() => break,
                        p = bytes.clone().acquire_many_owned(cost) => match p { Ok(p) => Some(p), Err(_) => break },
                    }
                }
            }
        } else {
            None
        };
        let payload = if req.command == proto::CMD_WRITE {
            if rd.buffer().len() < req.length as usize {
                pending.flush(&tx);
            }
            let mut v = vec![0u8; req.length as usize];
            let ok = tokio::select! {
                biased;
                _ = stop.wait() => false,
                r = rd.read_exact(&mut v) => r.is_ok(),
            };
            if !ok {
                break;
            }
            v
        } else {
            Vec::new()
        };

        // Fast path: page-cache hits answered right here.
        let fua = req.flags & proto::CMD_FLAG_FUA != 0;
        if req.command == proto::CMD_READ && nowait_reads && req.length > 0 && req.length <= INLINE_MAX {
            let start = pending.buf.len();
            let prefix = encode_read_prefix(&mut pending.buf, &session, &req);
            pending.buf.resize(start + prefix + req.length as usize, 0);
            match io::read_nowait(&entry.file, &mut pending.buf[start + prefix..], req.offset) {
                io::NoWait::Done => {
                    pending.push(slot, bytes_permit);
                    if pending.buf.len() >= BATCH_BYTES {
                        pending.flush(&tx);
                    }
                    continue;
                }
                io::NoWait::Retry => pending.buf.truncate(start),
                io::NoWait::Unsupported => {
                    pending.buf.truncate(start);
                    nowait_reads = false;
                }
            }
        } else if req.command == proto::CMD_WRITE && nowait_writes && !fua && req.length <= INLINE_MAX {
            match io::write_nowait(&entry.file, &payload, req.offset) {
                io::NoWait::Done => {
                    proto::encode_ok_reply(&mut pending.buf, session.structured, req.cookie);
                    pending.push(slot, bytes_permit);
                    continue;
                }
                io::NoWait::Retry => {}
                io::NoWait::Unsupported => nowait_writes = false,
            }
        }

        let entry = entry.clone();
        let tx = tx.clone();
        let guard = guard.clone();
        tokio::task::spawn_blocking(move || {
            let buf = execute(&entry, &session, &req, &payload);
            drop(payload);
            let _ = tx.send(Reply { buf, _slot: Some(slot), _bytes: bytes_permit, _batch: Vec::new() });
            drop(guard);
        });
    }
    pending.flush(&tx);
    drop(tx);
    let _ = writer.await;
}

/// Send replies as they complete; batch whatever is ready into one flush.
async fn write_replies<W>(wr: W, mut rx: mpsc::UnboundedReceiver<Reply>, mut stop: Stop, grace: Duration)
where
    W: AsyncWrite + Unpin,
{
    let mut wr = BufWriter::with_capacity(256 * 1024, wr);
    let deadline = async move {
        stop.wait().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline);
    loop {
        let first = tokio::select! {
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = &mut deadline => return,
        };
        let batch = async {
            wr.write_all(&first.buf).await?;
            drop(first);
            while let Ok(m) = rx.try_recv() {
                wr.write_all(&m.buf).await?;
            }
            wr.flush().await
        };
        let ok = tokio::select! {
            r = batch => r.is_ok(),
            _ = &mut deadline => false,
        };
        if !ok {
            return;
        }
    }
    let _ = tokio::time::timeout(grace, wr.shutdown()).await;
}

/// Do one checked request on the export's file and encode its complete reply. Blocking.
fn execute(entry: &ExportEntry, s: &Session, req: &Request, payload: &[u8]) -> Vec<u8> {
    let file = &entry.file;
    let fua = req.flags & proto::CMD_FLAG_FUA != 0;
    let res = match req.command {
        proto::CMD_READ => return read_reply(entry, s, req),
        proto::CMD_BLOCK_STATUS => {
            let req_one = req.flags & proto::CMD_FLAG_REQ_ONE != 0;
            match io::extents(file, req.offset, req.length, req_one, io::MAX_EXTENTS) {
                Ok(ext) => {
                    let mut buf = Vec::with_capacity(proto::CHUNK_HEADER_LEN + 4 + 8 * ext.len());
                    proto::encode_block_status_chunk(&mut buf, req.cookie, proto::META_BASE_ALLOCATION_ID, &ext);
                    return buf;
                }
                Err(e) => Err(e),
            }
        }
        proto::CMD_WRITE => io::write(file, payload, req.offset, fua),
        proto::CMD_FLUSH => io::flush(file),
        proto::CMD_TRIM => io::trim(file, req.offset, req.length, fua),
        proto::CMD_WRITE_ZEROES => io::write_zeroes(
            file,
            req.offset,
            req.length,
            req.flags & proto::CMD_FLAG_NO_HOLE != 0,
            req.flags & proto::CMD_FLAG_FAST_ZERO != 0,
            fua,
        ),
        proto::CMD_CACHE => {
            if req.length == 0 {
                Ok(())
            } else {
                io::cache(file, req.offset, req.length)
            }
        }
        _ => Err(std::io::Error::from_raw_os_error(proto::EINVAL as i32)),
    };
    let mut buf = Vec::with_capacity(64);
    match res {
        Ok(()) => proto::encode_ok_reply(&mut buf, s.structured, req.cookie),
        Err(e) => {
            let err = proto::errno_to_nbd(e.raw_os_error().unwrap_or(proto::EIO as i32));
            if err != proto::ENOTSUP {
                tracing::warn!(export = %entry.name, command = req.command, offset = req.offset, length = req.length, error = %e, "nbd: request failed");
            }
            proto::encode_error_reply(&mut buf, s.structured, req.cookie, err, &e.to_string());
        }
    }
    buf
}

/// READ: one `OFFSET_DATA` chunk (structured) or a simple reply followed by the data.
fn read_reply(entry: &ExportEntry, s: &Session, req: &Request) -> Vec<u8> {
    let len = req.length as usize;
    if s.structured && len == 0 {
        let mut buf = Vec::with_capacity(proto::CHUNK_HEADER_LEN);
        proto::encode_none_chunk(&mut buf, req.cookie);
        return buf;
    }
    let mut buf = Vec::with_capacity(proto::OFFSET_DATA_PREFIX_LEN + len);
    let prefix = encode_read_prefix(&mut buf, s, req);
    buf.resize(prefix + len, 0);
    match io::read(&entry.file, &mut buf[prefix..], req.offset) {
        Ok(()) => buf,
        Err(e) => {
            tracing::warn!(export = %entry.name, offset = req.offset, length = req.length, error = %e, "nbd: read failed");
            let err = proto::errno_to_nbd(e.raw_os_error().unwrap_or(proto::EIO as i32));
            buf.clear();
            proto::encode_error_reply(&mut buf, s.structured, req.cookie, err, &e.to_string());
            buf
        }
    }
}

/// Append the header that precedes READ data (an `OFFSET_DATA` chunk header or a simple reply);
/// returns its length.
fn encode_read_prefix(buf: &mut Vec<u8>, s: &Session, req: &Request) -> usize {
    if s.structured {
        proto::encode_offset_data_header(buf, req.cookie, req.offset, req.length);
        proto::OFFSET_DATA_PREFIX_LEN
    } else {
        proto::encode_simple_reply(buf, req.cookie, 0);
        proto::SIMPLE_REPLY_LEN
    }
}
