//! The registry of connector types: the one place that names every
//! concrete connector. A `[[connectors]]` entry of the configuration is
//! read into a [`ConnectorConfig`] by its `type`, checked, and built into
//! the `Arc<dyn Connector>` the daemon drives; everything past `build`
//! sees only the trait. The one exception is [`crate::mail`]: it has a
//! section of its own (`[mail]`, one relay for every kind of mail), and the
//! daemon builds it from there (`connect::build_mail`). Kept apart from the trait's module so that the
//! trait depends on no connector, and adding a peer touches this file and
//! the peer's own module only.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::connector::{Connector, ConnectorError};
use crate::ldap::{LdapConfig, LdapConnector};
use crate::webhook::{WebhookConfig, WebhookConnector};

/// One `[[connectors]]` entry, by `type`.
// Read once at start and kept in a short list: the size of the LDAP
// variant costs nothing worth a `Box` and its `**` at every use.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ConnectorConfig {
    Ldap(LdapConfig),
    /// An HTTP POST per change (approvers' notification).
    Webhook(WebhookConfig),
}

impl ConnectorConfig {
    /// The connector's name.
    pub fn name(&self) -> &str {
        match self {
            ConnectorConfig::Ldap(c) => &c.name,
            ConnectorConfig::Webhook(c) => &c.name,
        }
    }

    /// The checks serde cannot express.
    pub fn check(&self) -> Result<(), ConnectorError> {
        let name = self.name();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ConnectorError::Config(format!(
                "connector name {name:?} must be letters, digits, `-` or `_`"
            )));
        }
        match self {
            ConnectorConfig::Ldap(c) => c.check(),
            ConnectorConfig::Webhook(c) => c.check(),
        }
    }

    /// Build the connector.
    pub fn build(&self) -> Result<Arc<dyn Connector>, ConnectorError> {
        self.check()?;
        match self {
            ConnectorConfig::Ldap(c) => Ok(Arc::new(LdapConnector::new(c.clone())?)),
            ConnectorConfig::Webhook(c) => Ok(Arc::new(WebhookConnector::new(c.clone())?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configs_are_checked() {
        let ok: ConnectorConfig = serde_json::from_value(serde_json::json!({
            "type": "ldap", "name": "corp", "url": "ldap://127.0.0.1:389",
            "deleted": {"action": "disable", "delete_after_days": 7}
        }))
        .unwrap();
        assert_eq!(ok.name(), "corp");
        assert!(ok.build().is_ok());
        let typo = serde_json::from_value::<ConnectorConfig>(serde_json::json!({
            "type": "ldap", "name": "corp", "bind_pw": "x"
        }));
        assert!(typo.is_err(), "unknown keys are refused");
        let bad: ConnectorConfig = serde_json::from_value(serde_json::json!({
            "type": "ldap", "name": "a/b", "url": "ldap://x"
        }))
        .unwrap();
        assert!(bad.check().is_err());
        let bad: ConnectorConfig = serde_json::from_value(serde_json::json!({
            "type": "ldap", "name": "a", "url": "http://x"
        }))
        .unwrap();
        assert!(bad.check().is_err());
    }
}
