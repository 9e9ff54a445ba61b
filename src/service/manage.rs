//! manage: adopting storage a pool holds outside our bookkeeping as volumes and snapshots
//! (Cinder's `os-volume-manage`, `os-snapshot-manage`, 3.8 manageable lists) and letting go of
//! them without destroying their data (`os-unmanage`).
//!
//! For the file driver the storage is a raw file an admin places in the pool's `import/`
//! folder; managing moves it into place by rename (O(1), never copied) and unmanaging moves a
//! volume or snapshot back there as `volume-<uuid>` / `snapshot-<uuid>` (Cinder LVM's names, so
//! tempest's `manage_volume_ref` default finds an unmanaged volume again).
//!
//! Both directions reuse the create and delete machinery: the same checks, quota and pool
//! capacity accounting, and durable job, with the storage step swapped (`manage_ref` /
//! `unmanage` in the job payload). The rename is the job's storage step and is idempotent, so a
//! kill -9 anywhere leaves a row whose job finishes the move at the next start. The request
//! checks the file first (a regular, singly-linked, non-empty file with a plain name), so a bad
//! reference gets a 400 and creates nothing.

use std::collections::BTreeMap;

use super::volumes::{CreateVolume, VolumeSource};
use super::{Caller, CreateSnapshot, Services};
use crate::driver::{DriverError, Manageable};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Snapshot, Volume, GIB};

/// manage: where a managed volume's data comes from (carried by [`CreateVolume`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManageSource {
    /// The pool holding the storage.
    pub pool: String,
    /// Its name in the pool (`source-name`).
    pub source_name: String,
    /// The pool's availability zone (the volume's unless the request names one).
    pub availability_zone: String,
    /// `bootable` of the request.
    pub bootable: bool,
}

/// An `os-volume-manage` request.
#[derive(Debug, Clone, Default)]
pub struct ManageVolume {
    /// Cinder host string naming the pool (`node@pool#pool`, `node@pool`, or the pool name).
    pub host: String,
    /// `ref: {"source-name": …}`.
    pub source_name: String,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Type id or name; the default type when `None`.
    pub volume_type: Option<String>,
    /// Zone; the pool's when `None`.
    pub availability_zone: Option<String>,
    /// Bootable.
    pub bootable: bool,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
}

/// An `os-snapshot-manage` request.
#[derive(Debug, Clone, Default)]
pub struct ManageSnapshot {
    /// The volume the snapshot belongs to.
    pub volume_id: String,
    /// `ref: {"source-name": …}`.
    pub source_name: String,
    /// Name.
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Metadata.
    pub metadata: BTreeMap<String, String>,
}

/// The `ref` of a manage request: Cinder's drivers take `source-name` (and some
/// `source-id`); ours names files, so only `source-name` is understood.
pub fn source_name_of(reference: &serde_json::Map<String, serde_json::Value>) -> Result<String> {
    match reference.get("source-name") {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        _ => Err(Error::invalid(
            "EVS.1008",
            format!(
                "Manage existing volume failed due to invalid backend reference {}: the reference must be \
                 {{\"source-name\": \"<file name in the pool's import folder>\"}}",
                serde_json::Value::Object(reference.clone())
            ),
        )),
    }
}

fn invalid_reference(name: &str, e: DriverError) -> Error {
    Error::invalid(
        "EVS.1008",
        format!("Manage existing volume failed due to invalid backend reference {{'source-name': {name:?}}}: {e}"),
    )
}

