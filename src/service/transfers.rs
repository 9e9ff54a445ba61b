//! Volume transfers (reference 7.4, Cinder `os-volume-transfer` and `volume-transfers` 3.55+).
//!
//! Create moves an `available`, unattached volume to `awaiting-transfer` and returns a random
//! `auth_key` once; only a salted SHA-256 of it is stored. Accept, by any project holding the
//! key (compared in constant time), checks the receiver's quota and moves the volume (and its
//! snapshots and tags) in one transaction; delete before acceptance gives the volume back.
//! A wrong key changes nothing.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::{Caller, QuotaDelta, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, SnapshotStatus, VolumeStatus};
use crate::store::{ListSnapshots, SnapshotFilter, SortDir, TransferRow};

/// Length of an auth key, in hex digits (Cinder uses 16).
const KEY_LEN: usize = 16;

/// A create request.
#[derive(Debug, Clone, Default)]
pub struct CreateTransfer {
    /// The volume.
    pub volume_id: String,
    /// Display name.
    pub name: Option<String>,
    /// Move the volume without its snapshots (3.55); `None` on the legacy API, where a volume
    /// with snapshots cannot be transferred.
    pub no_snapshots: Option<bool>,
    /// evs: refuse a system (bootable) disk, as the EVS reference's 7.4.1 does.
    pub refuse_bootable: bool,
}

/// A created transfer and its key (shown once).
#[derive(Debug, Clone)]
pub struct CreatedTransfer {
    /// The row.
    pub transfer: TransferRow,
    /// The key the receiver needs.
    pub auth_key: String,
}

fn random_hex(bytes: usize) -> Result<String> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| Error::internal(format!("random: {e}")))?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

fn key_hash(salt: &str, key: &str) -> String {
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(key.as_bytes());
    h.finalize().iter().map(|x| format!("{x:02x}")).collect()
}

