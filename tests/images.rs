//! Images (issue 13) over the API, on SQLite and PostgreSQL: the built-in Glance v2 API under
//! `/image` (create, upload with md5/sha512, list filters and paging, show, JSON-patch, tags,
//! byte-exact download with `Content-MD5`, protected, delete), hostile images refused before
//! qemu sees them (415, nothing left in the store), volumes from images on Cinder and EVS
//! (bootable, `volume_image_metadata`, data identical by `qemu-img compare`, size rules, the
//! second volume a cache hit), and `os-volume_upload_image` (raw and qcow2, zvhd refused, a
//! failing conversion leaves the image `killed` and the volume back in its status).
//!
//! The daemon runs in `noauth` mode (the caller is admin of the `X-Project-Id` project);
//! isolation between projects and roles under real tokens are in `keystone_isolation_and_roles`;
//! `kill9_during_image_jobs_finishes_them` kills the daemon (the `jobs.crash_at` hook) after
//! the storage step of a volume-from-image and of an upload job.
//! Test images are made with `qemu-img` in a temp dir; every test uses its own project.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use md5::Digest as _;
use serde_json::{json, Value};

use common::{project, s, shared, unique, Backend, Opts, TestServer};

backend_tests!(
    glance_image_lifecycle,
    glance_list_filters_and_paging,
    glance_patch_tags_and_rules,
    hostile_images_are_refused,
    volume_from_image_cinder_and_evs,
    upload_volume_to_image,
    failed_upload_kills_the_image,
    kill9_during_image_jobs_finishes_them,
    keystone_isolation_and_roles,
);

const PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// A Glance client for one project (noauth: `X-Project-Id`).
struct G {
    http: reqwest::Client,
    base: String,
    project: String,
}

/// One answer.
struct R {
    status: u16,
    headers: reqwest::header::HeaderMap,
    bytes: Vec<u8>,
    body: Value,
}

impl R {
    fn expect(self, code: u16, what: &str) -> R {
        assert_eq!(self.status, code, "{what}: {}", String::from_utf8_lossy(&self.bytes));
        self
    }
    /// A Glance fault: `{"code": "<n> <title>", "title", "message"}`.
    fn fault(self, code: u16, what: &str) -> String {
        assert_eq!(self.status, code, "{what}: {}", String::from_utf8_lossy(&self.bytes));
        assert!(
            self.body["code"].as_str().is_some_and(|c| c.starts_with(&code.to_string())),
            "{what}: Glance fault body: {}",
            self.body
        );
        let m = self.body["message"].as_str().unwrap_or_default().to_string();
        assert!(!m.is_empty(), "{what}: fault without message: {}", self.body);
        m
    }
}

impl G {
    fn new(srv: &TestServer, project: &str) -> G {
        G {
            http: reqwest::Client::builder().timeout(Duration::from_secs(120)).build().expect("client"),
            base: srv.base_url(),
            project: project.to_string(),
        }
    }

