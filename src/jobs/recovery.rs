//! Start-up recovery: requeue this node's interrupted jobs, repair stranded statuses and remove
//! pool files that no volume row owns (left by a delete interrupted between its two steps).

use std::collections::HashSet;

use crate::error::{Error, Result};
use crate::model::{now_timestamp, SnapshotStatus, VolumeStatus};
use crate::service::Services;

/// Run recovery before workers start.
pub async fn recover(svc: &Services) -> Result<()> {
    let requeued = svc.db.requeue_jobs_of(&svc.config.node).await?;
    if requeued > 0 {
        tracing::warn!(count = requeued, "requeued jobs interrupted by the previous run");
    }
    let now = now_timestamp();
    // actions: a retype whose job is gone leaves the volume where it was, usable again.
    let n = svc.db.fail_stranded_migrations(&now).await?;
    if n > 0 {
        tracing::warn!(count = n, "marked migrations with no job as error");
    }
    for (from, to) in [
        (VolumeStatus::Creating, VolumeStatus::Error),
        (VolumeStatus::Deleting, VolumeStatus::ErrorDeleting),
        (VolumeStatus::Unmanaging, VolumeStatus::ErrorUnmanaging),
        (VolumeStatus::Retyping, VolumeStatus::Available),
        // images: a volume from an image whose job is gone; an upload whose job is gone.
        (VolumeStatus::Downloading, VolumeStatus::Error),
        (VolumeStatus::Uploading, VolumeStatus::Available),
    ] {
        let n = svc.db.fail_stranded_volumes(from, to, &now).await?;
        if n > 0 {
            tracing::warn!(count = n, from = from.as_str(), to = to.as_str(), "repaired volumes with no job");
        }
    }
    let stranded_snapshots = [
        (SnapshotStatus::Creating, SnapshotStatus::Error),
        (SnapshotStatus::Deleting, SnapshotStatus::ErrorDeleting),
        (SnapshotStatus::Unmanaging, SnapshotStatus::ErrorDeleting),
        (SnapshotStatus::Rollbacking, SnapshotStatus::Available),
    ];
    for (from, to) in stranded_snapshots {
        let n = svc.db.fail_stranded_snapshots(from, to, &now).await?;
        if n > 0 {
            tracing::warn!(count = n, from = from.as_str(), to = to.as_str(), "repaired snapshots with no job");
        }
    }
    // groups: with their members repaired, groups and group snapshots leave creating/deleting.
    let n = svc.db.settle_transitional_groups(&now).await?;
    if n > 0 {
        tracing::warn!(count = n, "settled groups and group snapshots left transitional");
    }
    for (name, pool) in svc.pools.iter() {
        let known: HashSet<String> = svc.db.volume_ids_on_pool(name).await?.into_iter().collect();
        let driver = pool.driver.clone();
        let files = tokio::task::spawn_blocking(move || driver.list_volumes())
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::internal(e.to_string()))?;
        for id in files {
            if !known.contains(&id.to_string()) {
                tracing::warn!(pool = %name, volume = %id, "removing a volume file no volume row owns");
                let driver = pool.driver.clone();
                tokio::task::spawn_blocking(move || driver.delete_volume(id))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?
                    .map_err(|e| Error::internal(e.to_string()))?;
            }
        }
        let known: HashSet<String> = svc.db.snapshot_ids_on_pool(name).await?.into_iter().collect();
        let driver = pool.driver.clone();
        let files = tokio::task::spawn_blocking(move || driver.list_snapshots())
            .await
            .map_err(|e| Error::internal(e.to_string()))?
            .map_err(|e| Error::internal(e.to_string()))?;
        for id in files {
            if !known.contains(&id.to_string()) {
                tracing::warn!(pool = %name, snapshot = %id, "removing a snapshot file no snapshot row owns");
                let driver = pool.driver.clone();
                tokio::task::spawn_blocking(move || driver.delete_snapshot(id))
                    .await
                    .map_err(|e| Error::internal(e.to_string()))?
                    .map_err(|e| Error::internal(e.to_string()))?;
            }
        }
    }
    // images: partial uploads and conversions are removed, uploads cut off go back to
    // `queued`, and image files no image row owns are removed.
    recover_images(svc, &now).await?;
    Ok(())
}

/// images: see [`recover`].
async fn recover_images(svc: &Services, now: &str) -> Result<()> {
    let n = svc.db.reset_interrupted_uploads(&svc.config.node, now).await?;
    if n > 0 {
        tracing::warn!(count = n, "images whose upload was interrupted are queued again");
    }
    for (name, pool) in svc.pools.iter() {
        let root = pool.config.path.clone();
        let known: HashSet<String> = svc.db.image_ids_on_pool(name).await?.into_iter().collect();
        tokio::task::spawn_blocking(move || -> Result<()> {
            let area = crate::image::ImageArea::open(&root)?;
            for id in area.list_images()? {
                if !known.contains(&id.to_string()) {
                    tracing::warn!(image = %id, "removing an image file no image row owns");
                    area.remove(id)?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::internal(e.to_string()))??;
    }
    Ok(())
}
