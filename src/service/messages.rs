//! User messages (Cinder 3.3): list, show and delete a project's messages, and the one way to
//! record them, [`new_message`], used by the job runner when an operation fails.
//!
//! A message names the request that started the operation: the API layer runs each request
//! inside [`REQUEST_ID`], services copy [`current_request_id`] into the job payload at enqueue,
//! and the failing job writes it into the message in the transaction that fails the resource.

use uuid::Uuid;

use super::{Caller, Services};
use crate::error::{Error, Result};
use crate::model::{now_timestamp, parse_uuid, Message, MessageAction, MessageDetail};

/// How long a message is kept (Cinder's `message_ttl` default: 30 days).
pub const MESSAGE_TTL_SECONDS: i64 = 2_592_000;

tokio::task_local! {
    /// The id (`req-<uuid>`) of the API request being served.
    pub static REQUEST_ID: String;
}

/// The id of the request this task serves, when it serves one.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|r| r.clone()).ok()
}

/// A new `ERROR` message about `resource_uuid` of `resource_type` (`VOLUME`, `VOLUME_SNAPSHOT`).
pub fn new_message(
    project_id: &str,
    request_id: Option<&str>,
    resource_type: &str,
    resource_uuid: &str,
    action: MessageAction,
    detail: MessageDetail,
) -> Message {
    let (action_id, _) = action.id_and_text();
    let (detail_id, _) = detail.id_and_text();
    let expires = chrono::Utc::now() + chrono::Duration::seconds(MESSAGE_TTL_SECONDS);
    Message {
        id: Uuid::new_v4().to_string(),
        project_id: project_id.to_string(),
        // A job enqueued by no request (none today) still gets a well-formed id.
        request_id: request_id.map(str::to_string).unwrap_or_else(|| format!("req-{}", Uuid::new_v4())),
        resource_type: Some(resource_type.to_string()),
        resource_uuid: Some(resource_uuid.to_string()),
        event_id: format!("VOLUME_{resource_type}_{action_id}_{detail_id}"),
        action_id: action_id.to_string(),
        detail_id: detail_id.to_string(),
        message_level: "ERROR".to_string(),
        created_at: now_timestamp(),
        expires_at: expires.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
    }
}

/// The filters a message list accepts (Cinder 3.5; `resource_filters` names them).
pub const MESSAGE_FILTERS: [&str; 5] = ["resource_uuid", "resource_type", "event_id", "request_id", "message_level"];

/// A message list request (Cinder 3.5: filters, sort, marker, limit, offset).
#[derive(Debug, Clone, Default)]
pub struct ListMessages {
    /// `(field, value)` pairs from [`MESSAGE_FILTERS`], all of which must match.
    pub filters: Vec<(String, String)>,
    /// Oldest first (`sort_dir=asc`); newest first otherwise.
    pub ascending: bool,
    /// Sort by `id` instead of `created_at`.
    pub by_id: bool,
    /// Start after this message.
    pub marker: Option<String>,
    /// Page size.
    pub limit: Option<usize>,
    /// Rows skipped after the marker.
    pub offset: usize,
}

fn field<'a>(m: &'a Message, name: &str) -> Option<&'a str> {
    match name {
        "resource_uuid" => m.resource_uuid.as_deref(),
        "resource_type" => m.resource_type.as_deref(),
        "event_id" => Some(&m.event_id),
        "request_id" => Some(&m.request_id),
        "message_level" => Some(&m.message_level),
        _ => None,
    }
}

impl Services {
    /// The caller's project's messages (an admin's: every project's), filtered, sorted and paged (messages are
    /// few: they expire after [`MESSAGE_TTL_SECONDS`], so this works on the loaded rows).
    pub async fn list_messages(&self, caller: &Caller, q: &ListMessages) -> Result<Vec<Message>> {
        // Cinder's message query is `project_only`: an admin context sees every project's.
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        let mut all: Vec<Message> = self
            .db
            .list_messages(scope)
            .await?
            .into_iter()
            .filter(|m| q.filters.iter().all(|(k, v)| field(m, k) == Some(v.as_str())))
            .collect();
        if q.by_id {
            all.sort_by(|a, b| a.id.cmp(&b.id));
        } else {
            all.sort_by(|a, b| (&a.created_at, &a.id).cmp(&(&b.created_at, &b.id)));
        }
        if !q.ascending {
            all.reverse();
        }
        let start = match &q.marker {
            None => 0,
            Some(m) => {
                all.iter()
                    .position(|x| &x.id == m)
                    .ok_or_else(|| Error::not_found(format!("Marker {m} could not be found.")).with_code("EVS.1024"))?
                    + 1
            }
        };
        Ok(all.into_iter().skip(start + q.offset).take(q.limit.unwrap_or(usize::MAX)).collect())
    }

    /// One message the caller may see (admins: any project's).
    pub async fn get_message(&self, caller: &Caller, id: &str) -> Result<Message> {
        let not_found = || Error::not_found(format!("Message {id} could not be found."));
        if parse_uuid(id).is_none() {
            return Err(not_found());
        }
        let scope = (!caller.is_admin).then_some(caller.project_id.as_str());
        self.db.get_message(scope, id).await?.ok_or_else(not_found)
    }

    /// Delete one message the caller may see.
    pub async fn delete_message(&self, caller: &Caller, id: &str) -> Result<()> {
        let m = self.get_message(caller, id).await?;
        let mut tx = self.db.begin_write().await?;
        if !tx.delete_message(&m.id).await? {
            return Err(Error::not_found(format!("Message {id} could not be found.")));
        }
        tx.commit().await
    }
}
