//! Certificate profiles, enrollment requests and issued certificates, and
//! the checks on them that need no I/O: key types, host names, domain
//! policies, subject templates and the request state machine.
//!
//! The CA backends (`idsync-connectors`) and the daemon's enrollment code
//! both decide with these functions, so a name refused at enrollment is
//! refused with the same words whichever protocol asked.

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::model::{Asset, Meta, Source};

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

/// Why a name or a policy entry is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0:?} is not a valid DNS name: {1}")]
    BadDnsName(String, &'static str),
    #[error("{0:?} is not an IP address")]
    BadIp(String),
    #[error("{0:?} is not an IP range (address or address/prefix)")]
    BadRange(String),
    #[error("{0:?} is outside the domain policy of profile {1:?}")]
    OutsidePolicy(String, String),
}

/// Check `name` as a DNS name of a certificate: a host name
/// ([`crate::rules::is_hostname`]), optionally behind one leading `*.`
/// label (a wildcard certificate); a `*` anywhere else is refused.
pub fn check_dns_name(name: &str) -> Result<(), NameError> {
    let rest = name.strip_prefix("*.").unwrap_or(name);
    if crate::rules::is_hostname(rest) && !rest.ends_with('.') {
        Ok(())
    } else {
        Err(NameError::BadDnsName(
            name.to_owned(),
            "labels of letters, digits and inner `-`, 63 characters each, 253 in all (a `*` only as the whole first label)",
        ))
    }
}

/// The DNS names of a comma-separated field (seed 002: "if more than one
/// DNS entry is required, the entries must be comma-separated"), trimmed,
/// lower-cased, empty entries dropped (the seed's asset row has `",,"`).
pub fn split_dns_list(field: &str) -> Vec<String> {
    field
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpRange {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl IpRange {
    /// `10.0.0.0/8`, `2001:db8::/32`, or one address.
    pub fn parse(s: &str) -> Result<IpRange, NameError> {
        let bad = || NameError::BadRange(s.to_owned());
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr.trim().parse().map_err(|_| bad())?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p.trim().parse::<u8>().map_err(|_| bad())?,
            None => max,
        };
        if prefix > max {
            return Err(bad());
        }
        Ok(IpRange { addr, prefix })
    }

    /// The mask of the prefix over 128 bits (IPv4 uses the low 32).
    fn bits(addr: IpAddr) -> (u128, u8) {
        match addr {
            IpAddr::V4(a) => (u32::from(a) as u128, 32),
            IpAddr::V6(a) => (u128::from(a), 128),
        }
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        if self.addr.is_ipv4() != ip.is_ipv4() {
            return false;
        }
        let (net, width) = Self::bits(self.addr);
        let (ip, _) = Self::bits(ip);
        let host_bits = u32::from(width - self.prefix);
        let shift = |v: u128| v.checked_shr(host_bits).unwrap_or(0);
        shift(net) == shift(ip)
    }

    /// The network address and mask as bytes (4 or 16 each), the form of an
    /// X.509 name constraint.
    pub fn address_and_mask(&self) -> (Vec<u8>, Vec<u8>) {
        let (net, width) = Self::bits(self.addr);
        let mask: u128 = if self.prefix == 0 {
            0
        } else {
            (!0u128 << (width - self.prefix)) & (!0u128 >> (128 - width))
        };
        let len = usize::from(width / 8);
        let bytes = |v: u128| v.to_be_bytes()[16 - len..].to_vec();
        (bytes(net & mask), bytes(mask))
    }
}

/// Which names a profile's certificates may carry. Empty: no domain policy
/// (any valid host name, any IP address).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DomainPolicy {
    /// Exact names (`www.example.org`) and suffixes (`*.example.org`: any
    /// name below example.org, not example.org itself).
    pub names: Vec<String>,
    /// Allowed IP addresses: `10.1.0.0/16`, `2001:db8::/32`, `192.0.2.7`.
    pub ip_ranges: Vec<String>,
}

