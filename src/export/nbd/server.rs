//! The NBD server: an export registry and listeners (TCP, unix socket).
//!
//! [`NbdServer`] is cheap to clone (an `Arc`). Exports are added and removed at run time;
//! removing one closes its live connections and waits until none is left using its file, so the
//! caller can then detach or delete the volume. [`NbdServer::shutdown`] stops the listeners and
//! closes every connection gracefully (replies in flight are still sent, bounded by
//! [`NbdConfig::shutdown_grace`]).
//!
//! Each export opens its file once; all connections share that descriptor and the page cache,
//! which is what makes `CAN_MULTI_CONN` safe (a FLUSH is `fdatasync` on that one file).
//!
//! Export names are secrets (the service gives each attachment an unguessable one): the
//! registry keeps only their SHA-256 ([`export_digest`]), so the service can store the digest
//! and re-register an export after a restart without ever storing the name, and `NBD_OPT_LIST`
//! answers `NBD_REP_ERR_POLICY` unless [`NbdConfig::allow_list`] says otherwise.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use tokio::io::{AsyncRead, AsyncWrite, BufReader};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinHandle;

use super::connection::{self, Stop};
use super::negotiate::{self, NegotiateError, Outcome};
use super::proto;
use super::sink::ReplySink;

/// Send buffer asked for on unix-socket connections (the kernel doubles it and caps it at
/// `net.core.wmem_max`). The default, `net.core.wmem_default` (208 KiB), holds a fifth of a
/// 1 MiB READ reply, so the writer and the client would take turns on every reply; TCP needs
/// nothing, it grows its buffer itself up to `net.ipv4.tcp_wmem`. Measured (2 vCPUs, fio 1 MiB
/// reads at QD8 over one unix connection, MiB/s): 1,616–1,667 with the default, 2,503–2,936
/// with this (nbdkit 1,564–1,597); 1,930–2,008 where `wmem_max` is left at its usual 208 KiB.
const UNIX_SNDBUF: usize = 4 << 20;

/// Limits and timeouts of the server.
#[derive(Debug, Clone)]
pub struct NbdConfig {
    /// Connections served at once; more are accepted and closed at once.
    pub max_connections: usize,
    /// Connections served at once from one source address (all unix-socket and in-process
    /// connections count as one address, "local"); more are accepted and closed at once.
    pub max_connections_per_address: usize,
    /// Connections in transmission on one export; one more gets `NBD_REP_ERR_POLICY` to its
    /// `NBD_OPT_GO` (`NBD_OPT_EXPORT_NAME` has no error reply: the connection is closed).
    pub max_connections_per_export: usize,
    /// READ and WRITE data bytes held in memory across all connections (WRITE payloads until
    /// written, READ replies until sent); when spent, connections stop reading their sockets
    /// until earlier requests finish (backpressure). Each connection also has 256 KiB of its
    /// own for small requests, so a light client keeps going when others hold the whole budget.
    pub max_buffered_bytes: usize,
    /// A connection in transmission with no request in flight that receives nothing for this
    /// long is closed (zero: never).
    pub idle_timeout: Duration,
    /// Time a client has to send the rest of a request (header and WRITE payload) once its
    /// first byte arrived, and to take each reply (zero: unbounded), so a half-sent write or a
    /// reader that never reads its replies cannot hold memory forever.
    pub request_timeout: Duration,
    /// Requests in flight per connection.
    pub max_requests_per_connection: usize,
    /// READ/WRITE payload bytes in flight per connection (at least 32 MiB).
    pub max_bytes_per_connection: usize,
    /// Time a client has to finish the handshake.
    pub handshake_timeout: Duration,
    /// On removal or shutdown, how long replies in flight may still be sent.
    pub shutdown_grace: Duration,
    /// Answer `NBD_OPT_LIST` with the exports' display names (off: `NBD_REP_ERR_POLICY`, since
    /// a listing would tell an anonymous client which volumes exist).
    pub allow_list: bool,
    /// Forced TLS on the TCP listener (the protocol's FORCEDTLS mode: nothing but `STARTTLS`
    /// and `ABORT` before the TLS handshake). Unix-socket and in-process connections stay
    /// plaintext: they are local, guarded by file permissions.
    pub tls: Option<Arc<tokio_rustls::rustls::ServerConfig>>,
}

