//! Authentication and authorization of API requests (`auth.mode = "keystone"`).
//!
//! One middleware runs after routing (so the matched route pattern is known) and before every
//! handler:
//! 1. version discovery (`/`, `/v1`, `/v2`, `/v3`) and the identity API (`/identity…`, which checks its
//!    own tokens) pass untouched;
//! 2. the caller is established from an `Authorization: SDK-HMAC-SHA256 …` signature (verified
//!    over the raw body bytes) or an `X-Auth-Token` we issued; neither is 401 `EVS.5401`;
//! 3. the project in the URL must be the caller's unless the caller is admin (`Common.0018`:
//!    400 on EVS routes as appendix A.1 gives it, 403 on Cinder's);
//! 4. after routing, the route's own guard ([`super::guard`]: each route names its policy action
//!    where it is registered) checks the action against the caller's role (403 `EVS.5403`),
//!    before the handler changes anything; an unknown path is 404 and a wrong method 405.
//!
//! The identity is then visible to the handler through [`current_identity`] (a task-local set
//! around the handler) and as a request extension; `common::caller` builds the
//! [`Caller`](crate::service::Caller) from it. In `noauth` mode the middleware does nothing.

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::Response;

use super::common::base_url;
use super::guard::Authenticated;
use super::signature;
use crate::config::AuthMode;
use crate::error::{Error, ErrorKind, Result};
use crate::service::identity::{self, Identity};
use crate::service::{Caller, Services};

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
    // Fail closed: a handler reached without its route's guard (a route registered without a
    // policy action) runs for nobody.
    if !super::guard::authorized() {
        return Err(Error::new(ErrorKind::Forbidden, "Policy check failed: this route names no policy action.")
            .with_code("EVS.5403"));
    }
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
    matches!(path, "/" | "/v1" | "/v1/" | "/v2" | "/v2/" | "/v3" | "/v3/" | "/healthz" | "/readyz")
        || path == "/identity"
        || path.starts_with("/identity/")
        || super::image::is_public(path)
        // ui: the dashboard authenticates by its own session cookie (see `super::ui`).
        || super::ui::is_ui_path(path)
}

