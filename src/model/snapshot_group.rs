//! EVS snapshot groups: the header of a set of member snapshots taken together of volumes the
//! caller named (`snapshots.group_snapshot_id` = the group's id, as for Cinder group snapshots).

use std::collections::BTreeMap;

/// One EVS snapshot group (`SnapshotGroupDetail` of the SDK).
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotGroup {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creator.
    pub user_id: Option<String>,
    /// Name (0 to 255 bytes).
    pub name: Option<String>,
    /// Description (0 to 255 bytes).
    pub description: Option<String>,
    /// `creating`, `available`, `error`, `deleting`, `error_deleting`.
    pub status: String,
    /// The server whose attached disks were taken, when the group was made by server.
    pub server_id: Option<String>,
    /// Enterprise project (stored and shown; no enterprise-project service behind it).
    pub enterprise_project_id: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
}
