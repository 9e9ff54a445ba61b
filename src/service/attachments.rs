//! The attach lifecycle, with Cinder's two flows:
//! - legacy actions: `os-reserve` (available → attaching), `os-initialize_connection` (export,
//!   answer connection info), `os-attach` (→ in-use), `os-detach`, `os-terminate_connection`,
//!   `os-unreserve`;
//! - v3 attachments (3.27+): create (→ reserved, or attaching with a connector), update with a
//!   connector, complete (3.44, → in-use), delete.
//!
//! Rules: a volume that is not `multiattach` takes one attachment (a second is 409); read-only
//! volumes and `ro` attachments are exported read-only; exports are created before the row that
//! records them is committed and removed after it is gone, so a crash leaves at worst an export
//! the next start removes, never a recorded export that does not exist.

use serde_json::Value;
use uuid::Uuid;

use super::exports::ExportRequest;
use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::{now_timestamp, AttachMode, AttachStatus, Attachment, Volume, VolumeStatus};
use crate::store::{AttachmentFilter, VolumeFlag};

/// What `os-attach` / attachment create carry.
#[derive(Debug, Clone, Default)]
pub struct AttachRequest {
    /// Consumer instance.
    pub instance_uuid: Option<String>,
    /// Consumer host.
    pub host_name: Option<String>,
    /// Device name.
    pub mountpoint: Option<String>,
    /// `rw` (default) or `ro`.
    pub mode: Option<AttachMode>,
}

fn conflict(msg: impl Into<String>) -> Error {
    Error::conflict("EVS.5400", msg)
}

fn invalid_status(v: &Volume, want: &str) -> Error {
    Error::invalid_status(
        "EVS.5400",
        format!("Invalid volume: Volume {} status must be {want}, but current status is: {}.", v.id, v.status),
    )
}

/// The attachments a detach names: `attachment_id` (404 when the volume has no such one), or
/// the volume's only attachment (none when it has none; 400 when it has several, as Cinder).
fn to_detach(v: &Volume, attachment_id: Option<&str>) -> Result<Vec<Attachment>> {
    match attachment_id {
        Some(aid) => {
            let found: Vec<Attachment> = v.attachments.iter().filter(|a| a.id == aid).cloned().collect();
            if found.is_empty() {
                return Err(Error::not_found(format!("Attachment {aid} could not be found.")));
            }
            Ok(found)
        }
        None if v.attachments.len() <= 1 => Ok(v.attachments.clone()),
        None => Err(Error::invalid(
            "EVS.5400",
            format!("Invalid volume: Volume {} has more than one attachment: give attachment_id.", v.id),
        )),
    }
}

/// Volume statuses an attachment change moves the volume out of.
const DETACHABLE: [VolumeStatus; 4] =
    [VolumeStatus::Attaching, VolumeStatus::Reserved, VolumeStatus::InUse, VolumeStatus::Detaching];

impl Services {
    fn exports(&self) -> Result<&super::ExportManager> {
        self.exports.as_deref().ok_or_else(|| Error::internal("exports are not running"))
    }

    fn export_request(&self, v: &Volume, mode: AttachMode, connector: &Value) -> Result<ExportRequest> {
        let pool = self.pools.get(&v.pool).ok_or_else(|| Error::internal(format!("pool {} not configured", v.pool)))?;
        let id = Uuid::try_parse(&v.id).map_err(|_| Error::internal("bad volume id"))?;
        // Refused before anything is exported or recorded (RBD pools have no local device).
        if let Some(why) = pool.driver.export_unsupported() {
            return Err(Error::invalid("EVS.5400", format!("Invalid volume: {why}.")));
        }
        Ok(ExportRequest {
            volume_id: v.id.clone(),
            path: pool.driver.export_path(id),
            readonly: v.readonly || mode == AttachMode::ReadOnly,
            transport: self.exports()?.transport_for(connector)?,
            client: connector.get("host").and_then(Value::as_str).filter(|h| !h.is_empty()).map(str::to_string),
        })
    }

