//! The transmission phase of one connection.
//!
//! The reader (this task) decodes request headers, checks each request before any I/O and reads
//! WRITE payloads. Then:
//! - a READ of at least `SENDFILE_MIN` bytes that the page cache holds (`cachestat`), on a
//!   socket, is sent by the writer with `sendfile` (see `sink`) while several connections make
//!   such READs on the export, or while another READ of this connection is still copying on the
//!   blocking pool: no copy through our memory, a fraction of the server CPU per byte. The
//!   client then copies out of page-cache pages rather than freshly written socket buffers,
//!   which costs it about a fifth more, so a lone bulk reader whose copies keep up (the client
//!   is the narrow end) keeps `pread` + `send`, and one whose copies fall behind (the server is
//!   the narrow end, as when client and server share a small machine) sends the surplus with
//!   `sendfile`, which balances the two. An idle side connection, like the one fio keeps open,
//!   does not count as a reader. Measured on 2 vCPUs, fio 1 MiB reads at QD8 over one TCP
//!   connection, MiB/s: always `sendfile` 2,050–2,430 (client-bound), never 1,880–2,400
//!   (server-bound), this rule 2,450–3,020 (nbdkit 2,160–2,550); nbdcopy over several
//!   connections 4.5 GB/s with `sendfile`, 3.6 GB/s without;
//! - any other READ of at most `INLINE_MAX` bytes the page cache can serve
//!   (`preadv2(RWF_NOWAIT)`) is answered right here, no thread hop; larger READs and READs that
//!   would wait for the disk become their own `spawn_blocking` job, so they copy in parallel;
//! - a WRITE of at most `INLINE_WRITE_MAX` bytes without FUA is a buffered `pwrite` right here
//!   too (ext4 refuses `RWF_NOWAIT` for buffered writes, and a page-cache write costs less than
//!   the two thread hand-offs of the queue); a later FLUSH covers it, as it returned first;
//! - every other request (WRITE, FLUSH, TRIM, WRITE_ZEROES, CACHE, BLOCK_STATUS) goes to the
//!   connection's queue, drained by one blocking job at a time in rounds: a round runs what was
//!   queued, in order, with one `fdatasync` at the end when any of it asked for FUA or FLUSH (a
//!   group commit), and its replies travel as one message; a busy connection keeps its drainer
//!   running, so it pays no thread wake-up per request;
//! - a writer sends replies in completion order (out of order across jobs, matched by cookie),
//!   batching whatever is ready into one write; the bytes ahead of `sendfile` data go out with
//!   `MSG_MORE`, so a reply header shares its segment with the data. It runs as its own task
//!   until the connection makes a READ over `INLINE_MAX`, then inside the reader's task
//!   (`WriterSlot`).
//!
//! Invariants:
//! - at most `max_requests` requests and `max_bytes` READ/WRITE payload bytes are in flight per
//!   connection (permits travel with the reply and are released once it is written), so a client
//!   that stops reading replies stalls itself, not the server's memory;
//! - the reader hands over everything it holds (inline replies, the batch) before it waits for
//!   anything (socket, permits), so nothing it holds can be what it waits for, and every wait
//!   also polls the writer, which may run inside the reader's task;
//! - a reply to a FUA write or a FLUSH is sent only after `fdatasync` returned, and a FLUSH
//!   covers every write that was answered before it arrived (those ran in earlier or the same
//!   job, all on the one shared descriptor);
//! - a malformed header (bad magic) ends the connection: the stream cannot be resynchronised;
//!   every other bad request gets an error reply (its WRITE payload is read and discarded);
//! - a request that changes the file (WRITE, TRIM, WRITE_ZEROES) holds the export's write gate
//!   from after its payload arrived until it ran, so a quiesce (group snapshots) that holds the
//!   gate sees no write in flight and lets none start;
//! - on stop (export removed, server shutdown) the reader stops at once; replies to requests in
//!   flight are still sent for up to `shutdown_grace`, then the socket is dropped.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, watch, OwnedRwLockReadGuard, OwnedSemaphorePermit, Semaphore};

use super::io;
use super::negotiate::Negotiated;
use super::proto::{self, Request, Session};
use super::server::{BulkReader, ExportEntry, NbdConfig, TrackGuard};
use super::sink::ReplySink;

