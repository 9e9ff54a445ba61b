//! Snapshot lifecycle: create, list, show, update, delete, and rollback (revert) of a volume to
//! ANY of its snapshots — not only the latest, unlike Cinder and ZFS.
//!
//! Each mutation is one transaction: compare-and-set on the snapshot (and, for rollback, the
//! volume) plus the job row; the worker does the storage work.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::volumes::{new_job_id, validate_text};
use super::{Caller, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, parse_uuid, JobKind, JobPayload, Snapshot, SnapshotStatus, VolumeStatus};
use crate::store::{ListSnapshots, NewJob};

/// A snapshot create request.
#[derive(Debug, Clone, Default)]
pub struct CreateSnapshot {
    /// Source volume.
    pub volume_id: String,
    /// Allowed while the volume is attached.
    pub force: bool,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
    /// manage: adopt this unmanaged storage of the volume's pool (`source-name`, size in GiB)
    /// instead of taking a snapshot (`os-snapshot-manage`; see `manage.rs`).
    pub manage: Option<(String, i64)>,
}

/// Changes to a snapshot.
#[derive(Debug, Clone, Default)]
pub struct UpdateSnapshot {
    /// New name.
    pub name: Option<Option<String>>,
    /// New description.
    pub description: Option<Option<String>>,
}

