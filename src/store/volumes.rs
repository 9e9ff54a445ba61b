//! Volume rows and their metadata.

use std::collections::BTreeMap;

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::{Arg, Sql};
use super::{Db, WriteTx};
use crate::error::{Error, Result};
use crate::model::{Volume, VolumeStatus};

const VOLUME_COLUMNS: &str = "v.id, v.project_id, v.user_id, v.name, v.description, v.size_gb, \
     v.status, v.availability_zone, v.volume_type_id, t.name AS type_name, v.pool, v.bootable, \
     v.multiattach, v.readonly, v.snapshot_id, v.source_volid, v.created_at, v.updated_at, v.group_id, v.migration_status, \
     v.enterprise_project_id, v.dedicated_storage_id, v.qos_iops, v.qos_throughput, \
     (SELECT COUNT(*) FROM volume_metadata m WHERE m.volume_id = v.id) AS n_meta, \
     (SELECT COUNT(*) FROM tags g WHERE g.resource_type = 'volumes' AND g.resource_id = v.id) AS n_tags, \
     (SELECT COUNT(*) FROM attachments a WHERE a.volume_id = v.id) AS n_att, \
     (SELECT COUNT(*) FROM volume_type_encryption e WHERE e.type_id = v.volume_type_id) AS n_enc, \
     (SELECT COUNT(*) FROM volume_image_metadata i WHERE i.volume_id = v.id) AS n_img";

/// Filters shared by both APIs' list calls; every field narrows the result.
#[derive(Debug, Clone, Default)]
pub struct VolumeFilter {
    /// Only this project (`None` = all projects, for admins).
    pub project_id: Option<String>,
    /// Only these ids.
    pub ids: Option<Vec<String>>,
    /// Exact name.
    pub name: Option<String>,
    /// Exact status.
    pub status: Option<String>,
    /// Exact availability zone.
    pub availability_zone: Option<String>,
    /// Every pair must be present in the metadata.
    pub metadata: Vec<(String, String)>,
    /// Shareable flag.
    pub multiattach: Option<bool>,
    /// Volume type id.
    pub volume_type_id: Option<String>,
    /// groups: members of this generic volume group (Cinder 3.10 `group_id`).
    pub group_id: Option<String>,
    /// evs: attached (an attachment record of any status) to this server (`server_id`).
    pub server_id: Option<String>,
    /// evs: in this enterprise project (`"0"` also matches volumes stored without one).
    pub enterprise_project_id: Option<String>,
    /// evs: none of these pairs is in the metadata (`not_metadata`).
    pub not_metadata: Vec<(String, String)>,
    /// evs: placed by a `dedicated_storage_id` hint on exactly this pool.
    pub dedicated_storage_id: Option<String>,
    /// evs: placed by a hint on a pool whose name contains this (`dedicated_storage_name`).
    pub dedicated_storage_name: Option<String>,
}

/// Columns a list can be sorted by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeSortKey {
    /// `id`
    Id,
    /// `name`
    Name,
    /// `status`
    Status,
    /// `size`
    Size,
    /// `created_at` (the default)
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
    /// `availability_zone`
    AvailabilityZone,
}

impl VolumeSortKey {
    /// Parse an API sort key (`size`, `created_at`…); Cinder's `display_name` alias included.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => Self::Id,
            "name" | "display_name" => Self::Name,
            "status" => Self::Status,
            "size" => Self::Size,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "availability_zone" => Self::AvailabilityZone,
            _ => return None,
        })
    }
    fn column(self) -> &'static str {
        match self {
            Self::Id => "v.id",
            Self::Name => "COALESCE(v.name, '')",
            Self::Status => "v.status",
            Self::Size => "v.size_gb",
            Self::CreatedAt => "v.created_at",
            Self::UpdatedAt => "COALESCE(v.updated_at, '')",
            Self::AvailabilityZone => "v.availability_zone",
        }
    }
    fn marker_value(self, v: &Volume) -> Arg {
        match self {
            Self::Id => Arg::Text(v.id.clone()),
            Self::Name => Arg::Text(v.name.clone().unwrap_or_default()),
            Self::Status => Arg::Text(v.status.as_str().to_string()),
            Self::Size => Arg::Int(v.size_gb),
            Self::CreatedAt => Arg::Text(v.created_at.clone()),
            Self::UpdatedAt => Arg::Text(v.updated_at.clone().unwrap_or_default()),
            Self::AvailabilityZone => Arg::Text(v.availability_zone.clone()),
        }
    }
}

/// Sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortDir {
    /// Ascending.
    Asc,
    /// Descending (the default on both APIs).
    Desc,
}

/// A list request.
#[derive(Debug, Clone)]
pub struct ListVolumes {
    /// Which rows.
    pub filter: VolumeFilter,
    /// Order; `id` in the same direction breaks ties.
    pub sort_key: VolumeSortKey,
    /// Direction.
    pub sort_dir: SortDir,
    /// Page size (`None` = all).
    pub limit: Option<i64>,
    /// Rows to skip after the marker.
    pub offset: i64,
    /// Start after this volume (which must match the filter's project).
    pub marker: Option<String>,
    /// Also count all matching rows, ignoring paging.
    pub with_count: bool,
}

/// One page of volumes.
#[derive(Debug, Clone)]
pub struct VolumePage {
    /// The rows, metadata included.
    pub volumes: Vec<Volume>,
    /// Rows matching the filter, ignoring paging (when asked for).
    pub count: Option<i64>,
}

fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

fn volume_from_row(row: &AnyRow) -> Result<Volume> {
    let status: String = row.try_get("status")?;
    Ok(Volume {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        user_id: opt_text(row, "user_id")?,
        name: opt_text(row, "name")?,
        description: opt_text(row, "description")?,
        size_gb: row.try_get("size_gb")?,
        status: status.parse().map_err(|_| Error::internal(format!("unknown volume status {status:?} in database")))?,
        availability_zone: row.try_get("availability_zone")?,
        volume_type_id: row.try_get("volume_type_id")?,
        volume_type_name: row.try_get("type_name")?,
        pool: row.try_get("pool")?,
        bootable: row.try_get::<i64, _>("bootable")? != 0,
        multiattach: row.try_get::<i64, _>("multiattach")? != 0,
        readonly: row.try_get::<i64, _>("readonly")? != 0,
        snapshot_id: opt_text(row, "snapshot_id")?,
        source_volid: opt_text(row, "source_volid")?,
        created_at: row.try_get("created_at")?,
        updated_at: opt_text(row, "updated_at")?,
        metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        attachments: Vec::new(),
        encrypted: row.try_get::<i64, _>("n_enc")? > 0,
        group_id: opt_text(row, "group_id")?,
        migration_status: opt_text(row, "migration_status")?,
        image_metadata: BTreeMap::new(),
        evs: crate::model::VolumeEvs {
            enterprise_project_id: opt_text(row, "enterprise_project_id")?,
            dedicated_storage_id: opt_text(row, "dedicated_storage_id")?,
            qos_iops: row.try_get::<Option<i64>, _>("qos_iops")?,
            qos_throughput: row.try_get::<Option<i64>, _>("qos_throughput")?,
        },
    })
}

/// Which of a page's side tables have rows: the fills whose count is zero for every volume of
/// the page are skipped (a volume with no metadata, tags or attachments is then one query).
#[derive(Debug, Clone, Copy, Default)]
struct SideRows {
    metadata: bool,
    tags: bool,
    attachments: bool,
    // images: volume_image_metadata rows.
    image_metadata: bool,
}

impl SideRows {
    fn of(rows: &[AnyRow]) -> Result<SideRows> {
        let mut s = SideRows::default();
        for r in rows {
            s.metadata |= r.try_get::<i64, _>("n_meta")? > 0;
            s.tags |= r.try_get::<i64, _>("n_tags")? > 0;
            s.attachments |= r.try_get::<i64, _>("n_att")? > 0;
            s.image_metadata |= r.try_get::<i64, _>("n_img")? > 0;
        }
        Ok(s)
    }
}

