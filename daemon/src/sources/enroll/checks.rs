//! What a profile and an asset allow: every check an enrollment passes
//! before the CA is asked (state, protocol, key type, names, domain
//! policy), and again inside the commit, since either may have changed
//! meanwhile.

use std::net::IpAddr;

use idsync_connectors::ca::Csr;
use idsync_schema::cert::{self, render_subject};
use idsync_schema::{
    Asset, AssetState, CertificateData, CertificateProfile, EnrollmentRequest, KeyType,
    ProfileState, Protocol,
};
use idsync_store::reconcile::Tx;

use super::{EnrollError, Enrollment, Target};

/// A profile and asset, resolved and checked for an enrollment.
pub(super) struct Resolved {
    pub profile: CertificateProfile,
    pub asset: Option<Asset>,
}

impl Enrollment {
    /// Find the asset and profile of `target` and check they allow an
    /// enrollment with `protocol`.
    pub(super) fn resolve(
        &self,
        target: &Target,
        protocol: Protocol,
    ) -> Result<Resolved, EnrollError> {
        let asset = target.asset.as_deref().map(|a| self.asset(a)).transpose()?;
        if let Some(a) = &asset {
            if a.state != AssetState::Active {
                return Err(EnrollError::Conflict(format!(
                    "asset {:?} is pending: it has no active certificate profile (assign one first)",
                    a.name
                )));
            }
        }
        let name = target
            .profile
            .clone()
            .or_else(|| asset.as_ref().and_then(|a| a.certificate_profile.clone()))
            .ok_or_else(|| EnrollError::Invalid("name an asset or a certificate profile".into()))?;
        let profile = self.profile(&name)?;
        check_usable(&profile, protocol)?;
        Ok(Resolved { profile, asset })
    }
}

/// Refuse a profile that is inactive or of another protocol.
pub(super) fn check_usable(
    profile: &CertificateProfile,
    protocol: Protocol,
) -> Result<(), EnrollError> {
    if profile.state != ProfileState::Active {
        return Err(EnrollError::Conflict(format!(
            "certificate profile {:?} is inactive",
            profile.name
        )));
    }
    if profile.protocol != protocol {
        return Err(EnrollError::Invalid(format!(
            "certificate profile {:?} enrolls with {}, not {protocol}",
            profile.name, profile.protocol
        )));
    }
    Ok(())
}

/// Refuse a key type the profile does not allow.
pub(super) fn check_key_type(
    profile: &CertificateProfile,
    got: KeyType,
) -> Result<(), EnrollError> {
    if profile.key_types.contains(&got) {
        return Ok(());
    }
    let allowed: Vec<&str> = profile.key_types.iter().map(|k| k.as_str()).collect();
    Err(EnrollError::Invalid(format!(
        "key type {got} is not allowed by certificate profile {:?} (allowed: {})",
        profile.name,
        allowed.join(", ")
    )))
}

/// DNS names as the seed types them (comma-separated in one field) become
/// one name each, lower-cased.
pub(super) fn normalise(mut data: CertificateData) -> CertificateData {
    data.dns_names = data
        .dns_names
        .iter()
        .flat_map(|d| cert::split_dns_list(d))
        .collect();
    data.ip_addresses = data
        .ip_addresses
        .iter()
        .map(|i| i.trim().to_owned())
        .collect();
    data
}

/// Fill what the request leaves empty from the asset.
pub(super) fn complete(data: CertificateData, asset: Option<&Asset>) -> CertificateData {
    match asset {
        Some(a) => data.or(CertificateData::from_asset(a)),
        None => data,
    }
}

/// A rendered subject: attribute, value.
pub(super) type Subject = Vec<(String, String)>;

/// Check every name of `data` against the profile and render the subject.
/// No value may hold a control character. Under a domain policy the
/// common name is a name the certificate asserts too: it must be a host
/// name (or an address) inside the policy, compared in the one form a
/// verifier uses (no trailing dot, lower case), and it is written in that
/// form.
pub(super) fn check_data(
    profile: &CertificateProfile,
    data: &CertificateData,
) -> Result<(Subject, Vec<IpAddr>), EnrollError> {
    let ips = cert::check_names(profile, &data.dns_names, &data.ip_addresses)?;
    let mut subject =
        render_subject(&profile.subject, data).map_err(|e| EnrollError::Invalid(e.to_string()))?;
    for (attr, value) in &mut subject {
        if value.chars().any(char::is_control) {
            return Err(EnrollError::Invalid(format!(
                "{attr} {value:?} holds a control character"
            )));
        }
        if attr == "CN" {
            *value = check_common_name(profile, value)?;
        }
    }
    Ok((subject, ips))
}