/// Encoded replies with the permits they hold until written, optionally followed by READ data
/// the writer sends straight from the file (see `sink`).
struct Reply {
    buf: Vec<u8>,
    tail: Option<FileTail>,
    _permits: Vec<OwnedSemaphorePermit>,
}

impl Reply {
    fn bytes(buf: Vec<u8>, permits: Vec<OwnedSemaphorePermit>) -> Reply {
        Reply { buf, tail: None, _permits: permits }
    }
}

/// READ data to send from the export's file right after a reply's bytes.
struct FileTail {
    entry: Arc<ExportEntry>,
    offset: u64,
    len: usize,
}

/// READs up to this size are first tried inline with `RWF_NOWAIT`; larger ones are worth a
/// thread hop, so that several copy in parallel on the blocking pool (fio 1 MiB reads over
/// TCP: +9% with 256 KiB here rather than 1 MiB).
const INLINE_MAX: u32 = 256 * 1024;
/// READs of at least this size are sent with `sendfile` when cached and the transport allows.
const SENDFILE_MIN: u32 = 64 * 1024;
/// WRITEs up to this size without FUA are done inline on the reader (a buffered `pwrite`).
const INLINE_WRITE_MAX: u32 = 64 * 1024;
/// Inline replies are handed to the writer once this many bytes are pending (or earlier, when
/// the reader is about to wait).
const PENDING_BYTES: usize = 256 * 1024;
/// A batch is dispatched once it holds this many requests or payload bytes (or earlier, when the
/// reader is about to wait).
const BATCH_REQUESTS: usize = 32;
const BATCH_BYTES: usize = 512 * 1024;

/// One checked request waiting for the drainer, with its permits.
struct Job {
    req: Request,
    payload: Vec<u8>,
    slot: OwnedSemaphorePermit,
    bytes: Option<OwnedSemaphorePermit>,
    /// The WRITE payload's memory (see [`admit`]), released once it is written.
    budget: Option<OwnedSemaphorePermit>,
    /// The export's write gate, held by a request that changes the file until it ran.
    gate: Option<OwnedRwLockReadGuard<()>>,
}

/// What the reader holds between two waits: inline replies and the next batch.
struct Held {
    inline: Vec<u8>,
    inline_permits: Vec<OwnedSemaphorePermit>,
    batch: Vec<Job>,
    batch_bytes: usize,
}

/// Context a blocking job needs.
#[derive(Clone)]
struct Shared {
    entry: Arc<ExportEntry>,
    session: Session,
    tx: mpsc::UnboundedSender<Reply>,
    queue: Arc<Queue>,
    // In-flight jobs keep the connection counted as a user of the export until they finish.
    _guard: Arc<TrackGuard>,
}

/// READ jobs of one connection still copying on the blocking pool.
#[derive(Default)]
struct Copying(AtomicUsize);

impl Copying {
    /// Count one job until the returned guard is dropped (also when the job panics).
    fn start(self: &Arc<Self>) -> CopyGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        CopyGuard(self.clone())
    }

    /// Whether a copy is still running: the copies are not keeping up with the requests.
    fn busy(&self) -> bool {
        self.0.load(Ordering::Relaxed) > 0
    }
}

/// One running READ job, counted in [`Copying`] while it lives.
struct CopyGuard(Arc<Copying>);