impl DomainPolicy {
    /// Whether the policy restricts anything.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty() && self.ip_ranges.is_empty()
    }

    /// Check every entry.
    pub fn check(&self) -> Result<(), NameError> {
        for n in &self.names {
            check_dns_name(n)?;
        }
        for r in &self.ip_ranges {
            IpRange::parse(r)?;
        }
        Ok(())
    }

    /// Whether the DNS `name` is allowed.
    pub fn allows_dns(&self, name: &str) -> bool {
        if self.is_empty() {
            return true;
        }
        let name = name.to_ascii_lowercase();
        self.names.iter().any(|entry| {
            let entry = entry.to_ascii_lowercase();
            match entry.strip_prefix("*.") {
                Some(suffix) => name
                    .strip_suffix(suffix)
                    .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
                None => entry == name,
            }
        })
    }

    /// Whether the IP address is allowed.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.ranges().iter().any(|r| r.contains(ip))
    }

    /// The DNS subtrees of an X.509 name constraint that covers the policy:
    /// `example.org` for `*.example.org` (RFC 5280 subtrees also cover the
    /// name itself, so this is the looser, second line of defence).
    pub fn permitted_dns_subtrees(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .names
            .iter()
            .map(|n| n.strip_prefix("*.").unwrap_or(n).to_ascii_lowercase())
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The IP ranges, parsed (entries were checked when the profile was
    /// stored).
    pub fn ranges(&self) -> Vec<IpRange> {
        self.ip_ranges
            .iter()
            .filter_map(|r| IpRange::parse(r).ok())
            .collect()
    }
}

/// Check `dns` and `ips` as names of a certificate of `profile`: each DNS
/// name valid and inside the policy, each IP address parsed and inside it.
pub fn check_names(
    profile: &CertificateProfile,
    dns: &[String],
    ips: &[String],
) -> Result<Vec<IpAddr>, NameError> {
    for name in dns {
        check_dns_name(name)?;
        if !profile.domain_policy.allows_dns(name) {
            return Err(NameError::OutsidePolicy(name.clone(), profile.name.clone()));
        }
    }
    let mut parsed = Vec::with_capacity(ips.len());
    for ip in ips {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| NameError::BadIp(ip.clone()))?;
        if !profile.domain_policy.allows_ip(addr) {
            return Err(NameError::OutsidePolicy(ip.clone(), profile.name.clone()));
        }
        parsed.push(addr);
    }
    Ok(parsed)
}

/// The attributes a subject template may set.
pub const SUBJECT_ATTRIBUTES: [&str; 6] = ["CN", "O", "OU", "L", "ST", "C"];

/// The asset fields a subject template may use.
pub const TEMPLATE_FIELDS: [&str; 8] = [
    "name",
    "organization",
    "country",
    "description",
    "type",
    "owner",
    "sid",
    "dnsName",
];

/// Why a subject template or its result is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    #[error("subject template {0:?}: `{1}` is not ATTRIBUTE=value")]
    NotAPair(String, String),
    #[error("subject template {0:?}: attribute `{1}` is not one of CN, O, OU, L, ST, C")]
    UnknownAttribute(String, String),
    #[error("subject template {0:?}: `{{{1}}}` is not a field (name, organization, country, description, type, owner, sid, dnsName)")]
    UnknownField(String, String),
    #[error("subject template {0:?}: an unclosed `{{`")]
    Unclosed(String),
    #[error("the subject has no attribute left once empty fields are dropped")]
    Empty,
    #[error("country {0:?} is not two letters (ISO 3166)")]
    BadCountry(String),
    #[error("subject attribute {0} is longer than 64 characters")]
    TooLong(String),
}

/// The values a subject template is filled with: an asset's, or what the
/// requester typed as "certificate data" (seed 002).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
pub struct CertificateData {
    /// The asset's name (a host name for servers), the `{name}` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub asset_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dns_names: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ip_addresses: Vec<String>,
}

impl CertificateData {
    /// The data an asset gives (seed 002: "the asset data is used as
    /// predefined values for the request").
    pub fn from_asset(asset: &Asset) -> Self {
        Self {
            name: Some(asset.name.clone()),
            organization: asset.organization.clone(),
            country: asset.country.clone(),
            description: asset.description.clone(),
            asset_type: asset.asset_type.clone(),
            owner: asset.owner.clone(),
            sid: asset.sid.clone(),
            dns_names: asset.dns_names.clone(),
            ip_addresses: asset.ip_addresses.clone(),
        }
    }

