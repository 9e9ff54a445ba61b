//! The durable job runner: workers claim job rows, run the storage steps through a driver and
//! finish the job and its resource in one transaction.
//!
//! Invariants: a job's steps are idempotent, so a job recovered after a crash simply runs again;
//! a claimed job carries a lease that the worker renews, so a job whose worker died is taken
//! over; at start this node requeues what it left running and repairs any resource stranded in
//! a transitional status without an open job.

mod execute;
mod recovery;
mod runner;

pub use recovery::recover;
/// The stop signal workers watch.
pub use runner::token as runner_token;
pub use runner::{spawn_workers, RunnerHealth, STALL_FILE_ENV};
