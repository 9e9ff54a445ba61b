//! HTTP: wire formats only. Each API (EVS, Cinder, version discovery) extracts its input, calls
//! the services with a [`Caller`](crate::service::Caller) and renders the domain result or error
//! in its own format. Nothing here touches files, devices or SQL.
//!
//! Cross-cutting layers: every response carries `X-Request-Id` and `X-Openstack-Request-Id`;
//! `/v3` requests negotiate a microversion; unknown routes and wrong methods get the same error
//! bodies as the API the path belongs to.

mod auth;
pub mod cinder;
mod common;
pub mod evs;
mod guard;
mod identity;
// images: the Glance v2 image API under /image.
mod image;
pub mod listener;
mod microversion;
mod ops;
pub mod signature;
mod snapshot_query;
// ui: the web dashboard under /ui/.
mod ui;
mod versions;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;

use crate::error::{Error, ErrorKind};
use crate::service::Services;

pub use common::RequestId;
pub use microversion::{ApiVersion, MAX_MINOR};

/// Requests received since start (the idle memory trimmer watches it).
pub static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// The whole HTTP application.
pub fn router(svc: Services) -> Router {
    Router::new()
        .merge(versions::routes())
        .merge(cinder::routes())
        .merge(evs::routes())
        .merge(identity::routes())
        .merge(ops::routes())
        .merge(image::routes())
        .merge(ui::routes(&svc))
        .fallback(fallback)
        .layer(middleware::from_fn_with_state(svc.clone(), auth::authenticate))
        .layer(middleware::from_fn(error_bodies))
        .layer(middleware::from_fn(microversion::negotiate))
        .layer(middleware::from_fn_with_state(svc.clone(), buffer_body))
        .layer(middleware::from_fn(request_id))
        .with_state(svc)
}

/// True when `path` belongs to the EVS API (its errors use the EVS body).
fn is_evs_path(path: &str) -> bool {
    path.starts_with("/v1/") && path.contains("/jobs")
        || path.starts_with("/v2.1/")
        || path.contains("/cloudvolumes")
        || path.contains("/cloudsnapshots")
        || path.contains("/os-vendor-")
}

/// Render `err` in the format of the API `path` belongs to.
fn render_for_path(path: &str, err: Error) -> Response {
    if ui::is_ui_path(path) {
        ui::error_response(err)
    } else if path == "/identity" || path.starts_with("/identity/") {
        identity::KeystoneError(err).into_response()
    } else if image::is_image_path(path) {
        image::ImageError(err).into_response()
    } else if is_evs_path(path) {
        evs::EvsError(err).into_response()
    } else {
        cinder::CinderError(err).into_response()
    }
}

async fn fallback(req: Request) -> Response {
    render_for_path(
        req.uri().path(),
        Error::new(ErrorKind::NotFound, format!("The resource could not be found: {}", req.uri().path())),
    )
}

/// axum answers a wrong method with an empty 405, and a body over the limit (or a JSON
/// extractor's wrong content type) in plain text; give them the API's error body.
async fn error_bodies(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    // An id or filter with a NUL in it names nothing, and PostgreSQL cannot even compare one.
    let raw = req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("");
    if raw.to_ascii_lowercase().contains("%00") {
        return render_for_path(&path, Error::invalid("EVS.5400", "Malformed request url: a NUL character."));
    }
    let resp = next.run(req).await;
    let plain =
        resp.headers().get("content-type").is_none_or(|v| v.to_str().is_ok_and(|t| t.starts_with("text/plain")));
    if !plain {
        return resp;
    }
    let err = match resp.status() {
        StatusCode::METHOD_NOT_ALLOWED => {
            Error::new(ErrorKind::MethodNotAllowed, format!("The method {method} is not allowed for {path}."))
        }
        StatusCode::PAYLOAD_TOO_LARGE => body_too_large(),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => unsupported_media_type(),
        _ => return resp,
    };
    render_for_path(&path, err)
}

