//! images: the Glance v2 image API served under `/image` (the identity catalog's `image`
//! entry points here): the version document, images (create, list, show, JSON-patch update,
//! delete), tags, data upload (streamed to the pool's image area, never held in memory) and
//! download (byte-exact, `Content-MD5`), and the image schemas.
//!
//! Errors use the body Glance's webob faults give JSON clients:
//! `{"code": "404 Not Found", "title": "Not Found", "message": …}`.
//! Routes name their policy actions (`image:images:*`) as the other APIs do; the caller acts in
//! its token's project (Glance URLs carry no project). In `noauth` mode the project is the
//! `X-Project-Id` header.

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures_util::StreamExt;
use serde_json::{json, Map, Value};

use super::common::{base_url, parse_json, parse_query};
use super::guard::{delete_as, get_as, post_as, put_as};
use crate::config::AuthMode;
use crate::error::{Error, ErrorKind};
use crate::model::Image;
use crate::service::images::ImageQuery;
use crate::service::{Caller, Services};

/// The `PATCH` media type (Glance 2.1 JSON patch).
pub const JSON_PATCH: &str = "application/openstack-images-v2.1-json-patch";

/// True for paths of this API.
pub fn is_image_path(path: &str) -> bool {
    path == "/image" || path.starts_with("/image/")
}

/// True for the one route whose body is streamed rather than buffered.
pub fn is_upload(method: &axum::http::Method, path: &str) -> bool {
    method == axum::http::Method::PUT && is_image_path(path) && path.ends_with("/file")
}

/// Version discovery paths (no authentication).
pub fn is_public(path: &str) -> bool {
    matches!(path, "/image" | "/image/" | "/image/versions")
}

pub(super) fn routes() -> Router<Services> {
    Router::new()
        .route("/image", get(versions))
        .route("/image/", get(versions))
        .route("/image/versions", get(versions))
        .route("/image/v2/images", get_as("image:images:list", list).merge(post_as("image:images:create", create)))
        .route(
            "/image/v2/images/{id}",
            get_as("image:images:get", show)
                .merge(delete_as("image:images:delete", delete))
                .merge(super::guard::patch_as("image:images:update", patch)),
        )
        .route(
            "/image/v2/images/{id}/file",
            put_as("image:images:upload", upload).merge(get_as("image:images:download", download)),
        )
        .route(
            "/image/v2/images/{id}/tags/{tag}",
            put_as("image:images:update", add_tag).merge(delete_as("image:images:update", delete_tag)),
        )
        .route("/image/v2/images/{id}/actions/deactivate", post_as("image:images:deactivate", deactivate))
        .route("/image/v2/images/{id}/actions/reactivate", post_as("image:images:reactivate", reactivate))
        .route("/image/v2/schemas/image", get_as("image:images:get", schema_image))
        .route("/image/v2/schemas/images", get_as("image:images:list", schema_images))
}

/// A domain error in Glance's wire format.
pub struct ImageError(pub Error);

impl From<Error> for ImageError {
    fn from(e: Error) -> Self {
        ImageError(e)
    }
}

