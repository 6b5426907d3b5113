//! PKCS#10 requests: parse PEM or DER, verify the self-signature, tell the
//! key type, read the requested SAN names.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use idsync_schema::cert::KeyType;
use rcgen::{PublicKeyData, SignatureAlgorithm};
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use super::CaError;

/// A parsed, signature-verified PKCS#10 request.
#[derive(Clone, PartialEq, Eq)]
pub struct Csr {
    /// The request, DER.
    pub der: Vec<u8>,
    pub key_type: KeyType,
    /// The requested subject, RFC 4514 style (`C=SE, O=Nexus, CN=web1`),
    /// in the order of the request.
    pub subject: String,
    /// The subject's CN, O and C (first of each), for the daemon to fill a
    /// profile's subject template where the asset has no value.
    pub subject_attributes: Vec<(String, String)>,
    /// The DNS names of the requested subjectAltName.
    pub dns_names: Vec<String>,
    /// The IP addresses of the requested subjectAltName.
    pub ip_addresses: Vec<IpAddr>,
    /// The requester's SubjectPublicKeyInfo, DER.
    pub spki_der: Vec<u8>,
    /// The subjectPublicKey bits of `spki_der` (an EC point, a PKCS#1 RSA
    /// public key, 32 bytes of Ed25519).
    pub public_key: Vec<u8>,
}

impl fmt::Debug for Csr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Csr")
            .field("key_type", &self.key_type)
            .field("subject", &self.subject)
            .field("dns_names", &self.dns_names)
            .field("ip_addresses", &self.ip_addresses)
            .field("der_len", &self.der.len())
            .finish()
    }
}

impl Csr {
    /// The request as PEM (it is public: the daemon keeps it with the
    /// enrollment request until it is decided).
    pub fn pem(&self) -> String {
        super::pem_block("CERTIFICATE REQUEST", &self.der)
    }

    /// The public key as rcgen signs it.
    pub(crate) fn public_key_data(&self) -> CsrPublicKey<'_> {
        CsrPublicKey(self)
    }
}

/// The rcgen signature algorithm that goes with a key type (for an issuer
/// key, the algorithm it signs with; for a subject key, only its
/// SubjectPublicKeyInfo algorithm identifier matters).
pub(crate) fn rcgen_alg(kind: KeyType) -> &'static SignatureAlgorithm {
    match kind {
        KeyType::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
        KeyType::EcdsaP384 => &rcgen::PKCS_ECDSA_P384_SHA384,
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        KeyType::Ed25519 => &rcgen::PKCS_ED25519,
    }
}

/// A CSR's public key, for `CertificateParams::signed_by`.
pub(crate) struct CsrPublicKey<'a>(&'a Csr);

impl PublicKeyData for CsrPublicKey<'_> {
    fn subject_public_key_info(&self) -> Vec<u8> {
        self.0.spki_der.clone()
    }

    fn der_bytes(&self) -> &[u8] {
        &self.0.public_key
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        rcgen_alg(self.0.key_type)
    }
}

const OID_RSA: &str = "1.2.840.113549.1.1.1";
const OID_RSA_PSS: &str = "1.2.840.113549.1.1.10";
const OID_EC: &str = "1.2.840.10045.2.1";
const OID_ED25519: &str = "1.3.101.112";

/// The key type of a SubjectPublicKeyInfo, or what it is in words.
pub(crate) fn key_type_of(spki: &SubjectPublicKeyInfo<'_>) -> Result<KeyType, CaError> {
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        OID_RSA => {
            let bits = match spki.parsed() {
                Ok(PublicKey::RSA(rsa)) => bit_length(rsa.modulus),
                _ => return Err(CaError::BadCsr("the RSA public key does not parse".into())),
            };
            KeyType::rsa(bits).ok_or_else(|| CaError::UnsupportedKey(format!("RSA {bits}")))
        }
        OID_EC => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => Ok(KeyType::EcdsaP256),
                Some("1.3.132.0.34") => Ok(KeyType::EcdsaP384),
                Some(other) => Err(CaError::UnsupportedKey(format!("EC {}", curve_name(other)))),
                None => Err(CaError::UnsupportedKey(
                    "EC with explicit curve parameters (not a named curve)".into(),
                )),
            }
        }
        OID_ED25519 => Ok(KeyType::Ed25519),
        other => Err(CaError::UnsupportedKey(
            match other {
                OID_RSA_PSS => "RSA-PSS (an RSA key restricted to PSS)",
                "1.3.101.113" => "Ed448",
                "1.3.101.110" => "X25519 (a key-agreement key)",
                "1.3.101.111" => "X448 (a key-agreement key)",
                "1.2.840.10040.4.1" => "DSA",
                _ => return Err(CaError::UnsupportedKey(format!("of algorithm {other}"))),
            }
            .into(),
        )),
    }
}

fn curve_name(oid: &str) -> String {
    match oid {
        "1.3.132.0.35" => "P-521".into(),
        "1.3.132.0.10" => "secp256k1".into(),
        "1.2.840.10045.3.1.1" => "P-192".into(),
        "1.3.132.0.33" => "P-224".into(),
        "1.3.36.3.3.2.8.1.1.7" => "brainpoolP256r1".into(),
        "1.3.36.3.3.2.8.1.1.11" => "brainpoolP384r1".into(),
        "1.3.36.3.3.2.8.1.1.13" => "brainpoolP512r1".into(),
        other => format!("curve {other}"),
    }
}

