//! Huawei Cloud EVS API: `cloudvolumes`, `os-vendor-volumes` and jobs, served at the root of
//! host:port (the SDK drops path prefixes). Errors are `{"error": {"code": "EVS.XXXX", "message"}}`.

mod body;
mod client_token;
mod jobs;
mod list_query;
mod retype;
mod snapshot_groups;
mod snapshot_policies;
mod snapshots;
mod snapshots_v5;
mod tags;
mod v5_body;
mod views;
mod volumes;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use crate::api::cinder::actions::volume_action_policy;
use crate::api::guard::{delete_as, get_as, post_as, put_as, Act};
use crate::error::{Error, ErrorKind};
use crate::service::Services;

pub(super) fn routes() -> Router<Services> {
    let volume_action = || post_as(Act::Body(volume_action_policy), snapshots::volume_action);
    let mut r = Router::new()
        .route("/v1/{p}/jobs/{job_id}", get_as("evs:jobs:get", jobs::show))
        .route("/v2.1/{p}/cloudvolumes", post_as("evs:volumes:create", volumes::create))
        .route("/v2.1/{p}/cloudvolumes/{id}", get_as("evs:volumes:get", volumes::show))
        .route("/v2.1/{p}/cloudvolumes/{id}/action", volume_action())
        .route("/v2/{p}/volumes/{id}/retype", post_as("evs:volumes:retype", retype::retype));
    // Cinder v3 clients reach the same EVS routes under /v3 (ENDPOINTS.md).
    for pre in ["/v2", "/v3"] {
        r = r
            .route(
                &format!("{pre}/{{p}}/cloudvolumes"),
                post_as("evs:volumes:create", volumes::create).merge(get_as("evs:volumes:list", volumes::list_summary)),
            )
            .route(&format!("{pre}/{{p}}/cloudvolumes/detail"), get_as("evs:volumes:list", volumes::list_detail))
            .route(&format!("{pre}/{{p}}/os-vendor-volumes/detail"), get_as("evs:volumes:list", volumes::list_detail))
            .route(
                &format!("{pre}/{{p}}/cloudvolumes/{{id}}"),
                get_as("evs:volumes:get", volumes::show)
                    .merge(put_as("evs:volumes:update", volumes::update))
                    .merge(delete_as("evs:volumes:delete", volumes::delete)),
            )
            .route(&format!("{pre}/{{p}}/os-vendor-volumes/{{id}}"), get_as("evs:volumes:get", volumes::show))
            .route(&format!("{pre}/{{p}}/cloudvolumes/{{id}}/action"), volume_action())
            .route(
                &format!("{pre}/{{p}}/cloudsnapshots"),
                post_as("evs:snapshots:create", snapshots::create).merge(get_as("evs:snapshots:list", snapshots::list)),
            )
            .route(&format!("{pre}/{{p}}/cloudsnapshots/detail"), get_as("evs:snapshots:list", snapshots::list))
            .route(
                &format!("{pre}/{{p}}/cloudsnapshots/{{id}}"),
                get_as("evs:snapshots:get", snapshots::show)
                    .merge(put_as("evs:snapshots:update", snapshots::update))
                    .merge(delete_as("evs:snapshots:delete", snapshots::delete)),
            )
            .route(
                &format!("{pre}/{{p}}/cloudsnapshots/{{id}}/rollback"),
                post_as("evs:snapshots:rollback", snapshots::rollback),
            )
            .route(
                &format!("{pre}/{{p}}/os-vendor-snapshots/{{id}}/rollback"),
                post_as("evs:snapshots:rollback", snapshots::rollback),
            );
    }
    r = tags::routes(r);
    r = snapshot_group_routes(r);
    r = snapshot_v5_routes(r);
    r = snapshot_policy_routes(r);
    r
}

/// EVS v5 snapshot groups (see `snapshot_groups`).
fn snapshot_group_routes(r: Router<Services>) -> Router<Services> {
    use snapshot_groups as sg;
    let base = "/v5/{p}/snapshot-groups";
    r.route(base, post_as("evs:snapshotGroups:create", sg::create))
        .route(&format!("{base}/detail"), get_as("evs:snapshotGroups:list", sg::list))
        .route(&format!("{base}/count"), get_as("evs:snapshotGroups:list", sg::count))
        .route(&format!("{base}/tags"), get_as("evs:snapshotGroups:list", sg::project_tags))
        .route(
            &format!("{base}/{{id}}"),
            get_as("evs:snapshotGroups:get", sg::show)
                .merge(put_as("evs:snapshotGroups:update", sg::update))
                .merge(delete_as("evs:snapshotGroups:delete", sg::delete)),
        )
        .route(&format!("{base}/{{id}}/tags/create"), post_as("evs:snapshotGroups:update", sg::tags_create))
        .route(&format!("{base}/{{id}}/tags/delete"), post_as("evs:snapshotGroups:update", sg::tags_delete))
        .route(&format!("{base}/{{id}}/rollback"), post_as("evs:snapshotGroups:rollback", sg::rollback))
}

