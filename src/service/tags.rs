//! Tags on volumes and snapshots (reference 6.3 and the `os-vendor-tags` family of 9.6): the
//! character and length rules, the 10-tag limit, and queries of resources by tag.
//!
//! Every change validates its whole input first, then runs in one transaction that locks the
//! resource's row, reads its current tags, applies the change, checks the limit and writes: a
//! request that breaks a rule changes nothing, and concurrent changes of one resource cannot
//! push it past 10 tags.

use std::collections::{BTreeMap, BTreeSet};

use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::{Snapshot, Volume};
use crate::store::{
    ListSnapshots, ListVolumes, SnapshotFilter, SortDir, TagQuery, TagResource, VolumeFilter, VolumeSortKey,
};

/// Most tags one resource may carry.
pub const MAX_TAGS: usize = 10;
/// Longest tag key, in characters.
pub const MAX_KEY_CHARS: usize = 36;
/// Longest tag value, in characters.
pub const MAX_VALUE_CHARS: usize = 43;
/// Most keys one filter may name, and most values per key.
pub const MAX_FILTER_ITEMS: usize = 10;
/// Longest `matches` value, in characters.
pub const MAX_MATCH_CHARS: usize = 255;

/// The CJK range both keys and values may use besides ASCII letters and digits.
fn is_cjk(c: char) -> bool {
    ('\u{4E00}'..='\u{9FFF}').contains(&c)
}

fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg)
}

/// A key: 1 to 36 characters of `A-Za-z0-9-_` and U+4E00–U+9FFF.
pub fn validate_tag_key(key: &str) -> Result<()> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY_CHARS {
        return Err(bad(format!("Invalid tag key {key:?}: a key must be 1 to {MAX_KEY_CHARS} characters long.")));
    }
    if let Some(c) = key.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || is_cjk(c))) {
        return Err(bad(format!(
            "Invalid tag key {key:?}: character {c:?} is not allowed (use A-Z, a-z, 0-9, '-', '_' and U+4E00-U+9FFF)."
        )));
    }
    Ok(())
}

/// A value: 0 to 43 characters of `A-Za-z0-9-_.` and U+4E00–U+9FFF.
pub fn validate_tag_value(key: &str, value: &str) -> Result<()> {
    if value.chars().count() > MAX_VALUE_CHARS {
        return Err(bad(format!(
            "Invalid value of tag {key:?}: a value must be at most {MAX_VALUE_CHARS} characters long."
        )));
    }
    if let Some(c) =
        value.chars().find(|&c| !(c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' || is_cjk(c)))
    {
        return Err(bad(format!(
            "Invalid value of tag {key:?}: character {c:?} is not allowed \
             (use A-Z, a-z, 0-9, '.', '-', '_' and U+4E00-U+9FFF)."
        )));
    }
    Ok(())
}

/// The value of a batch delete (6.3.3): surrounding spaces are dropped; at most 43 characters,
/// no control characters and none of `* < > \ = , | /`.
fn normalize_delete_value(key: &str, value: &str) -> Result<String> {
    let v = value.trim();
    if v.chars().count() > MAX_VALUE_CHARS {
        return Err(bad(format!(
            "Invalid value of tag {key:?}: a value must be at most {MAX_VALUE_CHARS} characters long."
        )));
    }
    if let Some(c) = v.chars().find(|&c| (c as u32) < 32 || "*<>\\=,|/".contains(c)) {
        return Err(bad(format!("Invalid value of tag {key:?}: character {c:?} is not allowed.")));
    }
    Ok(v.to_string())
}

/// Validate `key=value` pairs of one request: rules per tag, and each key at most once.
fn validate_pairs(tags: &[(String, String)]) -> Result<()> {
    let mut seen = BTreeSet::new();
    for (k, v) in tags {
        validate_tag_key(k)?;
        validate_tag_value(k, v)?;
        if !seen.insert(k.as_str()) {
            return Err(bad(format!("Duplicate tag key {k:?}: tag keys must be unique.")));
        }
    }
    Ok(())
}

/// evs: tags given at create (`tags` of `CreateVolumeOption`): the key and value rules of 6.3
/// and at most [`MAX_TAGS`].
pub(super) fn validate_new_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    let pairs: Vec<(String, String)> = tags.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    validate_pairs(&pairs)?;
    if tags.len() > MAX_TAGS {
        return Err(bad(format!("Too many tags: a disk may have at most {MAX_TAGS}, {} given.", tags.len())));
    }
    Ok(())
}

/// A change to one resource's tags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TagChange {
    /// Add these tags, overwriting the values of keys already present.
    Upsert(Vec<(String, String)>),
    /// Replace every tag by these.
    Replace(Vec<(String, String)>),
    /// Remove these keys; a key given with a (non-empty) value is removed only when its value
    /// matches. Keys the resource does not have are ignored.
    Delete(Vec<(String, Option<String>)>),
    /// Remove one key, which must exist.
    DeleteKey(String),
}

/// A resource found by a tag query.
#[derive(Debug, Clone)]
pub enum TaggedResource {
    /// A volume (tags included; boxed: pages hold many).
    Volume(Box<Volume>),
    /// A snapshot (tags included; boxed like a volume).
    Snapshot(Box<Snapshot>),
}