impl IntoResponse for ImageError {
    fn into_response(self) -> Response {
        let e = self.0;
        let status = match e.kind {
            ErrorKind::Invalid | ErrorKind::NoSpace => StatusCode::BAD_REQUEST,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Quota | ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::Unsupported => StatusCode::NOT_IMPLEMENTED,
            ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if e.kind == ErrorKind::Internal {
            tracing::error!(error = %e, "internal error");
        }
        let title = status.canonical_reason().unwrap_or("Error");
        let body =
            json!({"code": format!("{} {title}", status.as_u16()), "title": title, "message": e.public_message()});
        (status, Json(body)).into_response()
    }
}

type Res = Result<Response, ImageError>;

/// The caller: the token's project (keystone) or `X-Project-Id` (noauth).
fn caller(svc: &Services, headers: &HeaderMap) -> Result<Caller, Error> {
    if svc.config.auth.mode == AuthMode::Keystone {
        let id = super::auth::current_identity()
            .ok_or_else(|| crate::service::identity::auth_required("Authentication required."))?;
        if !super::guard::authorized() {
            return Err(Error::new(ErrorKind::Forbidden, "Policy check failed: this route names no policy action."));
        }
        return Ok(Caller {
            project_id: id.project_id.clone(),
            user_id: Some(id.user_id.clone()),
            is_admin: id.is_admin(),
            roles: id.roles.clone(),
        });
    }
    let project = headers
        .get("x-project-id")
        .or_else(|| headers.get("x-tenant-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| Error::new(ErrorKind::Invalid, "noauth mode: give the project in the X-Project-Id header."))?;
    super::common::check_project_id(project)?;
    Ok(Caller {
        project_id: project.to_string(),
        user_id: headers.get("x-user-id").and_then(|v| v.to_str().ok()).map(str::to_string),
        is_admin: true,
        roles: vec![crate::model::Role::Admin],
    })
}

async fn versions(State(svc): State<Services>, headers: HeaderMap) -> Response {
    let base = base_url(&svc, &headers);
    let v = |id: &str, status: &str| json!({"id": id, "status": status, "links": [{"rel": "self", "href": format!("{base}/image/v2/")}]});
    let body = json!({"versions": [
        v("v2.16", "CURRENT"), v("v2.15", "SUPPORTED"), v("v2.9", "SUPPORTED"), v("v2.7", "SUPPORTED"),
        v("v2.6", "SUPPORTED"), v("v2.5", "SUPPORTED"), v("v2.4", "SUPPORTED"), v("v2.3", "SUPPORTED"),
        v("v2.2", "SUPPORTED"), v("v2.1", "SUPPORTED"), v("v2.0", "SUPPORTED"),
    ]});
    (StatusCode::MULTIPLE_CHOICES, Json(body)).into_response()
}

/// Glance prints times as `2024-01-01T00:00:00Z`.
fn glance_time(t: &str) -> String {
    format!("{}Z", t.get(..19).unwrap_or(t))
}

/// The image view (core fields, then custom properties at the top level).
pub fn image_view(i: &Image) -> Value {
    let mut o = Map::new();
    for (k, v) in &i.properties {
        o.insert(k.clone(), json!(v));
    }
    let core = json!({
        "id": i.id,
        "name": i.name,
        "status": i.status.as_str(),
        "disk_format": i.disk_format,
        "container_format": i.container_format,
        "size": i.size,
        "virtual_size": i.virtual_size,
        "checksum": i.checksum,
        "os_hash_algo": i.os_hash_algo,
        "os_hash_value": i.os_hash_value,
        "visibility": i.visibility,
        "protected": i.protected,
        "os_hidden": i.os_hidden,
        "owner": i.owner,
        "min_disk": i.min_disk,
        "min_ram": i.min_ram,
        "tags": i.tags,
        "created_at": glance_time(&i.created_at),
        "updated_at": glance_time(&i.updated_at),
        "self": format!("/v2/images/{}", i.id),
        "file": format!("/v2/images/{}/file", i.id),
        "schema": "/v2/schemas/image",
    });
    if let Value::Object(c) = core {
        o.extend(c);
    }
    Value::Object(o)
}

fn location_header(resp: &mut Response, i: &Image, base: &str) {
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/image/v2/images/{}", i.id)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
}

async fn create(State(svc): State<Services>, headers: HeaderMap, body: Bytes) -> Res {
    let caller = caller(&svc, &headers)?;
    let body = if body.iter().all(u8::is_ascii_whitespace) { json!({}) } else { parse_json(&body)? };
    let Value::Object(o) = body else {
        return Err(Error::new(ErrorKind::Invalid, "Malformed request body: an object is required").into());
    };
    let img = svc.create_image(&caller, o).await?;
    let mut resp = (StatusCode::CREATED, Json(image_view(&img))).into_response();
    location_header(&mut resp, &img, &base_url(&svc, &headers));
    Ok(resp)
}

async fn show(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    let img = svc.get_image_for(&caller, &id).await?;
    Ok(Json(image_view(&img)).into_response())
}

async fn list(State(svc): State<Services>, uri: Uri, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    let raw = parse_query(uri.query())?;
    let mut q = ImageQuery::default();
    let mut keys = Vec::new();
    let mut dirs = Vec::new();
    for (k, v) in &raw {
        match k.as_str() {
            "limit" => {
                q.limit = Some(v.parse().ok().filter(|n: &i64| *n >= 0).ok_or_else(|| {
                    Error::new(ErrorKind::Invalid, format!("Invalid limit value {v}: a non-negative integer"))
                })?)
            }
            "marker" => q.marker = Some(v.clone()),
            "sort_key" => keys.push(v.clone()),
            "sort_dir" => dirs.push(match v.as_str() {
                "asc" => false,
                "desc" => true,
                _ => return Err(Error::new(ErrorKind::Invalid, format!("Invalid sort direction: {v}")).into()),
            }),
            "sort" => {
                for part in v.split(',') {
                    let (key, dir) = part.split_once(':').unwrap_or((part, "desc"));
                    let desc = match dir {
                        "asc" => false,
                        "desc" => true,
                        _ => {
                            return Err(Error::new(ErrorKind::Invalid, format!("Invalid sort direction: {dir}")).into())
                        }
                    };
                    q.sort.push((key.trim().to_string(), desc));
                }
            }
            _ => q.filters.push((k.clone(), v.clone())),
        }
    }
    for (i, k) in keys.into_iter().enumerate() {
        let desc = dirs.get(i).or(dirs.last()).copied().unwrap_or(true);
        q.sort.push((k, desc));
    }
    let (page, more) = svc.list_images_for(&caller, &q).await?;
    let mut body = json!({
        "images": page.iter().map(image_view).collect::<Vec<_>>(),
        "schema": "/v2/schemas/images",
        "first": "/v2/images",
    });
    if more {
        if let Some(last) = page.last() {
            let mut next: Vec<(String, String)> = raw.into_iter().filter(|(k, _)| k != "marker").collect();
            next.push(("marker".into(), last.id.clone()));
            let qs = serde_urlencoded::to_string(&next).unwrap_or_default();
            body["next"] = json!(format!("/v2/images?{qs}"));
        }
    }
    Ok(Json(body).into_response())
}

async fn patch(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap, body: Bytes) -> Res {
    let caller = caller(&svc, &headers)?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.split(';').next().map(str::trim) != Some(JSON_PATCH) {
        return Err(Error::new(
            ErrorKind::UnsupportedMediaType,
            format!("Unsupported Content-Type: PATCH takes {JSON_PATCH}"),
        )
        .into());
    }
    let Value::Array(ops) = parse_json(&body)? else {
        return Err(
            Error::new(ErrorKind::Invalid, "Malformed request body: a JSON patch is a list of operations").into()
        );
    };
    let img = svc.patch_image(&caller, &id, ops).await?;
    Ok(Json(image_view(&img)).into_response())
}

async fn delete(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    svc.delete_image(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn deactivate(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    svc.set_image_activation(&caller, &id, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reactivate(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    svc.set_image_activation(&caller, &id, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn add_tag(State(svc): State<Services>, Path((id, tag)): Path<(String, String)>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    svc.set_image_tag(&caller, &id, &tag, true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn delete_tag(State(svc): State<Services>, Path((id, tag)): Path<(String, String)>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    svc.set_image_tag(&caller, &id, &tag, false).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// Bytes gathered before one write to disk.
const WRITE_CHUNK: usize = 1 << 20;

/// `PUT /v2/images/{id}/file`: stream the body to a temporary file (hashing it), within the
/// size allowance and the idle timeout, then let the service inspect and activate it.
async fn upload(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap, body: Body) -> Res {
    let caller = caller(&svc, &headers)?;
    let ctype = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if ctype.split(';').next().map(str::trim) != Some("application/octet-stream") {
        return Err(
            Error::new(ErrorKind::UnsupportedMediaType, "Image data must be sent as application/octet-stream").into()
        );
    }
    let allowance = svc.upload_allowance(&caller).await?;
    let declared =
        headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    let too_large =
        || Error::new(ErrorKind::PayloadTooLarge, format!("Image data exceeds the limit of {allowance} bytes."));
    if declared.is_some_and(|n| n > allowance) {
        return Err(too_large().into());
    }
    let (img, mut file) = svc.begin_upload(&caller, &id).await?;
    let idle = std::time::Duration::from_secs(svc.config.images.upload_idle_timeout_seconds.max(1));
    let mut stream = body.into_data_stream();
    let mut buf: Vec<u8> = Vec::with_capacity(WRITE_CHUNK);
    let failed: Option<Error> = loop {
        let next = match tokio::time::timeout(idle, stream.next()).await {
            Err(_) => break Some(Error::new(ErrorKind::RequestTimeout, "The image data stopped arriving.")),
            Ok(n) => n,
        };
        let done = match next {
            None => true,
            Some(Err(e)) => {
                break Some(Error::new(ErrorKind::Invalid, format!("The image data could not be read: {e}")))
            }
            Some(Ok(chunk)) => {
                if file.hasher.len() + (buf.len() + chunk.len()) as u64 > allowance {
                    break Some(too_large());
                }
                buf.extend_from_slice(&chunk);
                false
            }
        };
        if buf.len() >= WRITE_CHUNK || (done && !buf.is_empty()) {
            let data = std::mem::replace(&mut buf, Vec::with_capacity(WRITE_CHUNK));
            let path = file.path.clone();
            let written = tokio::task::spawn_blocking(move || {
                let r = file.write(&data);
                (file, r)
            })
            .await;
            match written {
                Ok((f, Ok(()))) => file = f,
                Ok((f, Err(e))) => {
                    file = f;
                    break Some(e);
                }
                Err(e) => {
                    svc.abort_upload(&id, Some(path)).await;
                    return Err(Error::internal(format!("upload writer failed: {e}")).into());
                }
            }
        }
        if done {
            break None;
        }
    };
    if let Some(e) = failed {
        let path = file.path.clone();
        drop(file);
        svc.abort_upload(&id, Some(path)).await;
        return Err(e.into());
    }
    svc.finish_upload(&img, file).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /v2/images/{id}/file`: the bytes as uploaded, with `Content-MD5` (the md5 hex, as
/// Glance sends it); 204 for an image without data.
async fn download(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Res {
    let caller = caller(&svc, &headers)?;
    let (img, path) = svc.image_data(&caller, &id).await?;
    let Some(path) = path else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let file =
        tokio::fs::File::open(&path).await.map_err(|e| Error::internal(format!("open {}: {e}", path.display())))?;
    let len = file.metadata().await.map_err(|e| Error::internal(format!("stat: {e}")))?.len();
    let stream = futures_util::stream::unfold(Some(file), |state| async move {
        let mut f = state?;
        let mut buf = vec![0u8; 1 << 20];
        match tokio::io::AsyncReadExt::read(&mut f, &mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok::<Bytes, std::io::Error>(Bytes::from(buf)), Some(f)))
            }
            Err(e) => Some((Err(e), None)),
        }
    });
    let mut resp = Response::new(Body::from_stream(stream));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(md5) = img.checksum.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
        h.insert("content-md5", md5);
    }
    Ok(resp)
}

fn image_schema() -> Value {
    let s = |desc: &str| json!({"type": ["null", "string"], "description": desc});
    json!({
        "name": "image",
        "additionalProperties": {"type": "string"},
        "properties": {
            "id": {"type": "string", "description": "An identifier for the image", "pattern": "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"},
            "name": {"type": ["null", "string"], "maxLength": 255, "description": "Descriptive name for the image"},
            "status": {"type": "string", "readOnly": true, "description": "Status of the image", "enum": ["queued", "saving", "active", "killed", "deleted", "uploading", "importing", "pending_delete", "deactivated"]},
            "visibility": {"type": "string", "description": "Scope of image accessibility", "enum": ["community", "public", "private", "shared"]},
            "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
            "os_hidden": {"type": "boolean", "description": "If true, image will not appear in default image list response."},
            "checksum": {"type": ["null", "string"], "readOnly": true, "maxLength": 32, "description": "md5 hash of image contents."},
            "os_hash_algo": {"type": ["null", "string"], "readOnly": true, "maxLength": 64, "description": "Algorithm to calculate the os_hash_value"},
            "os_hash_value": {"type": ["null", "string"], "readOnly": true, "maxLength": 128, "description": "Hexdigest of the image contents using the algorithm specified by the os_hash_algo"},
            "owner": {"type": ["null", "string"], "maxLength": 255, "description": "Owner of the image"},
            "size": {"type": ["null", "integer"], "readOnly": true, "description": "Size of image file in bytes"},
            "virtual_size": {"type": ["null", "integer"], "readOnly": true, "description": "Virtual size of image in bytes"},
            "container_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "bare", "ovf", "ova", "docker"], "description": "Format of the container"},
            "disk_format": {"type": ["null", "string"], "enum": [null, "ami", "ari", "aki", "vhd", "vhdx", "vmdk", "raw", "qcow2", "vdi", "iso"], "description": "Format of the disk"},
            "created_at": {"type": "string", "readOnly": true, "description": "Date and time of image registration"},
            "updated_at": {"type": "string", "readOnly": true, "description": "Date and time of the last image modification"},
            "tags": {"type": "array", "items": {"type": "string", "maxLength": 255}, "description": "List of strings related to the image"},
            "direct_url": {"type": "string", "readOnly": true, "description": "URL to access the image file kept in external store"},
            "min_ram": {"type": "integer", "description": "Amount of ram (in MB) required to boot image."},
            "min_disk": {"type": "integer", "description": "Amount of disk space (in GB) required to boot image."},
            "self": {"type": "string", "readOnly": true, "description": "An image self url"},
            "file": {"type": "string", "readOnly": true, "description": "An image file url"},
            "schema": {"type": "string", "readOnly": true, "description": "An image schema url"},
            "locations": {"type": "array", "items": {"type": "object"}, "description": "A set of URLs to access the image file kept in external store"},
            "kernel_id": s("ID of image stored in Glance that should be used as the kernel when booting an AMI-style image."),
            "ramdisk_id": s("ID of image stored in Glance that should be used as the ramdisk when booting an AMI-style image."),
            "instance_uuid": s("Metadata which can be used to record which instance this image is associated with."),
            "architecture": s("Operating system architecture"),
            "os_distro": s("Common name of operating system distribution"),
            "os_version": s("Operating system version as specified by the distributor"),
        },
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    })
}

async fn schema_image(State(svc): State<Services>, headers: HeaderMap) -> Res {
    caller(&svc, &headers)?;
    Ok(Json(image_schema()).into_response())
}

async fn schema_images(State(svc): State<Services>, headers: HeaderMap) -> Res {
    caller(&svc, &headers)?;
    Ok(Json(json!({
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }))
    .into_response())
}
