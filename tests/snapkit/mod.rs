//! Helpers shared by the snapshot, clone and rollback tests (`api_snapshots`, `reflink_pools`,
//! `recovery_storage`): snapshot polling, direct SQL for states the API cannot produce yet, and
//! a hole-aware content checksum of volume files compared against an in-memory model of what
//! the test wrote.
//!
//! Content model: a volume is `len` bytes of zeros plus 1 MiB blocks the test wrote. Its
//! checksum hashes the length and every non-zero 1 MiB block with its index, so a file and a
//! model (or two files) have the same checksum exactly when their bytes are equal, whatever
//! their allocation (holes, zeroed extents, reflinks). Files are read only where SEEK_DATA finds
//! data, so checking a 1 GiB volume with 8 MiB written reads about 8 MiB.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::hash::Hasher;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::{Api, WAIT_TIMEOUT};

/// Block size of the content model and the checksum.
pub const BLOCK: u64 = 1 << 20;
/// One MiB.
pub const MIB: u64 = 1 << 20;
/// Interval between two polls.
const POLL: Duration = Duration::from_millis(20);

/// `OpenStack-API-Version` header for microversion `3.minor`.
pub fn mv(minor: u32) -> (&'static str, String) {
    ("OpenStack-API-Version", format!("volume 3.{minor}"))
}

/// POST with one extra header.
pub async fn post_h(api: &Api, path: &str, headers: &[(&str, &str)], body: Value) -> crate::common::Resp {
    api.request(reqwest::Method::POST, path, headers, Some(body.to_string())).await
}

/// Create a snapshot through Cinder v3 (202) and return its body.
pub async fn cinder_snapshot(api: &Api, p: &str, volume_id: &str, extra: Value) -> Value {
    let mut body = json!({"volume_id": volume_id});
    if let (Some(o), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            o.insert(k.clone(), v.clone());
        }
    }
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({ "snapshot": body })).await.expect(202);
    let snap = r.body["snapshot"].clone();
    assert_eq!(snap["volume_id"], volume_id, "{}", r.text);
    assert!(snap["id"].is_string(), "{}", r.text);
    snap
}

/// Create a snapshot and wait until it is `available`.
pub async fn cinder_snapshot_available(api: &Api, p: &str, volume_id: &str, extra: Value) -> Value {
    let s = cinder_snapshot(api, p, volume_id, extra).await;
    let id = s["id"].as_str().expect("id").to_string();
    wait_snapshot(api, p, &id, &["available"]).await
}

/// Poll `GET /v3/{p}/snapshots/{id}` until its status is one of `want`. Panics early on an
/// `error*` status that is not wanted.
pub async fn wait_snapshot(api: &Api, p: &str, id: &str, want: &[&str]) -> Value {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let r = api.get(&format!("/v3/{p}/snapshots/{id}")).await.expect(200);
        let st = r.body["snapshot"]["status"].as_str().unwrap_or_default().to_string();
        if want.contains(&st.as_str()) {
            return r.body["snapshot"].clone();
        }
        assert!(!st.starts_with("error"), "snapshot {id} went to {st}: {}", r.text);
        assert!(Instant::now() < deadline, "snapshot {id} still {st} after {WAIT_TIMEOUT:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Poll until `GET /v3/{p}/snapshots/{id}` answers 404.
pub async fn wait_snapshot_gone(api: &Api, p: &str, id: &str) {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let r = api.get(&format!("/v3/{p}/snapshots/{id}")).await;
        if r.status == 404 {
            return;
        }
        assert_eq!(r.status, 200, "{}", r.text);
        assert!(r.body["snapshot"]["status"] != "error_deleting", "snapshot {id} went to error_deleting: {}", r.text);
        assert!(Instant::now() < deadline, "snapshot {id} not gone after {WAIT_TIMEOUT:?}: {}", r.text);
        tokio::time::sleep(POLL).await;
    }
}

/// Poll a volume until its status is one of `want`, also accepting `error*` statuses when
/// they are wanted (the harness's `wait_volume_status` panics on them).
pub async fn wait_volume_any(api: &Api, p: &str, id: &str, want: &[&str]) -> Value {
    let deadline = Instant::now() + WAIT_TIMEOUT;
    loop {
        let r = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200);
        let st = r.body["volume"]["status"].as_str().unwrap_or_default().to_string();
        if want.contains(&st.as_str()) {
            return r.body["volume"].clone();
        }
        assert!(Instant::now() < deadline, "volume {id} still {st} after {WAIT_TIMEOUT:?}, wanted {want:?}");
        tokio::time::sleep(POLL).await;
    }
}

/// Ids of the `snapshots` array of `GET path`.
pub async fn snapshot_ids(api: &Api, path: &str) -> Vec<String> {
    let r = api.get(path).await.expect(200);
    r.body["snapshots"]
        .as_array()
        .unwrap_or_else(|| panic!("{path}: no snapshots array: {}", r.text))
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect()
}

// ------------------------------------------------------------------------------------------
// Direct SQL, for states no route produces yet (an attached volume) and for row checks.

async fn db_pool(url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("test cannot open {url}: {e}"))
}

/// Run one statement with text binds (`$1`, `$2`…).
pub async fn db_exec(url: &str, sql: &'static str, binds: &[&str]) -> u64 {
    let pool = db_pool(url).await;
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b.to_string());
    }
    let n = q.execute(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}")).rows_affected();
    pool.close().await;
    n
}

/// First column (text) of every row of a query with text binds.
pub async fn db_strings(url: &str, sql: &'static str, binds: &[&str]) -> Vec<String> {
    use sqlx::Row;
    let pool = db_pool(url).await;
    let mut q = sqlx::query(sql);
    for b in binds {
        q = q.bind(b.to_string());
    }
    let rows = q.fetch_all(&pool).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let out = rows.iter().map(|r| r.try_get::<String, _>(0).expect("text column")).collect();
    pool.close().await;
    out
}

