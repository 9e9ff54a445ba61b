//! Admin and status actions on snapshots and volumes, in Cinder's words: `reset_status`,
//! `update_snapshot_status`, `force_delete` and `retype` (with or without migration).
//!
//! Invariants: every action validates before it writes and writes in one transaction; a
//! `force_delete` is a normal delete job (the storage really goes, a crash requeues it), it only
//! skips the status check; resetting a status touches the row alone, never the storage.

use super::volumes::new_job_id;
use super::{Caller, PoolRuntime, QuotaDelta, Services};
use crate::error::{Error, Result};
use crate::model::{now_timestamp, JobKind, JobPayload, Snapshot, SnapshotStatus, Volume, VolumeStatus, VolumeType};
use crate::store::NewJob;

/// `migration_policy` of an `os-retype`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MigrationPolicy {
    /// Refuse a retype that would have to move the data (Cinder's default).
    #[default]
    Never,
    /// Move the data to a pool of the new type when the current one does not serve it.
    OnDemand,
}

impl MigrationPolicy {
    /// Parse Cinder's `never` / `on-demand`.
    pub fn parse(s: &str) -> Result<MigrationPolicy> {
        match s {
            "never" => Ok(Self::Never),
            "on-demand" => Ok(Self::OnDemand),
            other => Err(Error::invalid(
                "EVS.5400",
                format!("Invalid input for field/attribute migration_policy. Value: {other}. It must be one of: never, on-demand."),
            )),
        }
    }
}

/// Whether a type makes volumes shareable (`multiattach: "<is> True"`).
fn is_multiattach(t: &VolumeType) -> bool {
    t.extra_specs.get("multiattach").is_some_and(|v| v.trim().eq_ignore_ascii_case("<is> true"))
}

/// What a retype will do once validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetypeOutcome {
    /// The type changed in place (the current pool serves the new type).
    Retyped,
    /// A migration job moves the volume to this pool.
    Migrating {
        /// Destination pool.
        pool: String,
        /// The job.
        job_id: String,
    },
}

/// Parse a snapshot status named by a client (Cinder's `snapshot_status` format, lower-cased).
pub fn parse_snapshot_status(s: &str) -> Result<SnapshotStatus> {
    s.to_lowercase().parse().map_err(|()| {
        let all: Vec<&str> = SnapshotStatus::ALL.iter().map(|s| s.as_str()).collect();
        Error::invalid(
            "EVS.5400",
            format!("Invalid input for field/attribute status. Value: {s}. Must be one of: {}.", all.join(", ")),
        )
    })
}

/// Check a progress string as Cinder's `progress` format does: an integer 0..=100 and `%`.
pub fn validate_progress(p: &str) -> Result<()> {
    let ok = p.strip_suffix('%').and_then(|n| n.parse::<u32>().ok()).is_some_and(|n| n <= 100);
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "EVS.5400",
            format!("Invalid input for field/attribute progress. Value: {p}. It should be an integer from 0 to 100 followed by '%'."),
        ))
    }
}

