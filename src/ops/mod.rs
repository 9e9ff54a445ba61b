//! Operations: what systemd, monitoring and log shippers see of the daemon. [`systemd`] sends
//! `READY=1`, `STATUS=`, watchdog pings and `STOPPING=1` over `NOTIFY_SOCKET`, driven by a
//! health task that checks the runtime, the database and the job runner.
//!
//! This module sits beside [`crate::app`]: it reads the services and the runner, and no layer
//! below depends on it.

pub mod systemd;

use std::sync::atomic::{AtomicBool, Ordering};

static DRAINING: AtomicBool = AtomicBool::new(false);

/// When the daemon started serving (for `uptime_seconds` in `/readyz`).
static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();

/// Record the start time; called once by `serve` before it listens.
pub fn mark_started() {
    let _ = STARTED.set(std::time::Instant::now());
}

pub mod cli;

/// Mark the daemon as shutting down (`/readyz` answers 503 from then on).
pub fn set_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// Whether a graceful shutdown has started.
pub fn is_draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}

pub mod metrics;

use std::time::Duration;

use serde_json::{json, Value};

use crate::service::Services;

/// `/readyz`: whether this node should receive traffic, and each check's result. Ready when
/// the database answers within 2 s, every pool's storage answers, and no shutdown started.
pub async fn readiness(svc: &Services) -> (bool, Value) {
    let database = match tokio::time::timeout(Duration::from_secs(2), svc.db.ping()).await {
        Ok(Ok(())) => "ok".to_string(),
        Ok(Err(e)) => format!("failed: {e}"),
        Err(_) => "failed: no answer within 2 s".to_string(),
    };
    let pools: Vec<_> = svc.pools.values().cloned().collect();
    let pool_checks = tokio::task::spawn_blocking(move || {
        pools
            .iter()
            .map(|p| {
                let (r, cap) = match p.driver.capacity() {
                    Ok(c) => ("ok".to_string(), json!({"total_bytes": c.total_bytes, "free_bytes": c.free_bytes})),
                    Err(e) => (format!("failed: {e}"), Value::Null),
                };
                ((p.config.name.clone(), r), (p.config.name.clone(), cap))
            })
            .unzip::<_, _, std::collections::BTreeMap<_, _>, std::collections::BTreeMap<_, _>>()
    })
    .await
    .unwrap_or_default();
    let (pool_checks, capacity) = pool_checks;
    let draining = is_draining();
    let ready = database == "ok" && pool_checks.values().all(|r| r == "ok") && !draining;
    // What only the running daemon knows, for `cinderblock status`.
    let uptime = STARTED.get().map(|t| t.elapsed().as_secs()).unwrap_or(0);
    let exports = svc.exports.as_ref().map(|e| e.count()).unwrap_or(0);
    let body = json!({
        "status": if ready { "ready" } else { "not ready" },
        "checks": {"database": database, "pools": pool_checks, "draining": draining},
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": uptime,
        "exports": exports,
        "pool_capacity": capacity,
    });
    (ready, body)
}

/// Serve `/metrics`, `/healthz` and `/readyz` (no authentication) on `listener` until
/// `shutdown` completes: the `[metrics] listen` address.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    svc: Services,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    use axum::routing::get;
    let app = axum::Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz_handler))
        .route("/readyz", get(readyz_handler))
        .with_state(svc);
    if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
        tracing::error!(error = %e, "the metrics listener failed");
    }
}

/// `GET /metrics`: OpenMetrics text when the scraper accepts it (Prometheus does), else the
/// classic Prometheus text format.
pub async fn metrics_handler(
    axum::extract::State(svc): axum::extract::State<Services>,
    headers: axum::http::HeaderMap,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let openmetrics = headers
        .get(axum::http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/openmetrics-text"));
    match metrics::render(&svc).await {
        Ok(text) if openmetrics => ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE)], text).into_response(),
        Ok(text) => {
            let text = metrics::to_prometheus_text(&text);
            ([(axum::http::header::CONTENT_TYPE, metrics::CONTENT_TYPE_PROMETHEUS)], text).into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot render metrics");
            (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics\n").into_response()
        }
    }
}

/// `GET /healthz`: the process is alive and answering.
pub async fn healthz_handler() -> axum::Json<Value> {
    axum::Json(json!({"status": "alive"}))
}

/// `GET /readyz`: 200 when [`readiness`] says ready, else 503, with the checks.
pub async fn readyz_handler(axum::extract::State(svc): axum::extract::State<Services>) -> axum::response::Response {
    use axum::response::IntoResponse;
    let (ready, body) = readiness(&svc).await;
    let status = if ready { axum::http::StatusCode::OK } else { axum::http::StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(body)).into_response()
}
