//! One import job on the blocking thread: claim a dropped file (or take
//! over one a crash left in `.work/`), import it or refuse it, and move it
//! on beside its reports.

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
}

impl JobContext {
    pub(super) fn run(&self, job: Job) -> Result<()> {
        match job {
            Job::Dropped { folder, path } => {
                if std::fs::symlink_metadata(&path).is_err() {
                    return Ok(()); // gone before its turn
                }
                let claimed = inbox::claim(&self.root, &folder, &path)
                    .with_context(|| format!("claiming {}", path.display()))?;
                self.take(&folder, &claimed)
            }
            Job::Recovered {
                folder,
                recovery: Recovery::Import(claimed),
            } => self.take(&folder, &claimed),
            Job::Recovered {
                folder,
                recovery:
                    Recovery::Finish {
                        claimed,
                        rejected,
                        digest,
                    },
            } => {
                if let Some(digest) = digest {
                    import::forget_progress(&self.rec, &digest)?;
                }
                inbox::finish(&self.root, &folder, &claimed, rejected)?;
                tracing::info!(file = %claimed.display(), "finished a file interrupted after its import");
                Ok(())
            }
        }
    }

    /// A claimed file, just claimed or found in `.work/` after a crash:
    /// the same checks and the same import either way.
    fn take(&self, folder: &Folder, claimed: &Path) -> Result<()> {
        match inbox::name_refusal(claimed) {
            Some(reason) => self.refuse(folder, claimed, reason.to_owned()),
            None => self.import(folder, claimed),
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
        self.metrics
            .record_file(FileOutcome::Rejected, &result.summary, started.elapsed());
        tracing::warn!(file = %dest.display(), folder = %folder.name, "file refused: {reason}");
        Ok(())
    }

    fn import(&self, folder: &Folder, claimed: &Path) -> Result<()> {
        let mut opts = self.cfg.folder_import_options(folder.kind, &folder.name);
        opts.application = folder.application.clone();
        opts.stop = Some(Arc::clone(&self.stop));
        opts.dropped = Some(inbox::dropped(&self.root, folder, claimed));
        let report = ReportFiles::beside(claimed);
        let _slot = self.import_slot.lock().unwrap_or_else(|e| e.into_inner());
        let started = Instant::now();
        let mut tries = 0;
        let result = loop {
            tries += 1;
            match import::import_file(
                &self.rec,
                claimed,
                &opts,
                &self.cfg.imports_dir(),
                &report,
                &mut |_| {},
            ) {
                Err(ImportError::Changed) if tries < CHANGED_TRIES => {
                    tracing::warn!(file = %claimed.display(), "the file changed while it was imported; importing it again once its writer is done");
                    if !self.settled(claimed) {
                        return Ok(()); // stopping: the next start imports it
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
            Ok(result) => {
                let rejected = result.outcome == FileOutcome::Rejected;
                if !rejected {
                    self.queue_on_import(folder, claimed);
                }
                let dest = inbox::finish(&self.root, folder, claimed, rejected)?;
                let took = started.elapsed();
                self.metrics
                    .record_file(result.outcome, &result.summary, took);
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
                format!(
                    "importing {}; the file stays in .work and is retried at the next start",
                    claimed.display()
                )
            }),
        }
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
