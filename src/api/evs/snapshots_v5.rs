//! EVS v5 standard snapshots and snapshot chains (issue 11 B.4), as views over our snapshots:
//! `POST /v5/{p}/snapshots` (202 `{job_id, snapshot_id}`), `GET …/detail` and `…/count` with
//! the SDK's filters, `GET/PUT/DELETE …/{id}`, `POST …/{id}/rollback` (202 `{job_id}`), tags
//! (`…/{id}/tags/create|delete` → 204, `GET …/snapshots/tags`), and `GET /v5/{p}/snapshot-chains`
//! (+ `/count`).
//!
//! Mapping: every snapshot is `category` `standard`, `snapshot_type` `user`, `incremental` and
//! `instant_access` true (a reflink or thin snapshot shares unchanged blocks and is usable at
//! once). A volume's snapshots form one chain whose id is the volume's id. Fields we cannot
//! honour are refused: `retention_days` (no expiry of single snapshots), an
//! `enterprise_project_id` other than `0`, `instant_access: false` on update.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::v5_body::{bad, tag_batch_items};
use super::EvsError;
use crate::api::common::{
    caller, opt_bool, opt_string, opt_string_map, parse_json, parse_query, query_get, take_object,
};
use crate::api::snapshot_query::list_request;
use crate::error::{Error, Result};
use crate::model::{JobKind, Snapshot};
use crate::service::{Caller, CreateSnapshot, Services, TagChange, UpdateSnapshot};
use crate::store::{SnapshotFilter, TagResource};

type Res = std::result::Result<Response, EvsError>;

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<()> {
    match o.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(bad(format!("Invalid {what}: unknown field {k:?}."))),
        None => Ok(()),
    }
}

/// `enterprise_project_id`: only the default one (`0`) exists here.
fn check_eps(v: Option<&str>) -> Result<()> {
    match v {
        None | Some("0") => Ok(()),
        Some(other) => Err(bad(format!("Invalid enterprise_project_id {other:?}: only the default project 0 exists."))),
    }
}

/// `SnapshotDetailV5`.
async fn view(svc: &Services, s: &Snapshot) -> Result<Value> {
    let vol = svc.db.get_volume(None, &s.volume_id).await?;
    let encrypted = vol.as_ref().is_some_and(|v| v.encrypted);
    let az = vol.map(|v| v.availability_zone);
    Ok(json!({
        "id": s.id,
        "name": s.name.clone().unwrap_or_default(),
        "description": s.description.clone().unwrap_or_default(),
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "volume_id": s.volume_id,
        "size": s.size_gb,
        "status": s.status.as_str(),
        "project_id": s.project_id,
        "enterprise_project_id": "0",
        "encrypted": encrypted,
        "cmk_id": null,
        "category": "standard",
        "availability_zone": az,
        "tags": s.tags,
        "instant_access": true,
        "retention_at": null,
        "instant_access_retention_at": null,
        "incremental": true,
        "snapshot_type": "user",
        "progress": s.progress.clone().unwrap_or_else(|| if s.status.as_str() == "available" { "100%".into() } else { "0%".into() }),
        "encrypt_algorithm": null,
        "snapshot_chains": [{"id": s.volume_id, "volume_id": s.volume_id, "category": "standard"}],
        "snapshot_group_id": s.group_snapshot_id,
    }))
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "snapshot", "EVS.5400")?;
    only_keys(
        &o,
        &[
            "volume_id",
            "name",
            "description",
            "tags",
            "enterprise_project_id",
            "instant_access",
            "incremental",
            "retention_days",
        ],
        "snapshot",
    )?;
    let volume_id =
        opt_string(&o, "volume_id", "EVS.5400")?.ok_or_else(|| bad("Invalid snapshot: volume_id is required."))?;
    check_eps(opt_string(&o, "enterprise_project_id", "EVS.5400")?.as_deref())?;
    opt_bool(&o, "instant_access", "EVS.5400")?;
    opt_bool(&o, "incremental", "EVS.5400")?;
    if o.get("retention_days").is_some_and(|v| !v.is_null()) {
        return Err(bad("Invalid snapshot: retention_days is not supported (snapshots are kept until deleted).").into());
    }
    let tags: Vec<(String, String)> = opt_string_map(&o, "tags", "EVS.5400")?.unwrap_or_default().into_iter().collect();
    if tags.len() > crate::service::MAX_TAGS {
        return Err(bad(format!("A snapshot may have at most {} tags.", crate::service::MAX_TAGS)).into());
    }
    for (k, v) in &tags {
        crate::service::validate_tag_pair(k, v)?;
    }
    let req = CreateSnapshot {
        volume_id,
        // EVS v5 snapshots of attached disks are allowed (crash-consistent, like `force`).
        force: true,
        name: opt_string(&o, "name", "EVS.5400")?,
        description: opt_string(&o, "description", "EVS.5400")?,
        metadata: BTreeMap::new(),
        manage: None,
    };
    let snap = svc.create_snapshot(&c, req).await?;
    if !tags.is_empty() {
        // Validated above, so this cannot be refused; only a database failure can stop it.
        svc.change_tags(&c, TagResource::Snapshots, &snap.id, TagChange::Upsert(tags)).await?;
    }
    let job = svc.db.latest_job_of_snapshot(&snap.id, JobKind::CreateSnapshot.as_str()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job, "snapshot_id": snap.id}))).into_response())
}

