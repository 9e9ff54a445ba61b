//! evs: request parts shared by the v5 surfaces (snapshot groups, auto-snapshot policies,
//! standard snapshots): the `tags` list filter and the tag batch bodies, parsed once so the
//! three answer the same input with the same error.

use serde_json::Value;

use crate::api::common::{opt_string, parse_json};
use crate::error::{Error, Result};

/// An `EVS.5400` refusal.
pub(super) fn bad(msg: impl Into<String>) -> Error {
    Error::invalid("EVS.5400", msg)
}

/// `tags` as the v5 list filters spell it: a JSON list of `{"key", "value"}` (or one object).
pub(super) fn tags_filter(s: &str) -> Result<Vec<(String, String)>> {
    let v: Value =
        serde_json::from_str(s).map_err(|_| bad("Invalid tags filter: expected JSON [{\"key\", \"value\"}]."))?;
    let items = match v {
        Value::Array(a) => a,
        o @ Value::Object(_) => vec![o],
        _ => return Err(bad("Invalid tags filter: expected JSON [{\"key\", \"value\"}].")),
    };
    items
        .iter()
        .map(|t| match (t.get("key").and_then(Value::as_str), t.get("value").and_then(Value::as_str)) {
            (Some(k), Some(v)) => Ok((k.to_string(), v.to_string())),
            _ => Err(bad("Invalid tags filter: each item needs a string key and value.")),
        })
        .collect()
}

/// The `tags` list of a tag batch body (`batch-create` / `batch-delete`); `value` is required
/// when adding.
pub(super) fn tag_batch_items(body: &[u8], adding: bool) -> Result<Vec<(String, Option<String>)>> {
    let o = match parse_json(body)? {
        Value::Object(o) => o,
        _ => return Err(bad("Malformed request body: expected a JSON object")),
    };
    let items = match o.get("tags") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        _ => return Err(bad("Invalid request: 'tags' must be a non-empty list.")),
    };
    let mut out = Vec::with_capacity(items.len());
    for it in items {
        let t = it.as_object().ok_or_else(|| bad("Invalid tag: each tag must be an object."))?;
        let key = opt_string(t, "key", "EVS.5400")?.ok_or_else(|| bad("Invalid tag: 'key' is required."))?;
        let value = opt_string(t, "value", "EVS.5400")?;
        if adding && value.is_none() {
            return Err(bad(format!("Invalid tag {key:?}: 'value' is required.")));
        }
        out.push((key, value));
    }
    Ok(out)
}
