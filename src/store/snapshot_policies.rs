//! Auto-snapshot policy rows, their volumes, and the snapshots their runs took.
//!
//! Invariant: `last_due` only moves forward, by [`WriteTx::advance_policy`] (a compare-and-set
//! in the transaction that queues the run), so two schedulers or a restart never take a run
//! twice.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::SnapshotPolicy;

const COLUMNS: &str = "id, project_id, name, repeat_weekdays, repeat_interval_days, time_points, retention_days, \
                       tags, enterprise_project_id, last_due, created_at, updated_at";

fn json_err(e: serde_json::Error) -> Error {
    Error::internal(format!("snapshot policy row: {e}"))
}

fn from_row(r: &AnyRow) -> Result<SnapshotPolicy> {
    Ok(SnapshotPolicy {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        repeat_weekdays: serde_json::from_str(&r.try_get::<String, _>("repeat_weekdays")?).map_err(json_err)?,
        repeat_interval_days: r.try_get("repeat_interval_days")?,
        time_points: serde_json::from_str(&r.try_get::<String, _>("time_points")?).map_err(json_err)?,
        retention_days: r.try_get("retention_days")?,
        tags: serde_json::from_str::<BTreeMap<String, String>>(&r.try_get::<String, _>("tags")?).map_err(json_err)?,
        enterprise_project_id: r.try_get("enterprise_project_id")?,
        last_due: r.try_get("last_due")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Db {
    /// One policy of a project.
    pub async fn get_snapshot_policy(&self, project_id: &str, id: &str) -> Result<Option<SnapshotPolicy>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM snapshot_policies WHERE id = $1 AND project_id = $2"
        )))
        .bind(id)
        .bind(project_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Policies of a project (`None`: of every project), oldest first.
    pub async fn list_snapshot_policies(&self, project_id: Option<&str>) -> Result<Vec<SnapshotPolicy>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM snapshot_policies WHERE ($1 = '' OR project_id = $1) ORDER BY created_at, id"
        )))
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Volumes a policy covers (a deleted volume drops out: only existing rows are joined).
    pub async fn snapshot_policy_volumes(&self, policy_id: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT pv.volume_id AS volume_id FROM snapshot_policy_volumes pv JOIN volumes v ON v.id = pv.volume_id \
             WHERE pv.policy_id = $1 ORDER BY pv.volume_id",
        )
        .bind(policy_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("volume_id")?)).collect()
    }

    /// Snapshots a policy took whose run is older than `before`, oldest first.
    pub async fn expired_auto_snapshots(&self, policy_id: &str, before: i64) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT a.snapshot_id AS id FROM auto_snapshots a JOIN snapshots s ON s.id = a.snapshot_id \
             WHERE a.policy_id = $1 AND a.due < $2 AND s.status = 'available' ORDER BY a.due, a.snapshot_id",
        )
        .bind(policy_id)
        .bind(before)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

impl WriteTx<'_> {
    /// Insert a policy; false when its name is taken in the project.
    pub async fn insert_snapshot_policy(&mut self, p: &SnapshotPolicy) -> Result<bool> {
        let taken = sqlx::query("SELECT 1 AS x FROM snapshot_policies WHERE project_id = $1 AND name = $2")
            .bind(&p.project_id)
            .bind(&p.name)
            .fetch_optional(self.conn())
            .await?;
        if taken.is_some() {
            return Ok(false);
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO snapshot_policies ({COLUMNS}) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)"
        )))
        .bind(&p.id)
        .bind(&p.project_id)
        .bind(&p.name)
        .bind(text(&p.repeat_weekdays))
        .bind(p.repeat_interval_days)
        .bind(text(&p.time_points))
        .bind(p.retention_days)
        .bind(text(&p.tags))
        .bind(p.enterprise_project_id.as_deref())
        .bind(p.last_due)
        .bind(&p.created_at)
        .bind(p.updated_at.as_deref())
        .execute(self.conn())
        .await?;
        Ok(true)
    }

    /// Write a policy's schedule, name and retention (not `last_due`); false when the name is
    /// taken by another policy of the project or the row is gone.
    pub async fn update_snapshot_policy(&mut self, p: &SnapshotPolicy, now: &str) -> Result<bool> {
        let taken =
            sqlx::query("SELECT 1 AS x FROM snapshot_policies WHERE project_id = $1 AND name = $2 AND id <> $3")
                .bind(&p.project_id)
                .bind(&p.name)
                .bind(&p.id)
                .fetch_optional(self.conn())
                .await?;
        if taken.is_some() {
            return Ok(false);
        }
        let r = sqlx::query(
            "UPDATE snapshot_policies SET name = $1, repeat_weekdays = $2, repeat_interval_days = $3, \
             time_points = $4, retention_days = $5, updated_at = $6 WHERE id = $7",
        )
        .bind(&p.name)
        .bind(text(&p.repeat_weekdays))
        .bind(p.repeat_interval_days)
        .bind(text(&p.time_points))
        .bind(p.retention_days)
        .bind(now)
        .bind(&p.id)
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Delete a policy and its volume list (the snapshots it took stay, as ordinary ones).
    pub async fn delete_snapshot_policy(&mut self, id: &str) -> Result<bool> {
        sqlx::query("DELETE FROM snapshot_policy_volumes WHERE policy_id = $1").bind(id).execute(self.conn()).await?;
        sqlx::query("DELETE FROM auto_snapshots WHERE policy_id = $1").bind(id).execute(self.conn()).await?;
        let r = sqlx::query("DELETE FROM snapshot_policies WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Cover `volume_id` by a policy (idempotent).
    pub async fn associate_policy_volume(&mut self, policy_id: &str, volume_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM snapshot_policy_volumes WHERE policy_id = $1 AND volume_id = $2")
            .bind(policy_id)
            .bind(volume_id)
            .execute(self.conn())
            .await?;
        sqlx::query("INSERT INTO snapshot_policy_volumes (policy_id, volume_id) VALUES ($1, $2)")
            .bind(policy_id)
            .bind(volume_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Stop covering `volume_id`; false when it was not covered.
    pub async fn disassociate_policy_volume(&mut self, policy_id: &str, volume_id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM snapshot_policy_volumes WHERE policy_id = $1 AND volume_id = $2")
            .bind(policy_id)
            .bind(volume_id)
            .execute(self.conn())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Claim the run due at `due`: move `last_due` from `from` to `due`; false when another
    /// scheduler (or an earlier life of this one) already did.
    pub async fn advance_policy(&mut self, id: &str, from: i64, due: i64) -> Result<bool> {
        let r = sqlx::query("UPDATE snapshot_policies SET last_due = $1 WHERE id = $2 AND last_due = $3")
            .bind(due)
            .bind(id)
            .bind(from)
            .execute(self.conn())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Record that a run of `policy_id` due at `due` took `snapshot_id`.
    pub async fn insert_auto_snapshot(&mut self, snapshot_id: &str, policy_id: &str, due: i64) -> Result<()> {
        sqlx::query("INSERT INTO auto_snapshots (snapshot_id, policy_id, due) VALUES ($1, $2, $3)")
            .bind(snapshot_id)
            .bind(policy_id)
            .bind(due)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
