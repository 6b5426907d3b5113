//! The `idsync` command line. Every subcommand maps to one library call;
//! this module only parses arguments, prints, and picks the exit status.
//!
//! Exit status (scripts rely on it): 0 every row accepted, 1 idsync failed
//! (config, store, disk), 2 wrong usage, 3 some rows rejected, 4 the whole
//! file rejected (nothing applied).

pub mod client;
pub mod connectors;
pub mod enroll;
pub mod status;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand, ValueEnum};
use idsync_schema::csv_format::Blanks;
use idsync_schema::{
    Asset, Certificate, CertificateProfile, EnrollmentRequest, Group, Kind, Status, User,
};

use crate::app::open;
use crate::config::{parse_delimiter, Config};
use crate::sources::import::{import_file, FileOutcome, ImportResult, ReportFiles};
use enroll as certs;
use idsync_store::reconcile::Reconciler;
use idsync_store::Store;

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
    Import {
        kind: KindArg,
        file: PathBuf,
        /// The application the users are imported for.
        #[arg(long)]
        application: Option<String>,
        /// Check every row and report, change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Apply all rows or none.
        #[arg(long)]
        atomic: bool,
        /// Trim blanks around delimiters instead of refusing the row.
        #[arg(long)]
        lenient: bool,
        /// `auto`, `,`, `;` or `tab`.
        #[arg(long)]
        delimiter: Option<String>,
        /// Force the end state of imported users.
        #[arg(long)]
        end_state: Option<EndStateArg>,
        /// `text` prints a summary; `json` prints the whole report.
        #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
        format: ReportFormat,
        /// Where to write BASE.report.json and BASE.report.csv (default:
        /// DATA_DIR/reports/TIME-FILE).
        #[arg(long)]
        report: Option<PathBuf>,
    },
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
    /// Enroll a certificate: upload a CSR (p10) or get a PKCS#12 (p12).
    Enroll {
        #[command(subcommand)]
        command: crate::cli::enroll::EnrollCommand,
    },
    /// Enrollment requests: list, approve, reject, download.
    Requests {
        #[command(subcommand)]
        command: crate::cli::enroll::RequestsCommand,
    },
    /// Issued certificates: show, download, confirm installation.
    Certificates {
        #[command(subcommand)]
        command: crate::cli::enroll::CertificatesCommand,
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
    let _ = match (cfg.log.format.as_str(), under_journald) {
        ("json", _) => builder.json().try_init(),
        (_, true) => builder.without_time().try_init(),
        _ => builder.try_init(),
    };
}

