//! `POST /volumes/{id}/action`: one action per body, named by its only key.
//!
//! Served here: `os-extend` (attached volumes from 3.42) and `revert` (3.40+; to ANY snapshot of
//! the volume, where Cinder allows only the latest).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::CinderError;
use crate::api::common::{caller, opt_int, opt_string, parse_json};
use crate::api::ApiVersion;
use crate::error::{Error, ErrorKind};
use crate::service::Services;

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

/// `new_size` of an `os-extend`.
pub(crate) fn new_size(args: &Map<String, Value>) -> Result<i64, Error> {
    opt_int(args, "new_size", "EVS.1010")?
        .ok_or_else(|| Error::invalid("EVS.1011", "Invalid input received: 'new_size' is a required property"))
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
            let s = svc.get_snapshot(&c, &snap).await?;
            if s.volume_id != id {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid input received: snapshot {snap} does not belong to volume {id}."),
                )
                .into());
            }
            svc.rollback_snapshot(&c, &snap, Some(&id)).await?;
            Ok(StatusCode::ACCEPTED.into_response())
        }
        "revert" => Err(Error::new(ErrorKind::NotFound, "The revert action needs microversion 3.40 or later.").into()),
        other => Err(Error::invalid("EVS.5400", format!("There is no such action: {other}")).into()),
    }
}
