//! Enrollment requests and the state machine they move through: the one
//! place that says which status may follow which, so the daemon's approval
//! and issuance paths cannot disagree.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::profile::{KeyType, Protocol};
use super::subject::CertificateData;
use crate::model::Meta;

/// Where an enrollment request stands (DESIGN.md, state machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequestStatus {
    PendingApproval,
    Approved,
    Issued,
    Rejected,
    Failed,
}

impl RequestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestStatus::PendingApproval => "pending_approval",
            RequestStatus::Approved => "approved",
            RequestStatus::Issued => "issued",
            RequestStatus::Rejected => "rejected",
            RequestStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<RequestStatus> {
        [
            RequestStatus::PendingApproval,
            RequestStatus::Approved,
            RequestStatus::Issued,
            RequestStatus::Rejected,
            RequestStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    /// Whether a request may move from `self` to `next`. A request without
    /// approval is born `approved`.
    pub fn may_become(self, next: RequestStatus) -> bool {
        use RequestStatus::*;
        matches!(
            (self, next),
            (PendingApproval, Approved | Rejected | Failed) | (Approved, Issued | Failed)
        )
    }
}

impl fmt::Display for RequestStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One enrollment: what was asked, by whom, and where it stands. Holds no
/// secret: a P12's key and password exist only while its file is made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EnrollmentRequest {
    pub id: Uuid,
    pub protocol: Protocol,
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<Uuid>,
    /// The token that asked.
    pub requester: String,
    pub status: RequestStatus,
    /// The subject and names the certificate will carry, checked against
    /// the profile when the request was made.
    pub data: CertificateData,
    /// P12: the key type idsync generates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<KeyType>,
    /// P10: the CSR (public data), PEM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
    /// The approver who decided, and their comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Why the request failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<Uuid>,
    /// SCEP: the client's transactionID, which its polls and resends name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction: Option<String>,
    pub meta: Meta,
}

impl EnrollmentRequest {
    /// How it ended, for a client told it failed: `rejected: not now`,
    /// `failed: <reason>` (the reason, else the approver's comment).
    pub fn outcome(&self) -> String {
        match self.reason.as_deref().or(self.comment.as_deref()) {
            Some(why) => format!("{}: {why}", self.status),
            None => self.status.to_string(),
        }
    }
}
