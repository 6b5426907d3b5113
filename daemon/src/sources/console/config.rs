//! `[console]`: the operator console under `/ui/`, on the admin listener
//! or on a listener of its own (with TLS when configured). On by default:
//! it is only reachable by whoever reaches its listener (loopback by
//! default), and only with a token.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[console]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Whether `/ui/` is served.
    pub enabled: bool,
    /// A listener of the console's own (`ip:port`), so that operators
    /// reach the console (over TLS) while the admin API stays where it
    /// is; the admin listener then serves no `/ui/`. None: the console is
    /// on the admin listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// PEM certificate chain (leaf first) the console's own listener
    /// serves over TLS; with `tls_key`, and only with `listen`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert` (keep it 0600).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Minutes a session lives without a request.
    pub session_idle_minutes: u64,
    /// Hours a session lives at most, however busy.
    pub session_max_hours: u64,
    /// Sessions kept at once; past it, the least recently used goes.
    pub max_sessions: usize,
    /// Sign-in attempts one peer address may make per minute.
    pub sign_ins_per_minute_per_peer: u32,
    /// Mark the session cookie `Secure`: set it when the console is
    /// reached over HTTPS through a TLS-terminating proxy, so the browser
    /// never sends the cookie in clear. Always on with `tls_cert`.
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: None,
            tls_cert: None,
            tls_key: None,
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

    /// Whether the browser reaches the console over HTTPS only.
    pub fn over_https(&self) -> bool {
        self.secure_cookie || self.tls_cert.is_some()
    }

    /// The checks serde cannot express: the key at fault and why.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let problem = |key, why: &str| Err((key, why.to_owned()));
        if self.session_idle_minutes == 0
            || self.session_max_hours == 0
            || self.max_sessions == 0
            || self.sign_ins_per_minute_per_peer == 0
        {
            return problem(
                "console",
                "session_idle_minutes, session_max_hours, max_sessions and \
                 sign_ins_per_minute_per_peer must be at least 1",
            );
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return problem(
                "console.tls_cert",
                "tls_cert and tls_key go together: set both or neither",
            );
        }
        if self.tls_cert.is_some() && self.listen.is_none() {
            return problem(
                "console.tls_cert",
                "TLS is for the console's own listener: set console.listen too",
            );
        }
        match &self.listen {
            Some(l) if l.parse::<std::net::SocketAddr>().is_err() => Err((
                "console.listen",
                format!("`{l}`: must be ip:port, e.g. 127.0.0.1:8444"),
            )),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(edit: impl FnOnce(&mut ConsoleConfig)) -> Result<(), &'static str> {
        let mut cfg = ConsoleConfig::default();
        edit(&mut cfg);
        cfg.check().map_err(|(key, _)| key)
    }

    #[test]
    fn tls_needs_both_files_and_a_listener_of_its_own() {
        assert_eq!(with(|_| ()), Ok(()));
        let listen = |c: &mut ConsoleConfig| c.listen = Some("127.0.0.1:8444".into());
        let cert = |c: &mut ConsoleConfig| c.tls_cert = Some("cert.pem".into());
        let key = |c: &mut ConsoleConfig| c.tls_key = Some("key.pem".into());
        assert_eq!(with(listen), Ok(()));
        assert_eq!(
            with(|c| {
                listen(c);
                cert(c)
            }),
            Err("console.tls_cert")
        );
        assert_eq!(
            with(|c| {
                cert(c);
                key(c)
            }),
            Err("console.tls_cert")
        );
        assert_eq!(
            with(|c| {
                listen(c);
                cert(c);
                key(c)
            }),
            Ok(())
        );
        assert_eq!(
            with(|c| c.listen = Some("localhost".into())),
            Err("console.listen")
        );
        assert_eq!(with(|c| c.max_sessions = 0), Err("console"));
    }

    #[test]
    fn a_certificate_makes_the_cookie_secure() {
        let mut cfg = ConsoleConfig::default();
        assert!(!cfg.over_https());
        cfg.tls_cert = Some("cert.pem".into());
        assert!(cfg.over_https());
    }
}
