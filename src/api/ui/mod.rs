//! ui: the web dashboard under `/ui/`, server-rendered HTML (askama templates compiled into the
//! binary) with a vendored htmx 2 for live updates. Like the APIs it is wire format only: every
//! page and action calls the same service functions as the API routes, with a
//! [`Caller`](crate::service::Caller) built from a server-side session, and checks the same
//! policy actions (`src/service/policy.rs`) before it does.
//!
//! Invariants:
//! - Nothing under `/ui/` except the sign-in page and the static assets runs without a live
//!   session ([`crate::service::ui_sessions`]); a missing or ended one redirects to sign-in.
//! - Every POST carries the session's CSRF token (the sign-in form: the token of a
//!   pre-session cookie); a missing or wrong token is 403 and changes nothing.
//! - The session cookie is `HttpOnly; SameSite=Strict` (and `Secure` behind TLS); pages are
//!   `no-store` with a strict CSP; a frame cannot embed them.
//! - In noauth mode the UI says on every page that it is unauthenticated, and answers only
//!   requests whose `Host` names this machine (as the noauth API does).
//! - Errors are the domain error rendered as a page with the status an API would give; another
//!   project's volume is 404.

mod actions;
mod views;

use std::collections::HashMap;
use std::sync::OnceLock;

use askama::Template;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};

use crate::config::AuthMode;
use crate::error::{Error, ErrorKind};
use crate::service::ui_sessions::{self, UiSession};
use crate::service::{policy, Services};

/// The session cookie.
const SESSION_COOKIE: &str = "cb_session";
/// The sign-in form's pre-session cookie (its CSRF token is bound to it).
const PRE_COOKIE: &str = "cb_pre";

/// True for paths the dashboard owns (they skip the API's authentication middleware).
pub(super) fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

/// The dashboard's routes (empty when `ui.enabled` is off).
pub(super) fn routes(svc: &Services) -> Router<Services> {
    if !svc.config.ui.enabled {
        return Router::new();
    }
    Router::new()
        .route("/ui", get(|| async { see_other("/ui/") }))
        .route("/ui/", get(views::overview))
        .route("/ui/static/{name}", get(static_asset))
        .route("/ui/login", get(views::login_page).post(actions::login))
        .route("/ui/logout", post(actions::logout))
        .route("/ui/volumes", get(views::volumes).post(actions::create_volume))
        .route("/ui/volumes/new", get(views::new_volume))
        .route("/ui/volumes/{id}", get(views::volume))
        .route("/ui/volumes/{id}/live", get(views::volume_live))
        .route("/ui/volumes/{id}/delete", get(views::confirm_delete).post(actions::delete_volume))
        .route("/ui/volumes/{id}/extend", post(actions::extend_volume))
        .route("/ui/volumes/{id}/rename", post(actions::rename_volume))
        .route("/ui/volumes/{id}/snapshot", post(actions::create_snapshot))
        .route("/ui/volumes/{id}/rollback", post(actions::rollback_snapshot))
        .route("/ui/volumes/{id}/clone", post(actions::clone_volume))
        .route("/ui/volumes/{id}/attach", post(actions::attach_volume))
        .route("/ui/volumes/{id}/detach", post(actions::detach_volume))
        .route("/ui/volumes/{id}/upload", post(actions::upload_to_image))
        .route("/ui/images", get(views::images))
        .route("/ui/snapshots", get(views::snapshots))
        .route("/ui/jobs", get(views::jobs))
        .route("/ui/jobs/in-flight", get(views::jobs_in_flight))
        .route("/ui/jobs/{id}", get(views::job))
        .route("/ui/jobs/{id}/progress", get(views::job_progress))
        .route("/ui/quotas", get(views::quotas))
        .route("/ui/messages", get(views::messages))
        .route("/ui/sessions", get(views::sessions))
        .route("/ui/sessions/{h}/revoke", post(actions::revoke_session))
        .fallback(|| async { UiError::Domain(Error::not_found("No such page.")).into_response() })
        .layer(from_fn_with_state(svc.clone(), guard))
}

/// Headers every dashboard answer carries, and noauth mode's `Host` check.
async fn guard(State(svc): State<Services>, req: Request, next: Next) -> Response {
    if svc.config.auth.mode == AuthMode::Noauth {
        let host = req.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("\u{0}"));
        if host.is_some_and(|h| !super::auth::host_is_local(&svc, h)) {
            return UiError::Domain(Error::new(
                ErrorKind::Forbidden,
                "The Host header does not name this server (noauth mode answers only requests for localhost, \
                 a loopback address or the configured public_url).",
            ))
            .into_response();
        }
    }
    let is_static = req.uri().path().starts_with("/ui/static/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if !is_static {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    resp
}

