//! What the SCEP server asks of enrollment (RFC 8894): its RA certificate,
//! and the decision on each request — a PKCSReq whose challenge password
//! is a registration's (spent by it, single use), a RenewalReq signed by
//! a current certificate idsync issued, a CertPoll (or a resend) of a
//! request that waits for an approver. The server speaks CMS; every
//! decision about names, keys and states is made here, through the same
//! checks, approval and issuance as P10 (`enroll_csr`).

use std::path::Path;

use idsync_connectors::ca;
use idsync_schema::{
    Certificate, EnrollmentRequest, KeyType, Kind, Protocol, Registration, RegistrationStatus,
    RequestStatus, Usage,
};
use idsync_store::keys::{self, Index};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use uuid::Uuid;
use zeroize::Zeroizing;

use super::acme::OwnCertificate;
use super::issue::CsrEnrollment;
use super::registrations::challenge_sha256;
use super::{EnrollError, Enrolled, Enrollment, Target};

/// The RA's files in the CA directory.
const RA_KEY: &str = "scep-ra.key";
const RA_CERT: &str = "scep-ra.crt";
/// Days an RA certificate is valid; a new one is made when less than
/// [`RA_RENEW_DAYS`] are left at start.
const RA_DAYS: u32 = 730;
const RA_RENEW_DAYS: i64 = 30;

/// The RA's certificate (DER) and key (PKCS#8 DER, zeroed when dropped).
pub(crate) struct RaKeys {
    pub cert_der: Vec<u8>,
    pub key_pkcs8: Zeroizing<Vec<u8>>,
}

/// What a SCEP request comes to.
#[derive(Debug)]
pub(crate) enum ScepDecision {
    /// The certificate, then its chain, DER.
    Issued(Vec<Vec<u8>>),
    /// It waits for an approver: the client polls.
    Pending,
}

/// The requester SCEP requests of a registration are recorded under.
fn scep_requester(registration: Uuid) -> String {
    format!("scep:{registration}")
}

impl Enrollment {
    /// The RA's certificate and key, made on first use (RSA-2048, issued by
    /// the CA; SCEP's envelope needs RSA) and kept in the CA directory.
    pub(crate) async fn scep_ra(&self, ca_dir: &Path) -> Result<RaKeys, EnrollError> {
        let (key_path, cert_path) = (ca_dir.join(RA_KEY), ca_dir.join(RA_CERT));
        if let Some(kept) = read_ra(&key_path, &cert_path)? {
            return Ok(kept);
        }
        let subject = [
            ("CN".to_owned(), "idsync SCEP RA".to_owned()),
            ("O".to_owned(), "idsync".to_owned()),
        ];
        let own = OwnCertificate {
            key_type: KeyType::Rsa2048,
            subject: &subject,
            dns_names: &[],
            ips: &[],
            usage: Usage::ClientAuth,
            days: RA_DAYS,
            label: "idsync SCEP RA",
        };
        let (issued, key_pkcs8) = self.issue_own(own).await?;
        let cert_der = pem_certificates(&issued.pem)?
            .into_iter()
            .next()
            .ok_or_else(|| EnrollError::Internal("the RA certificate is missing".into()))?;
        let internal =
            |e: std::io::Error| EnrollError::Internal(format!("writing the SCEP RA: {e}"));
        let _ = std::fs::remove_file(&key_path);
        let key_pem = Zeroizing::new(ca::pem_block("PRIVATE KEY", &key_pkcs8));
        crate::infra::private_file::create(&key_path, key_pem.as_bytes()).map_err(internal)?;
        std::fs::write(&cert_path, issued.pem.as_bytes()).map_err(internal)?;
        tracing::info!(cert = %cert_path.display(), "SCEP RA certificate issued");
        Ok(RaKeys {
            cert_der,
            key_pkcs8,
        })
    }

