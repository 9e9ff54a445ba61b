//! Tags on volumes and snapshots (`tags` table), and queries of resources by tag.
//!
//! A tag row names its resource by type and id; a resource's tags go away with its row
//! (`delete_volume_row`, `delete_snapshot_row`). Project scoping joins the resource table, so a
//! resource that changed project (a transfer) is listed under its current owner.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use sqlx::Row;

use super::sql::{Arg, Sql};
use super::{Db, WriteTx};
use crate::error::Result;
use crate::model::{Snapshot, Volume};

/// The kinds of resource that carry tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TagResource {
    /// Volumes (disks).
    Volumes,
    /// Snapshots.
    Snapshots,
}

impl TagResource {
    /// The `resource_type` as the API and the `tags` table spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Volumes => "volumes",
            Self::Snapshots => "snapshots",
        }
    }
    /// The resource's table and its alias in queries.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Self::Volumes => ("volumes", "v"),
            Self::Snapshots => ("snapshots", "s"),
        }
    }
}

/// One tag condition: the key must be present with one of `values` (any value when empty).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagMatch {
    /// Tag key.
    pub key: String,
    /// Accepted values; empty accepts any.
    pub values: Vec<String>,
}

/// Which resources a tag query selects; every non-empty part narrows the result.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagQuery {
    /// Resources matching every condition (`tags`).
    pub all: Vec<TagMatch>,
    /// Resources matching at least one condition (`tags_any`).
    pub any: Vec<TagMatch>,
    /// Resources NOT matching every condition (`not_tags`).
    pub not_all: Vec<TagMatch>,
    /// Resources matching none of the conditions (`not_tags_any`).
    pub not_any: Vec<TagMatch>,
    /// Name contains this text, ASCII case-insensitively; `Some("")` means "has no name".
    pub name_contains: Option<String>,
    /// Nothing can match (e.g. a `service_type` this node has none of).
    pub match_nothing: bool,
}

/// Escape `%`, `_` and `\` for a `LIKE … ESCAPE '\'` pattern.
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `EXISTS (one tag of the resource matching m)`.
fn push_exists(sql: &mut Sql, rt: TagResource, alias: &str, m: &TagMatch) {
    sql.push("EXISTS (SELECT 1 FROM tags t WHERE t.resource_type = ")
        .bind(Arg::Text(rt.as_str().into()))
        .push(&format!(" AND t.resource_id = {alias}.id AND t.key = "))
        .bind(Arg::Text(m.key.clone()));
    if !m.values.is_empty() {
        sql.push(" AND t.value IN (");
        for (i, v) in m.values.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text(v.clone()));
        }
        sql.push(")");
    }
    sql.push(")");
}

/// `(c1 AND c2 …)` or `(c1 OR c2 …)`.
fn push_group(sql: &mut Sql, rt: TagResource, alias: &str, ms: &[TagMatch], op: &str) {
    sql.push("(");
    for (i, m) in ms.iter().enumerate() {
        if i > 0 {
            sql.push(op);
        }
        push_exists(sql, rt, alias, m);
    }
    sql.push(")");
}

fn push_query(sql: &mut Sql, rt: TagResource, project_id: &str, q: &TagQuery) {
    let (_, a) = rt.table();
    sql.push(&format!(" WHERE {a}.project_id = ")).bind(Arg::Text(project_id.into()));
    if q.match_nothing {
        sql.push(" AND 1=0");
    }
    if !q.all.is_empty() {
        sql.push(" AND ");
        push_group(sql, rt, a, &q.all, " AND ");
    }
    if !q.any.is_empty() {
        sql.push(" AND ");
        push_group(sql, rt, a, &q.any, " OR ");
    }
    if !q.not_all.is_empty() {
        sql.push(" AND NOT ");
        push_group(sql, rt, a, &q.not_all, " AND ");
    }
    if !q.not_any.is_empty() {
        sql.push(" AND NOT ");
        push_group(sql, rt, a, &q.not_any, " OR ");
    }
    match q.name_contains.as_deref() {
        None => {}
        Some("") => {
            sql.push(&format!(" AND COALESCE({a}.name, '') = ''"));
        }
        // LOWER folds ASCII only on SQLite and on PostgreSQL's "C" collation of `name`, so
        // the pattern is folded the same way and both backends agree.
        Some(s) => {
            sql.push(&format!(" AND LOWER(COALESCE({a}.name, '')) LIKE "))
                .bind(Arg::Text(format!("%{}%", like_escape(&s.to_ascii_lowercase()))))
                .push(" ESCAPE '\\'");
        }
    }
}

