//! The LDAP connector's configuration (`[[connectors]]` with
//! `type = "ldap"`). Every key has a default that fits OpenLDAP with the
//! standard schemas, so a minimal entry is a name, a URL, a bind DN, a
//! password file and a base DN.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::connector::{ConnectorError, DeliveryConfig};

/// `[[connectors]]` of `type = "ldap"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LdapConfig {
    /// The connector's name (letters, digits, `-`, `_`).
    pub name: String,
    /// `ldap://host:389`, `ldaps://host:636`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS.
    pub starttls: bool,
    /// PEM file of the CA(s) to trust for TLS instead of the system's.
    pub tls_ca_file: Option<PathBuf>,
    /// Empty for an anonymous bind.
    pub bind_dn: String,
    /// File holding the bind password (read at every connect, so a rotated
    /// password is picked up without a restart).
    pub password_file: Option<PathBuf>,
    /// Replaces `{base_dn}` in the DN templates.
    pub base_dn: String,
    pub users: KindConfig,
    pub groups: KindConfig,
    pub assets: KindConfig,
    /// `groupOfNames` needs at least one `member`: an empty group gets this
    /// DN (`{base_dn}` allowed).
    pub empty_group_member: String,
    pub inactive_users: InactivePolicy,
    pub deleted: DeletedPolicy,
    pub deletion_threshold: DeletionThreshold,
    /// Take over an entry idsync did not create when it sits at the DN an
    /// object maps to and differs from it. Off: such an entry is left alone
    /// (an identical one is always adopted: it is what idsync would write).
    pub adopt_existing: bool,
    /// Give each new entry its `entryUUID` (`mapping::add_uuid`) with the Relax
    /// Rules control, so that idsync knows it without the server reading the
    /// entry back inside its write. A server that will not take it (no
    /// Relax Rules, or a bind DN without `manage` access) is asked with the
    /// Post-Read control instead, from the first refusal on.
    pub assign_entry_uuid: bool,
    /// Operations in flight on the one connection.
    pub concurrency: usize,
    /// Time limit of one LDAP operation, and of connecting.
    pub timeout_ms: u64,
    /// Page size of the reconcile's searches.
    pub page_size: i32,
    pub delivery: DeliveryConfig,
}

/// How one kind of object maps to entries (`[connectors.users]`, …). A
/// key left out keeps the kind's default (an empty `dn`, `object_classes`
/// or `attributes` means the default too); an `attributes` table given
/// replaces the default one whole.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KindConfig {
    /// Sync this kind at all.
    pub enabled: bool,
    /// DN template: `{field}` is the object's field (escaped), `{a|b}` the
    /// first of them that is set, `{base_dn}` the base DN.
    pub dn: String,
    /// Object classes of new entries; the first is searched for in a
    /// reconcile.
    pub object_classes: Vec<String>,
    /// LDAP attribute → value template. A template that is one `{field}`
    /// naming a list gives one value per element. Attributes listed here are
    /// managed: idsync sets them and removes them when the field is empty.
    pub attributes: BTreeMap<String, String>,
    /// Subtree searched by a reconcile (default: the parent of `dn`).
    pub search_base: Option<String>,
}

impl KindConfig {
    fn new(enabled: bool, dn: &str, classes: &[&str], attrs: &[(&str, &str)]) -> Self {
        Self {
            enabled,
            dn: dn.into(),
            object_classes: classes.iter().map(|s| s.to_string()).collect(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            search_base: None,
        }
    }
}

/// What to do in LDAP with a user whose status is `inactive`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InactivePolicy {
    /// `leave` (sync like any user), `attribute` (set `attribute` to
    /// `value`), `move` (rename the entry under `ou`), `delete`.
    pub action: InactiveAction,
    pub attribute: String,
    pub value: String,
    /// Parent DN of inactive users for `move` (`{base_dn}` allowed).
    pub ou: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InactiveAction {
    Leave,
    Attribute,
    Move,
    Delete,
}

impl Default for InactivePolicy {
    fn default() -> Self {
        Self {
            action: InactiveAction::Leave,
            attribute: "employeeType".into(),
            value: "inactive".into(),
            ou: "ou=inactive,{base_dn}".into(),
        }
    }
}

/// What to do with the entry of an object deleted in idsync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletedPolicy {
    /// `delete` the entry, or `disable` it (set `attribute` to `value`) and
    /// delete it `delete_after_days` later, at a reconcile.
    pub action: DeletedAction,
    pub attribute: String,
    pub value: String,
    pub delete_after_days: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeletedAction {
    Delete,
    Disable,
}

impl Default for DeletedPolicy {
    fn default() -> Self {
        Self {
            action: DeletedAction::Delete,
            attribute: "description".into(),
            value: "disabled by idsync".into(),
            delete_after_days: 30,
        }
    }
}

/// A reconcile that would delete or disable more than this stops and says
/// so (`idsync connectors plan` shows what it would do).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeletionThreshold {
    /// At most this many entries.
    pub max: usize,
    /// At most this share of the entries idsync manages, in percent.
    pub percent: f64,
}

impl Default for DeletionThreshold {
    fn default() -> Self {
        Self {
            max: 500,
            percent: 20.0,
        }
    }
}