impl Services {
    /// Admin `os-reset_status` of a snapshot: set its status, nothing else.
    pub async fn reset_snapshot_status(&self, caller: &Caller, id: &str, status: SnapshotStatus) -> Result<()> {
        let s = self.get_snapshot(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        if !tx.reset_snapshot_status(&s.id, status, &now_timestamp()).await? {
            return Err(Error::not_found(format!("Snapshot {id} could not be found.")));
        }
        tx.commit().await?;
        tracing::info!(snapshot = %s.id, from = s.status.as_str(), to = status.as_str(), "reset snapshot status");
        Ok(())
    }

    /// `os-update_snapshot_status`: the transitions Cinder allows a snapshot's creator to report
    /// (`creating` → `creating`/`available`/`error`, `deleting` → `deleting`/`error_deleting`),
    /// with an optional progress.
    pub async fn update_snapshot_status(
        &self,
        caller: &Caller,
        id: &str,
        status: &str,
        progress: Option<&str>,
    ) -> Result<()> {
        let s = self.get_snapshot(caller, id).await?;
        let allowed: &[SnapshotStatus] = match s.status {
            SnapshotStatus::Creating => &[SnapshotStatus::Creating, SnapshotStatus::Available, SnapshotStatus::Error],
            SnapshotStatus::Deleting => &[SnapshotStatus::Deleting, SnapshotStatus::ErrorDeleting],
            other => {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Snapshot status {other} not allowed for update_snapshot_status"),
                ))
            }
        };
        let to = allowed.iter().copied().find(|a| a.as_str() == status).ok_or_else(|| {
            Error::invalid(
                "EVS.5400",
                format!("Provided snapshot status {status} not allowed for snapshot with status {}.", s.status),
            )
        })?;
        if let Some(p) = progress {
            validate_progress(p)?;
        }
        let mut tx = self.db.begin_write().await?;
        if !tx.update_snapshot_status(&s.id, s.status, to, progress, &now_timestamp()).await? {
            return Err(Error::invalid_status("EVS.5400", format!("Snapshot {} changed status.", s.id)));
        }
        tx.commit().await
    }

    /// Admin `os-force_delete` of a snapshot: delete it whatever its status (a normal delete
    /// job, so the file really goes and a crash requeues it). Returns the job id.
    pub async fn force_delete_snapshot(&self, caller: &Caller, id: &str) -> Result<String> {
        let s: Snapshot = self.get_snapshot(caller, id).await?;
        self.assert_not_frozen(&s.pool).await?;
        let now = now_timestamp();
        let job_id = new_job_id();
        let mut tx = self.db.begin_write().await?;
        // A volume still being made from it would lose its source mid-copy.
        if tx.snapshot_in_use_by_creating_volume(&s.id).await? {
            return Err(Error::invalid_status(
                "EVS.1047",
                format!("Invalid snapshot: a volume is still being created from snapshot {}.", s.id),
            ));
        }
        // A running rollback reads the snapshot's file: deleting it underneath is refused (an
        // admin who knows better resets the status first).
        let from: Vec<SnapshotStatus> =
            SnapshotStatus::ALL.into_iter().filter(|st| *st != SnapshotStatus::Rollbacking).collect();
        if !tx.cas_snapshot_status(&s.id, &from, SnapshotStatus::Deleting, &now).await? {
            return Err(Error::invalid_status(
                "EVS.1047",
                format!("Invalid snapshot: Snapshot {} is being rolled back onto its volume.", s.id),
            ));
        }
        super::snapshots::insert_delete_snapshot_job(&mut tx, &s, &job_id, now, false).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        tracing::info!(snapshot = %s.id, from = s.status.as_str(), "force-deleting snapshot");
        Ok(job_id)
    }
}

