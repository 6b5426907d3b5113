//! CSV import: one file, streamed, applied in committed batches, ending
//! with a report. `idsync import` and (later) the drop-folder watcher both
//! call [`import_file`]; there is no other way a file reaches the store.
//!
//! Two threads share the work: a parser thread reads records, checks the
//! value rules and the in-file uniqueness, and hands rows over in chunks;
//! the calling thread applies them through the reconciler. Each batch
//! commits the objects, their change events and the import's progress
//! (records consumed, counts so far, report spool lengths) together, so a
//! `kill -9` at any moment resumes at the first row not committed and never
//! applies a row twice.

pub mod reader;
pub mod report;
mod seen;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};

use idsync_schema::csv_format::{
    AssetLayout, Blanks, GroupLayout, LayoutError, RowError, UserLayout,
};
use idsync_schema::{
    AssetInput, GroupInput, Kind, Rule, Source, Status, UserInput, UserRules, Violation,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use idsync_store::reconcile::{Outcome, Reconciler, UserMatch, UserWrite, WriteError};
use idsync_store::{Actor, StoreError};
pub use report::{FileOutcome, ReportFiles, Summary};
use report::{ReportHeader, Spool, SpoolOffsets};
use seen::SeenKeys;

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
    /// Set by the daemon on SIGTERM: the import stops after the batch being
    /// committed, and resumes from there on the next run.
    pub stop: Option<Arc<AtomicBool>>,
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
            stop: None,
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
}

/// Saved with every committed batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Progress {
    file: String,
    /// Records consumed, header included.
    records_done: u64,
    /// The line of the last record committed.
    last_line: u64,
    summary: Summary,
    spool: SpoolOffsets,
    /// Set by the last batch; the report is being written.
    complete: bool,
    #[serde(with = "time::serde::rfc3339")]
    started: OffsetDateTime,
}

/// One row, parsed and checked by the parser thread.
struct Parsed {
    line: u64,
    /// The row's key for the report (mail, displayName, name).
    key: String,
    input: Result<Input, RowError>,
}

enum Input {
    User(Box<UserInput>),
    Group(GroupInput),
    Asset(Box<AssetInput>),
}

