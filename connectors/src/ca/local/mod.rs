//! The local CA: a CA whose key idsync holds, created on first start or
//! loaded from the operator's files.
//!
//! Files (under `dir`, by default `DATA_DIR/ca`, mode 0700):
//! - `ca.key` (0600) and `ca.crt` (0644): the CA idsync created;
//! - `sub/<sha256 of a domain policy>.key` (0600) and `.crt` (0644): one
//!   sub-CA per domain policy, created on first use, carrying the policy as
//!   X.509 name constraints (a second line of defence behind the daemon's
//!   own name checks);
//! - `crl/<issuer id>.crl` (0644): the last CRL each issuer signed (DER),
//!   replaced atomically by [`LocalCa::publish_crl`].
//!
//! Everything is read once at [`LocalCa::open`]: issuing does no file I/O
//! and parses no key (a sub-CA is created or read once, on its first use).
//!
//! This module opens the CA and picks the signer of a request; what a
//! certificate holds is `signer`'s, the files' rules are `files`', and a
//! domain policy's name constraints are `constraints`'.

mod constraints;
mod files;
mod revocation;
mod signer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use idsync_schema::cert::{DomainPolicy, KeyType, NameError};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::Duration;
use zeroize::Zeroizing;

use super::p12::key_pair_for;
use super::{is_crl_url, CaBackend, CaError, CrlSpec, Csr, IssueRequest, Issued, PublishedCrl};
use crate::connector::BoxFuture;
use constraints::{canonical_policy, hex_lower, name_constraints};
use files::{make_dir, read_certs, read_key, write_new, write_replace};
use signer::{ca_params, now, pem_cert, sign_leaf, Signer};

fn default_key_type() -> KeyType {
    KeyType::EcdsaP256
}
fn default_common_name() -> String {
    "idsync local CA".into()
}
fn default_validity_days() -> u32 {
    3650
}
fn default_crl_validity_hours() -> u32 {
    168
}
fn default_true() -> bool {
    true
}

/// `[ca]` in the daemon's configuration: the local CA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalCaConfig {
    /// Where the CA idsync creates lives (`ca.key`, `ca.crt`, `sub/`), and
    /// where the sub-CAs of a loaded CA live. Default: `DATA_DIR/ca`.
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// Use this existing CA key (PEM: PKCS#8, SEC1 EC or PKCS#1 RSA,
    /// unencrypted, mode 0600 or stricter) instead of creating one. Set
    /// together with `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// The certificate of `key_file` (PEM): a root, or an intermediate whose
    /// issuers go in `chain_file`. With `name_constraints` on, it must allow
    /// one more CA below it (no pathlen:0).
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// The rest of the chain above `cert_file` (PEM, issuer first, up to and
    /// including the root): an intermediate's issuers.
    #[serde(default)]
    pub chain_file: Option<PathBuf>,
    /// Key type of a created CA: `ecdsa-p256` (default), `ecdsa-p384`,
    /// `rsa-2048`, `rsa-3072`, `rsa-4096` or `ed25519`.
    #[serde(default = "default_key_type")]
    pub key_type: KeyType,
    /// Common name of a created CA.
    #[serde(default = "default_common_name")]
    pub common_name: String,
    /// Validity of a created CA, in days (default 3650).
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// Issue the certificates of a profile with a domain policy through a
    /// sub-CA whose X.509 name constraints carry that policy, so that a name
    /// outside the policy fails verification even if it got past idsync's
    /// checks (default true).
    #[serde(default = "default_true")]
    pub name_constraints: bool,
    /// The base URL the CRLs are published under (`http://host/crl`): when
    /// set, each certificate issued names its issuer's CRL,
    /// `<crl_url>/<issuer id>.crl`, as its CRL distribution point. Unset
    /// (the default), certificates name none; the CRLs are published
    /// anyway, in `dir/crl/` and at `/crl/<issuer id>.crl` on the admin
    /// listener.
    #[serde(default)]
    pub crl_url: Option<String>,
    /// Hours from a CRL's thisUpdate to its nextUpdate (default 168, a
    /// week). The daemon signs new CRLs on every revocation and when half
    /// of this has passed, so a relying party that caches a CRL until its
    /// nextUpdate never holds an expired one.
    #[serde(default = "default_crl_validity_hours")]
    pub crl_validity_hours: u32,
}