impl Drop for CopyGuard {
    fn drop(&mut self) {
        self.0 .0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Batched requests waiting for this connection's drainer: one blocking job that runs rounds
/// (everything queued so far, in order) until the queue is empty. While it runs, the reader only
/// appends, so a busy connection pays no thread wake-up per batch and rounds grow with the load.
#[derive(Default)]
struct Queue {
    state: std::sync::Mutex<QueueState>,
}

#[derive(Default)]
struct QueueState {
    jobs: Vec<Job>,
    running: bool,
}

impl Queue {
    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The drainer: run rounds until the queue is empty. The emptiness check and clearing
/// `running` happen under one lock, so a job appended concurrently is never stranded.
fn drain(sh: Shared) {
    loop {
        let jobs = {
            let mut st = sh.queue.lock();
            if st.jobs.is_empty() {
                st.running = false;
                return;
            }
            std::mem::take(&mut st.jobs)
        };
        // Reply in small chunks, so the client can refill its queue while the round goes on.
        let mut jobs = jobs.into_iter();
        loop {
            let chunk: Vec<Job> = jobs.by_ref().take(REPLY_CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            let (buf, permits) = run_batch(&sh.entry, &sh.session, chunk);
            let _ = sh.tx.send(Reply::bytes(buf, permits));
        }
    }
}

/// Jobs whose replies are sent together within a drainer round.
const REPLY_CHUNK: usize = 8;

impl Held {
    fn new() -> Held {
        Held { inline: Vec::new(), inline_permits: Vec::new(), batch: Vec::new(), batch_bytes: 0 }
    }

    /// Hand everything over: inline replies to the writer, the batch to the drainer.
    fn release(&mut self, sh: &Shared) {
        self.send_inline(sh);
        self.dispatch_batch(sh);
    }

    fn send_inline(&mut self, sh: &Shared) {
        if self.inline.is_empty() {
            return;
        }
        self.send_inline_then(sh, None);
    }

    /// Hand the inline replies to the writer, followed by `tail` (file data whose reply header
    /// is the last thing in `inline`).
    fn send_inline_then(&mut self, sh: &Shared, tail: Option<FileTail>) {
        let buf = std::mem::take(&mut self.inline);
        let permits = std::mem::take(&mut self.inline_permits);
        if buf.len() >= PENDING_BYTES / 2 {
            // It grew large: start the next one from the pool at a similar size.
            self.inline = io::pool::get(buf.len());
        }
        let _ = sh.tx.send(Reply { buf, tail, _permits: permits });
    }

    fn dispatch_batch(&mut self, sh: &Shared) {
        if self.batch.is_empty() {
            return;
        }
        self.batch_bytes = 0;
        let start = {
            let mut st = sh.queue.lock();
            st.jobs.append(&mut self.batch);
            !std::mem::replace(&mut st.running, true)
        };
        if start {
            let sh = sh.clone();
            tokio::task::spawn_blocking(move || drain(sh));
        }
    }

    fn push_inline_permits(
        &mut self,
        slot: OwnedSemaphorePermit,
        bytes: impl IntoIterator<Item = OwnedSemaphorePermit>,
    ) {
        self.inline_permits.push(slot);
        self.inline_permits.extend(bytes);
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

    /// Resolves once either signal is raised (or its sender is gone). Owned, so one future can
    /// be pinned for a whole loop instead of re-registering with the channels on every turn.
    pub(crate) async fn stopped(mut self) {
        self.wait().await
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
pub(crate) async fn run<R, W>(
    mut rd: BufReader<R>,
    wr: W,
    neg: Negotiated,
    config: &NbdConfig,
    budget: Arc<Semaphore>,
    stop: Stop,
) where
    R: AsyncRead + Unpin + Send + 'static,
    W: ReplySink,
{
    let mut send_file = wr.can_send_file();
    let Negotiated { entry, guard, session, .. } = neg;
    let (tx, rx) = mpsc::unbounded_channel::<Reply>();
    let (call_home, home) = tokio::sync::oneshot::channel();
    let out = Out { sink: wr, buf: Vec::with_capacity(OUT_CAP) };
    let grace = config.shutdown_grace;
    let limit = config.request_timeout;
    let mut writer = WriterSlot::Task(tokio::spawn(write_replies(out, rx, stop.clone(), grace, limit, Some(home))));
    let mut call_home = Some(call_home);
    let mut writer_done = false;
    let stopped = stop.clone().stopped();
    tokio::pin!(stopped);
    let sh = Shared { entry, session, tx, queue: Arc::new(Queue::default()), _guard: Arc::new(guard) };
    let max_requests = config.max_requests_per_connection.max(1);
    let slots = Arc::new(Semaphore::new(max_requests));
    let idle = config.idle_timeout;
    // This connection's own share of memory, beside the server-wide budget (see `admit`).
    let own = Arc::new(Semaphore::new(OWN_BYTES as usize));
    let max_bytes = config.max_bytes_per_connection.clamp(proto::MAX_PAYLOAD as usize, u32::MAX as usize) as u32;
    let bytes = Arc::new(Semaphore::new(max_bytes as usize));
    let mut held = Held::new();
    let mut nowait_reads = true;
    // Counts this connection among the export's bulk readers once it makes a large READ.
    let mut bulk: Option<BulkReader> = None;
    let copying = Arc::new(Copying::default());

    loop {
        if rd.buffer().len() < proto::REQUEST_HEADER_LEN {
            held.release(&sh);
        }
        if rd.buffer().is_empty() && !idle.is_zero() {
            // Wait for the next request's first byte (`fill_buf` is cancel-safe); a connection
            // that sends nothing for `idle_timeout` with nothing in flight is closed. The timer
            // is only armed if the socket has nothing ready (biased order).
            let mut got = false;
            loop {
                let timer = tokio::time::sleep(idle);
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    r = rd.fill_buf() => { got = matches!(r, Ok(b) if !b.is_empty()); break }
                    _ = &mut writer => { writer_done = true; break }
                    _ = timer => if slots.available_permits() == max_requests {
                        tracing::debug!(export = %sh.entry.name, "nbd: idle timeout, closing");
                        break;
                    },
                }
            }
            if !got {
                break;
            }
        }
        let mut hb = [0u8; proto::REQUEST_HEADER_LEN];
        // New requests come before writing: a moved-in writer would otherwise make them wait
        // behind a large `send` (read_exact is not cancel-safe, but the writer branch ends the
        // connection anyway). Once begun, the header must arrive within `request_timeout`.
        tokio::select! {
            biased;
            _ = &mut stopped => break,
            r = bounded(limit, rd.read_exact(&mut hb)) => if r.is_err() { break },
            _ = &mut writer => { writer_done = true; break }
        }
        let req = match proto::parse_request(&hb) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(export = %sh.entry.name, error = %e, "nbd: bad request header, closing");
                break;
            }
        };
        if req.command == proto::CMD_DISC {
            break;
        }
        let slot = match slots.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                held.release(&sh);
                tokio::select! {
                    biased;
                    _ = &mut stopped => break,
                    _ = &mut writer => { writer_done = true; break }
                    p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
                }
            }
        };

        if let Err(err) = proto::validate_request(&req, &sh.session) {
            let payload = req.payload_len();
            if payload > 0 {
                held.release(&sh);
                let discard = async {
                    let mut take = (&mut rd).take(payload as u64);
                    tokio::io::copy(&mut take, &mut tokio::io::sink()).await
                };
                let ok = tokio::select! {
                    biased;
                    _ = &mut stopped => false,
                    _ = &mut writer => { writer_done = true; false }
                    r = bounded(limit, discard) => matches!(r, Ok(n) if n == payload as u64),
                };
                if !ok {
                    break;
                }
            }
            let msg = format!("request refused: {}", proto::nbd_error_name(err));
            proto::encode_error_reply(&mut held.inline, sh.session.structured, req.cookie, err, &msg);
            held.push_inline_permits(slot, None);
            continue;
        }
        sh.entry.stats.request(req.command, req.length);
        // qos: the export's limits. Pausing here stops this connection reading, so a throttled
        // client is slowed by TCP back-pressure and holds no server memory meanwhile.
        if let Some(wait) = sh.entry.qos.reserve(req.command, req.length) {
            held.release(&sh);
            tokio::select! {
                biased;
                _ = &mut stopped => break,
                _ = &mut writer => { writer_done = true; break }
                _ = tokio::time::sleep(wait) => {}
            }
        }

        let cost = match req.command {
            proto::CMD_READ | proto::CMD_WRITE => req.length.min(max_bytes),
            _ => 0,
        };
        let bytes_permit = if cost > 0 {
            match bytes.clone().try_acquire_many_owned(cost) {
                Ok(p) => Some(p),
                Err(_) => {
                    held.release(&sh);
                    tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        _ = &mut writer => { writer_done = true; break }
                        p = bytes.clone().acquire_many_owned(cost) => match p { Ok(p) => Some(p), Err(_) => break },
                    }
                }
            }
        } else {
            None
        };
        // The data's memory (a READ's reply, a WRITE's payload) comes from this connection's
        // own share or the server-wide budget; when both are spent, this socket is not read
        // until earlier requests finish (backpressure, not memory).
        let mem_permit = if cost > 0 {
            match try_admit(&own, &budget, cost) {
                Some(p) => Some(p),
                None => {
                    held.release(&sh);
                    tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        _ = &mut writer => { writer_done = true; break }
                        p = admit(&own, &budget, cost) => match p { Some(p) => Some(p), None => break },
                    }
                }
            }
        } else {
            None
        };

        if req.command == proto::CMD_READ {
            // Large page-cache hits go out with sendfile (the writer sends the data from the
            // file right after this header, with no copy through our memory) when several
            // connections read in bulk or this one's copies are behind (see the module doc).
            if req.length >= SENDFILE_MIN && bulk.is_none() {
                bulk = Some(sh.entry.bulk_reader());
            }
            if send_file && req.length >= SENDFILE_MIN && (sh.entry.bulk_readers() > 1 || copying.busy()) {
                match io::fully_cached(&sh.entry.file, req.offset, req.length as u64) {
                    Ok(true) => {
                        encode_read_prefix(&mut held.inline, &sh.session, &req);
                        held.push_inline_permits(slot, bytes_permit.into_iter().chain(mem_permit));
                        sh.entry.sendfile_reads.fetch_add(1, Ordering::Relaxed);
                        let tail = FileTail { entry: sh.entry.clone(), offset: req.offset, len: req.length as usize };
                        held.send_inline_then(&sh, Some(tail));
                        continue;
                    }
                    Ok(false) => {}
                    Err(_) => send_file = false,
                }
            }
            // Fast path: a page-cache hit is answered right here.
            if nowait_reads && req.length > 0 && req.length <= INLINE_MAX {
                let start = held.inline.len();
                encode_read_prefix(&mut held.inline, &sh.session, &req);
                match io::read_append_nowait(&sh.entry.file, &mut held.inline, req.length as usize, req.offset) {
                    io::NoWait::Done => {
                        held.push_inline_permits(slot, bytes_permit.into_iter().chain(mem_permit));
                        if held.inline.len() >= PENDING_BYTES {
                            held.send_inline(&sh);
                        }
                        continue;
                    }
                    io::NoWait::Retry => held.inline.truncate(start),
                    io::NoWait::Unsupported => {
                        held.inline.truncate(start);
                        nowait_reads = false;
                    }
                }
            }
            // A connection that streams reads too large to answer inline runs its writer in
            // this task from now on (see `WriterSlot`).
            if req.length > INLINE_MAX {
                if let Some(tx_home) = call_home.take() {
                    held.release(&sh);
                    let _ = tx_home.send(());
                    let back = tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        r = &mut writer => r,
                    };
                    match back {
                        Some((out, rx)) => {
                            writer =
                                WriterSlot::Here(Box::pin(write_replies(out, rx, stop.clone(), grace, limit, None)));
                        }
                        None => {
                            writer_done = true;
                            break;
                        }
                    }
                }
            }
            // A miss: its own job, so several disk reads can be in flight.
            let sh2 = sh.clone();
            let copy = copying.start();
            tokio::task::spawn_blocking(move || {
                let mut buf = io::pool::get(proto::OFFSET_DATA_PREFIX_LEN + req.length as usize);
                read_reply(&mut buf, &sh2.entry, &sh2.session, &req);
                drop(copy);
                let mut permits = vec![slot];
                permits.extend(bytes_permit);
                permits.extend(mem_permit);
                let _ = sh2.tx.send(Reply::bytes(buf, permits));
            });
            continue;
        }

