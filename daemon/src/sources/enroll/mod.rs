//! Enrollment: certificate profiles, P10 and P12 issuance and the approval
//! workflow (seed 002), on top of a CA backend of `idsync-connectors`.
//!
//! Every decision is made here, before the CA is asked: the asset must be
//! `active`, the profile active and of the right protocol, the key type
//! allowed, every name valid and inside the domain policy. The CA gets only
//! the fields to write ([`IssueRequest`]); the CSR contributes its public
//! key. Writes go through the group-commit [`Writer`], so a request, its
//! certificate and each status change are change-log events, and an answer
//! is sent only once they are durable.
//!
//! Secrets: a P12's key is generated, wrapped and dropped (zeroed) inside
//! one call, and its password lives in a [`Password`] that never prints;
//! neither reaches the store or a log line.
//!
//! - [`http`]: the `/api/v1` routes of the admin listener;
//! - [`client`]: the CLI side (`idsync profiles|assets|enroll|requests|
//!   certificates`), which talks to the running daemon.

pub mod routes;

use std::collections::BTreeSet;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use idsync_connectors::ca::{self, CaBackend, CaError, Csr, IssueRequest, Issued};
use idsync_schema::cert::{self, render_subject};
use idsync_schema::{
    Asset, AssetState, Certificate, CertificateData, CertificateProfile, EnrollmentRequest,
    KeyType, Kind, Meta, ProfileSettings, ProfileState, Protocol, RequestStatus, Rule, Source,
};
use time::OffsetDateTime;
use tokio::sync::Semaphore;
use uuid::Uuid;

use idsync_store::reconcile::{Outcome, Reconciler, Tx, WriteError};
use idsync_store::writer::{WriteFailed, Writer};
use idsync_store::{Actor, Store, StoreError};

/// Most enrollment writes that share one commit (group commit).
const WRITER_BATCH: usize = 512;

/// A P12 password: at least this many characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// And at most this many bytes (it is hashed many times over).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Why an enrollment call failed; the HTTP status follows the variant.
#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    /// The input is wrong (400/422): a bad CSR, a name outside the policy,
    /// a key type the profile does not allow, …
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    /// The token may not do this (self-approval, another's download).
    #[error("{0}")]
    Forbidden(String),
    /// The object is not in a state that allows it.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    /// A failure of idsync itself; the log has the details.
    #[error("{0}")]
    Internal(String),
}

impl From<WriteFailed> for EnrollError {
    fn from(w: WriteFailed) -> Self {
        match w {
            WriteFailed::Stopping => EnrollError::Unavailable("idsync is stopping".into()),
            WriteFailed::Internal(e) => EnrollError::Internal(e),
        }
    }
}

impl From<StoreError> for EnrollError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "enrollment: the store failed");
        EnrollError::Internal("the store failed; see the daemon's log".into())
    }
}

impl From<WriteError> for EnrollError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(v) if v.rule == Rule::NotFound => {
                EnrollError::NotFound(v.to_string())
            }
            WriteError::Rejected(v) if matches!(v.rule, Rule::Transition { .. }) => {
                EnrollError::Conflict(v.to_string())
            }
            WriteError::Rejected(v) => EnrollError::Invalid(v.to_string()),
            WriteError::Store(e) => e.into(),
        }
    }
}

impl From<CaError> for EnrollError {
    fn from(e: CaError) -> Self {
        match e {
            CaError::BadCsr(_)
            | CaError::BadSignature
            | CaError::UnsupportedKey(_)
            | CaError::BadName(_)
            | CaError::OutsidePolicy(_) => EnrollError::Invalid(e.to_string()),
            other => {
                tracing::error!(error = %other, "enrollment: the CA failed");
                EnrollError::Internal(format!("the CA failed: {other}"))
            }
        }
    }
}

/// A P12 password. Prints as `[secret]`; zeroed when dropped.
pub struct Password(String);

impl Password {
    /// Check the password conditions (seed 002: "confirm the password
    /// conditions").
    pub fn new(p: String) -> Result<Password, EnrollError> {
        let p = Password(p);
        if p.0.chars().count() < MIN_PASSWORD_CHARS {
            return Err(EnrollError::Invalid(format!(
                "the P12 password must have at least {MIN_PASSWORD_CHARS} characters"
            )));
        }
        if p.0.len() > MAX_PASSWORD_BYTES {
            return Err(EnrollError::Invalid(format!(
                "the P12 password must have at most {MAX_PASSWORD_BYTES} bytes"
            )));
        }
        Ok(p)
    }

    fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[secret]")
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

/// What an enrollment is for: an asset (by name or id), a profile, or both
/// (seed 002: enroll from an asset, or from a profile).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub asset: Option<String>,
    pub profile: Option<String>,
}

