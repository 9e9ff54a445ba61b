//! Generic volume groups: group types and their specs, groups with their volume types, group
//! snapshots, and the membership columns `volumes.group_id` / `snapshots.group_snapshot_id`.
//!
//! Invariant kept here: a group or group snapshot in a transitional status (`creating`,
//! `deleting`) leaves it only through [`WriteTx::settle_group`] /
//! [`WriteTx::settle_group_snapshot`], which the job that finishes a member calls in its own
//! finishing transaction, and which start-up recovery calls for every transitional row. Each
//! settle first locks the row (a no-op `UPDATE`), so on PostgreSQL two members finishing at once
//! cannot both see the other still running.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;
use crate::model::{Group, GroupSnapshot, GroupType};

const GROUP_COLUMNS: &str = "id, project_id, user_id, name, description, status, availability_zone, \
     group_type_id, group_snapshot_id, source_group_id, created_at, updated_at";

const GROUP_SNAPSHOT_COLUMNS: &str =
    "id, project_id, user_id, group_id, group_type_id, name, description, status, created_at, updated_at";

/// Why a group type could not be deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupTypeDelete {
    /// Gone.
    Deleted,
    /// No such type.
    NotFound,
    /// A group still uses it.
    InUse,
}

fn group_type_from_row(r: &AnyRow) -> Result<GroupType> {
    Ok(GroupType {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        is_public: r.try_get::<i64, _>("is_public")? != 0,
        group_specs: BTreeMap::new(),
        created_at: r.try_get("created_at")?,
    })
}