fn push_filter(sql: &mut Sql, f: &VolumeFilter) {
    sql.push(" WHERE 1=1");
    if let Some(p) = &f.project_id {
        sql.push(" AND v.project_id = ").bind(Arg::Text(p.clone()));
    }
    if let Some(ids) = &f.ids {
        if ids.is_empty() {
            sql.push(" AND 1=0");
        } else {
            sql.push(" AND v.id IN (");
            for (i, id) in ids.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind(Arg::Text(id.clone()));
            }
            sql.push(")");
        }
    }
    if let Some(n) = &f.name {
        sql.push(" AND v.name = ").bind(Arg::Text(n.clone()));
    }
    if let Some(s) = &f.status {
        sql.push(" AND v.status = ").bind(Arg::Text(s.clone()));
    }
    if let Some(az) = &f.availability_zone {
        sql.push(" AND v.availability_zone = ").bind(Arg::Text(az.clone()));
    }
    if let Some(m) = f.multiattach {
        sql.push(" AND v.multiattach = ").bind(Arg::Int(m as i64));
    }
    if let Some(g) = &f.group_id {
        sql.push(" AND v.group_id = ").bind(Arg::Text(g.clone()));
    }
    if let Some(t) = &f.volume_type_id {
        sql.push(" AND v.volume_type_id = ").bind(Arg::Text(t.clone()));
    }
    if let Some(s) = &f.server_id {
        sql.push(" AND EXISTS (SELECT 1 FROM attachments a WHERE a.volume_id = v.id AND a.instance_uuid = ")
            .bind(Arg::Text(s.clone()))
            .push(")");
    }
    if let Some(e) = &f.enterprise_project_id {
        if e == "0" {
            sql.push(" AND COALESCE(v.enterprise_project_id, '0') = '0'");
        } else {
            sql.push(" AND v.enterprise_project_id = ").bind(Arg::Text(e.clone()));
        }
    }
    if let Some(d) = &f.dedicated_storage_id {
        sql.push(" AND v.dedicated_storage_id = ").bind(Arg::Text(d.clone()));
    }
    if let Some(d) = &f.dedicated_storage_name {
        // A substring ("fuzzy") match; the caller's own pattern characters are escaped.
        let pat = d.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push(" AND v.dedicated_storage_id LIKE ").bind(Arg::Text(format!("%{pat}%"))).push(" ESCAPE '\\'");
    }
    for (k, val) in &f.not_metadata {
        sql.push(" AND NOT EXISTS (SELECT 1 FROM volume_metadata m WHERE m.volume_id = v.id AND m.key = ")
            .bind(Arg::Text(k.clone()))
            .push(" AND m.value = ")
            .bind(Arg::Text(val.clone()))
            .push(")");
    }
    for (k, val) in &f.metadata {
        sql.push(" AND EXISTS (SELECT 1 FROM volume_metadata m WHERE m.volume_id = v.id AND m.key = ")
            .bind(Arg::Text(k.clone()))
            .push(" AND m.value = ")
            .bind(Arg::Text(val.clone()))
            .push(")");
    }
}

impl Db {
    /// One volume, with metadata; `project_id = None` looks across projects.
    pub async fn get_volume(&self, project_id: Option<&str>, id: &str) -> Result<Option<Volume>> {
        let mut sql =
            Sql::new(&format!("SELECT {VOLUME_COLUMNS} FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id"));
        push_filter(
            &mut sql,
            &VolumeFilter {
                project_id: project_id.map(str::to_string),
                ids: Some(vec![id.to_string()]),
                ..Default::default()
            },
        );
        let Some(row) = sql.query().fetch_optional(self.pool()).await? else {
            return Ok(None);
        };
        let mut v = volume_from_row(&row)?;
        self.fill_side_rows(std::slice::from_mut(&mut v), SideRows::of(std::slice::from_ref(&row))?).await?;
        Ok(Some(v))
    }

