//! Cinder generic volume groups: group types, groups and group snapshots as the store returns
//! them. Statuses are Cinder's words (`GroupStatus`, `GroupSnapshotStatus`), kept as text so that
//! an admin's `reset_status` can set any of them.

use std::collections::BTreeMap;

/// Statuses a group may have (Cinder's `GroupStatus`, `deleted` excepted: deleted rows are gone).
pub const GROUP_STATUSES: [&str; 7] =
    ["creating", "available", "deleting", "error", "error_deleting", "updating", "in-use"];

/// Statuses a group snapshot may have (Cinder's `GroupSnapshotStatus`, without `deleted`).
pub const GROUP_SNAPSHOT_STATUSES: [&str; 6] =
    ["creating", "available", "deleting", "error", "error_deleting", "updating"];

/// A group type: what kind of group (`consistent_group_snapshot_enabled`…), by its specs.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupType {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Visible to every project.
    pub is_public: bool,
    /// Group specs.
    pub group_specs: BTreeMap<String, String>,
    /// Creation time (list order).
    pub created_at: String,
}

/// A generic volume group: volumes of the listed types that are managed (snapshotted, cloned,
/// deleted) together.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creator.
    pub user_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Status (one of [`GROUP_STATUSES`]).
    pub status: String,
    /// Zone of its volumes.
    pub availability_zone: String,
    /// Group type id.
    pub group_type_id: String,
    /// Volume type ids a member may have, in the order given at creation.
    pub volume_types: Vec<String>,
    /// The group snapshot it was created from (3.14).
    pub group_snapshot_id: Option<String>,
    /// The group it was cloned from (3.14).
    pub source_group_id: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
}

/// A group snapshot: one member snapshot (with `group_snapshot_id` set) per volume of the group
/// at the time it was taken.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupSnapshot {
    /// UUID.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Creator.
    pub user_id: Option<String>,
    /// The group it was taken of.
    pub group_id: String,
    /// That group's type.
    pub group_type_id: String,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Status (one of [`GROUP_SNAPSHOT_STATUSES`]).
    pub status: String,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
}
