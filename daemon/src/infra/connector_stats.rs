//! Live figures of one connector, shared by its runner (which updates them)
//! and the admin listener (`/metrics`, `/status`). Atomics, like the rest of
//! the daemon's metrics; the last error is text behind a mutex nobody holds
//! for more than a copy.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;

/// One connector's figures.
#[derive(Debug, Default)]
pub struct ConnectorStats {
    pub name: String,
    /// Last change delivered.
    pub cursor: AtomicU64,
    /// The change log's head as the runner last saw it.
    pub head: AtomicU64,
    /// Changes delivered since start.
    pub delivered: AtomicU64,
    /// Failed delivery attempts since start.
    pub failed: AtomicU64,
    /// Changes in the dead-letter list.
    pub parked: AtomicU64,
    last_error: Mutex<String>,
}

impl ConnectorStats {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// Changes not yet delivered.
    pub fn lag(&self) -> u64 {
        self.head
            .load(Relaxed)
            .saturating_sub(self.cursor.load(Relaxed))
    }

    pub fn set_error(&self, e: impl Into<String>) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = e.into();
    }

    pub fn last_error(&self) -> String {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The `/status` entry.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.name,
            "cursor": self.cursor.load(Relaxed),
            "lag": self.lag(),
            "delivered": self.delivered.load(Relaxed),
            "failed": self.failed.load(Relaxed),
            "parked": self.parked.load(Relaxed),
            "last_error": self.last_error(),
        })
    }
}