    async fn req(&self, method: reqwest::Method, path: &str, ctype: Option<&str>, body: Vec<u8>) -> R {
        let mut rb = self.http.request(method, format!("{}{path}", self.base)).header("X-Project-Id", &self.project);
        if let Some(c) = ctype {
            rb = rb.header("Content-Type", c).body(body);
        }
        let r = rb.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let bytes = r.bytes().await.expect("body").to_vec();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        R { status, headers, bytes, body }
    }
    async fn get(&self, path: &str) -> R {
        self.req(reqwest::Method::GET, path, None, vec![]).await
    }
    async fn post(&self, path: &str, v: Value) -> R {
        self.req(reqwest::Method::POST, path, Some("application/json"), v.to_string().into_bytes()).await
    }
    async fn patch(&self, id: &str, ops: Value) -> R {
        self.req(reqwest::Method::PATCH, &format!("/image/v2/images/{id}"), Some(PATCH), ops.to_string().into_bytes())
            .await
    }
    async fn put_file(&self, id: &str, data: Vec<u8>) -> R {
        self.req(reqwest::Method::PUT, &format!("/image/v2/images/{id}/file"), Some("application/octet-stream"), data)
            .await
    }
    async fn delete(&self, path: &str) -> R {
        self.req(reqwest::Method::DELETE, path, None, vec![]).await
    }
    /// A queued image with these fields; returns its id.
    async fn create(&self, fields: Value) -> String {
        let r = self.post("/image/v2/images", fields).await.expect(201, "create image");
        assert_eq!(r.body["status"], "queued", "{}", r.body);
        s(&r.body, "id")
    }
    /// Create and upload: an active image.
    async fn image(&self, fmt: &str, data: Vec<u8>) -> Value {
        let id = self.create(json!({"name": unique("img"), "disk_format": fmt, "container_format": "bare"})).await;
        self.put_file(&id, data).await.expect(204, "upload");
        let r = self.get(&format!("/image/v2/images/{id}")).await.expect(200, "show");
        assert_eq!(r.body["status"], "active", "{}", r.body);
        r.body
    }
    async fn cinder(&self, method: reqwest::Method, path: &str, v: Option<Value>) -> R {
        let full = format!("/v3/{}{path}", self.project);
        match v {
            Some(v) => self.req(method, &full, Some("application/json"), v.to_string().into_bytes()).await,
            None => self.req(method, &full, None, vec![]).await,
        }
    }
    async fn wait_volume(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.cinder(reqwest::Method::GET, &format!("/volumes/{id}"), None).await.expect(200, "show");
            let st = r.body["volume"]["status"].as_str().unwrap_or_default().to_string();
            if st == want {
                return r.body["volume"].clone();
            }
            assert!(!st.starts_with("error") || want.starts_with("error"), "volume {id} went to {st}: {}", r.body);
            assert!(Instant::now() < deadline, "volume {id} still {st}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    async fn wait_image(&self, id: &str, want: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let r = self.get(&format!("/image/v2/images/{id}")).await.expect(200, "show image");
            if r.body["status"] == want {
                return r.body;
            }
            assert!(
                !matches!(r.body["status"].as_str(), Some("killed" | "active")) || r.body["status"] == want,
                "image {id} went {} waiting for {want}",
                r.body["status"]
            );
            assert!(Instant::now() < deadline, "image {id} still {}", r.body["status"]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn run(cmd: &mut Command) -> String {
    let o = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(o.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn qemu_img(args: &[&str]) -> String {
    run(Command::new("qemu-img").args(args))
}

/// A raw file of `mib` MiB with known data in three places and holes between.
fn raw_with_holes(dir: &Path, mib: u64) -> PathBuf {
    use std::io::{Seek, SeekFrom, Write};
    let p = dir.join(format!("{}.raw", unique("src")));
    let mut f = std::fs::File::create(&p).expect("create");
    f.set_len(mib << 20).expect("len");
    for (i, off) in [0u64, (mib << 20) / 3, (mib << 20) - 65536].into_iter().enumerate() {
        f.seek(SeekFrom::Start(off)).expect("seek");
        let chunk: Vec<u8> = (0..65536u32).map(|j| (j as u8) ^ (i as u8 * 37 + 1)).collect();
        f.write_all(&chunk).expect("write");
    }
    p
}

/// `raw` converted to qcow2 next to it.
fn to_qcow2(raw: &Path) -> PathBuf {
    let q = raw.with_extension("qcow2");
    qemu_img(&["convert", "-f", "raw", "-O", "qcow2", raw.to_str().unwrap(), q.to_str().unwrap()]);
    q
}

/// `qemu-img compare` of two files (exit 0: identical content).
fn assert_same(a: &Path, afmt: &str, b: &Path, bfmt: &str) {
    let out = Command::new("qemu-img")
        .args(["compare", "-f", afmt, "-F", bfmt])
        .arg(a)
        .arg(b)
        .output()
        .expect("qemu-img compare");
    assert!(
        out.status.success(),
        "qemu-img compare {} {}: {}{}",
        a.display(),
        b.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Files under `<pool>/images` and `<pool>/image-cache` (recursively, names only).
fn image_files(pool: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for d in ["images", "images/tmp", "image-cache", "image-cache/tmp"] {
        if let Ok(rd) = std::fs::read_dir(pool.join(d)) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    out.push(format!("{d}/{}", e.file_name().to_string_lossy()));
                }
            }
        }
    }
    out.sort();
    out
}

fn image_files_of(pool: &Path, id: &str) -> Vec<String> {
    image_files(pool).into_iter().filter(|f| f.contains(id)).collect()
}

async fn glance_image_lifecycle(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    // Version document and schema.
    let r = g.get("/image/versions").await.expect(300, "versions");
    assert!(r.body["versions"].as_array().is_some_and(|v| v.iter().any(|x| x["status"] == "CURRENT")));
    let r = g.get("/image/v2/schemas/image").await.expect(200, "schema");
    assert_eq!(r.body["name"], "image");

    let name = unique("img");
    let r = g
        .post(
            "/image/v2/images",
            json!({"name": name, "disk_format": "raw", "container_format": "bare", "min_disk": 1, "os_distro": "debian"}),
        )
        .await
        .expect(201, "create");
    let id = s(&r.body, "id");
    assert!(r
        .headers
        .get("location")
        .is_some_and(|l| l.to_str().unwrap().ends_with(&format!("/image/v2/images/{id}"))));
    assert_eq!(r.body["status"], "queued");
    assert_eq!(r.body["owner"], p.as_str());
    assert_eq!(r.body["visibility"], "shared");
    assert_eq!(r.body["os_distro"], "debian");
    assert_eq!(r.body["size"], Value::Null);
    // No data yet: 204.
    g.get(&format!("/image/v2/images/{id}/file")).await.expect(204, "download queued");

    // Upload: not octet-stream is 415, nothing changes.
    let r = g
        .req(reqwest::Method::PUT, &format!("/image/v2/images/{id}/file"), Some("application/json"), b"{}".to_vec())
        .await;
    r.fault(415, "upload as json");
    let data: Vec<u8> = (0..3 * 1024 * 1024 + 17).map(|i: u32| (i % 251) as u8).collect();
    g.put_file(&id, data.clone()).await.expect(204, "upload");
    let img = g.get(&format!("/image/v2/images/{id}")).await.expect(200, "show").body;
    assert_eq!(img["status"], "active");
    assert_eq!(img["size"], data.len() as u64);
    assert_eq!(img["virtual_size"], data.len() as u64);
    assert_eq!(img["checksum"], hex(&md5::Md5::digest(&data)));
    assert_eq!(img["os_hash_algo"], "sha512");
    assert_eq!(img["os_hash_value"], hex(&sha2::Sha512::digest(&data)));
    // A second upload to an active image is refused.
    g.put_file(&id, vec![1, 2, 3]).await.fault(409, "re-upload");

    // Download: byte-exact with Content-MD5.
    let r = g.get(&format!("/image/v2/images/{id}/file")).await.expect(200, "download");
    assert_eq!(
        r.headers.get("content-md5").map(|v| v.to_str().unwrap().to_string()),
        img["checksum"].as_str().map(str::to_string)
    );
    assert!(r.bytes == data, "downloaded bytes differ from the upload");

    // Protected: delete refused (403) until unprotected.
    g.patch(&id, json!([{"op": "replace", "path": "/protected", "value": true}])).await.expect(200, "protect");
    g.delete(&format!("/image/v2/images/{id}")).await.fault(403, "delete protected");
    assert_eq!(g.get(&format!("/image/v2/images/{id}")).await.status, 200);
    g.patch(&id, json!([{"op": "replace", "path": "/protected", "value": false}])).await.expect(200, "unprotect");
    assert!(!image_files_of(&srv.pool, &id).is_empty(), "the image file is in the pool");
    g.delete(&format!("/image/v2/images/{id}")).await.expect(204, "delete");
    g.get(&format!("/image/v2/images/{id}")).await.fault(404, "show deleted");
    g.get(&format!("/image/v2/images/{id}/file")).await.fault(404, "download deleted");
    g.delete(&format!("/image/v2/images/{id}")).await.fault(404, "delete again");
    assert!(image_files_of(&srv.pool, &id).is_empty(), "files left: {:?}", image_files_of(&srv.pool, &id));

    // Upload without formats: 400; unknown image 404; bad id 404.
    let bare = g.create(json!({"name": unique("noformat")})).await;
    g.put_file(&bare, vec![0; 512]).await.fault(400, "upload without formats");
    assert_eq!(g.get(&format!("/image/v2/images/{bare}")).await.body["status"], "queued");
    g.get(&format!("/image/v2/images/{}", uuid::Uuid::new_v4())).await.fault(404, "unknown");
    // Read-only fields are refused on create.
    g.post("/image/v2/images", json!({"name": "x", "checksum": "abc"})).await.fault(403, "read-only on create");
    g.post("/image/v2/images", json!({"disk_format": "floppy"})).await.fault(400, "bad disk_format");
    g.delete(&format!("/image/v2/images/{bare}")).await.expect(204, "delete queued");
}

async fn glance_list_filters_and_paging(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    let tag = unique("tag");
    let mut ids = Vec::new();
    for i in 0..5 {
        let fmt = if i % 2 == 0 { "raw" } else { "qcow2" };
        let id = g
            .create(json!({"name": format!("{tag}-{i}"), "disk_format": fmt, "container_format": "bare", "tags": [tag], "flavor": format!("f{i}")}))
            .await;
        ids.push(id);
    }
    let list = |q: String| {
        let g = &g;
        async move {
            let r = g.get(&format!("/image/v2/images?{q}")).await.expect(200, "list");
            r.body
        }
    };
    let names = |v: &Value| -> Vec<String> {
        v["images"].as_array().expect("images").iter().map(|i| i["name"].as_str().unwrap_or("").to_string()).collect()
    };
    let own = format!("owner={p}");
    let all = list(format!("{own}&tag={tag}&sort_key=name&sort_dir=asc")).await;
    assert_eq!(names(&all), (0..5).map(|i| format!("{tag}-{i}")).collect::<Vec<_>>());
    let qcow = list(format!("{own}&disk_format=qcow2&sort=name:asc")).await;
    assert_eq!(names(&qcow), vec![format!("{tag}-1"), format!("{tag}-3")]);
    let one = list(format!("{own}&name={tag}-2")).await;
    assert_eq!(names(&one), vec![format!("{tag}-2")]);
    let prop = list(format!("{own}&flavor=f4")).await;
    assert_eq!(names(&prop), vec![format!("{tag}-4")]);
    let inlist = list(format!("{own}&id=in:{},{}&sort=name:asc", ids[0], ids[3])).await;
    assert_eq!(names(&inlist), vec![format!("{tag}-0"), format!("{tag}-3")]);
    // Paging: limit 2 with next links until the end, every image once.
    let mut seen = Vec::new();
    let mut url = format!("/image/v2/images?{own}&sort_key=name&sort_dir=desc&limit=2");
    for _ in 0..5 {
        let r = g.get(&url).await.expect(200, "page");
        seen.extend(names(&r.body));
        match r.body["next"].as_str() {
            Some(n) => url = format!("/image{n}"),
            None => break,
        }
    }
    assert_eq!(seen, (0..5).rev().map(|i| format!("{tag}-{i}")).collect::<Vec<_>>());
    // Bad input: 400.
    g.get("/image/v2/images?limit=-1").await.fault(400, "limit");
    g.get("/image/v2/images?sort_key=bogus").await.fault(400, "sort key");
    g.get("/image/v2/images?sort_dir=up").await.fault(400, "sort dir");
    g.get(&format!("/image/v2/images?marker={}", uuid::Uuid::new_v4())).await.fault(400, "marker");
    for id in ids {
        g.delete(&format!("/image/v2/images/{id}")).await.expect(204, "cleanup");
    }
}

async fn glance_patch_tags_and_rules(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    let id = g.create(json!({"name": "before", "disk_format": "raw", "container_format": "bare"})).await;
    let r = g
        .patch(
            &id,
            json!([
                {"op": "replace", "path": "/name", "value": "after"},
                {"op": "add", "path": "/hw_disk_bus", "value": "virtio"},
                {"op": "add", "path": "/min_ram", "value": 512},
                {"op": "replace", "path": "/visibility", "value": "private"},
            ]),
        )
        .await
        .expect(200, "patch");
    assert_eq!(r.body["name"], "after");
    assert_eq!(r.body["hw_disk_bus"], "virtio");
    assert_eq!(r.body["min_ram"], 512);
    assert_eq!(r.body["visibility"], "private");
    let r = g.patch(&id, json!([{"op": "remove", "path": "/hw_disk_bus"}])).await.expect(200, "remove");
    assert!(r.body.get("hw_disk_bus").is_none(), "{}", r.body);
    // Wrong media type 415; read-only 403; missing property 409; bad op 400; nothing changed.
    let r = g
        .req(
            reqwest::Method::PATCH,
            &format!("/image/v2/images/{id}"),
            Some("application/json"),
            json!([{"op": "replace", "path": "/name", "value": "no"}]).to_string().into_bytes(),
        )
        .await;
    r.fault(415, "patch as json");
    g.patch(&id, json!([{"op": "replace", "path": "/status", "value": "active"}])).await.fault(403, "read-only");
    g.patch(&id, json!([{"op": "remove", "path": "/nope"}])).await.fault(409, "remove missing");
    g.patch(&id, json!([{"op": "move", "path": "/name"}])).await.fault(400, "bad op");
    g.patch(
        &id,
        json!([{"op": "replace", "path": "/name", "value": "x"}, {"op": "replace", "path": "/min_disk", "value": -1}]),
    )
    .await
    .fault(400, "negative min_disk");
    assert_eq!(g.get(&format!("/image/v2/images/{id}")).await.body["name"], "after", "a refused patch changes nothing");
    // Tags.
    g.req(reqwest::Method::PUT, &format!("/image/v2/images/{id}/tags/blue"), None, vec![]).await.expect(204, "tag");
    g.req(reqwest::Method::PUT, &format!("/image/v2/images/{id}/tags/blue"), None, vec![])
        .await
        .expect(204, "tag twice");
    assert_eq!(g.get(&format!("/image/v2/images/{id}")).await.body["tags"], json!(["blue"]));
    g.delete(&format!("/image/v2/images/{id}/tags/blue")).await.expect(204, "untag");
    g.delete(&format!("/image/v2/images/{id}/tags/blue")).await.fault(404, "untag missing");
    // Visibility: a private image of another project is invisible; its public one is listed.
    // (noauth callers are admins, so the non-admin rules are checked under keystone in
    // tests/identity-style fixtures; here the admin view must still list by visibility.)
    let r = g.get(&format!("/image/v2/images?visibility=private&owner={p}")).await.expect(200, "list private");
    assert_eq!(r.body["images"].as_array().map(Vec::len), Some(1));
    g.delete(&format!("/image/v2/images/{id}")).await.expect(204, "delete");
}

/// Each hostile file: (label, declared format, bytes).
fn hostile_files(dir: &Path) -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let host = dir.join("host-secret.raw");
    std::fs::write(&host, vec![0x5a; 1 << 20]).expect("host file");
    let h = host.to_str().unwrap();
    let mut out = Vec::new();
    // qcow2 whose backing file is a host file.
    let backing = dir.join("backing.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", "-b", h, "-F", "raw", backing.to_str().unwrap()]);
    out.push(("backing file", "qcow2", std::fs::read(&backing).unwrap()));
    // qcow2 with an external data file (the host file).
    let datafile = dir.join("datafile.qcow2");
    let ext = dir.join("external.data");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        &format!("data_file={}", ext.display()),
        datafile.to_str().unwrap(),
        "1M",
    ]);
    out.push(("data file", "qcow2", std::fs::read(&datafile).unwrap()));
    // A VMDK descriptor whose extent is a host file.
    let desc = format!(
        "# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType=\"monolithicFlat\"\n\nRW 2048 FLAT \"{h}\" 0\n\nddb.adapterType = \"ide\"\n"
    );
    out.push(("vmdk descriptor", "vmdk", desc.into_bytes()));
    // Raw data declared qcow2.
    out.push(("raw declared qcow2", "qcow2", vec![0x11; 1 << 20]));
    // A qcow2 declared raw.
    let plain = dir.join("plain.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", plain.to_str().unwrap(), "16M"]);
    let plain_bytes = std::fs::read(&plain).unwrap();
    out.push(("qcow2 declared raw", "raw", plain_bytes.clone()));
    // A truncated qcow2 (the header cut off).
    out.push(("truncated qcow2", "qcow2", plain_bytes[..64].to_vec()));
    out
}