impl Default for NbdConfig {
    fn default() -> Self {
        NbdConfig {
            max_connections: 1024,
            max_connections_per_address: 64,
            max_connections_per_export: 64,
            max_buffered_bytes: 1 << 30,
            idle_timeout: Duration::from_secs(300),
            request_timeout: Duration::from_secs(120),
            max_requests_per_connection: 64,
            max_bytes_per_connection: 64 << 20,
            handshake_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(5),
            allow_list: false,
            tls: None,
        }
    }
}

/// Errors from the export registry.
#[derive(Debug, thiserror::Error)]
pub enum NbdError {
    /// The file could not be opened.
    #[error("open {path}: {source}")]
    Open {
        /// The path given.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The path is neither a regular file nor a block device.
    #[error("{0} is not a regular file or block device")]
    NotABlockFile(PathBuf),
    /// An export of that name exists with another path or mode.
    #[error("export {0:?} already exists with another file or mode")]
    Conflict(String),
    /// The name cannot travel in the protocol (over 4096 bytes or containing NUL).
    #[error("invalid export name")]
    InvalidName,
}

/// One export, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportInfo {
    /// Export name (the volume id).
    pub name: String,
    /// Backing file or device.
    pub path: PathBuf,
    /// Writes are refused.
    pub readonly: bool,
    /// Live connections.
    pub connections: usize,
    /// READ replies whose data went out with `sendfile` (zero-copy) so far.
    pub sendfile_reads: u64,
}

/// Names of the commands [`NbdStats::ops`] counts, by command number (`other` last).
pub const OP_NAMES: [&str; 9] =
    ["read", "write", "disc", "flush", "trim", "cache", "write_zeroes", "block_status", "other"];

/// Cumulative counters of one group of exports (the service groups exports by pool). A group
/// outlives its exports, so the counters only grow.
#[derive(Debug, Default)]
pub struct NbdStats {
    /// Connections that entered transmission on an export of the group.
    pub connections_total: AtomicU64,
    /// Bytes asked for by accepted READ requests.
    pub read_bytes: AtomicU64,
    /// Bytes carried by accepted WRITE requests.
    pub write_bytes: AtomicU64,
    /// Accepted requests by command (index: command number, [`OP_NAMES`]).
    pub ops: [AtomicU64; 9],
}

