//! OpenStack Cinder v2/v3 volume routes (reference 7.1, 8.2.1.1; CLIENTS.md §2): lifecycle,
//! files on disk, list filters and paging, update aliases, catalog routes, quota usage,
//! microversion-gated fields and errors. One shared daemon per backend; each test works in its
//! own project.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use serde_json::{json, Value};

use common::{assert_sparse_file, enc, link_path, next_link, project, query_param, s, shared, unique, Backend};

backend_tests!(
    create_show_delete_lifecycle,
    v2_routes_work_like_v3,
    openstack_cli_create_with_explicit_nulls,
    create_with_type_zone_metadata,
    create_rejects_bad_input,
    show_unknown_or_name_is_item_not_found,
    summary_list_has_only_id_links_name,
    detail_filters,
    all_tenants_lists_other_projects,
    paging_with_limit_marker_offset_and_links,
    sorting,
    bad_list_parameters_are_400,
    update_name_description_metadata,
    update_display_aliases,
    update_errors,
    delete_with_cascade_and_twice,
    delete_is_idempotent_when_the_file_is_already_gone,
    volume_types,
    availability_zones,
    extensions,
    quota_usage_follows_volumes,
    v1_show_has_display_fields,
    microversion_gated_fields,
    with_count_needs_3_45,
    fractional_size_is_rejected,
);

async fn create_show_delete_lifecycle(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let name = unique("life");
    let r = api
        .post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 2, "name": name, "description": "d1"}}))
        .await
        .expect(202);
    let v = &r.body["volume"];
    let id = s(v, "id");
    assert!(uuid::Uuid::parse_str(&id).is_ok(), "id must be a UUID: {id}");
    assert_eq!(v["status"], "creating", "{}", r.text);
    assert_eq!(v["size"], 2);
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["description"], "d1");
    assert!(v["links"].as_array().is_some_and(|l| !l.is_empty()), "{}", r.text);

    api.wait_available(&p, &id).await;
    assert_sparse_file(&srv.volume_path(&id), 2);

    let r = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200);
    let v = &r.body["volume"];
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], name.as_str());
    assert_eq!(v["description"], "d1");
    assert_eq!(v["size"], 2);
    assert_eq!(v["status"], "available");
    assert_eq!(v["availability_zone"], "nova");
    assert_eq!(v["volume_type"], "__DEFAULT__");
    assert_eq!(v["bootable"], "false", "bootable is the string \"false\": {}", r.text);
    assert_eq!(v["encrypted"], false);
    assert_eq!(v["multiattach"], false);
    assert_eq!(v["metadata"], json!({}));
    assert_eq!(v["attachments"], json!([]));
    assert_eq!(v["os-vol-tenant-attr:tenant_id"], p.as_str());
    assert!(v["created_at"].is_string(), "{}", r.text);
    assert!(v.get("updated_at").is_some(), "{}", r.text);
    assert!(v.get("snapshot_id").is_some() && v["snapshot_id"].is_null(), "{}", r.text);
    assert!(v.get("source_volid").is_some() && v["source_volid"].is_null(), "{}", r.text);
    let links = v["links"].as_array().expect("links");
    let self_link = links.iter().find(|l| l["rel"] == "self").expect("self link");
    assert!(self_link["href"].as_str().unwrap().ends_with(&format!("/{p}/volumes/{id}")), "{self_link}");
    assert!(links.iter().any(|l| l["rel"] == "bookmark"), "{}", r.text);

    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
    assert!(!srv.volume_path(&id).exists(), "file of deleted volume {id} still exists");
    api.get(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
    assert!(api.volumes(&format!("/v3/{p}/volumes/detail")).await.is_empty());
}

