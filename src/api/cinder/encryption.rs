//! `types/{id}/encryption` (records only) and `default-types` (3.62), admin-only.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::summary::require;
use super::CinderError;
use crate::api::common::{caller, check_project_id, parse_json, take_object};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::{DefaultType, TypeEncryption};
use crate::service::{EncryptionSpec, Services};

type Res = Result<Response, CinderError>;

fn bad(m: String) -> Error {
    Error::invalid("EVS.5400", m)
}

/// Parse the `encryption` object of a create or update (Cinder's schema; `key_size` may be a
/// numeric string).
fn spec_of(o: &Map<String, Value>) -> Result<EncryptionSpec, Error> {
    let text = |k: &str| -> Result<Option<String>, Error> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(v) => Err(bad(format!("Invalid input for field/attribute {k}. Value: {v}. is not of type 'string'"))),
        }
    };
    let cipher = match o.get("cipher") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(v) => return Err(bad(format!("Invalid input for field/attribute cipher. Value: {v}."))),
    };
    let key_size = match o.get("key_size") {
        None => None,
        Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => Some(Some(
            n.as_i64().ok_or_else(|| bad(format!("Invalid input for field/attribute key_size. Value: {n}.")))?,
        )),
        Some(Value::String(s)) => Some(Some(
            s.parse::<i64>().map_err(|_| bad(format!("Invalid input for field/attribute key_size. Value: {s}.")))?,
        )),
        Some(v) => return Err(bad(format!("Invalid input for field/attribute key_size. Value: {v}."))),
    };
    Ok(EncryptionSpec { provider: text("provider")?, cipher, key_size, control_location: text("control_location")? })
}

fn record(e: &TypeEncryption) -> Value {
    json!({
        "volume_type_id": e.volume_type_id,
        "encryption_id": e.encryption_id,
        "provider": e.provider,
        "cipher": e.cipher,
        "key_size": e.key_size,
        "control_location": e.control_location,
        "deleted": false,
        "created_at": e.created_at,
        "updated_at": e.updated_at,
        "deleted_at": null,
    })
}

/// `GET types/{id}/encryption`: the record, or `{}` for an unencrypted type.
pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let body = svc.get_type_encryption(&c, &id).await?.map(|e| record(&e)).unwrap_or_else(|| json!({}));
    Ok(Json(body).into_response())
}

/// `GET types/{id}/encryption/{key}`: `{key: value}`.
pub(super) async fn show_key(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let not_found = || Error::not_found(format!("Volume type encryption for type {id} does not exist."));
    let rec = svc.get_type_encryption(&c, &id).await?.ok_or_else(not_found)?;
    let v = record(&rec).get(&key).cloned().ok_or_else(not_found)?;
    Ok(Json(json!({ key: v })).into_response())
}

/// `POST types/{id}/encryption`: the record as given plus its ids.
pub(super) async fn create(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "encryption", "EVS.5400")?;
    let e = svc.create_type_encryption(&c, &id, spec_of(&o)?).await?;
    Ok(Json(json!({"encryption": {
        "volume_type_id": e.volume_type_id,
        "encryption_id": e.encryption_id,
        "provider": e.provider,
        "cipher": e.cipher,
        "key_size": e.key_size,
        "control_location": e.control_location,
    }}))
    .into_response())
}

/// `PUT types/{id}/encryption/{encryption_id}`: echoes the fields changed, as Cinder does.
pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id, _enc)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "encryption", "EVS.5400")?;
    let spec = spec_of(&o)?;
    let e = svc.update_type_encryption(&c, &id, spec.clone()).await?;
    let mut out = Map::new();
    if spec.provider.is_some() {
        out.insert("provider".into(), json!(e.provider));
    }
    if spec.cipher.is_some() {
        out.insert("cipher".into(), json!(e.cipher));
    }
    if spec.key_size.is_some() {
        out.insert("key_size".into(), json!(e.key_size));
    }
    if spec.control_location.is_some() {
        out.insert("control_location".into(), json!(e.control_location));
    }
    Ok(Json(json!({ "encryption": out })).into_response())
}

/// `DELETE types/{id}/encryption/{encryption_id}`.
pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id, _enc)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.delete_type_encryption(&c, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

fn default_view(d: &DefaultType) -> Value {
    json!({"project_id": d.project_id, "volume_type_id": d.volume_type_id})
}

/// `PUT default-types/{project}` `{"default_type": {"volume_type": <id or name>}}`.
pub(super) async fn set_default(
    State(svc): State<Services>,
    Path((p, project)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, 62)?;
    let c = caller(&svc, &headers, &p)?;
    check_project_id(&project)?;
    let o = take_object(parse_json(&body)?, "default_type", "EVS.5400")?;
    if let Some(extra) = o.keys().find(|k| *k != "volume_type") {
        return Err(bad(format!("Additional properties are not allowed ({extra:?} was unexpected)")).into());
    }
    let t = match o.get("volume_type") {
        Some(Value::String(s)) if !s.is_empty() && s.len() <= 255 => s.clone(),
        _ => return Err(bad("Invalid input for field/attribute volume_type.".into()).into()),
    };
    let d = svc.set_default_type(&c, &project, &t).await?;
    Ok(Json(json!({"default_type": default_view(&d)})).into_response())
}

/// `GET default-types/{project}`.
pub(super) async fn show_default(
    State(svc): State<Services>,
    Path((p, project)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 62)?;
    let c = caller(&svc, &headers, &p)?;
    let d = svc.get_default_type(&c, &project).await?;
    Ok(Json(json!({"default_type": default_view(&d)})).into_response())
}

/// `GET default-types`.
pub(super) async fn list_defaults(
    State(svc): State<Services>,
    Path(p): Path<String>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 62)?;
    let c = caller(&svc, &headers, &p)?;
    let all: Vec<Value> = svc.list_default_types(&c).await?.iter().map(default_view).collect();
    Ok(Json(json!({ "default_types": all })).into_response())
}

/// `DELETE default-types/{project}` (204).
pub(super) async fn delete_default(
    State(svc): State<Services>,
    Path((p, project)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 62)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_default_type(&c, &project).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
