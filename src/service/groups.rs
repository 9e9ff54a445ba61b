//! Generic volume groups (Cinder 3.11–3.20): group types with group specs, groups of volumes,
//! and group snapshots — the mechanism EVS snapshot groups are meant to reuse.
//!
//! Invariants:
//! - Every request validates first and writes in one transaction; a refused request changes
//!   nothing.
//! - Storage work goes through jobs: a group snapshot is one member snapshot row per member
//!   volume (with `group_snapshot_id`) plus one `createGroupSnapshot` job for the set, a
//!   group from a source is one `createVolume` job per new member, a group delete one
//!   `deleteVolume` job per member. All rows and jobs of one request are written in the same
//!   transaction, so a crash leaves either nothing or every job queued.
//! - A group or group snapshot leaves `creating`/`deleting` only when its last member's job
//!   finishes (`settle_group*` in that job's finishing transaction) or at start-up recovery, so
//!   it never stays transitional after its members settled: a member that failed makes the
//!   whole set `error`; the set is `available` only when every member is.
//! - A group snapshot is crash-consistent across its members: its one job takes them while the
//!   members' NBD exports are quiesced (the mechanism EVS snapshot groups share, see
//!   `snapshot_groups`). Loop-device exports are not held (consistent per volume only).

use std::collections::BTreeMap;

use uuid::Uuid;

use super::volumes::{new_job_id, no_space, validate_text};
use super::{Caller, QuotaDelta, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{
    now_timestamp, parse_uuid, Group, GroupSnapshot, GroupType, JobKind, JobPayload, Snapshot, SnapshotStatus, Volume,
    VolumeStatus, GROUP_SNAPSHOT_STATUSES, GROUP_STATUSES,
};
use crate::store::{GroupTypeDelete, NewJob};

/// Name of the group type `GET /group_types/default` answers (Cinder's `default_group_type`).
pub const DEFAULT_GROUP_TYPE: &str = "default";

/// Volume statuses a volume may join a group from (Cinder's `VALID_ADD_VOL_TO_GROUP_STATUS`).
const ADD_STATUSES: [VolumeStatus; 2] = [VolumeStatus::Available, VolumeStatus::InUse];
/// Volume statuses a volume may leave a group from (`VALID_REMOVE_VOL_FROM_GROUP_STATUS`).
const REMOVE_STATUSES: [VolumeStatus; 4] =
    [VolumeStatus::Available, VolumeStatus::InUse, VolumeStatus::Error, VolumeStatus::ErrorDeleting];

/// Changes to a group type; `None` keeps.
#[derive(Debug, Clone, Default)]
pub struct GroupTypeChange {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// New visibility.
    pub is_public: Option<bool>,
}

/// A group create request.
#[derive(Debug, Clone, Default)]
pub struct CreateGroup {
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Group type id or name.
    pub group_type: String,
    /// Volume type ids or names (at least one).
    pub volume_types: Vec<String>,
    /// Zone; the default zone when `None`.
    pub availability_zone: Option<String>,
}

/// A group update request (`add_volumes`/`remove_volumes` already split on commas).
#[derive(Debug, Clone, Default)]
pub struct UpdateGroup {
    /// New name.
    pub name: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Volumes to add.
    pub add_volumes: Vec<String>,
    /// Volumes to remove.
    pub remove_volumes: Vec<String>,
}

/// Where a group created from a source takes its volumes from (exactly one is set).
#[derive(Debug, Clone, Default)]
pub struct GroupSource {
    /// Clone each member snapshot of this group snapshot.
    pub group_snapshot_id: Option<String>,
    /// Clone each volume of this group.
    pub source_group_id: Option<String>,
}

fn admin_only(caller: &Caller) -> Result<()> {
    if caller.is_admin {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Forbidden, "Policy doesn't allow managing group types.").with_code("EVS.5403"))
    }
}

fn check_type_name(name: &str) -> Result<()> {
    if name.trim().is_empty() || name.chars().count() > 255 {
        return Err(Error::invalid("EVS.5400", "Group type name must be 1 to 255 characters."));
    }
    Ok(())
}