/// What the parser thread sends.
enum Msg {
    /// The layout is known: the report's warnings, and the column of each
    /// attribute (to place rejections found by the reconciler).
    Ready {
        warnings: Vec<String>,
        columns: Vec<(&'static str, usize)>,
    },
    /// The next rows and the byte offset reached.
    Rows {
        rows: Vec<Parsed>,
        bytes: u64,
        records: u64,
    },
    /// The file cannot be read as CSV of this kind.
    Refused(String),
}

enum Layout {
    Users(UserLayout),
    Groups(GroupLayout),
    Assets(AssetLayout),
}

const CHUNK: usize = 256;

/// Rows read before the uniqueness table is sized from the file's length.
const SIZING_SAMPLE: u64 = 1024;

/// A record as the schema's layouts read it.
struct CsvRow(csv::StringRecord);

impl idsync_schema::csv_format::Row for CsvRow {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn get(&self, i: usize) -> Option<&str> {
        self.0.get(i)
    }
}

/// The parser thread: read, check, hand over. Skips the first `skip`
/// records (a resumed import), still remembering their keys.
fn parse_file(
    mut csv: reader::CsvReader,
    kind: Kind,
    rules: &UserRules,
    blanks: Blanks,
    skip: u64,
    file_size: u64,
    tx: mpsc::SyncSender<Msg>,
) {
    let mut record = csv::StringRecord::new();
    let mut records: u64 = 0;
    let mut seen = SeenKeys::default();
    let read = |csv: &mut csv::Reader<_>, record: &mut csv::StringRecord| -> Result<bool, String> {
        csv.read_record(record).map_err(|e| match e.kind() {
            csv::ErrorKind::Utf8 { pos, err } => format!(
                "line {}, column {}: the file is not valid UTF-8",
                pos.as_ref().map_or(0, |p| p.line()),
                err.field() + 1
            ),
            _ => format!("the file cannot be read as CSV: {e}"),
        })
    };
    let refuse = |tx: &mpsc::SyncSender<Msg>, m: String| {
        let _ = tx.send(Msg::Refused(m));
    };

    // The first record: a header for users and groups; for assets, a header
    // or already data.
    let (first, first_line) = loop {
        match read(&mut csv, &mut record) {
            Ok(true) if !reader::normalise(&mut record) => continue,
            Ok(true) => {
                let line = record.position().map_or(1, |p| p.line());
                break (CsvRow(std::mem::take(&mut record)), line);
            }
            Ok(false) => return refuse(&tx, LayoutError::Empty.to_string()),
            Err(m) => return refuse(&tx, m),
        }
    };
    let layout = match kind {
        Kind::User => UserLayout::from_header(&first).map(Layout::Users),
        Kind::Group => GroupLayout::from_header(&first).map(Layout::Groups),
        Kind::Asset => Ok(Layout::Assets(AssetLayout::detect(&first))),
        Kind::Profile | Kind::Request | Kind::Certificate => Err(LayoutError::Empty),
    };
    let layout = match layout {
        Ok(l) => l,
        Err(e) => return refuse(&tx, format!("line 1: {e}")),
    };
    let (warnings, first_is_data) = match &layout {
        Layout::Users(l) => (l.unknown_columns.clone(), false),
        Layout::Groups(l) => (l.unknown_columns.clone(), false),
        Layout::Assets(l) => (l.unknown_columns.clone(), !l.has_header),
    };
    let warnings = warnings
        .into_iter()
        .map(|c| format!("unknown column `{c}` ignored"))
        .collect();
    let columns = match &layout {
        Layout::Users(l) => l.columns(),
        Layout::Groups(l) => l.columns(),
        Layout::Assets(l) => l.columns(),
    };
    if tx.send(Msg::Ready { warnings, columns }).is_err() {
        return;
    }

    let mut chunk = Vec::with_capacity(CHUNK);
    let mut pending_first = first_is_data.then_some(first);
    if !first_is_data {
        records = 1;
    }
    loop {
        let (row, line) = match pending_first.take() {
            Some(r) => (r, first_line),
            None => match read(&mut csv, &mut record) {
                Ok(true) if !reader::normalise(&mut record) => continue,
                Ok(true) => {
                    let line = record.position().map_or(0, |p| p.line());
                    (CsvRow(std::mem::take(&mut record)), line)
                }
                Ok(false) => break,
                Err(m) => return refuse(&tx, m),
            },
        };
        records += 1;
        if records == SIZING_SAMPLE {
            // Size the uniqueness table once, from the rows seen so far,
            // instead of doubling it (and holding two) as it fills.
            let per_row = (csv.position().byte() / records).max(1);
            let keys_per_row = if matches!(layout, Layout::Users(_)) {
                2
            } else {
                1
            };
            seen.reserve((file_size / per_row * keys_per_row * 11 / 10) as usize);
        }
        let skipping = records <= skip;
        // In-file uniqueness runs on every row, refused or not, and on
        // skipped rows too, so a resumed import judges the same way.
        let (key, dup) = match &layout {
            Layout::Users(l) => {
                let (mail, login) = l.key_cells(&row);
                let dup_mail =
                    mail.and_then(|m| seen.first_seen(b'm', m, line).map(|at| ("mail", m, at)));
                let dup_login = login.and_then(|v| {
                    seen.first_seen(b'l', v, line)
                        .map(|at| ("loginName", v, at))
                });
                let dup = dup_mail
                    .or(dup_login)
                    .map(|(a, v, at)| (a, l.column_of(a), v.to_owned(), at));
                (mail.unwrap_or("").to_owned(), dup)
            }
            Layout::Groups(l) => {
                let name = l.key_cell(&row).unwrap_or("");
                let dup = (!name.is_empty())
                    .then(|| seen.first_seen(b'g', name, line))
                    .flatten();
                (
                    name.to_owned(),
                    dup.map(|at| ("displayName", l.key_column(), name.to_owned(), at)),
                )
            }
            Layout::Assets(l) => {
                let name = l.key_cell(&row).unwrap_or("");
                let dup = (!name.is_empty())
                    .then(|| seen.first_seen(b'a', name, line))
                    .flatten();
                (
                    name.to_owned(),
                    dup.map(|at| ("name", l.key_column(), name.to_owned(), at)),
                )
            }
        };
        if skipping {
            continue;
        }
        let input = match dup {
            Some((attribute, column, value, at)) => Err(RowError {
                column,
                violation: Violation::new(attribute, &value, Rule::DuplicateInFile { line: at }),
            }),
            None => match &layout {
                Layout::Users(l) => l
                    .parse(&row, rules, blanks)
                    .map(|u| Input::User(Box::new(u))),
                Layout::Groups(l) => l.parse(&row, rules, blanks).map(Input::Group),
                Layout::Assets(l) => l.parse(&row, blanks).map(|a| Input::Asset(Box::new(a))),
            },
        };
        chunk.push(Parsed { line, key, input });
        if chunk.len() == CHUNK {
            let msg = Msg::Rows {
                rows: std::mem::replace(&mut chunk, Vec::with_capacity(CHUNK)),
                bytes: csv.position().byte(),
                records,
            };
            if tx.send(msg).is_err() {
                return;
            }
        }
    }
    let _ = tx.send(Msg::Rows {
        rows: chunk,
        bytes: csv.position().byte(),
        records,
    });
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
    let started = OffsetDateTime::now_utc();
    let file_name = path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let mut header = new_header(path, opts, started);

    let prepared = match reader::prepare(path, opts.delimiter, opts.max_file_bytes) {
        Ok(p) => p,
        Err(e) => return refuse_file(header, e.to_string(), work_dir, report),
    };
    header.digest = prepared.digest.clone();
    let digest = prepared.digest.clone();
    let saved: Option<Progress> = if opts.dry_run || opts.atomic {
        None
    } else {
        rec.store().import_progress(&digest)?
    };
    let spool_dir = if opts.dry_run {
        work_dir.join(format!("dry-run-{}", uuid::Uuid::now_v7()))
    } else {
        work_dir.join(&prepared.digest)
    };
    let mut spool = Spool::open(&spool_dir, saved.as_ref().map(|p| p.spool))?;
    if !spool.complete {
        header.warnings.push(
            "rows applied before an interruption of the machine are missing from the row lists \
             (the store and the summary are complete)"
                .into(),
        );
    }

    if let Some(p) = saved.as_ref().filter(|p| p.complete) {
        // Crashed while writing the report: every row is in; write it again.
        header.summary = p.summary;
        header.applied = p.summary.rows() > p.summary.rejected;
        header.outcome = verdict(&p.summary, false);
        return finish(rec, header, spool, report, Some(&digest));
    }
    let mut summary = saved.as_ref().map(|p| p.summary).unwrap_or_default();
    let mut records_done = saved.as_ref().map_or(0, |p| p.records_done);
    let mut last_line = saved.as_ref().map_or(0, |p| p.last_line);
    header.resumed_after_line = saved.as_ref().map(|p| p.last_line);
    if let Some(p) = &saved {
        header.started = p.started;
    }

    let csv = match reader::open(path, &prepared) {
        Ok(r) => r,
        Err(e) => return refuse_file(header, e.to_string(), work_dir, report),
    };
    let user_write = UserWrite {
        application: opts.application.clone(),
        end_state: opts.end_state,
        match_key: opts.match_key,
    };
    let one_tx = opts.atomic || opts.dry_run;
    let started = header.started;
    // The progress record saved with a batch.
    let progress_at = |records_done, last_line, summary, spool, complete| Progress {
        file: file_name.clone(),
        records_done,
        last_line,
        summary,
        spool,
        complete,
        started,
    };
    let actor = Actor::file(file_name.clone(), prepared.digest.clone());
    let rules = rec.settings().rules.clone();

    std::thread::scope(|scope| -> Result<ImportResult, ImportError> {
        let (tx_rows, rx_rows) = mpsc::sync_channel(8);
        let (kind, blanks, skip) = (opts.kind, opts.blanks, records_done);
        let rules = &rules;
        let size = prepared.size;
        scope.spawn(move || parse_file(csv, kind, rules, blanks, skip, size, tx_rows));

        let columns = match rx_rows.recv() {
            Ok(Msg::Ready { warnings, columns }) => {
                header.warnings.extend(warnings);
                columns
            }
            Ok(Msg::Refused(m)) => return refuse_file(header, m, work_dir, report),
            Ok(Msg::Rows { .. }) | Err(_) => {
                return refuse_file(
                    header,
                    "the file could not be read".into(),
                    work_dir,
                    report,
                )
            }
        };

        let mut tx = rec.begin(Source::Csv, actor.clone());
        let mut in_batch = 0usize;
        let mut rows_in_tx: u64 = 0;
        for msg in rx_rows {
            let (rows, bytes, records) = match msg {
                Msg::Rows {
                    rows,
                    bytes,
                    records,
                } => (rows, bytes, records),
                Msg::Refused(m) => {
                    // Rows already committed stay (they were each valid);
                    // the report says where reading stopped.
                    header.error = Some(m);
                    break;
                }
                Msg::Ready { .. } => continue,
            };
            let last_record = records;
            let rows_last_line = rows.last().map(|r| r.line);
            let first_record = records - rows.len() as u64;
            for (i, row) in rows.into_iter().enumerate() {
                tx.set_line(Some(row.line));
                let outcome = match row.input {
                    Err(e) => Err(e),
                    Ok(input) => {
                        let applied = match input {
                            Input::User(u) => tx.upsert_user(*u, &user_write),
                            Input::Group(g) => tx.upsert_group(g),
                            Input::Asset(a) => tx.upsert_asset(*a),
                        };
                        match applied {
                            Ok(o) => Ok(o),
                            Err(WriteError::Rejected(v)) => Err(RowError {
                                column: columns
                                    .iter()
                                    .find(|(a, _)| *a == v.attribute)
                                    .map(|(_, c)| *c),
                                violation: v,
                            }),
                            Err(WriteError::Store(e)) => return Err(e.into()),
                        }
                    }
                };
                match outcome {
                    Ok(Outcome::Created(id)) => {
                        summary.created += 1;
                        spool.created(row.line, &row.key, id)?;
                    }
                    Ok(Outcome::Updated(id, changed)) => {
                        summary.updated += 1;
                        spool.updated(row.line, &row.key, id, changed)?;
                    }
                    Ok(Outcome::Unchanged(_)) => summary.unchanged += 1,
                    Err(e) => {
                        summary.rejected += 1;
                        spool.rejected(row.line, &row.key, &e)?;
                    }
                }
                in_batch += 1;
                rows_in_tx += 1;
                if one_tx && rows_in_tx > opts.atomic_max_rows {
                    let m = format!(
                        "an atomic or dry-run import holds at most {} rows (import.atomic_max_rows); nothing applied",
                        opts.atomic_max_rows
                    );
                    drop(tx);
                    return refuse_file(header, m, work_dir, report);
                }
                if !one_tx && in_batch >= opts.batch_rows {
                    // Commit at a row boundary: the records up to this row.
                    records_done = first_record + i as u64 + 1;
                    last_line = row.line;
                    let progress =
                        progress_at(records_done, last_line, summary, spool.sync()?, false);
                    tx.save_import_progress(&digest, &progress);
                    if rec.others_waiting() {
                        // A SCIM request (or another writer) waits: commit
                        // fully, let it through, then carry on.
                        tx.commit()?;
                        rec.give_way();
                        tx = rec.begin(Source::Csv, actor.clone());
                    } else {
                        tx.commit_pipelined()?;
                    }
                    in_batch = 0;
                    if opts
                        .stop
                        .as_ref()
                        .is_some_and(|s| s.load(Ordering::Relaxed))
                    {
                        // Dropping the Tx waits for the batch just handed over.
                        drop(tx);
                        return Err(ImportError::Interrupted(last_line));
                    }
                }
            }
            records_done = last_record;
            last_line = rows_last_line.unwrap_or(last_line);
            on_progress(bytes);
        }

        header.summary = summary;
        if opts.dry_run {
            drop(tx);
            header.outcome = verdict(&summary, header.error.is_some());
            return finish(rec, header, spool, report, None);
        }
        if opts.atomic && (summary.rejected > 0 || header.error.is_some()) {
            drop(tx);
            header.outcome = FileOutcome::Rejected;
            header.error.get_or_insert_with(|| {
                format!(
                    "atomic import: {} rows rejected, nothing applied",
                    summary.rejected
                )
            });
            return finish(rec, header, spool, report, None);
        }
        let progress = progress_at(records_done, last_line, summary, spool.sync()?, true);
        tx.save_import_progress(&digest, &progress);
        tx.commit()?;
        header.applied = summary.rows() > summary.rejected;
        header.outcome = verdict(&summary, header.error.is_some());
        finish(rec, header, spool, report, Some(&digest))
    })
}

fn verdict(summary: &Summary, stopped: bool) -> FileOutcome {
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
fn new_header(path: &Path, opts: &ImportOptions, started: OffsetDateTime) -> ReportHeader {
    ReportHeader {
        file: path.display().to_string(),
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
pub fn refuse(
    path: &Path,
    opts: &ImportOptions,
    error: String,
    work_dir: &Path,
    report: &ReportFiles,
) -> Result<ImportResult, ImportError> {
    let header = new_header(path, opts, OffsetDateTime::now_utc());
    refuse_file(header, error, work_dir, report)
}

/// Forget the progress record of the file with `digest`, if any (the
/// daemon's recovery, when a report was written but the record not yet
/// removed).
pub fn forget_progress(rec: &Reconciler, digest: &str) -> Result<(), StoreError> {
    if rec
        .store()
        .import_progress::<serde_json::Value>(digest)?
        .is_some()
    {
        let mut tx = rec.begin(Source::Csv, Actor::default());
        tx.forget_import_progress(digest);
        tx.commit()?;
    }
    Ok(())
}

/// Refuse the whole file: a report with the reason and no rows.
fn refuse_file(
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
    header.finished = OffsetDateTime::now_utc();
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

/// Write the report, then forget the progress record (when there is one).
fn finish(
    rec: &Reconciler,
    mut header: ReportHeader,
    spool: Spool,
    report: &ReportFiles,
    progress_of: Option<&str>,
) -> Result<ImportResult, ImportError> {
    header.finished = OffsetDateTime::now_utc();
    spool.finish(&header, report)?;
    if let Some(digest) = progress_of {
        let mut tx = rec.begin(Source::Csv, Actor::default());
        tx.forget_import_progress(digest);
        tx.commit()?;
    }
    Ok(result_of(&header, report))
}
