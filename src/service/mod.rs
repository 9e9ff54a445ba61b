//! Business rules: validation, quota and capacity checks, compare-and-set status changes and job
//! enqueueing, each mutation in one database transaction. Services never touch files or devices
//! themselves; the job runner does, through the drivers.

// actions: reset_status, update_snapshot_status, force_delete, retype.
mod actions;
mod attachments;
mod catalog;
mod client_tokens;
// ui: figures for the web dashboard.
pub mod dashboard;
mod evs_retype;
mod exports;
// groups: generic volume groups.
mod groups;
pub mod identity;
// images: the built-in image service.
pub mod images;
mod jobs;
pub mod login_limits;
pub mod manage;
// actions: user messages.
pub mod messages;
// misc: encryption types, default types.
mod misc;
pub mod policy;
// qos: QoS specs.
mod qos;
mod quotas;
// scheduler: pool placement and capability matching.
pub mod scheduler;
// services: os-services, os-hosts, scheduler-stats, capabilities.
mod services;
pub use services::{accepts_new_volumes, host_matches, PoolStats, ServiceState};
mod snapshot_groups;
mod snapshot_policies;
mod snapshots;
mod tags;
mod transfers;
mod types;
// ui: dashboard sessions.
pub mod ui_sessions;
mod volumes;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Notify;

use crate::config::{Config, PoolConfig};
use crate::driver::Driver;
use crate::store::Db;

// actions: reset_status, update_snapshot_status, force_delete, retype.
pub use actions::{parse_snapshot_status, validate_progress, MigrationPolicy, ResetVolumeStatus, RetypeOutcome};
pub use attachments::AttachRequest;
pub use catalog::Catalog;
pub use exports::{ExportManager, ExportRequest};
// groups: generic volume groups.
pub use groups::{CreateGroup, GroupSource, GroupTypeChange, UpdateGroup, DEFAULT_GROUP_TYPE};
pub use jobs::JobView;
pub use manage::{ManageSnapshot, ManageVolume};
// misc: encryption types, default types.
pub use misc::EncryptionSpec;
pub use quotas::{QuotaDelta, QuotaUsage, UsageLine, DEFAULT_CLASS};
pub use snapshot_groups::{validate_tag_pair, CreateSnapshotGroup, SnapshotGroupFilter, MAX_GROUP_VOLUMES};
pub use snapshot_policies::{spawn_policy_scheduler, PolicyChange, MAX_POLICY_VOLUMES_PER_CALL};
pub use snapshots::{CreateSnapshot, UpdateSnapshot};
pub use tags::{validate_tag_query, TagChange, TaggedPage, TaggedResource, MAX_MATCH_CHARS, MAX_TAGS};
pub use transfers::{CreateTransfer, CreatedTransfer};
pub use types::TypeChange;
pub use volumes::{
    CreateVolume, CreatedVolumes, EvsCreate, UpdateVolume, VolumeSource, CINDER_MAX_SIZE_GB, MAX_BATCH, MAX_SIZE_GB,
    MAX_SYSTEM_DISK_GB,
};

/// Who is calling, as established by the API layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The project the request acts in.
    pub project_id: String,
    /// The user, when known.
    pub user_id: Option<String>,
    /// Admins may see every project.
    pub is_admin: bool,
    /// Roles in `project_id`, highest first (noauth callers are admins).
    pub roles: Vec<crate::model::Role>,
}

/// A pool at run time: its configuration and driver.
#[derive(Debug, Clone)]
pub struct PoolRuntime {
    /// Configuration.
    pub config: PoolConfig,
    /// Storage driver.
    pub driver: Arc<dyn Driver>,
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct Services {
    /// Metadata store.
    pub db: Db,
    /// Configuration.
    pub config: Arc<Config>,
    /// Pools by name.
    pub pools: Arc<HashMap<String, PoolRuntime>>,
    /// Types and zones.
    pub catalog: Arc<Catalog>,
    /// Wakes job workers after an enqueue.
    pub job_notify: Arc<Notify>,
    /// Live exports (NBD, loop); `None` only in tools that serve no volumes.
    pub exports: Option<Arc<ExportManager>>,
}
