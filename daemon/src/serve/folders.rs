//! The drop folders as the daemon loop sees them: what inotify reports,
//! files waiting to become stable, the queue, and handing the next file to
//! the import thread. All of it runs on the loop, one event at a time.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::event::{AccessKind, AccessMode, CreateKind, ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::job::JobContext;
use super::retries;
use super::Daemon;
use crate::sources::inbox::{self, Folder, Recovery};

/// A unit of work for the import thread.
#[derive(Debug)]
pub(super) enum Job {
    /// A file that became ready in an inbox.
    Dropped { folder: Folder, path: PathBuf },
    /// A file found in `.work/` at start-up.
    Recovered { folder: Folder, recovery: Recovery },
}

/// Passed-over entries remembered for logging once; past this the memory
/// is cleared (and a still-present entry is logged once more).
const PASSED_OVER_REMEMBERED: usize = 10_000;

/// A spool beside shared folders is swept only once this old: another
/// replica may be starting an import into it (`sweep_spools` says why).
const SHARED_SPOOL_MIN_AGE: Duration = Duration::from_secs(600);

/// A file seen in an inbox, not yet stable.
#[derive(Debug)]
pub(super) struct Waiting {
    folder: Folder,
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
    /// A writer was seen creating or writing the file and has not closed
    /// it since: the file is not taken, however long the writer pauses
    /// (up to `folders.unclosed_ms`).
    writing: bool,
}

/// What the watcher learnt about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Seen {
    /// It arrived by rename: complete, take it now.
    RenamedIn,
    /// A writer created or wrote it (it has it open).
    Written,
    /// A writer closed it.
    Closed,
    /// It is there (found by a scan, or its metadata changed).
    Present,
}

impl Seen {
    fn of(kind: &EventKind) -> Option<Seen> {
        Some(match kind {
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both)) => {
                Seen::RenamedIn
            }
            EventKind::Create(CreateKind::File | CreateKind::Any)
            | EventKind::Modify(ModifyKind::Data(_) | ModifyKind::Any) => Seen::Written,
            EventKind::Access(AccessKind::Close(AccessMode::Write)) => Seen::Closed,
            EventKind::Access(_) | EventKind::Other => return None,
            _ => Seen::Present,
        })
    }
}

impl Daemon {
    /// Create the kind folders and watch the whole tree: application
    /// folders made later are picked up by the recursive watch.
    pub(super) fn watch(&self, watcher: &mut notify::RecommendedWatcher) -> Result<()> {
        for folder in Folder::kinds() {
            inbox::prepare(&self.root, &folder)
                .with_context(|| format!("creating {}", folder.dir(&self.root).display()))?;
        }
        watcher
            .watch(&self.root, RecursiveMode::Recursive)
            .with_context(|| format!("watching {}", self.root.display()))?;
        Ok(())
    }