        let payload = if req.command == proto::CMD_WRITE {
            if rd.buffer().len() < req.length as usize {
                held.release(&sh);
            }
            // Read into spare capacity (no zero-filling); large payloads bypass the buffer.
            let mut v = io::pool::get(req.length as usize);
            let mut take = (&mut rd).take(req.length as u64);
            let ok = tokio::select! {
                biased;
                _ = &mut stopped => false,
                _ = &mut writer => { writer_done = true; false }
                r = bounded(limit, take.read_to_end(&mut v)) => matches!(r, Ok(n) if n == req.length as usize),
            };
            if !ok {
                break;
            }
            v
        } else {
            Vec::new()
        };
        // A request that changes the file runs under the export's write gate (see
        // `ExportEntry::gate`): while a quiesce holds it, this connection waits here, having
        // handed over everything it holds (whose guards the quiesce waits for).
        let gate = if matches!(req.command, proto::CMD_WRITE | proto::CMD_TRIM | proto::CMD_WRITE_ZEROES) {
            match sh.entry.gate.clone().try_read_owned() {
                Ok(g) => Some(g),
                Err(_) => {
                    held.release(&sh);
                    tokio::select! {
                        biased;
                        _ = &mut stopped => break,
                        _ = &mut writer => { writer_done = true; break }
                        g = sh.entry.gate.clone().read_owned() => Some(g),
                    }
                }
            }
        } else {
            None
        };
        if req.command == proto::CMD_WRITE && req.flags & proto::CMD_FLAG_FUA == 0 && req.length <= INLINE_WRITE_MAX {
            // A small buffered write lands in the page cache in microseconds: cheaper right here
            // than two thread hand-offs (drainer, writer). Durability comes from a later FLUSH,
            // which runs after this returned.
            let res = io::write(&sh.entry.file, &payload, req.offset, false);
            drop(gate);
            io::pool::put(payload);
            drop(mem_permit);
            encode_result(&mut held.inline, &sh.entry, &sh.session, &req, res);
            held.push_inline_permits(slot, bytes_permit);
            if held.inline.len() >= PENDING_BYTES {
                held.send_inline(&sh);
            }
            continue;
        }
        held.batch_bytes += payload.len();
        held.batch.push(Job { req, payload, slot, bytes: bytes_permit, budget: mem_permit, gate });
        if held.batch.len() >= BATCH_REQUESTS || held.batch_bytes >= BATCH_BYTES {
            held.dispatch_batch(&sh);
        }
    }
    held.release(&sh);
    drop(sh);
    if !writer_done {
        let _ = writer.await;
    }
}