async fn hostile_images_are_refused(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    let dir = tempfile::tempdir().expect("tmp");
    let host = dir.path().join("host-secret.raw");
    for (label, fmt, bytes) in hostile_files(dir.path()) {
        let before = std::fs::metadata(&host).and_then(|m| m.accessed()).ok();
        let id = g.create(json!({"name": unique("hostile"), "disk_format": fmt, "container_format": "bare"})).await;
        let msg = g.put_file(&id, bytes).await.fault(415, label);
        assert!(
            ["backing", "data file", "not allowed", "does not match", "Truncated", "VMDK"]
                .iter()
                .any(|w| msg.contains(w)),
            "{label}: the message says why: {msg}"
        );
        let img = g.get(&format!("/image/v2/images/{id}")).await.expect(200, "show").body;
        assert_eq!(img["status"], "queued", "{label}: a refused upload leaves the image queued: {img}");
        assert_eq!(img["size"], Value::Null, "{label}");
        assert!(image_files_of(&srv.pool, &id).is_empty(), "{label}: files left {:?}", image_files_of(&srv.pool, &id));
        // The inspector refuses before qemu: the host file was not read (where atime moves).
        let after = std::fs::metadata(&host).and_then(|m| m.accessed()).ok();
        assert_eq!(before, after, "{label}: the host file was read");
        // A volume cannot be made from a queued image.
        let r = g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1, "imageRef": id}}))).await;
        assert_eq!(r.status, 400, "{label}: volume from a refused image: {}", r.body);
        g.delete(&format!("/image/v2/images/{id}")).await.expect(204, "delete");
    }
    assert!(
        image_files(&srv.pool).iter().all(|f| !f.contains("/tmp/")),
        "partial files left: {:?}",
        image_files(&srv.pool)
    );
}

