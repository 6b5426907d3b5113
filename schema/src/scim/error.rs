//! The SCIM error (RFC 7644 §3.12): an HTTP status, an optional `scimType`
//! and a human-readable detail. Every failure of the SCIM layer ends as one
//! of these, so every refusal has the body identity providers expect.
//!
//! Pure, like the rest of the protocol layer: the daemon wraps it to add
//! what its store and writer report (`daemon/src/sources/scim/error.rs`).
//!
//! Rule violations from `idsync-schema` map here once: a value that breaks
//! a rule is `invalidValue`, a value another object holds is `uniqueness`
//! (409), so a CSV report and a SCIM error name the same rule.

use serde_json::{json, Value};

use crate::{Rule, Violation};

/// The `scimType` keywords of RFC 7644 §3.12 that idsync uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScimType {
    InvalidFilter,
    TooMany,
    Uniqueness,
    Mutability,
    InvalidSyntax,
    InvalidPath,
    NoTarget,
    InvalidValue,
    /// A cursor the server did not give (IETF SCIM cursor pagination).
    InvalidCursor,
}

impl ScimType {
    /// The keyword as it appears in the error body.
    pub fn as_str(self) -> &'static str {
        match self {
            ScimType::InvalidFilter => "invalidFilter",
            ScimType::TooMany => "tooMany",
            ScimType::Uniqueness => "uniqueness",
            ScimType::Mutability => "mutability",
            ScimType::InvalidSyntax => "invalidSyntax",
            ScimType::InvalidPath => "invalidPath",
            ScimType::NoTarget => "noTarget",
            ScimType::InvalidValue => "invalidValue",
            ScimType::InvalidCursor => "invalidCursor",
        }
    }
}

/// A SCIM error response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status} {}: {detail}", .scim_type.map_or("", ScimType::as_str))]
pub struct ScimError {
    pub status: u16,
    pub scim_type: Option<ScimType>,
    pub detail: String,
}

impl ScimError {
    /// A 400 with `scim_type`.
    pub fn bad(scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status: 400,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// Any status with a `scimType` (409 `uniqueness`, 413 `tooMany`, …).
    pub fn typed(status: u16, scim_type: ScimType, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: Some(scim_type),
            detail: detail.into(),
        }
    }

    /// A status without a `scimType`.
    pub fn status(status: u16, detail: impl Into<String>) -> Self {
        Self {
            status,
            scim_type: None,
            detail: detail.into(),
        }
    }

    /// 404 for a resource that does not exist.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::status(404, format!("{what} {id} not found"))
    }

    /// 412 for a version that does not match `If-Match`.
    pub fn precondition(current: &str) -> Self {
        Self::status(
            412,
            format!("the resource changed: its version is now {current}"),
        )
    }

    /// The error body.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": self.status.to_string(),
            "detail": self.detail,
        });
        if let Some(t) = self.scim_type {
            v["scimType"] = json!(t.as_str());
        }
        v
    }
}

impl From<Violation> for ScimError {
    fn from(v: Violation) -> Self {
        match v.rule {
            Rule::NotUnique => Self {
                status: 409,
                scim_type: Some(ScimType::Uniqueness),
                detail: v.to_string(),
            },
            _ => Self::bad(ScimType::InvalidValue, v.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_map_to_scim_types() {
        let e: ScimError = Violation::new("mail", "a@b", Rule::NotUnique).into();
        assert_eq!((e.status, e.scim_type), (409, Some(ScimType::Uniqueness)));
        let e: ScimError = Violation::new("mail", "x", Rule::Mail).into();
        assert_eq!((e.status, e.scim_type), (400, Some(ScimType::InvalidValue)));
        assert_eq!(e.to_json()["scimType"], "invalidValue");
        assert_eq!(e.to_json()["status"], "400");
    }
}
