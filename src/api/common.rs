//! Helpers shared by both APIs: reading JSON bodies and query strings into typed values with
//! domain errors, the caller of a request, and link building.

use std::collections::BTreeMap;

use axum::http::HeaderMap;
use serde_json::{Map, Value};

use crate::error::{Error, ErrorKind, Result};
use crate::service::{Caller, Services};

/// The id of the current request (`req-<uuid>`).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// Whether a request carries a body (a non-zero `Content-Length`, or chunked).
pub fn has_body(headers: &axum::http::HeaderMap) -> bool {
    headers.contains_key(axum::http::header::TRANSFER_ENCODING)
        || headers
            .get(axum::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|n| n.trim() != "0")
}

/// Parse a JSON body into an object; malformed JSON is `EVS.5400`, and so is any string (key
/// or value) holding a NUL character (PostgreSQL cannot store one; no field means one) or a
/// `name` holding another control character.
pub fn parse_json(body: &[u8]) -> Result<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::invalid("EVS.5400", "Malformed request body: the body is empty."));
    }
    let v =
        serde_json::from_slice(body).map_err(|e| Error::invalid("EVS.5400", format!("Malformed request body: {e}")))?;
    check_text(&v, None)?;
    Ok(v)
}

/// Walk a parsed body for the characters no field may hold (see [`parse_json`]).
pub fn check_text(v: &Value, key: Option<&str>) -> Result<()> {
    match v {
        Value::String(s) => {
            if s.contains('\0') {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!("Invalid input: {} must not contain a NUL character.", key.unwrap_or("a string")),
                ));
            }
            if matches!(key, Some("name" | "display_name")) && s.chars().any(char::is_control) {
                return Err(Error::invalid(
                    "EVS.5400",
                    format!(
                        "Invalid input for field/attribute {}: control characters are not allowed.",
                        key.unwrap_or("name")
                    ),
                ));
            }
            Ok(())
        }
        Value::Array(a) => a.iter().try_for_each(|x| check_text(x, key)),
        Value::Object(o) => o.iter().try_for_each(|(k, x)| {
            if k.contains('\0') {
                return Err(Error::invalid("EVS.5400", "Invalid input: a key must not contain a NUL character."));
            }
            check_text(x, Some(k))
        }),
        _ => Ok(()),
    }
}

/// The object under `key` of a JSON body (`{"volume": {...}}`).
pub fn take_object(body: Value, key: &str, code: &'static str) -> Result<Map<String, Value>> {
    match body {
        Value::Object(mut m) => match m.remove(key) {
            Some(Value::Object(o)) => Ok(o),
            Some(_) => Err(Error::invalid(code, format!("'{key}' must be an object"))),
            None => Err(Error::invalid(code, format!("Missing required element '{key}' in request body."))),
        },
        _ => Err(Error::invalid("EVS.5400", "Malformed request body: expected a JSON object")),
    }
}

/// An optional string field; explicit `null` is the same as absent.
pub fn opt_string(o: &Map<String, Value>, key: &str, code: &'static str) -> Result<Option<String>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"),
        )),
    }
}

/// Distinguish "absent" (None) from "set to null" (Some(None)) for updates.
pub fn opt_nullable_string(o: &Map<String, Value>, key: &str, code: &'static str) -> Result<Option<Option<String>>> {
    match o.get(key) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(other) => Err(Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'string'"),
        )),
    }
}

/// An optional integer as Cinder's schema accepts it: a JSON integer or a string of digits
/// (no fractions, no booleans).
pub fn opt_strict_int(o: &Map<String, Value>, key: &str, code: &'static str) -> Result<Option<i64>> {
    let bad = |v: &Value| {
        Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {v}. {v} is not of type 'integer'"),
        )
    };
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| bad(v)),
        Some(v @ Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
            s.parse::<i64>().map(Some).map_err(|_| bad(v))
        }
        Some(v) => Err(bad(v)),
    }
}

