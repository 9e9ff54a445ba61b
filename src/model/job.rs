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
    /// Delete one volume (and, with cascade, its snapshots).
    DeleteVolume,
    /// Grow a volume.
    ExtendVolume,
    /// Take a snapshot.
    CreateSnapshot,
    /// Take every member snapshot of a group snapshot (Cinder) or snapshot group (EVS) at one
    /// moment: the members' exports are quiesced while they are taken.
    CreateGroupSnapshot,
    /// Delete a snapshot.
    DeleteSnapshot,
    /// Roll a snapshot back onto its volume.
    RollbackSnapshot,
    /// Retype with migration: copy the volume into another pool, then switch type and pool.
    RetypeVolume,
    /// Admin migration: the same copy and switch, the type unchanged.
    MigrateVolume,
    /// images: copy a volume into an image (`os-volume_upload_image`).
    UploadImage,
}

impl JobKind {
    /// The wire name (`job_type`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreateVolume => "createVolume",
            Self::BatchCreateVolume => "batchCreateVolume",
            Self::DeleteVolume => "deleteVolume",
            Self::ExtendVolume => "extendVolume",
            Self::CreateSnapshot => "createSnapshot",
            Self::CreateGroupSnapshot => "createGroupSnapshot",
            Self::DeleteSnapshot => "deleteSnapshot",
            Self::RollbackSnapshot => "rollbackSnapshot",
            Self::RetypeVolume => "retypeVolume",
            Self::MigrateVolume => "migrateVolume",
            Self::UploadImage => "uploadImage",
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
            "extendVolume" => Ok(Self::ExtendVolume),
            "createSnapshot" => Ok(Self::CreateSnapshot),
            "createGroupSnapshot" => Ok(Self::CreateGroupSnapshot),
            "deleteSnapshot" => Ok(Self::DeleteSnapshot),
            "rollbackSnapshot" => Ok(Self::RollbackSnapshot),
            "retypeVolume" => Ok(Self::RetypeVolume),
            "migrateVolume" => Ok(Self::MigrateVolume),
            "uploadImage" => Ok(Self::UploadImage),
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
    /// Kind-specific input (JSON text): the snapshot id, the new size…
    pub payload: Option<String>,
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
    /// How far its storage step is, `(done, total)` in the reporter's units, when it reported
    /// ([`crate::model::progress`]).
    pub progress: Option<(i64, i64)>,
}

impl Job {
    /// Whole percent done: 100 once it succeeded, the reported share while it runs, `None`
    /// when nothing was reported.
    pub fn progress_percent(&self) -> Option<u8> {
        if self.status == JobStatus::Success {
            return Some(100);
        }
        self.progress.map(|(d, t)| crate::model::progress::percent(d.max(0) as u64, t.max(0) as u64))
    }
}

/// Kind-specific job input, stored as JSON in the job row.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct JobPayload {
    /// Snapshot to take, delete or roll back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_id: Option<String>,
    /// Target size in GiB of an extend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_size_gb: Option<i64>,
    /// Status to return to after an extend (`available` or `in-use`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restore_status: Option<String>,
    /// A volume delete also deletes the volume's snapshots.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cascade: bool,
    /// The API request that enqueued the job (named by the user message of a failure).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// No pool satisfies the volume type's capabilities: the create fails without storage
    /// work, as Cinder's scheduler fails it ("no valid backend").
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub no_valid_backend: bool,
    /// Retype: the new volume type id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_type_id: Option<String>,
    /// Retype with migration: the pool the volume moves to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dest_pool: Option<String>,
    /// images: the image a new volume is made from, or the image an upload writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// images: an upload's target disk format.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_format: Option<String>,
    /// manage: a create adopts this unmanaged storage of the pool (`source-name`) instead of
    /// allocating.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_ref: Option<String>,
    /// manage: a delete lets go of the storage (`os-unmanage`) instead of destroying it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unmanage: bool,
}

impl Job {
    /// The decoded payload (empty when none or unreadable).
    pub fn payload(&self) -> JobPayload {
        self.payload.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default()
    }
}
