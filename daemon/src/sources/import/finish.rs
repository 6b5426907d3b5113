//! How an import ends: the verdict on the file, the report written from
//! the spools, and the progress record forgotten once the report is safe.
//! A file refused before any row is decided ends here too, with a report
//! that gives the reason.
//!
//! Why one place: every way out of an import (accepted, partial, refused,
//! dry run, atomic roll-back, a report rewritten after a crash) must leave
//! the same kind of report and result behind.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use idsync_store::claims::Claim;
use idsync_store::reconcile::Reconciler;

use super::progress;
use super::report::{FileOutcome, ReportFiles, ReportHeader, Spool, Summary};
use super::{ImportError, ImportOptions, ImportResult};

/// The verdict on a file from its counts; `stopped` when reading stopped
/// before its end.
pub(super) fn verdict(summary: &Summary, stopped: bool) -> FileOutcome {
    if summary.rejected == 0 && !stopped {
        FileOutcome::Accepted
    } else if summary.created + summary.updated + summary.unchanged > 0 {
        FileOutcome::Partial
    } else {
        FileOutcome::Rejected
    }
}

/// The report header of an import of `path` that has not decided anything
/// yet (a refusal until rows say otherwise).
pub(super) fn new_header(
    path: &Path,
    opts: &ImportOptions,
    started: OffsetDateTime,
) -> ReportHeader {
    ReportHeader {
        file: opts
            .dropped
            .as_ref()
            .map_or(path, |d| d.name.as_path())
            .display()
            .to_string(),
        moved_to: None,
        dropped: opts.dropped.clone(),
        digest: String::new(),
        kind: opts.kind.plural().to_owned(),
        application: opts.application.clone(),
        outcome: FileOutcome::Rejected,
        applied: false,
        dry_run: opts.dry_run,
        atomic: opts.atomic,
        started,
        finished: started,
        resumed_after_line: None,
        error: None,
        warnings: Vec::new(),
        summary: Summary::default(),
    }
}

/// Refuse a file without reading it (the daemon refuses symlinks and odd
/// names this way): a report that gives the reason.
pub(crate) fn refuse(
    path: &Path,
    opts: &ImportOptions,
    error: String,
    work_dir: &Path,
    report: &ReportFiles,
) -> Result<ImportResult, ImportError> {
    let header = new_header(path, opts, OffsetDateTime::now_utc());
    refuse_file(header, error, work_dir, report)
}

/// Refuse the whole file: a report with the reason and no rows.
pub(super) fn refuse_file(
    mut header: ReportHeader,
    error: String,
    work_dir: &Path,
    report: &ReportFiles,
) -> Result<ImportResult, ImportError> {
    header.outcome = FileOutcome::Rejected;
    header.applied = false;
    header.summary = Summary::default();
    header.error = Some(error);
    let dir: PathBuf = work_dir.join(format!("refused-{}", uuid::Uuid::now_v7()));
    let spool = Spool::open(&dir, None)?;
    header.close();
    spool.finish(&header, report)?;
    Ok(result_of(&header, report))
}

fn result_of(header: &ReportHeader, report: &ReportFiles) -> ImportResult {
    ImportResult {
        outcome: header.outcome,
        summary: header.summary,
        report: report.clone(),
        error: header.error.clone(),
        resumed_after_line: header.resumed_after_line,
        warnings: header.warnings.clone(),
    }
}

/// Write the report, then forget the progress record (when there is one:
/// its digest, and the claim the import ran under).
pub(super) fn finish(
    rec: &Reconciler,
    mut header: ReportHeader,
    spool: Spool,
    report: &ReportFiles,
    progress_of: Option<(&str, Option<&Claim>)>,
) -> Result<ImportResult, ImportError> {
    header.close();
    spool.finish(&header, report)?;
    if let Some((digest, claim)) = progress_of {
        progress::forget(rec, digest, claim)?;
    }
    Ok(result_of(&header, report))
}
