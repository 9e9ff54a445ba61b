//! OpenStack Cinder v2/v3 API (and the one v1 show route): routes, request parsing, views and the
//! OpenStack fault body `{"itemNotFound": {"code": 404, "message": …}}`.

pub(crate) mod actions;
mod attachments;
mod catalog;
mod list_query;
// manage: adopting and letting go of storage.
mod manage;
// actions: user messages.
mod messages;
mod metadata;
// qos: QoS specs.
mod qos;
mod quotas;
// services: os-services, os-hosts, scheduler-stats, capabilities (admin).
mod services;
pub(crate) mod snapshots;
// misc: volume summary, resource filters, encryption types, default types, manage.
mod encryption;
// groups: generic volume groups.
mod group_snapshots;
mod group_types;
mod groups;
mod summary;
mod transfers;
mod types;
mod views;
mod volumes;

/// View helpers the EVS API reuses (links, host string).
pub(crate) mod views_shared {
    pub use super::views::{host_of, links_for, snapshot, volume_attachments, Audience, SnapshotView, ViewCtx};
}

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde_json::json;

use super::guard::{delete_as, get_as, post_as, put_as, Act};
use crate::error::{Error, ErrorKind};
use crate::service::Services;

/// The prefixes Cinder routes are served under.
const PREFIXES: [&str; 2] = ["/v2", "/v3"];

