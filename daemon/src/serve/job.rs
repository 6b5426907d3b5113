//! One import job on the blocking thread: claim a dropped file (or take
//! over one a crash left in `.work/`), import it or refuse it, and move it
//! on beside its reports. On a store replicas share, the claim is also a
//! row in the store (`sources/inbox_claims.rs`), held for the job's
//! length.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use super::folders::Job;
use crate::config::Config;
use crate::infra::metrics::Metrics;
use crate::sources::import::{self, FileOutcome, ImportError, ReportFiles};
use crate::sources::inbox::{self, Folder, Recovery};
use crate::sources::inbox_claims::Claims;
use idsync_store::claims::{Claim, DigestLock};
use idsync_store::reconcile::Reconciler;

/// What an import job needs, owned, for the blocking thread.
pub(super) struct JobContext {
    pub(super) cfg: Arc<Config>,
    pub(super) root: PathBuf,
    pub(super) rec: Arc<Reconciler>,
    pub(super) metrics: Arc<Metrics>,
    pub(super) stop: Arc<AtomicBool>,
    /// Held while the file is imported (see `Daemon::import_slot`).
    pub(super) import_slot: Arc<std::sync::Mutex<()>>,
    /// Set on a store replicas share: files are claimed in it too.
    pub(super) claims: Option<Arc<Claims>>,
}

/// A job that ended in an error.
pub(super) struct Failed {
    pub(super) error: anyhow::Error,
    /// Its file, when it is left in `.work/` (on a shared store with this
    /// process's claim still on it): to be tried again.
    pub(super) left: Option<(Folder, PathBuf)>,
}

impl JobContext {
    /// Where an import spools its report's rows: under a claim, beside
    /// the folders the replicas share, so a replica that takes a file
    /// over continues them; else in this daemon's data dir.
    fn spools_dir(&self, claim: Option<&Claim>) -> PathBuf {
        match claim {
            Some(_) => self.root.join(inbox::SPOOLS),
            None => self.cfg.imports_dir(),
        }
    }

    pub(super) fn run(&self, job: Job) -> Result<(), Failed> {
        let (claimed, claim, job) = match job {
            Job::Dropped { folder, path } => {
                if std::fs::symlink_metadata(&path).is_err() {
                    return Ok(()); // gone before its turn
                }
                let claimed = self
                    .claim(&folder, &path)
                    .with_context(|| format!("claiming {}", path.display()))
                    .map_err(|error| Failed { error, left: None })?;
                let Some((claimed, claim)) = claimed else {
                    return Ok(()); // another replica took it
                };
                (
                    claimed.clone(),
                    claim,
                    Recovered(folder, Recovery::Import(claimed)),
                )
            }
            Job::Recovered { folder, recovery } => {
                let (Recovery::Import(claimed) | Recovery::Finish { claimed, .. }) = &recovery;
                let claimed = claimed.clone();
                let claim = match self.take_over(&folder, &claimed) {
                    Ok(Some(claim)) => claim,
                    Ok(None) => return Ok(()), // a live replica's
                    Err(error) => {
                        let left = Some((folder, claimed));
                        return Err(Failed { error, left });
                    }
                };
                (claimed, claim, Recovered(folder, recovery))
            }
        };
        let folder = job.0.clone();
        let done = match std::fs::symlink_metadata(&claimed) {
            // Finished by the claim's former holder meanwhile.
            Err(_) if claim.is_some() => Ok(()),
            _ => self.work(job, claim.as_ref()),
        };
        let left = done.is_err() && std::fs::symlink_metadata(&claimed).is_ok();
        if let Some(claim) = claim.filter(|_| !left) {
            // Done, or stopped (the file left for whichever replica starts
            // first), or the file is gone: the claim has nothing more to
            // hold. A failed file's claim stays this process's while it
            // tries again (see `serve/retries.rs`).
            if let Err(e) = self.rec.store().release(&claim) {
                tracing::warn!(file = %claimed.display(), "releasing the claim: {e}");
            }
        }
        done.map_err(|error| Failed {
            error,
            left: left.then_some((folder, claimed)),
        })
    }

