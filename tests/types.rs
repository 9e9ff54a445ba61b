//! Volume type management (issue 5 item 8) in noauth mode (the caller is admin): create,
//! update, delete, extra specs, `volume_backend_name` placement, access lists of private types.

#[macro_use]
mod common;

use serde_json::json;

use common::{project, s, unique, Backend, Opts, TestServer};

backend_tests!(types_crud_specs_and_access, backend_name_places_volumes);

async fn types_crud_specs_and_access(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let name = unique("gold");
    let r = api
        .post(
            &format!("/v3/{p}/types"),
            json!({"volume_type": {"name": name, "description": "fast", "extra_specs": {"tier": "1"}}}),
        )
        .await
        .expect(200);
    let t = r.body["volume_type"].clone();
    let id = s(&t, "id");
    assert_eq!(t["extra_specs"]["tier"], "1", "{}", r.text);
    assert_eq!(t["is_public"], true);
    api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": name}}))
        .await
        .expect_fault(409, "conflictingRequest");
    let listed = api.get(&format!("/v3/{p}/types")).await.expect(200);
    assert!(listed.body["volume_types"].as_array().is_some_and(|l| l.iter().any(|x| x["id"] == id.as_str())));

    let r =
        api.put(&format!("/v3/{p}/types/{id}"), json!({"volume_type": {"description": "faster"}})).await.expect(200);
    assert_eq!(r.body["volume_type"]["description"], "faster");
    let r = api.post(&format!("/v3/{p}/types/{id}/extra_specs"), json!({"extra_specs": {"a": "b"}})).await.expect(200);
    assert_eq!(r.body["extra_specs"], json!({"a": "b"}));
    let r = api.get(&format!("/v3/{p}/types/{id}/extra_specs")).await.expect(200);
    assert_eq!(r.body["extra_specs"], json!({"a": "b", "tier": "1"}));
    api.put(&format!("/v3/{p}/types/{id}/extra_specs/a"), json!({"a": "c"})).await.expect(200);
    assert_eq!(api.get(&format!("/v3/{p}/types/{id}/extra_specs/a")).await.expect(200).body, json!({"a": "c"}));
    api.put(&format!("/v3/{p}/types/{id}/extra_specs/a"), json!({"x": "c"})).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/types/{id}/extra_specs/a")).await.expect(202);
    api.get(&format!("/v3/{p}/types/{id}/extra_specs/a")).await.expect_fault(404, "itemNotFound");
    // An unknown pool cannot be named as a backend.
    api.post(&format!("/v3/{p}/types/{id}/extra_specs"), json!({"extra_specs": {"volume_backend_name": "nope"}}))
        .await
        .expect_fault(400, "badRequest");

    // Access lists exist for private types only.
    api.get(&format!("/v3/{p}/types/{id}/os-volume-type-access")).await.expect_fault(404, "itemNotFound");
    api.put(&format!("/v3/{p}/types/{id}"), json!({"volume_type": {"is_public": false}})).await.expect(200);
    let other = project();
    api.post(&format!("/v3/{p}/types/{id}/action"), json!({"addProjectAccess": {"project": other}})).await.expect(202);
    api.post(&format!("/v3/{p}/types/{id}/action"), json!({"addProjectAccess": {"project": other}}))
        .await
        .expect_fault(409, "conflictingRequest");
    let acc = api.get(&format!("/v3/{p}/types/{id}/os-volume-type-access")).await.expect(200);
    assert_eq!(acc.body["volume_type_access"], json!([{"volume_type_id": id, "project_id": other}]));
    api.post(&format!("/v3/{p}/types/{id}/action"), json!({"removeProjectAccess": {"project": other}}))
        .await
        .expect(202);
    assert_eq!(
        api.get(&format!("/v3/{p}/types/{id}/os-volume-type-access")).await.body["volume_type_access"],
        json!([])
    );

    // `tier` is an unscoped extra spec, which Cinder's capabilities filter matches against a
    // pool capability of that name: no pool reports one, so the volume fails to schedule.
    let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "volume_type": name}})).await;
    let failed = s(&r.expect(202).body["volume"], "id");
    api.wait_volume_status(&p, &failed, &["error"]).await;
    api.delete(&format!("/v3/{p}/volumes/{failed}")).await.expect(202);
    api.wait_volume_gone(&p, &failed).await;
    api.delete(&format!("/v3/{p}/types/{id}/extra_specs/tier")).await.expect(202);

    // A type in use cannot be deleted; the default type never.
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": name})).await;
    assert_eq!(v["volume_type"], name.as_str());
    api.delete(&format!("/v3/{p}/types/{id}")).await.expect_fault(400, "badRequest");
    api.delete(&format!("/v3/{p}/volumes/{}", s(&v, "id"))).await.expect(202);
    api.wait_volume_gone(&p, &s(&v, "id")).await;
    api.delete(&format!("/v3/{p}/types/{id}")).await.expect(202);
    api.get(&format!("/v3/{p}/types/{id}")).await.expect_fault(404, "itemNotFound");
    let def = api.get(&format!("/v3/{p}/types/default")).await.expect(200);
    api.delete(&format!("/v3/{p}/types/{}", s(&def.body["volume_type"], "id"))).await.expect_fault(400, "badRequest");
}

async fn backend_name_places_volumes(b: Backend) {
    let second = tempfile::tempdir().expect("tmp");
    let tail = format!(
        "\n[[pools]]\nname = \"second\"\npath = {:?}\navailability_zone = \"nova\"\nvolume_types = [\"bulk\"]\n",
        second.path().display().to_string()
    );
    let srv = TestServer::start(b, Opts { extra_tail: tail, ..Opts::default() });
    let api = srv.api();
    let p = project();
    // The configured type lands on its pool.
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": "bulk"})).await;
    assert!(
        second.path().join("volumes").join(format!("{}.raw", s(&v, "id"))).exists(),
        "bulk volume not in the second pool"
    );
    // A new type mapped to the second pool by volume_backend_name lands there too.
    let r = api
        .post(
            &format!("/v3/{p}/types"),
            json!({"volume_type": {"name": unique("t"), "extra_specs": {"volume_backend_name": "second"}}}),
        )
        .await
        .expect(200);
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": s(&r.body["volume_type"], "id")})).await;
    assert!(second.path().join("volumes").join(format!("{}.raw", s(&v, "id"))).exists());
    let v = api.cinder_create_available(&p, json!({"size": 1, "volume_type": "SSD"})).await;
    assert!(srv.volume_path(&s(&v, "id")).exists(), "SSD volume not in the default pool");
    let az = api.get(&format!("/v3/{p}/os-availability-zone")).await.expect(200);
    assert_eq!(az.body["availabilityZoneInfo"], json!([{"zoneName": "nova", "zoneState": {"available": true}}]));
}
