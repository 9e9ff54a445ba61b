//! Image files: the image area of a pool (uploaded files, the raw cache), the format
//! inspector for untrusted files and the only way qemu-img is run.
//!
//! Layout inside the pool directory (names only from validated UUIDs):
//! - `images/<uuid>.img`: an image's data exactly as uploaded (so a download returns the same
//!   bytes and hashes);
//! - `images/tmp/<uuid>.<n>.part`: an upload in progress (emptied at start);
//! - `image-cache/<uuid>.raw`: the image converted once to raw; volumes are reflinks of it, so
//!   evicting an entry never affects a volume (and never waits for one);
//! - `image-cache/tmp/`: conversions in progress (emptied at start).
//!
//! Like the drivers, nothing here knows HTTP, SQL or tenants, and calls block.

pub mod inspect;
pub mod qemu;

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use md5::Digest as _;
use uuid::Uuid;

use crate::error::{Error, Result};

/// md5 and sha512 of a byte stream, with its length, computed as it is written.
///
/// The two digests run on two threads of their own, fed the same chunks, so hashing costs
/// the slower of the two instead of their sum (measured: an upload to image as raw was bound
/// by md5 then sha512 over every byte on one core). Bytes are gathered into [`HASH_CHUNK`]
/// pieces before they are handed over, so small writes cost no channel traffic; the channels
/// are bounded, so a writer faster than the hashers waits instead of queueing memory. If the
/// threads cannot be started, both digests run inline as before.
pub struct StreamHasher {
    mode: HashMode,
    pending: Vec<u8>,
    len: u64,
}

/// Bytes handed to the hash threads at once.
const HASH_CHUNK: usize = 4 << 20;

/// Chunks each hash thread may have queued (bounds the memory: 2 × 4 × 4 MiB).
const HASH_QUEUE: usize = 4;

/// Where a hash thread takes its chunks from.
type ChunkSender = std::sync::mpsc::SyncSender<std::sync::Arc<Vec<u8>>>;

enum HashMode {
    Threads {
        md5: ChunkSender,
        sha512: ChunkSender,
        md5_done: std::thread::JoinHandle<String>,
        sha512_done: std::thread::JoinHandle<String>,
    },
    Inline(Box<(md5::Md5, sha2::Sha512)>),
}

impl Default for StreamHasher {
    fn default() -> Self {
        Self::new()
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A thread digesting the chunks it receives until the sender is dropped; its hex digest.
fn hash_thread<D: md5::Digest + Send + 'static>(
    name: &str,
) -> std::io::Result<(ChunkSender, std::thread::JoinHandle<String>)> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<std::sync::Arc<Vec<u8>>>(HASH_QUEUE);
    let h = std::thread::Builder::new().name(name.into()).spawn(move || {
        let mut d = D::new();
        for chunk in rx {
            d.update(&chunk[..]);
        }
        hex(&d.finalize())
    })?;
    Ok((tx, h))
}

impl StreamHasher {
    /// A hasher over nothing yet.
    pub fn new() -> Self {
        let mode = match (hash_thread::<md5::Md5>("cb-md5"), hash_thread::<sha2::Sha512>("cb-sha512")) {
            (Ok((md5, md5_done)), Ok((sha512, sha512_done))) => {
                HashMode::Threads { md5, sha512, md5_done, sha512_done }
            }
            _ => HashMode::Inline(Box::new((md5::Md5::new(), sha2::Sha512::new()))),
        };
        StreamHasher { mode, pending: Vec::new(), len: 0 }
    }

    /// Hand the gathered bytes to the digests.
    fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let chunk = std::mem::take(&mut self.pending);
        match &mut self.mode {
            HashMode::Threads { md5, sha512, .. } => {
                let chunk = std::sync::Arc::new(chunk);
                // A send fails only if a hash thread died (it cannot panic on input); finish
                // then reports the failure through the join.
                let _ = md5.send(chunk.clone());
                let _ = sha512.send(chunk);
            }
            HashMode::Inline(d) => {
                d.0.update(&chunk);
                d.1.update(&chunk);
            }
        }
    }

    /// Feed bytes.
    pub fn update(&mut self, b: &[u8]) {
        self.len += b.len() as u64;
        let mut b = b;
        while !b.is_empty() {
            if self.pending.capacity() == 0 {
                self.pending.reserve_exact(HASH_CHUNK);
            }
            let take = (HASH_CHUNK - self.pending.len()).min(b.len());
            self.pending.extend_from_slice(&b[..take]);
            b = &b[take..];
            if self.pending.len() == HASH_CHUNK {
                self.flush();
            }
        }
    }
    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }
    /// True when nothing was fed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// `(md5 hex, sha512 hex, length)`; an error if a hash thread died (it only digests
    /// bytes, so that would be a bug in a digest crate, never a hash to record).
    pub fn finish(mut self) -> Result<(String, String, u64)> {
        self.flush();
        let len = self.len;
        match self.mode {
            HashMode::Threads { md5, sha512, md5_done, sha512_done } => {
                drop((md5, sha512));
                let died = |_| Error::internal("an image hash thread died");
                Ok((md5_done.join().map_err(died)?, sha512_done.join().map_err(died)?, len))
            }
            HashMode::Inline(d) => {
                let (m, s) = *d;
                Ok((hex(&m.finalize()), hex(&s.finalize()), len))
            }
        }
    }
}