async fn volume_from_image_cinder_and_evs(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    let dir = tempfile::tempdir().expect("tmp");
    let raw = raw_with_holes(dir.path(), 24);
    let qcow = to_qcow2(&raw);
    let img = g.image("qcow2", std::fs::read(&qcow).unwrap()).await;
    let iid = s(&img, "id");
    assert_eq!(img["virtual_size"], 24u64 << 20);
    // Cinder imageRef.
    let r = g
        .cinder(
            reqwest::Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1, "imageRef": iid, "name": unique("fromimg")}})),
        )
        .await
        .expect(202, "create from image");
    let vid = s(&r.body["volume"], "id");
    let v = g.wait_volume(&vid, "available").await;
    assert_eq!(v["bootable"], "true", "{v}");
    let meta = &v["volume_image_metadata"];
    assert_eq!(meta["image_id"], iid.as_str(), "{v}");
    assert_eq!(meta["checksum"], img["checksum"]);
    assert_eq!(meta["disk_format"], "qcow2");
    assert_eq!(meta["container_format"], "bare");
    assert_eq!(meta["image_name"], img["name"]);
    assert_same(&srv.volume_path(&vid), "raw", &qcow, "qcow2");
    assert_eq!(std::fs::metadata(srv.volume_path(&vid)).unwrap().len(), 1 << 30, "grown to the volume size");
    // Image metadata actions.
    let act_path = format!("/volumes/{vid}/action");
    let act = |body: Value| g.cinder(reqwest::Method::POST, &act_path, Some(body));
    let r = act(json!({"os-set_image_metadata": {"metadata": {"hw_rng": "yes"}}})).await.expect(200, "set");
    assert_eq!(r.body["metadata"]["hw_rng"], "yes");
    let r = act(json!({"os-show_image_metadata": null})).await.expect(200, "show");
    assert_eq!(r.body["metadata"]["image_id"], iid.as_str());
    act(json!({"os-unset_image_metadata": {"key": "hw_rng"}})).await.expect(200, "unset");
    let r = act(json!({"os-unset_image_metadata": {"key": "hw_rng"}})).await;
    assert_eq!(r.status, 404, "unset missing: {}", r.body);

    // The second volume is a cache hit (the log says so) with the same data.
    let hits_before = srv.log_tail(100000).matches("cache_hit=true").count();
    let r = g
        .cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 2, "imageRef": iid}})))
        .await
        .expect(202, "second");
    let vid2 = s(&r.body["volume"], "id");
    g.wait_volume(&vid2, "available").await;
    assert_same(&srv.volume_path(&vid2), "raw", &raw, "raw");
    let hits_after = srv.log_tail(100000).matches("cache_hit=true").count();
    assert_eq!(hits_after, hits_before + 1, "the second volume from the image is a cache hit");
    assert!(image_files(&srv.pool).iter().any(|f| f == &format!("image-cache/{iid}.raw")));

    // EVS: imageRef and image_id.
    for key in ["imageRef", "image_id"] {
        let r = g
            .req(
                reqwest::Method::POST,
                &format!("/v2/{p}/cloudvolumes"),
                Some("application/json"),
                json!({"volume": {"size": 1, "availability_zone": "nova", "volume_type": "SSD", key: iid}})
                    .to_string()
                    .into_bytes(),
            )
            .await
            .expect(200, key);
        let vol_id =
            r.body["volume_ids"][0].as_str().map(str::to_string).unwrap_or_else(|| panic!("{key}: {}", r.body));
        let v = g.wait_volume(&vol_id, "available").await;
        assert_eq!(v["bootable"], "true");
        assert_same(&srv.volume_path(&vol_id), "raw", &raw, "raw");
    }

    // Size rules: below min_disk and below the virtual size are refused; nothing is created.
    let big = dir.path().join("big.qcow2");
    qemu_img(&["create", "-q", "-f", "qcow2", big.to_str().unwrap(), "2G"]);
    let bigimg = g.image("qcow2", std::fs::read(&big).unwrap()).await;
    assert_eq!(bigimg["virtual_size"], 2u64 << 30);
    let bid = s(&bigimg, "id");
    let before = srv.pool_files();
    let r = g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1, "imageRef": bid}}))).await;
    assert_eq!(r.status, 400, "smaller than the virtual size: {}", r.body);
    assert!(
        r.body["badRequest"]["message"].as_str().is_some_and(|m| m.contains("larger than volume size")),
        "{}",
        r.body
    );
    g.patch(&iid, json!([{"op": "replace", "path": "/min_disk", "value": 3}])).await.expect(200, "min_disk");
    let r = g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 2, "imageRef": iid}}))).await;
    assert_eq!(r.status, 400, "below min_disk: {}", r.body);
    assert!(r.body["badRequest"]["message"].as_str().is_some_and(|m| m.contains("minDisk")), "{}", r.body);
    // Without a size, the volume takes the image's minimum.
    let r = g
        .cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"imageRef": bid}})))
        .await
        .expect(202, "no size");
    assert_eq!(r.body["volume"]["size"], 2);
    let vid3 = s(&r.body["volume"], "id");
    g.wait_volume(&vid3, "available").await;
    let r = g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1, "imageRef": "nope"}}))).await;
    assert_eq!(r.status, 400, "unknown image: {}", r.body);
    // The pool is shared with tests running beside this one: a refused create would leave a
    // file no volume row owns (rows come before files on create and go after them on delete).
    // Files first, rows second; a file deleted meanwhile by another test is gone by the check.
    let files = srv.pool_files();
    let rows: std::collections::BTreeSet<String> = srv.db_volumes().await.into_iter().map(|(id, _)| id).collect();
    let orphans: Vec<&String> =
        files.difference(&before).filter(|f| !rows.contains(*f) && srv.volume_path(f).exists()).collect();
    assert!(orphans.is_empty(), "refused creates leave no volume file: {orphans:?}");
    assert!(srv.pool_files().contains(&vid3));

    // Deleting the image removes its file and its cache entry; the volumes keep their data.
    g.delete(&format!("/image/v2/images/{iid}")).await.expect(204, "delete image");
    assert!(image_files_of(&srv.pool, &iid).is_empty(), "{:?}", image_files_of(&srv.pool, &iid));
    assert_same(&srv.volume_path(&vid), "raw", &raw, "raw");
}

