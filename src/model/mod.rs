//! Plain data shared by every layer: ids, sizes, statuses and the records the store returns.
//!
//! Nothing here does I/O. Statuses are closed enums whose string forms are the wire names of the
//! reference (appendix A.3/A.4), so the database, the job runner and both APIs agree on them.

mod attachment;
// misc: encryption types, default types.
mod encryption;
// groups: generic volume groups.
mod group;
mod identity;
// images: the built-in image service.
mod image;
mod job;
// qos: QoS specs records.
mod qos;
// actions: user messages.
mod message;
pub mod progress;
// services: os-services records.
mod service;
mod snapshot;
mod snapshot_group;
mod snapshot_policy;
mod status;
mod volume;

pub use attachment::{AttachMode, AttachStatus, Attachment};
// misc: encryption types, default types.
pub use encryption::{DefaultType, TypeEncryption};
// groups: generic volume groups.
pub use group::{Group, GroupSnapshot, GroupType, GROUP_SNAPSHOT_STATUSES, GROUP_STATUSES};
// images: the built-in image service.
pub use identity::{Credential, Project, Role, RoleAssignment, TokenRecord, User};
pub use image::{Image, ImageStatus, CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES};
pub use job::{Job, JobKind, JobPayload, JobStatus};
// qos: QoS specs records.
pub use qos::{QosAssociation, QosSpecs, DEFAULT_QOS_CONSUMER, QOS_CONSUMERS};
// actions: user messages.
pub use message::{Message, MessageAction, MessageDetail};
// services: os-services records.
pub use service::{ServiceRecord, SCHEDULER_BINARY, VOLUME_BINARY};
pub use snapshot::{Snapshot, SnapshotStatus};
pub use snapshot_group::SnapshotGroup;
pub use snapshot_policy::SnapshotPolicy;
pub use status::VolumeStatus;
pub use volume::{metadata_encrypted, NewVolume, Pool, Volume, VolumeEvs, VolumeType};

/// Bytes in one GiB: volume sizes are whole GiB on both APIs.
pub const GIB: u64 = 1 << 30;

/// Current UTC time in the form both APIs print (`2016-05-25T02:42:10.856332`).
///
/// The fixed-width form sorts lexicographically, so the store keeps timestamps as text.
pub fn now_timestamp() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

/// Parse a UUID given by a client; `None` when it is not one.
///
/// Every path inside a pool is built from a value that passed through here.
pub fn parse_uuid(s: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(s).ok()
}
