//! Resuming an import: the progress record each committed batch saves, and
//! how a run picks up where a crashed or stopped one left off.
//!
//! Why it is kept apart from the apply loop: the record is the contract
//! between two runs of idsync (possibly two versions of it), so what it
//! holds and how it is read back are one thing to review.

use std::path::Path;
use std::sync::atomic::Ordering;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use idsync_schema::Source;
use idsync_store::claims::{Claim, DigestLock};
use idsync_store::reconcile::Reconciler;
use idsync_store::{Actor, StoreError};

use super::report::{ReportHeader, Spool, SpoolOffsets, Summary};
use super::{ImportError, ImportOptions};

/// Saved with every committed batch.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Progress {
    pub file: String,
    /// Records consumed, header included.
    pub records_done: u64,
    /// The line of the last record committed.
    pub last_line: u64,
    pub summary: Summary,
    pub spool: SpoolOffsets,
    /// Set by the last batch; the report is being written.
    pub complete: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub started: OffsetDateTime,
}

/// Where an import starts: from scratch, or after the last committed batch
/// of an earlier run.
#[derive(Debug, Default)]
pub(super) struct Resume {
    pub summary: Summary,
    /// Records the parser skips (their keys still count for uniqueness).
    pub records_done: u64,
    pub last_line: u64,
}

/// The progress an earlier run of the file with `digest` saved. Atomic and
/// dry-run imports commit nothing before their end, so never resume.
pub(super) fn saved(
    rec: &Reconciler,
    opts: &ImportOptions,
    digest: &str,
) -> Result<Option<Progress>, StoreError> {
    if opts.dry_run || opts.atomic {
        return Ok(None);
    }
    rec.store().import_progress(digest)
}

/// The report spools: a fresh directory for a dry run (it must not disturb
/// a real import of the same file), else the file's own, cut back to the
/// lengths `saved` recorded.
///
/// Under a claim the spools sit where every replica sharing the folder
/// finds them, so a replica that takes the file over from a gone one
/// continues its row lists. It must have them alone: should the gone
/// replica still run (paused, not dead), its buffered rows could land in
/// them after the cut. Then this run spools afresh beside them, and the
/// report says that rows are missing, as after a lost machine.
pub(super) fn open_spool(
    work_dir: &Path,
    opts: &ImportOptions,
    digest: &str,
    saved: Option<&Progress>,
    header: &mut ReportHeader,
) -> std::io::Result<Spool> {
    let offsets = saved.map(|p| p.spool);
    let spool = if opts.dry_run {
        let scratch = work_dir.join(format!("dry-run-{}", uuid::Uuid::now_v7()));
        Spool::open(&scratch, None)?
    } else if opts.claim.is_some() {
        match Spool::open_alone(&work_dir.join(digest), offsets)? {
            Some(spool) => spool,
            None => {
                tracing::warn!(
                    digest,
                    "the file's report spools are still open in another process; \
                     spooling afresh (its report will miss the rows applied before)"
                );
                let aside = work_dir.join(format!("{digest}.{}", uuid::Uuid::now_v7()));
                let mut spool = Spool::open(&aside, None)?;
                spool.complete = saved.is_none();
                spool
            }
        }
    } else {
        Spool::open(&work_dir.join(digest), offsets)?
    };
    if !spool.complete {
        header.warnings.push(
            "rows applied before an interruption of the machine are missing from the row lists \
             (the store and the summary are complete)"
                .into(),
        );
    }
    Ok(spool)
}

/// Where to start, and the report's note of it.
pub(super) fn resume(saved: Option<&Progress>, header: &mut ReportHeader) -> Resume {
    let Some(p) = saved else {
        return Resume::default();
    };
    header.resumed_after_line = Some(p.last_line);
    header.started = p.started;
    Resume {
        summary: p.summary,
        records_done: p.records_done,
        last_line: p.last_line,
    }
}

/// Forget the progress record of the file with `digest`, if any (the
/// daemon's recovery, when a report was written but the record not yet
/// removed).
pub(crate) fn forget_progress(
    rec: &Reconciler,
    digest: &str,
    claim: Option<&Claim>,
) -> Result<(), StoreError> {
    if rec
        .store()
        .import_progress::<serde_json::Value>(digest)?
        .is_some()
    {
        forget(rec, digest, claim)?;
    }
    Ok(())
}

/// Remove the progress record of `digest` (its report is written), and
/// under a claim, free the content's lock in the same batch.
pub(super) fn forget(
    rec: &Reconciler,
    digest: &str,
    claim: Option<&Claim>,
) -> Result<(), StoreError> {
    let mut tx = rec.begin(Source::Csv, Actor::default());
    tx.forget_import_progress(digest);
    if let Some(claim) = claim {
        tx.fence(claim);
        tx.release_digest(digest);
    }
    tx.commit()?;
    Ok(())
}

/// How often an import under a claim looks again at a content lock
/// another replica holds.
const DIGEST_LOCK_RETRY: std::time::Duration = std::time::Duration::from_millis(100);

/// Take the lock on content `digest` for `claim`, waiting while another
/// replica imports the same content (their progress record would be
/// this one's). Stopping the daemon meanwhile interrupts the import
/// before its first row.
pub(super) fn lock_digest(
    rec: &Reconciler,
    opts: &ImportOptions,
    digest: &str,
    claim: &Claim,
) -> Result<(), ImportError> {
    let mut said = false;
    while rec.store().lock_digest(digest, claim)? == DigestLock::Busy {
        if opts
            .stop
            .as_ref()
            .is_some_and(|s| s.load(Ordering::Relaxed))
        {
            return Err(ImportError::Interrupted(0));
        }
        if !said {
            tracing::info!(file = %claim.name, "another replica imports a file of the same content; waiting for it");
            said = true;
        }
        std::thread::sleep(DIGEST_LOCK_RETRY);
    }
    Ok(())
}

/// Remove what interrupted imports left under `work_dir`: the spools of
/// imports that have no progress record (their report was written, or
/// their file changed and was imported again under another digest) and
/// the scratch spools of refusals and dry runs. The spools of imports that
/// will resume stay, and so do those made less than `min_age` ago (in a
/// folder replicas share, one may be starting elsewhere: its lock is the
/// guard, the age a second one where `flock` is weak, as over NFS). Run
/// before this process imports anything (at the daemon's start); the
/// count removed.
pub(crate) fn sweep_spools(
    rec: &Reconciler,
    work_dir: &Path,
    min_age: std::time::Duration,
) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(work_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let resumes = rec
            .store()
            .import_progress::<serde_json::Value>(&name)
            .map_err(std::io::Error::other)?
            .is_some();
        if resumes || !entry.file_type()?.is_dir() {
            continue;
        }
        let age = entry.metadata()?.modified()?.elapsed().unwrap_or_default();
        if age < min_age {
            continue;
        }
        // Not while an import (`idsync import` beside the starting daemon)
        // still writes it: its progress record comes with its first batch.
        if let Some(_unused) = super::spool_lock::unused(&entry.path())? {
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}
