//! An RBD pool through the API, on SQLite and PostgreSQL: a daemon (built with `--features
//! rbd`) serves a file pool and an RBD pool on a throwaway Ceph cluster (`cephkit`); a volume
//! type routes to the RBD pool; create, snapshot, linked clone, extend, revert and delete run
//! as jobs and show up as RBD images (checked with the `rbd` tool); attaching is refused with
//! a clear 400 that changes nothing; a volume from an image and an upload back to an image
//! carry the data byte for byte. Skipped with a reason without Ceph (failed instead under
//! `CINDERBLOCK_REQUIRE_PRIVILEGED=1`).

#![cfg(feature = "rbd")]

#[macro_use]
mod common;
mod cephkit;
mod snapkit;

use std::time::{Duration, Instant};

use md5::Digest as _;
use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(rbd_pool_lifecycle_and_refused_attach, rbd_volumes_from_and_to_images);

const MV: (&str, &str) = ("OpenStack-API-Version", "volume 3.71");

async fn action(api: &Api, p: &str, id: &str, body: Value) -> common::Resp {
    api.request(reqwest::Method::POST, &format!("/v3/{p}/volumes/{id}/action"), &[MV], Some(body.to_string())).await
}

fn images(c: &cephkit::Cluster) -> Vec<String> {
    c.rbd(&["ls"]).lines().map(str::to_string).collect()
}

fn image_size(c: &cephkit::Cluster, image: &str) -> u64 {
    let info: Value = serde_json::from_str(&c.rbd(&["info", "--format", "json", image])).expect("rbd info json");
    info["size"].as_u64().expect("size")
}

