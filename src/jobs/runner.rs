//! Worker loop: claim, execute, repeat; sleep on the enqueue notification with a timer fallback.

use std::time::Duration;

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

/// Start `config.jobs.workers` workers; they stop when `stop` is cancelled.
pub fn spawn_workers(svc: Services, stop: CancelToken) -> Vec<JoinHandle<()>> {
    (0..svc.config.jobs.workers)
        .map(|n| {
            let svc = svc.clone();
            let stop = stop.clone();
            tokio::spawn(async move { worker(svc, n, stop).await })
        })
        .collect()
}

async fn worker(svc: Services, n: usize, stop: CancelToken) {
    let owner = svc.config.node.clone();
    let lease = svc.config.jobs.lease_seconds as i64;
    loop {
        if stop.is_cancelled() {
            return;
        }
        // Register interest before looking, so an enqueue between the look and the wait wakes us.
        let notified = svc.job_notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        match svc.db.claim_job(&owner, epoch_now(), lease).await {
            Ok(Some(job)) => {
                tracing::info!(worker = n, job = %job.id, kind = job.kind.as_str(), "running job");
                execute(&svc, &job).await;
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
