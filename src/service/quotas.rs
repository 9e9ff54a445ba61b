//! Quotas: limits per project over limits per quota class (`default`) over the config's
//! defaults (-1 = unlimited), usage counted from the volume and snapshot rows, and the check that
//! guards every create, extend and transfer.
//!
//! The check runs inside the transaction that inserts the rows, after taking the project's lock
//! row, so two concurrent creates can never both pass the last free slot, on SQLite or
//! PostgreSQL. Usage is never cached: it is counted from the rows it limits, so it cannot drift.

use std::collections::BTreeMap;

use super::Services;
use crate::error::{Error, ErrorKind, Result};
use crate::store::WriteTx;

/// Project-wide quota resources (per-type ones add `_<type>` to the first three of these).
pub const BASE_RESOURCES: [&str; 7] =
    ["volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes", "per_volume_gigabytes", "groups"];
/// Resources that also exist per volume type.
const PER_TYPE: [&str; 3] = ["volumes", "snapshots", "gigabytes"];
/// The quota class every project falls back to.
pub const DEFAULT_CLASS: &str = "default";

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

/// What an operation adds to a project's use.
#[derive(Debug, Clone, Default)]
pub struct QuotaDelta {
    /// New volumes.
    pub volumes: i64,
    /// New snapshots.
    pub snapshots: i64,
    /// New GiB (volumes and snapshots).
    pub gigabytes: i64,
    /// The volume type the delta is of.
    pub volume_type: String,
    /// Size of each new volume (checked against `per_volume_gigabytes`).
    pub per_volume_gb: Option<i64>,
    /// New generic volume groups.
    pub groups: i64,
    /// Only the per-type limits apply (a retype moves use between types; the project's total
    /// does not change).
    pub per_type_only: bool,
}

fn quota_error(code: &'static str, msg: String) -> Error {
    Error::new(ErrorKind::Quota, msg).with_code(code)
}

impl Services {
    /// Every resource name this node knows: the base ones and the per-type ones.
    pub fn quota_resources(&self) -> Vec<String> {
        let mut out: Vec<String> = BASE_RESOURCES.iter().map(|s| s.to_string()).collect();
        for t in &self.catalog.types() {
            for r in PER_TYPE {
                out.push(format!("{r}_{}", t.name));
            }
        }
        out
    }

    /// Limits of a quota class, config defaults filled in.
    pub async fn class_limits(&self, class: &str) -> Result<BTreeMap<String, i64>> {
        let set = self.db.class_quotas(class).await?;
        let fallback =
            if class == DEFAULT_CLASS { BTreeMap::new() } else { self.db.class_quotas(DEFAULT_CLASS).await? };
        Ok(self
            .quota_resources()
            .into_iter()
            .map(|r| {
                let v = set.get(&r).or(fallback.get(&r)).or(self.config.quotas.get(&r)).copied().unwrap_or(-1);
                (r, v)
            })
            .collect())
    }

    /// The limits that apply to a project.
    pub async fn project_limits(&self, project_id: &str) -> Result<BTreeMap<String, i64>> {
        let own = self.db.project_quotas(project_id).await?;
        let mut limits = self.class_limits(DEFAULT_CLASS).await?;
        for (k, v) in own {
            limits.insert(k, v);
        }
        Ok(limits)
    }

    /// Quota usage of `project_id`.
    pub async fn quota_usage(&self, project_id: &str) -> Result<QuotaUsage> {
        let usage = self.db.project_usage(project_id).await?;
        let limits = self.project_limits(project_id).await?;
        let lines = self
            .quota_resources()
            .into_iter()
            .map(|r| UsageLine {
                in_use: if r == "per_volume_gigabytes" { 0 } else { usage.get(&r).copied().unwrap_or(0) },
                limit: limits.get(&r).copied().unwrap_or(-1),
                reserved: 0,
                resource: r,
            })
            .collect();
        Ok(QuotaUsage { project_id: project_id.to_string(), lines })
    }

