//! Running one job: the storage step through the driver, then one transaction that moves the
//! resources to their final status and the job to SUCCESS or FAIL.
//!
//! Every storage step is idempotent (see `driver`), so a job requeued after a crash just runs
//! again. Failures land in the job row (`error_code`, `fail_reason`) and in an `error*` status.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

mod group_snapshot;

use super::runner::epoch_now;
use crate::driver::{CloneMode, Driver, ManagedKind};
use crate::error::{Error, Result};
use crate::model::{
    now_timestamp, Job, JobKind, JobStatus, MessageAction, MessageDetail, SnapshotStatus, Volume, VolumeStatus, GIB,
};
use crate::service::messages::new_message;
use crate::service::Services;

/// Run `job` to completion; never panics, never returns an error (failures land in the job).
pub(crate) async fn execute(svc: &Services, job: &Job) {
    let progress = crate::model::progress::Progress::with_copy_limit(svc.config.jobs.copy_bps_limit);
    let renew = spawn_lease_renewal(svc, job, progress.clone());
    crate::model::progress::scope(progress, execute_steps(svc, job)).await;
    renew.abort();
}

async fn execute_steps(svc: &Services, job: &Job) {
    if svc.config.jobs.step_delay_ms > 0 {
        tokio::time::sleep(Duration::from_millis(svc.config.jobs.step_delay_ms)).await;
    }
    crash_point(svc, job, "before_storage");
    let outcome = match job.kind {
        JobKind::CreateVolume => create_volume(svc, job).await,
        JobKind::DeleteVolume => delete_volume(svc, job).await,
        JobKind::ExtendVolume => extend_volume(svc, job).await,
        JobKind::CreateSnapshot => create_snapshot(svc, job).await,
        JobKind::CreateGroupSnapshot => group_snapshot::create_group_snapshot(svc, job).await,
        JobKind::DeleteSnapshot => delete_snapshot(svc, job).await,
        JobKind::RollbackSnapshot => rollback_snapshot(svc, job).await,
        JobKind::RetypeVolume | JobKind::MigrateVolume => retype_volume(svc, job).await,
        JobKind::BatchCreateVolume => Ok(()),
        JobKind::UploadImage => upload_image(svc, job).await,
    };
    if let Err(e) = outcome {
        // The finishing transaction itself failed (database gone); the lease will expire and
        // the job will be retried, by this node at its next start at the latest.
        tracing::error!(job = %job.id, error = %e, "could not record the outcome of a job");
    }
}

/// The named steps of a job where [`crash_point`] can stop the daemon: claimed with nothing
/// done (`before_storage`), storage done and the outcome not recorded (`after_storage`), and for
/// migrations the outcome recorded with the old copy not yet removed (`after_commit`).
pub(crate) const STEPS: [&str; 3] = ["before_storage", "after_storage", "after_commit"];

/// Test hook (`jobs.crash_at`): SIGKILL this process when `job` reaches `step`, exactly what
/// `kill -9` at that moment would do. A no-op unless configured.
fn crash_point(svc: &Services, job: &Job, step: &str) {
    debug_assert!(STEPS.contains(&step), "unnamed crash step {step}");
    let want = &svc.config.jobs.crash_at;
    if want.is_empty() || want.split_once(':') != Some((job.kind.as_str(), step)) {
        return;
    }
    tracing::warn!(job = %job.id, kind = job.kind.as_str(), step, "jobs.crash_at: killing the daemon");
    // SIGKILL cannot be caught: the process ends here, as with kill -9 from outside.
    let _ = nix::sys::signal::raise(nix::sys::signal::Signal::SIGKILL);
}

/// How often a running job's progress is written to its row (when it changed).
const PROGRESS_EVERY: Duration = Duration::from_secs(1);

