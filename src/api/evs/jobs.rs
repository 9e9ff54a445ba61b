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
    let view = svc.get_job(&caller, &job_id).await?;
    Ok(Json(views::job(&view)).into_response())
}
