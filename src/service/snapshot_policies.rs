//! EVS auto-snapshot policies (`/v5/{project}/snapshot-policies`) and their scheduler.
//!
//! Invariants:
//! - A run is claimed by moving the policy's `last_due` forward with a compare-and-set in the
//!   same transaction that inserts the run's snapshot rows and `createSnapshot` jobs: a crash
//!   leaves either the whole run queued or nothing (and the run still due), and no restart or
//!   second scheduler takes it twice.
//! - Only the latest due time counts: runs missed while the daemon was down are taken once, at
//!   start, not one per missed slot.
//! - Retention: after each tick, snapshots a policy took whose run is older than
//!   `retention_days` are deleted through the ordinary delete (one `deleteSnapshot` job each).
//! - Every run and every trim is a job (`createSnapshot`, `deleteSnapshot`), visible in
//!   `/v1/{project}/jobs/{id}`.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use uuid::Uuid;

use super::volumes::new_job_id;
use super::{validate_tag_pair, Caller, QuotaDelta, Services, MAX_TAGS};
use crate::error::{Error, Result};
use crate::model::{
    now_timestamp, parse_uuid, JobKind, JobPayload, Snapshot, SnapshotPolicy, SnapshotStatus, VolumeStatus,
};
use crate::store::NewJob;

/// Most volumes one associate or disassociate call may name.
pub const MAX_POLICY_VOLUMES_PER_CALL: usize = 100;

/// A create or update: `None` keeps (update) or takes the default (create).
#[derive(Debug, Clone, Default)]
pub struct PolicyChange {
    /// Name.
    pub name: Option<String>,
    /// Weekdays `"1"`–`"7"`.
    pub repeat_weekdays: Option<Vec<String>>,
    /// Every N days.
    pub repeat_interval_days: Option<i64>,
    /// Hours `"0"`–`"23"`.
    pub time_points: Option<Vec<String>>,
    /// Days to keep (-1: keep).
    pub retention_days: Option<i64>,
    /// Tags (create only).
    pub tags: BTreeMap<String, String>,
    /// Enterprise project (create only).
    pub enterprise_project_id: Option<String>,
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg)
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("Snapshot policy {id} could not be found."))
}

/// Numbers from their strings, each in `lo..=hi`, unique, at most `max`, sorted.
fn numbers(what: &str, items: &[String], lo: u32, hi: u32, max: usize) -> Result<Vec<u32>> {
    if items.is_empty() || items.len() > max {
        return Err(bad(format!("Invalid {what}: give 1 to {max} values.")));
    }
    let mut out = BTreeSet::new();
    for s in items {
        let n: u32 = s.trim().parse().map_err(|_| bad(format!("Invalid {what}: {s:?} is not a number.")))?;
        if !(lo..=hi).contains(&n) || !out.insert(n) {
            return Err(bad(format!("Invalid {what}: {s:?} must be {lo} to {hi}, each once.")));
        }
    }
    Ok(out.into_iter().collect())
}

impl Services {
    /// The policy clock: unix seconds, scaled from `clock_base` by `clock_scale` (1 in
    /// production, so it is the real time).
    pub fn policy_now(&self) -> i64 {
        let c = &self.config.snapshot_policies;
        let real = chrono::Utc::now().timestamp();
        c.clock_base + (real - c.clock_base) * i64::from(c.clock_scale.max(1))
    }

    fn policy_offset(&self) -> i64 {
        i64::from(self.config.snapshot_policies.utc_offset_minutes) * 60
    }

    /// Apply `change` to `p`, validating every field.
    fn apply_policy_change(p: &mut SnapshotPolicy, change: PolicyChange) -> Result<()> {
        if let Some(n) = change.name {
            if n.trim().is_empty() || n.len() > 255 {
                return Err(bad("Invalid name: 1 to 255 bytes."));
            }
            p.name = n;
        }
        match (change.repeat_weekdays, change.repeat_interval_days) {
            (Some(_), Some(_)) => return Err(bad("Give repeat_weekdays or repeat_interval_days, not both.")),
            (Some(w), None) => {
                p.repeat_weekdays = numbers("repeat_weekdays", &w, 1, 7, 7)?;
                p.repeat_interval_days = None;
            }
            (None, Some(d)) => {
                if !(1..=30).contains(&d) {
                    return Err(bad("Invalid repeat_interval_days: 1 to 30."));
                }
                p.repeat_interval_days = Some(d);
                p.repeat_weekdays.clear();
            }
            (None, None) => {}
        }
        if p.repeat_weekdays.is_empty() && p.repeat_interval_days.is_none() {
            return Err(bad("Invalid policy: repeat_weekdays or repeat_interval_days is required."));
        }
        if let Some(t) = change.time_points {
            p.time_points = numbers("time_points", &t, 0, 23, 24)?;
        }
        if p.time_points.is_empty() {
            return Err(bad("Invalid policy: time_points is required."));
        }
        if let Some(r) = change.retention_days {
            if r != -1 && !(1..=65536).contains(&r) {
                return Err(bad("Invalid retention_days: 1 to 65536, or -1 to keep."));
            }
            p.retention_days = r;
        }
        Ok(())
    }

