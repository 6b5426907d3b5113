//! What goes into a certificate the local CA makes: a [`Signer`] (a CA key
//! and its certificate, parsed and checked once, so that issuing parses
//! nothing), the fields of every CA certificate idsync creates
//! ([`ca_params`]), the leaf for a CSR's public key with exactly the
//! request's fields ([`sign_leaf`]), and the signer's CRL ([`sign_crl`]).

use std::path::Path;

use idsync_schema::cert::{KeyType, Usage};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CrlDistributionPoint,
    DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod,
    KeyPair, KeyUsagePurpose, PublicKeyData, RevokedCertParams, SanType, SerialNumber,
};
use rustls::pki_types::CertificateDer;
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::ParsedExtension;

use super::files::shown;
use crate::ca::crl::{self, issuer_id, CrlSpec};
use crate::ca::csr::key_type_of;
use crate::ca::{serial_hex, subject_text, CaError, Csr, IssueRequest, Issued};

/// A CA key and certificate ready to sign: parsed once.
pub(super) struct Signer {
    pub(super) issuer: Issuer<'static, KeyPair>,
    /// Names this signer's CRL ([`issuer_id`]).
    pub(super) id: String,
    /// The certificate's subject key identifier, which its CRLs' authority
    /// key identifier must repeat (an operator's CA may have made it in
    /// another way than rcgen would).
    key_id: KeyIdMethod,
    pub(super) key_type: KeyType,
    /// The certificate, DER.
    pub(super) cert_der: Vec<u8>,
    /// This certificate then everything above it, PEM: the chain of what it
    /// signs.
    pub(super) chain: String,
    /// The certificates above this one, DER (empty for a root).
    pub(super) above: Vec<Vec<u8>>,
    pub(super) not_after: OffsetDateTime,
    pub(super) common_name: String,
}

impl Signer {
    /// A signer from a key and its CA certificate; `key_path` and
    /// `cert_path` name the files in messages.
    pub(super) fn new(
        key: KeyPair,
        cert_der: Vec<u8>,
        above: Vec<Vec<u8>>,
        key_path: &Path,
        cert_path: &Path,
    ) -> Result<Signer, CaError> {
        let bad_cert = |reason: String| CaError::BadCaCert {
            path: shown(cert_path),
            reason,
        };
        let (rest, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|e| bad_cert(format!("not an X.509 certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(bad_cert("trailing bytes after the certificate".into()));
        }
        match cert.basic_constraints() {
            Ok(Some(bc)) if bc.value.ca => {}
            _ => {
                return Err(bad_cert(
                    "not a CA certificate (no basicConstraints CA:TRUE)".into(),
                ))
            }
        }
        if cert.public_key().subject_public_key.data.as_ref() != key.der_bytes() {
            return Err(CaError::KeyMismatch {
                key: shown(key_path),
                cert: shown(cert_path),
            });
        }
        let key_type = key_type_of(cert.public_key()).map_err(|e| CaError::BadKey {
            path: shown(key_path),
            reason: e
                .to_string()
                .replace("the certificate request's key", "the key"),
        })?;
        let not_after = OffsetDateTime::from_unix_timestamp(cert.validity().not_after.timestamp())
            .map_err(|e| bad_cert(format!("notAfter: {e}")))?;
        if not_after <= OffsetDateTime::now_utc() {
            return Err(bad_cert(format!(
                "the CA certificate expired on {not_after}"
            )));
        }
        let common_name = cert
            .subject()
            .iter_common_name()
            .next()
            .and_then(|a| a.as_str().ok())
            .unwrap_or("idsync CA")
            .to_owned();
        let key_id = cert
            .extensions()
            .iter()
            .find_map(|e| match e.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
                _ => None,
            })
            .map_or(KeyIdMethod::Sha256, KeyIdMethod::PreSpecified);
        drop(cert);
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|e| bad_cert(format!("rcgen cannot sign with it: {e}")))?;
        let mut chain = pem_cert(&cert_der);
        for c in &above {
            chain.push_str(&pem_cert(c));
        }
        Ok(Signer {
            issuer,
            id: issuer_id(&cert_der),
            key_id,
            key_type,
            cert_der,
            chain,
            above,
            not_after,
            common_name,
        })
    }

    /// Whether `cert_der` was signed by this signer's key (a sub-CA found on
    /// disk may be from a CA since replaced).
    pub(super) fn signed(&self, cert_der: &[u8]) -> bool {
        let Ok((_, mine)) = x509_parser::parse_x509_certificate(&self.cert_der) else {
            return false;
        };
        let Ok((_, theirs)) = x509_parser::parse_x509_certificate(cert_der) else {
            return false;
        };
        theirs.verify_signature(Some(mine.public_key())).is_ok()
    }
}

pub(super) fn pem_cert(der: &[u8]) -> String {
    crate::ca::pem_block("CERTIFICATE", der)
}

/// Now, to the second (what an X.509 time holds).
pub(super) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(0).unwrap_or(t)
}

/// Clock skew allowed for: notBefore is this far in the past.
const BACKDATE: Duration = Duration::minutes(5);

/// 16 random bytes from the OS CSPRNG, positive, top byte never zero (so
/// the serial always has 16 bytes, 126 random bits).
fn random_serial() -> Result<[u8; 16], CaError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| CaError::Signing(format!("no random serial: {e}")))?;
    b[0] = (b[0] & 0x7f) | 0x40;
    Ok(b)
}

