//! Idempotent EVS create (`X-Client-Token`, issue 3 item 9).
//!
//! The first create that carries a token stores its reply (`job_id`, `volume_ids`) in
//! `client_tokens`, in the same transaction that inserts its volumes and jobs; a repeat in the
//! same project gets that reply back and creates nothing. The primary key `(project_id, token)`
//! settles concurrent repeats: exactly one transaction inserts the row, the others see the
//! conflict and answer the winner's reply. A create that fails stores no token, so a retry after
//! a failure really retries.

use serde_json::{json, Value};

use super::{Caller, CreateVolume, CreatedVolumes, Services};
use crate::error::{Error, Result};
use crate::model::Volume;
use crate::store::{ListVolumes, SortDir, VolumeFilter, VolumeSortKey, WriteTx};

/// Longest token, in characters.
pub const MAX_CLIENT_TOKEN: usize = 64;

/// A token is 1 to 64 printable ASCII characters (`EVS.5400` otherwise).
pub fn validate_client_token(token: &str) -> Result<()> {
    if token.is_empty() || token.len() > MAX_CLIENT_TOKEN || !token.bytes().all(|b| (0x20..=0x7e).contains(&b)) {
        return Err(Error::invalid(
            "EVS.5400",
            format!("Invalid X-Client-Token: it must be 1 to {MAX_CLIENT_TOKEN} printable ASCII characters."),
        ));
    }
    Ok(())
}

impl Services {
    /// Rebuild a create's answer from its stored reply: the same job and volume ids; `volumes`
    /// holds those that still exist.
    pub(super) async fn created_from_reply(&self, caller: &Caller, reply: &str) -> Result<CreatedVolumes> {
        let v: Value =
            serde_json::from_str(reply).map_err(|e| Error::internal(format!("stored client token reply: {e}")))?;
        let job_id = v["job_id"].as_str().ok_or_else(|| Error::internal("stored client token reply has no job_id"))?;
        let volume_ids: Vec<String> = v["volume_ids"]
            .as_array()
            .ok_or_else(|| Error::internal("stored client token reply has no volume_ids"))?
            .iter()
            .filter_map(|i| i.as_str().map(str::to_string))
            .collect();
        let page = self
            .db
            .list_volumes(&ListVolumes {
                filter: VolumeFilter {
                    project_id: Some(caller.project_id.clone()),
                    ids: Some(volume_ids.clone()),
                    ..Default::default()
                },
                sort_key: VolumeSortKey::CreatedAt,
                sort_dir: SortDir::Asc,
                limit: None,
                offset: 0,
                marker: None,
                with_count: false,
            })
            .await?;
        let mut volumes = page.volumes;
        volumes.sort_by_key(|vol| volume_ids.iter().position(|i| *i == vol.id));
        Ok(CreatedVolumes { job_id: job_id.to_string(), volume_ids, volumes })
    }

    /// Before any work: validate the request's token and, when this project already used it,
    /// the first call's answer.
    pub(super) async fn replay_client_token(
        &self,
        caller: &Caller,
        req: &CreateVolume,
    ) -> Result<Option<CreatedVolumes>> {
        let Some(token) = req.client_token.as_deref() else { return Ok(None) };
        validate_client_token(token)?;
        match self.db.client_token_reply(&caller.project_id, token).await? {
            Some(reply) => Ok(Some(self.created_from_reply(caller, &reply).await?)),
            None => Ok(None),
        }
    }

    /// Inside the create transaction, before the volumes are inserted: claim the token for
    /// this create. `Some` is the stored reply of a concurrent create that claimed it first: the
    /// caller must end its transaction, then answer with [`Self::created_from_reply`]; `None`
    /// means go on.
    pub(super) async fn claim_client_token(
        &self,
        tx: &mut WriteTx<'_>,
        caller: &Caller,
        req: &CreateVolume,
        job_id: &str,
        volumes: &[Volume],
        now: &str,
    ) -> Result<Option<String>> {
        let Some(token) = req.client_token.as_deref() else { return Ok(None) };
        let ids: Vec<&str> = volumes.iter().map(|v| v.id.as_str()).collect();
        let reply = json!({"job_id": job_id, "volume_ids": ids}).to_string();
        if tx.insert_client_token(&caller.project_id, token, job_id, &reply, now).await? {
            return Ok(None);
        }
        // The winner has committed (PostgreSQL made the insert wait for it; SQLite has one
        // writer), so its row is readable now.
        let reply = tx
            .client_token_reply(&caller.project_id, token)
            .await?
            .ok_or_else(|| Error::internal("client token conflict but no stored reply"))?;
        Ok(Some(reply))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_rules() {
        assert!(validate_client_token("abc-123_X.y").is_ok());
        assert!(validate_client_token(&"t".repeat(64)).is_ok());
        assert!(validate_client_token(&"t".repeat(65)).is_err());
        assert!(validate_client_token("").is_err());
        assert!(validate_client_token("tab\there").is_err());
        assert!(validate_client_token("é").is_err());
    }
}