async fn upload_volume_to_image(b: Backend) {
    let srv = shared(&b);
    let p = project();
    let g = G::new(&srv, &p);
    let dir = tempfile::tempdir().expect("tmp");
    let raw = raw_with_holes(dir.path(), 16);
    let src = g.image("raw", std::fs::read(&raw).unwrap()).await;
    let r = g
        .cinder(
            reqwest::Method::POST,
            "/volumes",
            Some(json!({"volume": {"size": 1, "imageRef": src["id"], "name": unique("up")}})),
        )
        .await
        .expect(202, "volume");
    let vid = s(&r.body["volume"], "id");
    g.wait_volume(&vid, "available").await;
    let act_path = format!("/volumes/{vid}/action");
    let act = |body: Value| g.cinder(reqwest::Method::POST, &act_path, Some(body));

    // zvhd is refused with the reference's error, the volume stays available.
    let r = act(json!({"os-volume_upload_image": {"image_name": "z", "disk_format": "zvhd2"}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
    assert!(r.body["badRequest"]["message"].as_str().is_some_and(|m| m.contains("zvhd")), "{}", r.body);
    assert_eq!(g.wait_volume(&vid, "available").await["status"], "available");

    for fmt in ["raw", "qcow2"] {
        let name = unique(&format!("saved-{fmt}"));
        let r = act(
            json!({"os-volume_upload_image": {"image_name": name, "disk_format": fmt, "container_format": "bare"}}),
        )
        .await
        .expect(202, fmt);
        let up = &r.body["os-volume_upload_image"];
        assert_eq!(up["id"], vid.as_str(), "{up}");
        assert_eq!(up["status"], "uploading");
        assert_eq!(up["disk_format"], fmt);
        assert_eq!(up["container_format"], "bare");
        assert_eq!(up["image_name"], name.as_str());
        assert_eq!(up["size"], 1);
        assert!(up["volume_type"].is_object(), "{up}");
        let iid = s(up, "image_id");
        let img = g.wait_image(&iid, "active").await;
        g.wait_volume(&vid, "available").await;
        assert_eq!(img["disk_format"], fmt);
        assert_eq!(img["virtual_size"], 1u64 << 30);
        assert_eq!(img["min_disk"], 1);
        let data = g.get(&format!("/image/v2/images/{iid}/file")).await.expect(200, "download").bytes;
        assert_eq!(img["checksum"], hex(&md5::Md5::digest(&data)));
        assert_eq!(img["size"], data.len() as u64);
        let saved = dir.path().join(format!("saved.{fmt}"));
        std::fs::write(&saved, &data).unwrap();
        assert_same(&saved, fmt, &srv.volume_path(&vid), "raw");
        // A volume from the uploaded image has the same data again.
        let r = g
            .cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1, "imageRef": iid}})))
            .await
            .expect(202, "from uploaded");
        let v2 = s(&r.body["volume"], "id");
        g.wait_volume(&v2, "available").await;
        assert_same(&srv.volume_path(&v2), "raw", &raw, "raw");
    }
    // The EVS 7.2.4 path (/v2) answers the same shape.
    let r = g
        .req(
            reqwest::Method::POST,
            &format!("/v2/{p}/volumes/{vid}/action"),
            Some("application/json"),
            json!({"os-volume_upload_image": {"image_name": unique("evs"), "disk_format": "qcow2"}})
                .to_string()
                .into_bytes(),
        )
        .await
        .expect(202, "evs upload");
    let iid = s(&r.body["os-volume_upload_image"], "image_id");
    assert_eq!(r.body["os-volume_upload_image"]["container_format"], "bare");
    g.wait_image(&iid, "active").await;
    g.wait_volume(&vid, "available").await;
    // An in-use volume needs force (not attached here: the status rule for available only).
    let r = act(json!({"os-volume_upload_image": {"image_name": "x", "disk_format": "vmdk", "force": "maybe"}})).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