impl Services {
    /// Offer a volume to another project.
    pub async fn create_transfer(&self, caller: &Caller, req: CreateTransfer) -> Result<CreatedTransfer> {
        super::volumes::validate_text(&req.name, "EVS.1003", "name")?;
        let v = self.get_volume(caller, &req.volume_id).await?;
        if v.status != VolumeStatus::Available {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: status must be available to transfer, but is {}.", v.status),
            ));
        }
        if !v.attachments.is_empty() {
            return Err(Error::invalid_status("EVS.5400", format!("Invalid volume: volume {} is attached.", v.id)));
        }
        if req.refuse_bootable && v.bootable {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid volume: volume {} is a system (bootable) disk, which cannot be transferred.", v.id),
            ));
        }
        let snapshots = self
            .list_snapshots(&ListSnapshots {
                filter: SnapshotFilter { volume_id: Some(v.id.clone()), ..Default::default() },
                sort_key: crate::store::SnapshotSortKey::CreatedAt,
                sort_dir: SortDir::Asc,
                limit: None,
                offset: 0,
                marker: None,
            })
            .await?;
        match req.no_snapshots {
            None | Some(true) if !snapshots.is_empty() => {
                return Err(Error::invalid_status(
                    "EVS.5400",
                    format!(
                        "Invalid volume: volume {} has snapshots; transfer them with volume-transfers (3.55+).",
                        v.id
                    ),
                ))
            }
            _ => {}
        }
        if snapshots.iter().any(|s| s.status != SnapshotStatus::Available) {
            return Err(Error::invalid_status("EVS.5400", "Invalid snapshot: every snapshot must be available."));
        }
        let auth_key = random_hex(KEY_LEN / 2)?;
        let salt = random_hex(8)?;
        let t = TransferRow {
            id: Uuid::new_v4().to_string(),
            volume_id: v.id.clone(),
            project_id: v.project_id.clone(),
            name: req.name,
            key_hash: key_hash(&salt, &auth_key),
            salt,
            no_snapshots: req.no_snapshots.unwrap_or(false),
            created_at: now_timestamp(),
        };
        let mut tx = self.db.begin_write().await?;
        if !tx
            .cas_volume_status(&v.id, &[VolumeStatus::Available], VolumeStatus::AwaitingTransfer, &t.created_at)
            .await?
        {
            return Err(Error::invalid_status("EVS.5400", "Invalid volume: its status changed."));
        }
        tx.insert_transfer(&t).await?;
        tx.commit().await?;
        Ok(CreatedTransfer { transfer: t, auth_key })
    }

    /// One pending transfer of the caller's project.
    pub async fn get_transfer(&self, caller: &Caller, id: &str) -> Result<TransferRow> {
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db
            .get_transfer(scope, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("Transfer {id} could not be found.")))
    }

    /// Pending transfers of the caller's project.
    pub async fn list_transfers(
        &self,
        caller: &Caller,
        all: bool,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<TransferRow>> {
        let scope = (!(all && caller.is_admin)).then_some(caller.project_id.as_str());
        self.db.list_transfers(scope, limit, offset).await
    }

    /// Cancel a transfer: the volume is `available` again.
    pub async fn delete_transfer(&self, caller: &Caller, id: &str) -> Result<()> {
        let t = self.get_transfer(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        if !tx.delete_transfer(&t.id).await? {
            return Err(Error::not_found(format!("Transfer {id} could not be found.")));
        }
        tx.cas_volume_status(
            &t.volume_id,
            &[VolumeStatus::AwaitingTransfer],
            VolumeStatus::Available,
            &now_timestamp(),
        )
        .await?;
        tx.commit().await
    }

    /// Accept a transfer into the caller's project with its key; returns the transfer.
    pub async fn accept_transfer(&self, caller: &Caller, id: &str, auth_key: &str) -> Result<TransferRow> {
        let missing = || Error::not_found(format!("Transfer {id} could not be found."));
        let t = self.db.get_transfer(None, id).await?;
        let Some(t) = t else {
            // About the same work as a wrong key, so timing does not tell either.
            let _ = key_hash("cinderblock-no-transfer", auth_key);
            return Err(missing());
        };
        let good: bool = key_hash(&t.salt, auth_key).as_bytes().ct_eq(t.key_hash.as_bytes()).into();
        if !good && t.project_id != caller.project_id {
            // Only the transfer's own project may learn that the id exists: anyone else with a
            // wrong key hears what a missing id says.
            return Err(missing());
        }
        if !good {
            return Err(Error::new(
                ErrorKind::Invalid,
                format!("Invalid auth key: Attempt to transfer {id} with invalid auth key."),
            )
            .with_code("EVS.5400"));
        }
        let v = self
            .db
            .get_volume(None, &t.volume_id)
            .await?
            .ok_or_else(|| Error::internal("transferred volume vanished"))?;
        let snaps =
            self.db.count_snapshots(&SnapshotFilter { volume_id: Some(v.id.clone()), ..Default::default() }).await?;
        let snap_gb = if snaps > 0 { self.db.snapshot_gigabytes_of_volume(&v.id).await? } else { 0 };
        let limits = self.project_limits(&caller.project_id).await?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        let delta = QuotaDelta {
            volumes: 1,
            snapshots: snaps,
            gigabytes: v.size_gb + snap_gb,
            volume_type: v.volume_type_name.clone(),
            per_volume_gb: Some(v.size_gb),
            ..Default::default()
        };
        self.check_quota(&mut tx, &caller.project_id, &delta, &limits).await?;
        if !tx.delete_transfer(&t.id).await? {
            return Err(Error::not_found(format!("Transfer {id} could not be found.")));
        }
        if !tx.cas_volume_status(&v.id, &[VolumeStatus::AwaitingTransfer], VolumeStatus::Available, &now).await? {
            return Err(Error::invalid_status("EVS.5400", "Invalid volume: it is no longer awaiting transfer."));
        }
        tx.move_volume_to_project(&v.id, &caller.project_id, caller.user_id.as_deref(), &now).await?;
        tx.commit().await?;
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_salted_and_checked() {
        let k = random_hex(8).expect("key");
        assert_eq!(k.len(), KEY_LEN);
        assert_ne!(key_hash("a", &k), key_hash("b", &k));
        assert_eq!(key_hash("a", &k), key_hash("a", &k));
    }
}
