//! Cinder group snapshot routes (3.14): create, list, detail, show, delete, and
//! `…/action` `reset_status` (admin, 3.19).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::summary::require;
use super::views::{self, Audience, SnapshotView, ViewCtx};
use super::CinderError;
use crate::api::common::{all_tenants, base_url, caller, opt_string, parse_json, parse_query, take_object};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::service::Services;

type Res = Result<Response, CinderError>;

/// Group snapshots need 3.14 (`GROUP_SNAPSHOTS`).
const MIN: u16 = 14;

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg.into())
}

/// The policy action of a `group_snapshots/{id}/action` body.
pub(super) fn group_snapshot_action_policy(body: &[u8]) -> &'static str {
    crate::api::guard::body_action(body, |_| "evs:groupSnapshots:resetStatus")
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
    let o = take_object(parse_json(&body)?, "group_snapshot", "EVS.5400")?;
    if let Some(k) = o.keys().find(|k| !["name", "description", "group_id"].contains(&k.as_str())) {
        return Err(bad(format!(
            "Invalid input for field/attribute group_snapshot. Additional properties are not allowed ({k:?} was unexpected)"
        ))
        .into());
    }
    let group_id = opt_string(&o, "group_id", "EVS.5400")?
        .ok_or_else(|| bad("Invalid input for field/attribute group_snapshot. 'group_id' is a required property"))?;
    let gs = svc
        .create_group_snapshot(
            &c,
            &group_id,
            opt_string(&o, "name", "EVS.5400")?,
            opt_string(&o, "description", "EVS.5400")?,
        )
        .await?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    Ok((StatusCode::ACCEPTED, Json(json!({"group_snapshot": views::group_snapshot(&ctx, &gs, SnapshotView::Written)})))
        .into_response())
}

async fn list(
    svc: &Services,
    p: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    version: ApiVersion,
    detail: bool,
) -> Res {
    require(version, MIN)?;
    let c = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let mut list = svc.list_group_snapshots(&c, all_tenants(&q)).await?;
    // Filters, sorting and paging from 3.29 (`GROUP_SNAPSHOT_PAGINATION`), as Cinder.
    if version.at_least(29) {
        list = super::groups::page(list, &q, &["name", "status", "group_id"])?;
    }
    let base = base_url(svc, headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    let view = if detail { SnapshotView::Read } else { SnapshotView::Summary };
    let items: Vec<Value> = list.iter().map(|gs| views::group_snapshot(&ctx, gs, view)).collect();
    Ok(Json(json!({"group_snapshots": items})).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let gs = svc.get_group_snapshot(&c, &id).await?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: "v3", version, node: &svc.config.node, audience: Audience::of(&c) };
    Ok(Json(json!({"group_snapshot": views::group_snapshot(&ctx, &gs, SnapshotView::Read)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    svc.delete_group_snapshot(&c, &id).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    require(version, MIN)?;
    let c = caller(&svc, &headers, &p)?;
    let (name, args) = super::actions::split_action(&body)?;
    match name.as_str() {
        "reset_status" => {
            require(version, 19)?;
            if let Some(k) = args.keys().find(|k| *k != "status") {
                return Err(bad(format!(
                    "Invalid input for field/attribute reset_status. Additional properties are not allowed ({k:?} was unexpected)"
                ))
                .into());
            }
            let status = opt_string(&args, "status", "EVS.5400")?.ok_or_else(|| {
                bad("Invalid input for field/attribute reset_status. 'status' is a required property")
            })?;
            svc.reset_group_snapshot_status(&c, &id, &status).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        other => Err(bad(format!("There is no such action: {other}")).into()),
    }
}
