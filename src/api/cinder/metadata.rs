//! Metadata routes of volumes and snapshots (`/metadata`, `/metadata/{key}`), identical in shape:
//! POST merges, PUT replaces, `{"meta": {k: v}}` for one key.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::CinderError;
use crate::api::common::{caller, opt_string_map, parse_json};
use crate::error::{Error, Result};
use crate::service::{Caller, Services};

type Res = std::result::Result<Response, CinderError>;

/// Which resource the metadata belongs to, decided by the path.
#[derive(Clone, Copy)]
enum Owner {
    Volume,
    Snapshot,
}

fn owner_of(uri: &Uri) -> Owner {
    if uri.path().contains("/snapshots/") {
        Owner::Snapshot
    } else {
        Owner::Volume
    }
}

async fn current(svc: &Services, c: &Caller, owner: Owner, id: &str) -> Result<BTreeMap<String, String>> {
    Ok(match owner {
        Owner::Volume => svc.get_volume(c, id).await?.metadata,
        Owner::Snapshot => svc.get_snapshot(c, id).await?.metadata,
    })
}

async fn set(
    svc: &Services,
    c: &Caller,
    owner: Owner,
    id: &str,
    m: BTreeMap<String, String>,
    merge: bool,
) -> Result<BTreeMap<String, String>> {
    match owner {
        Owner::Volume => svc.set_volume_metadata(c, id, m, merge).await,
        Owner::Snapshot => svc.set_snapshot_metadata(c, id, m, merge).await,
    }
}

/// The `{"metadata": {...}}` (or `{"meta": {...}}`) body; values must be strings, not null.
fn body_map(body: &[u8], key: &str) -> Result<BTreeMap<String, String>> {
    let v = parse_json(body)?;
    let obj = v.as_object().ok_or_else(|| Error::invalid("EVS.5400", "Malformed request body: expected an object"))?;
    opt_string_map(obj, key, "EVS.1005")?
        .ok_or_else(|| Error::invalid("EVS.5400", format!("Malformed request body: '{key}' is required")))
}

pub(super) async fn get_all(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let m = current(&svc, &c, owner_of(&uri), &id).await?;
    Ok(Json(json!({"metadata": m})).into_response())
}

pub(super) async fn merge(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let m = set(&svc, &c, owner_of(&uri), &id, body_map(&body, "metadata")?, true).await?;
    Ok(Json(json!({"metadata": m})).into_response())
}

pub(super) async fn replace(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let m = set(&svc, &c, owner_of(&uri), &id, body_map(&body, "metadata")?, false).await?;
    Ok(Json(json!({"metadata": m})).into_response())
}

pub(super) async fn get_key(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let m = current(&svc, &c, owner_of(&uri), &id).await?;
    let v = m.get(&key).ok_or_else(|| Error::not_found(format!("Metadata item with key {key} could not be found.")))?;
    Ok(Json(json!({"meta": {key.clone(): v}})).into_response())
}

pub(super) async fn put_key(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let meta = body_map(&body, "meta")?;
    if meta.len() != 1 {
        return Err(Error::invalid("EVS.5400", "Request body may contain exactly one metadata item in 'meta'.").into());
    }
    let Some(value) = meta.get(&key) else {
        return Err(Error::invalid("EVS.5400", "Request body and URI mismatch.").into());
    };
    let value = value.clone();
    set(&svc, &c, owner_of(&uri), &id, meta, true).await?;
    Ok(Json(json!({"meta": {key: Value::String(value)}})).into_response())
}

pub(super) async fn delete_key(
    State(svc): State<Services>,
    Path((p, id, key)): Path<(String, String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    match owner_of(&uri) {
        Owner::Volume => svc.delete_volume_metadata_key(&c, &id, &key).await?,
        Owner::Snapshot => svc.delete_snapshot_metadata_key(&c, &id, &key).await?,
    }
    Ok(axum::http::StatusCode::OK.into_response())
}
