//! The attach lifecycle (issue 4 items 4–5): legacy actions and the v3 attachments API on
//! SQLite and PostgreSQL, NBD exports checked with a real client (`qemu-img info`), exports
//! restored after SIGKILL, read-only rules, multiattach rules; and, as root, loop devices with a
//! real ext4 filesystem carried through a snapshot into a new volume.

#[macro_use]
mod common;
mod snapkit;

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use common::{project, s, Api, Backend, Opts, TestServer};

backend_tests!(
    legacy_attach_over_nbd_and_restart,
    v3_attachments_lifecycle,
    single_attach_unless_multiattach,
    readonly_volumes_export_readonly,
    in_use_extend_reaches_the_export,
    exports_block_delete_and_rollback,
    failed_attachment_create_leaves_nothing,
    exports_block_migration,
    nbd_names_are_secret_and_unlisted,
);

const MV: (&str, &str) = ("OpenStack-API-Version", "volume 3.71");

async fn post_v(api: &Api, path: &str, body: Value) -> common::Resp {
    api.request(reqwest::Method::POST, path, &[MV], Some(body.to_string())).await
}

async fn action(api: &Api, p: &str, id: &str, body: Value) -> common::Resp {
    post_v(api, &format!("/v3/{p}/volumes/{id}/action"), body).await
}

/// `qemu-img info` over NBD: the export's virtual size, or the client's error.
fn nbd_size(info: &Value) -> Result<u64, String> {
    let data = &info["data"];
    let uri = format!("nbd://{}:{}/{}", s(data, "host"), data["port"], s(data, "export_name"));
    let out = Command::new("qemu-img").args(["info", "--output=json", &uri]).output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).to_string());
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())?;
    v["virtual-size"].as_u64().ok_or_else(|| format!("no virtual-size in {v}"))
}

/// Write one sector over NBD with `qemu-io`; Err carries the client's message.
fn nbd_write(info: &Value) -> Result<(), String> {
    let data = &info["data"];
    let uri = format!("nbd://{}:{}/{}", s(data, "host"), data["port"], s(data, "export_name"));
    let out = Command::new("qemu-io")
        .args(["-f", "raw", "-c", "write -P 0x5a 0 512", &uri])
        .output()
        .map_err(|e| e.to_string())?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if out.status.success() && !text.contains("failed") {
        Ok(())
    } else {
        Err(text)
    }
}

async fn new_volume(api: &Api, p: &str, extra: Value) -> String {
    let mut vol = json!({"size": 1});
    if let (Some(o), Some(e)) = (vol.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    let v = api.cinder_create_available(p, vol).await;
    s(&v, "id")
}

async fn legacy_attach_over_nbd_and_restart(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;

    action(&api, &p, &id, json!({"os-reserve": {}})).await.expect(202);
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.body["volume"]["status"], "attaching");
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    assert_eq!(info["driver_volume_type"], "nbd", "{}", r.text);
    // The export name is the volume id plus a secret (issue 17.4).
    let name = s(&info["data"], "export_name");
    assert!(name.starts_with(&format!("{id}-")) && name.len() >= id.len() + 33, "{name}");
    assert_eq!(nbd_size(&info), Ok(1 << 30));

    // A volume that is being attached cannot be deleted.
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(400, "badRequest");
    let inst = uuid::Uuid::new_v4().to_string();
    action(&api, &p, &id, json!({"os-attach": {"instance_uuid": inst, "mountpoint": "/dev/vdb", "host_name": "h1"}}))
        .await
        .expect(202);
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "in-use");
    let atts = v["attachments"].as_array().expect("attachments").clone();
    assert_eq!(atts.len(), 1, "{v}");
    assert_eq!(atts[0]["server_id"], inst.as_str());
    assert_eq!(atts[0]["device"], "/dev/vdb");
    assert_eq!(atts[0]["host_name"], "h1");
    // The EVS body lists it too.
    let e = api.get(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect(200);
    assert_eq!(e.body["volume"]["attachments"][0]["server_id"], inst.as_str());
    // Rollback needs `available`; an in-use snapshot needs force.
    post_v(&api, &format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": id}}))
        .await
        .expect_fault(400, "badRequest");

    // SIGKILL: the export comes back on the same port.
    let port = info["data"]["port"].as_u64().expect("port");
    srv.kill9();
    srv.restart_with(|o| o.env.push(("CINDERBLOCK_EXPORTS__NBD_LISTEN".into(), format!("127.0.0.1:{port}"))));
    let api = srv.api();
    assert_eq!(nbd_size(&info), Ok(1 << 30), "export not restored after restart");
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.body["volume"]["status"], "in-use");

    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h1"}}})).await.expect(202);
    assert!(nbd_size(&info).is_err(), "export still served after terminate_connection");
    action(&api, &p, &id, json!({"os-detach": {}})).await.expect(202);
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available");
    assert_eq!(v["attachments"], json!([]));
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
}

