//! Cinder volume routes: create, list, detail, show, update, delete, and the v1 show.

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::list_query::list_request;
use super::views::{self, Audience, Call, ViewCtx};
use super::CinderError;
use crate::api::common::{
    base_url, caller, next_link, opt_bool, opt_nullable_string, opt_strict_int, opt_string, opt_string_map, parse_json,
    parse_query, query_get, take_object,
};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::service::{Caller, CreateVolume, Services, UpdateVolume, VolumeSource};

type Res = Result<Response, CinderError>;

/// `v2` or `v3`, from the request path.
fn api_of(headers_path: &str) -> &'static str {
    if headers_path.starts_with("/v2/") {
        "v2"
    } else {
        "v3"
    }
}

fn ctx<'a>(svc: &'a Services, caller: &Caller, base: &'a str, api: &'a str, version: ApiVersion) -> ViewCtx<'a> {
    ViewCtx { base, api, version, node: &svc.config.node, audience: Audience::of(caller) }
}

/// First of `name`/`display_name` that is present.
fn name_alias(o: &Map<String, Value>, a: &str, b: &str) -> Result<Option<String>, Error> {
    Ok(opt_string(o, a, "EVS.1003")?.or(opt_string(o, b, "EVS.1003")?))
}

pub(super) async fn create(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let o = take_object(parse_json(&body)?, "volume", "EVS.1008")?;
    let req = CreateVolume {
        name: name_alias(&o, "name", "display_name")?,
        description: name_alias(&o, "description", "display_description")?,
        size_gb: opt_strict_int(&o, "size", "EVS.1010")?,
        availability_zone: opt_string(&o, "availability_zone", "EVS.1036")?,
        volume_type: opt_string(&o, "volume_type", "EVS.1020")?,
        metadata: opt_string_map(&o, "metadata", "EVS.1005")?.unwrap_or_default(),
        multiattach: opt_bool(&o, "multiattach", "EVS.1054")?.unwrap_or(false),
        // evs: `count` makes that many disks, as EVS's 7.1.1 says; the reply shows the first.
        count: opt_strict_int(&o, "count", "EVS.1021")?.unwrap_or(1),
        source: VolumeSource {
            snapshot_id: opt_string(&o, "snapshot_id", "EVS.2045")?,
            // evs: 7.1.1 names the clone source `source_volume_id`; Cinder `source_volid`.
            source_volid: opt_string(&o, "source_volid", "EVS.1002")?.or(opt_string(
                &o,
                "source_volume_id",
                "EVS.1002",
            )?),
            image_ref: opt_string(&o, "imageRef", "EVS.2046")?,
            backup_id: opt_string(&o, "backup_id", "EVS.1006")?,
        },
        client_token: None,
        max_size_gb: crate::service::CINDER_MAX_SIZE_GB,
        // groups: `group_id` joins a generic volume group from 3.13.
        group_id: if version.at_least(13) { opt_string(&o, "group_id", "EVS.5400")? } else { None },
        manage: None,
        evs: Default::default(),
    };
    // evs: a replica source (7.1.1 `source_replica`) needs volume replication, which this
    // service has not: refused rather than making an empty disk.
    if opt_string(&o, "source_replica", "EVS.1002")?.is_some() {
        return Err(Error::invalid(
            "EVS.5400",
            "Invalid input received: source_replica (cloning a replicated volume) is not supported; \
             use source_volid to clone a volume.",
        )
        .into());
    }
    if o.contains_key("source_volid") && o.contains_key("source_volume_id") {
        let (a, b) = (opt_string(&o, "source_volid", "EVS.1002")?, opt_string(&o, "source_volume_id", "EVS.1002")?);
        if a.is_some() && b.is_some() && a != b {
            return Err(Error::invalid(
                "EVS.1016",
                "Invalid input received: source_volid and source_volume_id differ.",
            )
            .into());
        }
    }
    if req.size_gb.is_none() && req.source == VolumeSource::default() {
        return Err(Error::invalid("EVS.1010", "Invalid input received: size is required for an empty volume").into());
    }
    let created = svc.create_volumes(&caller, req).await?;
    let base = base_url(&svc, &headers);
    let c = ctx(&svc, &caller, &base, api_of(uri.path()), version);
    let v = created.volumes.first().ok_or_else(|| Error::internal("create returned no volume"))?;
    Ok((StatusCode::ACCEPTED, Json(json!({"volume": views::volume_detail(&c, v, Call::Write)}))).into_response())
}

async fn list(
    svc: &Services,
    p: &str,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    version: ApiVersion,
    detail: bool,
) -> Res {
    let caller = caller(svc, headers, p)?;
    let q = parse_query(uri.query())?;
    // evs: the reference's v2 list (7.1.4, 7.1.5) takes limit 1 to 1000; Cinder's v3 answers
    // an empty page for 0.
    if api_of(uri.path()) == "v2" && query_get(&q, "limit").is_some_and(|l| l.trim() == "0") {
        return Err(Error::invalid("EVS.1023", "invalid filter limit! limit must be 1 to 1000.").into());
    }
    let (mut req, limit) = list_request(&caller, &q)?;
    req.with_count = req.with_count && version.at_least(45);
    // groups: Cinder filters by group_id from 3.10 and ignores it before.
    if !version.at_least(10) {
        req.filter.group_id = None;
    }
    let mut page = svc.list_volumes(&req).await?;
    // Cinder links to a next page whenever this one is full, even if nothing follows.
    let more = page.volumes.len() as i64 >= limit;
    page.volumes.truncate(limit as usize);
    let base = base_url(svc, headers);
    let api = api_of(uri.path());
    let c = ctx(svc, &caller, &base, api, version);
    let items: Vec<Value> = page
        .volumes
        .iter()
        .map(|v| if detail { views::volume_detail(&c, v, Call::Read) } else { views::volume_summary(&c, v) })
        .collect();
    let mut body = Map::new();
    body.insert("volumes".into(), Value::Array(items));
    if let (true, Some(last)) = (more, page.volumes.last()) {
        body.insert("volumes_links".into(), next_link(&base, uri.path(), &q, limit, &last.id));
    }
    if let Some(n) = page.count {
        body.insert("count".into(), json!(n));
    }
    Ok(Json(Value::Object(body)).into_response())
}

pub(super) async fn list_summary(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
    _q: RawQuery,
) -> Res {
    list(&svc, &p, &uri, &headers, version, false).await
}

pub(super) async fn list_detail(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    list(&svc, &p, &uri, &headers, version, true).await
}

pub(super) async fn show(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let v = svc.get_volume(&caller, &id).await?;
    let base = base_url(&svc, &headers);
    let c = ctx(&svc, &caller, &base, api_of(uri.path()), version);
    Ok(Json(json!({"volume": views::volume_detail(&c, &v, Call::Read)})).into_response())
}

pub(super) async fn show_v1(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let v = svc.get_volume(&caller, &id).await?;
    Ok(Json(json!({"volume": views::volume_v1(&svc.config.node, &v)})).into_response())
}

pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    version: ApiVersion,
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
    let v = svc.update_volume(&caller, &id, upd).await?;
    let base = base_url(&svc, &headers);
    let c = ctx(&svc, &caller, &base, api_of(uri.path()), version);
    Ok(Json(json!({"volume": views::volume_detail(&c, &v, Call::Write)})).into_response())
}

pub(super) async fn delete(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Res {
    let caller = caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let cascade = query_get(&q, "cascade").and_then(crate::api::common::parse_bool).unwrap_or(false);
    svc.delete_volume(&caller, &id, cascade).await?;
    Ok(StatusCode::ACCEPTED.into_response())
}