    /// Claim the dropped file `path`: rename it into `.work/`, on a shared
    /// store after claiming the name it gets there. `None` when another
    /// replica took it first.
    fn claim(&self, folder: &Folder, path: &Path) -> Result<Option<(PathBuf, Option<Claim>)>> {
        let Some(claims) = &self.claims else {
            return Ok(Some((inbox::claim(&self.root, folder, path)?, None)));
        };
        let store = self.rec.store();
        let (target, claim) = loop {
            let target = inbox::claim_target(&self.root, folder, path)?;
            if let Some(claim) = claims.claim(store, &Claims::name(folder, &target))? {
                break (target, claim);
            }
            // Another replica claimed that very name (the same stamp).
        };
        match std::fs::rename(path, &target) {
            Ok(()) => Ok(Some((target, Some(claim)))),
            Err(e) => {
                store.release(&claim)?;
                if e.kind() == std::io::ErrorKind::NotFound {
                    tracing::debug!(file = %path.display(), "claimed by another replica");
                    return Ok(None);
                }
                Err(e.into())
            }
        }
    }

    /// The claim on a file found in `.work/` (on a shared store): `None`
    /// when a live replica holds it; `Some(None)` on an embedded store.
    fn take_over(&self, folder: &Folder, claimed: &Path) -> Result<Option<Option<Claim>>> {
        let Some(claims) = &self.claims else {
            return Ok(Some(None));
        };
        let name = Claims::name(folder, claimed);
        let claim = claims.take(self.rec.store(), &name)?;
        if let Some(c) = &claim {
            tracing::info!(file = %claimed.display(), node = %c.holder.node, "taking over a file in .work whose claim's holder is gone");
        }
        Ok(claim.map(Some))
    }

    /// Import or finish a claimed file.
    fn work(&self, job: Recovered, claim: Option<&Claim>) -> Result<()> {
        match job {
            Recovered(folder, Recovery::Import(claimed)) => self.take(&folder, &claimed, claim),
            Recovered(
                folder,
                Recovery::Finish {
                    claimed,
                    rejected,
                    digest,
                },
            ) => {
                if let Some(digest) = digest {
                    let ours = match claim {
                        None => true,
                        // Unless another replica imports that content now:
                        // the record is then its import's.
                        Some(c) => self.rec.store().lock_digest(&digest, c)? == DigestLock::Taken,
                    };
                    if ours {
                        import::forget_progress(&self.rec, &digest, claim)?;
                    }
                }
                inbox::finish(&self.root, &folder, &claimed, rejected)?;
                tracing::info!(file = %claimed.display(), "finished a file interrupted after its import");
                Ok(())
            }
        }
    }

    /// A claimed file, just claimed or found in `.work/` after a crash:
    /// the same checks and the same import either way.
    fn take(&self, folder: &Folder, claimed: &Path, claim: Option<&Claim>) -> Result<()> {
        match inbox::name_refusal(claimed) {
            Some(reason) => self.refuse(folder, claimed, reason.to_owned()),
            None => self.import(folder, claimed, claim),
        }
    }

    fn refuse(&self, folder: &Folder, claimed: &Path, reason: String) -> Result<()> {
        let mut opts = self.cfg.folder_import_options(folder.kind, &folder.name);
        opts.dropped = Some(inbox::dropped(&self.root, folder, claimed));
        let report = ReportFiles::beside(claimed);
        let _slot = self.import_slot.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let result = import::refuse(
            claimed,
            &opts,
            reason.clone(),
            &self.cfg.imports_dir(),
            &report,
        )?;
        let dest = inbox::finish(&self.root, folder, claimed, true)?;
        self.metrics.record_file(
            finished(folder, &dest, FileOutcome::Rejected, result.summary),
            started.elapsed(),
        );
        tracing::warn!(file = %dest.display(), folder = %folder.name, "file refused: {reason}");
        Ok(())
    }