pub(super) fn routes() -> Router<Services> {
    let mut r = Router::new()
        .route("/v1/{p}/volumes/{id}", get_as("evs:volumes:get", volumes::show_v1))
        .route(
            "/v3/{p}/attachments",
            get_as("evs:attachments:list", attachments::list_summary)
                .merge(post_as("evs:attachments:create", attachments::create)),
        )
        .route("/v3/{p}/attachments/detail", get_as("evs:attachments:list", attachments::list_detail))
        .route(
            "/v3/{p}/attachments/{id}",
            get_as("evs:attachments:get", attachments::show)
                .merge(put_as("evs:attachments:update", attachments::update))
                .merge(delete_as("evs:attachments:delete", attachments::delete)),
        )
        .route("/v3/{p}/attachments/{id}/action", post_as("evs:attachments:complete", attachments::action));
    for pre in PREFIXES {
        r = r
            .route(
                &format!("{pre}/{{p}}/volumes"),
                get_as("evs:volumes:list", volumes::list_summary).merge(post_as("evs:volumes:create", volumes::create)),
            )
            .route(&format!("{pre}/{{p}}/volumes/detail"), get_as("evs:volumes:list", volumes::list_detail))
            .route(
                &format!("{pre}/{{p}}/volumes/{{id}}"),
                get_as("evs:volumes:get", volumes::show)
                    .merge(put_as("evs:volumes:update", volumes::update))
                    .merge(delete_as("evs:volumes:delete", volumes::delete)),
            )
            .route(
                &format!("{pre}/{{p}}/volumes/{{id}}/action"),
                post_as(Act::Body(actions::volume_action_policy), actions::volume_action),
            )
            .route(
                &format!("{pre}/{{p}}/snapshots"),
                get_as("evs:snapshots:list", snapshots::list_summary)
                    .merge(post_as("evs:snapshots:create", snapshots::create)),
            )
            .route(&format!("{pre}/{{p}}/snapshots/detail"), get_as("evs:snapshots:list", snapshots::list_detail))
            .route(
                &format!("{pre}/{{p}}/snapshots/{{id}}"),
                get_as("evs:snapshots:get", snapshots::show)
                    .merge(put_as("evs:snapshots:update", snapshots::update))
                    .merge(delete_as("evs:snapshots:delete", snapshots::delete)),
            )
            // actions: reset_status, update_snapshot_status, force_delete.
            .route(
                &format!("{pre}/{{p}}/snapshots/{{id}}/action"),
                post_as(Act::Body(actions::snapshot_action_policy), actions::snapshot_action),
            );
        for (coll, read, write, delete) in [
            ("volumes", "evs:volumes:get", "evs:volumes:update", "evs:volumes:delete"),
            ("snapshots", "evs:snapshots:get", "evs:snapshots:update", "evs:snapshots:delete"),
        ] {
            r = r
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}/metadata"),
                    get_as(read, metadata::get_all)
                        .merge(post_as(write, metadata::merge))
                        .merge(put_as(write, metadata::replace)),
                )
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}/metadata/{{key}}"),
                    get_as(read, metadata::get_key)
                        .merge(put_as(write, metadata::put_key))
                        .merge(delete_as(delete, metadata::delete_key)),
                );
        }
        r = r
            .route(
                &format!("{pre}/{{p}}/types"),
                get_as("evs:types:get", catalog::list_types).merge(post_as("evs:types:manage", types::create)),
            )
            .route(
                &format!("{pre}/{{p}}/types/{{id}}"),
                get_as("evs:types:get", types::show)
                    .merge(put_as("evs:types:manage", types::update))
                    .merge(delete_as("evs:types:manage", types::delete)),
            )
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/extra_specs"),
                get_as("evs:types:get", types::get_specs).merge(post_as("evs:types:manage", types::add_specs)),
            )
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/extra_specs/{{key}}"),
                get_as("evs:types:get", types::get_spec)
                    .merge(put_as("evs:types:manage", types::put_spec))
                    .merge(delete_as("evs:types:manage", types::delete_spec)),
            )
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/os-volume-type-access"),
                get_as("evs:types:access", types::list_access),
            )
            .route(&format!("{pre}/{{p}}/types/{{id}}/action"), post_as("evs:types:access", types::action))
            .route(&format!("{pre}/{{p}}/os-availability-zone"), get_as(Act::Open, catalog::availability_zones))
            .route(&format!("{pre}/{{p}}/extensions"), get_as("evs:extensions:list", catalog::extensions))
            .route(
                &format!("{pre}/{{p}}/os-quota-sets/{{target}}"),
                get_as("evs:quotas:get", quotas::show)
                    .merge(put_as("evs:quotas:update", quotas::update))
                    .merge(delete_as("evs:quotas:delete", quotas::reset)),
            )
            .route(
                &format!("{pre}/{{p}}/os-quota-sets/{{target}}/defaults"),
                get_as("evs:quotas:get", quotas::defaults),
            )
            .route(
                &format!("{pre}/{{p}}/os-quota-class-sets/{{class}}"),
                get_as("evs:quotaClasses:get", quotas::show_class)
                    .merge(put_as("evs:quotaClasses:update", quotas::update_class)),
            )
            .route(&format!("{pre}/{{p}}/limits"), get_as("evs:limits:get", quotas::limits));
        let transfer_collections: &[&str] =
            if pre == "/v3" { &["os-volume-transfer", "volume-transfers"] } else { &["os-volume-transfer"] };
        for coll in transfer_collections {
            r = r
                .route(
                    &format!("{pre}/{{p}}/{coll}"),
                    get_as("evs:transfers:list", transfers::list_summary)
                        .merge(post_as("evs:transfers:create", transfers::create)),
                )
                .route(&format!("{pre}/{{p}}/{coll}/detail"), get_as("evs:transfers:list", transfers::list_detail))
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}"),
                    get_as("evs:transfers:get", transfers::show)
                        .merge(delete_as("evs:transfers:delete", transfers::delete)),
                )
                .route(
                    &format!("{pre}/{{p}}/{coll}/{{id}}/accept"),
                    post_as("evs:transfers:accept", transfers::accept),
                );
        }
    }
    // manage: os-volume-manage / os-snapshot-manage and the manageable lists (admin).
    for pre in PREFIXES {
        r = r
            .route(
                &format!("{pre}/{{p}}/os-volume-manage"),
                post_as("evs:volumes:manage", manage::manage_volume)
                    .merge(get_as("evs:volumes:manage", manage::list_manageable)),
            )
            .route(
                &format!("{pre}/{{p}}/os-volume-manage/detail"),
                get_as("evs:volumes:manage", manage::list_manageable_detail),
            )
            .route(&format!("{pre}/{{p}}/os-snapshot-manage"), post_as("evs:volumes:manage", manage::manage_snapshot));
    }
    r = r
        .route("/v3/{p}/manageable_volumes", get_as("evs:volumes:manage", manage::list_manageable))
        .route("/v3/{p}/manageable_volumes/detail", get_as("evs:volumes:manage", manage::list_manageable_detail));
    // misc: volume summary, resource filters, encryption types, default types.
    r = r
        .route("/v3/{p}/volumes/summary", get_as("evs:volumes:list", summary::volume_summary))
        .route("/v3/{p}/resource_filters", get_as(Act::Open, summary::resource_filters))
        // actions: user messages (3.3).
        .route("/v3/{p}/messages", get_as("evs:messages:list", messages::list))
        .route(
            "/v3/{p}/messages/{id}",
            get_as("evs:messages:get", messages::show).merge(delete_as("evs:messages:delete", messages::delete)),
        )
        .route("/v3/{p}/default-types", get_as("evs:defaultTypes:manage", encryption::list_defaults))
        .route(
            "/v3/{p}/default-types/{project}",
            get_as("evs:defaultTypes:manage", encryption::show_default)
                .merge(put_as("evs:defaultTypes:manage", encryption::set_default))
                .merge(delete_as("evs:defaultTypes:manage", encryption::delete_default)),
        );
    // groups: generic volume groups (3.11 types, 3.13 groups, 3.14 group snapshots).
    r = r
        .route(
            "/v3/{p}/group_types",
            get_as("evs:groupTypes:get", group_types::list)
                .merge(post_as("evs:groupTypes:manage", group_types::create)),
        )
        .route(
            "/v3/{p}/group_types/{id}",
            get_as("evs:groupTypes:get", group_types::show)
                .merge(put_as("evs:groupTypes:manage", group_types::update))
                .merge(delete_as("evs:groupTypes:manage", group_types::delete)),
        )
        .route(
            "/v3/{p}/group_types/{id}/group_specs",
            get_as("evs:groupTypes:specs", group_types::list_specs)
                .merge(post_as("evs:groupTypes:specs", group_types::create_specs)),
        )
        .route(
            "/v3/{p}/group_types/{id}/group_specs/{key}",
            get_as("evs:groupTypes:specs", group_types::show_spec)
                .merge(put_as("evs:groupTypes:specs", group_types::update_spec))
                .merge(delete_as("evs:groupTypes:specs", group_types::delete_spec)),
        )
        .route(
            "/v3/{p}/groups",
            get_as("evs:groups:list", groups::list_summary).merge(post_as("evs:groups:create", groups::create)),
        )
        .route("/v3/{p}/groups/detail", get_as("evs:groups:list", groups::list_detail))
        .route("/v3/{p}/groups/action", post_as("evs:groups:create", groups::create_from_src))
        .route(
            "/v3/{p}/groups/{id}",
            get_as("evs:groups:get", groups::show).merge(put_as("evs:groups:update", groups::update)),
        )
        .route("/v3/{p}/groups/{id}/action", post_as(Act::Body(groups::group_action_policy), groups::action))
        .route(
            "/v3/{p}/group_snapshots",
            get_as("evs:groupSnapshots:list", group_snapshots::list_summary)
                .merge(post_as("evs:groupSnapshots:create", group_snapshots::create)),
        )
        .route("/v3/{p}/group_snapshots/detail", get_as("evs:groupSnapshots:list", group_snapshots::list_detail))
        .route(
            "/v3/{p}/group_snapshots/{id}",
            get_as("evs:groupSnapshots:get", group_snapshots::show)
                .merge(delete_as("evs:groupSnapshots:delete", group_snapshots::delete)),
        )
        .route(
            "/v3/{p}/group_snapshots/{id}/action",
            post_as(Act::Body(group_snapshots::group_snapshot_action_policy), group_snapshots::action),
        );
    for pre in PREFIXES {
        r = r
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/encryption"),
                get_as("evs:types:encryption", encryption::show)
                    .merge(post_as("evs:types:encryption", encryption::create)),
            )
            .route(
                &format!("{pre}/{{p}}/types/{{id}}/encryption/{{key}}"),
                get_as("evs:types:encryption", encryption::show_key)
                    .merge(put_as("evs:types:encryption", encryption::update))
                    .merge(delete_as("evs:types:encryption", encryption::delete)),
            );
    }
    // qos: QoS specs (admin-only, as in Cinder).
    for pre in PREFIXES {
        r = r
            .route(
                &format!("{pre}/{{p}}/qos-specs"),
                get_as("evs:qosSpecs:list", qos::list).merge(post_as("evs:qosSpecs:create", qos::create)),
            )
            .route(
                &format!("{pre}/{{p}}/qos-specs/{{id}}"),
                get_as("evs:qosSpecs:get", qos::show)
                    .merge(put_as("evs:qosSpecs:update", qos::update))
                    .merge(delete_as("evs:qosSpecs:delete", qos::delete)),
            )
            .route(
                &format!("{pre}/{{p}}/qos-specs/{{id}}/delete_keys"),
                put_as("evs:qosSpecs:delete", qos::delete_keys),
            )
            .route(
                &format!("{pre}/{{p}}/qos-specs/{{id}}/associations"),
                get_as("evs:qosSpecs:list", qos::associations),
            )
            .route(&format!("{pre}/{{p}}/qos-specs/{{id}}/associate"), get_as("evs:qosSpecs:update", qos::associate))
            .route(
                &format!("{pre}/{{p}}/qos-specs/{{id}}/disassociate"),
                get_as("evs:qosSpecs:update", qos::disassociate),
            )
            .route(
                &format!("{pre}/{{p}}/qos-specs/{{id}}/disassociate_all"),
                get_as("evs:qosSpecs:update", qos::disassociate_all),
            );
    }
    // services: operator APIs (admin-only, as in Cinder).
    for pre in PREFIXES {
        r = r
            .route(&format!("{pre}/{{p}}/os-services"), get_as("evs:services:list", services::list))
            .route(&format!("{pre}/{{p}}/os-services/{{action}}"), put_as("evs:services:update", services::update))
            .route(&format!("{pre}/{{p}}/os-hosts"), get_as("evs:hosts:manage", services::list_hosts))
            .route(&format!("{pre}/{{p}}/os-hosts/{{host}}"), get_as("evs:hosts:manage", services::show_host))
            .route(
                &format!("{pre}/{{p}}/scheduler-stats/get_pools"),
                get_as("evs:schedulerStats:getPools", services::get_pools),
            )
            .route(
                &format!("{pre}/{{p}}/capabilities/{{host}}"),
                get_as("evs:capabilities:show", services::show_capabilities),
            );
    }
    r
}

