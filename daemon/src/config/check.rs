//! The checks serde cannot express: values in range, names that must
//! match across sections (profiles, folders, connectors, mail and
//! applications, tokens), each problem reported with the key it is about,
//! and all of them at once, so `idsync check-config` lists every problem of
//! a file in one go.

use super::*;

impl ConfigError {
    /// One problem as itself, several as [`ConfigError::Many`].
    pub(super) fn all(mut problems: Vec<ConfigError>) -> ConfigError {
        if problems.len() == 1 {
            problems.remove(0)
        } else {
            ConfigError::Many(problems)
        }
    }
}

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl Config {
    /// The checks serde cannot express.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut problems = self.check_values();
        problems.extend(
            [
                self.delimiter().map(drop),
                self.check_profiles(),
                self.check_folder_options(),
                self.scim
                    .check()
                    .map_err(|(key, message)| invalid(key, message)),
                self.acme
                    .check()
                    .map_err(|(key, message)| invalid(key, message)),
                self.scep
                    .check()
                    .map_err(|(key, message)| invalid(key, message)),
                self.console
                    .check()
                    .map_err(|(key, message)| invalid(key, message)),
                self.check_connectors(),
                idsync_schema::activation::check_applications(&self.applications)
                    .map_err(|m| invalid("applications", m)),
                self.check_mail(),
                self.check_activation(),
                self.admin
                    .listen
                    .parse::<std::net::SocketAddr>()
                    .map(drop)
                    .map_err(|e| invalid("admin.listen", format!("`{}`: {e}", self.admin.listen))),
                self.check_tokens(),
            ]
            .into_iter()
            .filter_map(Result::err),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::all(problems))
        }
    }

    /// Single values with bounds serde cannot express, every one broken.
    fn check_values(&self) -> Vec<ConfigError> {
        [
            (
                self.users.group_separator.chars().count() != 1,
                "users.group_separator",
                "must be exactly one character",
            ),
            (
                self.import.batch_rows == 0,
                "import.batch_rows",
                "must be at least 1",
            ),
            (
                self.folders.unclosed_ms < self.folders.stable_ms,
                "folders.unclosed_ms",
                "must be at least folders.stable_ms",
            ),
            (
                self.store.cache_mb == 0,
                "store.cache_mb",
                "must be at least 1",
            ),
            (
                self.store.engine == EngineKind::Postgres && self.store.postgres.url.is_empty(),
                "store.postgres.url",
                "must be set when store.engine is postgres",
            ),
            (
                idsync_store::url_has_password(&self.store.postgres.url),
                "store.postgres.url",
                "must not hold a password: put it in store.postgres.password_file",
            ),
            (
                self.store.postgres.pool_size < 2,
                "store.postgres.pool_size",
                "must be at least 2",
            ),
            (
                self.store.postgres.statement_timeout_ms < 100,
                "store.postgres.statement_timeout_ms",
                "must be at least 100",
            ),
            (
                !(1000..=600_000).contains(&self.replicas.failover_ms),
                "replicas.failover_ms",
                "must be 1000 to 600000 (ten minutes)",
            ),
            (
                self.replicas.node_name.as_deref().is_some_and(|n| {
                    n.trim().is_empty() || n.len() > 200 || n.chars().any(char::is_control)
                }),
                "replicas.node_name",
                "must be 1 to 200 bytes of printable text",
            ),
            (
                self.enrollment.p12_iterations < 1000,
                "enrollment.p12_iterations",
                "must be at least 1000 (NIST SP 800-132)",
            ),
            (
                !(1..=365).contains(&self.enrollment.registration_days),
                "enrollment.registration_days",
                "must be 1 to 365",
            ),
            (
                !(1..=8760).contains(&self.ca.crl_validity_hours),
                "ca.crl_validity_hours",
                "must be 1 to 8760 (a year)",
            ),
            (
                self.ca
                    .crl_url
                    .as_deref()
                    .is_some_and(|u| !idsync_connectors::ca::is_crl_url(u)),
                "ca.crl_url",
                "must be an absolute http:// or https:// URL without spaces, query or fragment",
            ),
            (
                self.enrollment.keygen_threads == 0,
                "enrollment.keygen_threads",
                "must be at least 1",
            ),
            (
                self.admin.max_connections == 0,
                "admin.max_connections",
                "must be at least 1",
            ),
            (
                self.admin.max_connections_per_peer == 0,
                "admin.max_connections_per_peer",
                "must be at least 1",
            ),
            (
                self.admin.first_byte_timeout_ms < 100,
                "admin.first_byte_timeout_ms",
                "must be at least 100",
            ),
            (
                self.activation.password.min_length < 8,
                "activation.password.min_length",
                "must be at least 8 (NIST SP 800-63B)",
            ),
            (
                self.activation.password.max_bytes < self.activation.password.min_length.max(64),
                "activation.password.max_bytes",
                "must be at least 64 and at least min_length",
            ),
            (
                self.activation.requests_per_minute_per_peer == 0
                    || self.activation.attempts_per_link_per_hour == 0,
                "activation",
                "requests_per_minute_per_peer and attempts_per_link_per_hour must be at least 1",
            ),
            (
                self.activation.max_connections == 0
                    || self.activation.max_connections_per_peer == 0,
                "activation",
                "max_connections and max_connections_per_peer must be at least 1",
            ),
            (
                !["text", "json"].contains(&self.log.format.as_str()),
                "log.format",
                "must be `text` or `json`",
            ),
        ]
        .into_iter()
        .filter(|(broken, _, _)| *broken)
        .map(|(_, key, message)| invalid(key, message))
        .collect()
    }

    /// Every profile valid, no name twice (names compare case-blind).
    fn check_profiles(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for p in &self.profiles {
            if let Err(e) = p.check() {
                return Err(invalid("profiles", e.to_string()));
            }
            if !names.insert(p.name.to_lowercase()) {
                return Err(invalid(
                    "profiles.name",
                    format!("profile {:?} is defined twice", p.name),
                ));
            }
        }
        Ok(())
    }

    /// `[folders.options."…"]` names a kind folder or `users/<application>`.
    fn check_folder_options(&self) -> Result<(), ConfigError> {
        for (folder, o) in &self.folders.options {
            let known = ["users", "groups", "assets"];
            let mut parts = folder.split('/');
            let kind_ok = parts.next().is_some_and(|k| known.contains(&k));
            let app = parts.next();
            if !kind_ok
                || parts.next().is_some()
                || (app.is_some() && !folder.starts_with("users/"))
            {
                return Err(invalid(
                    "folders.options",
                    format!("`{folder}` is not users, groups, assets or users/<application>"),
                ));
            }
            if let Some(d) = &o.delimiter {
                parse_delimiter(d)
                    .map_err(|m| invalid("folders.options.delimiter", format!("{folder}: {m}")))?;
            }
        }
        Ok(())
    }

    /// Every connector valid, no name twice.
    fn check_connectors(&self) -> Result<(), ConfigError> {
        let mut names = std::collections::BTreeSet::new();
        for c in &self.connectors {
            c.check()
                .map_err(|e| invalid("connectors", e.to_string()))?;
            if !names.insert(c.name()) {
                return Err(invalid(
                    "connectors.name",
                    format!("connector {:?} is defined twice", c.name()),
                ));
            }
        }
        Ok(())
    }

    /// `[activation]`, when enabled: a page that can do its work. The
    /// password goes to the connectors that keep passwords, so one must
    /// exist; the links come in the activation mails, so `[mail]` must be
    /// there. (Its single values are bounded in `check_values`.)
    fn check_activation(&self) -> Result<(), ConfigError> {
        let a = &self.activation;
        if !a.enabled {
            return Ok(());
        }
        a.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| invalid("activation.listen", format!("`{}`: {e}", a.listen)))?;
        let keeps = |c: &idsync_connectors::ConnectorConfig| {
            matches!(c, idsync_connectors::ConnectorConfig::Ldap(_))
        };
        let problems = [
            (
                !self.connectors.iter().any(keeps),
                "activation.enabled",
                "needs an ldap connector: the password is set in the directory",
            ),
            (
                self.mail.is_none(),
                "activation.enabled",
                "needs [mail]: the links reach users by activation mail",
            ),
        ];
        match problems.into_iter().find(|(broken, _, _)| *broken) {
            Some((_, key, message)) => Err(invalid(key, message)),
            None => Ok(()),
        }
    }

    /// `[mail]` valid, its connector name free, and no application whose
    /// mails could not go out.
    fn check_mail(&self) -> Result<(), ConfigError> {
        let Some(mail) = &self.mail else {
            if let Some(a) = self
                .applications
                .iter()
                .find(|a| a.send_policy == idsync_schema::SendPolicy::OnImport)
            {
                return Err(invalid(
                    "applications.send_policy",
                    format!(
                        "application {:?} sends on import, but [mail] is not configured",
                        a.name
                    ),
                ));
            }
            return Ok(());
        };
        mail.problem().map_err(|(key, m)| invalid(key, m))?;
        if self
            .connectors
            .iter()
            .any(|c| c.name() == idsync_connectors::mail::NAME)
        {
            return Err(invalid(
                "connectors.name",
                "`mail` is the name of the mail connector ([mail]); choose another",
            ));
        }
        Ok(())
    }

    /// Every `[[tokens]]` has a SHA-256 in hex and known roles.
    fn check_tokens(&self) -> Result<(), ConfigError> {
        for t in &self.tokens {
            if t.sha256.len() != 64 || !t.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(
                    "tokens.sha256",
                    format!("token {:?}: not 64 hex digits", t.name),
                ));
            }
            for r in &t.roles {
                if crate::infra::auth::Role::parse(r).is_none() {
                    return Err(invalid(
                        "tokens.roles",
                        format!("token {:?}: unknown role `{r}`", t.name),
                    ));
                }
            }
            if let Some(m) = &t.mail {
                if !idsync_connectors::mail::is_mail_address(m) {
                    return Err(invalid(
                        "tokens.mail",
                        format!("token {:?}: {m:?} is not a mail address", t.name),
                    ));
                }
            }
        }
        Ok(())
    }
}