/// The snapshots matching the v5 filters: one page (`limit`, `offset`, `marker`), or with
/// `page: false` all of them (for `count`).
async fn select(svc: &Services, c: &Caller, q: &[(String, String)], page: bool) -> Result<Vec<Snapshot>> {
    // Filters our store has come through the Cinder parser (volume_id, name, status, id,
    // limit, offset, marker, sort); a chain is a volume.
    let mut q2: Vec<(String, String)> = q.iter().filter(|(k, _)| k != "snapshot_chain_id").cloned().collect();
    if let Some(chain) = query_get(q, "snapshot_chain_id") {
        q2.push(("volume_id".into(), chain.to_string()));
    }
    if query_get(q, "limit") == Some("0") {
        return Err(bad("limit must be 1 to 1000."));
    }
    let (mut req, limit) = list_request(c, &q2)?;
    check_eps(query_get(q, "enterprise_project_id"))?;
    match query_get(q, "snapshot_type") {
        None | Some("user") => {}
        Some("auto" | "copy") => return Ok(Vec::new()),
        Some(other) => return Err(bad(format!("Invalid snapshot_type {other:?}: use auto, user or copy."))),
    }
    // Filters it has not (ids, group, tags, zone) narrow the id set first.
    let tag_filter = match query_get(q, "tags") {
        None => Vec::new(),
        Some(t) => {
            let v: Value = serde_json::from_str(t)
                .map_err(|_| bad("Invalid tags filter: expected JSON [{\"key\", \"value\"}]."))?;
            let items = match v {
                Value::Array(a) => a,
                o @ Value::Object(_) => vec![o],
                _ => return Err(bad("Invalid tags filter: expected JSON [{\"key\", \"value\"}].")),
            };
            items
                .iter()
                .map(|t| match (t.get("key").and_then(Value::as_str), t.get("value").and_then(Value::as_str)) {
                    (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
                    _ => Err(bad("Invalid tags filter: each item needs a string key and value.")),
                })
                .collect::<Result<Vec<_>>>()?
        }
    };
    let ids_param: Option<Vec<String>> = query_get(q, "ids").map(|s| {
        let t = s.trim().trim_start_matches('[').trim_end_matches(']');
        t.split(',').map(|x| x.trim().trim_matches('"').to_string()).filter(|x| !x.is_empty()).collect()
    });
    let group = query_get(q, "snapshot_group_id");
    let tag_key = query_get(q, "tag_key");
    let zone = query_get(q, "availability_zone");
    if ids_param.is_some() || group.is_some() || tag_key.is_some() || !tag_filter.is_empty() || zone.is_some() {
        let all_req = crate::store::ListSnapshots {
            filter: SnapshotFilter { ..req.filter.clone() },
            sort_key: req.sort_key,
            sort_dir: req.sort_dir,
            limit: None,
            offset: 0,
            marker: None,
        };
        let members: Option<Vec<String>> = match group {
            Some(g) => Some(svc.db.group_snapshot_member_ids(g).await?),
            None => None,
        };
        let mut keep = Vec::new();
        for s in svc.list_snapshots(&all_req).await? {
            let ok = ids_param.as_ref().is_none_or(|ids| ids.contains(&s.id))
                && members.as_ref().is_none_or(|m| m.contains(&s.id))
                && tag_key.is_none_or(|k| s.tags.contains_key(k))
                && tag_filter.iter().all(|(k, v)| s.tags.get(k) == Some(v));
            let ok = ok
                && match zone {
                    None => true,
                    Some(z) => svc.db.get_volume(None, &s.volume_id).await?.is_some_and(|v| v.availability_zone == z),
                };
            if ok {
                keep.push(s.id);
            }
        }
        let ids = match req.filter.ids.take() {
            Some(one) => keep.into_iter().filter(|k| one.contains(k)).collect(),
            None => keep,
        };
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        req.filter.ids = Some(ids);
    }
    if !page {
        req.limit = None;
        req.offset = 0;
        req.marker = None;
    }
    let mut snaps = svc.list_snapshots(&req).await?;
    if page {
        snaps.truncate(limit as usize);
    }
    Ok(snaps)
}

pub(super) async fn list(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let snaps = select(&svc, &c, &q, true).await?;
    let mut out = Vec::with_capacity(snaps.len());
    for s in &snaps {
        out.push(view(&svc, s).await?);
    }
    Ok(Json(json!({"snapshots": out})).into_response())
}

pub(super) async fn count(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let n = select(&svc, &c, &q, false).await?.len();
    Ok(Json(json!({"count": n})).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let s = svc.get_snapshot(&c, &id).await?;
    Ok(Json(json!({"snapshot": view(&svc, &s).await?})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "snapshot", "EVS.5400")?;
    only_keys(&o, &["name", "description", "instant_access"], "snapshot")?;
    if opt_bool(&o, "instant_access", "EVS.5400")? == Some(false) {
        return Err(
            bad("Invalid snapshot: instant_access cannot be turned off (every snapshot is usable at once).").into()
        );
    }
    let name = opt_string(&o, "name", "EVS.5400")?;
    let description = opt_string(&o, "description", "EVS.5400")?;
    if name.is_none() && description.is_none() && o.get("instant_access").is_none() {
        return Err(bad("Invalid snapshot: give name, description or instant_access.").into());
    }
    let upd = UpdateSnapshot { name: name.map(Some), description: description.map(Some) };
    let s = svc.update_snapshot(&c, &id, upd).await?;
    Ok(Json(json!({"snapshot": view(&svc, &s).await?})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let job = svc.delete_snapshot(&c, &id).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job}))).into_response())
}

