//! ui: read-only figures for the web dashboard that no API call gives in one piece: per-pool
//! capacity with allocation, per-project status counts and job lists. Scoped like every read:
//! a caller sees its project, unless `all_projects` (noauth mode, or an admin's pool view).

use std::collections::BTreeMap;

use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::{Job, Volume};

/// Bytes in one GiB.
const GIB: u64 = 1 << 30;

/// Most volumes whose allocation the pool summary adds up (a stat each).
const MAX_ALLOCATION_SCAN: usize = 20_000;

/// One pool's space.
#[derive(Debug, Clone)]
pub struct PoolSummary {
    /// Pool name.
    pub name: String,
    /// Driver (`file`, `lvm`).
    pub driver: String,
    /// Availability zone.
    pub availability_zone: String,
    /// Size of the backing file system or volume group (0 when it does not answer).
    pub total_bytes: u64,
    /// Used on it by anything (total − free).
    pub used_bytes: u64,
    /// Allocated to our volumes (blocks actually written).
    pub allocated_bytes: u64,
    /// Promised to our volumes (the sum of their sizes).
    pub provisioned_bytes: u64,
    /// The configured over-subscription limit.
    pub max_over_subscription_ratio: f64,
    /// The storage answered.
    pub up: bool,
}

impl PoolSummary {
    /// Provisioned / total.
    pub fn over_subscription(&self) -> f64 {
        if self.total_bytes == 0 {
            0.0
        } else {
            self.provisioned_bytes as f64 / self.total_bytes as f64
        }
    }
}

impl Services {
    /// Space of every pool (operators' view: the caller decides who may ask).
    pub async fn pool_summaries(&self) -> Result<Vec<PoolSummary>> {
        let sizes = self.db.volume_sizes().await?;
        let pools: Vec<_> = self.pools.values().cloned().collect();
        let mut out = tokio::task::spawn_blocking(move || {
            pools
                .iter()
                .map(|p| {
                    let cap = p.driver.capacity().ok();
                    let mine: Vec<_> = sizes.iter().filter(|(pool, _, _)| *pool == p.config.name).collect();
                    let provisioned = mine.iter().map(|(_, _, gb)| (*gb).max(0) as u64 * GIB).sum();
                    let allocated = mine
                        .iter()
                        .take(MAX_ALLOCATION_SCAN)
                        .filter_map(|(_, id, _)| uuid::Uuid::try_parse(id).ok())
                        .filter_map(|u| p.driver.volume_allocated_bytes(u).ok())
                        .sum();
                    let (total, free) = cap.map(|c| (c.total_bytes, c.free_bytes)).unwrap_or((0, 0));
                    PoolSummary {
                        name: p.config.name.clone(),
                        driver: format!("{:?}", p.config.driver).to_lowercase(),
                        availability_zone: p.config.availability_zone.clone(),
                        total_bytes: total,
                        used_bytes: total.saturating_sub(free),
                        allocated_bytes: allocated,
                        provisioned_bytes: provisioned,
                        max_over_subscription_ratio: p.config.max_over_subscription_ratio,
                        up: cap.is_some(),
                    }
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| Error::internal(format!("pool summary task: {e}")))?;
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// Volumes by status in the caller's project (every project when `all_projects`).
    pub async fn volume_status_counts(&self, caller: &Caller, all_projects: bool) -> Result<BTreeMap<String, i64>> {
        let scope = (!all_projects).then_some(caller.project_id.as_str());
        Ok(self.db.volume_status_counts_in(scope).await?.into_iter().collect())
    }

    /// Jobs of the caller's project (every project when `all_projects`), newest first:
    /// queued and running ones when `in_flight`, else all (at most `limit`).
    pub async fn recent_jobs(
        &self,
        caller: &Caller,
        all_projects: bool,
        in_flight: bool,
        limit: i64,
    ) -> Result<Vec<Job>> {
        let scope = (!all_projects).then_some(caller.project_id.as_str());
        let limit = limit.clamp(1, 500);
        if !in_flight {
            return self.db.list_jobs(None, scope, limit).await;
        }
        let mut jobs = self.db.list_jobs(Some("RUNNING"), scope, limit).await?;
        jobs.extend(self.db.list_jobs(Some("INIT"), scope, limit).await?);
        jobs.sort_by(|a, b| b.begin_time.cmp(&a.begin_time));
        jobs.truncate(limit as usize);
        Ok(jobs)
    }

    /// Bytes allocated on disk to a volume the caller has already read (`None` when its pool
    /// does not answer).
    pub async fn volume_allocation(&self, v: &Volume) -> Option<u64> {
        let p = self.pools.get(&v.pool)?.clone();
        let id = uuid::Uuid::try_parse(&v.id).ok()?;
        tokio::task::spawn_blocking(move || p.driver.volume_allocated_bytes(id).ok()).await.ok().flatten()
    }
}