impl NbdStats {
    /// Count one accepted request.
    pub(crate) fn request(&self, command: u16, length: u32) {
        let i = usize::from(command).min(OP_NAMES.len() - 1);
        self.ops[i].fetch_add(1, Ordering::Relaxed);
        match command {
            proto::CMD_READ => self.read_bytes.fetch_add(u64::from(length), Ordering::Relaxed),
            proto::CMD_WRITE => self.write_bytes.fetch_add(u64::from(length), Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// One group's counters and its live connections, as [`NbdServer::group_stats`] reports them.
#[derive(Debug, Clone)]
pub struct GroupStats {
    /// The group (pool) name given at [`NbdServer::add_grouped_export_digest`].
    pub group: String,
    /// Its counters.
    pub stats: Arc<NbdStats>,
    /// Connections on its exports right now.
    pub open_connections: usize,
}

/// Counts users (connections) and lets someone wait until there are none.
pub(crate) struct Tracker {
    count: watch::Sender<usize>,
}

/// One counted user; uncounted on drop.
pub(crate) struct TrackGuard(Arc<Tracker>);

impl Tracker {
    fn new() -> Arc<Tracker> {
        Arc::new(Tracker { count: watch::channel(0).0 })
    }

    pub(crate) fn enter(self: &Arc<Self>) -> TrackGuard {
        self.count.send_modify(|c| *c += 1);
        TrackGuard(self.clone())
    }

    /// Like [`Tracker::enter`], but `None` when `limit` users are already counted.
    pub(crate) fn try_enter(self: &Arc<Self>, limit: usize) -> Option<TrackGuard> {
        let entered = self.count.send_if_modified(|c| {
            if *c >= limit {
                return false;
            }
            *c += 1;
            true
        });
        entered.then(|| TrackGuard(self.clone()))
    }

    fn current(&self) -> usize {
        *self.count.borrow()
    }

    async fn idle(&self) {
        let mut rx = self.count.subscribe();
        let _ = rx.wait_for(|c| *c == 0).await;
    }
}

impl Drop for TrackGuard {
    fn drop(&mut self) {
        self.0.count.send_modify(|c| *c -= 1);
    }
}

/// The registry key of an export name: its SHA-256, hex.
pub fn export_digest(name: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// A registered export.
pub(crate) struct ExportEntry {
    /// What logs and [`NbdServer::list`] call it (for the service: the volume id, never the
    /// secret name).
    pub name: String,
    pub path: PathBuf,
    pub readonly: bool,
    /// The one descriptor all connections share.
    pub file: File,
    stop: watch::Sender<bool>,
    conns: Arc<Tracker>,
    bulk_readers: AtomicUsize,
    /// READ replies sent with `sendfile`, for diagnostics and tests.
    pub sendfile_reads: AtomicU64,
    /// The counters of the export's group.
    pub(crate) stats: Arc<NbdStats>,
    group: String,
    /// qos: the export's I/O limits (unlimited unless set).
    pub(crate) qos: super::qos::Throttle,
    /// The name (DNS name or address) a client certificate must be valid for to open this
    /// export; a certificate valid for another name is refused.
    client: Option<String>,
    /// Write gate: every request that changes the file (WRITE, TRIM, WRITE_ZEROES) holds a
    /// read guard while it runs; [`NbdServer::quiesce`] takes the write side, which waits for
    /// those in flight and holds back new ones (the lock is fair: once a quiesce waits, no new
    /// writer gets in ahead of it).
    pub(crate) gate: Arc<tokio::sync::RwLock<()>>,
}

impl ExportEntry {
    /// Count a new connection and get its stop signal; refused if the export is being removed
    /// or already has `limit` connections.
    pub(crate) fn attach(&self, limit: usize) -> Result<(TrackGuard, watch::Receiver<bool>), AttachError> {
        let guard = self.conns.try_enter(limit.max(1)).ok_or(AttachError::Full)?;
        let rx = self.stop.subscribe();
        if *rx.borrow() {
            return Err(AttachError::Gone);
        }
        self.stats.connections_total.fetch_add(1, Ordering::Relaxed);
        Ok((guard, rx))
    }

    /// Whether a client that presented `peer_cert` (DER, verified by TLS) may open this export:
    /// any client without a certificate may (the secret name is its credential; a deployment
    /// that wants certificates sets `[tls] require_client_cert`), a certificate only where the
    /// export is bound to a name it is valid for.
    pub(crate) fn allows(&self, peer_cert: Option<&[u8]>) -> bool {
        match (peer_cert, &self.client) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(der), Some(name)) => crate::tls::cert_valid_for(der, name),
        }
    }

    /// Count the calling connection as one that reads in bulk, until the guard drops.
    pub(crate) fn bulk_reader(self: &Arc<Self>) -> BulkReader {
        self.bulk_readers.fetch_add(1, Ordering::Relaxed);
        BulkReader(self.clone())
    }

    /// Connections that have made large READs (an idle side connection does not count).
    pub(crate) fn bulk_readers(&self) -> usize {
        self.bulk_readers.load(Ordering::Relaxed)
    }
}

/// Why [`ExportEntry::attach`] refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AttachError {
    /// The export is being removed.
    Gone,
    /// [`NbdConfig::max_connections_per_export`] reached.
    Full,
}

/// A connection counted in [`ExportEntry::bulk_readers`]; uncounted on drop.
pub(crate) struct BulkReader(Arc<ExportEntry>);

impl Drop for BulkReader {
    fn drop(&mut self) {
        self.0.bulk_readers.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes held on a set of exports (see [`NbdServer::quiesce`]); released on drop.
pub struct QuiesceGuard {
    guards: Vec<tokio::sync::OwnedRwLockWriteGuard<()>>,
}

impl QuiesceGuard {
    /// How many exports are held.
    pub fn len(&self) -> usize {
        self.guards.len()
    }

    /// Whether no export is held (none of the volumes was exported over NBD).
    pub fn is_empty(&self) -> bool {
        self.guards.is_empty()
    }
}

/// Exports by the digest of their name.
#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<HashMap<String, Arc<ExportEntry>>>,
    /// See [`NbdConfig::allow_list`].
    pub(crate) allow_list: bool,
    /// See [`NbdConfig::max_connections_per_export`].
    pub(crate) max_per_export: usize,
}

impl Registry {
    /// The export a client names.
    pub(crate) fn get(&self, name: &str) -> Option<Arc<ExportEntry>> {
        self.map.read().unwrap_or_else(|e| e.into_inner()).get(&export_digest(name)).cloned()
    }

    /// Display names, for `NBD_OPT_LIST` where allowed.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> =
            self.map.read().unwrap_or_else(|e| e.into_inner()).values().map(|e| e.name.clone()).collect();
        v.sort();
        v
    }
}

struct Inner {
    config: NbdConfig,
    registry: Registry,
    stop: watch::Sender<bool>,
    conns: Arc<Tracker>,
    slots: Arc<Semaphore>,
    /// Connections per source address (see [`NbdConfig::max_connections_per_address`]).
    per_address: Arc<Mutex<HashMap<String, usize>>>,
    /// WRITE payload bytes that may be buffered, across all connections.
    budget: Arc<Semaphore>,
    listeners: Mutex<Vec<JoinHandle<()>>>,
    unix_paths: Mutex<Vec<PathBuf>>,
    /// Counters by export group (see [`NbdStats`]).
    groups: Mutex<HashMap<String, Arc<NbdStats>>>,
}

/// The NBD server: registry plus listeners. See the module docs.
#[derive(Clone)]
pub struct NbdServer {
    inner: Arc<Inner>,
}

impl NbdServer {
    /// A server with no export and no listener.
    pub fn new(config: NbdConfig) -> NbdServer {
        let allow_list = config.allow_list;
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let budget = Arc::new(Semaphore::new(budget_bytes(&config)));
        let max_per_export = config.max_connections_per_export.max(1);
        NbdServer {
            inner: Arc::new(Inner {
                config,
                registry: Registry { map: RwLock::default(), allow_list, max_per_export },
                stop: watch::channel(false).0,
                conns: Tracker::new(),
                slots,
                per_address: Arc::default(),
                budget,
                listeners: Mutex::new(Vec::new()),
                unix_paths: Mutex::new(Vec::new()),
                groups: Mutex::default(),
            }),
        }
    }

    /// Export `path` (a volume file or block device, which must exist: exports never create
    /// storage) under `name`. Adding the same name, path and mode again is a no-op; the same
    /// name with another path or mode is a conflict. Blocking (opens the file).
    pub fn add_export(&self, name: String, path: PathBuf, readonly: bool) -> Result<(), NbdError> {
        if name.len() > proto::MAX_STRING_LEN || name.contains('\0') {
            return Err(NbdError::InvalidName);
        }
        self.add_export_digest(export_digest(&name), name, path, readonly)
    }

    /// Export `path` under the name whose [`export_digest`] is `digest`, listed and logged as
    /// `label`: how a secret name is registered (and re-registered after a restart) without
    /// the server being told the name. Same rules as [`NbdServer::add_export`].
    pub fn add_export_digest(
        &self,
        digest: String,
        label: String,
        path: PathBuf,
        readonly: bool,
    ) -> Result<(), NbdError> {
        self.add_grouped_export_digest(digest, label, "", path, readonly)
    }

    /// [`NbdServer::add_export_digest`], counting the export's traffic in `group`'s
    /// [`NbdStats`].
    pub fn add_grouped_export_digest(
        &self,
        digest: String,
        label: String,
        group: &str,
        path: PathBuf,
        readonly: bool,
    ) -> Result<(), NbdError> {
        self.add_bound_export_digest(digest, label, group, path, readonly, None)
    }

    /// [`NbdServer::add_grouped_export_digest`], bound to `client`: a TLS client certificate
    /// opens the export only if it is valid for that name (see [`NbdConfig::tls`]).
    pub fn add_bound_export_digest(
        &self,
        digest: String,
        label: String,
        group: &str,
        path: PathBuf,
        readonly: bool,
        client: Option<String>,
    ) -> Result<(), NbdError> {
        let same = |e: &ExportEntry| e.path == path && e.readonly == readonly && e.client == client;
        if let Some(e) = self.inner.registry.map.read().unwrap_or_else(|e| e.into_inner()).get(&digest) {
            return if same(e) { Ok(()) } else { Err(NbdError::Conflict(label)) };
        }
        let file = open_export(&path, readonly)?;
        let mut map = self.inner.registry.map.write().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = map.get(&digest) {
            return if same(e) { Ok(()) } else { Err(NbdError::Conflict(label)) };
        }
        tracing::info!(export = %label, path = ?path, readonly, "nbd: export added");
        let name = label;
        let stats =
            self.inner.groups.lock().unwrap_or_else(|e| e.into_inner()).entry(group.to_string()).or_default().clone();
        map.insert(
            digest,
            Arc::new(ExportEntry {
                name,
                path,
                readonly,
                file,
                stop: watch::channel(false).0,
                conns: Tracker::new(),
                bulk_readers: AtomicUsize::new(0),
                sendfile_reads: AtomicU64::new(0),
                stats,
                group: group.to_string(),
                qos: super::qos::Throttle::default(),
                client,
                gate: Arc::default(),
            }),
        );
        Ok(())
    }

    /// qos: set the I/O limits of the export whose name has `digest`; live connections follow
    /// from their next request. False if there is no such export.
    pub fn set_export_qos_digest(&self, digest: &str, limits: super::qos::QosLimits) -> bool {
        match self.inner.registry.map.read().unwrap_or_else(|e| e.into_inner()).get(digest) {
            Some(e) => {
                e.qos.set(limits);
                true
            }
            None => false,
        }
    }

    /// Remove an export: new clients can no longer choose it, its live connections are closed,
    /// and this returns once none of them uses the file any more. False if there was no such
    /// export.
    pub async fn remove_export(&self, name: &str) -> bool {
        self.remove_export_digest(&export_digest(name)).await
    }

    /// [`NbdServer::remove_export`] by the name's [`export_digest`].
    pub async fn remove_export_digest(&self, digest: &str) -> bool {
        let entry = self.inner.registry.map.write().unwrap_or_else(|e| e.into_inner()).remove(digest);
        let Some(entry) = entry else { return false };
        entry.stop.send_replace(true);
        entry.conns.idle().await;
        tracing::info!(export = %entry.name, "nbd: export removed");
        true
    }

    /// Quiesce every export listed under one of `names` (the service lists exports by volume
    /// id): new writes are held, writes in flight finish, then each file is flushed
    /// (`fdatasync`). Writes stay held until the returned guard drops, so a snapshot taken of
    /// several volumes meanwhile is crash-consistent across them. Gates are taken in digest
    /// order, so two quiesces over overlapping sets cannot deadlock. Fails with `TimedOut`
    /// (releasing what it took) if the writes in flight do not finish within `limit`, or with
    /// the flush's error.
    pub async fn quiesce(&self, names: &[String], limit: Duration) -> std::io::Result<QuiesceGuard> {
        let mut entries: Vec<(String, Arc<ExportEntry>)> = {
            let map = self.inner.registry.map.read().unwrap_or_else(|e| e.into_inner());
            map.iter().filter(|(_, e)| names.contains(&e.name)).map(|(d, e)| (d.clone(), e.clone())).collect()
        };
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut held = QuiesceGuard { guards: Vec::with_capacity(entries.len()) };
        let take = async {
            for (_, e) in &entries {
                held.guards.push(e.gate.clone().write_owned().await);
            }
        };
        if tokio::time::timeout(limit, take).await.is_err() {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "writes in flight did not finish"));
        }
        let files: Vec<Arc<ExportEntry>> = entries.into_iter().filter(|(_, e)| !e.readonly).map(|(_, e)| e).collect();
        tokio::task::spawn_blocking(move || files.iter().try_for_each(|e| super::io::flush(&e.file)))
            .await
            .map_err(std::io::Error::other)??;
        tracing::debug!(exports = held.guards.len(), "nbd: exports quiesced");
        Ok(held)
    }

