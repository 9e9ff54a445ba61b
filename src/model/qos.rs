//! QoS specs records (Cinder's `qos-specs`): a named set of key/value specs with a consumer,
//! associated with volume types. Stored and shown; cinderblock does not enforce them.

use std::collections::BTreeMap;

/// The consumers Cinder accepts, in its order (also its error message's list).
pub const QOS_CONSUMERS: [&str; 3] = ["front-end", "back-end", "both"];

/// Cinder's default consumer when a create names none.
pub const DEFAULT_QOS_CONSUMER: &str = "back-end";

/// One QoS specs record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosSpecs {
    /// UUID.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// `front-end`, `back-end` or `both`.
    pub consumer: String,
    /// The specs (`total_iops_sec`…); a `None` value is a key set to null.
    pub specs: BTreeMap<String, Option<String>>,
    /// Creation time.
    pub created_at: String,
}

/// A volume type associated with a QoS specs record (Cinder's association view).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QosAssociation {
    /// The type's id.
    pub id: String,
    /// The type's name.
    pub name: String,
}
