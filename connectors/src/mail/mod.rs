//! The mail connector (issue 16): for now its configuration, `[mail]`;
//! the templates and the SMTP delivery follow.

mod config;

pub use config::{MailConfig, TlsMode};

/// The connector's name: its delivery state lives under `s/conn/mail/`.
pub const NAME: &str = "mail";
