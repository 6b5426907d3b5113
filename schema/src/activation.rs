//! Applications and the activation e-mail (issue 16, seed 003).
//!
//! Why here: users are imported *for an application* and mailed an
//! activation link per application. The application settings
//! (`[[applications]]`) and the activation state machine are pure data and
//! rules that the reconciler (which stores the state), the mail connector
//! (which sends the mail) and the configuration check all need, so they live
//! in the pure crate, once.
//!
//! The state per user and application: absent means `not_sent`;
//! `queued` (a send was asked for; a fresh `nonce` names this sending),
//! `sent` (the relay accepted the mail; the link's token hash is kept,
//! never the token), `activated` (the password was set), `failed` (the
//! relay refused the mail for good, with the reason). A `queued`, `sent` or
//! `failed` state may be queued again (a resend: a new nonce voids the old
//! link).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// Where one user stands for one application.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationState {
    #[default]
    NotSent,
    Queued,
    Sent,
    Activated,
    Failed,
}

impl ActivationState {
    /// The word stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationState::NotSent => "not_sent",
            ActivationState::Queued => "queued",
            ActivationState::Sent => "sent",
            ActivationState::Activated => "activated",
            ActivationState::Failed => "failed",
        }
    }

    /// Whether the state may move from `self` to `next`. Queueing again
    /// from `queued`, `sent` or `failed` is a resend; nothing leaves
    /// `activated`.
    pub fn may_become(self, next: ActivationState) -> bool {
        use ActivationState::*;
        matches!(
            (self, next),
            (NotSent | Queued | Sent | Failed, Queued)
                | (Queued, Sent | Failed)
                | (Sent, Activated | Failed)
        )
    }
}

/// One user's activation for one application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Activation {
    pub state: ActivationState,
    /// Names one sending (hex, random, set when queued): the mail's
    /// `Message-ID` and its link's token derive from it, so a mail sent
    /// twice (at least once delivery) is recognisable and carries the same
    /// link. Not a secret: the token also needs the daemon's mail key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// SHA-256 (hex) of the link's token, once sent. Never the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_sha256: Option<String>,
    /// When the link stops working (set when sent).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub expires: Option<OffsetDateTime>,
    /// Why it failed (`failed` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the state last moved.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

impl Activation {
    /// A new sending of the activation mail, queued at `now`.
    pub fn queued(nonce: String, now: OffsetDateTime) -> Self {
        Self {
            state: ActivationState::Queued,
            nonce: Some(nonce),
            token_sha256: None,
            expires: None,
            reason: None,
            at: now,
        }
    }
}

/// When the activation mail of an application goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SendPolicy {
    /// Only when asked (`idsync mail send-activation`): seed 003's "Do
    /// nothing" after an import.
    #[default]
    Manual,
    /// Queued by the import itself for the users it creates.
    OnImport,
}

/// One `[[applications]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationSettings {
    /// The name users are imported for (the `users/<name>/` drop folder,
    /// `idsync import --application`): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// How mails and the activation page name it; the name when unset.
    #[serde(default)]
    pub display_name: Option<String>,
    /// How long an activation link works, in days.
    #[serde(default = "default_link_days")]
    pub link_lifetime_days: u32,
    #[serde(default)]
    pub send_policy: SendPolicy,
}

fn default_link_days() -> u32 {
    7
}

impl ApplicationSettings {
    /// The name shown to people.
    pub fn shown_name(&self) -> &str {
        self.display_name.as_deref().unwrap_or(&self.name)
    }

    /// The checks serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            || self.name.starts_with('.')
        {
            return Err(format!(
                "application name {:?} must be 1 to 64 letters, digits, `-`, `_` or `.` (not first)",
                self.name
            ));
        }
        if self
            .display_name
            .as_deref()
            .is_some_and(|d| d.trim().is_empty() || d.chars().any(char::is_control))
        {
            return Err(format!(
                "application {:?}: display_name must not be blank or hold control characters",
                self.name
            ));
        }
        if !(1..=365).contains(&self.link_lifetime_days) {
            return Err(format!(
                "application {:?}: link_lifetime_days must be 1 to 365",
                self.name
            ));
        }
        Ok(())
    }
}

/// Check a list of applications: each valid, no name twice.
pub fn check_applications(apps: &[ApplicationSettings]) -> Result<(), String> {
    let mut names = BTreeSet::new();
    for a in apps {
        a.check()?;
        if !names.insert(a.name.as_str()) {
            return Err(format!("application {:?} is defined twice", a.name));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ActivationState::*;

    #[test]
    fn transitions() {
        assert!(NotSent.may_become(Queued));
        assert!(Queued.may_become(Sent));
        assert!(Queued.may_become(Failed));
        assert!(Sent.may_become(Activated));
        assert!(Sent.may_become(Queued), "a resend");
        assert!(Failed.may_become(Queued), "a retry after a refusal");
        assert!(!NotSent.may_become(Sent), "nothing is sent unqueued");
        assert!(!Activated.may_become(Queued), "an active account stays");
        assert!(!Queued.may_become(Activated));
    }

    #[test]
    fn applications_are_checked() {
        let app: ApplicationSettings =
            serde_json::from_value(serde_json::json!({"name": "crm"})).unwrap();
        assert_eq!(app.link_lifetime_days, 7);
        assert_eq!(app.send_policy, SendPolicy::Manual);
        assert_eq!(app.shown_name(), "crm");
        assert!(check_applications(std::slice::from_ref(&app)).is_ok());
        assert!(check_applications(&[app.clone(), app.clone()])
            .unwrap_err()
            .contains("twice"));
        let bad = ApplicationSettings {
            name: "a/b".into(),
            ..app.clone()
        };
        assert!(bad.check().unwrap_err().contains("letters"));
        let bad = ApplicationSettings {
            link_lifetime_days: 0,
            ..app.clone()
        };
        assert!(bad.check().unwrap_err().contains("link_lifetime_days"));
        let typo = serde_json::from_value::<ApplicationSettings>(
            serde_json::json!({"name": "crm", "send": "manual"}),
        );
        assert!(typo.is_err());
    }
}
