//! `[scep]`: the SCEP listener's configuration.

use serde::{Deserialize, Serialize};

/// `[scep]`: the SCEP listener (plain HTTP: SCEP messages are signed and
/// encrypted end to end).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScepConfig {
    /// Whether `idsync serve` starts the SCEP listener.
    pub enabled: bool,
    /// Address to listen on.
    pub listen: String,
    /// Largest PKIOperation body, in bytes.
    pub max_body_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one peer address may hold.
    pub max_connections_per_peer: usize,
    /// Milliseconds a new connection has to send its first byte.
    pub first_byte_timeout_ms: u64,
    /// Requests one peer address may make per minute; more are answered
    /// 429 with `Retry-After`. A PKIOperation costs RSA private-key
    /// operations, so one peer cannot take the CPU from the rest.
    pub requests_per_minute_per_peer: u32,
}

impl Default for ScepConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9480".into(),
            max_body_bytes: 64 * 1024,
            max_connections: 1024,
            max_connections_per_peer: 64,
            first_byte_timeout_ms: 3000,
            requests_per_minute_per_peer: 600,
        }
    }
}

impl ScepConfig {
    /// The checks serde cannot express: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ("scep.listen", format!("`{}`: {e}", self.listen)))?;
        let bounded = [
            ("scep.max_body_bytes", self.max_body_bytes >= 1024),
            ("scep.max_connections", self.max_connections >= 1),
            (
                "scep.max_connections_per_peer",
                self.max_connections_per_peer >= 1,
            ),
            (
                "scep.requests_per_minute_per_peer",
                self.requests_per_minute_per_peer >= 1,
            ),
        ];
        if let Some((key, _)) = bounded.iter().find(|(_, ok)| !ok) {
            return Err((key, "out of range (see docs/configuration.md)".into()));
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> crate::infra::conn_limit::Limits {
        crate::infra::conn_limit::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: std::time::Duration::from_millis(self.first_byte_timeout_ms),
        }
    }
}
