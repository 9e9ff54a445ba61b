//! Rows of `services` (os-services) and the per-host usage os-hosts shows.
//!
//! A service row is keyed by `(host, binary_name)`; registering at start never clears what an
//! admin set (disabled, reason, frozen), so a disabled pool stays disabled across restarts.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Db;
use crate::error::Result;
use crate::model::ServiceRecord;

const COLUMNS: &str = "host, binary_name, availability_zone, disabled, disabled_reason, frozen, created_at, updated_at";

fn from_row(r: &AnyRow) -> Result<ServiceRecord> {
    Ok(ServiceRecord {
        host: r.try_get("host")?,
        binary: r.try_get("binary_name")?,
        availability_zone: r.try_get("availability_zone")?,
        disabled: r.try_get::<i64, _>("disabled")? != 0,
        disabled_reason: r.try_get("disabled_reason")?,
        frozen: r.try_get::<i64, _>("frozen")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Volumes or snapshots of one project on one pool: count and GiB.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectUsage {
    /// The project.
    pub project_id: String,
    /// Volumes on the pool.
    pub volume_count: i64,
    /// Their GiB.
    pub volume_gb: i64,
    /// Snapshots on the pool.
    pub snapshot_count: i64,
    /// Their GiB.
    pub snapshot_gb: i64,
}

impl Db {
    /// Register a service (insert if new; else refresh its zone and `updated_at`, keeping what
    /// an admin set).
    pub async fn ensure_service(&self, host: &str, binary: &str, zone: &str, now: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE services SET availability_zone = $1, updated_at = $2 WHERE host = $3 AND binary_name = $4",
        )
        .bind(zone)
        .bind(now)
        .bind(host)
        .bind(binary)
        .execute(tx.conn())
        .await?;
        if r.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO services (host, binary_name, availability_zone, disabled, frozen, created_at, updated_at) \
                 VALUES ($1, $2, $3, 0, 0, $4, $4)",
            )
            .bind(host)
            .bind(binary)
            .bind(zone)
            .bind(now)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await
    }

    /// Every service, ordered by binary then host.
    pub async fn list_services(&self) -> Result<Vec<ServiceRecord>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLUMNS} FROM services ORDER BY binary_name DESC, host")))
                .fetch_all(self.pool())
                .await?;
        rows.iter().map(from_row).collect()
    }

    /// Disable or enable one service; `None` when no such service exists. Disabling keeps the
    /// previous reason unless a new one is given; enabling clears it.
    pub async fn set_service_disabled(
        &self,
        host: &str,
        binary: &str,
        disabled: bool,
        reason: Option<&str>,
        now: &str,
    ) -> Result<Option<ServiceRecord>> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE services SET disabled = $1, \
             disabled_reason = CASE WHEN $1 = 0 THEN NULL ELSE COALESCE($2, disabled_reason) END, \
             updated_at = $3 WHERE host = $4 AND binary_name = $5",
        )
        .bind(disabled as i64)
        .bind(reason)
        .bind(now)
        .bind(host)
        .bind(binary)
        .execute(tx.conn())
        .await?;
        if r.rows_affected() == 0 {
            return Ok(None);
        }
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM services WHERE host = $1 AND binary_name = $2"
        )))
        .bind(host)
        .bind(binary)
        .fetch_one(tx.conn())
        .await?;
        let rec = from_row(&row)?;
        tx.commit().await?;
        Ok(Some(rec))
    }

    /// Freeze or thaw the volume services `hosts` (already resolved by the caller).
    pub async fn set_services_frozen(&self, hosts: &[String], frozen: bool, now: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for h in hosts {
            sqlx::query(
                "UPDATE services SET frozen = $1, updated_at = $2 WHERE host = $3 AND binary_name = 'cinder-volume'",
            )
            .bind(frozen as i64)
            .bind(now)
            .bind(h)
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await
    }

    /// Per-project volume and snapshot usage of one pool, ordered by project.
    pub async fn pool_usage(&self, pool: &str) -> Result<Vec<ProjectUsage>> {
        let vols = sqlx::query(
            "SELECT project_id, COUNT(*) AS n, CAST(COALESCE(SUM(size_gb), 0) AS BIGINT) AS gb FROM volumes \
             WHERE pool = $1 GROUP BY project_id ORDER BY project_id",
        )
        .bind(pool)
        .fetch_all(self.pool())
        .await?;
        let snaps = sqlx::query(
            "SELECT project_id, COUNT(*) AS n, CAST(COALESCE(SUM(size_gb), 0) AS BIGINT) AS gb FROM snapshots \
             WHERE pool = $1 GROUP BY project_id",
        )
        .bind(pool)
        .fetch_all(self.pool())
        .await?;
        let mut out: std::collections::BTreeMap<String, ProjectUsage> = std::collections::BTreeMap::new();
        let blank = |p: &str| ProjectUsage {
            project_id: p.to_string(),
            volume_count: 0,
            volume_gb: 0,
            snapshot_count: 0,
            snapshot_gb: 0,
        };
        for r in vols {
            let p: String = r.try_get("project_id")?;
            let u = out.entry(p.clone()).or_insert_with(|| blank(&p));
            u.volume_count = r.try_get("n")?;
            u.volume_gb = r.try_get("gb")?;
        }
        for r in snaps {
            let p: String = r.try_get("project_id")?;
            let u = out.entry(p.clone()).or_insert_with(|| blank(&p));
            u.snapshot_count = r.try_get("n")?;
            u.snapshot_gb = r.try_get("gb")?;
        }
        Ok(out.into_values().collect())
    }
}