    /// Every export, sorted by name.
    pub fn list(&self) -> Vec<ExportInfo> {
        let map = self.inner.registry.map.read().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<ExportInfo> = map
            .values()
            .map(|e| ExportInfo {
                name: e.name.clone(),
                path: e.path.clone(),
                readonly: e.readonly,
                connections: e.conns.current(),
                sendfile_reads: e.sendfile_reads.load(Ordering::Relaxed),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Every group's counters with its live connections, sorted by group.
    pub fn group_stats(&self) -> Vec<GroupStats> {
        let mut open: HashMap<String, usize> = HashMap::new();
        for e in self.inner.registry.map.read().unwrap_or_else(|e| e.into_inner()).values() {
            *open.entry(e.group.clone()).or_default() += e.conns.current();
        }
        let groups = self.inner.groups.lock().unwrap_or_else(|e| e.into_inner());
        let mut v: Vec<GroupStats> = groups
            .iter()
            .map(|(g, s)| GroupStats {
                group: g.clone(),
                stats: s.clone(),
                open_connections: open.get(g).copied().unwrap_or(0),
            })
            .collect();
        v.sort_by(|a, b| a.group.cmp(&b.group));
        v
    }

    /// Whether the TCP listener requires TLS ([`NbdConfig::tls`]).
    pub fn tls_required(&self) -> bool {
        self.inner.config.tls.is_some()
    }

    /// Connections being served (handshake or transmission).
    pub fn connection_count(&self) -> usize {
        self.inner.conns.current()
    }

    /// Bytes of the server-wide budget in use right now, across all connections (at most
    /// [`NbdConfig::max_buffered_bytes`]; the connections' own small shares are not counted).
    pub fn buffered_bytes(&self) -> usize {
        budget_bytes(&self.inner.config).saturating_sub(self.inner.budget.available_permits())
    }

    /// Listen on a TCP address (port 0 picks one); returns the bound address.
    pub async fn listen_tcp(&self, addr: SocketAddr) -> std::io::Result<SocketAddr> {
        let listener = TcpListener::bind(addr).await?;
        let local = listener.local_addr()?;
        let inner = self.inner.clone();
        let mut stop = inner.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.wait_for(|v| *v) => break,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        if let Some(tls) = &inner.config.tls {
                            spawn_tls_connection(&inner, tls.clone(), stream, peer);
                            continue;
                        }
                        let (r, w) = stream.into_split();
                        spawn_connection(&inner, r, w, peer.to_string(), peer.ip().to_string());
                    }
                    Err(e) => accept_failed(e).await,
                }
            }
        });
        tracing::info!(%local, tls = self.inner.config.tls.is_some(), "nbd: listening on TCP");
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        Ok(local)
    }

    /// Listen on a unix socket at `path` (a stale socket file there is replaced; any other
    /// file is an error). The socket is removed at shutdown.
    pub async fn listen_unix(&self, path: &Path) -> std::io::Result<()> {
        if let Ok(md) = std::fs::symlink_metadata(path) {
            if md.file_type().is_socket() {
                std::fs::remove_file(path)?;
            } else {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", path.display()),
                ));
            }
        }
        let listener = UnixListener::bind(path)?;
        let inner = self.inner.clone();
        let mut stop = inner.stop.subscribe();
        let task = tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = stop.wait_for(|v| *v) => break,
                    r = listener.accept() => r,
                };
                match accepted {
                    Ok((stream, _)) => {
                        // Best effort: the default buffer only costs speed.
                        let _ = setsockopt(&stream, sockopt::SndBuf, &UNIX_SNDBUF);
                        let (r, w) = stream.into_split();
                        spawn_connection(&inner, r, w, "unix".to_string(), LOCAL.to_string());
                    }
                    Err(e) => accept_failed(e).await,
                }
            }
        });
        tracing::info!(path = %path.display(), "nbd: listening on unix socket");
        self.inner.unix_paths.lock().unwrap_or_else(|e| e.into_inner()).push(path.to_path_buf());
        self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()).push(task);
        Ok(())
    }

    /// Serve one already-connected stream (any transport) to completion. Used by tests over
    /// in-memory pipes; subject to the same connection limit and stop signals as listeners (not
    /// to the per-address one: there is no address).
    pub async fn serve_stream<S>(&self, stream: S)
    where
        S: AsyncRead + AsyncWrite + Send + 'static,
    {
        let Ok(slot) = self.inner.slots.clone().try_acquire_owned() else { return };
        let (r, w) = tokio::io::split(stream);
        let _slot = slot;
        handle(self.inner.clone(), r, w, "stream".to_string()).await;
    }

    /// Stop accepting, close every connection (in-flight replies are still sent, bounded by the
    /// grace period), wait for them, and remove unix socket files.
    pub async fn shutdown(&self) {
        self.inner.stop.send_replace(true);
        let tasks: Vec<_> = std::mem::take(&mut *self.inner.listeners.lock().unwrap_or_else(|e| e.into_inner()));
        for t in tasks {
            let _ = t.await;
        }
        self.inner.conns.idle().await;
        let paths: Vec<_> = std::mem::take(&mut *self.inner.unix_paths.lock().unwrap_or_else(|e| e.into_inner()));
        for p in paths {
            let _ = std::fs::remove_file(&p);
        }
        tracing::info!("nbd: server stopped");
    }
}

