//! `POST /volumes/{id}/action`: one action per body, named by its only key.
//!
//! Served here: `os-extend` (attached volumes from 3.42), `revert` (3.40+; to ANY snapshot of
//! the volume, where Cinder allows only the latest), the legacy attach actions (`os-reserve`,
//! `os-unreserve`, `os-initialize_connection`, `os-attach`, `os-detach`,
//! `os-terminate_connection`, `os-begin_detaching`, `os-roll_detaching`), and the flags
//! `os-update_readonly_flag` and `os-set_bootable`; the admin `os-reset_status` and
//! `os-force_delete`, and `os-retype`. Snapshot actions (`os-reset_status`,
//! `os-update_snapshot_status`, `os-force_delete`) are served by [`snapshot_action`].

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::CinderError;
use crate::api::common::{caller, opt_bool, opt_int, opt_strict_int, opt_string, parse_json};
use crate::api::guard::body_action;
use crate::api::ApiVersion;
use crate::error::{Error, ErrorKind};
use crate::model::AttachMode;
use crate::service::{AttachRequest, MigrationPolicy, ResetVolumeStatus, Services};
use crate::store::VolumeFlag;

/// The policy action of a volume `…/action` body (Cinder's and EVS's action keys).
pub(crate) fn volume_action_policy(body: &[u8]) -> &'static str {
    body_action(body, volume_action_key)
}

/// Action key → policy action; unknown keys are updates the handler rejects.
fn volume_action_key(key: &str) -> &'static str {
    match key {
        "os-extend" => "evs:volumes:extend",
        "os-attach" | "os-reserve" | "os-unreserve" | "os-initialize_connection" => "evs:volumes:attach",
        "os-detach" | "os-terminate_connection" | "os-begin_detaching" | "os-roll_detaching" => "evs:volumes:detach",
        "os-show_image_metadata" => "evs:volumes:get",
        // images: the volume's image metadata (Cinder: volume_extension:volume_image_metadata).
        "os-set_image_metadata" | "os-unset_image_metadata" => "image:images:imageMetadata",
        "os-volume_upload_image" => "evs:volumes:uploadImage",
        "revert" => "evs:snapshots:rollback",
        "os-retype" => "evs:volumes:retype",
        "os-reset_status" => "evs:volumes:resetStatus",
        "os-force_delete" => "evs:volumes:forceDelete",
        "os-force_detach" => "evs:volumes:forceDetach",
        "os-migrate_volume" | "os-migrate_volume_completion" => "evs:volumes:migrate",
        "os-unmanage" => "evs:volumes:manage",
        _ => "evs:volumes:update",
    }
}

/// The one `{"action-name": {...}}` pair of an action body.
pub(crate) fn split_action(body: &[u8]) -> Result<(String, Map<String, Value>), Error> {
    let v = parse_json(body)?;
    let obj = v.as_object().ok_or_else(|| Error::invalid("EVS.5400", "Malformed request body: expected an object"))?;
    let mut it = obj.iter();
    match (it.next(), it.next()) {
        (Some((name, Value::Object(args))), None) => Ok((name.clone(), args.clone())),
        (Some((name, Value::Null)), None) => Ok((name.clone(), Map::new())),
        _ => Err(Error::invalid("EVS.5400", "Malformed request body: an action body holds exactly one action")),
    }
}

/// The `connector` object of a connection action.
fn connector_of(args: &Map<String, Value>) -> Result<Value, Error> {
    match args.get("connector") {
        Some(c @ Value::Object(_)) => Ok(c.clone()),
        _ => Err(Error::invalid("EVS.5400", "Invalid input: 'connector' must be an object")),
    }
}

/// `new_size` of a Cinder `os-extend`: an integer (or a string of digits), as Cinder's schema
/// says; `1.5` is refused, not truncated.
pub(crate) fn new_size(args: &Map<String, Value>) -> Result<i64, Error> {
    opt_strict_int(args, "new_size", "EVS.1010")?.ok_or_else(missing_new_size)
}

/// `new_size` of an EVS `os-extend`: the reference (7.1.2) says a decimal's integer part is
/// used.
pub(crate) fn new_size_truncated(args: &Map<String, Value>) -> Result<i64, Error> {
    opt_int(args, "new_size", "EVS.1010")?.ok_or_else(missing_new_size)
}

