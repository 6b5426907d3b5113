//! The mail connector (issue 16): for now its configuration, `[mail]`, and
//! its templates; the SMTP delivery follows.

mod config;
pub mod templates;

pub use config::{MailConfig, TlsMode};

/// The connector's name: its delivery state lives under `s/conn/mail/`.
pub const NAME: &str = "mail";