async fn v2_routes_work_like_v3(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let r = api.post(&format!("/v2/{p}/volumes"), json!({"volume": {"size": 1, "name": "v2vol"}})).await.expect(202);
    let id = s(&r.body["volume"], "id");
    api.wait_available(&p, &id).await;
    let r = api.get(&format!("/v2/{p}/volumes/{id}")).await.expect(200);
    assert_eq!(r.body["volume"]["name"], "v2vol");
    assert!(r.header("openstack-api-version").is_none(), "v2 has no microversions: {:?}", r.headers);
    let ids = api.volume_ids(&format!("/v2/{p}/volumes")).await;
    assert_eq!(ids, vec![id.clone()]);
    let ids = api.volume_ids(&format!("/v2/{p}/volumes/detail")).await;
    assert_eq!(ids, vec![id.clone()]);
    api.put(&format!("/v2/{p}/volumes/{id}"), json!({"volume": {"name": "renamed"}})).await.expect(200);
    api.delete(&format!("/v2/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
    assert!(!srv.volume_path(&id).exists());
}

async fn openstack_cli_create_with_explicit_nulls(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    // Exactly what `openstack volume create --size 1 v1` sends (captures_openstack.txt).
    let osc = r#"{"volume": {"consistencygroup_id": null, "snapshot_id": null, "name": "v1", "availability_zone": null, "source_volid": null, "size": 1, "metadata": null, "imageRef": null, "description": null, "backup_id": null, "volume_type": null}}"#;
    // And what `cinder create --name v1 1` sends.
    let cinder = r#"{"volume": {"size": 1, "consistencygroup_id": null, "snapshot_id": null, "name": "v2", "description": null, "volume_type": null, "availability_zone": null, "metadata": {}, "imageRef": null, "source_volid": null, "backup_id": null}}"#;
    // openstacksdk: only the set fields.
    let sdk = r#"{"volume": {"name": "v3", "size": 1}}"#;
    let mut ids = Vec::new();
    for body in [osc, cinder, sdk] {
        let r = api
            .request(
                reqwest::Method::POST,
                &format!("/v3/{p}/volumes"),
                &[("OpenStack-API-Version", "volume 3.71")],
                Some(body.to_string()),
            )
            .await
            .expect(202);
        assert_eq!(r.header("openstack-api-version").as_deref(), Some("volume 3.71"));
        ids.push(s(&r.body["volume"], "id"));
    }
    for (id, name) in ids.iter().zip(["v1", "v2", "v3"]) {
        let v = api.wait_available(&p, id).await;
        assert_eq!(v["name"], name);
        assert_eq!(v["metadata"], json!({}));
        assert!(v["description"].is_null());
        assert_eq!(v["volume_type"], "__DEFAULT__");
        assert_eq!(v["availability_zone"], "nova");
        assert_sparse_file(&srv.volume_path(id), 1);
    }
    // openstack CLI name lookup: GET by name 404s, then detail?name= (cinder adds all_tenants=1).
    api.get(&format!("/v3/{p}/volumes/v1")).await.expect_fault(404, "itemNotFound");
    assert_eq!(api.volume_ids(&format!("/v3/{p}/volumes/detail?name=v1")).await, vec![ids[0].clone()]);
}

async fn create_with_type_zone_metadata(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let types = api.get(&format!("/v3/{p}/types")).await.expect(200).body;
    let sas_id = types["volume_types"]
        .as_array()
        .expect("volume_types")
        .iter()
        .find(|t| t["name"] == "SAS")
        .map(|t| s(t, "id"))
        .expect("SAS type");
    let a = api
        .cinder_create_available(
            &p,
            json!({"size": 3, "name": "typed", "description": "with type", "volume_type": "SSD",
                   "availability_zone": "nova", "metadata": {"owner": "tests", "tier": "gold"}, "multiattach": true}),
        )
        .await;
    assert_eq!(a["volume_type"], "SSD");
    assert_eq!(a["availability_zone"], "nova");
    assert_eq!(a["metadata"], json!({"owner": "tests", "tier": "gold"}));
    assert_eq!(a["multiattach"], true);
    assert_eq!(a["size"], 3);
    assert_sparse_file(&srv.volume_path(&s(&a, "id")), 3);
    // A type may be given by id too.
    let b2 = api.cinder_create_available(&p, json!({"size": 1, "volume_type": sas_id})).await;
    assert_eq!(b2["volume_type"], "SAS");
}

async fn create_rejects_bad_input(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let path = format!("/v3/{p}/volumes");
    let long = "x".repeat(256);
    let bad_bodies = [
        json!({"volume": {"size": 0}}),
        json!({"volume": {"size": -1}}),
        json!({"volume": {"size": 32769}}),
        json!({"volume": {"size": "abc"}}),
        json!({"volume": {"name": "no size"}}),
        json!({"volume": {"size": 1, "name": long}}),
        json!({"volume": {"size": 1, "description": "d".repeat(256)}}),
        json!({"volume": {"size": 1, "availability_zone": "no-such-zone"}}),
        json!({"volume": {"size": 1, "metadata": {"k": 1}}}),
        json!({"volume": {"size": 1, "metadata": "not an object"}}),
        json!({"volume": {"size": 1, "metadata": {"k": null}}}),
        json!({"volume": {"size": 1, "snapshot_id": uuid::Uuid::new_v4(), "imageRef": uuid::Uuid::new_v4()}}),
        json!({"volume": {"size": 1, "source_volid": uuid::Uuid::new_v4(), "snapshot_id": uuid::Uuid::new_v4()}}),
        json!({"volume": "not an object"}),
        json!({"not_volume": {"size": 1}}),
        json!([1, 2, 3]),
    ];
    for body in bad_bodies {
        let r = api.post(&path, body.clone()).await;
        assert_eq!(r.status, 400, "{body} answered {}: {}", r.status, r.text);
        r.expect_fault(400, "badRequest");
    }
    for raw in ["{not json", "", "{\"volume\": {\"size\": 1}"] {
        api.post_raw(&path, raw).await.expect_fault(400, "badRequest");
    }
    // An unknown volume type is "not found", as in Cinder.
    api.post(&path, json!({"volume": {"size": 1, "volume_type": "no-such-type"}}))
        .await
        .expect_fault(404, "itemNotFound");
    assert!(api.volumes(&format!("{path}/detail")).await.is_empty(), "bad input left a volume behind");
}

async fn show_unknown_or_name_is_item_not_found(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for id in [uuid::Uuid::new_v4().to_string(), "not-a-uuid".into(), "some name".replace(' ', "%20")] {
        api.get(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
        api.get(&format!("/v2/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
        api.get(&format!("/v1/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
        api.put(&format!("/v3/{p}/volumes/{id}"), json!({"volume": {"name": "x"}}))
            .await
            .expect_fault(404, "itemNotFound");
        api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
    }
    // Another project's volume does not show up in this project's list.
    let other = project();
    let v = api.cinder_create(&other, json!({"size": 1})).await;
    let ids = api.volume_ids(&format!("/v3/{p}/volumes/detail")).await;
    assert!(!ids.contains(&s(&v, "id")), "foreign volume listed without all_tenants");
}

async fn summary_list_has_only_id_links_name(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    api.cinder_create_available(&p, json!({"size": 1, "name": "summary"})).await;
    for path in [format!("/v3/{p}/volumes"), format!("/v2/{p}/volumes")] {
        let vols = api.volumes(&path).await;
        assert_eq!(vols.len(), 1);
        let keys: BTreeSet<&str> = vols[0].as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, BTreeSet::from(["id", "links", "name"]), "{path}: {}", vols[0]);
        assert_eq!(vols[0]["name"], "summary");
    }
    let detail = api.volumes(&format!("/v3/{p}/volumes/detail")).await;
    assert_eq!(detail[0]["status"], "available");
    assert_eq!(detail[0]["size"], 1);
}

/// Make `n` available volumes in `p` one after the other (so `created_at` increases).
async fn make_volumes(api: &common::Api, p: &str, specs: Vec<Value>) -> Vec<String> {
    let mut ids = Vec::new();
    for spec in specs {
        let v = api.cinder_create(p, spec).await;
        ids.push(s(&v, "id"));
    }
    for id in &ids {
        api.wait_available(p, id).await;
    }
    ids
}

async fn detail_filters(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ids = make_volumes(
        &api,
        &p,
        vec![
            json!({"size": 1, "name": "alpha", "metadata": {"env": "prod", "team": "a"}}),
            json!({"size": 2, "name": "beta", "metadata": {"env": "dev"}, "volume_type": "SSD"}),
            json!({"size": 3, "name": "gamma", "metadata": {"env": "prod", "team": "b"}}),
        ],
    )
    .await;
    let d = format!("/v3/{p}/volumes/detail");
    let set = |v: Vec<String>| v.into_iter().collect::<BTreeSet<_>>();
    let all = set(ids.clone());

    assert_eq!(set(api.volume_ids(&d).await), all);
    assert_eq!(api.volume_ids(&format!("{d}?name=beta")).await, vec![ids[1].clone()]);
    assert!(api.volume_ids(&format!("{d}?name=bet")).await.is_empty(), "name is an exact match");
    assert_eq!(set(api.volume_ids(&format!("{d}?status=available")).await), all);
    assert!(api.volume_ids(&format!("{d}?status=creating")).await.is_empty());
    assert_eq!(set(api.volume_ids(&format!("{d}?availability_zone=nova")).await), all);
    assert!(api.volume_ids(&format!("{d}?availability_zone=elsewhere")).await.is_empty());
    // metadata as JSON …
    let m = enc(r#"{"env":"prod"}"#);
    assert_eq!(set(api.volume_ids(&format!("{d}?metadata={m}")).await), set(vec![ids[0].clone(), ids[2].clone()]));
    let m = enc(r#"{"env":"prod","team":"b"}"#);
    assert_eq!(api.volume_ids(&format!("{d}?metadata={m}")).await, vec![ids[2].clone()]);
    // … and as the Python dict repr python-cinderclient puts in the URL.
    let m = enc("{'env': 'dev'}");
    assert_eq!(api.volume_ids(&format!("{d}?metadata={m}")).await, vec![ids[1].clone()]);
    // Filters combine.
    assert_eq!(
        api.volume_ids(&format!("{d}?name=alpha&status=available&availability_zone=nova")).await,
        vec![ids[0].clone()]
    );
    assert!(api.volume_ids(&format!("{d}?name=alpha&status=error")).await.is_empty());
    // The summary list filters the same way.
    assert_eq!(api.volume_ids(&format!("/v3/{p}/volumes?name=gamma")).await, vec![ids[2].clone()]);
}

async fn all_tenants_lists_other_projects(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let owner = project();
    let viewer = project();
    let name = unique("tenant");
    let id = s(&api.cinder_create_available(&owner, json!({"size": 1, "name": name})).await, "id");
    let own = api.volume_ids(&format!("/v3/{viewer}/volumes/detail?name={name}")).await;
    assert!(own.is_empty(), "without all_tenants only the caller's project is listed");
    for flag in ["all_tenants=1", "all_tenants=True", "all_tenants=true"] {
        let r = api.volumes(&format!("/v3/{viewer}/volumes/detail?{flag}&name={name}")).await;
        assert_eq!(r.len(), 1, "{flag}");
        assert_eq!(r[0]["id"], id.as_str());
        assert_eq!(r[0]["os-vol-tenant-attr:tenant_id"], owner.as_str());
    }
    // all_tenants=0 keeps the caller's scope.
    assert!(api.volume_ids(&format!("/v3/{viewer}/volumes/detail?all_tenants=0&name={name}")).await.is_empty());
}

async fn paging_with_limit_marker_offset_and_links(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let specs = (0..5).map(|i| json!({"size": 1, "name": format!("page-{i}")})).collect();
    let ids = make_volumes(&api, &p, specs).await;
    // Default order: newest first.
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let d = format!("/v3/{p}/volumes/detail");
    assert_eq!(api.volume_ids(&d).await, newest_first);

    let r = api.get(&format!("{d}?limit=2")).await.expect(200);
    let page: Vec<String> = r.body["volumes"].as_array().unwrap().iter().map(|v| s(v, "id")).collect();
    assert_eq!(page, newest_first[..2].to_vec());
    let next = next_link(&r.body["volumes_links"]).unwrap_or_else(|| panic!("no next link: {}", r.text));
    assert_eq!(query_param(&next, "marker").as_deref(), Some(newest_first[1].as_str()), "{next}");
    assert_eq!(query_param(&next, "limit").as_deref(), Some("2"), "{next}");
    assert!(link_path(&next).starts_with(&format!("/v3/{p}/volumes/detail")), "{next}");

    // Following the links walks every volume exactly once.
    let mut seen = page.clone();
    let mut next = Some(next);
    let mut hops = 0;
    while let Some(link) = next {
        hops += 1;
        assert!(hops < 10, "too many pages");
        let r = api.get(&link_path(&link)).await.expect(200);
        let ids: Vec<String> = r.body["volumes"].as_array().unwrap().iter().map(|v| s(v, "id")).collect();
        if ids.is_empty() {
            break;
        }
        assert!(ids.len() <= 2, "{link}: page larger than limit");
        seen.extend(ids);
        next = next_link(&r.body["volumes_links"]);
    }
    assert_eq!(seen, newest_first);

    // A full page without a limit has no next link.
    let r = api.get(&d).await.expect(200);
    assert!(next_link(&r.body["volumes_links"]).is_none(), "{}", r.text);

    // marker alone, offset alone, marker + limit.
    assert_eq!(api.volume_ids(&format!("{d}?marker={}", newest_first[2])).await, newest_first[3..].to_vec());
    assert_eq!(api.volume_ids(&format!("{d}?offset=1")).await, newest_first[1..].to_vec());
    assert_eq!(api.volume_ids(&format!("{d}?offset=3&limit=1")).await, newest_first[3..4].to_vec());
    assert_eq!(api.volume_ids(&format!("{d}?marker={}&limit=2", newest_first[0])).await, newest_first[1..3].to_vec());
    assert!(api.volume_ids(&format!("{d}?offset=5")).await.is_empty());
    // The summary list pages the same way.
    let r = api.get(&format!("/v3/{p}/volumes?limit=3")).await.expect(200);
    assert_eq!(r.body["volumes"].as_array().unwrap().len(), 3);
    let next = next_link(&r.body["volumes_links"]).expect("next link on summary list");
    assert!(link_path(&next).starts_with(&format!("/v3/{p}/volumes?")), "{next}");
}

async fn sorting(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let ids = make_volumes(
        &api,
        &p,
        vec![json!({"size": 2, "name": "b"}), json!({"size": 3, "name": "a"}), json!({"size": 1, "name": "c"})],
    )
    .await;
    let d = format!("/v3/{p}/volumes/detail");
    let by_size_asc = vec![ids[2].clone(), ids[0].clone(), ids[1].clone()];
    let by_size_desc: Vec<String> = by_size_asc.iter().rev().cloned().collect();
    assert_eq!(api.volume_ids(&format!("{d}?sort_key=size&sort_dir=asc")).await, by_size_asc);
    assert_eq!(api.volume_ids(&format!("{d}?sort_key=size&sort_dir=desc")).await, by_size_desc);
    assert_eq!(api.volume_ids(&format!("{d}?sort_key=size")).await, by_size_desc, "default direction is desc");
    assert_eq!(api.volume_ids(&format!("{d}?sort=size:asc")).await, by_size_asc);
    assert_eq!(api.volume_ids(&format!("{d}?sort=size:desc")).await, by_size_desc);
    assert_eq!(api.volume_ids(&format!("{d}?sort=size")).await, by_size_desc);
    assert_eq!(api.volume_ids(&format!("{d}?sort_key=created_at&sort_dir=asc")).await, ids);
    assert_eq!(
        api.volume_ids(&format!("{d}?sort=name:asc")).await,
        vec![ids[1].clone(), ids[0].clone(), ids[2].clone()]
    );
    let mut by_id = ids.clone();
    by_id.sort();
    assert_eq!(api.volume_ids(&format!("{d}?sort_key=id&sort_dir=asc")).await, by_id);
    // Paging keeps the sort order.
    let r = api.get(&format!("{d}?sort=size:asc&limit=2")).await.expect(200);
    let first: Vec<String> = r.body["volumes"].as_array().unwrap().iter().map(|v| s(v, "id")).collect();
    assert_eq!(first, by_size_asc[..2].to_vec());
    let next = next_link(&r.body["volumes_links"]).expect("next");
    let rest = api.volume_ids(&link_path(&next)).await;
    assert_eq!(rest, by_size_asc[2..].to_vec(), "next link must keep the sort ({next})");
}

async fn bad_list_parameters_are_400(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    api.cinder_create_available(&p, json!({"size": 1})).await;
    let unknown_marker = uuid::Uuid::new_v4();
    for q in [
        "limit=-1".to_string(),
        "limit=abc".to_string(),
        "offset=-1".to_string(),
        "offset=abc".to_string(),
        "sort_key=bogus".to_string(),
        "sort_dir=sideways".to_string(),
        "sort=size:sideways".to_string(),
        "sort=bogus:asc".to_string(),
    ] {
        for list in ["volumes", "volumes/detail", "snapshots", "snapshots/detail"] {
            let r = api.get(&format!("/v3/{p}/{list}?{q}")).await;
            assert_eq!(r.status, 400, "{list}?{q} answered {}: {}", r.status, r.text);
            r.expect_fault(400, "badRequest");
        }
    }
    // An unknown marker is Cinder's MarkerNotFound: 404 on both lists.
    for list in ["volumes", "volumes/detail", "snapshots", "snapshots/detail"] {
        api.get(&format!("/v3/{p}/{list}?marker={unknown_marker}")).await.expect_fault(404, "itemNotFound");
    }
}

async fn update_name_description_metadata(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "old", "metadata": {"a": "1"}})).await, "id");
    let path = format!("/v3/{p}/volumes/{id}");
    let r = api
        .put(&path, json!({"volume": {"name": "new", "description": "desc", "metadata": {"b": "2", "c": "3"}}}))
        .await
        .expect(200);
    let v = &r.body["volume"];
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["name"], "new");
    assert_eq!(v["description"], "desc");
    assert_eq!(v["metadata"], json!({"b": "2", "c": "3"}), "metadata is replaced: {}", r.text);
    assert_eq!(v["status"], "available");
    assert!(v["updated_at"].is_string(), "{}", r.text);
    let shown = api.get(&path).await.expect(200).body["volume"].clone();
    assert_eq!(shown["name"], "new");
    assert_eq!(shown["description"], "desc");
    assert_eq!(shown["metadata"], json!({"b": "2", "c": "3"}));
    // Only what is given changes.
    let v = api.put(&path, json!({"volume": {"description": "only desc"}})).await.expect(200).body["volume"].clone();
    assert_eq!(v["name"], "new");
    assert_eq!(v["description"], "only desc");
    assert_eq!(v["metadata"], json!({"b": "2", "c": "3"}));
    // Explicit null clears a text field.
    let v = api.put(&path, json!({"volume": {"description": null}})).await.expect(200).body["volume"].clone();
    assert!(v["description"].is_null(), "{v}");
    assert_eq!(v["name"], "new");
    // The new name is what filters see.
    assert_eq!(api.volume_ids(&format!("/v3/{p}/volumes/detail?name=new")).await, vec![id.clone()]);
    assert!(api.volume_ids(&format!("/v3/{p}/volumes/detail?name=old")).await.is_empty());
}

async fn update_display_aliases(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "orig"})).await, "id");
    let path = format!("/v2/{p}/volumes/{id}");
    let v =
        api.put(&path, json!({"volume": {"display_name": "dn", "display_description": "dd"}})).await.expect(200).body
            ["volume"]
            .clone();
    assert_eq!(v["name"], "dn");
    assert_eq!(v["description"], "dd");
    // When both are given, name/description win.
    let v = api
        .put(
            &path,
            json!({"volume": {"name": "n", "display_name": "ignored", "description": "d", "display_description": "ignored"}}),
        )
        .await
        .expect(200)
        .body["volume"]
        .clone();
    assert_eq!(v["name"], "n");
    assert_eq!(v["description"], "d");
    let v1 = api.get(&format!("/v1/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(v1["display_name"], "n");
    assert_eq!(v1["display_description"], "d");
}

async fn update_errors(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "keep"})).await, "id");
    let path = format!("/v3/{p}/volumes/{id}");
    for body in [
        json!({"volume": {"name": "n".repeat(256)}}),
        json!({"volume": {"description": "d".repeat(256)}}),
        json!({"volume": {"metadata": {"k": 5}}}),
        json!({"volume": "x"}),
        json!({"nothing": {}}),
    ] {
        let r = api.put(&path, body.clone()).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text);
        r.expect_fault(400, "badRequest");
    }
    api.request(reqwest::Method::PUT, &path, &[], Some("{oops".into())).await.expect_fault(400, "badRequest");
    assert_eq!(api.get(&path).await.expect(200).body["volume"]["name"], "keep");
}

