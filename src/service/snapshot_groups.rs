//! Sets of member snapshots taken at one moment: the shared step of Cinder group snapshots and
//! EVS snapshot groups (`/v5/{project}/snapshot-groups`), and the EVS snapshot groups
//! themselves (create by volumes or by server, show, list, count, update, tags, delete, and
//! rollback of the whole group).
//!
//! Invariants:
//! - A set is its header row (`group_snapshots` or `snapshot_groups`), one member snapshot row
//!   per volume (`group_snapshot_id` = the header's id) and one `createGroupSnapshot` job, all
//!   written in one transaction: a crash leaves nothing or all of it queued.
//! - That one job takes every member while the members' NBD exports are quiesced, so the set is
//!   crash-consistent across its volumes (see `jobs::execute::group_snapshot`).
//! - A refused request changes nothing: every check runs before the first write or inside the
//!   transaction that rolls back with it.
//! - A group rollback moves every member volume to `rollbacking` in one transaction, or none.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::tags::{validate_tag_key, validate_tag_value};
use super::volumes::{new_job_id, validate_text};
use super::{Caller, QuotaDelta, Services, MAX_TAGS};
use crate::error::{Error, Result};
use crate::model::{
    now_timestamp, parse_uuid, JobKind, JobPayload, Snapshot, SnapshotGroup, SnapshotStatus, Volume, VolumeStatus,
};
use crate::store::{AttachmentFilter, NewJob, WriteTx};

/// Most volumes one snapshot group may take (work per request is bounded).
pub const MAX_GROUP_VOLUMES: usize = 64;

/// Statuses `status` filters may name (the SDK's list).
const STATUSES: [&str; 6] = ["creating", "available", "error", "deleting", "deleted", "error_deleting"];

/// An EVS snapshot group create request (the SDK's `SnapshotGroup`).
#[derive(Debug, Clone, Default)]
pub struct CreateSnapshotGroup {
    /// Volumes to take.
    pub volume_ids: Vec<String>,
    /// Take the volumes attached to this server (all of them, or the listed ones, which must be
    /// attached to it).
    pub server_id: Option<String>,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// Enterprise project, stored.
    pub enterprise_project_id: Option<String>,
}

/// Filters of the EVS list and count (`id`, `name`, `status`, `tag_key`, `tags`,
/// `enterprise_project_id`, `server_id`).
#[derive(Debug, Clone, Default)]
pub struct SnapshotGroupFilter {
    /// Exact id.
    pub id: Option<String>,
    /// Exact name.
    pub name: Option<String>,
    /// Exact status.
    pub status: Option<String>,
    /// Groups that have this tag key.
    pub tag_key: Option<String>,
    /// Groups with every one of these tags (`key` with `value`).
    pub tags: Vec<(String, String)>,
    /// Exact enterprise project.
    pub enterprise_project_id: Option<String>,
    /// Exact server.
    pub server_id: Option<String>,
}

impl SnapshotGroupFilter {
    fn matches(&self, g: &SnapshotGroup) -> bool {
        let eq = |want: &Option<String>, have: Option<&str>| want.as_deref().is_none_or(|w| have == Some(w));
        eq(&self.id, Some(&g.id))
            && eq(&self.name, g.name.as_deref())
            && eq(&self.status, Some(&g.status))
            && eq(&self.enterprise_project_id, g.enterprise_project_id.as_deref())
            && eq(&self.server_id, g.server_id.as_deref())
            && self.tag_key.as_deref().is_none_or(|k| g.tags.contains_key(k))
            && self.tags.iter().all(|(k, v)| g.tags.get(k) == Some(v))
    }

    /// Refuse a `status` no group can have.
    pub fn validate(&self) -> Result<()> {
        if let Some(s) = &self.status {
            if !STATUSES.contains(&s.as_str()) {
                return Err(Error::invalid("EVS.5400", format!("Invalid status {s:?}: use one of {STATUSES:?}.")));
            }
        }
        Ok(())
    }
}

fn not_found(id: &str) -> Error {
    Error::not_found(format!("Snapshot group {id} could not be found."))
}

/// Validate one tag (key and value rules of the reference).
pub fn validate_tag_pair(key: &str, value: &str) -> Result<()> {
    validate_tag_key(key)?;
    validate_tag_value(key, value)
}

