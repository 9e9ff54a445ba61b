//! LVM driver: a pool is a thin pool in a volume group. A volume is the thin LV `cbv-<uuid>`,
//! a snapshot the thin snapshot `cbs-<uuid>` (read-only, activation-skip set), a linked clone
//! a writable thin snapshot of the source, a full clone a zero-skipping block copy into a new
//! thin LV. Every LV we make carries the tags `cinderblock` and `cinderblock_pool:<pool>`;
//! LVs without them are never changed or removed (except one an admin names for manage, see
//! `manage.rs`), and a name of ours held by a foreign LV is an error, not something to reuse.
//!
//! Invariants (crash safety): a name encodes its state. `cbt-<uuid>` is a full copy under
//! construction (renamed to `cbv-` when complete, removed at open), `cbf-<uuid>` the frozen
//! source of a full clone of a live volume (removed at open), `cbr-<uuid>` a volume set aside by
//! a revert in progress (the revert finishes when its job runs again: rename aside, thin
//! snapshot of the snapshot under the volume's name, extend to the old size, remove the aside
//! LV last, each step recognised from the names present).
//!
//! Thin-pool safety: a new volume, extension, snapshot or clone is refused when the pool's data
//! or metadata use is at or above its high-water mark (a full thin pool corrupts volumes), or
//! when the pool's provisioned virtual size would pass `max_over_subscription_ratio` × its size.
//!
//! Layout: this file holds the driver value and opening; `volumes.rs` the `Driver` operations;
//! `manage.rs` adopting and letting go of LVs (manage/unmanage); `utils.rs` block copy and
//! discard; `command.rs` the one place LVM runs.

pub mod command;
mod manage;
mod utils;
mod volumes;

use std::path::PathBuf;

use uuid::Uuid;

use super::DriverError;
use command::{LvRow, Lvm, VgRow, LV_FIELDS};

pub use utils::block_copy;

/// Settings of one LVM pool (from the pool's `[pools.lvm]` configuration).
#[derive(Debug, Clone)]
pub struct LvmSettings {
    /// Pool name (in our tags).
    pub pool: String,
    /// Volume group (must exist).
    pub vg: String,
    /// Thin pool LV in `vg` (created when missing).
    pub thin_pool: String,
    /// Size of the thin pool when it is created; `None` = 90% of the VG's free space.
    pub thin_pool_size_bytes: Option<u64>,
    /// The PVs LVM may look at.
    pub devices: Vec<PathBuf>,
    /// `LVM_SYSTEM_DIR` for a private `lvm.conf`.
    pub system_dir: Option<PathBuf>,
    /// The `lvm` program.
    pub lvm_binary: PathBuf,
    /// Provisioned virtual size may reach this multiple of the thin pool's size.
    pub max_over_subscription_ratio: f64,
    /// Refuse allocations at or above this data use, percent.
    pub data_high_water_percent: f64,
    /// Refuse allocations at or above this metadata use, percent.
    pub metadata_high_water_percent: f64,
}

/// The tag every LV of ours carries.
pub const TAG: &str = "cinderblock";

/// Thin LVs in one thin pool.
#[derive(Debug)]
pub struct LvmDriver {
    s: LvmSettings,
    lvm: Lvm,
    pool_tag: String,
}

/// Name prefixes: volume, snapshot, full copy being built, frozen clone source, revert aside.
pub(crate) const VOL: &str = "cbv-";
pub(crate) const SNAP: &str = "cbs-";
pub(crate) const BUILD: &str = "cbt-";
pub(crate) const FROZEN: &str = "cbf-";
pub(crate) const ASIDE: &str = "cbr-";

/// The LV name `prefix<uuid>`.
pub(crate) fn lv_name(prefix: &str, id: Uuid) -> String {
    format!("{prefix}{}", id.hyphenated())
}

impl LvmDriver {
    /// Open the pool: check the VG, create the thin pool when missing, remove half-built LVs
    /// left by a crash and activate our volumes.
    pub fn open(s: LvmSettings) -> Result<LvmDriver, DriverError> {
        if s.devices.is_empty() || !s.devices.iter().all(|d| command::valid_device_path(d)) {
            return Err(DriverError::Invalid(format!(
                "pool {}: lvm devices must be absolute paths of A-Za-z0-9/._+:@=,- (got {:?})",
                s.pool, s.devices
            )));
        }
        let lvm = Lvm::new(&s.lvm_binary, &s.vg, s.devices.clone(), s.system_dir.clone());
        let pool_tag = format!("cinderblock_pool:{}", s.pool);
        let d = LvmDriver { s, lvm, pool_tag };
        let vgs: Vec<VgRow> = d
            .lvm
            .report("vgs", "vg", &["-o", "vg_name,vg_size,vg_free,vg_extent_size,vg_tags", &d.s.vg])
            .map_err(|e| DriverError::Invalid(format!("volume group {} is not usable: {e}", d.s.vg)))?;
        let Some(vg) = vgs.into_iter().find(|v| v.vg_name == d.s.vg) else {
            return Err(DriverError::Invalid(format!("volume group {} not found on {:?}", d.s.vg, d.s.devices)));
        };
        let g = d.lvm.change();
        match d.find(&d.s.thin_pool)? {
            Some(p) if p.lv_attr.starts_with('t') => {}
            Some(p) => {
                return Err(DriverError::Invalid(format!(
                    "{}/{} exists but is not a thin pool (attr {})",
                    d.s.vg, d.s.thin_pool, p.lv_attr
                )))
            }
            None => {
                let size = match d.s.thin_pool_size_bytes {
                    Some(b) => format!("-L{b}b"),
                    None => "-l90%FREE".to_string(),
                };
                tracing::info!(vg = %d.s.vg, pool = %d.s.thin_pool, free = ?vg.vg_free, "creating the thin pool");
                d.lvm.run(
                    &g,
                    "lvcreate",
                    &[
                        "--type",
                        "thin-pool",
                        &size,
                        "-n",
                        &d.s.thin_pool,
                        "--zero",
                        "y",
                        "--addtag",
                        TAG,
                        "--yes",
                        &d.s.vg,
                    ],
                )?;
                // A full pool fails writes at once instead of queueing them for 60 s. lvcreate
                // of LVM 2.03.16 refuses `--errorwhenfull` for thin pools; lvchange takes it.
                d.lvm.run(&g, "lvchange", &["--errorwhenfull", "y", &d.full(&d.s.thin_pool)])?;
            }
        }
        for row in d.rows()? {
            if !d.ours(&row) {
                continue;
            }
            let name = row.lv_name.as_str();
            if name.starts_with(BUILD) || name.starts_with(FROZEN) {
                tracing::warn!(lv = name, "removing a half-built LV left by an interrupted job");
                d.lvm.run(&g, "lvremove", &["-y", &d.full(name)])?;
            } else if name.starts_with(VOL) && !row.active() {
                d.activate(&g, name)?;
            } else if name.starts_with(ASIDE) {
                tracing::warn!(lv = name, "a revert was interrupted; its job finishes it");
            }
        }
        drop(g);
        Ok(d)
    }