async fn delete_with_cascade_and_twice(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1})).await, "id");
    assert!(srv.volume_path(&id).exists());
    api.delete(&format!("/v3/{p}/volumes/{id}?cascade=true")).await.expect(202);
    // While (or after) it is deleting, a second delete is refused or finds nothing.
    let again = api.delete(&format!("/v3/{p}/volumes/{id}")).await;
    assert!(matches!(again.status, 400 | 404), "second delete answered {}: {}", again.status, again.text);
    if again.status == 400 {
        again.expect_fault(400, "badRequest");
    }
    api.wait_volume_gone(&p, &id).await;
    assert!(!srv.volume_path(&id).exists());
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect_fault(404, "itemNotFound");
}

async fn delete_is_idempotent_when_the_file_is_already_gone(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1})).await, "id");
    std::fs::remove_file(srv.volume_path(&id)).expect("remove volume file behind the daemon's back");
    api.delete(&format!("/v3/{p}/volumes/{id}")).await.expect(202);
    api.wait_volume_gone(&p, &id).await;
}

async fn volume_types(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for v in ["v2", "v3"] {
        let r = api.get(&format!("/{v}/{p}/types")).await.expect(200);
        let types = r.body["volume_types"].as_array().unwrap_or_else(|| panic!("{}", r.text));
        let names: BTreeSet<&str> = types.iter().filter_map(|t| t["name"].as_str()).collect();
        for want in ["__DEFAULT__", "SSD", "SAS", "SATA"] {
            assert!(names.contains(want), "{want} missing from {names:?}");
        }
        for t in types {
            assert!(t["id"].as_str().is_some_and(|i| uuid::Uuid::parse_str(i).is_ok()), "type id: {t}");
            assert!(t["extra_specs"].is_object(), "{t}");
            assert_eq!(t["is_public"], true, "{t}");
            let one = api.get(&format!("/{v}/{p}/types/{}", s(t, "id"))).await.expect(200);
            assert_eq!(one.body["volume_type"]["name"], t["name"], "{}", one.text);
            assert_eq!(one.body["volume_type"]["id"], t["id"]);
            assert!(one.body["volume_type"]["extra_specs"].is_object());
        }
        api.get(&format!("/{v}/{p}/types/{}", uuid::Uuid::new_v4())).await.expect_fault(404, "itemNotFound");
    }
}

