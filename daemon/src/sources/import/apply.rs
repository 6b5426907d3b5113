//! The apply side of an import: starts the parser thread, applies its rows
//! through the reconciler in batches, and commits each batch with the
//! import's progress so that a crash resumes at the first row not
//! committed.
//!
//! Why batches and not one transaction: a million-row file would hold the
//! writer for minutes and its whole change set in memory. Between batches
//! the import gives way to a waiting SCIM request, and stops there when
//! the daemon is asked to. Atomic and dry-run imports are the exception:
//! they hold every row in one transaction (bounded by
//! `import.atomic_max_rows`) that is committed or dropped at the end.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::mpsc;

use idsync_schema::csv_format::RowError;
use idsync_schema::Source;
use idsync_store::reconcile::{Outcome, Planned, Reconciler, Tx, UserWrite, WriteError};
use idsync_store::{Actor, StoreError};

use super::finish::{finish, refuse_file, verdict};
use super::parse::{parse_file, Input, Msg, Parsed};
use super::progress::{Progress, Resume};
use super::reader::{CsvReader, Prepared};
use super::report::{FileOutcome, ReportFiles, ReportHeader, Spool, Summary};
use super::{ImportError, ImportOptions, ImportResult};

/// What an import works with, fixed from start to end.
pub(super) struct Job<'a> {
    pub rec: &'a Reconciler,
    pub opts: &'a ImportOptions,
    /// The file's digest: the key of its progress record.
    pub digest: &'a str,
    pub work_dir: &'a Path,
    pub report: &'a ReportFiles,
    pub file_name: String,
    /// The file being read, and what its first pass found: checked at the
    /// end, so a file that changed meanwhile is never reported as read.
    pub file: &'a std::fs::File,
    pub prepared: &'a Prepared,
}

/// Run the parser thread over `csv` and apply what it sends, from where
/// `resume` says; the result once the report is written.
pub(super) fn run(
    job: &Job<'_>,
    mut header: ReportHeader,
    spool: Spool,
    resume: Resume,
    csv: CsvReader,
    on_progress: &mut dyn FnMut(u64),
) -> Result<ImportResult, ImportError> {
    let rules = job.rec.settings().rules.clone();
    std::thread::scope(|scope| -> Result<ImportResult, ImportError> {
        let (tx_rows, rx_rows) = mpsc::sync_channel(8);
        let (kind, blanks, skip) = (job.opts.kind, job.opts.blanks, resume.records_done);
        let (rules, prepared) = (&rules, job.prepared);
        scope.spawn(move || parse_file(csv, kind, rules, blanks, skip, prepared, tx_rows));

        let columns = match rx_rows.recv() {
            Ok(Msg::Ready { warnings, columns }) => {
                header.warnings.extend(warnings);
                columns
            }
            Ok(Msg::Refused(m)) => return refuse_file(header, m, job.work_dir, job.report),
            Ok(Msg::Rows { .. }) | Err(_) => {
                let m = "the file could not be read".into();
                return refuse_file(header, m, job.work_dir, job.report);
            }
        };
        let mut apply = Apply::new(job, header, spool, resume, columns);
        match apply.all(rx_rows, on_progress) {
            Ok(tx) => apply.conclude(tx),
            Err(Stop::Refused(m)) => refuse_file(apply.header, m, job.work_dir, job.report),
            Err(Stop::Failed(e)) => Err(e),
        }
    })
}

/// Why applying stopped before the last row.
enum Stop {
    /// The whole file is refused (nothing of it applied); the reason.
    Refused(String),
    Failed(ImportError),
}

impl<E: Into<ImportError>> From<E> for Stop {
    fn from(e: E) -> Self {
        Stop::Failed(e.into())
    }
}

