//! images: the built-in image service's rules (Glance v2 semantics): which fields a caller may
//! set, visibility, listing filters and paging, uploads (streamed to the pool's image area,
//! hashed on the way, inspected before the image turns `active`) and deletes.
//!
//! Status machine: `queued` → (upload starts) `saving` → `active`; a refused or broken upload
//! goes back to `queued` (the client may retry, as Glance restores the image); a job that
//! cannot write an image leaves it `killed`. A crash during an upload leaves `saving` with no
//! job, which the next start turns back into `queued` (and the partial file is removed).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Map, Value};
use uuid::Uuid;

use super::{Caller, PoolRuntime, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::image::{qemu, ImageArea, UploadFile};
use crate::model::{now_timestamp, Image, ImageStatus, CONTAINER_FORMATS, DISK_FORMATS, VISIBILITIES};

/// Fields the image service owns; a request setting them is refused (Glance: 403).
const READ_ONLY: [&str; 13] = [
    "id",
    "status",
    "checksum",
    "os_hash_algo",
    "os_hash_value",
    "size",
    "virtual_size",
    "created_at",
    "updated_at",
    "file",
    "self",
    "schema",
    "direct_url",
];

/// Names that are neither core fields nor allowed as custom properties.
const RESERVED: [&str; 4] = ["deleted", "deleted_at", "locations", "location"];

/// Largest custom property value, bytes (Glance's column is 65535).
const MAX_PROPERTY_BYTES: usize = 65535;

/// Custom properties per image (Glance's image_property_quota default).
const MAX_PROPERTIES: usize = 128;

/// Tags per image (Glance's image_tag_quota default).
const MAX_TAGS: usize = 128;

fn forbidden(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Forbidden, msg)
}

fn bad(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, msg)
}

fn image_not_found(id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("No image found with ID {id}"))
}

/// Limits of one `qemu-img info` run, from the configuration.
pub fn info_limits(svc: &Services) -> qemu::Limits {
    let c = &svc.config.images;
    qemu::Limits { cpu_seconds: c.info_cpu_seconds, address_space_bytes: c.info_address_space_mib << 20 }
}

/// Limits of one `qemu-img convert` run, from the configuration.
pub fn convert_limits(svc: &Services) -> qemu::Limits {
    let c = &svc.config.images;
    qemu::Limits { cpu_seconds: c.convert_cpu_seconds, address_space_bytes: c.convert_address_space_mib << 20 }
}

/// The list query, parsed.
#[derive(Debug, Default, Clone)]
pub struct ImageQuery {
    /// `limit` (default 25, at most 1000).
    pub limit: Option<i64>,
    /// `marker`: the last id of the previous page.
    pub marker: Option<String>,
    /// `(key, descending)` pairs; default `created_at` descending then `id`.
    pub sort: Vec<(String, bool)>,
    /// Every other parameter: a filter (`name`, `status`, `tag`, custom properties…).
    pub filters: Vec<(String, String)>,
}

/// The smallest volume, GiB, that holds image `i` (its virtual size and `min_disk`).
pub fn image_min_gb(i: &Image) -> i64 {
    let virt = i.virtual_size.or(i.size).unwrap_or(0).max(0) as u64;
    (virt.div_ceil(crate::model::GIB) as i64).max(i.min_disk).max(1)
}

/// Refuse a volume of `size_gb` too small for image `i` (Cinder's messages; EVS.1010).
pub fn check_image_fits(i: &Image, size_gb: i64) -> Result<()> {
    if size_gb < i.min_disk {
        return Err(Error::invalid(
            "EVS.1010",
            format!(
                "Invalid input received: Volume size {size_gb}GB cannot be smaller than the image minDisk size {}GB.",
                i.min_disk
            ),
        ));
    }
    let virt = i.virtual_size.or(i.size).unwrap_or(0).max(0) as u64;
    let need = virt.div_ceil(crate::model::GIB) as i64;
    if size_gb < need {
        return Err(Error::invalid(
            "EVS.1010",
            format!("Invalid input received: Size of specified image {need}GB is larger than volume size {size_gb}GB."),
        ));
    }
    Ok(())
}

/// Cinder's `volume_image_metadata` of a volume made from image `i`: the image's core fields
/// Cinder copies, then its custom properties.
pub fn volume_image_metadata(i: &Image) -> BTreeMap<String, String> {
    let mut m: BTreeMap<String, String> = i.properties.clone();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    };
    put("image_id", Some(i.id.clone()));
    put("image_name", i.name.clone());
    put("checksum", i.checksum.clone());
    put("disk_format", i.disk_format.clone());
    put("container_format", i.container_format.clone());
    put("min_disk", Some(i.min_disk.to_string()));
    put("min_ram", Some(i.min_ram.to_string()));
    put("size", i.size.map(|s| s.to_string()));
    m
}

