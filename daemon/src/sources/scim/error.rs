//! The SCIM server's error: the protocol's error body
//! (`idsync_schema::scim::error`) plus what the store and the writer can
//! report, which the pure protocol layer knows nothing of.
//!
//! A newtype because both sides of those conversions live in other crates;
//! it derefs to the body, so handlers read `e.status` as before.

use std::ops::Deref;

use idsync_schema::scim::error::ScimError as Body;
pub(crate) use idsync_schema::scim::error::ScimType;
use idsync_schema::Violation;
use idsync_store::reconcile::WriteError;
use idsync_store::writer::WriteFailed;
use idsync_store::StoreError;

/// A SCIM error response, as the server produces it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(transparent)]
pub struct ScimError(Body);

impl ScimError {
    /// A 400 with `scim_type`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self(Body::bad(scim_type, detail))
    }

    /// Any status with a `scimType` (409 `uniqueness`, 413 `tooMany`, …).
    pub fn typed(status: u16, scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self(Body::typed(status, scim_type, detail))
    }

    /// A status without a `scimType`.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self(Body::status(status, detail))
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self(Body::not_found(what, id))
    }

    /// 412 for a version that does not match `If-Match`.
    pub fn precondition(current: &str) -> Self {
        Self(Body::precondition(current))
    }

    /// A failure of the store: 500, logged, without internals in the body.
    pub fn internal(e: &dyn std::fmt::Display) -> Self {
        tracing::error!(error = %e, "SCIM request failed in the store");
        Self::status(500, "the store failed; see the daemon's log")
    }
}

impl Deref for ScimError {
    type Target = Body;
    fn deref(&self) -> &Body {
        &self.0
    }
}

impl From<Body> for ScimError {
    fn from(b: Body) -> Self {
        Self(b)
    }
}

impl From<Violation> for ScimError {
    fn from(v: Violation) -> Self {
        Self(v.into())
    }
}

impl From<WriteError> for ScimError {
    fn from(e: WriteError) -> Self {
        match e {
            WriteError::Rejected(v) => v.into(),
            WriteError::Store(e) => Self::internal(&e),
        }
    }
}

impl From<StoreError> for ScimError {
    fn from(e: StoreError) -> Self {
        Self::internal(&e)
    }
}

impl From<WriteFailed> for ScimError {
    fn from(w: WriteFailed) -> Self {
        match w {
            WriteFailed::Stopping => Self::status(503, "idsync is stopping"),
            WriteFailed::Internal(e) => Self::internal(&e),
        }
    }
}
