//! Volume transfer routes: `os-volume-transfer` (v2/v3, reference 7.4) and `volume-transfers`
//! (3.55+, with `no_snapshots`; 3.57 adds the project fields).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::views::links_for;
use super::CinderError;
use crate::api::common::{
    all_tenants, base_url, caller, opt_bool, opt_string, parse_json, parse_query, query_non_negative, take_object,
};
use crate::api::ApiVersion;
use crate::error::{Error, ErrorKind};
use crate::service::{CreateTransfer, Services};
use crate::store::TransferRow;

type Res = Result<Response, CinderError>;

/// Whether the request came through `volume-transfers` (3.55+) rather than `os-volume-transfer`.
fn is_new_api(uri: &Uri) -> bool {
    uri.path().contains("/volume-transfers")
}

fn gate(uri: &Uri, version: ApiVersion) -> Result<(), Error> {
    if is_new_api(uri) && !version.at_least(55) {
        return Err(Error::new(ErrorKind::NotFound, "volume-transfers needs microversion 3.55 or later."));
    }
    Ok(())
}

fn api_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/v2/") {
        "v2"
    } else {
        "v3"
    }
}

fn view(base: &str, uri: &Uri, version: ApiVersion, t: &TransferRow, detail: bool) -> Value {
    let coll = if is_new_api(uri) { "volume-transfers" } else { "os-volume-transfer" };
    let mut o = json!({
        "id": t.id,
        "name": t.name,
        "volume_id": t.volume_id,
        "links": links_for(base, api_of(uri), &t.project_id, coll, &t.id),
    });
    if detail {
        o["created_at"] = json!(t.created_at);
        if version.at_least(55) {
            o["no_snapshots"] = json!(t.no_snapshots);
        }
        if version.at_least(57) {
            o["source_project_id"] = json!(t.project_id);
            o["destination_project_id"] = Value::Null;
            o["accepted"] = json!(false);
        }
    }
    o
}

pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    gate(&uri, version)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "transfer", "EVS.5400")?;
    let volume_id = opt_string(&o, "volume_id", "EVS.1002")?
        .ok_or_else(|| Error::invalid("EVS.1002", "Invalid input: 'volume_id' is required"))?;
    let no_snapshots =
        if is_new_api(&uri) { Some(opt_bool(&o, "no_snapshots", "EVS.5400")?.unwrap_or(false)) } else { None };
    // evs: the reference's v2 transfer (7.4.1) requires a name and refuses system disks;
    // Cinder's v3 APIs keep Cinder's rules (name optional, bootable volumes allowed).
    let reference = uri.path().starts_with("/v2/");
    let name = opt_string(&o, "name", "EVS.1003")?;
    if reference && name.as_deref().is_none_or(|n| n.trim().is_empty()) {
        return Err(Error::invalid("EVS.1003", "Invalid input: 'name' is required (reference 7.4.1).").into());
    }
    let created =
        svc.create_transfer(&c, CreateTransfer { volume_id, name, no_snapshots, refuse_bootable: reference }).await?;
    let base = base_url(&svc, &headers);
    let mut t = view(&base, &uri, version, &created.transfer, true);
    t["auth_key"] = json!(created.auth_key);
    Ok((StatusCode::ACCEPTED, Json(json!({"transfer": t}))).into_response())
}

async fn list(svc: &Services, p: &str, uri: &Uri, headers: &HeaderMap, version: ApiVersion, detail: bool) -> Res {
    gate(uri, version)?;
    let c = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let int = |k: &str, d: i64| query_non_negative(&q, k, d);
    let all = all_tenants(&q);
    let rows = svc.list_transfers(&c, all, int("limit", 1000)?.min(1000), int("offset", 0)?).await?;
    let base = base_url(svc, headers);
    let items: Vec<Value> = rows.iter().map(|t| view(&base, uri, version, t, detail)).collect();
    Ok(Json(json!({"transfers": items})).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    gate(&uri, version)?;
    let c = caller(&svc, &headers, &p)?;
    let t = svc.get_transfer(&c, &id).await?;
    Ok(Json(json!({"transfer": view(&base_url(&svc, &headers), &uri, version, &t, true)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    gate(&uri, version)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_transfer(&c, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn accept(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    gate(&uri, version)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "accept", "EVS.5400")?;
    let key = opt_string(&o, "auth_key", "EVS.5400")?
        .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input: 'auth_key' is required"))?;
    let t = svc.accept_transfer(&c, &id, &key).await?;
    let base = base_url(&svc, &headers);
    Ok((StatusCode::ACCEPTED, Json(json!({"transfer": view(&base, &uri, version, &t, false)}))).into_response())
}
