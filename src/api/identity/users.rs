//! The Keystone v3 user and role admin subset `openstack user …`, `openstack role …` and
//! `openstack role assignment list` use (issue 10 B.11), in Keystone's shapes:
//!
//! - `POST /identity/v3/users`, `GET …/users` (`?name=`, `?domain_id=`, `?enabled=`),
//!   `GET/PATCH/DELETE …/users/{id}`;
//! - `GET …/roles` (`?name=`) and `GET …/roles/{id}`: the three fixed roles
//!   reader/member/admin with their stable ids ([`Role::id`]);
//! - `PUT/HEAD/DELETE …/projects/{p}/users/{u}/roles/{r}` and `GET …/projects/{p}/users/{u}/roles`;
//! - `GET …/role_assignments` (`?user.id=`, `?scope.project.id=`, `?role.id=`,
//!   `?include_names`, `?effective`).
//!
//! Admin-only, as Keystone's default policy (a user may read itself and its own roles). The
//! work is the same service calls `cinderblock admin` makes ([`crate::service::identity`]), so
//! a password is argon2-hashed under the password-check permits, deleting a user ends its
//! tokens and credentials, removing a role ends the user's tokens for that project, and the
//! last admin role assignment of the deployment cannot be removed (409). Paths name users,
//! projects and roles by id only, as a Keystone client resolves names first.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Map, Value};

use super::{
    bad_request, caller_token, forbidden, is_admin, public_base, string, KeystoneError, Res, DOMAIN_ID, DOMAIN_NAME,
};
use crate::api::common::{parse_json, parse_query, query_get};
use crate::error::{Error, ErrorKind};
use crate::model::{Role, RoleAssignment, User};
use crate::service::identity::{self as ids, NewUser, Ref, TokenInfo, UserUpdate};
use crate::service::Services;

const NOT_AUTHORIZED: &str = "You are not authorized to perform the requested action.";

/// The caller's token, which must hold the admin role (403 otherwise).
async fn admin_caller(svc: &Services, headers: &HeaderMap) -> std::result::Result<TokenInfo, KeystoneError> {
    let info = caller_token(svc, headers).await?;
    if !is_admin(&info) {
        return Err(forbidden(NOT_AUTHORIZED));
    }
    Ok(info)
}

/// The caller, who must be an admin or the user `user_id` itself.
async fn admin_or_self(
    svc: &Services,
    headers: &HeaderMap,
    user_id: &str,
) -> std::result::Result<TokenInfo, KeystoneError> {
    let info = caller_token(svc, headers).await?;
    if !is_admin(&info) && info.user.id != user_id {
        return Err(forbidden(NOT_AUTHORIZED));
    }
    Ok(info)
}

fn not_found(what: &str, id: &str) -> KeystoneError {
    KeystoneError(Error::new(ErrorKind::NotFound, format!("Could not find {what}: {id}.")))
}

/// A service error in Keystone's words: duplicates name the user as Keystone does.
fn user_error(e: Error, name: &str) -> KeystoneError {
    match e.kind {
        ErrorKind::Conflict if e.public_message().contains("already exists") => KeystoneError(Error::conflict(
            "EVS.5409",
            format!("Conflict occurred attempting to store user - Duplicate entry found with name {name}."),
        )),
        _ => KeystoneError(e),
    }
}

async fn user_by_id(svc: &Services, id: &str) -> std::result::Result<User, KeystoneError> {
    svc.db.user_by_id(id).await?.ok_or_else(|| not_found("user", id))
}

async fn project_exists(svc: &Services, id: &str) -> std::result::Result<(), KeystoneError> {
    match svc.db.project_by_id(id).await? {
        Some(_) => Ok(()),
        None => Err(not_found("project", id)),
    }
}

fn role_by_id(id: &str) -> std::result::Result<Role, KeystoneError> {
    Role::ALL.into_iter().find(|r| r.id() == id).ok_or_else(|| not_found("role", id))
}

