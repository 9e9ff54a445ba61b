//! Cinder's operator APIs (admin-only): `os-services` (list with `?host=`/`?binary=`, and
//! `PUT os-services/{enable,disable,disable-log-reason,freeze,thaw}`), `os-hosts` (list and
//! per-project usage of one volume host), `scheduler-stats/get_pools` (`?detail=`) and
//! `capabilities/{host}`. Bodies are those of Cinder's controllers and views; request bodies
//! are checked against Cinder's schemas before anything changes.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};

use super::CinderError;
use crate::api::common::{caller, parse_bool, parse_json, parse_query, query_get};
use crate::api::ApiVersion;
use crate::error::Error;
use crate::model::{now_timestamp, VOLUME_BINARY};
use crate::service::scheduler::{self, DRIVER_VERSION, STORAGE_PROTOCOL, VENDOR_NAME};
use crate::service::{PoolStats, Services};

type Res = Result<Response, CinderError>;

fn bad(m: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", m)
}

/// `GET os-services[?host=&binary=]`: Cinder's index with `os-extended-services` loaded.
pub(super) async fn list(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    version: ApiVersion,
) -> Res {
    caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let services = svc.list_services(query_get(&q, "host"), query_get(&q, "binary")).await?;
    let list: Vec<Value> = services
        .iter()
        .map(|s| {
            let r = &s.record;
            let mut o = Map::new();
            o.insert("binary".into(), json!(r.binary));
            o.insert("host".into(), json!(r.host));
            o.insert("zone".into(), json!(r.availability_zone));
            o.insert("status".into(), json!(if r.disabled { "disabled" } else { "enabled" }));
            o.insert("state".into(), json!(if s.up { "up" } else { "down" }));
            o.insert("updated_at".into(), json!(r.updated_at.as_deref().unwrap_or(&r.created_at)));
            if version.at_least(49) && r.binary == VOLUME_BINARY {
                o.insert("backend_state".into(), json!(if s.up { "up" } else { "down" }));
            }
            if version.at_least(7) {
                o.insert("cluster".into(), Value::Null);
            }
            o.insert("disabled_reason".into(), json!(r.disabled_reason));
            if r.binary == VOLUME_BINARY {
                o.insert("replication_status".into(), json!("not-capable"));
                o.insert("active_backend_id".into(), Value::Null);
                o.insert("frozen".into(), json!(r.frozen));
            }
            Value::Object(o)
        })
        .collect();
    Ok(Json(json!({"services": list})).into_response())
}

/// A string property of 1..=255 characters (Cinder's schemas), `nullable` allowing null.
fn opt_str<'a>(o: &'a Map<String, Value>, key: &str, nullable: bool) -> Result<Option<&'a str>, Error> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Null) if nullable => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= 255 => Ok(Some(s)),
        Some(Value::String(s)) if s.is_empty() => {
            Err(bad(format!("Invalid input for field/attribute {key}. Value: . '' is too short")))
        }
        Some(Value::String(_)) => Err(bad(format!("Invalid input for field/attribute {key}. Value is too long"))),
        Some(v) => {
            Err(bad(format!("Invalid input for field/attribute {key}. Value: {v}. {v} is not of type 'string'")))
        }
    }
}

/// The body object, refusing properties outside `allowed`.
fn body_object(body: &Bytes, allowed: &[&str]) -> Result<Map<String, Value>, Error> {
    let o = match parse_json(body)? {
        Value::Object(o) => o,
        _ => return Err(bad("Malformed request body: expected a JSON object")),
    };
    if let Some(extra) = o.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(bad(format!("Additional properties are not allowed ({extra:?} was unexpected)")));
    }
    Ok(o)
}