/// The running job's companion task: renews its lease every third of the lease and writes its
/// progress to the row about once a second while it changes (a progress write is one small
/// UPDATE, so a long copy costs the database one statement a second).
fn spawn_lease_renewal(
    svc: &Services,
    job: &Job,
    progress: Arc<crate::model::progress::Progress>,
) -> tokio::task::JoinHandle<()> {
    let db = svc.db.clone();
    let id = job.id.clone();
    let owner = svc.config.node.clone();
    let lease = svc.config.jobs.lease_seconds.max(3);
    tokio::spawn(async move {
        let every = Duration::from_secs(lease / 3);
        let mut next_renewal = tokio::time::Instant::now() + every;
        let mut written = None;
        let mut tick = tokio::time::interval(PROGRESS_EVERY);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = progress.snapshot();
            if let Some((done, total)) = now.filter(|_| now != written) {
                match db.set_job_progress(&id, &owner, done, total).await {
                    Ok(()) => written = now,
                    Err(e) => tracing::warn!(job = %id, error = %e, "recording job progress failed"),
                }
            }
            if tokio::time::Instant::now() >= next_renewal {
                next_renewal += every;
                if let Err(e) = db.renew_lease(&id, &owner, epoch_now() + lease as i64).await {
                    tracing::warn!(job = %id, error = %e, "lease renewal failed");
                }
            }
        }
    })
}

/// Parse an id from a job row into a UUID (never trust a row to build a path).
fn uuid_of(id: Option<&str>, what: &str, job: &Job) -> Result<Uuid> {
    id.and_then(crate::model::parse_uuid)
        .ok_or_else(|| Error::internal(format!("job {} has no valid {what} id", job.id)))
}

fn driver_of(svc: &Services, pool: &str) -> Result<Arc<dyn Driver>> {
    svc.pools
        .get(pool)
        .map(|p| p.driver.clone())
        .ok_or_else(|| Error::internal(format!("pool {pool} is not configured on this node")))
}

/// Run a blocking driver call on the blocking pool. The error's text becomes the job's
/// `fail_reason`, visible to the project that owns the job.
async fn run_driver(
    svc: &Services,
    pool: &str,
    f: impl FnOnce(&dyn Driver) -> std::result::Result<(), crate::driver::DriverError> + Send + 'static,
) -> Result<()> {
    let driver = driver_of(svc, pool)?;
    crate::model::progress::spawn_blocking(move || f(driver.as_ref()))
        .await
        .map_err(|e| Error::internal(format!("storage task panicked: {e}")))?
        .map_err(|e| Error::internal(e.to_string()))
}

async fn load_volume(svc: &Services, job: &Job) -> Result<Volume> {
    let id = job.volume_id.as_deref().unwrap_or_default();
    svc.db.get_volume(None, id).await?.ok_or_else(|| Error::internal(format!("volume {id} vanished")))
}

fn log_failure(job: &Job, e: &Error) {
    tracing::error!(job = %job.id, kind = job.kind.as_str(), error = %e, "job failed");
}

/// Record the user message of a failed job about `resource_uuid` (Cinder 3.3 messages).
async fn record_message(
    tx: &mut crate::store::WriteTx<'_>,
    job: &Job,
    resource_type: &str,
    resource_uuid: &str,
    action: MessageAction,
    detail: MessageDetail,
) -> Result<()> {
    let request_id = job.payload().request_id;
    let m = new_message(&job.project_id, request_id.as_deref(), resource_type, resource_uuid, action, detail);
    tx.insert_message(&m).await
}

