//! `qos-specs` routes (Cinder's `qos_specs_manage` extension, admin-only): create, list, show,
//! delete (`?force=`), `PUT` to set keys, `PUT …/delete_keys`, and the GET member actions
//! `associations`, `associate`, `disassociate` (`?vol_type_id=`) and `disassociate_all`.
//! Bodies are Cinder's `qos_specs` view: `{"qos_specs": {id, name, consumer, specs}, "links"}`.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::views::links_for;
use super::CinderError;
use crate::api::common::{base_url, caller, parse_bool, parse_json, parse_query, query_get};
use crate::error::Error;
use crate::model::QosSpecs;
use crate::service::Services;

type Res = Result<Response, CinderError>;

fn bad(m: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", m)
}

fn api_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/v2/") {
        "v2"
    } else {
        "v3"
    }
}

/// Cinder's `qos_specs` entry (list items and the `qos_specs` of show and create).
fn entry(q: &QosSpecs) -> Value {
    json!({"id": q.id, "name": q.name, "consumer": q.consumer, "specs": q.specs})
}

/// The body's only key must be `key` (Cinder's schemas refuse additional properties).
fn only_key(body: &Value, key: &str) -> Result<(), Error> {
    if let Some(o) = body.as_object() {
        if let Some(extra) = o.keys().find(|k| *k != key) {
            return Err(bad(format!("Additional properties are not allowed ({extra:?} was unexpected)")));
        }
    }
    Ok(())
}

/// Spec values: strings or null (`consumer` among them; the service splits it off).
fn spec_values(o: &Map<String, Value>) -> Result<BTreeMap<String, Option<String>>, Error> {
    o.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Ok((k.clone(), Some(s.clone()))),
            Value::Null => Ok((k.clone(), None)),
            other => Err(bad(format!(
                "Invalid input for field/attribute {k}. Value: {other}. {other} is not of type 'string', 'null'"
            ))),
        })
        .collect()
}

fn qos_object(body: &Bytes) -> Result<Map<String, Value>, Error> {
    let v = parse_json(body)?;
    only_key(&v, "qos_specs")?;
    match v {
        Value::Object(mut m) => match m.remove("qos_specs") {
            Some(Value::Object(o)) => Ok(o),
            Some(_) => Err(bad("Invalid input for field/attribute qos_specs. 'qos_specs' is not of type 'object'")),
            None => Err(bad("'qos_specs' is a required property")),
        },
        _ => Err(bad("Malformed request body: expected a JSON object")),
    }
}

fn vol_type_id(uri: &Uri) -> Result<String, Error> {
    let q = parse_query(uri.query())?;
    match query_get(&q, "vol_type_id") {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => Err(bad("Volume Type id must not be None.")),
    }
}

/// `POST qos-specs` `{"qos_specs": {"name", "consumer"?, <key>: <value>…}}`.
pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let mut o = qos_object(&body)?;
    let name = match o.remove("name") {
        Some(Value::String(s)) => s,
        None => return Err(bad("Invalid input for field/attribute qos_specs. 'name' is a required property").into()),
        Some(other) => {
            return Err(bad(format!(
                "Invalid input for field/attribute name. Value: {other}. {other} is not of type 'string'"
            ))
            .into())
        }
    };
    let q = svc.create_qos_specs(&c, &name, spec_values(&o)?).await?;
    let base = base_url(&svc, &headers);
    Ok(Json(json!({"qos_specs": entry(&q), "links": links_for(&base, api_of(&uri), &p, "qos-specs", &q.id)}))
        .into_response())
}

/// `GET qos-specs`.
pub(super) async fn list(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let all: Vec<Value> = svc.list_qos_specs(&c).await?.iter().map(entry).collect();
    Ok(Json(json!({ "qos_specs": all })).into_response())
}

/// `GET qos-specs/{id}`.
pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = svc.get_qos_specs(&c, &id).await?;
    let base = base_url(&svc, &headers);
    Ok(Json(json!({"qos_specs": entry(&q), "links": links_for(&base, api_of(&uri), &p, "qos-specs", &q.id)}))
        .into_response())
}

/// `PUT qos-specs/{id}` `{"qos_specs": {<key>: <value or null>…}}`: answers the body it was given,
/// as Cinder does.
pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = qos_object(&body)?;
    svc.set_qos_keys(&c, &id, spec_values(&o)?).await?;
    Ok(Json(json!({ "qos_specs": o })).into_response())
}

/// `DELETE qos-specs/{id}?force=<bool>` (202).
pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let force = match query_get(&q, "force") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| bad(format!("Invalid value '{v}' for force: it is not a boolean.")))?,
    };
    svc.delete_qos_specs(&c, &id, force).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `PUT qos-specs/{id}/delete_keys` `{"keys": [...]}` (202).
pub(super) async fn delete_keys(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let v = parse_json(&body)?;
    only_key(&v, "keys")?;
    let Some(Value::Array(items)) = v.get("keys") else {
        return Err(bad("Invalid input for field/attribute keys. 'keys' is a required property of type 'array'").into());
    };
    let mut keys: Vec<String> = Vec::with_capacity(items.len());
    for item in items {
        match item {
            Value::String(s) if !s.is_empty() && s.chars().count() <= 255 => {
                if keys.contains(s) {
                    return Err(
                        bad(format!("Invalid input for field/attribute keys. {v} has non-unique elements")).into()
                    );
                }
                keys.push(s.clone());
            }
            other => return Err(bad(format!("Invalid input for field/attribute keys. Value: {other}.")).into()),
        }
    }
    svc.delete_qos_keys(&c, &id, &keys).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET qos-specs/{id}/associations`.
pub(super) async fn associations(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let list: Vec<Value> = svc
        .qos_associations(&c, &id)
        .await?
        .iter()
        .map(|a| json!({"association_type": "volume_type", "name": a.name, "id": a.id}))
        .collect();
    Ok(Json(json!({ "qos_associations": list })).into_response())
}

/// `GET qos-specs/{id}/associate?vol_type_id=` (202).
pub(super) async fn associate(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = vol_type_id(&uri)?;
    svc.associate_qos_specs(&c, &id, &t).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET qos-specs/{id}/disassociate?vol_type_id=` (202).
pub(super) async fn disassociate(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let t = vol_type_id(&uri)?;
    svc.disassociate_qos_specs(&c, &id, Some(&t)).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

/// `GET qos-specs/{id}/disassociate_all` (202).
pub(super) async fn disassociate_all(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    svc.disassociate_qos_specs(&c, &id, None).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
