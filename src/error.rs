//! The one domain error every layer below the API returns.
//!
//! Each API renders it in its own wire format (`api::evs::error`, `api::cinder::error`). An error
//! carries a [`ErrorKind`] (which decides the HTTP status and the Cinder fault name), an optional
//! EVS error code from the reference's appendix A.1, and a message. Internal errors keep their
//! detail for the log but show a generic message on the wire.

use std::fmt;

/// What went wrong, independent of any wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Malformed or semantically invalid input (400).
    Invalid,
    /// The resource does not exist or is not visible to the caller (404).
    NotFound,
    /// The resource is in a state that forbids the operation (Cinder 400/409, EVS 400).
    Conflict,
    /// A quota would be exceeded (Cinder 413, EVS 400).
    Quota,
    /// The operation is not supported (501).
    Unsupported,
    /// The backing pool has no room (Cinder 400, EVS 400).
    NoSpace,
    /// No valid credentials (401).
    Unauthorized,
    /// Credentials valid but the action is not allowed (403).
    Forbidden,
    /// The requested microversion is not served (406).
    NotAcceptable,
    /// Wrong HTTP method on a known path (405).
    MethodNotAllowed,
    /// Too many requests of a kind (failed logins); retry later (429).
    TooManyRequests,
    /// The request body is larger than the route accepts (413).
    PayloadTooLarge,
    /// The client did not send its request body in time (408).
    RequestTimeout,
    /// The request body is not JSON (`Content-Type` other than `application/json`) (415).
    UnsupportedMediaType,
    /// The service cannot take the request now, e.g. the metadata database's disk is full
    /// (503; retry once the operator frees space).
    Unavailable,
    /// Anything else; the message is not shown to the client (500).
    Internal,
}

/// The domain error.
#[derive(Debug, Clone, thiserror::Error)]
pub struct Error {
    /// Category deciding status code and fault name.
    pub kind: ErrorKind,
    /// EVS error code (`EVS.1046`, `Common.0018`…) when one of appendix A.1 fits.
    pub code: Option<&'static str>,
    /// Human readable message (for `Internal` this is only logged).
    pub message: String,
    /// For `Conflict`: whether Cinder answers 409 (true) or 400 (false, "invalid status").
    pub http_conflict: bool,
    /// For `TooManyRequests`: the `Retry-After` seconds.
    pub retry_after_seconds: Option<u64>,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(c) => write!(f, "{c}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Short for `Result<T, Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message` and no EVS code.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, code: None, message: message.into(), http_conflict: false, retry_after_seconds: None }
    }
    /// Attach an EVS error code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }
    /// Invalid input with an EVS code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, message).with_code(code)
    }
    /// Unknown resource (`EVS.5404`).
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message).with_code("EVS.5404")
    }
    /// A resource in the wrong status; Cinder renders it as 400 `badRequest` like its
    /// `InvalidVolume`.
    pub fn invalid_status(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message).with_code(code)
    }
    /// A conflict Cinder renders as 409 (e.g. a second attachment).
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        let mut e = Self::new(ErrorKind::Conflict, message).with_code(code);
        e.http_conflict = true;
        e
    }
    /// Internal failure; `detail` is logged, never shown.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, detail).with_code("EVS.5500")
    }
    /// The message safe to put on the wire.
    pub fn public_message(&self) -> &str {
        if self.kind == ErrorKind::Internal {
            "Internal server error."
        } else {
            &self.message
        }
    }
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        if is_disk_full(&e) {
            // Nothing was written (the transaction failed); say so plainly instead of a bare
            // 500, so the operator knows what to fix and clients may retry.
            tracing::error!(error = %e, "the metadata database has no space left");
            return Error::new(
                ErrorKind::Unavailable,
                "The metadata database has no space left; retry once space is freed.",
            )
            .with_code("EVS.5503");
        }
        Error::internal(format!("database: {e}"))
    }
}

/// Whether a database error means its disk is full: SQLite's `SQLITE_FULL` (13, also as the
/// extended codes 13 + n·256) and PostgreSQL's `disk_full` (SQLSTATE 53100).
fn is_disk_full(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    match db.code() {
        Some(code) => code == "53100" || code.parse::<i64>().is_ok_and(|n| n & 0xff == 13),
        None => false,
    }
}

impl From<sqlx::migrate::MigrateError> for Error {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Error::internal(format!("migration: {e}"))
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::internal(format!("io: {e}"))
    }
}
