//! Attachment rows.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::{Arg, Sql};
use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::{AttachMode, Attachment, Volume};

const COLUMNS: &str = "id, volume_id, project_id, instance_uuid, attached_host, mountpoint, attach_mode, \
     attach_status, connector, connection_info, created_at, attach_time";

fn from_row(r: &AnyRow) -> Result<Attachment> {
    let status: String = r.try_get("attach_status")?;
    let mode: String = r.try_get("attach_mode")?;
    Ok(Attachment {
        id: r.try_get("id")?,
        volume_id: r.try_get("volume_id")?,
        project_id: r.try_get("project_id")?,
        instance_uuid: r.try_get("instance_uuid")?,
        attached_host: r.try_get("attached_host")?,
        mountpoint: r.try_get("mountpoint")?,
        mode: AttachMode::parse(&mode).ok_or_else(|| Error::internal(format!("bad attach mode {mode:?}")))?,
        status: status.parse().map_err(|_| Error::internal(format!("bad attach status {status:?}")))?,
        connector: r.try_get("connector")?,
        connection_info: r.try_get("connection_info")?,
        created_at: r.try_get("created_at")?,
        attach_time: r.try_get("attach_time")?,
    })
}

/// Which attachments a list returns (newest first).
#[derive(Debug, Clone, Default)]
pub struct AttachmentFilter {
    /// Only this project (`None` = all).
    pub project_id: Option<String>,
    /// Only this volume.
    pub volume_id: Option<String>,
    /// Only this instance.
    pub instance_uuid: Option<String>,
    /// Only this status.
    pub status: Option<String>,
}

impl Db {
    /// Attach each volume's attachments (oldest first), one query for the page.
    pub(super) async fn fill_attachments(&self, volumes: &mut [Volume]) -> Result<()> {
        if volumes.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM attachments WHERE volume_id IN (''"));
        for v in volumes.iter() {
            sql.push(", ").bind(Arg::Text(v.id.clone()));
        }
        sql.push(") ORDER BY created_at, id");
        let mut by_volume: HashMap<String, Vec<Attachment>> = HashMap::new();
        for r in sql.query().fetch_all(self.pool()).await? {
            let a = from_row(&r)?;
            by_volume.entry(a.volume_id.clone()).or_default().push(a);
        }
        for v in volumes.iter_mut() {
            v.attachments = by_volume.remove(&v.id).unwrap_or_default();
        }
        Ok(())
    }

    /// One attachment (`project_id = None` looks across projects).
    pub async fn get_attachment(&self, project_id: Option<&str>, id: &str) -> Result<Option<Attachment>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE id = $1 AND ($2 = '' OR project_id = $2)"
        )))
        .bind(id)
        .bind(project_id.unwrap_or(""))
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(from_row).transpose()
    }

    /// Attachments matching `f`, newest first, paged by `limit`/`offset`.
    pub async fn list_attachments(&self, f: &AttachmentFilter, limit: i64, offset: i64) -> Result<Vec<Attachment>> {
        let mut sql = Sql::new(&format!("SELECT {COLUMNS} FROM attachments WHERE 1=1"));
        if let Some(p) = &f.project_id {
            sql.push(" AND project_id = ").bind(Arg::Text(p.clone()));
        }
        if let Some(v) = &f.volume_id {
            sql.push(" AND volume_id = ").bind(Arg::Text(v.clone()));
        }
        if let Some(i) = &f.instance_uuid {
            sql.push(" AND instance_uuid = ").bind(Arg::Text(i.clone()));
        }
        if let Some(s) = &f.status {
            sql.push(" AND attach_status = ").bind(Arg::Text(s.clone()));
        }
        sql.push(" ORDER BY created_at DESC, id DESC LIMIT ").bind(Arg::Int(limit));
        sql.push(" OFFSET ").bind(Arg::Int(offset));
        sql.query().fetch_all(self.pool()).await?.iter().map(from_row).collect()
    }

    /// Every attachment that has an export (for re-exporting at start).
    pub async fn exported_attachments(&self) -> Result<Vec<Attachment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE connection_info IS NOT NULL ORDER BY created_at, id"
        )))
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl WriteTx<'_> {
    /// Insert an attachment row.
    pub async fn insert_attachment(&mut self, a: &Attachment) -> Result<()> {
        sqlx::query(
            "INSERT INTO attachments (id, volume_id, project_id, instance_uuid, attached_host, mountpoint, \
             attach_mode, attach_status, connector, connection_info, created_at, attach_time) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(&a.id)
        .bind(&a.volume_id)
        .bind(&a.project_id)
        .bind(a.instance_uuid.as_deref())
        .bind(a.attached_host.as_deref())
        .bind(a.mountpoint.as_deref())
        .bind(a.mode.as_str())
        .bind(a.status.as_str())
        .bind(a.connector.as_deref())
        .bind(a.connection_info.as_deref())
        .bind(&a.created_at)
        .bind(a.attach_time.as_deref())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Write every mutable field of an attachment.
    pub async fn update_attachment(&mut self, a: &Attachment, now: &str) -> Result<()> {
        sqlx::query(
            "UPDATE attachments SET instance_uuid = $1, attached_host = $2, mountpoint = $3, attach_mode = $4, \
             attach_status = $5, connector = $6, connection_info = $7, attach_time = $8, updated_at = $9 \
             WHERE id = $10",
        )
        .bind(a.instance_uuid.as_deref())
        .bind(a.attached_host.as_deref())
        .bind(a.mountpoint.as_deref())
        .bind(a.mode.as_str())
        .bind(a.status.as_str())
        .bind(a.connector.as_deref())
        .bind(a.connection_info.as_deref())
        .bind(a.attach_time.as_deref())
        .bind(now)
        .bind(&a.id)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Remove an attachment row.
    pub async fn delete_attachment(&mut self, id: &str) -> Result<()> {
        sqlx::query("DELETE FROM attachments WHERE id = $1").bind(id).execute(self.conn()).await?;
        Ok(())
    }

    /// A volume's attachments, inside this transaction.
    pub async fn volume_attachments(&mut self, volume_id: &str) -> Result<Vec<Attachment>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM attachments WHERE volume_id = $1 ORDER BY created_at, id"
        )))
        .bind(volume_id)
        .fetch_all(self.conn())
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// Set a volume's read-only or bootable flag.
    pub async fn set_volume_flag(&mut self, id: &str, flag: VolumeFlag, value: bool, now: &str) -> Result<()> {
        let col = match flag {
            VolumeFlag::Readonly => "readonly",
            VolumeFlag::Bootable => "bootable",
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE volumes SET {col} = $1, updated_at = $2 WHERE id = $3")))
            .bind(value as i64)
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}

/// Boolean volume flags the actions set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeFlag {
    /// `os-update_readonly_flag`
    Readonly,
    /// `os-set_bootable`
    Bootable,
}
