//! The record of an issued certificate: what the CA signed, kept for
//! download and for the "confirm installation" step.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use super::profile::KeyType;
use super::revocation::Revocation;
use crate::model::Meta;

/// An issued certificate, kept with its asset for download.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    pub id: Uuid,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub subject: String,
    pub profile: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<Uuid>,
    pub request: Uuid,
    pub key_type: KeyType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    /// The certificate, PEM.
    pub pem: String,
    /// The issuing chain up to the root, PEM, leaf's issuer first.
    pub chain: String,
    /// Set by the "confirm installation" step (seed 002).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub installed: Option<OffsetDateTime>,
    /// Set once, by `idsync certificates revoke`; the certificate is then
    /// in its issuer's CRL until it expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked: Option<Revocation>,
    pub meta: Meta,
}