pub(super) async fn rollback(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "rollback", "EVS.5400")?;
    only_keys(&o, &["volume_id", "name"], "rollback")?;
    let volume_id = opt_string(&o, "volume_id", "EVS.5400")?;
    let name = opt_string(&o, "name", "EVS.5400")?;
    if name.as_ref().is_some_and(|n| n.len() > 255) {
        return Err(bad("Invalid rollback: name must be at most 255 bytes.").into());
    }
    let (job, vid) = svc.rollback_snapshot(&c, &id, volume_id.as_deref()).await?;
    if let Some(n) = name {
        svc.update_volume(&c, &vid, crate::service::UpdateVolume { name: Some(Some(n)), ..Default::default() }).await?;
    }
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job}))).into_response())
}

pub(super) async fn tags_create(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let add = tag_batch_items(&body, true)?.into_iter().map(|(k, v)| (k, v.unwrap_or_default())).collect();
    svc.change_tags(&c, TagResource::Snapshots, &id, TagChange::Upsert(add)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn tags_delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let del = tag_batch_items(&body, false)?;
    svc.change_tags(&c, TagResource::Snapshots, &id, TagChange::Delete(del)).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn project_tags(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let tags = svc.project_tags(&c, TagResource::Snapshots).await?;
    let list: Vec<Value> = tags.into_iter().map(|(k, v)| json!({"key": k, "value": v})).collect();
    Ok(Json(json!({"tags": list})).into_response())
}

/// The chains (one per volume with snapshots) matching `volume_id`, `id`, `category`,
/// `availability_zone`, oldest first.
async fn chains(svc: &Services, c: &Caller, q: &[(String, String)]) -> Result<Vec<Value>> {
    match query_get(q, "category") {
        None | Some("standard") => {}
        Some("flash") => return Ok(Vec::new()),
        Some(other) => return Err(bad(format!("Invalid category {other:?}: use standard or flash."))),
    }
    let mut q2: Vec<(String, String)> =
        vec![("sort_key".into(), "created_at".into()), ("sort_dir".into(), "asc".into())];
    for key in ["volume_id", "id"] {
        if let Some(v) = query_get(q, key) {
            q2.push(("volume_id".into(), v.to_string()));
        }
    }
    let (mut req, _) = list_request(c, &q2)?;
    req.limit = None;
    let mut by_volume: BTreeMap<String, (i64, i64, String, Option<String>)> = BTreeMap::new();
    let mut order = Vec::new();
    for s in svc.list_snapshots(&req).await? {
        let e = by_volume.entry(s.volume_id.clone()).or_insert_with(|| {
            order.push(s.volume_id.clone());
            (0, 0, s.created_at.clone(), None)
        });
        e.0 += 1;
        e.1 += s.size_gb;
        e.3 = Some(s.created_at.clone());
    }
    let mut out = Vec::new();
    for vid in order {
        let (n, gb, first, last) = by_volume.remove(&vid).unwrap_or_default();
        let az = svc.db.get_volume(None, &vid).await?.map(|v| v.availability_zone);
        if let Some(z) = query_get(q, "availability_zone") {
            if az.as_deref() != Some(z) {
                continue;
            }
        }
        out.push(json!({
            "id": vid, "availability_zone": az, "snapshot_count": n, "capacity": gb as f64,
            "project_id": c.project_id, "volume_id": vid, "category": "standard",
            "created_at": first, "updated_at": last,
        }));
    }
    Ok(out)
}

pub(super) async fn list_chains(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let mut all = chains(&svc, &c, &q).await?;
    if let Some(m) = query_get(&q, "marker") {
        match all.iter().position(|x| x["id"] == m) {
            Some(i) => {
                all.drain(..=i);
            }
            None => return Err(Error::not_found(format!("Marker {m} could not be found.")).into()),
        }
    }
    let limit = match query_get(&q, "limit") {
        None => 1000,
        Some(l) => {
            l.parse::<usize>().ok().filter(|n| (1..=1000).contains(n)).ok_or_else(|| bad("limit must be 1 to 1000."))?
        }
    };
    all.truncate(limit);
    Ok(Json(json!({"snapshot_chains": all})).into_response())
}

pub(super) async fn count_chains(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    Ok(Json(json!({"count": chains(&svc, &c, &q).await?.len()})).into_response())
}