/// Filters of `requests list` ("Workplace requests" in the seed).
#[derive(Debug, Clone, Default)]
pub struct RequestFilter {
    pub status: Option<RequestStatus>,
    /// Asset name or id.
    pub asset: Option<String>,
    pub profile: Option<String>,
    pub requester: Option<String>,
}

/// The result of an enrollment: the request, and its certificate (and for
/// P12 the file) when it was issued at once.
#[derive(Debug)]
pub struct Enrolled {
    pub request: EnrollmentRequest,
    pub certificate: Option<Certificate>,
    /// The PKCS#12 file; never stored.
    pub p12: Option<Vec<u8>>,
}

/// The enrollment service the admin API and the benchmark call.
pub struct Enrollment {
    rec: Arc<Reconciler>,
    writer: Writer,
    ca: Arc<dyn CaBackend>,
    keygen: Arc<Semaphore>,
    /// Lower-cased names of the profiles the configuration file defines:
    /// the API may not change those (the next reload would undo it).
    file_profiles: RwLock<BTreeSet<String>>,
    max_listed: usize,
    p12_iterations: u32,
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("ca", &self.ca.name())
            .finish_non_exhaustive()
    }
}

/// A profile and asset, resolved and checked for an enrollment.
struct Resolved {
    profile: CertificateProfile,
    asset: Option<Asset>,
}

/// Open the local CA (created on first start in `DATA_DIR/ca`) and start
/// the enrollment service with its own group-commit writer.
pub fn start(
    cfg: &crate::config::Config,
    rec: &Arc<Reconciler>,
    metrics: &Arc<crate::infra::metrics::Metrics>,
) -> anyhow::Result<Arc<Enrollment>> {
    use anyhow::Context as _;
    let ca = ca::LocalCa::open(&cfg.ca, &cfg.data_dir.join("ca")).context("opening the CA")?;
    tracing::info!(key = %ca.key_type(), "local CA ready");
    let (writer, _thread) = Writer::start(
        "enrollment",
        Arc::clone(rec),
        {
            let metrics = Arc::clone(metrics);
            move |head| metrics.set_change_log_head(head)
        },
        WRITER_BATCH,
    )
    .context("starting the enrollment writer")?;
    Ok(Arc::new(Enrollment::new(
        Arc::clone(rec),
        writer,
        Arc::new(ca),
        cfg,
    )))
}

impl Enrollment {
    /// The service over `rec`, writing through `writer`, issuing with `ca`.
    pub fn new(
        rec: Arc<Reconciler>,
        writer: Writer,
        ca: Arc<dyn CaBackend>,
        cfg: &crate::config::Config,
    ) -> Self {
        let svc = Self {
            rec,
            writer,
            ca,
            keygen: Arc::new(Semaphore::new(cfg.enrollment.keygen_threads.max(1))),
            file_profiles: RwLock::new(BTreeSet::new()),
            max_listed: cfg.enrollment.max_listed,
            p12_iterations: cfg.enrollment.p12_iterations,
        };
        svc.set_file_profiles(cfg);
        svc
    }

    /// Note which profiles the (re)loaded configuration defines.
    pub fn set_file_profiles(&self, cfg: &crate::config::Config) {
        *self
            .file_profiles
            .write()
            .unwrap_or_else(|p| p.into_inner()) =
            cfg.profiles.iter().map(|p| p.name.to_lowercase()).collect();
    }

    fn store(&self) -> &Store {
        self.rec.store()
    }

    /// The CA chain clients verify issued certificates with (PEM).
    pub fn ca_chain(&self) -> String {
        self.ca.chain_pem()
    }

    async fn write<T, F>(&self, who: &str, job: F) -> Result<T, EnrollError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, EnrollError> + Send + 'static,
    {
        self.writer.run(Source::Api, Actor::token(who), job).await
    }

    // ------------------------------------------------------------ profiles

    /// Every profile.
    pub fn profiles(&self) -> Result<Vec<CertificateProfile>, EnrollError> {
        let mut out = Vec::new();
        self.store()
            .for_each::<CertificateProfile>(Kind::Profile, |p| {
                out.push(p);
                Ok(true)
            })?;
        Ok(out)
    }

    /// One profile by name or id.
    pub fn profile(&self, key: &str) -> Result<CertificateProfile, EnrollError> {
        self.store()
            .find::<CertificateProfile>(Kind::Profile, key)?
            .ok_or_else(|| EnrollError::NotFound(format!("no certificate profile {key:?}")))
    }