async fn failed_upload_kills_the_image(b: Backend) {
    // qemu-img convert cannot even start in 1 MiB of address space: every non-raw upload fails.
    let srv = TestServer::start(
        b,
        Opts { extra_tail: "\n[images]\nconvert_address_space_mib = 1\n".into(), ..Opts::default() },
    );
    let p = project();
    let g = G::new(&srv, &p);
    let r =
        g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1}}))).await.expect(202, "volume");
    let vid = s(&r.body["volume"], "id");
    g.wait_volume(&vid, "available").await;
    let r = g
        .cinder(
            reqwest::Method::POST,
            &format!("/volumes/{vid}/action"),
            Some(json!({"os-volume_upload_image": {"image_name": "doomed", "disk_format": "qcow2"}})),
        )
        .await
        .expect(202, "upload");
    let iid = s(&r.body["os-volume_upload_image"], "image_id");
    let img = g.wait_image(&iid, "killed").await;
    assert_eq!(img["size"], Value::Null);
    let v = g.wait_volume(&vid, "available").await;
    assert_eq!(v["status"], "available");
    assert!(image_files_of(&srv.pool, &iid).is_empty(), "{:?}", image_files_of(&srv.pool, &iid));
    let r = srv.api().get_h(&format!("/v3/{p}/messages"), &[("OpenStack-API-Version", "volume 3.3")]).await.expect(200);
    let msgs = r.body["messages"].as_array().cloned().unwrap_or_default();
    assert!(msgs.iter().any(|m| m["resource_uuid"] == vid.as_str()), "a user message for the volume: {}", r.body);
    // A killed image cannot make volumes.
    let r = g.cinder(reqwest::Method::POST, "/volumes", Some(json!({"volume": {"size": 1, "imageRef": iid}}))).await;
    assert_eq!(r.status, 400, "{}", r.body);
}

/// Poll until the daemon has killed itself at its `jobs.crash_at` hook.
async fn wait_crashed(srv: &TestServer, hook: &str, crashes: usize) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while srv.is_running() {
        assert!(Instant::now() < deadline, "{hook}: never reached\n{}", srv.log_tail(30));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let log = std::fs::read_to_string(&srv.log_path).expect("log");
    let hooks: Vec<&str> = log.lines().filter(|l| l.contains("jobs.crash_at: killing")).collect();
    assert_eq!(hooks.len(), crashes, "{hook}: died elsewhere:\n{}", srv.log_tail(30));
    let (kind, step) = hook.split_once(':').expect("kind:step");
    let last = hooks.last().copied().unwrap_or("");
    assert!(last.contains(&format!("kind=\"{kind}\"")) && last.contains(&format!("step=\"{step}\"")), "{last}");
}