// ----- static assets ----------------------------------------------------------------------

/// An asset compiled into the binary, served under a name carrying its content hash so it
/// can be cached for ever.
struct Asset {
    stem: &'static str,
    ext: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

const ASSETS: &[Asset] = &[
    Asset {
        stem: "htmx",
        ext: "min.js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("static/htmx.min.js"),
    },
    Asset {
        stem: "app",
        ext: "js",
        content_type: "text/javascript; charset=utf-8",
        bytes: include_bytes!("static/app.js"),
    },
    Asset { stem: "app", ext: "css", content_type: "text/css; charset=utf-8", bytes: include_bytes!("static/app.css") },
];

/// `(served name, asset)` of every asset, computed once.
fn asset_names() -> &'static [(String, &'static Asset)] {
    static NAMES: OnceLock<Vec<(String, &'static Asset)>> = OnceLock::new();
    NAMES.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| {
                let h = Sha256::digest(a.bytes);
                let short: String = h.iter().take(6).map(|b| format!("{b:02x}")).collect();
                (format!("{}.{short}.{}", a.stem, a.ext), a)
            })
            .collect()
    })
}

/// The URL of the asset `stem`.`ext`.
fn asset_url(stem: &str, ext: &str) -> String {
    asset_names()
        .iter()
        .find(|(_, a)| a.stem == stem && a.ext == ext)
        .map(|(n, _)| format!("/ui/static/{n}"))
        .unwrap_or_default()
}

async fn static_asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    match asset_names().iter().find(|(n, _)| *n == name) {
        Some((n, a)) => (
            [
                (header::CONTENT_TYPE, a.content_type.to_string()),
                (header::CACHE_CONTROL, "public, max-age=31536000, immutable".to_string()),
                (header::ETAG, format!("\"{n}\"")),
            ],
            a.bytes,
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, [(header::CACHE_CONTROL, "no-store")], "no such asset").into_response(),
    }
}

// ----- errors -----------------------------------------------------------------------------

/// Why a dashboard request did not get its page.
#[derive(Debug)]
pub(super) enum UiError {
    /// No live session: go and sign in (`true`: asked by htmx, which is told with
    /// `HX-Redirect`, as following a 303 inside a polled fragment would put the sign-in page
    /// in it).
    SignIn(bool),
    /// The domain error, shown as a page.
    Domain(Error),
}

impl From<Error> for UiError {
    fn from(e: Error) -> Self {
        UiError::Domain(e)
    }
}

/// The status an error page answers with (the Cinder API's choices).
fn status_of(e: &Error) -> StatusCode {
    match e.kind {
        ErrorKind::Invalid | ErrorKind::NoSpace => StatusCode::BAD_REQUEST,
        ErrorKind::Conflict if e.http_conflict => StatusCode::CONFLICT,
        ErrorKind::Conflict => StatusCode::BAD_REQUEST,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Quota | ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage<'a> {
    css: String,
    status: u16,
    reason: &'a str,
    message: &'a str,
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        match self {
            UiError::SignIn(false) => see_other("/ui/login"),
            UiError::SignIn(true) => {
                (StatusCode::UNAUTHORIZED, [("hx-redirect", "/ui/login")], "signed out").into_response()
            }
            UiError::Domain(e) => {
                if e.kind == ErrorKind::Internal {
                    tracing::error!(error = %e.message, "dashboard request failed");
                }
                let status = status_of(&e);
                let page = ErrorPage {
                    css: asset_url("app", "css"),
                    status: status.as_u16(),
                    reason: status.canonical_reason().unwrap_or("Error"),
                    message: e.public_message(),
                };
                let mut resp = (status, html(&page)).into_response();
                if let Some(s) = e.retry_after_seconds {
                    if let Ok(v) = HeaderValue::from_str(&s.to_string()) {
                        resp.headers_mut().insert(header::RETRY_AFTER, v);
                    }
                }
                resp
            }
        }
    }
}

/// Render an error met outside the dashboard's router (unknown method on a UI path).
pub(super) fn error_response(e: Error) -> Response {
    UiError::Domain(e).into_response()
}

