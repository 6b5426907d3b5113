//! `idsync import KIND FILE`: a one-shot import of a CSV file into the
//! store (the daemon stopped), with a progress bar on a terminal, a summary
//! or the JSON report on stdout, and an exit status scripts rely on.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use idsync_schema::csv_format::Blanks;
use idsync_schema::{Kind, Status};
use idsync_store::reconcile::Reconciler;

use super::{EndStateArg, ReportFormat, EXIT_FILE_REJECTED, EXIT_ROWS_REJECTED};
use crate::app::open;
use crate::config::{parse_delimiter, Config};
use crate::sources::import::{import_file, FileOutcome, ImportResult, ReportFiles};

/// What a CSV file can hold (profiles, requests and certificates come
/// from the configuration and the admin API, not from files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ImportKind {
    Users,
    Groups,
    Assets,
}

impl From<ImportKind> for Kind {
    fn from(k: ImportKind) -> Self {
        match k {
            ImportKind::Users => Kind::User,
            ImportKind::Groups => Kind::Group,
            ImportKind::Assets => Kind::Asset,
        }
    }
}

/// The arguments of `idsync import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// What the file holds.
    pub kind: ImportKind,
    /// The CSV file (docs/formats.md: its columns, rules and report).
    pub file: PathBuf,
    /// The application the users are imported for.
    #[arg(long)]
    pub application: Option<String>,
    /// Check every row and report, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Apply all rows or none.
    #[arg(long)]
    pub atomic: bool,
    /// Trim blanks around delimiters instead of refusing the row.
    #[arg(long)]
    pub lenient: bool,
    /// `auto`, `,`, `;` or `tab`.
    #[arg(long)]
    pub delimiter: Option<String>,
    /// Force the end state of imported users.
    #[arg(long)]
    pub end_state: Option<EndStateArg>,
    /// `text` prints a summary; `json` prints the whole report.
    #[arg(long, value_enum, default_value_t = ReportFormat::Text)]
    pub format: ReportFormat,
    /// Where to write BASE.report.json and BASE.report.csv (default:
    /// DATA_DIR/reports/TIME-FILE).
    #[arg(long)]
    pub report: Option<PathBuf>,
}

/// Run `idsync import`; the exit status.
pub fn run(cfg: &Config, args: &ImportArgs) -> Result<u8> {
    let kind = Kind::from(args.kind);
    let mut opts = cfg.import_options(kind);
    // The file its user names, through a link if it is one.
    opts.follow_symlinks = true;
    opts.application = args.application.clone();
    opts.dry_run = args.dry_run;
    opts.atomic |= args.atomic;
    if args.lenient {
        opts.blanks = Blanks::Lenient;
    }
    if let Some(d) = &args.delimiter {
        opts.delimiter = parse_delimiter(d).map_err(anyhow::Error::msg)?;
    }
    if let Some(s) = args.end_state {
        opts.end_state = Some(match s {
            EndStateArg::Active => Status::Active,
            EndStateArg::Inactive => Status::Inactive,
        });
    }
    let rec = open(cfg)?;
    let file = &args.file;
    let out = match &args.report {
        Some(base) => ReportFiles::beside(base),
        None => ReportFiles::beside(&default_report_base(&cfg.reports_dir(), file)),
    };
    let result = run_import(&rec, file, &opts, &cfg.imports_dir(), &out)?;
    if !opts.dry_run && result.outcome != FileOutcome::Rejected {
        let actor = idsync_store::Actor {
            kind: "cli".into(),
            name: "import".into(),
            digest: None,
            line: None,
        };
        if let Some(q) = crate::sources::activation::on_import(
            &rec,
            &cfg.applications,
            cfg.mail.is_some(),
            opts.application.as_deref(),
            actor,
        ) {
            let q = q?;
            eprintln!("{} activation mails queued for {}", q.queued, q.application);
        }
    }
    match args.format {
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