/// The subject of a certificate from attribute pairs.
fn distinguished_name(subject: &[(String, String)]) -> Result<DistinguishedName, CaError> {
    let mut dn = DistinguishedName::new();
    for (attr, value) in subject {
        let ty = match attr.to_ascii_uppercase().as_str() {
            "CN" => DnType::CommonName,
            "O" => DnType::OrganizationName,
            "OU" => DnType::OrganizationalUnitName,
            "L" => DnType::LocalityName,
            "ST" => DnType::StateOrProvinceName,
            "C" => DnType::CountryName,
            _ => {
                return Err(CaError::BadName(format!(
                    "subject attribute {attr:?} is not one of CN, O, OU, L, ST, C"
                )))
            }
        };
        if dn.get(&ty).is_some() {
            return Err(CaError::BadName(format!(
                "subject attribute {attr} appears twice; the local CA puts each attribute once"
            )));
        }
        let value = if ty == DnType::CountryName {
            rcgen::string::PrintableString::try_from(value.as_str())
                .map(DnValue::PrintableString)
                .map_err(|_| CaError::BadName(format!("country {value:?} is not two letters")))?
        } else {
            DnValue::Utf8String(value.clone())
        };
        dn.push(ty, value);
    }
    Ok(dn)
}

fn eku(u: Usage) -> ExtendedKeyUsagePurpose {
    match u {
        Usage::ServerAuth => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::ClientAuth => ExtendedKeyUsagePurpose::ClientAuth,
        Usage::EmailProtection => ExtendedKeyUsagePurpose::EmailProtection,
        Usage::CodeSigning => ExtendedKeyUsagePurpose::CodeSigning,
    }
}

/// What every CA certificate idsync makes (root or sub-CA) holds: the CN, a
/// random serial, back-dated `notBefore`, `notAfter`, `CA:TRUE` with
/// `path_len` CAs allowed below, key usage keyCertSign and cRLSign.
pub(super) fn ca_params(
    cn: &str,
    not_after: OffsetDateTime,
    path_len: u8,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    params.not_before = now() - BACKDATE;
    params.not_after = not_after;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    Ok(params)
}

/// Sign a leaf for the CSR's public key with the request's fields; with
/// `crl_base` (`[ca] crl_url`) it names its issuer's CRL.
pub(super) fn sign_leaf(
    signer: &Signer,
    csr: &Csr,
    req: &IssueRequest<'_>,
    crl_base: Option<&str>,
) -> Result<Issued, CaError> {
    if req.validity_days == 0 {
        return Err(CaError::BadName("validity_days must be at least 1".into()));
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(req.subject)?;
    let t = now();
    let not_before = t - BACKDATE;
    let not_after = (t + Duration::days(i64::from(req.validity_days))).min(signer.not_after);
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = random_serial()?;
    params.serial_number = Some(SerialNumber::from_slice(&serial));
    let mut sans = Vec::with_capacity(req.dns_names.len() + req.ip_addresses.len());
    for name in req.dns_names {
        let ia5 = rcgen::string::Ia5String::try_from(name.as_str())
            .map_err(|_| CaError::BadName(format!("{name:?} is not an ASCII DNS name")))?;
        sans.push(SanType::DnsName(ia5));
    }
    sans.extend(req.ip_addresses.iter().map(|ip| SanType::IpAddress(*ip)));
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = if csr.key_type.is_rsa() {
        vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]
    } else {
        vec![KeyUsagePurpose::DigitalSignature]
    };
    for u in req.usages {
        params.insert_extended_key_usage(eku(*u));
    }
    params.use_authority_key_identifier_extension = true;
    if let Some(base) = crl_base {
        params.crl_distribution_points = vec![CrlDistributionPoint {
            uris: vec![crl::crl_url(base, &signer.id)],
        }];
    }
    let cert = params
        .signed_by(&csr.public_key_data(), &signer.issuer)
        .map_err(|e| CaError::Signing(e.to_string()))?;
    Ok(Issued {
        pem: cert.pem(),
        chain: signer.chain.clone(),
        serial: serial_hex(&serial),
        subject: subject_text(req.subject),
        not_before,
        not_after,
    })
}

/// The signer's CRL (DER) listing `spec`'s entries, numbered `number`.
pub(super) fn sign_crl(
    signer: &Signer,
    spec: &CrlSpec<'_>,
    number: u64,
) -> Result<Vec<u8>, CaError> {
    let revoked_certs = spec
        .entries
        .iter()
        .map(|e| {
            let serial = crl::serial_bytes(&e.serial).ok_or_else(|| {
                CaError::Signing(format!("CRL: serial {:?} is not hex", e.serial))
            })?;
            Ok(RevokedCertParams {
                serial_number: SerialNumber::from_slice(&serial),
                revocation_time: e.at.replace_nanosecond(0).unwrap_or(e.at),
                reason_code: Some(crl::reason_code(e.reason)),
                invalidity_date: None,
            })
        })
        .collect::<Result<Vec<_>, CaError>>()?;
    let params = CertificateRevocationListParams {
        this_update: spec.this_update,
        next_update: spec.next_update,
        crl_number: SerialNumber::from_slice(&number.to_be_bytes()),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: signer.key_id.clone(),
    };
    let crl = params
        .signed_by(&signer.issuer)
        .map_err(|e| CaError::Signing(format!("CRL of {}: {e}", signer.common_name)))?;
    Ok(crl.der().to_vec())
}
