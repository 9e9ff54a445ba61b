//! The Keystone v3 subset the OpenStack clients need (`spec/CLIENTS.md` §2), under `/identity`:
//! version documents, password (and token) authentication issuing tokens with a service
//! catalog, token validation and revocation, the caller's projects, and (admins, `admin`) the
//! domain list and project create/delete tempest's credential client needs, and the user, role
//! and role-assignment routes of `openstack user|role …` (`users`).
//!
//! Errors use Keystone's body `{"error": {"code": 401, "title": "Unauthorized", "message"}}`.
//! These routes need no caller from the auth middleware: they check tokens themselves.

use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde_json::{json, Map, Value};
use sha2::{Digest, Sha256};

// Keystone admin subset (domains, project create/delete).
mod admin;
// Keystone admin subset (users, roles, role assignments).
mod users;

use super::common::{base_url, parse_query, query_get};
use crate::error::{Error, ErrorKind};
use crate::model::{Project, Role};
use crate::service::identity::{self as ids, IssuedToken, Ref, TokenInfo};
use crate::service::Services;

/// The identity API version we claim (the clients only check for `v3`).
const VERSION_ID: &str = "v3.14";
const MEDIA_TYPE: &str = "application/vnd.openstack.identity-v3+json";
const DOMAIN_ID: &str = "default";
const DOMAIN_NAME: &str = "Default";

pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/identity", get(versions))
        .route("/identity/", get(versions))
        .route("/identity/v3", get(version))
        .route("/identity/v3/", get(version))
        .route("/identity/v3/auth/tokens", get(validate).post(issue).delete(revoke))
        .route("/identity/v3/auth/projects", get(auth_projects))
        .route("/identity/v3/auth/catalog", get(auth_catalog))
        .route("/identity/v3/projects", get(list_projects).post(admin::create_project))
        .route("/identity/v3/projects/{id}", get(show_project).delete(admin::delete_project))
        .route("/identity/v3/domains", get(admin::list_domains))
        .route("/identity/v3/domains/{id}", get(admin::show_domain))
        .route("/identity/v3/users/{id}/projects", get(user_projects))
        .route("/identity/v3/users/{id}/password", post(users::change_password))
        .route("/identity/v3/users", get(users::list_users).post(users::create_user))
        .route("/identity/v3/users/{id}", get(users::show_user).patch(users::update_user).delete(users::delete_user))
        .route("/identity/v3/roles", get(users::list_roles))
        .route("/identity/v3/roles/{id}", get(users::show_role))
        .route("/identity/v3/projects/{id}/users/{u}/roles", get(users::project_user_roles))
        .route(
            "/identity/v3/projects/{id}/users/{u}/roles/{r}",
            get(users::check_role).put(users::grant_role).delete(users::revoke_role),
        )
        .route("/identity/v3/role_assignments", get(users::list_role_assignments))
}

/// A domain error in Keystone's wire format.
#[derive(Debug)]
pub struct KeystoneError(pub Error);

impl From<Error> for KeystoneError {
    fn from(e: Error) -> Self {
        KeystoneError(e)
    }
}

impl IntoResponse for KeystoneError {
    fn into_response(self) -> Response {
        let e = self.0;
        let (status, title) = match e.kind {
            ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "Forbidden"),
            ErrorKind::NotFound => (StatusCode::NOT_FOUND, "Not Found"),
            ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed"),
            ErrorKind::Conflict => (StatusCode::CONFLICT, "Conflict"),
            ErrorKind::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
            ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
            ErrorKind::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "Request Timeout"),
            ErrorKind::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "Unsupported Media Type"),
            ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
            ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
            _ => (StatusCode::BAD_REQUEST, "Bad Request"),
        };
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        let message = match e.kind {
            ErrorKind::Unauthorized => "The request you have made requires authentication.",
            _ => e.public_message(),
        };
        let resp = (status, Json(json!({"error": {"code": status.as_u16(), "title": title, "message": message}})))
            .into_response();
        let mut resp = crate::api::common::with_retry_after(resp, &e);
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert("www-authenticate", HeaderValue::from_static("Keystone"));
        }
        resp
    }
}