async fn availability_zones(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for v in ["v2", "v3"] {
        let r = api.get(&format!("/{v}/{p}/os-availability-zone")).await.expect(200);
        assert_eq!(
            r.body["availabilityZoneInfo"],
            json!([{"zoneName": "nova", "zoneState": {"available": true}}]),
            "{}",
            r.text
        );
    }
}

async fn extensions(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for v in ["v2", "v3"] {
        let r = api.get(&format!("/{v}/{p}/extensions")).await.expect(200);
        let exts = r.body["extensions"].as_array().unwrap_or_else(|| panic!("{}", r.text));
        assert!(!exts.is_empty());
        for e in exts {
            for k in ["alias", "name", "description", "updated"] {
                assert!(e[k].is_string(), "extension lacks {k}: {e}");
            }
            assert!(e["links"].is_array(), "{e}");
        }
        let aliases: BTreeSet<&str> = exts.iter().filter_map(|e| e["alias"].as_str()).collect();
        assert!(aliases.contains("os-vol-tenant-attr"), "{aliases:?}");
        assert!(aliases.contains("os-quota-sets"), "{aliases:?}");
    }
}

async fn quota_usage_follows_volumes(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let path = format!("/v3/{p}/os-quota-sets/{p}?usage=True");
    let usage = |body: &Value, key: &str| body["quota_set"][key].clone();
    let r = api.get(&path).await.expect(200);
    assert_eq!(r.body["quota_set"]["id"], p.as_str(), "{}", r.text);
    for key in ["volumes", "gigabytes", "snapshots", "volumes_SSD", "gigabytes_SSD", "volumes_SAS", "backups"] {
        let u = usage(&r.body, key);
        assert_eq!(
            (&u["in_use"], &u["limit"], &u["reserved"]),
            (&json!(0), &json!(-1), &json!(0)),
            "{key}: {}",
            r.text
        );
    }
    let a = s(&api.cinder_create_available(&p, json!({"size": 2, "volume_type": "SSD"})).await, "id");
    api.cinder_create_available(&p, json!({"size": 1})).await;
    let r = api.get(&path).await.expect(200);
    assert_eq!(usage(&r.body, "volumes")["in_use"], 2, "{}", r.text);
    assert_eq!(usage(&r.body, "gigabytes")["in_use"], 3, "{}", r.text);
    assert_eq!(usage(&r.body, "volumes_SSD")["in_use"], 1, "{}", r.text);
    assert_eq!(usage(&r.body, "gigabytes_SSD")["in_use"], 2, "{}", r.text);
    assert_eq!(usage(&r.body, "volumes___DEFAULT__")["in_use"], 1, "{}", r.text);
    assert_eq!(usage(&r.body, "volumes_SAS")["in_use"], 0, "{}", r.text);
    assert_eq!(usage(&r.body, "volumes")["limit"], -1);
    // The v2 route agrees, and other projects are unaffected.
    let r2 = api.get(&format!("/v2/{p}/os-quota-sets/{p}?usage=True")).await.expect(200);
    assert_eq!(r2.body["quota_set"]["volumes"]["in_use"], 2);
    let q = project();
    let r3 = api.get(&format!("/v3/{q}/os-quota-sets/{q}?usage=True")).await.expect(200);
    assert_eq!(r3.body["quota_set"]["volumes"]["in_use"], 0);
    // After a delete the usage drops.
    api.delete(&format!("/v3/{p}/volumes/{a}")).await.expect(202);
    api.wait_volume_gone(&p, &a).await;
    let r = api.get(&path).await.expect(200);
    assert_eq!(usage(&r.body, "volumes")["in_use"], 1, "{}", r.text);
    assert_eq!(usage(&r.body, "gigabytes")["in_use"], 1, "{}", r.text);
    assert_eq!(usage(&r.body, "volumes_SSD")["in_use"], 0, "{}", r.text);
    // Without usage=True: plain limits.
    let r = api.get(&format!("/v3/{p}/os-quota-sets/{p}")).await.expect(200);
    assert_eq!(r.body["quota_set"]["volumes"], -1, "{}", r.text);
}

