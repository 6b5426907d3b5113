//! The `idsync` command line. Every subcommand maps to one library call;
//! this module only parses arguments, prints, and picks the exit status.
//!
//! Exit status (scripts rely on it): 0 every row accepted, 1 idsync failed
//! (config, store, disk), 2 wrong usage, 3 some rows rejected, 4 the whole
//! file rejected (nothing applied).

pub mod client;
pub mod connectors;
pub mod enroll;
pub mod import;
pub mod mail;
pub mod objects;
pub mod status;
pub mod store;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use idsync_schema::Kind;

use crate::app::open;
use crate::config::Config;
use enroll as certs;

/// Exit status: some rows were rejected.
pub const EXIT_ROWS_REJECTED: u8 = 3;
/// Exit status: the whole file was rejected.
pub const EXIT_FILE_REJECTED: u8 = 4;

/// idsync keeps one reconciled store of users, groups and assets.
#[derive(Debug, Parser)]
#[command(name = "idsync", version, about)]
pub struct Cli {
    /// The configuration file (TOML). Without one, defaults and IDSYNC_*
    /// variables apply.
    #[arg(long, global = true, env = "IDSYNC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Overrides `data_dir` of the configuration.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

/// Kinds of object on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KindArg {
    Users,
    Groups,
    Assets,
    Profiles,
    Requests,
    Certificates,
    Registrations,
}

impl From<KindArg> for Kind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Users => Kind::User,
            KindArg::Groups => Kind::Group,
            KindArg::Assets => Kind::Asset,
            KindArg::Profiles => Kind::Profile,
            KindArg::Requests => Kind::Request,
            KindArg::Certificates => Kind::Certificate,
            KindArg::Registrations => Kind::Registration,
        }
    }
}

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
}

/// Output formats of an import.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

/// End states on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EndStateArg {
    Active,
    Inactive,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: watch the drop folders, serve the admin listener.
    Serve,
    /// Import a CSV file of users, groups or assets.
    Import(import::ImportArgs),
    /// List the objects of a kind.
    List {
        kind: KindArg,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Show one object (by id, mail, loginName, externalId or name) as JSON.
    Show { kind: KindArg, key: String },
    /// Print change-log events as JSON lines.
    Changes {
        /// Events after this sequence number.
        #[arg(long, default_value_t = 0)]
        after: u64,
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Check the configuration and explain every problem.
    CheckConfig,
    /// Show what the running daemon is doing.
    Status,
    /// Steer the connectors of the running daemon (admin token).
    Connectors {
        #[command(subcommand)]
        command: connectors::ConnectorsCommand,
    },
    /// Activation e-mails (issue 16).
    Mail {
        #[command(subcommand)]
        command: mail::MailCommand,
    },
    /// Certificate profiles of the running daemon.
    Profiles {
        #[command(subcommand)]
        command: crate::cli::enroll::ProfilesCommand,
    },
    /// Assign a certificate profile to an asset; list its certificates.
    Assets {
        #[command(subcommand)]
        command: crate::cli::enroll::AssetsCommand,
    },
    /// Enroll a certificate: upload a CSR (p10) or get a PKCS#12 (p12);
    /// or register an asset for ACME or SCEP.
    Enroll {
        #[command(subcommand)]
        command: crate::cli::enroll::EnrollCommand,
    },
    /// Enrollment requests: list, approve, reject, download.
    Requests {
        #[command(subcommand)]
        command: crate::cli::enroll::RequestsCommand,
    },
    /// ACME and SCEP registrations: list, approve, reject, revoke.
    Registrations {
        #[command(subcommand)]
        command: crate::cli::enroll::RegistrationsCommand,
    },
    /// Issued certificates: show, download, confirm installation, revoke.
    Certificates {
        #[command(subcommand)]
        command: crate::cli::enroll::CertificatesCommand,
    },
    /// Copy the stopped store to another engine, or compare two stores.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
}

/// Run the command line; the process exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("idsync: {e:#}");
            ExitCode::from(1)
        }
    }
}

/// Logs go to stderr: journald reads them under systemd. The level is
/// `IDSYNC_LOG` if set, else `log.level` for the daemon and `warn` for
/// one-shot commands (their output is the result, not the log).
fn init_logging(cfg: &Config, daemon: bool) {
    let fallback = if daemon {
        cfg.log.level.as_str()
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("IDSYNC_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(fallback));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal());
    // journald stamps every line itself.
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    // User-supplied text reaches the log escaped (crate::infra::log).
    let _ = match (cfg.log.format.as_str(), under_journald) {
        ("json", _) => builder.json().try_init(),
        (_, true) => builder
            .fmt_fields(crate::infra::log::escaping_fields())
            .without_time()
            .try_init(),
        _ => builder
            .fmt_fields(crate::infra::log::escaping_fields())
            .try_init(),
    };
}

fn load_config(cli: &Cli) -> Result<Config> {
    // The errors name the file, line and column, or the variable.
    let mut cfg = Config::load(cli.config.as_deref()).context("configuration")?;
    cfg.resolve_data_dir(cli.data_dir.as_deref())
        .context("resolving the data dir")?;
    Ok(cfg)
}

fn run(cli: Cli) -> Result<u8> {
    let cfg = load_config(&cli)?;
    let daemon = matches!(cli.command, Command::Serve);
    init_logging(&cfg, daemon);
    if !daemon {
        // A one-shot command piped into `head` ends quietly when the pipe
        // closes, like any Unix tool, instead of panicking in `println!`.
        // (The daemon keeps Rust's default: EPIPE as an error per socket.)
        // SAFETY: no other thread exists yet; SIG_DFL is a valid handler.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    match cli.command {
        Command::Serve => {
            let source = crate::serve::ConfigSource {
                file: cli.config.clone(),
                data_dir: cli.data_dir.clone(),
            };
            crate::serve::run(source, cfg)?;
            Ok(0)
        }
        Command::Status => status::run(&cfg),
        Command::Connectors { command } => connectors::run(&cfg, command),
        Command::Mail { command } => mail::run(&cfg, command),
        Command::Profiles { command } => certs::run(&cfg, certs::Command::Profiles(command)),
        Command::Assets { command } => certs::run(&cfg, certs::Command::Assets(command)),
        Command::Enroll { command } => certs::run(&cfg, certs::Command::Enroll(command)),
        Command::Requests { command } => certs::run(&cfg, certs::Command::Requests(command)),
        Command::Registrations { command } => {
            certs::run(&cfg, certs::Command::Registrations(command))
        }
        Command::Certificates { command } => {
            certs::run(&cfg, certs::Command::Certificates(command))
        }
        Command::CheckConfig => {
            println!(
                "configuration is valid: data_dir={}, store.engine={}, {} certificate profiles",
                cfg.data_dir.display(),
                cfg.store.engine.as_str(),
                cfg.profiles.len()
            );
            Ok(0)
        }
        Command::Import(args) => import::run(&cfg, &args),
        Command::Store { command } => store::run(&cfg, command),
        Command::List { kind, format } => {
            objects::list(open(&cfg)?.store(), kind.into(), format)?;
            Ok(0)
        }
        Command::Show { kind, ref key } => objects::show(open(&cfg)?.store(), kind.into(), key),
        Command::Changes { after, limit } => objects::changes(open(&cfg)?.store(), after, limit),
    }
}
