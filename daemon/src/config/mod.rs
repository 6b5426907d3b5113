//! The configuration: one TOML file layered with `IDSYNC_*` environment
//! variables (`IDSYNC_STORE__ENGINE=sled` sets `store.engine`), read
//! strictly by [`load`]. Every key has a default, so idsync runs without a
//! file; `config/idsync.toml` documents each one.
//!
//! Unknown keys are errors, not silently ignored: a typo in a security or
//! sync setting must not pass unnoticed. `idsync check-config` explains
//! every problem.

mod check;
mod load;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use idsync_schema::csv_format::Blanks;
use idsync_schema::rules::ExcludeLists;
use idsync_schema::{ProfileSettings, Status, UserRules};
use serde::{Deserialize, Serialize};

pub use crate::infra::auth::TokenConfig;
pub use crate::sources::enroll::EnrollmentConfig;
use crate::sources::import::ImportOptions;
use check::invalid;
use idsync_store::reconcile::{Settings, UserMatch};
use idsync_store::{EngineKind, EngineOptions};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where the store, reports and import work files live.
    pub data_dir: PathBuf,
    pub store: StoreConfig,
    /// Several processes on one PostgreSQL database (`[replicas]`).
    pub replicas: ReplicasConfig,
    pub users: UsersConfig,
    pub import: ImportConfig,
    /// Certificate profiles defined in the file (more can be made through
    /// the admin API); assets naming an active one are `active`.
    pub profiles: Vec<ProfileSettings>,
    /// The local certificate authority (`[ca]`, docs/certificates.md).
    pub ca: idsync_connectors::ca::LocalCaConfig,
    pub enrollment: EnrollmentConfig,
    pub log: LogConfig,
    pub folders: FoldersConfig,
    pub admin: AdminConfig,
    pub scim: crate::sources::scim::ScimConfig,
    /// The ACME server's listener (`[acme]`, docs/certificates.md).
    pub acme: crate::sources::acme::AcmeConfig,
    /// The SCEP server's listener (`[scep]`, docs/certificates.md).
    pub scep: crate::sources::scep::ScepConfig,
    /// The activation page's listener and password policy (issue 16).
    pub activation: crate::sources::activation::config::ActivationConfig,
    /// The operator console under `/ui/` on the admin listener (issue 17).
    pub console: crate::sources::console::config::ConsoleConfig,
    /// API tokens (hashes only). Without any, `idsync serve` makes an admin
    /// token on first start and writes it once to `DATA_DIR/admin.token`.
    pub tokens: Vec<TokenConfig>,
    /// Peers the change log is pushed to (`[[connectors]]`, see
    /// docs/connectors.md).
    pub connectors: Vec<idsync_connectors::ConnectorConfig>,
    /// The applications users are imported for and mailed an activation
    /// link for (`[[applications]]`, docs/mail.md).
    pub applications: Vec<idsync_schema::ApplicationSettings>,
    /// The SMTP relay and the mails' own settings (`[mail]`, docs/mail.md);
    /// without it idsync sends no mail.
    pub mail: Option<idsync_connectors::mail::MailConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("idsync-data"),
            store: StoreConfig::default(),
            replicas: ReplicasConfig::default(),
            users: UsersConfig::default(),
            import: ImportConfig::default(),
            profiles: Vec::new(),
            ca: Default::default(),
            enrollment: EnrollmentConfig::default(),
            log: LogConfig::default(),
            folders: FoldersConfig::default(),
            admin: AdminConfig::default(),
            scim: crate::sources::scim::ScimConfig::default(),
            acme: crate::sources::acme::AcmeConfig::default(),
            scep: crate::sources::scep::ScepConfig::default(),
            activation: Default::default(),
            console: Default::default(),
            tokens: Vec::new(),
            connectors: Vec::new(),
            applications: Vec::new(),
            mail: None,
        }
    }
}

/// The password a password file holds: its first line, which must not be
/// empty (the CLI's `--password-file` and the configuration's
/// `password_file` keys read it the same way).
pub fn read_password_file(file: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    match text.lines().next() {
        Some(line) if !line.is_empty() => Ok(line.to_owned()),
        _ => Err(format!(
            "{}: the first line (the password) is empty",
            file.display()
        )),
    }
}

