//! Pools and volume types: the catalog the scheduler and the type routes read.

use std::collections::BTreeMap;

use sqlx::Row;

use super::{Db, WriteTx};
use crate::error::Result;
use crate::model::{Pool, VolumeType};

impl Db {
    /// Register a pool if it is new (its provisioned counter starts at zero).
    pub async fn ensure_pool(&self, name: &str) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let exists =
            sqlx::query("SELECT name FROM pools WHERE name = $1").bind(name).fetch_optional(tx.conn()).await?.is_some();
        if !exists {
            sqlx::query("INSERT INTO pools (name, provisioned_gb) VALUES ($1, 0)")
                .bind(name)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await
    }

    /// A pool's row.
    pub async fn get_pool(&self, name: &str) -> Result<Option<Pool>> {
        let row = sqlx::query("SELECT name, provisioned_gb FROM pools WHERE name = $1")
            .bind(name)
            .fetch_optional(self.pool())
            .await?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(Pool { name: r.try_get("name")?, provisioned_gb: r.try_get("provisioned_gb")? })),
        }
    }

    /// Create the volume type `name` if missing, with `extra_specs`; returns its id.
    pub async fn ensure_volume_type(
        &self,
        name: &str,
        description: Option<&str>,
        extra_specs: &BTreeMap<String, String>,
        now: &str,
    ) -> Result<String> {
        let mut tx = self.begin_write().await?;
        let row =
            sqlx::query("SELECT id FROM volume_types WHERE name = $1").bind(name).fetch_optional(tx.conn()).await?;
        let id = match row {
            Some(r) => r.try_get::<String, _>("id")?,
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                sqlx::query(
                    "INSERT INTO volume_types (id, name, description, is_public, created_at) \
                     VALUES ($1, $2, $3, 1, $4)",
                )
                .bind(&id)
                .bind(name)
                .bind(description)
                .bind(now)
                .execute(tx.conn())
                .await?;
                for (k, v) in extra_specs {
                    sqlx::query("INSERT INTO volume_type_extra_specs (type_id, key, value) VALUES ($1, $2, $3)")
                        .bind(&id)
                        .bind(k)
                        .bind(v)
                        .execute(tx.conn())
                        .await?;
                }
                id
            }
        };
        tx.commit().await?;
        Ok(id)
    }

    /// All volume types with their extra specs, ordered by name.
    pub async fn list_volume_types(&self) -> Result<Vec<VolumeType>> {
        let rows = sqlx::query("SELECT id, name, description, is_public FROM volume_types ORDER BY name")
            .fetch_all(self.pool())
            .await?;
        let specs =
            sqlx::query("SELECT type_id, key, value FROM volume_type_extra_specs").fetch_all(self.pool()).await?;
        let access = sqlx::query("SELECT type_id, project_id FROM volume_type_access ORDER BY project_id")
            .fetch_all(self.pool())
            .await?;
        // qos: each type's associated QoS specs.
        let qos = sqlx::query("SELECT type_id, qos_specs_id FROM volume_type_qos_specs").fetch_all(self.pool()).await?;
        let mut qos_of: BTreeMap<String, String> = BTreeMap::new();
        for q in qos {
            qos_of.insert(q.try_get("type_id")?, q.try_get("qos_specs_id")?);
        }
        let mut projects: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for a in access {
            projects.entry(a.try_get("type_id")?).or_default().push(a.try_get("project_id")?);
        }
        let mut by_type: BTreeMap<String, BTreeMap<String, String>> = BTreeMap::new();
        for s in specs {
            by_type.entry(s.try_get("type_id")?).or_default().insert(s.try_get("key")?, s.try_get("value")?);
        }
        rows.iter()
            .map(|r| {
                let id: String = r.try_get("id")?;
                Ok(VolumeType {
                    extra_specs: by_type.remove(&id).unwrap_or_default(),
                    projects: projects.remove(&id).unwrap_or_default(),
                    qos_specs_id: qos_of.remove(&id),
                    id,
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    is_public: r.try_get::<i64, _>("is_public")? != 0,
                })
            })
            .collect()
    }
}