impl Services {
    /// One snapshot the caller may see.
    pub async fn get_snapshot(&self, caller: &Caller, id: &str) -> Result<Snapshot> {
        let not_found = || Error::not_found(format!("Snapshot {id} could not be found."));
        if parse_uuid(id).is_none() {
            return Err(not_found());
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_snapshot(scope, id).await?.ok_or_else(not_found)
    }

    /// A page of snapshots.
    pub async fn list_snapshots(&self, q: &ListSnapshots) -> Result<Vec<Snapshot>> {
        self.db.list_snapshots(q).await
    }

    /// How many snapshots match a filter (EVS `count`).
    pub async fn count_snapshots(&self, filter: &crate::store::SnapshotFilter) -> Result<i64> {
        self.db.count_snapshots(filter).await
    }

    /// Start taking a snapshot of a volume.
    pub async fn create_snapshot(&self, caller: &Caller, req: CreateSnapshot) -> Result<Snapshot> {
        validate_text(&req.name, "EVS.1003", "name")?;
        validate_text(&req.description, "EVS.1004", "description")?;
        validate_snapshot_metadata(&req.metadata)?;
        let v = self.get_volume(caller, &req.volume_id).await?;
        self.assert_not_frozen(&v.pool).await?;
        // manage: adopting a snapshot reads nothing of the volume, attached or not (Cinder).
        let allowed: &[VolumeStatus] = if req.force || req.manage.is_some() {
            &[VolumeStatus::Available, VolumeStatus::InUse]
        } else {
            &[VolumeStatus::Available]
        };
        if !allowed.contains(&v.status) {
            let hint = if v.status == VolumeStatus::InUse { " (use force to snapshot an attached volume)" } else { "" };
            return Err(Error::invalid_status(
                "EVS.2043",
                format!(
                    "Invalid volume: Volume {} status must be available, but current status is: {}{hint}.",
                    v.id, v.status
                ),
            ));
        }
        let now = now_timestamp();
        let snap = Snapshot {
            id: Uuid::new_v4().to_string(),
            project_id: v.project_id.clone(),
            user_id: caller.user_id.clone(),
            volume_id: v.id.clone(),
            name: req.name,
            description: req.description,
            size_gb: req.manage.as_ref().map_or(v.size_gb, |m| m.1),
            status: SnapshotStatus::Creating,
            pool: v.pool.clone(),
            created_at: now.clone(),
            updated_at: None,
            metadata: req.metadata,
            tags: BTreeMap::new(),
            group_snapshot_id: None,
            progress: None,
        };
        let limits = self.project_limits(&snap.project_id).await?;
        let mut tx = self.db.begin_write().await?;
        // Re-check the volume's status inside the transaction: it must not start a delete or
        // rollback between our read and the insert.
        if !tx.cas_volume_status(&v.id, allowed, v.status, &now).await? {
            return Err(Error::invalid_status("EVS.2043", format!("Invalid volume: Volume {} changed status.", v.id)));
        }
        let delta = super::QuotaDelta {
            snapshots: 1,
            gigabytes: snap.size_gb,
            volume_type: v.volume_type_name.clone(),
            ..Default::default()
        };
        self.check_quota(&mut tx, &snap.project_id, &delta, &limits).await?;
        tx.insert_snapshot(&snap).await?;
        tx.insert_job(&NewJob {
            id: new_job_id(),
            project_id: snap.project_id.clone(),
            kind: JobKind::CreateSnapshot,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(JobPayload {
                snapshot_id: Some(snap.id.clone()),
                request_id: super::messages::current_request_id(),
                manage_ref: req.manage.as_ref().map(|m| m.0.clone()),
                ..Default::default()
            }),
            entities: serde_json::json!({"snapshot_id": snap.id, "volume_id": v.id}).to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(snap)
    }

    /// Change a snapshot's name or description.
    pub async fn update_snapshot(&self, caller: &Caller, id: &str, upd: UpdateSnapshot) -> Result<Snapshot> {
        let s = self.get_snapshot(caller, id).await?;
        if let Some(n) = &upd.name {
            validate_text(n, "EVS.1003", "name")?;
        }
        if let Some(d) = &upd.description {
            validate_text(d, "EVS.1004", "description")?;
        }
        let mut tx = self.db.begin_write().await?;
        tx.update_snapshot_text(&s.id, upd.name, upd.description, &now_timestamp()).await?;
        tx.commit().await?;
        self.get_snapshot(caller, id).await
    }

    /// Replace (or, with `merge`, add to) a snapshot's metadata; returns the result.
    pub async fn set_snapshot_metadata(
        &self,
        caller: &Caller,
        id: &str,
        metadata: BTreeMap<String, String>,
        merge: bool,
    ) -> Result<BTreeMap<String, String>> {
        let s = self.get_snapshot(caller, id).await?;
        let mut next = if merge { s.metadata.clone() } else { BTreeMap::new() };
        next.extend(metadata);
        validate_snapshot_metadata(&next)?;
        let mut tx = self.db.begin_write().await?;
        tx.replace_snapshot_metadata(&s.id, &next).await?;
        tx.update_snapshot_text(&s.id, None, None, &now_timestamp()).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Remove one metadata key of a snapshot (404 when absent).
    pub async fn delete_snapshot_metadata_key(&self, caller: &Caller, id: &str, key: &str) -> Result<()> {
        let s = self.get_snapshot(caller, id).await?;
        let mut next = s.metadata.clone();
        if next.remove(key).is_none() {
            return Err(Error::not_found(format!(
                "Metadata item with key {key} could not be found for snapshot {id}."
            )));
        }
        let mut tx = self.db.begin_write().await?;
        tx.replace_snapshot_metadata(&s.id, &next).await?;
        tx.update_snapshot_text(&s.id, None, None, &now_timestamp()).await?;
        tx.commit().await
    }

    /// Start deleting a snapshot; returns the job id.
    pub async fn delete_snapshot(&self, caller: &Caller, id: &str) -> Result<String> {
        self.start_delete_snapshot(caller, id, false).await
    }

    /// The delete of a snapshot, or with `unmanage` its unmanage (status `unmanaging`, the
    /// data left in the pool; see `manage.rs`).
    pub(super) async fn start_delete_snapshot(&self, caller: &Caller, id: &str, unmanage: bool) -> Result<String> {
        let s = self.get_snapshot(caller, id).await?;
        self.assert_not_frozen(&s.pool).await?;
        // groups: a member of a group snapshot goes with its group snapshot only.
        if let Some(gs) = &s.group_snapshot_id {
            return Err(Error::invalid(
                "EVS.1047",
                format!(
                    "Invalid snapshot: Snapshot {} is part of group snapshot {gs}; delete the group snapshot.",
                    s.id
                ),
            ));
        }
        let now = now_timestamp();
        let job_id = new_job_id();
        let mut tx = self.db.begin_write().await?;
        if tx.snapshot_in_use_by_creating_volume(&s.id).await? {
            return Err(Error::invalid_status(
                "EVS.1047",
                format!("Invalid snapshot: a volume is still being created from snapshot {}.", s.id),
            ));
        }
        let to = if unmanage { SnapshotStatus::Unmanaging } else { SnapshotStatus::Deleting };
        if !tx.cas_snapshot_status(&s.id, &SnapshotStatus::DELETABLE, to, &now).await? {
            return Err(Error::invalid_status(
                "EVS.1047",
                format!("Invalid snapshot: Snapshot status must be available or error, but is {}.", s.status),
            ));
        }
        insert_delete_snapshot_job(&mut tx, &s, &job_id, now, unmanage).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(job_id)
    }

    /// Roll `volume_id` (which must be the snapshot's volume) back to the snapshot. The volume
    /// must be `available` or `error_rollbacking`, the snapshot `available`. Returns the job id.
    pub async fn rollback_snapshot(
        &self,
        caller: &Caller,
        snapshot_id: &str,
        volume_id: Option<&str>,
    ) -> Result<(String, String)> {
        let s = self.get_snapshot(caller, snapshot_id).await?;
        if let Some(v) = volume_id {
            if v != s.volume_id {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Snapshot {} can only be rolled back to its own volume {}, not {v}.", s.id, s.volume_id),
                ));
            }
        }
        let v = self.get_volume(caller, &s.volume_id).await?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        let job_id = self.enqueue_rollback(&mut tx, &s, &v, &now).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok((job_id, v.id))
    }

    /// The checks and writes of one rollback inside `tx`: volume to `rollbacking`, snapshot to
    /// `rollbacking`, the job queued (shared by single and snapshot-group rollbacks). Returns
    /// the job id.
    pub(super) async fn enqueue_rollback(
        &self,
        tx: &mut crate::store::WriteTx<'_>,
        s: &Snapshot,
        v: &crate::model::Volume,
        now: &str,
    ) -> Result<String> {
        let job_id = new_job_id();
        if !tx
            .cas_volume_status(
                &v.id,
                &[VolumeStatus::Available, VolumeStatus::ErrorRollbacking],
                VolumeStatus::Rollbacking,
                now,
            )
            .await?
        {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!(
                    "Invalid volume: Volume {} status must be available or error_rollbacking, but is {}.",
                    v.id, v.status
                ),
            ));
        }
        if !tx.cas_snapshot_status(&s.id, &[SnapshotStatus::Available], SnapshotStatus::Rollbacking, now).await? {
            return Err(Error::invalid_status(
                "EVS.2043",
                format!("Invalid snapshot: Snapshot status must be available, but is {}.", s.status),
            ));
        }
        // A snapshot or clone requested before the rollback must get the data from before it.
        if tx.volume_busy_as_source(&v.id).await? {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: Volume {} is the source of a snapshot or volume being created.", v.id),
            ));
        }
        // Rollback puts a new file in place of the volume's: an NBD export or loop device
        // would keep the old inode, serve stale data and lose every later write. The status
        // change above locked the row, so no export can be recorded before the commit.
        if !tx.volume_attachments(&v.id).await?.is_empty() {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!(
                    "Invalid volume: Volume {} cannot be rolled back while it has attachments or exports; \
                     terminate its connections or delete its attachments first.",
                    v.id
                ),
            ));
        }
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: s.project_id.clone(),
            kind: JobKind::RollbackSnapshot,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(JobPayload { snapshot_id: Some(s.id.clone()), ..Default::default() }),
            entities: serde_json::json!({"snapshot_id": s.id, "volume_id": v.id}).to_string(),
            begin_time: now.to_string(),
        })
        .await?;
        Ok(job_id)
    }

    /// Grow a volume to `new_size` GiB. `allow_in_use` follows Cinder 3.42 (attached volumes may
    /// be extended); shrinking or keeping the size is refused (`EVS.1015`).
    pub async fn extend_volume(&self, caller: &Caller, id: &str, new_size: i64, allow_in_use: bool) -> Result<String> {
        let v = self.get_volume(caller, id).await?;
        if new_size <= v.size_gb {
            return Err(Error::invalid(
                "EVS.1015",
                format!(
                    "New size for extend must be greater than current size. (current: {}, extended: {new_size}).",
                    v.size_gb
                ),
            ));
        }
        if new_size > super::MAX_SIZE_GB {
            return Err(Error::invalid(
                "EVS.1010",
                format!("Invalid volume size {new_size}: at most {}", super::MAX_SIZE_GB),
            ));
        }
        let allowed: &[VolumeStatus] = if allow_in_use && !v.multiattach {
            &[VolumeStatus::Available, VolumeStatus::InUse]
        } else {
            &[VolumeStatus::Available]
        };
        if !allowed.contains(&v.status) {
            let code = if v.multiattach { "EVS.1065" } else { "EVS.1064" };
            return Err(Error::invalid_status(
                code,
                format!(
                    "Invalid volume: Volume {} status must be {}, but is {}.",
                    v.id,
                    allowed.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" or "),
                    v.status
                ),
            ));
        }
        let pool = self.pools.get(&v.pool).ok_or_else(|| Error::internal(format!("pool {} not configured", v.pool)))?;
        let delta = new_size - v.size_gb;
        let limit = self.capacity_limit_gb(pool, delta)?;
        let limits = self.project_limits(&v.project_id).await?;
        let now = now_timestamp();
        let job_id = new_job_id();
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_volume_status(&v.id, allowed, VolumeStatus::Extending, &now).await? {
            return Err(Error::invalid_status("EVS.1064", format!("Invalid volume: Volume {} changed status.", v.id)));
        }
        // A snapshot or clone still to be copied from the file would get the new length.
        if tx.volume_busy_as_source(&v.id).await? {
            return Err(Error::invalid_status(
                "EVS.1064",
                format!("Invalid volume: Volume {} is the source of a snapshot or volume being created.", v.id),
            ));
        }
        let quota = super::QuotaDelta {
            gigabytes: delta,
            volume_type: v.volume_type_name.clone(),
            per_volume_gb: Some(new_size),
            ..Default::default()
        };
        self.check_quota(&mut tx, &v.project_id, &quota, &limits).await?;
        if !tx.reserve_pool_capacity(&v.pool, delta, limit).await? {
            return Err(super::volumes::no_space(&v.pool, delta));
        }
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: v.project_id.clone(),
            kind: JobKind::ExtendVolume,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(JobPayload {
                request_id: super::messages::current_request_id(),
                new_size_gb: Some(new_size),
                restore_status: Some(v.status.as_str().to_string()),
                ..Default::default()
            }),
            entities: serde_json::json!({"volume_id": v.id, "size": new_size, "name": v.name, "volume_type": v.volume_type_name})
                .to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(job_id)
    }
}

