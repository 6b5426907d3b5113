//! Why and when a certificate was revoked: the reasons of RFC 5280 §5.3.1
//! an operator may give, kept with the certificate and written into its
//! issuer's CRL.
//!
//! Only the final reasons are offered. `certificateHold` (and its undo,
//! `removeFromCRL`) would make a revocation reversible, which idsync does
//! not do; `cACompromise` and `aACompromise` are about CAs and attribute
//! authorities, not the end-entity certificates idsync issues.

use std::fmt;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// A reason code of RFC 5280 §5.3.1, as the CLI and the API name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RevocationReason {
    Unspecified,
    KeyCompromise,
    AffiliationChanged,
    Superseded,
    CessationOfOperation,
    PrivilegeWithdrawn,
}

impl RevocationReason {
    /// Every reason, in the order of their RFC 5280 codes.
    pub const ALL: [RevocationReason; 6] = [
        RevocationReason::Unspecified,
        RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged,
        RevocationReason::Superseded,
        RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RevocationReason::Unspecified => "unspecified",
            RevocationReason::KeyCompromise => "key-compromise",
            RevocationReason::AffiliationChanged => "affiliation-changed",
            RevocationReason::Superseded => "superseded",
            RevocationReason::CessationOfOperation => "cessation-of-operation",
            RevocationReason::PrivilegeWithdrawn => "privilege-withdrawn",
        }
    }

    /// Its RFC 5280 §5.3.1 code (ACME's `revokeCert` sends codes).
    pub fn code(self) -> u8 {
        match self {
            RevocationReason::Unspecified => 0,
            RevocationReason::KeyCompromise => 1,
            RevocationReason::AffiliationChanged => 3,
            RevocationReason::Superseded => 4,
            RevocationReason::CessationOfOperation => 5,
            RevocationReason::PrivilegeWithdrawn => 9,
        }
    }

    /// The reason of RFC 5280 code `code`, if it is one idsync offers.
    pub fn from_code(code: u64) -> Option<RevocationReason> {
        Self::ALL.into_iter().find(|r| u64::from(r.code()) == code)
    }

    /// The reason named `s`; the error lists the names there are.
    pub fn parse(s: &str) -> Result<RevocationReason, String> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|r| r.as_str()).collect();
                format!(
                    "{s:?} is not a revocation reason; use one of {}",
                    names.join(", ")
                )
            })
    }
}

impl fmt::Display for RevocationReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A revocation: final once recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Revocation {
    /// When idsync recorded it (the CRL entry's revocationDate).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub reason: RevocationReason,
    /// The token that revoked it.
    pub by: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_parse_by_their_names_only() {
        for r in RevocationReason::ALL {
            assert_eq!(RevocationReason::parse(r.as_str()), Ok(r));
            let json = serde_json::to_string(&r).unwrap();
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        let e = RevocationReason::parse("certificate-hold").unwrap_err();
        assert!(e.contains("key-compromise"), "{e}");
        assert!(RevocationReason::parse("KeyCompromise").is_err());
    }
}
