//! OpenStack Cinder v2/v3 API (and the one v1 show route): routes, request parsing, views and the
//! OpenStack fault body `{"itemNotFound": {"code": 404, "message": …}}`.

pub(crate) mod actions;
mod attachments;
mod catalog;
mod list_query;
mod metadata;
mod quotas;
pub(crate) mod snapshots;
mod transfers;
mod types;
mod views;
mod volumes;

/// View helpers the EVS API reuses (links, host string).
pub(crate) mod views_shared {
    pub use super::views::{host_of, links_for, snapshot, volume_attachments, Audience, SnapshotView, ViewCtx};
}

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::error::{Error, ErrorKind};
use crate::service::Services;

/// The prefixes Cinder routes are served under.
const PREFIXES: [&str; 2] = ["/v2", "/v3"];

pub(super) fn routes() -> Router<Services> {
    let mut r = Router::new()
        .route("/v1/{p}/volumes/{id}", get(volumes::show_v1))
        .route("/v3/{p}/attachments", get(attachments::list_summary).post(attachments::create))
        .route("/v3/{p}/attachments/detail", get(attachments::list_detail))
        .route("/v3/{p}/attachments/{id}", get(attachments::show).put(attachments::update).delete(attachments::delete))
        .route("/v3/{p}/attachments/{id}/action", post(attachments::action));
    for pre in PREFIXES {
        r = r
            .route(&format!("{pre}/{{p}}/volumes"), get(volumes::list_summary).post(volumes::create))
            .route(&format!("{pre}/{{p}}/volumes/detail"), get(volumes::list_detail))
            .route(
                &format!("{pre}/{{p}}/volumes/{{id}}"),
                get(volumes::show).put(volumes::update).delete(volumes::delete),
            )
            .route(&format!("{pre}/{{p}}/volumes/{{id}}/action"), post(actions::volume_action))
            .route(&format!("{pre}/{{p}}/snapshots"), get(snapshots::list_summary).post(snapshots::create))
            .route(&format!("{pre}/{{p}}/snapshots/detail"), get(snapshots::list_detail))
            .route(
                &format!("{pre}/{{p}}/snapshots/{{id}}"),
                get(snapshots::show).put(snapshots::update).delete(snapshots::delete),
            );
        for coll in ["volumes", "snapshots"] {
            r = r
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}/metadata"),
                    get(metadata::get_all).post(metadata::merge).put(metadata::replace),
                )
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}/metadata/{{key}}"),
                    get(metadata::get_key).put(metadata::put_key).delete(metadata::delete_key),
                );
        }
        r = r
            .route(&format!("{pre}/{{p}}/types"), get(catalog::list_types).post(types::create))
            .route(&format!("{pre}/{{p}}/types/{{id}}"), get(types::show).put(types::update).delete(types::delete))
            .route(&format!("{pre}/{{p}}/types/{{id}}/extra_specs"), get(types::get_specs).post(types::add_specs))
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/extra_specs/{{key}}"),
                get(types::get_spec).put(types::put_spec).delete(types::delete_spec),
            )
            .route(&format!("{pre}/{{p}}/types/{{id}}/os-volume-type-access"), get(types::list_access))
            .route(&format!("{pre}/{{p}}/types/{{id}}/action"), post(types::action))
            .route(&format!("{pre}/{{p}}/os-availability-zone"), get(catalog::availability_zones))
            .route(&format!("{pre}/{{p}}/extensions"), get(catalog::extensions))
            .route(
                &format!("{pre}/{{p}}/os-quota-sets/{{target}}"),
                get(quotas::show).put(quotas::update).delete(quotas::reset),
            )
            .route(&format!("{pre}/{{p}}/os-quota-sets/{{target}}/defaults"), get(quotas::defaults))
            .route(
                &format!("{pre}/{{p}}/os-quota-class-sets/{{class}}"),
                get(quotas::show_class).put(quotas::update_class),
            )
            .route(&format!("{pre}/{{p}}/limits"), get(quotas::limits));
        let transfer_collections: &[&str] =
            if pre == "/v3" { &["os-volume-transfer", "volume-transfers"] } else { &["os-volume-transfer"] };
        for coll in transfer_collections {
            r = r
                .route(&format!("{pre}/{{p}}/{coll}"), get(transfers::list_summary).post(transfers::create))
                .route(&format!("{pre}/{{p}}/{coll}/detail"), get(transfers::list_detail))
                .route(&format!("{pre}/{{p}}/{coll}/{{id}}"), get(transfers::show).delete(transfers::delete))
                .route(&format!("{pre}/{{p}}/{coll}/{{id}}/accept"), post(transfers::accept));
        }
    }
    r
}

/// A domain error rendered as an OpenStack fault.
#[derive(Debug)]
pub struct CinderError(pub Error);

impl From<Error> for CinderError {
    fn from(e: Error) -> Self {
        CinderError(e)
    }
}

/// Status and fault name for an error, as Cinder's `Fault` maps them.
fn status_and_name(e: &Error) -> (StatusCode, &'static str) {
    match e.kind {
        ErrorKind::Invalid | ErrorKind::NoSpace => (StatusCode::BAD_REQUEST, "badRequest"),
        ErrorKind::Conflict if e.http_conflict => (StatusCode::CONFLICT, "conflictingRequest"),
        ErrorKind::Conflict => (StatusCode::BAD_REQUEST, "badRequest"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "itemNotFound"),
        ErrorKind::Quota => (StatusCode::PAYLOAD_TOO_LARGE, "overLimit"),
        ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "notImplemented"),
        ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "badMethod"),
        ErrorKind::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "computeFault"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "computeFault"),
    }
}

impl IntoResponse for CinderError {
    fn into_response(self) -> Response {
        let (status, name) = status_and_name(&self.0);
        if self.0.kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error");
        }
        let body = json!({ name: {"code": status.as_u16(), "message": self.0.public_message()} });
        (status, Json(body)).into_response()
    }
}