fn load_config(cli: &Cli) -> Result<Config> {
    let mut cfg = Config::load(cli.config.as_deref()).with_context(|| match &cli.config {
        Some(p) => format!("configuration {}", p.display()),
        None => "configuration (defaults and IDSYNC_* variables)".to_owned(),
    })?;
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
        Command::Status => {
            let addr: std::net::SocketAddr = cfg
                .admin
                .listen
                .parse()
                .with_context(|| format!("admin.listen `{}`", cfg.admin.listen))?;
            let token =
                crate::cli::client::client_token(std::env::var_os("IDSYNC_TOKEN"), &cfg.data_dir)?;
            // One request: a current-thread runtime is all it takes.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the async runtime")?;
            let text = rt.block_on(crate::cli::status::status_over_http(addr, &token))?;
            print!("{text}");
            Ok(0)
        }
        Command::Connectors { command } => connectors::run(&cfg, command),
        Command::Profiles { command } => certs::run(&cfg, certs::Command::Profiles(command)),
        Command::Assets { command } => certs::run(&cfg, certs::Command::Assets(command)),
        Command::Enroll { command } => certs::run(&cfg, certs::Command::Enroll(command)),
        Command::Requests { command } => certs::run(&cfg, certs::Command::Requests(command)),
        Command::Certificates { command } => {
            certs::run(&cfg, certs::Command::Certificates(command))
        }
        Command::CheckConfig => {
            println!(
                "configuration is valid: data_dir={}, store.engine={:?}, {} certificate profiles",
                cfg.data_dir.display(),
                cfg.store.engine,
                cfg.profiles.len()
            );
            Ok(0)
        }
        Command::Import {
            kind,
            ref file,
            ref application,
            dry_run,
            atomic,
            lenient,
            ref delimiter,
            end_state,
            format,
            ref report,
        } => {
            let kind = Kind::from(kind);
            if !matches!(kind, Kind::User | Kind::Group | Kind::Asset) {
                bail!(
                    "only users, groups and assets come from CSV files ({} come from the configuration and the admin API)",
                    kind.plural()
                );
            }
            let mut opts = cfg.import_options(kind);
            opts.application = application.clone();
            opts.dry_run = dry_run;
            opts.atomic |= atomic;
            if lenient {
                opts.blanks = Blanks::Lenient;
            }
            if let Some(d) = delimiter {
                opts.delimiter = parse_delimiter(d).map_err(anyhow::Error::msg)?;
            }
            if let Some(s) = end_state {
                opts.end_state = Some(match s {
                    EndStateArg::Active => Status::Active,
                    EndStateArg::Inactive => Status::Inactive,
                });
            }
            let rec = open(&cfg)?;
            let out = match report {
                Some(base) => ReportFiles::beside(base),
                None => ReportFiles::beside(&default_report_base(&cfg.reports_dir(), file)),
            };
            let result = run_import(&rec, file, &opts, &cfg.imports_dir(), &out)?;
            match format {
                ReportFormat::Json => {
                    let mut stdout = std::io::stdout().lock();
                    std::io::copy(&mut std::fs::File::open(&out.json)?, &mut stdout)?;
                    stdout.flush()?;
                }
                ReportFormat::Text => print_summary(file, &result),
            }
            Ok(match result.outcome {
                FileOutcome::Accepted => 0,
                FileOutcome::Partial => EXIT_ROWS_REJECTED,
                FileOutcome::Rejected => EXIT_FILE_REJECTED,
            })
        }
        Command::List { kind, format } => {
            let rec = open(&cfg)?;
            list(rec.store(), kind.into(), format)?;
            Ok(0)
        }
        Command::Show { kind, ref key } => {
            let rec = open(&cfg)?;
            let store = rec.store();
            let kind = Kind::from(kind);
            let json = match kind {
                Kind::User => store
                    .find::<User>(kind, key)?
                    .map(|u| serde_json::to_string_pretty(&u)),
                Kind::Group => store.find::<Group>(kind, key)?.map(|g| {
                    let members: Vec<String> = store
                        .member_users(g.id)
                        .unwrap_or_default()
                        .into_iter()
                        .map(|u| u.mail)
                        .collect();
                    let mut v = serde_json::to_value(&g).expect("serialises");
                    v["members"] = members.into();
                    serde_json::to_string_pretty(&v)
                }),
                Kind::Asset => store
                    .find::<Asset>(kind, key)?
                    .map(|a| serde_json::to_string_pretty(&a)),
                Kind::Profile => store
                    .find::<CertificateProfile>(kind, key)?
                    .map(|p| serde_json::to_string_pretty(&p)),
                Kind::Request => store
                    .find::<EnrollmentRequest>(kind, key)?
                    .map(|r| serde_json::to_string_pretty(&r)),
                Kind::Certificate => store
                    .find::<Certificate>(kind, key)?
                    .map(|c| serde_json::to_string_pretty(&c)),
            };
            match json {
                Some(j) => {
                    println!("{}", j?);
                    Ok(0)
                }
                None => bail!(
                    "no {} with key {key:?}",
                    kind.plural().trim_end_matches('s')
                ),
            }
        }
        Command::Changes { after, limit } => {
            let rec = open(&cfg)?;
            let mut out = std::io::stdout().lock();
            for e in rec.store().changes(after, limit)? {
                writeln!(out, "{}", serde_json::to_string(&e)?)?;
            }
            Ok(0)
        }
    }
}