/// A domain error rendered as an OpenStack fault.
#[derive(Debug)]
pub struct CinderError(pub Error);

impl From<Error> for CinderError {
    fn from(e: Error) -> Self {
        CinderError(e)
    }
}

/// Status and fault name for an error, as Cinder's `Fault` maps them.
fn status_and_name(e: &Error) -> (StatusCode, &'static str) {
    match e.kind {
        ErrorKind::Invalid | ErrorKind::NoSpace => (StatusCode::BAD_REQUEST, "badRequest"),
        ErrorKind::Conflict if e.http_conflict => (StatusCode::CONFLICT, "conflictingRequest"),
        ErrorKind::Conflict => (StatusCode::BAD_REQUEST, "badRequest"),
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "itemNotFound"),
        ErrorKind::Quota => (StatusCode::PAYLOAD_TOO_LARGE, "overLimit"),
        ErrorKind::TooManyRequests => (StatusCode::TOO_MANY_REQUESTS, "overLimit"),
        ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "overLimit"),
        ErrorKind::RequestTimeout => (StatusCode::REQUEST_TIMEOUT, "badRequest"),
        ErrorKind::UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "badMediaType"),
        ErrorKind::Unsupported => (StatusCode::NOT_IMPLEMENTED, "notImplemented"),
        ErrorKind::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
        ErrorKind::Forbidden => (StatusCode::FORBIDDEN, "forbidden"),
        ErrorKind::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "badMethod"),
        ErrorKind::NotAcceptable => (StatusCode::NOT_ACCEPTABLE, "computeFault"),
        ErrorKind::Unavailable => (StatusCode::SERVICE_UNAVAILABLE, "serviceUnavailable"),
        ErrorKind::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "computeFault"),
    }
}

impl IntoResponse for CinderError {
    fn into_response(self) -> Response {
        let (status, name) = status_and_name(&self.0);
        if self.0.kind == ErrorKind::Internal {
            tracing::error!(error = %self.0, "internal error");
        }
        let body = json!({ name: {"code": status.as_u16(), "message": self.0.public_message()} });
        crate::api::common::with_retry_after((status, Json(body)).into_response(), &self.0)
    }
}