/// The apply thread's state: the counts and spools of the report, and how
/// far the committed batches reach.
struct Apply<'j, 'a> {
    job: &'j Job<'a>,
    header: ReportHeader,
    spool: Spool,
    summary: Summary,
    actor: Actor,
    user_write: UserWrite,
    /// The column of each attribute, to place the reconciler's rejections.
    columns: Vec<(&'static str, usize)>,
    /// Atomic or dry run: every row in one transaction.
    one_tx: bool,
    /// Records consumed up to the last row applied, header included.
    records_done: u64,
    last_line: u64,
    in_batch: usize,
    rows_in_tx: u64,
}

impl<'j, 'a> Apply<'j, 'a> {
    fn new(
        job: &'j Job<'a>,
        header: ReportHeader,
        spool: Spool,
        resume: Resume,
        columns: Vec<(&'static str, usize)>,
    ) -> Self {
        let opts = job.opts;
        Self {
            actor: match &opts.uploaded_by {
                // Uploaded through the console: the token is who asked;
                // the file's digest still names what was read.
                Some(token) => Actor {
                    digest: Some(job.digest.to_owned()),
                    ..Actor::token(token.clone())
                },
                None => Actor::file(job.file_name.clone(), job.digest.to_owned()),
            },
            user_write: UserWrite {
                application: opts.application.clone(),
                end_state: opts.end_state,
                match_key: opts.match_key,
            },
            one_tx: opts.atomic || opts.dry_run,
            summary: resume.summary,
            records_done: resume.records_done,
            last_line: resume.last_line,
            in_batch: 0,
            rows_in_tx: 0,
            job,
            header,
            spool,
            columns,
        }
    }

    /// Apply every chunk the parser sends. A parser that stops reading
    /// midway leaves the rows committed so far (each was valid) and its
    /// reason in the report.
    fn all(
        &mut self,
        rx: mpsc::Receiver<Msg>,
        on_progress: &mut dyn FnMut(u64),
    ) -> Result<Tx<'a>, Stop> {
        let mut tx = self.begin();
        for msg in rx {
            let (rows, bytes, records) = match msg {
                Msg::Rows {
                    rows,
                    bytes,
                    records,
                } => (rows, bytes, records),
                Msg::Refused(m) => {
                    self.header.error = Some(m);
                    break;
                }
                Msg::Ready { .. } => continue,
            };
            tx = self.chunk(tx, rows, records)?;
            on_progress(bytes);
        }
        Ok(tx)
    }

    /// Apply one chunk, committing wherever a batch fills; `records` is
    /// the count of records consumed up to its last row.
    fn chunk(&mut self, mut tx: Tx<'a>, rows: Vec<Parsed>, records: u64) -> Result<Tx<'a>, Stop> {
        let opts = self.job.opts;
        let rows_last_line = rows.last().map(|r| r.line);
        let first_record = records - rows.len() as u64;
        tx.read_ahead(&self.planned(&rows))?;
        for (i, row) in rows.into_iter().enumerate() {
            let line = row.line;
            self.row(&mut tx, row)?;
            self.in_batch += 1;
            self.rows_in_tx += 1;
            if self.one_tx && self.rows_in_tx > opts.atomic_max_rows {
                drop(tx);
                return Err(Stop::Refused(format!(
                    "an atomic or dry-run import holds at most {} rows (import.atomic_max_rows); nothing applied",
                    opts.atomic_max_rows
                )));
            }
            if !self.one_tx && self.in_batch >= opts.batch_rows {
                // Commit at a row boundary: the records up to this row.
                self.records_done = first_record + i as u64 + 1;
                self.last_line = line;
                tx = self.commit_batch(tx)?;
                if opts
                    .stop
                    .as_ref()
                    .is_some_and(|s| s.load(Ordering::Relaxed))
                {
                    // Dropping the Tx waits for the batch just handed over.
                    drop(tx);
                    return Err(ImportError::Interrupted(self.last_line).into());
                }
            }
        }
        self.records_done = records;
        self.last_line = rows_last_line.unwrap_or(self.last_line);
        Ok(tx)
    }

    /// What the valid rows of a chunk will write, for the look-ups
    /// [`Tx::read_ahead`] can do for them at once.
    fn planned<'r>(&'r self, rows: &'r [Parsed]) -> Vec<Planned<'r>> {
        rows.iter()
            .filter_map(|row| row.input.as_ref().ok())
            .map(|input| match input {
                Input::User(u) => Planned::User(u, &self.user_write),
                Input::Group(g) => Planned::Group(g),
                Input::Asset(a) => Planned::Asset(a),
            })
            .collect()
    }

    /// Apply one row and note its fate in the counts and the spools.
    fn row(&mut self, tx: &mut Tx<'_>, row: Parsed) -> Result<(), ImportError> {
        tx.set_line(Some(row.line));
        let outcome = match row.input {
            Err(e) => Err(e),
            Ok(input) => self.upsert(tx, input)?,
        };
        match outcome {
            Ok(Outcome::Created(id)) => {
                self.summary.created += 1;
                self.spool.created(row.line, &row.key, id)?;
            }
            Ok(Outcome::Updated(id, changed)) => {
                self.summary.updated += 1;
                self.spool.updated(row.line, &row.key, id, changed)?;
            }
            Ok(Outcome::Unchanged(_)) => self.summary.unchanged += 1,
            Err(e) => {
                self.summary.rejected += 1;
                self.spool.rejected(row.line, &row.key, &e)?;
            }
        }
        Ok(())
    }

    /// Write one checked row; the reconciler's refusal is the row's, a
    /// store failure the import's.
    fn upsert(
        &self,
        tx: &mut Tx<'_>,
        input: Input,
    ) -> Result<Result<Outcome, RowError>, StoreError> {
        let applied = match input {
            Input::User(u) => tx.upsert_user(*u, &self.user_write),
            Input::Group(g) => tx.upsert_group(g),
            Input::Asset(a) => tx.upsert_asset(*a),
        };
        match applied {
            Ok(o) => Ok(Ok(o)),
            Err(WriteError::Rejected(v)) => Ok(Err(RowError {
                column: self
                    .columns
                    .iter()
                    .find(|(a, _)| *a == v.attribute)
                    .map(|(_, c)| *c),
                violation: v,
            })),
            Err(WriteError::Store(e)) => Err(e),
        }
    }

    /// A transaction of this import, under its claim when it has one.
    fn begin(&self) -> Tx<'a> {
        let mut tx = self.job.rec.begin(Source::Csv, self.actor.clone());
        if let Some(claim) = &self.job.opts.claim {
            tx.fence(claim);
        }
        tx
    }

