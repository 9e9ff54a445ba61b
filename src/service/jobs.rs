//! Reading jobs for `GET /v1/{p}/jobs/{id}`.

use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::Job;

/// A job with its sub-jobs (for batches).
#[derive(Debug, Clone)]
pub struct JobView {
    /// The job.
    pub job: Job,
    /// Children, in creation order; empty unless a batch.
    pub sub_jobs: Vec<Job>,
}

impl Services {
    /// A job the caller may see.
    pub async fn get_job(&self, caller: &Caller, id: &str) -> Result<JobView> {
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        let job = self
            .db
            .get_job(scope, id)
            .await?
            .ok_or_else(|| Error::not_found(format!("query job fail. No jobs found: {id} is not a job id.")))?;
        let sub_jobs = self.db.sub_jobs(&job.id).await?;
        Ok(JobView { job, sub_jobs })
    }
}
