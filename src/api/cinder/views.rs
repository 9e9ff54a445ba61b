//! Cinder response bodies, built as Cinder's view builders and API extensions build them.
//!
//! Three inputs decide which fields a body carries, and only these (no route adds or removes
//! fields afterwards):
//! - the negotiated microversion: a field introduced in 3.N appears only at 3.N or later
//!   (`/v2` and requests without a header act as 3.0);
//! - the kind of call ([`Call`]): Cinder's extension attributes (`os-vol-host-attr:*`,
//!   `os-vol-mig-status-attr:*`, `os-vol-tenant-attr:*`, `os-extended-snapshot-attributes:*`)
//!   extend only GET show and the detail lists; create, update and action answers carry the
//!   plain view;
//! - the caller's roles ([`Audience`]): host, migration, provider and cluster fields, the
//!   attachment's host name and the type's `qos_specs_id` and non-user-visible extra specs are
//!   for admins; the tenant attribute for every reader of the project.

use serde_json::{json, Map, Value};

use crate::api::ApiVersion;
use crate::model::{AttachStatus, Attachment, Role, Snapshot, SnapshotStatus, Volume, VolumeType};
use crate::service::Caller;

/// The kind of call a body answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// Create, update or action: the plain view.
    Write,
    /// GET of one resource or a detail list: the plain view plus the extension attributes the
    /// caller may see.
    Read,
}

/// What the caller may see, from its roles (Cinder's policy checks with `fatal=False`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Audience {
    /// Admin: host, migration, provider and cluster fields; every extra spec.
    pub admin: bool,
    /// Member or admin of the project (Cinder's `TYPE_ACCESS_POLICY`).
    pub member: bool,
}

impl Audience {
    /// The audience of a caller.
    pub fn of(c: &Caller) -> Audience {
        let top = c.roles.iter().copied().max().unwrap_or(Role::Reader);
        Audience { admin: c.is_admin || top == Role::Admin, member: c.is_admin || top >= Role::Member }
    }

    /// Everything (EVS bodies, which have no role rules of this kind).
    pub const ADMIN: Audience = Audience { admin: true, member: true };
}

/// What a view needs besides the record.
pub struct ViewCtx<'a> {
    /// `http://host:port`
    pub base: &'a str,
    /// `v2` or `v3`, for links.
    pub api: &'a str,
    /// Negotiated microversion.
    pub version: ApiVersion,
    /// This node's name, for `os-vol-host-attr:host`.
    pub node: &'a str,
    /// Who asks.
    pub audience: Audience,
}

/// `self` and `bookmark` links of a resource.
pub fn links(ctx: &ViewCtx, project: &str, collection: &str, id: &str) -> Value {
    links_for(ctx.base, ctx.api, project, collection, id)
}

/// `self` and `bookmark` links of a resource under API `api` (`v2`, `v3`).
pub fn links_for(base: &str, api: &str, project: &str, collection: &str, id: &str) -> Value {
    json!([
        {"href": format!("{base}/{api}/{project}/{collection}/{id}"), "rel": "self"},
        {"href": format!("{base}/{project}/{collection}/{id}"), "rel": "bookmark"},
    ])
}

/// `id`, `name`, `links`: the summary list entry.
pub fn volume_summary(ctx: &ViewCtx, v: &Volume) -> Value {
    json!({"id": v.id, "name": v.name, "links": links(ctx, &v.project_id, "volumes", &v.id)})
}

/// `node@pool#pool`, Cinder's host string.
pub fn host_of(node: &str, v: &Volume) -> String {
    format!("{node}@{pool}#{pool}", pool = v.pool)
}

