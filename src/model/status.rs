//! Volume statuses and the transitions the services allow.

use std::fmt;
use std::str::FromStr;

/// A volume's status, spelled as on the wire (reference A.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VolumeStatus {
    /// Being created by a job.
    Creating,
    /// Ready for use.
    Available,
    /// Attached.
    InUse,
    /// Creation failed.
    Error,
    /// Being attached.
    Attaching,
    /// Being detached.
    Detaching,
    /// Grown by a job.
    Extending,
    /// Growing failed.
    ErrorExtending,
    /// Being deleted by a job.
    Deleting,
    /// Deletion failed.
    ErrorDeleting,
    /// Restoring from a backup failed.
    ErrorRestoring,
    /// Rolled back to a snapshot by a job.
    Rollbacking,
    /// Rollback failed.
    ErrorRollbacking,
    /// Offered to another project.
    AwaitingTransfer,
    /// Reserved for an attachment.
    Reserved,
    /// Its type is changing (`os-retype`); with a migration, its data is moving to another pool.
    Retyping,
    /// Set by an admin (`os-reset_status`) while they work on it; no job uses it.
    Maintenance,
    /// images: its data is being written from an image (conversion into the cache, then a clone).
    Downloading,
    /// images: its data is being copied into an image (`os-volume_upload_image`).
    Uploading,
    /// manage: being let go of (`os-unmanage`): its data moves out of our bookkeeping.
    Unmanaging,
    /// manage: letting go of it failed.
    ErrorUnmanaging,
}

impl VolumeStatus {
    /// Every status, for parsing and filters.
    pub const ALL: [VolumeStatus; 21] = [
        Self::Creating,
        Self::Available,
        Self::InUse,
        Self::Error,
        Self::Attaching,
        Self::Detaching,
        Self::Extending,
        Self::ErrorExtending,
        Self::Deleting,
        Self::ErrorDeleting,
        Self::ErrorRestoring,
        Self::Rollbacking,
        Self::ErrorRollbacking,
        Self::AwaitingTransfer,
        Self::Reserved,
        Self::Retyping,
        Self::Maintenance,
        Self::Downloading,
        Self::Uploading,
        Self::Unmanaging,
        Self::ErrorUnmanaging,
    ];

    /// Statuses a volume may be deleted from (EVS.1046 lists them; Cinder adds
    /// `error_deleting` so a failed delete can be retried).
    pub const DELETABLE: [VolumeStatus; 7] = [
        Self::Available,
        Self::Error,
        Self::ErrorExtending,
        Self::ErrorRestoring,
        Self::ErrorRollbacking,
        Self::ErrorDeleting,
        Self::ErrorUnmanaging,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Available => "available",
            Self::InUse => "in-use",
            Self::Error => "error",
            Self::Attaching => "attaching",
            Self::Detaching => "detaching",
            Self::Extending => "extending",
            Self::ErrorExtending => "error_extending",
            Self::Deleting => "deleting",
            Self::ErrorDeleting => "error_deleting",
            Self::ErrorRestoring => "error_restoring",
            Self::Rollbacking => "rollbacking",
            Self::ErrorRollbacking => "error_rollbacking",
            Self::AwaitingTransfer => "awaiting-transfer",
            Self::Reserved => "reserved",
            Self::Retyping => "retyping",
            Self::Maintenance => "maintenance",
            Self::Downloading => "downloading",
            Self::Uploading => "uploading",
            Self::Unmanaging => "unmanaging",
            Self::ErrorUnmanaging => "error_unmanaging",
        }
    }
}

impl fmt::Display for VolumeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for VolumeStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Self::ALL.iter().copied().find(|v| v.as_str() == s).ok_or(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in VolumeStatus::ALL {
            assert_eq!(s.as_str().parse::<VolumeStatus>(), Ok(s));
        }
        assert!("bogus".parse::<VolumeStatus>().is_err());
    }
}