    fn import(&self, folder: &Folder, claimed: &Path, claim: Option<&Claim>) -> Result<()> {
        let mut opts = self.cfg.folder_import_options(folder.kind, &folder.name);
        opts.application = folder.application.clone();
        opts.stop = Some(Arc::clone(&self.stop));
        opts.dropped = Some(inbox::dropped(&self.root, folder, claimed));
        opts.claim = claim.cloned();
        let report = ReportFiles::beside(claimed);
        let _slot = self.import_slot.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let (mut tries, mut conflicts) = (0, 0);
        let result = loop {
            tries += 1;
            match import::import_file(
                &self.rec,
                claimed,
                &opts,
                &self.spools_dir(claim),
                &report,
                &mut |_| {},
            ) {
                Err(ImportError::Changed) if tries < CHANGED_TRIES => {
                    tracing::warn!(file = %claimed.display(), "the file changed while it was imported; importing it again once its writer is done");
                    if !self.settled(claimed) {
                        return Ok(()); // stopping: the next start imports it
                    }
                }
                Err(ImportError::Store(e)) if e.is_conflict() && conflicts < CONFLICT_TRIES => {
                    // Another replica took the claim over (the batch's
                    // fence), or the change log moved (nothing landed).
                    conflicts += 1;
                    tries -= 1;
                    if !self.still_held(claim)? {
                        tracing::warn!(file = %claimed.display(), "another replica took this file over; leaving it to it");
                        return Ok(());
                    }
                }
                Err(ImportError::Changed) => {
                    let reason = format!(
                        "the file changed during each of {CHANGED_TRIES} imports: its writer must close it, \
                         or write it elsewhere and rename it in, before idsync reads it"
                    );
                    return self.refuse(folder, claimed, reason);
                }
                other => break other,
            }
        };
        match result {
            Ok(_) if !self.still_held(claim)? => {
                // Paused past the failover time after the last batch: the
                // replica that took the file over finishes it (its reports
                // and its move), and it alone queues its mails.
                tracing::warn!(file = %claimed.display(), "another replica took this file over; leaving it to it");
                Ok(())
            }
            Ok(result) => {
                let rejected = result.outcome == FileOutcome::Rejected;
                if !rejected {
                    self.queue_on_import(folder, claimed);
                }
                let dest = inbox::finish(&self.root, folder, claimed, rejected)?;
                let took = started.elapsed();
                self.metrics.record_file(
                    finished(folder, &dest, result.outcome, result.summary),
                    took,
                );
                let s = result.summary;
                tracing::info!(
                    file = %dest.display(),
                    folder = %folder.name,
                    outcome = ?result.outcome,
                    created = s.created,
                    updated = s.updated,
                    unchanged = s.unchanged,
                    rejected = s.rejected,
                    ms = took.as_millis() as u64,
                    error = result.error.as_deref().unwrap_or(""),
                    "imported"
                );
                Ok(())
            }
            Err(ImportError::Interrupted(line)) => {
                tracing::info!(file = %claimed.display(), line, "import interrupted; it resumes at the next start");
                Ok(())
            }
            Err(e) => Err(e).with_context(|| {
                format!("importing {}; the file stays in .work", claimed.display())
            }),
        }
    }

    /// Whether `claim` (if any) still holds in the store.
    fn still_held(&self, claim: Option<&Claim>) -> Result<bool> {
        let Some(claim) = claim else {
            return Ok(true);
        };
        let held = self.rec.store().claim_holder(&claim.name)?;
        Ok(held.is_some_and(|h| h.holder == claim.holder))
    }

    /// The application's activation mails, when it sends on import.
    fn queue_on_import(&self, folder: &Folder, claimed: &Path) {
        let actor = idsync_store::Actor {
            kind: "file".into(),
            name: claimed
                .file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
            digest: None,
            line: None,
        };
        let cfg = &self.cfg;
        match crate::sources::activation::on_import(
            &self.rec,
            &cfg.applications,
            cfg.mail.is_some(),
            folder.application.as_deref(),
            actor,
        ) {
            None => {}
            Some(Ok(q)) => {
                tracing::info!(application = %q.application, queued = q.queued, "activation mails queued on import")
            }
            Some(Err(e)) => {
                tracing::error!(folder = %folder.name, "queueing activation mails: {e}")
            }
        }
    }

    /// Wait until `claimed` has not changed for `folders.stable_ms`; false
    /// when the daemon is stopping first.
    fn settled(&self, claimed: &Path) -> bool {
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let look = || {
            std::fs::symlink_metadata(claimed)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        };
        let mut last = look();
        let mut since = Instant::now();
        while since.elapsed() < stable {
            if self.stop.load(Ordering::Relaxed) {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50).min(stable));
            let now = look();
            if now != last {
                (last, since) = (now, Instant::now());
            }
        }
        true
    }
}

/// Imports of one file that may find it changed under them before it is
/// refused: a writer that keeps appending is not waited for forever.
const CHANGED_TRIES: u32 = 5;

/// Imports of one file whose commit was refused, with its claim still
/// held, before the job gives up (the file stays in `.work/`, free for any
/// replica to take again). Replicas take turns to write (the engine's
/// writers' turn), so they do not lose commits to each other: what is
/// left is rare (a commit whose answer was lost). Each try resumes after
/// the last committed batch.
const CONFLICT_TRIES: u32 = 3;

/// A claimed file and what to do with it.
struct Recovered(Folder, Recovery);

/// What the metrics keep of a file that ended at `dest`.
fn finished(
    folder: &Folder,
    dest: &Path,
    outcome: FileOutcome,
    summary: idsync_schema::report::Summary,
) -> crate::infra::metrics::FinishedFile {
    crate::infra::metrics::FinishedFile {
        folder: folder.name.clone(),
        file: dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        outcome,
        summary,
        at: time::OffsetDateTime::now_utc(),
    }
}
