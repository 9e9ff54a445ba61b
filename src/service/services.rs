//! Operator views of the deployment, as Cinder's admin APIs show them: services (os-services:
//! list, enable, disable with a reason, freeze, thaw), hosts (os-hosts: list and per-project
//! usage), pools (scheduler-stats/get_pools) and backend capabilities.
//!
//! Every node runs one `cinder-scheduler` (host = node name) and one `cinder-volume` per pool
//! (host = `node@pool`; a volume's `os-vol-host-attr:host` is `node@pool#pool`). Invariant: the
//! one rule deciding whether a pool takes new volumes is [`accepts_new_volumes`] (not disabled,
//! not frozen, as Cinder's scheduler keeps only such backends); volume placement and the pool
//! list both go through it. Admin changes are rows in `services`, so they survive restarts and
//! every node sharing a PostgreSQL database sees them.

use std::collections::HashSet;

use super::Services;
use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, ServiceRecord, GIB, SCHEDULER_BINARY, VOLUME_BINARY};
use crate::store::{Db, ProjectUsage};

/// Register this node's services (called at start, with the catalog).
pub(super) async fn register(db: &Db, config: &Config, now: &str) -> Result<()> {
    db.ensure_service(&config.node, SCHEDULER_BINARY, &config.default_availability_zone, now).await?;
    for p in &config.pools {
        db.ensure_service(&format!("{}@{}", config.node, p.name), VOLUME_BINARY, &p.availability_zone, now).await?;
    }
    Ok(())
}

/// Whether a volume service's pool takes new volumes: the one scheduling rule.
pub fn accepts_new_volumes(s: &ServiceRecord) -> bool {
    !s.disabled && !s.frozen
}

/// Cinder's host filter: `host` names the service's host exactly, or the node of a
/// `node@backend` host; a `#pool` suffix is ignored (services are per backend).
pub fn host_matches(service_host: &str, filter: &str) -> bool {
    let filter = filter.split('#').next().unwrap_or(filter);
    service_host == filter || service_host.strip_prefix(filter).is_some_and(|rest| rest.starts_with('@'))
}

/// A service with its liveness.
#[derive(Debug, Clone)]
pub struct ServiceState {
    /// The row.
    pub record: ServiceRecord,
    /// Up: run by this node (which is answering). Services of other nodes sharing the database
    /// have no heartbeat yet and show as down.
    pub up: bool,
}

/// One pool as the scheduler sees it (`get_pools`, `capabilities`).
#[derive(Debug, Clone)]
pub struct PoolStats {
    /// Pool name.
    pub pool: String,
    /// Its volume service's host, `node@pool`.
    pub host: String,
    /// Size of the pool's file system, GiB (statvfs).
    pub total_capacity_gb: f64,
    /// Space available to us on it, GiB (statvfs `f_bavail`).
    pub free_capacity_gb: f64,
    /// GiB promised to volumes on the pool (sum of their sizes).
    pub allocated_capacity_gb: i64,
    /// Over-subscription ratio of the pool.
    pub max_over_subscription_ratio: f64,
    /// Reflink clones and snapshots work on the pool's file system.
    pub reflink: bool,
    /// The pool's availability zone.
    pub availability_zone: String,
}

/// Round GiB to two decimals, as Cinder's drivers report capacities.
fn gib2(bytes: u64) -> f64 {
    ((bytes as f64 / GIB as f64) * 100.0).round() / 100.0
}

impl Services {
    fn is_local(&self, host: &str) -> bool {
        host_matches(host, &self.config.node)
    }

    /// Services, optionally filtered by host (see [`host_matches`]) and binary.
    pub async fn list_services(&self, host: Option<&str>, binary: Option<&str>) -> Result<Vec<ServiceState>> {
        Ok(self
            .db
            .list_services()
            .await?
            .into_iter()
            .filter(|s| host.is_none_or(|h| host_matches(&s.host, h)) && binary.is_none_or(|b| s.binary == b))
            .map(|s| ServiceState { up: self.is_local(&s.host), record: s })
            .collect())
    }

    /// Disable (`disabled`, with an optional reason) or enable one service; 404 when no
    /// service `binary` runs on exactly `host`.
    pub async fn set_service_disabled(
        &self,
        host: &str,
        binary: &str,
        disabled: bool,
        reason: Option<&str>,
    ) -> Result<ServiceRecord> {
        self.db.set_service_disabled(host, binary, disabled, reason, &now_timestamp()).await?.ok_or_else(|| {
            Error::new(ErrorKind::NotFound, format!("Could not find binary {binary} on host {host}."))
                .with_code("EVS.5404")
        })
    }

