//! User messages (Cinder 3.3): what a project is told when one of its asynchronous operations
//! failed. The text is built from an action and a detail, each a fixed Cinder id and phrase, so
//! no internal error text ever reaches the user.

/// What was being done (Cinder's `message_field.Action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageAction {
    /// `001` schedule allocate volume.
    ScheduleAllocateVolume,
    /// `007` extend volume.
    ExtendVolume,
    /// `008` create volume from backend storage.
    CreateVolumeFromBackend,
    /// `009` create snapshot.
    SnapshotCreate,
    /// `010` delete snapshot.
    SnapshotDelete,
    /// images: `004` copy volume to image.
    CopyVolumeToImage,
    /// images: `005` copy image to volume.
    CopyImageToVolume,
}

impl MessageAction {
    /// Cinder's id and phrase.
    pub fn id_and_text(self) -> (&'static str, &'static str) {
        match self {
            Self::ScheduleAllocateVolume => ("001", "schedule allocate volume"),
            Self::ExtendVolume => ("007", "extend volume"),
            Self::CreateVolumeFromBackend => ("008", "create volume from backend storage"),
            Self::SnapshotCreate => ("009", "create snapshot"),
            Self::SnapshotDelete => ("010", "delete snapshot"),
            Self::CopyVolumeToImage => ("004", "copy volume to image"),
            Self::CopyImageToVolume => ("005", "copy image to volume"),
        }
    }
    /// The phrase of an action id (`unknown action` for ids we never write).
    pub fn text_of(id: &str) -> &'static str {
        ALL_ACTIONS.iter().map(|a| a.id_and_text()).find(|(i, _)| *i == id).map(|(_, t)| t).unwrap_or("unknown action")
    }
}

const ALL_ACTIONS: [MessageAction; 7] = [
    MessageAction::CopyVolumeToImage,
    MessageAction::CopyImageToVolume,
    MessageAction::ScheduleAllocateVolume,
    MessageAction::ExtendVolume,
    MessageAction::CreateVolumeFromBackend,
    MessageAction::SnapshotCreate,
    MessageAction::SnapshotDelete,
];

/// Why it failed (Cinder's `message_field.Detail`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageDetail {
    /// `001` An unknown error occurred.
    UnknownError,
    /// `003` Could not find any available weighted backend.
    NoBackendAvailable,
    /// `010` Volume Driver failed to extend volume.
    DriverFailedExtend,
    /// `012` Driver failed to create the volume.
    DriverFailedCreate,
    /// `013` Snapshot failed to create.
    SnapshotCreateError,
    /// `016` Snapshot failed to delete.
    SnapshotDeleteError,
    /// images: `004` Failed to upload volume to image at image service.
    FailedToUploadVolume,
}

impl MessageDetail {
    /// Cinder's id and phrase.
    pub fn id_and_text(self) -> (&'static str, &'static str) {
        match self {
            Self::UnknownError => ("001", "An unknown error occurred."),
            Self::NoBackendAvailable => ("003", "Could not find any available weighted backend."),
            Self::DriverFailedExtend => ("010", "Volume Driver failed to extend volume."),
            Self::DriverFailedCreate => ("012", "Driver failed to create the volume."),
            Self::SnapshotCreateError => ("013", "Snapshot failed to create."),
            Self::SnapshotDeleteError => ("016", "Snapshot failed to delete."),
            Self::FailedToUploadVolume => ("004", "Failed to upload volume to image at image service."),
        }
    }
    /// The phrase of a detail id (the unknown error's for ids we never write).
    pub fn text_of(id: &str) -> &'static str {
        ALL_DETAILS
            .iter()
            .map(|d| d.id_and_text())
            .find(|(i, _)| *i == id)
            .map(|(_, t)| t)
            .unwrap_or("An unknown error occurred.")
    }
}

const ALL_DETAILS: [MessageDetail; 7] = [
    MessageDetail::FailedToUploadVolume,
    MessageDetail::UnknownError,
    MessageDetail::NoBackendAvailable,
    MessageDetail::DriverFailedExtend,
    MessageDetail::DriverFailedCreate,
    MessageDetail::SnapshotCreateError,
    MessageDetail::SnapshotDeleteError,
];

/// A message row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// UUID.
    pub id: String,
    /// The project told.
    pub project_id: String,
    /// Id of the request that started the failed operation (`req-<uuid>`).
    pub request_id: String,
    /// `VOLUME`, `VOLUME_SNAPSHOT`.
    pub resource_type: Option<String>,
    /// The resource concerned.
    pub resource_uuid: Option<String>,
    /// `VOLUME_<resource type>_<action id>_<detail id>`.
    pub event_id: String,
    /// Action id (`001`…).
    pub action_id: String,
    /// Detail id (`003`…).
    pub detail_id: String,
    /// Always `ERROR` (Cinder writes no other level).
    pub message_level: String,
    /// When recorded.
    pub created_at: String,
    /// Kept at least until then (Cinder's `guaranteed_until`).
    pub expires_at: String,
}

impl Message {
    /// Cinder's `user_message`: `"<action>:<detail>"`.
    pub fn user_message(&self) -> String {
        format!("{}:{}", MessageAction::text_of(&self.action_id), MessageDetail::text_of(&self.detail_id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_follow_cinder() {
        let m = Message {
            id: String::new(),
            project_id: String::new(),
            request_id: String::new(),
            resource_type: None,
            resource_uuid: None,
            event_id: String::new(),
            action_id: "001".into(),
            detail_id: "003".into(),
            message_level: "ERROR".into(),
            created_at: String::new(),
            expires_at: String::new(),
        };
        assert_eq!(m.user_message(), "schedule allocate volume:Could not find any available weighted backend.");
        assert_eq!(MessageDetail::text_of("999"), "An unknown error occurred.");
    }
}
