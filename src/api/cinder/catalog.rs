//! Cinder catalog routes: volume types, availability zones, extensions, quota usage.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::views::{self, Audience};
use super::CinderError;
use crate::api::common::caller;
use crate::service::Services;

type Res = Result<Response, CinderError>;

pub(super) async fn list_types(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let types: Vec<Value> = svc.visible_types(&c).iter().map(|t| views::volume_type(Audience::of(&c), t)).collect();
    Ok(Json(json!({"volume_types": types})).into_response())
}

pub(super) async fn availability_zones(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    caller(&svc, &headers, &p)?;
    // A zone is available while one of its pools answers a capacity query.
    let zones: Vec<Value> = svc
        .catalog
        .zones
        .iter()
        .map(|z| {
            let up = svc.pools.values().any(|p| p.config.availability_zone == *z && p.driver.capacity().is_ok());
            json!({"zoneName": z, "zoneState": {"available": up}})
        })
        .collect();
    Ok(Json(json!({"availabilityZoneInfo": zones})).into_response())
}

/// The extensions a Cinder of this level reports; clients probe a few aliases.
///
/// evs: every alias of the reference's list (7.1.16) that we serve is here; the two we do not
/// serve are left out: `backups` (no backup service) and `os-volume-encryption-metadata` (no
/// `volumes/{id}/encryption`: volumes are not encrypted by this service).
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
    // qos: QoS specs (records only).
    ("qos-specs", "Qos_specs_manage", "QoS specs support."),
    // services: operator APIs.
    ("os-services", "Services", "Services support."),
    ("os-extended-services", "ExtendedServices", "Extended services support."),
    ("os-hosts", "Hosts", "Admin-only host administration."),
    ("scheduler-stats", "Scheduler_stats", "Scheduler stats support."),
    ("capabilities", "Capabilities", "Capabilities support."),
    // manage: adopting existing storage.
    ("os-volume-manage", "VolumeManage", "Allows existing backend storage to be 'managed' by Cinder."),
    ("os-snapshot-manage", "SnapshotManage", "Allows existing backend storage to be 'managed' by Cinder."),
    ("os-volume-unmanage", "VolumeUnmanage", "Enable volume unmanage operation."),
    ("os-snapshot-unmanage", "SnapshotUnmanage", "Enable volume unmanage operation."),
    // evs: the rest of the reference's list (7.1.16) that is served.
    ("OS-SCH-HNT", "SchedulerHints", "Pass arbitrary key/value pairs to the scheduler."),
    ("os-types-extra-specs", "TypesExtraSpecs", "Type extra specs support."),
    ("os-snapshot-actions", "SnapshotActions", "Enable snapshot manager actions."),
    ("os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."),
    ("encryption", "VolumeTypeEncryption", "Encryption support for volume types."),
    ("os-image-create", "CreateVolumeExtension", "Allow creating a volume from an image in the Create Volume v1 API."),
    ("os-vol-image-meta", "VolumeImageMetadata", "Show image metadata associated with the volume."),
    ("os-quota-class-sets", "QuotaClasses", "Quota classes management support."),
    ("os-admin-actions", "AdminActions", "Enable admin actions."),
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