/// Send a request the daemon may die while answering.
fn fire(srv: &TestServer, p: &str, path: String, body: Value) {
    let url = format!("{}{path}", srv.base_url());
    let p = p.to_string();
    tokio::spawn(async move {
        let _ = reqwest::Client::new()
            .post(url)
            .header("Content-Type", "application/json")
            .header("X-Project-Id", p)
            .body(body.to_string())
            .send()
            .await;
    });
}

async fn kill9_during_image_jobs_finishes_them(b: Backend) {
    // kill -9 right after the storage step of a volume-from-image job, then of an upload job:
    // the next start runs each job again and finishes it with the right data.
    let env = |hook: &str| vec![("CINDERBLOCK_JOBS__CRASH_AT".to_string(), hook.to_string())];
    let srv = TestServer::start(b, Opts { env: env("createVolume:after_storage"), ..Opts::default() });
    let p = project();
    let dir = tempfile::tempdir().expect("tmp");
    let raw = raw_with_holes(dir.path(), 8);
    let qcow = to_qcow2(&raw);
    let iid = s(&G::new(&srv, &p).image("qcow2", std::fs::read(&qcow).unwrap()).await, "id");
    let vname = unique("crash");
    fire(&srv, &p, format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "imageRef": iid, "name": vname}}));
    wait_crashed(&srv, "createVolume:after_storage", 1).await;
    srv.restart_with(|o| o.env = env("uploadImage:after_storage"));
    let g = G::new(&srv, &p);
    let r = g.cinder(reqwest::Method::GET, &format!("/volumes?name={vname}"), None).await.expect(200, "list");
    let vid = s(&r.body["volumes"][0], "id");
    let v = g.wait_volume(&vid, "available").await;
    assert_eq!(v["bootable"], "true");
    assert_same(&srv.volume_path(&vid), "raw", &raw, "raw");

    let iname = unique("crash-up");
    fire(
        &srv,
        &p,
        format!("/v3/{p}/volumes/{vid}/action"),
        json!({"os-volume_upload_image": {"image_name": iname, "disk_format": "qcow2"}}),
    );
    wait_crashed(&srv, "uploadImage:after_storage", 2).await;
    srv.restart_with(|o| o.env.clear());
    let g = G::new(&srv, &p);
    let r = g.get(&format!("/image/v2/images?name={iname}")).await.expect(200, "list images");
    let up = s(&r.body["images"][0], "id");
    let img = g.wait_image(&up, "active").await;
    g.wait_volume(&vid, "available").await;
    let data = g.get(&format!("/image/v2/images/{up}/file")).await.expect(200, "download").bytes;
    assert_eq!(img["checksum"], hex(&md5::Md5::digest(&data)));
    let saved = dir.path().join("saved.qcow2");
    std::fs::write(&saved, &data).unwrap();
    assert_same(&saved, "qcow2", &raw, "raw");
    assert!(
        image_files(&srv.pool).iter().all(|f| !f.contains("/tmp/")),
        "partial files left: {:?}",
        image_files(&srv.pool)
    );
}