impl Services {
    /// `os-retype` (Cinder's `retype`): give an `available` or `in-use` volume another type.
    /// When the volume's pool serves the new type, the type changes at once; when the type's
    /// `volume_backend_name` names another pool, `on-demand` moves the data there in a durable
    /// job (the volume keeps its id; until the job commits it stays on its old pool), `never`
    /// refuses. Per-type quotas follow the volume.
    pub async fn retype(
        &self,
        caller: &Caller,
        id: &str,
        new_type: &str,
        policy: MigrationPolicy,
    ) -> Result<RetypeOutcome> {
        let v = self.get_volume(caller, id).await?;
        let t = self
            .catalog
            .find_type(new_type)
            .filter(|t| t.visible_to(&caller.project_id, caller.is_admin))
            .ok_or_else(|| Error::invalid("EVS.5400", format!("Invalid volume_type passed: {new_type}.")))?;
        let busy = || {
            Error::invalid_status(
                "EVS.5400",
                "Invalid volume: Retype needs volume to be in available or in-use state, not be part of an active \
                 migration or a consistency group, requested type has to be different that the one from the volume, \
                 and for in-use volumes front-end qos specs cannot change.",
            )
        };
        if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse)
            || v.migration_status.as_deref() == Some("migrating")
            || v.group_id.is_some()
            || t.id == v.volume_type_id
        {
            return Err(busy());
        }
        let multiattach = is_multiattach(&t);
        if multiattach != v.multiattach && v.status != VolumeStatus::Available {
            return Err(Error::invalid(
                "EVS.5400",
                format!(
                    "Invalid input received: Invalid volume_type passed, retypes affecting multiattach are only \
                     allowed on available volumes, the specified volume however currently has a status of: {}.",
                    v.status
                ),
            ));
        }
        if multiattach && self.db.get_type_encryption(&t.id).await?.is_some() {
            return Err(Error::invalid(
                "EVS.5400",
                "Invalid input received: Retype requested both encryption and multi-attach, which is not supported.",
            ));
        }
        let no_backend = || {
            Error::invalid(
                "EVS.5400",
                format!("No valid backend was found. No pool has the capabilities of volume type {}.", t.name),
            )
        };
        let stays = t.backends().is_none_or(|b| b.contains(&v.pool.as_str())) && self.pool_fits(&v.pool, &t).await?;
        let dest = if stays {
            None
        } else {
            let placed = self.place(&v.availability_zone, &t).await?;
            if !placed.fits {
                return Err(no_backend());
            }
            let pool = placed.pool;
            if policy == MigrationPolicy::Never {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!(
                        "Retype requires migration but is not allowed: volume type {} is served by pool {}, \
                         not by the volume's pool {} (use migration_policy on-demand).",
                        t.name, pool.config.name, v.pool
                    ),
                ));
            }
            // The copy reads a volume nobody writes: attached volumes would need the consumer
            // to switch over (Cinder asks nova), and snapshots cannot follow their volume.
            if v.status != VolumeStatus::Available {
                return Err(Error::invalid_status(
                    "EVS.5400",
                    format!(
                        "Invalid volume: Volume {} status must be available to migrate, but is {}.",
                        v.id, v.status
                    ),
                ));
            }
            Some(pool)
        };
        let limits = self.project_limits(&v.project_id).await?;
        let quota = QuotaDelta {
            volumes: 1,
            gigabytes: v.size_gb,
            volume_type: t.name.clone(),
            per_type_only: true,
            ..Default::default()
        };
        let Some(pool) = dest else {
            let now = now_timestamp();
            let mut tx = self.db.begin_write().await?;
            if !tx.cas_volume_status(&v.id, &[v.status], v.status, &now).await? {
                return Err(busy());
            }
            self.check_quota(&mut tx, &v.project_id, &quota, &limits).await?;
            tx.set_volume_type(&v.id, &t.id, multiattach, &now).await?;
            tx.commit().await?;
            tracing::info!(volume = %v.id, new_type = %t.name, "retyped in place");
            return Ok(RetypeOutcome::Retyped);
        };
        let dest_name = pool.config.name.clone();
        let job_id = self.enqueue_migration(&v, &t, pool, JobKind::RetypeVolume, Some(quota), &limits).await?;
        tracing::info!(volume = %v.id, new_type = %t.name, from = %v.pool, to = %dest_name, "retype migrates the volume");
        Ok(RetypeOutcome::Migrating { pool: dest_name, job_id })
    }
}

/// Migration statuses an admin may set (`none` clears it), as Cinder's `volume_migration_status`.
const MIGRATION_STATUSES: [&str; 6] = ["migrating", "error", "success", "completing", "starting", "none"];

/// A validated volume `os-reset_status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResetVolumeStatus {
    /// New status.
    pub status: Option<VolumeStatus>,
    /// `detached` drops every attachment (and its export); `attached` changes nothing.
    pub detach: bool,
    /// New migration status (`Some(None)` clears it).
    pub migration_status: Option<Option<String>>,
}

impl ResetVolumeStatus {
    /// Validate the three optional fields in Cinder's words.
    pub fn parse(
        status: Option<&str>,
        attach_status: Option<&str>,
        migration_status: Option<&str>,
    ) -> Result<ResetVolumeStatus> {
        if status.is_none() && attach_status.is_none() && migration_status.is_none() {
            return Err(Error::invalid(
                "EVS.5400",
                "Invalid input received: Must specify 'status', 'attach_status' or 'migration_status' for update.",
            ));
        }
        let status = match status.map(str::to_lowercase) {
            None => None,
            Some(s) if s == "deleting" => {
                return Err(Error::invalid("EVS.5400", format!("Cannot reset-state to {s}")));
            }
            Some(s) => Some(s.parse::<VolumeStatus>().map_err(|()| {
                Error::invalid("EVS.5400", format!("Invalid input for field/attribute status. Value: {s}."))
            })?),
        };
        let detach = match attach_status.map(str::to_lowercase).as_deref() {
            None | Some("attached") => false,
            Some("detached") => true,
            Some(other) => {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid input for field/attribute attach_status. Value: {other}."),
                ))
            }
        };
        let migration_status = match migration_status.map(str::to_lowercase) {
            None => None,
            Some(m) if m == "none" => Some(None),
            Some(m) if MIGRATION_STATUSES.contains(&m.as_str()) => Some(Some(m)),
            Some(m) => {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid input for field/attribute migration_status. Value: {m}."),
                ))
            }
        };
        Ok(ResetVolumeStatus { status, detach, migration_status })
    }
}

