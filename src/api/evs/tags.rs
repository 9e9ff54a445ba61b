//! EVS tags (reference 6.3 and the `os-vendor-tags` family listed in 9.6), for volumes and
//! snapshots; `backups` (which this node has none of) answers empty lists.
//!
//! Current routes (6.3), also under `/os-vendor-volumes` (9.6):
//! * `GET  /cloudvolumes/tags` → `{"tags": {key: [values]}}` of the project's disks;
//! * `GET  /cloudvolumes/{id}/tags` → `{"tags": [{"key", "value"}]}` (the list the SDK expects);
//! * `POST /cloudvolumes/{id}/tags/action` `{"action": "create"|"delete", "tags": [...]}` → 204;
//!   `create` upserts, `delete` removes keys (a non-empty `value` must match; unknown keys are
//!   ignored);
//! * `POST /cloudvolumes/resource_instances/action` `{"action": "filter"|"count", "tags":
//!   [{"key", "values"}], "matches": [{"key": "resource_name"|"service_type", "value"}],
//!   "limit", "offset"}` → `{"resources": [...], "total_count"}` or `{"total_count"}`.
//!
//! Deprecated `os-vendor-tags/{resource_type}` routes (bodies as in Huawei's "Tag Management"
//! chapter, which the reference's 9.6 only lists): `GET /` → all keys and values;
//! `GET /resource_instances?tags=&tags_any=&not_tags=&not_tags_any=` (Python-dict or JSON
//! `{'key': ['v1', 'v2']}`); `GET|POST|PUT /{id}` with `{"tags": {k: v}}` (get, add/update,
//! reset all; 200 with the resulting tags); `POST /{id}/action` `{"os-delete_tags": {k: v}}` →
//! 204; `GET|PUT|DELETE /{id}/{key}` with `{"tag": {k: v}}` (DELETE → 204). Deletes answer 204
//! as `ENDPOINTS.md` lists (Huawei's page says 200 with no body).
//!
//! Rules (service::tags): keys 1–36 characters of `A-Za-z0-9-_` and U+4E00–U+9FFF, values 0–43
//! of the same plus `.`, at most 10 tags per resource, filters at most 10 keys of at most 10
//! values. Violations are `EVS.5400` and change nothing; an unknown resource is `EVS.5404`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::{json, Map, Value};

use super::views;
use super::EvsError;
use crate::api::common::{base_url, caller, opt_int, opt_string_map, parse_json, parse_query, query_get};
use crate::api::guard::{delete_as, get_as, json_field, post_as, put_as, Act};
use crate::error::{Error, Result};
use crate::model::Snapshot;
use crate::service::{Services, TagChange, TaggedResource};
use crate::store::{TagMatch, TagQuery, TagResource};

type Res = std::result::Result<Response, EvsError>;

/// Largest and default page of a tag query.
const MAX_LIMIT: i64 = 1000;

