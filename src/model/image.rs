//! Image records of the built-in image service (Glance v2 dialect).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

/// An image's status (Glance's `queued|saving|active|killed|deleted|deactivated`; `deleted`
/// rows are gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageStatus {
    /// Created, no data yet.
    Queued,
    /// Data is being uploaded or written by a job.
    Saving,
    /// Data complete and checked.
    Active,
    /// Writing the data failed; the image has no usable data.
    Killed,
    /// Deleted (never stored: the row goes).
    Deleted,
    /// Data complete but withdrawn by its owner or an admin (Glance's deactivate action): no
    /// volume may be made from it and only admins may download it, until it is reactivated.
    Deactivated,
}

impl ImageStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Saving => "saving",
            Self::Active => "active",
            Self::Killed => "killed",
            Self::Deleted => "deleted",
            Self::Deactivated => "deactivated",
        }
    }
}

impl fmt::Display for ImageStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ImageStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        Ok(match s {
            "queued" => Self::Queued,
            "saving" => Self::Saving,
            "active" => Self::Active,
            "killed" => Self::Killed,
            "deleted" => Self::Deleted,
            "deactivated" => Self::Deactivated,
            _ => return Err(()),
        })
    }
}

/// Disk formats the image service accepts (Glance's defaults, minus those nothing here reads).
pub const DISK_FORMATS: [&str; 8] = ["raw", "qcow2", "vmdk", "vhd", "vhdx", "vdi", "iso", "ami"];

/// Container formats the image service accepts.
pub const CONTAINER_FORMATS: [&str; 7] = ["bare", "ovf", "ova", "aki", "ari", "ami", "docker"];

/// Visibility values (Glance's rules: `public` needs an admin; `shared` is the default).
pub const VISIBILITIES: [&str; 4] = ["public", "private", "shared", "community"];

/// One image row.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// UUID (also the file name inside the pool's image area).
    pub id: String,
    /// Owning project.
    pub owner: String,
    /// Display name.
    pub name: Option<String>,
    /// Status.
    pub status: ImageStatus,
    /// `raw`, `qcow2`, … (`None` until set).
    pub disk_format: Option<String>,
    /// `bare`, … (`None` until set).
    pub container_format: Option<String>,
    /// Bytes of the stored file.
    pub size: Option<i64>,
    /// Bytes of the disk the file describes.
    pub virtual_size: Option<i64>,
    /// md5 hex of the data.
    pub checksum: Option<String>,
    /// `sha512` once data is stored.
    pub os_hash_algo: Option<String>,
    /// Hex digest in `os_hash_algo`.
    pub os_hash_value: Option<String>,
    /// `public`, `private`, `shared` or `community`.
    pub visibility: String,
    /// Protected images cannot be deleted.
    pub protected: bool,
    /// Hidden from default lists.
    pub os_hidden: bool,
    /// Minimum disk, GiB.
    pub min_disk: i64,
    /// Minimum RAM, MiB.
    pub min_ram: i64,
    /// Pool whose image area holds the file.
    pub pool: String,
    /// Node that holds the file.
    pub node: String,
    /// Custom string properties (top-level keys on the wire).
    pub properties: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Creation time (Glance prints `2024-01-01T00:00:00Z`).
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl Image {
    /// Whether `project` sees this image (Glance's visibility rules; admins see everything).
    pub fn visible_to(&self, project: &str, is_admin: bool) -> bool {
        is_admin || self.owner == project || matches!(self.visibility.as_str(), "public" | "community")
    }
}
