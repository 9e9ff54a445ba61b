//! Cinder response bodies. A field introduced in microversion 3.N appears only when the request
//! negotiated at least 3.N.

use serde_json::{json, Map, Value};

use crate::api::ApiVersion;
use crate::model::{AttachStatus, Attachment, Snapshot, SnapshotStatus, Volume, VolumeType};

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

/// The full volume body.
pub fn volume_detail(ctx: &ViewCtx, v: &Volume) -> Value {
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
    put("attachments", volume_attachments(v));
    put("links", links(ctx, &v.project_id, "volumes", &v.id));
    put("metadata", json!(v.metadata));
    put("volume_type", json!(v.volume_type_name));
    put("snapshot_id", json!(v.snapshot_id));
    put("source_volid", json!(v.source_volid));
    put("bootable", json!(if v.bootable { "true" } else { "false" }));
    put("encrypted", json!(false));
    put("multiattach", json!(v.multiattach));
    put("replication_status", Value::Null);
    put("consistencygroup_id", Value::Null);
    put("user_id", json!(v.user_id));
    put("os-vol-tenant-attr:tenant_id", json!(v.project_id));
    put("os-vol-host-attr:host", json!(host_of(ctx.node, v)));
    put("os-vol-mig-status-attr:migstat", Value::Null);
    put("os-vol-mig-status-attr:name_id", Value::Null);
    if ctx.version.at_least(13) {
        put("group_id", Value::Null);
    }
    if ctx.version.at_least(21) {
        put("provider_id", Value::Null);
    }
    if ctx.version.at_least(48) {
        put("shared_targets", if ctx.version.at_least(69) { Value::Null } else { json!(false) });
        put("service_uuid", Value::Null);
    }
    if ctx.version.at_least(61) {
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
        "encrypted": false,
        "multiattach": v.multiattach,
        "os-vol-tenant-attr:tenant_id": v.project_id,
        "os-vol-host-attr:host": host_of(node, v),
    })
}

/// A volume type.
pub fn volume_type(t: &VolumeType) -> Value {
    json!({
        "id": t.id,
        "name": t.name,
        "description": t.description,
        "is_public": t.is_public,
        "os-volume-type-access:is_public": t.is_public,
        "extra_specs": t.extra_specs,
        "qos_specs_id": null,
    })
}

/// A snapshot body; `detail` adds the `os-extended-snapshot-attributes:*` fields.
pub fn snapshot(ctx: &ViewCtx, s: &Snapshot, detail: bool) -> Value {
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
    if detail {
        let progress = if s.status == SnapshotStatus::Creating { "0%" } else { "100%" };
        put("os-extended-snapshot-attributes:progress", json!(progress));
        put("os-extended-snapshot-attributes:project_id", json!(s.project_id));
    }
    if ctx.version.at_least(14) {
        put("group_snapshot_id", Value::Null);
    }
    if ctx.version.at_least(41) {
        put("user_id", json!(s.user_id));
    }
    if ctx.version.at_least(65) {
        put("consumes_quota", json!(true));
    }
    Value::Object(o)
}

/// The `attachments` list of a volume body: completed attachments only, as Cinder lists them.
pub fn volume_attachments(v: &Volume) -> Value {
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
                    "host_name": a.attached_host,
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
