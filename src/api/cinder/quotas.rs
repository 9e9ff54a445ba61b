//! Quota routes: `os-quota-sets` (show with `usage`, defaults, update, reset),
//! `os-quota-class-sets`, and `limits`. Changing limits is for admins.

use std::collections::BTreeMap;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::CinderError;
use crate::api::common::{caller, check_project_id, parse_bool, parse_json, parse_query, query_get, take_object};
use crate::error::{Error, ErrorKind};
use crate::service::{Caller, Services, DEFAULT_CLASS};

type Res = Result<Response, CinderError>;

fn admin_only(c: &Caller) -> Result<(), Error> {
    if c.is_admin {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Forbidden, "Policy doesn't allow changing quotas.").with_code("EVS.5403"))
    }
}

/// Only admins may look at another project's quotas.
fn visible(c: &Caller, target: &str) -> Result<(), Error> {
    check_project_id(target)?;
    if c.is_admin || c.project_id == target {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::Forbidden, "Policy doesn't allow showing another project's quotas.")
            .with_code("EVS.5403"))
    }
}

fn limits_body(id: &str, limits: &BTreeMap<String, i64>) -> Map<String, Value> {
    let mut set = Map::new();
    set.insert("id".into(), json!(id));
    for (k, v) in limits {
        set.insert(k.clone(), json!(v));
    }
    set
}

/// The `{"quota_set": {resource: limit}}` body of an update, limits as integers.
fn parse_limits(body: &[u8], key: &str) -> Result<BTreeMap<String, i64>, Error> {
    let o = take_object(parse_json(body)?, key, "EVS.5400")?;
    let mut out = BTreeMap::new();
    for (k, v) in o {
        if k == "id" || k == "tenant_id" {
            continue;
        }
        let n = match &v {
            Value::Number(n) => n.as_i64(),
            Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or_else(|| Error::invalid("EVS.5400", format!("Quota limit for {k} must be an integer, got {v}")))?;
        out.insert(k, n);
    }
    Ok(out)
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, target)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    visible(&c, &target)?;
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

pub(super) async fn defaults(
    State(svc): State<Services>,
    Path((p, target)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    visible(&c, &target)?;
    let limits = svc.class_limits(DEFAULT_CLASS).await?;
    Ok(Json(json!({"quota_set": limits_body(&target, &limits)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, target)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    admin_only(&c)?;
    check_project_id(&target)?;
    let limits = parse_limits(&body, "quota_set")?;
    svc.update_project_quotas(&target, &limits).await?;
    let all = svc.project_limits(&target).await?;
    Ok(Json(json!({"quota_set": limits_body(&target, &all)})).into_response())
}

pub(super) async fn reset(
    State(svc): State<Services>,
    Path((p, target)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    admin_only(&c)?;
    check_project_id(&target)?;
    svc.db.delete_project_quotas(&target).await?;
    Ok(StatusCode::OK.into_response())
}

pub(super) async fn show_class(
    State(svc): State<Services>,
    Path((p, class)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    check_project_id(&class)?;
    let limits = svc.class_limits(&class).await?;
    Ok(Json(json!({"quota_class_set": limits_body(&class, &limits)})).into_response())
}

pub(super) async fn update_class(
    State(svc): State<Services>,
    Path((p, class)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    admin_only(&c)?;
    check_project_id(&class)?;
    let limits = parse_limits(&body, "quota_class_set")?;
    svc.validate_quota_update(&limits)?;
    svc.db.set_class_quotas(&class, &limits).await?;
    let all = svc.class_limits(&class).await?;
    // Cinder's update answers the set without the `id` that show adds.
    let mut set = limits_body(&class, &all);
    set.remove("id");
    Ok(Json(json!({"quota_class_set": set})).into_response())
}

pub(super) async fn limits(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let u = svc.quota_usage(&c.project_id).await?;
    let get = |r: &str| u.lines.iter().find(|l| l.resource == r).map(|l| (l.in_use, l.limit)).unwrap_or((0, -1));
    let (vu, vl) = get("volumes");
    let (gu, gl) = get("gigabytes");
    let (su, sl) = get("snapshots");
    let (bu, bl) = get("backups");
    let (bgu, bgl) = get("backup_gigabytes");
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "totalVolumesUsed": vu, "maxTotalVolumes": vl,
        "totalGigabytesUsed": gu, "maxTotalVolumeGigabytes": gl,
        "totalSnapshotsUsed": su, "maxTotalSnapshots": sl,
        "totalBackupsUsed": bu, "maxTotalBackups": bl,
        "totalBackupGigabytesUsed": bgu, "maxTotalBackupGigabytes": bgl,
    }}}))
    .into_response())
}