impl Services {
    /// The pool a Cinder host string names on this node: `node@pool#pool`, `node@pool`, or
    /// a bare pool name; 400 for any other.
    fn pool_of_host(&self, host: &str) -> Result<String> {
        let without_pool = host.split_once('#').map_or(host, |(h, _)| h);
        let pool = match without_pool.split_once('@') {
            Some((node, pool)) if node == self.config.node => pool,
            Some(_) => "",
            None => without_pool,
        };
        if self.pools.get(pool).is_none() {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid input received: Service host {host} could not be found."),
            ));
        }
        Ok(pool.to_string())
    }

    /// Size in whole GiB of unmanaged storage `name` in `pool` (rounded up, as Cinder's
    /// drivers report it); 400 when it is missing or not safe to adopt.
    async fn manageable_size_gb(&self, pool: &str, name: &str) -> Result<i64> {
        let driver = self
            .pools
            .get(pool)
            .map(|p| p.driver.clone())
            .ok_or_else(|| Error::internal(format!("pool {pool} is not configured")))?;
        let owned = name.to_string();
        let bytes = tokio::task::spawn_blocking(move || driver.manage_existing_get_size(&owned))
            .await
            .map_err(|e| Error::internal(format!("storage task panicked: {e}")))?
            .map_err(|e| invalid_reference(name, e))?;
        Ok(bytes.div_ceil(GIB) as i64)
    }

    /// `os-volume-manage`: adopt `req.source_name` of the named pool as a new volume
    /// (`creating`, then `available` when its job has moved the file in).
    pub async fn manage_volume(&self, caller: &Caller, req: ManageVolume) -> Result<Volume> {
        let pool = self.pool_of_host(&req.host)?;
        crate::driver::check_manage_name(&req.source_name).map_err(|e| invalid_reference(&req.source_name, e))?;
        self.assert_not_frozen(&pool).await?;
        let size_gb = self.manageable_size_gb(&pool, &req.source_name).await?;
        let availability_zone = self
            .pools
            .get(&pool)
            .map(|p| p.config.availability_zone.clone())
            .ok_or_else(|| Error::internal(format!("pool {pool} is not configured")))?;
        let create = CreateVolume {
            name: req.name,
            description: req.description,
            size_gb: Some(size_gb),
            availability_zone: req.availability_zone,
            volume_type: req.volume_type,
            metadata: req.metadata,
            multiattach: false,
            count: 1,
            source: VolumeSource::default(),
            client_token: None,
            // The size is the file's: any size the file system holds is accepted.
            max_size_gb: i64::MAX,
            group_id: None,
            manage: Some(ManageSource {
                pool,
                source_name: req.source_name,
                availability_zone,
                bootable: req.bootable,
            }),
            evs: Default::default(),
        };
        let created = self.create_volumes(caller, create).await?;
        created.volumes.into_iter().next().ok_or_else(|| Error::internal("manage created no volume"))
    }

    /// `os-unmanage` of a volume: the checks of a delete (no snapshots, attachments, exports or
    /// group), then its job moves the data aside and removes the row. Returns the job id.
    pub async fn unmanage_volume(&self, caller: &Caller, id: &str) -> Result<String> {
        self.start_delete_volume(caller, id, false, true).await
    }

    /// `os-snapshot-manage`: adopt `req.source_name` of the volume's pool as a new snapshot of
    /// `req.volume_id` (`creating`, then `available`). 404 for an unknown volume.
    pub async fn manage_snapshot(&self, caller: &Caller, req: ManageSnapshot) -> Result<Snapshot> {
        let v = self.get_volume(caller, &req.volume_id).await.map_err(|e| {
            if e.kind == ErrorKind::NotFound {
                Error::not_found(format!("Volume {} could not be found.", req.volume_id))
            } else {
                e
            }
        })?;
        crate::driver::check_manage_name(&req.source_name).map_err(|e| invalid_reference(&req.source_name, e))?;
        let size_gb = self.manageable_size_gb(&v.pool, &req.source_name).await?;
        self.create_snapshot(
            caller,
            CreateSnapshot {
                volume_id: v.id,
                force: true,
                name: req.name,
                description: req.description,
                metadata: req.metadata,
                manage: Some((req.source_name, size_gb)),
            },
        )
        .await
    }

    /// `os-unmanage` of a snapshot: the checks of a delete, then its job moves the data aside
    /// and removes the row. Returns the job id.
    pub async fn unmanage_snapshot(&self, caller: &Caller, id: &str) -> Result<String> {
        self.start_delete_snapshot(caller, id, true).await
    }

    /// 3.8 manageable volumes of the pool `host` names (every file of its `import/` folder).
    pub async fn list_manageable_volumes(&self, host: &str) -> Result<Vec<Manageable>> {
        let pool = self.pool_of_host(host)?;
        let driver = self
            .pools
            .get(&pool)
            .map(|p| p.driver.clone())
            .ok_or_else(|| Error::internal(format!("pool {pool} is not configured")))?;
        tokio::task::spawn_blocking(move || driver.list_manageable())
            .await
            .map_err(|e| Error::internal(format!("storage task panicked: {e}")))?
            .map_err(|e| Error::internal(e.to_string()))
    }
}