    /// At start-up, before any import: remove the report spools that
    /// crashed imports left and no import will resume, in the data dir and,
    /// when replicas share the folders, beside them.
    pub(super) fn sweep_spools(&self) {
        let mut places = vec![(self.cfg.imports_dir(), Duration::ZERO)];
        if self.claims.is_some() {
            places.push((self.root.join(inbox::SPOOLS), SHARED_SPOOL_MIN_AGE));
        }
        for (dir, min_age) in places {
            match crate::sources::import::sweep_spools(&self.rec, &dir, min_age) {
                Ok(0) => {}
                Ok(n) => tracing::info!(
                    removed = n,
                    dir = %dir.display(),
                    "removed the spools of finished or abandoned imports"
                ),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), "cannot clean the import spools: {e}")
                }
            }
        }
    }

    /// At start-up (and after a lost event queue): finish what a crash left
    /// in `.work/`, then queue what waits in the inboxes.
    pub(super) fn recover_and_scan(&mut self) {
        for folder in inbox::folders(&self.root) {
            if let Err(e) = inbox::prepare(&self.root, &folder) {
                tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
                continue;
            }
            match inbox::recover(&self.root, &folder, self.claims.is_none()) {
                Ok(plan) => {
                    for recovery in plan {
                        let path = match &recovery {
                            Recovery::Import(p) | Recovery::Finish { claimed: p, .. } => p.clone(),
                        };
                        if !self.queued.contains(&path)
                            && !self.retries.holds(&path)
                            && self.may_take(&folder, &path)
                            && self.queued.insert(path)
                        {
                            self.queue.push_back(Job::Recovered {
                                folder: folder.clone(),
                                recovery,
                            });
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(folder = %folder.name, "cannot read the work folder: {e}")
                }
            }
            self.scan_inbox(&folder);
        }
        self.publish_status();
    }

    /// Whether a file in `.work/` is this process's to take: always on an
    /// embedded store; on a shared one, when unclaimed or its holder is
    /// gone (the job checks again, atomically, as it takes it over).
    fn may_take(&self, folder: &Folder, claimed: &std::path::Path) -> bool {
        let Some(claims) = &self.claims else {
            return true;
        };
        let name = crate::sources::inbox_claims::Claims::name(folder, claimed);
        match self.rec.store().claim_holder(&name) {
            Ok(held) => claims.may_take(held.as_ref()),
            Err(e) => {
                tracing::warn!(file = %claimed.display(), "reading the file's claim: {e}");
                false
            }
        }
    }

    /// On a store replicas share: beat, look at the others' beats, take
    /// what gone ones left in `.work/` (and drop their claims whose file
    /// is no longer there).
    pub(super) fn on_claims_tick(&mut self) {
        let Some(claims) = self.claims.clone() else {
            return;
        };
        let store = self.rec.store();
        if let Err(e) = claims.beat_and_look(store) {
            tracing::warn!("the replicas' heartbeats: {e}");
            return;
        }
        match store.claims() {
            Ok(rows) => {
                for (name, held) in rows {
                    if claims.mine(&held.holder) || !claims.gone(&held.holder) {
                        continue;
                    }
                    if self.claimed_file_gone(&name) {
                        if let Err(e) = store.drop_claim(&name, &held) {
                            tracing::warn!(claim = %name, "dropping a gone replica's claim: {e}");
                        }
                    }
                }
            }
            Err(e) => tracing::warn!("reading the claims: {e}"),
        }
        self.recover_and_scan();
    }

    /// Whether the file a claim names is no longer in `.work/`.
    fn claimed_file_gone(&self, name: &str) -> bool {
        let Some((folder, file)) = name.split_once(&format!("/{} ", inbox::WORK)) else {
            return false;
        };
        std::fs::symlink_metadata(self.root.join(folder).join(inbox::WORK).join(file)).is_err()
    }

    pub(super) fn scan_inbox(&mut self, folder: &Folder) {
        for path in inbox::waiting(&self.root, folder) {
            self.saw(folder.clone(), path, Seen::Present);
        }
        self.note_passed_over(&folder.dir(&self.root));
    }

    /// Log, once per entry, what in `dir` is never taken and why.
    fn note_passed_over(&mut self, dir: &std::path::Path) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for path in entries.flatten().map(|e| e.path()) {
            self.pass_over(&path);
        }
    }

    /// When `path` (in a drop folder) is never taken, say so once: a
    /// name the watcher ignores, or a directory that is no inbox. True
    /// when it is passed over.
    fn pass_over(&mut self, path: &std::path::Path) -> bool {
        let why = if path.is_dir() {
            inbox::is_stray_dir(&self.root, path)
                .then_some("a directory here is not an inbox: its files are never read")
        } else {
            path.file_name()
                .and_then(|n| n.to_str())
                .and_then(inbox::ignored_because)
        };
        let Some(why) = why else {
            return false;
        };
        if self.passed_over.len() > PASSED_OVER_REMEMBERED {
            self.passed_over.clear();
        }
        if self.passed_over.insert(path.to_owned()) {
            tracing::info!(path = %path.display(), "passed over: {why}");
        }
        true
    }

    /// A folder appeared in the tree. The watcher reports it before it
    /// watches inside it (notify adds the watch after handing out the
    /// events it read), so a file renamed in between raises no event: scan
    /// now, and once more after `folders.stable_ms`, when the watch is
    /// surely in place.
    fn watch_new_folder(&mut self, folder: Folder) {
        if let Err(e) = inbox::prepare(&self.root, &folder) {
            tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
        }
        tracing::info!(folder = %folder.name, "watching a new folder");
        self.scan_inbox(&folder);
        let again = Instant::now() + Duration::from_millis(self.cfg.folders.stable_ms);
        self.rescans.push((again, folder));
    }

    /// A file appeared or changed: queue it at once when it arrived by
    /// rename (its writer is done), otherwise wait until its writer closed
    /// it and it stayed unchanged for `folders.stable_ms`.
    pub(super) fn saw(&mut self, folder: Folder, path: PathBuf, seen: Seen) {
        if self.queued.contains(&path) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            self.waiting.remove(&path);
            return;
        };
        let (size, modified) = (meta.len(), meta.modified().ok());
        if seen == Seen::Present
            && self
                .waiting
                .get(&path)
                .is_some_and(|w| w.size == size && w.modified == modified)
        {
            // Nothing new (a periodic scan on a shared store): the file
            // keeps its place in the stability window.
            return;
        }
        let writing = match (seen, self.waiting.get(&path)) {
            (Seen::Written, _) => true,
            (Seen::Closed | Seen::RenamedIn, _) => false,
            (Seen::Present, w) => w.is_some_and(|w| w.writing),
        };
        // Already unchanged for the stability window, with no writer seen
        // (a file found at start-up, say): it keeps its place at once.
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let settled = modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= stable);
        if seen == Seen::RenamedIn || (settled && !writing) || !meta.is_file() {
            self.waiting.remove(&path);
            self.enqueue(folder, path);
            return;
        }
        let entry = self.waiting.entry(path).or_insert(Waiting {
            folder,
            size,
            modified,
            since: Instant::now(),
            writing,
        });
        entry.size = size;
        entry.modified = modified;
        entry.writing = writing;
        entry.since = Instant::now();
    }

    pub(super) fn enqueue(&mut self, folder: Folder, path: PathBuf) {
        if self.queued.insert(path.clone()) {
            self.queue.push_back(Job::Dropped { folder, path });
        }
    }

    /// How long `w` must stay unchanged before it is taken.
    fn quiet_needed(&self, w: &Waiting) -> Duration {
        let ms = if w.writing {
            self.cfg.folders.unclosed_ms
        } else {
            self.cfg.folders.stable_ms
        };
        Duration::from_millis(ms)
    }

    /// When the loop must next look at the folders: a waiting file's
    /// stability deadline or a new folder's second scan.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let stable = self
            .waiting
            .values()
            .map(|w| w.since + self.quiet_needed(w));
        let rescans = self.rescans.iter().map(|(at, _)| *at);
        stable.chain(rescans).chain(self.retries.next_at()).min()
    }

    /// Scan the new folders whose second look is due, queue the failed
    /// files whose next try is due, then the waiting files that became
    /// stable.
    pub(super) fn on_deadline(&mut self) {
        let now = Instant::now();
        let (due, later) = std::mem::take(&mut self.rescans)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.rescans = later;
        for (_, folder) in due {
            self.scan_inbox(&folder);
        }
        for (folder, claimed) in self.retries.due(now) {
            if self.queued.insert(claimed.clone()) {
                let recovery = inbox::recovery_of(&self.root, &folder, claimed);
                self.queue.push_back(Job::Recovered { folder, recovery });
            }
        }
        self.check_waiting();
    }

    /// A file's import failed and left it in `.work/`: try it again later,
    /// or leave it for the next start.
    fn retry_later(&mut self, folder: Folder, claimed: PathBuf) {
        let file = claimed.display().to_string();
        match self.retries.failed(folder, claimed, Instant::now()) {
            retries::Next::After(pause) => {
                tracing::warn!(
                    file,
                    seconds = pause.as_secs(),
                    "the import failed; trying it again later"
                )
            }
            retries::Next::NextStart => tracing::error!(
                file,
                tries = retries::RETRIES + 1,
                "the import failed each time; the file stays in .work until the daemon's next start"
            ),
        }
    }

    /// Queue every waiting file whose size and time stayed put (and whose
    /// writer closed it, or has not touched it for `folders.unclosed_ms`).
    fn check_waiting(&mut self) {
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .waiting
            .iter()
            .filter(|(_, w)| now >= w.since + self.quiet_needed(w))
            .map(|(p, _)| p.clone())
            .collect();
        let mut ready = Vec::new();
        for path in due {
            let w = self.waiting.get_mut(&path).expect("listed above");
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.len() == w.size && m.modified().ok() == w.modified => {
                    let w = self.waiting.remove(&path).expect("listed above");
                    if w.writing {
                        tracing::warn!(file = %path.display(), "taken although its writer never closed it: it has not changed for folders.unclosed_ms");
                    }
                    ready.push((w.modified, path, w.folder));
                }
                Ok(m) => {
                    w.size = m.len();
                    w.modified = m.modified().ok();
                    w.since = now;
                }
                Err(_) => {
                    self.waiting.remove(&path);
                }
            }
        }
        ready.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        for (_, path, folder) in ready {
            self.enqueue(folder, path);
        }
        self.publish_status();
    }

    pub(super) fn on_event(&mut self, event: notify::Result<notify::Event>) {
        let event = match event {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!("file watcher: {e}; rescanning the folders");
                self.recover_and_scan();
                return;
            }
        };
        if event.need_rescan() {
            tracing::warn!("file watcher lost events; rescanning the folders");
            self.recover_and_scan();
            return;
        }
        let paths: Vec<PathBuf> = match event.kind {
            // A rename within the tree reports (from, to): only `to` matters.
            EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
                event.paths.get(1).cloned().into_iter().collect()
            }
            EventKind::Modify(ModifyKind::Name(RenameMode::From)) | EventKind::Remove(_) => {
                for p in &event.paths {
                    self.waiting.remove(p);
                }
                return;
            }
            _ => event.paths.clone(),
        };
        let Some(seen) = Seen::of(&event.kind) else {
            return;
        };
        for path in paths {
            if path.is_dir() {
                // A new application folder (made, or moved in with files).
                if let Some(folder) = inbox::folder_of(&self.root, &path.join("x")) {
                    self.watch_new_folder(folder);
                } else {
                    self.pass_over(&path);
                }
                continue;
            }
            let Some(folder) = inbox::folder_of(&self.root, &path) else {
                continue;
            };
            if !self.pass_over(&path) {
                self.saw(folder, path, seen);
            }
        }
        self.publish_status();
    }

    /// Start the next queued job when none runs.
    pub(super) fn start_next(&mut self) {
        if self.running.is_some() || self.stop.load(Ordering::Relaxed) {
            return;
        }
        let Some(job) = self.queue.pop_front() else {
            return;
        };
        let ctx = JobContext {
            cfg: Arc::clone(&self.cfg),
            root: self.root.clone(),
            rec: Arc::clone(&self.rec),
            metrics: Arc::clone(&self.metrics),
            stop: Arc::clone(&self.stop),
            import_slot: Arc::clone(&self.import_slot),
            claims: self.claims.clone(),
        };
        let key = match &job {
            Job::Dropped { path, .. } => path.clone(),
            Job::Recovered {
                recovery: Recovery::Import(p) | Recovery::Finish { claimed: p, .. },
                ..
            } => p.clone(),
        };
        let shown = key.display().to_string();
        self.running = Some(tokio::task::spawn_blocking(move || match ctx.run(job) {
            Ok(()) => None,
            Err(failed) => {
                tracing::error!(file = %shown, "{:#}", failed.error);
                failed.left
            }
        }));
        self.queued_forget_later = Some(key);
        self.publish_status();
    }

    /// The running job ended; `left` is its file when an error left it
    /// in `.work/`.
    pub(super) fn after_job(&mut self, left: Option<(Folder, PathBuf)>) {
        if let Some(key) = self.queued_forget_later.take() {
            self.queued.remove(&key);
            if left.is_none() {
                self.retries.succeeded(&key);
            }
        }
        if let Some((folder, claimed)) = left {
            self.retry_later(folder, claimed);
        }
        if let Ok(head) = self.rec.store().head() {
            self.metrics.set_change_log_head(head);
        }
        self.publish_status();
    }
}