impl Services {
    /// Admin `os-reset_status` of a volume: set its status and migration status; with
    /// `attach_status: detached` also drop its attachments and their exports. Storage is not
    /// touched. `in-use` needs an attachment that stays.
    pub async fn reset_volume_status(&self, caller: &Caller, id: &str, req: ResetVolumeStatus) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        if req.status == Some(VolumeStatus::InUse) && (req.detach || v.attachments.is_empty()) {
            return Err(Error::invalid(
                "EVS.5400",
                "Cannot reset-state to in-use because volume does not have any attachments.",
            ));
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        let dropped = if req.detach { tx.volume_attachments(&v.id).await? } else { Vec::new() };
        for a in &dropped {
            tx.delete_attachment(&a.id).await?;
        }
        if let Some(st) = req.status {
            tx.cas_volume_status(&v.id, &VolumeStatus::ALL, st, &now).await?;
        }
        if let Some(m) = &req.migration_status {
            tx.set_migration_status(&v.id, m.as_deref(), &now).await?;
        }
        tx.commit().await?;
        if let Some(exports) = self.exports.as_deref() {
            for a in &dropped {
                exports.unexport(a, false).await?;
            }
        }
        tracing::info!(volume = %v.id, from = v.status.as_str(), to = ?req.status, "reset volume status");
        Ok(())
    }

    /// Admin `os-force_delete` of a volume: delete it whatever its status, as long as nothing is
    /// attached, no migration runs and no snapshot depends on it (Cinder's conditions). A normal
    /// delete job, so the storage really goes and a crash requeues it. Returns the job id.
    pub async fn force_delete_volume(&self, caller: &Caller, id: &str) -> Result<String> {
        let v = self.get_volume(caller, id).await?;
        self.assert_not_frozen(&v.pool).await?;
        if v.group_id.is_some() {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} belongs to a group; delete it with its group.", v.id),
            ));
        }
        if v.migration_status.as_deref() == Some("migrating") {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} is migrating; it cannot be deleted now.", v.id),
            ));
        }
        let now = now_timestamp();
        let job_id = new_job_id();
        let mut tx = self.db.begin_write().await?;
        let n = tx.count_volume_snapshots(&v.id).await?;
        if n > 0 {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} still has {n} dependent snapshots.", v.id),
            ));
        }
        if tx.volume_busy_as_source(&v.id).await? {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} is the source of a snapshot or volume being created.", v.id),
            ));
        }
        // A retype job may be copying the volume: it must finish (or be reset) first.
        let from: Vec<VolumeStatus> =
            VolumeStatus::ALL.into_iter().filter(|st| *st != VolumeStatus::Retyping).collect();
        if !tx.cas_volume_status(&v.id, &from, VolumeStatus::Deleting, &now).await? {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} is being retyped; it cannot be deleted now.", v.id),
            ));
        }
        // As a plain delete: a host may hold the file open through an attachment or export.
        // The status change above locked the row, so none can be recorded before the commit.
        if !tx.volume_attachments(&v.id).await?.is_empty() {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!(
                    "Invalid volume: Volume {} cannot be deleted while it has attachments or exports; \
                     terminate its connections or delete its attachments first.",
                    v.id
                ),
            ));
        }
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: v.project_id.clone(),
            kind: JobKind::DeleteVolume,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(JobPayload::default()),
            entities: serde_json::json!({"volume_id": v.id, "size": v.size_gb, "name": v.name, "volume_type": v.volume_type_name})
                .to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        tracing::info!(volume = %v.id, from = v.status.as_str(), "force-deleting volume");
        Ok(job_id)
    }
}