fn open_export(path: &Path, readonly: bool) -> Result<File, NbdError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!readonly)
        .open(path)
        .map_err(|source| NbdError::Open { path: path.to_path_buf(), source })?;
    let ft = file.metadata().map_err(|source| NbdError::Open { path: path.to_path_buf(), source })?.file_type();
    if !(ft.is_file() || ft.is_block_device()) {
        return Err(NbdError::NotABlockFile(path.to_path_buf()));
    }
    Ok(file)
}

/// Accept errors (EMFILE, ECONNABORTED, …) never end the listener; back off briefly so a full
/// fd table does not spin the loop.
async fn accept_failed(e: std::io::Error) {
    tracing::warn!(error = %e, "nbd: accept failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The per-address key of unix-socket and in-process connections.
const LOCAL: &str = "local";

/// The budget semaphore's size: [`NbdConfig::max_buffered_bytes`], but room for one request.
fn budget_bytes(config: &NbdConfig) -> usize {
    config.max_buffered_bytes.clamp(proto::MAX_PAYLOAD as usize, Semaphore::MAX_PERMITS)
}

/// One connection counted against its source address; uncounted on drop.
struct AddressGuard {
    map: Arc<Mutex<HashMap<String, usize>>>,
    addr: String,
}

impl AddressGuard {
    /// Count a connection from `addr`; `None` if that address is at its limit.
    fn enter(inner: &Inner, addr: String) -> Option<AddressGuard> {
        let mut map = inner.per_address.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(addr.clone()).or_insert(0);
        if *n >= inner.config.max_connections_per_address.max(1) {
            return None;
        }
        *n += 1;
        drop(map);
        Some(AddressGuard { map: inner.per_address.clone(), addr })
    }
}

impl Drop for AddressGuard {
    fn drop(&mut self) {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.addr) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.addr);
            }
        }
    }
}

