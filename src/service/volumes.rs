//! Volume lifecycle: create (single or batch), list, show, update, delete.
//!
//! Every mutation validates first, then in one transaction reserves pool capacity, writes the
//! rows with their transitional status and enqueues the job; the worker finishes it. Bad input
//! therefore never leaves a row or a file behind.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{Caller, PoolRuntime, Services};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{now_timestamp, JobKind, SnapshotStatus, Volume, VolumeStatus, GIB};
use crate::store::{ListVolumes, NewJob, VolumePage};

/// Largest volume in GiB on EVS routes (EVS data disks go to 32 TiB).
pub const MAX_SIZE_GB: i64 = 32768;
/// Largest volume in GiB on Cinder routes: Cinder's schema bound (`DB_MAX_INT`); quotas and
/// pool capacity refuse sizes the machine cannot hold.
pub const CINDER_MAX_SIZE_GB: i64 = 0x7FFF_FFFF;
/// Most disks one EVS create may make.
pub const MAX_BATCH: i64 = 100;
/// Longest name or description, in characters (reference 6.1.1).
const MAX_TEXT: usize = 255;
/// Longest base name of a batch, in bytes (the `-0000` suffix makes room).
const MAX_BATCH_NAME_BYTES: usize = 250;
/// Longest metadata key or value, in bytes.
const MAX_META: usize = 255;
/// Most metadata keys one volume or snapshot may carry (Nova's `metadata_items` default).
/// Without a bound, one tenant's 42,000 keys made every write to the table slow for all.
pub const MAX_METADATA_ITEMS: usize = 128;

/// Refuse a metadata set with more than [`MAX_METADATA_ITEMS`] keys (`EVS.1005`).
pub fn check_metadata_count(m: &BTreeMap<String, String>) -> Result<()> {
    if m.len() > MAX_METADATA_ITEMS {
        return Err(Error::invalid(
            "EVS.1005",
            format!("size of metadata is too large: at most {MAX_METADATA_ITEMS} keys, {} given", m.len()),
        ));
    }
    Ok(())
}

/// Where a new volume's data comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VolumeSource {
    /// `snapshot_id`
    pub snapshot_id: Option<String>,
    /// `source_volid`
    pub source_volid: Option<String>,
    /// `imageRef`
    pub image_ref: Option<String>,
    /// `backup_id`
    pub backup_id: Option<String>,
}

/// A validated-shape create request (values not yet checked against the catalog).
#[derive(Debug, Clone, Default)]
pub struct CreateVolume {
    /// Display name (a batch appends `-0000`…).
    pub name: Option<String>,
    /// Description.
    pub description: Option<String>,
    /// Size in GiB (required for empty volumes).
    pub size_gb: Option<i64>,
    /// Zone; the default zone when `None`.
    pub availability_zone: Option<String>,
    /// Type id or name; the default type when `None`.
    pub volume_type: Option<String>,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Shareable.
    pub multiattach: bool,
    /// How many (EVS batch); 1 on Cinder.
    pub count: i64,
    /// Data source.
    pub source: VolumeSource,
    /// EVS `X-Client-Token`: a repeat with the same token in the same project answers the
    /// first create's reply and creates nothing (see `client_tokens.rs`).
    pub client_token: Option<String>,
    /// Largest size the API allows ([`MAX_SIZE_GB`] on EVS, [`CINDER_MAX_SIZE_GB`] on Cinder).
    pub max_size_gb: i64,
    /// groups: the generic volume group the new volume joins (Cinder 3.13 `group_id`).
    pub group_id: Option<String>,
    /// manage: adopt unmanaged storage of a named pool instead of allocating
    /// (`os-volume-manage`; see `manage.rs`).
    pub manage: Option<super::manage::ManageSource>,
    /// evs: the EVS-only parts of the request (defaults on Cinder routes).
    pub evs: EvsCreate,
}

/// evs: what an EVS create (reference 6.1.1 and the SDK's `CreateVolumeRequestBody`) asks for
/// beyond the Cinder fields. Every field is honoured; none is accepted and dropped.
#[derive(Debug, Clone, Default)]
pub struct EvsCreate {
    /// `enterprise_project_id` (`"0"` or a UUID), stored and shown.
    pub enterprise_project_id: Option<String>,
    /// `tags` at create, under the rules of reference 6.3 (at most [`super::MAX_TAGS`]).
    pub tags: BTreeMap<String, String>,
    /// `server_id`: the new disks are recorded as attached to this server.
    pub server_id: Option<String>,
    /// `OS-SCH-HNT:scheduler_hints.dedicated_storage_id`: the pool to place on.
    pub dedicated_storage_id: Option<String>,
    /// `iops`: the volume's own total IOPS limit, enforced on its NBD exports.
    pub iops: Option<i64>,
    /// `throughput` (MiB/s): the volume's own bandwidth limit, enforced on its NBD exports.
    pub throughput: Option<i64>,
    /// EVS rules instead of Cinder's: from a snapshot the type follows the snapshot's disk
    /// (a different `volume_type` is replaced, not refused), encryption follows the source,
    /// and a system disk (bootable source or an image) is at most [`MAX_SYSTEM_DISK_GB`].
    pub rules: bool,
}