async fn v3_attachments_lifecycle(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    let inst = uuid::Uuid::new_v4().to_string();

    // Below 3.27 the API does not exist.
    api.request(
        reqwest::Method::GET,
        &format!("/v3/{p}/attachments"),
        &[("OpenStack-API-Version", "volume 3.26")],
        None,
    )
    .await
    .expect_fault(404, "itemNotFound");
    let r = post_v(
        &api,
        &format!("/v3/{p}/attachments"),
        json!({"attachment": {"volume_uuid": id, "instance_uuid": inst}}),
    )
    .await
    .expect(200);
    let a = r.body["attachment"].clone();
    let aid = s(&a, "id");
    assert_eq!(a["status"], "reserved", "{}", r.text);
    assert_eq!(a["connection_info"], Value::Null);
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.body["volume"]["status"], "reserved");

    let r = api
        .request(
            reqwest::Method::PUT,
            &format!("/v3/{p}/attachments/{aid}"),
            &[MV],
            Some(json!({"attachment": {"connector": {"host": "h2", "initiator": "x"}}}).to_string()),
        )
        .await
        .expect(200);
    let info = r.body["attachment"]["connection_info"].clone();
    assert_eq!(info["driver_volume_type"], "nbd", "{}", r.text);
    assert_eq!(nbd_size(&info), Ok(1 << 30));

    post_v(&api, &format!("/v3/{p}/attachments/{aid}/action"), json!({"os-complete": {}})).await.expect(204);
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "in-use");
    assert_eq!(v["attachments"][0]["attachment_id"], aid.as_str());

    let list = api.get_h(&format!("/v3/{p}/attachments/detail?volume_id={id}"), &[MV]).await.expect(200);
    assert_eq!(list.body["attachments"].as_array().map(Vec::len), Some(1), "{}", list.text);
    assert_eq!(list.body["attachments"][0]["attach_mode"], "rw");
    let shown = api.get_h(&format!("/v3/{p}/attachments/{aid}"), &[MV]).await.expect(200);
    assert_eq!(shown.body["attachment"]["status"], "attached");
    api.get_h(&format!("/v3/{p}/attachments/{}", uuid::Uuid::new_v4()), &[MV]).await.expect_fault(404, "itemNotFound");

    api.request(reqwest::Method::DELETE, &format!("/v3/{p}/attachments/{aid}"), &[MV], None).await.expect(200);
    assert!(nbd_size(&info).is_err(), "export still served after the attachment was deleted");
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available");
    api.get_h(&format!("/v3/{p}/attachments/{aid}"), &[MV]).await.expect_fault(404, "itemNotFound");
}

