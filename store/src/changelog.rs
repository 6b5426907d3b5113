//! The change log: one event per accepted change, numbered without gaps.
//!
//! It is the audit trail (who, what, when, from where, which attributes) and
//! the feed every connector consumes with its own cursor. An event names the
//! object; connectors push its current state, which makes delivery
//! idempotent and keeps each change small (the object is stored once).

use idsync_schema::{Kind, Operation, Source};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use uuid::Uuid;

/// Who caused a change: the file (with its digest and line) for a CSV
/// import; later a token for SCIM and the admin API.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// `file`, `token`, `config`, `cli` or `activation` (a user's own
    /// activation link).
    pub kind: String,
    /// The file name, the token name, …
    pub name: String,
    /// SHA-256 of the file, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// The line of the file the change came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
}

impl Actor {
    /// A change read from a file.
    pub fn file(name: impl Into<String>, digest: impl Into<String>) -> Self {
        Self {
            kind: "file".into(),
            name: name.into(),
            digest: Some(digest.into()),
            line: None,
        }
    }

    /// A change asked for with an API token (SCIM, the admin API).
    pub fn token(name: impl Into<String>) -> Self {
        Self {
            kind: "token".into(),
            name: name.into(),
            digest: None,
            line: None,
        }
    }

    /// A change made by a user through their activation link: `user` is
    /// the user's id (the link itself is a secret and is not recorded).
    pub fn activation_link(user: uuid::Uuid) -> Self {
        Self {
            kind: "activation".into(),
            name: user.to_string(),
            digest: None,
            line: None,
        }
    }

    /// A change made by the config file (certificate profiles).
    pub fn config(path: impl Into<String>) -> Self {
        Self {
            kind: "config".into(),
            name: path.into(),
            digest: None,
            line: None,
        }
    }
}

/// One entry of the change log.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    /// Gap-free, starting at 1.
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: Kind,
    pub id: Uuid,
    pub operation: Operation,
    /// The object's version after the change.
    pub version: u64,
    pub source: Source,
    pub actor: Actor,
    /// Attributes that changed (empty for creations and deletions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// The object after the change. idsync writes `None`: the object is
    /// stored once, under its own key, and connectors deliver its current
    /// state; the field stays readable for logs written otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<Box<RawValue>>,
}
