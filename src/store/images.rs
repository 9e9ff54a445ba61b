//! Image rows (the built-in image service) and volumes' image metadata.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::{Image, ImageStatus};

const IMAGE_COLUMNS: &str = "id, owner, name, status, disk_format, container_format, size, virtual_size, checksum, \
     os_hash_algo, os_hash_value, visibility, protected, os_hidden, min_disk, min_ram, pool, node, properties, tags, \
     created_at, updated_at";

fn image_from_row(row: &AnyRow) -> Result<Image> {
    let status: String = row.try_get("status")?;
    let properties: String = row.try_get("properties")?;
    let tags: String = row.try_get("tags")?;
    Ok(Image {
        id: row.try_get("id")?,
        owner: row.try_get("owner")?,
        name: row.try_get("name")?,
        status: status.parse().map_err(|_| Error::internal(format!("unknown image status {status:?} in database")))?,
        disk_format: row.try_get("disk_format")?,
        container_format: row.try_get("container_format")?,
        size: row.try_get("size")?,
        virtual_size: row.try_get("virtual_size")?,
        checksum: row.try_get("checksum")?,
        os_hash_algo: row.try_get("os_hash_algo")?,
        os_hash_value: row.try_get("os_hash_value")?,
        visibility: row.try_get("visibility")?,
        protected: row.try_get::<i64, _>("protected")? != 0,
        os_hidden: row.try_get::<i64, _>("os_hidden")? != 0,
        min_disk: row.try_get("min_disk")?,
        min_ram: row.try_get("min_ram")?,
        pool: row.try_get("pool")?,
        node: row.try_get("node")?,
        properties: serde_json::from_str(&properties)
            .map_err(|e| Error::internal(format!("image properties in database: {e}")))?,
        tags: serde_json::from_str(&tags).map_err(|e| Error::internal(format!("image tags in database: {e}")))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

fn json_text<T: serde::Serialize>(v: &T) -> Result<String> {
    serde_json::to_string(v).map_err(|e| Error::internal(format!("encode: {e}")))
}

impl Db {
    /// One image by id, whoever owns it (the service applies visibility).
    pub async fn get_image(&self, id: &str) -> Result<Option<Image>> {
        let sql = format!("SELECT {IMAGE_COLUMNS} FROM images WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(self.pool()).await?;
        row.as_ref().map(image_from_row).transpose()
    }

    /// Every image `project` may see (its own, public and community ones), or every image
    /// (`None`, for admins), oldest first. Filters, sorting and paging are applied by the
    /// service: a project's image list is small.
    pub async fn list_images(&self, project: Option<&str>) -> Result<Vec<Image>> {
        let rows = match project {
            Some(p) => {
                let sql = format!(
                    "SELECT {IMAGE_COLUMNS} FROM images WHERE owner = $1 OR visibility IN ('public', 'community') \
                     ORDER BY created_at, id"
                );
                sqlx::query(sqlx::AssertSqlSafe(sql)).bind(p).fetch_all(self.pool()).await?
            }
            None => {
                let sql = format!("SELECT {IMAGE_COLUMNS} FROM images ORDER BY created_at, id");
                sqlx::query(sqlx::AssertSqlSafe(sql)).fetch_all(self.pool()).await?
            }
        };
        rows.iter().map(image_from_row).collect()
    }

    /// Images `owner` holds and the bytes their data takes (image quotas).
    pub async fn image_usage(&self, owner: &str) -> Result<(i64, i64)> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size), 0) AS BIGINT) AS b FROM images WHERE owner = $1",
        )
        .bind(owner)
        .fetch_one(self.pool())
        .await?;
        Ok((row.try_get("n")?, row.try_get("b")?))
    }

    /// At start: images of `node` left `saving` by an upload the crash cut off (no job writes
    /// them) go back to `queued`; those a job was writing stay for the requeued job.
    pub async fn reset_interrupted_uploads(&self, node: &str, now: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query(
            "UPDATE images SET status = 'queued', updated_at = $1 WHERE status = 'saving' AND node = $2 \
             AND (job_id IS NULL OR job_id NOT IN (SELECT id FROM jobs WHERE status IN ('INIT', 'RUNNING')))",
        )
        .bind(now)
        .bind(node)
        .execute(tx.conn())
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    /// Ids of every image row whose file lives in `pool` (recovery removes files no row owns).
    pub async fn image_ids_on_pool(&self, pool: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM images WHERE pool = $1").bind(pool).fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// A volume's image metadata (Cinder's `volume_image_metadata`; empty when none).
    pub async fn volume_image_metadata(&self, volume_id: &str) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT key, value FROM volume_image_metadata WHERE volume_id = $1")
            .bind(volume_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }
}

impl WriteTx<'_> {
    /// Insert a new image row.
    pub async fn insert_image(&mut self, i: &Image) -> Result<()> {
        sqlx::query(
            "INSERT INTO images (id, owner, name, status, disk_format, container_format, size, virtual_size, checksum, \
             os_hash_algo, os_hash_value, visibility, protected, os_hidden, min_disk, min_ram, pool, node, properties, \
             tags, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
             $16, $17, $18, $19, $20, $21, $22)",
        )
        .bind(&i.id)
        .bind(&i.owner)
        .bind(i.name.as_deref())
        .bind(i.status.as_str())
        .bind(i.disk_format.as_deref())
        .bind(i.container_format.as_deref())
        .bind(i.size)
        .bind(i.virtual_size)
        .bind(i.checksum.as_deref())
        .bind(i.os_hash_algo.as_deref())
        .bind(i.os_hash_value.as_deref())
        .bind(&i.visibility)
        .bind(i.protected as i64)
        .bind(i.os_hidden as i64)
        .bind(i.min_disk)
        .bind(i.min_ram)
        .bind(&i.pool)
        .bind(&i.node)
        .bind(json_text(&i.properties)?)
        .bind(json_text(&i.tags)?)
        .bind(&i.created_at)
        .bind(&i.updated_at)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Write the user-settable fields of `i` (name, formats, visibility, flags, minimums,
    /// properties, tags) if the row is still in status `expect`. True when it was.
    pub async fn update_image_fields(&mut self, i: &Image, expect: ImageStatus) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE images SET name = $1, disk_format = $2, container_format = $3, visibility = $4, protected = $5, \
             os_hidden = $6, min_disk = $7, min_ram = $8, properties = $9, tags = $10, updated_at = $11 \
             WHERE id = $12 AND status = $13",
        )
        .bind(i.name.as_deref())
        .bind(i.disk_format.as_deref())
        .bind(i.container_format.as_deref())
        .bind(&i.visibility)
        .bind(i.protected as i64)
        .bind(i.os_hidden as i64)
        .bind(i.min_disk)
        .bind(i.min_ram)
        .bind(json_text(&i.properties)?)
        .bind(json_text(&i.tags)?)
        .bind(&i.updated_at)
        .bind(&i.id)
        .bind(expect.as_str())
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Compare-and-set an image's status; `job_id` records the job writing it (or clears it).
    pub async fn cas_image_status(
        &mut self,
        id: &str,
        from: &[ImageStatus],
        to: ImageStatus,
        job_id: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        if !self.cas_status("images", id, &from, to.as_str(), now).await? {
            return Ok(false);
        }
        sqlx::query("UPDATE images SET job_id = $1 WHERE id = $2").bind(job_id).bind(id).execute(self.conn()).await?;
        Ok(true)
    }

    /// Record the data of an image whose file is in place and move it `saving` → `active`.
    pub async fn activate_image(
        &mut self,
        id: &str,
        size: i64,
        virtual_size: i64,
        md5: &str,
        sha512: &str,
        now: &str,
    ) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE images SET status = 'active', size = $1, virtual_size = $2, checksum = $3, os_hash_algo = 'sha512', \
             os_hash_value = $4, job_id = NULL, updated_at = $5 WHERE id = $6 AND status = 'saving'",
        )
        .bind(size)
        .bind(virtual_size)
        .bind(md5)
        .bind(sha512)
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?
        .rows_affected();
        Ok(n == 1)
    }

    /// Remove an image row.
    pub async fn delete_image_row(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM images WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(())
    }

    /// Replace a volume's image metadata.
    pub async fn set_volume_image_metadata(&mut self, volume_id: &str, m: &BTreeMap<String, String>) -> Result<()> {
        self.replace_key_values("volume_image_metadata", "volume_id", volume_id, m).await
    }
}