fn spawn_connection<R, W>(inner: &Arc<Inner>, r: R, w: W, peer: String, addr: String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: ReplySink,
{
    let Ok(slot) = inner.slots.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "nbd: connection limit reached, closing");
        return;
    };
    let Some(addr) = AddressGuard::enter(inner, addr) else {
        tracing::debug!(%peer, "nbd: per-address connection limit reached, closing");
        return;
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let _addr = addr;
        handle(inner, r, w, peer).await;
    });
}

/// One connection: handshake (bounded by the timeout and the server stop), then transmission.
async fn handle<R, W>(inner: Arc<Inner>, r: R, mut w: W, peer: String)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: ReplySink,
{
    let _conn = inner.conns.enter();
    let mut server_stop = inner.stop.subscribe();
    if *server_stop.borrow() {
        return;
    }
    let mut rd = BufReader::with_capacity(128 * 1024, r);
    let handshake =
        tokio::time::timeout(inner.config.handshake_timeout, negotiate::negotiate(&mut rd, &mut w, &inner.registry));
    let outcome = tokio::select! {
        _ = server_stop.wait_for(|v| *v) => return,
        r = handshake => r,
    };
    let neg = match outcome {
        Ok(Ok(Outcome::Transmission(neg))) => neg,
        Ok(Ok(Outcome::Aborted)) => return,
        Ok(Err(NegotiateError::Io(e))) => {
            tracing::debug!(%peer, error = %e, "nbd: handshake ended");
            return;
        }
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "nbd: handshake refused");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "nbd: handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, export = %neg.entry.name, structured = neg.session.structured, "nbd: transmission");
    let stop = Stop::new(server_stop, Some(neg.export_stop.clone()));
    connection::run(rd, w, *neg, &inner.config, inner.budget.clone(), stop).await;
}