fn missing_new_size() -> Error {
    Error::invalid("EVS.1011", "Invalid input received: 'new_size' is a required property")
}

pub(super) async fn volume_action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    version: ApiVersion,
    body: Bytes,
) -> Result<Response, CinderError> {
    let c = caller(&svc, &headers, &p)?;
    let (action, args) = split_action(&body)?;
    match action.as_str() {
        "os-extend" => {
            svc.extend_volume(&c, &id, new_size(&args)?, version.at_least(42)).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "revert" if version.at_least(40) => {
            let snap = opt_string(&args, "snapshot_id", "EVS.2045")?
                .ok_or_else(|| Error::invalid("EVS.2045", "Invalid input received: 'snapshot_id' is required"))?;
            // An unknown volume is 404 before anything is said about the snapshot.
            let v = svc.get_volume(&c, &id).await?;
            let s = svc.get_snapshot(&c, &snap).await?;
            if s.volume_id != id {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid input received: snapshot {snap} does not belong to volume {id}."),
                )
                .into());
            }
            // Cinder's rule on its revert route (EVS rollback has none: an extended volume rolls
            // back to an older, smaller snapshot and keeps its size there).
            if v.size_gb != s.size_gb {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!(
                        "Can't revert volume {id} to its latest snapshot {snap}. The volume size must be equal to \
                         the snapshot size."
                    ),
                )
                .into());
            }
            svc.rollback_snapshot(&c, &snap, Some(&id)).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "revert" => Err(Error::new(ErrorKind::NotFound, "The revert action needs microversion 3.40 or later.").into()),
        "os-reserve" => {
            svc.reserve_volume(&c, &id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-unreserve" => {
            svc.unreserve_volume(&c, &id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-initialize_connection" => {
            let connector = connector_of(&args)?;
            let info = svc.initialize_connection(&c, &id, &connector).await?;
            Ok(Json(json!({"connection_info": info})).into_response())
        }
        "os-terminate_connection" => {
            let connector = connector_of(&args)?;
            svc.terminate_connection(&c, &id, &connector).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-attach" => {
            let mode = match opt_string(&args, "mode", "EVS.5400")? {
                None => None,
                Some(m) => Some(
                    AttachMode::parse(&m)
                        .ok_or_else(|| Error::invalid("EVS.5400", format!("Invalid attaching mode {m:?}: rw or ro")))?,
                ),
            };
            let req = AttachRequest {
                instance_uuid: opt_string(&args, "instance_uuid", "EVS.5400")?,
                host_name: opt_string(&args, "host_name", "EVS.5400")?,
                mountpoint: opt_string(&args, "mountpoint", "EVS.5400")?,
                mode,
            };
            if req.instance_uuid.is_none() && req.host_name.is_none() {
                return Err(Error::invalid(
                    "EVS.5400",
                    "Invalid request to attach volume: give instance_uuid or host_name",
                )
                .into());
            }
            if req.mountpoint.is_none() {
                return Err(
                    Error::invalid("EVS.5400", "Invalid request to attach volume: 'mountpoint' is required").into()
                );
            }
            svc.attach_volume(&c, &id, req).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-detach" => {
            let aid = opt_string(&args, "attachment_id", "EVS.5400")?;
            svc.detach_volume(&c, &id, aid.as_deref()).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-force_detach" => {
            reject_unknown(&args, &["attachment_id", "connector"])?;
            if args.get("connector").is_some_and(|c| !c.is_null() && !c.is_object()) {
                return Err(Error::invalid("EVS.5400", "Invalid input: 'connector' must be an object").into());
            }
            let aid = opt_string(&args, "attachment_id", "EVS.5400")?;
            svc.force_detach(&c, &id, aid.as_deref()).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        // Nova brackets a detach with these; the state they guard lives in our attachments.
        "os-begin_detaching" | "os-roll_detaching" => {
            svc.get_volume(&c, &id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-update_readonly_flag" => {
            let ro = opt_bool(&args, "readonly", "EVS.5400")?
                .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input: 'readonly' is required"))?;
            svc.set_volume_flag(&c, &id, VolumeFlag::Readonly, ro).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        // images: upload to an image (EVS 7.2.4) and the volume's image metadata.
        "os-volume_upload_image" => {
            let name = required_string(&args, "image_name")?;
            let req = crate::service::images::UploadToImage {
                image_name: name,
                disk_format: opt_string(&args, "disk_format", "EVS.5400")?,
                container_format: opt_string(&args, "container_format", "EVS.5400")?,
                force: match args.get("force") {
                    Some(Value::String(s)) => crate::api::common::parse_bool(s)
                        .ok_or_else(|| Error::invalid("EVS.5400", format!("Invalid value '{s}' for force.")))?,
                    _ => opt_bool(&args, "force", "EVS.5400")?.unwrap_or(false),
                },
                visibility: if version.at_least(1) { opt_string(&args, "visibility", "EVS.5400")? } else { None },
                protected: if version.at_least(1) {
                    opt_bool(&args, "protected", "EVS.5400")?.unwrap_or(false)
                } else {
                    false
                },
            };
            let started = svc.upload_volume_to_image(&c, &id, req).await?;
            let v = &started.volume;
            let t = svc.catalog.find_type(&v.volume_type_id);
            let vt = t.map(|t| {
                json!({
                    "id": t.id, "name": t.name, "description": t.description, "is_public": t.is_public,
                    "extra_specs": t.extra_specs, "deleted": false, "deleted_at": null,
                    "created_at": v.created_at, "updated_at": null,
                })
            });
            let img = &started.image;
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({"os-volume_upload_image": {
                    "id": v.id,
                    "updated_at": v.updated_at,
                    "status": v.status.as_str(),
                    "display_description": v.description.clone().unwrap_or_default(),
                    "size": v.size_gb,
                    "volume_type": vt,
                    "image_id": img.id,
                    "container_format": img.container_format,
                    "disk_format": img.disk_format,
                    "image_name": img.name,
                    "protected": img.protected,
                    "visibility": img.visibility,
                }})),
            )
                .into_response())
        }
        "os-show_image_metadata" => {
            let m = svc.volume_image_metadata(&c, &id).await?;
            Ok(Json(json!({"metadata": m})).into_response())
        }
        "os-set_image_metadata" => {
            let set = crate::api::common::opt_string_map(&args, "metadata", "EVS.5400")?
                .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input: 'metadata' is required"))?;
            let m = svc.change_volume_image_metadata(&c, &id, set, None).await?;
            Ok(Json(json!({"metadata": m})).into_response())
        }
        "os-unset_image_metadata" => {
            let key = required_string(&args, "key")?;
            svc.change_volume_image_metadata(&c, &id, Default::default(), Some(key)).await?;
            Ok(StatusCode::OK.into_response())
        }
        "os-set_bootable" => {
            let b = opt_bool(&args, "bootable", "EVS.5400")?
                .ok_or_else(|| Error::invalid("EVS.5400", "Invalid input: 'bootable' is required"))?;
            svc.set_volume_flag(&c, &id, VolumeFlag::Bootable, b).await?;
            Ok(StatusCode::OK.into_response())
        }
        // actions: admin reset and force delete.
        "os-reset_status" => {
            reject_unknown(&args, &["status", "attach_status", "migration_status"])?;
            let req = ResetVolumeStatus::parse(
                opt_string(&args, "status", "EVS.5400")?.as_deref(),
                opt_string(&args, "attach_status", "EVS.5400")?.as_deref(),
                opt_string(&args, "migration_status", "EVS.5400")?.as_deref(),
            )?;
            svc.reset_volume_status(&c, &id, req).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-force_delete" => {
            svc.force_delete_volume(&c, &id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        // manage: let go of the volume, its data left in the pool's import folder.
        "os-unmanage" => {
            reject_unknown(&args, &[])?;
            svc.unmanage_volume(&c, &id).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "os-migrate_volume" => {
            reject_unknown(&args, &["host", "force_host_copy", "lock_volume", "cluster"])?;
            if args.get("cluster").is_some_and(|c| !c.is_null()) {
                return Err(Error::invalid("EVS.5400", "Clusters are not supported: give a host.").into());
            }
            let host = required_string(&args, "host")?;
            svc.migrate_volume(&c, &id, &host).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        // actions: retype, with migration on demand.
        "os-retype" => {
            reject_unknown(&args, &["new_type", "migration_policy"])?;
            let new_type = required_string(&args, "new_type")?;
            let policy = match opt_string(&args, "migration_policy", "EVS.5400")? {
                Some(p) => MigrationPolicy::parse(&p)?,
                None => MigrationPolicy::Never,
            };
            svc.retype(&c, &id, &new_type, policy).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        other => Err(Error::invalid("EVS.5400", format!("There is no such action: {other}")).into()),
    }
}

// ----- actions: snapshot actions ----------------------------------------------------------------

/// The policy action of a snapshot `…/action` body.
pub(crate) fn snapshot_action_policy(body: &[u8]) -> &'static str {
    body_action(body, snapshot_action_key)
}

/// Snapshot action key → policy action (Cinder: reset and force delete are admin-only; the
/// snapshot's owner may report its status); unknown keys are updates the handler rejects.
fn snapshot_action_key(key: &str) -> &'static str {
    match key {
        "os-reset_status" => "evs:snapshots:resetStatus",
        "os-update_snapshot_status" => "evs:snapshots:updateStatus",
        "os-force_delete" => "evs:snapshots:forceDelete",
        "os-unmanage" => "evs:volumes:manage",
        _ => "evs:snapshots:update",
    }
}

/// A required string argument of an action.
fn required_string(args: &Map<String, Value>, key: &str) -> Result<String, Error> {
    opt_string(args, key, "EVS.5400")?
        .ok_or_else(|| Error::invalid("EVS.5400", format!("Invalid input received: '{key}' is a required property")))
}

/// `POST /snapshots/{id}/action`: `os-reset_status`, `os-update_snapshot_status`,
/// `os-force_delete`.
pub(super) async fn snapshot_action(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, CinderError> {
    let c = caller(&svc, &headers, &p)?;
    let (action, args) = split_action(&body)?;
    match action.as_str() {
        "os-reset_status" => {
            reject_unknown(&args, &["status"])?;
            let status = crate::service::parse_snapshot_status(&required_string(&args, "status")?)?;
            svc.reset_snapshot_status(&c, &id, status).await?;
        }
        "os-update_snapshot_status" => {
            reject_unknown(&args, &["status", "progress"])?;
            let status = required_string(&args, "status")?;
            let progress = opt_string(&args, "progress", "EVS.5400")?;
            svc.update_snapshot_status(&c, &id, &status, progress.as_deref()).await?;
        }
        "os-force_delete" => {
            svc.force_delete_snapshot(&c, &id).await?;
        }
        "os-unmanage" => {
            reject_unknown(&args, &[])?;
            svc.unmanage_snapshot(&c, &id).await?;
        }
        other => return Err(Error::invalid("EVS.5400", format!("There is no such action: {other}")).into()),
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

/// Refuse keys an action's schema does not allow (Cinder: `additionalProperties: false`).
pub(super) fn reject_unknown(args: &Map<String, Value>, allowed: &[&str]) -> Result<(), Error> {
    match args.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(Error::invalid(
            "EVS.5400",
            format!(
                "Invalid input for field/attribute {k}: Additional properties are not allowed ('{k}' was unexpected)"
            ),
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;
    use crate::service::policy;

    #[test]
    fn every_action_key_names_a_policy_action() {
        let keys = [
            "os-extend",
            "os-attach",
            "os-reserve",
            "os-detach",
            "os-show_image_metadata",
            "os-volume_upload_image",
            "revert",
            "os-retype",
            "os-reset_status",
            "os-force_delete",
            "os-force_detach",
            "os-migrate_volume",
            "os-unmanage",
            "os-update_snapshot_status",
            "",
            "x",
        ];
        for k in keys {
            let a = volume_action_key(k);
            assert!(policy::is_known(a), "{a} is not in POLICY");
        }
        assert_eq!(volume_action_policy(br#"{"os-reset_status":{}}"#), "evs:volumes:resetStatus");
        assert_eq!(volume_action_policy(br#"{"os-extend":{},"os-force_delete":{}}"#), "evs:volumes:forceDelete");
    }

    #[test]
    fn snapshot_action_keys_name_policy_actions() {
        for k in ["os-reset_status", "os-update_snapshot_status", "os-force_delete", "os-unmanage", "x"] {
            assert!(policy::is_known(snapshot_action_key(k)), "{k}");
        }
        assert_eq!(policy::required_role(snapshot_action_key("os-reset_status")), crate::model::Role::Admin);
        assert_eq!(policy::required_role(snapshot_action_key("os-force_delete")), crate::model::Role::Admin);
        assert_eq!(policy::required_role(snapshot_action_key("os-update_snapshot_status")), crate::model::Role::Member);
    }
}
