//! The local CA: a CA whose key idsync holds, created on first start or
//! loaded from the operator's files.
//!
//! Files (under `dir`, by default `DATA_DIR/ca`, mode 0700):
//! - `ca.key` (0600) and `ca.crt` (0644): the CA idsync created;
//! - `sub/<sha256 of a domain policy>.key` (0600) and `.crt` (0644): one
//!   sub-CA per domain policy, created on first use, carrying the policy as
//!   X.509 name constraints (a second line of defence behind the daemon's
//!   own name checks).
//!
//! Everything is read once at [`LocalCa::open`]: issuing does no file I/O
//! and parses no key (a sub-CA is created or read once, on its first use).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use idsync_schema::cert::{DomainPolicy, KeyType, NameError, Usage};
use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    NameConstraints, PublicKeyData, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use super::csr::key_type_of;
use super::p12::key_pair_for;
use super::{serial_hex, subject_text, CaBackend, CaError, Csr, IssueRequest, Issued};
use crate::connector::BoxFuture;

fn default_key_type() -> KeyType {
    KeyType::EcdsaP256
}
fn default_common_name() -> String {
    "idsync local CA".into()
}
fn default_validity_days() -> u32 {
    3650
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
        }
    }
}

/// A CA key and certificate ready to sign: parsed once.
struct Signer {
    issuer: Issuer<'static, KeyPair>,
    key_type: KeyType,
    /// The certificate, DER.
    cert_der: Vec<u8>,
    /// This certificate then everything above it, PEM: the chain of what it
    /// signs.
    chain: String,
    /// The certificates above this one, DER (empty for a root).
    above: Vec<Vec<u8>>,
    not_after: OffsetDateTime,
    common_name: String,
}

impl Signer {
    /// A signer from a key and its CA certificate; `key_path` and
    /// `cert_path` name the files in messages.
    fn new(
        key: KeyPair,
        cert_der: Vec<u8>,
        above: Vec<Vec<u8>>,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Signer, CaError> {
        let bad_cert = |reason: String| CaError::BadCaCert {
            path: shown(cert_path),
            reason,
        };
        let (rest, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(bad_cert("trailing bytes after the certificate".into()));
        }
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(bad_cert(
                    "not a CA certificate (no basicConstraints CA:TRUE)".into(),
                ))
            }
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaError::KeyMismatch {
                key: shown(key_path),
                cert: shown(cert_path),
            });
        }
        let key_type = key_type_of(cert.public_key()).map_err(|e| CaError::BadKey {
            path: shown(key_path),
            reason: e
                .to_string()
                .replace("the certificate request's key", "the key"),
        })?;
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| bad_cert(format!("notAfter: {e}")))?;
        if not_after <= OffsetDateTime::now_utc() {
            return Err(bad_cert(format!(
                "the CA certificate expired on {not_after}"
            )));
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("idsync CA")
            .to_owned();
        drop(cert);
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|e| bad_cert(format!("rcgen cannot sign with it: {e}")))?;
        let mut chain = pem_cert(&cert_der);
        for c in &above {
            chain.push_str(&pem_cert(c));
        }
        Ok(Signer {
            issuer,
            key_type,
            cert_der,
            chain,
            above,
            not_after,
            common_name,
        })
    }

    /// Whether `cert_der` was signed by this signer's key (a sub-CA found on
    /// disk may be from a CA since replaced).
    fn signed(&self, cert_der: &[u8]) -> bool {
        let Ok((_, mine)) = x509_parser::parse_x509_certificate(&self.cert_der) else {
            return false;
        };
        let Ok((_, theirs)) = x509_parser::parse_x509_certificate(cert_der) else {
            return false;
        };
        theirs.verify_signature(Some(mine.public_key())).is_ok()
    }
}

/// The local CA backend.
pub struct LocalCa {
    root: Arc<Signer>,
    dir: PathBuf,
    name_constraints: bool,
    /// Sub-CAs by the canonical form of their domain policy.
    subs: Mutex<HashMap<String, Arc<Signer>>>,
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

fn shown(p: &Path) -> String {
    p.display().to_string()
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: shown(path),
        source,
    }
}

fn pem_cert(der: &[u8]) -> String {
    super::pem_block("CERTIFICATE", der)
}

/// Now, to the second (what an X.509 time holds).
fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Clock skew allowed for: notBefore is this far in the past.
const BACKDATE: Duration = Duration::minutes(5);

/// 16 random bytes from the OS CSPRNG, positive, top byte never zero (so
/// the serial always has 16 bytes, 126 random bits).
fn random_serial() -> Result<[u8; 16], CaError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CaError::Signing(format!("no random serial: {e}")))?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(b)
}