    /// Fill what `self` leaves empty from `defaults` (typed data wins over
    /// the asset's).
    pub fn or(mut self, defaults: CertificateData) -> Self {
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = defaults.$f; } )* };
        }
        fill!(
            name,
            organization,
            country,
            description,
            asset_type,
            owner,
            sid
        );
        if self.dns_names.is_empty() {
            self.dns_names = defaults.dns_names;
        }
        if self.ip_addresses.is_empty() {
            self.ip_addresses = defaults.ip_addresses;
        }
        self
    }

    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "name" => self.name.as_deref(),
            "organization" => self.organization.as_deref(),
            "country" => self.country.as_deref(),
            "description" => self.description.as_deref(),
            "type" => self.asset_type.as_deref(),
            "owner" => self.owner.as_deref(),
            "sid" => self.sid.as_deref(),
            "dnsName" => self.dns_names.first().map(String::as_str),
            _ => None,
        }
    }
}

/// Parse a subject template (`CN={name},O={organization},C={country}`)
/// into its attribute/value parts, checking attributes and fields.
fn parse_template(template: &str) -> Result<Vec<(&str, &str)>, SubjectError> {
    let t = || template.to_owned();
    let mut parts = Vec::new();
    for part in template.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (attr, value) = part
            .split_once('=')
            .ok_or_else(|| SubjectError::NotAPair(t(), part.to_owned()))?;
        let attr = attr.trim();
        if !SUBJECT_ATTRIBUTES.contains(&attr) {
            return Err(SubjectError::UnknownAttribute(t(), attr.to_owned()));
        }
        let mut rest = value;
        while let Some(open) = rest.find('{') {
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| SubjectError::Unclosed(t()))?;
            let field = &rest[open + 1..open + close];
            if !TEMPLATE_FIELDS.contains(&field) {
                return Err(SubjectError::UnknownField(t(), field.to_owned()));
            }
            rest = &rest[open + close + 1..];
        }
        parts.push((attr, value.trim()));
    }
    Ok(parts)
}

/// Check a template without data.
pub fn check_subject_template(template: &str) -> Result<(), SubjectError> {
    if parse_template(template)?.is_empty() {
        return Err(SubjectError::Empty);
    }
    Ok(())
}

