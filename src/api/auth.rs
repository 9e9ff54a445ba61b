//! Authentication and authorization of API requests (`auth.mode = "keystone"`).
//!
//! One middleware runs after routing (so the matched route pattern is known) and before every
//! handler:
//! 1. version discovery (`/`, `/v2`, `/v3`) and the identity API (`/identity…`, which checks its
//!    own tokens) pass untouched;
//! 2. the caller is established from an `Authorization: SDK-HMAC-SHA256 …` signature (verified
//!    over the raw body bytes) or an `X-Auth-Token` we issued; neither is 401 `EVS.5401`;
//! 3. the project in the URL must be the caller's unless the caller is admin (403
//!    `Common.0018`);
//! 4. the route's action (see [`route_action`]) must be allowed to the caller's role by the
//!    policy table (403 `EVS.5403`), before the handler changes anything.
//!
//! The identity is then visible to the handler through [`current_identity`] (a task-local set
//! around the handler) and as a request extension; `common::caller` builds the
//! [`Caller`](crate::service::Caller) from it. In `noauth` mode the middleware does nothing.

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use super::common::base_url;
use super::signature;
use crate::config::AuthMode;
use crate::error::{Error, ErrorKind, Result};
use crate::service::identity::{self, Identity};
use crate::service::{policy, Caller, Services};

/// Largest body read for signature verification or action routing (handlers limit further).
const MAX_BUFFERED_BODY: usize = 4 << 20;

tokio::task_local! {
    static IDENTITY: Identity;
}

/// The identity of the request being handled (keystone mode), if any.
pub fn current_identity() -> Option<Identity> {
    IDENTITY.try_with(Identity::clone).ok()
}

/// The caller of a request in keystone mode, acting in the URL's `project_id`.
pub(super) fn keystone_caller(project_id: &str) -> Result<Caller> {
    let id = current_identity().ok_or_else(|| identity::auth_required("Authentication required."))?;
    if id.project_id != project_id && !id.is_admin() {
        return Err(project_mismatch_error());
    }
    Ok(Caller {
        project_id: project_id.to_string(),
        user_id: Some(id.user_id.clone()),
        is_admin: id.is_admin(),
        roles: id.roles.clone(),
    })
}

fn project_mismatch_error() -> Error {
    identity::project_mismatch("The project ID in the URI is different from the project ID in the token.")
}

/// Paths that need no caller.
fn is_public(path: &str) -> bool {
    matches!(path, "/" | "/v2" | "/v2/" | "/v3" | "/v3/") || path == "/identity" || path.starts_with("/identity/")
}

