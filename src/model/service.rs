//! A Cinder service record (`os-services`): the scheduler of a node or the volume service of
//! one of its pools.

/// Binary name of the scheduler service (one per node).
pub const SCHEDULER_BINARY: &str = "cinder-scheduler";
/// Binary name of a pool's volume service (one per pool, host `node@pool`).
pub const VOLUME_BINARY: &str = "cinder-volume";

/// One row of the `services` table.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRecord {
    /// `node` (scheduler) or `node@pool` (volume).
    pub host: String,
    /// [`SCHEDULER_BINARY`] or [`VOLUME_BINARY`].
    pub binary: String,
    /// Availability zone (a pool's zone; the node's default zone for the scheduler).
    pub availability_zone: String,
    /// Disabled by an admin: a disabled volume service gets no new volumes.
    pub disabled: bool,
    /// Why it was disabled (`disable-log-reason`).
    pub disabled_reason: Option<String>,
    /// Frozen by an admin (`os-services/freeze`); reported only.
    pub frozen: bool,
    /// When the row was registered.
    pub created_at: String,
    /// Last start of the service or last admin change.
    pub updated_at: Option<String>,
}

impl ServiceRecord {
    /// The pool a volume service serves (`node@pool` → `pool`); `None` for the scheduler.
    pub fn pool(&self) -> Option<&str> {
        if self.binary != VOLUME_BINARY {
            return None;
        }
        self.host.split_once('@').map(|(_, p)| p)
    }
}
