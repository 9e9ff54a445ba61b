//! systemd `Type=notify` support (sd_notify(3) through the `sd-notify` crate).
//!
//! - `READY=1` is sent by [`crate::app::serve`] only once migrations ran, pools opened, jobs
//!   were recovered, exports restored and every listener (HTTP, NBD, metrics) is bound.
//! - `STATUS=` carries a one-line summary (pools, volumes, exports, jobs in flight), refreshed
//!   by the health task.
//! - `WATCHDOG=1` is sent at half of `WATCHDOG_USEC` by the health task, and only when a health
//!   check passes: a fresh task is scheduled promptly (the runtime is responsive), the database
//!   answers `SELECT 1`, and every job worker is running a job or turned its loop recently. A
//!   wedged daemon therefore stops pinging and systemd restarts it; a bare timer would not.
//! - `STOPPING=1` when a shutdown signal arrives, then `EXTEND_TIMEOUT_USEC=` every few seconds
//!   while the drain (HTTP connections, running job steps, NBD connections) lasts, bounded by
//!   [`MAX_DRAIN`] so a drain that never ends is still stopped by systemd.
//!
//! Without `NOTIFY_SOCKET` (not started by systemd) every message is a no-op.

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;
use tokio::task::JoinHandle;

use crate::jobs::RunnerHealth;
use crate::service::Services;

/// How often the status line is refreshed when no watchdog asks for more.
const STATUS_PERIOD: Duration = Duration::from_secs(10);
/// Each `EXTEND_TIMEOUT_USEC` during the drain asks for this much more time…
const EXTEND_BY: Duration = Duration::from_secs(15);
/// …and is re-sent this often…
const EXTEND_EVERY: Duration = Duration::from_secs(5);
/// …for at most this long in total.
pub const MAX_DRAIN: Duration = Duration::from_secs(300);

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Tell systemd the daemon is ready, with its first status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// Tell systemd a graceful shutdown started, and ask for time to finish it.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("draining: finishing requests, job steps and NBD connections"),
        NotifyState::ExtendTimeoutUsec(EXTEND_BY.as_micros() as u32),
    ]);
}

/// Keep asking systemd for more time while the drain lasts (abort the task when it is done).
pub fn spawn_drain_extender() -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(EXTEND_EVERY);
        tick.tick().await;
        while start.elapsed() < MAX_DRAIN {
            tick.tick().await;
            send(&[NotifyState::ExtendTimeoutUsec(EXTEND_BY.as_micros() as u32)]);
        }
    })
}

/// What the health task checks.
pub struct Health {
    /// Services (database, exports, pools).
    pub svc: Services,
    /// The job workers' liveness.
    pub runner: Arc<RunnerHealth>,
}

impl Health {
    /// Every check the watchdog ping depends on; the error says which failed.
    pub async fn check(&self) -> std::result::Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(2), tokio::spawn(async {})).await {
            Ok(Ok(())) => {}
            _ => return Err("the runtime did not run a new task within 2 s".into()),
        }
        match tokio::time::timeout(Duration::from_secs(3), self.svc.db.ping()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(format!("the database does not answer: {e}")),
            Err(_) => return Err("the database did not answer within 3 s".into()),
        }
        self.runner.check()
    }

    /// The one-line summary for `STATUS=`.
    pub async fn status_line(&self) -> String {
        let exports = self.svc.exports.as_ref().map(|e| e.count()).unwrap_or(0);
        match self.svc.db.ops_counts().await {
            Ok(c) => format!(
                "serving: {} pools, {} volumes, {} exports, {} jobs in flight",
                self.svc.pools.len(),
                c.volumes,
                exports,
                c.jobs_in_flight
            ),
            Err(e) => format!("degraded: the database does not answer ({e})"),
        }
    }
}

/// Start the health task: watchdog pings (when systemd set `WATCHDOG_USEC`) after each passed
/// check, and status line refreshes. It runs until aborted.
pub fn spawn_health_task(health: Health) -> JoinHandle<()> {
    let watchdog = sd_notify::watchdog_enabled();
    let period = match watchdog {
        Some(w) => (w / 2).clamp(Duration::from_millis(50), STATUS_PERIOD),
        None => STATUS_PERIOD,
    };
    if let Some(w) = watchdog {
        tracing::info!(watchdog_ms = w.as_millis() as u64, ping_ms = period.as_millis() as u64, "systemd watchdog on");
    }
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_status = String::new();
        let mut last_status_at = tokio::time::Instant::now();
        let mut healthy = true;
        loop {
            tick.tick().await;
            match health.check().await {
                Ok(()) => {
                    if !healthy {
                        tracing::info!("health check passes again");
                        healthy = true;
                    }
                    if watchdog.is_some() {
                        send(&[NotifyState::Watchdog]);
                    }
                }
                Err(e) => {
                    if healthy {
                        tracing::error!(reason = %e, "health check failed: no watchdog ping");
                        healthy = false;
                    }
                }
            }
            if last_status.is_empty() || last_status_at.elapsed() >= STATUS_PERIOD {
                let status = health.status_line().await;
                if status != last_status {
                    send(&[NotifyState::Status(&status)]);
                    last_status = status;
                }
                last_status_at = tokio::time::Instant::now();
            }
        }
    })
}
