//! User message rows (Cinder 3.3 `messages`). Expired rows are purged whenever a new one is
//! written, so the table stays bounded without a timer.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;
use crate::model::Message;

const COLUMNS: &str = "id, project_id, request_id, resource_type, resource_uuid, event_id, action_id, detail_id, \
     message_level, created_at, expires_at";

fn message_from_row(r: &AnyRow) -> Result<Message> {
    Ok(Message {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        request_id: r.try_get("request_id")?,
        resource_type: r.try_get("resource_type")?,
        resource_uuid: r.try_get("resource_uuid")?,
        event_id: r.try_get("event_id")?,
        action_id: r.try_get("action_id")?,
        detail_id: r.try_get("detail_id")?,
        message_level: r.try_get("message_level")?,
        created_at: r.try_get("created_at")?,
        expires_at: r.try_get("expires_at")?,
    })
}

impl Db {
    /// A project's messages (every project's for `None`), newest first.
    pub async fn list_messages(&self, project_id: Option<&str>) -> Result<Vec<Message>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM messages WHERE ($1 = '' OR project_id = $1) ORDER BY created_at DESC, id DESC"
        )))
        .bind(project_id.unwrap_or(""))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(message_from_row).collect()
    }

    /// One message; `project_id = None` looks across projects.
    pub async fn get_message(&self, project_id: Option<&str>, id: &str) -> Result<Option<Message>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM messages WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(message_from_row).transpose()
    }
}

impl WriteTx<'_> {
    /// Record a message (and drop the expired ones).
    pub async fn insert_message(&mut self, m: &Message) -> Result<()> {
        sqlx::query("DELETE FROM messages WHERE expires_at < $1").bind(&m.created_at).execute(self.conn()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO messages ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(&m.id)
        .bind(&m.project_id)
        .bind(&m.request_id)
        .bind(m.resource_type.as_deref())
        .bind(m.resource_uuid.as_deref())
        .bind(&m.event_id)
        .bind(&m.action_id)
        .bind(&m.detail_id)
        .bind(&m.message_level)
        .bind(&m.created_at)
        .bind(&m.expires_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Delete one message; true when it existed.
    pub async fn delete_message(&mut self, id: &str) -> Result<bool> {
        let r = sqlx::query("DELETE FROM messages WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(r.rows_affected() == 1)
    }
}
