//! evs: the parts of EVS request bodies that are not the disk itself: which keys a create may
//! carry (reference 6.1.1 and the SDK's `CreateVolumeRequestBody`/`CreateVolumeOption`), the
//! billing parameters (`bssParam`) of create and extend, and the scheduler hints.
//!
//! The rule: a field is honoured or refused, never accepted and dropped. `bssParam` is the
//! one exception the SDK's models allow: it only tells Huawei's billing how to charge, so a
//! pay-per-use (`postPaid`) request is accepted with it checked and otherwise unused; a
//! subscription (`prePaid`), which would end the disk with its period, is refused.

use serde_json::{Map, Value};

use crate::error::Error;

/// Keys of the top-level create body.
const BODY_KEYS: [&str; 4] = ["volume", "bssParam", "server_id", "OS-SCH-HNT:scheduler_hints"];

/// Keys of `volume` in a create: the SDK's `CreateVolumeOption`, plus the reference's
/// deprecated `shareable` and the `image_id` spelling older clients send.
const VOLUME_KEYS: [&str; 17] = [
    "availability_zone",
    "backup_id",
    "count",
    "description",
    "enterprise_project_id",
    "imageRef",
    "image_id",
    "metadata",
    "multiattach",
    "shareable",
    "name",
    "size",
    "snapshot_id",
    "volume_type",
    "tags",
    "iops",
    "throughput",
];

/// Clone sources of the Cinder API that the EVS create does not take (reference 6.1.1 names
/// backup, snapshot and image only).
const CLONE_KEYS: [&str; 3] = ["source_volid", "source_volume_id", "source_replica"];

/// Refuse any top-level key of a create body we do not serve.
pub fn check_body_keys(body: &Value) -> Result<(), Error> {
    if let Some(o) = body.as_object() {
        if let Some(k) = o.keys().find(|k| !BODY_KEYS.contains(&k.as_str())) {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Malformed request body: unknown field {k:?} (expected {BODY_KEYS:?})."),
            ));
        }
    }
    Ok(())
}

/// Refuse any key of `volume` we do not serve; clone sources get their own message.
pub fn check_volume_keys(o: &Map<String, Value>) -> Result<(), Error> {
    if let Some(k) = o.keys().find(|k| CLONE_KEYS.contains(&k.as_str())) {
        return Err(Error::invalid(
            "EVS.1009",
            format!(
                "invalid volumeForCreate: {k} is not supported on cloudvolumes (reference 6.1.1 creates from a \
                 backup, snapshot or image); clone a disk with POST /v2/{{project_id}}/volumes and source_volid."
            ),
        ));
    }
    if let Some(k) = o.keys().find(|k| !VOLUME_KEYS.contains(&k.as_str())) {
        return Err(Error::invalid("EVS.1009", format!("invalid volumeForCreate: unknown field {k:?}.")));
    }
    Ok(())
}

fn bss_bad(m: String) -> Error {
    Error::invalid("EVS.2108", format!("Request body is invalid: {m}"))
}

/// A `"true"`/`"false"` string (the SDK types these flags as strings).
fn bss_flag(o: &Map<String, Value>, k: &str) -> Result<(), Error> {
    match o.get(k) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(()),
        Some(v) => Err(bss_bad(format!("bssParam.{k} must be \"true\" or \"false\", not {v}."))),
    }
}

/// Check the create's `bssParam` (SDK `BssParamForCreateVolume`).
pub fn check_bss_create(v: Option<&Value>) -> Result<(), Error> {
    let o = match v {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(o)) => o,
        Some(other) => return Err(bss_bad(format!("bssParam must be an object, not {other}."))),
    };
    const KEYS: [&str; 5] = ["chargingMode", "isAutoPay", "isAutoRenew", "periodNum", "periodType"];
    if let Some(k) = o.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(bss_bad(format!("unknown field bssParam.{k}.")));
    }
    match o.get("chargingMode") {
        None | Some(Value::Null) => {}
        Some(Value::String(m)) if m == "postPaid" => {}
        Some(Value::String(m)) if m == "prePaid" => {
            return Err(Error::invalid(
                "EVS.2108",
                "Request body is invalid: chargingMode prePaid (a subscription that ends the disk with its period) \
                 is not supported; use postPaid.",
            ))
        }
        Some(v) => return Err(bss_bad(format!("bssParam.chargingMode must be postPaid or prePaid, not {v}."))),
    }
    bss_flag(o, "isAutoPay")?;
    bss_flag(o, "isAutoRenew")?;
    match o.get("periodType") {
        None | Some(Value::Null) => {}
        Some(Value::String(t)) if t == "month" || t == "year" => {}
        Some(v) => return Err(bss_bad(format!("bssParam.periodType must be month or year, not {v}."))),
    }
    match o.get("periodNum") {
        None | Some(Value::Null) => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|n| (1..=9).contains(&n)) => {}
        Some(v) => return Err(bss_bad(format!("bssParam.periodNum must be an integer 1 to 9, not {v}."))),
    }
    Ok(())
}

/// Check an extend's `bssParam` (SDK `BssParamForResizeVolume`: only `isAutoPay`, which pays
/// a subscription disk's order; our disks have no order to pay).
pub fn check_bss_resize(v: &Value) -> Result<(), Error> {
    let o = match v {
        Value::Null => return Ok(()),
        Value::Object(o) => o,
        other => return Err(bss_bad(format!("bssParam must be an object, not {other}."))),
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "isAutoPay") {
        return Err(bss_bad(format!("unknown field bssParam.{k}.")));
    }
    bss_flag(o, "isAutoPay")
}

/// `OS-SCH-HNT:scheduler_hints.dedicated_storage_id`: the pool name to place on.
pub fn dedicated_storage(v: Option<&Value>) -> Result<Option<String>, Error> {
    let o = match v {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(o)) => o,
        Some(other) => {
            return Err(Error::invalid(
                "EVS.5400",
                format!("Malformed request body: OS-SCH-HNT:scheduler_hints must be an object, not {other}."),
            ))
        }
    };
    if let Some(k) = o.keys().find(|k| k.as_str() != "dedicated_storage_id") {
        return Err(Error::invalid(
            "EVS.5400",
            format!("Unsupported scheduler hint {k:?}: only dedicated_storage_id."),
        ));
    }
    crate::api::common::opt_string(o, "dedicated_storage_id", "EVS.5400")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn bss_params() {
        assert!(check_bss_create(Some(&json!({"chargingMode": "postPaid", "isAutoPay": "true"}))).is_ok());
        assert!(check_bss_create(Some(&json!({"chargingMode": "prePaid", "periodNum": 1}))).is_err());
        assert!(check_bss_create(Some(&json!({"periodNum": 12}))).is_err());
        assert!(check_bss_create(Some(&json!({"other": 1}))).is_err());
        assert!(check_bss_resize(&json!({"isAutoPay": "false"})).is_ok());
        assert!(check_bss_resize(&json!({"isAutoPay": true})).is_err());
    }

    #[test]
    fn keys() {
        assert!(check_volume_keys(json!({"size": 1, "tags": {}}).as_object().unwrap()).is_ok());
        assert_eq!(
            check_volume_keys(json!({"source_volid": "x"}).as_object().unwrap()).unwrap_err().code,
            Some("EVS.1009")
        );
        assert!(check_body_keys(&json!({"volume": {}, "bogus": 1})).is_err());
        assert_eq!(dedicated_storage(Some(&json!({"dedicated_storage_id": "p"}))).unwrap().as_deref(), Some("p"));
    }
}
