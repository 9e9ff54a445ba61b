//! EVS idempotency tokens (`X-Client-Token`): one row per project and token, holding the reply
//! of the create that first used it.

use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;

impl Db {
    /// The stored reply of the create that used `token` in `project_id`, if any.
    pub async fn client_token_reply(&self, project_id: &str, token: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT response FROM client_tokens WHERE project_id = $1 AND token = $2")
            .bind(project_id)
            .bind(token)
            .fetch_optional(self.pool())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("response")?),
            None => None,
        })
    }
}

impl WriteTx<'_> {
    /// The stored reply of a token, read inside this transaction (never take a second pool
    /// connection while holding one: under load that can wait forever).
    pub async fn client_token_reply(&mut self, project_id: &str, token: &str) -> Result<Option<String>> {
        let row = sqlx::query("SELECT response FROM client_tokens WHERE project_id = $1 AND token = $2")
            .bind(project_id)
            .bind(token)
            .fetch_optional(self.conn())
            .await?;
        Ok(match row {
            Some(r) => Some(r.try_get("response")?),
            None => None,
        })
    }

    /// Claim `token` for this transaction's create; false when the project already used it
    /// (then nothing was written). On PostgreSQL a concurrent claim of the same token waits
    /// here until the other transaction ends, so exactly one of them wins.
    pub async fn insert_client_token(
        &mut self,
        project_id: &str,
        token: &str,
        job_id: &str,
        response: &str,
        now: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "INSERT INTO client_tokens (project_id, token, job_id, response, created_at) \
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (project_id, token) DO NOTHING",
        )
        .bind(project_id)
        .bind(token)
        .bind(job_id)
        .bind(response)
        .bind(now)
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }
}