    /// Freeze or thaw every volume service on `host`; 400 when there is none (Cinder's
    /// `InvalidInput` for an unknown service).
    pub async fn freeze_host(&self, host: &str, frozen: bool) -> Result<()> {
        let hosts: Vec<String> = self
            .db
            .list_services()
            .await?
            .into_iter()
            .filter(|s| s.binary == VOLUME_BINARY && host_matches(&s.host, host))
            .map(|s| s.host)
            .collect();
        if hosts.is_empty() {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid input received: Service host {host} could not be found."),
            ));
        }
        self.db.set_services_frozen(&hosts, frozen, &now_timestamp()).await
    }

    /// Per-project usage of an enabled volume service's pool (os-hosts show); 404 for any
    /// other host, as Cinder's lookup of an enabled `cinder-volume` topic.
    pub async fn host_usage(&self, host: &str) -> Result<Vec<ProjectUsage>> {
        let svc = self
            .db
            .list_services()
            .await?
            .into_iter()
            .find(|s| s.binary == VOLUME_BINARY && s.host == host && !s.disabled)
            .ok_or_else(|| Error::not_found(format!("Host {host} could not be found.")))?;
        let pool = svc.pool().unwrap_or_default().to_string();
        self.db.pool_usage(&pool).await
    }

    /// Cinder's `assert_not_frozen`: deletes of volumes and snapshots and snapshot creates are
    /// refused on a frozen backend (400, nothing changes); reads and other actions go on.
    pub(super) async fn assert_not_frozen(&self, pool: &str) -> Result<()> {
        let host = format!("{}@{pool}", self.config.node);
        let frozen =
            self.db.list_services().await?.iter().any(|s| s.binary == VOLUME_BINARY && s.host == host && s.frozen);
        if frozen {
            return Err(Error::invalid(
                "EVS.5400",
                "Invalid input received: Modification operations are not allowed on frozen storage backends.",
            ));
        }
        Ok(())
    }

    /// Names of this node's pools that take no new volumes (see [`accepts_new_volumes`]).
    pub(super) async fn unschedulable_pools(&self) -> Result<HashSet<String>> {
        Ok(self
            .db
            .list_services()
            .await?
            .into_iter()
            .filter(|s| s.binary == VOLUME_BINARY && !accepts_new_volumes(s))
            .filter_map(|s| {
                let (node, pool) = s.host.split_once('@')?;
                (node == self.config.node).then(|| pool.to_string())
            })
            .collect())
    }

    /// Statistics of one configured pool.
    pub(super) async fn pool_stats_of(&self, name: &str) -> Result<PoolStats> {
        let p = self.pools.get(name).ok_or_else(|| Error::internal(format!("pool {name} is not configured")))?;
        let cap = p.driver.capacity().map_err(|e| Error::internal(format!("pool {name}: {e}")))?;
        let allocated = self.db.get_pool(name).await?.map(|r| r.provisioned_gb).unwrap_or(0);
        Ok(PoolStats {
            pool: name.to_string(),
            host: format!("{}@{name}", self.config.node),
            total_capacity_gb: gib2(cap.total_bytes),
            free_capacity_gb: gib2(cap.free_bytes),
            allocated_capacity_gb: allocated,
            max_over_subscription_ratio: p.config.max_over_subscription_ratio,
            reflink: p.driver.capabilities().reflink,
            availability_zone: p.config.availability_zone.clone(),
        })
    }

    /// The pools new volumes may go to, in configuration order (Cinder's `get_pools` lists the
    /// backends its scheduler keeps: disabled and frozen ones are left out).
    pub async fn get_pools(&self) -> Result<Vec<PoolStats>> {
        let skip = self.unschedulable_pools().await?;
        let mut out = Vec::new();
        for p in self.config.pools.iter().filter(|p| !skip.contains(&p.name)) {
            out.push(self.pool_stats_of(&p.name).await?);
        }
        Ok(out)
    }

    /// Capabilities of the backend `host` (`node@pool`, `node@pool#pool`, or a node: its first
    /// pool); 404 when no volume service matches, like Cinder.
    pub async fn backend_capabilities(&self, host: &str) -> Result<PoolStats> {
        let svc = self
            .db
            .list_services()
            .await?
            .into_iter()
            .find(|s| s.binary == VOLUME_BINARY && host_matches(&s.host, host))
            .ok_or_else(|| Error::not_found(format!("Can't find service: {host}")))?;
        match svc.pool().filter(|_| self.is_local(&svc.host)) {
            Some(pool) if self.pools.contains_key(pool) => self.pool_stats_of(pool).await,
            // Another node's backend: its statistics are not reachable from here.
            _ => Err(Error::not_found(format!("Can't find service: {host}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn host_filter_matches_like_cinder() {
        assert!(host_matches("n1@default", "n1"));
        assert!(host_matches("n1@default", "n1@default"));
        assert!(host_matches("n1@default", "n1@default#default"));
        assert!(host_matches("n1", "n1"));
        assert!(!host_matches("n10@default", "n1"));
        assert!(!host_matches("n1@default", "n1@def"));
    }
}
