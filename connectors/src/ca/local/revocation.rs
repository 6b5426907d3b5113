//! The local CA's CRLs: one per issuer (the CA, each policy sub-CA found
//! in `dir/sub`), signed on demand and kept in `dir/crl/`.
//!
//! Which certificates are revoked is the daemon's to say (it reads the
//! store); this module only signs what it is given, numbers it above the
//! issuer's last CRL (kept across restarts by reading the file back) and
//! replaces the file atomically.

use std::path::Path;
use std::sync::Arc;

use super::files::{make_dir, write_replace};
use super::signer::{sign_crl, Signer};
use super::LocalCa;
use crate::ca::crl::{crl_file_name, is_issuer_id, number_of};
use crate::ca::{CaError, CrlSpec, PublishedCrl};

impl LocalCa {
    /// The signers that publish a CRL: the CA, then each sub-CA in
    /// `dir/sub` that it signed and that has not expired (one that cannot
    /// be read is left out with a warning: it cannot sign, and whatever it
    /// issued is named in no other CRL either).
    pub(super) fn signers(&self) -> Result<Vec<Arc<Signer>>, CaError> {
        let mut out = vec![Arc::clone(&self.root)];
        let sub_dir = self.dir.join("sub");
        let entries = match std::fs::read_dir(&sub_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(source) => {
                return Err(CaError::Io {
                    path: sub_dir.display().to_string(),
                    source,
                })
            }
        };
        let mut certs: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "crt"))
            .collect();
        certs.sort();
        for cert_path in certs {
            match self.read_sub(&cert_path.with_extension("key"), &cert_path) {
                Ok(sub) if self.root.signed(&sub.cert_der) => out.push(Arc::new(sub)),
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    sub_ca = %cert_path.display(),
                    error = %e,
                    "sub-CA left out of CRL publication"
                ),
            }
        }
        Ok(out)
    }

    /// The signer `id` names: the CA or a sub-CA already in memory, else
    /// one read from `dir/sub` (the files are read only when needed, not
    /// once per CRL).
    fn signer_by_id(&self, id: &str) -> Result<Option<Arc<Signer>>, CaError> {
        if self.root.id == id {
            return Ok(Some(Arc::clone(&self.root)));
        }
        let cached = {
            let subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
            subs.values().find(|s| s.id == id).cloned()
        };
        match cached {
            Some(s) => Ok(Some(s)),
            None => Ok(self.signers()?.into_iter().find(|s| s.id == id)),
        }
    }

    /// Sign and keep the CRL of `spec.issuer`.
    pub fn publish_crl(&self, spec: &CrlSpec<'_>) -> Result<PublishedCrl, CaError> {
        let signer = self
            .signer_by_id(spec.issuer)?
            .ok_or_else(|| CaError::Config(format!("no issuer {} in this CA", spec.issuer)))?;
        let crl_dir = self.dir.join("crl");
        let path = crl_dir.join(crl_file_name(&signer.id));
        let mut numbers = self.crl_numbers.lock().unwrap_or_else(|p| p.into_inner());
        let last = numbers
            .get(&signer.id)
            .copied()
            .or_else(|| last_number(&path));
        // The time in seconds keeps numbers rising across a lost file; the
        // last number + 1 keeps them rising when the clock does not.
        let time = u64::try_from(spec.this_update.unix_timestamp()).unwrap_or(0);
        let number = last.map_or(time, |n| time.max(n + 1));
        let der = sign_crl(&signer, spec, number)?;
        make_dir(&crl_dir)?;
        write_replace(&path, &der, 0o644)?;
        numbers.insert(signer.id.clone(), number);
        Ok(PublishedCrl {
            issuer: signer.id.clone(),
            der,
            number,
        })
    }
}

impl LocalCa {
    /// The CRLs kept in `dir/crl/` (the last each issuer signed), so that
    /// a restarted daemon serves them before it signs new ones.
    pub fn kept_crls(&self) -> Result<Vec<PublishedCrl>, CaError> {
        let crl_dir = self.dir.join("crl");
        let entries = match std::fs::read_dir(&crl_dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CaError::Io {
                    path: crl_dir.display().to_string(),
                    source,
                })
            }
        };
        let mut out = Vec::new();
        for path in entries.filter_map(Result::ok).map(|e| e.path()) {
            let Some(issuer) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".crl"))
                .filter(|id| is_issuer_id(id))
            else {
                continue;
            };
            let der = std::fs::read(&path).map_err(|source| CaError::Io {
                path: path.display().to_string(),
                source,
            })?;
            if let Some(number) = number_of(&der) {
                out.push(PublishedCrl {
                    issuer: issuer.to_owned(),
                    der,
                    number,
                });
            }
        }
        Ok(out)
    }
}

/// The number of the CRL kept at `path`, if there is one.
fn last_number(path: &Path) -> Option<u64> {
    number_of(&std::fs::read(path).ok()?)
}
