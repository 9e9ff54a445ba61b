//! Volume type routes: show (everyone, private types only with access), and for admins create,
//! update, delete, extra specs and `os-volume-type-access` of private types.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::views::{self, Audience};
use super::CinderError;
use crate::api::common::{caller, opt_bool, opt_nullable_string, opt_string, opt_string_map, parse_json, take_object};
use crate::error::Error;
use crate::service::{Services, TypeChange};

type Res = Result<Response, CinderError>;

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_volume_type(&c, &id)?;
    Ok(Json(json!({"volume_type": views::volume_type(Audience::of(&c), &t)})).into_response())
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "volume_type", "EVS.5400")?;
    let name = opt_string(&o, "name", "EVS.5400")?.ok_or_else(|| Error::invalid("EVS.5400", "'name' is required"))?;
    let is_public = opt_bool(&o, "os-volume-type-access:is_public", "EVS.5400")?
        .or(opt_bool(&o, "is_public", "EVS.5400")?)
        .unwrap_or(true);
    let t = svc
        .create_volume_type(
            &c,
            name,
            opt_string(&o, "description", "EVS.5400")?,
            is_public,
            opt_string_map(&o, "extra_specs", "EVS.5400")?.unwrap_or_default(),
        )
        .await?;
    Ok(Json(json!({"volume_type": views::volume_type_written(&t, Audience::of(&c).member)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "volume_type", "EVS.5400")?;
    let change = TypeChange {
        name: opt_string(&o, "name", "EVS.5400")?,
        description: opt_nullable_string(&o, "description", "EVS.5400")?,
        is_public: opt_bool(&o, "is_public", "EVS.5400")?,
    };
    let t = svc.update_volume_type(&c, &id, change).await?;
    Ok(Json(json!({"volume_type": views::volume_type_written(&t, false)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.delete_volume_type(&c, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn get_specs(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_volume_type(&c, &id)?;
    Ok(Json(json!({"extra_specs": t.extra_specs})).into_response())
}

pub(super) async fn add_specs(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| Error::invalid("EVS.5400", "Malformed request body"))?;
    let specs = opt_string_map(obj, "extra_specs", "EVS.5400")?
        .ok_or_else(|| Error::invalid("EVS.5400", "'extra_specs' is required"))?;
    let t = svc.set_extra_specs(&c, &id, specs.clone()).await?;
    let shown: serde_json::Map<String, Value> =
        specs.keys().filter_map(|k| t.extra_specs.get(k).map(|v| (k.clone(), json!(v)))).collect();
    Ok(Json(json!({"extra_specs": shown})).into_response())
}

pub(super) async fn get_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_volume_type(&c, &id)?;
    let v = t
        .extra_specs
        .get(&key)
        .ok_or_else(|| Error::not_found(format!("Volume Type {id} has no extra spec {key}.")))?;
    Ok(Json(json!({key.clone(): v})).into_response())
}

pub(super) async fn put_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let v = parse_json(&body)?;
    let obj = v.as_object().ok_or_else(|| Error::invalid("EVS.5400", "Malformed request body"))?;
    if obj.len() != 1 || !obj.contains_key(&key) {
        return Err(Error::invalid("EVS.5400", "Request body and URI mismatch").into());
    }
    let value =
        opt_string(obj, &key, "EVS.5400")?.ok_or_else(|| Error::invalid("EVS.5400", "value must be a string"))?;
    svc.set_extra_specs(&c, &id, [(key.clone(), value.clone())].into_iter().collect()).await?;
    Ok(Json(json!({key: value})).into_response())
}

pub(super) async fn delete_spec(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.delete_extra_spec(&c, &id, &key).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn list_access(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_volume_type(&c, &id)?;
    if t.is_public {
        return Err(Error::not_found("Access list not available for public volume types.").into());
    }
    let list: Vec<Value> = t.projects.iter().map(|p| json!({"volume_type_id": t.id, "project_id": p})).collect();
    Ok(Json(json!({"volume_type_access": list})).into_response())
}

pub(super) async fn action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let (name, args) = super::actions::split_action(&body)?;
    let add = match name.as_str() {
        "addProjectAccess" => true,
        "removeProjectAccess" => false,
        other => return Err(Error::invalid("EVS.5400", format!("There is no such action: {other}")).into()),
    };
    // Cinder's schema: `{"project": <1..255 chars>}` and nothing else; the project id must
    // also look like one (the service checks), so a malformed id changes nothing.
    if let Some(extra) = args.keys().find(|k| *k != "project") {
        return Err(Error::invalid(
            "EVS.5400",
            format!("Invalid input for field/attribute {name}. Additional properties are not allowed ({extra:?} was unexpected)"),
        )
        .into());
    }
    let project = opt_string(&args, "project", "EVS.5400")?.ok_or_else(|| {
        Error::invalid(
            "EVS.5400",
            format!("Invalid input for field/attribute {name}. 'project' is a required property"),
        )
    })?;
    svc.set_type_access(&c, &id, &project, add).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
