//! Quota limits and the per-project lock that makes a quota check and the insert it guards one
//! atomic step: the check's transaction first updates the project's lock row, so a second
//! transaction of the same project waits (PostgreSQL row lock; SQLite has one writer anyway) and
//! then counts the first one's rows.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;

impl Db {
    /// Limits set for one project (resource → limit).
    pub async fn project_quotas(&self, project_id: &str) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT resource, hard_limit FROM quotas WHERE project_id = $1")
            .bind(project_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("resource")?, r.try_get("hard_limit")?))).collect()
    }

    /// Limits of a quota class.
    pub async fn class_quotas(&self, class: &str) -> Result<BTreeMap<String, i64>> {
        let rows = sqlx::query("SELECT resource, hard_limit FROM quota_classes WHERE class_name = $1")
            .bind(class)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("resource")?, r.try_get("hard_limit")?))).collect()
    }

    /// Set (upsert) limits of a project.
    pub async fn set_project_quotas(&self, project_id: &str, limits: &BTreeMap<String, i64>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (k, v) in limits {
            sqlx::query("DELETE FROM quotas WHERE project_id = $1 AND resource = $2")
                .bind(project_id)
                .bind(k)
                .execute(tx.conn())
                .await?;
            sqlx::query("INSERT INTO quotas (project_id, resource, hard_limit) VALUES ($1, $2, $3)")
                .bind(project_id)
                .bind(k)
                .bind(*v)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    /// Forget a project's own limits (back to the defaults).
    pub async fn delete_project_quotas(&self, project_id: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM quotas WHERE project_id = $1").bind(project_id).execute(tx.conn()).await?;
        tx.commit().await
    }

    /// Set (upsert) limits of a quota class.
    pub async fn set_class_quotas(&self, class: &str, limits: &BTreeMap<String, i64>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (k, v) in limits {
            sqlx::query("DELETE FROM quota_classes WHERE class_name = $1 AND resource = $2")
                .bind(class)
                .bind(k)
                .execute(tx.conn())
                .await?;
            sqlx::query("INSERT INTO quota_classes (class_name, resource, hard_limit) VALUES ($1, $2, $3)")
                .bind(class)
                .bind(k)
                .bind(*v)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }
}

impl WriteTx<'_> {
    /// Take the project's quota lock until this transaction ends.
    pub async fn lock_project(&mut self, project_id: &str) -> Result<()> {
        sqlx::query("INSERT INTO project_locks (project_id, n) VALUES ($1, 0) ON CONFLICT (project_id) DO NOTHING")
            .bind(project_id)
            .execute(self.conn())
            .await?;
        sqlx::query("UPDATE project_locks SET n = n + 1 WHERE project_id = $1")
            .bind(project_id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// The project's current use, counted inside this transaction (see [`usage_on`]).
    pub async fn project_usage(&mut self, project_id: &str) -> Result<BTreeMap<String, i64>> {
        usage_on(self.conn(), project_id).await
    }
}

impl Db {
    /// The project's current use (see [`usage_on`]).
    pub async fn project_usage(&self, project_id: &str) -> Result<BTreeMap<String, i64>> {
        let mut conn = self.pool().acquire().await?;
        usage_on(&mut conn, project_id).await
    }
}

/// `volumes`, `gigabytes`, `snapshots` and their `_<type>` variants of a project (snapshot GiB
/// count toward `gigabytes`, as in Cinder), and its `groups`.
async fn usage_on(conn: &mut sqlx::AnyConnection, project_id: &str) -> Result<BTreeMap<String, i64>> {
    let mut usage = BTreeMap::new();
    let vols = sqlx::query(
        "SELECT t.name AS type_name, COUNT(*) AS n, CAST(COALESCE(SUM(v.size_gb), 0) AS BIGINT) AS gb \
         FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id WHERE v.project_id = $1 GROUP BY t.name",
    )
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?;
    let snaps = sqlx::query(
        "SELECT t.name AS type_name, COUNT(*) AS n, CAST(COALESCE(SUM(s.size_gb), 0) AS BIGINT) AS gb \
         FROM snapshots s JOIN volumes v ON v.id = s.volume_id JOIN volume_types t ON t.id = v.volume_type_id \
         WHERE s.project_id = $1 GROUP BY t.name",
    )
    .bind(project_id)
    .fetch_all(&mut *conn)
    .await?;
    for (rows, count_key) in [(vols, "volumes"), (snaps, "snapshots")] {
        for r in rows {
            let t: String = r.try_get("type_name")?;
            let n: i64 = r.try_get("n")?;
            let gb: i64 = r.try_get("gb")?;
            *usage.entry(count_key.to_string()).or_insert(0) += n;
            *usage.entry(format!("{count_key}_{t}")).or_insert(0) += n;
            *usage.entry("gigabytes".to_string()).or_insert(0) += gb;
            *usage.entry(format!("gigabytes_{t}")).or_insert(0) += gb;
        }
    }
    // groups: generic volume groups count against `groups`.
    let groups: i64 = sqlx::query("SELECT COUNT(*) AS n FROM volume_groups WHERE project_id = $1")
        .bind(project_id)
        .fetch_one(&mut *conn)
        .await?
        .try_get("n")?;
    if groups > 0 {
        usage.insert("groups".to_string(), groups);
    }
    Ok(usage)
}