/// Read a request's body whole, within `http.body_read_timeout_seconds` and
/// [`MAX_BODY_BYTES`], before anything else sees the request: a client sending its body a byte
/// at a time gets 408 instead of holding a connection and a task for ever, and a body over the
/// limit is 413 in the API's format whichever route it was sent to. Every route takes bodies
/// of a few KiB, so buffering costs nothing they would not buffer anyway.
async fn buffer_body(axum::extract::State(svc): axum::extract::State<Services>, req: Request, next: Next) -> Response {
    // images: image data is streamed to disk by its handler, never buffered here.
    if !common::has_body(req.headers()) || image::is_upload(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let (parts, body) = req.into_parts();
    let deadline = std::time::Duration::from_secs(svc.config.http.body_read_timeout_seconds);
    match tokio::time::timeout(deadline, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Err(_) => {
            render_for_path(&path, Error::new(ErrorKind::RequestTimeout, "The request body did not arrive in time."))
        }
        Ok(Err(_)) => render_for_path(&path, body_too_large()),
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, Body::from(bytes))).await,
    }
}

/// Largest request body any route accepts (axum's default limit, which every body extractor
/// applies; the signature check buffers at most twice that).
pub const MAX_BODY_BYTES: usize = 2 << 20;

fn body_too_large() -> Error {
    Error::new(
        ErrorKind::PayloadTooLarge,
        format!("Request is too large: a request body may be at most {MAX_BODY_BYTES} bytes."),
    )
}

/// A body that is not `application/json` (noauth mode's cross-site defence, and axum's own
/// rejection).
pub(super) fn unsupported_media_type() -> Error {
    Error::new(ErrorKind::UnsupportedMediaType, "Unsupported Content-Type: request bodies must be application/json.")
}

/// The project a keystone-authenticated request acted in (a response extension the auth
/// middleware sets, for the access log).
#[derive(Debug, Clone)]
pub(crate) struct AccessProject(pub(crate) String);

/// The URL's project (the `{p}` segment of the Cinder and EVS routes) of `path` under route
/// template `route`: the project of a `noauth` request.
fn project_in_path<'a>(route: &str, path: &'a str) -> Option<&'a str> {
    let at = route.split('/').position(|s| s == "{p}")?;
    path.split('/').nth(at).filter(|p| !p.is_empty())
}

/// Give every request an id (`req-<uuid>`), write its access-log line (method, route template,
/// status, duration, request id, project; target `cinderblock::access`), and echo the id in
/// both headers.
async fn request_id(mut req: Request<Body>, next: Next) -> Response {
    REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = RequestId(format!("req-{}", uuid::Uuid::new_v4()));
    req.extensions_mut().insert(id.clone());
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let route = req.extensions().get::<axum::extract::MatchedPath>().map(|m| m.as_str().to_string());
    let started = std::time::Instant::now();
    // Everything logged while handling the request (internal errors included) carries its id.
    let span = tracing::info_span!("request", id = %id.0);
    // actions: services read the id (user messages name the request that started a job).
    let run = crate::service::messages::REQUEST_ID.scope(id.0.clone(), next.run(req));
    let mut resp = tracing::Instrument::instrument(run, span.clone()).await;
    let route = route.as_deref().unwrap_or("unmatched");
    let status = resp.status().as_u16();
    crate::ops::metrics::observe_http(method.as_str(), route, status, started.elapsed().as_secs_f64());
    // The access log: the route template, never the raw path or query (ids are in the
    // template's place, and nothing a client sends in headers or bodies is written).
    let from_token = resp.extensions().get::<AccessProject>().map(|p| p.0.clone());
    let project = from_token.as_deref().or_else(|| project_in_path(route, &path)).unwrap_or("-");
    let duration_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
    span.in_scope(|| {
        tracing::info!(target: "cinderblock::access", %method, route, status, duration_ms, request_id = %id.0, project, "request")
    });
    if let Ok(v) = HeaderValue::from_str(&id.0) {
        resp.headers_mut().insert("x-request-id", v.clone());
        resp.headers_mut().insert("x-openstack-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn project_in_path_takes_the_url_project() {
        let p = super::project_in_path("/v3/{p}/volumes/{id}", "/v3/abc/volumes/x");
        assert_eq!(p, Some("abc"));
        assert_eq!(super::project_in_path("/identity/v3/projects/{id}", "/identity/v3/projects/x"), None);
        assert_eq!(super::project_in_path("unmatched", "/v3/abc"), None);
    }
}