/// `PUT os-services/{action}`.
pub(super) async fn update(
    State(svc): State<Services>,
    Path((p, action)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Res {
    caller(&svc, &headers, &p)?;
    match action.as_str() {
        "enable" | "disable" | "disable-log-reason" => {
            let with_reason = action == "disable-log-reason";
            let allowed: &[&str] = if with_reason {
                &["binary", "host", "cluster", "service", "disabled_reason"]
            } else {
                &["binary", "host", "cluster", "service"]
            };
            let o = body_object(&body, allowed)?;
            let binary = opt_str(&o, "binary", false)?;
            let service = opt_str(&o, "service", false)?;
            let host = opt_str(&o, "host", true)?;
            opt_str(&o, "cluster", true)?;
            let reason = match with_reason {
                true => match opt_str(&o, "disabled_reason", false)? {
                    Some(r) if r.trim() != r || r.trim().is_empty() => {
                        return Err(bad(format!(
                            "Invalid input for field/attribute disabled_reason. Value: {r}. \
                             Disabled reason contains invalid characters or is too long"
                        ))
                        .into())
                    }
                    r => r,
                },
                false => None,
            };
            let Some(key) = binary.or(service) else {
                return Err(bad("Invalid input: 'binary' or 'service' is a required property").into());
            };
            let Some(host) = host else {
                return Err(bad("Invalid input received: Missing required element 'host' in request body.").into());
            };
            let disabled = action != "enable";
            let rec = svc.set_service_disabled(host, key, disabled, reason).await?;
            let mut out = json!({
                "host": host,
                "service": service.unwrap_or(""),
                "binary": binary.unwrap_or(""),
                "status": if disabled { "disabled" } else { "enabled" },
                "disabled": disabled,
            });
            if action != "disable" {
                // disable-log-reason echoes the reason; enable reports it cleared.
                out["disabled_reason"] = json!(rec.disabled_reason);
            }
            Ok(Json(out).into_response())
        }
        "freeze" | "thaw" => {
            let o = body_object(&body, &["host", "cluster"])?;
            opt_str(&o, "cluster", true)?;
            let Some(host) = opt_str(&o, "host", true)? else {
                return Err(bad("Invalid input received: Missing required element 'host' in request body.").into());
            };
            svc.freeze_host(host, action == "freeze").await?;
            Ok(().into_response())
        }
        "failover_host" | "failover" => {
            Err(bad("Invalid input received: the backends have no replication targets to fail over to.").into())
        }
        _ => Err(bad("Invalid input received: Unknown action").into()),
    }
}

/// `GET os-hosts[?zone=]`: enabled services, as Cinder's deprecated hosts extension lists them.
pub(super) async fn list_hosts(
    State(svc): State<Services>,
    Path(p): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let zone = query_get(&q, "zone").filter(|z| !z.is_empty());
    let hosts: Vec<Value> = svc
        .list_services(None, None)
        .await?
        .iter()
        .filter(|s| !s.record.disabled && zone.is_none_or(|z| s.record.availability_zone == z))
        .map(|s| {
            let r = &s.record;
            json!({
                "host_name": r.host,
                "service": r.binary,
                "zone": r.availability_zone,
                "service-status": if s.up { "available" } else { "unavailable" },
                "service-state": "enabled",
                "last-update": r.updated_at,
            })
        })
        .collect();
    Ok(Json(json!({"hosts": hosts})).into_response())
}

/// `GET os-hosts/{host}`: a `(total)` row, then one row per project with volumes there.
pub(super) async fn show_host(
    State(svc): State<Services>,
    Path((p, host)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    let usage = svc.host_usage(&host).await?;
    let row = |project: &str, vc: i64, vg: i64, sc: i64, sg: i64| {
        json!({"resource": {
            "host": host, "project": project,
            "volume_count": vc.to_string(), "total_volume_gb": vg.to_string(),
            "snapshot_count": sc.to_string(), "total_snapshot_gb": sg.to_string(),
        }})
    };
    let sum = |f: fn(&crate::store::ProjectUsage) -> i64| usage.iter().map(f).sum::<i64>();
    let mut rows = vec![row(
        "(total)",
        sum(|u| u.volume_count),
        sum(|u| u.volume_gb),
        sum(|u| u.snapshot_count),
        sum(|u| u.snapshot_gb),
    )];
    // Cinder lists the projects that own volumes on the host.
    rows.extend(
        usage
            .iter()
            .filter(|u| u.volume_count > 0)
            .map(|u| row(&u.project_id, u.volume_count, u.volume_gb, u.snapshot_count, u.snapshot_gb)),
    );
    Ok(Json(json!({"host": rows})).into_response())
}

/// The name a pool has in `get_pools` (Cinder's `host@backend#pool`).
fn pool_name(s: &PoolStats) -> String {
    format!("{}#{}", s.host, s.pool)
}

/// A pool's capabilities as `get_pools?detail=true` shows them: the scheduler's map, stamped.
fn pool_capabilities(s: &PoolStats) -> Value {
    let mut caps = scheduler::pool_capabilities(s);
    caps.insert("timestamp".into(), json!(now_timestamp()));
    Value::Object(caps)
}

/// `GET scheduler-stats/get_pools[?detail=<bool>]`.
pub(super) async fn get_pools(State(svc): State<Services>, Path(p): Path<String>, uri: Uri, headers: HeaderMap) -> Res {
    caller(&svc, &headers, &p)?;
    let q = parse_query(uri.query())?;
    let detail = match query_get(&q, "detail") {
        None => false,
        Some(v) => parse_bool(v).ok_or_else(|| bad(format!("Invalid value '{v}' for detail: it must be a boolean")))?,
    };
    let pools: Vec<Value> = svc
        .get_pools()
        .await?
        .iter()
        .map(|s| match detail {
            true => json!({"name": pool_name(s), "capabilities": pool_capabilities(s)}),
            false => json!({"name": pool_name(s)}),
        })
        .collect();
    Ok(Json(json!({"pools": pools})).into_response())
}

/// `GET capabilities/{host}`: Cinder's capabilities view of one backend.
pub(super) async fn show_capabilities(
    State(svc): State<Services>,
    Path((p, host)): Path<(String, String)>,
    headers: HeaderMap,
) -> Res {
    caller(&svc, &headers, &p)?;
    let s = svc.backend_capabilities(&host).await?;
    let prop = |title: &str, description: &str| json!({"title": title, "description": description, "type": "boolean"});
    Ok(Json(json!({
        "namespace": format!("OS::Storage::Capabilities::{}", s.host),
        "vendor_name": VENDOR_NAME,
        "volume_backend_name": s.pool,
        "pool_name": s.pool,
        "driver_version": DRIVER_VERSION,
        "storage_protocol": STORAGE_PROTOCOL,
        "display_name": Value::Null,
        "description": Value::Null,
        "visibility": Value::Null,
        "replication_targets": [],
        "properties": {
            "thin_provisioning": prop("Thin Provisioning", "Sets thin provisioning."),
        },
    }))
    .into_response())
}