impl Default for LocalCaConfig {
    fn default() -> Self {
        Self {
            dir: None,
            key_file: None,
            cert_file: None,
            chain_file: None,
            key_type: default_key_type(),
            common_name: default_common_name(),
            validity_days: default_validity_days(),
            name_constraints: true,
            crl_url: None,
            crl_validity_hours: default_crl_validity_hours(),
        }
    }
}

/// The local CA backend.
pub struct LocalCa {
    root: Arc<Signer>,
    dir: PathBuf,
    name_constraints: bool,
    crl_url: Option<String>,
    /// Sub-CAs by the canonical form of their domain policy.
    subs: Mutex<HashMap<String, Arc<Signer>>>,
    /// The cRLNumber each issuer (by id) last signed.
    crl_numbers: Mutex<HashMap<String, u64>>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("common_name", &self.root.common_name)
            .field("key_type", &self.root.key_type)
            .field("dir", &self.dir)
            .field("name_constraints", &self.name_constraints)
            .finish()
    }
}

impl LocalCa {
    /// Create the CA on first start (`dir/ca.key` written 0600 with
    /// create_new, `dir/ca.crt` 0644, `dir` itself 0700) or load it (from
    /// `dir`, or from `key_file`/`cert_file`/`chain_file`). A key file
    /// readable or writable by group or others is refused, and so is a key
    /// that does not match its certificate, a certificate that is not a CA
    /// or has expired. `default_dir` is used when `cfg.dir` is unset.
    pub fn open(cfg: &LocalCaConfig, default_dir: &Path) -> Result<LocalCa, CaError> {
        let dir = cfg.dir.clone().unwrap_or_else(|| default_dir.to_path_buf());
        if let Some(url) = &cfg.crl_url {
            check_crl_url(url)?;
        }
        if !(1..=8760).contains(&cfg.crl_validity_hours) {
            return Err(CaError::Config(format!(
                "crl_validity_hours must be 1 to 8760 (a year), not {}",
                cfg.crl_validity_hours
            )));
        }
        let root = match (&cfg.key_file, &cfg.cert_file) {
            (Some(key_path), Some(cert_path)) => {
                let key = read_key(key_path)?;
                let mut certs = read_certs(cert_path)?;
                // Extra certificates in cert_file are taken as its chain.
                let cert = certs.remove(0);
                let mut above = certs;
                if let Some(chain_path) = &cfg.chain_file {
                    above.extend(read_certs(chain_path)?);
                }
                Signer::new(key, cert, above, key_path, cert_path)?
            }
            (None, None) => {
                if cfg.chain_file.is_some() {
                    return Err(CaError::Config(
                        "chain_file is only used with key_file and cert_file".into(),
                    ));
                }
                let key_path = dir.join("ca.key");
                let cert_path = dir.join("ca.crt");
                match (key_path.exists(), cert_path.exists()) {
                    (true, true) => {
                        let key = read_key(&key_path)?;
                        let cert = read_certs(&cert_path)?.remove(0);
                        Signer::new(key, cert, Vec::new(), &key_path, &cert_path)?
                    }
                    (false, false) => create_root(cfg, &dir, &key_path, &cert_path)?,
                    (true, false) => {
                        return Err(CaError::Config(format!(
                            "found {} but not {}: restore the certificate, or move the key away to create a new CA",
                            key_path.display(),
                            cert_path.display()
                        )))
                    }
                    (false, true) => {
                        return Err(CaError::Config(format!(
                            "found {} but not {}: restore the key, or move the certificate away to create a new CA",
                            cert_path.display(),
                            key_path.display()
                        )))
                    }
                }
            }
            _ => {
                return Err(CaError::Config(
                    "key_file and cert_file go together: set both to load a CA, or neither to let idsync create one".into(),
                ))
            }
        };
        Ok(LocalCa {
            root: Arc::new(root),
            dir,
            name_constraints: cfg.name_constraints,
            crl_url: cfg.crl_url.clone(),
            subs: Mutex::new(HashMap::new()),
            crl_numbers: Mutex::new(HashMap::new()),
        })
    }

