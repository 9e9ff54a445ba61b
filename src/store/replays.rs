//! The AK/SK replay cache (`signature_replays`): a signature of a state-changing request is
//! claimed once inside its validity window; a second claim of the same signature fails.
//!
//! Invariant: a row exists for every signature accepted for a state-changing request whose
//! window has not ended; rows past `expires_at` are dead (such a request is refused as stale
//! before the cache is asked) and are purged by later claims.

use super::Db;
use crate::error::Result;

impl Db {
    /// Claim `signature` (hex) until `expires_at`; false when it was already claimed (a
    /// replay). Purges expired rows first. On PostgreSQL two concurrent claims of one signature
    /// serialize on the primary key, so exactly one wins.
    pub async fn claim_signature(&self, signature: &str, expires_at: &str, now: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM signature_replays WHERE expires_at < $1").bind(now).execute(tx.conn()).await?;
        let r = sqlx::query(
            "INSERT INTO signature_replays (signature, expires_at) VALUES ($1, $2) ON CONFLICT (signature) DO NOTHING",
        )
        .bind(signature)
        .bind(expires_at)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected() == 1)
    }
}
