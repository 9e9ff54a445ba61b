//! The Keystone v3 admin subset tempest's credential client uses to make and remove a project:
//! `GET /identity/v3/domains` (`?name=`) and `GET …/domains/{id}` (the one `Default` domain),
//! `POST /identity/v3/projects` and `DELETE …/projects/{id}`, in Keystone's shapes.
//!
//! Admin-only (a token holding the `admin` role), as in Keystone's default policy. Projects are
//! the real ones `cinderblock admin project` manages: a project still owning volumes or
//! snapshots is not deleted (409), so no resource is left without its project.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::{
    bad_request, caller_token, forbidden, is_admin, project_json, public_base, string, KeystoneError, Res, DOMAIN_ID,
    DOMAIN_NAME,
};
use crate::api::common::{parse_json, parse_query, query_get};
use crate::error::{Error, ErrorKind};
use crate::service::identity::{self as ids, Ref};
use crate::service::Services;

/// Longest project name Keystone accepts.
const MAX_PROJECT_NAME: usize = 64;

/// The caller's token, which must hold the admin role (403 otherwise).
async fn admin_caller(svc: &Services, headers: &HeaderMap) -> std::result::Result<(), KeystoneError> {
    let info = caller_token(svc, headers).await?;
    if !is_admin(&info) {
        return Err(forbidden("You are not authorized to perform the requested action."));
    }
    Ok(())
}

fn domain_json(base: &str) -> Value {
    json!({
        "id": DOMAIN_ID,
        "name": DOMAIN_NAME,
        "description": "The default domain",
        "enabled": true,
        "tags": [],
        "options": {},
        "links": {"self": format!("{base}/identity/v3/domains/{DOMAIN_ID}")},
    })
}

/// `GET /identity/v3/domains`: the `Default` domain (none when `?name=` or `?enabled=` names
/// another).
pub(super) async fn list_domains(State(svc): State<Services>, headers: HeaderMap, RawQuery(query): RawQuery) -> Res {
    admin_caller(&svc, &headers).await?;
    let q = parse_query(query.as_deref())?;
    let base = public_base(&svc, &headers);
    let matches = query_get(&q, "name").is_none_or(|n| n == DOMAIN_NAME)
        && query_get(&q, "enabled").is_none_or(|e| !e.eq_ignore_ascii_case("false") && e != "0");
    let list: Vec<Value> = if matches { vec![domain_json(&base)] } else { Vec::new() };
    Ok(Json(json!({
        "domains": list,
        "links": {"self": format!("{base}/identity/v3/domains"), "previous": null, "next": null},
    }))
    .into_response())
}

/// `GET /identity/v3/domains/{id}`.
pub(super) async fn show_domain(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    admin_caller(&svc, &headers).await?;
    if id != DOMAIN_ID {
        return Err(KeystoneError(Error::new(ErrorKind::NotFound, format!("Could not find domain: {id}."))));
    }
    Ok(Json(json!({"domain": domain_json(&public_base(&svc, &headers))})).into_response())
}

/// `POST /identity/v3/projects` `{"project": {"name", "description"?, "domain_id"?, "enabled"?}}`
/// (201). Only enabled projects of the `Default` domain, with no parent project, can be made.
pub(super) async fn create_project(State(svc): State<Services>, headers: HeaderMap, body: Bytes) -> Res {
    admin_caller(&svc, &headers).await?;
    let v = parse_json(&body)?;
    let o =
        v.get("project").and_then(Value::as_object).ok_or_else(|| bad_request("'project' is a required property"))?;
    let name = string(o, "name")?.ok_or_else(|| bad_request("'name' is a required property"))?;
    if name.trim().is_empty() || name.chars().count() > MAX_PROJECT_NAME {
        return Err(bad_request(format!("Invalid input for field 'name': must be 1 to {MAX_PROJECT_NAME} characters")));
    }
    let description = string(o, "description")?;
    for key in ["domain_id", "parent_id"] {
        if let Some(d) = string(o, key)? {
            if d != DOMAIN_ID {
                return Err(bad_request(format!("Could not find domain: {d}.")));
            }
        }
    }
    match o.get("enabled") {
        None | Some(Value::Bool(true)) => {}
        Some(Value::Bool(false)) => return Err(bad_request("Disabled projects are not supported.")),
        Some(_) => return Err(bad_request("Invalid input for field 'enabled': must be a boolean")),
    }
    match o.get("is_domain") {
        None | Some(Value::Bool(false)) => {}
        Some(_) => return Err(bad_request("Projects acting as domains are not supported.")),
    }
    let p = ids::create_project(&svc.db, name, description).await.map_err(|e| {
        if e.kind == ErrorKind::Conflict {
            KeystoneError(Error::conflict(
                "EVS.5409",
                format!("Conflict occurred attempting to store project - Duplicate entry found with name {name}."),
            ))
        } else {
            KeystoneError(e)
        }
    })?;
    tracing::info!(project = %p.id, name = %p.name, "project created");
    Ok((StatusCode::CREATED, Json(json!({"project": project_json(&public_base(&svc, &headers), &p)}))).into_response())
}

/// `DELETE /identity/v3/projects/{id}` (204); its role assignments, credentials and tokens go
/// with it.
pub(super) async fn delete_project(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    admin_caller(&svc, &headers).await?;
    // By id only: a Keystone client names the project it means exactly.
    if svc.db.project_by_id(&id).await?.is_none() {
        return Err(KeystoneError(Error::new(ErrorKind::NotFound, format!("Could not find project: {id}."))));
    }
    let p = ids::delete_project(&svc.db, &Ref::Id(id)).await?;
    tracing::info!(project = %p.id, name = %p.name, "project deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
