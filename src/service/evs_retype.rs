//! EVS `retype_volume` (`POST /v2/{project}/volumes/{id}/retype`): Cinder's `os-retype` with
//! EVS's answer, a job id.
//!
//! EVS moves the data whenever the new type needs it, so the retype runs with migration on
//! demand. A retype done in place (the volume's pool serves the new type) needs no storage
//! work; it is recorded as a job that is already `SUCCESS`, written after the retype's own
//! transaction (a crash between the two loses only that record, never the retype).

use super::volumes::new_job_id;
use super::{Caller, MigrationPolicy, RetypeOutcome, Services};
use crate::error::Result;
use crate::model::{now_timestamp, JobKind, JobPayload, JobStatus};
use crate::store::NewJob;

impl Services {
    /// Retype `id` to `new_type` (id or name) as EVS does; returns the job id.
    pub async fn retype_volume_evs(&self, caller: &Caller, id: &str, new_type: &str) -> Result<String> {
        match self.retype(caller, id, new_type, MigrationPolicy::OnDemand).await? {
            RetypeOutcome::Migrating { job_id, .. } => Ok(job_id),
            RetypeOutcome::Retyped => {
                let v = self.get_volume(caller, id).await?;
                let now = now_timestamp();
                let job_id = new_job_id();
                let mut tx = self.db.begin_write().await?;
                tx.insert_job(&NewJob {
                    id: job_id.clone(),
                    project_id: v.project_id.clone(),
                    kind: JobKind::RetypeVolume,
                    parent_id: None,
                    volume_id: Some(v.id.clone()),
                    payload: Some(JobPayload { new_type_id: Some(v.volume_type_id.clone()), ..Default::default() }),
                    entities: serde_json::json!({"volume_id": v.id, "volume_type": v.volume_type_name}).to_string(),
                    begin_time: now.clone(),
                })
                .await?;
                // Finished in the same transaction: no worker ever sees it queued.
                tx.finish_job(&job_id, JobStatus::Success, None, None, &now).await?;
                tx.commit().await?;
                Ok(job_id)
            }
        }
    }
}
