//! manage: `POST /os-volume-manage`, `POST /os-snapshot-manage` and the manageable volumes
//! list (3.8 `GET /manageable_volumes[/detail]`, v2's `GET /os-volume-manage[/detail]`), all
//! admin-only as in Cinder. `os-unmanage` is a volume and snapshot action (`actions.rs`).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::actions::reject_unknown;
use super::views::{self, Audience, Call, SnapshotView, ViewCtx};
use super::CinderError;
use crate::api::common::{
    base_url, caller, opt_bool, opt_string, opt_string_map, parse_json, parse_query, query_get, take_object,
};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::GIB;
use crate::service::manage::source_name_of;
use crate::service::{ManageSnapshot, ManageVolume, Services};

type Res = Result<Response, CinderError>;

fn api_of(uri: &Uri) -> &'static str {
    if uri.path().starts_with("/v2/") {
        "v2"
    } else {
        "v3"
    }
}

/// The `ref` object of a manage body (required).
fn reference(o: &Map<String, Value>) -> Result<String, Error> {
    match o.get("ref") {
        Some(Value::Object(r)) => source_name_of(r),
        _ => Err(Error::invalid("EVS.5400", "Invalid input received: 'ref' is a required property")),
    }
}

/// `POST /os-volume-manage`.
pub(super) async fn manage_volume(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "volume", "EVS.5400")?;
    reject_unknown(
        &o,
        &[
            "host",
            "cluster",
            "ref",
            "name",
            "display_name",
            "description",
            "display_description",
            "volume_type",
            "availability_zone",
            "bootable",
            "metadata",
        ],
    )?;
    if o.get("cluster").is_some_and(|c| !c.is_null()) {
        return Err(Error::invalid("EVS.5400", "Clusters are not supported: give a host.").into());
    }
    let host = opt_string(&o, "host", "EVS.5400")?
        .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input received: 'host' is a required property"))?;
    let req = ManageVolume {
        host,
        source_name: reference(&o)?,
        name: opt_string(&o, "name", "EVS.1003")?.or(opt_string(&o, "display_name", "EVS.1003")?),
        description: opt_string(&o, "description", "EVS.1004")?.or(opt_string(&o, "display_description", "EVS.1004")?),
        volume_type: opt_string(&o, "volume_type", "EVS.1020")?,
        availability_zone: opt_string(&o, "availability_zone", "EVS.1036")?,
        bootable: opt_bool(&o, "bootable", "EVS.5400")?.unwrap_or(false),
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?.unwrap_or_default(),
    };
    let v = svc.manage_volume(&c, req).await?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx { base: &base, api: api_of(&uri), version, node: &svc.config.node, audience: Audience::of(&c) };
    Ok((StatusCode::ACCEPTED, Json(json!({"volume": views::volume_detail(&ctx, &v, Call::Write)}))).into_response())
}

/// `POST /os-snapshot-manage`. The reply is Cinder's v2 snapshot view whatever the
/// microversion (its snapshot_manage extension renders with the v2 builder).
pub(super) async fn manage_snapshot(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let c = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "snapshot", "EVS.5400")?;
    reject_unknown(
        &o,
        &["volume_id", "ref", "name", "display_name", "description", "display_description", "metadata"],
    )?;
    let volume_id = opt_string(&o, "volume_id", "EVS.1002")?
        .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input received: 'volume_id' is a required property"))?;
    let req = ManageSnapshot {
        volume_id,
        source_name: reference(&o)?,
        name: opt_string(&o, "name", "EVS.1003")?.or(opt_string(&o, "display_name", "EVS.1003")?),
        description: opt_string(&o, "description", "EVS.1004")?.or(opt_string(&o, "display_description", "EVS.1004")?),
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?.unwrap_or_default(),
    };
    let snap = svc.manage_snapshot(&c, req).await?;
    let base = base_url(&svc, &headers);
    let ctx = ViewCtx {
        base: &base,
        api: api_of(&uri),
        version: ApiVersion(0),
        node: &svc.config.node,
        audience: Audience::of(&c),
    };
    Ok((StatusCode::ACCEPTED, Json(json!({"snapshot": views::snapshot(&ctx, &snap, SnapshotView::Written)})))
        .into_response())
}

async fn manageable(svc: &Services, p: &str, uri: &Uri, headers: &HeaderMap, version: ApiVersion, detail: bool) -> Res {
    if uri.path().starts_with("/v3/") {
        super::summary::require(version, 8)?;
    }
    let _ = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let host = query_get(&q, "host")
        .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input received: the host query parameter is required"))?;
    let offset: usize = match query_get(&q, "offset") {
        Some(o) => o.parse().map_err(|_| Error::invalid("EVS.5400", format!("Invalid offset {o:?}")))?,
        None => 0,
    };
    let limit: usize = match query_get(&q, "limit") {
        Some(l) => l.parse().map_err(|_| Error::invalid("EVS.5400", format!("Invalid limit {l:?}")))?,
        None => usize::MAX,
    };
    let items = svc.list_manageable_volumes(host).await?;
    let out: Vec<Value> = items
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|m| {
            let mut o = json!({
                "reference": {"source-name": m.name},
                "size": m.size_bytes.div_ceil(GIB),
                "safe_to_manage": m.reason_not_safe.is_none(),
            });
            if detail {
                o["reason_not_safe"] = json!(m.reason_not_safe);
                o["cinder_id"] = Value::Null;
                o["extra_info"] = Value::Null;
            }
            o
        })
        .collect();
    Ok(Json(json!({"manageable-volumes": out})).into_response())
}

/// `GET /manageable_volumes` (3.8) and v2's `GET /os-volume-manage`.
pub(super) async fn list_manageable(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    manageable(&svc, &p, &uri, &headers, version, false).await
}

/// `GET /manageable_volumes/detail` (3.8) and v2's `GET /os-volume-manage/detail`.
pub(super) async fn list_manageable_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    manageable(&svc, &p, &uri, &headers, version, true).await
}