    /// Create a policy (its clock starts now: nothing is taken for times already past).
    pub async fn create_snapshot_policy(&self, caller: &Caller, change: PolicyChange) -> Result<SnapshotPolicy> {
        if change.name.is_none() {
            return Err(bad("Invalid policy: name is required."));
        }
        if change.tags.len() > MAX_TAGS {
            return Err(bad(format!("A policy may have at most {MAX_TAGS} tags.")));
        }
        for (k, v) in &change.tags {
            validate_tag_pair(k, v)?;
        }
        let mut p = SnapshotPolicy {
            id: Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            name: String::new(),
            repeat_weekdays: Vec::new(),
            repeat_interval_days: None,
            time_points: Vec::new(),
            retention_days: -1,
            tags: change.tags.clone(),
            enterprise_project_id: change.enterprise_project_id.clone(),
            last_due: self.policy_now(),
            created_at: now_timestamp(),
            updated_at: None,
        };
        Self::apply_policy_change(&mut p, change)?;
        let mut tx = self.db.begin_write().await?;
        if !tx.insert_snapshot_policy(&p).await? {
            return Err(Error::conflict("EVS.5409", format!("Snapshot policy {} already exists.", p.name)));
        }
        tx.commit().await?;
        Ok(p)
    }

    /// One policy of the caller's project.
    pub async fn get_snapshot_policy(&self, caller: &Caller, id: &str) -> Result<SnapshotPolicy> {
        if parse_uuid(id).is_none() {
            return Err(not_found(id));
        }
        self.db.get_snapshot_policy(&caller.project_id, id).await?.ok_or_else(|| not_found(id))
    }

    /// The caller's project's policies.
    pub async fn list_snapshot_policies(&self, caller: &Caller) -> Result<Vec<SnapshotPolicy>> {
        self.db.list_snapshot_policies(Some(&caller.project_id)).await
    }

    /// Volumes a policy covers.
    pub async fn snapshot_policy_volumes(&self, id: &str) -> Result<Vec<String>> {
        self.db.snapshot_policy_volumes(id).await
    }

    /// Change a policy's name, schedule or retention.
    pub async fn update_snapshot_policy(
        &self,
        caller: &Caller,
        id: &str,
        change: PolicyChange,
    ) -> Result<SnapshotPolicy> {
        let mut p = self.get_snapshot_policy(caller, id).await?;
        Self::apply_policy_change(&mut p, change)?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.update_snapshot_policy(&p, &now).await? {
            return Err(Error::conflict("EVS.5409", format!("Snapshot policy {} already exists.", p.name)));
        }
        tx.commit().await?;
        p.updated_at = Some(now);
        Ok(p)
    }