async fn create_volume(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let payload = job.payload();
    if payload.no_valid_backend {
        // Cinder's scheduler: no pool has the type's capabilities; nothing was allocated.
        let vid = job.volume_id.clone().unwrap_or_default();
        let reason = "No valid backend was found. No weighed backends available";
        tracing::warn!(job = %job.id, volume = %vid, "no pool satisfies the volume type");
        let mut tx = svc.db.begin_write().await?;
        tx.cas_volume_status(&vid, &[VolumeStatus::Creating], VolumeStatus::Error, &now).await?;
        record_message(
            &mut tx,
            job,
            "VOLUME",
            &vid,
            MessageAction::ScheduleAllocateVolume,
            MessageDetail::NoBackendAvailable,
        )
        .await?;
        tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2024"), Some(reason), &now).await?;
        return tx.commit().await;
    }
    let step = async {
        let v = load_volume(svc, job).await?;
        let id = uuid_of(Some(&v.id), "volume", job)?;
        let bytes = v.size_gb as u64 * GIB;
        let mode = if v.metadata.get("full_clone").map(String::as_str) == Some("1") {
            CloneMode::Full
        } else {
            CloneMode::Linked
        };
        if let Some(name) = payload.manage_ref.clone() {
            // manage: adopt the named storage (moved in, grown to the whole GiB size).
            run_driver(svc, &v.pool, move |d| d.manage_existing(ManagedKind::Volume, id, &name, bytes)).await
        } else if let Some(image_id) = &payload.image_id {
            create_volume_from_image(svc, job, &v, image_id, id, bytes).await
        } else if let Some(snap) = &v.snapshot_id {
            let sid = uuid_of(Some(snap), "snapshot", job)?;
            run_driver(svc, &v.pool, move |d| d.create_volume_from_snapshot(sid, id, bytes, mode)).await
        } else if let Some(src) = &v.source_volid {
            let sid = uuid_of(Some(src), "source volume", job)?;
            run_driver(svc, &v.pool, move |d| d.create_cloned_volume(sid, id, bytes, mode)).await
        } else {
            run_driver(svc, &v.pool, move |d| d.create_volume(id, bytes)).await
        }
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    let vid = job.volume_id.clone().unwrap_or_default();
    match step {
        Ok(()) => {
            let from = [VolumeStatus::Creating, VolumeStatus::Downloading];
            // evs: a disk created for a `server_id` already has its attachment record.
            let attached = !tx.volume_attachments(&vid).await?.is_empty();
            let to = if attached { VolumeStatus::InUse } else { VolumeStatus::Available };
            tx.cas_volume_status(&vid, &from, to, &now).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            let from = [VolumeStatus::Creating, VolumeStatus::Downloading];
            tx.cas_volume_status(&vid, &from, VolumeStatus::Error, &now).await?;
            // evs: a disk that never came into being is attached to nothing.
            for a in tx.volume_attachments(&vid).await? {
                tx.delete_attachment(&a.id).await?;
            }
            record_message(
                &mut tx,
                job,
                "VOLUME",
                &vid,
                MessageAction::CreateVolumeFromBackend,
                MessageDetail::DriverFailedCreate,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2024"), Some(&e.message), &now).await?;
        }
    }
    // groups: a group created from a source is done when its last new volume is.
    tx.settle_group_of_volume(&vid, &now).await?;
    tx.commit().await
}

/// images: the volume's data from an image: `downloading` while the image is converted once
/// into the raw cache of the volume's pool (a hit skips that), then a reflink (or sparse
/// copy) of the cache entry grown to the volume size; the cache is trimmed to its limits.
async fn create_volume_from_image(
    svc: &Services,
    job: &Job,
    v: &Volume,
    image_id: &str,
    volume: Uuid,
    bytes: u64,
) -> Result<()> {
    let now = now_timestamp();
    let mut tx = svc.db.begin_write().await?;
    tx.cas_volume_status(&v.id, &[VolumeStatus::Creating], VolumeStatus::Downloading, &now).await?;
    tx.commit().await?;
    let img =
        svc.db.get_image(image_id).await?.ok_or_else(|| Error::internal(format!("image {image_id} was deleted")))?;
    let iid = uuid_of(Some(&img.id), "image", job)?;
    let fmt = img.disk_format.clone().unwrap_or_else(|| "raw".into());
    let src = svc.image_area_of(&img.pool)?.image_path(iid);
    let cache = svc.image_area_of(&v.pool)?;
    let limits = crate::service::images::convert_limits(svc);
    let (max_bytes, max_count) = (svc.config.images.cache_max_size_gb * GIB, svc.config.images.cache_max_count);
    let driver = driver_of(svc, &v.pool)?;
    crate::model::progress::spawn_blocking(move || -> Result<()> {
        let (entry, converted) = cache.cached_raw(iid, &src, &fmt, limits)?;
        tracing::info!(image = %iid, volume = %volume, cache_hit = !converted, "volume from image");
        driver.create_volume_from_file(volume, &entry, bytes).map_err(|e| Error::internal(e.to_string()))?;
        if let Err(e) = cache.evict(max_bytes, max_count, Some(iid)) {
            tracing::warn!(error = %e, "image cache eviction failed");
        }
        Ok(())
    })
    .await
    .map_err(|e| Error::internal(format!("storage task panicked: {e}")))?
}

/// images: `os-volume_upload_image`. A reflink snapshot named by the job id freezes the data
/// first (consistent while attached); the image file is written from it (sparse copy for raw,
/// `qemu-img convert -f raw -O <fmt>` otherwise), checked by the inspector, hashed and renamed
/// into place; then, in one transaction, the image turns `active` and the volume goes back to
/// its status. A failure leaves the image `killed`, the volume back in its status and a user
/// message. Every step is idempotent, so a requeued job simply runs again.
async fn upload_image(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let payload = job.payload();
    let vid = job.volume_id.clone().unwrap_or_default();
    let image_id = payload.image_id.clone().unwrap_or_default();
    let restore: VolumeStatus =
        payload.restore_status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(VolumeStatus::Available);
    let step = async {
        let v = load_volume(svc, job).await?;
        let vol = uuid_of(Some(&v.id), "volume", job)?;
        let iid = uuid_of(Some(&image_id), "image", job)?;
        let snap = uuid_of(Some(&job.id), "job", job)?;
        let img = svc.db.get_image(&image_id).await?.ok_or_else(|| Error::internal("the image was deleted"))?;
        let fmt = payload.disk_format.clone().unwrap_or_else(|| "raw".into());
        let area = svc.image_area_of(&img.pool)?;
        let driver = driver_of(svc, &v.pool)?;
        let (climits, ilimits) =
            (crate::service::images::convert_limits(svc), crate::service::images::info_limits(svc));
        crate::model::progress::spawn_blocking(move || -> Result<(String, String, u64, u64)> {
            driver.create_snapshot(vol, snap).map_err(|e| Error::internal(e.to_string()))?;
            let src = driver.snapshot_data_path(snap).map_err(|e| Error::internal(e.to_string()))?;
            let tmp = area.temp_path(iid);
            let written = (|| -> Result<(String, String, u64, u64)> {
                if fmt == "raw" {
                    let s = std::fs::File::open(&src)?;
                    // The length by seeking to the end: a block device's (LVM) metadata says 0.
                    let len = std::io::Seek::seek(&mut &s, std::io::SeekFrom::End(0))?;
                    let d = std::fs::File::options().write(true).create_new(true).open(&tmp)?;
                    crate::driver::sparse_copy(&s, &d, len)?;
                } else {
                    crate::image::qemu::convert(&src, "raw", &tmp, &fmt, false, climits)?;
                }
                crate::image::inspect::inspect_path(&tmp, &fmt)
                    .map_err(|e| Error::internal(format!("the written image fails inspection: {}", e.0)))?;
                let vsize = if fmt == "raw" {
                    std::fs::metadata(&tmp)?.len()
                } else {
                    crate::image::qemu::info(&tmp, &fmt, ilimits)?.virtual_size
                };
                let (md5, sha512, len) = crate::image::hash_file(&tmp)?;
                area.commit(&tmp, iid)?;
                Ok((md5, sha512, len, vsize))
            })();
            let _ = std::fs::remove_file(&tmp);
            if let Err(e) = driver.delete_snapshot(snap) {
                tracing::warn!(error = %e, "could not remove an upload's temporary snapshot");
            }
            written
        })
        .await
        .map_err(|e| Error::internal(format!("storage task panicked: {e}")))?
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    match step {
        Ok((md5, sha512, len, vsize)) => {
            if !tx.activate_image(&image_id, len as i64, vsize as i64, &md5, &sha512, &now).await? {
                tracing::warn!(image = %image_id, "the image went away during the upload; dropping its data");
                if let (Ok(img_pool), Some(iid)) = (svc.image_pool(), crate::model::parse_uuid(&image_id)) {
                    let _ = crate::image::ImageArea::at(&img_pool.config.path).remove(iid);
                }
            }
            tx.cas_volume_status(&vid, &[VolumeStatus::Uploading], restore, &now).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            tx.cas_image_status(
                &image_id,
                &[crate::model::ImageStatus::Saving],
                crate::model::ImageStatus::Killed,
                None,
                &now,
            )
            .await?;
            tx.cas_volume_status(&vid, &[VolumeStatus::Uploading], restore, &now).await?;
            record_message(
                &mut tx,
                job,
                "VOLUME",
                &vid,
                MessageAction::CopyVolumeToImage,
                MessageDetail::FailedToUploadVolume,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2024"), Some(&e.message), &now).await?;
        }
    }
    tx.commit().await
}

async fn delete_volume(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let vid = job.volume_id.clone().unwrap_or_default();
    let row = svc.db.get_volume(None, &vid).await?;
    let cascade = job.payload().cascade;
    // manage: `os-unmanage` runs this job with the data moved aside instead of destroyed.
    let unmanage = job.payload().unmanage;
    let mut snapshots = Vec::new();
    let step = async {
        let Some(v) = &row else { return Ok(()) };
        let id = uuid_of(Some(&v.id), "volume", job)?;
        if cascade {
            snapshots = svc
                .db
                .list_snapshots(&crate::store::ListSnapshots {
                    filter: crate::store::SnapshotFilter { volume_id: Some(v.id.clone()), ..Default::default() },
                    sort_key: crate::store::SnapshotSortKey::CreatedAt,
                    sort_dir: crate::store::SortDir::Asc,
                    limit: None,
                    offset: 0,
                    marker: None,
                })
                .await?;
            for s in &snapshots {
                let sid = uuid_of(Some(&s.id), "snapshot", job)?;
                run_driver(svc, &s.pool, move |d| d.delete_snapshot(sid)).await?;
            }
        }
        if unmanage {
            run_driver(svc, &v.pool, move |d| d.unmanage(ManagedKind::Volume, id)).await
        } else {
            run_driver(svc, &v.pool, move |d| d.delete_volume(id)).await
        }
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    let mut stale = Vec::new();
    match step {
        Ok(()) => {
            if let Some(v) = &row {
                for s in &snapshots {
                    tx.delete_snapshot_row(&s.id).await?;
                }
                // `delete_volume` refuses volumes with attachments, so none should be here; but
                // the data is gone now, and this step must not fail on a row that points at it
                // (a retried job would fail forever and leave the volume `deleting`).
                stale = tx.volume_attachments(&v.id).await?;
                for a in &stale {
                    tracing::warn!(job = %job.id, attachment = %a.id, "dropping an attachment of a deleted volume");
                    tx.delete_attachment(&a.id).await?;
                }
                tx.delete_volume_row(&v.id).await?;
                tx.release_pool_capacity(&v.pool, v.size_gb).await?;
            }
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            tx.cas_volume_status(&vid, &[VolumeStatus::Deleting], VolumeStatus::ErrorDeleting, &now).await?;
            tx.cas_volume_status(&vid, &[VolumeStatus::Unmanaging], VolumeStatus::ErrorUnmanaging, &now).await?;
            tx.cas_volume_snapshots(&vid, &[SnapshotStatus::Deleting], SnapshotStatus::ErrorDeleting, &now).await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2020"), Some(&e.message), &now).await?;
        }
    }
    // groups: a group being deleted goes with its last volume; group snapshots whose members
    // a cascade removed settle too.
    if let Some(g) = row.as_ref().and_then(|v| v.group_id.as_deref()) {
        tx.settle_group(g, &now).await?;
    }
    for gs in snapshots.iter().filter_map(|s| s.group_snapshot_id.as_deref()) {
        tx.settle_any_snapshot_set(gs, &now).await?;
    }
    tx.commit().await?;
    if let Some(exports) = svc.exports.as_deref() {
        for a in &stale {
            if let Err(e) = exports.unexport(a, false).await {
                tracing::warn!(attachment = %a.id, error = %e.message, "removing the export of a deleted volume");
            }
        }
    }
    Ok(())
}

async fn extend_volume(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let payload = job.payload();
    let v = load_volume(svc, job).await?;
    let new_size = payload.new_size_gb.unwrap_or(v.size_gb);
    let restore: VolumeStatus =
        payload.restore_status.as_deref().and_then(|s| s.parse().ok()).unwrap_or(VolumeStatus::Available);
    let step = async {
        let id = uuid_of(Some(&v.id), "volume", job)?;
        run_driver(svc, &v.pool, move |d| d.extend_volume(id, new_size as u64 * GIB)).await
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    match step {
        Ok(()) => {
            // An attached volume's exports learn the new size before anyone sees the job done.
            if let Some(exports) = svc.exports.as_deref() {
                exports.refresh_size(&v.attachments).await;
            }
            tx.set_volume_size(&v.id, new_size, &now).await?;
            tx.cas_volume_status(&v.id, &[VolumeStatus::Extending], restore, &now).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            tx.release_pool_capacity(&v.pool, new_size - v.size_gb).await?;
            tx.cas_volume_status(&v.id, &[VolumeStatus::Extending], VolumeStatus::ErrorExtending, &now).await?;
            record_message(
                &mut tx,
                job,
                "VOLUME",
                &v.id,
                MessageAction::ExtendVolume,
                MessageDetail::DriverFailedExtend,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2026"), Some(&e.message), &now).await?;
        }
    }
    tx.commit().await
}

async fn create_snapshot(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let sid_text = job.payload().snapshot_id.unwrap_or_default();
    let manage_ref = job.payload().manage_ref;
    let step = async {
        let v = load_volume(svc, job).await?;
        let vid = uuid_of(Some(&v.id), "volume", job)?;
        let sid = uuid_of(Some(&sid_text), "snapshot", job)?;
        match manage_ref {
            // manage: adopt the named storage as this snapshot.
            Some(name) => {
                run_driver(svc, &v.pool, move |d| d.manage_existing(ManagedKind::Snapshot, sid, &name, 0)).await
            }
            None => run_driver(svc, &v.pool, move |d| d.create_snapshot(vid, sid)).await,
        }
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    match step {
        Ok(()) => {
            tx.cas_snapshot_status(&sid_text, &[SnapshotStatus::Creating], SnapshotStatus::Available, &now).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            tx.cas_snapshot_status(&sid_text, &[SnapshotStatus::Creating], SnapshotStatus::Error, &now).await?;
            record_message(
                &mut tx,
                job,
                "VOLUME_SNAPSHOT",
                &sid_text,
                MessageAction::SnapshotCreate,
                MessageDetail::SnapshotCreateError,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2002"), Some(&e.message), &now).await?;
        }
    }
    // groups: a group snapshot is done when its last member is.
    tx.settle_group_snapshot_of(&sid_text, &now).await?;
    tx.commit().await
}

async fn delete_snapshot(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let sid_text = job.payload().snapshot_id.unwrap_or_default();
    let row = svc.db.get_snapshot(None, &sid_text).await?;
    let unmanage = job.payload().unmanage;
    let step = async {
        let Some(s) = &row else { return Ok(()) };
        let sid = uuid_of(Some(&s.id), "snapshot", job)?;
        if unmanage {
            run_driver(svc, &s.pool, move |d| d.unmanage(ManagedKind::Snapshot, sid)).await
        } else {
            run_driver(svc, &s.pool, move |d| d.delete_snapshot(sid)).await
        }
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    match step {
        Ok(()) => {
            tx.delete_snapshot_row(&sid_text).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            let from = [SnapshotStatus::Deleting, SnapshotStatus::Unmanaging];
            tx.cas_snapshot_status(&sid_text, &from, SnapshotStatus::ErrorDeleting, &now).await?;
            record_message(
                &mut tx,
                job,
                "VOLUME_SNAPSHOT",
                &sid_text,
                MessageAction::SnapshotDelete,
                MessageDetail::SnapshotDeleteError,
            )
            .await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2019"), Some(&e.message), &now).await?;
        }
    }
    // groups: a group snapshot (or EVS snapshot group) being deleted goes with its last member.
    if let Some(gs) = row.as_ref().and_then(|s| s.group_snapshot_id.as_deref()) {
        tx.settle_any_snapshot_set(gs, &now).await?;
    }
    tx.commit().await
}

async fn rollback_snapshot(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let sid_text = job.payload().snapshot_id.unwrap_or_default();
    let vid_text = job.volume_id.clone().unwrap_or_default();
    let step = async {
        let v = load_volume(svc, job).await?;
        let vid = uuid_of(Some(&v.id), "volume", job)?;
        let sid = uuid_of(Some(&sid_text), "snapshot", job)?;
        run_driver(svc, &v.pool, move |d| d.revert_to_snapshot(vid, sid)).await
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    tx.cas_snapshot_status(&sid_text, &[SnapshotStatus::Rollbacking], SnapshotStatus::Available, &now).await?;
    match step {
        Ok(()) => {
            tx.cas_volume_status(&vid_text, &[VolumeStatus::Rollbacking], VolumeStatus::Available, &now).await?;
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
        }
        Err(e) => {
            log_failure(job, &e);
            tx.cas_volume_status(&vid_text, &[VolumeStatus::Rollbacking], VolumeStatus::ErrorRollbacking, &now).await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2002"), Some(&e.message), &now).await?;
        }
    }
    tx.commit().await
}

/// Retype with migration: copy the volume's data into the destination pool, then in one
/// transaction switch its pool and type (migration `success`) and release the old pool's
/// capacity; the old file goes after the commit (or, after a crash, with start-up recovery's
/// sweep of files no row owns). Until that commit the volume's row and data stay on the old pool,
/// so a crash mid-copy leaves it intact: the requeued job copies again.
async fn retype_volume(svc: &Services, job: &Job) -> Result<()> {
    let now = now_timestamp();
    let payload = job.payload();
    let v = load_volume(svc, job).await?;
    if v.status != VolumeStatus::Retyping {
        // An admin reset the volume before the job ran: the retype is abandoned.
        let mut tx = svc.db.begin_write().await?;
        if let Some(dest) = &payload.dest_pool {
            tx.release_pool_capacity(dest, v.size_gb).await?;
        }
        tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2002"), Some("the volume left retyping"), &now).await?;
        return tx.commit().await;
    }
    let dest = payload.dest_pool.clone().unwrap_or_default();
    let new_type = payload.new_type_id.clone().unwrap_or_default();
    let id = uuid_of(Some(&v.id), "volume", job)?;
    let step = async {
        let t = svc.catalog.require_type(&new_type)?;
        let src = driver_of(svc, &v.pool)?.export_path(id);
        let bytes = v.size_gb as u64 * GIB;
        run_driver(svc, &dest, move |d| d.copy_volume_data(id, &src, bytes)).await?;
        Ok::<_, Error>(t)
    }
    .await;
    crash_point(svc, job, "after_storage");
    let mut tx = svc.db.begin_write().await?;
    match step {
        Ok(t) => {
            let multiattach =
                t.extra_specs.get("multiattach").is_some_and(|m| m.trim().eq_ignore_ascii_case("<is> true"));
            if tx.finish_migration(&v.id, &dest, &t.id, multiattach, VolumeStatus::Available, &now).await? {
                tx.release_pool_capacity(&v.pool, v.size_gb).await?;
            } else {
                // Someone reset the volume meanwhile: it stays where its row says.
                tx.release_pool_capacity(&dest, v.size_gb).await?;
            }
            tx.finish_job(&job.id, JobStatus::Success, None, None, &now).await?;
            tx.commit().await?;
            crash_point(svc, job, "after_commit");
            let (old_pool, moved) = if v.pool != dest { (v.pool.clone(), true) } else { (String::new(), false) };
            if moved {
                if let Err(e) = run_driver(svc, &old_pool, move |d| d.delete_volume(id)).await {
                    tracing::warn!(volume = %v.id, pool = %old_pool, error = %e, "could not remove the migrated volume's old file");
                }
            }
            tracing::info!(volume = %v.id, from = %v.pool, to = %dest, "volume migrated");
            Ok(())
        }
        Err(e) => {
            log_failure(job, &e);
            tx.release_pool_capacity(&dest, v.size_gb).await?;
            tx.cas_volume_status(&v.id, &[VolumeStatus::Retyping], VolumeStatus::Available, &now).await?;
            tx.set_migration_status(&v.id, Some("error"), &now).await?;
            tx.finish_job(&job.id, JobStatus::Fail, Some("EVS.2002"), Some(&e.message), &now).await?;
            tx.commit().await?;
            // The row still points at the old pool: a copy left in the destination is garbage.
            if v.pool != dest {
                if let Err(e) = run_driver(svc, &dest, move |d| d.delete_volume(id)).await {
                    tracing::warn!(volume = %v.id, pool = %dest, error = %e, "could not remove a failed migration's copy");
                }
            }
            Ok(())
        }
    }
}