/// md5 and sha512 of a file, with its length.
pub fn hash_file(path: &Path) -> Result<(String, String, u64)> {
    let mut f = File::open(path).map_err(|e| Error::internal(format!("open {}: {e}", path.display())))?;
    let mut h = StreamHasher::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(|e| Error::internal(format!("read: {e}")))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    h.finish()
}

fn io_err(op: &str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
    let op = format!("{op} {}", path.display());
    move |e| Error::internal(format!("{op}: {e}"))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err("fsync", dir))
}

/// The image area of one pool.
#[derive(Debug, Clone)]
pub struct ImageArea {
    root: PathBuf,
}

impl ImageArea {
    /// The area under the pool directory `pool_root`; creates its directories and removes what
    /// an interrupted upload or conversion left in the temporary ones.
    pub fn open(pool_root: &Path) -> Result<ImageArea> {
        let area = ImageArea { root: pool_root.to_path_buf() };
        for d in [area.root.join("images/tmp"), area.root.join("image-cache/tmp")] {
            std::fs::create_dir_all(&d).map_err(io_err("create", &d))?;
            for entry in std::fs::read_dir(&d).map_err(io_err("read", &d))? {
                let entry = entry.map_err(io_err("read", &d))?;
                tracing::warn!(file = %entry.path().display(), "removing a leftover partial image file");
                std::fs::remove_file(entry.path()).map_err(io_err("remove", &entry.path()))?;
            }
        }
        Ok(area)
    }

    /// The area under `pool_root`, as it is (no cleanup; see [`ImageArea::open`]).
    pub fn at(pool_root: &Path) -> ImageArea {
        ImageArea { root: pool_root.to_path_buf() }
    }

    /// The stored file of image `id`.
    pub fn image_path(&self, id: Uuid) -> PathBuf {
        self.root.join("images").join(format!("{}.img", id.hyphenated()))
    }

    /// A fresh temporary path for writing image `id`.
    pub fn temp_path(&self, id: Uuid) -> PathBuf {
        self.root.join("images/tmp").join(format!("{}.{}.part", id.hyphenated(), Uuid::new_v4().simple()))
    }

    /// The raw cache entry of image `id`.
    pub fn cache_path(&self, id: Uuid) -> PathBuf {
        self.root.join("image-cache").join(format!("{}.raw", id.hyphenated()))
    }

    /// Sync `tmp` and rename it to image `id`'s file.
    pub fn commit(&self, tmp: &Path, id: Uuid) -> Result<PathBuf> {
        File::open(tmp).and_then(|f| f.sync_all()).map_err(io_err("fsync", tmp))?;
        let dst = self.image_path(id);
        std::fs::rename(tmp, &dst).map_err(io_err("rename", &dst))?;
        sync_dir(&self.root.join("images"))?;
        Ok(dst)
    }