    /// `os-reserve`: available → attaching (in-use → in-use for a multiattach volume).
    pub async fn reserve_volume(&self, caller: &Caller, id: &str) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        let ok = if v.multiattach {
            tx.cas_volume_status(&v.id, &[VolumeStatus::Available], VolumeStatus::Attaching, &now_timestamp()).await?
                || tx.cas_volume_status(&v.id, &[VolumeStatus::InUse], VolumeStatus::InUse, &now_timestamp()).await?
        } else {
            tx.cas_volume_status(&v.id, &[VolumeStatus::Available], VolumeStatus::Attaching, &now_timestamp()).await?
        };
        if !ok {
            return Err(invalid_status(&v, "available"));
        }
        tx.commit().await
    }

    /// `os-unreserve`: attaching → available (or in-use if something is attached); drops the
    /// exports of attachments that never completed.
    pub async fn unreserve_volume(&self, caller: &Caller, id: &str) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        if !matches!(v.status, VolumeStatus::Attaching | VolumeStatus::Reserved | VolumeStatus::InUse) {
            return Err(invalid_status(&v, "attaching"));
        }
        let pending: Vec<Attachment> =
            v.attachments.iter().filter(|a| a.status != AttachStatus::Attached).cloned().collect();
        self.drop_attachments(&v, &pending).await
    }

    /// Remove `gone` (attachments of `v`), their exports, and settle the volume's status.
    async fn drop_attachments(&self, v: &Volume, gone: &[Attachment]) -> Result<()> {
        self.drop_attachments_from(v, gone, &DETACHABLE).await
    }

    /// [`drop_attachments`](Self::drop_attachments), moving the volume's status from any of
    /// `from` (a force detach also takes it out of `error` and `maintenance`).
    async fn drop_attachments_from(&self, v: &Volume, gone: &[Attachment], from: &[VolumeStatus]) -> Result<()> {
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        for a in gone {
            tx.delete_attachment(&a.id).await?;
        }
        let left = tx.volume_attachments(&v.id).await?;
        let status = if left.iter().any(|a| a.status == AttachStatus::Attached) {
            VolumeStatus::InUse
        } else if left.is_empty() {
            VolumeStatus::Available
        } else if left.iter().all(|a| a.status == AttachStatus::Reserved) {
            VolumeStatus::Reserved
        } else {
            VolumeStatus::Attaching
        };
        tx.cas_volume_status(&v.id, from, status, &now).await?;
        tx.commit().await?;
        for a in gone {
            let still_nbd = left.iter().any(|o| o.connection_info.as_deref().is_some_and(|c| c.contains("\"nbd\"")));
            self.exports()?.unexport(a, still_nbd).await?;
        }
        Ok(())
    }

    /// `os-initialize_connection`: export the volume to `connector` and answer connection info.
    /// The export is recorded on an `attaching` attachment for the connector's host (created
    /// when missing), so it survives a restart.
    pub async fn initialize_connection(&self, caller: &Caller, id: &str, connector: &Value) -> Result<Value> {
        let v = self.get_volume(caller, id).await?;
        if !matches!(
            v.status,
            VolumeStatus::Available | VolumeStatus::Attaching | VolumeStatus::Reserved | VolumeStatus::InUse
        ) {
            return Err(invalid_status(&v, "available, attaching, reserved or in-use"));
        }
        let host = connector.get("host").and_then(Value::as_str).map(str::to_string);
        let mode = match connector.get("mode").and_then(Value::as_str) {
            Some(m) => AttachMode::parse(m).ok_or_else(|| Error::invalid("EVS.5400", format!("invalid mode {m:?}")))?,
            None => AttachMode::ReadWrite,
        };
        let existing =
            v.attachments.iter().find(|a| a.status != AttachStatus::Attached && a.attached_host == host).cloned();
        if existing.is_none() && !v.multiattach && v.attachments.iter().any(|a| a.status == AttachStatus::Attached) {
            return Err(conflict(format!("Volume {} is already attached and not multiattach.", v.id)));
        }
        let mut a = existing.unwrap_or_else(|| new_attachment(&v, AttachStatus::Attaching, mode));
        a.attached_host = host;
        self.connect(&v, a, connector).await
    }

    /// Export `a` for `connector`, then record the attachment with its connection info.
    async fn connect(&self, v: &Volume, mut a: Attachment, connector: &Value) -> Result<Value> {
        let req = self.export_request(v, a.mode, connector)?;
        // A repeated call for the same attachment gets a new secret name; the old NBD export
        // goes once the new one is recorded.
        let previous = a.clone();
        let exported = self.exports()?.export(&a.id, &req).await?;
        a.connector = Some(connector.to_string());
        a.connection_info = Some(exported.stored.to_string());
        if a.status == AttachStatus::Reserved {
            a.status = AttachStatus::Attaching;
        }
        let recorded = self.record_export(v, &a).await;
        match recorded {
            Ok(true) => {
                // qos: the new export gets its type's back-end limits before the caller has
                // its name.
                if let Err(e) = self.apply_qos_to(&a, v).await {
                    tracing::warn!(attachment = %a.id, error = %e.message, "could not apply QoS limits");
                }
                let mut info = exported.info;
                if info.get("data").is_some_and(Value::is_object) {
                    // A failed lookup must not fail an export already recorded: no specs then.
                    let specs = self.frontend_qos_of_type(&v.volume_type_id).await.unwrap_or_else(|e| {
                        tracing::warn!(attachment = %a.id, error = %e.message, "could not read front-end QoS specs");
                        None
                    });
                    info["data"]["qos_specs"] = serde_json::json!(specs);
                }
                let old = super::ExportManager::nbd_digest(&previous);
                if old.is_some() && old != super::ExportManager::nbd_digest(&a) {
                    if let Err(e) = self.exports()?.unexport(&previous, true).await {
                        tracing::warn!(attachment = %a.id, error = %e.message, "removing a replaced export");
                    }
                }
                Ok(info)
            }
            Ok(false) | Err(_) => {
                // Not recorded: nothing may keep serving the file under the new name.
                if let Err(e) = self.exports()?.unexport(&a, true).await {
                    tracing::warn!(attachment = %a.id, error = %e.message, "removing an unrecorded export");
                }
                match recorded {
                    Err(e) => Err(e),
                    _ => {
                        let now = self.db.get_volume(None, &v.id).await?.map(|x| x.status.as_str().to_string());
                        Err(Error::invalid_status(
                            "EVS.5400",
                            format!(
                                "Invalid volume: Volume {} changed status to {} while it was being exported.",
                                v.id,
                                now.as_deref().unwrap_or("deleted")
                            ),
                        ))
                    }
                }
            }
        }
    }

    /// Record the export of `a`, unless the volume left the statuses an export may start in
    /// since it was checked (a delete or rollback that began meanwhile): `false` then. The row
    /// lock makes the check and the insert one step against those status changes.
    async fn record_export(&self, v: &Volume, a: &Attachment) -> Result<bool> {
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx
            .lock_volume_in_status(
                &v.id,
                &[VolumeStatus::Available, VolumeStatus::Attaching, VolumeStatus::Reserved, VolumeStatus::InUse],
            )
            .await?
        {
            return Ok(false);
        }
        let known = tx.volume_attachments(&v.id).await?.iter().any(|x| x.id == a.id);
        if known {
            tx.update_attachment(a, &now).await?;
        } else {
            tx.insert_attachment(a).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// `os-attach`: mark the volume in-use by `req.instance_uuid`.
    pub async fn attach_volume(&self, caller: &Caller, id: &str, req: AttachRequest) -> Result<Attachment> {
        let v = self.get_volume(caller, id).await?;
        let mode = req.mode.unwrap_or(AttachMode::ReadWrite);
        if v.readonly && mode == AttachMode::ReadWrite {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid attaching mode 'rw' for read-only volume {}.", v.id),
            ));
        }
        let attachable = matches!(v.status, VolumeStatus::Available | VolumeStatus::Attaching | VolumeStatus::Reserved)
            || (v.multiattach && v.status == VolumeStatus::InUse);
        if !attachable {
            return Err(invalid_status(&v, "available or attaching"));
        }
        let attached = v.attachments.iter().filter(|a| a.status == AttachStatus::Attached).count();
        if attached > 0 && !v.multiattach {
            return Err(conflict(format!("Volume {} is already attached and not multiattach.", v.id)));
        }
        let pending = v
            .attachments
            .iter()
            .find(|a| {
                a.status != AttachStatus::Attached && (req.host_name.is_none() || a.attached_host == req.host_name)
            })
            .cloned();
        let now = now_timestamp();
        let mut a = pending.unwrap_or_else(|| new_attachment(&v, AttachStatus::Attaching, mode));
        a.instance_uuid = req.instance_uuid.or(a.instance_uuid);
        a.attached_host = req.host_name.or(a.attached_host);
        a.mountpoint = req.mountpoint.or(a.mountpoint);
        a.mode = mode;
        a.status = AttachStatus::Attached;
        a.attach_time = Some(now.clone());
        let mut tx = self.db.begin_write().await?;
        let known = tx.volume_attachments(&v.id).await?.iter().any(|x| x.id == a.id);
        if known {
            tx.update_attachment(&a, &now).await?;
        } else {
            tx.insert_attachment(&a).await?;
        }
        tx.cas_volume_status(
            &v.id,
            &[VolumeStatus::Available, VolumeStatus::Attaching, VolumeStatus::Reserved, VolumeStatus::InUse],
            VolumeStatus::InUse,
            &now,
        )
        .await?;
        tx.commit().await?;
        Ok(a)
    }

    /// `os-detach`: remove `attachment_id` (or the only attachment), and its export.
    pub async fn detach_volume(&self, caller: &Caller, id: &str, attachment_id: Option<&str>) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        let gone = to_detach(&v, attachment_id)?;
        if gone.is_empty() && v.status != VolumeStatus::InUse {
            return Err(invalid_status(&v, "in-use"));
        }
        self.drop_attachments(&v, &gone).await
    }

    /// `os-force_detach` (admin): Cinder's forced terminate_connection plus detach. Removes
    /// `attachment_id` (or the volume's only attachment), its export closed, whatever state the
    /// attachment is in (reserved, attaching, attached) and whatever the volume's status among
    /// those an attachment can leave behind (also `error` and `maintenance`, e.g. after a
    /// reset); the volume ends `available` when nothing is left, as Cinder's detach does.
    pub async fn force_detach(&self, caller: &Caller, id: &str, attachment_id: Option<&str>) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        let gone = to_detach(&v, attachment_id)?;
        let mut from = DETACHABLE.to_vec();
        from.extend([VolumeStatus::Error, VolumeStatus::Maintenance]);
        self.drop_attachments_from(&v, &gone, &from).await
    }

    /// `os-terminate_connection`: remove the exports made for `connector`'s host; attachments
    /// that were never completed go away, attached ones stay (until `os-detach`).
    pub async fn terminate_connection(&self, caller: &Caller, id: &str, connector: &Value) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        let host = connector.get("host").and_then(Value::as_str);
        let mine: Vec<Attachment> = v
            .attachments
            .iter()
            .filter(|a| a.connection_info.is_some() && (host.is_none() || a.attached_host.as_deref() == host))
            .cloned()
            .collect();
        let (attached, pending): (Vec<Attachment>, Vec<Attachment>) =
            mine.into_iter().partition(|a| a.status == AttachStatus::Attached);
        let now = now_timestamp();
        for a in &attached {
            let others_on_nbd = v
                .attachments
                .iter()
                .any(|o| o.id != a.id && o.connection_info.as_deref().is_some_and(|c| c.contains("\"nbd\"")));
            self.exports()?.unexport(a, others_on_nbd).await?;
            let mut cleared = a.clone();
            cleared.connection_info = None;
            let mut tx = self.db.begin_write().await?;
            tx.update_attachment(&cleared, &now).await?;
            tx.commit().await?;
        }
        if !pending.is_empty() {
            self.drop_attachments(&v, &pending).await?;
        }
        Ok(())
    }

    /// `os-update_readonly_flag` / `os-set_bootable`.
    pub async fn set_volume_flag(&self, caller: &Caller, id: &str, flag: VolumeFlag, value: bool) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        if flag == VolumeFlag::Readonly && v.status != VolumeStatus::Available {
            return Err(invalid_status(&v, "available"));
        }
        let mut tx = self.db.begin_write().await?;
        tx.set_volume_flag(&v.id, flag, value, &now_timestamp()).await?;
        tx.commit().await
    }

    /// v3 attachment create: reserve the volume for `instance_uuid`; with a connector, export it
    /// too. Returns the attachment (with its connection info when exported).
    pub async fn create_attachment(
        &self,
        caller: &Caller,
        volume_id: &str,
        req: AttachRequest,
        connector: Option<&Value>,
    ) -> Result<Attachment> {
        let v = self.get_volume(caller, volume_id).await?;
        // A read-only volume is exported read-only whatever mode is asked (as Cinder does).
        let mode = req.mode.unwrap_or(AttachMode::ReadWrite);
        if !matches!(
            v.status,
            VolumeStatus::Available | VolumeStatus::Reserved | VolumeStatus::Attaching | VolumeStatus::InUse
        ) {
            return Err(invalid_status(&v, "available, reserved or in-use"));
        }
        if !v.multiattach && !v.attachments.is_empty() {
            return Err(conflict(format!("Volume {} is already attached or reserved and not multiattach.", v.id)));
        }
        let mut a = new_attachment(&v, AttachStatus::Reserved, mode);
        a.instance_uuid = req.instance_uuid;
        a.attached_host = connector.and_then(|c| c.get("host")).and_then(Value::as_str).map(str::to_string);
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx
            .cas_volume_status(
                &v.id,
                &[VolumeStatus::Available, VolumeStatus::Reserved, VolumeStatus::Attaching, VolumeStatus::InUse],
                if v.status == VolumeStatus::InUse { VolumeStatus::InUse } else { VolumeStatus::Reserved },
                &now,
            )
            .await?
        {
            return Err(invalid_status(&v, "available"));
        }
        // Re-check inside the transaction: two concurrent creates must not both pass.
        if !v.multiattach && !tx.volume_attachments(&v.id).await?.is_empty() {
            return Err(conflict(format!("Volume {} is already attached or reserved and not multiattach.", v.id)));
        }
        tx.insert_attachment(&a).await?;
        tx.commit().await?;
        if let Some(c) = connector {
            match self.update_attachment(caller, &a.id, c).await {
                Ok(exported) => return Ok(exported),
                Err(e) => {
                    // A create that fails answers an error and must leave nothing behind: no
                    // reservation, the volume back in the status it had.
                    let v = self.get_volume(caller, volume_id).await?;
                    if let Some(mine) = v.attachments.iter().find(|x| x.id == a.id).cloned() {
                        self.drop_attachments(&v, &[mine]).await?;
                    }
                    return Err(e);
                }
            }
        }
        self.get_attachment(caller, &a.id).await
    }

    /// v3 attachment update: give the connector, get the volume exported.
    pub async fn update_attachment(&self, caller: &Caller, id: &str, connector: &Value) -> Result<Attachment> {
        let a = self.get_attachment(caller, id).await?;
        let v = self.get_volume(caller, &a.volume_id).await?;
        let mut next = a.clone();
        if let Some(h) = connector.get("host").and_then(Value::as_str) {
            next.attached_host = Some(h.to_string());
        }
        let info = self.connect(&v, next, connector).await?;
        if v.status == VolumeStatus::Reserved {
            let mut tx = self.db.begin_write().await?;
            tx.cas_volume_status(&v.id, &[VolumeStatus::Reserved], VolumeStatus::Attaching, &now_timestamp()).await?;
            tx.commit().await?;
        }
        // The secret export name is in this answer only (the row keeps its digest).
        let mut a = self.get_attachment(caller, id).await?;
        a.connection_info = Some(info.to_string());
        Ok(a)
    }

    /// v3 attachment complete (3.44): attached, volume in-use.
    pub async fn complete_attachment(&self, caller: &Caller, id: &str) -> Result<()> {
        let a = self.get_attachment(caller, id).await?;
        let now = now_timestamp();
        let mut next = a.clone();
        next.status = AttachStatus::Attached;
        next.attach_time = Some(now.clone());
        let mut tx = self.db.begin_write().await?;
        tx.update_attachment(&next, &now).await?;
        tx.cas_volume_status(
            &a.volume_id,
            &[VolumeStatus::Reserved, VolumeStatus::Attaching, VolumeStatus::InUse],
            VolumeStatus::InUse,
            &now,
        )
        .await?;
        tx.commit().await
    }

    /// v3 attachment delete: unexport and forget; the volume returns to `available` when it was
    /// the last one. Returns the remaining attachments.
    pub async fn delete_attachment(&self, caller: &Caller, id: &str) -> Result<()> {
        let a = self.get_attachment(caller, id).await?;
        let v = self.get_volume(caller, &a.volume_id).await?;
        self.drop_attachments(&v, &[a]).await
    }

    /// One attachment the caller may see.
    pub async fn get_attachment(&self, caller: &Caller, id: &str) -> Result<Attachment> {
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db
            .get_attachment(scope, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Attachment {id} could not be found.")))
    }

    /// Attachments of the caller's project (all projects with `all_tenants` for admins).
    pub async fn list_attachments(
        &self,
        filter: &AttachmentFilter,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<Attachment>> {
        self.db.list_attachments(filter, limit, offset).await
    }

    /// Re-export every recorded export after a restart; fix connection info that changed.
    pub async fn restore_exports(&self) -> Result<()> {
        let Some(exports) = self.exports.as_deref() else { return Ok(()) };
        let mut items = Vec::new();
        for a in self.db.exported_attachments().await? {
            let Some(v) = self.db.get_volume(None, &a.volume_id).await? else { continue };
            let Some(pool) = self.pools.get(&v.pool) else { continue };
            let Ok(id) = Uuid::try_parse(&v.id) else { continue };
            let readonly = v.readonly || a.mode == AttachMode::ReadOnly;
            items.push((a, pool.driver.export_path(id), readonly));
        }
        let dirs: Vec<_> = self.pools.values().map(|p| p.config.path.join("volumes")).collect();
        let count = items.len();
        let changed = exports.restore(&items, &dirs).await;
        let now = now_timestamp();
        for (aid, info) in changed {
            if let Some((mut a, _, _)) = items.iter().find(|(a, _, _)| a.id == aid).cloned() {
                a.connection_info = Some(info.to_string());
                let mut tx = self.db.begin_write().await?;
                tx.update_attachment(&a, &now).await?;
                tx.commit().await?;
            }
        }
        if count > 0 {
            tracing::info!(count, "exports restored");
        }
        self.reapply_qos().await;
        Ok(())
    }
}

fn new_attachment(v: &Volume, status: AttachStatus, mode: AttachMode) -> Attachment {
    Attachment {
        id: Uuid::new_v4().to_string(),
        volume_id: v.id.clone(),
        project_id: v.project_id.clone(),
        instance_uuid: None,
        attached_host: None,
        mountpoint: None,
        mode,
        status,
        connector: None,
        connection_info: None,
        created_at: now_timestamp(),
        attach_time: None,
    }
}
