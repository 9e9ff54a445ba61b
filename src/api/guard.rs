//! The one route table's policy half: every API route names its policy action where it is
//! registered (`get_as("evs:volumes:list", volumes::list_detail)`), and that action is checked
//! against the caller's roles after routing picked the handler and before it runs.
//!
//! Invariants:
//! - The check runs only for a request whose path *and* method matched a route, so a path that
//!   exists with another method answers 405 and an unknown path 404 (in the API's own body),
//!   never a 403 from a policy that does not know the route.
//! - It fails closed: [`super::auth::keystone_caller`], which every handler of a project route
//!   calls for its [`Caller`](crate::service::Caller), refuses a request that did not pass
//!   through a guard, so a route registered with axum's bare `get()` cannot run in keystone mode.
//! - Every action named here is in [`policy::POLICY`]: the router refuses to build otherwise
//!   (checked by every test that starts a server, and by this module's tests).
//!
//! Authentication (who the caller is, and whether the URL's project is theirs) stays in the
//! outer middleware ([`super::auth::authenticate`]), which runs before routing: a request
//! without valid credentials is 401 whatever its path, as keystonemiddleware does for Cinder.

use axum::body::Body;
use axum::extract::Request;
use axum::handler::Handler;
use axum::middleware::{from_fn, Next};
use axum::response::Response;
use axum::routing::{self, MethodRouter};
use serde_json::Value;

use crate::error::Error;
use crate::service::identity::Identity;
use crate::service::{policy, Services};

/// Largest body read to decide an `…/action` route's action (handlers limit further).
const MAX_ACTION_BODY: usize = 4 << 20;

/// What a route requires of its caller.
#[derive(Clone, Copy)]
pub enum Act {
    /// Any authenticated caller of the project (the EVS reference's "Action: None").
    Open,
    /// A policy action.
    Named(&'static str),
    /// The action depends on the JSON body (`…/action` routes); the body is read (bounded) to
    /// decide.
    Body(fn(&[u8]) -> &'static str),
    /// The action depends on the request path (the resource type in `os-vendor-tags/{rt}`).
    Path(fn(&str) -> &'static str),
}

impl From<&'static str> for Act {
    fn from(a: &'static str) -> Act {
        Act::Named(a)
    }
}

/// What the authentication middleware established for this request (a request extension).
#[derive(Clone)]
pub enum Authenticated {
    /// `auth.mode = "noauth"`: every caller is an admin; nothing to check.
    Noauth,
    /// A verified keystone identity (token or SDK signature).
    Keystone(Identity),
}

tokio::task_local! {
    /// Set around a handler that passed its route's guard.
    static AUTHORIZED: ();
}

/// True when the running handler's request passed a guard.
pub fn authorized() -> bool {
    AUTHORIZED.try_with(|_| ()).is_ok()
}

fn guard(method: MethodRouter<Services>, act: Act) -> MethodRouter<Services> {
    if let Act::Named(a) = act {
        assert!(policy::is_known(a), "route action {a} is not in policy::POLICY");
    }
    // `route_layer`: the guard runs only when the method matched; other methods get the 405.
    method.route_layer(from_fn(move |req: Request, next: Next| enforce(act, req, next)))
}

/// `GET` served by `handler` for callers allowed `act`.
pub fn get_as<H, T>(act: impl Into<Act>, handler: H) -> MethodRouter<Services>
where
    H: Handler<T, Services>,
    T: 'static,
{
    guard(routing::get(handler), act.into())
}

/// `POST` served by `handler` for callers allowed `act`.
pub fn post_as<H, T>(act: impl Into<Act>, handler: H) -> MethodRouter<Services>
where
    H: Handler<T, Services>,
    T: 'static,
{
    guard(routing::post(handler), act.into())
}

/// `PUT` served by `handler` for callers allowed `act`.
pub fn put_as<H, T>(act: impl Into<Act>, handler: H) -> MethodRouter<Services>
where
    H: Handler<T, Services>,
    T: 'static,
{
    guard(routing::put(handler), act.into())
}

/// images: `PATCH` served by `handler` for callers allowed `act`.
pub fn patch_as<H, T>(act: impl Into<Act>, handler: H) -> MethodRouter<Services>
where
    H: Handler<T, Services>,
    T: 'static,
{
    guard(routing::patch(handler), act.into())
}

/// `DELETE` served by `handler` for callers allowed `act`.
pub fn delete_as<H, T>(act: impl Into<Act>, handler: H) -> MethodRouter<Services>
where
    H: Handler<T, Services>,
    T: 'static,
{
    guard(routing::delete(handler), act.into())
}

async fn enforce(act: Act, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let id = match req.extensions().get::<Authenticated>() {
        Some(Authenticated::Noauth) => return AUTHORIZED.scope((), next.run(req)).await,
        Some(Authenticated::Keystone(id)) => id.clone(),
        None => {
            return super::render_for_path(&path, crate::service::identity::auth_required("Authentication required."))
        }
    };
    let (action, req) = match act {
        Act::Open => (None, req),
        Act::Named(a) => (Some(a), req),
        Act::Path(f) => (Some(f(&path)), req),
        Act::Body(f) => {
            let (parts, body) = req.into_parts();
            match axum::body::to_bytes(body, MAX_ACTION_BODY).await {
                Ok(bytes) => (Some(f(&bytes)), Request::from_parts(parts, Body::from(bytes))),
                Err(_) => {
                    return super::render_for_path(
                        &path,
                        Error::invalid("EVS.5400", "Malformed request body: the body is too large."),
                    )
                }
            }
        }
    };
    if let Some(a) = action {
        if let Err(e) = policy::authorize(&id.roles, a) {
            tracing::info!(%path, error = %e, "request refused");
            return super::render_for_path(&path, e);
        }
    }
    AUTHORIZED.scope((), next.run(req)).await
}

/// The top-level keys of a JSON object body (empty when it is not one).
fn json_keys(body: &[u8]) -> Vec<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m.keys().cloned().collect(),
        _ => Vec::new(),
    }
}

/// A string field of a JSON object body.
pub fn json_field(body: &[u8], key: &str) -> Option<String> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m.get(key).and_then(Value::as_str).map(str::to_string),
        _ => None,
    }
}

/// The action of an `…/action` body under `map` (action key → policy action): the most
/// privileged of its keys' actions. A handler refuses bodies with several actions anyway; this
/// only makes sure policy never sees less than what could run. A body that names nothing known
/// gets `map("")`, and the handler rejects it.
pub fn body_action(body: &[u8], map: fn(&str) -> &'static str) -> &'static str {
    json_keys(body).iter().map(|k| map(k)).max_by_key(|a| policy::required_role(a)).unwrap_or(map(""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_privileged_key_decides() {
        let map = |k: &str| match k {
            "os-extend" => "evs:volumes:extend",
            "os-force_delete" => "evs:volumes:forceDelete",
            _ => "evs:volumes:update",
        };
        assert_eq!(body_action(br#"{"os-extend":{}}"#, map), "evs:volumes:extend");
        assert_eq!(body_action(br#"{"os-extend":{},"os-force_delete":{}}"#, map), "evs:volumes:forceDelete");
        assert_eq!(body_action(b"not json", map), "evs:volumes:update");
        assert_eq!(json_field(br#"{"action":"delete"}"#, "action").as_deref(), Some("delete"));
    }
}