    /// A PKCSReq: `challenge` must be an active SCEP registration's (it is
    /// spent), the CSR's names the registration's. A resend of a request
    /// already made (same transaction and key) answers its state instead.
    pub(crate) async fn scep_request(
        &self,
        transaction: &str,
        csr_der: &[u8],
        challenge: Option<&str>,
    ) -> Result<ScepDecision, EnrollError> {
        let csr = ca::parse_csr(csr_der)?;
        if let Some(known) = self.scep_request_of(transaction, &csr.public_key)? {
            return self.scep_decision(&known);
        }
        let challenge = challenge
            .ok_or_else(|| EnrollError::Invalid("the CSR has no challengePassword".into()))?;
        let registration = self.registration_of_challenge(challenge)?;
        let names = scep_names(&csr, &registration.dns_names)?;
        let target = Target {
            asset: Some(registration.asset.to_string()),
            profile: Some(registration.profile.clone()),
        };
        let resolved = self.resolve(&target, Protocol::Scep)?;
        super::checks::check_key_type(&resolved.profile, csr.key_type)?;
        // Spent in the request's own commit: of two requests with one
        // challenge, one gets it.
        let who = scep_requester(registration.id);
        let how = CsrEnrollment {
            protocol: Protocol::Scep,
            id: Uuid::now_v7(),
            names: Some(names),
            transaction: Some(transaction.to_owned()),
            spends: Some(registration),
        };
        let enrolled = self.enroll_csr(&who, &resolved, &csr, how).await?;
        self.decision_of(enrolled)
    }

    /// A CertPoll: the request of `transaction` whose CSR has the key the
    /// poll is signed with.
    pub(crate) fn scep_poll(
        &self,
        transaction: &str,
        signer_cert_der: &[u8],
    ) -> Result<ScepDecision, EnrollError> {
        let key = ca::certificate_public_key(signer_cert_der)?;
        let request = self.scep_request_of(transaction, &key)?.ok_or_else(|| {
            EnrollError::NotFound(format!("no SCEP request {transaction:?} of this key"))
        })?;
        self.scep_decision(&request)
    }

    /// A RenewalReq: signed by a current certificate idsync issued for an
    /// asset whose profile is a SCEP one; the new CSR may ask for that
    /// certificate's names only.
    pub(crate) async fn scep_renewal(
        &self,
        transaction: &str,
        signer_cert_der: &[u8],
        csr_der: &[u8],
    ) -> Result<ScepDecision, EnrollError> {
        let csr = ca::parse_csr(csr_der)?;
        if let Some(known) = self.scep_request_of(transaction, &csr.public_key)? {
            return self.scep_decision(&known);
        }
        let old = self.certificate_by_der(signer_cert_der)?.ok_or_else(|| {
            EnrollError::Forbidden(
                "the renewal is not signed by a certificate idsync issued".into(),
            )
        })?;
        let now = OffsetDateTime::now_utc();
        if old.revoked.is_some() || old.not_after <= now {
            return Err(EnrollError::Forbidden(format!(
                "certificate {} is revoked or expired: enroll again with a challenge",
                old.id
            )));
        }
        let asset = old.asset.ok_or_else(|| {
            EnrollError::Forbidden("the signing certificate is of no asset".into())
        })?;
        let names = scep_names(&csr, &old.dns_names)?;
        let target = Target {
            asset: Some(asset.to_string()),
            profile: Some(old.profile.clone()),
        };
        let resolved = self.resolve(&target, Protocol::Scep)?;
        let how = CsrEnrollment {
            protocol: Protocol::Scep,
            id: Uuid::now_v7(),
            names: Some(names),
            transaction: Some(transaction.to_owned()),
            spends: None,
        };
        let who = format!("scep-renewal:{}", old.id);
        let enrolled = self.enroll_csr(&who, &resolved, &csr, how).await?;
        self.decision_of(enrolled)
    }

    /// The active SCEP registration whose challenge is `challenge`.
    fn registration_of_challenge(&self, challenge: &str) -> Result<Registration, EnrollError> {
        let hash = challenge_sha256(challenge);
        let store = self.store();
        let found = match store.lookup(Index::RegistrationChallenge, &hash)? {
            Some(id) => store
                .object::<Registration>(Kind::Registration, id)?
                .filter(|r| r.protocol == Protocol::Scep),
            None => None,
        };
        let r =
            found.ok_or_else(|| EnrollError::Invalid("the challenge password is wrong".into()))?;
        if r.is_past(OffsetDateTime::now_utc()) {
            return Err(EnrollError::Invalid(format!(
                "the challenge password expired with registration {} at {}",
                r.id, r.expires
            )));
        }
        match r.status {
            RegistrationStatus::Active => Ok(r),
            RegistrationStatus::Used => Err(EnrollError::Invalid(
                "the challenge password was used already (single use): register again".into(),
            )),
            RegistrationStatus::PendingApproval => Err(EnrollError::Invalid(format!(
                "registration {} waits for an approver",
                r.id
            ))),
            other => Err(EnrollError::Invalid(format!(
                "registration {} is {other}",
                r.id
            ))),
        }
    }

