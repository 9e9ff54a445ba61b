//! EVS v5 auto-snapshot policies (`/v5/{project}/snapshot-policies…`), as the SDK models them:
//! create (`{"snapshot_policy": CreateSnapshotPolicy}` → `{"snapshot_policy": GetSnapshotPolicy}`),
//! list (filters `id`, `name`, `tag_key`, `tags`, `enterprise_project_id`; `limit`, `offset`,
//! `sort_key`, `sort_dir`), count, show, update, delete (204), associate and disassociate (a
//! JSON list of volume ids → 204). `GetSnapshotPolicy` also carries `volume_ids`, the volumes the
//! policy covers (an addition the SDK ignores).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::v5_body::{bad, tags_filter};
use super::EvsError;
use crate::api::common::{
    caller, opt_int, opt_string, opt_string_map, parse_json, parse_query, query_get, query_non_negative, take_object,
};
use crate::error::Result;
use crate::model::SnapshotPolicy;
use crate::service::{Caller, PolicyChange, Services};

type Res = std::result::Result<Response, EvsError>;

async fn view(svc: &Services, p: &SnapshotPolicy) -> Result<Value> {
    Ok(json!({
        "id": p.id,
        "name": p.name,
        "repeat_weekdays": p.repeat_weekdays.iter().map(u32::to_string).collect::<Vec<_>>(),
        "repeat_interval_days": p.repeat_interval_days,
        "time_points": p.time_points.iter().map(u32::to_string).collect::<Vec<_>>(),
        "retention_days": p.retention_days,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
        "tags": p.tags,
        "enterprise_project_id": p.enterprise_project_id.clone().unwrap_or_else(|| "0".into()),
        "volume_ids": svc.snapshot_policy_volumes(&p.id).await?,
    }))
}

/// A list of strings (`repeat_weekdays`, `time_points`); numbers are accepted as their text.
fn opt_list(o: &Map<String, Value>, key: &str) -> Result<Option<Vec<String>>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(bad(format!("Invalid {key}: {other} is not a string."))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        Some(_) => Err(bad(format!("Invalid {key}: it must be a list."))),
    }
}

fn parse_change(body: &[u8], create: bool) -> Result<PolicyChange> {
    let o = take_object(parse_json(body)?, "snapshot_policy", "EVS.5400")?;
    let mut allowed = vec!["name", "repeat_weekdays", "repeat_interval_days", "time_points", "retention_days"];
    if create {
        allowed.extend(["tags", "enterprise_project_id"]);
    }
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("Invalid snapshot_policy: unknown field {k:?}.")));
    }
    Ok(PolicyChange {
        name: opt_string(&o, "name", "EVS.5400")?,
        repeat_weekdays: opt_list(&o, "repeat_weekdays")?,
        repeat_interval_days: opt_int(&o, "repeat_interval_days", "EVS.5400")?,
        time_points: opt_list(&o, "time_points")?,
        retention_days: opt_int(&o, "retention_days", "EVS.5400")?,
        tags: opt_string_map(&o, "tags", "EVS.5400")?.unwrap_or_default(),
        enterprise_project_id: opt_string(&o, "enterprise_project_id", "EVS.5400")?,
    })
}

/// The caller's policies matching the query's filters.
async fn filtered(svc: &Services, c: &Caller, q: &[(String, String)]) -> Result<Vec<SnapshotPolicy>> {
    let tags = query_get(q, "tags").map(tags_filter).transpose()?.unwrap_or_default();
    let eq = |key: &str, have: &str| query_get(q, key).is_none_or(|w| w == have);
    Ok(svc
        .list_snapshot_policies(c)
        .await?
        .into_iter()
        .filter(|p| {
            eq("id", &p.id)
                && eq("name", &p.name)
                && eq("enterprise_project_id", p.enterprise_project_id.as_deref().unwrap_or("0"))
                && query_get(q, "tag_key").is_none_or(|k| p.tags.contains_key(k))
                && tags.iter().all(|(k, v)| p.tags.get(k) == Some(v))
        })
        .collect())
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let pol = svc.create_snapshot_policy(&c, parse_change(&body, true)?).await?;
    Ok(Json(json!({"snapshot_policy": view(&svc, &pol).await?})).into_response())
}

pub(super) async fn list(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let mut all = filtered(&svc, &c, &q).await?;
    let limit = query_non_negative(&q, "limit", 1000)?;
    if limit == 0 || limit > 1000 {
        return Err(bad("limit must be 1 to 1000.").into());
    }
    let offset = query_non_negative(&q, "offset", 0)?;
    let key = query_get(&q, "sort_key").unwrap_or("created_at");
    if !["created_at", "name", "id"].contains(&key) {
        return Err(bad(format!("Invalid sort_key {key:?}: use created_at, name or id.")).into());
    }
    let desc = match query_get(&q, "sort_dir").unwrap_or("desc") {
        "desc" => true,
        "asc" => false,
        other => return Err(bad(format!("Invalid sort_dir {other:?}: use asc or desc.")).into()),
    };
    let field = |p: &SnapshotPolicy| match key {
        "name" => p.name.clone(),
        "id" => p.id.clone(),
        _ => p.created_at.clone(),
    };
    all.sort_by(|a, b| {
        let o = field(a).cmp(&field(b)).then_with(|| a.id.cmp(&b.id));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let mut out = Vec::new();
    for pol in all.iter().skip(offset as usize).take(limit as usize) {
        out.push(view(&svc, pol).await?);
    }
    Ok(Json(json!({"snapshot_policies": out})).into_response())
}

pub(super) async fn count(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    Ok(Json(json!({"count": filtered(&svc, &c, &q).await?.len()})).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let pol = svc.get_snapshot_policy(&c, &id).await?;
    Ok(Json(json!({"snapshot_policy": view(&svc, &pol).await?})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let pol = svc.update_snapshot_policy(&c, &id, parse_change(&body, false)?).await?;
    Ok(Json(json!({"snapshot_policy": view(&svc, &pol).await?})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.delete_snapshot_policy(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn volume_list(body: &[u8]) -> Result<Vec<String>> {
    match parse_json(body)? {
        Value::Array(a) => a
            .iter()
            .map(|v| {
                v.as_str().map(str::to_string).ok_or_else(|| bad("Invalid request: each volume id must be a string."))
            })
            .collect(),
        _ => Err(bad("Invalid request: the body must be a JSON list of volume ids.")),
    }
}

pub(super) async fn associate(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.change_policy_volumes(&c, &id, &volume_list(&body)?, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn disassociate(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.change_policy_volumes(&c, &id, &volume_list(&body)?, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
