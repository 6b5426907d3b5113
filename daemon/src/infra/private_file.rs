//! Files that hold a secret (the first-start admin token, a generated
//! private key): one way to write them, so none is ever left readable by
//! others or half-written.

use std::fs::OpenOptions;
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Create `path` readable by this user only from the very first moment
/// (`create_new` + mode 0600: no world-readable window, never through an
/// existing file or symlink), write
/// `contents` and sync them; a failed write removes the file, as a
/// half-written secret is worse than none.
pub fn create(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let written = f.write_all(contents).and_then(|()| f.sync_all());
    if written.is_err() {
        let _ = std::fs::remove_file(path);
    }
    written
}
