//! `GET /v3/{p}/messages`, `GET /v3/{p}/messages/{id}`, `DELETE /v3/{p}/messages/{id}` (3.3):
//! the user messages recorded when an asynchronous operation failed, in Cinder's view.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::summary::require;
use super::views::{links, Audience, ViewCtx};
use super::CinderError;
use crate::api::common::{base_url, caller};
use crate::api::ApiVersion;
use crate::model::Message;
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

pub(super) async fn list(
    State(svc): State<Services>,
    Path(p): Path<String>,
    _uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, 3)?;
    let c = caller(&svc, &headers, &p)?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    let messages: Vec<Value> = svc.list_messages(&c).await?.iter().map(|m| message_view(&ctx, m)).collect();
    Ok(Json(json!({"messages": messages})).into_response())
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
