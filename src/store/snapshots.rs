//! Snapshot rows and their metadata.

use std::collections::{BTreeMap, HashMap};

use sqlx::any::AnyRow;
use sqlx::Row;

use super::sql::{Arg, Sql};
use super::{Db, SortDir, WriteTx};
use crate::error::{Error, Result};
use crate::model::{Snapshot, SnapshotStatus};

const SNAPSHOT_COLUMNS: &str = "s.id, s.project_id, s.user_id, s.volume_id, s.name, s.description, s.size_gb, \
     s.status, s.pool, s.created_at, s.updated_at, s.group_snapshot_id, s.progress";

/// Which snapshots a list returns.
#[derive(Debug, Clone, Default)]
pub struct SnapshotFilter {
    /// Only this project (`None` = all).
    pub project_id: Option<String>,
    /// Only these ids.
    pub ids: Option<Vec<String>>,
    /// Exact name.
    pub name: Option<String>,
    /// Exact status.
    pub status: Option<String>,
    /// Snapshots of this volume.
    pub volume_id: Option<String>,
    /// evs: snapshots whose volume is in this availability zone (reference 7.3.5).
    pub availability_zone: Option<String>,
    /// evs: snapshots whose volume is in this enterprise project (`"0"`: the default one).
    pub enterprise_project_id: Option<String>,
    /// evs: snapshots whose volume was placed on exactly this pool by a hint.
    pub dedicated_storage_id: Option<String>,
    /// evs: snapshots whose volume was placed by a hint on a pool whose name contains this.
    pub dedicated_storage_name: Option<String>,
}

/// Columns a snapshot list can be sorted by (the snapshot columns Cinder accepts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotSortKey {
    /// `id`
    Id,
    /// `name` / `display_name`
    Name,
    /// `status`
    Status,
    /// `size` / `volume_size`
    Size,
    /// `created_at` (the default)
    CreatedAt,
    /// `updated_at`
    UpdatedAt,
    /// `volume_id`
    VolumeId,
}

impl SnapshotSortKey {
    /// Parse an API sort key, Cinder's aliases included.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "id" => Self::Id,
            "name" | "display_name" => Self::Name,
            "status" => Self::Status,
            "size" | "volume_size" => Self::Size,
            "created_at" => Self::CreatedAt,
            "updated_at" => Self::UpdatedAt,
            "volume_id" => Self::VolumeId,
            _ => return None,
        })
    }
    fn column(self) -> &'static str {
        match self {
            Self::Id => "s.id",
            Self::Name => "COALESCE(s.name, '')",
            Self::Status => "s.status",
            Self::Size => "s.size_gb",
            Self::CreatedAt => "s.created_at",
            Self::UpdatedAt => "COALESCE(s.updated_at, '')",
            Self::VolumeId => "s.volume_id",
        }
    }
    fn marker_value(self, m: &Snapshot) -> Arg {
        match self {
            Self::Id => Arg::Text(m.id.clone()),
            Self::Name => Arg::Text(m.name.clone().unwrap_or_default()),
            Self::Status => Arg::Text(m.status.as_str().to_string()),
            Self::Size => Arg::Int(m.size_gb),
            Self::CreatedAt => Arg::Text(m.created_at.clone()),
            Self::UpdatedAt => Arg::Text(m.updated_at.clone().unwrap_or_default()),
            Self::VolumeId => Arg::Text(m.volume_id.clone()),
        }
    }
}

/// A snapshot list request (ties broken by id in the same direction).
#[derive(Debug, Clone)]
pub struct ListSnapshots {
    /// Which rows.
    pub filter: SnapshotFilter,
    /// Order.
    pub sort_key: SnapshotSortKey,
    /// Direction.
    pub sort_dir: SortDir,
    /// Page size (`None` = all).
    pub limit: Option<i64>,
    /// Rows skipped after the marker.
    pub offset: i64,
    /// Start after this snapshot.
    pub marker: Option<String>,
}

