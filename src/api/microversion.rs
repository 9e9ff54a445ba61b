//! Cinder microversions: `OpenStack-API-Version: volume 3.x` on `/v3` requests.
//!
//! The negotiated version is echoed in `OpenStack-API-Version` with `Vary`; a version outside
//! `3.0..=3.MAX_MINOR` is 406, a malformed header 400. `/v2` requests act as 3.0 without
//! headers. Handlers read the version through the [`ApiVersion`] extractor.

use axum::extract::{FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{Error, ErrorKind};

/// Highest `3.x` we serve (Cinder 2024.1 level).
pub const MAX_MINOR: u16 = 71;

/// The negotiated microversion's minor number (`3.minor`); 0 for `/v2` and plain `/v3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ApiVersion(pub u16);

impl ApiVersion {
    /// True when the request's version is at least `3.minor`.
    pub fn at_least(self, minor: u16) -> bool {
        self.0 >= minor
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ApiVersion {
    type Rejection = std::convert::Infallible;
    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(parts.extensions.get::<ApiVersion>().copied().unwrap_or(ApiVersion(0)))
    }
}

/// Parse the volume entry of an `OpenStack-API-Version` header (`volume 3.5`, `volume latest`,
/// possibly among other services separated by commas). `Ok(None)` when no volume entry.
fn requested_minor(headers: &HeaderMap) -> Result<Option<u16>, Error> {
    let mut found = None;
    for v in headers.get_all("openstack-api-version") {
        let s = v.to_str().map_err(|_| Error::new(ErrorKind::Invalid, "Invalid OpenStack-API-Version header"))?;
        for item in s.split(',') {
            let mut words = item.split_whitespace();
            let (Some(service), Some(ver)) = (words.next(), words.next()) else { continue };
            if !service.eq_ignore_ascii_case("volume") {
                continue;
            }
            if ver.eq_ignore_ascii_case("latest") {
                found = Some(MAX_MINOR);
                continue;
            }
            let bad = || Error::new(ErrorKind::Invalid, format!("Invalid API version request: {ver:?}"));
            let (major, minor) = ver.split_once('.').ok_or_else(bad)?;
            let major: u16 = major.parse().map_err(|_| bad())?;
            let minor: u16 = minor.parse().map_err(|_| bad())?;
            if major != 3 || minor > MAX_MINOR {
                return Err(Error::new(
                    ErrorKind::NotAcceptable,
                    format!("Version {ver} is not supported by the API. Minimum is 3.0 and maximum is 3.{MAX_MINOR}."),
                ));
            }
            found = Some(minor);
        }
    }
    Ok(found)
}

/// Middleware: negotiate on `/v3/...` paths (not version discovery), echo the result.
pub async fn negotiate(mut req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let is_v3_api = path.starts_with("/v3/") && path.len() > "/v3/".len();
    if !is_v3_api {
        return next.run(req).await;
    }
    let minor = match requested_minor(req.headers()) {
        Ok(m) => m.unwrap_or(0),
        Err(e) => {
            let evs = super::is_evs_path(req.uri().path());
            let mut resp = if evs {
                super::evs::EvsError(e).into_response()
            } else {
                super::cinder::CinderError(e).into_response()
            };
            resp.headers_mut().insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
            return resp;
        }
    };
    req.extensions_mut().insert(ApiVersion(minor));
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&format!("volume 3.{minor}")) {
        resp.headers_mut().insert("openstack-api-version", v);
    }
    resp.headers_mut().insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("OpenStack-API-Version", HeaderValue::from_str(v).expect("hdr"));
        h
    }

    #[test]
    fn parses_versions() {
        assert_eq!(requested_minor(&HeaderMap::new()).expect("none"), None);
        assert_eq!(requested_minor(&hdr("volume 3.63")).expect("ok"), Some(63));
        assert_eq!(requested_minor(&hdr("compute 2.1, volume 3.5")).expect("ok"), Some(5));
        assert_eq!(requested_minor(&hdr("volume latest")).expect("ok"), Some(MAX_MINOR));
        assert_eq!(requested_minor(&hdr("volume 3.99")).expect_err("406").kind, ErrorKind::NotAcceptable);
        assert_eq!(requested_minor(&hdr("volume 2.0")).expect_err("406").kind, ErrorKind::NotAcceptable);
        assert_eq!(requested_minor(&hdr("volume x")).expect_err("400").kind, ErrorKind::Invalid);
    }
}
