//! Quota usage computed from the database. Limits are unlimited (-1) until per-project quotas
//! exist; usage is always the real count.

use super::Services;
use crate::error::Result;

/// One quota line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageLine {
    /// Resource name (`volumes`, `gigabytes_SSD`…).
    pub resource: String,
    /// Current use.
    pub in_use: i64,
    /// Limit (-1 = unlimited).
    pub limit: i64,
    /// Reserved (always 0: reservations are taken inside the create transaction).
    pub reserved: i64,
}

/// Usage of one project.
#[derive(Debug, Clone)]
pub struct QuotaUsage {
    /// Project.
    pub project_id: String,
    /// Lines, per-type keys included.
    pub lines: Vec<UsageLine>,
}

impl Services {
    /// Quota usage of `project_id`.
    pub async fn quota_usage(&self, project_id: &str) -> Result<QuotaUsage> {
        let usage = self.db.volume_usage(project_id).await?;
        let line = |resource: String, in_use: i64| UsageLine { resource, in_use, limit: -1, reserved: 0 };
        let mut lines = vec![
            line("volumes".into(), usage.iter().map(|u| u.1).sum()),
            line("gigabytes".into(), usage.iter().map(|u| u.2).sum()),
            line("snapshots".into(), 0),
            line("backups".into(), 0),
            line("backup_gigabytes".into(), 0),
            line("groups".into(), 0),
            line("per_volume_gigabytes".into(), 0),
        ];
        for t in &self.catalog.types {
            let u = usage.iter().find(|u| u.0 == t.name);
            lines.push(line(format!("volumes_{}", t.name), u.map_or(0, |u| u.1)));
            lines.push(line(format!("gigabytes_{}", t.name), u.map_or(0, |u| u.2)));
            lines.push(line(format!("snapshots_{}", t.name), 0));
        }
        Ok(QuotaUsage { project_id: project_id.to_string(), lines })
    }
}
