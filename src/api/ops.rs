//! Operations routes on the API port: `GET /healthz` and `GET /readyz` (no authentication,
//! for load balancers and probes) and `GET /metrics` (policy action `cinderblock:metrics:get`,
//! admin: the figures span every project). `[metrics] listen` serves the same three on their
//! own address without authentication ([`crate::ops::serve_metrics`]).

use axum::routing::get;
use axum::Router;

use super::guard::get_as;
use crate::service::Services;

pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/healthz", get(crate::ops::healthz_handler))
        .route("/readyz", get(crate::ops::readyz_handler))
        .route("/metrics", get_as("cinderblock:metrics:get", crate::ops::metrics_handler))
}
