//! Job rows: the durable queue. Claims are compare-and-set updates with a lease, so the same
//! SQL is safe on SQLite (one writer) and on PostgreSQL (many workers, many nodes).

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::{Job, JobKind, JobPayload, JobStatus};

const JOB_COLUMNS: &str = "id, project_id, kind, parent_id, status, volume_id, payload, entities, \
     error_code, fail_reason, begin_time, end_time, progress_done, progress_total";

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// 32 hex digits.
    pub id: String,
    /// Owning project.
    pub project_id: String,
    /// Kind.
    pub kind: JobKind,
    /// Parent for batch sub-jobs.
    pub parent_id: Option<String>,
    /// Target volume.
    pub volume_id: Option<String>,
    /// Kind-specific input.
    pub payload: Option<JobPayload>,
    /// EVS `entities` JSON text.
    pub entities: String,
    /// Queue time.
    pub begin_time: String,
}

fn job_from_row(r: &AnyRow) -> Result<Job> {
    let kind: String = r.try_get("kind")?;
    let status: String = r.try_get("status")?;
    Ok(Job {
        id: r.try_get("id")?,
        project_id: r.try_get("project_id")?,
        kind: kind.parse().map_err(|_| Error::internal(format!("unknown job kind {kind:?}")))?,
        parent_id: r.try_get("parent_id")?,
        status: status.parse().map_err(|_| Error::internal(format!("unknown job status {status:?}")))?,
        volume_id: r.try_get("volume_id")?,
        payload: r.try_get("payload")?,
        entities: r.try_get("entities")?,
        error_code: r.try_get("error_code")?,
        fail_reason: r.try_get("fail_reason")?,
        begin_time: r.try_get("begin_time")?,
        end_time: r.try_get("end_time")?,
        progress: match (r.try_get::<Option<i64>, _>("progress_done")?, r.try_get::<Option<i64>, _>("progress_total")?)
        {
            (Some(d), Some(t)) if t > 0 => Some((d, t)),
            _ => None,
        },
    })
}

impl Db {
    /// One job of a project (`None` project = any).
    pub async fn get_job(&self, project_id: Option<&str>, id: &str) -> Result<Option<Job>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(job_from_row).transpose()
    }

    /// Jobs of any project, newest first (`cinderblock job list`): optionally only one status
    /// (`FAIL`…) or one project, at most `limit`.
    pub async fn list_jobs(&self, status: Option<&str>, project_id: Option<&str>, limit: i64) -> Result<Vec<Job>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE ($1 = '' OR status = $1) AND ($2 = '' OR project_id = $2) \
             ORDER BY begin_time DESC, id LIMIT $3"
        )))
        .bind(status.unwrap_or(""))
        .bind(project_id.unwrap_or(""))
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// The sub-jobs of a batch, in creation order.
    pub async fn sub_jobs(&self, parent_id: &str) -> Result<Vec<Job>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE parent_id = $1 ORDER BY begin_time, id"
        )))
        .bind(parent_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(job_from_row).collect()
    }

    /// Claim one runnable job for `owner`: a queued one, or a running one whose lease ran out
    /// (its worker died). Batch parents are never claimed: their children do the work.
    pub async fn claim_job(&self, owner: &str, now_epoch: i64, lease_secs: i64) -> Result<Option<Job>> {
        loop {
            let candidate = sqlx::query(
                "SELECT id FROM jobs WHERE kind <> $1 AND (status = 'INIT' \
                 OR (status = 'RUNNING' AND lease_until < $2)) ORDER BY begin_time, id LIMIT 1",
            )
            .bind(JobKind::BatchCreateVolume.as_str())
            .bind(now_epoch)
            .fetch_optional(self.pool())
            .await?;
            let Some(row) = candidate else { return Ok(None) };
            let id: String = row.try_get("id")?;
            let mut tx = self.begin_write().await?;
            let r = sqlx::query(
                "UPDATE jobs SET status = 'RUNNING', lease_owner = $1, lease_until = $2, \
                 attempts = attempts + 1 WHERE id = $3 AND (status = 'INIT' \
                 OR (status = 'RUNNING' AND lease_until < $4))",
            )
            .bind(owner)
            .bind(now_epoch + lease_secs)
            .bind(&id)
            .bind(now_epoch)
            .execute(tx.conn())
            .await?;
            if r.rows_affected() == 0 {
                // Another worker won the race; look again.
                continue;
            }
            // A batch parent shows RUNNING as soon as one child runs.
            sqlx::query(
                "UPDATE jobs SET status = 'RUNNING' WHERE status = 'INIT' AND id = \
                 (SELECT parent_id FROM jobs WHERE id = $1)",
            )
            .bind(&id)
            .execute(tx.conn())
            .await?;
            let job = sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1")))
                .bind(&id)
                .fetch_one(tx.conn())
                .await?;
            let job = job_from_row(&job)?;
            tx.commit().await?;
            return Ok(Some(job));
        }
    }

    /// Put every job `owner` left running back in the queue (called at start: the previous
    /// process of this node died, its steps are idempotent and will run again).
    pub async fn requeue_jobs_of(&self, owner: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE jobs SET status = 'INIT', lease_owner = NULL, lease_until = NULL \
             WHERE status = 'RUNNING' AND lease_owner = $1",
        )
        .bind(owner)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Record how far a job this worker is running is (`done` of `total`).
    pub async fn set_job_progress(&self, id: &str, owner: &str, done: u64, total: u64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query(
            "UPDATE jobs SET progress_done = $1, progress_total = $2 \
             WHERE id = $3 AND lease_owner = $4 AND status = 'RUNNING'",
        )
        .bind(done.min(i64::MAX as u64) as i64)
        .bind(total.min(i64::MAX as u64) as i64)
        .bind(id)
        .bind(owner)
        .execute(tx.conn())
        .await?;
        tx.commit().await
    }

    /// Extend the lease of a job this worker is running.
    pub async fn renew_lease(&self, id: &str, owner: &str, until_epoch: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE jobs SET lease_until = $1 WHERE id = $2 AND lease_owner = $3 AND status = 'RUNNING'")
            .bind(until_epoch)
            .bind(id)
            .bind(owner)
            .execute(tx.conn())
            .await?;
        tx.commit().await
    }
}

