//! What the ACME server asks of enrollment: the account a registration's
//! external account binding made (kept in the registration), and the
//! certificates its orders finalize, through the same checks, approval
//! and issuance as P10 (`enroll_csr`). The server speaks the protocol;
//! every decision about names, keys and states is made here.

use idsync_connectors::ca::{self, IssueRequest};
use idsync_schema::{
    AcmeAccount, AcmeAccountStatus, Certificate, DomainPolicy, Kind, Protocol, Registration,
    RegistrationStatus, Usage,
};
use idsync_store::keys::{self, Index};
use time::OffsetDateTime;
use uuid::Uuid;

use super::issue::CsrEnrollment;
use super::{EnrollError, Enrolled, Enrollment, Target};

/// Days the ACME listener's own certificate is valid (it is issued anew
/// at every start).
const LISTENER_CERT_DAYS: u32 = 365;

/// The requester an ACME account's requests are recorded under.
pub(crate) fn acme_requester(registration: Uuid) -> String {
    format!("acme:{registration}")
}

impl Enrollment {
    /// The registration whose account has the key of `thumbprint`.
    pub(crate) fn acme_account_by_key(
        &self,
        thumbprint: &str,
    ) -> Result<Option<Registration>, EnrollError> {
        let store = self.store();
        match store.lookup(Index::AcmeAccount, thumbprint)? {
            Some(id) => Ok(store.object(Kind::Registration, id)?),
            None => Ok(None),
        }
    }

    /// Bind `account` to registration `id`: it must be an active ACME
    /// registration, not past its expiry; it becomes `used` (the binding
    /// works once).
    pub(crate) async fn bind_acme_account(
        &self,
        id: Uuid,
        account: AcmeAccount,
    ) -> Result<Registration, EnrollError> {
        let r = self.registration(id)?;
        if r.protocol != Protocol::Acme {
            return Err(EnrollError::Forbidden(format!(
                "registration {id} is for {}, not ACME",
                r.protocol
            )));
        }
        if r.is_past(OffsetDateTime::now_utc()) {
            return Err(EnrollError::Conflict(format!(
                "registration {id} expired at {}",
                r.expires
            )));
        }
        let why = match r.status {
            RegistrationStatus::Active => None,
            RegistrationStatus::PendingApproval => Some("waits for an approver"),
            RegistrationStatus::Used => Some("was used already: register the asset again"),
            _ => Some("cannot be used"),
        };
        if let Some(why) = why {
            return Err(EnrollError::Conflict(format!(
                "registration {id} is {}: it {why}",
                r.status
            )));
        }
        let who = acme_requester(id);
        self.move_registration(
            &who,
            r,
            &[RegistrationStatus::Active],
            RegistrationStatus::Used,
            |r| r.account = Some(account),
        )
        .await
    }

    /// Change the account of registration `id` with `change` (contact,
    /// key, deactivation), in one commit that sees the stored account.
    pub(crate) async fn change_acme_account<F>(
        &self,
        id: Uuid,
        mut change: F,
    ) -> Result<Registration, EnrollError>
    where
        F: FnMut(&mut AcmeAccount) -> Result<(), EnrollError> + Send + 'static,
    {
        let who = acme_requester(id);
        let r = self
            .write(&who, move |tx| {
                let mut r = tx
                    .registration(id)?
                    .ok_or_else(|| EnrollError::NotFound(format!("no registration {id}")))?;
                let account = r.account.as_mut().ok_or_else(|| {
                    EnrollError::NotFound(format!("registration {id} has no ACME account"))
                })?;
                if account.status == AcmeAccountStatus::Deactivated {
                    return Err(EnrollError::Forbidden(format!(
                        "the ACME account of registration {id} is deactivated"
                    )));
                }
                change(account)?;
                tx.put_registration(r.clone())?;
                Ok(r)
            })
            .await?;
        tracing::info!(
            target: "idsync::audit",
            registration = %id,
            by = who,
            "ACME account changed"
        );
        Ok(r)
    }

