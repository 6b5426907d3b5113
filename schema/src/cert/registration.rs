//! ACME and SCEP registrations (seed 002: "the asset is only registered on
//! the Certificate Manager side"; the device then enrolls itself): which
//! asset may enroll, with which profile, for which names, until when, and
//! the state machine they move through.
//!
//! A registration holds no secret. Its SCEP challenge is kept as a SHA-256
//! hash; its ACME external account binding key is derived from a key of
//! the daemon's own and the registration's id, never stored.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::profile::Protocol;
use crate::model::Meta;

/// Where a registration stands (DESIGN.md, state machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationStatus {
    PendingApproval,
    Active,
    /// Its secret was used (an ACME account bound, a SCEP challenge spent).
    Used,
    Expired,
    Revoked,
    Rejected,
}

impl RegistrationStatus {
    pub const ALL: [RegistrationStatus; 6] = [
        RegistrationStatus::PendingApproval,
        RegistrationStatus::Active,
        RegistrationStatus::Used,
        RegistrationStatus::Expired,
        RegistrationStatus::Revoked,
        RegistrationStatus::Rejected,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RegistrationStatus::PendingApproval => "pending_approval",
            RegistrationStatus::Active => "active",
            RegistrationStatus::Used => "used",
            RegistrationStatus::Expired => "expired",
            RegistrationStatus::Revoked => "revoked",
            RegistrationStatus::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<RegistrationStatus> {
        Self::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether a registration may move from `self` to `next`. One without
    /// approval is born `active`.
    pub fn may_become(self, next: RegistrationStatus) -> bool {
        use RegistrationStatus::*;
        matches!(
            (self, next),
            (PendingApproval, Active | Rejected | Expired | Revoked)
                | (Active, Used | Expired | Revoked)
                // A used registration keeps its names until it expires
                // (an ACME account orders under it), or is revoked.
                | (Used, Expired | Revoked)
        )
    }

    /// Whether nothing can follow.
    pub fn is_final(self) -> bool {
        RegistrationStatus::ALL
            .iter()
            .all(|next| !self.may_become(*next))
    }
}

impl fmt::Display for RegistrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One registration of an asset for ACME or SCEP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registration {
    pub id: Uuid,
    /// `acme` or `scep`.
    pub protocol: Protocol,
    pub asset: Uuid,
    pub profile: String,
    /// The DNS names the device may get certificates for, checked against
    /// the asset, the profile and its domain policy when registered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    pub status: RegistrationStatus,
    /// The token that registered.
    pub requester: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// SCEP: the SHA-256 of the challenge password, hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub challenge_sha256: Option<String>,
    /// ACME: the account its external account binding made (one per
    /// registration: the binding is single use).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<AcmeAccount>,
    pub meta: Meta,
}

/// Whether an ACME account may still act (RFC 8555 §7.1.2; `revoked` is
/// the registration's own status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AcmeAccountStatus {
    Valid,
    Deactivated,
}

/// The ACME account bound to a registration: its public key (a JWK; keys
/// are public) and what the client told about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcmeAccount {
    /// The account key as canonical JWK JSON (RFC 7638 member order).
    pub key: String,
    /// Its RFC 7638 thumbprint (base64url SHA-256): how a `jwk`-signed
    /// request finds its account.
    pub thumbprint: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<String>,
    pub status: AcmeAccountStatus,
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
}

impl Registration {
    /// Whether it has passed its expiry at `now` (its status may not say
    /// so yet: the daemon moves it to `expired` within a minute).
    pub fn is_past(&self, now: OffsetDateTime) -> bool {
        self.expires <= now
    }
}

#[cfg(test)]
mod tests {
    use super::RegistrationStatus::*;
    use super::*;

    #[test]
    fn the_state_machine_of_design_md() {
        assert!(PendingApproval.may_become(Active));
        assert!(PendingApproval.may_become(Rejected));
        assert!(Active.may_become(Used));
        assert!(Active.may_become(Revoked));
        assert!(Used.may_become(Expired));
        assert!(!Active.may_become(PendingApproval));
        assert!(!Used.may_become(Active));
        assert!(!Rejected.may_become(Active));
        for s in [Expired, Revoked, Rejected] {
            assert!(s.is_final(), "{s}");
        }
        for s in [PendingApproval, Active, Used] {
            assert!(!s.is_final(), "{s}");
        }
        for s in RegistrationStatus::ALL {
            assert_eq!(RegistrationStatus::parse(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap(), format!("\"{s}\""));
        }
    }
}
