//! Certificate profiles: how a profile's certificates are enrolled
//! ([`Protocol`]), which keys and usages they may have, and the settings a
//! profile is configured with, checked before one is stored.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::policy::{DomainPolicy, NameError};
use super::subject::{check_subject_template, SubjectError};
use crate::model::{Meta, Source};

/// How a certificate of a profile is enrolled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", try_from = "String")]
pub enum Protocol {
    /// The requester uploads a PKCS#10 CSR; idsync signs it.
    P10,
    /// idsync generates the key and returns a password-protected PKCS#12.
    P12,
    Acme,
    Scep,
}

impl Protocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::P10 => "p10",
            Protocol::P12 => "p12",
            Protocol::Acme => "acme",
            Protocol::Scep => "scep",
        }
    }

    pub fn parse(s: &str) -> Option<Protocol> {
        Some(match s.to_ascii_lowercase().as_str() {
            "p10" => Protocol::P10,
            "p12" => Protocol::P12,
            "acme" => Protocol::Acme,
            "scep" => Protocol::Scep,
            _ => return None,
        })
    }
}

// Deserialised through these, so that a typo in the configuration reads
// "`x` is not …" with the valid values, whatever the deserialiser.
impl TryFrom<String> for Protocol {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Protocol::parse(&s).ok_or_else(|| format!("`{s}` is not p10, p12, acme or scep"))
    }
}

impl TryFrom<String> for KeyType {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        KeyType::parse(&s).ok_or_else(|| {
            format!("`{s}` is not ecdsa-p256, ecdsa-p384, rsa-2048, rsa-3072, rsa-4096 or ed25519")
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A key algorithm and size a profile may allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String")]
pub enum KeyType {
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "ecdsa-p384")]
    EcdsaP384,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    #[serde(rename = "rsa-3072")]
    Rsa3072,
    #[serde(rename = "rsa-4096")]
    Rsa4096,
    #[serde(rename = "ed25519")]
    Ed25519,
}

impl KeyType {
    /// Every key type, the default of a profile.
    pub const ALL: [KeyType; 6] = [
        KeyType::EcdsaP256,
        KeyType::EcdsaP384,
        KeyType::Rsa2048,
        KeyType::Rsa3072,
        KeyType::Rsa4096,
        KeyType::Ed25519,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::EcdsaP384 => "ecdsa-p384",
            KeyType::Rsa2048 => "rsa-2048",
            KeyType::Rsa3072 => "rsa-3072",
            KeyType::Rsa4096 => "rsa-4096",
            KeyType::Ed25519 => "ed25519",
        }
    }

    pub fn parse(s: &str) -> Option<KeyType> {
        KeyType::ALL
            .into_iter()
            .find(|k| k.as_str().eq_ignore_ascii_case(s))
    }

