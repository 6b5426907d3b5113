//! Refusals as ACME problem documents (RFC 8555 §6.7, RFC 7807): a type
//! under `urn:ietf:params:acme:error:`, a detail for the operator of the
//! client, and the HTTP status that goes with them.

use serde_json::{json, Value};

use super::eab::EabError;
use super::jws::JwsError;
use crate::sources::enroll::EnrollError;

/// One refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Problem {
    /// The error type without its `urn:ietf:params:acme:error:` prefix.
    pub kind: &'static str,
    pub detail: String,
    pub status: u16,
}

impl Problem {
    pub fn new(kind: &'static str, status: u16, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            status,
        }
    }

    pub fn malformed(detail: impl Into<String>) -> Self {
        Self::new("malformed", 400, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new("unauthorized", 403, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new("malformed", 404, detail)
    }

    pub fn server_internal(detail: impl Into<String>) -> Self {
        Self::new("serverInternal", 500, detail)
    }

    /// The full error type URN.
    pub fn type_urn(&self) -> String {
        format!("urn:ietf:params:acme:error:{}", self.kind)
    }

    pub fn to_json(&self) -> Value {
        json!({"type": self.type_urn(), "detail": self.detail, "status": self.status})
    }
}

impl From<JwsError> for Problem {
    fn from(e: JwsError) -> Self {
        let urn = e.acme_type();
        let kind = urn.rsplit(':').next().unwrap_or("malformed");
        // The types are the fixed strings of `acme_type`: keep them static.
        let kind = match kind {
            "badSignatureAlgorithm" => "badSignatureAlgorithm",
            "badPublicKey" => "badPublicKey",
            _ => "malformed",
        };
        Self::new(kind, 400, e.to_string())
    }
}

impl From<EabError> for Problem {
    fn from(e: EabError) -> Self {
        match e {
            EabError::BadMac => Self::unauthorized(e.to_string()),
            EabError::Malformed(m) => Self::malformed(m),
        }
    }
}

impl From<EnrollError> for Problem {
    /// What enrollment refused, in ACME's words: a wrong name or key is
    /// the CSR's fault (`badCSR`), a state that does not allow it is
    /// `unauthorized`, idsync's own failure `serverInternal`.
    fn from(e: EnrollError) -> Self {
        match e {
            EnrollError::Invalid(m) => Self::new("badCSR", 400, m),
            EnrollError::NotFound(m) => Self::not_found(m),
            EnrollError::Forbidden(m) | EnrollError::Conflict(m) => Self::unauthorized(m),
            EnrollError::Unavailable(m) => Self::new("serverInternal", 503, m),
            EnrollError::Internal(m) => Self::server_internal(m),
        }
    }
}