impl Services {
    /// The image a volume is created from: visible to `caller` and `active` (EVS.2046 / 400
    /// otherwise, as Cinder answers a bad `imageRef`).
    pub async fn image_for_volume(&self, caller: &Caller, id: &str) -> Result<Image> {
        let img = match self.get_image_for(caller, id).await {
            Ok(i) => i,
            Err(e) if e.kind == ErrorKind::NotFound => {
                return Err(Error::invalid("EVS.2046", "Invalid image identifier or unable to access requested image."))
            }
            Err(e) => return Err(e),
        };
        if img.status != ImageStatus::Active {
            return Err(Error::invalid("EVS.5400", format!("Invalid imageRef provided: image {id} is not active.")));
        }
        Ok(img)
    }

    /// The pool whose directory holds image files (`images.pool`, or the first pool).
    pub fn image_pool(&self) -> Result<&PoolRuntime> {
        let name = if self.config.images.pool.is_empty() {
            self.config.pools.first().map(|p| p.name.as_str()).unwrap_or("")
        } else {
            self.config.images.pool.as_str()
        };
        self.pools.get(name).ok_or_else(|| Error::internal(format!("images.pool {name:?} is not a configured pool")))
    }

    /// The image area of pool `name` (the image's own pool, or any pool's cache).
    pub fn image_area_of(&self, name: &str) -> Result<ImageArea> {
        let p = self.pools.get(name).ok_or_else(|| Error::internal(format!("pool {name} is not configured here")))?;
        Ok(ImageArea::at(&p.config.path))
    }

    /// Image `id` as `caller` sees it: 404 when it does not exist or is not visible.
    pub async fn get_image_for(&self, caller: &Caller, id: &str) -> Result<Image> {
        let img = self.db.get_image(id).await?.ok_or_else(|| image_not_found(id))?;
        if !img.visible_to(&caller.project_id, caller.is_admin) {
            return Err(image_not_found(id));
        }
        Ok(img)
    }

    /// Image `id` if `caller` may change it (owner or admin): 404 when invisible, 403 when
    /// only readable.
    async fn image_to_modify(&self, caller: &Caller, id: &str) -> Result<Image> {
        let img = self.get_image_for(caller, id).await?;
        if img.owner != caller.project_id && !caller.is_admin {
            return Err(forbidden(format!("You are not permitted to modify image {id}.")));
        }
        Ok(img)
    }

