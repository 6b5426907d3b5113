//! Files whose import ended in an error and stayed in `.work/` (the
//! database away, a full disk): each is tried again after a pause that
//! grows fourfold, a bounded number of times, then left for the daemon's
//! next start. On a store replicas share, the file's claim stays this
//! process's meanwhile, so no replica takes it up before this one is gone:
//! without that, a file that always fails went round the replicas at every
//! look (every half `replicas.failover_ms`) for ever.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sources::inbox::Folder;

/// Tries after the first failure.
pub(super) const RETRIES: u32 = 4;
/// The pause before the first of them; each next one is four times longer
/// (5 s, 20 s, 80 s, 320 s: about seven minutes in all).
const FIRST_PAUSE: Duration = Duration::from_secs(5);

/// The failed files, by their path in `.work/`.
#[derive(Debug, Default)]
pub(super) struct Retries {
    files: HashMap<PathBuf, Retry>,
}

#[derive(Debug)]
struct Retry {
    folder: Folder,
    failures: u32,
    /// When to try again; `None` while queued or running, or once given up.
    at: Option<Instant>,
}

/// What becomes of a file that failed.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Next {
    /// Tried again after this pause.
    After(Duration),
    /// Left in `.work/` until the daemon's next start.
    NextStart,
}

impl Retries {
    /// The import of `claimed` failed (again) at `now`.
    pub(super) fn failed(&mut self, folder: Folder, claimed: PathBuf, now: Instant) -> Next {
        let retry = self.files.entry(claimed).or_insert(Retry {
            folder,
            failures: 0,
            at: None,
        });
        retry.failures += 1;
        if retry.failures > RETRIES {
            retry.at = None;
            return Next::NextStart;
        }
        let pause = FIRST_PAUSE * 4u32.pow(retry.failures - 1);
        retry.at = Some(now + pause);
        Next::After(pause)
    }

    /// The file at `path` was imported (or moved on): forget its failures.
    pub(super) fn succeeded(&mut self, path: &Path) {
        self.files.remove(path);
    }

    /// Whether `path` is a failed file this process keeps (tries again
    /// itself, or has given up on until its next start).
    pub(super) fn holds(&self, path: &Path) -> bool {
        self.files.contains_key(path)
    }

    /// When the next try is due.
    pub(super) fn next_at(&self) -> Option<Instant> {
        self.files.values().filter_map(|r| r.at).min()
    }

    /// The files whose try is due at `now`; each is then not due again
    /// until it fails again.
    pub(super) fn due(&mut self, now: Instant) -> Vec<(Folder, PathBuf)> {
        let mut due: Vec<(Folder, PathBuf)> = Vec::new();
        for (path, retry) in &mut self.files {
            if retry.at.is_some_and(|at| at <= now) {
                retry.at = None;
                due.push((retry.folder.clone(), path.clone()));
            }
        }
        due.sort_by(|a, b| a.1.cmp(&b.1));
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_grow_then_the_file_waits_for_the_next_start() {
        let folder = Folder::kinds()[0].clone();
        let file = PathBuf::from("/r/users/.work/x.csv");
        let mut r = Retries::default();
        let t0 = Instant::now();
        let mut pauses = Vec::new();
        while let Next::After(p) = r.failed(folder.clone(), file.clone(), t0) {
            pauses.push(p.as_secs());
            assert!(r.due(t0).is_empty(), "not due before its pause");
            let at = r.next_at().unwrap();
            assert_eq!(r.due(at), vec![(folder.clone(), file.clone())]);
            assert!(r.due(at).is_empty(), "due once per failure");
        }
        assert_eq!(pauses, [5, 20, 80, 320]);
        assert!(r.holds(&file) && r.next_at().is_none());
        r.succeeded(&file);
        assert!(!r.holds(&file));
    }
}