type Res = std::result::Result<Response, KeystoneError>;

fn bad_request(msg: impl Into<String>) -> KeystoneError {
    KeystoneError(Error::new(ErrorKind::Invalid, msg))
}

fn unauthorized() -> KeystoneError {
    KeystoneError(ids::auth_required("The request you have made requires authentication."))
}

fn forbidden(msg: &str) -> KeystoneError {
    KeystoneError(Error::new(ErrorKind::Forbidden, msg))
}

/// `http://host:port` the catalog and links point at.
fn public_base(svc: &Services, headers: &HeaderMap) -> String {
    match &svc.config.auth.public_endpoint {
        Some(u) => u.trim_end_matches('/').to_string(),
        None => base_url(svc, headers),
    }
}

fn version_doc(base: &str) -> Value {
    json!({
        "id": VERSION_ID,
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": format!("{base}/identity/v3/")}],
        "media-types": [{"base": "application/json", "type": MEDIA_TYPE}],
    })
}

async fn versions(State(svc): State<Services>, headers: HeaderMap) -> Response {
    let base = public_base(&svc, &headers);
    (StatusCode::MULTIPLE_CHOICES, Json(json!({"versions": {"values": [version_doc(&base)]}}))).into_response()
}

async fn version(State(svc): State<Services>, headers: HeaderMap) -> Json<Value> {
    Json(json!({"version": version_doc(&public_base(&svc, &headers))}))
}

// ----- request parsing ----------------------------------------------------------------------

fn obj<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn string<'a>(o: &'a Map<String, Value>, key: &str) -> std::result::Result<Option<&'a str>, KeystoneError> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(bad_request(format!("'{key}' must be a string"))),
    }
}

/// Only the `Default` domain exists.
fn check_domain(o: &Map<String, Value>) -> std::result::Result<(), KeystoneError> {
    let Some(d) = o.get("domain") else { return Ok(()) };
    let d = d.as_object().ok_or_else(|| bad_request("'domain' must be an object"))?;
    let id_ok = string(d, "id")?.is_none_or(|id| id == DOMAIN_ID);
    let name_ok = string(d, "name")?.is_none_or(|n| n.eq_ignore_ascii_case(DOMAIN_NAME));
    if id_ok && name_ok {
        Ok(())
    } else {
        Err(unauthorized())
    }
}

/// A `{"id"}` or `{"name", "domain"}` object as a reference.
fn entity_ref(o: &Map<String, Value>, what: &str) -> std::result::Result<Ref, KeystoneError> {
    check_domain(o)?;
    if let Some(id) = string(o, "id")? {
        return Ok(Ref::Id(id.to_string()));
    }
    if let Some(name) = string(o, "name")? {
        return Ok(Ref::Name(name.to_string()));
    }
    Err(bad_request(format!("Expecting to find id or name in {what}")))
}

/// The requested scope: `None` for no scope or `"unscoped"`.
fn scope_ref(auth: &Value) -> std::result::Result<Option<Ref>, KeystoneError> {
    match auth.get("scope") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s == "unscoped" => Ok(None),
        Some(Value::Object(s)) => match s.get("project").and_then(Value::as_object) {
            Some(p) => Ok(Some(entity_ref(p, "project")?)),
            None if s.contains_key("domain") || s.contains_key("system") => {
                Err(KeystoneError(ids::auth_required("only project-scoped tokens are supported")))
            }
            None => Err(bad_request("Expecting to find project in scope")),
        },
        Some(_) => Err(bad_request("'scope' must be an object")),
    }
}

// ----- tokens -------------------------------------------------------------------------------

