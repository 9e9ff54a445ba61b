//! Volume transfers (issue 5 item 7) on SQLite and PostgreSQL.

#[macro_use]
mod common;
mod snapkit;

use serde_json::json;

use common::{project, s, shared, Api, Backend};

backend_tests!(transfer_accept_and_wrong_key, transfer_cancel_and_refusals, transfer_with_snapshots_and_quota,);

const MV: (&str, &str) = ("OpenStack-API-Version", "volume 3.57");

async fn status(api: &Api, p: &str, id: &str) -> String {
    s(&api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"], "status")
}

async fn transfer_accept_and_wrong_key(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let (a, bp) = (project(), project());
    let v = api.cinder_create_available(&a, json!({"size": 1, "name": "gift"})).await;
    let id = s(&v, "id");
    let r = api
        .post(&format!("/v3/{a}/os-volume-transfer"), json!({"transfer": {"volume_id": id, "name": "t1"}}))
        .await
        .expect(202);
    let t = r.body["transfer"].clone();
    let (tid, key) = (s(&t, "id"), s(&t, "auth_key"));
    assert_eq!(key.len(), 16, "{}", r.text);
    assert_eq!(status(&api, &a, &id).await, "awaiting-transfer");
    // The key is shown once only.
    let shown = api.get(&format!("/v3/{a}/os-volume-transfer/{tid}")).await.expect(200);
    assert!(shown.body["transfer"].get("auth_key").is_none(), "{}", shown.text);
    let list = api.get(&format!("/v3/{a}/os-volume-transfer/detail")).await.expect(200);
    assert_eq!(list.body["transfers"][0]["id"], tid.as_str(), "{}", list.text);
    assert!(list.body["transfers"][0]["created_at"].is_string());
    assert_eq!(api.get(&format!("/v3/{bp}/os-volume-transfer")).await.expect(200).body["transfers"], json!([]));

    // A wrong key from another project: the same 404 as an id that does not exist (issue
    // 17.12: who cannot see the transfer cannot probe for it); nothing changes.
    let wrong = api
        .post(&format!("/v3/{bp}/os-volume-transfer/{tid}/accept"), json!({"accept": {"auth_key": "0000000000000000"}}))
        .await
        .expect_fault(404, "itemNotFound");
    let ghost = uuid::Uuid::new_v4().to_string();
    let missing = api
        .post(
            &format!("/v3/{bp}/os-volume-transfer/{ghost}/accept"),
            json!({"accept": {"auth_key": "0000000000000000"}}),
        )
        .await
        .expect_fault(404, "itemNotFound");
    assert_eq!(wrong.text.replace(&tid, "ID"), missing.text.replace(&ghost, "ID"), "indistinguishable");
    // The giving project itself is told the key is wrong.
    api.post(&format!("/v3/{a}/os-volume-transfer/{tid}/accept"), json!({"accept": {"auth_key": "0000000000000000"}}))
        .await
        .expect_fault(400, "badRequest");
    assert_eq!(status(&api, &a, &id).await, "awaiting-transfer");
    assert!(api.volume_ids(&format!("/v3/{bp}/volumes")).await.is_empty());

    let r = api
        .post(&format!("/v3/{bp}/os-volume-transfer/{tid}/accept"), json!({"accept": {"auth_key": key}}))
        .await
        .expect(202);
    assert_eq!(r.body["transfer"]["volume_id"], id.as_str());
    assert_eq!(api.volume_ids(&format!("/v3/{bp}/volumes")).await, vec![id.clone()]);
    assert!(api.volume_ids(&format!("/v3/{a}/volumes")).await.is_empty());
    let v = api.get(&format!("/v3/{bp}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v["status"], "available");
    assert_eq!(v["os-vol-tenant-attr:tenant_id"], bp.as_str());
    // Accepted transfers are gone.
    api.get(&format!("/v3/{a}/os-volume-transfer/{tid}")).await.expect_fault(404, "itemNotFound");
    api.post(&format!("/v3/{bp}/os-volume-transfer/{tid}/accept"), json!({"accept": {"auth_key": key}}))
        .await
        .expect_fault(404, "itemNotFound");
}

async fn transfer_cancel_and_refusals(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let a = project();
    let id = s(&api.cinder_create_available(&a, json!({"size": 1})).await, "id");
    let r = api.post(&format!("/v3/{a}/os-volume-transfer"), json!({"transfer": {"volume_id": id}})).await.expect(202);
    let tid = s(&r.body["transfer"], "id");
    // Not deletable or transferable twice while awaiting transfer.
    api.delete(&format!("/v3/{a}/volumes/{id}")).await.expect_fault(400, "badRequest");
    api.post(&format!("/v3/{a}/os-volume-transfer"), json!({"transfer": {"volume_id": id}}))
        .await
        .expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{a}/os-volume-transfer/{tid}")).await.expect(202);
    assert_eq!(status(&api, &a, &id).await, "available");
    // Attached volumes and volumes with snapshots (legacy API) are refused; nothing changes.
    let snap = api.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": id}})).await.expect(202);
    snapkit::wait_snapshot(&api, &a, &s(&snap.body["snapshot"], "id"), &["available"]).await;
    api.post(&format!("/v3/{a}/os-volume-transfer"), json!({"transfer": {"volume_id": id}}))
        .await
        .expect_fault(400, "badRequest");
    let att = api.cinder_create_available(&a, json!({"size": 1})).await;
    let aid = s(&att, "id");
    api.post(
        &format!("/v3/{a}/volumes/{aid}/action"),
        json!({"os-attach": {"instance_uuid": "i", "mountpoint": "/dev/vdb"}}),
    )
    .await
    .expect(202);
    api.post(&format!("/v3/{a}/os-volume-transfer"), json!({"transfer": {"volume_id": aid}}))
        .await
        .expect_fault(400, "badRequest");
    assert_eq!(status(&api, &a, &id).await, "available");
    assert_eq!(api.get(&format!("/v3/{a}/os-volume-transfer")).await.expect(200).body["transfers"], json!([]));
    // volume-transfers needs 3.55.
    api.get(&format!("/v3/{a}/volume-transfers")).await.expect_fault(404, "itemNotFound");
}

async fn transfer_with_snapshots_and_quota(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let (a, bp) = (project(), project());
    let id = s(&api.cinder_create_available(&a, json!({"size": 2})).await, "id");
    let snap = api.post(&format!("/v3/{a}/snapshots"), json!({"snapshot": {"volume_id": id}})).await.expect(202);
    let sid = s(&snap.body["snapshot"], "id");
    snapkit::wait_snapshot(&api, &a, &sid, &["available"]).await;
    let r = api
        .request(
            reqwest::Method::POST,
            &format!("/v3/{a}/volume-transfers"),
            &[MV],
            Some(json!({"transfer": {"volume_id": id, "no_snapshots": false}}).to_string()),
        )
        .await
        .expect(202);
    let t = r.body["transfer"].clone();
    assert_eq!(t["no_snapshots"], false, "{}", r.text);
    assert_eq!(t["source_project_id"], a.as_str());
    let (tid, key) = (s(&t, "id"), s(&t, "auth_key"));
    // The receiver's quota is checked: nothing moves while it is too small.
    api.put(&format!("/v3/{bp}/os-quota-sets/{bp}"), json!({"quota_set": {"gigabytes": 3}})).await.expect(200);
    let accept = json!({"accept": {"auth_key": key}}).to_string();
    api.request(reqwest::Method::POST, &format!("/v3/{bp}/volume-transfers/{tid}/accept"), &[MV], Some(accept.clone()))
        .await
        .expect_fault(413, "overLimit");
    assert_eq!(status(&api, &a, &id).await, "awaiting-transfer");
    api.put(&format!("/v3/{bp}/os-quota-sets/{bp}"), json!({"quota_set": {"gigabytes": 4}})).await.expect(200);
    api.request(reqwest::Method::POST, &format!("/v3/{bp}/volume-transfers/{tid}/accept"), &[MV], Some(accept))
        .await
        .expect(202);
    // The snapshot moved with its volume.
    let sn = api.get(&format!("/v3/{bp}/snapshots/detail")).await.expect(200);
    assert_eq!(sn.body["snapshots"][0]["id"], sid.as_str(), "{}", sn.text);
    assert_eq!(sn.body["snapshots"][0]["os-extended-snapshot-attributes:project_id"], bp.as_str());
    assert_eq!(api.get(&format!("/v3/{a}/snapshots")).await.expect(200).body["snapshots"], json!([]));
}