/// The full volume body of Cinder's detail view; `call` adds the extension attributes.
pub fn volume_detail(ctx: &ViewCtx, v: &Volume, call: Call) -> Value {
    let admin = ctx.audience.admin;
    let mut o = Map::new();
    let mut put = |k: &str, val: Value| {
        o.insert(k.to_string(), val);
    };
    put("id", json!(v.id));
    put("name", json!(v.name));
    put("description", json!(v.description));
    put("status", json!(v.status.as_str()));
    put("size", json!(v.size_gb));
    put("availability_zone", json!(v.availability_zone));
    put("created_at", json!(v.created_at));
    put("updated_at", json!(v.updated_at));
    put("attachments", attachments_for(v, admin));
    put("links", links(ctx, &v.project_id, "volumes", &v.id));
    put("metadata", json!(v.metadata));
    put("volume_type", json!(v.volume_type_name));
    put("snapshot_id", json!(v.snapshot_id));
    put("source_volid", json!(v.source_volid));
    put("bootable", json!(if v.bootable { "true" } else { "false" }));
    put("encrypted", json!(v.encrypted));
    put("multiattach", json!(v.multiattach));
    put("replication_status", Value::Null);
    put("consistencygroup_id", Value::Null);
    put("user_id", json!(v.user_id));
    if admin {
        put("migration_status", json!(v.migration_status));
    }
    if call == Call::Read {
        // VolumeTenantAttribute: every reader of the project; host and migration: admins.
        put("os-vol-tenant-attr:tenant_id", json!(v.project_id));
        // images: Cinder's VolumeImageMetadata extension, for volumes made from an image.
        if !v.image_metadata.is_empty() {
            put("volume_image_metadata", json!(v.image_metadata));
        }
        if admin {
            put("os-vol-host-attr:host", json!(host_of(ctx.node, v)));
            put("os-vol-mig-status-attr:migstat", json!(v.migration_status));
            put("os-vol-mig-status-attr:name_id", Value::Null);
        }
    }
    // evs: the reference's v2 volume views (7.1.1, 7.1.3-7.1.6) carry fields Cinder has not;
    // Cinder's v3 views keep Cinder's fields only.
    if ctx.api == "v2" {
        put("shareable", json!(if v.multiattach { "true" } else { "false" }));
        put("storage_cluster_id", Value::Null);
        if call == Call::Read {
            put("os-volume-replication:extended_status", Value::Null);
            put("volume_image_metadata", json!(v.image_metadata));
        }
    }
    if ctx.version.at_least(13) {
        put("group_id", json!(v.group_id));
    }
    if ctx.version.at_least(21) && admin {
        put("provider_id", Value::Null);
    }
    if ctx.version.at_least(48) {
        put("shared_targets", if ctx.version.at_least(69) { Value::Null } else { json!(false) });
        put("service_uuid", Value::Null);
    }
    if ctx.version.at_least(61) && admin {
        put("cluster_name", Value::Null);
    }
    if ctx.version.at_least(63) {
        put("volume_type_id", json!(v.volume_type_id));
    }
    if ctx.version.at_least(65) {
        put("consumes_quota", json!(true));
    }
    Value::Object(o)
}

/// The v1 shape (reference 8.2.1.1): `display_name`/`display_description`.
pub fn volume_v1(node: &str, v: &Volume) -> Value {
    json!({
        "id": v.id,
        "display_name": v.name,
        "display_description": v.description,
        "status": v.status.as_str(),
        "size": v.size_gb,
        "availability_zone": v.availability_zone,
        "created_at": v.created_at,
        "attachments": volume_attachments(v),
        "volume_type": v.volume_type_name,
        "snapshot_id": v.snapshot_id,
        "source_volid": v.source_volid,
        "metadata": v.metadata,
        "bootable": if v.bootable { "true" } else { "false" },
        "encrypted": v.encrypted,
        "multiattach": v.multiattach,
        "os-vol-tenant-attr:tenant_id": v.project_id,
        "os-vol-host-attr:host": host_of(node, v),
    })
}

/// Extra specs a non-admin sees (Cinder's `USER_VISIBLE_EXTRA_SPECS`).
const USER_VISIBLE_EXTRA_SPECS: [&str; 3] = ["RESKEY:availability_zones", "multiattach", "replication_enabled"];

/// A volume type as GET show and list answer it (Cinder's v3 types view plus the type-access
/// extension): extra specs trimmed to the user-visible ones for non-admins, `qos_specs_id` for
/// admins, `os-volume-type-access:is_public` for members and admins.
pub fn volume_type(audience: Audience, t: &VolumeType) -> Value {
    let specs: Map<String, Value> = t
        .extra_specs
        .iter()
        .filter(|(k, _)| audience.admin || USER_VISIBLE_EXTRA_SPECS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), json!(v)))
        .collect();
    let mut o = json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "extra_specs": specs,
    });
    if audience.admin {
        o["qos_specs_id"] = json!(t.qos_specs_id);
    }
    if audience.member {
        o["os-volume-type-access:is_public"] = json!(t.is_public);
    }
    o
}

/// A volume type as create (`with_access`: the type-access extension extends create) and update
/// answer it: Cinder's legacy types view, all extra specs, no `qos_specs_id`.
pub fn volume_type_written(t: &VolumeType, with_access: bool) -> Value {
    let mut o = json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "extra_specs": t.extra_specs,
    });
    if with_access {
        o["os-volume-type-access:is_public"] = json!(t.is_public);
    }
    o
}

/// How a snapshot is shown: Cinder's summary list entry (no 3.x fields), the detail view
/// (create, update), or the detail view with the extended attributes (show, detail list).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotView {
    /// `GET /snapshots`.
    Summary,
    /// Create and update answers.
    Written,
    /// `GET /snapshots/{id}` and `GET /snapshots/detail`.
    Read,
}