    /// The SCEP request of `transaction` whose CSR has `public_key`.
    fn scep_request_of(
        &self,
        transaction: &str,
        public_key: &[u8],
    ) -> Result<Option<EnrollmentRequest>, EnrollError> {
        let store = self.store();
        for id in store.marked(&keys::requests_of_transaction_prefix(transaction))? {
            let Some(r) = store.object::<EnrollmentRequest>(Kind::Request, id)? else {
                continue;
            };
            let same = r.protocol == Protocol::Scep
                && r.csr
                    .as_deref()
                    .and_then(|pem| ca::parse_csr(pem.as_bytes()).ok())
                    .is_some_and(|c| c.public_key == public_key);
            if same {
                return Ok(Some(r));
            }
        }
        Ok(None)
    }

    /// A stored request's state, as SCEP answers it.
    fn scep_decision(&self, r: &EnrollmentRequest) -> Result<ScepDecision, EnrollError> {
        match (r.status, r.certificate) {
            (RequestStatus::PendingApproval | RequestStatus::Approved, _) => {
                Ok(ScepDecision::Pending)
            }
            (RequestStatus::Issued, Some(c)) => {
                Ok(ScepDecision::Issued(certs_der(&self.certificate(c)?)?))
            }
            _ => Err(EnrollError::Invalid(format!(
                "request {} was {}",
                r.id,
                r.outcome()
            ))),
        }
    }

    fn decision_of(&self, enrolled: Enrolled) -> Result<ScepDecision, EnrollError> {
        match enrolled.certificate {
            Some(c) => Ok(ScepDecision::Issued(certs_der(&c)?)),
            None => Ok(ScepDecision::Pending),
        }
    }
}

/// The names a SCEP CSR asks for: its DNS names, or (a client that sends
/// only a subject, as `scepclient` does) its CN; each one `allowed`.
fn scep_names(csr: &ca::Csr, allowed: &[String]) -> Result<Vec<String>, EnrollError> {
    let mut names: Vec<String> = csr
        .dns_names
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    if names.is_empty() {
        if let Some((_, cn)) = csr.subject_attributes.iter().find(|(a, _)| a == "CN") {
            names.push(cn.to_ascii_lowercase());
        }
    }
    names.dedup();
    if names.is_empty() {
        return Err(EnrollError::Invalid(
            "the CSR names no DNS name (no subjectAltName, no CN)".into(),
        ));
    }
    if let Some(bad) = names.iter().find(|n| !allowed.contains(n)) {
        return Err(EnrollError::Invalid(format!(
            "{bad:?} is not one of the allowed names ({})",
            allowed.join(", ")
        )));
    }
    Ok(names)
}

/// The certificate and its chain, DER, leaf first.
fn certs_der(c: &Certificate) -> Result<Vec<Vec<u8>>, EnrollError> {
    pem_certificates(&format!("{}{}", c.pem, c.chain))
}

/// The DER certificates of PEM text idsync wrote (a certificate, a chain).
pub(crate) fn pem_certificates(text: &str) -> Result<Vec<Vec<u8>>, EnrollError> {
    CertificateDer::pem_slice_iter(text.as_bytes())
        .map(|d| d.map(|d| d.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| {
            EnrollError::Internal(format!("a certificate idsync wrote does not parse: {e}"))
        })
}

/// The RA kept in the CA directory, unless missing, unreadable or due.
fn read_ra(key_path: &Path, cert_path: &Path) -> Result<Option<RaKeys>, EnrollError> {
    use rustls::pki_types::PrivateKeyDer;
    let (Ok(key_pem), Ok(cert_pem)) = (
        std::fs::read(key_path).map(Zeroizing::new),
        std::fs::read(cert_path),
    ) else {
        return Ok(None);
    };
    let (Ok(PrivateKeyDer::Pkcs8(key)), Ok(cert)) = (
        PrivateKeyDer::from_pem_slice(&key_pem),
        CertificateDer::from_pem_slice(&cert_pem),
    ) else {
        tracing::warn!(file = %key_path.display(), "the SCEP RA files do not parse: making new ones");
        return Ok(None);
    };
    let due = x509_not_after(&cert)
        .is_none_or(|t| t - OffsetDateTime::now_utc() < time::Duration::days(RA_RENEW_DAYS));
    if due {
        tracing::info!("the SCEP RA certificate is due: making a new one");
        return Ok(None);
    }
    Ok(Some(RaKeys {
        cert_der: cert.to_vec(),
        key_pkcs8: Zeroizing::new(key.secret_pkcs8_der().to_vec()),
    }))
}

fn x509_not_after(der: &[u8]) -> Option<OffsetDateTime> {
    ca::certificate_not_after(der).ok()
}