/// Validate a set of tags (rules per tag, at most [`MAX_TAGS`]).
fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid("EVS.5400", format!("A snapshot group may have at most {MAX_TAGS} tags.")));
    }
    for (k, v) in tags {
        validate_tag_key(k)?;
        validate_tag_value(k, v)?;
    }
    Ok(())
}

fn check_name(what: &str, v: &Option<String>) -> Result<()> {
    if v.as_ref().is_some_and(|s| s.len() > 255) {
        return Err(Error::invalid("EVS.5400", format!("{what} must be at most 255 bytes.")));
    }
    Ok(())
}

impl Services {
    /// Write the member snapshots of set `set_id` (one per volume, named like the set) and the
    /// one `createGroupSnapshot` job that takes them, inside `tx`. Each volume must still be
    /// `available` or `in-use` (checked in the transaction) and the project's snapshot quota
    /// must allow every member. Returns the job id.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn insert_snapshot_set(
        &self,
        tx: &mut WriteTx<'_>,
        caller: &Caller,
        project_id: &str,
        set_id: &str,
        volumes: &[Volume],
        name: &Option<String>,
        description: &Option<String>,
        now: &str,
    ) -> Result<String> {
        let limits = self.project_limits(project_id).await?;
        for v in volumes {
            // The volume must not start a delete or rollback between our read and the insert.
            if !tx.cas_volume_status(&v.id, &[VolumeStatus::Available, VolumeStatus::InUse], v.status, now).await? {
                return Err(Error::invalid("EVS.5400", format!("Invalid volume: Volume {} changed status.", v.id)));
            }
            let s = Snapshot {
                id: Uuid::new_v4().to_string(),
                project_id: v.project_id.clone(),
                user_id: caller.user_id.clone(),
                volume_id: v.id.clone(),
                name: name.clone(),
                description: description.clone(),
                size_gb: v.size_gb,
                status: SnapshotStatus::Creating,
                pool: v.pool.clone(),
                created_at: now.to_string(),
                updated_at: None,
                metadata: BTreeMap::new(),
                tags: BTreeMap::new(),
                group_snapshot_id: Some(set_id.to_string()),
                progress: None,
            };
            let delta = QuotaDelta {
                snapshots: 1,
                gigabytes: s.size_gb,
                volume_type: v.volume_type_name.clone(),
                ..Default::default()
            };
            self.check_quota(tx, project_id, &delta, &limits).await?;
            tx.insert_snapshot(&s).await?;
        }
        let job_id = new_job_id();
        let ids: Vec<&str> = volumes.iter().map(|v| v.id.as_str()).collect();
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: project_id.to_string(),
            kind: JobKind::CreateGroupSnapshot,
            parent_id: None,
            volume_id: None,
            payload: Some(JobPayload { snapshot_id: Some(set_id.to_string()), ..Default::default() }),
            entities: serde_json::json!({"snapshot_group_id": set_id, "volume_ids": ids}).to_string(),
            begin_time: now.to_string(),
        })
        .await?;
        Ok(job_id)
    }

    /// The volumes an EVS snapshot group takes: the listed ones, or those attached to
    /// `server_id`; each visible to the caller, listed once, `available` or `in-use`.
    async fn snapshot_group_volumes(&self, caller: &Caller, req: &CreateSnapshotGroup) -> Result<Vec<Volume>> {
        let attached: Option<BTreeSet<String>> = match &req.server_id {
            None => None,
            Some(sid) => {
                if parse_uuid(sid).is_none() {
                    return Err(Error::invalid("EVS.5400", format!("Invalid server_id {sid:?}: not a UUID.")));
                }
                let f = AttachmentFilter {
                    project_id: Some(caller.project_id.clone()),
                    instance_uuid: Some(sid.clone()),
                    ..Default::default()
                };
                Some(
                    self.db
                        .list_attachments(&f, MAX_GROUP_VOLUMES as i64 + 1, 0)
                        .await?
                        .into_iter()
                        .map(|a| a.volume_id)
                        .collect(),
                )
            }
        };
        let ids: Vec<String> = match (&attached, req.volume_ids.is_empty()) {
            (Some(a), true) => a.iter().cloned().collect(),
            (_, false) => req.volume_ids.clone(),
            (None, true) => {
                return Err(Error::invalid("EVS.5400", "Invalid request: volume_ids or server_id is required."));
            }
        };
        if ids.is_empty() {
            return Err(Error::invalid("EVS.5400", "Invalid request: the server has no attached disk."));
        }
        if ids.len() > MAX_GROUP_VOLUMES {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid request: a snapshot group takes at most {MAX_GROUP_VOLUMES} disks."),
            ));
        }
        let mut seen = BTreeSet::new();
        let mut out = Vec::with_capacity(ids.len());
        for id in &ids {
            if !seen.insert(id.as_str()) {
                return Err(Error::invalid("EVS.5400", format!("Invalid request: volume {id} is listed twice.")));
            }
            let v = self.get_volume(caller, id).await?;
            if v.project_id != caller.project_id {
                return Err(Error::not_found(format!("Volume {id} could not be found.")));
            }
            if let Some(a) = &attached {
                if !a.contains(&v.id) {
                    return Err(Error::invalid(
                        "EVS.5400",
                        format!(
                            "Invalid request: volume {id} is not attached to server {}.",
                            req.server_id.as_deref().unwrap_or("")
                        ),
                    ));
                }
            }
            if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                return Err(Error::invalid_status(
                    "EVS.5400",
                    format!("Invalid volume: Volume {} status must be available or in-use, but is {}.", v.id, v.status),
                ));
            }
            out.push(v);
        }
        Ok(out)
    }

    /// Create an EVS snapshot group: its row, the member snapshots and the job, in one
    /// transaction. Returns the group and the job id.
    pub async fn create_snapshot_group(
        &self,
        caller: &Caller,
        req: CreateSnapshotGroup,
    ) -> Result<(SnapshotGroup, String)> {
        check_name("name", &req.name)?;
        check_name("description", &req.description)?;
        validate_text(&req.enterprise_project_id, "EVS.5400", "enterprise_project_id")?;
        check_tags(&req.tags)?;
        let volumes = self.snapshot_group_volumes(caller, &req).await?;
        let now = now_timestamp();
        let g = SnapshotGroup {
            id: Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name: req.name.clone(),
            description: req.description.clone(),
            status: "creating".into(),
            server_id: req.server_id.clone(),
            enterprise_project_id: req.enterprise_project_id.clone(),
            tags: req.tags.clone(),
            created_at: now.clone(),
            updated_at: None,
        };
        let mut tx = self.db.begin_write().await?;
        tx.insert_snapshot_group(&g).await?;
        let job = self
            .insert_snapshot_set(&mut tx, caller, &g.project_id, &g.id, &volumes, &g.name, &g.description, &now)
            .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok((g, job))
    }

    /// One snapshot group of the caller's project (any project's for an admin).
    pub async fn get_snapshot_group(&self, caller: &Caller, id: &str) -> Result<SnapshotGroup> {
        if parse_uuid(id).is_none() {
            return Err(not_found(id));
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_snapshot_group(scope, id).await?.ok_or_else(|| not_found(id))
    }

    /// The caller's project's snapshot groups that match `f`, newest first.
    pub async fn list_snapshot_groups(&self, caller: &Caller, f: &SnapshotGroupFilter) -> Result<Vec<SnapshotGroup>> {
        f.validate()?;
        Ok(self.db.list_snapshot_groups(&caller.project_id).await?.into_iter().filter(|g| f.matches(g)).collect())
    }

    /// Member snapshots of a snapshot group.
    pub async fn snapshot_group_members(&self, id: &str) -> Result<Vec<Snapshot>> {
        let mut out = Vec::new();
        for sid in self.db.group_snapshot_member_ids(id).await? {
            if let Some(s) = self.db.get_snapshot(None, &sid).await? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// Rename or redescribe a snapshot group.
    pub async fn update_snapshot_group(
        &self,
        caller: &Caller,
        id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<SnapshotGroup> {
        check_name("name", &name)?;
        check_name("description", &description)?;
        let mut g = self.get_snapshot_group(caller, id).await?;
        if name.is_none() && description.is_none() {
            return Err(Error::invalid("EVS.5400", "Invalid request: give name or description."));
        }
        if let Some(n) = name {
            g.name = Some(n);
        }
        if let Some(d) = description {
            g.description = Some(d);
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.update_snapshot_group(&g, &now).await? {
            return Err(not_found(id));
        }
        tx.commit().await?;
        g.updated_at = Some(now);
        Ok(g)
    }

    /// Add (`Some` value) or remove (`None`: any value; `Some(v)` with `remove`: only that
    /// value) tags of a snapshot group, all or nothing.
    pub async fn change_snapshot_group_tags(
        &self,
        caller: &Caller,
        id: &str,
        add: Vec<(String, String)>,
        remove: Vec<(String, Option<String>)>,
    ) -> Result<SnapshotGroup> {
        let mut g = self.get_snapshot_group(caller, id).await?;
        let mut seen = BTreeSet::new();
        for (k, v) in &add {
            validate_tag_key(k)?;
            validate_tag_value(k, v)?;
            if !seen.insert(k.clone()) {
                return Err(Error::invalid("EVS.5400", format!("Duplicate tag key {k:?}: tag keys must be unique.")));
            }
            g.tags.insert(k.clone(), v.clone());
        }
        for (k, v) in &remove {
            validate_tag_key(k)?;
            match v {
                Some(v) if g.tags.get(k) != Some(v) => {}
                _ => {
                    g.tags.remove(k);
                }
            }
        }
        check_tags(&g.tags)?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.update_snapshot_group(&g, &now).await? {
            return Err(not_found(id));
        }
        tx.commit().await?;
        Ok(g)
    }

    /// Every tag key of the project's snapshot groups with its values.
    pub async fn snapshot_group_project_tags(&self, caller: &Caller) -> Result<BTreeMap<String, Vec<String>>> {
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for g in self.db.list_snapshot_groups(&caller.project_id).await? {
            for (k, v) in g.tags {
                out.entry(k).or_default().insert(v);
            }
        }
        Ok(out.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect())
    }

    /// Delete a snapshot group and its member snapshots: one `deleteSnapshot` job per member,
    /// the row goes with the last one. Refused unless the group is `available` or `error` and
    /// no member is in use as a source. Returns a member's job id (none for an empty group).
    pub async fn delete_snapshot_group(&self, caller: &Caller, id: &str) -> Result<Option<String>> {
        let g = self.get_snapshot_group(caller, id).await?;
        let members = self.snapshot_group_members(&g.id).await?;
        let now = now_timestamp();
        let refused = |why: &str| Error::invalid_status("EVS.5400", format!("Invalid snapshot group: {why}"));
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_snapshot_group_status(&g.id, &["available", "error"], "deleting", &now).await? {
            return Err(refused(&format!("status must be available or error, but is {}.", g.status)));
        }
        let mut first_job = None;
        for s in &members {
            if tx.snapshot_in_use_by_creating_volume(&s.id).await?
                || !tx.cas_snapshot_status(&s.id, &SnapshotStatus::DELETABLE, SnapshotStatus::Deleting, &now).await?
            {
                return Err(refused(&format!("snapshot {} is in use or busy.", s.id)));
            }
            let job_id = new_job_id();
            tx.insert_job(&NewJob {
                id: job_id.clone(),
                project_id: g.project_id.clone(),
                kind: JobKind::DeleteSnapshot,
                parent_id: None,
                volume_id: Some(s.volume_id.clone()),
                payload: Some(JobPayload { snapshot_id: Some(s.id.clone()), ..Default::default() }),
                entities: serde_json::json!({"snapshot_id": s.id, "volume_id": s.volume_id, "snapshot_group_id": g.id})
                    .to_string(),
                begin_time: now.clone(),
            })
            .await?;
            first_job.get_or_insert(job_id);
        }
        tx.settle_snapshot_set(crate::store::SnapshotSet::SnapshotGroups, &g.id, &now).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(first_job)
    }

    /// Roll every member snapshot of an `available` snapshot group back onto its volume, in one
    /// transaction (each volume `available` and without exports, as a single rollback needs).
    /// Returns the job ids.
    pub async fn rollback_snapshot_group(&self, caller: &Caller, id: &str) -> Result<Vec<String>> {
        let g = self.get_snapshot_group(caller, id).await?;
        if g.status != "available" {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid snapshot group: status must be available, but is {}.", g.status),
            ));
        }
        let members = self.snapshot_group_members(&g.id).await?;
        let mut pairs = Vec::with_capacity(members.len());
        for s in members {
            let v = self.get_volume(caller, &s.volume_id).await?;
            pairs.push((s, v));
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        let mut jobs = Vec::with_capacity(pairs.len());
        for (s, v) in &pairs {
            jobs.push(self.enqueue_rollback(&mut tx, s, v, &now).await?);
        }
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(jobs)
    }
}