/// Register the tag routes under `/v2` and `/v3`.
pub(super) fn routes(mut r: Router<Services>) -> Router<Services> {
    for pre in ["/v2", "/v3"] {
        for disks in ["cloudvolumes", "os-vendor-volumes"] {
            r = r
                .route(&format!("{pre}/{{p}}/{disks}/{{id}}/tags"), get_as("evs:volumeTags:getById", volume_tags))
                .route(
                    &format!("{pre}/{{p}}/{disks}/{{id}}/tags/action"),
                    post_as(Act::Body(tags_action_policy), volume_tags_action),
                )
                .route(
                    &format!("{pre}/{{p}}/{disks}/resource_instances/action"),
                    post_as("evs:volumeTags:get", resource_instances_action),
                );
        }
        let vt = format!("{pre}/{{p}}/os-vendor-tags/{{rt}}");
        // The deprecated routes name the resource type in the path; so does their action.
        let list = Act::Path(|p| vendor_tag_action(p, "list"));
        let get = Act::Path(|p| vendor_tag_action(p, "get"));
        let by_id = Act::Path(|p| vendor_tag_action(p, "getById"));
        let create = Act::Path(|p| vendor_tag_action(p, "create"));
        let update = Act::Path(|p| vendor_tag_action(p, "update"));
        let delete = Act::Path(|p| vendor_tag_action(p, "delete"));
        r = r
            .route(&format!("{pre}/{{p}}/cloudvolumes/tags"), get_as("evs:volumeTags:list", volume_project_tags))
            .route(&vt, get_as(list, vendor_project_tags))
            .route(&format!("{vt}/resource_instances"), get_as(get, vendor_resource_instances))
            .route(
                &format!("{vt}/{{rid}}"),
                get_as(by_id, vendor_get).merge(post_as(create, vendor_add)).merge(put_as(update, vendor_reset)),
            )
            // A tag whose key is `action` is reached through this route too.
            .route(
                &format!("{vt}/{{rid}}/action"),
                post_as(delete, vendor_batch_delete)
                    .merge(get_as(by_id, vendor_action_key_get))
                    .merge(put_as(update, vendor_action_key_put))
                    .merge(delete_as(delete, vendor_action_key_delete)),
            )
            .route(
                &format!("{vt}/{{rid}}/{{key}}"),
                get_as(by_id, vendor_key_get)
                    .merge(put_as(update, vendor_key_put))
                    .merge(delete_as(delete, vendor_key_delete)),
            );
    }
    r
}

/// `POST …/tags/action`: `{"action": "delete"}` deletes, anything else creates.
fn tags_action_policy(body: &[u8]) -> &'static str {
    match json_field(body, "action").as_deref() {
        Some("delete") => "evs:volumeTags:delete",
        _ => "evs:volumeTags:create",
    }
}

/// The action of a deprecated `os-vendor-tags/{resource_type}/…` route: the resource type
/// (the path segment after `os-vendor-tags`) picks the action family.
fn vendor_tag_action(path: &str, what: &str) -> &'static str {
    let kind = path.split('/').skip_while(|s| *s != "os-vendor-tags").nth(1).unwrap_or("");
    match (kind, what) {
        ("snapshots", "list") => "evs:snapshotTags:list",
        ("snapshots", "get") => "evs:snapshotTags:get",
        ("snapshots", "getById") => "evs:snapshotTags:getById",
        ("snapshots", "create") => "evs:snapshotTags:create",
        ("snapshots", "update") => "evs:snapshotTags:update",
        ("snapshots", _) => "evs:snapshotTags:delete",
        ("backups", "list") => "evs:backupTags:list",
        ("backups", "get") => "evs:backupTags:get",
        ("backups", "getById") => "evs:backupTags:getById",
        ("backups", "create") => "evs:backupTags:create",
        ("backups", "update") => "evs:backupTags:update",
        ("backups", _) => "evs:backupTags:delete",
        (_, "list") => "evs:volumeTags:list",
        (_, "get") => "evs:volumeTags:get",
        (_, "getById") => "evs:volumeTags:getById",
        (_, "create") => "evs:volumeTags:create",
        (_, "update") => "evs:volumeTags:update",
        _ => "evs:volumeTags:delete",
    }
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg)
}

/// `{"key", "value"}` objects, sorted by key.
fn tag_list(tags: &BTreeMap<String, String>) -> Value {
    Value::Array(tags.iter().map(|(k, v)| json!({"key": k, "value": v})).collect())
}

/// The body as a JSON object.
fn body_object(body: &[u8]) -> Result<Map<String, Value>> {
    match parse_json(body)? {
        Value::Object(o) => Ok(o),
        _ => Err(bad("Malformed request body: expected a JSON object.")),
    }
}

/// A required string field of an object.
fn req_string(o: &Map<String, Value>, key: &str, what: &str) -> Result<String> {
    match o.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        None | Some(Value::Null) => Err(bad(format!("Invalid {what}: '{key}' is required."))),
        Some(other) => Err(bad(format!("Invalid {what}: '{key}' must be a string, got {other}."))),
    }
}

/// A required array field of an object.
fn req_array<'a>(o: &'a Map<String, Value>, key: &str) -> Result<&'a Vec<Value>> {
    match o.get(key) {
        Some(Value::Array(a)) => Ok(a),
        None | Some(Value::Null) => Err(bad(format!("Invalid request: '{key}' is required."))),
        Some(other) => Err(bad(format!("Invalid request: '{key}' must be a list, got {other}."))),
    }
}

