//! The mail key: the secret the activation links' tokens derive from
//! (`idsync_connectors::mail::token`), kept in `DATA_DIR/mail.key`.
//!
//! Why a file of its own, made once: the store keeps only the tokens'
//! hashes, and the token of a sending must be the same after a restart (a
//! mail delivered twice carries the same link). Written 0600 through
//! [`super::private_file`]; never logged. Deleting it voids every link
//! not yet used.

use std::io;
use std::path::Path;

/// File name under the data dir.
pub const FILE: &str = "mail.key";

/// The key in `data_dir`, made (32 random bytes, hex) on first use.
pub fn load_or_create(data_dir: &Path) -> io::Result<[u8; 32]> {
    let path = data_dir.join(FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse(text.trim()).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: not 64 hex digits", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            getrandom::fill(&mut key).map_err(|e| io::Error::other(e.to_string()))?;
            std::fs::create_dir_all(data_dir)?;
            match super::private_file::create(&path, hex::encode(key).as_bytes()) {
                Ok(()) => Ok(key),
                // Made by another process meanwhile: use theirs.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => load_or_create(data_dir),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(e),
    }
}

fn parse(hex_key: &str) -> Option<[u8; 32]> {
    hex::decode(hex_key).ok()?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn made_once_private_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let k = super::load_or_create(dir.path()).unwrap();
        let path = dir.path().join(super::FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(super::load_or_create(dir.path()).unwrap(), k);
        std::fs::write(&path, "short").unwrap();
        assert!(super::load_or_create(dir.path()).is_err());
    }
}