impl Default for LdapConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: "ldap://127.0.0.1:389".into(),
            starttls: false,
            tls_ca_file: None,
            bind_dn: String::new(),
            password_file: None,
            base_dn: "dc=example,dc=org".into(),
            users: KindConfig::new(
                true,
                "uid={loginName|mail},ou=people,{base_dn}",
                &["inetOrgPerson", "organizationalPerson", "person", "top"],
                &[
                    // `person` requires cn and sn; a SCIM user may have
                    // no lastName (RFC 7643), so both fall back.
                    ("cn", "{displayName|lastName|loginName|mail}"),
                    ("sn", "{lastName|displayName|loginName|mail}"),
                    ("givenName", "{firstName}"),
                    ("displayName", "{displayName}"),
                    ("mail", "{mail}"),
                    ("uid", "{loginName|mail}"),
                    ("preferredLanguage", "{language}"),
                    // From SCIM clients (RFC 7643's User and its enterprise
                    // extension), when they send them.
                    ("employeeNumber", "{employeeNumber|externalId}"),
                    ("title", "{title}"),
                    ("telephoneNumber", "{phoneNumbers.work}"),
                    ("mobile", "{phoneNumbers.mobile}"),
                    ("departmentNumber", "{department}"),
                    ("o", "{organization}"),
                    ("manager", "{managerDn}"),
                    ("street", "{addresses.work.streetAddress}"),
                    ("l", "{addresses.work.locality}"),
                    ("postalCode", "{addresses.work.postalCode}"),
                ],
            ),
            groups: KindConfig::new(
                true,
                "cn={displayName},ou=groups,{base_dn}",
                &["groupOfNames", "top"],
                &[("cn", "{displayName}"), ("description", "{description}")],
            ),
            assets: KindConfig::new(
                true,
                "cn={name},ou=devices,{base_dn}",
                &["device", "top"],
                &[
                    ("cn", "{name}"),
                    ("description", "{description}"),
                    ("o", "{organization}"),
                    ("serialNumber", "{sid}"),
                ],
            ),
            empty_group_member: "cn=idsync-empty-group,{base_dn}".into(),
            inactive_users: InactivePolicy::default(),
            deleted: DeletedPolicy::default(),
            deletion_threshold: DeletionThreshold::default(),
            adopt_existing: false,
            assign_entry_uuid: true,
            concurrency: 8,
            timeout_ms: 10_000,
            page_size: 500,
            delivery: DeliveryConfig::default(),
        }
    }
}

impl Default for KindConfig {
    /// Enabled, everything else taken from the kind's defaults.
    fn default() -> Self {
        Self::new(true, "", &[], &[])
    }
}

impl KindConfig {
    /// Fill what was left empty from `defaults`.
    fn resolve(&mut self, defaults: &KindConfig) {
        if self.dn.is_empty() {
            self.dn = defaults.dn.clone();
        }
        if self.object_classes.is_empty() {
            self.object_classes = defaults.object_classes.clone();
        }
        if self.attributes.is_empty() {
            self.attributes = defaults.attributes.clone();
        }
    }
}

/// The defaults, under the name `t`: what the LDAP unit tests start from.
#[cfg(test)]
pub(crate) fn test_config() -> LdapConfig {
    LdapConfig {
        name: "t".into(),
        ..LdapConfig::default()
    }
}

impl LdapConfig {
    /// The configuration with every per-kind key left out filled from the
    /// kind's defaults.
    pub fn resolved(&self) -> LdapConfig {
        let d = LdapConfig::default();
        let mut c = self.clone();
        c.users.resolve(&d.users);
        c.groups.resolve(&d.groups);
        c.assets.resolve(&d.assets);
        c
    }

    /// The checks serde cannot express (on the resolved configuration).
    pub fn check(&self) -> Result<(), ConnectorError> {
        self.resolved().check_resolved()
    }

    fn check_resolved(&self) -> Result<(), ConnectorError> {
        let bad = |m: String| {
            Err(ConnectorError::Config(format!(
                "connector {}: {m}",
                self.name
            )))
        };
        if !(self.url.starts_with("ldap://") || self.url.starts_with("ldaps://")) {
            return bad(format!(
                "url {:?} must start with ldap:// or ldaps://",
                self.url
            ));
        }
        if self.starttls && self.url.starts_with("ldaps://") {
            return bad("starttls is for ldap:// URLs".into());
        }
        if self.concurrency == 0 || self.page_size <= 0 || self.delivery.batch_size == 0 {
            return bad("concurrency, page_size and delivery.batch_size must be at least 1".into());
        }
        if self.delivery.max_attempts == 0 {
            return bad("delivery.max_attempts must be at least 1".into());
        }
        for (kind, k) in [
            ("users", &self.users),
            ("groups", &self.groups),
            ("assets", &self.assets),
        ] {
            if !k.enabled {
                continue;
            }
            if k.object_classes.is_empty() {
                return bad(format!("{kind}.object_classes is empty"));
            }
            let rdn = k.dn.split(',').next().unwrap_or("");
            if !rdn.contains('=') || !rdn.contains('{') {
                return bad(format!(
                    "{kind}.dn {:?} must start with an attribute=template RDN",
                    k.dn
                ));
            }
        }
        if !(0.0..=100.0).contains(&self.deletion_threshold.percent) {
            return bad("deletion_threshold.percent must be between 0 and 100".into());
        }
        Ok(())
    }
}