fn list_links(base: &str, path: &str) -> Value {
    json!({"self": format!("{base}{path}"), "previous": null, "next": null})
}

fn user_json(base: &str, u: &User) -> Value {
    let mut v = json!({
        "id": u.id,
        "name": u.name,
        "domain_id": DOMAIN_ID,
        "enabled": u.enabled,
        "password_expires_at": null,
        "options": {},
        "links": {"self": format!("{base}/identity/v3/users/{}", u.id)},
    });
    // Keystone leaves unset optional attributes out.
    for (key, val) in
        [("default_project_id", &u.default_project_id), ("description", &u.description), ("email", &u.email)]
    {
        if let Some(s) = val {
            v[key] = json!(s);
        }
    }
    v
}

fn role_json(base: &str, r: Role) -> Value {
    json!({
        "id": r.id(),
        "name": r.as_str(),
        "domain_id": null,
        "description": null,
        "options": {},
        "links": {"self": format!("{base}/identity/v3/roles/{}", r.id())},
    })
}

/// `enabled` query values as Keystone reads them (anything but false/0/no/off is true).
fn truthy(v: &str) -> bool {
    !matches!(v.to_ascii_lowercase().as_str(), "false" | "0" | "no" | "off" | "n" | "f")
}

/// A boolean body field.
fn boolean(o: &Map<String, Value>, key: &str) -> std::result::Result<Option<bool>, KeystoneError> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(bad_request(format!("Invalid input for field '{key}': must be a boolean"))),
    }
}

/// The `user` object of a body.
fn user_object(v: &Value) -> std::result::Result<&Map<String, Value>, KeystoneError> {
    v.get("user").and_then(Value::as_object).ok_or_else(|| bad_request("'user' is a required property"))
}

/// `domain_id`, when given, must be the `Default` domain.
fn check_domain_id(o: &Map<String, Value>) -> std::result::Result<(), KeystoneError> {
    match string(o, "domain_id")? {
        Some(d) if d != DOMAIN_ID => Err(not_found("domain", d)),
        _ => Ok(()),
    }
}

// ----- users --------------------------------------------------------------------------------

/// `POST /identity/v3/users` (201).
pub(super) async fn create_user(State(svc): State<Services>, headers: HeaderMap, body: Bytes) -> Res {
    admin_caller(&svc, &headers).await?;
    let v = parse_json(&body)?;
    let o = user_object(&v)?;
    let name = string(o, "name")?.ok_or_else(|| bad_request("'name' is a required property"))?;
    // Keystone allows a user without a password; this daemon has no other way to log in, so
    // one is required.
    let password = string(o, "password")?.ok_or_else(|| bad_request("'password' is a required property"))?;
    check_domain_id(o)?;
    let enabled = boolean(o, "enabled")?.unwrap_or(true);
    let project = match string(o, "default_project_id")? {
        Some(p) => {
            project_exists(&svc, p).await?;
            Some(Ref::Id(p.to_string()))
        }
        None => None,
    };
    let new = NewUser {
        name,
        password,
        default_project: project.as_ref(),
        enabled,
        description: string(o, "description")?,
        email: string(o, "email")?,
    };
    let u = ids::create_user_with(&svc.db, &new, None).await.map_err(|e| user_error(e, name))?;
    tracing::info!(user = %u.id, name = %u.name, "user created");
    Ok((StatusCode::CREATED, Json(json!({"user": user_json(&public_base(&svc, &headers), &u)}))).into_response())
}