/// What a handler returns.
pub(super) type Page = Result<Response, UiError>;

/// Render a template (a template that fails to render is a 500).
fn html<T: Template>(t: &T) -> Response {
    match t.render() {
        Ok(s) => ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], s).into_response(),
        Err(e) => UiError::Domain(Error::internal(format!("template: {e}"))).into_response(),
    }
}

/// 303 to `to` (after a form, so a reload does not post again).
fn see_other(to: &str) -> Response {
    let mut r = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

// ----- sessions, CSRF, forms --------------------------------------------------------------

/// The value of cookie `name`, if sent.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict`, scoped to `/ui`, `Secure` behind TLS;
/// `max_age` 0 deletes it.
fn set_cookie(svc: &Services, name: &str, value: &str, max_age: u64) -> String {
    let secure = if svc.config.tls.api_enabled() { "; Secure" } else { "" };
    format!("{name}={value}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}")
}

/// The live session of a request, or [`UiError::SignIn`].
async fn session(svc: &Services, headers: &HeaderMap) -> Result<UiSession, UiError> {
    let htmx = headers.contains_key("hx-request");
    let Some(secret) = cookie(headers, SESSION_COOKIE) else { return Err(UiError::SignIn(htmx)) };
    match svc.ui_session(&secret).await {
        Ok(s) => Ok(s),
        Err(e) if e.kind == ErrorKind::Unauthorized => Err(UiError::SignIn(htmx)),
        Err(e) => Err(e.into()),
    }
}

/// A POST's form fields (`application/x-www-form-urlencoded`); the last of repeated names wins.
fn parse_form(body: &Bytes) -> Result<HashMap<String, String>, Error> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .map(|v| v.into_iter().collect())
        .map_err(|_| Error::invalid("EVS.5400", "The form could not be read."))
}

fn csrf_refused() -> Error {
    Error::new(
        ErrorKind::Forbidden,
        "The form's CSRF token is missing or wrong (it may come from another site, or from a session that has \
         ended); reload the page and try again.",
    )
}

/// A POST from a live session: the session, after its CSRF token matched, and the form.
async fn post_session(
    svc: &Services,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(UiSession, HashMap<String, String>), UiError> {
    let Some(secret) = cookie(headers, SESSION_COOKIE) else { return Err(csrf_refused().into()) };
    let form = parse_form(body)?;
    if !ui_sessions::csrf_matches(&secret, form.get("csrf").map(String::as_str).unwrap_or("")) {
        return Err(csrf_refused().into());
    }
    let s = session(svc, headers).await?;
    Ok((s, form))
}

/// The caller's right to `action`, by the policy table (403 otherwise).
fn allow(s: &UiSession, action: &str) -> Result<(), UiError> {
    policy::authorize(&s.caller.roles, action).map_err(UiError::Domain)
}

/// Whether the caller may run `action` (to show or hide a control).
fn can(s: &UiSession, action: &str) -> bool {
    policy::authorize(&s.caller.roles, action).is_ok()
}

/// Lists and counts span every project in noauth mode (whose caller is every project's admin);
/// otherwise they show the session's project.
fn all_projects(svc: &Services) -> bool {
    svc.config.auth.mode == AuthMode::Noauth
}

// ----- formatting helpers shared by the templates -----------------------------------------

/// `1.5 GiB`, `12 MiB`…
fn human_bytes(b: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = b as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    if i == 0 {
        format!("{b} B")
    } else if v >= 100.0 {
        format!("{v:.0} {}", UNITS[i])
    } else {
        format!("{v:.1} {}", UNITS[i])
    }
}

/// A store timestamp shown to the minute (`2026-12-04 21:03`).
fn short_time(ts: &str) -> String {
    ts.get(..16).unwrap_or(ts).replace('T', " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(10 << 30), "10.0 GiB");
        assert_eq!(human_bytes(200 << 30), "200 GiB");
    }

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; cb_session=abc; cb_pre=x"));
        assert_eq!(cookie(&h, "cb_session").as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "cb_pre").as_deref(), Some("x"));
        assert_eq!(cookie(&h, "cb"), None);
    }

    #[test]
    fn asset_names_carry_their_hash() {
        let url = asset_url("htmx", "min.js");
        assert!(url.starts_with("/ui/static/htmx.") && url.ends_with(".min.js"), "{url}");
        assert_eq!(url.len(), "/ui/static/htmx..min.js".len() + 12);
    }
}
