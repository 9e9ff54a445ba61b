//! Operations: what systemd, monitoring and log shippers see of the daemon. [`systemd`] sends
//! `READY=1`, `STATUS=`, watchdog pings and `STOPPING=1` over `NOTIFY_SOCKET`, driven by a
//! health task that checks the runtime, the database and the job runner.
//!
//! This module sits beside [`crate::app`]: it reads the services and the runner, and no layer
//! below depends on it.

pub mod systemd;

use std::sync::atomic::{AtomicBool, Ordering};

static DRAINING: AtomicBool = AtomicBool::new(false);

/// Mark the daemon as shutting down (`/readyz` answers 503 from then on).
pub fn set_draining() {
    DRAINING.store(true, Ordering::Relaxed);
}

/// Whether a graceful shutdown has started.
pub fn is_draining() -> bool {
    DRAINING.load(Ordering::Relaxed)
}