/// The bit length of a big-endian unsigned integer.
fn bit_length(bytes: &[u8]) -> usize {
    match bytes.iter().position(|&b| b != 0) {
        Some(i) => (bytes.len() - i) * 8 - bytes[i].leading_zeros() as usize,
        None => 0,
    }
}

fn bad(why: impl fmt::Display) -> CaError {
    CaError::BadCsr(format!("not a PEM or DER certificate request: {why}"))
}

/// The DER of a PEM ("CERTIFICATE REQUEST", "NEW CERTIFICATE REQUEST") or
/// DER request.
fn csr_der(input: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, CaError> {
    let trimmed = input.trim_ascii_start();
    if trimmed.first() == Some(&0x30) {
        return Ok(std::borrow::Cow::Borrowed(trimmed));
    }
    if !trimmed.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(bad(if trimmed.is_empty() {
            "the input is empty"
        } else {
            "no -----BEGIN CERTIFICATE REQUEST----- line and not DER"
        }));
    }
    let blocks = pem::parse_many(input).map_err(|e| bad(format!("PEM: {e}")))?;
    if blocks.is_empty() {
        return Err(bad("no complete PEM block (a missing -----END----- line?)"));
    }
    let mut others = Vec::new();
    for block in blocks {
        match block.tag() {
            "CERTIFICATE REQUEST" | "NEW CERTIFICATE REQUEST" => {
                return Ok(std::borrow::Cow::Owned(block.into_contents()))
            }
            tag => others.push(format!("\"{tag}\"")),
        }
    }
    Err(bad(format!(
        "found PEM {}, expected \"CERTIFICATE REQUEST\"",
        others.join(", ")
    )))
}

/// Parse PEM (`-----BEGIN CERTIFICATE REQUEST-----`, also `NEW CERTIFICATE
/// REQUEST`) or DER; tell the key type (anything but EC P-256/P-384, RSA
/// 2048/3072/4096 and Ed25519 is [`CaError::UnsupportedKey`]); verify the
/// self-signature ([`CaError::BadSignature`]); read the SAN DNS names and IP
/// addresses of the extensionRequest.
pub fn parse_csr(input: &[u8]) -> Result<Csr, CaError> {
    let der = csr_der(input)?;
    let (rest, req) = X509CertificationRequest::from_der(&der).map_err(|e| bad(format!("{e}")))?;
    if !rest.is_empty() {
        return Err(bad(format!("{} bytes after the request", rest.len())));
    }
    let info = &req.certification_request_info;
    // The key type first: a key too small to verify (RSA 1024) is reported
    // as what it is, not as a bad signature.
    let key_type = key_type_of(&info.subject_pki)?;
    req.verify_signature().map_err(|e| match e {
        x509_parser::error::X509Error::SignatureUnsupportedAlgorithm => CaError::BadCsr(format!(
            "the certificate request is signed with an unsupported algorithm ({})",
            req.signature_algorithm.algorithm.to_id_string()
        )),
        _ => CaError::BadSignature,
    })?;
    let mut dns_names = Vec::new();
    let mut ip_addresses = Vec::new();
    if let Some(exts) = req.requested_extensions() {
        for ext in exts {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    match name {
                        GeneralName::DNSName(d) => dns_names.push((*d).to_owned()),
                        GeneralName::IPAddress(b) => {
                            if let Some(ip) = ip_from_bytes(b) {
                                ip_addresses.push(ip);
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
    }
    let mut subject_attributes = Vec::new();
    let first = |it: &mut dyn Iterator<Item = &x509_parser::x509::AttributeTypeAndValue<'_>>| {
        it.next().and_then(|a| a.as_str().ok()).map(str::to_owned)
    };
    for (attr, value) in [
        ("CN", first(&mut info.subject.iter_common_name())),
        ("O", first(&mut info.subject.iter_organization())),
        ("C", first(&mut info.subject.iter_country())),
    ] {
        if let Some(v) = value {
            subject_attributes.push((attr.to_owned(), v));
        }
    }
    Ok(Csr {
        key_type,
        subject: info.subject.to_string(),
        subject_attributes,
        dns_names,
        ip_addresses,
        spki_der: info.subject_pki.raw.to_vec(),
        public_key: info.subject_pki.subject_public_key.data.to_vec(),
        der: der.into_owned(),
    })
}

fn ip_from_bytes(b: &[u8]) -> Option<IpAddr> {
    match b.len() {
        4 => <[u8; 4]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V4(Ipv4Addr::from(a))),
        16 => <[u8; 16]>::try_from(b)
            .ok()
            .map(|a| IpAddr::V6(Ipv6Addr::from(a))),
        _ => None,
    }
}

/// The subjectPublicKey bits of a DER certificate (what ACME's revokeCert
/// compares with the key that signed the request).
pub fn certificate_public_key(der: &[u8]) -> Result<Vec<u8>, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCsr(format!("the certificate does not parse: {e}")))?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

/// The serial number of a DER certificate, as [`crate::ca::Issued`]
/// records it (upper-case hex, as OpenSSL prints it).
pub fn certificate_serial(der: &[u8]) -> Result<String, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCsr(format!("the certificate does not parse: {e}")))?;
    Ok(super::serial_hex(cert.raw_serial()))
}

/// The notAfter of a DER certificate.
pub fn certificate_not_after(der: &[u8]) -> Result<time::OffsetDateTime, CaError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| CaError::BadCsr(format!("the certificate does not parse: {e}")))?;
    Ok(cert.validity().not_after.to_datetime())
}
