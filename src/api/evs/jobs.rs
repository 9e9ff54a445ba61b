//! `GET /v1/{p}/jobs/{job_id}` (reference 8.1.1).

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;

use super::views;
use super::EvsError;
use crate::api::common::caller;
use crate::service::Services;

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, job_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, EvsError> {
    let caller = caller(&svc, &headers, &p)?;
    // Appendix A.1 names `Common.0011` (400) for a job id that matches no job (or another
    // project's): the EVS wire rule, so it is applied here, not in the service.
    let view = svc.get_job(&caller, &job_id).await.map_err(|e| {
        if e.kind == crate::error::ErrorKind::NotFound {
            crate::error::Error::invalid("Common.0011", e.public_message())
        } else {
            e
        }
    })?;
    Ok(Json(views::job(&view)).into_response())
}