async fn single_attach_unless_multiattach(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let single = new_volume(&api, &p, json!({})).await;
    let multi = new_volume(&api, &p, json!({"multiattach": true})).await;
    for (id, second) in [(&single, 409), (&multi, 200)] {
        let body =
            |inst: &str| json!({"attachment": {"volume_uuid": id, "instance_uuid": inst, "connector": {"host": inst}}});
        let a = post_v(&api, &format!("/v3/{p}/attachments"), body("i1")).await.expect(200);
        post_v(
            &api,
            &format!("/v3/{p}/attachments/{}/action", s(&a.body["attachment"], "id")),
            json!({"os-complete": {}}),
        )
        .await
        .expect(204);
        let r = post_v(&api, &format!("/v3/{p}/attachments"), body("i2")).await;
        assert_eq!(r.status, second, "{}", r.text);
        if second == 409 {
            r.expect_fault(409, "conflictingRequest");
        } else {
            post_v(
                &api,
                &format!("/v3/{p}/attachments/{}/action", s(&r.body["attachment"], "id")),
                json!({"os-complete": {}}),
            )
            .await
            .expect(204);
            let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
            assert_eq!(v["attachments"].as_array().map(Vec::len), Some(2), "{v}");
        }
    }
}

async fn readonly_volumes_export_readonly(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    action(&api, &p, &id, json!({"os-update_readonly_flag": {"readonly": true}})).await.expect(202);
    // rw attach of a read-only volume is refused; nothing changes.
    action(&api, &p, &id, json!({"os-attach": {"instance_uuid": "i", "mountpoint": "/dev/vdb", "mode": "rw"}}))
        .await
        .expect_fault(400, "badRequest");
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.body["volume"]["status"], "available");
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    assert_eq!(info["data"]["access_mode"], "ro");
    let err = nbd_write(&info).expect_err("a write to a read-only export must fail");
    assert!(err.to_lowercase().contains("permi") || err.contains("read-only") || err.contains("EPERM"), "{err}");
    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h"}}})).await.expect(202);
    // A writable volume accepts a write over NBD, and the data lands in its file.
    action(&api, &p, &id, json!({"os-update_readonly_flag": {"readonly": false}})).await.expect(202);
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h"}}})).await.expect(200);
    nbd_write(&r.body["connection_info"]).expect("write over NBD");
    let data = std::fs::read(srv.volume_path(&id)).expect("read volume file");
    assert!(data[..512].iter().all(|&b| b == 0x5a), "NBD write did not reach the file");
}

async fn in_use_extend_reaches_the_export(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    action(&api, &p, &id, json!({"os-attach": {"instance_uuid": "i", "mountpoint": "/dev/vdb", "host_name": "h"}}))
        .await
        .expect(202);
    // Before 3.42 an attached volume cannot be extended; from 3.42 it can.
    api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({"os-extend": {"new_size": 2}}))
        .await
        .expect_fault(400, "badRequest");
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{p}/volumes/{id}/action"),
            &[("OpenStack-API-Version", "volume 3.42")],
            Some(json!({"os-extend": {"new_size": 2}}).to_string()),
        )
        .await;
    r.expect(202);
    let v = api.wait_volume_status(&p, &id, &["in-use"]).await;
    assert_eq!(v["size"], 2, "{v}");
    assert_eq!(nbd_size(&info), Ok(2 << 30), "a new NBD connection must see the new size");
}

