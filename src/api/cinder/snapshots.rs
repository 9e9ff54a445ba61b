//! Cinder snapshot routes: create, list, detail, show, update, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::views::{self, Audience, SnapshotView, ViewCtx};
use super::CinderError;
use crate::api::common::{
    base_url, caller, next_link, opt_bool, opt_nullable_string, opt_string, opt_string_map, parse_json, parse_query,
    take_object,
};
use crate::api::snapshot_query::list_request;
use crate::api::ApiVersion;
use crate::error::Error;
use crate::service::{CreateSnapshot, Services, UpdateSnapshot};

type Res = Result<Response, CinderError>;

fn api_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/v2/") {
        "v2"
    } else {
        "v3"
    }
}

/// Parse the body of a snapshot create (`{"snapshot": {...}}`), shared with the EVS API.
pub(crate) fn parse_create(body: &[u8]) -> Result<CreateSnapshot, Error> {
    let o = take_object(parse_json(body)?, "snapshot", "EVS.5400")?;
    // Cinder's schema allows `volume_id: null`, and the lookup of volume None then fails: 404
    // (EVS still answers 400, its code's status). A missing key is a schema error: 400.
    if o.get("volume_id").is_some_and(Value::is_null) {
        return Err(Error::not_found("Volume None could not be found.").with_code("EVS.1002"));
    }
    let volume_id = opt_string(&o, "volume_id", "EVS.1002")?
        .ok_or_else(|| Error::invalid("EVS.1002", "Invalid input received: 'volume_id' is a required property"))?;
    Ok(CreateSnapshot {
        volume_id,
        force: opt_bool(&o, "force", "EVS.5400")?.unwrap_or(false),
        name: opt_string(&o, "name", "EVS.1003")?.or(opt_string(&o, "display_name", "EVS.1003")?),
        description: opt_string(&o, "description", "EVS.1004")?.or(opt_string(&o, "display_description", "EVS.1004")?),
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?.unwrap_or_default(),
        manage: None,
    })
}

/// Parse the body of a snapshot update, shared with the EVS API.
pub(crate) fn parse_update(body: &[u8]) -> Result<UpdateSnapshot, Error> {
    let o = take_object(parse_json(body)?, "snapshot", "EVS.5400")?;
    let upd = UpdateSnapshot {
        name: opt_nullable_string(&o, "name", "EVS.1003")?.or(opt_nullable_string(&o, "display_name", "EVS.1003")?),
        description: opt_nullable_string(&o, "description", "EVS.1004")?.or(opt_nullable_string(
            &o,
            "display_description",
            "EVS.1004",
        )?),
    };
    if upd.name.is_none() && upd.description.is_none() {
        return Err(Error::invalid("EVS.5400", "Invalid input received: give a name or a description to update."));
    }
    Ok(upd)
}

pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let snap = svc.create_snapshot(&caller, parse_create(&body)?).await?;
    let base = base_url(&svc, &headers);
    let c =
        ViewCtx { base: &base, api: api_of(&uri), version, node: &svc.config.node, audience: Audience::of(&caller) };
    Ok((StatusCode::ACCEPTED, Json(json!({"snapshot": views::snapshot(&c, &snap, SnapshotView::Written)})))
        .into_response())
}

async fn list(svc: &Services, p: &str, uri: &Uri, headers: &HeaderMap, version: ApiVersion, detail: bool) -> Res {
    let caller = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let (req, limit) = list_request(&caller, &q)?;
    let mut snaps = svc.list_snapshots(&req).await?;
    // Cinder links to a next page whenever this one is full, even if nothing follows.
    let more = snaps.len() as i64 >= limit;
    snaps.truncate(limit as usize);
    let base = base_url(svc, headers);
    let c = ViewCtx { base: &base, api: api_of(uri), version, node: &svc.config.node, audience: Audience::of(&caller) };
    let mut body = Map::new();
    body.insert(
        "snapshots".into(),
        Value::Array(
            snaps
                .iter()
                .map(|s| views::snapshot(&c, s, if detail { SnapshotView::Read } else { SnapshotView::Summary }))
                .collect(),
        ),
    );
    if let (true, Some(last)) = (more, snaps.last()) {
        body.insert("snapshots_links".into(), next_link(&base, uri.path(), &q, limit, &last.id));
    }
    Ok(Json(Value::Object(body)).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let snap = svc.get_snapshot(&caller, &id).await?;
    let base = base_url(&svc, &headers);
    let c =
        ViewCtx { base: &base, api: api_of(&uri), version, node: &svc.config.node, audience: Audience::of(&caller) };
    Ok(Json(json!({"snapshot": views::snapshot(&c, &snap, SnapshotView::Read)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let snap = svc.update_snapshot(&caller, &id, parse_update(&body)?).await?;
    let base = base_url(&svc, &headers);
    let c =
        ViewCtx { base: &base, api: api_of(&uri), version, node: &svc.config.node, audience: Audience::of(&caller) };
    Ok(Json(json!({"snapshot": views::snapshot(&c, &snap, SnapshotView::Written)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    svc.delete_snapshot(&caller, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
