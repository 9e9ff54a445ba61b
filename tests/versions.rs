//! Version discovery, microversion negotiation, request-id headers and the error bodies of
//! unknown routes (CLIENTS.md §2, DESIGN.md §7).

#[macro_use]
mod common;

use common::{project, shared, Backend};

/// The highest microversion the server speaks.
const MAX_MICROVERSION: &str = "3.71";

backend_tests!(
    root_lists_versions,
    version_documents,
    microversion_is_echoed_with_vary,
    microversion_out_of_range_is_406,
    malformed_microversion_is_400,
    every_response_has_request_ids,
    unknown_routes_and_methods_get_fault_bodies,
);

fn find_version<'a>(versions: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    versions
        .as_array()
        .unwrap_or_else(|| panic!("versions is not an array: {versions}"))
        .iter()
        .find(|v| v["id"] == id)
        .unwrap_or_else(|| panic!("no {id} entry in {versions}"))
}

fn check_v3_entry(v3: &serde_json::Value) {
    assert_eq!(v3["status"], "CURRENT", "{v3}");
    assert_eq!(v3["min_version"], "3.0", "{v3}");
    assert_eq!(v3["version"], MAX_MICROVERSION, "{v3}");
    let links = v3["links"].as_array().expect("links");
    assert!(
        links.iter().any(|l| l["rel"] == "self" && l["href"].as_str().is_some_and(|h| h.contains("/v3"))),
        "v3 entry needs a self link to /v3: {v3}"
    );
    let media = v3["media-types"].as_array().expect("media-types");
    assert!(media.iter().any(|m| m["base"] == "application/json"), "{v3}");
    assert!(v3["updated"].is_string(), "{v3}");
}

async fn root_lists_versions(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let r = api.get("/").await.expect(300);
    let versions = &r.body["versions"];
    check_v3_entry(find_version(versions, "v3.0"));
    let v2 = find_version(versions, "v2.0");
    assert_ne!(v2["status"], "CURRENT", "only v3 is CURRENT: {v2}");
    // The v3 entry comes first (clients pick the first CURRENT one).
    assert_eq!(versions[0]["id"], "v3.0", "{}", r.text);
}

async fn version_documents(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    for path in ["/v3", "/v3/"] {
        let r = api.get(path).await.expect(200);
        let versions = r.body["versions"].as_array().unwrap_or_else(|| panic!("{path}: {}", r.text));
        assert_eq!(versions.len(), 1, "{path}: {}", r.text);
        check_v3_entry(&versions[0]);
        assert_eq!(versions[0]["id"], "v3.0");
    }
    for path in ["/v2", "/v2/"] {
        let r = api.get(path).await.expect(200);
        let versions = r.body["versions"].as_array().unwrap_or_else(|| panic!("{path}: {}", r.text));
        assert_eq!(versions.len(), 1, "{path}: {}", r.text);
        assert_eq!(versions[0]["id"], "v2.0", "{path}: {}", r.text);
    }
}

async fn microversion_is_echoed_with_vary(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let path = format!("/v3/{p}/types");
    let cases = [
        (Some("volume 3.50"), "volume 3.50"),
        (Some("volume 3.0"), "volume 3.0"),
        (Some(&*format!("volume {MAX_MICROVERSION}")), &*format!("volume {MAX_MICROVERSION}")),
        (Some("volume latest"), &*format!("volume {MAX_MICROVERSION}")),
        (None, "volume 3.0"),
    ];
    for (ask, want) in cases {
        let headers: Vec<(&str, &str)> = ask.map(|a| vec![("OpenStack-API-Version", a)]).unwrap_or_default();
        let r = api.get_h(&path, &headers).await.expect(200);
        assert_eq!(r.header("openstack-api-version").as_deref(), Some(want), "asked {ask:?}");
        let vary = r.header("vary").unwrap_or_default();
        assert!(vary.to_ascii_lowercase().contains("openstack-api-version"), "asked {ask:?}: Vary = {vary:?}");
    }
    // The header name is case-insensitive, and other services' entries are ignored.
    let r = api.get_h(&path, &[("openstack-api-version", "compute 2.1, volume 3.45")]).await.expect(200);
    assert_eq!(r.header("openstack-api-version").as_deref(), Some("volume 3.45"));
    // The same negotiation happens on the volumes routes.
    let r =
        api.get_h(&format!("/v3/{p}/volumes/detail"), &[("OpenStack-API-Version", "volume 3.63")]).await.expect(200);
    assert_eq!(r.header("openstack-api-version").as_deref(), Some("volume 3.63"));
}

async fn microversion_out_of_range_is_406(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for bad in ["volume 3.72", "volume 3.999", "volume 4.0", "volume 2.0", "volume 2.99"] {
        for path in [format!("/v3/{p}/types"), format!("/v3/{p}/volumes/detail")] {
            let r = api.get_h(&path, &[("OpenStack-API-Version", bad)]).await;
            assert_eq!(r.status, 406, "{bad} on {path}: {}", r.text);
        }
    }
}

async fn malformed_microversion_is_400(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    for bad in ["volume abc", "volume 3", "volume 3.x"] {
        let r = api.get_h(&format!("/v3/{p}/types"), &[("OpenStack-API-Version", bad)]).await;
        r.expect_fault(400, "badRequest");
    }
}

async fn every_response_has_request_ids(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    let missing = uuid::Uuid::new_v4();
    let mut answers = vec![
        api.get("/").await,
        api.get("/v3").await,
        api.get(&format!("/v3/{p}/types")).await,
        api.get(&format!("/v2/{p}/volumes")).await,
        api.get(&format!("/v3/{p}/volumes/{missing}")).await,
        api.get(&format!("/v2/{p}/cloudvolumes/{missing}")).await,
        api.get(&format!("/v2/{p}/cloudvolumes/detail")).await,
        api.post_raw(&format!("/v3/{p}/volumes"), "{not json").await,
        api.post_raw(&format!("/v2/{p}/cloudvolumes"), "{not json").await,
        api.get(&format!("/v3/{p}/no-such-route")).await,
        api.get_h(&format!("/v3/{p}/types"), &[("OpenStack-API-Version", "volume 9.0")]).await,
    ];
    answers.push(api.request(reqwest::Method::PATCH, &format!("/v3/{p}/volumes"), &[], None).await);
    let mut ids = std::collections::HashSet::new();
    for r in &answers {
        let rid = r.header("x-request-id");
        let orid = r.header("x-openstack-request-id");
        assert!(rid.as_deref().is_some_and(|v| !v.is_empty()), "{} ({}) lacks X-Request-Id", r.what, r.status);
        assert!(
            orid.as_deref().is_some_and(|v| !v.is_empty()),
            "{} ({}) lacks X-Openstack-Request-Id",
            r.what,
            r.status
        );
        assert!(ids.insert(rid.unwrap()), "{}: request ids must be unique per request", r.what);
    }
}

async fn unknown_routes_and_methods_get_fault_bodies(b: Backend) {
    let srv = shared(&b);
    let api = srv.api();
    let p = project();
    api.get(&format!("/v3/{p}/no-such-route")).await.expect_fault(404, "itemNotFound");
    api.request(reqwest::Method::PATCH, &format!("/v3/{p}/volumes"), &[], None).await.expect_fault(405, "badMethod");
}
