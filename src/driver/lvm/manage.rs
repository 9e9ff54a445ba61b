//! manage/unmanage on an LVM pool: adopting a thin LV someone else made in our thin pool, and
//! letting go of one of ours, by renaming and (un)tagging, never copying (Cinder's LVM driver
//! renames too).
//!
//! The one place the driver touches LVs without our tags, and only on an admin's explicit
//! request naming the LV: it must be a thin LV of this pool's thin pool, not open, with a plain
//! name that is not one of our prefixes (a foreign `cbv-…` is a squatter, not a candidate).
//!
//! Unmanaged LVs are `volume-<id>` and `_snapshot-<id>` (LVM reserves `snapshot*` names).
//!
//! Crash safety: adopting renames first and tags second; letting go renames first and untags
//! second. A run interrupted between the two finds the new name present and the old one gone
//! and finishes the second step, so the job that retries it succeeds.

use uuid::Uuid;

use super::command::LvRow;
use super::{lv_name, LvmDriver, ASIDE, BUILD, FROZEN, SNAP, TAG, VOL};
use crate::driver::{check_manage_name, unmanaged_name, DriverError, Manageable, ManagedKind};

/// Where an unmanaged LV goes: [`unmanaged_name`], except that LVM reserves names starting
/// with `snapshot`, so a snapshot goes to `_snapshot-<id>`, the name Cinder's LVM driver gives
/// its snapshots.
pub(crate) fn lvm_unmanaged_name(kind: ManagedKind, id: Uuid) -> String {
    match kind {
        ManagedKind::Volume => unmanaged_name(kind, id),
        ManagedKind::Snapshot => format!("_{}", unmanaged_name(kind, id)),
    }
}

fn prefix(kind: ManagedKind) -> &'static str {
    match kind {
        ManagedKind::Volume => VOL,
        ManagedKind::Snapshot => SNAP,
    }
}

impl LvmDriver {
    /// Why the foreign LV `row` cannot be adopted; `None` when it can.
    fn unsafe_reason(&self, row: &LvRow) -> Option<String> {
        if let Err(DriverError::Invalid(m)) = check_manage_name(&row.lv_name) {
            return Some(m);
        }
        if [VOL, SNAP, BUILD, FROZEN, ASIDE].iter().any(|p| row.lv_name.starts_with(p)) {
            return Some("named like cinderblock's own LVs".into());
        }
        if row.has_tag(TAG) {
            return Some("already managed by cinderblock".into());
        }
        if row.pool_lv != self.s.thin_pool || row.lv_attr.as_bytes().first() != Some(&b'V') {
            return Some(format!("not a thin volume of thin pool {}", self.full(&self.s.thin_pool)));
        }
        // lv_attr[5] is 'o' while the device is open (mounted, exported, in a VM).
        if row.lv_attr.as_bytes().get(5) == Some(&b'o') {
            return Some("in use (its device is open)".into());
        }
        None
    }

    /// Every LV of the VG that is not ours (and not the thin pool or its hidden parts), with
    /// whether it can be adopted.
    pub(super) fn lvm_list_manageable(&self) -> Result<Vec<Manageable>, DriverError> {
        let rows = self.rows()?;
        Ok(rows
            .iter()
            .filter(|r| !self.ours(r) && r.lv_name != self.s.thin_pool && !r.lv_name.starts_with('['))
            .map(|r| Manageable {
                name: r.lv_name.clone(),
                size_bytes: r.lv_size.unwrap_or(0),
                reason_not_safe: self.unsafe_reason(r),
            })
            .collect())
    }

    /// The LV `name` if it may be adopted, else why not.
    fn adoptable(&self, rows: &[LvRow], name: &str) -> Result<LvRow, DriverError> {
        check_manage_name(name)?;
        let row = rows
            .iter()
            .find(|r| r.lv_name == name && name != self.s.thin_pool)
            .ok_or_else(|| DriverError::Invalid(format!("no LV {} to manage", self.full(name))))?;
        match self.unsafe_reason(row) {
            Some(why) => Err(DriverError::Invalid(format!("{} cannot be managed: {why}", self.full(name)))),
            None => Ok(row.clone()),
        }
    }

    pub(super) fn lvm_manage_existing_get_size(&self, name: &str) -> Result<u64, DriverError> {
        let rows = self.rows()?;
        Ok(self.adoptable(&rows, name)?.lv_size.unwrap_or(0))
    }

    pub(super) fn lvm_manage_existing(
        &self,
        kind: ManagedKind,
        id: Uuid,
        name: &str,
        size_bytes: u64,
    ) -> Result<(), DriverError> {
        let target = lv_name(prefix(kind), id);
        let g = self.lvm.change();
        let rows = self.rows()?;
        let renamed = rows.iter().find(|r| r.lv_name == target).cloned();
        let row = match renamed {
            // Already renamed (a retry): only the tags may be missing.
            Some(r) if !rows.iter().any(|x| x.lv_name == name) => r,
            Some(_) => {
                return Err(DriverError::Invalid(format!("{} exists already", self.full(&target))));
            }
            None => {
                let r = self.adoptable(&rows, name)?;
                self.lvm.run(&g, "lvrename", &[&self.s.vg, name, &target])?;
                LvRow { lv_name: target.clone(), ..r }
            }
        };
        let full = self.full(&target);
        if !self.ours(&row) {
            let mut args = self.tag_args().to_vec();
            args.push(&full);
            self.lvm.run(&g, "lvchange", &args)?;
        }
        // Our snapshots are read-only with activation skip, our volumes writable without it.
        // lvchange refuses a permission the LV has already, so only a change is asked for.
        let (perm, skip) = match kind {
            ManagedKind::Snapshot => ("r", "y"),
            ManagedKind::Volume => ("rw", "n"),
        };
        let writable = row.lv_attr.as_bytes().get(1) == Some(&b'w');
        if writable != (perm == "rw") {
            self.lvm.run(&g, "lvchange", &["--permission", perm, &full])?;
        }
        self.lvm.run(&g, "lvchange", &["--setactivationskip", skip, &full])?;
        if kind == ManagedKind::Volume {
            self.activate(&g, &target)?;
            self.grow(&g, &row, size_bytes)?;
        }
        Ok(())
    }

    pub(super) fn lvm_unmanage(&self, kind: ManagedKind, id: Uuid) -> Result<(), DriverError> {
        let (ours, theirs) = (lv_name(prefix(kind), id), lvm_unmanaged_name(kind, id));
        let g = self.lvm.change();
        let rows = self.rows()?;
        if let Some(r) = self.find_in(&rows, &ours)? {
            if rows.iter().any(|x| x.lv_name == theirs) {
                return Err(DriverError::Invalid(format!("{} exists already", self.full(&theirs))));
            }
            self.lvm.run(&g, "lvrename", &[&self.s.vg, &r.lv_name, &theirs])?;
        }
        let Some(row) = rows.iter().find(|r| r.lv_name == theirs || r.lv_name == ours) else {
            return Err(DriverError::Missing(self.full(&ours)));
        };
        let full = self.full(&theirs);
        let mut args = vec![];
        for t in [TAG, self.pool_tag.as_str()] {
            if row.has_tag(t) {
                args.extend(["--deltag", t]);
            }
        }
        if !args.is_empty() {
            args.push(&full);
            self.lvm.run(&g, "lvchange", &args)?;
        }
        Ok(())
    }
}