fn default_report_base(dir: &Path, file: &Path) -> PathBuf {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .expect("formats");
    let name = file
        .file_name()
        .map_or_else(|| "import".into(), |n| n.to_string_lossy().into_owned());
    dir.join(format!("{stamp}-{name}"))
}

/// Import with a progress bar when stderr is a terminal.
fn run_import(
    rec: &Reconciler,
    file: &Path,
    opts: &crate::sources::import::ImportOptions,
    work: &Path,
    out: &ReportFiles,
) -> Result<ImportResult> {
    let size = std::fs::metadata(file)
        .with_context(|| format!("cannot read {}", file.display()))?
        .len();
    let bar = if std::io::stderr().is_terminal() && size > 1 << 20 {
        let bar = indicatif::ProgressBar::new(size);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("template"),
        );
        Some(bar)
    } else {
        None
    };
    let mut on_progress = |bytes: u64| {
        if let Some(b) = &bar {
            b.set_position(bytes);
        }
    };
    let result = import_file(rec, file, opts, work, out, &mut on_progress)
        .with_context(|| format!("importing {}", file.display()))?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    Ok(result)
}

fn print_summary(file: &Path, r: &ImportResult) {
    let s = r.summary;
    println!(
        "{}: {:?}: {} created, {} updated, {} unchanged, {} rejected",
        file.display(),
        r.outcome,
        s.created,
        s.updated,
        s.unchanged,
        s.rejected
    );
    if let Some(line) = r.resumed_after_line {
        println!("resumed after line {line}, where an interrupted run had stopped");
    }
    if let Some(e) = &r.error {
        println!("file rejected: {e}");
    }
    for w in &r.warnings {
        println!("warning: {w}");
    }
    println!(
        "report: {} and {}",
        r.report.json.display(),
        r.report.csv.display()
    );
}

fn list(store: &Store, kind: Kind, format: Format) -> Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut first = true;
    if format == Format::Json {
        write!(out, "[")?;
    }
    macro_rules! each {
        ($t:ty, $row:expr) => {
            store.for_each::<$t>(kind, |obj| {
                let ok = match format {
                    Format::Json => {
                        let sep = if first { "" } else { "," };
                        first = false;
                        write!(
                            out,
                            "{sep}{}",
                            serde_json::to_string(&obj).expect("serialises")
                        )
                        .is_ok()
                    }
                    Format::Table => writeln!(out, "{}", $row(&obj)).is_ok(),
                };
                Ok(ok)
            })?
        };
    }
    match kind {
        Kind::User => each!(User, |u: &User| format!(
            "{}\t{}\t{}\t{}\t{}",
            u.id,
            u.mail,
            u.login_name.as_deref().unwrap_or("-"),
            u.last_name,
            u.status.as_str()
        )),
        Kind::Group => each!(Group, |g: &Group| format!("{}\t{}", g.id, g.display_name)),
        Kind::Asset => each!(Asset, |a: &Asset| format!(
            "{}\t{}\t{}\t{:?}",
            a.id,
            a.name,
            a.certificate_profile.as_deref().unwrap_or("-"),
            a.state
        )),
        Kind::Profile => each!(CertificateProfile, |p: &CertificateProfile| format!(
            "{}\t{}\t{}\t{:?}",
            p.id, p.name, p.protocol, p.state
        )),
        Kind::Request => each!(EnrollmentRequest, |r: &EnrollmentRequest| format!(
            "{}\t{}\t{}\t{}\t{}",
            r.id, r.status, r.protocol, r.profile, r.requester
        )),
        Kind::Certificate => each!(Certificate, |c: &Certificate| format!(
            "{}\t{}\t{}\t{}\t{}",
            c.id,
            c.serial,
            c.subject,
            c.not_after,
            if c.installed.is_some() {
                "installed"
            } else {
                "-"
            }
        )),
    }
    if format == Format::Json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    Ok(())
}