/// The middleware (see the module docs).
pub(super) async fn authenticate(State(svc): State<Services>, req: Request, next: Next) -> Response {
    if svc.config.auth.mode == AuthMode::Noauth || is_public(req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let base = base_url(&svc, req.headers());
    match check(&svc, req).await {
        Ok((id, mut req)) => {
            tracing::debug!(user = %id.user_name, project = %id.project_id, method = ?id.method, "authenticated");
            req.extensions_mut().insert(id.clone());
            IDENTITY.scope(id, next.run(req)).await
        }
        Err(e) => {
            let unauthorized = e.kind == ErrorKind::Unauthorized;
            if e.kind != ErrorKind::Internal {
                tracing::info!(%path, error = %e, "request refused");
            }
            let mut resp = super::render_for_path(&path, e);
            if unauthorized {
                if let Ok(v) = HeaderValue::from_str(&format!("Keystone uri=\"{base}/identity\"")) {
                    resp.headers_mut().insert("www-authenticate", v);
                }
            }
            resp
        }
    }
}

/// Authenticate, check the project and the policy; hand back the (re-assembled) request.
async fn check(svc: &Services, req: Request) -> Result<(Identity, Request)> {
    let pattern = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let signed = req.headers().get("authorization").is_some_and(|v| signature::is_sdk_signature(v.as_bytes()));
    let needs_body = signed || (req.method() == Method::POST && req.uri().path().ends_with("/action"));
    let (parts, body) = req.into_parts();
    // The body is read only when the signature or the action depends on it; otherwise it
    // streams on to the handler untouched.
    let (bytes, body) = if needs_body {
        let b = axum::body::to_bytes(body, MAX_BUFFERED_BODY)
            .await
            .map_err(|_| Error::invalid("EVS.5400", "Malformed request body: the body is too large."))?;
        (b.clone(), Body::from(b))
    } else {
        (Bytes::new(), body)
    };

    let id = if signed {
        verify_signature(svc, &parts.method, &parts.uri, &parts.headers, &bytes).await?
    } else {
        match parts.headers.get("x-auth-token").map(|v| v.to_str().unwrap_or("")) {
            Some(token) => {
                let info = identity::validate_token(&svc.db, token.trim()).await?;
                info.identity().ok_or_else(|| {
                    identity::invalid_token("The token is not scoped to a project; ask for a project-scoped token.")
                })?
            }
            None => return Err(identity::auth_required("Authentication required.")),
        }
    };

    if let Some(pattern) = &pattern {
        let pat: Vec<&str> = pattern.split('/').skip(1).collect();
        let act: Vec<&str> = parts.uri.path().split('/').skip(1).collect();
        // Routes of both APIs are `/<version>/{p}/…`.
        if pat.len() >= 2 && pat.len() == act.len() && pat[1] == "{p}" {
            let url_project = act[1];
            if url_project != id.project_id && !id.is_admin() {
                return Err(project_mismatch_error());
            }
            let rest_pat: Vec<&str> = pat[2..].iter().map(|s| if s.starts_with('{') { "*" } else { *s }).collect();
            match route_action(&parts.method, &rest_pat, &act[2..], &bytes) {
                Action::Open => {}
                Action::Named(a) => policy::authorize(&id.roles, &a)?,
                Action::Unmapped => policy::authorize(&id.roles, "evs:admin")?,
            }
            // A project other than the caller's, named as the target of a quota call.
            if let (Some(i), false) = (rest_pat.iter().position(|s| *s == "os-quota-sets"), id.is_admin()) {
                if let Some(target) = act[2..].get(i + 1) {
                    if *target != id.project_id {
                        return Err(Error::new(
                            ErrorKind::Forbidden,
                            "Policy check failed: only admins see other projects' quotas.",
                        )
                        .with_code("EVS.5403"));
                    }
                }
            }
        }
    }
    Ok((id, Request::from_parts(parts, body)))
}

/// Verify an `SDK-HMAC-SHA256` signature (CLIENTS.md §1).
async fn verify_signature(
    svc: &Services,
    method: &Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Identity> {
    let bad = |why: &str| identity::auth_required(format!("Authentication required: {why}."));
    let value = headers.get("authorization").map(HeaderValue::as_bytes).unwrap_or_default();
    let auth = signature::parse_authorization(value).map_err(|e| bad(e.0))?;
    if !auth.signed_headers.iter().any(|h| h == signature::DATE_HEADER) {
        return Err(bad("X-Sdk-Date must be signed"));
    }
    if headers.contains_key("x-project-id") && !auth.signed_headers.iter().any(|h| h == "x-project-id") {
        return Err(bad("X-Project-Id must be signed"));
    }
    let single = |name: &str| -> std::result::Result<&[u8], signature::SigError> {
        let mut all = headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(v), None) => Ok(v.as_bytes()),
            (None, _) => Err(signature::SigError("a signed header is missing")),
            (Some(_), Some(_)) => Err(signature::SigError("a signed header is repeated")),
        }
    };
    let date_raw = single(signature::DATE_HEADER).map_err(|e| bad(e.0))?;
    let date = signature::parse_date(date_raw)
        .ok_or_else(|| identity::invalid_token("X-Sdk-Date is not a date of the form 20240101T000000Z."))?;
    let skew = (chrono::Utc::now() - date).num_seconds().unsigned_abs();
    if skew > svc.config.auth.signature_max_skew_seconds {
        return Err(identity::invalid_token(format!(
            "The request is stale: X-Sdk-Date is {skew} s away from the server's time (at most {} s allowed).",
            svc.config.auth.signature_max_skew_seconds
        )));
    }
    let canonical =
        signature::canonical_request(method.as_str(), uri.path(), uri.query(), &auth.signed_headers, single, body)
            .map_err(|e| bad(e.0))?;
    let sts = signature::string_to_sign(date_raw, &canonical);
    let project = match headers.get("x-project-id") {
        Some(v) => Some(v.to_str().map_err(|_| bad("X-Project-Id is not ASCII"))?.trim()),
        None => None,
    };
    identity::authenticate_signature(&svc.db, &svc.config, &auth.access_key, project, |sk| {
        signature::verify(sk, &sts, &auth.signature)
    })
    .await
}

