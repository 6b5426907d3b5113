//! Enrollment: certificate profiles, P10 and P12 issuance and the approval
//! workflow (seed 002), on top of a CA backend of `idsync-connectors`.
//!
//! Every decision is made here, before the CA is asked: the asset must be
//! `active`, the profile active and of the right protocol, the key type
//! allowed, every name valid and inside the domain policy. The CA gets only
//! the fields to write ([`ca::IssueRequest`]); the CSR contributes its public
//! key. Writes go through the group-commit [`Writer`], so a request, its
//! certificate and each status change are change-log events, and an answer
//! is sent only once they are durable.
//!
//! Secrets: a P12's key is generated, wrapped and dropped (zeroed) inside
//! one call, and its password lives in a [`Password`] that never prints;
//! neither reaches the store or a log line.
//!
//! The service is one [`Enrollment`], its methods spread by concern:
//! [`profiles`], [`issue`] (P10 and P12 enrollment), [`requests`]
//! (approvals and reading requests), [`certificates`] (reading and
//! revoking them), [`crl`] (publishing the CRLs), with the checks they
//! share in [`checks`]. Callers:
//!
//! - [`routes`]: the `/api/v1` routes of the admin listener;
//! - `crate::cli::enroll`: the CLI side (`idsync profiles|assets|enroll|
//!   requests|certificates`), which talks to the running daemon.

pub(crate) mod acme;
mod certificates;
mod checks;
pub(crate) mod crl;
mod error;
mod issue;
mod password;
mod profiles;
mod registration_routes;
mod registrations;
mod requests;
pub(crate) mod routes;
pub(crate) mod scep;
#[cfg(test)]
mod tests;
mod upkeep;

use std::collections::BTreeSet;
use std::fmt;
use std::sync::{Arc, RwLock};

use idsync_connectors::ca::{self, CaBackend};
use idsync_schema::{Certificate, EnrollmentRequest, ProfileSettings, RequestStatus, Source};
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use idsync_store::reconcile::{Reconciler, Tx};
use idsync_store::writer::Writer;
use idsync_store::{Actor, Store};

pub use error::EnrollError;
pub use password::Password;
pub(crate) use registrations::RegistrationFilter;
pub use registrations::{Registered, Secret};

/// Most enrollment writes that share one commit (group commit).
const WRITER_BATCH: usize = 512;

/// What an enrollment is for: an asset (by name or id), a profile, or both
/// (seed 002: enroll from an asset, or from a profile).
#[derive(Debug, Clone, Default)]
pub struct Target {
    pub asset: Option<String>,
    pub profile: Option<String>,
}

/// Filters of `requests list` ("Workplace requests" in the seed).
#[derive(Debug, Clone, Default)]
pub(crate) struct RequestFilter {
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
    crls: crl::Crls,
    /// Days a registration is valid (`registration_days`).
    registration_days: u32,
    /// What ACME bindings derive from (`crate::infra::key_file`).
    registration_key: [u8; 32],
}

impl fmt::Debug for Enrollment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Enrollment")
            .field("ca", &self.ca.name())
            .finish_non_exhaustive()
    }
}

/// `[enrollment]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrollmentConfig {
    /// Threads that generate P12 keys at most at once (RSA takes up to a
    /// second per key: more would starve the rest of the daemon).
    pub keygen_threads: usize,
    /// Enrollment requests listed at most per `requests list` answer.
    pub max_listed: usize,
    /// PBKDF2 iterations protecting a P12 (key, certificates and MAC).
    /// 2048 is OpenSSL 3's default; each costs CPU per file, and guessing
    /// a password costs an attacker the same per try.
    pub p12_iterations: u32,
    /// Days an ACME or SCEP registration is valid (1 to 365).
    pub registration_days: u32,
}

impl Default for EnrollmentConfig {
    fn default() -> Self {
        Self {
            keygen_threads: 2,
            max_listed: 1000,
            p12_iterations: idsync_connectors::ca::P12_KDF_ITERATIONS,
            registration_days: 7,
        }
    }
}