fn as_object<'a>(v: &'a Value, what: &str) -> Result<&'a Map<String, Value>> {
    v.as_object().ok_or_else(|| bad(format!("Invalid {what}: each item must be an object, got {v}.")))
}

/// `limit` (1–1000, default 1000) and `offset` (≥ 0, default 0), as numbers or digit strings.
fn page_of(o: &Map<String, Value>) -> Result<(i64, i64)> {
    let limit = opt_int(o, "limit", "EVS.5400")?.unwrap_or(MAX_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(bad(format!("Invalid limit {limit}: it must be 1 to {MAX_LIMIT}.")));
    }
    let offset = opt_int(o, "offset", "EVS.5400")?.unwrap_or(0);
    if offset < 0 {
        return Err(bad(format!("Invalid offset {offset}: it must be 0 or more.")));
    }
    Ok((limit, offset))
}

// ---- 6.3: disks ----

pub(super) async fn volume_project_tags(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let tags = svc.project_tags(&c, TagResource::Volumes).await?;
    Ok(Json(json!({"tags": tags})).into_response())
}

pub(super) async fn volume_tags(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let tags = svc.resource_tags(&c, TagResource::Volumes, &id).await?;
    Ok(Json(json!({"tags": tag_list(&tags)})).into_response())
}

/// Parse `{"action": "create"|"delete", "tags": [{"key", "value"}]}` (6.3.2, 6.3.3).
fn parse_tags_action(body: &[u8]) -> Result<TagChange> {
    let o = body_object(body)?;
    let action = req_string(&o, "action", "request")?;
    let items = req_array(&o, "tags")?;
    match action.as_str() {
        "create" => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let t = as_object(it, "tags")?;
                out.push((req_string(t, "key", "tag")?, req_string(t, "value", "tag")?));
            }
            Ok(TagChange::Upsert(out))
        }
        "delete" => {
            let mut out = Vec::with_capacity(items.len());
            for it in items {
                let t = as_object(it, "tags")?;
                let value = match t.get("value") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(s)) => Some(s.clone()),
                    Some(other) => return Err(bad(format!("Invalid tag: 'value' must be a string, got {other}."))),
                };
                out.push((req_string(t, "key", "tag")?, value));
            }
            Ok(TagChange::Delete(out))
        }
        other => Err(bad(format!("Invalid action {other:?}: it must be create or delete."))),
    }
}

pub(super) async fn volume_tags_action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let change = parse_tags_action(&body)?;
    svc.change_tags(&c, TagResource::Volumes, &id, change).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// What a `resource_instances/action` request asks.
#[derive(Debug, PartialEq)]
struct InstancesRequest {
    /// `filter` (a page) rather than `count`.
    filter: bool,
    query: TagQuery,
    page: (i64, i64),
}

