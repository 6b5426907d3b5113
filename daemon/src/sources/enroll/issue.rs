//! P10 and P12 enrollment: a CSR uploaded or a key generated, the
//! certificate issued by the CA, and the request and certificate recorded
//! in one commit. With approval, only the request is recorded here; the
//! issuance follows the approval ([`super::requests`]).

use std::net::IpAddr;

use idsync_connectors::ca::{self, Csr, IssueRequest, Issued};
use idsync_schema::{
    Certificate, CertificateData, CertificateProfile, EnrollmentRequest, KeyType, Meta, Protocol,
    Registration, RequestStatus,
};
use time::OffsetDateTime;
use uuid::Uuid;

use super::checks::{
    check_data, check_key_type, check_usable, complete, csr_subject_data, normalise, recheck,
    Resolved,
};
use super::registrations::{audit_spent, spend};
use super::requests::{audit, changed_meanwhile, put_if};
use super::{EnrollError, Enrolled, Enrollment, Password, Target};

/// How a CSR is enrolled: by which protocol, as which request, for which
/// names (ACME, SCEP: the registration's; P10: the CSR's and the asset's).
pub(super) struct CsrEnrollment {
    pub protocol: Protocol,
    pub id: Uuid,
    pub names: Option<Vec<String>>,
    /// SCEP's transactionID.
    pub transaction: Option<String>,
    /// SCEP: the registration whose challenge this request spends, in the
    /// same commit as the request (one durable write per enrollment; of
    /// two requests with one challenge, only one commits).
    pub spends: Option<Registration>,
}

impl Enrollment {
    pub async fn enroll_p10(
        &self,
        who: &str,
        target: &Target,
        csr: &[u8],
    ) -> Result<Enrolled, EnrollError> {
        let resolved = self.resolve(target, Protocol::P10)?;
        let csr = ca::parse_csr(csr)?;
        let how = CsrEnrollment {
            protocol: Protocol::P10,
            id: Uuid::now_v7(),
            names: None,
            transaction: None,
            spends: None,
        };
        self.enroll_csr(who, &resolved, &csr, how).await
    }

    /// Enroll `csr` (P10, ACME, SCEP) as request `how.id`: issued at once,
    /// or recorded to wait for an approver when the profile says so.
    pub(super) async fn enroll_csr(
        &self,
        who: &str,
        resolved: &Resolved,
        csr: &Csr,
        how: CsrEnrollment,
    ) -> Result<Enrolled, EnrollError> {
        let protocol = how.protocol;
        let profile = &resolved.profile;
        check_key_type(profile, csr.key_type)?;
        // The names are the CSR's: every one must pass the profile. Its
        // subject fills the template where it has a value; the asset's data
        // fills the rest (seed 002: the asset's data predefines the request).
        let requested = CertificateData {
            dns_names: csr.dns_names.clone(),
            ip_addresses: csr.ip_addresses.iter().map(IpAddr::to_string).collect(),
            ..csr_subject_data(csr)
        };
        let mut data = complete(requested.clone(), resolved.asset.as_ref());
        if let Some(names) = how.names {
            // ACME and SCEP: the names are the ones the registration
            // allowed; the asset's data fills the subject only.
            data.dns_names = names;
            data.ip_addresses = requested.ip_addresses;
        }
        let (subject, ips) = check_data(profile, &data)?;
        let mut request = self.new_request(who, protocol, resolved, data, None, Some(csr));
        request.id = how.id;
        request.transaction = how.transaction;
        if profile.requires_approval {
            return self.wait_for_approval(who, request, how.spends).await;
        }
        let issued = self
            .issue(csr, profile, &subject, &request.data, &ips)
            .await?;
        self.record_issued(who, request, csr.key_type, issued, None, how.spends)
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
            return self.wait_for_approval(who, request, None).await;
        }
        let password = password.ok_or_else(|| {
            EnrollError::Invalid("a P12 enrollment needs a password for the file".into())
        })?;
        self.make_p12(who, request, profile, &subject, &ips, &password)
            .await
    }

    /// Make the P12 of an approved request (only its requester, or an
    /// admin, may).
    pub(crate) async fn download_p12(
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
    pub(super) async fn fail_on_refusal(
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
            .record_issued(who, request, key_type, issued, None, None)
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

    pub(super) async fn issue(
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
            transaction: None,
            meta: Meta::new(OffsetDateTime::now_utc()),
        }
    }

    async fn wait_for_approval(
        &self,
        who: &str,
        request: EnrollmentRequest,
        spends: Option<Registration>,
    ) -> Result<Enrolled, EnrollError> {
        let r = request.clone();
        let spent = self
            .write(who, move |tx| {
                recheck(tx, &r)?;
                let spent = spends.clone().map(|g| spend(tx, g)).transpose()?;
                put_if(tx, None, r.clone())?;
                Ok(spent)
            })
            .await?;
        audit_spent(spent.as_ref(), who);
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
    /// approval first when `approval` is given, and the registration
    /// `spends` used up), in one commit.
    pub(super) async fn record_issued(
        &self,
        who: &str,
        mut request: EnrollmentRequest,
        key_type: KeyType,
        issued: Issued,
        approval: Option<(String, Option<String>)>,
        spends: Option<Registration>,
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
            revoked: None,
            meta: Meta::new(OffsetDateTime::now_utc()),
        };
        let (c, r) = (cert.clone(), request.clone());
        let (stored, spent) = self
            .write(who, move |tx| {
                let mut r = r.clone();
                recheck(tx, &r)?;
                let spent = spends.clone().map(|g| spend(tx, g)).transpose()?;
                // A new request (no approval needed) is stored first; a
                // stored one must still be as it was read: of two approvals
                // or two downloads racing, one wins.
                match tx.request(r.id)? {
                    None => put_if(tx, None, r.clone())?,
                    Some(stored) if stored.status == r.status => {}
                    Some(stored) => return Err(changed_meanwhile(&stored)),
                }
                if let Some((approver, comment)) = approval.clone() {
                    r.status = RequestStatus::Approved;
                    r.decided_by = Some(approver);
                    r.comment = comment;
                    tx.put_request(r.clone())?;
                }
                tx.put_certificate(c.clone())?;
                r.status = RequestStatus::Issued;
                r.certificate = Some(c.id);
                tx.put_request(r.clone())?;
                Ok((r, spent))
            })
            .await?;
        audit_spent(spent.as_ref(), who);
        request = stored;
        audit(&request, who, "issued");
        tracing::info!(
            request = %request.id,
            certificate = %cert.id,
            serial = %cert.serial,
            profile = %cert.profile,
            "certificate issued"
        );
        self.publish_crl_of_new_issuer(&cert.chain).await;
        Ok(Enrolled {
            request,
            certificate: Some(cert),
            p12: None,
        })
    }
}