impl WriteTx<'_> {
    /// Insert a job row in status INIT.
    pub async fn insert_job(&mut self, j: &NewJob) -> Result<()> {
        sqlx::query(
            "INSERT INTO jobs (id, project_id, kind, parent_id, status, volume_id, payload, entities, begin_time, \
             snapshot_id) VALUES ($1, $2, $3, $4, 'INIT', $5, $6, $7, $8, $9)",
        )
        .bind(&j.id)
        .bind(&j.project_id)
        .bind(j.kind.as_str())
        .bind(j.parent_id.as_deref())
        .bind(j.volume_id.as_deref())
        .bind(j.payload.as_ref().map(|p| serde_json::to_string(p).unwrap_or_default()))
        .bind(&j.entities)
        .bind(&j.begin_time)
        .bind(j.payload.as_ref().and_then(|p| p.snapshot_id.as_deref()))
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Finish a job, then its batch parent when this was the last open sibling.
    pub async fn finish_job(
        &mut self,
        id: &str,
        status: JobStatus,
        error_code: Option<&str>,
        fail_reason: Option<&str>,
        now: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE jobs SET status = $1, error_code = $2, fail_reason = $3, end_time = $4, \
             lease_owner = NULL, lease_until = NULL WHERE id = $5",
        )
        .bind(status.as_str())
        .bind(error_code)
        .bind(fail_reason)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?;
        let parent = sqlx::query("SELECT parent_id FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_one(self.conn())
            .await?
            .try_get::<Option<String>, _>("parent_id")?;
        let Some(parent) = parent else { return Ok(()) };
        // Lock the parent row before counting open siblings: on PostgreSQL (READ COMMITTED)
        // two siblings finishing at once would otherwise each see the other still RUNNING and
        // neither would finish the parent. The second waits here, and its count (a new
        // statement, so a new snapshot) then sees the first one's commit. No-op on SQLite,
        // whose single writer already serialises this transaction.
        sqlx::query("UPDATE jobs SET status = status WHERE id = $1").bind(&parent).execute(self.conn()).await?;
        let open = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE parent_id = $1 AND status IN ('INIT', 'RUNNING')")
            .bind(&parent)
            .fetch_one(self.conn())
            .await?
            .try_get::<i64, _>("n")?;
        if open > 0 {
            return Ok(());
        }
        let failed = sqlx::query(
            "SELECT error_code, fail_reason FROM jobs WHERE parent_id = $1 AND status = 'FAIL' \
             ORDER BY begin_time, id LIMIT 1",
        )
        .bind(&parent)
        .fetch_optional(self.conn())
        .await?;
        let (st, code, reason) = match failed {
            None => (JobStatus::Success, None, None),
            Some(r) => (
                JobStatus::Fail,
                r.try_get::<Option<String>, _>("error_code")?,
                r.try_get::<Option<String>, _>("fail_reason")?,
            ),
        };
        sqlx::query("UPDATE jobs SET status = $1, error_code = $2, fail_reason = $3, end_time = $4 WHERE id = $5")
            .bind(st.as_str())
            .bind(code)
            .bind(reason)
            .bind(now)
            .bind(&parent)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