/// What a route requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Any authenticated caller of the project (the reference's "Action: None").
    Open,
    /// A policy action.
    Named(String),
    /// A route this table does not know: admin-only.
    Unmapped,
}

/// The action of a request: `method` and the route pattern after `/<version>/{p}/` with
/// placeholders as `*` (`["volumes", "*", "action"]`), the actual segments at the same places,
/// and the body (read only for `…/action` routes, whose action depends on it).
pub fn route_action(method: &Method, pat: &[&str], actual: &[&str], body: &[u8]) -> Action {
    let n = |s: &str| Action::Named(s.to_string());
    let m = method.as_str();
    // Tag routes name the resource type in the path.
    let tag_kind = |i: usize| match actual.get(i).copied() {
        Some("snapshots") => "evs:snapshotTags",
        Some("backups") => "evs:backupTags",
        _ => "evs:volumeTags",
    };
    let t = |i: usize, what: &str| Action::Named(format!("{}:{what}", tag_kind(i)));
    match (m, pat) {
        // Volumes, Cinder and EVS.
        ("GET", ["volumes"] | ["volumes", "detail"]) => n("evs:volumes:list"),
        ("GET", ["cloudvolumes"] | ["cloudvolumes", "detail"] | ["os-vendor-volumes", "detail"]) => {
            n("evs:volumes:list")
        }
        ("POST", ["volumes"] | ["cloudvolumes"]) => n("evs:volumes:create"),
        ("GET", ["volumes" | "cloudvolumes" | "os-vendor-volumes", "*"]) => n("evs:volumes:get"),
        ("PUT", ["volumes" | "cloudvolumes", "*"]) => n("evs:volumes:update"),
        ("DELETE", ["volumes" | "cloudvolumes", "*"]) => n("evs:volumes:delete"),
        ("POST", ["volumes" | "cloudvolumes", "*", "action"]) => body_action(body, volume_action),
        ("GET", ["volumes", "*", "metadata"] | ["volumes", "*", "metadata", "*"]) => n("evs:volumes:get"),
        ("POST" | "PUT", ["volumes", "*", "metadata"] | ["volumes", "*", "metadata", "*"]) => n("evs:volumes:update"),
        ("DELETE", ["volumes", "*", "metadata", "*"]) => n("evs:volumes:delete"),

        // Snapshots, Cinder and EVS.
        ("GET", ["snapshots" | "cloudsnapshots"] | ["snapshots" | "cloudsnapshots", "detail"]) => {
            n("evs:snapshots:list")
        }
        ("POST", ["snapshots" | "cloudsnapshots"]) => n("evs:snapshots:create"),
        ("GET", ["snapshots" | "cloudsnapshots", "*"]) => n("evs:snapshots:get"),
        ("PUT", ["snapshots" | "cloudsnapshots", "*"]) => n("evs:snapshots:update"),
        ("DELETE", ["snapshots" | "cloudsnapshots", "*"]) => n("evs:snapshots:delete"),
        ("POST", ["cloudsnapshots" | "os-vendor-snapshots", "*", "rollback"]) => n("evs:snapshots:rollback"),
        ("POST", ["snapshots", "*", "action"]) => body_action(body, snapshot_action),
        ("GET", ["snapshots", "*", "metadata"] | ["snapshots", "*", "metadata", "*"]) => n("evs:snapshots:get"),
        ("POST" | "PUT", ["snapshots", "*", "metadata"] | ["snapshots", "*", "metadata", "*"]) => {
            n("evs:snapshots:update")
        }
        ("DELETE", ["snapshots", "*", "metadata", "*"]) => n("evs:snapshots:delete"),

        // EVS jobs.
        ("GET", ["jobs", "*"]) => n("evs:jobs:get"),

        // Tags (9.6).
        ("GET", ["cloudvolumes" | "os-vendor-volumes", "*", "tags"]) => n("evs:volumeTags:getById"),
        ("POST", ["cloudvolumes" | "os-vendor-volumes", "*", "tags", "action"]) => {
            match json_field(body, "action").as_deref() {
                Some("delete") => n("evs:volumeTags:delete"),
                _ => n("evs:volumeTags:create"),
            }
        }
        ("POST", ["cloudvolumes" | "os-vendor-volumes", "resource_instances", "action"]) => n("evs:volumeTags:get"),
        ("GET", ["cloudvolumes", "tags"]) => n("evs:volumeTags:list"),
        ("GET", ["os-vendor-tags", "*"]) => t(1, "list"),
        ("GET", ["os-vendor-tags", "*", "resource_instances"]) => t(1, "get"),
        ("GET", ["os-vendor-tags", "*", "*"] | ["os-vendor-tags", "*", "*", _]) => t(1, "getById"),
        ("POST", ["os-vendor-tags", "*", "*"]) => t(1, "create"),
        ("PUT", ["os-vendor-tags", "*", "*"] | ["os-vendor-tags", "*", "*", _]) => t(1, "update"),
        ("POST", ["os-vendor-tags", "*", "*", "action"]) => t(1, "delete"),
        ("DELETE", ["os-vendor-tags", "*", "*", _]) => t(1, "delete"),

        // Cinder v3 attachments.
        ("GET", ["attachments"] | ["attachments", "detail"]) => n("evs:attachments:list"),
        ("GET", ["attachments", "*"]) => n("evs:attachments:get"),
        ("POST", ["attachments"]) => n("evs:attachments:create"),
        ("PUT", ["attachments", "*"]) => n("evs:attachments:update"),
        ("POST", ["attachments", "*", "action"]) => n("evs:attachments:complete"),
        ("DELETE", ["attachments", "*"]) => n("evs:attachments:delete"),

        // Types, zones, extensions, quotas, limits.
        ("GET", ["types", "*", "os-volume-type-access"]) => n("evs:types:access"),
        ("POST", ["types", "*", "action"]) => n("evs:types:access"),
        ("GET", ["types", ..]) => n("evs:types:get"),
        ("POST" | "PUT" | "DELETE", ["types", ..]) => n("evs:types:manage"),
        ("GET", ["os-availability-zone"] | ["extensions"]) => Action::Open,
        ("GET", ["os-quota-sets", "*"] | ["os-quota-sets", "*", "defaults"]) => n("evs:quotas:get"),
        ("PUT", ["os-quota-sets", "*"]) => n("evs:quotas:update"),
        ("DELETE", ["os-quota-sets", "*"]) => n("evs:quotas:delete"),
        ("GET", ["os-quota-class-sets", "*"]) => n("evs:quotaClasses:get"),
        ("PUT", ["os-quota-class-sets", "*"]) => n("evs:quotaClasses:update"),
        ("GET", ["limits"]) => n("evs:limits:get"),

        // Transfers (9.7), both spellings.
        ("POST", ["os-volume-transfer" | "volume-transfers"]) => n("evs:transfers:create"),
        (
            "GET",
            ["os-volume-transfer" | "volume-transfers"] | ["os-volume-transfer" | "volume-transfers", "detail"],
        ) => n("evs:transfers:list"),
        ("GET", ["os-volume-transfer" | "volume-transfers", "*"]) => n("evs:transfers:get"),
        ("DELETE", ["os-volume-transfer" | "volume-transfers", "*"]) => n("evs:transfers:delete"),
        ("POST", ["os-volume-transfer" | "volume-transfers", "*", "accept"]) => n("evs:transfers:accept"),

        // Backups.
        ("GET", ["backups"] | ["backups", "detail"]) => n("evs:backups:list"),
        ("GET", ["backups", "*"]) => n("evs:backups:get"),
        ("POST", ["backups"]) => n("evs:backups:create"),
        ("PUT", ["backups", "*"]) => n("evs:backups:update"),
        ("DELETE", ["backups", "*"]) => n("evs:backups:delete"),
        ("POST", ["backups", "*", "restore"]) => n("evs:backups:restore"),

        _ => Action::Unmapped,
    }
}

