//! The change event as a connector sees it.
//!
//! A mirror of the daemon's change-log event with only what a connector
//! needs (sequence, kind, id, operation, changed attributes, the object after
//! the change). Mirrored rather than shared so that this crate does not
//! depend on the daemon: the daemon converts, data flows one way.

use idsync_schema::Kind;
pub use idsync_schema::Operation;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One change to deliver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The change log's sequence number (gap-free).
    pub seq: u64,
    pub kind: Kind,
    pub id: Uuid,
    pub operation: Operation,
    /// Attributes that changed (empty for creations and deletions).
    #[serde(default)]
    pub changed: Vec<String>,
    /// The object after the change (`null` after a deletion).
    pub object: serde_json::Value,
}
