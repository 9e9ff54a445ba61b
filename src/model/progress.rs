//! Progress of the job that is running: long storage steps (full copies, image conversions and
//! uploads) report how far they are, and the job runner records it in the job row, where the
//! EVS job view, Cinder's fields, `cinderblock job show` and the dashboard read it.
//!
//! The storage code runs on blocking threads, far below the job runner, and reports through a
//! thread-local handle rather than a parameter, so the `Driver` trait and the copy helpers keep
//! their signatures and any driver's copy reports without knowing about jobs. The runner makes
//! one [`Progress`] per job execution and makes it current in the job's task
//! ([`scope`]); [`spawn_blocking`] carries it onto the blocking thread. Outside a job every
//! report is a no-op.
//!
//! The same handle carries the job's copy limit (`jobs.copy_bps_limit`, Cinder's
//! `volume_copy_bps_limit`): copy loops call [`throttle`] per chunk read.
//!
//! Invariants: `done ≤ total` in what [`Progress::snapshot`] returns; a report never blocks or
//! allocates (two relaxed atomic stores), so copy loops may report every chunk; only
//! [`throttle`] sleeps, and only on a blocking thread of a job with a limit.

use std::cell::RefCell;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// How far one job's storage step is, in units the reporter chooses (bytes, or hundredths of a
/// percent for qemu-img). `total == 0`: nothing reported yet.
#[derive(Debug)]
pub struct Progress {
    done: AtomicU64,
    total: AtomicU64,
    /// Bytes the job's copies read so far (for [`throttle`]).
    copied: AtomicU64,
    /// Bytes per second the job's copies may read; 0 = unlimited.
    limit_bps: u64,
    started: std::time::Instant,
}

impl Progress {
    /// A new handle with nothing reported and no copy limit.
    pub fn new() -> Arc<Progress> {
        Progress::with_copy_limit(0)
    }

    /// A new handle whose copies read at most `limit_bps` bytes per second (0 = unlimited).
    pub fn with_copy_limit(limit_bps: u64) -> Arc<Progress> {
        Arc::new(Progress {
            done: AtomicU64::new(0),
            total: AtomicU64::new(0),
            copied: AtomicU64::new(0),
            limit_bps,
            started: std::time::Instant::now(),
        })
    }

    /// Record `done` of `total`.
    pub fn set(&self, done: u64, total: u64) {
        self.total.store(total, Ordering::Relaxed);
        self.done.store(done.min(total), Ordering::Relaxed);
    }

    /// `(done, total)`, or `None` when nothing was reported.
    pub fn snapshot(&self) -> Option<(u64, u64)> {
        let total = self.total.load(Ordering::Relaxed);
        (total > 0).then(|| (self.done.load(Ordering::Relaxed).min(total), total))
    }
}

/// Whole percent of `done` out of `total`, rounded down (100 only when complete).
pub fn percent(done: u64, total: u64) -> u8 {
    if total == 0 {
        return 0;
    }
    ((done.min(total) as u128 * 100) / total as u128) as u8
}

tokio::task_local! {
    static TASK: Arc<Progress>;
}

thread_local! {
    static THREAD: RefCell<Option<Arc<Progress>>> = const { RefCell::new(None) };
}

/// Run `fut` with `p` as the current job's progress (the job runner does this per job).
pub async fn scope<F: Future>(p: Arc<Progress>, fut: F) -> F::Output {
    TASK.scope(p, fut).await
}

/// The current job's progress: the task's (async code) or the thread's (inside
/// [`spawn_blocking`]).
pub fn current() -> Option<Arc<Progress>> {
    TASK.try_with(Arc::clone).ok().or_else(|| THREAD.with(|t| t.borrow().clone()))
}

/// Report `done` of `total` to the current job, if any.
pub fn report(done: u64, total: u64) {
    if let Some(p) = current() {
        p.set(done, total);
    }
}

/// A copy loop read `bytes` more: with a copy limit on the current job, sleep (this is a
/// blocking thread) until the job's average read rate is back under the limit. Called per
/// chunk by the copy helpers; a no-op outside a job or without a limit.
pub fn throttle(bytes: u64) {
    let Some(p) = current() else { return };
    if p.limit_bps == 0 {
        return;
    }
    let copied = p.copied.fetch_add(bytes, Ordering::Relaxed) + bytes;
    let due = std::time::Duration::from_secs_f64(copied as f64 / p.limit_bps as f64);
    if let Some(ahead) = due.checked_sub(p.started.elapsed()) {
        std::thread::sleep(ahead);
    }
}

/// `tokio::task::spawn_blocking` that carries the current job's progress onto the blocking
/// thread, so storage code running there reports to the job.
pub fn spawn_blocking<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let p = current();
    tokio::task::spawn_blocking(move || {
        // Restore what the pooled thread had before, whatever `f` does (a panic included).
        struct Reset(Option<Arc<Progress>>);
        impl Drop for Reset {
            fn drop(&mut self) {
                let prev = self.0.take();
                THREAD.with(|t| *t.borrow_mut() = prev);
            }
        }
        let _reset = Reset(THREAD.with(|t| std::mem::replace(&mut *t.borrow_mut(), p)));
        f()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reports_reach_the_job_from_blocking_threads_and_nowhere_else() {
        // Outside a job: a no-op.
        report(1, 2);
        assert!(current().is_none());
        let p = Progress::new();
        scope(p.clone(), async {
            report(5, 10);
            spawn_blocking(|| report(7, 10)).await.expect("join");
        })
        .await;
        assert_eq!(p.snapshot(), Some((7, 10)));
        // The blocking thread does not keep the handle.
        spawn_blocking(|| assert!(current().is_none())).await.expect("join");
        assert_eq!(percent(7, 10), 70);
        assert_eq!(percent(9_999, 10_000), 99);
        assert_eq!(percent(3, 0), 0);
        p.set(12, 10);
        assert_eq!(p.snapshot(), Some((10, 10)));
    }

    #[tokio::test]
    async fn throttle_holds_a_copy_to_its_limit() {
        let p = Progress::with_copy_limit(8 << 20);
        let t = std::time::Instant::now();
        scope(p, async {
            // 4 MiB at 8 MiB/s: at least half a second.
            spawn_blocking(|| (0..4).for_each(|_| throttle(1 << 20))).await.expect("join");
        })
        .await;
        assert!(t.elapsed() >= std::time::Duration::from_millis(450), "{:?}", t.elapsed());
        // Without a job or a limit it never waits.
        let t = std::time::Instant::now();
        throttle(1 << 40);
        assert!(t.elapsed() < std::time::Duration::from_millis(50));
    }
}