/// The middleware (see the module docs).
pub(super) async fn authenticate(State(svc): State<Services>, req: Request, next: Next) -> Response {
    if is_public(req.uri().path()) {
        return next.run(req).await;
    }
    if svc.config.auth.mode == AuthMode::Noauth {
        if let Err(e) = noauth_request_check(&svc, &req) {
            tracing::info!(path = %req.uri().path(), error = %e, "request refused");
            return super::render_for_path(req.uri().path(), e);
        }
        let mut req = req;
        req.extensions_mut().insert(Authenticated::Noauth);
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let base = base_url(&svc, req.headers());
    match check(&svc, req).await {
        Ok((id, mut req)) => {
            tracing::debug!(user = %id.user_name, project = %id.project_id, method = ?id.method, "authenticated");
            req.extensions_mut().insert(id.clone());
            req.extensions_mut().insert(Authenticated::Keystone(id.clone()));
            let project = super::AccessProject(id.project_id.clone());
            let mut resp = IDENTITY.scope(id, next.run(req)).await;
            // For the access log, which runs outside this middleware.
            resp.extensions_mut().insert(project);
            resp
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

/// `noauth` trusts the URL's project, so it must at least know the request came from a client
/// on this machine that meant to send it, not from a web page open in a browser here:
/// - a body must be declared `application/json`: a cross-site form or `fetch` without a CORS
///   preflight can only send `text/plain`, form or multipart bodies;
/// - on a loopback listener, the `Host` must name this machine (`localhost`, a loopback
///   address, or the configured public URL's host): a page whose own name resolves to
///   127.0.0.1 (DNS rebinding) still sends its own name.
fn noauth_request_check(svc: &Services, req: &Request) -> Result<()> {
    let headers = req.headers();
    if svc.config.listen.ip().is_loopback() {
        let host = headers.get(axum::http::header::HOST).map(|v| v.to_str().unwrap_or("\u{0}"));
        if let Some(host) = host {
            if !host_is_local(svc, host) {
                return Err(Error::new(
                    ErrorKind::Forbidden,
                    "The Host header does not name this server (noauth mode answers only requests for \
                     localhost, a loopback address or the configured public_url).",
                ));
            }
        }
    }
    let writes = matches!(*req.method(), Method::POST | Method::PUT | Method::PATCH);
    // images: image data and JSON patches have their own media types, which a cross-site
    // request cannot send without a CORS preflight either.
    if writes && super::common::has_body(headers) && !is_json(headers) && !is_image_media(req) {
        return Err(super::unsupported_media_type());
    }
    Ok(())
}

/// images: an `/image` request with the upload or JSON-patch media type.
fn is_image_media(req: &Request) -> bool {
    let t = req.headers().get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let t = t.split(';').next().unwrap_or("").trim();
    super::image::is_image_path(req.uri().path())
        && (t.eq_ignore_ascii_case("application/octet-stream") || t.eq_ignore_ascii_case(super::image::JSON_PATCH))
}

/// `Content-Type: application/json` (parameters such as `charset` allowed).
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|t| t.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
}

/// The host part of a `Host` header or URL authority (`name`, `1.2.3.4`, `::1`), lower case.
fn host_part(authority: &str) -> String {
    let a = authority.trim();
    let host = if let Some(rest) = a.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match a.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => a,
        }
    };
    host.to_ascii_lowercase()
}

pub(super) fn host_is_local(svc: &Services, host: &str) -> bool {
    let h = host_part(host);
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    if h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()) {
        return true;
    }
    [svc.config.public_url.as_deref(), svc.config.auth.public_endpoint.as_deref()].into_iter().flatten().any(|url| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let authority = rest.split('/').next().unwrap_or("");
        !authority.is_empty() && host_part(authority) == h
    })
}

/// Authenticate and check the URL's project; hand back the (re-assembled) request. The route's
/// policy action is checked later, by its guard.
async fn check(svc: &Services, req: Request) -> Result<(Identity, Request)> {
    let pattern = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string());
    let signed = req.headers().get("authorization").is_some_and(|v| signature::is_sdk_signature(v.as_bytes()));
    let (parts, body) = req.into_parts();
    // The body is read only when the signature covers it; otherwise it streams on untouched.
    let (bytes, body) = if signed {
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
    // Host binds the signature to this endpoint (the SDK always signs it).
    if !auth.signed_headers.iter().any(|h| h == "host") {
        return Err(bad("Host must be signed"));
    }
    signature::check_unambiguous(uri.path(), uri.query()).map_err(|e| bad(e.0))?;
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
    let id = identity::authenticate_signature(&svc.db, &svc.config, &auth.access_key, project, |sk| {
        signature::verify(sk, &sts, &auth.signature)
    })
    .await?;
    // A state-changing request is accepted once per signature: a captured POST replayed
    // inside the window would otherwise act again. Claimed only after the signature verified,
    // so nobody can block a request by claiming its signature first. Reads (GET/HEAD) are not
    // cached: replaying one changes nothing, and a client may legitimately repeat a read within
    // the same second (the date has one-second resolution), which gives the same signature.
    if !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        // Clamped: a skew beyond a year is a misconfiguration, not a reason to overflow.
        let window = chrono::Duration::seconds(svc.config.auth.signature_max_skew_seconds.min(366 * 86_400) as i64);
        let expires = (date + window).format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
        if !svc.db.claim_signature(&signature::hex(&auth.signature), &expires, &crate::model::now_timestamp()).await? {
            return Err(identity::invalid_token(
                "The request was already received: a signed request that changes something is accepted once; sign it again.",
            ));
        }
    }
    Ok(id)
}