fn check_specs(specs: &BTreeMap<String, String>) -> Result<()> {
    for (k, v) in specs {
        if k.is_empty() || k.len() > 255 || v.len() > 255 {
            return Err(Error::invalid("EVS.5400", format!("group spec {k:?} and its value must be 1 to 255 bytes")));
        }
    }
    Ok(())
}

fn group_type_not_found(id: &str) -> Error {
    Error::not_found(format!("Group type with id {id} could not be found."))
}

fn group_not_found(id: &str) -> Error {
    Error::not_found(format!("Group {id} could not be found."))
}

fn group_snapshot_not_found(id: &str) -> Error {
    Error::not_found(format!("GroupSnapshot {id} could not be found."))
}

fn invalid_group(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", format!("Invalid group: {}", msg.into()))
}

fn invalid_volume(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", format!("Invalid volume: {}", msg.into()))
}

impl Services {
    // ---- group types ----------------------------------------------------------------------

    /// Group types the caller may see: public ones, and for admins also private ones
    /// (`is_public` filters for admins, as Cinder's `is_public` query).
    pub async fn list_group_types(&self, caller: &Caller, is_public: Option<bool>) -> Result<Vec<GroupType>> {
        let all = self.db.list_group_types().await?;
        Ok(all
            .into_iter()
            .filter(|t| if caller.is_admin { is_public.is_none_or(|p| t.is_public == p) } else { t.is_public })
            .collect())
    }

    /// One group type by id or name; `default` is the type named [`DEFAULT_GROUP_TYPE`].
    pub async fn get_group_type(&self, caller: &Caller, id: &str) -> Result<GroupType> {
        if id == "default" {
            return self
                .db
                .get_group_type(DEFAULT_GROUP_TYPE)
                .await?
                .filter(|t| t.is_public || caller.is_admin)
                .ok_or_else(|| Error::not_found("Default group type can not be found."));
        }
        self.db
            .get_group_type(id)
            .await?
            .filter(|t| t.is_public || caller.is_admin)
            .ok_or_else(|| group_type_not_found(id))
    }

    /// Create a group type (admin). A taken name is 409.
    pub async fn create_group_type(
        &self,
        caller: &Caller,
        name: String,
        description: Option<String>,
        is_public: bool,
        group_specs: BTreeMap<String, String>,
    ) -> Result<GroupType> {
        admin_only(caller)?;
        check_type_name(&name)?;
        validate_text(&description, "EVS.5400", "description")?;
        check_specs(&group_specs)?;
        let t = GroupType {
            id: Uuid::new_v4().to_string(),
            name,
            description,
            is_public,
            group_specs,
            created_at: now_timestamp(),
        };
        if !self.db.create_group_type(&t).await? {
            return Err(Error::conflict("EVS.5409", format!("Group Type {} already exists.", t.name)));
        }
        Ok(t)
    }

    /// Change a group type's name, description or visibility (admin).
    pub async fn update_group_type(&self, caller: &Caller, id: &str, change: GroupTypeChange) -> Result<GroupType> {
        admin_only(caller)?;
        if let Some(n) = &change.name {
            if n.trim().is_empty() {
                return Err(Error::invalid("EVS.5400", "Group type name can not be empty."));
            }
            check_type_name(n)?;
        }
        if change.name.is_none() && change.description.is_none() && change.is_public.is_none() {
            return Err(Error::invalid("EVS.5400", "Specify group type name, description or a combination thereof."));
        }
        validate_text(&change.description, "EVS.5400", "description")?;
        let mut t = self.db.get_group_type(id).await?.filter(|t| t.id == id).ok_or_else(|| group_type_not_found(id))?;
        if let Some(n) = change.name {
            t.name = n;
        }
        if let Some(d) = change.description {
            t.description = Some(d);
        }
        if let Some(p) = change.is_public {
            t.is_public = p;
        }
        if !self.db.update_group_type(&t).await? {
            return Err(Error::conflict("EVS.5409", format!("Group Type {} already exists.", t.name)));
        }
        Ok(t)
    }

    /// Delete a group type no group uses (admin).
    pub async fn delete_group_type(&self, caller: &Caller, id: &str) -> Result<()> {
        admin_only(caller)?;
        let t = self.db.get_group_type(id).await?.ok_or_else(|| group_type_not_found(id))?;
        match self.db.delete_group_type(&t.id).await? {
            GroupTypeDelete::Deleted => Ok(()),
            GroupTypeDelete::NotFound => Err(group_type_not_found(id)),
            GroupTypeDelete::InUse => Err(Error::invalid("EVS.5400", "Target group type is still in use.")),
        }
    }