    /// `vg/name`.
    pub(crate) fn full(&self, name: &str) -> String {
        format!("{}/{name}", self.s.vg)
    }

    /// Device path of an LV.
    pub(crate) fn dev(&self, name: &str) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{name}", self.s.vg))
    }

    /// Every LV of the VG.
    pub(crate) fn rows(&self) -> Result<Vec<LvRow>, DriverError> {
        let rows: Vec<LvRow> = self.lvm.report("lvs", "lv", &["-a", "-o", LV_FIELDS, &self.s.vg])?;
        Ok(rows.into_iter().filter(|r| r.vg_name.is_empty() || r.vg_name == self.s.vg).collect())
    }

    /// Whether an LV is one of this pool's.
    pub(crate) fn ours(&self, row: &LvRow) -> bool {
        row.has_tag(TAG) && row.has_tag(&self.pool_tag)
    }

    /// The LV `name`, if it exists; an LV of that name that is not ours is an error.
    pub(crate) fn find(&self, name: &str) -> Result<Option<LvRow>, DriverError> {
        self.find_in(&self.rows()?, name)
    }

    pub(crate) fn find_in(&self, rows: &[LvRow], name: &str) -> Result<Option<LvRow>, DriverError> {
        match rows.iter().find(|r| r.lv_name == name) {
            None => Ok(None),
            Some(r) if name == self.s.thin_pool || self.ours(r) => Ok(Some(r.clone())),
            Some(_) => Err(DriverError::Invalid(format!(
                "{} exists without our tags; cinderblock never touches LVs it did not create",
                self.full(name)
            ))),
        }
    }

    /// Activate an LV, overriding activation skip.
    pub(crate) fn activate(&self, g: &command::VgGuard<'_>, name: &str) -> Result<(), DriverError> {
        self.lvm.run(g, "lvchange", &["-ay", "-K", &self.full(name)]).map(|_| ())
    }

    /// The tags our new LVs get, as `--addtag` arguments.
    pub(crate) fn tag_args(&self) -> [&str; 4] {
        ["--addtag", TAG, "--addtag", &self.pool_tag]
    }

    /// Refuse an allocation of `more_virtual` bytes when the pool is too full or would be
    /// over-subscribed (see the module docs).
    pub(crate) fn check_room(&self, rows: &[LvRow], more_virtual: u64) -> Result<(), DriverError> {
        let pool = rows
            .iter()
            .find(|r| r.lv_name == self.s.thin_pool)
            .ok_or_else(|| DriverError::Invalid(format!("thin pool {} vanished", self.full(&self.s.thin_pool))))?;
        let data = pool.data_percent.unwrap_or(0.0);
        let meta = pool.metadata_percent.unwrap_or(0.0);
        if data >= self.s.data_high_water_percent || meta >= self.s.metadata_high_water_percent {
            let msg = format!(
                "thin pool {} is {data:.2}% full (data) and {meta:.2}% (metadata), at or above its high-water marks \
                 ({}% / {}%): refusing new allocations; extend the pool or delete volumes",
                self.full(&self.s.thin_pool),
                self.s.data_high_water_percent,
                self.s.metadata_high_water_percent
            );
            tracing::error!(pool = %self.s.pool, "{msg}");
            return Err(DriverError::NoSpace(msg));
        }
        if more_virtual > 0 {
            let size = pool.lv_size.unwrap_or(0) as f64;
            let provisioned: u64 = rows
                .iter()
                .filter(|r| r.pool_lv == self.s.thin_pool && !r.lv_name.starts_with(SNAP))
                .map(|r| r.lv_size.unwrap_or(0))
                .sum();
            let limit = size * self.s.max_over_subscription_ratio;
            if (provisioned + more_virtual) as f64 > limit {
                return Err(DriverError::NoSpace(format!(
                    "thin pool {}: {} more bytes would provision {} bytes, past {:.0} ({}× its {} bytes)",
                    self.full(&self.s.thin_pool),
                    more_virtual,
                    provisioned + more_virtual,
                    limit,
                    self.s.max_over_subscription_ratio,
                    size
                )));
            }
        }
        Ok(())
    }

    /// The command runner (for tests and tools).
    pub fn lvm(&self) -> &Lvm {
        &self.lvm
    }
}
