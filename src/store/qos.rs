//! Rows of the QoS specs API: `qos_specs`, their keys (`qos_specs_keys`) and the volume types
//! associated with them (`volume_type_qos_specs`, at most one QoS specs record per type).
//!
//! Every change is one transaction that re-checks what it depends on (the record exists, the
//! type exists, the record is unused) so concurrent calls cannot leave a type associated with a
//! deleted record.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;
use crate::model::{QosAssociation, QosSpecs};

/// Outcome of a guarded QoS write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QosWrite {
    /// Written.
    Done,
    /// The QoS specs record does not exist.
    NoSpecs,
    /// Create or rename: another record has that name.
    NameTaken,
    /// Associate: the volume type does not exist.
    NoType,
    /// Associate: the type is associated with this other record.
    TypeTaken(String),
    /// Delete without force: a type is still associated.
    InUse,
    /// Delete keys: this key is not set (nothing was deleted).
    NoKey(String),
}

fn head_from_row(r: &AnyRow) -> Result<QosSpecs> {
    Ok(QosSpecs {
        id: r.try_get("id")?,
        name: r.try_get("name")?,
        consumer: r.try_get("consumer")?,
        specs: BTreeMap::new(),
        created_at: r.try_get("created_at")?,
    })
}

impl WriteTx<'_> {
    async fn qos_exists(&mut self, id: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT id FROM qos_specs WHERE id = $1").bind(id).fetch_optional(self.conn()).await?.is_some())
    }

    async fn qos_touch(&mut self, id: &str, now: &str) -> Result<()> {
        sqlx::query("UPDATE qos_specs SET updated_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn qos_set_keys(&mut self, id: &str, specs: &BTreeMap<String, Option<String>>) -> Result<()> {
        for (k, v) in specs {
            sqlx::query("DELETE FROM qos_specs_keys WHERE qos_specs_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .execute(self.conn())
                .await?;
            sqlx::query("INSERT INTO qos_specs_keys (qos_specs_id, key, value) VALUES ($1, $2, $3)")
                .bind(id)
                .bind(k)
                .bind(v.as_deref())
                .execute(self.conn())
                .await?;
        }
        Ok(())
    }
}

impl Db {
    /// Every QoS specs record with its specs, newest first (Cinder's default sort).
    pub async fn list_qos_specs(&self) -> Result<Vec<QosSpecs>> {
        let rows =
            sqlx::query("SELECT id, name, consumer, created_at FROM qos_specs ORDER BY created_at DESC, id DESC")
                .fetch_all(self.pool())
                .await?;
        let keys = sqlx::query("SELECT qos_specs_id, key, value FROM qos_specs_keys").fetch_all(self.pool()).await?;
        let mut by_id: BTreeMap<String, BTreeMap<String, Option<String>>> = BTreeMap::new();
        for k in keys {
            by_id.entry(k.try_get("qos_specs_id")?).or_default().insert(k.try_get("key")?, k.try_get("value")?);
        }
        rows.iter()
            .map(|r| {
                let mut q = head_from_row(r)?;
                q.specs = by_id.remove(&q.id).unwrap_or_default();
                Ok(q)
            })
            .collect()
    }

    /// One QoS specs record with its specs.
    pub async fn get_qos_specs(&self, id: &str) -> Result<Option<QosSpecs>> {
        let row = sqlx::query("SELECT id, name, consumer, created_at FROM qos_specs WHERE id = $1")
            .bind(id)
            .fetch_optional(self.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let mut q = head_from_row(&row)?;
        let keys = sqlx::query("SELECT key, value FROM qos_specs_keys WHERE qos_specs_id = $1")
            .bind(id)
            .fetch_all(self.pool())
            .await?;
        for k in keys {
            q.specs.insert(k.try_get("key")?, k.try_get("value")?);
        }
        Ok(Some(q))
    }

    /// Create a record; `NameTaken` when another has its name.
    pub async fn create_qos_specs(&self, q: &QosSpecs) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM qos_specs WHERE name = $1")
            .bind(&q.name)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if taken {
            return Ok(QosWrite::NameTaken);
        }
        sqlx::query("INSERT INTO qos_specs (id, name, consumer, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&q.id)
            .bind(&q.name)
            .bind(&q.consumer)
            .bind(&q.created_at)
            .execute(tx.conn())
            .await?;
        tx.qos_set_keys(&q.id, &q.specs).await?;
        tx.commit().await?;
        Ok(QosWrite::Done)
    }

    /// Set (add or replace) keys and, when given, the consumer.
    pub async fn update_qos_specs(
        &self,
        id: &str,
        consumer: Option<&str>,
        specs: &BTreeMap<String, Option<String>>,
        now: &str,
    ) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        if !tx.qos_exists(id).await? {
            return Ok(QosWrite::NoSpecs);
        }
        if let Some(c) = consumer {
            sqlx::query("UPDATE qos_specs SET consumer = $1 WHERE id = $2").bind(c).bind(id).execute(tx.conn()).await?;
        }
        tx.qos_set_keys(id, specs).await?;
        tx.qos_touch(id, now).await?;
        tx.commit().await?;
        Ok(QosWrite::Done)
    }

    /// Remove keys, all or none: `NoKey` names the first key that is not set.
    pub async fn delete_qos_keys(&self, id: &str, keys: &[String], now: &str) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        if !tx.qos_exists(id).await? {
            return Ok(QosWrite::NoSpecs);
        }
        for k in keys {
            let set = sqlx::query("SELECT key FROM qos_specs_keys WHERE qos_specs_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .fetch_optional(tx.conn())
                .await?
                .is_some();
            if !set {
                return Ok(QosWrite::NoKey(k.clone()));
            }
        }
        for k in keys {
            sqlx::query("DELETE FROM qos_specs_keys WHERE qos_specs_id = $1 AND key = $2")
                .bind(id)
                .bind(k)
                .execute(tx.conn())
                .await?;
        }
        tx.qos_touch(id, now).await?;
        tx.commit().await?;
        Ok(QosWrite::Done)
    }

    /// Delete a record; with `force` its associations go too, without it `InUse` when any.
    pub async fn delete_qos_specs(&self, id: &str, force: bool) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        if !tx.qos_exists(id).await? {
            return Ok(QosWrite::NoSpecs);
        }
        let used = sqlx::query("SELECT type_id FROM volume_type_qos_specs WHERE qos_specs_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if used && !force {
            return Ok(QosWrite::InUse);
        }
        for table in ["volume_type_qos_specs", "qos_specs_keys"] {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE qos_specs_id = $1")))
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("DELETE FROM qos_specs WHERE id = $1").bind(id).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(QosWrite::Done)
    }

    /// The volume types associated with a record, by name.
    pub async fn qos_associations(&self, id: &str) -> Result<Vec<QosAssociation>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name FROM volume_type_qos_specs a JOIN volume_types t ON t.id = a.type_id \
             WHERE a.qos_specs_id = $1 ORDER BY t.name",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok(QosAssociation { id: r.try_get("id")?, name: r.try_get("name")? })).collect()
    }

    /// Associate a type with a record (a no-op when it already is); `TypeTaken` when the type is
    /// associated with another record.
    pub async fn associate_qos_specs(&self, id: &str, type_id: &str, now: &str) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        if !tx.qos_exists(id).await? {
            return Ok(QosWrite::NoSpecs);
        }
        let type_exists = sqlx::query("SELECT id FROM volume_types WHERE id = $1")
            .bind(type_id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if !type_exists {
            return Ok(QosWrite::NoType);
        }
        let current = sqlx::query("SELECT qos_specs_id FROM volume_type_qos_specs WHERE type_id = $1")
            .bind(type_id)
            .fetch_optional(tx.conn())
            .await?;
        if let Some(r) = current {
            let other: String = r.try_get("qos_specs_id")?;
            return Ok(if other == id { QosWrite::Done } else { QosWrite::TypeTaken(other) });
        }
        sqlx::query("INSERT INTO volume_type_qos_specs (type_id, qos_specs_id, created_at) VALUES ($1, $2, $3)")
            .bind(type_id)
            .bind(id)
            .bind(now)
            .execute(tx.conn())
            .await?;
        tx.commit().await?;
        Ok(QosWrite::Done)
    }

    /// Disassociate one type (`Some`; `NoType` when it does not exist) or every type (`None`)
    /// from a record; disassociating a type that is not associated with it changes nothing and
    /// is fine, as in Cinder.
    pub async fn disassociate_qos_specs(&self, id: &str, type_id: Option<&str>) -> Result<QosWrite> {
        let mut tx = self.begin_write().await?;
        if !tx.qos_exists(id).await? {
            return Ok(QosWrite::NoSpecs);
        }
        match type_id {
            Some(t) => {
                let type_exists = sqlx::query("SELECT id FROM volume_types WHERE id = $1")
                    .bind(t)
                    .fetch_optional(tx.conn())
                    .await?
                    .is_some();
                if !type_exists {
                    return Ok(QosWrite::NoType);
                }
                sqlx::query("DELETE FROM volume_type_qos_specs WHERE qos_specs_id = $1 AND type_id = $2")
                    .bind(id)
                    .bind(t)
                    .execute(tx.conn())
                    .await?;
            }
            None => {
                sqlx::query("DELETE FROM volume_type_qos_specs WHERE qos_specs_id = $1")
                    .bind(id)
                    .execute(tx.conn())
                    .await?;
            }
        }
        tx.commit().await?;
        Ok(QosWrite::Done)
    }
}