async fn v1_show_has_display_fields(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id =
        s(&api.cinder_create_available(&p, json!({"size": 4, "name": "legacy", "description": "old api"})).await, "id");
    let r = api.get(&format!("/v1/{p}/volumes/{id}")).await.expect(200);
    let v = &r.body["volume"];
    assert_eq!(v["id"], id.as_str());
    assert_eq!(v["display_name"], "legacy", "{}", r.text);
    assert_eq!(v["display_description"], "old api", "{}", r.text);
    assert_eq!(v["size"], 4);
    assert_eq!(v["status"], "available");
    assert_eq!(v["availability_zone"], "nova");
    assert_eq!(v["volume_type"], "__DEFAULT__");
    assert_eq!(v["bootable"], "false");
    assert_eq!(v["os-vol-tenant-attr:tenant_id"], p.as_str());
    assert!(v.get("name").is_none(), "v1 says display_name, not name: {}", r.text);
    assert!(v.get("description").is_none(), "v1 says display_description: {}", r.text);
}

async fn microversion_gated_fields(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let id = s(&api.cinder_create_available(&p, json!({"size": 1, "volume_type": "SATA"})).await, "id");
    let sata_id = api.get(&format!("/v3/{p}/types")).await.expect(200).body["volume_types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "SATA")
        .map(|t| s(t, "id"))
        .expect("SATA");
    let show = |ver: Option<&'static str>| {
        let api = api.clone();
        let path = format!("/v3/{p}/volumes/{id}");
        async move {
            let h: Vec<(&str, &str)> = ver.map(|v| vec![("OpenStack-API-Version", v)]).unwrap_or_default();
            let r = api.get_h(&path, &h).await.expect(200);
            r.body["volume"].clone()
        }
    };
    let detail = |ver: &'static str| {
        let api = api.clone();
        let path = format!("/v3/{p}/volumes/detail");
        async move {
            let r = api.get_h(&path, &[("OpenStack-API-Version", ver)]).await.expect(200);
            r.body["volumes"][0].clone()
        }
    };
    let v30 = show(None).await;
    for k in ["volume_type_id", "provider_id", "group_id", "service_uuid", "shared_targets"] {
        assert!(v30.get(k).is_none(), "{k} must not appear at 3.0: {v30}");
    }
    let v = show(Some("volume 3.20")).await;
    assert!(v.get("provider_id").is_none(), "provider_id only from 3.21: {v}");
    let v = show(Some("volume 3.21")).await;
    assert!(v.get("provider_id").is_some(), "provider_id from 3.21: {v}");
    assert!(v.get("volume_type_id").is_none(), "volume_type_id only from 3.63: {v}");
    let v = show(Some("volume 3.62")).await;
    assert!(v.get("volume_type_id").is_none(), "volume_type_id only from 3.63: {v}");
    for ver in ["volume 3.63", "volume 3.71"] {
        let v = show(Some(ver)).await;
        assert_eq!(v["volume_type_id"], sata_id.as_str(), "{ver}: {v}");
        assert_eq!(v["volume_type"], "SATA");
        assert!(v.get("provider_id").is_some());
    }
    // Lists follow the same rules.
    assert!(detail("volume 3.62").await.get("volume_type_id").is_none());
    assert_eq!(detail("volume 3.63").await["volume_type_id"], sata_id.as_str());
    // v2 never shows microversioned fields.
    let v2 = api.get(&format!("/v2/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    for k in ["volume_type_id", "provider_id", "group_id"] {
        assert!(v2.get(k).is_none(), "{k} on v2: {v2}");
    }
}