/// `[store]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// `redb` (default), `sled` or `postgres`.
    pub engine: EngineKind,
    /// Upper bound of the engine's cache, in MiB.
    pub cache_mb: usize,
    /// `[store.postgres]`: read only with `engine = "postgres"`.
    pub postgres: PostgresConfig,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            engine: EngineKind::Redb,
            cache_mb: 64,
            postgres: PostgresConfig::default(),
        }
    }
}

/// `[store.postgres]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PostgresConfig {
    /// A `postgres://` URL or libpq connection string, without a password.
    pub url: String,
    /// A file holding the password (its first line), 0600.
    pub password_file: Option<PathBuf>,
    /// Connections to the database.
    pub pool_size: usize,
    /// Longest a statement may run, in milliseconds.
    pub statement_timeout_ms: u64,
    /// The CA certificate(s), PEM, that signed the server's: connections
    /// then use TLS and verify the server (chain and host name).
    pub ca_file: Option<PathBuf>,
}

impl Default for PostgresConfig {
    fn default() -> Self {
        let d = idsync_store::PostgresOptions::default();
        Self {
            url: String::new(),
            password_file: None,
            pool_size: d.pool_size,
            statement_timeout_ms: d.statement_timeout.as_millis() as u64,
            ca_file: None,
        }
    }
}

/// `[replicas]`: what a process sharing its PostgreSQL database with
/// others needs (docs/operations.md). The embedded engines' one process
/// always leads.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReplicasConfig {
    /// How this process names itself in `s/leader` and the logs; unset:
    /// its host name, pid and admin address.
    pub node_name: Option<String>,
    /// How often a follower tries to become the leader, in milliseconds;
    /// a leader whose database connection goes silent steps down within
    /// half of it.
    pub failover_ms: u64,
}

impl Default for ReplicasConfig {
    fn default() -> Self {
        Self {
            node_name: None,
            failover_ms: 5000,
        }
    }
}

/// `[users]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsersConfig {
    /// `mail` (default), `loginName` or `externalId`.
    pub match_key: UserMatch,
    /// Roles given to every new user.
    pub default_roles: Vec<String>,
    /// Separates several groups in one cell (and members in a group row).
    pub group_separator: String,
    /// Values refused per attribute, e.g. `lastName = ["Test"]`.
    pub exclude: BTreeMap<String, Vec<String>>,
}

impl Default for UsersConfig {
    fn default() -> Self {
        let s = Settings::default();
        Self {
            match_key: s.user_match,
            default_roles: s.default_roles,
            group_separator: "|".into(),
            exclude: BTreeMap::new(),
        }
    }
}

/// End state of imported users (seed 001's option).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndState {
    /// The row's `status`.
    #[default]
    FromFile,
    Active,
    Inactive,
}

impl EndState {
    /// The forced status, if any.
    pub fn forced(self) -> Option<Status> {
        match self {
            EndState::FromFile => None,
            EndState::Active => Some(Status::Active),
            EndState::Inactive => Some(Status::Inactive),
        }
    }
}

/// `[import]`: defaults for every import (the CLI's flags override them).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    pub batch_rows: usize,
    /// `strict` (default) or `lenient`.
    pub blanks: Blanks,
    /// `auto`, `,`, `;` or `\t`.
    pub delimiter: String,
    pub atomic: bool,
    pub atomic_max_rows: u64,
    pub end_state: EndState,
    pub max_file_bytes: u64,
}

impl Default for ImportConfig {
    fn default() -> Self {
        let o = ImportOptions::new(idsync_schema::Kind::User);
        Self {
            batch_rows: o.batch_rows,
            blanks: o.blanks,
            delimiter: "auto".into(),
            atomic: o.atomic,
            atomic_max_rows: o.atomic_max_rows,
            end_state: EndState::FromFile,
            max_file_bytes: o.max_file_bytes,
        }
    }
}

/// `[log]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (journald-friendly, default) or `json`.
    pub format: String,
    /// A `tracing` filter, e.g. `info` or `idsync=debug`.
    pub level: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: "text".into(),
            level: "info".into(),
        }
    }
}

/// Environment variables read by the command line and the tests, not keys
/// of the file.
pub const CLI_VARIABLES: [&str; 4] = ["IDSYNC_CONFIG", "IDSYNC_LOG", "IDSYNC_TOKEN", "IDSYNC_BIN"];