/// Parse the body of 6.3.5 (`filter`) and of the `count` variant.
fn parse_instances(body: &[u8]) -> Result<InstancesRequest> {
    let o = body_object(body)?;
    let filter = match req_string(&o, "action", "request")?.as_str() {
        "filter" => true,
        "count" => false,
        other => return Err(bad(format!("Invalid action {other:?}: it must be filter or count."))),
    };
    for k in ["tags_any", "not_tags", "not_tags_any"] {
        if o.contains_key(k) {
            return Err(bad(format!(
                "Invalid request: '{k}' is not a parameter of this API (only 'tags' and 'matches' filter)."
            )));
        }
    }
    let mut query = TagQuery::default();
    let tags = match o.get("tags") {
        None | Some(Value::Null) if !filter => None,
        _ => Some(req_array(&o, "tags")?),
    };
    for it in tags.into_iter().flatten() {
        let t = as_object(it, "tags")?;
        let key = req_string(t, "key", "tags")?;
        let values = match t.get("values") {
            Some(Value::Array(vs)) => vs
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(format!("Invalid tags: values of {key:?} must be strings, got {v}.")))
                })
                .collect::<Result<Vec<_>>>()?,
            None | Some(Value::Null) => return Err(bad(format!("Invalid tags: 'values' of {key:?} is required."))),
            Some(other) => return Err(bad(format!("Invalid tags: 'values' of {key:?} must be a list, got {other}."))),
        };
        query.all.push(TagMatch { key, values });
    }
    let matches = match o.get("matches") {
        None | Some(Value::Null) => None,
        Some(_) => Some(req_array(&o, "matches")?),
    };
    let mut seen = Vec::new();
    for it in matches.into_iter().flatten() {
        let m = as_object(it, "matches")?;
        let key = req_string(m, "key", "matches")?;
        let value = req_string(m, "value", "matches")?;
        if seen.contains(&key) {
            return Err(bad(format!("Invalid matches: duplicate key {key:?}; keys must be unique.")));
        }
        if value.chars().count() > crate::service::MAX_MATCH_CHARS {
            return Err(bad(format!(
                "Invalid matches: the value of {key:?} must be at most {} characters.",
                crate::service::MAX_MATCH_CHARS
            )));
        }
        match key.as_str() {
            // Fuzzy (substring, ASCII case-insensitive); an empty value matches an empty name.
            "resource_name" => query.name_contains = Some(value.trim().to_string()),
            // Every disk here is an EVS disk: a value that EVS contains (case-insensitively)
            // matches all of them, any other (DSS, DESS, empty) none.
            "service_type" => {
                let v = value.trim().to_ascii_lowercase();
                if v.is_empty() || !"evs".contains(&v) {
                    query.match_nothing = true;
                }
            }
            other => return Err(bad(format!("Invalid matches: key {other:?} must be resource_name or service_type."))),
        }
        seen.push(key);
    }
    let page = if filter { page_of(&o)? } else { (0, 0) };
    Ok(InstancesRequest { filter, query, page })
}

/// `resource_detail` of a snapshot: the Cinder snapshot fields plus the EVS extras.
fn snapshot_detail(s: &Snapshot) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "description": s.description,
        "status": s.status.as_str(),
        "size": s.size_gb,
        "volume_id": s.volume_id,
        "created_at": s.created_at,
        "updated_at": s.updated_at,
        "metadata": s.metadata,
        "os-extended-snapshot-attributes:progress": if s.status == crate::model::SnapshotStatus::Creating { "0%" } else { "100%" },
        "os-extended-snapshot-attributes:project_id": s.project_id,
        "service_type": "EVS",
        "dedicated_storage_id": null,
        "dedicated_storage_name": null,
        "tags": s.tags,
    })
}

/// One entry of `resources`; `tags_as_list` selects 6.3.5's list form over the deprecated map.
fn resource_entry(svc: &Services, base: &str, r: &TaggedResource, tags_as_list: bool) -> Value {
    let (id, name, detail, tags) = match r {
        TaggedResource::Volume(v) => (&v.id, &v.name, views::volume_detail(base, &svc.config.node, v), &v.tags),
        TaggedResource::Snapshot(s) => (&s.id, &s.name, snapshot_detail(s), &s.tags),
    };
    let tags = if tags_as_list { tag_list(tags) } else { json!(tags) };
    json!({"resource_id": id, "resource_name": name, "resource_detail": detail, "tags": tags})
}

pub(super) async fn resource_instances_action(
    State(svc): State<Services>,
    Path(p): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let req = parse_instances(&body)?;
    let page = svc.query_by_tags(&c, TagResource::Volumes, &req.query, req.filter.then_some(req.page)).await?;
    if !req.filter {
        return Ok(Json(json!({"total_count": page.total})).into_response());
    }
    let base = base_url(&svc, &headers);
    let resources: Vec<Value> = page.resources.iter().map(|r| resource_entry(&svc, &base, r, true)).collect();
    Ok(Json(json!({"resources": resources, "total_count": page.total})).into_response())
}

// ---- 9.6: os-vendor-tags/{resource_type} ----

