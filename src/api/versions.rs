//! Version discovery (no auth, as in Cinder): `GET /` answers 300 with every version (v3, v2
//! and v1, as the EVS reference's 5.1 lists them), `GET /v3`, `/v2`, `/v1` (with or without the
//! slash) answer 200 with one (5.2).

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::common::base_url;
use super::microversion::MAX_MINOR;
use crate::service::Services;

pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/", get(all_versions))
        .route("/v3", get(v3))
        .route("/v3/", get(v3))
        .route("/v2", get(v2))
        .route("/v2/", get(v2))
        .route("/v1", get(v1))
        .route("/v1/", get(v1))
}

fn entry(base: &str, major: u8) -> Value {
    let (status, version, min_version, updated) = match major {
        3 => ("CURRENT", format!("3.{MAX_MINOR}"), "3.0".to_string(), "2023-08-31T00:00:00Z"),
        // evs: 5.1 shows v2 and v1 as SUPPORTED (still served: v2 in full, v1 the show and
        // the jobs of 8.1, 8.2), with no microversions.
        _ => ("SUPPORTED", String::new(), String::new(), "2014-06-28T12:20:21Z"),
    };
    json!({
        "id": format!("v{major}.0"),
        "status": status,
        "version": version,
        "min_version": min_version,
        "updated": updated,
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{base}/v{major}/")},
        ],
        "media-types": [
            {"base": "application/json", "type": format!("application/vnd.openstack.volume+json;version={major}")}
        ],
    })
}

async fn all_versions(State(svc): State<Services>, headers: HeaderMap) -> Response {
    let base = base_url(&svc, &headers);
    (StatusCode::MULTIPLE_CHOICES, Json(json!({"versions": [entry(&base, 3), entry(&base, 2), entry(&base, 1)]})))
        .into_response()
}

async fn v3(State(svc): State<Services>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"versions": [entry(&base_url(&svc, &headers), 3)]}))
}

async fn v2(State(svc): State<Services>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"versions": [entry(&base_url(&svc, &headers), 2)]}))
}

async fn v1(State(svc): State<Services>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"versions": [entry(&base_url(&svc, &headers), 1)]}))
}
