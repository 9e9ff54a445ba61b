//! EVS snapshot group rows (`snapshot_groups`). Members are snapshot rows carrying the group's
//! id in `group_snapshot_id`; their settling rule is shared with Cinder group snapshots
//! ([`super::SnapshotSet`]). Tags are kept as a JSON object in the row: they are only read and
//! written with their group.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::SnapshotGroup;

const COLUMNS: &str = "id, project_id, user_id, name, description, status, server_id, enterprise_project_id, tags, \
                       created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<SnapshotGroup> {
    let tags: String = r.try_get("tags")?;
    Ok(SnapshotGroup {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        user_id: r.try_get("user_id")?,
        name: r.try_get("name")?,
        description: r.try_get("description")?,
        status: r.try_get("status")?,
        server_id: r.try_get("server_id")?,
        enterprise_project_id: r.try_get("enterprise_project_id")?,
        tags: serde_json::from_str(&tags).map_err(|e| Error::internal(format!("snapshot group tags: {e}")))?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn tags_text(tags: &BTreeMap<String, String>) -> String {
    serde_json::to_string(tags).unwrap_or_else(|_| "{}".into())
}

impl Db {
    /// One snapshot group, scoped to `project_id` unless `None`.
    pub async fn get_snapshot_group(&self, project_id: Option<&str>, id: &str) -> Result<Option<SnapshotGroup>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM snapshot_groups WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Snapshot groups of a project, newest first.
    pub async fn list_snapshot_groups(&self, project_id: &str) -> Result<Vec<SnapshotGroup>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM snapshot_groups WHERE project_id = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl Db {
    /// The newest job of `kind` about snapshot (or set) `snapshot_id`, for routes that answer
    /// with the job a service call queued.
    pub async fn latest_job_of_snapshot(&self, snapshot_id: &str, kind: &str) -> Result<Option<String>> {
        let row = sqlx::query(
            "SELECT id FROM jobs WHERE snapshot_id = $1 AND kind = $2 ORDER BY begin_time DESC, id DESC LIMIT 1",
        )
        .bind(snapshot_id)
        .bind(kind)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }
}

impl WriteTx<'_> {
    /// Insert a snapshot group row.
    pub async fn insert_snapshot_group(&mut self, g: &SnapshotGroup) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO snapshot_groups ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)"
        )))
        .bind(&g.id)
        .bind(&g.project_id)
        .bind(g.user_id.as_deref())
        .bind(g.name.as_deref())
        .bind(g.description.as_deref())
        .bind(&g.status)
        .bind(g.server_id.as_deref())
        .bind(g.enterprise_project_id.as_deref())
        .bind(tags_text(&g.tags))
        .bind(&g.created_at)
        .bind(g.updated_at.as_deref())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Write a group's name, description and tags; false when the row is gone.
    pub async fn update_snapshot_group(&mut self, g: &SnapshotGroup, now: &str) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE snapshot_groups SET name = $1, description = $2, tags = $3, updated_at = $4 WHERE id = $5",
        )
        .bind(g.name.as_deref())
        .bind(g.description.as_deref())
        .bind(tags_text(&g.tags))
        .bind(now)
        .bind(&g.id)
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Compare-and-set a snapshot group's status.
    pub async fn cas_snapshot_group_status(&mut self, id: &str, from: &[&str], to: &str, now: &str) -> Result<bool> {
        self.cas_status("snapshot_groups", id, from, to, now).await
    }
}