/// Issue 17.1 and 17.2: `os-initialize_connection` leaves the volume `available` with a live
/// NBD export. Rolling back (EVS and Cinder revert) or deleting it then would replace or unlink
/// the file under the export: both are refused and change nothing, and the export keeps
/// serving the same data; once the connection ends, both work.
async fn exports_block_delete_and_rollback(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    let snap = post_v(&api, &format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": id}})).await.expect(202);
    let sid = s(&snap.body["snapshot"], "id");
    snapkit::wait_snapshot(&api, &p, &sid, &["available"]).await;

    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    nbd_write(&info).expect("write over NBD");
    assert_eq!(api.get(&format!("/v3/{p}/volumes/{id}")).await.body["volume"]["status"], "available");

    let r = api
        .post(&format!("/v2/{p}/cloudsnapshots/{sid}/rollback"), json!({"rollback": {"volume_id": id}}))
        .await
        .expect_evs_error(400, "EVS.5400");
    assert!(r.text.contains("attachments or exports"), "{}", r.text);
    action(&api, &p, &id, json!({"revert": {"snapshot_id": sid}})).await.expect_fault(400, "badRequest");
    let r = api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(400, "badRequest");
    assert!(r.text.contains("attachments or exports"), "{}", r.text);
    api.delete(&format!("/v2/{p}/cloudvolumes/{id}")).await.expect_evs_error(400, "EVS.1046");
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available", "a refused operation must leave the volume as it was");
    let sn = api.get(&format!("/v3/{p}/snapshots/{sid}")).await.expect(200).body["snapshot"].clone();
    assert_eq!(sn["status"], "available");
    // The export still serves the file it was given, with the write in it.
    assert_eq!(nbd_size(&info), Ok(1 << 30));
    let data = &info["data"];
    let uri = format!("nbd://{}:{}/{}", s(data, "host"), data["port"], s(data, "export_name"));
    let out =
        Command::new("qemu-io").args(["-f", "raw", "-r", "-c", "read -P 0x5a 0 512", &uri]).output().expect("qemu-io");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success() && !text.contains("mismatch") && !text.contains("failed"), "{text}");

    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h1"}}})).await.expect(202);
    assert!(nbd_size(&info).is_err(), "export still served after terminate_connection");
    let r = api
        .post(&format!("/v2/{p}/cloudsnapshots/{sid}/rollback"), json!({"rollback": {"volume_id": id}}))
        .await
        .expect(202);
    drop(r);
    api.wait_available(&p, &id).await;
    snapkit::wait_snapshot(&api, &p, &sid, &["available"]).await;
    api.delete(&format!("/v3/{p}/snapshots/{sid}")).await.expect(202);
    snapkit::wait_snapshot_gone(&api, &p, &sid).await;
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
}

/// Issue 17.1: a retype that must move the data to another pool is refused while the volume
/// is exported (the export would keep the old file); after terminate_connection it moves.
async fn exports_block_migration(b: Backend) {
    let second = tempfile::tempdir().expect("second pool dir");
    let tail = format!(
        "[[pools]]\nname = \"second\"\npath = {:?}\navailability_zone = \"nova\"\n",
        second.path().display().to_string()
    );
    let srv = TestServer::start(b, Opts { extra_tail: tail, ..Opts::default() });
    let api = srv.api();
    let p = project();
    let name = common::unique("far");
    api.post(
        &format!("/v3/{p}/types"),
        json!({"volume_type": {"name": name, "extra_specs": {"volume_backend_name": "second"}}}),
    )
    .await
    .expect(200);
    let src = common::unique("near");
    api.post(
        &format!("/v3/{p}/types"),
        json!({"volume_type": {"name": src, "extra_specs": {"volume_backend_name": "default"}}}),
    )
    .await
    .expect(200);
    let id = new_volume(&api, &p, json!({"volume_type": src})).await;
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    let retype = json!({"os-retype": {"new_type": name, "migration_policy": "on-demand"}});
    let r = action(&api, &p, &id, retype.clone()).await.expect_fault(400, "badRequest");
    assert!(r.text.contains("attachments or exports"), "{}", r.text);
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!((v["status"].as_str(), v["volume_type"].as_str()), (Some("available"), Some(src.as_str())));
    assert_eq!(nbd_size(&info), Ok(1 << 30));
    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h1"}}})).await.expect(202);
    action(&api, &p, &id, retype).await.expect(202);
    let v = api.wait_available(&p, &id).await;
    assert_eq!(v["volume_type"], name.as_str(), "{v}");
}