/// `[folders]`: the drop folders watched by `idsync serve`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FoldersConfig {
    /// Root of the inboxes `users/`, `groups/`, `assets/` and
    /// `users/<application>/`. Relative to `data_dir` unless absolute.
    pub root: PathBuf,
    /// A file that did not arrive by rename is read once its size and
    /// modification time have not changed for this many milliseconds.
    pub stable_ms: u64,
    /// A file written in place is read once its writer closes it (and it
    /// then stays unchanged for `stable_ms`). A file whose writer was seen
    /// writing but never closing it is read anyway once it has not changed
    /// for this many milliseconds, with a warning.
    pub unclosed_ms: u64,
    /// Options per folder, keyed by its path under the root: `users`,
    /// `users/portal`, `groups`, `assets`. Unset options take `[import]`'s.
    pub options: BTreeMap<String, FolderOptions>,
}

impl Default for FoldersConfig {
    fn default() -> Self {
        Self {
            root: PathBuf::from("inbox"),
            stable_ms: 1000,
            unclosed_ms: 600_000,
            options: BTreeMap::new(),
        }
    }
}

/// `[folders.options."<folder>"]`
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FolderOptions {
    pub end_state: Option<EndState>,
    pub atomic: Option<bool>,
    pub blanks: Option<Blanks>,
    pub delimiter: Option<String>,
    pub match_key: Option<UserMatch>,
}

/// `[admin]`: the daemon's HTTP listener for health, readiness and metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Address to listen on; loopback by default.
    pub listen: String,
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Connections served at once. Probes and a scraper need a handful; the
    /// cap keeps clients from taking the file descriptors the watcher and
    /// the store need.
    pub max_connections: usize,
    /// Connections one peer address may hold.
    pub max_connections_per_peer: usize,
    /// Milliseconds a new connection has to send its first byte.
    pub first_byte_timeout_ms: u64,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9477".into(),
            max_body_bytes: 1024 * 1024,
            max_connections: 64,
            max_connections_per_peer: 32,
            first_byte_timeout_ms: 3000,
        }
    }
}

impl AdminConfig {
    /// The listener's connection limits.
    pub fn limits(&self) -> crate::infra::conn_limit::Limits {
        crate::infra::conn_limit::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: std::time::Duration::from_millis(self.first_byte_timeout_ms),
        }
    }
}