impl Db {
    /// The tags of one resource.
    pub async fn tags_of(&self, rt: TagResource, resource_id: &str) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT key, value FROM tags WHERE resource_type = $1 AND resource_id = $2")
            .bind(rt.as_str())
            .bind(resource_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    /// Every tag key of a project's resources of one type, with all values in use.
    pub async fn project_tags(&self, rt: TagResource, project_id: &str) -> Result<BTreeMap<String, BTreeSet<String>>> {
        let (table, a) = rt.table();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT t.key, t.value FROM tags t JOIN {table} {a} ON {a}.id = t.resource_id \
             WHERE t.resource_type = $1 AND {a}.project_id = $2"
        )))
        .bind(rt.as_str())
        .bind(project_id)
        .fetch_all(self.pool())
        .await?;
        let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for r in rows {
            out.entry(r.try_get("key")?).or_default().insert(r.try_get("value")?);
        }
        Ok(out)
    }

    /// Ids of a project's resources selected by `q`, newest first (`created_at`, then id, both
    /// descending: the order of the list calls), paged by `limit`/`offset`, and how many match
    /// in all.
    pub async fn tagged_resource_ids(
        &self,
        rt: TagResource,
        project_id: &str,
        q: &TagQuery,
        limit: Option<i64>,
        offset: i64,
    ) -> Result<(Vec<String>, i64)> {
        let (table, a) = rt.table();
        let mut count = Sql::new(&format!("SELECT COUNT(*) AS n FROM {table} {a}"));
        push_query(&mut count, rt, project_id, q);
        let total: i64 = count.query().fetch_one(self.pool()).await?.try_get("n")?;
        let ids = match limit {
            Some(0) => Vec::new(),
            _ => {
                let mut sql = Sql::new(&format!("SELECT {a}.id FROM {table} {a}"));
                push_query(&mut sql, rt, project_id, q);
                sql.push(&format!(" ORDER BY {a}.created_at DESC, {a}.id DESC LIMIT "))
                    .bind(Arg::Int(limit.unwrap_or(i64::MAX / 2)))
                    .push(" OFFSET ")
                    .bind(Arg::Int(offset.max(0)));
                let rows = sql.query().fetch_all(self.pool()).await?;
                rows.iter().map(|r| Ok(r.try_get::<String, _>("id")?)).collect::<Result<Vec<_>>>()?
            }
        };
        Ok((ids, total))
    }

    /// Tags of many resources in one query, by resource id.
    async fn tags_by_id(&self, rt: TagResource, ids: &[&str]) -> Result<HashMap<String, BTreeMap<String, String>>> {
        let mut by_id: HashMap<String, BTreeMap<String, String>> = HashMap::new();
        if ids.is_empty() {
            return Ok(by_id);
        }
        let mut sql = Sql::new("SELECT resource_id, key, value FROM tags WHERE resource_type = ");
        sql.bind(Arg::Text(rt.as_str().into())).push(" AND resource_id IN (");
        for (i, id) in ids.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Arg::Text((*id).to_string()));
        }
        sql.push(")");
        for r in sql.query().fetch_all(self.pool()).await? {
            by_id.entry(r.try_get("resource_id")?).or_default().insert(r.try_get("key")?, r.try_get("value")?);
        }
        Ok(by_id)
    }

    /// Fill `tags` of a page of volumes (one query).
    pub(super) async fn fill_volume_tags(&self, volumes: &mut [Volume]) -> Result<()> {
        let ids: Vec<&str> = volumes.iter().map(|v| v.id.as_str()).collect();
        let mut by_id = self.tags_by_id(TagResource::Volumes, &ids).await?;
        for v in volumes.iter_mut() {
            v.tags = by_id.remove(&v.id).unwrap_or_default();
        }
        Ok(())
    }

    /// Fill `tags` of a page of snapshots (one query).
    pub(super) async fn fill_snapshot_tags(&self, snaps: &mut [Snapshot]) -> Result<()> {
        let ids: Vec<&str> = snaps.iter().map(|s| s.id.as_str()).collect();
        let mut by_id = self.tags_by_id(TagResource::Snapshots, &ids).await?;
        for s in snaps.iter_mut() {
            s.tags = by_id.remove(&s.id).unwrap_or_default();
        }
        Ok(())
    }
}

impl WriteTx<'_> {
    /// Lock the resource's row for the rest of the transaction (so concurrent tag changes of
    /// one resource serialise and the 10-tag limit holds); false when it no longer exists.
    ///
    /// `SET updated_at = updated_at` changes nothing but takes the row lock on PostgreSQL;
    /// SQLite already has one writer.
    pub async fn lock_tagged_resource(&mut self, rt: TagResource, resource_id: &str) -> Result<bool> {
        let (table, _) = rt.table();
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("UPDATE {table} SET updated_at = updated_at WHERE id = $1")))
            .bind(resource_id)
            .execute(self.conn())
            .await?;
        Ok(r.rows_affected() == 1)
    }

    /// The tags of one resource, inside this transaction.
    pub async fn tags_of(&mut self, rt: TagResource, resource_id: &str) -> Result<BTreeMap<String, String>> {
        let rows = sqlx::query("SELECT key, value FROM tags WHERE resource_type = $1 AND resource_id = $2")
            .bind(rt.as_str())
            .bind(resource_id)
            .fetch_all(self.conn())
            .await?;
        rows.iter().map(|r| Ok((r.try_get("key")?, r.try_get("value")?))).collect()
    }

    /// Replace all tags of one resource.
    pub async fn replace_tags(
        &mut self,
        rt: TagResource,
        resource_id: &str,
        project_id: &str,
        tags: &BTreeMap<String, String>,
    ) -> Result<()> {
        sqlx::query("DELETE FROM tags WHERE resource_type = $1 AND resource_id = $2")
            .bind(rt.as_str())
            .bind(resource_id)
            .execute(self.conn())
            .await?;
        for (k, v) in tags {
            sqlx::query(
                "INSERT INTO tags (resource_type, resource_id, project_id, key, value) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(rt.as_str())
            .bind(resource_id)
            .bind(project_id)
            .bind(k)
            .bind(v)
            .execute(self.conn())
            .await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_patterns_are_escaped() {
        assert_eq!(like_escape("a%b_c\\d"), "a\\%b\\_c\\\\d");
        assert_eq!(like_escape("plain"), "plain");
    }
}