/// `POST /identity/v3/users/{id}/password` (`openstack user password set`): a user changes
/// its own password, giving the original (204; Keystone's `identity:change_password` rule is
/// the user itself). A wrong original answers 401 and counts toward the login throttle; every
/// token of the user ends, the caller's included, as Keystone's revocation event does.
pub(super) async fn change_password(
    State(svc): State<Services>,
    peer: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    let info = caller_token(&svc, &headers).await?;
    if info.user.id != id {
        return Err(forbidden(NOT_AUTHORIZED));
    }
    let v = parse_json(&body)?;
    let o = user_object(&v)?;
    let password = string(o, "password")?.ok_or_else(|| bad_request("'password' is a required property"))?;
    let original =
        string(o, "original_password")?.ok_or_else(|| bad_request("'original_password' is a required property"))?;
    let from = peer.map(|axum::Extension(axum::extract::ConnectInfo(a))| a.ip());
    let u = ids::change_password(&svc.db, &svc.config, &id, original, password, from).await?;
    tracing::info!(user = %u.id, "user changed its password");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /identity/v3/users` (`?name=`, `?domain_id=`, `?enabled=`).
pub(super) async fn list_users(State(svc): State<Services>, headers: HeaderMap, RawQuery(query): RawQuery) -> Res {
    admin_caller(&svc, &headers).await?;
    let q = parse_query(query.as_deref())?;
    let mut users = svc.db.list_users().await?;
    if let Some(name) = query_get(&q, "name") {
        users.retain(|u| u.name == name);
    }
    if query_get(&q, "domain_id").is_some_and(|d| d != DOMAIN_ID) {
        users.clear();
    }
    if let Some(e) = query_get(&q, "enabled") {
        let want = truthy(e);
        users.retain(|u| u.enabled == want);
    }
    let base = public_base(&svc, &headers);
    let list: Vec<Value> = users.iter().map(|u| user_json(&base, u)).collect();
    Ok(Json(json!({"users": list, "links": list_links(&base, "/identity/v3/users")})).into_response())
}

/// `GET /identity/v3/users/{id}`: any user for an admin, the caller itself otherwise.
pub(super) async fn show_user(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    admin_or_self(&svc, &headers, &id).await?;
    let u = user_by_id(&svc, &id).await?;
    Ok(Json(json!({"user": user_json(&public_base(&svc, &headers), &u)})).into_response())
}

/// `PATCH /identity/v3/users/{id}`: `name`, `password`, `enabled`, `default_project_id`,
/// `description`, `email`.
pub(super) async fn update_user(
    State(svc): State<Services>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Res {
    admin_caller(&svc, &headers).await?;
    let v = parse_json(&body)?;
    let o = user_object(&v)?;
    check_domain_id(o)?;
    user_by_id(&svc, &id).await?;
    let mut change = UserUpdate {
        name: string(o, "name")?.map(str::to_string),
        password: string(o, "password")?.map(str::to_string),
        enabled: boolean(o, "enabled")?,
        ..UserUpdate::default()
    };
    if o.contains_key("default_project_id") {
        let p = string(o, "default_project_id")?;
        if let Some(p) = p {
            project_exists(&svc, p).await?;
        }
        change.default_project = Some(p.map(|p| Ref::Id(p.to_string())));
    }
    if o.contains_key("description") {
        change.description = Some(string(o, "description")?.map(str::to_string));
    }
    if o.contains_key("email") {
        change.email = Some(string(o, "email")?.map(str::to_string));
    }
    let name = change.name.clone().unwrap_or_default();
    let u = ids::update_user(&svc.db, &id, change).await.map_err(|e| user_error(e, &name))?;
    tracing::info!(user = %u.id, name = %u.name, "user updated");
    Ok(Json(json!({"user": user_json(&public_base(&svc, &headers), &u)})).into_response())
}

/// `DELETE /identity/v3/users/{id}` (204): its role assignments, credentials and tokens go
/// with it; the holder of the last admin role assignment is kept (409).
pub(super) async fn delete_user(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    admin_caller(&svc, &headers).await?;
    user_by_id(&svc, &id).await?;
    let u = ids::delete_user(&svc.db, &Ref::Id(id)).await?;
    tracing::info!(user = %u.id, name = %u.name, "user deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ----- roles --------------------------------------------------------------------------------

/// `GET /identity/v3/roles` (`?name=`; `?domain_id=` names no global role).
pub(super) async fn list_roles(State(svc): State<Services>, headers: HeaderMap, RawQuery(query): RawQuery) -> Res {
    admin_caller(&svc, &headers).await?;
    let q = parse_query(query.as_deref())?;
    let base = public_base(&svc, &headers);
    let name = query_get(&q, "name");
    let domain_scoped = query_get(&q, "domain_id").is_some();
    let list: Vec<Value> = Role::ALL
        .into_iter()
        .filter(|r| !domain_scoped && name.is_none_or(|n| n == r.as_str()))
        .map(|r| role_json(&base, r))
        .collect();
    Ok(Json(json!({"roles": list, "links": list_links(&base, "/identity/v3/roles")})).into_response())
}

/// `GET /identity/v3/roles/{id}`.
pub(super) async fn show_role(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    admin_caller(&svc, &headers).await?;
    let r = role_by_id(&id)?;
    Ok(Json(json!({"role": role_json(&public_base(&svc, &headers), r)})).into_response())
}

/// The user, project and role of an assignment path, each of which must exist (404).
async fn assignment_target(
    svc: &Services,
    project: &str,
    user: &str,
    role: &str,
) -> std::result::Result<Role, KeystoneError> {
    project_exists(svc, project).await?;
    user_by_id(svc, user).await?;
    role_by_id(role)
}

/// `PUT /identity/v3/projects/{p}/users/{u}/roles/{r}` (204, also when already granted).
pub(super) async fn grant_role(
    State(svc): State<Services>,
    headers: HeaderMap,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Res {
    admin_caller(&svc, &headers).await?;
    let r = assignment_target(&svc, &project, &user, &role).await?;
    if ids::grant_role(&svc.db, &Ref::Id(user.clone()), &Ref::Id(project.clone()), r).await? {
        tracing::info!(%user, %project, role = %r, "role granted");
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `HEAD /identity/v3/projects/{p}/users/{u}/roles/{r}`: 204 when assigned, 404 otherwise.
pub(super) async fn check_role(
    State(svc): State<Services>,
    headers: HeaderMap,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Res {
    admin_or_self(&svc, &headers, &user).await?;
    let r = assignment_target(&svc, &project, &user, &role).await?;
    if !direct_roles(&svc, &user, &project).await?.contains(&r) {
        return Err(assignment_not_found(&project, &user, &role));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn assignment_not_found(project: &str, user: &str, role: &str) -> KeystoneError {
    KeystoneError(Error::new(
        ErrorKind::NotFound,
        format!("Could not find role assignment with role: {role}, user or group: {user}, project, domain, or system: {project}."),
    ))
}

/// The roles assigned (not implied) to a user in a project, disabled projects included.
async fn direct_roles(svc: &Services, user: &str, project: &str) -> std::result::Result<Vec<Role>, KeystoneError> {
    Ok(svc.db.list_role_assignments(Some(user), Some(project)).await?.into_iter().map(|a| a.role).collect())
}

/// `DELETE /identity/v3/projects/{p}/users/{u}/roles/{r}` (204): the user's tokens for the
/// project end; 404 when not assigned, 409 for the deployment's last admin assignment.
pub(super) async fn revoke_role(
    State(svc): State<Services>,
    headers: HeaderMap,
    Path((project, user, role)): Path<(String, String, String)>,
) -> Res {
    admin_caller(&svc, &headers).await?;
    let r = assignment_target(&svc, &project, &user, &role).await?;
    if !ids::revoke_role(&svc.db, &Ref::Id(user.clone()), &Ref::Id(project.clone()), r).await? {
        return Err(assignment_not_found(&project, &user, &role));
    }
    tracing::info!(%user, %project, role = %r, "role revoked");
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /identity/v3/projects/{p}/users/{u}/roles`: the roles assigned there.
pub(super) async fn project_user_roles(
    State(svc): State<Services>,
    headers: HeaderMap,
    Path((project, user)): Path<(String, String)>,
) -> Res {
    admin_or_self(&svc, &headers, &user).await?;
    project_exists(&svc, &project).await?;
    user_by_id(&svc, &user).await?;
    let base = public_base(&svc, &headers);
    let list: Vec<Value> =
        direct_roles(&svc, &user, &project).await?.into_iter().map(|r| role_json(&base, r)).collect();
    let path = format!("/identity/v3/projects/{project}/users/{user}/roles");
    Ok(Json(json!({"roles": list, "links": list_links(&base, &path)})).into_response())
}

// ----- role assignments ---------------------------------------------------------------------

/// Whether a flag query parameter (`?include_names`, `?effective`) is on: present without a
/// value, or with a true one.
fn flag(q: &[(String, String)], key: &str) -> bool {
    query_get(q, key).is_some_and(|v| v.is_empty() || truthy(v))
}

fn assignment_json(base: &str, a: &RoleAssignment, role: Role, names: bool) -> Value {
    let domain = json!({"id": DOMAIN_ID, "name": DOMAIN_NAME});
    let (mut r, mut u, mut p) = (json!({"id": role.id()}), json!({"id": a.user_id}), json!({"id": a.project_id}));
    if names {
        r["name"] = json!(role.as_str());
        u["name"] = json!(a.user_name);
        u["domain"] = domain.clone();
        p["name"] = json!(a.project_name);
        p["domain"] = domain;
    }
    let mut links = json!({
        "assignment": format!("{base}/identity/v3/projects/{}/users/{}/roles/{}", a.project_id, a.user_id, a.role.id()),
    });
    if role != a.role {
        // An implied role (`?effective`) names the assigned role it comes from, as Keystone.
        links["prior_role"] = json!(format!("{base}/identity/v3/roles/{}", a.role.id()));
    }
    json!({"role": r, "user": u, "scope": {"project": p}, "links": links})
}

/// `GET /identity/v3/role_assignments`: admins see all, others their own (`?user.id=` must
/// name the caller). Filters `user.id`, `scope.project.id`, `role.id`; `include_names` adds
/// names, `effective` adds the roles an assignment implies. Only users and projects exist
/// here, so group, domain and system filters match nothing.
pub(super) async fn list_role_assignments(
    State(svc): State<Services>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Res {
    let info = caller_token(&svc, &headers).await?;
    let q = parse_query(query.as_deref())?;
    let user = query_get(&q, "user.id");
    if !is_admin(&info) && user != Some(info.user.id.as_str()) {
        return Err(forbidden(NOT_AUTHORIZED));
    }
    let project = query_get(&q, "scope.project.id");
    // `Some(None)`: a role id that names no role, which matches nothing.
    let role = query_get(&q, "role.id").map(|id| Role::ALL.into_iter().find(|r| r.id() == id));
    let none = ["group.id", "scope.domain.id", "scope.system", "scope.OS-INHERIT:inherited_to"]
        .iter()
        .any(|k| query_get(&q, k).is_some())
        || role == Some(None);
    let names = flag(&q, "include_names");
    let effective = flag(&q, "effective");
    let base = public_base(&svc, &headers);
    let mut list = Vec::new();
    if !none {
        for a in svc.db.list_role_assignments(user, project).await? {
            let roles = if effective { a.role.with_implied() } else { vec![a.role] };
            for r in roles {
                if role.is_none_or(|want| want == Some(r)) {
                    list.push(assignment_json(&base, &a, r, names));
                }
            }
        }
    }
    let path = match query.as_deref() {
        Some(q) if !q.is_empty() => format!("/identity/v3/role_assignments?{q}"),
        _ => "/identity/v3/role_assignments".to_string(),
    };
    Ok(Json(json!({"role_assignments": list, "links": list_links(&base, &path)})).into_response())
}