fn snapshot_from_row(row: &AnyRow) -> Result<Snapshot> {
    let status: String = row.try_get("status")?;
    Ok(Snapshot {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        user_id: row.try_get("user_id")?,
        volume_id: row.try_get("volume_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        size_gb: row.try_get("size_gb")?,
        status: status.parse().map_err(|_| Error::internal(format!("unknown snapshot status {status:?}")))?,
        pool: row.try_get("pool")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        metadata: BTreeMap::new(),
        tags: BTreeMap::new(),
        group_snapshot_id: row.try_get("group_snapshot_id")?,
        progress: row.try_get("progress")?,
    })
}

fn push_filter(sql: &mut Sql, f: &SnapshotFilter) {
    sql.push(" WHERE 1=1");
    if let Some(p) = &f.project_id {
        sql.push(" AND s.project_id = ").bind(Arg::Text(p.clone()));
    }
    if let Some(ids) = &f.ids {
        sql.push(" AND s.id IN ('' ");
        for id in ids {
            sql.push(", ").bind(Arg::Text(id.clone()));
        }
        sql.push(")");
    }
    if let Some(n) = &f.name {
        sql.push(" AND s.name = ").bind(Arg::Text(n.clone()));
    }
    if let Some(s) = &f.status {
        sql.push(" AND s.status = ").bind(Arg::Text(s.clone()));
    }
    if let Some(v) = &f.volume_id {
        sql.push(" AND s.volume_id = ").bind(Arg::Text(v.clone()));
    }
    if let Some(az) = &f.availability_zone {
        sql.push(" AND EXISTS (SELECT 1 FROM volumes sv WHERE sv.id = s.volume_id AND sv.availability_zone = ")
            .bind(Arg::Text(az.clone()))
            .push(")");
    }
    if let Some(e) = &f.enterprise_project_id {
        sql.push(" AND EXISTS (SELECT 1 FROM volumes sv WHERE sv.id = s.volume_id AND COALESCE(sv.enterprise_project_id, '0') = ")
            .bind(Arg::Text(e.clone()))
            .push(")");
    }
    if let Some(d) = &f.dedicated_storage_id {
        sql.push(" AND EXISTS (SELECT 1 FROM volumes sv WHERE sv.id = s.volume_id AND sv.dedicated_storage_id = ")
            .bind(Arg::Text(d.clone()))
            .push(")");
    }
    if let Some(d) = &f.dedicated_storage_name {
        // A substring match; the caller's own pattern characters are escaped.
        let pat = d.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_");
        sql.push(" AND EXISTS (SELECT 1 FROM volumes sv WHERE sv.id = s.volume_id AND sv.dedicated_storage_id LIKE ")
            .bind(Arg::Text(format!("%{pat}%")))
            .push(" ESCAPE '\\')");
    }
}

impl Db {
    /// One snapshot with metadata; `project_id = None` looks across projects.
    pub async fn get_snapshot(&self, project_id: Option<&str>, id: &str) -> Result<Option<Snapshot>> {
        let mut sql = Sql::new(&format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s"));
        push_filter(
            &mut sql,
            &SnapshotFilter {
                project_id: project_id.map(str::to_string),
                ids: Some(vec![id.to_string()]),
                ..Default::default()
            },
        );
        let Some(row) = sql.query().fetch_optional(self.pool()).await? else { return Ok(None) };
        let mut s = snapshot_from_row(&row)?;
        self.fill_snapshot_metadata(std::slice::from_mut(&mut s)).await?;
        self.fill_snapshot_tags(std::slice::from_mut(&mut s)).await?;
        Ok(Some(s))
    }

    /// A page of snapshots (metadata included).
    pub async fn list_snapshots(&self, q: &ListSnapshots) -> Result<Vec<Snapshot>> {
        let marker =
            match &q.marker {
                Some(m) => Some(self.get_snapshot(q.filter.project_id.as_deref(), m).await?.ok_or_else(|| {
                    Error::not_found(format!("Marker {m} could not be found.")).with_code("EVS.1024")
                })?),
                None => None,
            };
        let mut sql = Sql::new(&format!("SELECT {SNAPSHOT_COLUMNS} FROM snapshots s"));
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
                .push(&format!(" AND s.id {cmp} "))
                .bind(Arg::Text(m.id.clone()))
                .push("))");
        }
        sql.push(&format!(" ORDER BY {col} {dir}, s.id {dir}"));
        sql.push(" LIMIT ").bind(Arg::Int(q.limit.unwrap_or(i64::MAX / 2)));
        sql.push(" OFFSET ").bind(Arg::Int(q.offset.max(0)));
        let rows = sql.query().fetch_all(self.pool()).await?;
        let mut out = rows.iter().map(snapshot_from_row).collect::<Result<Vec<_>>>()?;
        self.fill_snapshot_metadata(&mut out).await?;
        self.fill_snapshot_tags(&mut out).await?;
        Ok(out)
    }

    async fn fill_snapshot_metadata(&self, snaps: &mut [Snapshot]) -> Result<()> {
        if snaps.is_empty() {
            return Ok(());
        }
        let mut sql = Sql::new("SELECT snapshot_id, key, value FROM snapshot_metadata WHERE snapshot_id IN ('' ");
        for s in snaps.iter() {
            sql.push(", ").bind(Arg::Text(s.id.clone()));
        }
        sql.push(")");
        let mut by_id: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        for r in sql.query().fetch_all(self.pool()).await? {
            by_id.entry(r.try_get("snapshot_id")?).or_default().insert(r.try_get("key")?, r.try_get("value")?);
        }
        for s in snaps.iter_mut() {
            s.metadata = by_id.remove(&s.id).unwrap_or_default();
        }
        Ok(())
    }

    /// How many snapshots match `filter` (ignoring paging).
    pub async fn count_snapshots(&self, filter: &SnapshotFilter) -> Result<i64> {
        let mut sql = Sql::new("SELECT COUNT(*) AS n FROM snapshots s");
        push_filter(&mut sql, filter);
        Ok(sql.query().fetch_one(self.pool()).await?.try_get("n")?)
    }

    /// GiB held by a volume's snapshots.
    pub async fn snapshot_gigabytes_of_volume(&self, volume_id: &str) -> Result<i64> {
        Ok(sqlx::query("SELECT CAST(COALESCE(SUM(size_gb), 0) AS BIGINT) AS gb FROM snapshots WHERE volume_id = $1")
            .bind(volume_id)
            .fetch_one(self.pool())
            .await?
            .try_get("gb")?)
    }

    /// Snapshot count and GiB of a project.
    pub async fn snapshot_usage(&self, project_id: &str) -> Result<Vec<(String, i64, i64)>> {
        let rows = sqlx::query(
            "SELECT t.name AS type_name, COUNT(*) AS n, CAST(COALESCE(SUM(s.size_gb), 0) AS BIGINT) AS gb \
             FROM snapshots s JOIN volumes v ON v.id = s.volume_id JOIN volume_types t ON t.id = v.volume_type_id \
             WHERE s.project_id = $1 GROUP BY t.name",
        )
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(|r| Ok((r.try_get("type_name")?, r.try_get("n")?, r.try_get("gb")?))).collect()
    }

    /// Every snapshot id stored on `pool`.
    pub async fn snapshot_ids_on_pool(&self, pool: &str) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT id FROM snapshots WHERE pool = $1").bind(pool).fetch_all(self.pool()).await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }
}

impl WriteTx<'_> {
    /// Insert a snapshot row and its metadata.
    pub async fn insert_snapshot(&mut self, s: &Snapshot) -> Result<()> {
        sqlx::query(
            "INSERT INTO snapshots (id, project_id, user_id, volume_id, name, description, size_gb, status, pool, \
             created_at, updated_at, group_snapshot_id) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)",
        )
        .bind(&s.id)
        .bind(&s.project_id)
        .bind(s.user_id.as_deref())
        .bind(&s.volume_id)
        .bind(s.name.as_deref())
        .bind(s.description.as_deref())
        .bind(s.size_gb)
        .bind(s.status.as_str())
        .bind(&s.pool)
        .bind(&s.created_at)
        .bind(s.updated_at.as_deref())
        .bind(s.group_snapshot_id.as_deref())
        .execute(self.conn())
        .await?;
        self.replace_snapshot_metadata(&s.id, &s.metadata).await
    }

    /// Replace all metadata of a snapshot.
    pub async fn replace_snapshot_metadata(&mut self, id: &str, m: &BTreeMap<String, String>) -> Result<()> {
        self.replace_key_values("snapshot_metadata", "snapshot_id", id, m).await
    }

    /// Compare-and-set a snapshot's status; true when a row changed.
    pub async fn cas_snapshot_status(
        &mut self,
        id: &str,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        now: &str,
    ) -> Result<bool> {
        let from: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        self.cas_status("snapshots", id, &from, to.as_str(), now).await
    }

    /// Set a snapshot's status whatever it was (admin `os-reset_status`); clears a progress set
    /// by `os-update_snapshot_status`. True when the row exists.
    pub async fn reset_snapshot_status(&mut self, id: &str, to: SnapshotStatus, now: &str) -> Result<bool> {
        let r = sqlx::query("UPDATE snapshots SET status = $1, progress = NULL, updated_at = $2 WHERE id = $3")
            .bind(to.as_str())
            .bind(now)
            .bind(id)
            .execute(self.conn())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Compare-and-set a snapshot's status from `from` to `to` and record `progress` when given
    /// (`os-update_snapshot_status`). True when the row changed.
    pub async fn update_snapshot_status(
        &mut self,
        id: &str,
        from: SnapshotStatus,
        to: SnapshotStatus,
        progress: Option<&str>,
        now: &str,
    ) -> Result<bool> {
        let r = sqlx::query(
            "UPDATE snapshots SET status = $1, progress = COALESCE(CAST($2 AS TEXT), progress), updated_at = $3 \
             WHERE id = $4 AND status = $5",
        )
        .bind(to.as_str())
        .bind(progress)
        .bind(now)
        .bind(id)
        .bind(from.as_str())
        .execute(self.conn())
        .await?;
        Ok(r.rows_affected() == 1)
    }

    /// Move every snapshot of `volume_id` whose status is in `from` to `to`; returns their ids.
    /// Fails (changing nothing) when any snapshot of the volume is in another status.
    pub async fn cas_volume_snapshots(
        &mut self,
        volume_id: &str,
        from: &[SnapshotStatus],
        to: SnapshotStatus,
        now: &str,
    ) -> Result<Option<Vec<String>>> {
        let rows = sqlx::query("SELECT id, status FROM snapshots WHERE volume_id = $1")
            .bind(volume_id)
            .fetch_all(self.conn())
            .await?;
        let mut ids = Vec::new();
        for r in &rows {
            let st: String = r.try_get("status")?;
            if !from.iter().any(|f| f.as_str() == st) {
                return Ok(None);
            }
            ids.push(r.try_get::<String, _>("id")?);
        }
        for id in &ids {
            self.cas_snapshot_status(id, from, to, now).await?;
        }
        Ok(Some(ids))
    }

    /// Set name and description.
    pub async fn update_snapshot_text(
        &mut self,
        id: &str,
        name: Option<Option<String>>,
        description: Option<Option<String>>,
        now: &str,
    ) -> Result<()> {
        self.update_text("snapshots", id, name, description, now).await
    }

    /// Remove a snapshot row, its metadata and tags.
    pub async fn delete_snapshot_row(&mut self, id: &str) -> Result<()> {
        self.delete_row_with_metadata_and_tags("snapshots", id).await
    }

    /// How many snapshots a volume has (inside this transaction).
    pub async fn count_volume_snapshots(&mut self, volume_id: &str) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) AS n FROM snapshots WHERE volume_id = $1")
            .bind(volume_id)
            .fetch_one(self.conn())
            .await?
            .try_get("n")?)
    }

    /// Whether a volume being created still needs this snapshot as its source.
    pub async fn snapshot_in_use_by_creating_volume(&mut self, snapshot_id: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT id FROM volumes WHERE snapshot_id = $1 AND status = 'creating' LIMIT 1")
            .bind(snapshot_id)
            .fetch_optional(self.conn())
            .await?
            .is_some())
    }
}
