//! `idsync mail send-activation --application APP [--resend USER]`: seed
//! 003's "Send E-Mails", or a new link for one user. Through the running daemon's admin route
//! (`crate::sources::activation::routes`, operator token); without a
//! daemon, on the store directly (the mails then go out when the daemon
//! starts).

use anyhow::{bail, Context as _};
use clap::Subcommand;
use hyper::{Method, StatusCode};

use crate::cli::client::DaemonClient;
use crate::config::Config;

/// `idsync mail …`
#[derive(Debug, Subcommand)]
pub enum MailCommand {
    /// Queue the activation mail for every user of an application who was
    /// never sent one (each user once, in their language).
    SendActivation {
        /// The application (`[[applications]]` name).
        #[arg(long)]
        application: String,
        /// Only this user (mail, loginName or id), whatever was sent
        /// before: a new link, the old one stops working.
        #[arg(long, value_name = "USER")]
        resend: Option<String>,
    },
}

/// Run `idsync mail …`; the exit status.
pub fn run(cfg: &Config, cmd: MailCommand) -> anyhow::Result<u8> {
    let MailCommand::SendActivation {
        application,
        resend,
    } = cmd;
    if !cfg.applications.iter().any(|a| a.name == application) {
        bail!("no application {application:?} in the configuration ([[applications]])");
    }
    if cfg.mail.is_none() {
        bail!("[mail] is not configured: nothing would send the activation mails");
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let path = match &resend {
        None => format!("/mail/applications/{application}/send-activation"),
        Some(user) => format!(
            "/mail/applications/{application}/users/{}/resend",
            path_segment(user)
        ),
    };
    let answer = rt.block_on(async {
        let Ok(client) = DaemonClient::new(cfg) else {
            return Ok(None);
        };
        match client.call(Method::POST, &path, None, Vec::new()).await {
            Ok(a) => Ok(Some(a)),
            Err(e) if crate::cli::client::is_unreachable(&e) => Ok(None),
            Err(e) => Err(e),
        }
    })?;
    let v = match answer {
        Some(a) => {
            let v = a.json();
            match a.status {
                StatusCode::OK => v,
                StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => bail!(
                    "the idsync daemon refused the token ({}): this command needs the operator role",
                    a.status
                ),
                s => bail!(
                    "the idsync daemon answered {s}: {}",
                    v["error"].as_str().unwrap_or("")
                ),
            }
        }
        None => {
            // No daemon: the store is ours.
            let rec = crate::app::open(cfg)?;
            let actor = idsync_store::Actor {
                kind: "cli".into(),
                name: "mail send-activation".into(),
                digest: None,
                line: None,
            };
            match &resend {
                None => serde_json::json!(crate::sources::activation::queue(
                    &rec,
                    &application,
                    actor
                )?),
                Some(user) => serde_json::json!(crate::sources::activation::resend(
                    &rec,
                    &application,
                    user,
                    actor
                )?),
            }
        }
    };
    match &resend {
        None => println!(
            "{} activation mails queued for {application}",
            v["queued"].as_u64().unwrap_or(0)
        ),
        Some(user) => println!("a new activation mail queued for {user} ({application})"),
    }
    Ok(0)
}

/// `s` as one path segment: anything but unreserved characters and `@`
/// percent-encoded.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'@' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
