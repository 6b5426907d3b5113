//! The daemon's own keys, each a file under the data dir, made once:
//! secrets that what the store keeps (hashes, ids) is derived from.
//!
//! - [`MAIL`]: the activation links' tokens derive from it
//!   (`idsync_connectors::mail::token`); the token of a sending must be
//!   the same after a restart (a mail delivered twice carries the same
//!   link). Deleting it voids every link not yet used.
//! - [`REGISTRATION`]: the ACME external account binding keys of
//!   registrations derive from it with the registration's id, so the
//!   store holds none. Deleting it voids every binding not yet used.
//!
//! Written 0600 through [`super::private_file`]; never logged.

use std::io;
use std::path::Path;

/// The mail key's file name under the data dir.
pub const MAIL: &str = "mail.key";
/// The registration key's file name under the data dir.
pub const REGISTRATION: &str = "registration.key";

/// The key `name` in `data_dir`, made (32 random bytes, hex) on first use.
pub fn load_or_create(data_dir: &Path, name: &str) -> io::Result<[u8; 32]> {
    let path = data_dir.join(name);
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
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    load_or_create(data_dir, name)
                }
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
        let k = super::load_or_create(dir.path(), super::MAIL).unwrap();
        let path = dir.path().join(super::MAIL);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(super::load_or_create(dir.path(), super::MAIL).unwrap(), k);
        let other = super::load_or_create(dir.path(), super::REGISTRATION).unwrap();
        assert_ne!(other, k, "each key is its own");
        std::fs::write(&path, "short").unwrap();
        assert!(super::load_or_create(dir.path(), super::MAIL).is_err());
    }
}
