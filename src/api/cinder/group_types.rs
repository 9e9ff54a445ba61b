//! Cinder group type routes (3.11): `group_types` CRUD (admin writes), `group_types/default`,
//! and `group_types/{id}/group_specs` (admin).

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::summary::require;
use super::views::{self, Audience};
use super::CinderError;
use crate::api::common::{
    caller, opt_bool, opt_string, opt_string_map, parse_bool, parse_json, parse_query, query_get, take_object,
};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::GroupType;
use crate::service::{GroupTypeChange, Services};

type Res = Result<Response, CinderError>;

/// Group types need 3.11 (`GROUP_TYPE`).
const MIN: u16 = 11;

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg.into())
}

/// Refuse keys Cinder's schema does not allow (`additionalProperties: false`).
fn only_keys(o: &serde_json::Map<String, Value>, allowed: &[&str], what: &str) -> Result<(), Error> {
    if let Some(k) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!(
            "Invalid input for field/attribute {what}. Additional properties are not allowed ({k:?} was unexpected)"
        )));
    }
    Ok(())
}

pub(super) async fn list(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    // Cinder's `_parse_is_public`: absent/"None" = all, else a boolean.
    let is_public = match query_get(&q, "is_public") {
        None => Some(true),
        Some(v) if v.eq_ignore_ascii_case("none") => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| bad(format!("Invalid is_public filter [{v}]")))?),
    };
    let mut types = svc.list_group_types(&c, is_public).await?;
    // `sort=key:dir` or `sort_key`/`sort_dir`; Cinder's default is created_at desc.
    let (key, dir) = match query_get(&q, "sort") {
        Some(s) => {
            let first = s.split(',').next().unwrap_or("");
            let (k, d) = first.split_once(':').unwrap_or((first, "desc"));
            (k.to_string(), d.to_string())
        }
        None => (
            query_get(&q, "sort_key").unwrap_or("created_at").to_string(),
            query_get(&q, "sort_dir").unwrap_or("desc").to_string(),
        ),
    };
    let field = |t: &GroupType| -> String {
        match key.as_str() {
            "name" => t.name.clone(),
            "id" => t.id.clone(),
            "description" => t.description.clone().unwrap_or_default(),
            _ => t.created_at.clone(),
        }
    };
    if !["name", "id", "description", "created_at"].contains(&key.as_str()) {
        return Err(bad(format!("Invalid sort key {key}.")).into());
    }
    types.sort_by(|a, b| field(a).cmp(&field(b)).then(a.id.cmp(&b.id)));
    match dir.as_str() {
        "asc" => {}
        "desc" => types.reverse(),
        other => return Err(bad(format!("Invalid sort direction {other}.")).into()),
    }
    let a = Audience::of(&c);
    let items: Vec<Value> = types.iter().map(|t| views::group_type(a, t)).collect();
    Ok(Json(json!({"group_types": items})).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_group_type(&c, &id).await?;
    Ok(Json(json!({"group_type": views::group_type(Audience::of(&c), &t)})).into_response())
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
    let o = take_object(parse_json(&body)?, "group_type", "EVS.5400")?;
    only_keys(&o, &["name", "description", "is_public", "group_specs"], "group_type")?;
    let name = opt_string(&o, "name", "EVS.5400")?
        .ok_or_else(|| bad("Invalid input for field/attribute group_type. 'name' is a required property"))?;
    let t = svc
        .create_group_type(
            &c,
            name,
            opt_string(&o, "description", "EVS.5400")?,
            opt_bool(&o, "is_public", "EVS.5400")?.unwrap_or(true),
            opt_string_map(&o, "group_specs", "EVS.5400")?.unwrap_or_default(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group_type": views::group_type(Audience::of(&c), &t)}))).into_response())
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
    let o = take_object(parse_json(&body)?, "group_type", "EVS.5400")?;
    only_keys(&o, &["name", "description", "is_public"], "group_type")?;
    let change = GroupTypeChange {
        name: opt_string(&o, "name", "EVS.5400")?,
        description: opt_string(&o, "description", "EVS.5400")?,
        is_public: opt_bool(&o, "is_public", "EVS.5400")?,
    };
    let t = svc.update_group_type(&c, &id, change).await?;
    Ok(Json(json!({"group_type": views::group_type(Audience::of(&c), &t)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_group_type(&c, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn list_specs(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_group_type(&c, &id).await?;
    Ok(Json(json!({"group_specs": t.group_specs})).into_response())
}

/// `{"group_specs": {k: v, …}}`: adds or overwrites, answers the specs it was given.
pub(super) async fn create_specs(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| bad("Malformed request body"))?;
    only_keys(obj, &["group_specs"], "group_specs")?;
    let specs: BTreeMap<String, String> = opt_string_map(obj, "group_specs", "EVS.5400")?
        .ok_or_else(|| bad("Invalid input for field/attribute group_specs. 'group_specs' is a required property"))?;
    svc.set_group_specs(&c, &id, specs.clone()).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"group_specs": specs}))).into_response())
}

pub(super) async fn show_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_group_type(&c, &id).await?;
    let v = t
        .group_specs
        .get(&key)
        .ok_or_else(|| Error::not_found(format!("Group Type {id} has no specs with key {key}.")))?;
    Ok(Json(json!({key.clone(): v})).into_response())
}

pub(super) async fn update_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| bad("Malformed request body"))?;
    if obj.len() > 1 {
        return Err(bad("Request body contains too many items.").into());
    }
    if !obj.contains_key(&key) {
        return Err(bad("Request body and URI mismatch").into());
    }
    let value = opt_string(obj, &key, "EVS.5400")?.ok_or_else(|| bad("group spec values must be strings"))?;
    svc.set_group_specs(&c, &id, [(key.clone(), value.clone())].into_iter().collect()).await?;
    Ok(Json(json!({key: value})).into_response())
}

pub(super) async fn delete_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_group_spec(&c, &id, &key).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
