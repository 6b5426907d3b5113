//! Which import spool directories are in use: a spool holds a shared
//! `flock` on its directory's `.lock` file for as long as it is open, and
//! the daemon's start-up sweep removes a directory only under an exclusive
//! one. Why: `idsync import` may run while a daemon on the same data dir
//! starts, and its spool has no progress record until its first batch
//! commits; without the lock the sweep took such a spool for an abandoned
//! one and removed it under the running import (seen in the replica
//! tests, where a daemon's start is slow).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::Duration;

const LOCK: &str = ".lock";

/// A directory without a `.lock` file is either being created right now
/// or left by a version before the lock: removed only once this old.
const UNLOCKED_AGE: Duration = Duration::from_secs(600);

/// Holds the spool directory it was taken on as in use (the lock goes
/// with the descriptor).
#[derive(Debug)]
pub(crate) struct InUse {
    _lock: File,
}

/// Mark the spool directory `dir` (which exists) as in use.
pub(crate) fn in_use(dir: &Path) -> io::Result<InUse> {
    let file = lock_file(dir)?;
    flock(&file, libc::LOCK_SH)?;
    Ok(InUse { _lock: file })
}

/// Mark the spool directory `dir` (which exists) as in use by this
/// process alone; none while another process has it open. Why: a spool
/// replicas share is taken over from a replica counted gone, which may
/// still run (paused, not dead) and write its buffered rows into it.
pub(crate) fn alone(dir: &Path) -> io::Result<Option<InUse>> {
    let file = lock_file(dir)?;
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(InUse { _lock: file })),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn lock_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK))
}

/// The exclusive lock of the spool directory `dir` when no process uses
/// it (held until dropped: remove the directory meanwhile); none when one
/// does, or when it may be a spool being created.
pub(crate) fn unused(dir: &Path) -> io::Result<Option<File>> {
    let file = match File::open(dir.join(LOCK)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let age = dir
                .metadata()?
                .modified()?
                .elapsed()
                .unwrap_or(Duration::ZERO);
            return (age > UNLOCKED_AGE).then(|| File::open(dir)).transpose();
        }
        Err(e) => return Err(e),
    };
    match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
        Ok(()) => Ok(Some(file)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
        Err(e) => Err(e),
    }
}

fn flock(file: &File, how: libc::c_int) -> io::Result<()> {
    // SAFETY: flock on a descriptor this process owns.
    if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spool_in_use_is_not_unused() {
        let dir = tempfile::tempdir().unwrap();
        let held = in_use(dir.path()).unwrap();
        assert!(unused(dir.path()).unwrap().is_none());
        drop(held);
        assert!(unused(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_spool_open_elsewhere_is_not_had_alone() {
        let dir = tempfile::tempdir().unwrap();
        let held = in_use(dir.path()).unwrap();
        assert!(alone(dir.path()).unwrap().is_none());
        drop(held);
        let mine = alone(dir.path()).unwrap().expect("free");
        assert!(alone(dir.path()).unwrap().is_none(), "had twice");
        assert!(unused(dir.path()).unwrap().is_none());
        drop(mine);
        assert!(alone(dir.path()).unwrap().is_some());
    }

    #[test]
    fn a_new_directory_without_a_lock_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        assert!(unused(dir.path()).unwrap().is_none());
    }
}
