//! Worker loop: claim, execute, repeat; sleep on the enqueue notification with a timer fallback.
//!
//! Each worker beats a [`RunnerHealth`] slot on every turn of its loop (at least every
//! [`POLL`] while idle) and marks itself busy while it executes a job, so the systemd watchdog
//! task can tell a live runner from a dead or wedged one.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

pub use self::tokio_util_shim as token;
use token::CancelToken;
use tokio::task::JoinHandle;

use super::execute::execute;
use crate::service::Services;

/// Poll interval when no notification arrives (another node may have enqueued work).
const POLL: Duration = Duration::from_millis(1000);

/// Seconds since the epoch.
pub(crate) fn epoch_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A worker whose idle loop has not turned for this long is taken for wedged.
const STALE_AFTER: Duration = Duration::from_secs(5);

/// Test hook: while the file this environment variable names exists, every worker stops at the
/// top of its loop without beating, as a wedged runner would (the watchdog test uses it).
pub const STALL_FILE_ENV: &str = "CINDERBLOCK_TEST_STALL_FILE";

fn clock() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

#[derive(Debug, Default)]
struct Slot {
    /// [`clock`] milliseconds at the last turn of the loop.
    beat: AtomicU64,
    /// Executing a job (a long job does not beat, and is not wedged for it).
    busy: AtomicBool,
}

/// Liveness of the job workers, read by the health task.
#[derive(Debug, Default)]
pub struct RunnerHealth {
    slots: Vec<Slot>,
}

impl RunnerHealth {
    fn new(workers: usize) -> Arc<RunnerHealth> {
        let now = clock();
        Arc::new(RunnerHealth {
            slots: (0..workers).map(|_| Slot { beat: AtomicU64::new(now), busy: AtomicBool::new(false) }).collect(),
        })
    }

    fn beat(&self, n: usize) {
        self.slots[n].beat.store(clock(), Ordering::Relaxed);
    }

    /// `Ok` when every worker is running a job or turned its loop recently; else which is not.
    pub fn check(&self) -> std::result::Result<(), String> {
        let now = clock();
        for (n, s) in self.slots.iter().enumerate() {
            let age = now.saturating_sub(s.beat.load(Ordering::Relaxed));
            if !s.busy.load(Ordering::Relaxed) && age > STALE_AFTER.as_millis() as u64 {
                return Err(format!("job worker {n} has not run its loop for {age} ms"));
            }
        }
        Ok(())
    }
}

/// Clears a worker's busy flag however `execute` ends (a panic included).
struct BusyGuard<'a>(&'a Slot);

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.0.beat.store(clock(), Ordering::Relaxed);
        self.0.busy.store(false, Ordering::Relaxed);
    }
}

/// Start `config.jobs.workers` workers; they stop when `stop` is cancelled.
pub fn spawn_workers(svc: Services, stop: CancelToken) -> (Vec<JoinHandle<()>>, Arc<RunnerHealth>) {
    let health = RunnerHealth::new(svc.config.jobs.workers);
    let handles = (0..svc.config.jobs.workers)
        .map(|n| {
            let svc = svc.clone();
            let stop = stop.clone();
            let health = health.clone();
            tokio::spawn(async move { worker(svc, n, stop, health).await })
        })
        .collect();
    (handles, health)
}

/// The [`STALL_FILE_ENV`] hook: wait (without beating) while the file exists.
async fn stall_hook(stop: &CancelToken) {
    let Some(path) = std::env::var_os(STALL_FILE_ENV) else { return };
    let path = std::path::PathBuf::from(path);
    let mut logged = false;
    while path.exists() && !stop.is_cancelled() {
        if !logged {
            tracing::warn!(file = %path.display(), "test hook: job worker stalled");
            logged = true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn worker(svc: Services, n: usize, stop: CancelToken, health: Arc<RunnerHealth>) {
    let owner = svc.config.node.clone();
    let lease = svc.config.jobs.lease_seconds as i64;
    loop {
        if stop.is_cancelled() {
            return;
        }
        stall_hook(&stop).await;
        health.beat(n);
        // Register interest before looking, so an enqueue between the look and the wait wakes us.
        let notified = svc.job_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match svc.db.claim_job(&owner, epoch_now(), lease).await {
            Ok(Some(job)) => {
                let slot = &health.slots[n];
                slot.busy.store(true, Ordering::Relaxed);
                let _busy = BusyGuard(slot);
                tracing::info!(worker = n, job = %job.id, kind = job.kind.as_str(), project = %job.project_id, "job started");
                let started = Instant::now();
                execute(&svc, &job).await;
                let seconds = started.elapsed().as_secs_f64();
                let outcome = match svc.db.get_job(None, &job.id).await {
                    Ok(Some(j)) => j.status.as_str(),
                    _ => "UNKNOWN",
                };
                crate::ops::metrics::observe_job(job.kind.as_str(), outcome, seconds);
                tracing::info!(
                    worker = n,
                    job = %job.id,
                    kind = job.kind.as_str(),
                    project = %job.project_id,
                    outcome,
                    duration_ms = (seconds * 1000.0).round() as u64,
                    "job finished"
                );
                continue;
            }
            Ok(None) => {}
            Err(e) => tracing::error!(worker = n, error = %e, "claiming a job failed"),
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// A minimal cancellation token (a watch channel), so shutdown needs no extra crate.
pub mod tokio_util_shim {
    use tokio::sync::watch;

    /// Cloneable stop signal.
    #[derive(Clone, Debug)]
    pub struct CancelToken {
        rx: watch::Receiver<bool>,
        tx: std::sync::Arc<watch::Sender<bool>>,
    }

    impl Default for CancelToken {
        fn default() -> Self {
            Self::new()
        }
    }

    impl CancelToken {
        /// A token not yet cancelled.
        pub fn new() -> Self {
            let (tx, rx) = watch::channel(false);
            CancelToken { rx, tx: std::sync::Arc::new(tx) }
        }
        /// Cancel every clone.
        pub fn cancel(&self) {
            let _ = self.tx.send(true);
        }
        /// Whether cancelled.
        pub fn is_cancelled(&self) -> bool {
            *self.rx.borrow()
        }
        /// Resolves once cancelled.
        pub async fn cancelled(&self) {
            let mut rx = self.rx.clone();
            let _ = rx.wait_for(|c| *c).await;
        }
    }
}