fn group_from_row(r: &AnyRow) -> Result<Group> {
    Ok(Group {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        status: r.try_get("status")?,
        availability_zone: r.try_get("availability_zone")?,
        group_type_id: r.try_get("group_type_id")?,
        volume_types: Vec::new(),
        group_snapshot_id: r.try_get("group_snapshot_id")?,
        source_group_id: r.try_get("source_group_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn group_snapshot_from_row(r: &AnyRow) -> Result<GroupSnapshot> {
    Ok(GroupSnapshot {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        group_id: r.try_get("group_id")?,
        group_type_id: r.try_get("group_type_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        status: r.try_get("status")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

impl Db {
    /// Every group type (specs included), oldest first.
    pub async fn list_group_types(&self) -> Result<Vec<GroupType>> {
        let rows =
            sqlx::query("SELECT id, name, description, is_public, created_at FROM group_types ORDER BY created_at, id")
                .fetch_all(self.pool())
                .await?;
        let mut out = rows.iter().map(group_type_from_row).collect::<Result<Vec<_>>>()?;
        let specs = sqlx::query("SELECT type_id, key, value FROM group_type_specs").fetch_all(self.pool()).await?;
        for r in &specs {
            let id: String = r.try_get("type_id")?;
            if let Some(t) = out.iter_mut().find(|t| t.id == id) {
                t.group_specs.insert(r.try_get("key")?, r.try_get("value")?);
            }
        }
        Ok(out)
    }

    /// One group type by id, or by name when no id matches (Cinder looks both up).
    pub async fn get_group_type(&self, id_or_name: &str) -> Result<Option<GroupType>> {
        let row = sqlx::query(
            "SELECT id, name, description, is_public, created_at FROM group_types WHERE id = $1 \
             UNION ALL SELECT id, name, description, is_public, created_at FROM group_types WHERE name = $1 \
             AND id <> $1",
        )
        .bind(id_or_name)
        .fetch_all(self.pool())
        .await?;
        let Some(r) = row.first() else { return Ok(None) };
        let mut t = group_type_from_row(r)?;
        for s in sqlx::query("SELECT key, value FROM group_type_specs WHERE type_id = $1")
            .bind(&t.id)
            .fetch_all(self.pool())
            .await?
        {
            t.group_specs.insert(s.try_get("key")?, s.try_get("value")?);
        }
        Ok(Some(t))
    }

    /// Insert a group type with its specs; false (nothing written) when the name is taken.
    pub async fn create_group_type(&self, t: &GroupType) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT id FROM group_types WHERE name = $1")
            .bind(&t.name)
            .fetch_optional(tx.conn())
            .await?
            .is_some()
        {
            return Ok(false);
        }
        sqlx::query("INSERT INTO group_types (id, name, description, is_public, created_at) VALUES ($1,$2,$3,$4,$5)")
            .bind(&t.id)
            .bind(&t.name)
            .bind(t.description.as_deref())
            .bind(t.is_public as i64)
            .bind(&t.created_at)
            .execute(tx.conn())
            .await?;
        tx.replace_key_values("group_type_specs", "type_id", &t.id, &t.group_specs).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Write a group type's name, description, visibility and specs; false when the name
    /// belongs to another type.
    pub async fn update_group_type(&self, t: &GroupType) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT id FROM group_types WHERE name = $1 AND id <> $2")
            .bind(&t.name)
            .bind(&t.id)
            .fetch_optional(tx.conn())
            .await?
            .is_some()
        {
            return Ok(false);
        }
        sqlx::query("UPDATE group_types SET name = $1, description = $2, is_public = $3 WHERE id = $4")
            .bind(&t.name)
            .bind(t.description.as_deref())
            .bind(t.is_public as i64)
            .bind(&t.id)
            .execute(tx.conn())
            .await?;
        tx.replace_key_values("group_type_specs", "type_id", &t.id, &t.group_specs).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Delete a group type no group uses.
    pub async fn delete_group_type(&self, id: &str) -> Result<GroupTypeDelete> {
        let mut tx = self.begin_write().await?;
        if sqlx::query("SELECT id FROM group_types WHERE id = $1").bind(id).fetch_optional(tx.conn()).await?.is_none() {
            return Ok(GroupTypeDelete::NotFound);
        }
        let used = sqlx::query(
            "SELECT id FROM volume_groups WHERE group_type_id = $1 \
             UNION ALL SELECT id FROM group_snapshots WHERE group_type_id = $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .is_some();
        if used {
            return Ok(GroupTypeDelete::InUse);
        }
        sqlx::query("DELETE FROM group_type_specs WHERE type_id = $1").bind(id).execute(tx.conn()).await?;
        sqlx::query("DELETE FROM group_types WHERE id = $1").bind(id).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(GroupTypeDelete::Deleted)
    }

    /// One group; `project_id = None` looks across projects.
    pub async fn get_group(&self, project_id: Option<&str>, id: &str) -> Result<Option<Group>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM volume_groups WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        let Some(r) = row else { return Ok(None) };
        let mut g = group_from_row(&r)?;
        self.fill_group_types(std::slice::from_mut(&mut g)).await?;
        Ok(Some(g))
    }

    /// Groups of a project (`None` = all), newest first as Cinder lists them.
    pub async fn list_groups(&self, project_id: Option<&str>) -> Result<Vec<Group>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_COLUMNS} FROM volume_groups WHERE ($1 = '' OR project_id = $1) \
             ORDER BY created_at DESC, id DESC"
        )))
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        let mut out = rows.iter().map(group_from_row).collect::<Result<Vec<_>>>()?;
        self.fill_group_types(&mut out).await?;
        Ok(out)
    }

    async fn fill_group_types(&self, groups: &mut [Group]) -> Result<()> {
        for g in groups.iter_mut() {
            let rows = sqlx::query(
                "SELECT volume_type_id FROM volume_group_types WHERE group_id = $1 ORDER BY position, volume_type_id",
            )
            .bind(&g.id)
            .fetch_all(self.pool())
            .await?;
            g.volume_types = rows.iter().map(|r| r.try_get("volume_type_id")).collect::<std::result::Result<_, _>>()?;
        }
        Ok(())
    }

    /// Ids of the volumes in a group, oldest first.
    pub async fn group_volume_ids(&self, group_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM volumes WHERE group_id = $1 ORDER BY created_at, id")
            .bind(group_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// One group snapshot; `project_id = None` looks across projects.
    pub async fn get_group_snapshot(&self, project_id: Option<&str>, id: &str) -> Result<Option<GroupSnapshot>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_SNAPSHOT_COLUMNS} FROM group_snapshots WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(group_snapshot_from_row).transpose()
    }

    /// Group snapshots of a project (`None` = all), newest first.
    pub async fn list_group_snapshots(&self, project_id: Option<&str>) -> Result<Vec<GroupSnapshot>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {GROUP_SNAPSHOT_COLUMNS} FROM group_snapshots WHERE ($1 = '' OR project_id = $1) \
             ORDER BY created_at DESC, id DESC"
        )))
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(group_snapshot_from_row).collect()
    }

    /// Ids of a group snapshot's member snapshots, oldest first.
    pub async fn group_snapshot_member_ids(&self, group_snapshot_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM snapshots WHERE group_snapshot_id = $1 ORDER BY created_at, id")
            .bind(group_snapshot_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// Settle every group and group snapshot left in a transitional status (start-up
    /// recovery, after the member volumes and snapshots were repaired). Returns how many changed.
    pub async fn settle_transitional_groups(&self, now: &str) -> Result<u64> {
        let groups = sqlx::query("SELECT id FROM volume_groups WHERE status IN ('creating', 'deleting')")
            .fetch_all(self.pool())
            .await?;
        let snaps = sqlx::query("SELECT id FROM group_snapshots WHERE status IN ('creating', 'deleting')")
            .fetch_all(self.pool())
            .await?;
        let evs_sets = sqlx::query("SELECT id FROM snapshot_groups WHERE status IN ('creating', 'deleting')")
            .fetch_all(self.pool())
            .await?;
        let mut changed = 0;
        let mut tx = self.begin_write().await?;
        for r in &snaps {
            changed += tx.settle_group_snapshot(&r.try_get::<String, _>("id")?, now).await? as u64;
        }
        for r in &evs_sets {
            changed +=
                tx.settle_snapshot_set(SnapshotSet::SnapshotGroups, &r.try_get::<String, _>("id")?, now).await? as u64;
        }
        for r in &groups {
            changed += tx.settle_group(&r.try_get::<String, _>("id")?, now).await? as u64;
        }
        tx.commit().await?;
        Ok(changed)
    }
}

/// The tables whose rows head a set of member snapshots (`snapshots.group_snapshot_id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSet {
    /// Cinder group snapshots (`group_snapshots`).
    GroupSnapshots,
    /// EVS snapshot groups (`snapshot_groups`).
    SnapshotGroups,
}