    /// Finalize an ACME order (`order` becomes the request's id): the CSR
    /// must ask for exactly the order's `names`, which the registration
    /// allowed when the order was made; then the P10 checks, approval and
    /// issuance.
    pub(crate) async fn enroll_acme(
        &self,
        registration: &Registration,
        order: Uuid,
        names: &[String],
        csr_der: &[u8],
    ) -> Result<Enrolled, EnrollError> {
        let csr = ca::parse_csr(csr_der)?;
        if !csr.ip_addresses.is_empty() {
            return Err(EnrollError::Invalid(
                "the CSR asks for IP addresses; ACME orders here are for DNS names".into(),
            ));
        }
        let mut asked: Vec<String> = csr
            .dns_names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .collect();
        asked.sort();
        asked.dedup();
        let mut ordered = names.to_vec();
        ordered.sort();
        if asked != ordered {
            return Err(EnrollError::Invalid(format!(
                "the CSR asks for {} but the order is for {}",
                list(&asked),
                list(&ordered)
            )));
        }
        let target = Target {
            asset: Some(registration.asset.to_string()),
            profile: Some(registration.profile.clone()),
        };
        let resolved = self.resolve(&target, Protocol::Acme)?;
        let who = acme_requester(registration.id);
        let how = CsrEnrollment {
            protocol: Protocol::Acme,
            id: order,
            names: Some(ordered),
            transaction: None,
            spends: None,
        };
        self.enroll_csr(&who, &resolved, &csr, how).await
    }

    /// The certificate idsync issued whose DER is `der`, if any.
    pub(crate) fn certificate_by_der(
        &self,
        der: &[u8],
    ) -> Result<Option<Certificate>, EnrollError> {
        use rustls::pki_types::{pem::PemObject as _, CertificateDer};
        let Ok(serial) = ca::certificate_serial(der) else {
            return Ok(None);
        };
        let store = self.store();
        for id in store.marked(&keys::certificates_of_serial_prefix(&serial))? {
            let Some(c) = store.object::<Certificate>(Kind::Certificate, id)? else {
                continue;
            };
            if CertificateDer::from_pem_slice(c.pem.as_bytes()).is_ok_and(|d| d.as_ref() == der) {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// A certificate and key for a listener of the daemon's own (ACME's
    /// HTTPS), issued by the CA for `dns_names` and `ips`: chain PEM (leaf
    /// first) and PKCS#8 key. Made anew at every start.
    pub(crate) async fn listener_certificate(
        &self,
        dns_names: &[String],
        ips: &[std::net::IpAddr],
    ) -> Result<(String, zeroize::Zeroizing<Vec<u8>>), EnrollError> {
        let cn = dns_names
            .first()
            .cloned()
            .unwrap_or_else(|| "idsync".into());
        let own = OwnCertificate {
            key_type: idsync_schema::KeyType::EcdsaP256,
            subject: &[("CN".to_owned(), cn)],
            dns_names,
            ips,
            usage: Usage::ServerAuth,
            days: LISTENER_CERT_DAYS,
            label: "idsync listener",
        };
        let (issued, key) = self.issue_own(own).await?;
        Ok((format!("{}{}", issued.pem, issued.chain), key))
    }

    /// Issue a certificate of the daemon's own (a listener's, the SCEP
    /// RA's) from a key generated here (off the runtime: RSA is slow): not
    /// recorded as an enrollment, and under no profile or policy.
    pub(super) async fn issue_own(
        &self,
        own: OwnCertificate<'_>,
    ) -> Result<(ca::Issued, zeroize::Zeroizing<Vec<u8>>), EnrollError> {
        let key_type = own.key_type;
        let key = tokio::task::spawn_blocking(move || ca::generate_key(key_type))
            .await
            .map_err(|e| EnrollError::Internal(format!("key generation: {e}")))??;
        let csr = key.csr(own.subject)?;
        let req = IssueRequest {
            subject: own.subject,
            dns_names: own.dns_names,
            ip_addresses: own.ips,
            validity_days: own.days,
            usages: &[own.usage],
            policy: &DomainPolicy::default(),
            profile: own.label,
        };
        let issued = self.ca.issue(&csr, &req).await?;
        Ok((issued, key.pkcs8_der()))
    }
}

/// A certificate of the daemon's own: see [`Enrollment::issue_own`].
pub(super) struct OwnCertificate<'a> {
    pub key_type: idsync_schema::KeyType,
    pub subject: &'a [(String, String)],
    pub dns_names: &'a [String],
    pub ips: &'a [std::net::IpAddr],
    pub usage: Usage,
    pub days: u32,
    /// What the CA logs it under.
    pub label: &'static str,
}

fn list(names: &[String]) -> String {
    if names.is_empty() {
        return "no DNS name".into();
    }
    names.join(", ")
}
