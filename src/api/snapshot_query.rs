//! Snapshot list parameters shared by the Cinder and EVS snapshot lists: `marker`/`limit`/
//! `offset`, `name`, `status`, `volume_id`, `availability_zone`, `id`, `all_tenants`, `sort_key`/`sort_dir` (or `sort=key:dir`).

use super::common::{bad_query, query_get};
use crate::error::Result;
use crate::model::SnapshotStatus;
use crate::service::Caller;
use crate::store::{ListSnapshots, SnapshotFilter, SnapshotSortKey, SortDir};

/// Longest page.
pub const MAX_LIMIT: i64 = 1000;

/// Build the request; asks for `limit + 1` rows so the caller knows if a next link is due.
pub fn list_request(caller: &Caller, q: &[(String, String)]) -> Result<(ListSnapshots, i64)> {
    let int = |key: &str| -> Result<Option<i64>> {
        match query_get(q, key) {
            None => Ok(None),
            Some(s) => {
                let n: i64 =
                    s.trim().parse().map_err(|_| bad_query("EVS.5400", format!("{key} param must be an integer.")))?;
                if n < 0 {
                    return Err(bad_query("EVS.5400", format!("{key} param must be positive.")));
                }
                Ok(Some(n))
            }
        }
    };
    let limit = int("limit")?.unwrap_or(MAX_LIMIT).min(MAX_LIMIT);
    let offset = int("offset")?.unwrap_or(0);
    let sort_key =
        match query_get(q, "sort_key").or_else(|| query_get(q, "sort").map(|s| s.split(':').next().unwrap_or(s))) {
            None => SnapshotSortKey::CreatedAt,
            Some(k) => SnapshotSortKey::parse(k).ok_or_else(|| {
                bad_query(
                    "EVS.1039",
                    format!(
                        "Invalid input received: Invalid sort key {k:?}: one of id, name, display_name, status, \
                         size, volume_size, created_at, updated_at, volume_id."
                    ),
                )
            })?,
        };
    let sort_dir =
        match query_get(q, "sort_dir").or_else(|| query_get(q, "sort").and_then(|s| s.split_once(':').map(|x| x.1))) {
            None | Some("desc") => SortDir::Desc,
            Some("asc") => SortDir::Asc,
            Some(d) => return Err(bad_query("EVS.1040", format!("invalid sort_dir {d:?}: must be desc or asc"))),
        };
    if let Some(s) = query_get(q, "status") {
        if s.parse::<SnapshotStatus>().is_err() {
            return Err(bad_query("EVS.5400", "Must specify a valid status."));
        }
    }
    let all_tenants = crate::api::common::all_tenants(q);
    let filter = SnapshotFilter {
        project_id: if all_tenants && caller.is_admin { None } else { Some(caller.project_id.clone()) },
        ids: query_get(q, "id").map(|i| vec![i.to_string()]),
        name: query_get(q, "name").or_else(|| query_get(q, "display_name")).map(str::to_string),
        status: query_get(q, "status").map(str::to_string),
        volume_id: query_get(q, "volume_id").map(str::to_string),
        // evs: the zone of the snapshot's disk (reference 7.3.5, the SDK's ListSnapshotsRequest).
        availability_zone: query_get(q, "availability_zone").map(str::to_string),
        // evs: set by the EVS snapshot list only (`api/evs/snapshots.rs`).
        ..Default::default()
    };
    let marker = query_get(q, "marker").map(str::to_string);
    Ok((ListSnapshots { filter, sort_key, sort_dir, limit: Some(limit + 1), offset, marker }, limit))
}