    /// The CA certificate (the root idsync created, or `cert_file`), PEM.
    pub fn certificate_pem(&self) -> String {
        pem_cert(&self.root.cert_der)
    }

    /// The key type of the CA.
    pub fn key_type(&self) -> KeyType {
        self.root.key_type
    }

    /// [`CaBackend::issue`], synchronously: for callers already on a
    /// blocking thread (an RSA CA key signs in milliseconds; a sub-CA is
    /// created, with its key, on a policy's first issuance).
    pub fn issue_blocking(&self, csr: &Csr, req: &IssueRequest<'_>) -> Result<Issued, CaError> {
        for name in req.dns_names {
            if !req.policy.allows_dns(name) {
                return Err(NameError::OutsidePolicy(name.clone(), req.profile.to_owned()).into());
            }
        }
        for ip in req.ip_addresses {
            if !req.policy.allows_ip(*ip) {
                return Err(
                    NameError::OutsidePolicy(ip.to_string(), req.profile.to_owned()).into(),
                );
            }
        }
        self.issue_unchecked(csr, req)
    }

    /// Issue without checking the names against the policy (the tests use
    /// it to show that the name constraints catch what the checks would).
    pub(crate) fn issue_unchecked(
        &self,
        csr: &Csr,
        req: &IssueRequest<'_>,
    ) -> Result<Issued, CaError> {
        if self.name_constraints && !req.policy.is_empty() {
            let sub = self.sub_ca(req.policy)?;
            sign_leaf(&sub, csr, req, self.crl_url.as_deref())
        } else {
            sign_leaf(&self.root, csr, req, self.crl_url.as_deref())
        }
    }

    /// The sub-CA of `policy`: from memory, else from `dir/sub`, else
    /// created there.
    fn sub_ca(&self, policy: &DomainPolicy) -> Result<Arc<Signer>, CaError> {
        let canonical = canonical_policy(policy);
        let mut subs = self.subs.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = subs.get(&canonical) {
            return Ok(s.clone());
        }
        let signer = Arc::new(self.load_or_create_sub(policy, &canonical)?);
        subs.insert(canonical, signer.clone());
        Ok(signer)
    }

    fn load_or_create_sub(
        &self,
        policy: &DomainPolicy,
        canonical: &str,
    ) -> Result<Signer, CaError> {
        let hash = hex_lower(&Sha256::digest(canonical.as_bytes()));
        let sub_dir = self.dir.join("sub");
        let key_path = sub_dir.join(format!("{hash}.key"));
        let cert_path = sub_dir.join(format!("{hash}.crt"));
        if key_path.exists() && cert_path.exists() {
            let sub = self.read_sub(&key_path, &cert_path)?;
            let fresh = sub.not_after > now() + Duration::days(1);
            if self.root.signed(&sub.cert_der) && fresh {
                return Ok(sub);
            }
            tracing::warn!(
                sub_ca = %cert_path.display(),
                "sub-CA not signed by the current CA, or expiring: creating a new one"
            );
        }
        make_dir(&sub_dir)?;
        let key = key_pair_for(self.root.key_type)?;
        let mut cn = format!("{} policy {}", self.root.common_name, &hash[..12]);
        if cn.chars().count() > 64 {
            cn = format!("idsync policy CA {}", &hash[..12]);
        }
        let mut params = ca_params(&cn, self.root.not_after, 0)?;
        params.name_constraints = Some(name_constraints(policy));
        params.use_authority_key_identifier_extension = true;
        // A relying party checking the whole chain finds the CA's CRL too.
        if let Some(base) = &self.crl_url {
            params.crl_distribution_points = vec![rcgen::CrlDistributionPoint {
                uris: vec![crate::ca::crl_url(base, &self.root.id)],
            }];
        }
        let cert = params
            .signed_by(&key, &self.root.issuer)
            .map_err(|e| CaError::Signing(format!("sub-CA: {e}")))?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        write_replace(&key_path, key_pem.as_bytes(), 0o600)?;
        write_replace(&cert_path, cert.pem().as_bytes(), 0o644)?;
        Signer::new(
            key,
            cert.der().to_vec(),
            self.above_subs(),
            &key_path,
            &cert_path,
        )
    }