/// Snapshot metadata: sizes only (the reserved volume keys mean nothing on a snapshot).
fn validate_snapshot_metadata(m: &BTreeMap<String, String>) -> Result<()> {
    super::volumes::check_metadata_count(m)?;
    for (k, v) in m {
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("metadata key {k:?} and its value must be 1 to 255 bytes"),
            )
            .with_code("EVS.1005"));
        }
    }
    Ok(())
}

/// Queue the job that deletes snapshot `s`, whose row `tx` has just moved to `deleting` (the
/// normal delete and the admin force delete share it).
pub(super) async fn insert_delete_snapshot_job(
    tx: &mut crate::store::WriteTx<'_>,
    s: &Snapshot,
    job_id: &str,
    now: String,
    unmanage: bool,
) -> Result<()> {
    tx.insert_job(&NewJob {
        id: job_id.to_string(),
        project_id: s.project_id.clone(),
        kind: JobKind::DeleteSnapshot,
        parent_id: None,
        volume_id: Some(s.volume_id.clone()),
        payload: Some(JobPayload { snapshot_id: Some(s.id.clone()), unmanage, ..Default::default() }),
        entities: serde_json::json!({"snapshot_id": s.id, "volume_id": s.volume_id}).to_string(),
        begin_time: now,
    })
    .await
}