/// Send replies as they complete; batch whatever is ready into one write.
/// Returns its output and queue when called home (between batches), `None` once done.
///
/// A client that takes no reply within `limit` (zero: no limit) is closed: its replies hold
/// memory of the server-wide budget, so a client that sends READs and never reads the answers
/// must not keep them forever.
async fn write_replies<W>(
    mut out: Out<W>,
    mut rx: mpsc::UnboundedReceiver<Reply>,
    mut stop: Stop,
    grace: Duration,
    limit: Duration,
    home: Option<tokio::sync::oneshot::Receiver<()>>,
) -> Option<WriterState<W>>
where
    W: ReplySink,
{
    let deadline = async move {
        stop.wait().await;
        tokio::time::sleep(grace).await;
    };
    tokio::pin!(deadline);
    let called_home = async move {
        match home {
            Some(h) => {
                if h.await.is_err() {
                    std::future::pending::<()>().await
                }
            }
            None => std::future::pending::<()>().await,
        }
    };
    tokio::pin!(called_home);
    loop {
        let first = tokio::select! {
            biased;
            _ = &mut called_home => return Some((out, rx)),
            m = rx.recv() => match m { Some(m) => m, None => break },
            _ = &mut deadline => return None,
        };
        let batch = async {
            bounded(limit, out.push(first)).await?;
            while let Ok(m) = rx.try_recv() {
                bounded(limit, out.push(m)).await?;
            }
            bounded(limit, out.flush()).await
        };
        let ok = tokio::select! {
            r = batch => r.is_ok(),
            _ = &mut deadline => false,
        };
        if !ok {
            return None;
        }
    }
    let _ = tokio::time::timeout(grace, out.sink.shutdown()).await;
    None
}

