//! EVS list parameters (reference 6.1.2) with its validation codes.

use crate::api::common::{bad_query, parse_bool, parse_metadata_filter, query_get};
use crate::error::Result;
use crate::model::{parse_uuid, VolumeStatus};
use crate::service::Caller;
use crate::store::{ListVolumes, SortDir, VolumeFilter, VolumeSortKey};

/// Largest and default page.
pub const MAX_LIMIT: i64 = 1000;
/// Most ids one `ids` filter may name.
const MAX_IDS: usize = 60;

/// Parse `ids=['id1','id2']` (also a JSON list or plain commas); invalid ids are dropped.
fn parse_ids(s: &str) -> Vec<String> {
    s.trim()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .split(',')
        .map(|p| p.trim().trim_matches(|c| c == '\'' || c == '"').trim())
        .filter(|p| parse_uuid(p).is_some())
        .map(str::to_string)
        .collect()
}

/// Build a list request; the page asks for one more row than the limit to know if a next link
/// is due. Returns the request and the limit.
pub fn list_request(caller: &Caller, q: &[(String, String)]) -> Result<(ListVolumes, i64)> {
    let limit = match query_get(q, "limit") {
        None => MAX_LIMIT,
        Some(s) => {
            let n: i64 = s.trim().parse().map_err(|_| bad_query("EVS.5400", "limit param must be an integer."))?;
            if n < 1 {
                return Err(bad_query("EVS.1023", "invalid filter limit! limit must be 1 to 1000."));
            }
            if n > MAX_LIMIT {
                return Err(bad_query("EVS.2142", "invalid filter limit, can not greater than 1000."));
            }
            n
        }
    };
    let offset = match query_get(q, "offset") {
        None => 0,
        Some(s) => {
            let n: i64 = s.trim().parse().map_err(|_| bad_query("EVS.5400", "offset param must be an integer."))?;
            if n < 0 {
                return Err(bad_query("EVS.5400", "offset param must be a positive integer."));
            }
            n
        }
    };
    let marker = match query_get(q, "marker") {
        None => None,
        Some(m) if parse_uuid(m).is_some() => Some(m.to_string()),
        Some(m) => return Err(bad_query("EVS.1024", format!("invalid filter marker! {m:?} is not a disk id."))),
    };
    let sort_key = match query_get(q, "sort_key") {
        None => VolumeSortKey::CreatedAt,
        Some(k @ ("id" | "status" | "size" | "created_at")) => {
            VolumeSortKey::parse(k).unwrap_or(VolumeSortKey::CreatedAt)
        }
        Some(k) => {
            return Err(bad_query(
                "EVS.1039",
                format!("invalid sort_key {k:?}: must be id, status, size or created_at."),
            ))
        }
    };
    let sort_dir = match query_get(q, "sort_dir") {
        None | Some("desc") => SortDir::Desc,
        Some("asc") => SortDir::Asc,
        Some(d) => return Err(bad_query("EVS.1040", format!("invalid sort_dir {d:?}: must be desc or asc."))),
    };
    let status = match query_get(q, "status") {
        None => None,
        Some(s) if s.parse::<VolumeStatus>().is_ok() => Some(s.to_string()),
        Some(_) => return Err(bad_query("EVS.5400", "Must specify a valid status.")),
    };
    let ids = match (query_get(q, "ids"), query_get(q, "id")) {
        (Some(list), _) => {
            let ids = parse_ids(list);
            if ids.len() > MAX_IDS {
                return Err(bad_query("EVS.5400", format!("ids may name at most {MAX_IDS} disks.")));
            }
            Some(ids)
        }
        (None, Some(id)) => Some(vec![id.to_string()]),
        (None, None) => None,
    };
    let metadata = match query_get(q, "metadata") {
        None => Vec::new(),
        Some(m) => parse_metadata_filter(m).ok_or_else(|| bad_query("EVS.1058", "invalid metadata filter!"))?,
    };
    let multiattach = match query_get(q, "multiattach") {
        None => None,
        Some(v) => Some(parse_bool(v).ok_or_else(|| bad_query("EVS.5400", "multiattach must be true or false."))?),
    };
    let availability_zone = match query_get(q, "availability_zone") {
        Some("") => return Err(bad_query("EVS.1041", "invalid filter availability-zone!")),
        other => other.map(str::to_string),
    };
    let not_metadata = match query_get(q, "not_metadata") {
        None => Vec::new(),
        Some(m) => parse_metadata_filter(m).ok_or_else(|| bad_query("EVS.1058", "invalid not_metadata filter!"))?,
    };
    // `all_granted_eps` asks for every enterprise project the caller may see: all of them.
    let enterprise_project_id = query_get(q, "enterprise_project_id").filter(|e| *e != "all_granted_eps");
    let mut filter = VolumeFilter {
        server_id: query_get(q, "server_id").map(str::to_string),
        enterprise_project_id: enterprise_project_id.map(str::to_string),
        not_metadata,
        dedicated_storage_id: query_get(q, "dedicated_storage_id").map(str::to_string),
        dedicated_storage_name: query_get(q, "dedicated_storage_name").map(str::to_string),
        project_id: Some(caller.project_id.clone()),
        ids,
        name: query_get(q, "name").map(str::to_string),
        status,
        availability_zone,
        metadata,
        multiattach,
        volume_type_id: query_get(q, "volume_type_id").map(str::to_string),
        group_id: None,
    };
    // Every disk here is an EVS disk: another service type matches nothing.
    if query_get(q, "service_type").is_some_and(|s| s != "EVS") {
        filter.ids = Some(Vec::new());
    }
    Ok((ListVolumes { filter, sort_key, sort_dir, limit: Some(limit + 1), offset, marker, with_count: true }, limit))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_forms() {
        let a = "0b549095-4937-4849-8e4c-52aa027d64f7";
        let b = "e7bca1a2-d3ed-434f-86f4-a1f11aa80072";
        assert_eq!(parse_ids(&format!("['{a}','{b}']")), vec![a, b]);
        assert_eq!(parse_ids(&format!("[\"{a}\", \"nope\"]")), vec![a]);
        assert_eq!(parse_ids(a), vec![a]);
    }
}