/// A `resource_type` of the `os-vendor-tags` routes; `None` is `backups`.
fn resource_type(rt: &str) -> Result<Option<TagResource>> {
    match rt {
        "volumes" => Ok(Some(TagResource::Volumes)),
        "snapshots" => Ok(Some(TagResource::Snapshots)),
        "backups" => Ok(None),
        other => Err(bad(format!("Invalid resource_type {other:?}: it must be volumes, snapshots or backups."))),
    }
}

/// The tagged type of a per-resource route; a backup id is never found.
fn resource_type_for(rt: &str, id: &str) -> Result<TagResource> {
    resource_type(rt)?.ok_or_else(|| Error::not_found(format!("Backup {id} could not be found.")))
}

pub(super) async fn vendor_project_tags(
    State(svc): State<Services>,
    Path((p, rt)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let tags = match resource_type(&rt)? {
        Some(t) => svc.project_tags(&c, t).await?,
        None => BTreeMap::new(),
    };
    Ok(Json(json!({"tags": tags})).into_response())
}

/// Parse a tag filter from the query string: `{'a': ['b', 'c'], 'd': 'e'}` (the Python dict
/// the examples show) or the same in JSON; an empty list (or `''`) accepts any value.
fn parse_filter_param(name: &str, raw: &str) -> Result<Vec<TagMatch>> {
    let invalid = || bad(format!("Invalid {name} filter {raw:?}: expected {{'key': ['value', ...]}}."));
    let parsed: Value =
        serde_json::from_str(raw).or_else(|_| serde_json::from_str(&raw.replace('\'', "\""))).map_err(|_| invalid())?;
    let obj = parsed.as_object().ok_or_else(invalid)?;
    obj.iter()
        .map(|(k, v)| {
            let values = match v {
                Value::Array(vs) => {
                    vs.iter().map(|x| x.as_str().map(str::to_string).ok_or_else(invalid)).collect::<Result<Vec<_>>>()?
                }
                Value::String(s) if s.is_empty() => Vec::new(),
                Value::String(s) => vec![s.clone()],
                Value::Null => Vec::new(),
                _ => return Err(invalid()),
            };
            Ok(TagMatch { key: k.clone(), values })
        })
        .collect()
}

pub(super) async fn vendor_resource_instances(
    State(svc): State<Services>,
    Path((p, rt)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let mut query = TagQuery::default();
    for (name, slot) in [
        ("tags", &mut query.all),
        ("tags_any", &mut query.any),
        ("not_tags", &mut query.not_all),
        ("not_tags_any", &mut query.not_any),
    ] {
        if let Some(raw) = query_get(&q, name) {
            *slot = parse_filter_param(name, raw)?;
        }
    }
    let mut paging = Map::new();
    for k in ["limit", "offset"] {
        if let Some(v) = query_get(&q, k) {
            paging.insert(k.into(), json!(v));
        }
    }
    let page = page_of(&paging)?;
    let Some(t) = resource_type(&rt)? else {
        crate::service::validate_tag_query(&query)?;
        return Ok(Json(json!({"resources": [], "total_count": 0})).into_response());
    };
    let page = svc.query_by_tags(&c, t, &query, Some(page)).await?;
    let base = base_url(&svc, &headers);
    let resources: Vec<Value> = page.resources.iter().map(|r| resource_entry(&svc, &base, r, false)).collect();
    Ok(Json(json!({"resources": resources, "total_count": page.total})).into_response())
}

pub(super) async fn vendor_get(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = resource_type_for(&rt, &rid)?;
    let tags = svc.resource_tags(&c, t, &rid).await?;
    Ok(Json(json!({"tags": tags})).into_response())
}

/// The `{"tags": {k: v}}` body of add/update and reset.
fn tags_map_body(body: &[u8]) -> Result<Vec<(String, String)>> {
    let o = body_object(body)?;
    match opt_string_map(&o, "tags", "EVS.5400")? {
        Some(m) => Ok(m.into_iter().collect()),
        None => Err(bad("Invalid request: 'tags' is required and must be an object of key: value.")),
    }
}

pub(super) async fn vendor_add(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = resource_type_for(&rt, &rid)?;
    let tags = svc.change_tags(&c, t, &rid, TagChange::Upsert(tags_map_body(&body)?)).await?;
    Ok(Json(json!({"tags": tags})).into_response())
}

pub(super) async fn vendor_reset(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = resource_type_for(&rt, &rid)?;
    let tags = svc.change_tags(&c, t, &rid, TagChange::Replace(tags_map_body(&body)?)).await?;
    Ok(Json(json!({"tags": tags})).into_response())
}

/// `{"os-delete_tags": {k: v}}`, or the 6.3.3 body `{"action": "delete", "tags": [...]}`.
fn parse_batch_delete(body: &[u8]) -> Result<TagChange> {
    let o = body_object(body)?;
    if o.contains_key("os-delete_tags") {
        let m = opt_string_map(&o, "os-delete_tags", "EVS.5400")?.unwrap_or_default();
        return Ok(TagChange::Delete(m.into_iter().map(|(k, v)| (k, Some(v))).collect()));
    }
    match parse_tags_action(body)? {
        c @ TagChange::Delete(_) => Ok(c),
        _ => Err(bad("Invalid request: this route only deletes tags (use 'os-delete_tags' or action delete).")),
    }
}

pub(super) async fn vendor_batch_delete(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = resource_type_for(&rt, &rid)?;
    svc.change_tags(&c, t, &rid, parse_batch_delete(&body)?).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn key_get(svc: &Services, headers: &HeaderMap, p: &str, rt: &str, rid: &str, key: &str) -> Res {
    let c = caller(svc, headers, p)?;
    let t = resource_type_for(rt, rid)?;
    let tags = svc.resource_tags(&c, t, rid).await?;
    let v = tags.get(key).ok_or_else(|| Error::not_found(format!("Tag {key:?} of {rt} {rid} could not be found.")))?;
    Ok(Json(json!({"tag": {key: v}})).into_response())
}

async fn key_put(svc: &Services, headers: &HeaderMap, p: &str, rt: &str, rid: &str, key: &str, body: &[u8]) -> Res {
    let c = caller(svc, headers, p)?;
    let t = resource_type_for(rt, rid)?;
    let o = body_object(body)?;
    let m = opt_string_map(&o, "tag", "EVS.5400")?
        .ok_or_else(|| bad("Invalid request: 'tag' is required and must be an object {key: value}."))?;
    let mut it = m.into_iter();
    let (k, v) = match (it.next(), it.next()) {
        (Some(kv), None) => kv,
        _ => return Err(bad("Invalid request: 'tag' must hold exactly one key: value.").into()),
    };
    if k != key {
        return Err(bad(format!("Request body and URI mismatch: the body names key {k:?}, the URI {key:?}.")).into());
    }
    svc.change_tags(&c, t, rid, TagChange::Upsert(vec![(k.clone(), v.clone())])).await?;
    Ok(Json(json!({"tag": {k: v}})).into_response())
}

async fn key_delete(svc: &Services, headers: &HeaderMap, p: &str, rt: &str, rid: &str, key: &str) -> Res {
    let c = caller(svc, headers, p)?;
    let t = resource_type_for(rt, rid)?;
    svc.change_tags(&c, t, rid, TagChange::DeleteKey(key.to_string())).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub(super) async fn vendor_key_get(
    State(svc): State<Services>,
    Path((p, rt, rid, key)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Res {
    key_get(&svc, &headers, &p, &rt, &rid, &key).await
}

pub(super) async fn vendor_key_put(
    State(svc): State<Services>,
    Path((p, rt, rid, key)): Path<(String, String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    key_put(&svc, &headers, &p, &rt, &rid, &key, &body).await
}

pub(super) async fn vendor_key_delete(
    State(svc): State<Services>,
    Path((p, rt, rid, key)): Path<(String, String, String, String)>,
    headers: HeaderMap,
) -> Res {
    key_delete(&svc, &headers, &p, &rt, &rid, &key).await
}

pub(super) async fn vendor_action_key_get(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    key_get(&svc, &headers, &p, &rt, &rid, "action").await
}

pub(super) async fn vendor_action_key_put(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    key_put(&svc, &headers, &p, &rt, &rid, "action", &body).await
}

pub(super) async fn vendor_action_key_delete(
    State(svc): State<Services>,
    Path((p, rt, rid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    key_delete(&svc, &headers, &p, &rt, &rid, "action").await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_params_accept_python_and_json() {
        let a = parse_filter_param("tags", "{'a': ['b', 'c'], 'd': 'e'}").expect("python");
        assert_eq!(
            a,
            vec![
                TagMatch { key: "a".into(), values: vec!["b".into(), "c".into()] },
                TagMatch { key: "d".into(), values: vec!["e".into()] }
            ]
        );
        let b = parse_filter_param("tags", r#"{"k": []}"#).expect("json");
        assert_eq!(b, vec![TagMatch { key: "k".into(), values: vec![] }]);
        assert!(parse_filter_param("tags", "k=v").is_err());
    }

    #[test]
    fn instances_body() {
        let r = parse_instances(
            br#"{"action":"filter","limit":"100","offset":"5","tags":[{"key":"k","values":["v"]}],
                "matches":[{"key":"resource_name","value":" Web "},{"key":"service_type","value":"evs"}]}"#,
        )
        .expect("parse");
        assert!(r.filter);
        assert_eq!(r.page, (100, 5));
        assert_eq!(r.query.all, vec![TagMatch { key: "k".into(), values: vec!["v".into()] }]);
        assert_eq!(r.query.name_contains.as_deref(), Some("Web"));
        assert!(!r.query.match_nothing);
        let dss =
            parse_instances(br#"{"action":"count","matches":[{"key":"service_type","value":"DSS"}]}"#).expect("count");
        assert!(!dss.filter && dss.query.match_nothing);
        assert!(parse_instances(br#"{"action":"filter"}"#).is_err(), "filter needs tags");
        assert!(parse_instances(br#"{"action":"list","tags":[]}"#).is_err());
        assert!(parse_instances(br#"{"action":"filter","tags":[],"limit":0}"#).is_err());
        assert!(parse_instances(br#"{"action":"filter","tags":[],"limit":1001}"#).is_err());
        assert!(parse_instances(br#"{"action":"filter","tags":[{"key":"k"}]}"#).is_err());
        assert!(parse_instances(br#"{"action":"filter","tags":[],"matches":[{"key":"id","value":"x"}]}"#).is_err());
        let dup = br#"{"action":"count","matches":[{"key":"resource_name","value":"a"},{"key":"resource_name","value":"b"}]}"#;
        assert!(parse_instances(dup).is_err());
    }

    #[test]
    fn tags_action_bodies() {
        let c = parse_tags_action(br#"{"action":"create","tags":[{"key":"k","value":"v"}]}"#).expect("create");
        assert_eq!(c, TagChange::Upsert(vec![("k".into(), "v".into())]));
        let d = parse_tags_action(br#"{"action":"delete","tags":[{"key":"k"}]}"#).expect("delete");
        assert_eq!(d, TagChange::Delete(vec![("k".into(), None)]));
        assert!(parse_tags_action(br#"{"action":"create","tags":[{"key":"k"}]}"#).is_err());
        assert!(parse_tags_action(br#"{"action":"update","tags":[]}"#).is_err());
        assert!(parse_tags_action(br#"{"tags":[]}"#).is_err());
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::service::policy;

    #[test]
    fn tag_routes_name_known_actions() {
        for kind in ["volumes", "snapshots", "backups", "other"] {
            for what in ["list", "get", "getById", "create", "update", "delete"] {
                let a = vendor_tag_action(&format!("/v2/p/os-vendor-tags/{kind}/x"), what);
                assert!(policy::is_known(a), "{a} is not in POLICY");
            }
        }
        assert_eq!(vendor_tag_action("/v2/p/os-vendor-tags/snapshots/x", "getById"), "evs:snapshotTags:getById");
        assert_eq!(tags_action_policy(br#"{"action":"delete","tags":[]}"#), "evs:volumeTags:delete");
        assert!(policy::is_known(tags_action_policy(b"{}")));
    }
}