/// The top-level keys of a JSON object body (empty when it is not one).
fn json_keys(body: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

fn json_field(body: &[u8], key: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m.get(key).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The action of an `…/action` body: the most privileged of its keys' actions (a handler
/// refuses bodies with several actions anyway; this only makes sure policy never sees less than
/// what could run). A body that names nothing known is an update the handler will reject.
fn body_action(body: &[u8], map: fn(&str) -> &'static str) -> Action {
    let keys = json_keys(body);
    let action = keys.iter().map(|k| map(k)).max_by_key(|a| policy::required_role(a)).unwrap_or(map(""));
    Action::Named(action.to_string())
}

fn volume_action(key: &str) -> &'static str {
    match key {
        "os-extend" => "evs:volumes:extend",
        "os-attach" | "os-reserve" | "os-unreserve" | "os-initialize_connection" => "evs:volumes:attach",
        "os-detach" | "os-terminate_connection" | "os-begin_detaching" | "os-roll_detaching" => "evs:volumes:detach",
        "os-show_image_metadata" => "evs:volumes:get",
        "os-volume_upload_image" => "evs:volumes:uploadImage",
        "revert" => "evs:snapshots:rollback",
        "os-retype" => "evs:volumes:retype",
        "os-reset_status" => "evs:volumes:resetStatus",
        "os-force_delete" => "evs:volumes:forceDelete",
        "os-force_detach" => "evs:volumes:forceDetach",
        "os-migrate_volume" | "os-migrate_volume_completion" => "evs:volumes:migrate",
        "os-unmanage" => "evs:volumes:manage",
        _ => "evs:volumes:update",
    }
}

fn snapshot_action(key: &str) -> &'static str {
    match key {
        "os-reset_status" | "os-update_snapshot_status" => "evs:snapshots:resetStatus",
        "os-force_delete" => "evs:snapshots:forceDelete",
        "os-unmanage" => "evs:volumes:manage",
        _ => "evs:snapshots:update",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn act(method: Method, pattern: &str, actual: &str, body: &str) -> Action {
        let pat: Vec<&str> = pattern.split('/').skip(3).map(|s| if s.starts_with('{') { "*" } else { s }).collect();
        let act: Vec<&str> = actual.split('/').skip(3).collect();
        route_action(&method, &pat, &act, body.as_bytes())
    }

    fn named(s: &str) -> Action {
        Action::Named(s.into())
    }

    #[test]
    fn routes_name_their_actions() {
        assert_eq!(act(Method::GET, "/v3/{p}/volumes/detail", "/v3/p/volumes/detail", ""), named("evs:volumes:list"));
        assert_eq!(
            act(Method::POST, "/v2.1/{p}/cloudvolumes", "/v2.1/p/cloudvolumes", ""),
            named("evs:volumes:create")
        );
        assert_eq!(act(Method::GET, "/v3/{p}/volumes/{id}", "/v3/p/volumes/x", ""), named("evs:volumes:get"));
        assert_eq!(
            act(
                Method::POST,
                "/v3/{p}/volumes/{id}/action",
                "/v3/p/volumes/x/action",
                r#"{"os-extend":{"new_size":2}}"#
            ),
            named("evs:volumes:extend")
        );
        assert_eq!(
            act(Method::POST, "/v3/{p}/volumes/{id}/action", "/v3/p/volumes/x/action", r#"{"os-reset_status":{}}"#),
            named("evs:volumes:resetStatus")
        );
        assert_eq!(
            act(
                Method::POST,
                "/v3/{p}/volumes/{id}/action",
                "/v3/p/volumes/x/action",
                r#"{"os-extend":{},"os-force_delete":{}}"#
            ),
            named("evs:volumes:forceDelete"),
            "several keys: the most privileged wins"
        );
        assert_eq!(
            act(Method::POST, "/v2/{p}/os-vendor-snapshots/{id}/rollback", "/v2/p/os-vendor-snapshots/s/rollback", ""),
            named("evs:snapshots:rollback")
        );
        assert_eq!(
            act(Method::GET, "/v2/{p}/os-vendor-tags/{rt}/{rid}", "/v2/p/os-vendor-tags/snapshots/x", ""),
            named("evs:snapshotTags:getById")
        );
        assert_eq!(
            act(
                Method::POST,
                "/v2/{p}/cloudvolumes/{id}/tags/action",
                "/v2/p/cloudvolumes/x/tags/action",
                r#"{"action":"delete","tags":[]}"#
            ),
            named("evs:volumeTags:delete")
        );
        assert_eq!(act(Method::GET, "/v1/{p}/jobs/{job_id}", "/v1/p/jobs/j", ""), named("evs:jobs:get"));
        assert_eq!(act(Method::GET, "/v3/{p}/os-availability-zone", "/v3/p/os-availability-zone", ""), Action::Open);
        assert_eq!(act(Method::GET, "/v3/{p}/os-services", "/v3/p/os-services", ""), Action::Unmapped);
    }

    #[test]
    fn every_named_action_is_in_the_policy_table() {
        let bodies = ["", "{}", r#"{"os-extend":{}}"#, r#"{"action":"delete"}"#];
        let keys = [
            "os-extend",
            "os-attach",
            "os-detach",
            "os-show_image_metadata",
            "os-volume_upload_image",
            "revert",
            "os-retype",
            "os-reset_status",
            "os-force_delete",
            "os-force_detach",
            "os-migrate_volume",
            "os-unmanage",
            "os-update_snapshot_status",
            "x",
        ];
        for k in keys {
            for a in [volume_action(k), snapshot_action(k)] {
                assert!(policy::POLICY.iter().any(|(n, _)| *n == a), "{a} is not in POLICY");
            }
        }
        let segs = [
            "volumes",
            "cloudvolumes",
            "os-vendor-volumes",
            "snapshots",
            "cloudsnapshots",
            "os-vendor-snapshots",
            "jobs",
            "os-vendor-tags",
            "attachments",
            "types",
            "os-quota-sets",
            "os-quota-class-sets",
            "limits",
            "os-volume-transfer",
            "volume-transfers",
            "backups",
            "*",
            "detail",
            "action",
            "metadata",
            "tags",
            "resource_instances",
            "rollback",
            "accept",
            "restore",
            "defaults",
            "os-volume-type-access",
        ];
        let methods = [Method::GET, Method::POST, Method::PUT, Method::DELETE];
        for m in &methods {
            for a in segs {
                for b in segs {
                    for c in segs {
                        for len in 1..=4 {
                            let pat: Vec<&str> = [a, b, c, "*"][..len].to_vec();
                            let act: Vec<&str> = pat.iter().map(|s| if *s == "*" { "volumes" } else { s }).collect();
                            for body in bodies {
                                if let Action::Named(name) = route_action(m, &pat, &act, body.as_bytes()) {
                                    assert!(
                                        policy::POLICY.iter().any(|(n, _)| *n == name),
                                        "{m} {pat:?} -> {name} is not in POLICY"
                                    );
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