/// The common name as the certificate will carry it. A host name loses
/// its trailing dots and is lower-cased, then must be inside the policy;
/// with a policy, a CN that is neither a host name nor an allowed address
/// is refused (a verifier falls back to the CN when there is no SAN).
fn check_common_name(profile: &CertificateProfile, cn: &str) -> Result<String, EnrollError> {
    let policy = &profile.domain_policy;
    let host = cn.trim_end_matches('.').to_ascii_lowercase();
    let outside = || {
        EnrollError::Invalid(
            cert::NameError::OutsidePolicy(cn.to_owned(), profile.name.clone()).to_string(),
        )
    };
    if host.contains('.') && cert::check_dns_name(&host).is_ok() {
        return if policy.allows_dns(&host) {
            Ok(host)
        } else {
            Err(outside())
        };
    }
    if let Ok(addr) = cn.parse::<IpAddr>() {
        return if policy.allows_ip(addr) {
            Ok(cn.to_owned())
        } else {
            Err(outside())
        };
    }
    if policy.is_empty() {
        return Ok(cn.to_owned());
    }
    Err(EnrollError::Invalid(format!(
        "CN {cn:?} is not a host name: profile {:?} has a domain policy, so its common name must be a name inside it",
        profile.name
    )))
}

/// The subject fields of a CSR as certificate data: CN as the name, O, C.
pub(super) fn csr_subject_data(csr: &Csr) -> CertificateData {
    let get = |attr: &str| {
        csr.subject_attributes
            .iter()
            .find(|(a, _)| a == attr)
            .map(|(_, v)| v.clone())
            .filter(|v| !v.is_empty())
    };
    CertificateData {
        name: get("CN"),
        organization: get("O"),
        country: get("C"),
        ..Default::default()
    }
}

/// The asset and profile still allow the request (they may have changed
/// between the check and the commit).
pub(super) fn recheck(tx: &Tx<'_>, request: &EnrollmentRequest) -> Result<(), EnrollError> {
    let profile = tx.profile(&request.profile)?.ok_or_else(|| {
        EnrollError::Conflict(format!(
            "certificate profile {:?} was deleted",
            request.profile
        ))
    })?;
    check_usable(&profile, request.protocol)?;
    if let Some(id) = request.asset {
        match tx.asset(id)? {
            Some(a) if a.state == AssetState::Active => {}
            Some(a) => {
                return Err(EnrollError::Conflict(format!(
                    "asset {:?} became pending",
                    a.name
                )))
            }
            None => return Err(EnrollError::Conflict(format!("asset {id} was deleted"))),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use idsync_schema::{CertificateProfile, Meta, ProfileSettings, Protocol, Source};

    use super::*;

    fn profile(policy: &[&str]) -> CertificateProfile {
        let mut settings = ProfileSettings::new("Web", Protocol::P10);
        settings.subject = "CN={name}".into();
        settings.domain_policy.names = policy.iter().map(|s| s.to_string()).collect();
        CertificateProfile {
            id: uuid::Uuid::nil(),
            settings,
            source: Source::Api,
            meta: Meta::new(time::OffsetDateTime::UNIX_EPOCH),
        }
    }

    fn cn(profile: &CertificateProfile, name: &str) -> Result<String, String> {
        let data = CertificateData {
            name: Some(name.into()),
            ..Default::default()
        };
        check_data(profile, &data)
            .map(|(subject, _)| subject[0].1.clone())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_common_name_cannot_leave_the_domain_policy() {
        let p = profile(&["*.example.org"]);
        assert_eq!(cn(&p, "web1.example.org").unwrap(), "web1.example.org");
        assert_eq!(cn(&p, "WEB1.Example.org.").unwrap(), "web1.example.org");
        for evil in ["evil.com.", "evil.com", "*.evil.com.", "evil", "Web server"] {
            assert!(cn(&p, evil).is_err(), "{evil} issued");
        }
        for control in ["a.example.org\nevil", "www.bank.com\u{0}.example.org"] {
            let e = cn(&p, control).unwrap_err();
            assert!(e.contains("control character"), "{control:?}: {e}");
        }
        // Without a policy a CN is free text, but never a control character.
        let open = profile(&[]);
        assert_eq!(cn(&open, "Web server").unwrap(), "Web server");
        assert!(cn(&open, "a\u{1b}[2J").is_err());
    }
}