/// Largest system disk (a disk from an image or a bootable source), reference 6.1.1.
pub const MAX_SYSTEM_DISK_GB: i64 = 1024;
/// Largest `iops` one disk may ask for (EVS's largest disk type offers 256,000; the bound keeps
/// the token bucket's numbers sane).
pub const MAX_IOPS: i64 = 1_000_000;
/// Largest `throughput` in MiB/s one disk may ask for.
pub const MAX_THROUGHPUT_MIB: i64 = 100_000;

/// Keys that carry a disk's encryption (copied from an EVS create's source).
const ENCRYPTION_KEYS: [&str; 2] = ["__system__encrypted", "__system__cmkid"];

/// Check the EVS-only fields' shapes (the catalog checks come later in the create).
fn validate_evs(e: &EvsCreate) -> Result<()> {
    if let Some(ep) = &e.enterprise_project_id {
        if ep != "0" && crate::model::parse_uuid(ep).is_none() {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Invalid enterprise_project_id {ep:?}: it must be \"0\" (the default project) or a UUID."),
            ));
        }
    }
    if let Some(s) = &e.server_id {
        if s.is_empty() || s.len() > 255 || s.chars().any(char::is_control) {
            return Err(Error::invalid("EVS.5400", "Invalid server_id: it must be 1 to 255 printable characters."));
        }
    }
    super::tags::validate_new_tags(&e.tags)?;
    if let Some(i) = e.iops {
        if !(1..=MAX_IOPS).contains(&i) {
            return Err(Error::invalid("EVS.2050", format!("Invalid iops {i}: it must be 1 to {MAX_IOPS}.")));
        }
    }
    if let Some(tp) = e.throughput {
        if !(1..=MAX_THROUGHPUT_MIB).contains(&tp) {
            return Err(Error::invalid(
                "EVS.2050",
                format!("Invalid throughput {tp}: it must be 1 to {MAX_THROUGHPUT_MIB} MiB/s."),
            ));
        }
    }
    Ok(())
}

/// What a create produced.
#[derive(Debug, Clone)]
pub struct CreatedVolumes {
    /// The job to poll (a batch parent when `count > 1`).
    pub job_id: String,
    /// The new rows, status `creating` (on a client-token replay: those that still exist).
    pub volumes: Vec<Volume>,
    /// Ids of the new volumes, in order (on a replay: the first call's, even if deleted since).
    pub volume_ids: Vec<String>,
}

/// Changes to a volume; `None` fields stay as they are.
#[derive(Debug, Clone, Default)]
pub struct UpdateVolume {
    /// New name (`Some(None)` clears it).
    pub name: Option<Option<String>>,
    /// New description.
    pub description: Option<Option<String>>,
    /// Replace all metadata.
    pub metadata: Option<BTreeMap<String, String>>,
}

/// A new 32-hex-digit job id, the form EVS prints.
pub(crate) fn new_job_id() -> String {
    Uuid::new_v4().simple().to_string()
}

pub(super) fn validate_text(value: &Option<String>, code: &'static str, what: &str) -> Result<()> {
    if let Some(v) = value {
        if v.chars().count() > MAX_TEXT {
            return Err(Error::invalid(code, format!("{what} must be at most {MAX_TEXT} characters")));
        }
    }
    Ok(())
}

/// Keys fixed at creation: the disk's encryption and device type cannot change afterwards.
const IMMUTABLE_KEYS: [&str; 3] = ["__system__encrypted", "__system__cmkid", "hw:passthrough"];