impl Db {
    /// Create a volume type; false when the name is taken.
    pub async fn create_volume_type(&self, t: &VolumeType, now: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM volume_types WHERE name = $1")
            .bind(&t.name)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if taken {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO volume_types (id, name, description, is_public, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&t.id)
        .bind(&t.name)
        .bind(t.description.as_deref())
        .bind(t.is_public as i64)
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.replace_extra_specs(&t.id, &t.extra_specs).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Change a type's name, description and visibility; false when the new name is taken.
    pub async fn update_volume_type(&self, t: &VolumeType) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let clash = sqlx::query("SELECT id FROM volume_types WHERE name = $1 AND id <> $2")
            .bind(&t.name)
            .bind(&t.id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if clash {
            return Ok(false);
        }
        sqlx::query("UPDATE volume_types SET name = $1, description = $2, is_public = $3 WHERE id = $4")
            .bind(&t.name)
            .bind(t.description.as_deref())
            .bind(t.is_public as i64)
            .bind(&t.id)
            .execute(tx.conn())
            .await?;
        tx.replace_extra_specs(&t.id, &t.extra_specs).await?;
        sqlx::query("DELETE FROM volume_type_access WHERE type_id = $1").bind(&t.id).execute(tx.conn()).await?;
        for p in &t.projects {
            sqlx::query("INSERT INTO volume_type_access (type_id, project_id) VALUES ($1, $2)")
                .bind(&t.id)
                .bind(p)
                .execute(tx.conn())
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Delete a type no volume uses; false when one does.
    pub async fn delete_volume_type(&self, id: &str) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        // groups: a group's volume types are in use too.
        let used = sqlx::query(
            "SELECT id FROM volumes WHERE volume_type_id = $1 \
             UNION ALL SELECT group_id FROM volume_group_types WHERE volume_type_id = $1 LIMIT 1",
        )
        .bind(id)
        .fetch_optional(tx.conn())
        .await?
        .is_some();
        // misc: a project's default type is in use too (Cinder refuses to delete it).
        let is_default = sqlx::query("SELECT project_id FROM default_volume_types WHERE volume_type_id = $1 LIMIT 1")
            .bind(id)
            .fetch_optional(tx.conn())
            .await?
            .is_some();
        if used || is_default {
            return Ok(false);
        }
        for table in
            ["volume_type_access", "volume_type_extra_specs", "volume_type_encryption", "volume_type_qos_specs"]
        {
            sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE type_id = $1")))
                .bind(id)
                .execute(tx.conn())
                .await?;
        }
        sqlx::query("DELETE FROM volume_types WHERE id = $1").bind(id).execute(tx.conn()).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl WriteTx<'_> {
    /// Replace every extra spec of a type.
    pub async fn replace_extra_specs(&mut self, type_id: &str, specs: &BTreeMap<String, String>) -> Result<()> {
        self.replace_key_values("volume_type_extra_specs", "type_id", type_id, specs).await
    }

    /// Add `gb` to a pool's provisioned counter if the result stays within `limit_gb`.
    /// Returns false (and changes nothing) when it would not fit; this compare-and-set is what
    /// makes concurrent creates unable to overbook a pool.
    pub async fn reserve_pool_capacity(&mut self, pool: &str, gb: i64, limit_gb: i64) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE pools SET provisioned_gb = provisioned_gb + $1 \
             WHERE name = $2 AND provisioned_gb + $1 <= $3",
        )
        .bind(gb)
        .bind(pool)
        .bind(limit_gb)
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Give back `gb` of a pool's provisioned capacity (never below zero).
    pub async fn release_pool_capacity(&mut self, pool: &str, gb: i64) -> Result<()> {
        sqlx::query(
            "UPDATE pools SET provisioned_gb = CASE WHEN provisioned_gb > $1 \
             THEN provisioned_gb - $1 ELSE 0 END WHERE name = $2",
        )
        .bind(gb)
        .bind(pool)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
