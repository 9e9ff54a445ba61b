//! Read-only figures for operations: the systemd `STATUS=` line, `/readyz` and `/metrics`.

use sqlx::Row;

use super::Db;
use crate::error::Result;

/// Counts shown in the systemd status line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpsCounts {
    /// Volumes (deleted ones leave no row).
    pub volumes: i64,
    /// Jobs queued or running.
    pub jobs_in_flight: i64,
}

impl Db {
    /// Answer one trivial query: the database is reachable and serving.
    pub async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").fetch_one(self.pool()).await?;
        Ok(())
    }

    /// Volume and in-flight job counts.
    pub async fn ops_counts(&self) -> Result<OpsCounts> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM volumes) AS volumes, \
             (SELECT COUNT(*) FROM jobs WHERE status IN ('INIT', 'RUNNING')) AS jobs",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(OpsCounts { volumes: row.try_get("volumes")?, jobs_in_flight: row.try_get("jobs")? })
    }

    /// `(status, count)` of the volumes (`cinderblock status`).
    pub async fn volume_status_counts(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM volumes GROUP BY status ORDER BY status")
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("status")?, r.try_get("n")?))).collect()
    }

    /// `(kind, status, count)` of queued (`INIT`) and running jobs.
    pub async fn jobs_in_flight_by_kind(&self) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT kind, status, COUNT(*) AS n FROM jobs WHERE status IN ('INIT', 'RUNNING') \
             GROUP BY kind, status ORDER BY kind, status",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("kind")?, r.try_get("status")?, r.try_get("n")?))).collect()
    }

    /// `(pool, volume id, size in GiB)` of every volume (for per-volume metrics
    /// and the provisioned bytes of each pool).
    pub async fn volume_sizes(&self) -> Result<Vec<(String, String, i64)>> {
        let rows =
            sqlx::query("SELECT pool, id, size_gb FROM volumes ORDER BY pool, id").fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok((r.try_get("pool")?, r.try_get("id")?, r.try_get("size_gb")?))).collect()
    }
}
