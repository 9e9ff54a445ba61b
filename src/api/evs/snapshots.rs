//! EVS snapshot routes the SDK uses (`cloudsnapshots`), rollback (also under
//! `os-vendor-snapshots`), and the disk `action` route (`os-extend` returning a job).
//!
//! Bodies follow the Cinder snapshot shape (the SDK's `SnapshotDetails`), errors the EVS format.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::EvsError;
use crate::api::cinder::snapshots::{parse_create, parse_update};
use crate::api::cinder::{actions, views_shared};
use crate::api::common::{base_url, caller, next_link, opt_string, parse_json, parse_query, query_get, take_object};
use crate::api::snapshot_query::list_request;
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::Snapshot;
use crate::service::{Services, UpdateVolume};

type Res = Result<Response, EvsError>;

fn view(base: &str, s: &Snapshot) -> Value {
    let ctx = views_shared::ViewCtx {
        base,
        api: "v2",
        version: ApiVersion(0),
        node: "",
        audience: views_shared::Audience::ADMIN,
    };
    let mut v = views_shared::snapshot(&ctx, s, views_shared::SnapshotView::Read);
    if let Some(o) = v.as_object_mut() {
        o.insert("service_type".into(), json!("EVS"));
        o.insert("dedicated_storage_id".into(), Value::Null);
        o.insert("dedicated_storage_name".into(), Value::Null);
    }
    v
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let snap = svc.create_snapshot(&c, parse_create(&body)?).await?;
    let base = base_url(&svc, &headers);
    Ok((StatusCode::ACCEPTED, Json(json!({"snapshot": view(&base, &snap)}))).into_response())
}

/// evs: the SDK's `ListSnapshotsRequest` filters beyond Cinder's: `id` repeated
/// (`id=a&id=b`), `service_type` (every snapshot here is EVS's), `enterprise_project_id`
/// (`all_granted_eps` = all) and the dedicated storage of the snapshot's disk.
fn evs_snapshot_filters(f: &mut crate::store::SnapshotFilter, q: &[(String, String)]) {
    let ids: Vec<String> = q.iter().filter(|(k, _)| k == "id").map(|(_, v)| v.clone()).collect();
    if !ids.is_empty() {
        f.ids = Some(ids);
    }
    if query_get(q, "service_type").is_some_and(|s| s != "EVS") {
        f.ids = Some(Vec::new());
    }
    f.enterprise_project_id =
        query_get(q, "enterprise_project_id").filter(|e| *e != "all_granted_eps").map(str::to_string);
    f.dedicated_storage_id = query_get(q, "dedicated_storage_id").map(str::to_string);
    f.dedicated_storage_name = query_get(q, "dedicated_storage_name").map(str::to_string);
}

pub(super) async fn list(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let (mut req, limit) = list_request(&c, &q)?;
    evs_snapshot_filters(&mut req.filter, &q);
    let count = svc.count_snapshots(&req.filter).await?;
    let mut snaps = svc.list_snapshots(&req).await?;
    let more = snaps.len() as i64 > limit;
    snaps.truncate(limit as usize);
    let base = base_url(&svc, &headers);
    let mut body = Map::new();
    body.insert("count".into(), json!(count));
    body.insert("snapshots".into(), Value::Array(snaps.iter().map(|s| view(&base, s)).collect()));
    if let (true, Some(last)) = (more, snaps.last()) {
        body.insert("snapshots_links".into(), next_link(&base, uri.path(), &q, limit, &last.id));
    }
    Ok(Json(Value::Object(body)).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let snap = svc.get_snapshot(&c, &id).await?;
    Ok(Json(json!({"snapshot": view(&base_url(&svc, &headers), &snap)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let snap = svc.update_snapshot(&c, &id, parse_update(&body)?).await?;
    Ok(Json(json!({"snapshot": view(&base_url(&svc, &headers), &snap)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.delete_snapshot(&c, &id).await?;
    // Reference 7.3.2: 202.
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `{"rollback": {"volume_id", "name"?}}` → 202 `{"rollback": {"volume_id"}}`; `name` renames
/// the disk (reference 6.2.1).
pub(super) async fn rollback(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "rollback", "EVS.5400")?;
    let volume_id = opt_string(&o, "volume_id", "EVS.1002")?
        .ok_or_else(|| Error::invalid("EVS.1002", "invalid volume id! 'volume_id' is required"))?;
    let name = opt_string(&o, "name", "EVS.1003")?;
    if name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(Error::invalid("EVS.1003", "invalid volume name! at most 255 bytes").into());
    }
    let (_job, vid) = svc.rollback_snapshot(&c, &id, Some(&volume_id)).await?;
    if let Some(n) = name {
        svc.update_volume(&c, &vid, UpdateVolume { name: Some(Some(n)), ..Default::default() }).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"rollback": {"volume_id": vid}}))).into_response())
}

/// `POST /cloudvolumes/{id}/action` with `os-extend` → `{"job_id", "order_id": null}`.
pub(super) async fn volume_action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    // evs: the SDK's `ResizeVolumeRequestBody` sends `bssParam` beside `os-extend` (billing
    // only; see `body.rs`): checked, then the one action is what remains.
    let mut whole = crate::api::common::parse_json(&body)?;
    let bss = whole.as_object_mut().and_then(|o| o.remove("bssParam"));
    if let Some(b) = &bss {
        super::body::check_bss_resize(b)?;
    }
    let rest = if bss.is_some() {
        serde_json::to_vec(&whole).map_err(|e| Error::internal(e.to_string()))?
    } else {
        body.to_vec()
    };
    let (action, args) = actions::split_action(&rest)?;
    match action.as_str() {
        "os-extend" => {
            let job_id = svc.extend_volume(&c, &id, actions::new_size_truncated(&args)?, true).await?;
            Ok(Json(json!({"job_id": job_id, "order_id": null})).into_response())
        }
        other => Err(Error::invalid("EVS.5400", format!("There is no such action: {other}")).into()),
    }
}
