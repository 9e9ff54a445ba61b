//! Attachment records: who uses a volume, how, and how it is exported to them.

use std::fmt;
use std::str::FromStr;

/// Where an attachment is in its lifecycle (Cinder's `attach_status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachStatus {
    /// Created without a connector (v3 attachments): the volume is held, nothing exported.
    Reserved,
    /// Connector known and exported; waiting for `os-attach` / `complete`.
    Attaching,
    /// In use by the consumer.
    Attached,
}

impl AttachStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reserved => "reserved",
            Self::Attaching => "attaching",
            Self::Attached => "attached",
        }
    }
}

impl fmt::Display for AttachStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttachStatus {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        match s {
            "reserved" => Ok(Self::Reserved),
            "attaching" => Ok(Self::Attaching),
            "attached" => Ok(Self::Attached),
            _ => Err(()),
        }
    }
}

/// Read-write or read-only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttachMode {
    /// `rw`
    ReadWrite,
    /// `ro`
    ReadOnly,
}

impl AttachMode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReadWrite => "rw",
            Self::ReadOnly => "ro",
        }
    }
    /// Parse `rw`/`ro`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "rw" => Some(Self::ReadWrite),
            "ro" => Some(Self::ReadOnly),
            _ => None,
        }
    }
}

/// An attachment row.
#[derive(Debug, Clone, PartialEq)]
pub struct Attachment {
    /// UUID.
    pub id: String,
    /// The volume.
    pub volume_id: String,
    /// The volume's project.
    pub project_id: String,
    /// Consumer instance (server) id.
    pub instance_uuid: Option<String>,
    /// Consumer host.
    pub attached_host: Option<String>,
    /// Device name inside the consumer.
    pub mountpoint: Option<String>,
    /// rw / ro.
    pub mode: AttachMode,
    /// Lifecycle.
    pub status: AttachStatus,
    /// The connector the consumer gave (JSON), when any.
    pub connector: Option<String>,
    /// The connection info we answered (JSON); present means exported.
    pub connection_info: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// When it became attached.
    pub attach_time: Option<String>,
}