/// The writer's output and queue, as handed from its own task to the reader's.
type WriterState<W> = (Out<W>, mpsc::UnboundedReceiver<Reply>);

/// Where the writer runs. At first in its own task, so small replies are written on another
/// core while the reader goes on (4k random I/O: 10–20% more IOPS than with one task). Once the
/// connection makes a READ over `INLINE_MAX` (copied on the blocking pool), it moves into the
/// reader's task for good: every large reply then comes from a blocking job anyway, and the
/// reader, polling new requests before writing (see the header wait), hands the next copies to
/// the pool before it spends its turn on a 1 MiB `send` (fio 1 MiB reads, one connection: TCP
/// 3.0–3.1 GB/s instead of 2.9, unix 3.1–3.5 instead of 2.2–2.7). The reader polls it in every
/// wait, so replies, and the permits they release, always progress.
enum WriterSlot<W> {
    Task(tokio::task::JoinHandle<Option<WriterState<W>>>),
    Here(std::pin::Pin<Box<dyn std::future::Future<Output = Option<WriterState<W>>> + Send>>),
}

impl<W: ReplySink> std::future::Future for WriterSlot<W> {
    type Output = Option<WriterState<W>>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        match self.get_mut() {
            WriterSlot::Task(h) => std::pin::Pin::new(h).poll(cx).map(|r| r.ok().flatten()),
            WriterSlot::Here(f) => f.as_mut().poll(cx),
        }
    }
}

/// Replies smaller than this are gathered and written together.
const OUT_CAP: usize = 256 * 1024;

