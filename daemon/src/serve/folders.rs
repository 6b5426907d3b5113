//! The drop folders as the daemon loop sees them: what inotify reports,
//! files waiting to become stable, the queue, and handing the next file to
//! the import thread. All of it runs on the loop, one event at a time.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::job::JobContext;
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

/// A file seen in an inbox, not yet stable.
#[derive(Debug)]
pub(super) struct Waiting {
    folder: Folder,
    size: u64,
    modified: Option<SystemTime>,
    since: Instant,
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

    /// At start-up (and after a lost event queue): finish what a crash left
    /// in `.work/`, then queue what waits in the inboxes.
    pub(super) fn recover_and_scan(&mut self) {
        for folder in inbox::folders(&self.root) {
            if let Err(e) = inbox::prepare(&self.root, &folder) {
                tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
                continue;
            }
            match inbox::recover(&self.root, &folder) {
                Ok(plan) => {
                    for recovery in plan {
                        let path = match &recovery {
                            Recovery::Import(p) | Recovery::Finish { claimed: p, .. } => p.clone(),
                        };
                        if self.queued.insert(path) {
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

    pub(super) fn scan_inbox(&mut self, folder: &Folder) {
        for path in inbox::waiting(&self.root, folder) {
            self.saw(folder.clone(), path, false);
        }
    }

    /// A file appeared or changed: queue it at once when it arrived by
    /// rename (its writer is done), otherwise wait for it to be stable.
    pub(super) fn saw(&mut self, folder: Folder, path: PathBuf, renamed_in: bool) {
        if self.queued.contains(&path) {
            return;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            self.waiting.remove(&path);
            return;
        };
        let (size, modified) = (meta.len(), meta.modified().ok());
        // Already unchanged for the stability window (a file found at
        // start-up, say): it keeps its place in the order at once.
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let settled = modified
            .and_then(|m| m.elapsed().ok())
            .is_some_and(|age| age >= stable);
        if renamed_in || settled || meta.file_type().is_symlink() {
            self.waiting.remove(&path);
            self.enqueue(folder, path);
            return;
        }
        let entry = self.waiting.entry(path).or_insert(Waiting {
            folder,
            size,
            modified,
            since: Instant::now(),
        });
        if entry.size != size || entry.modified != modified {
            entry.size = size;
            entry.modified = modified;
        }
        entry.since = Instant::now();
    }

    pub(super) fn enqueue(&mut self, folder: Folder, path: PathBuf) {
        if self.queued.insert(path.clone()) {
            self.queue.push_back(Job::Dropped { folder, path });
        }
    }

    pub(super) fn next_stability_deadline(&self) -> Option<Instant> {
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        self.waiting.values().map(|w| w.since + stable).min()
    }

    /// Queue every waiting file whose size and time stayed put.
    pub(super) fn check_waiting(&mut self) {
        let stable = Duration::from_millis(self.cfg.folders.stable_ms);
        let now = Instant::now();
        let due: Vec<PathBuf> = self
            .waiting
            .iter()
            .filter(|(_, w)| now >= w.since + stable)
            .map(|(p, _)| p.clone())
            .collect();
        let mut ready = Vec::new();
        for path in due {
            let w = self.waiting.get_mut(&path).expect("listed above");
            match std::fs::symlink_metadata(&path) {
                Ok(m) if m.len() == w.size && m.modified().ok() == w.modified => {
                    let w = self.waiting.remove(&path).expect("listed above");
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
            EventKind::Access(_) | EventKind::Other => return,
            _ => event.paths.clone(),
        };
        let renamed_in = matches!(
            event.kind,
            EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
        );
        for path in paths {
            if path.is_dir() {
                // A new application folder (made, or moved in with files).
                if let Some(folder) = inbox::folder_of(&self.root, &path.join("x")) {
                    if let Err(e) = inbox::prepare(&self.root, &folder) {
                        tracing::error!(folder = %folder.name, "cannot prepare the folder: {e}");
                    }
                    tracing::info!(folder = %folder.name, "watching a new folder");
                    self.scan_inbox(&folder);
                }
                continue;
            }
            let Some(folder) = inbox::folder_of(&self.root, &path) else {
                continue;
            };
            let ignored = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(inbox::is_ignored);
            if !ignored {
                self.saw(folder, path, renamed_in);
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
        };
        let key = match &job {
            Job::Dropped { path, .. } => path.clone(),
            Job::Recovered {
                recovery: Recovery::Import(p) | Recovery::Finish { claimed: p, .. },
                ..
            } => p.clone(),
        };
        let shown = key.display().to_string();
        self.running = Some(tokio::task::spawn_blocking(move || {
            if let Err(e) = ctx.run(job) {
                tracing::error!(file = %shown, "{e:#}");
            }
        }));
        self.queued_forget_later = Some(key);
        self.publish_status();
    }

    pub(super) fn after_job(&mut self) {
        if let Some(key) = self.queued_forget_later.take() {
            self.queued.remove(&key);
        }
        if let Ok(head) = self.rec.store().head() {
            self.metrics.set_change_log_head(head);
        }
        self.publish_status();
    }
}
