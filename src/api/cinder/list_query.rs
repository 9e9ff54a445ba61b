//! Cinder list parameters: filters, `marker`/`limit`/`offset`, `sort_key`/`sort_dir` or
//! `sort=key:dir`, `all_tenants`, `with_count`.

use crate::api::common::{parse_bool, parse_metadata_filter, query_get};
use crate::error::{Error, ErrorKind, Result};
use crate::service::Caller;
use crate::store::{ListVolumes, SortDir, VolumeFilter, VolumeSortKey};

/// Cinder's `osapi_max_limit`: no page is longer.
pub const MAX_LIMIT: i64 = 1000;

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, msg)
}

fn parse_dir(s: &str) -> Result<SortDir> {
    match s.to_ascii_lowercase().as_str() {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        _ => Err(bad(format!("Invalid input received: Unknown sort direction, must be 'desc' or 'asc': {s}"))),
    }
}

fn parse_key(s: &str) -> Result<VolumeSortKey> {
    VolumeSortKey::parse(s).ok_or_else(|| bad(format!("Invalid input received: Invalid sort key {s}")))
}

/// Build a list request from the query. The page asks for one row more than `limit` so the
/// caller knows whether a next link is due.
pub fn list_request(caller: &Caller, q: &[(String, String)]) -> Result<(ListVolumes, i64)> {
    let limit = match query_get(q, "limit") {
        None => MAX_LIMIT,
        Some(s) => {
            let n: i64 = s.parse().map_err(|_| bad("limit param must be an integer"))?;
            if n < 0 {
                return Err(bad("limit param must be positive"));
            }
            n.min(MAX_LIMIT)
        }
    };
    let offset = match query_get(q, "offset") {
        None => 0,
        Some(s) => {
            let n: i64 = s.parse().map_err(|_| bad("offset param must be an integer"))?;
            if n < 0 {
                return Err(bad("offset param must be positive"));
            }
            n
        }
    };
    let (mut sort_key, mut sort_dir) = (VolumeSortKey::CreatedAt, SortDir::Desc);
    if let Some(sort) = query_get(q, "sort") {
        // `sort=key1:dir1,key2`: the first key decides; ties fall back to id.
        let first = sort.split(',').next().unwrap_or("");
        let (k, d) = first.split_once(':').unwrap_or((first, "desc"));
        sort_key = parse_key(k.trim())?;
        sort_dir = parse_dir(d.trim())?;
        if query_get(q, "sort_key").is_some() || query_get(q, "sort_dir").is_some() {
            return Err(bad(
                "The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter.",
            ));
        }
    } else {
        if let Some(k) = query_get(q, "sort_key") {
            sort_key = parse_key(k.split(',').next().unwrap_or(k))?;
        }
        if let Some(d) = query_get(q, "sort_dir") {
            sort_dir = parse_dir(d.split(',').next().unwrap_or(d))?;
        }
    }
    let all_tenants = crate::api::common::all_tenants(q);
    let project_id = if all_tenants && caller.is_admin {
        query_get(q, "project_id").map(str::to_string)
    } else {
        Some(caller.project_id.clone())
    };
    let metadata = match query_get(q, "metadata") {
        None => Vec::new(),
        Some(m) => parse_metadata_filter(m).ok_or_else(|| bad(format!("Invalid metadata filter: {m}")))?,
    };
    let filter = VolumeFilter {
        project_id,
        ids: None,
        name: query_get(q, "name").or_else(|| query_get(q, "display_name")).map(str::to_string),
        status: query_get(q, "status").map(str::to_string),
        availability_zone: query_get(q, "availability_zone").map(str::to_string),
        metadata,
        multiattach: None,
        volume_type_id: None,
        // groups: the caller drops it below 3.10 (`VOLUME_LIST_GROUP`).
        group_id: query_get(q, "group_id").map(str::to_string),
        // evs: the EVS filters the reference's clients send to this list too.
        server_id: query_get(q, "server_id").map(str::to_string),
        enterprise_project_id: query_get(q, "enterprise_project_id")
            .filter(|e| *e != "all_granted_eps")
            .map(str::to_string),
        not_metadata: match query_get(q, "not_metadata") {
            None => Vec::new(),
            Some(m) => parse_metadata_filter(m).ok_or_else(|| bad(format!("Invalid not_metadata filter: {m}")))?,
        },
        dedicated_storage_id: None,
        dedicated_storage_name: None,
    };
    let with_count = query_get(q, "with_count").and_then(parse_bool).unwrap_or(false);
    let req = ListVolumes {
        filter,
        sort_key,
        sort_dir,
        limit: Some(limit + 1),
        offset,
        marker: query_get(q, "marker").map(str::to_string),
        with_count,
    };
    Ok((req, limit))
}