/// Fill `template` with `data`: the subject's attributes in order. An
/// attribute whose fields are all empty is left out (an asset with no
/// country gets no `C`).
pub fn render_subject(
    template: &str,
    data: &CertificateData,
) -> Result<Vec<(String, String)>, SubjectError> {
    let mut out = Vec::new();
    for (attr, value) in parse_template(template)? {
        let mut rendered = String::new();
        let mut any_field = false;
        let mut any_value = false;
        let mut rest = value;
        while let Some(open) = rest.find('{') {
            rendered.push_str(&rest[..open]);
            let close = open + rest[open..].find('}').expect("checked by parse_template");
            any_field = true;
            if let Some(v) = data.field(&rest[open + 1..close]).filter(|v| !v.is_empty()) {
                rendered.push_str(v);
                any_value = true;
            }
            rest = &rest[close + 1..];
        }
        rendered.push_str(rest);
        if any_field && !any_value {
            continue;
        }
        let rendered = rendered.trim().to_owned();
        if rendered.is_empty() {
            continue;
        }
        if attr == "C"
            && !(rendered.len() == 2 && rendered.bytes().all(|b| b.is_ascii_alphabetic()))
        {
            return Err(SubjectError::BadCountry(rendered));
        }
        if rendered.chars().count() > 64 {
            return Err(SubjectError::TooLong(attr.to_owned()));
        }
        out.push((attr.to_owned(), rendered));
    }
    if out.is_empty() {
        return Err(SubjectError::Empty);
    }
    Ok(out)
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
    /// `CN={name},O={organization},C={country}` (see [`TEMPLATE_FIELDS`]).
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
    pub meta: Meta,
}

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
    pub meta: Meta,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_names() {
        for ok in [
            "a.example.org",
            "*.example.org",
            "x-1.y",
            "localhost",
            "A.B",
        ] {
            assert_eq!(check_dns_name(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "a..b",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a.*.b",
            "**.a",
            "é.org",
            "a.org.",
            &"a".repeat(64),
        ] {
            assert!(check_dns_name(bad).is_err(), "{bad:?}");
        }
        assert!(check_dns_name(&format!("{}.org", ["a"; 130].join("."))).is_err());
        assert_eq!(split_dns_list(" A.org, b.org,,"), ["a.org", "b.org"]);
        assert!(split_dns_list(",,").is_empty());
    }

    #[test]
    fn domain_policy() {
        let p = DomainPolicy {
            names: vec!["www.example.org".into(), "*.corp.example.org".into()],
            ip_ranges: vec![
                "10.1.0.0/16".into(),
                "2001:db8::/32".into(),
                "192.0.2.7".into(),
            ],
        };
        assert!(p.check().is_ok());
        assert!(p.allows_dns("WWW.example.org"));
        assert!(p.allows_dns("a.corp.example.org"));
        assert!(p.allows_dns("a.b.corp.example.org"));
        assert!(p.allows_dns("*.corp.example.org"));
        assert!(!p.allows_dns("corp.example.org"));
        assert!(!p.allows_dns("xcorp.example.org"));
        assert!(!p.allows_dns("api.example.org"));
        assert!(p.allows_ip("10.1.200.3".parse().unwrap()));
        assert!(!p.allows_ip("10.2.0.1".parse().unwrap()));
        assert!(p.allows_ip("2001:db8::1".parse().unwrap()));
        assert!(p.allows_ip("192.0.2.7".parse().unwrap()));
        assert!(!p.allows_ip("192.0.2.8".parse().unwrap()));
        assert_eq!(
            p.permitted_dns_subtrees(),
            ["corp.example.org", "www.example.org"]
        );
        assert!(DomainPolicy::default().allows_dns("anything.at.all"));
        let r = IpRange::parse("10.1.0.0/16").unwrap();
        assert_eq!(
            r.address_and_mask(),
            (vec![10, 1, 0, 0], vec![255, 255, 0, 0])
        );
        assert!(IpRange::parse("10.0.0.0/33").is_err());
        assert!(IpRange::parse("x/8").is_err());
        assert!(IpRange::parse("0.0.0.0/0")
            .unwrap()
            .contains("8.8.8.8".parse().unwrap()));
    }

    #[test]
    fn subjects() {
        let data = CertificateData {
            name: Some("web1.example.org".into()),
            organization: Some("Nexus".into()),
            country: None,
            ..Default::default()
        };
        let s = render_subject("CN={name}, O={organization}, C={country}", &data).unwrap();
        assert_eq!(
            s,
            [
                ("CN".into(), "web1.example.org".into()),
                ("O".into(), "Nexus".into())
            ]
        );
        let bad_country = CertificateData {
            country: Some("Sweden".into()),
            ..data.clone()
        };
        assert!(render_subject("CN={name},C={country}", &bad_country).is_err());
        assert!(check_subject_template("CN={nope}").is_err());
        assert!(check_subject_template("XX=a").is_err());
        assert!(check_subject_template("CN={name").is_err());
        assert!(
            render_subject("C={country}", &data).is_err(),
            "nothing left"
        );
        let typed = CertificateData {
            organization: Some("Other".into()),
            ..Default::default()
        };
        assert_eq!(typed.or(data).organization.as_deref(), Some("Other"));
    }

    #[test]
    fn profiles_and_requests() {
        let mut p = ProfileSettings::new("Server", Protocol::P10);
        assert!(p.check().is_ok());
        p.domain_policy.names.push("bad name".into());
        assert!(p.check().is_err());
        let p: ProfileSettings = serde_json::from_str(r#"{"name":"x","protocol":"p12"}"#).unwrap();
        assert_eq!(p.key_types.len(), 6);
        assert!(
            serde_json::from_str::<ProfileSettings>(r#"{"name":"x","protocol":"p12","k":1}"#)
                .is_err()
        );
        use RequestStatus::*;
        assert!(PendingApproval.may_become(Approved));
        assert!(Approved.may_become(Issued));
        assert!(!Rejected.may_become(Approved));
        assert!(!Issued.may_become(Issued));
        assert_eq!(
            RequestStatus::parse("pending_approval"),
            Some(PendingApproval)
        );
    }
}