/// Refuse a metadata change that alters a key fixed at creation (`EVS.2047`).
fn check_immutable(old: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> Result<()> {
    for k in IMMUTABLE_KEYS {
        if old.get(k) != new.get(k) {
            return Err(Error::invalid("EVS.2047", format!("the metadata Param is not allowed to be updated: {k}")));
        }
    }
    Ok(())
}

/// Check metadata sizes and the reserved keys the reference gives a meaning to.
pub fn validate_metadata(m: &BTreeMap<String, String>) -> Result<()> {
    check_metadata_count(m)?;
    for (k, v) in m {
        if k.is_empty() || k.len() > MAX_META {
            return Err(Error::invalid("EVS.1005", format!("metadata key {k:?} must be 1 to {MAX_META} bytes")));
        }
        if v.len() > MAX_META {
            return Err(Error::invalid(
                "EVS.1005",
                format!("metadata value of {k:?} must be at most {MAX_META} bytes"),
            ));
        }
    }
    if let Some(v) = m.get("full_clone") {
        if v != "0" && v != "1" {
            return Err(Error::invalid("EVS.1063", "invalid full_clone in metadata: must be \"0\" or \"1\""));
        }
    }
    if let Some(v) = m.get("__system__encrypted") {
        if v != "0" && v != "1" {
            return Err(Error::invalid("EVS.1063", "invalid __system__encrypted in metadata: must be \"0\" or \"1\""));
        }
    }
    if let Some(v) = m.get("__system__cmkid") {
        if v.len() != 36 {
            return Err(Error::invalid("EVS.1063", "invalid __system__cmkid in metadata: must be 36 bytes"));
        }
        if m.get("__system__encrypted").map(String::as_str) != Some("1") {
            return Err(Error::invalid("EVS.1063", "__system__cmkid needs __system__encrypted = \"1\""));
        }
    }
    if let Some(v) = m.get("hw:passthrough") {
        if v != "true" && v != "false" {
            return Err(Error::invalid(
                "EVS.1057",
                "invalid hw:passthrough in metadata: must be \"true\" or \"false\"",
            ));
        }
    }
    Ok(())
}

impl Services {
    /// Create `req.count` volumes and one job (with sub-jobs for a batch). From a snapshot or a
    /// source volume, the new volumes live in the source's pool and take the source's type.
    pub async fn create_volumes(&self, caller: &Caller, req: CreateVolume) -> Result<CreatedVolumes> {
        if let Some(done) = self.replay_client_token(caller, &req).await? {
            return Ok(done);
        }
        let sources = [&req.source.snapshot_id, &req.source.source_volid, &req.source.image_ref, &req.source.backup_id];
        if sources.iter().filter(|s| s.is_some()).count() > 1 {
            return Err(Error::invalid(
                "EVS.1016",
                "Invalid input received: May specify only one of imageRef, snapshot_id, backup_id, source_volid!",
            ));
        }
        if let Some(id) = &req.source.backup_id {
            return Err(
                Error::new(ErrorKind::NotFound, format!("Backup {id} could not be found.")).with_code("EVS.1006")
            );
        }
        // images: a volume from an image (converted once into the pool's raw cache by the job).
        let image = match &req.source.image_ref {
            Some(id) => Some(self.image_for_volume(caller, id).await?),
            None => None,
        };
        let source = self.resolve_source(caller, &req.source).await?;
        if source.is_some() || image.is_some() {
            for key in ["__system__encrypted", "__system__cmkid", "hw:passthrough"] {
                if req.metadata.contains_key(key) {
                    return Err(Error::invalid(
                        "EVS.1043",
                        "encrypt and cmk and passthrough in metadata is not support when create volume from snapshot or image!",
                    ));
                }
            }
        }
        let size = match (req.size_gb, &source) {
            (Some(s), _) => s,
            (None, Some(src)) => src.size_gb,
            (None, None) => match &image {
                Some(img) => super::images::image_min_gb(img),
                None => return Err(Error::invalid("EVS.1010", "size is required")),
            },
        };
        if !(1..=req.max_size_gb).contains(&size) {
            return Err(Error::invalid(
                "EVS.1010",
                format!(
                    "Invalid input for field/attribute size. Value: {size}. The size must be 1 to {} GB.",
                    req.max_size_gb
                ),
            ));
        }
        if let Some(src) = &source {
            if size < src.size_gb {
                return Err(Error::invalid(
                    "EVS.1010",
                    format!(
                        "Invalid input received: volume size {size} is smaller than the source's {} GB.",
                        src.size_gb
                    ),
                ));
            }
        }
        if let Some(img) = &image {
            super::images::check_image_fits(img, size)?;
        }
        if !(1..=MAX_BATCH).contains(&req.count) {
            return Err(Error::invalid(
                "EVS.1021",
                format!("the quantity of volume is invalid: count must be 1 to {MAX_BATCH}"),
            ));
        }
        if req.count > 1 && req.source.source_volid.is_some() {
            return Err(Error::invalid("EVS.1021", "a batch can be created from a snapshot, not from a source volume"));
        }
        validate_text(&req.name, "EVS.1003", "name")?;
        validate_text(&req.description, "EVS.1004", "description")?;
        if req.count > 1 {
            if let Some(n) = &req.name {
                if n.len() > MAX_BATCH_NAME_BYTES {
                    return Err(Error::invalid(
                        "EVS.1003",
                        format!("a batch name must be at most {MAX_BATCH_NAME_BYTES} bytes"),
                    ));
                }
            }
        }
        validate_metadata(&req.metadata)?;
        validate_evs(&req.evs)?;
        let system_disk = image.is_some() || source.as_ref().is_some_and(|s| s.bootable);
        if req.evs.rules && system_disk && size > MAX_SYSTEM_DISK_GB {
            return Err(Error::invalid(
                "EVS.1010",
                format!(
                    "Invalid volume size {size}: a system disk (from an image or a bootable source) must be 1 to \
                     {MAX_SYSTEM_DISK_GB} GB."
                ),
            ));
        }
        let az = req.availability_zone.clone().unwrap_or_else(|| match (&req.manage, &source) {
            (Some(m), _) => m.availability_zone.clone(),
            (None, Some(src)) => src.availability_zone.clone(),
            (None, None) => self.config.default_availability_zone.clone(),
        });
        if !self.catalog.zones.contains(&az) {
            return Err(
                Error::new(ErrorKind::Invalid, format!("Availability zone '{az}' is invalid.")).with_code("EVS.1036")
            );
        }
        let vtype = match &source {
            // The type follows the source (reference 6.1.1).
            Some(src) => {
                if let Some(t) = req.volume_type.as_ref().filter(|_| !req.evs.rules) {
                    if self.catalog.find_type(t).map(|t| t.id) != Some(src.volume_type_id.clone()) {
                        return Err(Error::invalid(
                            "EVS.2096",
                            format!(
                                "Target volumeType[{t}] is not matched with the source's type [{}]!",
                                src.volume_type_name
                            ),
                        ));
                    }
                }
                self.catalog.require_type(&src.volume_type_id)?
            }
            None => {
                // misc: no type named → the project's default type (3.62), else the configured one.
                let type_ref = match &req.volume_type {
                    Some(t) => t.clone(),
                    None => self.project_default_type(&caller.project_id).await?,
                };
                // A private type the caller has no access to does not exist for it.
                self.catalog
                    .find_type(&type_ref)
                    .filter(|t| t.visible_to(&caller.project_id, caller.is_admin))
                    .ok_or_else(|| {
                        Error::new(ErrorKind::NotFound, format!("Volume type with name {type_ref} could not be found."))
                            .with_code("EVS.1020")
                    })?
            }
        };
        // A clone takes its source's type and pool, which already serve each other.
        let mut fits = true;
        let pool = match &source {
            // manage: the storage is where the admin named it.
            _ if req.manage.is_some() => {
                let m = req.manage.as_ref().ok_or_else(|| Error::internal("manage source vanished"))?;
                if m.availability_zone != az {
                    return Err(Error::invalid(
                        "EVS.1036",
                        format!(
                            "Invalid input received: host {} is in availability zone {}, not {az}.",
                            m.pool, m.availability_zone
                        ),
                    ));
                }
                self.pools.get(&m.pool).ok_or_else(|| Error::internal(format!("pool {} is not configured", m.pool)))?
            }
            // Clones live beside their source: reflinks cannot cross file systems.
            Some(src) => {
                if req.evs.dedicated_storage_id.as_ref().is_some_and(|d| *d != src.pool) {
                    return Err(Error::invalid(
                        "EVS.5400",
                        format!(
                            "Invalid dedicated_storage_id: a disk made from a snapshot lives in its source's pool {}.",
                            src.pool
                        ),
                    ));
                }
                if src.availability_zone != az {
                    return Err(Error::invalid(
                        "EVS.2054",
                        format!(
                            "Cannot create volume from a source in availability zone {} into {az}.",
                            src.availability_zone
                        ),
                    ));
                }
                self.pools
                    .get(&src.pool)
                    .ok_or_else(|| Error::internal(format!("pool {} is not configured", src.pool)))?
            }
            None => {
                let placed = match &req.evs.dedicated_storage_id {
                    Some(name) => self.place_on(&az, &vtype, name).await?,
                    None => self.place(&az, &vtype).await?,
                };
                fits = placed.fits;
                placed.pool
            }
        };
        // groups: the volume's type must be one of the group's, and the group available.
        let group = match &req.group_id {
            Some(gid) => Some(self.group_for_new_volume(caller, gid, &vtype.id).await?),
            None => None,
        };
        // A type asking for capabilities no pool has is accepted and then fails in its job,
        // as Cinder's scheduler fails it, leaving a user message (see `scheduler`).
        let no_valid_backend = !fits;
        let total_gb = size * req.count;
        // Cinder checks the quota before the pool: a request over both gets the quota's 413.
        let capacity = self.capacity_limit_gb(pool, total_gb);

        let mut metadata = req.metadata.clone();
        if let (true, Some(src)) = (req.evs.rules, &source) {
            // EVS: unless the request says otherwise (it may not, EVS.1043), the disk is
            // encrypted as its source is.
            for k in ENCRYPTION_KEYS {
                if let Some(v) = src.metadata.get(k) {
                    metadata.insert(k.to_string(), v.clone());
                }
            }
        }
        let encrypted =
            self.db.get_type_encryption(&vtype.id).await?.is_some() || crate::model::metadata_encrypted(&metadata);
        let now = now_timestamp();
        let job_id = new_job_id();
        let volumes: Vec<Volume> = (0..req.count)
            .map(|i| Volume {
                id: Uuid::new_v4().to_string(),
                project_id: caller.project_id.clone(),
                user_id: caller.user_id.clone(),
                name: match (&req.name, req.count) {
                    (Some(n), c) if c > 1 => Some(format!("{n}-{i:04}")),
                    (n, _) => n.clone(),
                },
                description: req.description.clone(),
                size_gb: size,
                status: VolumeStatus::Creating,
                availability_zone: az.clone(),
                volume_type_id: vtype.id.clone(),
                volume_type_name: vtype.name.clone(),
                pool: pool.config.name.clone(),
                bootable: source.as_ref().is_some_and(|s| s.bootable)
                    || image.is_some()
                    || req.manage.as_ref().is_some_and(|m| m.bootable),
                multiattach: req.multiattach,
                readonly: false,
                snapshot_id: req.source.snapshot_id.clone(),
                source_volid: req.source.source_volid.clone(),
                created_at: now.clone(),
                updated_at: None,
                metadata: metadata.clone(),
                tags: req.evs.tags.clone(),
                attachments: Vec::new(),
                encrypted,
                group_id: group.as_ref().map(|g| g.id.clone()),
                migration_status: None,
                image_metadata: image.as_ref().map(super::images::volume_image_metadata).unwrap_or_default(),
                evs: crate::model::VolumeEvs {
                    enterprise_project_id: req.evs.enterprise_project_id.clone(),
                    dedicated_storage_id: req.evs.dedicated_storage_id.clone(),
                    qos_iops: req.evs.iops,
                    qos_throughput: req.evs.throughput,
                },
            })
            .collect();

        let limits = self.project_limits(&caller.project_id).await?;
        let mut tx = self.db.begin_write().await?;
        if let Some(reply) = self.claim_client_token(&mut tx, caller, &req, &job_id, &volumes, &now).await? {
            drop(tx);
            return self.created_from_reply(caller, &reply).await;
        }
        if let Some(src) = &source {
            // The source must still be usable inside the transaction (no delete started since).
            if !src.still_usable(&mut tx, &now).await? {
                return Err(Error::invalid_status("EVS.2043", "The source of the new volume changed status."));
            }
        }
        if let Some(g) = &group {
            // groups: the group must not start a delete between our read and the insert.
            if !tx.cas_group_status(&g.id, &["available"], "available", &now).await? {
                return Err(Error::invalid("EVS.5400", format!("Invalid group: Group {} changed status.", g.id)));
            }
        }
        let delta = super::QuotaDelta {
            volumes: req.count,
            gigabytes: total_gb,
            volume_type: vtype.name.clone(),
            per_volume_gb: Some(size),
            ..Default::default()
        };
        self.check_quota(&mut tx, &caller.project_id, &delta, &limits).await?;
        let limit_gb = capacity?;
        if !tx.reserve_pool_capacity(&pool.config.name, total_gb, limit_gb).await? {
            return Err(no_space(&pool.config.name, total_gb));
        }
        let batch = req.count > 1;
        if batch {
            tx.insert_job(&NewJob {
                id: job_id.clone(),
                project_id: caller.project_id.clone(),
                kind: JobKind::BatchCreateVolume,
                parent_id: None,
                volume_id: None,
                payload: None,
                entities: serde_json::json!({"size": size, "volume_type": vtype.name, "name": req.name}).to_string(),
                begin_time: now.clone(),
            })
            .await?;
        }
        for v in &volumes {
            tx.insert_volume(v).await?;
            if !v.image_metadata.is_empty() {
                tx.set_volume_image_metadata(&v.id, &v.image_metadata).await?;
            }
            if !v.tags.is_empty() {
                tx.replace_tags(crate::store::TagResource::Volumes, &v.id, &v.project_id, &v.tags).await?;
            }
            if let Some(server) = &req.evs.server_id {
                // evs: the disk is recorded as attached to the server; its create job ends it
                // `in-use` (or removes the record when the create fails).
                tx.insert_attachment(&crate::model::Attachment {
                    id: Uuid::new_v4().to_string(),
                    volume_id: v.id.clone(),
                    project_id: v.project_id.clone(),
                    instance_uuid: Some(server.clone()),
                    attached_host: None,
                    mountpoint: None,
                    mode: crate::model::AttachMode::ReadWrite,
                    status: crate::model::AttachStatus::Attached,
                    connector: None,
                    connection_info: None,
                    created_at: now.clone(),
                    attach_time: Some(now.clone()),
                })
                .await?;
            }
            tx.insert_job(&NewJob {
                id: if batch { new_job_id() } else { job_id.clone() },
                project_id: caller.project_id.clone(),
                kind: JobKind::CreateVolume,
                parent_id: batch.then(|| job_id.clone()),
                volume_id: Some(v.id.clone()),
                payload: Some(crate::model::JobPayload {
                    request_id: super::messages::current_request_id(),
                    no_valid_backend,
                    image_id: image.as_ref().map(|i| i.id.clone()),
                    manage_ref: req.manage.as_ref().map(|m| m.source_name.clone()),
                    ..Default::default()
                }),
                entities:
                    serde_json::json!({"volume_id": v.id, "size": v.size_gb, "name": v.name, "volume_type": vtype.name})
                        .to_string(),
                begin_time: now.clone(),
            })
            .await?;
        }
        tx.commit().await?;
        self.job_notify.notify_waiters();
        let volume_ids = volumes.iter().map(|v| v.id.clone()).collect();
        Ok(CreatedVolumes { job_id, volumes, volume_ids })
    }

    /// Look up and check the snapshot or source volume of a create.
    async fn resolve_source(&self, caller: &Caller, src: &VolumeSource) -> Result<Option<SourceInfo>> {
        if let Some(id) = &src.snapshot_id {
            let s = self.get_snapshot(caller, id).await.map_err(|e| {
                if e.kind == ErrorKind::NotFound {
                    Error::new(ErrorKind::NotFound, format!("Snapshot {id} could not be found.")).with_code("EVS.2045")
                } else {
                    e
                }
            })?;
            if s.status != SnapshotStatus::Available {
                return Err(Error::invalid_status(
                    "EVS.2043",
                    format!(
                        "Invalid snapshot: Originating snapshot status must be one of 'available' values, but is {}.",
                        s.status
                    ),
                ));
            }
            let v = self
                .db
                .get_volume(None, &s.volume_id)
                .await?
                .ok_or_else(|| Error::internal("snapshot without volume"))?;
            return Ok(Some(SourceInfo {
                snapshot_id: Some(s.id),
                volume_id: v.id,
                size_gb: s.size_gb,
                availability_zone: v.availability_zone,
                volume_type_id: v.volume_type_id,
                volume_type_name: v.volume_type_name,
                pool: s.pool,
                bootable: v.bootable,
                metadata: v.metadata,
            }));
        }
        if let Some(id) = &src.source_volid {
            let v = self.get_volume(caller, id).await?;
            if !matches!(v.status, VolumeStatus::Available | VolumeStatus::InUse) {
                return Err(Error::invalid_status(
                    "EVS.2043",
                    format!("Invalid volume: Source volume status must be available or in-use, but is {}.", v.status),
                ));
            }
            return Ok(Some(SourceInfo {
                snapshot_id: None,
                size_gb: v.size_gb,
                availability_zone: v.availability_zone,
                volume_type_id: v.volume_type_id,
                volume_type_name: v.volume_type_name,
                pool: v.pool,
                bootable: v.bootable,
                metadata: v.metadata,
                volume_id: v.id,
            }));
        }
        Ok(None)
    }

    /// The most GiB the pool may have provisioned after adding `want_gb`, following Cinder's
    /// thin-provisioning rules: provisioned ≤ total × ratio, and the request must fit in
    /// free × ratio. Returns the provisioned ceiling for the compare-and-set.
    pub(super) fn capacity_limit_gb(&self, pool: &PoolRuntime, want_gb: i64) -> Result<i64> {
        let cap = pool.driver.capacity().map_err(|e| Error::internal(format!("pool {}: {e}", pool.config.name)))?;
        let ratio = pool.config.max_over_subscription_ratio;
        let free_virtual = (cap.free_bytes as f64 / GIB as f64) * ratio;
        if (want_gb as f64) > free_virtual {
            return Err(no_space(&pool.config.name, want_gb));
        }
        Ok(((cap.total_bytes as f64 / GIB as f64) * ratio).floor() as i64)
    }

    /// One volume the caller may see.
    pub async fn get_volume(&self, caller: &Caller, id: &str) -> Result<Volume> {
        let not_found = || Error::not_found(format!("Volume {id} could not be found."));
        if crate::model::parse_uuid(id).is_none() {
            return Err(not_found());
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_volume(scope, id).await?.ok_or_else(not_found)
    }

    /// A page of volumes.
    pub async fn list_volumes(&self, q: &ListVolumes) -> Result<VolumePage> {
        self.db.list_volumes(q).await
    }

    /// Change name, description or metadata.
    pub async fn update_volume(&self, caller: &Caller, id: &str, upd: UpdateVolume) -> Result<Volume> {
        let v = self.get_volume(caller, id).await?;
        if let Some(n) = &upd.name {
            validate_text(n, "EVS.1003", "name")?;
        }
        if let Some(d) = &upd.description {
            validate_text(d, "EVS.1004", "description")?;
        }
        if let Some(m) = &upd.metadata {
            validate_metadata(m)?;
            check_immutable(&v.metadata, m)?;
        }
        let now = now_timestamp();
        let mut tx = self.db.begin_write().await?;
        tx.update_volume_text(&v.id, upd.name, upd.description, &now).await?;
        if let Some(m) = &upd.metadata {
            tx.replace_volume_metadata(&v.id, m).await?;
        }
        tx.commit().await?;
        self.get_volume(caller, id).await
    }

    /// Start deleting a volume; returns the job id. A volume with snapshots is refused unless
    /// `cascade`, which deletes its snapshots in the same job first.
    pub async fn delete_volume(&self, caller: &Caller, id: &str, cascade: bool) -> Result<String> {
        self.start_delete_volume(caller, id, cascade, false).await
    }

    /// The delete of a volume, or with `unmanage` its unmanage (`os-unmanage`: the same checks
    /// and job, status `unmanaging`, and the data left in the pool; see `manage.rs`).
    pub(super) async fn start_delete_volume(
        &self,
        caller: &Caller,
        id: &str,
        cascade: bool,
        unmanage: bool,
    ) -> Result<String> {
        let v = self.get_volume(caller, id).await?;
        self.assert_not_frozen(&v.pool).await?;
        // groups: a group's volume goes with its group (or after leaving it), as in Cinder.
        if v.group_id.is_some() {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!(
                    "Invalid volume: Volume {} must not be migrating, attached, belong to a group, have snapshots, \
                     awaiting a transfer, or be disassociated from snapshots after volume transfer.",
                    v.id
                ),
            ));
        }
        let now = now_timestamp();
        let job_id = new_job_id();
        let mut tx = self.db.begin_write().await?;
        let to = if unmanage { VolumeStatus::Unmanaging } else { VolumeStatus::Deleting };
        if !tx.cas_volume_status(&v.id, &VolumeStatus::DELETABLE, to, &now).await? {
            let current = tx.volume_status(&v.id).await?.map(|s| s.as_str()).unwrap_or("deleted");
            return Err(Error::invalid_status(
                "EVS.1046",
                format!(
                    "Invalid volume: Volume status must be available, error, error_extending, error_restoring, \
                     error_rollbacking, error_deleting or error_unmanaging when deleting, but current status is: \
                     {current}."
                ),
            ));
        }
        if tx.volume_busy_as_source(&v.id).await? {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!("Invalid volume: Volume {} is the source of a snapshot or volume being created.", v.id),
            ));
        }
        // An export (`os-initialize_connection` leaves the volume `available`) or reservation
        // means a host may hold the file open: deleting under it would keep serving the data
        // and leave the attachment row pointing at nothing. The status change above locked
        // the row, so no attachment can be recorded between this check and the commit.
        if !tx.volume_attachments(&v.id).await?.is_empty() {
            return Err(Error::invalid_status(
                "EVS.1046",
                format!(
                    "Invalid volume: Volume {} cannot be deleted while it has attachments or exports; \
                     terminate its connections or delete its attachments first.",
                    v.id
                ),
            ));
        }
        if tx.count_volume_snapshots(&v.id).await? > 0 {
            if !cascade {
                return Err(Error::invalid_status(
                    "EVS.1046",
                    format!(
                        "Invalid volume: Volume {} still has dependent snapshots (delete them or use cascade).",
                        v.id
                    ),
                ));
            }
            // groups: a member of a group snapshot goes with its group snapshot only.
            if tx.volume_has_group_snapshot_members(&v.id).await? {
                return Err(Error::invalid_status(
                    "EVS.1047",
                    format!("Invalid volume: a snapshot of volume {} is part of a group snapshot.", v.id),
                ));
            }
            let moved =
                tx.cas_volume_snapshots(&v.id, &SnapshotStatus::DELETABLE, SnapshotStatus::Deleting, &now).await?;
            if moved.is_none() {
                return Err(Error::invalid_status(
                    "EVS.1047",
                    format!("Invalid volume: every snapshot of volume {} must be available or error to cascade.", v.id),
                ));
            }
        }
        tx.insert_job(&NewJob {
            id: job_id.clone(),
            project_id: v.project_id.clone(),
            kind: JobKind::DeleteVolume,
            parent_id: None,
            volume_id: Some(v.id.clone()),
            payload: Some(crate::model::JobPayload { cascade, unmanage, ..Default::default() }),
            entities: serde_json::json!({"volume_id": v.id, "size": v.size_gb, "name": v.name, "volume_type": v.volume_type_name})
                .to_string(),
            begin_time: now,
        })
        .await?;
        tx.commit().await?;
        self.job_notify.notify_waiters();
        Ok(job_id)
    }

    /// Replace (or, with `merge`, add to) a volume's metadata; returns the result.
    pub async fn set_volume_metadata(
        &self,
        caller: &Caller,
        id: &str,
        metadata: BTreeMap<String, String>,
        merge: bool,
    ) -> Result<BTreeMap<String, String>> {
        let v = self.get_volume(caller, id).await?;
        let mut next = if merge { v.metadata.clone() } else { BTreeMap::new() };
        next.extend(metadata);
        validate_metadata(&next)?;
        check_immutable(&v.metadata, &next)?;
        let mut tx = self.db.begin_write().await?;
        tx.replace_volume_metadata(&v.id, &next).await?;
        tx.update_volume_text(&v.id, None, None, &now_timestamp()).await?;
        tx.commit().await?;
        Ok(next)
    }

    /// Remove one metadata key (404 when absent).
    pub async fn delete_volume_metadata_key(&self, caller: &Caller, id: &str, key: &str) -> Result<()> {
        let v = self.get_volume(caller, id).await?;
        let mut next = v.metadata.clone();
        if next.remove(key).is_none() {
            return Err(Error::not_found(format!("Metadata item with key {key} could not be found for volume {id}.")));
        }
        check_immutable(&v.metadata, &next)?;
        let mut tx = self.db.begin_write().await?;
        tx.replace_volume_metadata(&v.id, &next).await?;
        tx.update_volume_text(&v.id, None, None, &now_timestamp()).await?;
        tx.commit().await
    }
}