    /// `POST /v2/images`: a `queued` image owned by the caller's project.
    pub async fn create_image(&self, caller: &Caller, body: Map<String, Value>) -> Result<Image> {
        let now = now_timestamp();
        let id = match body.get("id") {
            Some(Value::String(s)) => {
                let u = crate::model::parse_uuid(s).ok_or_else(|| bad(format!("Invalid id: {s} is not a UUID")))?;
                u.hyphenated().to_string()
            }
            Some(_) => return Err(bad("Invalid id: must be a string")),
            None => Uuid::new_v4().to_string(),
        };
        let pool = self.image_pool()?.config.name.clone();
        let mut img = Image {
            id: id.clone(),
            owner: caller.project_id.clone(),
            name: None,
            status: ImageStatus::Queued,
            disk_format: None,
            container_format: None,
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            visibility: "shared".into(),
            protected: false,
            os_hidden: false,
            min_disk: 0,
            min_ram: 0,
            pool,
            node: self.config.node.clone(),
            properties: BTreeMap::new(),
            tags: Vec::new(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        for (k, v) in body {
            if k == "id" {
                continue;
            }
            if READ_ONLY.contains(&k.as_str()) {
                return Err(forbidden(format!("Attribute '{k}' is read-only.")));
            }
            set_field(caller, &mut img, &k, Some(v))?;
        }
        self.check_image_quota(caller, 1, 0).await?;
        let mut tx = self.db.begin_write().await?;
        if self.db.get_image(&id).await?.is_some() {
            return Err(Error::conflict("EVS.5409", format!("An image with identifier {id} already exists")));
        }
        tx.insert_image(&img).await?;
        tx.commit().await?;
        Ok(img)
    }

    /// Refuse when `caller`'s project would hold more than `quotas.images` images or
    /// `quotas.image_gigabytes` GiB of image data (config defaults; -1 or absent: unlimited).
    async fn check_image_quota(&self, caller: &Caller, more_images: i64, more_bytes: i64) -> Result<()> {
        let (n, bytes) = self.db.image_usage(&caller.project_id).await?;
        let limit = |k: &str| self.config.quotas.get(k).copied().filter(|l| *l >= 0);
        if let Some(l) = limit("images") {
            if more_images > 0 && n + more_images > l {
                return Err(Error::new(ErrorKind::Quota, format!("Maximum number of images exceeded: {l}")));
            }
        }
        if let Some(l) = limit("image_gigabytes") {
            if more_bytes > 0 && bytes + more_bytes > l << 30 {
                return Err(Error::new(ErrorKind::Quota, format!("Image storage quota of {l} GiB exceeded")));
            }
        }
        Ok(())
    }

    /// Bytes `caller` may still upload: the configured maximum, lowered by the image-bytes
    /// quota.
    pub async fn upload_allowance(&self, caller: &Caller) -> Result<u64> {
        let mut max = self.config.images.max_upload_bytes;
        if let Some(l) = self.config.quotas.get("image_gigabytes").copied().filter(|l| *l >= 0) {
            let (_, used) = self.db.image_usage(&caller.project_id).await?;
            max = max.min(((l << 30) - used).max(0) as u64);
        }
        Ok(max)
    }

    /// `GET /v2/images`: the page and whether a next one may follow.
    pub async fn list_images_for(&self, caller: &Caller, q: &ImageQuery) -> Result<(Vec<Image>, bool)> {
        let all = self.db.list_images(if caller.is_admin { None } else { Some(&caller.project_id) }).await?;
        let visibility = q.filters.iter().find(|(k, _)| k == "visibility").map(|(_, v)| v.as_str());
        if let Some(v) = visibility {
            if v != "all" && !VISIBILITIES.contains(&v) {
                return Err(bad(format!("Invalid visibility value: {v}")));
            }
        }
        let hidden = match q.filters.iter().find(|(k, _)| k == "os_hidden") {
            Some((_, v)) => parse_bool(v).ok_or_else(|| bad(format!("Invalid os_hidden value: {v}")))?,
            None => false,
        };
        let mut out: Vec<Image> = Vec::new();
        for img in all {
            let own = img.owner == caller.project_id;
            let visible = match visibility {
                // Community images are listed only when asked for (Glance), unless owned.
                None => caller.is_admin || own || img.visibility == "public",
                Some("all") => true,
                Some(v) => img.visibility == v,
            };
            if !visible || img.os_hidden != hidden {
                continue;
            }
            if matches_filters(&img, &q.filters)? {
                out.push(img);
            }
        }
        let sort = if q.sort.is_empty() { vec![("created_at".to_string(), true)] } else { q.sort.clone() };
        for (k, _) in &sort {
            if !SORT_KEYS.contains(&k.as_str()) {
                return Err(bad(format!("Invalid sort key: {k}")));
            }
        }
        out.sort_by(|a, b| {
            for (k, desc) in &sort {
                let o = sort_value(a, k).cmp(&sort_value(b, k));
                let o = if *desc { o.reverse() } else { o };
                if o != std::cmp::Ordering::Equal {
                    return o;
                }
            }
            b.id.cmp(&a.id)
        });
        if let Some(m) = &q.marker {
            let pos = out
                .iter()
                .position(|i| &i.id == m)
                .ok_or_else(|| Error::new(ErrorKind::Invalid, format!("marker {m} could not be found.")))?;
            out.drain(..=pos);
        }
        let limit = q.limit.unwrap_or(25).clamp(0, 1000) as usize;
        let more = out.len() > limit;
        out.truncate(limit);
        Ok((out, more && limit > 0))
    }

    /// `PATCH /v2/images/{id}` (JSON patch: `add`, `replace`, `remove` of top-level fields).
    pub async fn patch_image(&self, caller: &Caller, id: &str, ops: Vec<Value>) -> Result<Image> {
        let mut img = self.image_to_modify(caller, id).await?;
        let status = img.status;
        for op in ops {
            let o = op.as_object().ok_or_else(|| bad("Invalid JSON patch: each operation must be an object"))?;
            let kind =
                o.get("op").and_then(Value::as_str).ok_or_else(|| bad("Invalid JSON patch: 'op' is required"))?;
            let path =
                o.get("path").and_then(Value::as_str).ok_or_else(|| bad("Invalid JSON patch: 'path' is required"))?;
            let field = path.strip_prefix('/').ok_or_else(|| bad(format!("Invalid JSON pointer: {path}")))?;
            let field = field.replace("~1", "/").replace("~0", "~");
            if READ_ONLY.contains(&field.as_str()) {
                return Err(forbidden(format!("Attribute '{field}' is read-only.")));
            }
            match kind {
                "add" | "replace" => {
                    let v = o.get("value").cloned().ok_or_else(|| bad("Invalid JSON patch: 'value' is required"))?;
                    if kind == "replace" && !is_core(&field) && !img.properties.contains_key(&field) {
                        return Err(Error::new(ErrorKind::Conflict, format!("Property {field} does not exist.")));
                    }
                    set_field(caller, &mut img, &field, Some(v))?;
                }
                "remove" => {
                    if is_core(&field) {
                        return Err(forbidden(format!("Properties {field} cannot be removed.")));
                    }
                    if img.properties.remove(&field).is_none() {
                        return Err(Error::new(ErrorKind::Conflict, format!("Property {field} does not exist.")));
                    }
                }
                other => return Err(bad(format!("Invalid operation: `{other}`"))),
            }
        }
        img.updated_at = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.update_image_fields(&img, status).await? {
            return Err(Error::conflict("EVS.5409", format!("Image {id} changed status; retry.")));
        }
        tx.commit().await?;
        // images: the cache keys on the image's data, which a PATCH cannot change; nothing to
        // invalidate. The volume-side copy of the metadata is taken at volume creation.
        Ok(img)
    }

    /// `PUT`/`DELETE /v2/images/{id}/tags/{tag}`.
    pub async fn set_image_tag(&self, caller: &Caller, id: &str, tag: &str, add: bool) -> Result<()> {
        let mut img = self.image_to_modify(caller, id).await?;
        let status = img.status;
        if add {
            check_tag(tag)?;
            if !img.tags.iter().any(|t| t == tag) {
                img.tags.push(tag.to_string());
            }
            if img.tags.len() > MAX_TAGS {
                return Err(Error::new(ErrorKind::Quota, format!("Maximum number of tags exceeded: {MAX_TAGS}")));
            }
        } else {
            let before = img.tags.len();
            img.tags.retain(|t| t != tag);
            if before == img.tags.len() {
                return Err(Error::new(ErrorKind::NotFound, format!("Tag {tag} not found")));
            }
        }
        img.updated_at = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.update_image_fields(&img, status).await? {
            return Err(Error::conflict("EVS.5409", format!("Image {id} changed status; retry.")));
        }
        tx.commit().await
    }

    /// `DELETE /v2/images/{id}`: the row goes first, then the file and cache entry (a crash
    /// between leaves a file no row owns, which the next start removes).
    pub async fn delete_image(&self, caller: &Caller, id: &str) -> Result<()> {
        let img = self.image_to_modify(caller, id).await?;
        if img.protected {
            return Err(forbidden(format!("Image {id} is protected and cannot be deleted.")));
        }
        let mut tx = self.db.begin_write().await?;
        tx.delete_image_row(id).await?;
        tx.commit().await?;
        if let Some(u) = crate::model::parse_uuid(&img.id) {
            let area = self.image_area_of(&img.pool)?;
            let pools: Vec<ImageArea> = self.pools.values().map(|p| ImageArea::at(&p.config.path)).collect();
            tokio::task::spawn_blocking(move || {
                let r = area.remove(u);
                for p in pools {
                    p.invalidate(u);
                }
                r
            })
            .await
            .map_err(|e| Error::internal(e.to_string()))??;
        }
        Ok(())
    }

    /// Start an upload: the image must be `queued` with both formats set; it turns `saving`.
    /// Hands back the image and the temporary file to stream into.
    pub async fn begin_upload(&self, caller: &Caller, id: &str) -> Result<(Image, UploadFile)> {
        let img = self.image_to_modify(caller, id).await?;
        if img.disk_format.is_none() || img.container_format.is_none() {
            return Err(bad("Properties disk_format, container_format must be set prior to saving data."));
        }
        if img.status != ImageStatus::Queued {
            return Err(Error::conflict(
                "EVS.5409",
                format!("Image status transition from {} to saving is not allowed", img.status),
            ));
        }
        let uuid = crate::model::parse_uuid(&img.id).ok_or_else(|| Error::internal("image id is not a UUID"))?;
        let area = self.image_area_of(&img.pool)?;
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_image_status(id, &[ImageStatus::Queued], ImageStatus::Saving, None, &now_timestamp()).await? {
            return Err(Error::conflict("EVS.5409", "Image status transition from queued to saving is not allowed"));
        }
        tx.commit().await?;
        let tmp = area.temp_path(uuid);
        match tokio::task::spawn_blocking(move || UploadFile::create(tmp)).await {
            Ok(Ok(f)) => Ok((img, f)),
            Ok(Err(e)) => {
                self.abort_upload(id, None).await;
                Err(e)
            }
            Err(e) => {
                self.abort_upload(id, None).await;
                Err(Error::internal(e.to_string()))
            }
        }
    }

    /// An upload failed (client gone, too large, refused data): remove the partial file and
    /// put the image back to `queued`, as Glance does.
    pub async fn abort_upload(&self, id: &str, tmp: Option<PathBuf>) {
        if let Some(p) = tmp {
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(p)).await;
        }
        let now = now_timestamp();
        let reset = async {
            let mut tx = self.db.begin_write().await?;
            tx.cas_image_status(id, &[ImageStatus::Saving], ImageStatus::Queued, None, &now).await?;
            tx.commit().await
        };
        if let Err(e) = reset.await {
            tracing::error!(image = %id, error = %e, "could not put an image back to queued");
        }
    }

    /// Finish an upload whose bytes are all in `file`: inspect the data against the declared
    /// `disk_format` (415 when refused), find its virtual size, move the file into place and
    /// the image to `active` with its hashes.
    pub async fn finish_upload(&self, img: &Image, file: UploadFile) -> Result<Image> {
        let id = img.id.clone();
        let fmt = img.disk_format.clone().unwrap_or_default();
        let limits = info_limits(self);
        let area = self.image_area_of(&img.pool)?;
        let uuid = crate::model::parse_uuid(&id).ok_or_else(|| Error::internal("image id is not a UUID"))?;
        let checked = tokio::task::spawn_blocking(move || -> Result<(PathBuf, crate::image::StreamHasher, u64)> {
            let (path, hasher) = file.finish()?;
            let inspected = match crate::image::inspect::inspect_path(&path, &fmt) {
                Ok(i) => i,
                Err(e) => {
                    let _ = std::fs::remove_file(&path);
                    return Err(Error::new(ErrorKind::UnsupportedMediaType, e.0));
                }
            };
            let vsize = match inspected.virtual_size {
                Some(v) if fmt == "raw" || fmt == "iso" => v,
                _ if qemu::qemu_format(&fmt).is_ok() => match qemu::info(&path, &fmt, limits) {
                    Ok(i) => i.virtual_size,
                    Err(e) => {
                        let _ = std::fs::remove_file(&path);
                        return Err(Error::new(
                            ErrorKind::UnsupportedMediaType,
                            format!("Image is not a valid {fmt}: {}", e.message),
                        ));
                    }
                },
                Some(v) => v,
                None => hasher.len(),
            };
            let dst = area.commit(&path, uuid)?;
            Ok((dst, hasher, vsize))
        })
        .await
        .map_err(|e| Error::internal(e.to_string()));
        let (dst, hasher, vsize) = match checked {
            Ok(Ok(v)) => v,
            Ok(Err(e)) | Err(e) => {
                self.abort_upload(&id, None).await;
                return Err(e);
            }
        };
        let (md5, sha512, len) = hasher.finish()?;
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        if !tx.activate_image(&id, len as i64, vsize as i64, &md5, &sha512, &now).await? {
            drop(tx);
            // Deleted (or reset) while uploading: the data has no row; drop it.
            let _ = tokio::task::spawn_blocking(move || std::fs::remove_file(dst)).await;
            return Err(Error::conflict("EVS.5409", format!("Image {id} was deleted during the upload.")));
        }
        tx.commit().await?;
        self.db.get_image(&id).await?.ok_or_else(|| image_not_found(&id))
    }

    /// `POST /v2/images/{id}/actions/deactivate` (`activate = false`) and `…/reactivate`
    /// (`activate = true`), by the owner or an admin, as Glance allows them: only between
    /// `active` and `deactivated`; asking for the status the image already has is a no-op;
    /// any other status is refused with 403, as Glance does.
    pub async fn set_image_activation(&self, caller: &Caller, id: &str, activate: bool) -> Result<()> {
        let img = self.image_to_modify(caller, id).await?;
        let (from, to, verb) = if activate {
            (ImageStatus::Deactivated, ImageStatus::Active, "reactivate")
        } else {
            (ImageStatus::Active, ImageStatus::Deactivated, "deactivate")
        };
        if img.status == to {
            return Ok(());
        }
        if img.status != from {
            return Err(forbidden(format!("Not allowed to {verb} image in status '{}'", img.status)));
        }
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_image_status(id, &[from], to, None, &now_timestamp()).await? {
            return Err(Error::conflict("EVS.5409", format!("Image {id} changed status; retry.")));
        }
        tx.commit().await
    }

    /// `GET /v2/images/{id}/file`: the image and the path of its data (`None`: no data yet).
    /// A deactivated image's data is for admins only (403 otherwise), as in Glance.
    pub async fn image_data(&self, caller: &Caller, id: &str) -> Result<(Image, Option<PathBuf>)> {
        let img = self.get_image_for(caller, id).await?;
        if img.status == ImageStatus::Deactivated && !caller.is_admin {
            return Err(forbidden("The requested image has been deactivated. Image data download is prohibited."));
        }
        if !matches!(img.status, ImageStatus::Active | ImageStatus::Deactivated) {
            return Ok((img, None));
        }
        let uuid = crate::model::parse_uuid(&img.id).ok_or_else(|| Error::internal("image id is not a UUID"))?;
        let path = self.image_area_of(&img.pool)?.image_path(uuid);
        Ok((img, Some(path)))
    }
}

fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

fn check_tag(t: &str) -> Result<()> {
    if t.is_empty() || t.len() > 255 {
        return Err(bad(format!("Invalid tag {t:?}: 1 to 255 characters")));
    }
    Ok(())
}

const SORT_KEYS: [&str; 11] = [
    "id",
    "name",
    "status",
    "created_at",
    "updated_at",
    "size",
    "virtual_size",
    "disk_format",
    "container_format",
    "min_disk",
    "min_ram",
];

#[derive(PartialEq, Eq, PartialOrd, Ord)]
enum SortValue {
    Null,
    Int(i64),
    Text(String),
}

fn sort_value(i: &Image, key: &str) -> SortValue {
    let text = |s: &Option<String>| s.clone().map_or(SortValue::Null, SortValue::Text);
    let int = |n: Option<i64>| n.map_or(SortValue::Null, SortValue::Int);
    match key {
        "id" => SortValue::Text(i.id.clone()),
        "name" => text(&i.name),
        "status" => SortValue::Text(i.status.as_str().into()),
        "created_at" => SortValue::Text(i.created_at.clone()),
        "updated_at" => SortValue::Text(i.updated_at.clone()),
        "size" => int(i.size),
        "virtual_size" => int(i.virtual_size),
        "disk_format" => text(&i.disk_format),
        "container_format" => text(&i.container_format),
        "min_disk" => SortValue::Int(i.min_disk),
        _ => SortValue::Int(i.min_ram),
    }
}

fn is_core(k: &str) -> bool {
    matches!(
        k,
        "name"
            | "disk_format"
            | "container_format"
            | "visibility"
            | "protected"
            | "os_hidden"
            | "min_disk"
            | "min_ram"
            | "tags"
            | "owner"
    )
}

/// `in:a,b` → `[a, b]`; anything else → itself.
fn values_of(v: &str) -> Vec<String> {
    match v.strip_prefix("in:") {
        Some(list) => list.split(',').map(|s| s.trim_matches('"').to_string()).collect(),
        None => vec![v.to_string()],
    }
}

fn matches_filters(img: &Image, filters: &[(String, String)]) -> Result<bool> {
    for (k, v) in filters {
        let opt = |s: &Option<String>| values_of(v).iter().any(|x| Some(x) == s.as_ref());
        let ok = match k.as_str() {
            "visibility" | "os_hidden" | "member_status" => true,
            "id" => values_of(v).contains(&img.id),
            "name" => opt(&img.name),
            "status" => values_of(v).iter().any(|x| x == img.status.as_str()),
            "owner" => values_of(v).contains(&img.owner),
            "disk_format" => opt(&img.disk_format),
            "container_format" => opt(&img.container_format),
            "tag" => img.tags.iter().any(|t| t == v),
            "protected" => Some(img.protected) == parse_bool(v),
            "size_min" => {
                img.size.unwrap_or(-1) >= v.parse::<i64>().map_err(|_| bad(format!("Invalid size_min {v}")))?
            }
            "size_max" => {
                img.size.unwrap_or(i64::MAX) <= v.parse::<i64>().map_err(|_| bad(format!("Invalid size_max {v}")))?
            }
            "min_disk" => v.parse::<i64>().ok() == Some(img.min_disk),
            "min_ram" => v.parse::<i64>().ok() == Some(img.min_ram),
            "created_at" | "updated_at" => true,
            prop => img.properties.get(prop) == Some(v),
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

fn as_int(k: &str, v: &Value) -> Result<i64> {
    match v.as_i64() {
        Some(n) if n >= 0 => Ok(n),
        _ => Err(bad(format!("Invalid value for {k}: must be a non-negative integer"))),
    }
}

fn as_text(k: &str, v: &Value, max: usize) -> Result<String> {
    match v.as_str() {
        Some(s) if s.len() <= max && !s.contains('\0') => Ok(s.to_string()),
        Some(_) => Err(bad(format!("Invalid value for {k}: at most {max} bytes, no NUL"))),
        None => Err(bad(format!("Invalid value for {k}: must be a string"))),
    }
}

/// Set one field of `img` from a request (`None` never happens here; `remove` is separate).
fn set_field(caller: &Caller, img: &mut Image, k: &str, v: Option<Value>) -> Result<()> {
    let v = v.unwrap_or(Value::Null);
    match k {
        "name" => img.name = if v.is_null() { None } else { Some(as_text(k, &v, 255)?) },
        "disk_format" | "container_format" => {
            let s = if v.is_null() { None } else { Some(as_text(k, &v, 32)?) };
            let allowed: &[&str] = if k == "disk_format" { &DISK_FORMATS } else { &CONTAINER_FORMATS };
            if let Some(s) = &s {
                if !allowed.contains(&s.as_str()) {
                    return Err(bad(format!("Invalid value '{s}' for {k}: one of {}", allowed.join(", "))));
                }
            }
            if img.status != ImageStatus::Queued
                && (if k == "disk_format" { &img.disk_format } else { &img.container_format }) != &s
            {
                return Err(forbidden(format!("Attribute {k} can be only replaced for a queued image.")));
            }
            if k == "disk_format" {
                img.disk_format = s;
            } else {
                img.container_format = s;
            }
        }
        "visibility" => {
            let s = as_text(k, &v, 16)?;
            if !VISIBILITIES.contains(&s.as_str()) {
                return Err(bad(format!("Invalid visibility value: {s}")));
            }
            if s == "public" && !caller.is_admin {
                return Err(forbidden("You are not authorized to complete publicize_image action."));
            }
            img.visibility = s;
        }
        "protected" | "os_hidden" => {
            let b = v.as_bool().ok_or_else(|| bad(format!("Invalid value for {k}: must be a boolean")))?;
            if k == "protected" {
                img.protected = b;
            } else {
                img.os_hidden = b;
            }
        }
        "min_disk" => img.min_disk = as_int(k, &v)?,
        "min_ram" => img.min_ram = as_int(k, &v)?,
        "owner" => {
            if !caller.is_admin {
                return Err(forbidden("Attribute 'owner' can be set by an admin only."));
            }
            img.owner = as_text(k, &v, 255)?;
        }
        "tags" => {
            let arr = v.as_array().ok_or_else(|| bad("Invalid value for tags: must be a list of strings"))?;
            let mut tags = Vec::new();
            for t in arr {
                let t = as_text("tags", t, 255)?;
                check_tag(&t)?;
                if !tags.contains(&t) {
                    tags.push(t);
                }
            }
            if tags.len() > MAX_TAGS {
                return Err(Error::new(ErrorKind::Quota, format!("Maximum number of tags exceeded: {MAX_TAGS}")));
            }
            img.tags = tags;
        }
        _ if RESERVED.contains(&k) => return Err(forbidden(format!("Attribute '{k}' is reserved."))),
        _ => {
            if k.is_empty() || k.len() > 255 {
                return Err(bad("Invalid property name: 1 to 255 characters"));
            }
            let s = match &v {
                Value::String(s) => s.clone(),
                Value::Null => return Err(bad(format!("Invalid value for {k}: null"))),
                // Glance keeps extra properties as strings.
                other => other.to_string(),
            };
            if s.len() > MAX_PROPERTY_BYTES || s.contains('\0') {
                return Err(bad(format!("Invalid value for {k}: at most {MAX_PROPERTY_BYTES} bytes, no NUL")));
            }
            img.properties.insert(k.to_string(), s);
            if img.properties.len() > MAX_PROPERTIES {
                return Err(Error::new(
                    ErrorKind::Quota,
                    format!("Maximum number of properties exceeded: {MAX_PROPERTIES}"),
                ));
            }
        }
    }
    Ok(())
}

/// `os-volume_upload_image` input, after parsing.
#[derive(Debug, Clone)]
pub struct UploadToImage {
    /// The new image's name.
    pub image_name: String,
    /// `raw`, `qcow2`, `vmdk`, `vhd` or `vhdx` (default `raw`).
    pub disk_format: Option<String>,
    /// Default `bare`.
    pub container_format: Option<String>,
    /// Upload an attached (`in-use`) volume.
    pub force: bool,
    /// 3.1+: the image's visibility (default `private`, as Cinder's).
    pub visibility: Option<String>,
    /// 3.1+: the image's protected flag.
    pub protected: bool,
}

/// What the upload action answers (the volume, the new image).
#[derive(Debug, Clone)]
pub struct UploadStarted {
    /// The volume, now `uploading`.
    pub volume: crate::model::Volume,
    /// The new image, `saving`.
    pub image: Image,
    /// The job writing it.
    pub job_id: String,
}

/// Keys of a volume's image metadata that describe the old image, not a new one.
const NOT_COPIED_TO_IMAGE: [&str; 8] =
    ["image_id", "image_name", "checksum", "disk_format", "container_format", "min_disk", "min_ram", "size"];

impl Services {
    /// `os-volume_upload_image`: a new `saving` image owned by the caller, the volume
    /// `uploading`, and an `uploadImage` job, in one transaction. The job takes a reflink
    /// snapshot first, so the copy is consistent even while an attached volume is written.
    pub async fn upload_volume_to_image(
        &self,
        caller: &Caller,
        volume_id: &str,
        req: UploadToImage,
    ) -> Result<UploadStarted> {
        let v = self.get_volume(caller, volume_id).await?;
        let fmt = req.disk_format.clone().unwrap_or_else(|| "raw".into());
        match fmt.as_str() {
            "raw" | "qcow2" | "vmdk" | "vhd" | "vhdx" => {}
            "zvhd" | "zvhd2" => {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid disk_format {fmt}: zvhd and zvhd2 are not supported here; use raw, qcow2, vmdk, vhd or vhdx."),
                ))
            }
            other => {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid disk_format {other}: one of raw, qcow2, vmdk, vhd, vhdx."),
                ))
            }
        }
        let container = req.container_format.clone().unwrap_or_else(|| "bare".into());
        if !CONTAINER_FORMATS.contains(&container.as_str()) {
            return Err(Error::invalid("EVS.5400", format!("Invalid container_format {container}.")));
        }
        let name = req.image_name.trim();
        if name.is_empty() || req.image_name.len() > 255 || req.image_name.contains('\0') {
            return Err(Error::invalid("EVS.5400", "Invalid image_name: 1 to 255 characters."));
        }
        let visibility = req.visibility.clone().unwrap_or_else(|| "private".into());
        if !VISIBILITIES.contains(&visibility.as_str()) {
            return Err(Error::invalid("EVS.5400", format!("Invalid visibility {visibility}.")));
        }
        if visibility == "public" && !caller.is_admin {
            return Err(forbidden("Policy does not allow public images for this user."));
        }
        let from = match v.status {
            crate::model::VolumeStatus::Available => crate::model::VolumeStatus::Available,
            crate::model::VolumeStatus::InUse if req.force => crate::model::VolumeStatus::InUse,
            s => {
                return Err(Error::invalid_status(
                    "EVS.5400",
                    format!("Invalid volume: Volume {volume_id} status must be available (or in-use with force), but current status is: {s}."),
                ))
            }
        };
        self.check_image_quota(caller, 1, 0).await?;
        let now = now_timestamp();
        let job_id = super::volumes::new_job_id();
        let mut properties = v.image_metadata.clone();
        properties.retain(|k, _| !NOT_COPIED_TO_IMAGE.contains(&k.as_str()));
        let img = Image {
            id: Uuid::new_v4().to_string(),
            owner: caller.project_id.clone(),
            name: Some(req.image_name.clone()),
            status: ImageStatus::Saving,
            disk_format: Some(fmt.clone()),
            container_format: Some(container),
            size: None,
            virtual_size: None,
            checksum: None,
            os_hash_algo: None,
            os_hash_value: None,
            visibility,
            protected: req.protected,
            os_hidden: false,
            min_disk: v.size_gb,
            min_ram: 0,
            pool: self.image_pool()?.config.name.clone(),
            node: self.config.node.clone(),
            properties,
            tags: Vec::new(),
            created_at: now.clone(),
            updated_at: now.clone(),
        };
        let mut tx = self.db.begin_write().await?;
        if !tx.cas_volume_status(&v.id, &[from], crate::model::VolumeStatus::Uploading, &now).await? {
            return Err(Error::invalid_status(
                "EVS.5400",
                format!("Invalid volume: Volume {volume_id} changed status."),
            ));
        }
        tx.insert_image(&img).await?;
        tx.cas_image_status(&img.id, &[ImageStatus::Saving], ImageStatus::Saving, Some(&job_id), &now).await?;
        tx.insert_job(&crate::store::NewJob {
            id: job_id.clone(),
            project_id: caller.project_id.clone(),
            kind: crate::model::JobKind::UploadImage,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(crate::model::JobPayload {
                request_id: super::messages::current_request_id(),
                image_id: Some(img.id.clone()),
                disk_format: Some(fmt),
                restore_status: Some(from.as_str().to_string()),
                ..Default::default()
            }),
            entities: serde_json::json!({"volume_id": v.id, "image_id": img.id}).to_string(),
            begin_time: now.clone(),
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        let mut volume = v;
        volume.status = crate::model::VolumeStatus::Uploading;
        volume.updated_at = Some(now);
        Ok(UploadStarted { volume, image: img, job_id })
    }

    /// `os-show_image_metadata`.
    pub async fn volume_image_metadata(&self, caller: &Caller, volume_id: &str) -> Result<BTreeMap<String, String>> {
        let v = self.get_volume(caller, volume_id).await?;
        Ok(v.image_metadata)
    }

    /// `os-set_image_metadata` (merge) and `os-unset_image_metadata` (one key); the result.
    pub async fn change_volume_image_metadata(
        &self,
        caller: &Caller,
        volume_id: &str,
        set: BTreeMap<String, String>,
        unset: Option<String>,
    ) -> Result<BTreeMap<String, String>> {
        let v = self.get_volume(caller, volume_id).await?;
        let mut m = v.image_metadata.clone();
        for (k, val) in set {
            if k.is_empty() || k.len() > 255 || val.len() > 255 {
                return Err(Error::invalid(
                    "EVS.5400",
                    "Invalid metadata: keys and values are at most 255 characters.",
                ));
            }
            m.insert(k, val);
        }
        if let Some(k) = unset {
            if m.remove(&k).is_none() {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!("Glance metadata for volume {volume_id} with key {k} could not be found."),
                ));
            }
        }
        let mut tx = self.db.begin_write().await?;
        tx.set_volume_image_metadata(&v.id, &m).await?;
        tx.commit().await?;
        Ok(m)
    }
}