async fn rbd_pool_lifecycle_and_refused_attach(b: Backend) {
    if !cephkit::ceph_available("rbd_pool_lifecycle_and_refused_attach") {
        return;
    }
    let cluster = cephkit::Cluster::start();
    let work = tempfile::tempdir().expect("work dir");
    let tail = format!(
        "[[pools]]\nname = \"ceph\"\ndriver = \"rbd\"\npath = {:?}\nvolume_types = [\"ceph\"]\n\
         rbd = {{ ceph_conf = {:?}, client_id = \"admin\", pool = \"rbd\" }}\n",
        work.path().display().to_string(),
        cluster.conf.display().to_string()
    );
    let srv = TestServer::start(b, Opts { extra_tail: tail, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let ty = common::unique("ceph");
    api.post(
        &format!("/v3/{p}/types"),
        json!({"volume_type": {"name": ty, "extra_specs": {"volume_backend_name": "ceph"}}}),
    )
    .await
    .expect(200);

    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": ty})).await;
    let id = s(&v, "id");
    assert!(s(&v, "os-vol-host-attr:host").ends_with("#ceph"), "{v}");
    let img = format!("cbv-{id}");
    assert!(images(&cluster).contains(&img), "no image {img}: {:?}", images(&cluster));
    assert_eq!(image_size(&cluster, &img), 1 << 30);

    let snap = snapkit::cinder_snapshot_available(&api, &p, &id, json!({})).await;
    let sid = s(&snap, "id");
    assert!(cluster.rbd(&["snap", "ls", &img]).contains(&format!("cbs-{sid}")));

    let c = api.cinder_create_available(&p, json!({"size": 2, "snapshot_id": sid, "volume_type": ty})).await;
    let cid = s(&c, "id");
    let cinfo: Value =
        serde_json::from_str(&cluster.rbd(&["info", "--format", "json", &format!("cbv-{cid}")])).expect("json");
    assert_eq!(cinfo["parent"]["image"], img.as_str(), "a linked clone of the snapshot: {cinfo}");
    assert_eq!(cinfo["size"], 2u64 << 30);

    action(&api, &p, &id, json!({"revert": {"snapshot_id": sid}})).await.expect(202);
    let v = api.wait_available(&p, &id).await;
    assert_eq!(v["size"], 1, "{v}");
    assert_eq!(image_size(&cluster, &img), 1 << 30);
    let meta = cluster.rbd(&["image-meta", "list", "--format", "json", &img]);
    assert!(!meta.contains("cinderblock.revert_size"), "a finished revert leaves no record: {meta}");
    action(&api, &p, &id, json!({"os-extend": {"new_size": 3}})).await.expect(202);
    api.wait_available(&p, &id).await;
    assert_eq!(image_size(&cluster, &img), 3 << 30);

    // Attaching is refused before anything is exported or recorded.
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await;
    let r = r.expect_fault(400, "badRequest");
    assert!(r.text.contains("RBD pool ceph cannot be attached or exported"), "{}", r.text);
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{p}/attachments"),
            &[MV],
            Some(json!({"attachment": {"volume_uuid": id, "connector": {"host": "h1"}}}).to_string()),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    let v = api.wait_available(&p, &id).await;
    assert_eq!(v["attachments"], json!([]), "{v}");
    // A retype that must copy the data out of the RBD pool is refused the same way.
    let file_ty = common::unique("file");
    api.post(
        &format!("/v3/{p}/types"),
        json!({"volume_type": {"name": file_ty, "extra_specs": {"volume_backend_name": "default"}}}),
    )
    .await
    .expect(200);
    let r = action(&api, &p, &id, json!({"os-retype": {"new_type": file_ty, "migration_policy": "on-demand"}})).await;
    let r = r.expect_fault(400, "badRequest");
    assert!(r.text.contains("cannot be migrated out of its pool"), "{}", r.text);
    let v = api.wait_available(&p, &id).await;
    assert_eq!(v["volume_type"], ty.as_str(), "{v}");

    // Deleting the volume with a snapshot and a clone: everything goes in the end.
    api.delete(&format!("/v3/{p}/volumes/{cid}")).await.expect(202);
    api.wait_volume_gone(&p, &cid).await;
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect(202);
    snapkit::wait_snapshot_gone(&api, &p, &sid).await;
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
    assert!(images(&cluster).is_empty(), "images left: {:?}", images(&cluster));
    assert!(cluster.rbd(&["trash", "ls"]).trim().is_empty(), "trash left: {}", cluster.rbd(&["trash", "ls"]));
}

/// The built-in image service and an RBD pool: a volume made from an image holds the image's
/// data (read back with `rbd export`), and uploading an RBD volume to an image (through the
/// snapshot exported to the pool's work directory) gives an image whose md5 is that of the
/// volume's content; the export file and the temporary snapshot are gone afterwards.
async fn rbd_volumes_from_and_to_images(b: Backend) {
    if !cephkit::ceph_available("rbd_volumes_from_and_to_images") {
        return;
    }
    let cluster = cephkit::Cluster::start();
    let work = tempfile::tempdir().expect("work dir");
    let tail = format!(
        "[[pools]]\nname = \"ceph\"\ndriver = \"rbd\"\npath = {:?}\nvolume_types = [\"ceph\"]\n\
         rbd = {{ ceph_conf = {:?}, client_id = \"admin\", pool = \"rbd\" }}\n",
        work.path().display().to_string(),
        cluster.conf.display().to_string()
    );
    let srv = TestServer::start(b, Opts { extra_tail: tail, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let ty = common::unique("ceph");
    api.post(
        &format!("/v3/{p}/types"),
        json!({"volume_type": {"name": ty, "extra_specs": {"volume_backend_name": "ceph"}}}),
    )
    .await
    .expect(200);
    let http = reqwest::Client::new();
    let base = srv.base_url();
    let data: Vec<u8> = (0..(2u32 << 20)).map(|i| (i % 251) as u8 | 1).collect();
    let r = http
        .post(format!("{base}/image/v2/images"))
        .header("X-Project-Id", &p)
        .json(&json!({"name": common::unique("img"), "disk_format": "raw", "container_format": "bare"}))
        .send()
        .await
        .expect("create image");
    assert_eq!(r.status().as_u16(), 201);
    let iid = s(&r.json::<Value>().await.expect("json"), "id");
    let r = http
        .put(format!("{base}/image/v2/images/{iid}/file"))
        .header("X-Project-Id", &p)
        .header("Content-Type", "application/octet-stream")
        .body(data.clone())
        .send()
        .await
        .expect("upload");
    assert_eq!(r.status().as_u16(), 204);

    let v = api.cinder_create_available(&p, json!({"size": 1, "imageRef": iid, "volume_type": ty})).await;
    let vid = s(&v, "id");
    let exported = work.path().join("exported.raw");
    cluster.rbd(&["export", &format!("cbv-{vid}"), exported.to_str().expect("utf-8")]);
    let got = std::fs::read(&exported).expect("read export");
    assert_eq!(got.len(), 1 << 30);
    assert!(got[..data.len()] == data[..], "the volume does not hold the image's data");
    assert!(got[data.len()..].iter().all(|&b| b == 0), "the volume holds data past the image's end");
    let want_md5: String = md5::Md5::digest(&got).iter().map(|b| format!("{b:02x}")).collect();
    drop(got);
    std::fs::remove_file(&exported).expect("rm");

    let r = action(
        &api,
        &p,
        &vid,
        json!({"os-volume_upload_image": {"image_name": common::unique("saved"), "disk_format": "raw", "container_format": "bare"}}),
    )
    .await
    .expect(202);
    let up = s(&r.body["os-volume_upload_image"], "image_id");
    let deadline = Instant::now() + Duration::from_secs(180);
    let img = loop {
        let r = http.get(format!("{base}/image/v2/images/{up}")).header("X-Project-Id", &p).send().await.expect("show");
        let img: Value = r.json().await.expect("json");
        if img["status"] == "active" {
            break img;
        }
        assert_ne!(img["status"], "killed", "{img}");
        assert!(Instant::now() < deadline, "image still {}", img["status"]);
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(img["size"], 1u64 << 30, "{img}");
    assert_eq!(img["checksum"], want_md5.as_str(), "the uploaded image differs from the volume");
    api.wait_available(&p, &vid).await;
    let left: Vec<_> = std::fs::read_dir(work.path().join("snapshots")).expect("ls").flatten().collect();
    assert!(left.is_empty(), "snapshot exports left: {left:?}");
    assert!(!cluster.rbd(&["snap", "ls", &format!("cbv-{vid}")]).contains("cbs-"), "a temporary snapshot is left");
    api.delete(&format!("/v3/{p}/volumes/{vid}")).await.expect(202);
    api.wait_volume_gone(&p, &vid).await;
    assert!(images(&cluster).is_empty(), "images left: {:?}", images(&cluster));
}