impl Services {
    /// Move `v` (available) to `pool` with type `t` in a durable job of `kind` (`retypeVolume`
    /// or `migrateVolume`): status `retyping`, migration `migrating`, the destination's capacity
    /// reserved, `quota` (the new type's, for a retype) checked, all in one transaction.
    async fn enqueue_migration(
        &self,
        v: &Volume,
        t: &VolumeType,
        pool: &PoolRuntime,
        kind: JobKind,
        quota: Option<QuotaDelta>,
        limits: &std::collections::BTreeMap<String, i64>,
    ) -> Result<String> {
        let dest_name = pool.config.name.clone();
        // The copy reads the source's export path; pools without one (RBD) cannot be the
        // source yet. Refused before anything changes.
        if let Some(why) = self.pools.get(&v.pool).and_then(|p| p.driver.export_unsupported()) {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid volume: Volume {} cannot be migrated out of its pool: {why}.", v.id),
            ));
        }
        let capacity = self.capacity_limit_gb(pool, v.size_gb)?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if tx.count_volume_snapshots(&v.id).await? > 0 {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: Volume {} must not have snapshots to be migrated.", v.id),
            ));
        }
        if !tx.cas_volume_status(&v.id, &[VolumeStatus::Available], VolumeStatus::Retyping, &now).await? {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: Volume {} status must be available to migrate.", v.id),
            ));
        }
        // Migration moves the data to a new file in another pool: an export (initialized
        // connections leave the volume `available`) would keep serving the old one and lose
        // every later write (issue 17.1). The status change above locked the row.
        if !tx.volume_attachments(&v.id).await?.is_empty() {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!(
                    "Invalid volume: Volume {} cannot be migrated while it has attachments or exports; \
                     terminate its connections or delete its attachments first.",
                    v.id
                ),
            ));
        }
        if tx.volume_busy_as_source(&v.id).await? {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: Volume {} is the source of a snapshot or volume being created.", v.id),
            ));
        }
        if let Some(q) = &quota {
            self.check_quota(&mut tx, &v.project_id, q, limits).await?;
        }
        if !tx.reserve_pool_capacity(&dest_name, v.size_gb, capacity).await? {
            return Err(super::volumes::no_space(&dest_name, v.size_gb));
        }
        tx.set_migration_status(&v.id, Some("migrating"), &now).await?;
        let job_id = new_job_id();
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: v.project_id.clone(),
            kind,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(JobPayload {
                request_id: super::messages::current_request_id(),
                new_type_id: Some(t.id.clone()),
                dest_pool: Some(dest_name.clone()),
                ..Default::default()
            }),
            entities: serde_json::json!({"volume_id": v.id, "volume_type": t.name, "pool": dest_name}).to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(job_id)
    }

    /// Admin `os-migrate_volume` (Cinder's `migrate_volume`): move an available volume, type
    /// unchanged, to the pool `host` names (`node@pool#pool`, `node@pool` or the pool's name),
    /// which must be another pool of its zone serving its type. Returns the job id.
    pub async fn migrate_volume(&self, caller: &Caller, id: &str, host: &str) -> Result<String> {
        let v = self.get_volume(caller, id).await?;
        let no_host = || Error::invalid("EVS.5400", format!("Invalid host: No available service named '{host}'"));
        let (node, rest) = match host.split_once('@') {
            Some((n, r)) => (Some(n), r),
            None => (None, host),
        };
        if node.is_some_and(|n| n != self.config.node) {
            return Err(no_host());
        }
        let pool_name = rest.split_once('#').map_or(rest, |(_, p)| p);
        let pool = self.pools.get(pool_name).ok_or_else(no_host)?;
        let t = self.catalog.require_type(&v.volume_type_id)?;
        let serves = t.backends().is_none_or(|b| b.contains(&pool_name));
        if pool.config.availability_zone != v.availability_zone || !serves {
            return Err(Error::invalid(
                "EVS.5400",
                format!(
                    "No valid backend was found. Pool {pool_name} does not serve volume type {} in zone {}.",
                    t.name, v.availability_zone
                ),
            ));
        }
        if v.status != VolumeStatus::Available
            || v.migration_status.as_deref() == Some("migrating")
            || v.group_id.is_some()
            || v.pool == pool_name
        {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!(
                    "Invalid volume: Volume {} status must be available or in-use, must not be migrating, have \
                     snapshots, be replicated, be part of a group and destination host/cluster must be different \
                     than the current one",
                    v.id
                ),
            ));
        }
        let limits = std::collections::BTreeMap::new();
        let job_id = self.enqueue_migration(&v, &t, pool, JobKind::MigrateVolume, None, &limits).await?;
        tracing::info!(volume = %v.id, from = %v.pool, to = %pool_name, "migrating volume");
        Ok(job_id)
    }
}