    /// Delete a policy; the snapshots it took stay.
    pub async fn delete_snapshot_policy(&self, caller: &Caller, id: &str) -> Result<()> {
        let p = self.get_snapshot_policy(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        if !tx.delete_snapshot_policy(&p.id).await? {
            return Err(not_found(id));
        }
        tx.commit().await
    }

    /// Cover (`associate`) or stop covering volumes, all or none.
    pub async fn change_policy_volumes(
        &self,
        caller: &Caller,
        id: &str,
        volume_ids: &[String],
        associate: bool,
    ) -> Result<()> {
        let p = self.get_snapshot_policy(caller, id).await?;
        if volume_ids.is_empty() || volume_ids.len() > MAX_POLICY_VOLUMES_PER_CALL {
            return Err(bad(format!("Invalid request: give 1 to {MAX_POLICY_VOLUMES_PER_CALL} volume ids.")));
        }
        let mut seen = BTreeSet::new();
        for v in volume_ids {
            if !seen.insert(v.as_str()) {
                return Err(bad(format!("Invalid request: volume {v} is listed twice.")));
            }
            let vol = self.get_volume(caller, v).await?;
            if vol.project_id != p.project_id {
                return Err(Error::not_found(format!("Volume {v} could not be found.")));
            }
        }
        let mut tx = self.db.begin_write().await?;
        for v in volume_ids {
            if associate {
                tx.associate_policy_volume(&p.id, v).await?;
            } else if !tx.disassociate_policy_volume(&p.id, v).await? {
                return Err(bad(format!("Invalid request: volume {v} is not associated with policy {}.", p.id)));
            }
        }
        tx.commit().await
    }

    /// One scheduler pass: take every due run, then trim what the policies no longer keep.
    pub async fn run_snapshot_policies(&self) -> Result<()> {
        let now = self.policy_now();
        let offset = self.policy_offset();
        for p in self.db.list_snapshot_policies(None).await? {
            if let Some(due) = p.latest_due(now, offset).filter(|d| *d > p.last_due) {
                if let Err(e) = self.take_policy_run(&p, due).await {
                    tracing::warn!(policy = %p.id, error = %e, "snapshot policy: run not taken");
                }
            }
            if p.retention_days > 0 {
                let caller =
                    Caller { project_id: p.project_id.clone(), user_id: None, is_admin: true, roles: Vec::new() };
                for sid in self.db.expired_auto_snapshots(&p.id, now - p.retention_days * 86_400).await? {
                    if let Err(e) = self.delete_snapshot(&caller, &sid).await {
                        tracing::warn!(policy = %p.id, snapshot = %sid, error = %e, "snapshot policy: not trimmed");
                    }
                }
            }
        }
        Ok(())
    }

    /// Queue the run of `p` due at `due`: claim it and insert a snapshot and its job per
    /// covered volume that is `available` or `in-use` (others are skipped: a run never waits).
    async fn take_policy_run(&self, p: &SnapshotPolicy, due: i64) -> Result<()> {
        let stamp = chrono::DateTime::from_timestamp(due + self.policy_offset(), 0)
            .map(|t| t.format("%Y%m%d%H%M").to_string())
            .unwrap_or_default();
        let name = Some(format!("autosnap-{}-{stamp}", p.name));
        let limits = self.project_limits(&p.project_id).await?;
        let now = now_timestamp();
        let mut volumes = Vec::new();
        for vid in self.db.snapshot_policy_volumes(&p.id).await? {
            if let Some(v) = self.db.get_volume(None, &vid).await? {
                volumes.push(v);
            }
        }
        let mut tx = self.db.begin_write().await?;
        if !tx.advance_policy(&p.id, p.last_due, due).await? {
            return Ok(());
        }
        let mut taken = 0;
        for v in &volumes {
            if !tx.cas_volume_status(&v.id, &[VolumeStatus::Available, VolumeStatus::InUse], v.status, &now).await? {
                continue;
            }
            let delta = QuotaDelta {
                snapshots: 1,
                gigabytes: v.size_gb,
                volume_type: v.volume_type_name.clone(),
                ..Default::default()
            };
            if let Err(e) = self.check_quota(&mut tx, &p.project_id, &delta, &limits).await {
                tracing::warn!(policy = %p.id, volume = %v.id, error = %e, "snapshot policy: volume skipped");
                continue;
            }
            let s = Snapshot {
                id: Uuid::new_v4().to_string(),
                project_id: v.project_id.clone(),
                user_id: None,
                volume_id: v.id.clone(),
                name: name.clone(),
                description: Some(format!("taken by snapshot policy {}", p.id)),
                size_gb: v.size_gb,
                status: SnapshotStatus::Creating,
                pool: v.pool.clone(),
                created_at: now.clone(),
                updated_at: None,
                metadata: BTreeMap::new(),
                tags: BTreeMap::new(),
                group_snapshot_id: None,
                progress: None,
            };
            tx.insert_snapshot(&s).await?;
            tx.insert_auto_snapshot(&s.id, &p.id, due).await?;
            tx.insert_job(&NewJob {
                id: new_job_id(),
                project_id: v.project_id.clone(),
                kind: JobKind::CreateSnapshot,
                parent_id: None,
                volume_id: Some(v.id.clone()),
                payload: Some(JobPayload { snapshot_id: Some(s.id.clone()), ..Default::default() }),
                entities: serde_json::json!({"snapshot_id": s.id, "volume_id": v.id, "snapshot_policy_id": p.id})
                    .to_string(),
                begin_time: now.clone(),
            })
            .await?;
            taken += 1;
        }
        tx.commit().await?;
        tracing::info!(policy = %p.id, due, snapshots = taken, "snapshot policy: run queued");
        self.job_notify.notify_waiters();
        Ok(())
    }
}

/// Run the scheduler until `stop` fires, one pass every `tick_ms`.
pub fn spawn_policy_scheduler(
    svc: Services,
    stop: crate::jobs::runner_token::CancelToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let tick = Duration::from_millis(svc.config.snapshot_policies.tick_ms.max(50));
        loop {
            if let Err(e) = svc.run_snapshot_policies().await {
                tracing::warn!(error = %e, "snapshot policy scheduler pass failed");
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(tick) => {}
            }
        }
    })
}