    /// The progress record of what is applied so far.
    fn progress(&mut self, complete: bool) -> Result<Progress, ImportError> {
        Ok(Progress {
            file: self.job.file_name.clone(),
            records_done: self.records_done,
            last_line: self.last_line,
            summary: self.summary,
            spool: self.spool.sync()?,
            complete,
            started: self.header.started,
        })
    }

    /// Commit a full batch with its progress; the transaction to go on in.
    fn commit_batch(&mut self, mut tx: Tx<'a>) -> Result<Tx<'a>, ImportError> {
        let rec = self.job.rec;
        let progress = self.progress(false)?;
        tx.save_import_progress(self.job.digest, &progress);
        if rec.others_waiting() || tx.turn_wanted_elsewhere() {
            // A SCIM request (or another writer, here or on another
            // replica) waits: commit fully, let it through, then carry on.
            tx.commit()?;
            rec.give_way();
            tx = self.begin();
        } else {
            tx.commit_pipelined()?;
        }
        self.in_batch = 0;
        Ok(tx)
    }

    /// Give up on a file that changed while it was read: its spools and
    /// progress describe bytes that are no longer the file's.
    fn abandon(self) -> ImportError {
        if let Err(e) = self.spool.discard() {
            return e.into();
        }
        if !self.one_tx {
            if let Err(e) = super::progress::forget_progress(
                self.job.rec,
                self.job.digest,
                self.job.opts.claim.as_ref(),
            ) {
                return e.into();
            }
        }
        ImportError::Changed
    }

    /// Every row is read: drop a dry run or a failed atomic import, else
    /// commit the last batch; then write the report.
    fn conclude(mut self, mut tx: Tx<'a>) -> Result<ImportResult, ImportError> {
        let (job, summary) = (self.job, self.summary);
        if job.prepared.changed(job.file)? {
            drop(tx);
            return Err(self.abandon());
        }
        self.header.summary = summary;
        let stopped = self.header.error.is_some();
        if job.opts.dry_run {
            drop(tx);
            self.header.outcome = verdict(&summary, stopped);
            return finish(job.rec, self.header, self.spool, job.report, None);
        }
        if job.opts.atomic && (summary.rejected > 0 || stopped) {
            drop(tx);
            self.header.outcome = FileOutcome::Rejected;
            self.header.error.get_or_insert_with(|| {
                format!(
                    "atomic import: {} rows rejected, nothing applied",
                    summary.rejected
                )
            });
            return finish(job.rec, self.header, self.spool, job.report, None);
        }
        let progress = self.progress(true)?;
        tx.save_import_progress(job.digest, &progress);
        tx.commit()?;
        self.header.applied = summary.rows() > summary.rejected;
        self.header.outcome = verdict(&summary, stopped);
        finish(
            job.rec,
            self.header,
            self.spool,
            job.report,
            Some((job.digest, job.opts.claim.as_ref())),
        )
    }
}
