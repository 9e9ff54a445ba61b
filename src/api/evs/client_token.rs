//! The `X-Client-Token` header of an EVS create (idempotency; rules in
//! `service::client_tokens`).

use axum::http::HeaderMap;

use crate::error::{Error, Result};

/// The token, when the request carries one; a value that is not visible ASCII is `EVS.5400`
/// (length and characters are checked by the service).
pub(super) fn from_headers(headers: &HeaderMap) -> Result<Option<String>> {
    match headers.get("x-client-token") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .map(|s| Some(s.to_string()))
            .map_err(|_| Error::invalid("EVS.5400", "Invalid X-Client-Token: it must be printable ASCII.")),
    }
}