/// An optional boolean; accepts JSON booleans and the strings `true`/`false` (any case).
pub fn opt_bool(o: &Map<String, Value>, key: &str, code: &'static str) -> Result<Option<bool>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) => parse_bool(s).map(Some).ok_or_else(|| {
            Error::invalid(
                code,
                format!("Invalid input for field/attribute {key}. Value: {s}. {s:?} is not of type 'boolean'"),
            )
        }),
        Some(other) => Err(Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'boolean'"),
        )),
    }
}

/// `true`/`false`/`1`/`0`/`yes`/`no`, case-insensitive.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some(true),
        "false" | "0" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// An optional integer: a JSON integer, a float (the integer part is used, as EVS documents)
/// or a string of digits.
pub fn opt_int(o: &Map<String, Value>, key: &str, code: &'static str) -> Result<Option<i64>> {
    let bad = |v: &Value| {
        Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {v}. {v} is not of type 'integer'"),
        )
    };
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v @ Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i))
            } else {
                match n.as_f64() {
                    Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
                    _ => Err(bad(v)),
                }
            }
        }
        Some(v @ Value::String(s)) => s.trim().parse::<i64>().map(Some).map_err(|_| bad(v)),
        Some(v) => Err(bad(v)),
    }
}

/// An optional map of string to string (metadata); null is empty.
pub fn opt_string_map(
    o: &Map<String, Value>,
    key: &str,
    code: &'static str,
) -> Result<Option<BTreeMap<String, String>>> {
    match o.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        out.insert(k.clone(), s.clone());
                    }
                    other => {
                        return Err(Error::invalid(
                            code,
                            format!("Invalid input for field/attribute {key}. Value of {k:?}: {other}. {other} is not of type 'string'"),
                        ))
                    }
                }
            }
            Ok(Some(out))
        }
        Some(other) => Err(Error::invalid(
            code,
            format!("Invalid input for field/attribute {key}. Value: {other}. {other} is not of type 'object'"),
        )),
    }
}

/// Query string as ordered pairs (repeated keys kept).
pub fn parse_query(raw: Option<&str>) -> Result<Vec<(String, String)>> {
    let q = serde_urlencoded::from_str::<Vec<(String, String)>>(raw.unwrap_or(""))
        .map_err(|e| Error::invalid("EVS.5400", format!("Malformed request url: {e}")))?;
    if q.iter().any(|(k, v)| k.contains('\0') || v.contains('\0')) {
        return Err(Error::invalid("EVS.5400", "Malformed request url: a NUL character in the query."));
    }
    Ok(q)
}

/// The last value of `key` in a query.
pub fn query_get<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A non-negative integer query parameter (`limit`, `offset`), `default` when absent.
pub fn query_non_negative(q: &[(String, String)], key: &str, default: i64) -> Result<i64> {
    match query_get(q, key) {
        None => Ok(default),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::invalid("EVS.5400", format!("{key} must be a non-negative integer"))),
    }
}

/// `all_tenants` as the clients send it (`1`, `True`, or present without a value).
pub fn all_tenants(q: &[(String, String)]) -> bool {
    query_get(q, "all_tenants").map(|v| parse_bool(v).unwrap_or(true)).unwrap_or(false)
}

/// Parse a metadata filter: a JSON object (`{"k":"v"}`) or the Python dict repr the OpenStack
/// clients send (`{'k': 'v'}`).
pub fn parse_metadata_filter(s: &str) -> Option<Vec<(String, String)>> {
    let parsed: Value = serde_json::from_str(s).or_else(|_| serde_json::from_str(&s.replace('\'', "\""))).ok()?;
    let obj = parsed.as_object()?;
    obj.iter()
        .map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            Value::Number(n) => Some((k.clone(), n.to_string())),
            Value::Bool(b) => Some((k.clone(), b.to_string())),
            _ => None,
        })
        .collect()
}

