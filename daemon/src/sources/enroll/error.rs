//! Why an enrollment call failed, typed so that the HTTP status follows
//! the variant, and how the failures of the store, the writer and the CA
//! map onto it (a refusal of the input stays the caller's; a failure of
//! idsync is logged and named only vaguely to the caller).

use idsync_connectors::ca::CaError;
use idsync_schema::cert::NameError;
use idsync_schema::Rule;
use idsync_store::reconcile::WriteError;
use idsync_store::writer::WriteFailed;
use idsync_store::StoreError;

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

impl EnrollError {
    /// The HTTP status of this failure, for the API and the console alike.
    pub fn status(&self) -> hyper::StatusCode {
        use hyper::StatusCode;
        match self {
            EnrollError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            EnrollError::NotFound(_) => StatusCode::NOT_FOUND,
            EnrollError::Forbidden(_) => StatusCode::FORBIDDEN,
            EnrollError::Conflict(_) => StatusCode::CONFLICT,
            EnrollError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            EnrollError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
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

impl From<NameError> for EnrollError {
    fn from(e: NameError) -> Self {
        EnrollError::Invalid(e.to_string())
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
