//! Subject templates (`CN={name},O={organization},C={country}`): checked
//! when a profile is stored, filled with an asset's or a requester's data
//! when a certificate is requested.

use serde::{Deserialize, Serialize};

use crate::model::Asset;

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