    /// A sub-CA from its files.
    fn read_sub(&self, key_path: &Path, cert_path: &Path) -> Result<Signer, CaError> {
        let key = read_key(key_path)?;
        let cert = read_certs(cert_path)?.remove(0);
        Signer::new(key, cert, self.above_subs(), key_path, cert_path)
    }

    /// What is above every sub-CA: the CA and the CA's own chain.
    fn above_subs(&self) -> Vec<Vec<u8>> {
        let mut above = vec![self.root.cert_der.clone()];
        above.extend(self.root.above.iter().cloned());
        above
    }
}

/// Refuse a `crl_url` a relying party could not fetch ([`is_crl_url`]).
fn check_crl_url(url: &str) -> Result<(), CaError> {
    if is_crl_url(url) {
        return Ok(());
    }
    Err(CaError::Config(format!(
        "crl_url must be an absolute http:// or https:// URL without spaces, query or fragment, not {url:?}"
    )))
}

/// Create a root CA in `dir`.
fn create_root(
    cfg: &LocalCaConfig,
    dir: &Path,
    key_path: &Path,
    cert_path: &Path,
) -> Result<Signer, CaError> {
    let cn = cfg.common_name.trim();
    if cn.is_empty() || cn.chars().count() > 64 {
        return Err(CaError::Config(format!(
            "common_name must be 1 to 64 characters, not {:?}",
            cfg.common_name
        )));
    }
    if !(1..=36500).contains(&cfg.validity_days) {
        return Err(CaError::Config(format!(
            "validity_days must be 1 to 36500, not {}",
            cfg.validity_days
        )));
    }
    make_dir(dir)?;
    let key = key_pair_for(cfg.key_type)?;
    let not_after = now() + Duration::days(i64::from(cfg.validity_days));
    let params = ca_params(cn, not_after, 1)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| CaError::Signing(format!("CA certificate: {e}")))?;
    let key_pem = Zeroizing::new(key.serialize_pem());
    write_new(key_path, key_pem.as_bytes(), 0o600)?;
    write_new(cert_path, cert.pem().as_bytes(), 0o644)?;
    tracing::info!(
        key = %key_path.display(),
        cert = %cert_path.display(),
        key_type = %cfg.key_type,
        "created the local CA"
    );
    Signer::new(key, cert.der().to_vec(), Vec::new(), key_path, cert_path)
}

impl CaBackend for LocalCa {
    fn name(&self) -> &str {
        "local"
    }

    fn chain_pem(&self) -> String {
        self.root.chain.clone()
    }

    fn issue<'a>(
        &'a self,
        csr: &'a Csr,
        req: &'a IssueRequest<'a>,
    ) -> BoxFuture<'a, Result<Issued, CaError>> {
        Box::pin(async move { self.issue_blocking(csr, req) })
    }

    fn issuers(&self) -> Result<Vec<String>, CaError> {
        Ok(self.signers()?.iter().map(|s| s.id.clone()).collect())
    }

    fn publish_crl(&self, spec: &CrlSpec<'_>) -> Result<PublishedCrl, CaError> {
        LocalCa::publish_crl(self, spec)
    }

    fn kept_crls(&self) -> Result<Vec<PublishedCrl>, CaError> {
        LocalCa::kept_crls(self)
    }
}

// The daemon shares one LocalCa between tasks.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<LocalCa>();
};
