//! CSV import: one file, streamed, applied in committed batches, ending
//! with a report. `idsync import` and (later) the drop-folder watcher both
//! call [`import_file`]; there is no other way a file reaches the store.
//!
//! Two threads share the work: a parser thread ([`parse`]) reads records,
//! checks the value rules and the in-file uniqueness, and hands rows over
//! in chunks; the calling thread ([`apply`]) applies them through the
//! reconciler. Each batch commits the objects, their change events and the
//! import's progress (records consumed, counts so far, report spool
//! lengths) together, so a `kill -9` at any moment resumes ([`progress`])
//! at the first row not committed and never applies a row twice. However
//! it ends, [`finish`] writes the report.

mod apply;
mod finish;
#[doc(hidden)]
pub mod fuzzing;
mod parse;
mod progress;
pub(crate) mod reader;
pub(crate) mod report;
mod seen;
mod spool_lock;

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use idsync_schema::csv_format::Blanks;
use idsync_schema::{Kind, Status};
use time::OffsetDateTime;

use idsync_store::claims::Claim;
use idsync_store::reconcile::{Reconciler, UserMatch};
use idsync_store::StoreError;

pub(crate) use finish::refuse;
use finish::{finish, new_header, refuse_file, verdict};
pub(crate) use progress::{forget_progress, sweep_spools};
// Public, with what `import_file` takes and returns: `Config`, `Metrics`
// and daemon/tests/writer_fairness.rs use them.
pub use report::{FileOutcome, ReportFiles, Summary};

/// How one file is imported (per folder in the daemon, per run on the CLI).
#[derive(Debug, Clone)]
pub struct ImportOptions {
    pub kind: Kind,
    /// The application users are imported for (seed 003).
    pub application: Option<String>,
    /// Check and report, write nothing.
    pub dry_run: bool,
    /// All rows or none.
    pub atomic: bool,
    pub blanks: Blanks,
    /// `None`: detected from the first line.
    pub delimiter: Option<u8>,
    /// Forces users' end state (seed 001's option).
    pub end_state: Option<Status>,
    /// Overrides `users.match_key` for this import.
    pub match_key: Option<UserMatch>,
    /// Rows per committed batch.
    pub batch_rows: usize,
    /// Largest atomic (or dry-run) import: those hold all rows in one
    /// transaction.
    pub atomic_max_rows: u64,
    pub max_file_bytes: u64,
    /// Follow a symbolic link given as the file: the CLI follows the links
    /// its user names; a drop folder never does.
    pub follow_symlinks: bool,
    /// Set by the daemon on SIGTERM: the import stops after the batch being
    /// committed, and resumes from there on the next run.
    pub stop: Option<Arc<AtomicBool>>,
    /// The token that uploaded the file through the console: the changes'
    /// actor is that token (with the file's digest), not the file.
    pub uploaded_by: Option<String>,
    /// For a file of a drop folder: the name it was dropped as and where
    /// it ends, for the report (the path read is a `.work/` file that is
    /// gone by the time anyone reads the report).
    pub dropped: Option<Dropped>,
    /// The claim a file of a shared drop folder is imported under (a
    /// store shared by replicas): every batch expects it, and one import
    /// of a content runs at a time across replicas (its progress record is
    /// keyed by the digest).
    pub claim: Option<Claim>,
}

/// A dropped file's names, as the report gives them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dropped {
    /// The path it was dropped at (`…/inbox/users/payroll.csv`).
    pub name: PathBuf,
    /// Where it goes when accepted (`processed/`) and when refused
    /// (`rejected/`).
    pub processed: PathBuf,
    pub rejected: PathBuf,
}

impl ImportOptions {
    /// Defaults for `kind`.
    pub fn new(kind: Kind) -> Self {
        Self {
            kind,
            application: None,
            dry_run: false,
            atomic: false,
            blanks: Blanks::Strict,
            delimiter: None,
            end_state: None,
            match_key: None,
            batch_rows: 1000,
            atomic_max_rows: 100_000,
            max_file_bytes: 2 << 30,
            follow_symlinks: false,
            stop: None,
            uploaded_by: None,
            dropped: None,
            claim: None,
        }
    }
}

/// How an import ended.
#[derive(Debug, Clone)]
pub struct ImportResult {
    pub outcome: FileOutcome,
    pub summary: Summary,
    pub report: ReportFiles,
    /// Why the whole file was refused.
    pub error: Option<String>,
    pub resumed_after_line: Option<u64>,
    /// Warnings about the file (unknown columns, …).
    pub warnings: Vec<String>,
}

/// Failures that stop an import without a verdict on the file (the store
/// or the disk failed). A refused file is not an error: it is an
/// [`ImportResult`] with [`FileOutcome::Rejected`].
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("writing the import report: {0}")]
    Report(#[from] std::io::Error),
    /// Stopped on request after a committed batch; run again to resume.
    #[error("interrupted after line {0}; the next run resumes there")]
    Interrupted(u64),
    /// A writer changed the file while it was read: the rows read are not
    /// the file's, so no report says they are. Rows committed in batches
    /// before this was seen stay applied; import the file again once its
    /// writer is done.
    #[error("the file changed while it was imported (its writer had not finished)")]
    Changed,
}

/// Import `path`. Reports go to `report` (`BASE.report.json` and `.csv`);
/// spools and progress live under `work_dir`. `on_progress` hears the
/// bytes read so far.
pub fn import_file(
    rec: &Reconciler,
    path: &Path,
    opts: &ImportOptions,
    work_dir: &Path,
    report: &ReportFiles,
    on_progress: &mut dyn FnMut(u64),
) -> Result<ImportResult, ImportError> {
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut header = new_header(path, opts, OffsetDateTime::now_utc());

    let file = match reader::open_regular(path, opts.follow_symlinks) {
        Ok(f) => f,
        Err(e) => return refuse_file(header, e.to_string(), work_dir, report),
    };
    let prepared = match reader::prepare(&file, opts.delimiter, opts.max_file_bytes) {
        Ok(p) => p,
        Err(reader::FileError::Changed) => return Err(ImportError::Changed),
        Err(e) => return refuse_file(header, e.to_string(), work_dir, report),
    };
    header.digest = prepared.digest.clone();
    let digest = prepared.digest.clone();
    if let Some(claim) = &opts.claim {
        progress::lock_digest(rec, opts, &digest, claim)?;
    }
    let saved = progress::saved(rec, opts, &digest)?;
    let spool = progress::open_spool(work_dir, opts, &digest, saved.as_ref(), &mut header)?;

    if let Some(p) = saved.as_ref().filter(|p| p.complete) {
        // Crashed while writing the report: every row is in; write it again.
        header.summary = p.summary;
        header.applied = p.summary.rows() > p.summary.rejected;
        header.outcome = verdict(&p.summary, false);
        return finish(
            rec,
            header,
            spool,
            report,
            Some((&digest, opts.claim.as_ref())),
        );
    }
    let resume = progress::resume(saved.as_ref(), &mut header);

    let csv = match reader::open(&file, &prepared) {
        Ok(r) => r,
        Err(e) => return refuse_file(header, e.to_string(), work_dir, report),
    };
    let job = apply::Job {
        rec,
        opts,
        digest: &digest,
        work_dir,
        report,
        file_name,
        file: &file,
        prepared: &prepared,
    };
    apply::run(&job, header, spool, resume, csv, on_progress)
}
