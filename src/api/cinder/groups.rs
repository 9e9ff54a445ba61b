//! Cinder generic volume group routes (3.13): create, list, detail, show, update (rename,
//! `add_volumes`/`remove_volumes`), `…/action` (`delete`, `reset_status` from 3.20) and
//! `groups/action` (`create-from-src`, 3.14).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::summary::require;
use super::views::{self, Audience, ViewCtx};
use super::CinderError;
use crate::api::common::{
    all_tenants, base_url, caller, opt_bool, opt_string, parse_bool, parse_json, parse_query, query_get, take_object,
};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::service::{CreateGroup, GroupSource, Services, UpdateGroup};

type Res = Result<Response, CinderError>;

/// Groups need 3.13 (`GROUP_VOLUME`).
const MIN: u16 = 13;

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg.into())
}

fn only_keys(o: &Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), Error> {
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Additional properties are not allowed ({k:?} was unexpected)"
        )));
    }
    Ok(())
}

/// The policy action of a `groups/{id}/action` body.
pub(super) fn group_action_policy(body: &[u8]) -> &'static str {
    crate::api::guard::body_action(body, |k| match k {
        "reset_status" => "evs:groups:resetStatus",
        _ => "evs:groups:delete",
    })
}

pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "group", "EVS.5400")?;
    only_keys(&o, &["name", "description", "group_type", "volume_types", "availability_zone"], "group")?;
    let group_type = opt_string(&o, "group_type", "EVS.5400")?
        .ok_or_else(|| bad("Invalid input for field/attribute group. 'group_type' is a required property"))?;
    let volume_types = match o.get("volume_types") {
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(|| bad("volume_types must be a list of strings")))
            .collect::<Result<Vec<_>, _>>()?,
        Some(Value::Array(_)) => {
            return Err(bad("Invalid input for field/attribute volume_types. Value: []. [] is too short").into())
        }
        None => {
            return Err(bad("Invalid input for field/attribute group. 'volume_types' is a required property").into())
        }
        Some(other) => {
            return Err(bad(format!("Invalid input for field/attribute volume_types. Value: {other}.")).into())
        }
    };
    let g = svc
        .create_group(
            &c,
            CreateGroup {
                name: opt_string(&o, "name", "EVS.5400")?,
                description: opt_string(&o, "description", "EVS.5400")?,
                group_type,
                volume_types,
                availability_zone: opt_string(&o, "availability_zone", "EVS.5400")?,
            },
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group": views::group_summary(&g)}))).into_response())
}

async fn list(
    svc: &Services,
    p: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    version: ApiVersion,
    detail: bool,
) -> Res {
    require(version, MIN)?;
    let c = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let groups = page(svc.list_groups(&c, all_tenants(&q)).await?, &q, &["name", "status", "availability_zone"])?;
    let base = base_url(svc, headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    let list_volume = query_get(&q, "list_volume").and_then(parse_bool).unwrap_or(false);
    let mut items = Vec::new();
    for g in &groups {
        if detail {
            let vols = if list_volume { Some(svc.group_volume_ids(&g.id).await?) } else { None };
            items.push(views::group_detail(&ctx, g, vols.as_deref()));
        } else {
            items.push(views::group_summary(g));
        }
    }
    Ok(Json(json!({"groups": items})).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let g = svc.get_group(&c, &id).await?;
    let q = parse_query(uri.query())?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    let list_volume = query_get(&q, "list_volume").and_then(parse_bool).unwrap_or(false);
    let vols = if list_volume { Some(svc.group_volume_ids(&g.id).await?) } else { None };
    Ok(Json(json!({"group": views::group_detail(&ctx, &g, vols.as_deref())})).into_response())
}

/// Cinder's comma-separated volume id lists (`"id1,id2"`, surrounding commas ignored).
fn id_list(o: &Map<String, Value>, key: &str) -> Result<Vec<String>, Error> {
    Ok(opt_string(o, key, "EVS.5400")?
        .map(|s| s.trim_matches(',').split(',').map(|v| v.trim().to_string()).filter(|v| !v.is_empty()).collect())
        .unwrap_or_default())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "group", "EVS.5400")?;
    only_keys(&o, &["name", "description", "add_volumes", "remove_volumes"], "group")?;
    if o.is_empty() {
        return Err(
            bad("Invalid input for field/attribute group. Value: {}. {} does not have enough properties").into()
        );
    }
    let upd = UpdateGroup {
        name: opt_string(&o, "name", "EVS.5400")?,
        description: opt_string(&o, "description", "EVS.5400")?,
        add_volumes: id_list(&o, "add_volumes")?,
        remove_volumes: id_list(&o, "remove_volumes")?,
    };
    svc.update_group(&c, &id, upd).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let (name, args) = super::actions::split_action(&body)?;
    match name.as_str() {
        "delete" => {
            only_keys(&args, &["delete-volumes"], "delete")?;
            let del = match args.get("delete-volumes") {
                Some(Value::String(s)) => {
                    parse_bool(s).ok_or_else(|| bad(format!("Invalid value {s:?} for delete-volumes")))?
                }
                _ => opt_bool(&args, "delete-volumes", "EVS.5400")?.unwrap_or(false),
            };
            svc.delete_group(&c, &id, del).await?;
        }
        "reset_status" => {
            require(version, 20)?;
            only_keys(&args, &["status"], "reset_status")?;
            let status = opt_string(&args, "status", "EVS.5400")?.ok_or_else(|| {
                bad("Invalid input for field/attribute reset_status. 'status' is a required property")
            })?;
            svc.reset_group_status(&c, &id, &status).await?;
        }
        other => return Err(bad(format!("There is no such action: {other}")).into()),
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `POST groups/action` with `{"create-from-src": {…}}` (3.14).
pub(super) async fn create_from_src(
    State(svc): State<Services>,
    Path(p): Path<String>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, 14)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "create-from-src", "EVS.5400")?;
    only_keys(&o, &["name", "description", "group_snapshot_id", "source_group_id"], "create-from-src")?;
    let src = GroupSource {
        group_snapshot_id: opt_string(&o, "group_snapshot_id", "EVS.5400")?,
        source_group_id: opt_string(&o, "source_group_id", "EVS.5400")?,
    };
    if src.group_snapshot_id.is_some() == src.source_group_id.is_some() {
        return Err(bad("Invalid input for field/attribute create-from-src. Exactly one of 'group_snapshot_id' or \
             'source_group_id' is required.")
        .into());
    }
    let g = svc
        .create_group_from_src(&c, opt_string(&o, "name", "EVS.5400")?, opt_string(&o, "description", "EVS.5400")?, src)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group": views::group_summary(&g)}))).into_response())
}

/// What a group or group snapshot list can be filtered and sorted by.
pub(super) trait Listed {
    /// Id (markers and ties).
    fn id(&self) -> &str;
    /// A sort key's or filter's value (`None` = unknown key).
    fn field(&self, key: &str) -> Option<String>;
    /// The keys [`Listed::field`] knows.
    const KEYS: &'static [&'static str];
}