    /// Load metadata, tags and attachments of `volumes` where `side` says some exist.
    async fn fill_side_rows(&self, volumes: &mut [Volume], side: SideRows) -> Result<()> {
        if side.metadata {
            self.fill_metadata(volumes).await?;
            // evs: `__system__encrypted = 1` (reference 6.1.1) marks the disk encrypted in every
            // view, as a type with an encryption record does.
            for v in volumes.iter_mut() {
                v.encrypted |= crate::model::metadata_encrypted(&v.metadata);
            }
        }
        if side.tags {
            self.fill_volume_tags(volumes).await?;
        }
        if side.attachments {
            self.fill_attachments(volumes).await?;
        }
        if side.image_metadata {
            for v in volumes.iter_mut() {
                v.image_metadata = self.volume_image_metadata(&v.id).await?;
            }
        }
        Ok(())
    }

    /// A volume's metadata.
    pub async fn volume_metadata(&self, volume_id: &str) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT key, value FROM volume_metadata WHERE volume_id = $1")
            .bind(volume_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    /// A page of volumes (metadata included) and optionally the total count.
    ///
    /// An unknown marker is `NotFound` with EVS.1024: Cinder answers 404 (`MarkerNotFound`), EVS
    /// 400 as its code says.
    pub async fn list_volumes(&self, q: &ListVolumes) -> Result<VolumePage> {
        let marker =
            match &q.marker {
                Some(m) => Some(self.get_volume(q.filter.project_id.as_deref(), m).await?.ok_or_else(|| {
                    Error::not_found(format!("Marker {m} could not be found.")).with_code("EVS.1024")
                })?),
                None => None,
            };
        let mut sql =
            Sql::new(&format!("SELECT {VOLUME_COLUMNS} FROM volumes v JOIN volume_types t ON t.id = v.volume_type_id"));
        push_filter(&mut sql, &q.filter);
        let (cmp, dir) = match q.sort_dir {
            SortDir::Asc => (">", "ASC"),
            SortDir::Desc => ("<", "DESC"),
        };
        let col = q.sort_key.column();
        if let Some(m) = &marker {
            let mv = q.sort_key.marker_value(m);
            sql.push(&format!(" AND ({col} {cmp} "))
                .bind(mv.clone())
                .push(&format!(" OR ({col} = "))
                .bind(mv)
                .push(&format!(" AND v.id {cmp} "))
                .bind(Arg::Text(m.id.clone()))
                .push("))");
        }
        sql.push(&format!(" ORDER BY {col} {dir}, v.id {dir}"));
        // LIMIT -1 means "no limit" on SQLite but is an error on PostgreSQL; use a huge number.
        sql.push(" LIMIT ").bind(Arg::Int(q.limit.unwrap_or(i64::MAX / 2)));
        sql.push(" OFFSET ").bind(Arg::Int(q.offset.max(0)));
        let rows = sql.query().fetch_all(self.pool()).await?;
        let mut volumes = rows.iter().map(volume_from_row).collect::<Result<Vec<_>>>()?;
        self.fill_side_rows(&mut volumes, SideRows::of(&rows)?).await?;
        let count = if q.with_count {
            let mut c = Sql::new("SELECT COUNT(*) AS n FROM volumes v");
            push_filter(&mut c, &q.filter);
            Some(c.query().fetch_one(self.pool()).await?.try_get::<i64, _>("n")?)
        } else {
            None
        };
        Ok(VolumePage { volumes, count })
    }

    async fn fill_metadata(&self, volumes: &mut [Volume]) -> Result<()> {
        if volumes.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new("SELECT volume_id, key, value FROM volume_metadata WHERE volume_id IN (");
        for (i, v) in volumes.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(v.id.clone()));
        }
        sql.push(")");
        let rows = sql.query().fetch_all(self.pool()).await?;
        let mut by_id: std::collections::HashMap<String, BTreeMap<String, String>> = std::collections::HashMap::new();
        for r in rows {
            by_id.entry(r.try_get("volume_id")?).or_default().insert(r.try_get("key")?, r.try_get("value")?);
        }
        for v in volumes.iter_mut() {
            if let Some(m) = by_id.remove(&v.id) {
                v.metadata = m;
            }
        }
        Ok(())
    }

    /// Every volume id stored on `pool` (for recovery and consistency checks).
    pub async fn volume_ids_on_pool(&self, pool: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM volumes WHERE pool = $1").bind(pool).fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

impl WriteTx<'_> {
    /// Insert a volume row and its metadata.
    pub async fn insert_volume(&mut self, v: &Volume) -> Result<()> {
        sqlx::query(
            "INSERT INTO volumes (id, project_id, user_id, name, description, size_gb, status, \
             availability_zone, volume_type_id, pool, bootable, multiattach, readonly, \
             snapshot_id, source_volid, created_at, updated_at, group_id, \
             enterprise_project_id, dedicated_storage_id, qos_iops, qos_throughput) \
             VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)",
        )
        .bind(&v.id)
        .bind(&v.project_id)
        .bind(v.user_id.as_deref())
        .bind(v.name.as_deref())
        .bind(v.description.as_deref())
        .bind(v.size_gb)
        .bind(v.status.as_str())
        .bind(&v.availability_zone)
        .bind(&v.volume_type_id)
        .bind(&v.pool)
        .bind(v.bootable as i64)
        .bind(v.multiattach as i64)
        .bind(v.readonly as i64)
        .bind(v.snapshot_id.as_deref())
        .bind(v.source_volid.as_deref())
        .bind(&v.created_at)
        .bind(v.updated_at.as_deref())
        .bind(v.group_id.as_deref())
        .bind(v.evs.enterprise_project_id.as_deref())
        .bind(v.evs.dedicated_storage_id.as_deref())
        .bind(v.evs.qos_iops)
        .bind(v.evs.qos_throughput)
        .execute(self.conn())
        .await?;
        self.replace_volume_metadata(&v.id, &v.metadata).await
    }

    /// Replace all metadata of a volume.
    pub async fn replace_volume_metadata(
        &mut self,
        volume_id: &str,
        metadata: &BTreeMap<String, String>,
    ) -> Result<()> {
        self.replace_key_values("volume_metadata", "volume_id", volume_id, metadata).await
    }

    /// Compare-and-set a volume's status: succeeds only when the current status is one of
    /// `from`. Returns whether a row changed.
    pub async fn cas_volume_status(
        &mut self,
        id: &str,
        from: &[VolumeStatus],
        to: VolumeStatus,
        now: &str,
    ) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        self.cas_status("volumes", id, &from, to.as_str(), now).await
    }

    /// Lock the volume's row for the rest of this transaction if its status is one of `from`
    /// (`false` otherwise, the row untouched). Every status change of a volume is an `UPDATE` of
    /// this row, so a transaction holding the lock cannot interleave with one (on PostgreSQL the
    /// other writer waits and re-reads the status; SQLite has a single writer anyway).
    pub async fn lock_volume_in_status(&mut self, id: &str, from: &[VolumeStatus]) -> Result<bool> {
        let mut sql = Sql::new("UPDATE volumes SET status = status WHERE id = ");
        sql.bind(Arg::Text(id.into())).push(" AND status IN ('' ");
        for s in from {
            sql.push(", ").bind(Arg::Text(s.as_str().into()));
        }
        sql.push(")");
        Ok(sql.query().execute(self.conn()).await?.rows_affected() == 1)
    }

    /// Set name and description (each `Some` replaces, `None` keeps).
    pub async fn update_volume_text(
        &mut self,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        now: &str,
    ) -> Result<()> {
        self.update_text("volumes", id, name, description, now).await
    }

    /// Remove a volume row with its metadata and tags.
    pub async fn delete_volume_row(&mut self, id: &str) -> Result<()> {
        self.delete_row_with_metadata_and_tags("volumes", id).await
    }

    /// Record a volume's new size (after an extend).
    pub async fn set_volume_size(&mut self, id: &str, size_gb: i64, now: &str) -> Result<()> {
        sqlx::query("UPDATE volumes SET size_gb = $1, updated_at = $2 WHERE id = $3")
            .bind(size_gb)
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Give a volume a new type (a retype that keeps its pool) and its multiattach flag.
    pub async fn set_volume_type(&mut self, id: &str, type_id: &str, multiattach: bool, now: &str) -> Result<()> {
        sqlx::query("UPDATE volumes SET volume_type_id = $1, multiattach = $2, updated_at = $3 WHERE id = $4")
            .bind(type_id)
            .bind(multiattach as i64)
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Set a volume's `migration_status` (`None` clears it).
    pub async fn set_migration_status(&mut self, id: &str, status: Option<&str>, now: &str) -> Result<()> {
        sqlx::query("UPDATE volumes SET migration_status = $1, updated_at = $2 WHERE id = $3")
            .bind(status)
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// End a retype with migration: the volume now lives on `pool` with type `type_id`, back in
    /// `status`, migration `success`. True when the volume was still `retyping`.
    pub async fn finish_migration(
        &mut self,
        id: &str,
        pool: &str,
        type_id: &str,
        multiattach: bool,
        status: VolumeStatus,
        now: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE volumes SET pool = $1, volume_type_id = $2, multiattach = $3, status = $4, \
             migration_status = 'success', updated_at = $5 WHERE id = $6 AND status = 'retyping'",
        )
        .bind(pool)
        .bind(type_id)
        .bind(multiattach as i64)
        .bind(status.as_str())
        .bind(now)
        .bind(id)
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Whether a pending job still reads this volume's data: a snapshot of it being taken, or a
    /// volume being created from it or from one of its snapshots.
    pub async fn volume_busy_as_source(&mut self, id: &str) -> Result<bool> {
        let row = sqlx::query(
            "SELECT id FROM snapshots WHERE volume_id = $1 AND status = 'creating' \
             UNION ALL SELECT id FROM volumes WHERE status = 'creating' AND (source_volid = $1 \
             OR snapshot_id IN (SELECT id FROM snapshots WHERE volume_id = $1)) LIMIT 1",
        )
        .bind(id)
        .fetch_optional(self.conn())
        .await?;
        Ok(row.is_some())
    }

    /// The status of a volume inside this transaction.
    pub async fn volume_status(&mut self, id: &str) -> Result<Option<VolumeStatus>> {
        let row = sqlx::query("SELECT status FROM volumes WHERE id = $1").bind(id).fetch_optional(self.conn()).await?;
        match row {
            None => Ok(None),
            Some(r) => {
                let s: String = r.try_get("status")?;
                Ok(Some(s.parse().map_err(|_| Error::internal(format!("bad status {s:?}")))?))
            }
        }
    }
}

impl Db {
    /// Move volumes stuck in `from` with no open job to `to` (after a crash that lost the job,
    /// which the single-transaction enqueue should make impossible; this is the safety net).
    pub async fn fail_stranded_volumes(&self, from: VolumeStatus, to: VolumeStatus, now: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE volumes SET status = $1, updated_at = $2 WHERE status = $3 AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.volume_id = volumes.id AND j.status IN ('INIT', 'RUNNING'))",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(from.as_str())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}

impl Db {
    /// Mark migrations left `migrating` with no open job as `error` (the volume stayed on its
    /// old pool: the job that would have moved it is gone).
    pub async fn fail_stranded_migrations(&self, now: &str) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            "UPDATE volumes SET migration_status = 'error', updated_at = $1 WHERE migration_status = 'migrating' \
             AND NOT EXISTS (SELECT 1 FROM jobs j WHERE j.volume_id = volumes.id AND j.status IN ('INIT', 'RUNNING'))",
        )
        .bind(now)
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }

    /// Move snapshots stuck in `from` with no open job to `to` (see `fail_stranded_volumes`).
    pub async fn fail_stranded_snapshots(
        &self,
        from: crate::model::SnapshotStatus,
        to: crate::model::SnapshotStatus,
        now: &str,
    ) -> Result<u64> {
        let mut tx = self.begin_write().await?;
        let r = sqlx::query(
            // A member of a group snapshot is worked on by its set's job (whose `snapshot_id` is the set).
            "UPDATE snapshots SET status = $1, updated_at = $2 WHERE status = $3 AND NOT EXISTS \
             (SELECT 1 FROM jobs j WHERE j.snapshot_id IN (snapshots.id, snapshots.group_snapshot_id) \
             AND j.status IN ('INIT', 'RUNNING'))",
        )
        .bind(to.as_str())
        .bind(now)
        .bind(from.as_str())
        .execute(tx.conn())
        .await?;
        tx.commit().await?;
        Ok(r.rows_affected())
    }
}