/// Check the project id in the URL looks like one (`EVS.0001` otherwise).
pub fn check_project_id(p: &str) -> Result<()> {
    if p.is_empty() || p.len() > 64 || !p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(Error::invalid("EVS.0001", "invalid tenant id!"));
    }
    Ok(())
}

/// Establish the caller. In `noauth` mode the project comes from the URL and the caller is that
/// project's admin, as with Cinder's noauth middleware; the user id comes from `X-User-Id` or
/// the `user:project` token the cinder client sends.
///
/// In `keystone` mode the caller is the identity the auth middleware established
/// ([`super::auth`]): its project must be `project_id` unless it is an admin.
pub fn caller(svc: &Services, headers: &HeaderMap, project_id: &str) -> Result<Caller> {
    check_project_id(project_id)?;
    if svc.config.auth.mode == crate::config::AuthMode::Keystone {
        return super::auth::keystone_caller(project_id);
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let user_id = header("x-user-id").or_else(|| {
        header("x-auth-token").and_then(|t| t.split_once(':').map(|(u, _)| u.to_string())).filter(|u| !u.is_empty())
    });
    Ok(Caller { project_id: project_id.to_string(), user_id, is_admin: true, roles: vec![crate::model::Role::Admin] })
}

/// Scheme and authority for links: the configured public URL, else the request's Host.
pub fn base_url(svc: &Services, headers: &HeaderMap) -> String {
    if let Some(u) = &svc.config.public_url {
        return u.trim_end_matches('/').to_string();
    }
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c)))
        .map(str::to_string)
        .unwrap_or_else(|| svc.config.listen.to_string());
    let scheme = if svc.config.tls.api_enabled() { "https" } else { "http" };
    format!("{scheme}://{host}")
}

/// An error for a query parameter that is not what it should be.
pub fn bad_query(code: &'static str, msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::Invalid, msg).with_code(code)
}

/// The `rel: next` link of a page: the same query with `marker` set to the last id (and the
/// page's `limit` made explicit), `offset` dropped.
pub fn next_link(base: &str, path: &str, q: &[(String, String)], limit: i64, last_id: &str) -> serde_json::Value {
    let mut params: Vec<(String, String)> = q.iter().filter(|(k, _)| k != "marker" && k != "offset").cloned().collect();
    if query_get(q, "limit").is_none() {
        params.push(("limit".into(), limit.to_string()));
    }
    params.push(("marker".into(), last_id.to_string()));
    let qs = serde_urlencoded::to_string(&params).unwrap_or_default();
    serde_json::json!([{"href": format!("{base}{path}?{qs}"), "rel": "next"}])
}

/// Add `Retry-After` to an error response whose error says when to retry (429).
pub fn with_retry_after(mut resp: axum::response::Response, e: &Error) -> axum::response::Response {
    if let Some(s) = e.retry_after_seconds {
        if let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string()) {
            resp.headers_mut().insert("retry-after", v);
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_filter_forms() {
        assert_eq!(parse_metadata_filter(r#"{"a":"b"}"#), Some(vec![("a".into(), "b".into())]));
        assert_eq!(parse_metadata_filter("{'a': 'b'}"), Some(vec![("a".into(), "b".into())]));
        assert_eq!(parse_metadata_filter("nope"), None);
    }

    #[test]
    fn ints_accept_numbers_floats_and_digit_strings() {
        let o: Map<String, Value> = serde_json::from_str(r#"{"a":3,"b":2.7,"c":"5","d":"x","e":null}"#).expect("json");
        assert_eq!(opt_int(&o, "a", "X").expect("a"), Some(3));
        assert_eq!(opt_int(&o, "b", "X").expect("b"), Some(2));
        assert_eq!(opt_int(&o, "c", "X").expect("c"), Some(5));
        assert!(opt_int(&o, "d", "X").is_err());
        assert_eq!(opt_int(&o, "e", "X").expect("e"), None);
    }
}