impl Listed for crate::model::Group {
    const KEYS: &'static [&'static str] =
        &["id", "name", "status", "created_at", "availability_zone", "group_type_id", "group_type"];
    fn id(&self) -> &str {
        &self.id
    }
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "id" => self.id.clone(),
            "name" => self.name.clone().unwrap_or_default(),
            "status" => self.status.clone(),
            "created_at" => self.created_at.clone(),
            "availability_zone" => self.availability_zone.clone(),
            "group_type_id" | "group_type" => self.group_type_id.clone(),
            _ => return None,
        })
    }
}

impl Listed for crate::model::GroupSnapshot {
    const KEYS: &'static [&'static str] = &["id", "name", "status", "created_at", "group_id", "group_type_id"];
    fn id(&self) -> &str {
        &self.id
    }
    fn field(&self, key: &str) -> Option<String> {
        Some(match key {
            "id" => self.id.clone(),
            "name" => self.name.clone().unwrap_or_default(),
            "status" => self.status.clone(),
            "created_at" => self.created_at.clone(),
            "group_id" => self.group_id.clone(),
            "group_type_id" => self.group_type_id.clone(),
            _ => return None,
        })
    }
}

/// Cinder's list parameters over an in-memory list: exact filters on `filters` keys, then
/// `sort` (or `sort_key`/`sort_dir`, default `created_at:desc`, ties by id), `marker`,
/// `offset`, `limit`.
pub(super) fn page<T: Listed>(mut items: Vec<T>, q: &[(String, String)], filters: &[&str]) -> Result<Vec<T>, Error> {
    for key in filters {
        if let Some(want) = query_get(q, key) {
            items.retain(|t| t.field(key).as_deref() == Some(want));
        }
    }
    let (key, dir) = match query_get(q, "sort") {
        Some(s) => {
            let first = s.split(',').next().unwrap_or("");
            let (k, d) = first.split_once(':').unwrap_or((first, "desc"));
            (k.trim().to_string(), d.trim().to_ascii_lowercase())
        }
        None => (
            query_get(q, "sort_key").unwrap_or("created_at").to_string(),
            query_get(q, "sort_dir").unwrap_or("desc").to_ascii_lowercase(),
        ),
    };
    if !T::KEYS.contains(&key.as_str()) {
        return Err(bad(format!("Invalid input received: Invalid sort key {key}")));
    }
    let desc = match dir.as_str() {
        "asc" => false,
        "desc" => true,
        other => {
            return Err(bad(format!(
                "Invalid input received: Unknown sort direction, must be 'desc' or 'asc': {other}"
            )))
        }
    };
    items.sort_by(|a, b| {
        let o = a.field(&key).cmp(&b.field(&key)).then_with(|| a.id().cmp(b.id()));
        if desc {
            o.reverse()
        } else {
            o
        }
    });
    let number = |name: &str| -> Result<usize, Error> {
        match query_get(q, name) {
            None => Ok(usize::MAX),
            Some(v) => v.parse::<usize>().map_err(|_| bad(format!("{name} param must be a non-negative integer"))),
        }
    };
    if let Some(m) = query_get(q, "marker") {
        let at = items
            .iter()
            .position(|t| t.id() == m)
            .ok_or_else(|| Error::new(crate::error::ErrorKind::NotFound, format!("Marker {m} could not be found.")))?;
        items.drain(..=at);
    }
    let offset = number("offset")?;
    let offset = if offset == usize::MAX { 0 } else { offset };
    items.drain(..offset.min(items.len()));
    items.truncate(number("limit")?);
    Ok(items)
}