    /// Add or overwrite group specs (admin); returns the type after the change.
    pub async fn set_group_specs(
        &self,
        caller: &Caller,
        id: &str,
        specs: BTreeMap<String, String>,
    ) -> Result<GroupType> {
        admin_only(caller)?;
        check_specs(&specs)?;
        let mut t = self.db.get_group_type(id).await?.filter(|t| t.id == id).ok_or_else(|| group_type_not_found(id))?;
        t.group_specs.extend(specs);
        self.db.update_group_type(&t).await?;
        Ok(t)
    }

    /// Remove one group spec (admin); 404 when the type has no such key.
    pub async fn delete_group_spec(&self, caller: &Caller, id: &str, key: &str) -> Result<()> {
        admin_only(caller)?;
        let mut t = self.db.get_group_type(id).await?.filter(|t| t.id == id).ok_or_else(|| group_type_not_found(id))?;
        if t.group_specs.remove(key).is_none() {
            return Err(Error::not_found(format!("Group Type {id} has no specs with key {key}.")));
        }
        self.db.update_group_type(&t).await?;
        Ok(())
    }

    // ---- groups -----------------------------------------------------------------------------

    /// One group the caller may see (its project's, or any for admins).
    pub async fn get_group(&self, caller: &Caller, id: &str) -> Result<Group> {
        if parse_uuid(id).is_none() {
            return Err(group_not_found(id));
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_group(scope, id).await?.ok_or_else(|| group_not_found(id))
    }

    /// Groups of the caller's project (of every project for an admin asking `all_tenants`).
    pub async fn list_groups(&self, caller: &Caller, all_tenants: bool) -> Result<Vec<Group>> {
        let scope = (!(caller.is_admin && all_tenants)).then_some(caller.project_id.as_str());
        self.db.list_groups(scope).await
    }

    /// Ids of the volumes of a group (3.25 `list_volume`).
    pub async fn group_volume_ids(&self, group_id: &str) -> Result<Vec<String>> {
        self.db.group_volume_ids(group_id).await
    }

    /// The volumes of a group.
    pub async fn group_volumes(&self, group_id: &str) -> Result<Vec<Volume>> {
        let mut out = Vec::new();
        for id in self.db.group_volume_ids(group_id).await? {
            if let Some(v) = self.db.get_volume(None, &id).await? {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The volume type ids a group's volumes may have, from ids or names the caller may use.
    fn resolve_volume_types(&self, caller: &Caller, refs: &[String]) -> Result<Vec<String>> {
        if refs.is_empty() {
            return Err(Error::invalid("EVS.5400", "Invalid input received: volume_types must not be empty."));
        }
        let mut ids = Vec::new();
        for r in refs {
            let t = self
                .catalog
                .find_type(r)
                .filter(|t| t.visible_to(&caller.project_id, caller.is_admin))
                .ok_or_else(|| Error::not_found(format!("Volume type {r} could not be found.")))?;
            if !ids.contains(&t.id) {
                ids.push(t.id);
            }
        }
        Ok(ids)
    }

    /// Create an empty group. It needs no storage work, so it is `available` at once.
    pub async fn create_group(&self, caller: &Caller, req: CreateGroup) -> Result<Group> {
        validate_text(&req.name, "EVS.5400", "name")?;
        validate_text(&req.description, "EVS.5400", "description")?;
        let gt = self.get_group_type(caller, &req.group_type).await?;
        let volume_types = self.resolve_volume_types(caller, &req.volume_types)?;
        let az = req.availability_zone.clone().unwrap_or_else(|| self.config.default_availability_zone.clone());
        if !self.catalog.zones.contains(&az) {
            return Err(Error::invalid(
                "EVS.1036",
                format!("Invalid input received: Availability zone '{az}' is invalid."),
            ));
        }
        let g = Group {
            id: Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name: req.name.map(|n| n.trim().to_string()),
            description: req.description.map(|d| d.trim().to_string()),
            status: "available".into(),
            availability_zone: az,
            group_type_id: gt.id,
            volume_types,
            group_snapshot_id: None,
            source_group_id: None,
            created_at: now_timestamp(),
            updated_at: None,
        };
        let limits = self.project_limits(&caller.project_id).await?;
        let mut tx = self.db.begin_write().await?;
        let delta = QuotaDelta { groups: 1, ..Default::default() };
        self.check_quota(&mut tx, &caller.project_id, &delta, &limits).await?;
        tx.insert_group(&g).await?;
        tx.commit().await?;
        Ok(g)
    }

    /// Check that a new volume of type `volume_type_id` may join `group_id` (Cinder 3.13
    /// `group_id` on volume create); returns the group.
    pub async fn group_for_new_volume(&self, caller: &Caller, group_id: &str, volume_type_id: &str) -> Result<Group> {
        let g = self.get_group(caller, group_id).await?;
        if g.project_id != caller.project_id {
            return Err(group_not_found(group_id));
        }
        if !g.volume_types.iter().any(|t| t == volume_type_id) {
            return Err(Error::invalid(
                "EVS.5400",
                format!(
                    "Invalid input received: Invalid volume_type provided: {volume_type_id} (requested type must be \
                     supported by this group)."
                ),
            ));
        }
        if g.status != "available" {
            return Err(invalid_group(format!("Group {} status must be available, but is {}.", g.id, g.status)));
        }
        Ok(g)
    }

    /// Rename a group and add or remove volumes, in one transaction.
    pub async fn update_group(&self, caller: &Caller, id: &str, upd: UpdateGroup) -> Result<()> {
        let g = self.get_group(caller, id).await?;
        let name = upd.name.map(|n| n.trim().to_string()).filter(|n| Some(n) != g.name.as_ref());
        let description = upd.description.map(|d| d.trim().to_string()).filter(|d| Some(d) != g.description.as_ref());
        validate_text(&name, "EVS.5400", "name")?;
        validate_text(&description, "EVS.5400", "description")?;
        let both: Vec<&String> = upd.add_volumes.iter().filter(|a| upd.remove_volumes.contains(a)).collect();
        if !both.is_empty() {
            return Err(invalid_volume(format!("UUIDs {both:?} are in both add and remove volume list.")));
        }
        let members = self.group_volumes(&g.id).await?;
        let mut add = Vec::new();
        for vid in &upd.add_volumes {
            if members.iter().any(|m| &m.id == vid) || add.iter().any(|v: &Volume| &v.id == vid) {
                continue;
            }
            let cannot = |why: String| invalid_volume(format!("Cannot add volume {vid} to group {} {why}", g.id));
            let v = match self.get_volume(caller, vid).await {
                Ok(v) => v,
                Err(e) if e.kind == ErrorKind::NotFound => {
                    return Err(cannot("because volume cannot be found.".into()));
                }
                Err(e) => return Err(e),
            };
            if let Some(other) = &v.group_id {
                return Err(cannot(format!("because it is already in group {other}.")));
            }
            if v.project_id != g.project_id {
                return Err(cannot("as they belong to different projects.".into()));
            }
            if !g.volume_types.contains(&v.volume_type_id) {
                return Err(cannot(format!("because volume type {} is not supported by the group.", v.volume_type_id)));
            }
            if !ADD_STATUSES.contains(&v.status) {
                return Err(cannot(format!(
                    "because volume is in an invalid state: {}. Valid states are: ['available', 'in-use'].",
                    v.status
                )));
            }
            add.push(v);
        }
        let mut remove = Vec::new();
        for vid in &upd.remove_volumes {
            let Some(v) = members.iter().find(|m| &m.id == vid) else {
                return Err(invalid_volume(format!(
                    "Cannot remove volume {vid} from group {} because it is not in the group.",
                    g.id
                )));
            };
            if !REMOVE_STATUSES.contains(&v.status) {
                return Err(invalid_volume(format!(
                    "Cannot remove volume {vid} from group {} because volume is in an invalid state: {}. Valid \
                     states are: ['available', 'in-use', 'error', 'error_deleting'].",
                    g.id, v.status
                )));
            }
            if !remove.contains(&v.id) {
                remove.push(v.id.clone());
            }
        }
        if name.is_none() && description.is_none() && add.is_empty() && remove.is_empty() {
            return Err(invalid_group(format!(
                "Cannot update group {} because no valid name, description, add_volumes, or remove_volumes were \
                 provided.",
                g.id
            )));
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !add.is_empty() || !remove.is_empty() {
            // Membership changes only while the group is available (Cinder's "updating" window
            // is this transaction).
            if !tx.cas_group_status(&g.id, &["available"], "available", &now).await? {
                return Err(invalid_group("Group status must be available."));
            }
        }
        for v in &add {
            let statuses: Vec<VolumeStatus> = ADD_STATUSES.to_vec();
            if !tx.cas_volume_status(&v.id, &statuses, v.status, &now).await?
                || !tx.set_volume_group(&v.id, None, Some(&g.id), &now).await?
            {
                return Err(invalid_volume(format!(
                    "Cannot add volume {} to group {}: it changed meanwhile.",
                    v.id, g.id
                )));
            }
        }
        for vid in &remove {
            if !tx.set_volume_group(vid, Some(&g.id), None, &now).await? {
                return Err(invalid_volume(format!(
                    "Cannot remove volume {vid} from group {}: it changed meanwhile.",
                    g.id
                )));
            }
        }
        tx.update_group_text(&g.id, name.map(Some), description.map(Some), &now).await?;
        tx.commit().await
    }

    /// Delete a group; with `delete_volumes` its volumes too (each through a `deleteVolume`
    /// job; the group row goes when the last one is gone).
    pub async fn delete_group(&self, caller: &Caller, id: &str, delete_volumes: bool) -> Result<()> {
        let g = self.get_group(caller, id).await?;
        if !delete_volumes && g.status != "available" && g.status != "error" {
            return Err(invalid_group(format!(
                "Group status must be available or error, but current status is: {}",
                g.status
            )));
        }
        let members = self.group_volumes(&g.id).await?;
        if !members.is_empty() && !delete_volumes {
            return Err(invalid_group(format!(
                "Group {} still contains volumes. The delete-volumes flag is required to delete it.",
                g.id
            )));
        }
        for v in &members {
            if v.attachments.iter().any(|a| a.status == crate::model::AttachStatus::Attached) {
                return Err(invalid_group(format!("Volume in group {} is attached. Need to detach first.", g.id)));
            }
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        let from: Vec<&str> = if delete_volumes { GROUP_STATUSES.to_vec() } else { vec!["available", "error"] };
        if tx.group_has_snapshots(&g.id).await? {
            return Err(invalid_group("Group has existing snapshots."));
        }
        if tx.group_source_in_use(&g.id).await? || !tx.cas_group_status(&g.id, &from, "deleting", &now).await? {
            return Err(invalid_group(format!(
                "Cannot delete group {}. Group status must be available or error and must not have dependent group \
                 snapshots, and it cannot be the source for an ongoing group or group snapshot creation.",
                g.id
            )));
        }
        for v in &members {
            if tx.count_volume_snapshots(&v.id).await? > 0 {
                return Err(invalid_group("Volume in group still has dependent snapshots."));
            }
            if tx.volume_busy_as_source(&v.id).await?
                || !tx.cas_volume_status(&v.id, &VolumeStatus::DELETABLE, VolumeStatus::Deleting, &now).await?
            {
                return Err(invalid_group(format!(
                    "Cannot delete group {}: volume {} status must be available or error, but is {}.",
                    g.id, v.id, v.status
                )));
            }
            tx.insert_job(&NewJob {
                id: new_job_id(),
                project_id: v.project_id.clone(),
                kind: JobKind::DeleteVolume,
                parent_id: None,
                volume_id: Some(v.id.clone()),
                payload: None,
                entities: serde_json::json!({"volume_id": v.id, "size": v.size_gb, "name": v.name, "volume_type": v.volume_type_name, "group_id": g.id})
                    .to_string(),
                begin_time: now.clone(),
            })
            .await?;
        }
        // With no members left to wait for, this removes the row now.
        tx.settle_group(&g.id, &now).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(())
    }

    /// Set a group's status (admin, 3.20), whatever it was.
    pub async fn reset_group_status(&self, caller: &Caller, id: &str, status: &str) -> Result<()> {
        let status = status.to_lowercase();
        if !GROUP_STATUSES.contains(&status.as_str()) {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid input for field/attribute status. Value: {status}. Invalid group status."),
            ));
        }
        let g = self.get_group(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        tx.cas_group_status(&g.id, &GROUP_STATUSES, &status, &now_timestamp()).await?;
        tx.commit().await
    }

    /// Create a group whose volumes are clones of a group snapshot's members or of a source
    /// group's volumes (3.14). The group is `creating` until every new volume's job finished.
    pub async fn create_group_from_src(
        &self,
        caller: &Caller,
        name: Option<String>,
        description: Option<String>,
        src: GroupSource,
    ) -> Result<Group> {
        validate_text(&name, "EVS.5400", "name")?;
        validate_text(&description, "EVS.5400", "description")?;
        // (new volume's source snapshot or volume, the volume it copies)
        let (template, sources): (Group, Vec<(Option<Snapshot>, Volume)>) =
            match (&src.group_snapshot_id, &src.source_group_id) {
                (Some(gs_id), None) => {
                    let gs = self.get_group_snapshot(caller, gs_id).await?;
                    if gs.status != "available" {
                        return Err(invalid_group(format!(
                            "Group snapshot {} status must be available, but is {}.",
                            gs.id, gs.status
                        )));
                    }
                    let group = self.get_group(caller, &gs.group_id).await?;
                    let mut pairs = Vec::new();
                    for sid in self.db.group_snapshot_member_ids(&gs.id).await? {
                        let s = self.get_snapshot(caller, &sid).await?;
                        let v = self
                            .db
                            .get_volume(None, &s.volume_id)
                            .await?
                            .ok_or_else(|| Error::internal("snapshot without volume"))?;
                        pairs.push((Some(s), v));
                    }
                    if pairs.is_empty() {
                        return Err(invalid_group("Group snapshot is empty. No group will be created."));
                    }
                    (group, pairs)
                }
                (None, Some(g_id)) => {
                    let group = self.get_group(caller, g_id).await?;
                    if group.status != "available" {
                        return Err(invalid_group(format!(
                            "Source group {} status must be available, but is {}.",
                            group.id, group.status
                        )));
                    }
                    let pairs: Vec<_> = self.group_volumes(&group.id).await?.into_iter().map(|v| (None, v)).collect();
                    if pairs.is_empty() {
                        return Err(invalid_group("Source Group is empty. No group will be created."));
                    }
                    (group, pairs)
                }
                _ => {
                    return Err(invalid_group(
                        "Either 'group_snapshot_id' or 'source_group_id' must be provided to create group from source.",
                    ))
                }
            };
        for (s, v) in &sources {
            if s.is_none() && !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                return Err(invalid_volume(format!(
                    "Source volume {} status must be available or in-use, but is {}.",
                    v.id, v.status
                )));
            }
        }
        let now = now_timestamp();
        let g = Group {
            id: Uuid::new_v4().to_string(),
            project_id: caller.project_id.clone(),
            user_id: caller.user_id.clone(),
            name: name.map(|n| n.trim().to_string()),
            description: description.map(|d| d.trim().to_string()),
            status: "creating".into(),
            availability_zone: template.availability_zone.clone(),
            group_type_id: template.group_type_id.clone(),
            volume_types: template.volume_types.clone(),
            group_snapshot_id: src.group_snapshot_id.clone(),
            source_group_id: src.source_group_id.clone(),
            created_at: now.clone(),
            updated_at: None,
        };
        let new_volumes: Vec<Volume> = sources
            .iter()
            .map(|(s, v)| Volume {
                id: Uuid::new_v4().to_string(),
                project_id: caller.project_id.clone(),
                user_id: caller.user_id.clone(),
                name: v.name.clone(),
                description: v.description.clone(),
                size_gb: s.as_ref().map_or(v.size_gb, |s| s.size_gb),
                status: VolumeStatus::Creating,
                availability_zone: v.availability_zone.clone(),
                volume_type_id: v.volume_type_id.clone(),
                volume_type_name: v.volume_type_name.clone(),
                // Clones live beside their source: reflinks cannot cross file systems.
                pool: s.as_ref().map_or(v.pool.clone(), |s| s.pool.clone()),
                bootable: v.bootable,
                multiattach: v.multiattach,
                readonly: false,
                snapshot_id: s.as_ref().map(|s| s.id.clone()),
                source_volid: s.is_none().then(|| v.id.clone()),
                created_at: now.clone(),
                updated_at: None,
                metadata: BTreeMap::new(),
                tags: BTreeMap::new(),
                attachments: Vec::new(),
                encrypted: v.encrypted,
                group_id: Some(g.id.clone()),
                migration_status: None,
                image_metadata: BTreeMap::new(),
                evs: Default::default(),
            })
            .collect();
        // Pool capacity per pool, read before the transaction (see `project_limits`).
        let mut per_pool: BTreeMap<String, i64> = BTreeMap::new();
        for v in &new_volumes {
            *per_pool.entry(v.pool.clone()).or_default() += v.size_gb;
        }
        let mut caps = Vec::new();
        for (pool, gb) in &per_pool {
            let rt = self.pools.get(pool).ok_or_else(|| Error::internal(format!("pool {pool} is not configured")))?;
            caps.push((pool.clone(), *gb, self.capacity_limit_gb(rt, *gb)));
        }
        let limits = self.project_limits(&caller.project_id).await?;
        let mut tx = self.db.begin_write().await?;
        for (s, v) in &sources {
            // The sources must still be usable inside the transaction (no delete started).
            let ok = match s {
                Some(s) => {
                    tx.cas_snapshot_status(&s.id, &[SnapshotStatus::Available], SnapshotStatus::Available, &now).await?
                }
                None => {
                    tx.cas_volume_status(&v.id, &[VolumeStatus::Available, VolumeStatus::InUse], v.status, &now).await?
                }
            };
            if !ok {
                return Err(invalid_group("A source of the new group changed status."));
            }
        }
        for v in &new_volumes {
            let delta = QuotaDelta {
                volumes: 1,
                gigabytes: v.size_gb,
                volume_type: v.volume_type_name.clone(),
                per_volume_gb: Some(v.size_gb),
                ..Default::default()
            };
            self.check_quota(&mut tx, &caller.project_id, &delta, &limits).await?;
            // Counted as soon as inserted, so the next member's quota check sees it.
            tx.insert_volume(v).await?;
        }
        for (pool, gb, cap) in caps {
            if !tx.reserve_pool_capacity(&pool, gb, cap?).await? {
                return Err(no_space(&pool, gb));
            }
        }
        self.check_quota(&mut tx, &caller.project_id, &QuotaDelta { groups: 1, ..Default::default() }, &limits).await?;
        tx.insert_group(&g).await?;
        for v in &new_volumes {
            tx.insert_job(&NewJob {
                id: new_job_id(),
                project_id: caller.project_id.clone(),
                kind: JobKind::CreateVolume,
                parent_id: None,
                volume_id: Some(v.id.clone()),
                payload: None,
                entities: serde_json::json!({"volume_id": v.id, "size": v.size_gb, "name": v.name, "volume_type": v.volume_type_name, "group_id": g.id})
                    .to_string(),
                begin_time: now.clone(),
            })
            .await?;
        }
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(g)
    }

    // ---- group snapshots ----------------------------------------------------------------------

    /// One group snapshot the caller may see.
    pub async fn get_group_snapshot(&self, caller: &Caller, id: &str) -> Result<GroupSnapshot> {
        if parse_uuid(id).is_none() {
            return Err(group_snapshot_not_found(id));
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_group_snapshot(scope, id).await?.ok_or_else(|| group_snapshot_not_found(id))
    }

    /// Group snapshots of the caller's project (every project's for an admin with `all_tenants`).
    pub async fn list_group_snapshots(&self, caller: &Caller, all_tenants: bool) -> Result<Vec<GroupSnapshot>> {
        let scope = (!(caller.is_admin && all_tenants)).then_some(caller.project_id.as_str());
        self.db.list_group_snapshots(scope).await
    }

    /// Snapshot every volume of a group at once: the group snapshot row, one member snapshot
    /// per volume and one `createGroupSnapshot` job for the set, in one transaction (see
    /// `snapshot_groups::insert_snapshot_set`).
    pub async fn create_group_snapshot(
        &self,
        caller: &Caller,
        group_id: &str,
        name: Option<String>,
        description: Option<String>,
    ) -> Result<GroupSnapshot> {
        validate_text(&name, "EVS.5400", "name")?;
        validate_text(&description, "EVS.5400", "description")?;
        let g = self.get_group(caller, group_id).await.map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                Error::not_found(format!("Group {group_id} could not be found."))
            } else {
                e
            }
        })?;
        if g.status != "available" {
            return Err(invalid_group(format!("Group {} status must be available, but is {}.", g.id, g.status)));
        }
        let members = self.group_volumes(&g.id).await?;
        for v in &members {
            if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                return Err(invalid_volume(format!(
                    "Volume {} in group {} status must be available or in-use, but is {}.",
                    v.id, g.id, v.status
                )));
            }
        }
        let now = now_timestamp();
        let gs = GroupSnapshot {
            id: Uuid::new_v4().to_string(),
            project_id: g.project_id.clone(),
            user_id: caller.user_id.clone(),
            group_id: g.id.clone(),
            group_type_id: g.group_type_id.clone(),
            name: name.clone(),
            description: description.clone(),
            status: if members.is_empty() { "available".into() } else { "creating".into() },
            created_at: now.clone(),
            updated_at: None,
        };
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_group_status(&g.id, &["available"], "available", &now).await? {
            return Err(invalid_group(format!("Group {} changed status.", g.id)));
        }
        tx.insert_group_snapshot(&gs).await?;
        if !members.is_empty() {
            // One job takes every member with the exports quiesced (crash-consistent set).
            self.insert_snapshot_set(&mut tx, caller, &g.project_id, &gs.id, &members, &name, &description, &now)
                .await?;
        }
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(gs)
    }

    /// Delete a group snapshot and its member snapshots (one `deleteSnapshot` job each; the row
    /// goes when the last member is gone).
    pub async fn delete_group_snapshot(&self, caller: &Caller, id: &str) -> Result<()> {
        let gs = self.get_group_snapshot(caller, id).await?;
        let members = self.db.group_snapshot_member_ids(&gs.id).await?;
        let now = now_timestamp();
        let refused = || {
            Error::invalid(
                "EVS.5400",
                "Invalid GroupSnapshot: GroupSnapshot status must be available or error, and no Group can be \
                 currently using it as source for its creation.",
            )
        };
        let mut tx = self.db.begin_write().await?;
        if tx.group_source_in_use(&gs.id).await?
            || !tx.cas_group_snapshot_status(&gs.id, &["available", "error"], "deleting", &now).await?
        {
            return Err(refused());
        }
        for sid in &members {
            if tx.snapshot_in_use_by_creating_volume(sid).await?
                || !tx.cas_snapshot_status(sid, &SnapshotStatus::DELETABLE, SnapshotStatus::Deleting, &now).await?
            {
                return Err(refused());
            }
            let volume_id = self.db.get_snapshot(None, sid).await?.map(|s| s.volume_id);
            tx.insert_job(&NewJob {
                id: new_job_id(),
                project_id: gs.project_id.clone(),
                kind: JobKind::DeleteSnapshot,
                parent_id: None,
                volume_id: volume_id.clone(),
                payload: Some(JobPayload { snapshot_id: Some(sid.clone()), ..Default::default() }),
                entities: serde_json::json!({"snapshot_id": sid, "volume_id": volume_id, "group_snapshot_id": gs.id})
                    .to_string(),
                begin_time: now.clone(),
            })
            .await?;
        }
        tx.settle_group_snapshot(&gs.id, &now).await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(())
    }

    /// Set a group snapshot's status (admin, 3.19), whatever it was.
    pub async fn reset_group_snapshot_status(&self, caller: &Caller, id: &str, status: &str) -> Result<()> {
        let status = status.to_lowercase();
        if !GROUP_SNAPSHOT_STATUSES.contains(&status.as_str()) {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid input for field/attribute status. Value: {status}. Invalid group snapshot status."),
            ));
        }
        let gs = self.get_group_snapshot(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        tx.cas_group_snapshot_status(&gs.id, &GROUP_SNAPSHOT_STATUSES, &status, &now_timestamp()).await?;
        tx.commit().await
    }
}
