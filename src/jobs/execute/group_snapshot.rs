//! `createGroupSnapshot`: take every member snapshot of a Cinder group snapshot or an EVS
//! snapshot group at one moment.
//!
//! Invariants:
//! - The member snapshots are taken while the NBD exports of their volumes are quiesced (new
//!   writes held, writes in flight finished, files flushed), so the set is crash-consistent: a
//!   write a client saw answered before another is never in a member without the other.
//! - A retry (after a crash) starts over: member storage left by an interrupted attempt is
//!   from another moment, so it is removed first and every member is taken again.
//! - The members and the set leave `creating` in the job's finishing transaction; the set is
//!   `available` only when every member is.

use super::{crash_point, log_failure, record_message, run_driver, uuid_of};
use crate::error::Result;
use crate::model::{now_timestamp, Job, JobStatus, MessageAction, MessageDetail, Snapshot, SnapshotStatus};
use crate::service::Services;

pub(super) async fn create_group_snapshot(svc: &Services, job: &Job) -> Result<()> {
    let set_id = job.payload().snapshot_id.unwrap_or_default();
    let mut members: Vec<Snapshot> = Vec::new();
    for id in svc.db.group_snapshot_member_ids(&set_id).await? {
        if let Some(s) = svc.db.get_snapshot(None, &id).await? {
            if s.status == SnapshotStatus::Creating {
                members.push(s);
            }
        }
    }
    let step = async {
        let mut work = Vec::with_capacity(members.len());
        for s in &members {
            work.push((
                s.pool.clone(),
                uuid_of(Some(&s.volume_id), "volume", job)?,
                uuid_of(Some(&s.id), "snapshot", job)?,
            ));
        }
        for (pool, _, sid) in &work {
            let sid = *sid;
            run_driver(svc, pool, move |d| d.delete_snapshot(sid)).await?;
        }
        let volume_ids: Vec<String> = members.iter().map(|s| s.volume_id.clone()).collect();
        let held = match &svc.exports {
            Some(x) => Some(x.quiesce(&volume_ids).await?),
            None => None,
        };
        let mut res = Ok(());
        for (pool, vid, sid) in work {
            res = run_driver(svc, &pool, move |d| d.create_snapshot(vid, sid)).await;
            if res.is_err() {
                break;
            }
        }
        drop(held);
        res
    }
    .await;
    crash_point(svc, job, "after_storage");
    let now = now_timestamp();
    let mut tx = svc.db.begin_write().await?;
    let to = if step.is_ok() { SnapshotStatus::Available } else { SnapshotStatus::Error };
    for s in &members {
        tx.cas_snapshot_status(&s.id, &[SnapshotStatus::Creating], to, &now).await?;
    }
    match &step {
        Ok(()) => tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?,
        Err(e) => {
            log_failure(job, e);
            record_message(
                &mut tx,
                job,
                "VOLUME_SNAPSHOT",
                &set_id,
                MessageAction::SnapshotCreate,
                MessageDetail::SnapshotCreateError,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2002"), Some(&e.message), &now).await?;
        }
    }
    tx.settle_any_snapshot_set(&set_id, &now).await?;
    tx.commit().await
}