/// Why a configuration is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("{}: {message}", path.display())]
    Read { path: PathBuf, message: String },
    /// The file is not valid TOML, or a key or value is wrong there.
    #[error("{}:{line}:{column}: {message}", path.display())]
    File {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    /// An `IDSYNC_*` variable names no key or has a wrong value.
    #[error("{var}: {message}")]
    Variable { var: String, message: String },
    /// A value of the right type that breaks a rule.
    #[error("{key}: {message}")]
    Invalid { key: &'static str, message: String },
    /// Several of the above, one a line.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Many(Vec<ConfigError>),
}

impl Config {
    /// Load `file` (when given; it must exist) layered with `IDSYNC_*`
    /// variables, then check it.
    pub fn load(file: Option<&Path>) -> Result<Self, ConfigError> {
        let cfg = load::load(file, std::env::vars())?;
        cfg.check()?;
        Ok(cfg)
    }

    /// Use `dir` (the `--data-dir` flag) when given, and make the data dir
    /// absolute: the watcher reports absolute paths, and a daemon must not
    /// depend on its working directory after start.
    pub fn resolve_data_dir(&mut self, dir: Option<&Path>) -> std::io::Result<()> {
        if let Some(dir) = dir {
            self.data_dir = dir.to_owned();
        }
        self.data_dir = std::path::absolute(&self.data_dir)?;
        Ok(())
    }

    /// What the enrollment service takes of this configuration; the CA
    /// lives in `DATA_DIR/ca`.
    pub fn enrollment_settings(&self) -> crate::sources::enroll::Settings<'_> {
        crate::sources::enroll::Settings {
            enrollment: &self.enrollment,
            ca: &self.ca,
            ca_dir: self.data_dir.join("ca"),
            data_dir: self.data_dir.clone(),
            profiles: &self.profiles,
        }
    }

    /// The configured CSV delimiter (`None`: detect).
    pub fn delimiter(&self) -> Result<Option<u8>, ConfigError> {
        parse_delimiter(&self.import.delimiter).map_err(|m| invalid("import.delimiter", m))
    }

    /// The reconciler's settings.
    pub fn settings(&self) -> Settings {
        Settings {
            user_match: self.users.match_key,
            default_roles: self.users.default_roles.clone(),
            rules: UserRules {
                group_separator: self.users.group_separator.chars().next().unwrap_or('|'),
                exclude: ExcludeLists::new(self.users.exclude.clone()),
                // Seed 003's rules: the CSV import's, and every source's
                // but SCIM's (`[scim] require`, `max_chars`).
                set: idsync_schema::RuleSet::SEED,
            },
        }
    }

    /// The engine options (the PostgreSQL password read from its file).
    pub fn engine_options(&self) -> Result<EngineOptions, ConfigError> {
        let postgres = match self.store.engine {
            EngineKind::Postgres => Some(self.postgres_options()?),
            _ => None,
        };
        Ok(EngineOptions {
            cache_bytes: self.store.cache_mb * 1024 * 1024,
            durable: true,
            postgres,
        })
    }

    fn postgres_options(&self) -> Result<idsync_store::PostgresOptions, ConfigError> {
        let pg = &self.store.postgres;
        let password = pg
            .password_file
            .as_deref()
            .map(read_password_file)
            .transpose()
            .map_err(|e| invalid("store.postgres.password_file", e))?;
        Ok(idsync_store::PostgresOptions {
            url: pg.url.clone(),
            password,
            pool_size: pg.pool_size,
            statement_timeout: std::time::Duration::from_millis(pg.statement_timeout_ms),
            ca_file: pg.ca_file.clone(),
            // As long as the other replicas wait before they count a
            // silent one gone.
            turn_idle_timeout: 2 * self.failover(),
        })
    }

    /// How this process names itself among the replicas:
    /// `replicas.node_name`, or its host name, pid and admin address
    /// (unique on one machine, recognisable in `s/leader` and the logs).
    pub fn node_name(&self) -> String {
        if let Some(name) = &self.replicas.node_name {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "unknown-host".into());
        format!(
            "{host} pid {} admin {}",
            std::process::id(),
            self.admin.listen
        )
    }

    /// How often a follower tries to lead.
    pub fn failover(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.replicas.failover_ms)
    }

    /// Where the store lives.
    pub fn store_dir(&self) -> PathBuf {
        self.data_dir.join("store")
    }

    /// Where import spools live.
    pub fn imports_dir(&self) -> PathBuf {
        self.data_dir.join("imports")
    }

    /// The root of the drop folders.
    pub fn folders_root(&self) -> PathBuf {
        if self.folders.root.is_absolute() {
            self.folders.root.clone()
        } else {
            self.data_dir.join(&self.folders.root)
        }
    }

    /// Import options for files dropped in `folder` (`users`,
    /// `users/portal`, …): `[import]`, then the folder's own options.
    pub fn folder_import_options(&self, kind: idsync_schema::Kind, folder: &str) -> ImportOptions {
        let mut opts = self.import_options(kind);
        if let Some(o) = self.folders.options.get(folder) {
            if let Some(e) = o.end_state {
                opts.end_state = e.forced();
            }
            if let Some(a) = o.atomic {
                opts.atomic = a;
            }
            if let Some(b) = o.blanks {
                opts.blanks = b;
            }
            if let Some(d) = &o.delimiter {
                opts.delimiter = parse_delimiter(d).ok().flatten();
            }
            opts.match_key = o.match_key;
        }
        opts
    }

    /// Where the CLI's reports go.
    pub fn reports_dir(&self) -> PathBuf {
        self.data_dir.join("reports")
    }

    /// Import options for `kind` from the `[import]` defaults.
    pub fn import_options(&self, kind: idsync_schema::Kind) -> ImportOptions {
        ImportOptions {
            blanks: self.import.blanks,
            delimiter: self.delimiter().ok().flatten(),
            atomic: self.import.atomic,
            end_state: self.import.end_state.forced(),
            batch_rows: self.import.batch_rows,
            atomic_max_rows: self.import.atomic_max_rows,
            max_file_bytes: self.import.max_file_bytes,
            ..ImportOptions::new(kind)
        }
    }
}