/// Read a CA key: refused if group or others may read or write it.
fn read_key(path: &Path) -> Result<KeyPair, CaError> {
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
fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>, CaError> {
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
fn write_new(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
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
fn write_replace(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CaError> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let _ = fs::remove_file(&tmp);
    write_new(&tmp, bytes, mode)?;
    fs::rename(&tmp, path).map_err(io(path))
}

fn make_dir(dir: &Path) -> Result<(), CaError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io(dir))
}

/// The subject of a certificate from attribute pairs.
fn distinguished_name(subject: &[(String, String)]) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    for (attr, value) in subject {
        let ty = match attr.to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "C" => DnType::CountryName,
            _ => {
                return Err(CaError::BadName(format!(
                    "subject attribute {attr:?} is not one of CN, O, OU, L, ST, C"
                )))
            }
        };
        if dn.get(&ty).is_some() {
            return Err(CaError::BadName(format!(
                "subject attribute {attr} appears twice; the local CA puts each attribute once"
            )));
        }
        let value = if ty == DnType::CountryName {
            rcgen::string::PrintableString::try_from(value.as_str())
                .map(DnValue::PrintableString)
                .map_err(|_| CaError::BadName(format!("country {value:?} is not two letters")))?
        } else {
            DnValue::Utf8String(value.clone())
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

fn eku(u: Usage) -> ExtendedKeyUsagePurpose {
    match u {
        Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        Usage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        Usage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
    }
}

/// The canonical form of a domain policy: what its name constraints are
/// made of, one entry a line, sorted. Equal forms, equal sub-CA.
fn canonical_policy(policy: &DomainPolicy) -> String {
    let mut out = String::from("idsync domain policy v1\n");
    for d in policy.permitted_dns_subtrees() {
        out.push_str("dns ");
        out.push_str(&d);
        out.push('\n');
    }
    let mut ips: Vec<String> = policy
        .ranges()
        .iter()
        .map(|r| {
            let (a, m) = r.address_and_mask();
            format!("ip {}/{}\n", hex_lower(&a), hex_lower(&m))
        })
        .collect();
    ips.sort();
    ips.dedup();
    out.extend(ips);
    out
}

fn hex_lower(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The name constraints of a domain policy: permitted DNS subtrees and IP
/// ranges. A policy with names but no IP range allows no IP address: the
/// constraint then excludes every IPv4 and IPv6 address. (A policy with IP
/// ranges and no name does not exclude DNS names: OpenSSL would then also
/// refuse a host name in the subject's CN.)
fn name_constraints(policy: &DomainPolicy) -> NameConstraints {
    let dns = policy.permitted_dns_subtrees();
    let ranges = policy.ranges();
    let mut permitted: Vec<GeneralSubtree> =
        dns.iter().cloned().map(GeneralSubtree::DnsName).collect();
    for r in &ranges {
        let (a, m) = r.address_and_mask();
        let subnet = match (<[u8; 4]>::try_from(&a[..]), <[u8; 4]>::try_from(&m[..])) {
            (Ok(a), Ok(m)) => CidrSubnet::V4(a, m),
            _ => match (<[u8; 16]>::try_from(&a[..]), <[u8; 16]>::try_from(&m[..])) {
                (Ok(a), Ok(m)) => CidrSubnet::V6(a, m),
                _ => continue,
            },
        };
        permitted.push(GeneralSubtree::IpAddress(subnet));
    }
    let mut excluded = Vec::new();
    if ranges.is_empty() {
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V4([0; 4], [0; 4])));
        excluded.push(GeneralSubtree::IpAddress(CidrSubnet::V6([0; 16], [0; 16])));
    }
    permitted.sort_by_key(|s| format!("{s:?}"));
    NameConstraints {
        permitted_subtrees: permitted,
        excluded_subtrees: excluded,
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
            subs: Mutex::new(HashMap::new()),
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
            sign_leaf(&sub, csr, req)
        } else {
            sign_leaf(&self.root, csr, req)
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
            let key = read_key(&key_path)?;
            let cert = read_certs(&cert_path)?.remove(0);
            let mut above = vec![self.root.cert_der.clone()];
            above.extend(self.root.above.iter().cloned());
            let sub = Signer::new(key, cert, above, &key_path, &cert_path)?;
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
        let cert = params
            .signed_by(&key, &self.root.issuer)
            .map_err(|e| CaError::Signing(format!("sub-CA: {e}")))?;
        let key_pem = Zeroizing::new(key.serialize_pem());
        write_replace(&key_path, key_pem.as_bytes(), 0o600)?;
        write_replace(&cert_path, cert.pem().as_bytes(), 0o644)?;
        let mut above = vec![self.root.cert_der.clone()];
        above.extend(self.root.above.iter().cloned());
        Signer::new(key, cert.der().to_vec(), above, &key_path, &cert_path)
    }
}

/// What every CA certificate idsync makes (root or sub-CA) holds: the CN, a
/// random serial, back-dated `notBefore`, `notAfter`, `CA:TRUE` with
/// `path_len` CAs allowed below, key usage keyCertSign and cRLSign.
fn ca_params(
    cn: &str,
    not_after: OffsetDateTime,
    path_len: u8,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now() - BACKDATE;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
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

/// Sign a leaf for the CSR's public key with the request's fields.
fn sign_leaf(signer: &Signer, csr: &Csr, req: &IssueRequest<'_>) -> Result<Issued, CaError> {
    if req.validity_days == 0 {
        return Err(CaError::BadName("validity_days must be at least 1".into()));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(req.subject)?;
    let t = now();
    let not_before = t - BACKDATE;
    let not_after = (t + Duration::days(i64::from(req.validity_days))).min(signer.not_after);
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut sans = Vec::with_capacity(req.dns_names.len() + req.ip_addresses.len());
    for name in req.dns_names {
        let ia5 = rcgen::string::Ia5String::try_from(name.as_str())
            .map_err(|_| CaError::BadName(format!("{name:?} is not an ASCII DNS name")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(req.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = if csr.key_type.is_rsa() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    for u in req.usages {
        params.insert_extended_key_usage(eku(*u));
    }
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&csr.public_key_data(), &signer.issuer)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    Ok(Issued {
        pem: cert.pem(),
        chain: signer.chain.clone(),
        serial: serial_hex(&serial),
        subject: subject_text(req.subject),
        not_before,
        not_after,
    })
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
}

// The daemon shares one LocalCa between tasks.
const _: fn() = || {
    fn is<T: Send + Sync>() {}
    is::<LocalCa>();
};