/// Set a volume's status behind the daemon's back.
pub async fn force_volume_status(url: &str, id: &str, status: &str) {
    assert_eq!(db_exec(url, "UPDATE volumes SET status = $1 WHERE id = $2", &[status, id]).await, 1, "volume {id}");
}

/// Set a snapshot's status behind the daemon's back.
pub async fn force_snapshot_status(url: &str, id: &str, status: &str) {
    assert_eq!(db_exec(url, "UPDATE snapshots SET status = $1 WHERE id = $2", &[status, id]).await, 1, "snapshot {id}");
}

// ------------------------------------------------------------------------------------------
// Pool files.

/// `<pool>/volumes/<id>.raw`
pub fn volume_file(pool: &Path, id: &str) -> PathBuf {
    pool.join("volumes").join(format!("{id}.raw"))
}

/// `<pool>/snapshots/<id>.raw`
pub fn snapshot_file(pool: &Path, id: &str) -> PathBuf {
    pool.join("snapshots").join(format!("{id}.raw"))
}

/// Ids (file stems) of the `.raw` files in `<pool>/<sub>`.
pub fn ids_in(pool: &Path, sub: &str) -> BTreeSet<String> {
    let Ok(rd) = std::fs::read_dir(pool.join(sub)) else { return BTreeSet::new() };
    rd.filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.strip_suffix(".raw")).map(str::to_string))
        .collect()
}

/// Every entry of `<pool>/tmp`.
pub fn tmp_entries(pool: &Path) -> Vec<String> {
    let Ok(rd) = std::fs::read_dir(pool.join("tmp")) else { return Vec::new() };
    rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
}

/// Bytes the file allocates (`st_blocks`).
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).blocks() * 512
}

/// Length of the file.
pub fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

// ------------------------------------------------------------------------------------------
// Content model and checksums.

/// Deterministic pseudo-random bytes (xorshift64*), different for every seed.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What a volume file should hold: `len` bytes, zero except for the blocks written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    /// File length.
    pub len: u64,
    blocks: BTreeMap<u64, Vec<u8>>,
}

impl Model {
    /// All zeros.
    pub fn zeros(len: u64) -> Model {
        Model { len, blocks: BTreeMap::new() }
    }

    /// The same content in a longer (extended) file.
    pub fn grown(&self, len: u64) -> Model {
        assert!(len >= self.len);
        Model { len, blocks: self.blocks.clone() }
    }

    /// Write `mib` MiB of fresh random data at `off_mib` MiB into `path` (synced) and into the
    /// model.
    pub fn write(&mut self, path: &Path, off_mib: u64, mib: u64, seed: u64) {
        let f =
            std::fs::OpenOptions::new().write(true).open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for i in 0..mib {
            let idx = off_mib + i;
            assert!((idx + 1) * BLOCK <= self.len, "write past the end of {}", path.display());
            let data = random_bytes(seed.wrapping_mul(1_000_003).wrapping_add(idx), BLOCK as usize);
            f.write_all_at(&data, idx * BLOCK).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
            self.blocks.insert(idx, data);
        }
        f.sync_all().unwrap_or_else(|e| panic!("fsync {}: {e}", path.display()));
    }

    /// Bytes of data written (non-zero blocks).
    pub fn data_bytes(&self) -> u64 {
        self.blocks.len() as u64 * BLOCK
    }

    /// The checksum of this content.
    pub fn checksum(&self) -> u64 {
        let mut h = std::hash::DefaultHasher::new();
        h.write_u64(self.len);
        for (idx, data) in &self.blocks {
            if data.iter().any(|&b| b != 0) {
                h.write_u64(*idx);
                h.write(data);
            }
        }
        h.finish()
    }
}

/// The checksum of a file's content (see the module comment): equal to [`Model::checksum`]
/// exactly when the bytes are equal.
pub fn checksum(path: &Path) -> u64 {
    use nix::unistd::{lseek, Whence};
    let f = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let len = f.metadata().expect("stat").len();
    let mut h = std::hash::DefaultHasher::new();
    h.write_u64(len);
    let zero = vec![0u8; BLOCK as usize];
    let mut buf = vec![0u8; BLOCK as usize];
    let mut next_block = 0u64;
    let mut pos = 0u64;
    while pos < len {
        let data = match lseek(f.as_fd(), pos as i64, Whence::SeekData) {
            Ok(o) => o as u64,
            Err(nix::errno::Errno::ENXIO) => break,
            Err(e) => panic!("SEEK_DATA {}: {e}", path.display()),
        };
        let hole = match lseek(f.as_fd(), data as i64, Whence::SeekHole) {
            Ok(o) => (o as u64).min(len),
            Err(e) => panic!("SEEK_HOLE {}: {e}", path.display()),
        };
        let first = (data / BLOCK).max(next_block);
        let last = hole.div_ceil(BLOCK);
        for idx in first..last {
            let start = idx * BLOCK;
            let n = (len - start).min(BLOCK) as usize;
            f.read_exact_at(&mut buf[..n], start).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            if buf[..n] != zero[..n] {
                h.write_u64(idx);
                h.write(&buf[..n]);
            }
        }
        next_block = next_block.max(last);
        pos = hole.max(last * BLOCK);
    }
    h.finish()
}

/// Assert a file holds exactly the model's content.
pub fn assert_content(path: &Path, model: &Model, what: &str) {
    assert_eq!(file_len(path), model.len, "{what}: length of {}", path.display());
    assert_eq!(
        checksum(path),
        model.checksum(),
        "{what}: checksum of {} differs from what was written",
        path.display()
    );
}