/// A snapshot body (see [`SnapshotView`]).
pub fn snapshot(ctx: &ViewCtx, s: &Snapshot, view: SnapshotView) -> Value {
    let mut o = Map::new();
    let mut put = |k: &str, val: Value| {
        o.insert(k.to_string(), val);
    };
    put("id", json!(s.id));
    put("name", json!(s.name));
    put("description", json!(s.description));
    put("status", json!(s.status.as_str()));
    put("size", json!(s.size_gb));
    put("volume_id", json!(s.volume_id));
    put("created_at", json!(s.created_at));
    put("updated_at", json!(s.updated_at));
    put("metadata", json!(s.metadata));
    if view == SnapshotView::Read {
        let derived = if s.status == SnapshotStatus::Creating { "0%" } else { "100%" };
        let progress = s.progress.as_deref().unwrap_or(derived);
        put("os-extended-snapshot-attributes:progress", json!(progress));
        put("os-extended-snapshot-attributes:project_id", json!(s.project_id));
    }
    if view != SnapshotView::Summary {
        if ctx.version.at_least(14) {
            put("group_snapshot_id", json!(s.group_snapshot_id));
        }
        if ctx.version.at_least(41) {
            put("user_id", json!(s.user_id));
        }
        if ctx.version.at_least(65) {
            put("consumes_quota", json!(true));
        }
    }
    Value::Object(o)
}

/// The `attachments` list of a volume body: completed attachments only, as Cinder lists them,
/// with the host name (EVS shows it to everyone).
pub fn volume_attachments(v: &Volume) -> Value {
    attachments_for(v, true)
}

/// The `attachments` list; the attached host's name only for admins, as Cinder.
fn attachments_for(v: &Volume, show_host: bool) -> Value {
    Value::Array(
        v.attachments
            .iter()
            .filter(|a| a.status == AttachStatus::Attached)
            .map(|a| {
                json!({
                    "id": v.id,
                    "attachment_id": a.id,
                    "volume_id": v.id,
                    "server_id": a.instance_uuid,
                    "host_name": if show_host { json!(a.attached_host) } else { Value::Null },
                    "device": a.mountpoint,
                    "attached_at": a.attach_time,
                })
            })
            .collect(),
    )
}

/// A v3 attachment; `detail` adds the mode, times and connection info.
pub fn attachment(a: &Attachment, detail: bool) -> Value {
    let mut o = json!({
        "id": a.id,
        "status": a.status.as_str(),
        "instance": a.instance_uuid,
        "volume_id": a.volume_id,
    });
    if detail {
        let info: Value =
            a.connection_info.as_deref().and_then(|c| serde_json::from_str(c).ok()).unwrap_or(Value::Null);
        o["attach_mode"] = json!(a.mode.as_str());
        o["attached_at"] = json!(a.attach_time);
        o["detached_at"] = Value::Null;
        o["connection_info"] = info;
    }
    o
}

// groups: generic volume groups (Cinder's v3 group_types, groups and group_snapshots views).

/// A group type (Cinder's `group_types` view): `group_specs` only for admins
/// (`group:access_group_types_specs`).
pub fn group_type(audience: Audience, t: &crate::model::GroupType) -> Value {
    let mut o = json!({"id": t.id, "name": t.name, "description": t.description, "is_public": t.is_public});
    if audience.admin {
        o["group_specs"] = json!(t.group_specs);
    }
    o
}

/// `id` and `name`: the create answer and the summary list entry of a group.
pub fn group_summary(g: &crate::model::Group) -> Value {
    json!({"id": g.id, "name": g.name})
}

/// A group's detail view; `volumes` (3.25, with `list_volume=true`) are its volumes' ids.
pub fn group_detail(ctx: &ViewCtx, g: &crate::model::Group, volumes: Option<&[String]>) -> Value {
    let mut o = json!({
        "id": g.id,
        "status": g.status,
        "availability_zone": g.availability_zone,
        "created_at": g.created_at,
        "name": g.name,
        "description": g.description,
        "group_type": g.group_type_id,
        "volume_types": g.volume_types,
    });
    if ctx.version.at_least(14) {
        o["group_snapshot_id"] = json!(g.group_snapshot_id);
        o["source_group_id"] = json!(g.source_group_id);
    }
    if let (true, Some(v)) = (ctx.version.at_least(25), volumes) {
        o["volumes"] = json!(v);
    }
    if ctx.version.at_least(38) {
        o["replication_status"] = json!("disabled");
    }
    if ctx.version.at_least(58) && ctx.audience.admin {
        o["project_id"] = json!(g.project_id);
    }
    o
}

/// A group snapshot: `Summary` is the create answer (with `group_type_id`) and, without
/// `group_type_id`, the summary list entry; otherwise the detail view.
pub fn group_snapshot(ctx: &ViewCtx, gs: &crate::model::GroupSnapshot, view: SnapshotView) -> Value {
    match view {
        SnapshotView::Written => json!({"id": gs.id, "name": gs.name, "group_type_id": gs.group_type_id}),
        SnapshotView::Summary => json!({"id": gs.id, "name": gs.name}),
        SnapshotView::Read => {
            let mut o = json!({
                "id": gs.id,
                "group_id": gs.group_id,
                "group_type_id": gs.group_type_id,
                "status": gs.status,
                "created_at": gs.created_at,
                "name": gs.name,
                "description": gs.description,
            });
            if ctx.version.at_least(58) && ctx.audience.admin {
                o["project_id"] = json!(gs.project_id);
            }
            o
        }
    }
}