/// What enrollment takes from the configuration: its own section, the
/// CA's, where the CA lives (`DATA_DIR/ca`) and the profiles the file
/// defines.
#[derive(Debug, Clone)]
pub struct Settings<'a> {
    pub enrollment: &'a EnrollmentConfig,
    pub ca: &'a ca::LocalCaConfig,
    pub ca_dir: std::path::PathBuf,
    /// Where the daemon's own keys live (`crate::infra::key_file`).
    pub data_dir: std::path::PathBuf,
    pub profiles: &'a [ProfileSettings],
}

/// Open the local CA (created on first start in `ca_dir`) and start the
/// enrollment service with its own group-commit writer.
pub fn start(
    settings: Settings<'_>,
    rec: &Arc<Reconciler>,
    metrics: &Arc<crate::infra::metrics::Metrics>,
) -> anyhow::Result<Arc<Enrollment>> {
    use anyhow::Context as _;
    let ca = ca::LocalCa::open(settings.ca, &settings.ca_dir).context("opening the CA")?;
    tracing::info!(key = %ca.key_type(), "local CA ready");
    use crate::infra::key_file;
    let registration_key = key_file::load_or_create(&settings.data_dir, key_file::REGISTRATION)
        .context("the registration key")?;
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
    let svc = Arc::new(Enrollment::new(
        Arc::clone(rec),
        writer,
        Arc::new(ca),
        settings.enrollment,
        settings.profiles,
        time::Duration::hours(i64::from(settings.ca.crl_validity_hours)),
        registration_key,
    ));
    svc.serve_kept_crls().context("reading the kept CRLs")?;
    Ok(svc)
}

impl Enrollment {
    /// The service over `rec`, writing through `writer`, issuing with `ca`.
    pub(crate) fn new(
        rec: Arc<Reconciler>,
        writer: Writer,
        ca: Arc<dyn CaBackend>,
        cfg: &EnrollmentConfig,
        profiles: &[ProfileSettings],
        crl_validity: time::Duration,
        registration_key: [u8; 32],
    ) -> Self {
        let svc = Self {
            rec,
            writer,
            ca,
            keygen: Arc::new(Semaphore::new(cfg.keygen_threads.max(1))),
            file_profiles: RwLock::new(BTreeSet::new()),
            max_listed: cfg.max_listed,
            p12_iterations: cfg.p12_iterations,
            crls: crl::Crls::new(crl_validity),
            registration_days: cfg.registration_days,
            registration_key,
        };
        svc.set_file_profiles(profiles);
        svc
    }

    /// Note which profiles the (re)loaded configuration defines.
    pub(crate) fn set_file_profiles(&self, profiles: &[ProfileSettings]) {
        *self
            .file_profiles
            .write()
            .unwrap_or_else(|p| p.into_inner()) =
            profiles.iter().map(|p| p.name.to_lowercase()).collect();
    }

    fn store(&self) -> &Store {
        self.rec.store()
    }

    /// The objects of `kind` that `keep` keeps, newest first (ids are
    /// time-ordered), at most `max_listed`: what `requests list` and
    /// `registrations list` answer.
    fn newest<T: serde::de::DeserializeOwned>(
        &self,
        kind: idsync_schema::Kind,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, EnrollError> {
        let mut out = std::collections::VecDeque::new();
        self.store().for_each::<T>(kind, |o| {
            if keep(&o) {
                if out.len() == self.max_listed {
                    out.pop_front();
                }
                out.push_back(o);
            }
            Ok(true)
        })?;
        Ok(out.into_iter().rev().collect())
    }

    /// The CA chain clients verify issued certificates with (PEM).
    pub(crate) fn ca_chain(&self) -> String {
        self.ca.chain_pem()
    }

    async fn write<T, F>(&self, who: &str, job: F) -> Result<T, EnrollError>
    where
        T: Send + 'static,
        F: FnMut(&mut Tx<'_>) -> Result<T, EnrollError> + Send + 'static,
    {
        self.writer.run(Source::Api, Actor::token(who), job).await
    }
}
