//! Durable job records: what the runner executes and `GET /v1/{p}/jobs/{id}` shows.

use std::fmt;
use std::str::FromStr;

/// EVS job status (reference 8.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// Queued.
    Init,
    /// Claimed by a worker.
    Running,
    /// Done.
    Success,
    /// Failed; `error_code`/`fail_reason` say why.
    Fail,
}

impl JobStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Init => "INIT",
            Self::Running => "RUNNING",
            Self::Success => "SUCCESS",
            Self::Fail => "FAIL",
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for JobStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "INIT" => Ok(Self::Init),
            "RUNNING" => Ok(Self::Running),
            "SUCCESS" => Ok(Self::Success),
            "FAIL" => Ok(Self::Fail),
            _ => Err(()),
        }
    }
}

/// The closed set of job kinds; the string is the EVS `job_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// Create one volume (also each sub-job of a batch).
    CreateVolume,
    /// Parent of several `CreateVolume` sub-jobs; does no storage work itself.
    BatchCreateVolume,
    /// Delete one volume.
    DeleteVolume,
}

impl JobKind {
    /// The wire name (`job_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateVolume => "createVolume",
            Self::BatchCreateVolume => "batchCreateVolume",
            Self::DeleteVolume => "deleteVolume",
        }
    }
}

impl FromStr for JobKind {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "createVolume" => Ok(Self::CreateVolume),
            "batchCreateVolume" => Ok(Self::BatchCreateVolume),
            "deleteVolume" => Ok(Self::DeleteVolume),
            _ => Err(()),
        }
    }
}

/// A job row.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// 32 hex digits, as EVS prints job ids.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Kind.
    pub kind: JobKind,
    /// Parent job for batch sub-jobs.
    pub parent_id: Option<String>,
    /// Status.
    pub status: JobStatus,
    /// The volume this job works on (none for a batch parent).
    pub volume_id: Option<String>,
    /// EVS `entities` (JSON object text), kept so the job reads the same after the volume is gone.
    pub entities: String,
    /// EVS error code when failed.
    pub error_code: Option<String>,
    /// Why it failed.
    pub fail_reason: Option<String>,
    /// When it was queued.
    pub begin_time: String,
    /// When it finished.
    pub end_time: Option<String>,
}
