//! `GET /volumes/summary` (3.12; 3.36 adds the distinct `metadata`) and `GET /resource_filters`
//! (3.33): the count and total size of the volumes a list with the same filters would show, and
//! the filters each of our lists accepts.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::list_query::list_request;
use super::CinderError;
use crate::api::common::{caller, parse_query, query_get};
use crate::api::ApiVersion;
use crate::error::{Error, ErrorKind};

type Res = Result<Response, CinderError>;

/// Not served below `3.minor` (Cinder answers such requests with 404).
pub(super) fn require(version: ApiVersion, minor: u16) -> Result<(), Error> {
    if version.at_least(minor) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::NotFound, format!("This API needs microversion 3.{minor} or later.")))
    }
}

/// `GET /v3/{p}/volumes/summary`.
pub(super) async fn volume_summary(
    State(svc): State<crate::service::Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 12)?;
    let caller = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    // The list's own filters; paging does not apply to a summary.
    let (mut req, _) = list_request(&caller, &q)?;
    req.limit = None;
    req.offset = 0;
    req.marker = None;
    req.with_count = false;
    let page = svc.list_volumes(&req).await?;
    let total_size: i64 = page.volumes.iter().map(|v| v.size_gb).sum();
    let mut summary = json!({"total_count": page.volumes.len(), "total_size": total_size});
    if version.at_least(36) {
        // Cinder's form: every key with the distinct values it has across the volumes.
        let mut meta: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for v in &page.volumes {
            for (k, val) in &v.metadata {
                meta.entry(k).or_default().insert(val);
            }
        }
        summary["metadata"] = json!(meta);
    }
    Ok(Json(json!({"volume-summary": summary})).into_response())
}

/// The filters our lists implement, by resource (Cinder's `resource_filters.json` keys).
const RESOURCE_FILTERS: &[(&str, &[&str])] = &[
    ("volume", &["name", "status", "metadata", "availability_zone", "group_id"]),
    ("snapshot", &["id", "name", "status", "volume_id"]),
    ("attachment", &["volume_id", "status", "instance_id"]),
    // actions: user messages (3.5 filters).
    ("message", &crate::service::messages::MESSAGE_FILTERS),
];

/// `GET /v3/{p}/resource_filters[?resource=volume]` (3.33).
pub(super) async fn resource_filters(
    State(svc): State<crate::service::Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 33)?;
    caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let wanted = query_get(&q, "resource");
    let items: Vec<Value> = RESOURCE_FILTERS
        .iter()
        .filter(|(r, _)| wanted.is_none_or(|w| w == *r))
        .map(|(r, f)| json!({"resource": r, "filters": f}))
        .collect();
    Ok(Json(json!({"resource_filters": items})).into_response())
}