    fn refuse_file_profile(&self, name: &str) -> Result<(), EnrollError> {
        let defined = self
            .file_profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name.to_lowercase());
        if defined {
            return Err(EnrollError::Conflict(format!(
                "profile {name:?} is defined in the configuration file: change it there"
            )));
        }
        Ok(())
    }

    /// Create or replace a profile; true when it was created.
    pub async fn put_profile(
        &self,
        who: &str,
        settings: ProfileSettings,
    ) -> Result<(bool, CertificateProfile), EnrollError> {
        self.refuse_file_profile(&settings.name)?;
        settings
            .check()
            .map_err(|e| EnrollError::Invalid(e.to_string()))?;
        self.write(who, move |tx| {
            let outcome = tx.upsert_profile(&settings)?;
            let created = matches!(outcome, Outcome::Created(_));
            let profile = tx
                .profile(&settings.name)?
                .ok_or_else(|| EnrollError::Internal("the profile vanished".into()))?;
            Ok((created, profile))
        })
        .await
    }

    /// Delete a profile; its assets become `pending`.
    pub async fn delete_profile(&self, who: &str, name: &str) -> Result<(), EnrollError> {
        self.refuse_file_profile(name)?;
        let name = name.to_owned();
        self.write(who, move |tx| {
            if tx.delete_profile(&name)? {
                Ok(())
            } else {
                Err(EnrollError::NotFound(format!(
                    "no certificate profile {name:?}"
                )))
            }
        })
        .await
    }

    /// Assign an active profile to an asset, which becomes `active` (seed
    /// 000, "Assign certificate profile").
    pub async fn assign_profile(
        &self,
        who: &str,
        asset: &str,
        profile: &str,
    ) -> Result<Asset, EnrollError> {
        let id = self.asset(asset)?.id;
        let profile = profile.to_owned();
        self.write(who, move |tx| {
            tx.assign_profile(id, &profile)?;
            tx.asset(id)?
                .ok_or_else(|| EnrollError::Internal("the asset vanished".into()))
        })
        .await
    }

    fn asset(&self, key: &str) -> Result<Asset, EnrollError> {
        self.store()
            .find::<Asset>(Kind::Asset, key)?
            .ok_or_else(|| EnrollError::NotFound(format!("no asset {key:?}")))
    }

    // ---------------------------------------------------------- enrollment

    /// Find the asset and profile of `target` and check they allow an
    /// enrollment with `protocol`.
    fn resolve(&self, target: &Target, protocol: Protocol) -> Result<Resolved, EnrollError> {
        let asset = target.asset.as_deref().map(|a| self.asset(a)).transpose()?;
        if let Some(a) = &asset {
            if a.state != AssetState::Active {
                return Err(EnrollError::Conflict(format!(
                    "asset {:?} is pending: it has no active certificate profile (assign one first)",
                    a.name
                )));
            }
        }
        let name = target
            .profile
            .clone()
            .or_else(|| asset.as_ref().and_then(|a| a.certificate_profile.clone()))
            .ok_or_else(|| EnrollError::Invalid("name an asset or a certificate profile".into()))?;
        let profile = self.profile(&name)?;
        check_usable(&profile, protocol)?;
        Ok(Resolved { profile, asset })
    }

    /// Upload a CSR (PEM or DER) for an asset or a profile (P10).
    pub async fn enroll_p10(
        &self,
        who: &str,
        target: &Target,
        csr: &[u8],
    ) -> Result<Enrolled, EnrollError> {
        let resolved = self.resolve(target, Protocol::P10)?;
        let csr = ca::parse_csr(csr)?;
        let profile = &resolved.profile;
        check_key_type(profile, csr.key_type)?;
        // The names are the CSR's: every one must pass the profile. Its
        // subject fills the template where it has a value; the asset's data
        // fills the rest (seed 002: the asset's data predefines the request).
        let requested = CertificateData {
            dns_names: csr.dns_names.clone(),
            ip_addresses: csr.ip_addresses.iter().map(IpAddr::to_string).collect(),
            ..csr_subject_data(&csr)
        };
        let data = complete(requested, resolved.asset.as_ref());
        let (subject, ips) = check_data(profile, &data)?;
        let request = self.new_request(who, Protocol::P10, &resolved, data, None, Some(&csr));
        if profile.requires_approval {
            return self.wait_for_approval(who, request).await;
        }
        let issued = self
            .issue(&csr, profile, &subject, &request.data, &ips)
            .await?;
        self.record_issued(who, request, csr.key_type, issued, None)
            .await
    }

    /// Generate a key and a certificate for the given data and return a
    /// PKCS#12 (P12). With approval, only the request is made: the key and
    /// the file are made when the requester downloads after approval.
    pub async fn enroll_p12(
        &self,
        who: &str,
        target: &Target,
        typed: CertificateData,
        key_type: Option<KeyType>,
        password: Option<Password>,
    ) -> Result<Enrolled, EnrollError> {
        let resolved = self.resolve(target, Protocol::P12)?;
        let profile = &resolved.profile;
        let key_type = key_type.unwrap_or(profile.key_types[0]);
        check_key_type(profile, key_type)?;
        let data = complete(normalise(typed), resolved.asset.as_ref());
        let (subject, ips) = check_data(profile, &data)?;
        let request = self.new_request(who, Protocol::P12, &resolved, data, Some(key_type), None);
        if profile.requires_approval {
            return self.wait_for_approval(who, request).await;
        }
        let password = password.ok_or_else(|| {
            EnrollError::Invalid("a P12 enrollment needs a password for the file".into())
        })?;
        self.make_p12(who, request, profile, &subject, &ips, &password)
            .await
    }

    /// Make the P12 of an approved request (only its requester, or an
    /// admin, may).
    pub async fn download_p12(
        &self,
        who: &str,
        is_admin: bool,
        id: Uuid,
        password: Password,
    ) -> Result<Enrolled, EnrollError> {
        let request = self.request(id)?;
        if request.protocol != Protocol::P12 {
            return Err(EnrollError::Conflict(format!(
                "request {id} is a {} request: download its certificate instead",
                request.protocol
            )));
        }
        if request.requester != who && !is_admin {
            return Err(EnrollError::Forbidden(format!(
                "only the requester ({}) downloads the P12 of request {id}",
                request.requester
            )));
        }
        if request.status != RequestStatus::Approved {
            return Err(EnrollError::Conflict(format!(
                "request {id} is {}, not approved: {}",
                request.status,
                match request.status {
                    RequestStatus::Issued =>
                        "its file was made once and the key is not kept; enroll again",
                    RequestStatus::PendingApproval => "wait for an approver",
                    _ => "enroll again",
                }
            )));
        }
        let outcome = async {
            // Approved when the profile allowed it; it may no longer.
            let profile = self.profile(&request.profile)?;
            check_usable(&profile, Protocol::P12)?;
            let key_type = request.key_type.unwrap_or(profile.key_types[0]);
            check_key_type(&profile, key_type)?;
            let (subject, ips) = check_data(&profile, &request.data)?;
            self.make_p12(who, request.clone(), &profile, &subject, &ips, &password)
                .await
        }
        .await;
        self.fail_on_refusal(who, request, None, outcome).await
    }

    /// A refusal by the profile or asset as they are now (they changed
    /// since the request was made) fails the request, with the reason.
    async fn fail_on_refusal(
        &self,
        who: &str,
        request: EnrollmentRequest,
        comment: Option<String>,
        outcome: Result<Enrolled, EnrollError>,
    ) -> Result<Enrolled, EnrollError> {
        match outcome {
            Err(
                EnrollError::Invalid(reason)
                | EnrollError::Conflict(reason)
                | EnrollError::NotFound(reason),
            ) => {
                let id = request.id;
                self.fail(who, request, comment, &reason).await?;
                Err(EnrollError::Conflict(format!(
                    "request {id} failed: {reason}"
                )))
            }
            other => other,
        }
    }

    /// Generate the key, issue, wrap them in a PKCS#12 and record the
    /// issuance. `profile` allows the request and `subject` and `ips` are
    /// its checked data (the callers check: at enrollment, or again at a
    /// download after approval).
    async fn make_p12(
        &self,
        who: &str,
        request: EnrollmentRequest,
        profile: &CertificateProfile,
        subject: &[(String, String)],
        ips: &[IpAddr],
        password: &Password,
    ) -> Result<Enrolled, EnrollError> {
        let key_type = request.key_type.unwrap_or(profile.key_types[0]);
        let key = self.generate_key(key_type).await?;
        let csr = key.csr(subject)?;
        let issued = self
            .issue(&csr, profile, subject, &request.data, ips)
            .await?;
        let alias = request
            .data
            .name
            .clone()
            .unwrap_or_else(|| profile.name.clone());
        let p12 = ca::build_p12_with_iterations(
            &key,
            &issued,
            password.expose(),
            &alias,
            self.p12_iterations,
        )?;
        drop(key);
        let mut done = self
            .record_issued(who, request, key_type, issued, None)
            .await?;
        done.p12 = Some(p12);
        Ok(done)
    }

    /// Generate a key on the bounded blocking pool (RSA is slow).
    async fn generate_key(&self, key_type: KeyType) -> Result<ca::GeneratedKey, EnrollError> {
        if !key_type.is_rsa() {
            // Microseconds: not worth a thread hop.
            return Ok(ca::generate_key(key_type)?);
        }
        let _permit = self
            .keygen
            .acquire()
            .await
            .map_err(|_| EnrollError::Unavailable("idsync is stopping".into()))?;
        tokio::task::spawn_blocking(move || ca::generate_key(key_type))
            .await
            .map_err(|e| EnrollError::Internal(format!("key generation: {e}")))?
            .map_err(EnrollError::from)
    }

    async fn issue(
        &self,
        csr: &Csr,
        profile: &CertificateProfile,
        subject: &[(String, String)],
        data: &CertificateData,
        ips: &[IpAddr],
    ) -> Result<Issued, EnrollError> {
        let req = IssueRequest {
            subject,
            dns_names: &data.dns_names,
            ip_addresses: ips,
            validity_days: profile.validity_days,
            usages: &profile.usages,
            policy: &profile.domain_policy,
            profile: &profile.name,
        };
        Ok(self.ca.issue(csr, &req).await?)
    }

    fn new_request(
        &self,
        who: &str,
        protocol: Protocol,
        resolved: &Resolved,
        data: CertificateData,
        key_type: Option<KeyType>,
        csr: Option<&Csr>,
    ) -> EnrollmentRequest {
        let status = if resolved.profile.requires_approval {
            RequestStatus::PendingApproval
        } else {
            RequestStatus::Approved
        };
        EnrollmentRequest {
            id: Uuid::now_v7(),
            protocol,
            profile: resolved.profile.name.clone(),
            asset: resolved.asset.as_ref().map(|a| a.id),
            requester: who.to_owned(),
            status,
            data,
            key_type: key_type.or(csr.map(|c| c.key_type)),
            csr: csr.map(Csr::pem),
            decided_by: None,
            comment: None,
            reason: None,
            certificate: None,
            meta: Meta::new(OffsetDateTime::now_utc()),
        }
    }

    async fn wait_for_approval(
        &self,
        who: &str,
        request: EnrollmentRequest,
    ) -> Result<Enrolled, EnrollError> {
        let r = request.clone();
        self.write(who, move |tx| {
            recheck(tx, &r)?;
            put_if(tx, None, r)
        })
        .await?;
        audit(&request, who, "requested");
        // The approvers' notification: this line, and the change event
        // (status pending_approval) that a webhook connector delivers.
        tracing::warn!(
            target: "idsync::approvals",
            request = %request.id,
            profile = %request.profile,
            requester = %request.requester,
            subject = request.data.name.as_deref().unwrap_or("-"),
            "enrollment request waits for approval"
        );
        Ok(Enrolled {
            request,
            certificate: None,
            p12: None,
        })
    }

    /// Store the certificate and move the request to `issued` (with the
    /// approval first when `approval` is given), in one commit.
    async fn record_issued(
        &self,
        who: &str,
        mut request: EnrollmentRequest,
        key_type: KeyType,
        issued: Issued,
        approval: Option<(String, Option<String>)>,
    ) -> Result<Enrolled, EnrollError> {
        let cert = Certificate {
            id: Uuid::now_v7(),
            serial: issued.serial,
            subject: issued.subject,
            profile: request.profile.clone(),
            asset: request.asset,
            request: request.id,
            key_type,
            dns_names: request.data.dns_names.clone(),
            ip_addresses: request.data.ip_addresses.clone(),
            not_before: issued.not_before,
            not_after: issued.not_after,
            pem: issued.pem,
            chain: issued.chain,
            installed: None,
            meta: Meta::new(OffsetDateTime::now_utc()),
        };
        let (c, r) = (cert.clone(), request.clone());
        let stored = self
            .write(who, move |tx| {
                let mut r = r;
                recheck(tx, &r)?;
                // A new request (no approval needed) is stored first; a
                // stored one must still be as it was read: of two approvals
                // or two downloads racing, one wins.
                match tx.request(r.id)? {
                    None => put_if(tx, None, r.clone())?,
                    Some(stored) if stored.status == r.status => {}
                    Some(stored) => return Err(changed_meanwhile(&stored)),
                }
                if let Some((approver, comment)) = approval {
                    r.status = RequestStatus::Approved;
                    r.decided_by = Some(approver);
                    r.comment = comment;
                    tx.put_request(r.clone())?;
                }
                tx.put_certificate(c.clone())?;
                r.status = RequestStatus::Issued;
                r.certificate = Some(c.id);
                tx.put_request(r.clone())?;
                Ok(r)
            })
            .await?;
        request = stored;
        audit(&request, who, "issued");
        tracing::info!(
            request = %request.id,
            certificate = %cert.id,
            serial = %cert.serial,
            profile = %cert.profile,
            "certificate issued"
        );
        Ok(Enrolled {
            request,
            certificate: Some(cert),
            p12: None,
        })
    }

    // ----------------------------------------------------------- approvals

    /// Approve a pending request. A P10 request is issued at once; a P12
    /// request waits for its requester to download the file.
    pub async fn approve(
        &self,
        who: &str,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Enrolled, EnrollError> {
        let request = self.decidable(who, id)?;
        match request.protocol {
            Protocol::P10 => {
                // The request was fine when made; the profile or asset
                // may have changed since.
                let outcome = self
                    .issue_approved_p10(who, &request, comment.clone())
                    .await;
                self.fail_on_refusal(who, request, comment, outcome).await
            }
            _ => {
                let stored = self
                    .decide(who, request, RequestStatus::Approved, comment)
                    .await?;
                Ok(Enrolled {
                    request: stored,
                    certificate: None,
                    p12: None,
                })
            }
        }
    }

    async fn issue_approved_p10(
        &self,
        who: &str,
        request: &EnrollmentRequest,
        comment: Option<String>,
    ) -> Result<Enrolled, EnrollError> {
        let profile = self.profile(&request.profile)?;
        check_usable(&profile, Protocol::P10)?;
        let pem = request
            .csr
            .as_deref()
            .ok_or_else(|| EnrollError::Internal("the P10 request has no CSR".into()))?;
        let csr = ca::parse_csr(pem.as_bytes())?;
        check_key_type(&profile, csr.key_type)?;
        let (subject, ips) = check_data(&profile, &request.data)?;
        let issued = self
            .issue(&csr, &profile, &subject, &request.data, &ips)
            .await?;
        audit(request, who, "approved");
        self.record_issued(
            who,
            request.clone(),
            csr.key_type,
            issued,
            Some((who.to_owned(), comment)),
        )
        .await
    }

    async fn fail(
        &self,
        who: &str,
        mut request: EnrollmentRequest,
        comment: Option<String>,
        reason: &str,
    ) -> Result<(), EnrollError> {
        let was = request.status;
        request.status = RequestStatus::Failed;
        // An approval that failed records its approver; a download that
        // failed keeps the approver who said yes before.
        if request.decided_by.is_none() {
            request.decided_by = Some(who.to_owned());
        }
        if comment.is_some() {
            request.comment = comment;
        }
        request.reason = Some(reason.to_owned());
        let r = request.clone();
        self.write(who, move |tx| put_if(tx, Some(was), r)).await?;
        audit(&request, who, "failed");
        Ok(())
    }

    /// Reject a pending request, with a comment.
    pub async fn reject(
        &self,
        who: &str,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<EnrollmentRequest, EnrollError> {
        let request = self.decidable(who, id)?;
        self.decide(who, request, RequestStatus::Rejected, comment)
            .await
    }

    /// Move a pending request to `status` (approved, rejected) as `who`
    /// decided, with their comment.
    async fn decide(
        &self,
        who: &str,
        mut r: EnrollmentRequest,
        status: RequestStatus,
        comment: Option<String>,
    ) -> Result<EnrollmentRequest, EnrollError> {
        r.status = status;
        r.decided_by = Some(who.to_owned());
        r.comment = comment;
        let stored = r.clone();
        self.write(who, move |tx| {
            put_if(tx, Some(RequestStatus::PendingApproval), r)
        })
        .await?;
        audit(&stored, who, status.as_str());
        Ok(stored)
    }

    /// The request `id`, checked to be pending and not `who`'s own.
    fn decidable(&self, who: &str, id: Uuid) -> Result<EnrollmentRequest, EnrollError> {
        let request = self.request(id)?;
        if request.status != RequestStatus::PendingApproval {
            return Err(EnrollError::Conflict(format!(
                "request {id} is {}: only a pending_approval request is decided",
                request.status
            )));
        }
        if request.requester == who {
            return Err(EnrollError::Forbidden(format!(
                "{who} made request {id} and may not decide on it: another approver must"
            )));
        }
        Ok(request)
    }

    // -------------------------------------------------------------- reading

    /// One request.
    pub fn request(&self, id: Uuid) -> Result<EnrollmentRequest, EnrollError> {
        self.store()
            .object::<EnrollmentRequest>(Kind::Request, id)?
            .ok_or_else(|| EnrollError::NotFound(format!("no enrollment request {id}")))
    }

    /// The requests that pass `filter`, newest first, at most
    /// `enrollment.max_listed`.
    pub fn requests(&self, filter: &RequestFilter) -> Result<Vec<EnrollmentRequest>, EnrollError> {
        let asset = match &filter.asset {
            Some(a) => Some(self.asset(a)?.id),
            None => None,
        };
        let mut out = std::collections::VecDeque::new();
        self.store()
            .for_each::<EnrollmentRequest>(Kind::Request, |r| {
                let keep = filter.status.is_none_or(|s| r.status == s)
                    && asset.is_none_or(|a| r.asset == Some(a))
                    && filter
                        .profile
                        .as_deref()
                        .is_none_or(|p| r.profile.eq_ignore_ascii_case(p))
                    && filter.requester.as_deref().is_none_or(|q| r.requester == q);
                if keep {
                    // Ids are time-ordered: the last ones are the newest.
                    if out.len() == self.max_listed {
                        out.pop_front();
                    }
                    out.push_back(r);
                }
                Ok(true)
            })?;
        Ok(out.into_iter().rev().collect())
    }

    /// One certificate.
    pub fn certificate(&self, id: Uuid) -> Result<Certificate, EnrollError> {
        self.store()
            .object::<Certificate>(Kind::Certificate, id)?
            .ok_or_else(|| EnrollError::NotFound(format!("no certificate {id}")))
    }

    /// The certificates issued for an asset (by name or id), oldest first.
    pub fn certificates_of(&self, asset: &str) -> Result<Vec<Certificate>, EnrollError> {
        let asset = self.asset(asset)?;
        let mut ids = Vec::new();
        self.store().scan(
            &idsync_store::keys::certificates_of_asset_prefix(asset.id),
            |k, _| {
                ids.extend(idsync_store::keys::trailing_id(k));
                Ok(true)
            },
        )?;
        ids.into_iter().map(|id| self.certificate(id)).collect()
    }

    /// The "confirm installation" step of a P12 enrollment (seed 002).
    pub async fn confirm_installed(&self, who: &str, id: Uuid) -> Result<Certificate, EnrollError> {
        let mut cert = self.certificate(id)?;
        if cert.installed.is_some() {
            return Ok(cert);
        }
        cert.installed = Some(OffsetDateTime::now_utc());
        let c = cert.clone();
        self.write(who, move |tx| {
            tx.put_certificate(c)?;
            Ok(())
        })
        .await?;
        tracing::info!(target: "idsync::audit", certificate = %id, by = who, "certificate installation confirmed");
        Ok(cert)
    }
}

/// Store `new` if the stored request is still in status `expected` (`None`:
/// not stored yet). Checked inside the writer's transaction, so of two
/// approvers (or two downloads) racing each other one wins and the other
/// is told.
fn put_if(
    tx: &mut Tx<'_>,
    expected: Option<RequestStatus>,
    new: EnrollmentRequest,
) -> Result<(), EnrollError> {
    let stored = tx.request(new.id)?;
    if stored.as_ref().map(|s| s.status) != expected {
        return Err(match stored {
            Some(s) => changed_meanwhile(&s),
            None => EnrollError::NotFound(format!("no enrollment request {}", new.id)),
        });
    }
    tx.put_request(new)?;
    Ok(())
}

fn changed_meanwhile(stored: &EnrollmentRequest) -> EnrollError {
    EnrollError::Conflict(format!(
        "request {} became {} meanwhile",
        stored.id, stored.status
    ))
}

/// Refuse a profile that is inactive or of another protocol.
fn check_usable(profile: &CertificateProfile, protocol: Protocol) -> Result<(), EnrollError> {
    if profile.state != ProfileState::Active {
        return Err(EnrollError::Conflict(format!(
            "certificate profile {:?} is inactive",
            profile.name
        )));
    }
    if profile.protocol != protocol {
        return Err(EnrollError::Invalid(format!(
            "certificate profile {:?} enrolls with {}, not {protocol}",
            profile.name, profile.protocol
        )));
    }
    Ok(())
}

/// Refuse a key type the profile does not allow.
fn check_key_type(profile: &CertificateProfile, got: KeyType) -> Result<(), EnrollError> {
    if profile.key_types.contains(&got) {
        return Ok(());
    }
    let allowed: Vec<&str> = profile.key_types.iter().map(|k| k.as_str()).collect();
    Err(EnrollError::Invalid(format!(
        "key type {got} is not allowed by certificate profile {:?} (allowed: {})",
        profile.name,
        allowed.join(", ")
    )))
}

/// DNS names as the seed types them (comma-separated in one field) become
/// one name each, lower-cased.
fn normalise(mut data: CertificateData) -> CertificateData {
    data.dns_names = data
        .dns_names
        .iter()
        .flat_map(|d| cert::split_dns_list(d))
        .collect();
    data.ip_addresses = data
        .ip_addresses
        .iter()
        .map(|i| i.trim().to_owned())
        .collect();
    data
}

/// Fill what the request leaves empty from the asset.
fn complete(data: CertificateData, asset: Option<&Asset>) -> CertificateData {
    match asset {
        Some(a) => data.or(CertificateData::from_asset(a)),
        None => data,
    }
}

/// A rendered subject: attribute, value.
type Subject = Vec<(String, String)>;

/// Check every name of `data` against the profile and render the subject;
/// a common name that is a host name is a requested name too.
fn check_data(
    profile: &CertificateProfile,
    data: &CertificateData,
) -> Result<(Subject, Vec<IpAddr>), EnrollError> {
    let ips = cert::check_names(profile, &data.dns_names, &data.ip_addresses)
        .map_err(|e| EnrollError::Invalid(e.to_string()))?;
    let subject =
        render_subject(&profile.subject, data).map_err(|e| EnrollError::Invalid(e.to_string()))?;
    for (attr, value) in &subject {
        let looks_like_host = value.contains('.') && cert::check_dns_name(value).is_ok();
        if attr == "CN" && looks_like_host && !profile.domain_policy.allows_dns(value) {
            return Err(EnrollError::Invalid(
                cert::NameError::OutsidePolicy(value.clone(), profile.name.clone()).to_string(),
            ));
        }
    }
    Ok((subject, ips))
}

/// The subject fields of a CSR as certificate data: CN as the name, O, C.
fn csr_subject_data(csr: &Csr) -> CertificateData {
    let get = |attr: &str| {
        csr.subject_attributes
            .iter()
            .find(|(a, _)| a == attr)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    CertificateData {
        name: get("CN"),
        organization: get("O"),
        country: get("C"),
        ..Default::default()
    }
}

/// The asset and profile still allow the request (they may have changed
/// between the check and the commit).
fn recheck(tx: &Tx<'_>, request: &EnrollmentRequest) -> Result<(), EnrollError> {
    let profile = tx.profile(&request.profile)?.ok_or_else(|| {
        EnrollError::Conflict(format!(
            "certificate profile {:?} was deleted",
            request.profile
        ))
    })?;
    check_usable(&profile, request.protocol)?;
    if let Some(id) = request.asset {
        match tx.asset(id)? {
            Some(a) if a.state == AssetState::Active => {}
            Some(a) => {
                return Err(EnrollError::Conflict(format!(
                    "asset {:?} became pending",
                    a.name
                )))
            }
            None => return Err(EnrollError::Conflict(format!("asset {id} was deleted"))),
        }
    }
    Ok(())
}

/// One line of the audit log per request transition (who, what, when is
/// the log's own stamp, source). The change log has the same as events.
fn audit(request: &EnrollmentRequest, who: &str, what: &str) {
    tracing::info!(
        target: "idsync::audit",
        request = %request.id,
        protocol = %request.protocol,
        profile = %request.profile,
        requester = %request.requester,
        by = who,
        source = "API",
        "enrollment request {what}"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// A service over a fresh store with one P12 profile that needs
    /// approval, and a runtime to drive it.
    fn service(dir: &std::path::Path) -> (Arc<Enrollment>, tokio::runtime::Runtime) {
        let mut cfg = Config {
            data_dir: dir.to_path_buf(),
            ..Config::default()
        };
        let mut p = ProfileSettings::new("Vault", Protocol::P12);
        p.requires_approval = true;
        cfg.profiles = vec![p];
        let rec = crate::app::open(&cfg).unwrap();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let svc = rt.block_on(async {
            start(&cfg, &rec, &Arc::new(crate::infra::metrics::Metrics::new())).unwrap()
        });
        (svc, rt)
    }

    fn password() -> Password {
        Password::new("a-long-enough-password".into()).unwrap()
    }

    /// Two downloads of one approved P12 request racing each other: one
    /// file is made, the other is refused, one certificate is stored.
    #[test]
    fn racing_downloads_make_one_file() {
        let dir = tempfile::tempdir().unwrap();
        let (svc, rt) = service(dir.path());
        rt.block_on(async {
            let target = Target {
                asset: None,
                profile: Some("Vault".into()),
            };
            let data = CertificateData {
                name: Some("vault.example.org".into()),
                ..Default::default()
            };
            let made = svc
                .enroll_p12("ops", &target, data, None, None)
                .await
                .unwrap();
            let id = made.request.id;
            assert_eq!(made.request.status, RequestStatus::PendingApproval);
            assert!(matches!(
                svc.approve("ops", id, None).await,
                Err(EnrollError::Forbidden(_))
            ));
            svc.approve("boss", id, None).await.unwrap();
            let (a, b) = tokio::join!(
                svc.download_p12("ops", false, id, password()),
                svc.download_p12("ops", false, id, password())
            );
            let won = [&a, &b].iter().filter(|r| r.is_ok()).count();
            assert_eq!(won, 1, "{a:?} {b:?}");
            let lost = if a.is_err() { a } else { b };
            assert!(matches!(lost, Err(EnrollError::Conflict(_))), "{lost:?}");
            let stored = svc.request(id).unwrap();
            assert_eq!(stored.status, RequestStatus::Issued);
            assert_eq!(stored.decided_by.as_deref(), Some("boss"));
            let mut certs = 0;
            svc.store()
                .for_each::<Certificate>(Kind::Certificate, |_| {
                    certs += 1;
                    Ok(true)
                })
                .unwrap();
            assert_eq!(certs, 1);
        });
    }
}
