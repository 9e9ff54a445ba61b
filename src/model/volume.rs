//! Volume, volume type and pool records as the store returns them.

use std::collections::BTreeMap;

use super::VolumeStatus;

/// A volume row plus its metadata.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// UUID, also the file name inside the pool.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// User that created it (the API's caller id, `null` when unknown).
    pub user_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Size in GiB.
    pub size_gb: i64,
    /// Current status.
    pub status: VolumeStatus,
    /// Availability zone.
    pub availability_zone: String,
    /// Volume type id.
    pub volume_type_id: String,
    /// Volume type name (joined in).
    pub volume_type_name: String,
    /// Pool that holds its data.
    pub pool: String,
    /// Bootable flag.
    pub bootable: bool,
    /// Shareable between several attachments.
    pub multiattach: bool,
    /// Read-only flag.
    pub readonly: bool,
    /// Source snapshot, when created from one.
    pub snapshot_id: Option<String>,
    /// Source volume, when cloned.
    pub source_volid: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Tags (EVS, reference 6.3); filled by the store's get and list.
    pub tags: BTreeMap<String, String>,
    /// Attachments (every status), oldest first.
    pub attachments: Vec<super::Attachment>,
    /// Its type has an encryption record (Cinder's `encrypted`, which follows the type).
    pub encrypted: bool,
    /// The generic volume group it belongs to (Cinder 3.13 `group_id`).
    pub group_id: Option<String>,
    /// Cinder's `migration_status` (`migrating`, `success`, `error`; `None` when never moved).
    pub migration_status: Option<String>,
    /// images: Cinder's `volume_image_metadata` (the image it was made from; empty when none).
    pub image_metadata: BTreeMap<String, String>,
    /// evs: the EVS fields given at create (enterprise project, dedicated storage, IOPS).
    pub evs: VolumeEvs,
}

/// evs: whether metadata asks for an encrypted disk (`__system__encrypted = "1"`, which
/// `__system__cmkid` requires; reference 6.1.1).
pub fn metadata_encrypted(m: &BTreeMap<String, String>) -> bool {
    m.get("__system__encrypted").is_some_and(|v| v == "1")
}

/// evs: what an EVS create stored beside the Cinder fields (reference 6.1.1 and the SDK's
/// `CreateVolumeOption`); all `None` for volumes made through Cinder.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeEvs {
    /// `enterprise_project_id`; `None` is the default enterprise project, shown as `"0"`.
    pub enterprise_project_id: Option<String>,
    /// The pool an `OS-SCH-HNT:scheduler_hints.dedicated_storage_id` named.
    pub dedicated_storage_id: Option<String>,
    /// `iops`: the volume's own total IOPS limit (beside its type's QoS).
    pub qos_iops: Option<i64>,
    /// `throughput` in MiB/s: the volume's own total bandwidth limit.
    pub qos_throughput: Option<i64>,
}

/// What a create request asks for, after validation.
#[derive(Debug, Clone)]
pub struct NewVolume {
    /// Owning project.
    pub project_id: String,
    /// Caller.
    pub user_id: Option<String>,
    /// Display name.
    pub name: Option<String>,
    /// Display description.
    pub description: Option<String>,
    /// Size in GiB.
    pub size_gb: i64,
    /// Availability zone (validated).
    pub availability_zone: String,
    /// Volume type (validated).
    pub volume_type: VolumeType,
    /// Shareable flag.
    pub multiattach: bool,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
}

/// A volume type.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeType {
    /// UUID.
    pub id: String,
    /// Name (`SSD`, `__DEFAULT__`…).
    pub name: String,
    /// Description.
    pub description: Option<String>,
    /// Whether every project may use it.
    pub is_public: bool,
    /// Extra specs (`volume_backend_name`…).
    pub extra_specs: BTreeMap<String, String>,
    /// Projects allowed to use a private type.
    pub projects: Vec<String>,
    /// The QoS specs associated with the type (shown to admins as `qos_specs_id`).
    pub qos_specs_id: Option<String>,
}

impl VolumeType {
    /// Whether `project_id` may see and use this type (admins may always).
    pub fn visible_to(&self, project_id: &str, is_admin: bool) -> bool {
        self.is_public || is_admin || self.projects.iter().any(|p| p == project_id)
    }

    /// Pools this type is placed on; `None` = any. Cinder's capabilities filter matches both
    /// `volume_backend_name` and its scoped form `capabilities:volume_backend_name` against the
    /// backend name (exactly); here each may list several pools (comma separated), and when
    /// both are set a pool must be named by both.
    pub fn backends(&self) -> Option<Vec<&str>> {
        let split = |k: &str| {
            self.extra_specs
                .get(k)
                .map(|b| b.split(',').map(str::trim).filter(|s| !s.is_empty()).collect::<Vec<&str>>())
        };
        match (split("volume_backend_name"), split("capabilities:volume_backend_name")) {
            (None, None) => None,
            (Some(a), None) | (None, Some(a)) => Some(a),
            (Some(a), Some(b)) => Some(a.into_iter().filter(|x| b.contains(x)).collect()),
        }
    }
}

/// A storage pool as registered in the database.
#[derive(Debug, Clone, PartialEq)]
pub struct Pool {
    /// Pool name from the config.
    pub name: String,
    /// GiB promised to volumes on this pool (sum of their sizes).
    pub provisioned_gb: i64,
}