    /// The RSA key of `bits` bits, if that is a size idsync knows.
    pub fn rsa(bits: usize) -> Option<KeyType> {
        match bits {
            2048 => Some(KeyType::Rsa2048),
            3072 => Some(KeyType::Rsa3072),
            4096 => Some(KeyType::Rsa4096),
            _ => None,
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096)
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an issued certificate may be used for (its extended key usage).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Usage {
    /// TLS server (`id-kp-serverAuth`): servers, the seeds' assets.
    ServerAuth,
    /// TLS client (`id-kp-clientAuth`): devices, workplaces.
    ClientAuth,
    /// S/MIME (`id-kp-emailProtection`).
    EmailProtection,
    /// Code signing (`id-kp-codeSigning`).
    CodeSigning,
}

/// Whether a certificate profile may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProfileState {
    #[default]
    Active,
    Inactive,
}

fn default_backend() -> String {
    "local".into()
}
fn default_key_types() -> Vec<KeyType> {
    KeyType::ALL.to_vec()
}
fn default_validity_days() -> u32 {
    365
}
fn default_subject() -> String {
    "CN={name},O={organization},C={country}".into()
}
fn default_usages() -> Vec<Usage> {
    vec![Usage::ServerAuth]
}

/// The settings of a profile, as the configuration file, the admin API and
/// the store carry them (the stored profile adds id, source and meta).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub struct ProfileSettings {
    pub name: String,
    pub protocol: Protocol,
    /// The CA backend that issues (`local`; ACME and SCEP backends later).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// Key types a CSR may carry, or idsync may generate.
    #[serde(default = "default_key_types")]
    pub key_types: Vec<KeyType>,
    /// Days from issuance to `notAfter`.
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// `CN={name},O={organization},C={country}` (see
    /// [`TEMPLATE_FIELDS`](super::TEMPLATE_FIELDS)).
    #[serde(default = "default_subject")]
    pub subject: String,
    /// Extended key usages of issued certificates.
    #[serde(default = "default_usages")]
    pub usages: Vec<Usage>,
    #[serde(default, skip_serializing_if = "DomainPolicy::is_empty")]
    pub domain_policy: DomainPolicy,
    /// Enrollments wait for an approver's yes.
    #[serde(default)]
    pub requires_approval: bool,
    /// ACME: a registration's names count as authorized, with no challenge
    /// (the operator vouched for them when registering the asset).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub preauthorized: bool,
    #[serde(default)]
    pub state: ProfileState,
}

/// Why profile settings are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    #[error("profile name must be 1 to 64 characters, not {0:?}")]
    BadName(String),
    #[error("profile {0:?}: no key type allowed")]
    NoKeyTypes(String),
    #[error("profile {0:?}: validity_days must be 1 to 3650, not {1}")]
    BadValidity(String, u32),
    #[error("profile {0:?}: no usage")]
    NoUsages(String),
    #[error("profile {0:?}: backend {1:?} is not `local` (ACME and SCEP backends come later)")]
    UnknownBackend(String, String),
    #[error("profile {0:?}: {1}")]
    Policy(String, NameError),
    #[error("profile {0:?}: {1}")]
    Subject(String, SubjectError),
}

impl ProfileSettings {
    /// Settings with the defaults for `name` and `protocol`.
    pub fn new(name: impl Into<String>, protocol: Protocol) -> Self {
        Self {
            name: name.into(),
            protocol,
            backend: default_backend(),
            key_types: default_key_types(),
            validity_days: default_validity_days(),
            subject: default_subject(),
            usages: default_usages(),
            domain_policy: DomainPolicy::default(),
            requires_approval: false,
            preauthorized: false,
            state: ProfileState::Active,
        }
    }

    /// Every check serde cannot express.
    pub fn check(&self) -> Result<(), ProfileError> {
        let name = || self.name.clone();
        if self.name.trim().is_empty() || self.name.chars().count() > 64 {
            return Err(ProfileError::BadName(name()));
        }
        if self.key_types.is_empty() {
            return Err(ProfileError::NoKeyTypes(name()));
        }
        if !(1..=3650).contains(&self.validity_days) {
            return Err(ProfileError::BadValidity(name(), self.validity_days));
        }
        if self.usages.is_empty() {
            return Err(ProfileError::NoUsages(name()));
        }
        if self.backend != "local" {
            return Err(ProfileError::UnknownBackend(name(), self.backend.clone()));
        }
        self.domain_policy
            .check()
            .map_err(|e| ProfileError::Policy(name(), e))?;
        check_subject_template(&self.subject).map_err(|e| ProfileError::Subject(name(), e))
    }
}

/// A certificate profile as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CertificateProfile {
    pub id: Uuid,
    #[serde(flatten)]
    pub settings: ProfileSettings,
    pub source: Source,
    pub meta: Meta,
}

impl std::ops::Deref for CertificateProfile {
    type Target = ProfileSettings;
    fn deref(&self) -> &ProfileSettings {
        &self.settings
    }
}
