//! The local CA's files: a key is refused if group or others may read or
//! write it, a key or certificate idsync creates is written with its mode
//! and never over an existing file (a sub-CA's are replaced atomically),
//! and the CA's directory is 0700. Errors name the file.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use rcgen::KeyPair;
use zeroize::Zeroizing;

use crate::ca::CaError;

pub(super) fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: shown(path),
        source,
    }
}

/// Read a CA key: refused if group or others may read or write it.
pub(super) fn read_key(path: &Path) -> Result<KeyPair, CaError> {
    let meta = fs::metadata(path).map_err(io(path))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(CaError::KeyPermissions {
            path: shown(path),
            mode,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io(path))?);
    KeyPair::from_pem(&text).map_err(|e| CaError::BadKey {
        path: shown(path),
        reason: format!(
            "not an unencrypted PEM private key of a supported type (PKCS#8, SEC1 EC or PKCS#1 RSA): {e}"
        ),
    })
}

/// The certificates of a PEM file, DER, in order.
pub(super) fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
    let text = fs::read(path).map_err(io(path))?;
    let blocks = pem::parse_many(&text).map_err(|e| CaError::BadCaCert {
        path: shown(path),
        reason: format!("not PEM: {e}"),
    })?;
    let certs: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if certs.is_empty() {
        return Err(CaError::BadCaCert {
            path: shown(path),
            reason: "no -----BEGIN CERTIFICATE----- block".into(),
        });
    }
    Ok(certs)
}

/// Write a new file with `mode`, refusing to replace one.
pub(super) fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(path))
}

/// Replace `path` atomically with a file of `mode`.
pub(super) fn write_replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(io(path))
}

pub(super) fn make_dir(dir: &Path) -> Result<(), CaError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}
