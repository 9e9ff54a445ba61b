//! `POST /v2/{project}/volumes/{id}/retype` (the SDK's `retype_volume`): `{"os-retype":
//! {"new_type", "iops"?, "throughput"?}, "bssParam"?: {"isAutoPay"}}` → 202 `{"job_id"}`.
//!
//! `iops` and `throughput` name a provisioned-performance type we do not have: they are
//! refused rather than ignored. `bssParam` is billing only (prepaid disks), accepted and
//! ignored as the reference says.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::EvsError;
use crate::api::common::{caller, opt_string, parse_json};
use crate::error::Error;
use crate::service::Services;

pub(super) async fn retype(
    State(svc): State<Services>,
    Path((p, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, EvsError> {
    let c = caller(&svc, &headers, &p)?;
    let bad = |m: String| EvsError(Error::invalid("EVS.5400", m));
    let Value::Object(mut top) = parse_json(&body)? else {
        return Err(bad("Malformed request body: expected a JSON object".into()));
    };
    if let Some(k) = top.keys().find(|k| !["os-retype", "bssParam"].contains(&k.as_str())) {
        return Err(bad(format!("Invalid request: unknown field {k:?}.")));
    }
    match top.get("bssParam") {
        None | Some(Value::Null) | Some(Value::Object(_)) => {}
        Some(_) => return Err(bad("Invalid bssParam: it must be an object.".into())),
    }
    let o = match top.remove("os-retype") {
        Some(Value::Object(o)) => o,
        Some(_) => return Err(bad("Invalid os-retype: it must be an object.".into())),
        None => return Err(bad("Missing required element 'os-retype' in request body.".into())),
    };
    if let Some(k) = o.keys().find(|k| !["new_type", "iops", "throughput"].contains(&k.as_str())) {
        return Err(bad(format!("Invalid os-retype: unknown field {k:?}.")));
    }
    for k in ["iops", "throughput"] {
        if o.get(k).is_some_and(|v| !v.is_null()) {
            return Err(bad(format!(
                "Invalid os-retype: {k} is not supported (no volume type here has provisioned performance)."
            )));
        }
    }
    let new_type = opt_string(&o, "new_type", "EVS.5400")?
        .filter(|t| !t.is_empty())
        .ok_or_else(|| bad("Invalid os-retype: new_type is required.".into()))?;
    let job_id = svc.retype_volume_evs(&c, &id, &new_type).await?;
    Ok((StatusCode::ACCEPTED, Json(json!({"job_id": job_id}))).into_response())
}
