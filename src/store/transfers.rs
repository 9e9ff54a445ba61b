//! Volume transfer rows, and the ownership move of an accept.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;

/// A pending transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    /// UUID.
    pub id: String,
    /// The volume offered.
    pub volume_id: String,
    /// The giving project.
    pub project_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Random salt of the key hash.
    pub salt: String,
    /// hex(sha256(salt ‖ auth_key)).
    pub key_hash: String,
    /// The volume moves without its snapshots (3.55).
    pub no_snapshots: bool,
    /// Creation time.
    pub created_at: String,
}

const COLUMNS: &str = "id, volume_id, project_id, name, salt, key_hash, no_snapshots, created_at";

fn from_row(r: &AnyRow) -> Result<TransferRow> {
    Ok(TransferRow {
        id: r.try_get("id")?,
        volume_id: r.try_get("volume_id")?,
        project_id: r.try_get("project_id")?,
        name: r.try_get("name")?,
        salt: r.try_get("salt")?,
        key_hash: r.try_get("key_hash")?,
        no_snapshots: r.try_get::<i64, _>("no_snapshots")? != 0,
        created_at: r.try_get("created_at")?,
    })
}

impl Db {
    /// One pending transfer (`project_id = None`: any project, as the receiver looks it up).
    pub async fn get_transfer(&self, project_id: Option<&str>, id: &str) -> Result<Option<TransferRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM transfers WHERE id = $1 AND accepted = 0 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Pending transfers of a project (`None`: all), newest first.
    pub async fn list_transfers(&self, project_id: Option<&str>, limit: i64, offset: i64) -> Result<Vec<TransferRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM transfers WHERE accepted = 0 AND ($1 = '' OR project_id = $1) \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        )))
        .bind(project_id.unwrap_or(""))
        .bind(limit)
        .bind(offset)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl WriteTx<'_> {
    /// Insert a transfer.
    pub async fn insert_transfer(&mut self, t: &TransferRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO transfers (id, volume_id, project_id, name, salt, key_hash, no_snapshots, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&t.id)
        .bind(&t.volume_id)
        .bind(&t.project_id)
        .bind(t.name.as_deref())
        .bind(&t.salt)
        .bind(&t.key_hash)
        .bind(t.no_snapshots as i64)
        .bind(&t.created_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Remove a transfer; false when it was already gone (accepted or deleted meanwhile).
    pub async fn delete_transfer(&mut self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM transfers WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(r.rows_affected() == 1)
    }

    /// Move a volume, its snapshots and their tags to `project_id`.
    pub async fn move_volume_to_project(
        &mut self,
        volume_id: &str,
        project_id: &str,
        user_id: Option<&str>,
        now: &str,
    ) -> Result<()> {
        // The accepting user becomes the owner of the volume and its snapshots, as in Cinder.
        sqlx::query(
            "UPDATE volumes SET project_id = $1, updated_at = $2, user_id = COALESCE($4, user_id) WHERE id = $3",
        )
        .bind(project_id)
        .bind(now)
        .bind(volume_id)
        .bind(user_id)
        .execute(self.conn())
        .await?;
        sqlx::query(
            "UPDATE tags SET project_id = $1 WHERE (resource_type = 'volumes' AND resource_id = $2) \
             OR (resource_type = 'snapshots' AND resource_id IN (SELECT id FROM snapshots WHERE volume_id = $2))",
        )
        .bind(project_id)
        .bind(volume_id)
        .execute(self.conn())
        .await?;
        sqlx::query(
            "UPDATE snapshots SET project_id = $1, updated_at = $2, user_id = COALESCE($4, user_id) WHERE volume_id = $3",
        )
        .bind(project_id)
        .bind(now)
        .bind(volume_id)
        .bind(user_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