    /// Remove image `id`'s file and cache entry (idempotent).
    pub fn remove(&self, id: Uuid) -> Result<()> {
        for p in [self.image_path(id), self.cache_path(id)] {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("remove", &p)(e)),
            }
        }
        Ok(())
    }

    /// Ids of every stored image file.
    pub fn list_images(&self) -> Result<Vec<Uuid>> {
        let dir = self.root.join("images");
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            if let Some(id) =
                entry.file_name().to_str().and_then(|n| n.strip_suffix(".img")).and_then(|n| Uuid::try_parse(n).ok())
            {
                out.push(id);
            }
        }
        Ok(out)
    }

    /// The raw cache entry of image `id`, converting its file `src` (`disk_format`, inspected
    /// again first) once when there is none; a hit refreshes the entry's place in the LRU order.
    /// True in the second element when this call converted.
    pub fn cached_raw(&self, id: Uuid, src: &Path, disk_format: &str, limits: qemu::Limits) -> Result<(PathBuf, bool)> {
        let entry = self.cache_path(id);
        if entry.exists() {
            let _ = File::options().write(true).open(&entry).and_then(|f| f.set_modified(std::time::SystemTime::now()));
            return Ok((entry, false));
        }
        let tmp =
            self.root.join("image-cache/tmp").join(format!("{}.{}.raw", id.hyphenated(), Uuid::new_v4().simple()));
        let converted = qemu::convert(src, disk_format, &tmp, "raw", false, limits);
        if let Err(e) = converted {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        File::open(&tmp).and_then(|f| f.sync_all()).map_err(io_err("fsync", &tmp))?;
        std::fs::rename(&tmp, &entry).map_err(io_err("rename", &entry))?;
        sync_dir(&self.root.join("image-cache"))?;
        tracing::info!(image = %id, "image converted to raw into the cache");
        Ok((entry, true))
    }

    /// Evict least recently used cache entries until at most `max_bytes` (allocated) and
    /// `max_count` remain (0 = no limit), never `keep`. Entries pin nothing, so this never waits.
    pub fn evict(&self, max_bytes: u64, max_count: u64, keep: Option<Uuid>) -> Result<usize> {
        use std::os::unix::fs::MetadataExt;
        let dir = self.root.join("image-cache");
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(&dir).map_err(io_err("read", &dir))? {
            let entry = entry.map_err(io_err("read", &dir))?;
            let Some(id) =
                entry.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).and_then(|n| Uuid::try_parse(n).ok())
            else {
                continue;
            };
            let Ok(md) = entry.metadata() else { continue };
            entries.push((md.modified().unwrap_or(std::time::UNIX_EPOCH), md.blocks() * 512, id));
        }
        entries.sort();
        let mut bytes: u64 = entries.iter().map(|e| e.1).sum();
        let mut count = entries.len() as u64;
        let mut evicted = 0;
        for (_, size, id) in entries {
            let over = (max_bytes > 0 && bytes > max_bytes) || (max_count > 0 && count > max_count);
            if !over {
                break;
            }
            if Some(id) == keep {
                continue;
            }
            let p = self.cache_path(id);
            if std::fs::remove_file(&p).is_ok() {
                tracing::info!(image = %id, "evicted an image cache entry");
                bytes -= size;
                count -= 1;
                evicted += 1;
            }
        }
        Ok(evicted)
    }

    /// Drop image `id`'s cache entry (its image changed or went away).
    pub fn invalidate(&self, id: Uuid) {
        let _ = std::fs::remove_file(self.cache_path(id));
    }
}

/// A file being written by an upload: bytes go to disk as they arrive, hashed on the way.
pub struct UploadFile {
    file: File,
    /// The temporary path.
    pub path: PathBuf,
    /// Hashes so far.
    pub hasher: StreamHasher,
}

impl UploadFile {
    /// Create the temporary file at `path`.
    pub fn create(path: PathBuf) -> Result<UploadFile> {
        let file = File::options().write(true).create_new(true).open(&path).map_err(io_err("create", &path))?;
        Ok(UploadFile { file, path, hasher: StreamHasher::new() })
    }
    /// Append a chunk (zero blocks become holes, so sparse data stays sparse).
    pub fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        if chunk.len() >= 4096 && chunk.iter().all(|b| *b == 0) {
            use std::io::Seek;
            self.file.seek(std::io::SeekFrom::Current(chunk.len() as i64)).map_err(io_err("seek", &self.path))?;
            return Ok(());
        }
        self.file.write_all(chunk).map_err(io_err("write", &self.path))
    }
    /// Set the final length (a trailing hole) and sync.
    pub fn finish(self) -> Result<(PathBuf, StreamHasher)> {
        self.file.set_len(self.hasher.len()).map_err(io_err("truncate", &self.path))?;
        self.file.sync_all().map_err(io_err("fsync", &self.path))?;
        Ok((self.path, self.hasher))
    }
}

#[cfg(test)]
mod hash_tests {
    use super::*;

    /// The threaded hasher gives the one-pass digests, whatever the write sizes.
    #[test]
    fn stream_hasher_matches_one_pass_digests() {
        let data: Vec<u8> = (0..(9 << 20) + 12_345).map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let want = (hex(&md5::Md5::digest(&data)), hex(&sha2::Sha512::digest(&data)), data.len() as u64);
        for step in [4096, 1 << 20, HASH_CHUNK, HASH_CHUNK + 1, data.len()] {
            let mut h = StreamHasher::new();
            data.chunks(step).for_each(|c| h.update(c));
            assert_eq!(h.finish().expect("finish"), want, "chunks of {step}");
        }
        // Byte by byte over a prefix, then the rest at once.
        let mut h = StreamHasher::new();
        data[..10_000].iter().for_each(|b| h.update(std::slice::from_ref(b)));
        h.update(&data[10_000..]);
        assert_eq!(h.finish().expect("finish"), want, "bytes, then the rest");
        let empty = StreamHasher::new().finish().expect("finish");
        assert_eq!(empty, (hex(&md5::Md5::digest(b"")), hex(&sha2::Sha512::digest(b"")), 0));
    }
}