/// The writer's output: small replies are gathered into one write; large ones go out directly;
/// bytes ahead of file data are sent with `MSG_MORE`, so a header and its data share segments.
struct Out<W> {
    sink: W,
    buf: Vec<u8>,
}

impl<W: ReplySink> Out<W> {
    async fn push(&mut self, m: Reply) -> std::io::Result<()> {
        if self.buf.len() + m.buf.len() <= OUT_CAP {
            self.buf.extend_from_slice(&m.buf);
        } else {
            self.flush().await?;
            if m.tail.is_some() {
                self.sink.send_more(&m.buf).await?;
            } else {
                self.sink.write_all(&m.buf).await?;
            }
        }
        io::pool::put(m.buf);
        if let Some(t) = m.tail {
            if !self.buf.is_empty() {
                self.sink.send_more(&self.buf).await?;
                self.buf.clear();
            }
            self.sink.send_file(&t.entry.file, t.offset, t.len).await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.sink.write_all(&self.buf).await?;
            self.buf.clear();
        }
        Ok(())
    }
}

/// Run a batch in order and encode every reply. FUA is deferred to one `fdatasync` after the
/// batch (FLUSH too); the replies that needed it carry its error if it fails. Blocking.
fn run_batch(entry: &ExportEntry, s: &Session, jobs: Vec<Job>) -> (Vec<u8>, Vec<OwnedSemaphorePermit>) {
    let mut results: Vec<(Request, std::io::Result<()>, bool)> = Vec::with_capacity(jobs.len());
    let mut permits = Vec::with_capacity(2 * jobs.len());
    let mut buf = Vec::new();
    let mut need_sync = false;
    for Job { req, payload, slot, bytes, budget, gate } in jobs {
        permits.push(slot);
        permits.extend(bytes);
        let durable = req.command == proto::CMD_FLUSH || req.flags & proto::CMD_FLAG_FUA != 0;
        if req.command == proto::CMD_BLOCK_STATUS {
            // Its reply carries data: encode it now (success or error).
            block_status_reply(&mut buf, entry, s, &req);
            continue;
        }
        let res = execute(entry, &req, &payload);
        drop(gate);
        io::pool::put(payload);
        drop(budget);
        need_sync |= durable && res.is_ok();
        results.push((req, res, durable));
    }
    let sync = if need_sync { io::flush(&entry.file) } else { Ok(()) };
    for (req, res, durable) in results {
        let res = match (res, durable, &sync) {
            (Err(e), _, _) => Err(e),
            (Ok(()), true, Err(e)) => Err(std::io::Error::new(e.kind(), e.to_string())),
            (Ok(()), _, _) => Ok(()),
        };
        encode_result(&mut buf, entry, s, &req, res);
    }
    (buf, permits)
}

/// Memory every connection may use for request data beside the server-wide budget
/// (`max_buffered_bytes`): requests up to this size are admitted from it first, so a client
/// with small requests keeps going (here 4 × 64 KiB in flight) even when other clients hold the
/// whole budget. The server's bound is `max_buffered_bytes + max_connections × OWN_BYTES`.
pub(crate) const OWN_BYTES: u32 = 256 * 1024;

/// Admit `n` bytes of request data now, from the connection's own share (small requests) or the
/// server-wide budget; `None` when neither has room.
fn try_admit(own: &Arc<Semaphore>, shared: &Arc<Semaphore>, n: u32) -> Option<OwnedSemaphorePermit> {
    if n <= OWN_BYTES {
        if let Ok(p) = own.clone().try_acquire_many_owned(n) {
            return Some(p);
        }
    }
    shared.clone().try_acquire_many_owned(n).ok()
}

/// Wait until `n` bytes can be admitted (see [`try_admit`]): small requests take whichever
/// frees first, larger ones wait for the budget. `None` only when a semaphore is closed.
async fn admit(own: &Arc<Semaphore>, shared: &Arc<Semaphore>, n: u32) -> Option<OwnedSemaphorePermit> {
    if n <= OWN_BYTES {
        // Both acquires are cancel-safe: the one that loses gives back what it was assigned.
        tokio::select! {
            p = own.clone().acquire_many_owned(n) => p.ok(),
            p = shared.clone().acquire_many_owned(n) => p.ok(),
        }
    } else {
        shared.clone().acquire_many_owned(n).await.ok()
    }
}