/// Issue 17.4: an anonymous NBD client cannot list exports, cannot open a volume by its id, and
/// cannot read the secret name back from the API (attachment show, the database row); the
/// name it was given survives a kill -9 restart; each attachment of a multiattach volume gets
/// its own name, and ending one attachment closes only its own.
async fn nbd_names_are_secret_and_unlisted(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({"multiattach": true})).await;
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h1"}}})).await.expect(200);
    let info = r.body["connection_info"].clone();
    let name = s(&info["data"], "export_name");
    let data = &info["data"];
    let base = format!("nbd://{}:{}", s(data, "host"), data["port"]);
    assert_eq!(nbd_size(&info), Ok(1 << 30));

    // NBD_OPT_LIST is refused; the volume id alone opens nothing.
    let out = Command::new("nbdinfo").args(["--list", &format!("{base}/")]).output().expect("nbdinfo");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains(&id), "the listing leaked the volume id: {text}");
    let mut by_id = info.clone();
    by_id["data"]["export_name"] = json!(id);
    assert!(nbd_size(&by_id).is_err(), "the volume id alone opened the export");
    assert!(nbd_write(&by_id).is_err());

    // The name is not stored: not in the attachments API, not in the database.
    let list = api.get_h(&format!("/v3/{p}/attachments/detail?volume_id={id}"), &[MV]).await.expect(200);
    assert!(!list.text.contains(&name), "attachment detail shows the secret: {}", list.text);
    let rows = srv.db_query_pairs("SELECT id, COALESCE(connection_info, '') FROM attachments").await;
    assert!(rows.iter().all(|(_, c)| !c.contains(&name)), "the database holds the secret name: {rows:?}");

    // A second attachment gets another name; ending it leaves the first one served.
    let r = action(&api, &p, &id, json!({"os-initialize_connection": {"connector": {"host": "h2"}}})).await.expect(200);
    let info2 = r.body["connection_info"].clone();
    assert_ne!(s(&info2["data"], "export_name"), name);
    assert_eq!(nbd_size(&info2), Ok(1 << 30));
    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h2"}}})).await.expect(202);
    assert!(nbd_size(&info2).is_err(), "the ended attachment's export is still served");
    assert_eq!(nbd_size(&info), Ok(1 << 30), "ending one attachment closed another's export");

    // kill -9: the same secret name works on the restarted daemon.
    let port = data["port"].as_u64().expect("port");
    srv.kill9();
    srv.restart_with(|o| o.env.push(("CINDERBLOCK_EXPORTS__NBD_LISTEN".into(), format!("127.0.0.1:{port}"))));
    assert_eq!(nbd_size(&info), Ok(1 << 30), "the export did not come back under its name");
    assert!(nbd_size(&by_id).is_err());
    let api = srv.api();
    action(&api, &p, &id, json!({"os-terminate_connection": {"connector": {"host": "h1"}}})).await.expect(202);
    assert!(nbd_size(&info).is_err());
}