impl SnapshotSet {
    fn table(self) -> &'static str {
        match self {
            Self::GroupSnapshots => "group_snapshots",
            Self::SnapshotGroups => "snapshot_groups",
        }
    }
}

/// How many rows of `sql` (a `SELECT COUNT(*) AS n …` with one `$1`) there are for `id`.
async fn count(tx: &mut WriteTx<'_>, sql: &'static str, id: &str) -> Result<i64> {
    Ok(sqlx::query(sql).bind(id).fetch_one(tx.conn()).await?.try_get("n")?)
}

impl WriteTx<'_> {
    /// Insert a group and its volume types.
    pub async fn insert_group(&mut self, g: &Group) -> Result<()> {
        sqlx::query(
            "INSERT INTO volume_groups (id, project_id, user_id, name, description, status, availability_zone, \
             group_type_id, group_snapshot_id, source_group_id, created_at, updated_at) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(&g.id)
        .bind(&g.project_id)
        .bind(g.user_id.as_deref())
        .bind(g.name.as_deref())
        .bind(g.description.as_deref())
        .bind(&g.status)
        .bind(&g.availability_zone)
        .bind(&g.group_type_id)
        .bind(g.group_snapshot_id.as_deref())
        .bind(g.source_group_id.as_deref())
        .bind(&g.created_at)
        .bind(g.updated_at.as_deref())
        .execute(self.conn())
        .await?;
        for (i, t) in g.volume_types.iter().enumerate() {
            sqlx::query("INSERT INTO volume_group_types (group_id, volume_type_id, position) VALUES ($1, $2, $3)")
                .bind(&g.id)
                .bind(t)
                .bind(i as i64)
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }

    /// Set a group's name and description (`Some` replaces).
    pub async fn update_group_text(
        &mut self,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        now: &str,
    ) -> Result<()> {
        self.update_text("volume_groups", id, name, description, now).await
    }

    /// Compare-and-set a group's status; true when the row changed.
    pub async fn cas_group_status(&mut self, id: &str, from: &[&str], to: &str, now: &str) -> Result<bool> {
        self.cas_status("volume_groups", id, from, to, now).await
    }

    /// Compare-and-set a group snapshot's status; true when the row changed.
    pub async fn cas_group_snapshot_status(&mut self, id: &str, from: &[&str], to: &str, now: &str) -> Result<bool> {
        self.cas_status("group_snapshots", id, from, to, now).await
    }

    /// Put a volume in a group (`Some`) or take it out (`None`), only when its membership is
    /// still `expect`; true when the row changed.
    pub async fn set_volume_group(
        &mut self,
        volume_id: &str,
        expect: Option<&str>,
        group_id: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE volumes SET group_id = $1, updated_at = $2 WHERE id = $3 \
             AND COALESCE(group_id, '') = $4",
        )
        .bind(group_id)
        .bind(now)
        .bind(volume_id)
        .bind(expect.unwrap_or(""))
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether a snapshot of this volume is a member of a group snapshot.
    pub async fn volume_has_group_snapshot_members(&mut self, volume_id: &str) -> Result<bool> {
        Ok(count(
            self,
            "SELECT COUNT(*) AS n FROM snapshots WHERE volume_id = $1 AND group_snapshot_id IS NOT NULL",
            volume_id,
        )
        .await?
            > 0)
    }

    /// Whether a group has group snapshots.
    pub async fn group_has_snapshots(&mut self, group_id: &str) -> Result<bool> {
        Ok(count(self, "SELECT COUNT(*) AS n FROM group_snapshots WHERE group_id = $1", group_id).await? > 0)
    }

    /// Whether a group being created takes its data from this group or group snapshot (`id`).
    pub async fn group_source_in_use(&mut self, id: &str) -> Result<bool> {
        Ok(sqlx::query(
            "SELECT id FROM volume_groups WHERE status = 'creating' AND (source_group_id = $1 \
             OR group_snapshot_id = $1) LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?
        .is_some())
    }

    /// Insert a group snapshot row (its members are inserted as snapshots).
    pub async fn insert_group_snapshot(&mut self, g: &GroupSnapshot) -> Result<()> {
        sqlx::query(
            "INSERT INTO group_snapshots (id, project_id, user_id, group_id, group_type_id, name, description, \
             status, created_at, updated_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)",
        )
        .bind(&g.id)
        .bind(&g.project_id)
        .bind(g.user_id.as_deref())
        .bind(&g.group_id)
        .bind(&g.group_type_id)
        .bind(g.name.as_deref())
        .bind(g.description.as_deref())
        .bind(&g.status)
        .bind(&g.created_at)
        .bind(g.updated_at.as_deref())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Delete a group row and its volume types (its volumes are gone or left it).
    pub async fn delete_group_row(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM volume_group_types WHERE group_id = $1").bind(id).execute(self.conn()).await?;
        sqlx::query("DELETE FROM volume_groups WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(())
    }

    /// Delete a group snapshot row (its members are gone).
    pub async fn delete_group_snapshot_row(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM group_snapshots WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(())
    }

    /// Move a group out of a transitional status once no member is still working:
    /// `creating` → `available` (or `error` when a member failed); `deleting` → row removed
    /// when no member is left, `error_deleting` when members stay and none is still deleting.
    /// True when something changed.
    pub async fn settle_group(&mut self, id: &str, now: &str) -> Result<bool> {
        sqlx::query("UPDATE volume_groups SET status = status WHERE id = $1").bind(id).execute(self.conn()).await?;
        let Some(row) =
            sqlx::query("SELECT status FROM volume_groups WHERE id = $1").bind(id).fetch_optional(self.conn()).await?
        else {
            return Ok(false);
        };
        let status: String = row.try_get("status")?;
        match status.as_str() {
            "creating" => {
                if count(self, "SELECT COUNT(*) AS n FROM volumes WHERE group_id = $1 AND status = 'creating'", id)
                    .await?
                    > 0
                {
                    return Ok(false);
                }
                let failed =
                    count(self, "SELECT COUNT(*) AS n FROM volumes WHERE group_id = $1 AND status = 'error'", id)
                        .await?;
                let to = if failed > 0 { "error" } else { "available" };
                self.cas_group_status(id, &["creating"], to, now).await
            }
            "deleting" => {
                if count(self, "SELECT COUNT(*) AS n FROM volumes WHERE group_id = $1", id).await? == 0 {
                    self.delete_group_row(id).await?;
                    return Ok(true);
                }
                if count(self, "SELECT COUNT(*) AS n FROM volumes WHERE group_id = $1 AND status = 'deleting'", id)
                    .await?
                    > 0
                {
                    return Ok(false);
                }
                self.cas_group_status(id, &["deleting"], "error_deleting", now).await
            }
            _ => Ok(false),
        }
    }

    /// The group snapshot counterpart of [`Self::settle_group`], over its member snapshots.
    pub async fn settle_group_snapshot(&mut self, id: &str, now: &str) -> Result<bool> {
        self.settle_snapshot_set(SnapshotSet::GroupSnapshots, id, now).await
    }

    /// Settle a set of member snapshots (`snapshots.group_snapshot_id = id`) whose header row
    /// lives in `set`'s table: Cinder group snapshots and EVS snapshot groups share the members,
    /// the job that takes them and this rule.
    pub async fn settle_snapshot_set(&mut self, set: SnapshotSet, id: &str, now: &str) -> Result<bool> {
        let table = set.table();
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET status = status WHERE id = $1")))
            .bind(id)
            .execute(self.conn())
            .await?;
        let Some(row) = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT status FROM {table} WHERE id = $1")))
            .bind(id)
            .fetch_optional(self.conn())
            .await?
        else {
            return Ok(false);
        };
        let status: String = row.try_get("status")?;
        match status.as_str() {
            "creating" => {
                if count(
                    self,
                    "SELECT COUNT(*) AS n FROM snapshots WHERE group_snapshot_id = $1 AND status = 'creating'",
                    id,
                )
                .await?
                    > 0
                {
                    return Ok(false);
                }
                let not_ok = count(
                    self,
                    "SELECT COUNT(*) AS n FROM snapshots WHERE group_snapshot_id = $1 AND status <> 'available'",
                    id,
                )
                .await?;
                let to = if not_ok > 0 { "error" } else { "available" };
                self.cas_status(table, id, &["creating"], to, now).await
            }
            "deleting" => {
                if count(self, "SELECT COUNT(*) AS n FROM snapshots WHERE group_snapshot_id = $1", id).await? == 0 {
                    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE id = $1")))
                        .bind(id)
                        .execute(self.conn())
                        .await?;
                    return Ok(true);
                }
                if count(
                    self,
                    "SELECT COUNT(*) AS n FROM snapshots WHERE group_snapshot_id = $1 AND status = 'deleting'",
                    id,
                )
                .await?
                    > 0
                {
                    return Ok(false);
                }
                self.cas_status(table, id, &["deleting"], "error_deleting", now).await
            }
            _ => Ok(false),
        }
    }

    /// Settle the set headed by `id`, whichever table holds its row (the id names a row of one
    /// of them; settling the other is a no-op).
    pub async fn settle_any_snapshot_set(&mut self, id: &str, now: &str) -> Result<()> {
        self.settle_snapshot_set(SnapshotSet::GroupSnapshots, id, now).await?;
        self.settle_snapshot_set(SnapshotSet::SnapshotGroups, id, now).await?;
        Ok(())
    }

    /// [`Self::settle_group`] for the group of a volume, if it has one.
    pub async fn settle_group_of_volume(&mut self, volume_id: &str, now: &str) -> Result<()> {
        let row = sqlx::query("SELECT group_id FROM volumes WHERE id = $1")
            .bind(volume_id)
            .fetch_optional(self.conn())
            .await?;
        if let Some(gid) = row.map(|r| r.try_get::<Option<String>, _>("group_id")).transpose()?.flatten() {
            self.settle_group(&gid, now).await?;
        }
        Ok(())
    }

    /// [`Self::settle_group_snapshot`] for the group snapshot of a snapshot, if it has one.
    pub async fn settle_group_snapshot_of(&mut self, snapshot_id: &str, now: &str) -> Result<()> {
        let row = sqlx::query("SELECT group_snapshot_id FROM snapshots WHERE id = $1")
            .bind(snapshot_id)
            .fetch_optional(self.conn())
            .await?;
        if let Some(gid) = row.map(|r| r.try_get::<Option<String>, _>("group_snapshot_id")).transpose()?.flatten() {
            self.settle_any_snapshot_set(&gid, now).await?;
        }
        Ok(())
    }
}
