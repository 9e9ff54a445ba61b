//! EVS disk routes: batch create, list (detail and deprecated summary), show, update, delete.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::list_query::list_request;
use super::views;
use super::EvsError;
use crate::api::common::{
    base_url, caller, next_link, opt_bool, opt_int, opt_nullable_string, opt_string, opt_string_map, parse_json,
    parse_query, take_object,
};
use crate::error::Error;
use crate::service::{CreateVolume, EvsCreate, Services, UpdateVolume, VolumeSource};

type Res = Result<Response, EvsError>;

/// `shareable` is the deprecated string form of `multiattach`.
fn shareable(o: &Map<String, Value>) -> Result<Option<bool>, Error> {
    opt_bool(o, "shareable", "EVS.1054")
}

pub(super) async fn create(State(svc): State<Services>, Path(p): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let mut whole = parse_json(&body)?;
    super::body::check_body_keys(&whole)?;
    let top = whole.as_object_mut().map(std::mem::take).unwrap_or_default();
    super::body::check_bss_create(top.get("bssParam"))?;
    let server_id = opt_string(&top, "server_id", "EVS.5400")?;
    let dedicated_storage_id = super::body::dedicated_storage(top.get("OS-SCH-HNT:scheduler_hints"))?;
    let o = take_object(Value::Object(top), "volume", "EVS.1008")?;
    super::body::check_volume_keys(&o)?;
    let az = opt_string(&o, "availability_zone", "EVS.1036")?;
    let vtype = opt_string(&o, "volume_type", "EVS.1020")?;
    if az.as_deref().is_none_or(str::is_empty) || vtype.as_deref().is_none_or(str::is_empty) {
        return Err(Error::invalid("EVS.2083", "AZ and volume type must not be empty or null!").into());
    }
    let multiattach = opt_bool(&o, "multiattach", "EVS.1054")?.or(shareable(&o)?).unwrap_or(false);
    let req = CreateVolume {
        name: opt_string(&o, "name", "EVS.1003")?,
        description: opt_string(&o, "description", "EVS.1004")?,
        size_gb: opt_int(&o, "size", "EVS.1010")?,
        availability_zone: az,
        volume_type: vtype,
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?.unwrap_or_default(),
        multiattach,
        count: opt_int(&o, "count", "EVS.1021")?.unwrap_or(1),
        source: VolumeSource {
            snapshot_id: opt_string(&o, "snapshot_id", "EVS.2045")?,
            source_volid: None,
            // images: EVS clients name the image `imageRef` (Cinder's spelling) or `image_id`.
            image_ref: opt_string(&o, "imageRef", "EVS.2046")?.or(opt_string(&o, "image_id", "EVS.2046")?),
            backup_id: opt_string(&o, "backup_id", "EVS.1006")?,
        },
        client_token: super::client_token::from_headers(&headers)?,
        max_size_gb: crate::service::MAX_SIZE_GB,
        group_id: None,
        manage: None,
        evs: EvsCreate {
            enterprise_project_id: opt_string(&o, "enterprise_project_id", "EVS.5400")?,
            tags: opt_string_map(&o, "tags", "EVS.5400")?.unwrap_or_default(),
            server_id,
            dedicated_storage_id,
            iops: opt_int(&o, "iops", "EVS.2050")?,
            throughput: opt_int(&o, "throughput", "EVS.2050")?,
            rules: true,
        },
    };
    let created = svc.create_volumes(&caller, req).await?;
    let ids: Vec<&str> = created.volume_ids.iter().map(String::as_str).collect();
    Ok(Json(json!({"job_id": created.job_id, "order_id": null, "volume_ids": ids})).into_response())
}

async fn list(svc: &Services, p: &str, uri: &Uri, headers: &HeaderMap, detail: bool) -> Res {
    let caller = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    let (req, limit) = list_request(&caller, &q)?;
    let mut page = svc.list_volumes(&req).await?;
    let more = page.volumes.len() as i64 > limit;
    page.volumes.truncate(limit as usize);
    let base = base_url(svc, headers);
    let items: Vec<Value> = page
        .volumes
        .iter()
        .map(
            |v| if detail { views::volume_detail(&base, &svc.config.node, v) } else { views::volume_summary(&base, v) },
        )
        .collect();
    let mut body = Map::new();
    if detail {
        body.insert("count".into(), json!(page.count.unwrap_or(items.len() as i64)));
    }
    body.insert("volumes".into(), Value::Array(items));
    if let (true, Some(last)) = (more, page.volumes.last()) {
        body.insert("volumes_links".into(), next_link(&base, uri.path(), &q, limit, &last.id));
    }
    Ok(Json(Value::Object(body)).into_response())
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    list(&svc, &p, &uri, &headers, true).await
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    list(&svc, &p, &uri, &headers, false).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let v = svc.get_volume(&caller, &id).await?;
    let base = base_url(&svc, &headers);
    Ok(Json(json!({"volume": views::volume_detail(&base, &svc.config.node, &v)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "volume", "EVS.1001")?;
    let upd = UpdateVolume {
        name: opt_nullable_string(&o, "name", "EVS.1003")?.or(opt_nullable_string(&o, "display_name", "EVS.1003")?),
        description: opt_nullable_string(&o, "description", "EVS.1004")?.or(opt_nullable_string(
            &o,
            "display_description",
            "EVS.1004",
        )?),
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?,
    };
    if matches!(upd.name, None | Some(None)) && matches!(upd.description, None | Some(None)) && upd.metadata.is_none() {
        return Err(Error::invalid("EVS.1007", "volume name and description can not both be empty!").into());
    }
    let v = svc.update_volume(&caller, &id, upd).await?;
    let base = base_url(&svc, &headers);
    // Reference 6.1.4 and the SDK's `UpdateVolumeResponse`: the disk's fields at top level,
    // not wrapped in `volume` (unlike show).
    Ok(Json(views::volume_detail(&base, &svc.config.node, &v)).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let job_id = svc.delete_volume(&caller, &id, false).await?;
    Ok(Json(json!({"job_id": job_id})).into_response())
}
