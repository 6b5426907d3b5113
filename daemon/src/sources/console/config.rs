//! `[console]`: the operator console under `/ui/` on the admin listener
//! (issue 17). On by default: it is only reachable by whoever reaches the
//! admin listener (loopback by default), and only with a token.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Whether the admin listener serves `/ui/`.
    pub enabled: bool,
    /// Minutes a session lives without a request.
    pub session_idle_minutes: u64,
    /// Hours a session lives at most, however busy.
    pub session_max_hours: u64,
    /// Sessions kept at once; past it, the least recently used goes.
    pub max_sessions: usize,
    /// Sign-in attempts one peer address may make per minute.
    pub sign_ins_per_minute_per_peer: u32,
    /// Mark the session cookie `Secure`: set it when the console is
    /// reached over HTTPS (a TLS-terminating proxy in front of the admin
    /// listener), so the browser never sends the cookie in clear.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            session_idle_minutes: 30,
            session_max_hours: 12,
            max_sessions: 10_000,
            sign_ins_per_minute_per_peer: 10,
            secure_cookie: false,
        }
    }
}

impl ConsoleConfig {
    pub fn idle(&self) -> Duration {
        Duration::from_secs(self.session_idle_minutes * 60)
    }

    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.session_max_hours * 3600)
    }
}
