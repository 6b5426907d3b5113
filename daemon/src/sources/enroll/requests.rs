//! Enrollment requests: the approval workflow (approve, reject, a request
//! failed with its reason) and reading requests back. Every transition is
//! a compare-and-set inside the writer's transaction ([`put_if`]), so of
//! two approvers racing one wins and the other is told.

use idsync_connectors::ca;
use idsync_schema::{EnrollmentRequest, Kind, Protocol, RequestStatus};
use idsync_store::keys;
use idsync_store::reconcile::Tx;
use uuid::Uuid;

use super::checks::{check_data, check_key_type, check_usable};
use super::{EnrollError, Enrolled, Enrollment, RequestFilter};

impl Enrollment {
    /// Approve a pending request. A request with a CSR (P10, ACME, SCEP)
    /// is issued at once; a P12 request waits for its requester to
    /// download the file.
    pub(crate) async fn approve(
        &self,
        who: &str,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Enrolled, EnrollError> {
        let request = self.decidable(who, id)?;
        match request.protocol {
            Protocol::P10 | Protocol::Acme | Protocol::Scep => {
                // The request was fine when made; the profile or asset
                // may have changed since.
                let outcome = self
                    .issue_approved_csr(who, &request, comment.clone())
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

    async fn issue_approved_csr(
        &self,
        who: &str,
        request: &EnrollmentRequest,
        comment: Option<String>,
    ) -> Result<Enrolled, EnrollError> {
        let profile = self.profile(&request.profile)?;
        check_usable(&profile, request.protocol)?;
        let pem = request.csr.as_deref().ok_or_else(|| {
            EnrollError::Internal(format!("the {} request has no CSR", request.protocol))
        })?;
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
            None,
        )
        .await
    }

    pub(super) async fn fail(
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
        self.write(who, move |tx| put_if(tx, Some(was), r.clone()))
            .await?;
        audit(&request, who, "failed");
        Ok(())
    }

    /// Reject a pending request, with a comment.
    pub(crate) async fn reject(
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
            put_if(tx, Some(RequestStatus::PendingApproval), r.clone())
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
    pub(crate) fn request(&self, id: Uuid) -> Result<EnrollmentRequest, EnrollError> {
        self.store()
            .object::<EnrollmentRequest>(Kind::Request, id)?
            .ok_or_else(|| EnrollError::NotFound(format!("no enrollment request {id}")))
    }

    /// The requests that pass `filter`, newest first, at most
    /// `enrollment.max_listed`.
    pub(crate) fn requests(
        &self,
        filter: &RequestFilter,
    ) -> Result<Vec<EnrollmentRequest>, EnrollError> {
        Ok(self.requests_page(filter, None, self.max_listed)?.0)
    }

    /// Up to `limit` requests that pass `filter`, newest first, after the
    /// index key `after`; and the key to continue after when the page is
    /// full. The walk is along the newest-first index (of the status, when
    /// the filter has one), so a page of a status costs a page of reads
    /// however many requests the store holds.
    pub(crate) fn requests_page(
        &self,
        filter: &RequestFilter,
        after: Option<&[u8]>,
        limit: usize,
    ) -> Result<(Vec<EnrollmentRequest>, Option<Vec<u8>>), EnrollError> {
        const STEP: usize = 256;
        let asset = match &filter.asset {
            Some(a) => Some(self.asset(a)?.id),
            None => None,
        };
        let keep = |r: &EnrollmentRequest| {
            asset.is_none_or(|a| r.asset == Some(a))
                && filter
                    .profile
                    .as_deref()
                    .is_none_or(|p| r.profile.eq_ignore_ascii_case(p))
                && filter.requester.as_deref().is_none_or(|q| r.requester == q)
        };
        let store = self.store();
        let prefix = keys::requests_newest_prefix(filter.status.map(RequestStatus::as_str));
        let mut anchor = after.map(<[u8]>::to_vec);
        let mut found = Vec::new();
        loop {
            let page = store.scan_page(&prefix, anchor.as_deref(), STEP)?;
            for (key, _) in &page {
                anchor = Some(key.clone());
                let Some(id) = keys::newest_request_id(key) else {
                    continue;
                };
                let Some(r) = store.object::<EnrollmentRequest>(Kind::Request, id)? else {
                    continue;
                };
                if keep(&r) {
                    found.push(r);
                    if found.len() == limit {
                        return Ok((found, anchor));
                    }
                }
            }
            if page.len() < STEP {
                return Ok((found, None));
            }
        }
    }
}

/// Store `new` if the stored request is still in status `expected` (`None`:
/// not stored yet). Checked inside the writer's transaction, so of two
/// approvers (or two downloads) racing each other one wins and the other
/// is told.
pub(super) fn put_if(
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

pub(super) fn changed_meanwhile(stored: &EnrollmentRequest) -> EnrollError {
    EnrollError::Conflict(format!(
        "request {} became {} meanwhile",
        stored.id, stored.status
    ))
}

/// One line of the audit log per request transition (who, what, when is
/// the log's own stamp, source). The change log has the same as events.
pub(super) fn audit(request: &EnrollmentRequest, who: &str, what: &str) {
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