/// One page of a tag query.
#[derive(Debug, Clone)]
pub struct TaggedPage {
    /// The page, newest first.
    pub resources: Vec<TaggedResource>,
    /// How many resources match, ignoring paging.
    pub total: i64,
}

/// Check a tag query: at most 10 conditions per list, keys unique and well formed, at most 10
/// unique values per key, values well formed.
pub fn validate_tag_query(q: &TagQuery) -> Result<()> {
    for (what, list) in [("tags", &q.all), ("tags_any", &q.any), ("not_tags", &q.not_all), ("not_tags_any", &q.not_any)]
    {
        if list.len() > MAX_FILTER_ITEMS {
            return Err(bad(format!("Invalid {what}: a tag filter may name at most {MAX_FILTER_ITEMS} keys.")));
        }
        let mut keys = BTreeSet::new();
        for m in list {
            validate_tag_key(&m.key)?;
            if !keys.insert(m.key.as_str()) {
                return Err(bad(format!("Invalid {what}: duplicate key {:?}; keys must be unique.", m.key)));
            }
            if m.values.len() > MAX_FILTER_ITEMS {
                return Err(bad(format!(
                    "Invalid {what}: key {:?} may list at most {MAX_FILTER_ITEMS} values.",
                    m.key
                )));
            }
            let mut vals = BTreeSet::new();
            for v in &m.values {
                validate_tag_value(&m.key, v)?;
                if !vals.insert(v.as_str()) {
                    return Err(bad(format!(
                        "Invalid {what}: duplicate value {v:?} of key {:?}; values must be unique.",
                        m.key
                    )));
                }
            }
        }
    }
    if let Some(n) = &q.name_contains {
        if n.chars().count() > MAX_MATCH_CHARS {
            return Err(bad(format!("Invalid matches: resource_name must be at most {MAX_MATCH_CHARS} characters.")));
        }
    }
    Ok(())
}

impl Services {
    /// The owning project of a resource the caller may see (404 otherwise).
    async fn tagged_owner(
        &self,
        caller: &Caller,
        rt: TagResource,
        id: &str,
    ) -> Result<(String, BTreeMap<String, String>)> {
        match rt {
            TagResource::Volumes => {
                let v = self.get_volume(caller, id).await?;
                Ok((v.project_id, v.tags))
            }
            TagResource::Snapshots => {
                let s = self.get_snapshot(caller, id).await?;
                Ok((s.project_id, s.tags))
            }
        }
    }

    /// The tags of a volume or snapshot.
    pub async fn resource_tags(&self, caller: &Caller, rt: TagResource, id: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.tagged_owner(caller, rt, id).await?.1)
    }

    /// Every key of the caller's project's resources of one type, each with its values (sorted).
    pub async fn project_tags(&self, caller: &Caller, rt: TagResource) -> Result<BTreeMap<String, Vec<String>>> {
        let all = self.db.project_tags(rt, &caller.project_id).await?;
        Ok(all.into_iter().map(|(k, vs)| (k, vs.into_iter().collect())).collect())
    }

    /// Apply `change` to a resource's tags in one transaction; returns the tags afterwards.
    pub async fn change_tags(
        &self,
        caller: &Caller,
        rt: TagResource,
        id: &str,
        change: TagChange,
    ) -> Result<BTreeMap<String, String>> {
        let change = match change {
            TagChange::Upsert(t) => {
                validate_pairs(&t)?;
                TagChange::Upsert(t)
            }
            TagChange::Replace(t) => {
                validate_pairs(&t)?;
                if t.len() > MAX_TAGS {
                    return Err(too_many(rt, id, t.len()));
                }
                TagChange::Replace(t)
            }
            TagChange::Delete(keys) => {
                let mut out = Vec::with_capacity(keys.len());
                for (k, v) in keys {
                    validate_tag_key(&k)?;
                    // An empty value names no value: the key goes whatever its value.
                    let v = v.map(|v| normalize_delete_value(&k, &v)).transpose()?.filter(|v| !v.is_empty());
                    out.push((k, v));
                }
                TagChange::Delete(out)
            }
            TagChange::DeleteKey(k) => {
                validate_tag_key(&k)?;
                TagChange::DeleteKey(k)
            }
        };
        let (project_id, _) = self.tagged_owner(caller, rt, id).await?;
        let mut tx = self.db.begin_write().await?;
        if !tx.lock_tagged_resource(rt, id).await? {
            return Err(gone(rt, id));
        }
        let mut tags = tx.tags_of(rt, id).await?;
        match change {
            TagChange::Upsert(t) => tags.extend(t),
            TagChange::Replace(t) => tags = t.into_iter().collect(),
            TagChange::Delete(keys) => {
                for (k, v) in keys {
                    if v.is_none() || tags.get(&k) == v.as_ref() {
                        tags.remove(&k);
                    }
                }
            }
            TagChange::DeleteKey(k) => {
                if tags.remove(&k).is_none() {
                    return Err(Error::not_found(format!("Tag {k:?} of {} {id} could not be found.", noun(rt))));
                }
            }
        }
        if tags.len() > MAX_TAGS {
            return Err(too_many(rt, id, tags.len()));
        }
        tx.replace_tags(rt, id, &project_id, &tags).await?;
        tx.commit().await?;
        Ok(tags)
    }

    /// The caller's project's resources matching `q`, newest first; `page` is
    /// `(limit, offset)`, `None` counts only.
    pub async fn query_by_tags(
        &self,
        caller: &Caller,
        rt: TagResource,
        q: &TagQuery,
        page: Option<(i64, i64)>,
    ) -> Result<TaggedPage> {
        validate_tag_query(q)?;
        let (limit, offset) = page.unwrap_or((0, 0));
        let (ids, total) = self.db.tagged_resource_ids(rt, &caller.project_id, q, Some(limit), offset).await?;
        if ids.is_empty() {
            return Ok(TaggedPage { resources: Vec::new(), total });
        }
        let resources = match rt {
            TagResource::Volumes => {
                let page = self
                    .db
                    .list_volumes(&ListVolumes {
                        filter: VolumeFilter {
                            project_id: Some(caller.project_id.clone()),
                            ids: Some(ids),
                            ..Default::default()
                        },
                        sort_key: VolumeSortKey::CreatedAt,
                        sort_dir: SortDir::Desc,
                        limit: None,
                        offset: 0,
                        marker: None,
                        with_count: false,
                    })
                    .await?;
                page.volumes.into_iter().map(|v| TaggedResource::Volume(Box::new(v))).collect()
            }
            TagResource::Snapshots => self
                .db
                .list_snapshots(&ListSnapshots {
                    filter: SnapshotFilter {
                        project_id: Some(caller.project_id.clone()),
                        ids: Some(ids),
                        ..Default::default()
                    },
                    sort_key: crate::store::SnapshotSortKey::CreatedAt,
                    sort_dir: SortDir::Desc,
                    limit: None,
                    offset: 0,
                    marker: None,
                })
                .await?
                .into_iter()
                .map(|s| TaggedResource::Snapshot(Box::new(s)))
                .collect(),
        };
        Ok(TaggedPage { resources, total })
    }
}