/// `cinderblock <args>` against `srv`'s config, with `stdin`; its stdout.
fn cli(srv: &TestServer, args: &[&str], stdin: Option<&str>) -> String {
    use std::io::Write;
    use std::process::Stdio;
    let mut cmd = srv.command(args);
    cmd.stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn cinderblock admin");
    if let Some(input) = stdin {
        child.stdin.take().expect("stdin").write_all(input.as_bytes()).expect("write stdin");
    }
    let o = child.wait_with_output().expect("output");
    assert!(o.status.success(), "cinderblock {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// A Glance request with a token.
async fn tok(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    method: reqwest::Method,
    path: &str,
    ctype: &str,
    body: Value,
) -> (u16, Value) {
    let mut rb = http.request(method, format!("{base}{path}")).header("X-Auth-Token", token);
    if !body.is_null() {
        rb = rb.header("Content-Type", ctype).body(body.to_string());
    }
    let r = rb.send().await.expect("send");
    let st = r.status().as_u16();
    (st, r.json().await.unwrap_or(Value::Null))
}

async fn keystone_isolation_and_roles(b: Backend) {
    const PW: &str = "correct horse battery staple";
    let srv = TestServer::start(
        b,
        Opts { env: vec![("CINDERBLOCK_AUTH__MODE".into(), "keystone".into())], ..Opts::default() },
    );
    cli(&srv, &["admin", "project", "create", "proj-a"], None);
    cli(&srv, &["admin", "project", "create", "proj-b"], None);
    for (user, project, role) in
        [("alice", "proj-a", "member"), ("rita", "proj-a", "reader"), ("bob", "proj-b", "member")]
    {
        cli(&srv, &["admin", "user", "create", user, "--project", project, "--role", role], Some(&format!("{PW}\n")));
    }
    let http = reqwest::Client::new();
    let base = srv.base_url();
    let mut tokens = std::collections::HashMap::new();
    let mut project_ids = std::collections::HashMap::new();
    for (user, project) in [("alice", "proj-a"), ("rita", "proj-a"), ("bob", "proj-b")] {
        let body = json!({"auth": {
            "identity": {"methods": ["password"], "password": {"user": {"name": user, "password": PW, "domain": {"name": "Default"}}}},
            "scope": {"project": {"name": project, "domain": {"name": "Default"}}}
        }});
        let r = http.post(format!("{base}/identity/v3/auth/tokens")).json(&body).send().await.expect("login");
        assert_eq!(r.status().as_u16(), 201);
        tokens.insert(user, r.headers()["x-subject-token"].to_str().unwrap().to_string());
        let body: Value = r.json().await.expect("token body");
        project_ids.insert(user, s(&body["token"]["project"], "id"));
    }
    let call = |user: &'static str, method: reqwest::Method, path: String, ctype: &'static str, body: Value| {
        let (http, base, token) = (http.clone(), base.clone(), tokens[user].clone());
        async move { tok(&http, &base, &token, method, &path, ctype, body).await }
    };
    use reqwest::Method as M;
    let json_ct = "application/json";
    // A reader cannot create; a member can.
    let (st, _) = call("rita", M::POST, "/image/v2/images".into(), json_ct, json!({"name": "r"})).await;
    assert_eq!(st, 403, "reader creates");
    let (st, img) =
        call("alice", M::POST, "/image/v2/images".into(), json_ct, json!({"name": "a", "visibility": "private"})).await;
    assert_eq!(st, 201, "{img}");
    let id = s(&img, "id");
    let path = format!("/image/v2/images/{id}");
    // Same project: the reader sees it; another project does not (404, not listed).
    assert_eq!(call("rita", M::GET, path.clone(), json_ct, Value::Null).await.0, 200);
    assert_eq!(call("bob", M::GET, path.clone(), json_ct, Value::Null).await.0, 404);
    let (_, list) = call("bob", M::GET, "/image/v2/images".into(), json_ct, Value::Null).await;
    assert!(list["images"].as_array().unwrap().iter().all(|i| i["id"] != id.as_str()), "{list}");
    assert_eq!(call("bob", M::DELETE, path.clone(), json_ct, Value::Null).await.0, 404);
    // A member cannot publicize; the reader cannot change it.
    let publicize = json!([{"op": "replace", "path": "/visibility", "value": "public"}]);
    assert_eq!(call("alice", M::PATCH, path.clone(), PATCH, publicize).await.0, 403);
    let rename = json!([{"op": "replace", "path": "/name", "value": "x"}]);
    assert_eq!(call("rita", M::PATCH, path.clone(), PATCH, rename.clone()).await.0, 403);
    // Community: another project can read it but not change it.
    let community = json!([{"op": "replace", "path": "/visibility", "value": "community"}]);
    assert_eq!(call("alice", M::PATCH, path.clone(), PATCH, community).await.0, 200);
    assert_eq!(call("bob", M::GET, path.clone(), json_ct, Value::Null).await.0, 200);
    assert_eq!(call("bob", M::PATCH, path.clone(), PATCH, rename).await.0, 403);
    assert_eq!(call("bob", M::DELETE, path.clone(), json_ct, Value::Null).await.0, 403);
    assert_eq!(call("rita", M::DELETE, path.clone(), json_ct, Value::Null).await.0, 403);
    assert_eq!(call("alice", M::DELETE, path.clone(), json_ct, Value::Null).await.0, 204);

    // Deactivate / reactivate (Glance's image actions): the owner's members may; a reader may
    // not (403), another project cannot see it (404); only active <-> deactivated.
    let (st, img) = call(
        "alice",
        M::POST,
        "/image/v2/images".into(),
        json_ct,
        json!({"name": "d", "disk_format": "raw", "container_format": "bare", "visibility": "community"}),
    )
    .await;
    assert_eq!(st, 201, "{img}");
    let id = s(&img, "id");
    let path = format!("/image/v2/images/{id}");
    let deactivate = format!("{path}/actions/deactivate");
    let reactivate = format!("{path}/actions/reactivate");
    let (st, body) = call("alice", M::POST, deactivate.clone(), json_ct, Value::Null).await;
    assert_eq!(st, 403, "deactivating a queued image: {body}");
    assert!(body["message"].as_str().is_some_and(|m| m.contains("queued")), "{body}");
    let data: Vec<u8> = (0..1024 * 1024).map(|i: u32| (i % 253) as u8).collect();
    let r = http
        .put(format!("{base}{path}/file"))
        .header("X-Auth-Token", &tokens["alice"])
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(call("rita", M::POST, deactivate.clone(), json_ct, Value::Null).await.0, 403, "reader deactivates");
    assert_eq!(call("bob", M::POST, deactivate.clone(), json_ct, Value::Null).await.0, 403, "other project");
    assert_eq!(call("alice", M::POST, deactivate.clone(), json_ct, Value::Null).await.0, 204);
    assert_eq!(call("alice", M::POST, deactivate.clone(), json_ct, Value::Null).await.0, 204, "idempotent");
    let (_, shown) = call("rita", M::GET, path.clone(), json_ct, Value::Null).await;
    assert_eq!(shown["status"], "deactivated", "{shown}");
    let (st, body) = call("alice", M::GET, format!("{path}/file"), json_ct, Value::Null).await;
    assert_eq!(st, 403, "download of a deactivated image: {body}");
    // No volume from a deactivated image (400), and nothing is created.
    let volumes = format!("/v3/{}/volumes", project_ids["alice"]);
    let (_, before) = call("alice", M::GET, volumes.clone(), json_ct, Value::Null).await;
    let (st, body) =
        call("alice", M::POST, volumes.clone(), json_ct, json!({"volume": {"size": 1, "imageRef": id}})).await;
    assert_eq!(st, 400, "volume from a deactivated image: {body}");
    let (_, after) = call("alice", M::GET, volumes.clone(), json_ct, Value::Null).await;
    assert_eq!(before["volumes"], after["volumes"], "a refused create changed the volume list");
    assert_eq!(call("rita", M::POST, reactivate.clone(), json_ct, Value::Null).await.0, 403, "reader reactivates");
    assert_eq!(call("alice", M::POST, reactivate.clone(), json_ct, Value::Null).await.0, 204);
    assert_eq!(call("alice", M::POST, reactivate.clone(), json_ct, Value::Null).await.0, 204, "idempotent");
    let (_, shown) = call("alice", M::GET, path.clone(), json_ct, Value::Null).await;
    assert_eq!(shown["status"], "active", "{shown}");
    let r = http.get(format!("{base}{path}/file")).header("X-Auth-Token", &tokens["alice"]).send().await.expect("get");
    assert_eq!(r.status().as_u16(), 200);
    assert!(r.bytes().await.expect("bytes").to_vec() == data, "data changed across deactivate/reactivate");
    assert_eq!(call("alice", M::DELETE, path.clone(), json_ct, Value::Null).await.0, 204);
    assert_eq!(call("alice", M::POST, reactivate, json_ct, Value::Null).await.0, 404, "reactivate a deleted image");
}
