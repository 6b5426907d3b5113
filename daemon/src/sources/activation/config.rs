//! `[activation]`: the listener of the activation page (issue 16) and the
//! password policy it applies.
//!
//! Why a listener of its own: the page is for every user who got an
//! activation mail, so it is reached from wherever they are (usually
//! through a TLS-terminating proxy, at `mail.public_url`), while the admin
//! API stays on loopback for tokens only. Nothing but `/activate/…` is
//! served here.

use std::time::Duration;

use idsync_schema::password::PasswordPolicy;
use serde::{Deserialize, Serialize};

use crate::infra::conn_limit::Limits;

/// `[activation]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActivationConfig {
    /// Whether `idsync serve` starts the activation page's listener.
    pub enabled: bool,
    /// Address to listen on; loopback by default (put a TLS-terminating
    /// proxy in front, at `mail.public_url`).
    pub listen: String,
    /// Requests one peer address may make per minute (pages and attempts).
    pub requests_per_minute_per_peer: u32,
    /// Password attempts one link allows per hour.
    pub attempts_per_link_per_hour: u32,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one peer address may hold.
    pub max_connections_per_peer: usize,
    /// Milliseconds a new connection has to send its first byte.
    pub first_byte_timeout_ms: u64,
    pub password: PasswordPolicy,
}

impl Default for ActivationConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:8446".into(),
            requests_per_minute_per_peer: 30,
            attempts_per_link_per_hour: 10,
            max_connections: 256,
            max_connections_per_peer: 16,
            first_byte_timeout_ms: 5_000,
            password: PasswordPolicy::default(),
        }
    }
}

impl ActivationConfig {
    /// The listener's connection limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: Duration::from_millis(self.first_byte_timeout_ms),
        }
    }
}
