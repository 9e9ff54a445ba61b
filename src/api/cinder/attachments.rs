//! The v3 attachments API (microversion 3.27+; `os-complete` 3.44; `mode` 3.54).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::views;
use super::CinderError;
use crate::api::common::{
    all_tenants, caller, opt_string, parse_json, parse_query, query_get, query_non_negative, take_object,
};
use crate::api::ApiVersion;
use crate::error::{Error, ErrorKind};
use crate::model::AttachMode;
use crate::service::{AttachRequest, Services};
use crate::store::AttachmentFilter;

type Res = Result<Response, CinderError>;

fn require(version: ApiVersion, minor: u16) -> Result<(), Error> {
    if version.at_least(minor) {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::NotFound, format!("This API needs microversion 3.{minor} or later.")))
    }
}

pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, 27)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "attachment", "EVS.5400")?;
    let volume_id = opt_string(&o, "volume_uuid", "EVS.1002")?
        .ok_or_else(|| Error::invalid("EVS.1002", "Invalid input: 'volume_uuid' is required"))?;
    let mode = match opt_string(&o, "mode", "EVS.5400")? {
        Some(m) if version.at_least(54) => Some(
            AttachMode::parse(&m).ok_or_else(|| Error::invalid("EVS.5400", format!("Invalid mode {m:?}: rw or ro")))?,
        ),
        Some(_) => return Err(Error::invalid("EVS.5400", "'mode' needs microversion 3.54 or later").into()),
        None => None,
    };
    let connector = match o.get("connector") {
        None | Some(Value::Null) => None,
        Some(c @ Value::Object(_)) => Some(c.clone()),
        Some(_) => return Err(Error::invalid("EVS.5400", "Invalid input: 'connector' must be an object").into()),
    };
    let req = AttachRequest { instance_uuid: opt_string(&o, "instance_uuid", "EVS.5400")?, mode, ..Default::default() };
    let a = svc.create_attachment(&c, &volume_id, req, connector.as_ref()).await?;
    Ok(Json(json!({"attachment": views::attachment(&a, true)})).into_response())
}

async fn list(svc: &Services, p: &str, uri: &Uri, headers: &HeaderMap, detail: bool) -> Res {
    let c = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let int = |k: &str, d: i64| query_non_negative(&q, k, d);
    let all = all_tenants(&q);
    let filter = AttachmentFilter {
        project_id: if all && c.is_admin { None } else { Some(c.project_id.clone()) },
        volume_id: query_get(&q, "volume_id").map(str::to_string),
        instance_uuid: query_get(&q, "instance_id").map(str::to_string),
        status: query_get(&q, "status").map(str::to_string),
    };
    let list = svc.list_attachments(&filter, int("limit", 1000)?.min(1000), int("offset", 0)?).await?;
    let items: Vec<Value> = list.iter().map(|a| views::attachment(a, detail)).collect();
    Ok(Json(json!({"attachments": items})).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 27)?;
    list(&svc, &p, &uri, &headers, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 27)?;
    list(&svc, &p, &uri, &headers, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 27)?;
    let c = caller(&svc, &headers, &p)?;
    let a = svc.get_attachment(&c, &id).await?;
    Ok(Json(json!({"attachment": views::attachment(&a, true)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, 27)?;
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "attachment", "EVS.5400")?;
    let connector = match o.get("connector") {
        Some(c @ Value::Object(_)) => c.clone(),
        _ => return Err(Error::invalid("EVS.5400", "Invalid input: 'connector' object is required").into()),
    };
    let a = svc.update_attachment(&c, &id, &connector).await?;
    Ok(Json(json!({"attachment": views::attachment(&a, true)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 27)?;
    let c = caller(&svc, &headers, &p)?;
    let a = svc.get_attachment(&c, &id).await?;
    svc.delete_attachment(&c, &id).await?;
    let v = svc.get_volume(&c, &a.volume_id).await?;
    let left: Vec<Value> = v.attachments.iter().map(|a| views::attachment(a, false)).collect();
    Ok(Json(json!({"attachments": left})).into_response())
}

pub(super) async fn action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, 44)?;
    let c = caller(&svc, &headers, &p)?;
    let (name, _args) = super::actions::split_action(&body)?;
    if name != "os-complete" {
        return Err(Error::invalid("EVS.5400", format!("There is no such action: {name}")).into());
    }
    svc.complete_attachment(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