fn fixed_id(parts: &[&str]) -> String {
    let h = Sha256::digest(parts.join(":").as_bytes());
    h.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn catalog(svc: &Services, base: &str, project_id: &str) -> Value {
    let region = &svc.config.auth.region;
    let service = |kind: &str, name: &str, url: String| {
        let endpoints: Vec<Value> = ["public", "internal", "admin"]
            .iter()
            .map(|iface| {
                json!({
                    "id": fixed_id(&[kind, iface]),
                    "interface": iface,
                    "region": region,
                    "region_id": region,
                    "url": url,
                })
            })
            .collect();
        json!({"id": fixed_id(&[kind]), "type": kind, "name": name, "endpoints": endpoints})
    };
    json!([
        service("block-storage", "cinder", format!("{base}/v3/{project_id}")),
        service("volumev3", "cinderv3", format!("{base}/v3/{project_id}")),
        service("volumev2", "cinderv2", format!("{base}/v2/{project_id}")),
        service("evs", "evs", format!("{base}/v2/{project_id}")),
        // evs: the legacy huaweicloud-sdk-python looks up `evsv2.1` (create_volume_ext,
        // resize_volume_ext) and `volume` (versions) besides `evs`.
        service("evsv2.1", "evsv2.1", format!("{base}/v2.1/{project_id}")),
        service("volume", "cinder-volume", format!("{base}/v2/{project_id}")),
        service("identity", "keystone", format!("{base}/identity")),
        // images: the built-in Glance v2 image service.
        service("image", "glance", format!("{base}/image")),
    ])
}

fn domain() -> Value {
    json!({"id": DOMAIN_ID, "name": DOMAIN_NAME})
}

fn roles_json(roles: &[Role]) -> Value {
    Value::Array(roles.iter().map(|r| json!({"id": r.id(), "name": r.as_str(), "domain_id": null})).collect())
}

fn token_body(svc: &Services, base: &str, info: &TokenInfo, with_catalog: bool) -> Value {
    let r = &info.record;
    let mut t = json!({
        "methods": r.methods.split(',').collect::<Vec<_>>(),
        "user": {"domain": domain(), "id": info.user.id, "name": info.user.name, "password_expires_at": null},
        "audit_ids": [r.audit_id],
        "expires_at": ids::keystone_time(&r.expires_at),
        "issued_at": ids::keystone_time(&r.issued_at),
    });
    if let Some(p) = &info.project {
        t["project"] = json!({"domain": domain(), "id": p.id, "name": p.name});
        t["is_domain"] = json!(false);
        t["roles"] = roles_json(&info.roles);
        if with_catalog {
            t["catalog"] = catalog(svc, base, &p.id);
        }
    }
    json!({ "token": t })
}

fn wants_catalog(query: Option<&str>) -> bool {
    parse_query(query).map(|q| !q.iter().any(|(k, _)| k == "nocatalog")).unwrap_or(true)
}

fn token_response(status: StatusCode, token: &str, body: Value) -> Response {
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(token) {
        resp.headers_mut().insert("x-subject-token", v);
    }
    resp
}

/// `POST /identity/v3/auth/tokens`: the password or token method → 201 with `X-Subject-Token`.
async fn issue(
    State(svc): State<Services>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Res {
    let v: Value = serde_json::from_slice(&body).map_err(|e| bad_request(format!("Malformed request body: {e}")))?;
    crate::api::common::check_text(&v, None).map_err(|e| bad_request(e.message))?;
    let auth = v.get("auth").ok_or_else(|| bad_request("Expecting to find auth in request body"))?;
    let identity = auth.get("identity").ok_or_else(|| bad_request("Expecting to find identity in auth"))?;
    let methods: Vec<&str> = identity
        .get("methods")
        .and_then(Value::as_array)
        .ok_or_else(|| bad_request("Expecting to find methods in identity"))?
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let scope = scope_ref(auth)?;
    let issued: IssuedToken = if methods.contains(&"password") {
        let pw = obj(identity, "password").ok_or_else(|| bad_request("Expecting to find password in identity"))?;
        let user = pw
            .get("user")
            .and_then(Value::as_object)
            .ok_or_else(|| bad_request("Expecting to find user in password"))?;
        let user_ref = entity_ref(user, "user")?;
        let password = string(user, "password")?.ok_or_else(|| bad_request("Expecting to find password in user"))?;
        let from = peer.map(|Extension(ConnectInfo(a))| a.ip());
        ids::authenticate_password(&svc.db, &svc.config, &user_ref, password, scope.as_ref(), from).await?
    } else if methods.contains(&"token") {
        let t = obj(identity, "token").ok_or_else(|| bad_request("Expecting to find token in identity"))?;
        let token = string(t, "id")?.ok_or_else(|| bad_request("Expecting to find id in token"))?;
        ids::rescope_token(&svc.db, &svc.config, token, scope.as_ref()).await.map_err(|_| unauthorized())?
    } else {
        return Err(unauthorized());
    };
    let base = public_base(&svc, &headers);
    tracing::info!(user = %issued.info.user.name, project = ?issued.info.project.as_ref().map(|p| &p.name), "token issued");
    let body = token_body(&svc, &base, &issued.info, wants_catalog(query.as_deref()));
    Ok(token_response(StatusCode::CREATED, &issued.token, body))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim).filter(|s| !s.is_empty())
}

/// The caller's token (`X-Auth-Token`), valid or 401.
async fn caller_token(svc: &Services, headers: &HeaderMap) -> std::result::Result<TokenInfo, KeystoneError> {
    let token = header(headers, "x-auth-token").ok_or_else(unauthorized)?;
    ids::validate_token(&svc.db, token).await.map_err(|_| unauthorized())
}

fn is_admin(info: &TokenInfo) -> bool {
    info.roles.contains(&Role::Admin)
}

/// The token named by `X-Subject-Token`, which the caller may look at (its own, or any for an
/// admin); 404 when it is not valid.
async fn subject_token(
    svc: &Services,
    headers: &HeaderMap,
) -> std::result::Result<(TokenInfo, TokenInfo, String), KeystoneError> {
    let caller = caller_token(svc, headers).await?;
    let subject = header(headers, "x-subject-token").ok_or_else(|| bad_request("X-Subject-Token is missing"))?;
    let info = ids::validate_token(&svc.db, subject)
        .await
        .map_err(|_| KeystoneError(Error::new(ErrorKind::NotFound, "Could not find token.")))?;
    if info.user.id != caller.user.id && !is_admin(&caller) {
        return Err(forbidden("You are not authorized to perform the requested action."));
    }
    Ok((caller, info, subject.to_string()))
}

/// `GET /identity/v3/auth/tokens` (and HEAD): validate `X-Subject-Token`.
async fn validate(State(svc): State<Services>, headers: HeaderMap, RawQuery(query): RawQuery) -> Res {
    let (_, info, subject) = subject_token(&svc, &headers).await?;
    let base = public_base(&svc, &headers);
    let body = token_body(&svc, &base, &info, wants_catalog(query.as_deref()));
    Ok(token_response(StatusCode::OK, &subject, body))
}

/// `DELETE /identity/v3/auth/tokens`: revoke `X-Subject-Token`.
async fn revoke(State(svc): State<Services>, headers: HeaderMap) -> Res {
    let (_, _, subject) = subject_token(&svc, &headers).await?;
    ids::revoke_token(&svc.db, &subject).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /identity/v3/auth/catalog`.
async fn auth_catalog(State(svc): State<Services>, headers: HeaderMap) -> Res {
    let info = caller_token(&svc, &headers).await?;
    let base = public_base(&svc, &headers);
    let cat = match &info.project {
        Some(p) => catalog(&svc, &base, &p.id),
        None => json!([]),
    };
    Ok(Json(json!({"catalog": cat, "links": {"self": format!("{base}/identity/v3/auth/catalog")}})).into_response())
}

// ----- projects -----------------------------------------------------------------------------

fn project_json(base: &str, p: &Project) -> Value {
    json!({
        "id": p.id,
        "name": p.name,
        "description": p.description.clone().unwrap_or_default(),
        "domain_id": DOMAIN_ID,
        "enabled": p.enabled,
        "is_domain": false,
        "parent_id": DOMAIN_ID,
        "tags": [],
        "options": {},
        "links": {"self": format!("{base}/identity/v3/projects/{}", p.id)},
    })
}

fn projects_response(base: &str, path: &str, projects: &[Project]) -> Response {
    let list: Vec<Value> = projects.iter().map(|p| project_json(base, p)).collect();
    Json(json!({
        "projects": list,
        "links": {"self": format!("{base}{path}"), "previous": null, "next": null},
    }))
    .into_response()
}

/// `GET /identity/v3/auth/projects`: the projects the caller may scope to.
async fn auth_projects(State(svc): State<Services>, headers: HeaderMap) -> Res {
    let info = caller_token(&svc, &headers).await?;
    let projects = svc.db.user_projects(&info.user.id).await?;
    Ok(projects_response(&public_base(&svc, &headers), "/identity/v3/auth/projects", &projects))
}

/// `GET /identity/v3/projects`: every project for an admin, the caller's own otherwise;
/// `?name=` filters.
async fn list_projects(State(svc): State<Services>, headers: HeaderMap, RawQuery(query): RawQuery) -> Res {
    let info = caller_token(&svc, &headers).await?;
    let q = parse_query(query.as_deref())?;
    let mut projects =
        if is_admin(&info) { svc.db.list_projects().await? } else { svc.db.user_projects(&info.user.id).await? };
    if let Some(name) = query_get(&q, "name") {
        projects.retain(|p| p.name == name);
    }
    Ok(projects_response(&public_base(&svc, &headers), "/identity/v3/projects", &projects))
}

/// `GET /identity/v3/projects/{id}`: a project the caller belongs to (any for an admin).
async fn show_project(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    let info = caller_token(&svc, &headers).await?;
    // A non-admin hears the same 403 for a project that does not exist as for one it has no
    // role in, so ids cannot be probed.
    if !is_admin(&info) && svc.db.user_roles(&info.user.id, &id).await?.is_empty() {
        return Err(forbidden("You are not authorized to perform the requested action."));
    }
    let not_found = || KeystoneError(Error::new(ErrorKind::NotFound, format!("Could not find project: {id}.")));
    let p = svc.db.project_by_id(&id).await?.ok_or_else(not_found)?;
    Ok(Json(json!({"project": project_json(&public_base(&svc, &headers), &p)})).into_response())
}

/// `GET /identity/v3/users/{id}/projects`: the caller's own (or any user's, for an admin).
async fn user_projects(State(svc): State<Services>, headers: HeaderMap, Path(id): Path<String>) -> Res {
    let info = caller_token(&svc, &headers).await?;
    if info.user.id != id && !is_admin(&info) {
        return Err(forbidden("You are not authorized to perform the requested action."));
    }
    let projects = svc.db.user_projects(&id).await?;
    Ok(projects_response(&public_base(&svc, &headers), &format!("/identity/v3/users/{id}/projects"), &projects))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_forms() {
        let v: Value =
            serde_json::from_str(r#"{"scope":{"project":{"name":"p","domain":{"name":"Default"}}}}"#).expect("json");
        assert_eq!(scope_ref(&v).expect("scope"), Some(Ref::Name("p".into())));
        let v: Value = serde_json::from_str(r#"{"scope":{"project":{"id":"abc"}}}"#).expect("json");
        assert_eq!(scope_ref(&v).expect("scope"), Some(Ref::Id("abc".into())));
        let v: Value = serde_json::from_str(r#"{"scope":"unscoped"}"#).expect("json");
        assert_eq!(scope_ref(&v).expect("scope"), None);
        let v: Value =
            serde_json::from_str(r#"{"scope":{"project":{"name":"p","domain":{"name":"Other"}}}}"#).expect("json");
        assert!(scope_ref(&v).is_err());
        let v: Value = serde_json::from_str(r#"{"scope":{"domain":{"id":"default"}}}"#).expect("json");
        assert!(scope_ref(&v).is_err());
    }
}
