//! `GET /v3/{p}/messages`, `GET /v3/{p}/messages/{id}`, `DELETE /v3/{p}/messages/{id}` (3.3):
//! the user messages recorded when an asynchronous operation failed, in Cinder's view. From 3.5
//! the list takes Cinder's filters, sort, marker, limit and offset.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::summary::require;
use super::views::{links, Audience, ViewCtx};
use super::CinderError;
use crate::api::common::{base_url, caller, next_link, parse_query, query_get, query_non_negative};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::Message;
use crate::service::messages::{ListMessages, MESSAGE_FILTERS};
use crate::service::Services;

type Res = Result<Response, CinderError>;

/// Cinder's message view; `resource_type`/`resource_uuid` only when known.
fn message_view(ctx: &ViewCtx, m: &Message) -> Value {
    let mut o = json!({
        "id": m.id,
        "event_id": m.event_id,
        "user_message": m.user_message(),
        "message_level": m.message_level,
        "created_at": m.created_at,
        "guaranteed_until": m.expires_at,
        "request_id": m.request_id,
        "links": links(ctx, &m.project_id, "messages", &m.id),
    });
    if let Some(t) = &m.resource_type {
        o["resource_type"] = json!(t);
    }
    if let Some(u) = &m.resource_uuid {
        o["resource_uuid"] = json!(u);
    }
    o
}

/// Parse the query of a message list: from 3.5 Cinder's filters, sort, marker, limit and
/// offset; unknown keys are refused (Cinder's `reject_invalid_filters`).
fn list_request(q: &[(String, String)], version: ApiVersion) -> Result<ListMessages, Error> {
    let mut req = ListMessages::default();
    if !version.at_least(5) {
        return Ok(req);
    }
    let bad_sort = |s: &str| Error::invalid("EVS.5400", format!("Invalid sort key or direction: {s}"));
    for (k, v) in q {
        match k.as_str() {
            "limit" | "offset" | "marker" => {}
            "sort" | "sort_key" | "sort_dir" => {
                let (key, dir) = match k.as_str() {
                    "sort" => match v.split_once(':') {
                        Some((key, dir)) => (Some(key), Some(dir)),
                        None => (Some(v.as_str()), None),
                    },
                    "sort_key" => (Some(v.as_str()), None),
                    _ => (None, Some(v.as_str())),
                };
                match key {
                    None | Some("created_at") => {}
                    Some("id") => req.by_id = true,
                    Some(other) => return Err(bad_sort(other)),
                }
                match dir {
                    None | Some("desc") => {}
                    Some("asc") => req.ascending = true,
                    Some(other) => return Err(bad_sort(other)),
                }
            }
            f if MESSAGE_FILTERS.contains(&f) => req.filters.push((k.clone(), v.clone())),
            other => {
                return Err(Error::invalid("EVS.5400", format!("Invalid filters {other} are found in query options.")))
            }
        }
    }
    req.marker = query_get(q, "marker").map(str::to_string);
    req.offset = query_non_negative(q, "offset", 0)? as usize;
    req.limit = match query_get(q, "limit") {
        None => None,
        Some(_) => Some(query_non_negative(q, "limit", 0)? as usize),
    };
    Ok(req)
}

pub(super) async fn list(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 3)?;
    let c = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let req = list_request(&q, version)?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    let page = svc.list_messages(&c, &req).await?;
    let messages: Vec<Value> = page.iter().map(|m| message_view(&ctx, m)).collect();
    let mut body = json!({"messages": messages});
    // A full page asked for with a limit links to the next one, as Cinder's collection links.
    if let (Some(limit), Some(last)) = (req.limit, page.last()) {
        if limit > 0 && page.len() == limit {
            body["messages_links"] = next_link(&base, uri.path(), &q, limit as i64, &last.id);
        }
    }
    Ok(Json(body).into_response())
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 3)?;
    let c = caller(&svc, &headers, &p)?;
    let m = svc.get_message(&c, &id).await?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    Ok(Json(json!({"message": message_view(&ctx, &m)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 3)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_message(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
