//! Cinder catalog routes: volume types, availability zones, extensions, quota usage.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::views;
use super::CinderError;
use crate::api::common::{caller, check_project_id, parse_bool, parse_query, query_get};
use crate::error::Error;
use crate::service::Services;

type Res = Result<Response, CinderError>;

pub(super) async fn list_types(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    caller(&svc, &headers, &p)?;
    let types: Vec<Value> = svc.catalog.types.iter().map(views::volume_type).collect();
    Ok(Json(json!({"volume_types": types})).into_response())
}

pub(super) async fn show_type(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    let t = if id == "default" {
        svc.catalog.find_type(&svc.config.default_volume_type)
    } else {
        svc.catalog.find_type(&id)
    };
    let t = t.ok_or_else(|| Error::not_found(format!("Volume type {id} could not be found.")))?;
    Ok(Json(json!({"volume_type": views::volume_type(t)})).into_response())
}

pub(super) async fn availability_zones(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    caller(&svc, &headers, &p)?;
    let zones: Vec<Value> =
        svc.catalog.zones.iter().map(|z| json!({"zoneName": z, "zoneState": {"available": true}})).collect();
    Ok(Json(json!({"availabilityZoneInfo": zones})).into_response())
}

/// The extensions a Cinder of this level reports; clients probe a few aliases.
const EXTENSIONS: &[(&str, &str, &str)] = &[
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes", "Extended SnapshotAttributes support."),
    ("os-vol-host-attr", "VolumeHostAttribute", "Expose host as an attribute of a volume."),
    ("os-vol-mig-status-attr", "VolumeMigStatusAttribute", "Expose migration_status as an attribute of a volume."),
    ("os-vol-tenant-attr", "VolumeTenantAttribute", "Expose the internal project_id as an attribute of a volume."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("os-types-manage", "TypesManage", "Types manage support."),
    ("os-volume-actions", "VolumeActions", "Enable volume actions."),
    ("os-volume-transfer", "VolumeTransfer", "Volume transfer management support."),
    ("os-volume-type-access", "VolumeTypeAccess", "Volume type access support."),
];

pub(super) async fn extensions(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    caller(&svc, &headers, &p)?;
    let list: Vec<Value> = EXTENSIONS
        .iter()
        .map(|(alias, name, desc)| {
            json!({"alias": alias, "name": name, "description": desc, "links": [], "updated": "2023-08-31T00:00:00+00:00"})
        })
        .collect();
    Ok(Json(json!({"extensions": list})).into_response())
}

pub(super) async fn quota_set(
    State(svc): State<Services>,
    Path((p, target)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    check_project_id(&target)?;
    let q = parse_query(uri.query())?;
    let usage = query_get(&q, "usage").and_then(parse_bool).unwrap_or(false);
    let u = svc.quota_usage(&target).await?;
    let mut set = Map::new();
    set.insert("id".into(), json!(u.project_id));
    for l in &u.lines {
        let v = if usage {
            json!({"in_use": l.in_use, "limit": l.limit, "reserved": l.reserved, "allocated": 0})
        } else {
            json!(l.limit)
        };
        set.insert(l.resource.clone(), v);
    }
    Ok(Json(json!({"quota_set": set})).into_response())
}
