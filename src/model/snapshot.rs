//! Snapshot records and statuses (reference A.4).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// A snapshot's status, spelled as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SnapshotStatus {
    /// Being taken by a job.
    Creating,
    /// Ready.
    Available,
    /// Taking it failed.
    Error,
    /// Being deleted by a job.
    Deleting,
    /// Deleting it failed.
    ErrorDeleting,
    /// Its data is being rolled back onto its volume.
    Rollbacking,
    /// Being backed up.
    BackingUp,
    /// manage: being let go of (`os-unmanage`); its data stays in the pool.
    Unmanaging,
}

impl SnapshotStatus {
    /// Every status.
    pub const ALL: [SnapshotStatus; 8] = [
        Self::Creating,
        Self::Available,
        Self::Error,
        Self::Deleting,
        Self::ErrorDeleting,
        Self::Rollbacking,
        Self::BackingUp,
        Self::Unmanaging,
    ];

    /// Statuses a snapshot may be deleted from (EVS.1047; `error_deleting` to retry).
    pub const DELETABLE: [SnapshotStatus; 3] = [Self::Available, Self::Error, Self::ErrorDeleting];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::Error => "error",
            Self::Deleting => "deleting",
            Self::ErrorDeleting => "error_deleting",
            Self::Rollbacking => "rollbacking",
            Self::BackingUp => "backing-up",
            Self::Unmanaging => "unmanaging",
        }
    }
}

impl fmt::Display for SnapshotStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SnapshotStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or(())
    }
}

/// A snapshot row plus its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// UUID, also the file name inside the pool.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creator.
    pub user_id: Option<String>,
    /// Source volume.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Size of the volume when taken, GiB.
    pub size_gb: i64,
    /// Status.
    pub status: SnapshotStatus,
    /// Pool holding its data (the volume's).
    pub pool: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags (EVS `os-vendor-tags/snapshots`); filled by the store's get and list.
    pub tags: BTreeMap<String, String>,
    /// The group snapshot this snapshot is a member of (Cinder 3.14 `group_snapshot_id`).
    pub group_snapshot_id: Option<String>,
    /// Progress set by `os-update_snapshot_status` (`None`: derived from the status).
    pub progress: Option<String>,
}