    /// Check that a known resource name and limit are valid for an update.
    pub fn validate_quota_update(&self, limits: &BTreeMap<String, i64>) -> Result<()> {
        let known = self.quota_resources();
        for (k, v) in limits {
            if !known.contains(k) {
                return Err(Error::invalid("EVS.5400", format!("Bad key(s) in quota set: {k}")));
            }
            if *v < -1 {
                return Err(Error::invalid("EVS.5400", format!("Quota limit {v} for {k} must be -1 or greater.")));
            }
        }
        Ok(())
    }

    /// Set limits of a project; a limit below the current use is refused, as in Cinder.
    pub async fn update_project_quotas(&self, project_id: &str, limits: &BTreeMap<String, i64>) -> Result<()> {
        self.validate_quota_update(limits)?;
        let usage = self.db.project_usage(project_id).await?;
        for (k, v) in limits {
            let used = usage.get(k).copied().unwrap_or(0);
            if *v >= 0 && *v < used {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Quota limit {v} for {k} must be equal or greater than existing resources ({used})."),
                ));
            }
        }
        self.db.set_project_quotas(project_id, limits).await
    }

    /// Check `delta` against `limits` (from [`Self::project_limits`], read before the
    /// transaction: a pool read inside it could wait forever for a connection held by another
    /// transaction waiting for our lock) inside `tx`, taking the project's lock.
    pub async fn check_quota(
        &self,
        tx: &mut WriteTx<'_>,
        project_id: &str,
        delta: &QuotaDelta,
        limits: &BTreeMap<String, i64>,
    ) -> Result<()> {
        if let (Some(size), Some(max)) = (delta.per_volume_gb, limits.get("per_volume_gigabytes")) {
            if *max >= 0 && size > *max {
                return Err(quota_error(
                    "EVS.1042",
                    format!(
                        "VolumeSizeExceedsLimit: Requested volume size {size}G is larger than maximum allowed \
                         limit {max}G."
                    ),
                ));
            }
        }
        tx.lock_project(project_id).await?;
        let usage = tx.project_usage(project_id).await?;
        let t = &delta.volume_type;
        let checks = [
            ("volumes".to_string(), delta.volumes, "EVS.1034"),
            (format!("volumes_{t}"), delta.volumes, "EVS.1034"),
            ("gigabytes".to_string(), delta.gigabytes, "EVS.1042"),
            (format!("gigabytes_{t}"), delta.gigabytes, "EVS.1042"),
            ("snapshots".to_string(), delta.snapshots, "EVS.5413"),
            (format!("snapshots_{t}"), delta.snapshots, "EVS.5413"),
            ("groups".to_string(), delta.groups, "EVS.5413"),
        ];
        for (res, add, code) in checks {
            if add <= 0 || (delta.per_type_only && !res.contains('_')) {
                continue;
            }
            let limit = limits.get(&res).copied().unwrap_or(-1);
            let used = usage.get(&res).copied().unwrap_or(0);
            if limit >= 0 && used + add > limit {
                // Cinder's exception names and words: clients match on them.
                let msg = if res.starts_with("gigabytes") {
                    format!(
                        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed {res} quota. \
                         Requested {add}G, quota is {limit}G and {used}G has been consumed."
                    )
                } else if res == "groups" {
                    format!("GroupLimitExceeded: Maximum number of groups allowed ({limit}) exceeded")
                } else if res.starts_with("volumes") {
                    format!(
                        "VolumeLimitExceeded: Maximum number of volumes allowed ({limit}) exceeded for quota '{res}'."
                    )
                } else {
                    format!(
                        "SnapshotLimitExceeded: Maximum number of snapshots allowed ({limit}) exceeded for quota \
                         '{res}'."
                    )
                };
                return Err(quota_error(code, msg));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn base_resources_include_the_issue_list() {
        for r in ["volumes", "snapshots", "gigabytes", "backups", "backup_gigabytes", "per_volume_gigabytes"] {
            assert!(super::BASE_RESOURCES.contains(&r));
        }
    }
}