pub(super) fn no_space(pool: &str, gb: i64) -> Error {
    Error::new(
        ErrorKind::NoSpace,
        format!("Insufficient free virtual space in pool {pool} to create {gb} GB of volumes."),
    )
    .with_code("EVS.2072")
}

/// What a create needs to know about its data source.
#[derive(Debug, Clone)]
struct SourceInfo {
    /// Set when the source is a snapshot.
    snapshot_id: Option<String>,
    /// The source volume (or the snapshot's volume).
    volume_id: String,
    size_gb: i64,
    availability_zone: String,
    volume_type_id: String,
    volume_type_name: String,
    pool: String,
    bootable: bool,
    /// The source volume's metadata (its encryption keys follow an EVS create).
    metadata: BTreeMap<String, String>,
}

impl SourceInfo {
    /// Re-check inside the create transaction that the source was not deleted meanwhile.
    async fn still_usable(&self, tx: &mut crate::store::WriteTx<'_>, now: &str) -> Result<bool> {
        match &self.snapshot_id {
            Some(s) => tx.cas_snapshot_status(s, &[SnapshotStatus::Available], SnapshotStatus::Available, now).await,
            None => {
                let Some(current) = tx.volume_status(&self.volume_id).await? else { return Ok(false) };
                tx.cas_volume_status(&self.volume_id, &[VolumeStatus::Available, VolumeStatus::InUse], current, now)
                    .await
            }
        }
    }
}