async fn with_count_needs_3_45(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    make_volumes(&api, &p, (0..3).map(|_| json!({"size": 1})).collect()).await;
    for list in ["volumes", "volumes/detail"] {
        let path = format!("/v3/{p}/{list}?with_count=true&limit=1");
        let r = api.get_h(&path, &[("OpenStack-API-Version", "volume 3.45")]).await.expect(200);
        assert_eq!(r.body["count"], 3, "count ignores paging: {}", r.text);
        assert_eq!(r.body["volumes"].as_array().unwrap().len(), 1);
        let r = api.get_h(&path, &[("OpenStack-API-Version", "volume 3.44")]).await.expect(200);
        assert!(r.body.get("count").is_none(), "count before 3.45: {}", r.text);
        let r = api
            .get_h(&format!("/v3/{p}/{list}?limit=1"), &[("OpenStack-API-Version", "volume 3.71")])
            .await
            .expect(200);
        assert!(r.body.get("count").is_none(), "count only when with_count=true: {}", r.text);
        let r = api
            .get_h(&format!("/v3/{p}/{list}?with_count=true&name=none"), &[("OpenStack-API-Version", "volume 3.71")])
            .await
            .expect(200);
        assert_eq!(r.body["count"], 0, "{}", r.text);
    }
}

/// Reference 7.1.1 is silent on fractional sizes (only EVS 6.1.1 truncates them), so the
/// Cinder routes follow Cinder: `size` must be an integer (its JSON schema), 400 otherwise.
async fn fractional_size_is_rejected(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for size in [json!(1.5), json!("1.5"), json!(true)] {
        let r = api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": size}})).await;
        assert_eq!(r.status, 400, "size {size} answered {}: {}", r.status, r.text);
        r.expect_fault(400, "badRequest");
    }
    assert!(api.volumes(&format!("/v3/{p}/volumes/detail")).await.is_empty());
    // An integer in a string is fine (Cinder's schema: integer, or string of digits).
    let v = api.cinder_create_available(&p, json!({"size": "2"})).await;
    assert_eq!(v["size"], 2);
}