/// `f`, failed with `TimedOut` unless it completes within `limit` (zero: no limit). The clock
/// is read once, and the timer armed only if `f` has to wait.
async fn bounded<F, T>(limit: Duration, f: F) -> std::io::Result<T>
where
    F: std::future::Future<Output = std::io::Result<T>>,
{
    if limit.is_zero() {
        return f.await;
    }
    match tokio::time::timeout(limit, f).await {
        Ok(r) => r,
        Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "request not received in time")),
    }
}

/// Encode the reply to a request without data: OK or the error.
fn encode_result(buf: &mut Vec<u8>, entry: &ExportEntry, s: &Session, req: &Request, res: std::io::Result<()>) {
    match res {
        Ok(()) => proto::encode_ok_reply(buf, s.structured, req.cookie),
        Err(e) => {
            let err = proto::errno_to_nbd(e.raw_os_error().unwrap_or(proto::EIO as i32));
            if err != proto::ENOTSUP {
                tracing::warn!(export = %entry.name, command = req.command, offset = req.offset, length = req.length, error = %e, "nbd: request failed");
            }
            proto::encode_error_reply(buf, s.structured, req.cookie, err, &e.to_string());
        }
    }
}

/// Do one checked, payload-only request (no sync: the batch does that). Blocking.
fn execute(entry: &ExportEntry, req: &Request, payload: &[u8]) -> std::io::Result<()> {
    let file = &entry.file;
    match req.command {
        proto::CMD_WRITE => io::write(file, payload, req.offset, false),
        proto::CMD_FLUSH => Ok(()),
        proto::CMD_TRIM => io::trim(file, req.offset, req.length, false),
        proto::CMD_WRITE_ZEROES => io::write_zeroes(
            file,
            req.offset,
            req.length,
            req.flags & proto::CMD_FLAG_NO_HOLE != 0,
            req.flags & proto::CMD_FLAG_FAST_ZERO != 0,
            false,
        ),
        proto::CMD_CACHE if req.length == 0 => Ok(()),
        proto::CMD_CACHE => io::cache(file, req.offset, req.length),
        _ => Err(std::io::Error::from_raw_os_error(proto::EINVAL as i32)),
    }
}

/// BLOCK_STATUS: one `BLOCK_STATUS` chunk for `base:allocation`, or an error.
fn block_status_reply(buf: &mut Vec<u8>, entry: &ExportEntry, s: &Session, req: &Request) {
    let req_one = req.flags & proto::CMD_FLAG_REQ_ONE != 0;
    match io::extents(&entry.file, req.offset, req.length, req_one, io::MAX_EXTENTS) {
        Ok(ext) => proto::encode_block_status_chunk(buf, req.cookie, proto::META_BASE_ALLOCATION_ID, &ext),
        Err(e) => {
            tracing::warn!(export = %entry.name, offset = req.offset, length = req.length, error = %e, "nbd: block status failed");
            let err = proto::errno_to_nbd(e.raw_os_error().unwrap_or(proto::EIO as i32));
            proto::encode_error_reply(buf, s.structured, req.cookie, err, &e.to_string());
        }
    }
}

/// READ: one `OFFSET_DATA` chunk (structured) or a simple reply followed by the data. Blocking.
fn read_reply(buf: &mut Vec<u8>, entry: &ExportEntry, s: &Session, req: &Request) {
    if s.structured && req.length == 0 {
        proto::encode_none_chunk(buf, req.cookie);
        return;
    }
    let start = buf.len();
    buf.reserve(proto::OFFSET_DATA_PREFIX_LEN + req.length as usize);
    encode_read_prefix(buf, s, req);
    if let Err(e) = io::read_append(&entry.file, buf, req.length as usize, req.offset) {
        tracing::warn!(export = %entry.name, offset = req.offset, length = req.length, error = %e, "nbd: read failed");
        let err = proto::errno_to_nbd(e.raw_os_error().unwrap_or(proto::EIO as i32));
        buf.truncate(start);
        proto::encode_error_reply(buf, s.structured, req.cookie, err, &e.to_string());
    }
}

/// Append the header that precedes READ data (an `OFFSET_DATA` chunk header or a simple reply).
fn encode_read_prefix(buf: &mut Vec<u8>, s: &Session, req: &Request) {
    if s.structured {
        proto::encode_offset_data_header(buf, req.cookie, req.offset, req.length);
    } else {
        proto::encode_simple_reply(buf, req.cookie, 0);
    }
}
