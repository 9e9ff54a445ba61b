//! Admin and status actions on snapshots and volumes, in Cinder's words: `reset_status`,
//! `update_snapshot_status`, `force_delete` and `retype` (with or without migration).
//!
//! Invariants: every action validates before it writes and writes in one transaction; a
//! `force_delete` is a normal delete job (the storage really goes, a crash requeues it), it only
//! skips the status check; resetting a status touches the row alone, never the storage.

use super::volumes::new_job_id;
use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::{now_timestamp, JobKind, JobPayload, Snapshot, SnapshotStatus};
use crate::store::NewJob;

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
        if !tx.cas_snapshot_status(&s.id, &SnapshotStatus::ALL, SnapshotStatus::Deleting, &now).await? {
            return Err(Error::not_found(format!("Snapshot {id} could not be found.")));
        }
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: s.project_id.clone(),
            kind: JobKind::DeleteSnapshot,
            parent_id: None,
            volume_id: Some(s.volume_id.clone()),
            payload: Some(JobPayload { snapshot_id: Some(s.id.clone()), ..Default::default() }),
            entities: serde_json::json!({"snapshot_id": s.id, "volume_id": s.volume_id}).to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        tracing::info!(snapshot = %s.id, from = s.status.as_str(), "force-deleting snapshot");
        Ok(job_id)
    }
}
