//! The objects idsync stores. Field names serialise in the camelCase of the
//! source documents (`loginName`, `spCustomAttribute1`), which is also what
//! `idsync list --format json` and the change log show.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

/// Stored JSON leaves out empty values (they come back as defaults): less
/// to write for every row and every change event.
fn all_none(values: &[Option<String>; 5]) -> bool {
    values.iter().all(Option::is_none)
}

/// What a change did to its object: the change log records it, connectors
/// act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Operation {
    Created,
    Updated,
    Deleted,
}

/// The kinds of object idsync keeps; each has its own CSV layout and inbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    User,
    Group,
    Asset,
    Profile,
    /// An enrollment request (P10, P12, …) and its approval.
    Request,
    /// An issued certificate.
    Certificate,
    /// An asset registered for ACME or SCEP enrollment.
    Registration,
}

impl Kind {
    /// The plural used on the command line and in folder names.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::User => "users",
            Kind::Group => "groups",
            Kind::Asset => "assets",
            Kind::Profile => "profiles",
            Kind::Request => "requests",
            Kind::Certificate => "certificates",
            Kind::Registration => "registrations",
        }
    }
}

/// Bookkeeping every object carries. `version` starts at 1 and grows by one
/// with every change; it is the SCIM ETag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Meta {
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub modified: OffsetDateTime,
    pub version: u64,
    /// The change-log numbers of its last changes (at most
    /// [`Meta::CHANGES_KEPT`], oldest first): its recent history is that
    /// many point reads of the log, not a search of it. Empty for objects
    /// last written by a version that did not keep them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<u64>,
}

impl Meta {
    /// Change numbers [`Meta::changes`] keeps.
    pub const CHANGES_KEPT: usize = 32;

    /// Meta of an object created at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        Self {
            created: now,
            modified: now,
            version: 1,
            changes: Vec::new(),
        }
    }

    /// Note that change `seq` of the log is this object's latest.
    pub fn record_change(&mut self, seq: u64) {
        if self.changes.len() >= Self::CHANGES_KEPT {
            self.changes.remove(0);
        }
        self.changes.push(seq);
    }

    /// Record one more change at `now`.
    pub fn bump(&mut self, now: OffsetDateTime) {
        self.modified = now;
        self.version += 1;
    }
}

/// Whether a user may work with the tenant's applications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Inactive,
}

impl Status {
    /// The word used in CSV files and reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Inactive => "inactive",
        }
    }
}

/// Where the last write of an object came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Source {
    Csv,
    Scim,
    Api,
}

impl Source {
    /// The word stored in the `source` field (`CSV`, `SCIM`, `API`).
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Csv => "CSV",
            Source::Scim => "SCIM",
            Source::Api => "API",
        }
    }
}

/// Whether the activation e-mail has gone out (seed 003: it is sent once, to
/// imported users who have not had one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationMail {
    #[default]
    NotSent,
    Sent,
}

/// A person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub login_name: Option<String>,
    /// Mandatory for CSV (seed 003), optional over SCIM (RFC 7643).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// Mandatory for CSV (seed 003), optional over SCIM (RFC 7643).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// `yyyyMMddHHmmssZ`, kept as written once validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_to: Option<String>,
    /// `spCustomAttribute1..5`.
    #[serde(default, skip_serializing_if = "all_none")]
    pub sp_custom_attributes: [Option<String>; 5],
    /// Ids of the groups the user belongs to: the one record of membership
    /// (a group's members are derived from it through an index).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<Uuid>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub applications: Vec<String>,
    pub source: Source,
    #[serde(default)]
    pub activation_mail: ActivationMail,
    /// The activation e-mail per application (issue 16); an application
    /// not listed is `not_sent`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub activations: std::collections::BTreeMap<String, crate::activation::Activation>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// What a SCIM client sent beyond the typed fields (`title`,
    /// `phoneNumbers`, the enterprise extension, …), checked against the
    /// schema ([`crate::scim::attributes`]) and kept as sent.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub scim: serde_json::Map<String, serde_json::Value>,
    pub meta: Meta,
}

/// A group of users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: Uuid,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub source: Source,
    pub meta: Meta,
}

/// Whether an asset can be enrolled: `pending` while its certificate profile
/// does not exist or is inactive (seed 000), `active` once it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AssetState {
    Pending,
    Active,
}

/// A server or device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Asset {
    pub id: Uuid,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub asset_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_profile: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    /// The id a SCIM client gave it (RFC 7643 §3.1, on every resource).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    pub state: AssetState,
    pub source: Source,
    pub meta: Meta,
}

impl User {
    /// How mails and pages greet the user: the display name, else first
    /// and last name, else the login name or the mail.
    pub fn greeting(&self) -> String {
        if let Some(d) = self
            .display_name
            .as_deref()
            .filter(|d| !d.trim().is_empty())
        {
            return d.to_owned();
        }
        let full = [self.first_name.as_deref(), self.last_name.as_deref()]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" ");
        if !full.trim().is_empty() {
            return full;
        }
        self.login_name
            .clone()
            .or_else(|| self.mail.clone())
            .unwrap_or_default()
    }
}

#[cfg(test)]
impl User {
    /// An active CSV user with only a login name and a mail, for the
    /// crate's tests to change what they look at.
    pub(crate) fn sample(login: &str, mail: &str) -> Self {
        User {
            id: Uuid::nil(),
            login_name: Some(login.into()),
            mail: Some(mail.into()),
            first_name: None,
            last_name: None,
            display_name: None,
            status: Status::Active,
            language: None,
            valid_from: None,
            valid_to: None,
            sp_custom_attributes: Default::default(),
            groups: vec![],
            roles: vec![],
            applications: vec![],
            source: Source::Csv,
            activation_mail: Default::default(),
            activations: Default::default(),
            external_id: None,
            scim: Default::default(),
            meta: Meta::new(OffsetDateTime::UNIX_EPOCH),
        }
    }
}