fn noun(rt: TagResource) -> &'static str {
    match rt {
        TagResource::Volumes => "volume",
        TagResource::Snapshots => "snapshot",
    }
}

fn gone(rt: TagResource, id: &str) -> Error {
    let what = match rt {
        TagResource::Volumes => "Volume",
        TagResource::Snapshots => "Snapshot",
    };
    Error::not_found(format!("{what} {id} could not be found."))
}

fn too_many(rt: TagResource, id: &str, n: usize) -> Error {
    bad(format!("Too many tags: {} {id} would have {n} tags; a resource may have at most {MAX_TAGS}.", noun(rt)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::TagMatch;

    #[test]
    fn key_rules() {
        assert!(validate_tag_key("env_1-a").is_ok());
        assert!(validate_tag_key("环境").is_ok());
        assert!(validate_tag_key(&"k".repeat(36)).is_ok());
        assert!(validate_tag_key(&"k".repeat(37)).is_err());
        assert!(validate_tag_key("").is_err());
        assert!(validate_tag_key("a.b").is_err());
        assert!(validate_tag_key("a b").is_err());
        assert!(validate_tag_key("ｅ").is_err());
    }

    #[test]
    fn value_rules() {
        assert!(validate_tag_value("k", "").is_ok());
        assert!(validate_tag_value("k", "v1.2-x_y").is_ok());
        assert!(validate_tag_value("k", "测试").is_ok());
        assert!(validate_tag_value("k", &"v".repeat(43)).is_ok());
        assert!(validate_tag_value("k", &"v".repeat(44)).is_err());
        assert!(validate_tag_value("k", "a/b").is_err());
    }

    #[test]
    fn delete_values_are_trimmed_and_checked() {
        assert_eq!(normalize_delete_value("k", "  v1 ").expect("ok"), "v1");
        assert!(normalize_delete_value("k", "a=b").is_err());
        assert!(normalize_delete_value("k", "a\u{1}").is_err());
    }

    #[test]
    fn duplicate_keys_in_a_batch_are_refused() {
        let t = vec![("a".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())];
        assert!(validate_pairs(&t).is_err());
    }

    #[test]
    fn query_limits() {
        let m = |k: &str, n: usize| TagMatch { key: k.into(), values: (0..n).map(|i| format!("v{i}")).collect() };
        let ok = TagQuery { all: (0..10).map(|i| m(&format!("k{i}"), 10)).collect(), ..Default::default() };
        assert!(validate_tag_query(&ok).is_ok());
        let keys = TagQuery { any: (0..11).map(|i| m(&format!("k{i}"), 1)).collect(), ..Default::default() };
        assert!(validate_tag_query(&keys).is_err());
        let vals = TagQuery { all: vec![m("k", 11)], ..Default::default() };
        assert!(validate_tag_query(&vals).is_err());
        let dup = TagQuery { all: vec![m("k", 1), m("k", 2)], ..Default::default() };
        assert!(validate_tag_query(&dup).is_err());
    }
}
