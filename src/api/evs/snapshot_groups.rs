//! EVS v5 snapshot groups (`/v5/{project}/snapshot-groups…`), as the `huaweicloudsdkevs`
//! models shape them: create (`{"snapshot_group": SnapshotGroup}` → 202 `{job_id,
//! snapshot_group_id}`), show and update (`{"snapshot_group": SnapshotGroupDetail}`), list
//! (`detail`, `limit`/`offset`/`sort_key`/`sort_dir`), count, delete (202 `{job_id}`), tags
//! (`tags/create`, `tags/delete` → 204; project tags `GET …/tags`), and our own `rollback`
//! (202 `{job_ids}`: every member rolled back onto its volume, all or none).
//!
//! Fields we cannot honour are refused, not ignored: `instant_access` and `incremental` are
//! accepted because our snapshots are both (a reflink or thin snapshot is usable at once and
//! shares the unchanged blocks).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::v5_body::{bad, tag_batch_items, tags_filter};
use super::EvsError;
use crate::api::common::{
    caller, opt_bool, opt_string, opt_string_map, parse_json, parse_query, query_get, query_non_negative, take_object,
};
use crate::error::Result;
use crate::model::SnapshotGroup;
use crate::service::{CreateSnapshotGroup, Services, SnapshotGroupFilter};

type Res = std::result::Result<Response, EvsError>;

/// Most groups one list page returns (the SDK's `limit` upper bound).
const MAX_LIMIT: i64 = 1000;

/// `SnapshotGroupDetail`.
fn view(g: &SnapshotGroup) -> Value {
    json!({
        "id": g.id,
        "project_id": g.project_id,
        "created_at": g.created_at,
        "updated_at": g.updated_at,
        "status": g.status,
        "name": g.name.clone().unwrap_or_default(),
        "description": g.description.clone().unwrap_or_default(),
        "enterprise_project_id": g.enterprise_project_id.clone().unwrap_or_else(|| "0".into()),
        "tags": g.tags,
        "server_id": g.server_id,
    })
}

/// Refuse keys the model does not have (a misspelt field would otherwise be ignored).
fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("Invalid {what}: unknown field {k:?}."))),
        None => Ok(()),
    }
}

fn parse_create(body: &[u8]) -> Result<CreateSnapshotGroup> {
    let o = take_object(parse_json(body)?, "snapshot_group", "EVS.5400")?;
    only_keys(
        &o,
        &[
            "server_id",
            "volume_ids",
            "instant_access",
            "name",
            "description",
            "tags",
            "enterprise_project_id",
            "incremental",
        ],
        "snapshot_group",
    )?;
    let volume_ids = match o.get("volume_ids") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("Invalid volume_ids: each id must be a string.")))
            .collect::<Result<_>>()?,
        Some(_) => return Err(bad("Invalid volume_ids: it must be a list of volume ids.")),
    };
    // Both are what our snapshots are anyway; a wrongly typed value is refused.
    opt_bool(&o, "instant_access", "EVS.5400")?;
    opt_bool(&o, "incremental", "EVS.5400")?;
    Ok(CreateSnapshotGroup {
        volume_ids,
        server_id: opt_string(&o, "server_id", "EVS.5400")?,
        name: opt_string(&o, "name", "EVS.5400")?,
        description: opt_string(&o, "description", "EVS.5400")?,
        tags: opt_string_map(&o, "tags", "EVS.5400")?.unwrap_or_default(),
        enterprise_project_id: opt_string(&o, "enterprise_project_id", "EVS.5400")?,
    })
}

fn parse_filter(q: &[(String, String)]) -> Result<SnapshotGroupFilter> {
    let f = SnapshotGroupFilter {
        id: query_get(q, "id").map(str::to_string),
        name: query_get(q, "name").map(str::to_string),
        status: query_get(q, "status").map(str::to_string),
        tag_key: query_get(q, "tag_key").map(str::to_string),
        tags: query_get(q, "tags").map(tags_filter).transpose()?.unwrap_or_default(),
        enterprise_project_id: query_get(q, "enterprise_project_id").map(str::to_string),
        server_id: query_get(q, "server_id").map(str::to_string),
    };
    f.validate()?;
    Ok(f)
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let (g, job) = svc.create_snapshot_group(&c, parse_create(&body)?).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job, "snapshot_group_id": g.id}))).into_response())
}

pub(super) async fn list(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let f = parse_filter(&q)?;
    let limit = query_non_negative(&q, "limit", MAX_LIMIT)?;
    if limit == 0 || limit > MAX_LIMIT {
        return Err(bad(format!("limit must be 1 to {MAX_LIMIT}.")).into());
    }
    let offset = query_non_negative(&q, "offset", 0)?;
    let mut groups = svc.list_snapshot_groups(&c, &f).await?;
    let key = query_get(&q, "sort_key").unwrap_or("created_at");
    let desc = match query_get(&q, "sort_dir").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => return Err(bad(format!("Invalid sort_dir {other:?}: use asc or desc.")).into()),
    };
    let field = |g: &SnapshotGroup| -> String {
        match key {
            "name" => g.name.clone().unwrap_or_default(),
            "status" => g.status.clone(),
            "id" => g.id.clone(),
            _ => g.created_at.clone(),
        }
    };
    if !["created_at", "name", "status", "id"].contains(&key) {
        return Err(bad(format!("Invalid sort_key {key:?}: use created_at, name, status or id.")).into());
    }
    groups.sort_by(|a, b| {
        let o = field(a).cmp(&field(b)).then_with(|| a.id.cmp(&b.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let page: Vec<Value> = groups.iter().skip(offset as usize).take(limit as usize).map(view).collect();
    Ok(Json(json!({"snapshot_groups": page})).into_response())
}

pub(super) async fn count(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let f = parse_filter(&q)?;
    let n = svc.list_snapshot_groups(&c, &f).await?.len();
    Ok(Json(json!({"count": n})).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let g = svc.get_snapshot_group(&c, &id).await?;
    Ok(Json(json!({"snapshot_group": view(&g)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "snapshot_group", "EVS.5400")?;
    only_keys(&o, &["name", "description"], "snapshot_group")?;
    let name = opt_string(&o, "name", "EVS.5400")?;
    let description = opt_string(&o, "description", "EVS.5400")?;
    let g = svc.update_snapshot_group(&c, &id, name, description).await?;
    Ok(Json(json!({"snapshot_group": view(&g)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let job = svc.delete_snapshot_group(&c, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job}))).into_response())
}

pub(super) async fn rollback(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let jobs = svc.rollback_snapshot_group(&c, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_ids": jobs}))).into_response())
}

pub(super) async fn tags_create(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let add = tag_batch_items(&body, true)?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    svc.change_snapshot_group_tags(&c, &id, add, Vec::new()).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn tags_delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let remove = tag_batch_items(&body, false)?.into_iter().map(|(k, v)| (k, v.filter(|v| !v.is_empty()))).collect();
    svc.change_snapshot_group_tags(&c, &id, Vec::new(), remove).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn project_tags(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let tags: BTreeMap<String, Vec<String>> = svc.snapshot_group_project_tags(&c).await?;
    let list: Vec<Value> = tags.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(Json(json!({"tags": list})).into_response())
}