/// Issue 17.2: a v3 attachment create whose connector cannot be served answers an error and
/// leaves no attachment and no reservation behind.
async fn failed_attachment_create_leaves_nothing(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    let body = json!({"attachment": {
        "volume_uuid": id,
        "instance_uuid": uuid::Uuid::new_v4().to_string(),
        "connector": {"host": "h1", "cinderblock_transport": "carrier-pigeon"},
    }});
    post_v(&api, &format!("/v3/{p}/attachments"), body).await.expect_fault(400, "badRequest");
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available", "{v}");
    let list = api.request(reqwest::Method::GET, &format!("/v3/{p}/attachments"), &[MV], None).await.expect(200);
    assert_eq!(list.body["attachments"], json!([]), "{}", list.text);
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn require_root(what: &str) -> bool {
    if is_root() {
        return true;
    }
    if std::env::var("CINDERBLOCK_REQUIRE_PRIVILEGED").as_deref() == Ok("1") {
        panic!("{what} needs root and CINDERBLOCK_REQUIRE_PRIVILEGED=1");
    }
    eprintln!("skipped {what}: needs root (loop devices, mount)");
    false
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().unwrap_or_else(|e| panic!("{cmd}: {e}"));
    assert!(out.status.success(), "{cmd} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// Unmounts on drop (also when the test panics).
struct Mounted(std::path::PathBuf);

impl Mounted {
    fn new(dev: &str, dir: &Path) -> Mounted {
        std::fs::create_dir_all(dir).expect("mkdir");
        run("mount", &[dev, &dir.display().to_string()]);
        Mounted(dir.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Attach `id` over a loop device through the v3 API; returns (attachment id, device path).
async fn attach_loop(api: &Api, p: &str, id: &str) -> (String, String) {
    let body = json!({"attachment": {"volume_uuid": id, "instance_uuid": "host",
        "connector": {"host": "localhost", "cinderblock_transport": "loop"}}});
    let r = post_v(api, &format!("/v3/{p}/attachments"), body).await.expect(200);
    let a = r.body["attachment"].clone();
    assert_eq!(a["connection_info"]["driver_volume_type"], "local", "{}", r.text);
    let dev = s(&a["connection_info"]["data"], "device_path");
    assert!(Path::new(&dev).exists(), "{dev} missing");
    (s(&a, "id"), dev)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_device_filesystem_survives_snapshot_and_clone() {
    if !require_root("loop_device_filesystem_survives_snapshot_and_clone") {
        return;
    }
    let srv = TestServer::start(Backend::Sqlite, Opts::default());
    let api = srv.api();
    let p = project();
    let id = new_volume(&api, &p, json!({})).await;
    let (aid, dev) = attach_loop(&api, &p, &id).await;
    run("mkfs.ext4", &["-q", "-F", &dev]);
    let mnt = srv.dir().join("mnt");
    {
        let _m = Mounted::new(&dev, &mnt);
        std::fs::write(mnt.join("hello.txt"), b"written through a loop device").expect("write");
    }
    // SIGKILL with the device attached: the restart adopts it (same device, same file).
    srv.kill9();
    srv.restart();
    let api = srv.api();
    let shown = api.get_h(&format!("/v3/{p}/attachments/{aid}"), &[MV]).await.expect(200);
    let dev_after = s(&shown.body["attachment"]["connection_info"]["data"], "device_path");
    let backing = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        Path::new(&dev_after).file_name().and_then(|n| n.to_str()).unwrap_or("")
    ))
    .unwrap_or_default();
    assert_eq!(backing.trim(), srv.volume_path(&id).display().to_string(), "loop device not restored");

    api.request(reqwest::Method::DELETE, &format!("/v3/{p}/attachments/{aid}"), &[MV], None).await.expect(200);
    assert!(
        !std::fs::read_to_string(format!(
            "/sys/block/{}/loop/backing_file",
            Path::new(&dev_after).file_name().and_then(|n| n.to_str()).unwrap_or("")
        ))
        .is_ok_and(|b| b.trim() == srv.volume_path(&id).display().to_string()),
        "loop device still attached after detach"
    );

    let snap = post_v(&api, &format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": id, "name": "fs"}}))
        .await
        .expect(202);
    let sid = s(&snap.body["snapshot"], "id");
    snapkit::wait_snapshot(&api, &p, &sid, &["available"]).await;
    let clone = new_volume(&api, &p, json!({"snapshot_id": sid})).await;
    let (caid, cdev) = attach_loop(&api, &p, &clone).await;
    post_v(&api, &format!("/v3/{p}/attachments/{caid}/action"), json!({"os-complete": {}})).await.expect(204);
    // An in-use extend (3.42+) reaches the loop device (LOOP_SET_CAPACITY).
    post_v(&api, &format!("/v3/{p}/volumes/{clone}/action"), json!({"os-extend": {"new_size": 2}})).await.expect(202);
    api.wait_volume_status(&p, &clone, &["in-use"]).await;
    let sectors = std::fs::read_to_string(format!(
        "/sys/block/{}/size",
        Path::new(&cdev).file_name().and_then(|n| n.to_str()).unwrap_or("")
    ))
    .expect("loop size");
    assert_eq!(sectors.trim().parse::<u64>().ok(), Some((2u64 << 30) / 512), "loop device did not grow");
    {
        let _m = Mounted::new(&cdev, &mnt);
        let text = std::fs::read(mnt.join("hello.txt")).expect("read file from the clone");
        assert_eq!(text, b"written through a loop device");
    }
    api.request(reqwest::Method::DELETE, &format!("/v3/{p}/attachments/{caid}"), &[MV], None).await.expect(200);
}