/// `auto`, or one ASCII delimiter (`\t` and `tab` for a tab).
pub fn parse_delimiter(s: &str) -> Result<Option<u8>, String> {
    match s {
        "auto" => Ok(None),
        "\\t" | "tab" | "\t" => Ok(Some(b'\t')),
        s if s.len() == 1 && s.is_ascii() && s != "\"" => Ok(Some(s.as_bytes()[0])),
        _ => Err(format!(
            "`{s}` is not `auto` or a single ASCII character other than a quote"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_str(toml: &str) -> Result<Config, ConfigError> {
        let f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(f.path(), toml).unwrap();
        Config::load(Some(f.path()))
    }

    #[test]
    fn applications_and_mail_are_checked_with_the_key_named() {
        let err = |toml: &str| load_str(toml).unwrap_err().to_string();
        let mail = "[mail]\nrelay = \"smtp.example.com\"\nfrom = \"idsync <noreply@example.com>\"\npublic_url = \"https://id.example.com\"\n";
        let apps = "[[applications]]\nname = \"crm\"\n";
        let cfg = load_str(&format!("{apps}{mail}")).unwrap();
        assert_eq!(cfg.applications[0].link_lifetime_days, 7);
        assert!(cfg.mail.is_some());
        assert!(load_str("").unwrap().mail.is_none());
        let e = err(&format!("{apps}{apps}"));
        assert!(e.contains("applications") && e.contains("twice"), "{e}");
        let e = err("[[applications]]\nname = \"crm\"\nsend_policy = \"on_import\"\n");
        assert!(
            e.contains("applications.send_policy") && e.contains("[mail]"),
            "{e}"
        );
        let e = err(&mail.replace("idsync <noreply@example.com>", "nobody"));
        assert!(e.starts_with("mail.from:"), "{e}");
        let e = err(&format!("{mail}tls = \"ssl\"\n"));
        assert!(e.contains("starttls"), "{e}");
        let e = err(&format!("{mail}username = \"u\"\n"));
        assert!(e.starts_with("mail.password_file:"), "{e}");
        let e = err(&format!(
            "{mail}[[connectors]]\ntype = \"webhook\"\nname = \"mail\"\nurl = \"http://127.0.0.1:1/\"\n"
        ));
        assert!(e.contains("connectors.name"), "{e}");
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/idsync.toml");
        let cfg = Config::load(Some(&path)).expect("config/idsync.toml loads");
        assert_eq!(cfg.store.engine, EngineKind::Redb);
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let err = load_str("[store]\nengin = \"sled\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("engin"), "{err}");
        let err = load_str("[users]\ngroup_separator = \"||\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("users.group_separator"), "{err}");
        let err = load_str("[[profiles]]\nname = \"a\"\nprotocol = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`x` is not p10, p12, acme or scep"), "{err}");
        let err = load_str(
            "[[profiles]]\nname = \"a\"\nprotocol = \"p10\"\n[profiles.domain_policy]\nnames = [\"a b\"]\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("\"a b\""), "{err}");
        // Enrollment's bounds, all three reported at once.
        let err = load_str(
            "[enrollment]\nregistration_days = 0\n[ca]\ncrl_validity_hours = 9000\ncrl_url = \"pki.example.org/crl\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "enrollment.registration_days",
            "ca.crl_validity_hours",
            "ca.crl_url",
        ] {
            assert!(err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn replicas_are_checked() {
        let cfg = load_str("").unwrap();
        assert_eq!(cfg.failover(), std::time::Duration::from_secs(5));
        let name = cfg.node_name();
        assert!(
            name.contains(&format!("pid {}", std::process::id()))
                && name.ends_with(&format!("admin {}", cfg.admin.listen)),
            "{name}"
        );
        let cfg = load_str("[replicas]\nnode_name = \"db-a\"\nfailover_ms = 1000\n").unwrap();
        assert_eq!(cfg.node_name(), "db-a");
        assert_eq!(cfg.failover(), std::time::Duration::from_secs(1));
        for (toml, key) in [
            ("failover_ms = 999", "replicas.failover_ms"),
            ("failover_ms = 600001", "replicas.failover_ms"),
            ("node_name = \" \"", "replicas.node_name"),
            ("node_name = \"a\\nb\"", "replicas.node_name"),
        ] {
            let e = load_str(&format!("[replicas]\n{toml}\n"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }

    #[test]
    fn exclude_lists_keep_working_whatever_the_key_case() {
        let cfg = load_str("[users.exclude]\nlastName = [\"Test\"]\n").unwrap();
        assert!(cfg.settings().rules.exclude.excludes("lastName", "TEST"));
    }

    #[test]
    fn delimiters() {
        assert_eq!(parse_delimiter("auto"), Ok(None));
        assert_eq!(parse_delimiter(";"), Ok(Some(b';')));
        assert_eq!(parse_delimiter("tab"), Ok(Some(b'\t')));
        assert!(parse_delimiter("\"").is_err());
        assert!(parse_delimiter(",,").is_err());
    }
}
