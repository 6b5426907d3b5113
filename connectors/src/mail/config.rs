//! `[mail]`: how idsync reaches its SMTP relay and what its mails say of
//! themselves (From, Reply-To, the links' base URL, the templates folder).
//!
//! Why a section of its own rather than a `[[connectors]]` entry: there is
//! one relay for every kind of mail idsync sends (activation now, approval
//! notifications next), and the applications it mails for are configured
//! beside it. Checked once at load, with errors that name the key.

use std::path::PathBuf;

use lettre::message::Mailbox;
use serde::{Deserialize, Serialize};

use crate::connector::{ConnectorError, DeliveryConfig};

/// Whether `s` is one mail address (`name@domain`, as SMTP takes it).
pub fn is_mail_address(s: &str) -> bool {
    s.parse::<lettre::Address>().is_ok()
}

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TlsMode {
    /// STARTTLS, required: a relay that does not offer it is an error,
    /// never a fall back to plain text.
    #[default]
    Starttls,
    /// STARTTLS when the relay offers it, plain text otherwise (a relay on
    /// the same host or network, at the operator's risk).
    StarttlsOptional,
    /// TLS from the first byte (port 465).
    Implicit,
    /// Plain text (a relay on loopback).
    None,
}

/// `[mail]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The relay's host name (also the name its certificate must carry).
    pub relay: String,
    /// 587 (STARTTLS) by default; 465 for `implicit`, 25 for a local relay.
    pub port: u16,
    pub tls: TlsMode,
    /// PEM file of the CA(s) to trust instead of the built-in roots.
    pub ca_file: Option<PathBuf>,
    /// Login name for SMTP AUTH; unset: no login.
    pub username: Option<String>,
    /// A file holding the login's password (read at start; surrounding
    /// whitespace ignored). Required with `username`.
    pub password_file: Option<PathBuf>,
    /// `From:` of every mail, e.g. `"idsync <noreply@example.com>"`.
    pub from: String,
    /// `Reply-To:`, if any.
    pub reply_to: Option<String>,
    /// Who is mailed when a certificate request waits for approval, besides
    /// the active users holding the `Approval` role who have a mail address.
    pub approvers: Vec<String>,
    /// Where the activation page is served, as users reach it, e.g.
    /// `https://id.example.com`; links are `BASE/activate/TOKEN`.
    pub public_url: String,
    /// A folder of templates that replace the built-in ones
    /// (`activation.en.subject`, `activation.de.html`, …; docs/mail.md).
    pub templates_dir: Option<PathBuf>,
    /// Time limit of one SMTP session step, in milliseconds.
    pub timeout_ms: u64,
    /// Connections to the relay kept open at most (and mails of a batch
    /// sent at once).
    pub max_connections: u32,
    /// Mails per second at most; none: as fast as the relay takes them.
    pub max_per_second: Option<u32>,
    pub delivery: DeliveryConfig,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            relay: String::new(),
            port: 587,
            tls: TlsMode::Starttls,
            ca_file: None,
            username: None,
            password_file: None,
            from: String::new(),
            reply_to: None,
            public_url: String::new(),
            approvers: Vec::new(),
            templates_dir: None,
            timeout_ms: 30_000,
            max_connections: 4,
            max_per_second: None,
            delivery: DeliveryConfig {
                batch_size: 100,
                ..DeliveryConfig::default()
            },
        }
    }
}

