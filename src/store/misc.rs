//! Rows of the misc admin APIs: volume type encryption records and per-project default types.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::Db;
use crate::error::Result;
use crate::model::{DefaultType, TypeEncryption};

fn encryption_from_row(r: &AnyRow) -> Result<TypeEncryption> {
    Ok(TypeEncryption {
        volume_type_id: r.try_get("type_id")?,
        encryption_id: r.try_get("encryption_id")?,
        provider: r.try_get("provider")?,
        cipher: r.try_get("cipher")?,
        key_size: r.try_get("key_size")?,
        control_location: r.try_get("control_location")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

const ENC_COLUMNS: &str =
    "type_id, encryption_id, provider, cipher, key_size, control_location, created_at, updated_at";

/// Outcome of a guarded encryption write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncryptionWrite {
    /// Written.
    Done,
    /// A volume of the type exists (Cinder refuses changes then).
    TypeInUse,
    /// Create: the type already has a record. Update/delete: it has none.
    Exists,
    /// Update/delete: no record.
    Missing,
}

impl Db {
    /// The encryption record of a type.
    pub async fn get_type_encryption(&self, type_id: &str) -> Result<Option<TypeEncryption>> {
        let sql = format!("SELECT {ENC_COLUMNS} FROM volume_type_encryption WHERE type_id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(type_id).fetch_optional(self.pool()).await?;
        row.as_ref().map(encryption_from_row).transpose()
    }

    /// Create (`create`), replace (`!create`) or, with `rec = None`, delete a type's encryption
    /// record, refused while a volume of the type exists; check and write in one transaction so
    /// a concurrent volume create cannot slip between them unseen.
    pub async fn write_type_encryption(
        &self,
        type_id: &str,
        rec: Option<&TypeEncryption>,
        create: bool,
    ) -> Result<EncryptionWrite> {
        let mut tx = self.begin_write().await?;
        let in_use = sqlx::query("SELECT id FROM volumes WHERE volume_type_id = $1 LIMIT 1")
            .bind(type_id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if in_use {
            return Ok(EncryptionWrite::TypeInUse);
        }
        let exists = sqlx::query("SELECT type_id FROM volume_type_encryption WHERE type_id = $1")
            .bind(type_id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        match (rec, create, exists) {
            (Some(_), true, true) => return Ok(EncryptionWrite::Exists),
            (Some(_), false, false) | (None, _, false) => return Ok(EncryptionWrite::Missing),
            _ => {}
        }
        sqlx::query("DELETE FROM volume_type_encryption WHERE type_id = $1").bind(type_id).execute(tx.conn()).await?;
        if let Some(e) = rec {
            sqlx::query(
                "INSERT INTO volume_type_encryption (type_id, encryption_id, provider, cipher, key_size, \
                 control_location, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .bind(type_id)
            .bind(&e.encryption_id)
            .bind(&e.provider)
            .bind(e.cipher.as_deref())
            .bind(e.key_size)
            .bind(&e.control_location)
            .bind(&e.created_at)
            .bind(e.updated_at.as_deref())
            .execute(tx.conn())
            .await?;
        }
        tx.commit().await?;
        Ok(EncryptionWrite::Done)
    }

    /// A project's default type, if set.
    pub async fn get_default_type(&self, project_id: &str) -> Result<Option<DefaultType>> {
        let row = sqlx::query("SELECT project_id, volume_type_id FROM default_volume_types WHERE project_id = $1")
            .bind(project_id)
            .fetch_optional(self.pool())
            .await?;
        row.map(|r| {
            Ok(DefaultType { project_id: r.try_get("project_id")?, volume_type_id: r.try_get("volume_type_id")? })
        })
        .transpose()
    }

    /// Every project's default type, by project.
    pub async fn list_default_types(&self) -> Result<Vec<DefaultType>> {
        let rows = sqlx::query("SELECT project_id, volume_type_id FROM default_volume_types ORDER BY project_id")
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| {
                Ok(DefaultType { project_id: r.try_get("project_id")?, volume_type_id: r.try_get("volume_type_id")? })
            })
            .collect()
    }

    /// Set a project's default type; false when the type is gone (deleted meanwhile).
    pub async fn set_default_type(&self, project_id: &str, type_id: &str, now: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM volume_types WHERE id = $1")
            .bind(type_id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if !exists {
            return Ok(false);
        }
        sqlx::query("DELETE FROM default_volume_types WHERE project_id = $1")
            .bind(project_id)
            .execute(tx.conn())
            .await?;
        sqlx::query("INSERT INTO default_volume_types (project_id, volume_type_id, created_at) VALUES ($1, $2, $3)")
            .bind(project_id)
            .bind(type_id)
            .bind(now)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Unset a project's default type; false when it had none.
    pub async fn delete_default_type(&self, project_id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let n = sqlx::query("DELETE FROM default_volume_types WHERE project_id = $1")
            .bind(project_id)
            .execute(tx.conn())
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }
}