/// EVS v5 standard snapshots and snapshot chains (see `snapshots_v5`).
fn snapshot_v5_routes(r: Router<Services>) -> Router<Services> {
    use snapshots_v5 as v5;
    let base = "/v5/{p}/snapshots";
    r.route(base, post_as("evs:snapshots:create", v5::create))
        .route(&format!("{base}/detail"), get_as("evs:snapshots:list", v5::list))
        .route(&format!("{base}/count"), get_as("evs:snapshots:list", v5::count))
        .route(&format!("{base}/tags"), get_as("evs:snapshotTags:list", v5::project_tags))
        .route(
            &format!("{base}/{{id}}"),
            get_as("evs:snapshots:get", v5::show)
                .merge(put_as("evs:snapshots:update", v5::update))
                .merge(delete_as("evs:snapshots:delete", v5::delete)),
        )
        .route(&format!("{base}/{{id}}/rollback"), post_as("evs:snapshots:rollback", v5::rollback))
        .route(&format!("{base}/{{id}}/tags/create"), post_as("evs:snapshotTags:create", v5::tags_create))
        .route(&format!("{base}/{{id}}/tags/delete"), post_as("evs:snapshotTags:delete", v5::tags_delete))
        .route("/v5/{p}/snapshot-chains", get_as("evs:snapshots:list", v5::list_chains))
        .route("/v5/{p}/snapshot-chains/count", get_as("evs:snapshots:list", v5::count_chains))
}

/// EVS v5 auto-snapshot policies (see `snapshot_policies`).
fn snapshot_policy_routes(r: Router<Services>) -> Router<Services> {
    use snapshot_policies as sp;
    let base = "/v5/{p}/snapshot-policies";
    r.route(
        base,
        post_as("evs:snapshotPolicies:create", sp::create).merge(get_as("evs:snapshotPolicies:list", sp::list)),
    )
    .route(&format!("{base}/count"), get_as("evs:snapshotPolicies:list", sp::count))
    .route(
        &format!("{base}/{{id}}"),
        get_as("evs:snapshotPolicies:get", sp::show)
            .merge(put_as("evs:snapshotPolicies:update", sp::update))
            .merge(delete_as("evs:snapshotPolicies:delete", sp::delete)),
    )
    .route(&format!("{base}/{{id}}/associate"), post_as("evs:snapshotPolicies:update", sp::associate))
    .route(&format!("{base}/{{id}}/disassociate"), post_as("evs:snapshotPolicies:update", sp::disassociate))
}

/// A domain error rendered in the EVS format.
#[derive(Debug)]
pub struct EvsError(pub Error);

impl From<Error> for EvsError {
    fn from(e: Error) -> Self {
        EvsError(e)
    }
}

/// The HTTP status for an error on an EVS route: the reference's table (A.1) gives most codes a
/// 400; the `EVS.5xxx` family carries its status in its number.
fn status_of(e: &Error) -> StatusCode {
    // A.1 gives the project-mismatch code a 400, whatever the kind behind it.
    if e.code == Some("Common.0018") {
        return StatusCode::BAD_REQUEST;
    }
    match e.kind {
        ErrorKind::Internal => return StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Unavailable => return StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Unauthorized => return StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => return StatusCode::FORBIDDEN,
        ErrorKind::MethodNotAllowed => return StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::NotAcceptable => return StatusCode::NOT_ACCEPTABLE,
        ErrorKind::Unsupported => return StatusCode::NOT_IMPLEMENTED,
        ErrorKind::TooManyRequests => return StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::PayloadTooLarge => return StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::RequestTimeout => return StatusCode::REQUEST_TIMEOUT,
        ErrorKind::UnsupportedMediaType => return StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => {}
    }
    match e.code {
        Some("EVS.5404") => StatusCode::NOT_FOUND,
        Some("EVS.5413") => StatusCode::PAYLOAD_TOO_LARGE,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// The EVS code for an error that has none of its own.
fn default_code(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::NotFound => "EVS.5404",
        ErrorKind::Unauthorized => "EVS.5401",
        ErrorKind::Forbidden => "EVS.5403",
        ErrorKind::Quota | ErrorKind::PayloadTooLarge => "EVS.5413",
        ErrorKind::Internal => "EVS.5500",
        _ => "EVS.5400",
    }
}

impl IntoResponse for EvsError {
    fn into_response(self) -> Response {
        let e = self.0;
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        let code = e.code.unwrap_or_else(|| default_code(e.kind));
        let status = status_of(&Error { code: Some(code), ..e.clone() });
        let resp = (status, Json(json!({"error": {"code": code, "message": e.public_message()}}))).into_response();
        crate::api::common::with_retry_after(resp, &e)
    }
}