/// A problem with `[mail]`: the key, and what is wrong with it.
pub type Problem = (&'static str, String);

fn bad(key: &'static str, m: impl std::fmt::Display) -> Problem {
    (key, m.to_string())
}

impl MailConfig {
    /// The checks serde cannot express.
    pub fn check(&self) -> Result<(), ConnectorError> {
        self.problem()
            .map_err(|(key, m)| ConnectorError::Config(format!("{key}: {m}")))
    }

    /// The first problem of the section, if any.
    pub fn problem(&self) -> Result<(), Problem> {
        if self.relay.is_empty() {
            return Err(bad(
                "mail.relay",
                "is required (the SMTP relay's host name)",
            ));
        }
        if self.relay.contains(['/', ':', ' ']) && self.relay.parse::<std::net::IpAddr>().is_err() {
            return Err(bad(
                "mail.relay",
                "a host name or address, without scheme or port (see mail.port)",
            ));
        }
        if self.port == 0 {
            return Err(bad("mail.port", "must be 1 to 65535"));
        }
        self.from_mailbox()?;
        self.reply_to_mailbox()?;
        self.approver_mailboxes()?;
        match (&self.username, &self.password_file) {
            (Some(_), None) => {
                return Err(bad("mail.password_file", "is required with mail.username"));
            }
            (None, Some(_)) => {
                return Err(bad("mail.username", "is required with mail.password_file"));
            }
            _ => {}
        }
        if self.username.is_some() && self.tls == TlsMode::None {
            return Err(bad(
                "mail.tls",
                "`none` would send the password in plain text: use starttls or implicit",
            ));
        }
        if self.ca_file.is_some() && self.tls == TlsMode::None {
            return Err(bad("mail.ca_file", "is for a TLS connection (mail.tls)"));
        }
        let url = self.public_url.trim_end_matches('/');
        if !(url.starts_with("https://") || url.starts_with("http://"))
            || url.len() <= "https://".len()
            || url.contains(['?', '#', ' '])
        {
            return Err(bad(
                "mail.public_url",
                "must be an http:// or https:// URL without query, e.g. https://id.example.com",
            ));
        }
        if self.timeout_ms < 100 {
            return Err(bad("mail.timeout_ms", "must be at least 100"));
        }
        if self.max_connections == 0 {
            return Err(bad("mail.max_connections", "must be at least 1"));
        }
        if self.max_per_second == Some(0) {
            return Err(bad(
                "mail.max_per_second",
                "must be at least 1 (leave it out for no limit)",
            ));
        }
        if self.delivery.batch_size == 0 || self.delivery.max_attempts == 0 {
            return Err(bad(
                "mail.delivery",
                "batch_size and max_attempts must be at least 1",
            ));
        }
        Ok(())
    }

    /// `from` as a mailbox.
    pub fn from_mailbox(&self) -> Result<Mailbox, Problem> {
        if self.from.is_empty() {
            return Err(bad(
                "mail.from",
                "is required, e.g. \"idsync <noreply@example.com>\"",
            ));
        }
        self.from.parse().map_err(|e| {
            bad(
                "mail.from",
                format!("{:?} is not a mail address: {e}", self.from),
            )
        })
    }

    /// `approvers` as mailboxes.
    pub fn approver_mailboxes(&self) -> Result<Vec<Mailbox>, Problem> {
        self.approvers
            .iter()
            .map(|a| {
                a.parse().map_err(|e| {
                    bad(
                        "mail.approvers",
                        format!("{a:?} is not a mail address: {e}"),
                    )
                })
            })
            .collect()
    }

    /// `reply_to` as a mailbox, if set.
    pub fn reply_to_mailbox(&self) -> Result<Option<Mailbox>, Problem> {
        self.reply_to
            .as_deref()
            .map(|r| {
                r.parse()
                    .map_err(|e| bad("mail.reply_to", format!("{r:?} is not a mail address: {e}")))
            })
            .transpose()
    }

    /// The link to the activation page for `token`.
    pub fn activation_link(&self, token: &str) -> String {
        format!("{}/activate/{token}", self.public_url.trim_end_matches('/'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> MailConfig {
        MailConfig {
            relay: "smtp.example.com".into(),
            from: "idsync <noreply@example.com>".into(),
            public_url: "https://id.example.com/".into(),
            ..MailConfig::default()
        }
    }

    fn problem(c: MailConfig) -> String {
        c.check().unwrap_err().to_string()
    }

    #[test]
    fn a_complete_section_passes_and_links_are_built() {
        good().check().unwrap();
        assert_eq!(
            good().activation_link("abc"),
            "https://id.example.com/activate/abc"
        );
    }

    #[test]
    fn each_problem_names_its_key() {
        assert!(problem(MailConfig {
            relay: String::new(),
            ..good()
        })
        .contains("mail.relay"));
        assert!(problem(MailConfig {
            relay: "smtp://x:25".into(),
            ..good()
        })
        .contains("mail.relay"));
        assert!(problem(MailConfig {
            from: "not an address".into(),
            ..good()
        })
        .contains("mail.from"));
        assert!(problem(MailConfig {
            from: String::new(),
            ..good()
        })
        .contains("mail.from"));
        assert!(problem(MailConfig {
            reply_to: Some("@".into()),
            ..good()
        })
        .contains("mail.reply_to"));
        assert!(problem(MailConfig {
            username: Some("u".into()),
            ..good()
        })
        .contains("mail.password_file"));
        assert!(problem(MailConfig {
            password_file: Some("/p".into()),
            ..good()
        })
        .contains("mail.username"));
        let plain_login = MailConfig {
            username: Some("u".into()),
            password_file: Some("/p".into()),
            tls: TlsMode::None,
            ..good()
        };
        assert!(problem(plain_login).contains("mail.tls"));
        assert!(problem(MailConfig {
            public_url: "id.example.com".into(),
            ..good()
        })
        .contains("mail.public_url"));
        assert!(problem(MailConfig { port: 0, ..good() }).contains("mail.port"));
    }

    #[test]
    fn unknown_keys_and_modes_are_refused() {
        let typo = serde_json::from_value::<MailConfig>(serde_json::json!({"host": "x"}));
        assert!(typo.is_err());
        let mode = serde_json::from_value::<MailConfig>(serde_json::json!({"tls": "ssl"}));
        assert!(mode.is_err());
        let ok =
            serde_json::from_value::<MailConfig>(serde_json::json!({"tls": "starttls_optional"}));
        assert_eq!(ok.unwrap().tls, TlsMode::StarttlsOptional);
    }
}
