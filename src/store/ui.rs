//! ui: the web dashboard's sessions (`ui_sessions`) and the per-project figures its overview
//! shows. Session rows are keyed by the SHA-256 of the cookie secret, never the secret.

use sqlx::Row;

use super::Db;
use crate::error::Result;

/// One dashboard session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UiSessionRecord {
    /// SHA-256 (hex) of the cookie secret.
    pub id_hash: String,
    /// The signed-in user (`None` in noauth mode).
    pub user_id: Option<String>,
    /// The project the session acts in.
    pub project_id: String,
    /// Sign-in time.
    pub created_at: String,
    /// Last request (refreshed at most once a minute).
    pub last_seen_at: String,
    /// Absolute end.
    pub expires_at: String,
}

const COLUMNS: &str = "id_hash, user_id, project_id, created_at, last_seen_at, expires_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<UiSessionRecord> {
    Ok(UiSessionRecord {
        id_hash: r.try_get("id_hash")?,
        user_id: r.try_get("user_id")?,
        project_id: r.try_get("project_id")?,
        created_at: r.try_get("created_at")?,
        last_seen_at: r.try_get("last_seen_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Db {
    /// Store a new session; sessions past their absolute end or idle since before
    /// `idle_before` are purged in the same transaction, so the table stays bounded by the
    /// sessions alive.
    pub async fn insert_ui_session(&self, s: &UiSessionRecord, now: &str, idle_before: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM ui_sessions WHERE expires_at < $1 OR last_seen_at < $2")
            .bind(now)
            .bind(idle_before)
            .execute(tx.conn())
            .await?;
        sqlx::query(
            "INSERT INTO ui_sessions (id_hash, user_id, project_id, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&s.id_hash)
        .bind(s.user_id.as_deref())
        .bind(&s.project_id)
        .bind(&s.created_at)
        .bind(&s.last_seen_at)
        .bind(&s.expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// A session by the hash of its secret (expired ones included; the caller checks).
    pub async fn ui_session(&self, id_hash: &str) -> Result<Option<UiSessionRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM ui_sessions WHERE id_hash = $1")))
            .bind(id_hash)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// The live sessions of a user, newest first.
    pub async fn ui_sessions_of_user(&self, user_id: &str) -> Result<Vec<UiSessionRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM ui_sessions WHERE user_id = $1 ORDER BY created_at DESC LIMIT 100"
        )))
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Record activity on a session.
    pub async fn touch_ui_session(&self, id_hash: &str, now: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE ui_sessions SET last_seen_at = $1 WHERE id_hash = $2")
            .bind(now)
            .bind(id_hash)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }

    /// End a session; false when there was none.
    pub async fn delete_ui_session(&self, id_hash: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query("DELETE FROM ui_sessions WHERE id_hash = $1").bind(id_hash).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }

    /// `(status, count)` of the volumes of one project (all projects when `None`).
    pub async fn volume_status_counts_in(&self, project_id: Option<&str>) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT status, COUNT(*) AS n FROM volumes WHERE ($1 = '' OR project_id = $1) \
             GROUP BY status ORDER BY status",
        )
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }
}