/// [`spawn_connection`] for a forced-TLS TCP connection.
fn spawn_tls_connection(
    inner: &Arc<Inner>,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
) {
    let Ok(slot) = inner.slots.clone().try_acquire_owned() else {
        tracing::debug!(%peer, "nbd: connection limit reached, closing");
        return;
    };
    let Some(addr) = AddressGuard::enter(inner, peer.ip().to_string()) else {
        tracing::debug!(%peer, "nbd: per-address connection limit reached, closing");
        return;
    };
    let inner = inner.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let _addr = addr;
        handle_tls(inner, tls, stream, peer.to_string()).await;
    });
}

/// One forced-TLS connection: the plaintext options (only `STARTTLS` gets anywhere), the TLS
/// handshake, the options again inside TLS from a fresh state, then transmission on the TLS
/// stream. Replies are copied through rustls (its [`ReplySink`] cannot `sendfile`: the data
/// must be encrypted in user space), so the plaintext fast paths are not involved.
async fn handle_tls(
    inner: Arc<Inner>,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
    mut stream: tokio::net::TcpStream,
    peer: String,
) {
    let _conn = inner.conns.enter();
    let mut server_stop = inner.stop.subscribe();
    if *server_stop.borrow() {
        return;
    }
    let registry = &inner.registry;
    let handshake = async {
        let client = {
            let (r, mut w) = stream.split();
            // Small, and dropped before the TLS handshake: anything the client sent behind
            // STARTTLS without waiting for our reply would be plaintext injected into the TLS
            // session (CVE-2021-3716 in nbdkit), so buffered bytes there are a protocol error.
            let mut pre = BufReader::with_capacity(4096, r);
            let client = negotiate::greet(&mut pre, &mut w).await?;
            match negotiate::before_tls(&mut pre, &mut w).await? {
                negotiate::BeforeTls::Aborted => return Ok(None),
                negotiate::BeforeTls::StartTls => {}
            }
            if !pre.buffer().is_empty() {
                return Err(NegotiateError::PlaintextAfterStartTls);
            }
            client
        };
        let tls_stream = tokio_rustls::TlsAcceptor::from(tls).accept(stream).await?;
        let cert = tls_stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| c.as_ref().to_vec());
        let (r, mut w) = tokio::io::split(tls_stream);
        let mut rd = BufReader::with_capacity(128 * 1024, r);
        let outcome =
            negotiate::options(&mut rd, &mut w, registry, client, negotiate::Transport::Tls(cert.as_deref())).await?;
        Ok(Some((outcome, rd, w)))
    };
    let handshake = tokio::time::timeout(inner.config.handshake_timeout, handshake);
    let outcome = tokio::select! {
        _ = server_stop.wait_for(|v| *v) => return,
        r = handshake => r,
    };
    let (neg, rd, w) = match outcome {
        Ok(Ok(Some((Outcome::Transmission(neg), rd, w)))) => (neg, rd, w),
        Ok(Ok(None | Some((Outcome::Aborted, _, _)))) => return,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "nbd: TLS handshake refused or ended");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "nbd: handshake timed out");
            return;
        }
    };
    tracing::debug!(%peer, export = %neg.entry.name, structured = neg.session.structured, "nbd: transmission (TLS)");
    let stop = Stop::new(server_stop, Some(neg.export_stop.clone()));
    connection::run(rd, w, *neg, &inner.config, inner.budget.clone(), stop).await;
}
