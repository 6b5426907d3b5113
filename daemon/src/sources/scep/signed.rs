//! The signed layer of a pkiMessage (RFC 8894 §3.2, RFC 5652 §5): a
//! SignedData with one signer, the SCEP attributes among its signed
//! attributes, and the pkcsPKIEnvelope as its `id-data` content.
//!
//! Reading is in two steps so a refusal can still be answered: [`read`]
//! decodes the message and its attributes, [`Unverified::verify`] checks
//! the signer certificate, the `messageDigest` and the signature. Nothing
//! from the content is looked at before `verify` succeeded.

use aws_lc_rs::signature::RsaKeyPair;
use der::asn1::{ObjectIdentifier, OctetString, PrintableStringRef, Utf8StringRef};
use der::{Any, Decode, Encode, EncodeValue, Tag, Tagged};
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::cms::{
    self, AlgorithmIdentifier, Attribute, ContentInfo, EncapsulatedContentInfo, Set, SignedData,
    SignerInfo,
};
use super::crypto::{self, DigestAlg};
use super::error::ScepError;

/// The SCEP attribute OIDs (RFC 8894 §3.2.1): `2.16.840.1.113733.1.9.n`.
pub mod oid {
    use der::asn1::ObjectIdentifier;

    pub const MESSAGE_TYPE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.2");
    pub const PKI_STATUS: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.3");
    pub const FAIL_INFO: ObjectIdentifier = ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.4");
    pub const SENDER_NONCE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.5");
    pub const RECIPIENT_NONCE: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.6");
    pub const TRANSACTION_ID: ObjectIdentifier =
        ObjectIdentifier::new_unwrap("2.16.840.1.113733.1.9.7");
}

/// The SCEP attributes of a message, as read (not verified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScepAttrs {
    pub message_type: Option<String>,
    pub transaction_id: Option<String>,
    pub sender_nonce: Option<Vec<u8>>,
    pub recipient_nonce: Option<Vec<u8>>,
    pub pki_status: Option<String>,
    pub fail_info: Option<String>,
}

/// A decoded pkiMessage whose signature is not checked yet.
pub struct Unverified {
    pub attrs: ScepAttrs,
    /// The digest algorithm, when it is one idsync knows.
    pub digest: Option<DigestAlg>,
    signed: SignedData,
    signer: SignerInfo,
}

/// A pkiMessage whose signature verified: its attributes and content may
/// be believed (as far as the signer certificate may).
#[derive(Debug)]
pub struct Verified {
    pub attrs: ScepAttrs,
    pub digest: DigestAlg,
    /// The DER of the certificate that signed.
    pub signer_cert_der: Vec<u8>,
    /// The `id-data` content: the pkcsPKIEnvelope (empty in a CertRep
    /// that is not SUCCESS).
    pub content: Vec<u8>,
}

/// Decode a DER pkiMessage: ContentInfo, SignedData, its one SignerInfo
/// and the SCEP attributes among the signed ones.
pub fn read(der: &[u8]) -> Result<Unverified, ScepError> {
    let info = ContentInfo::from_der(der).map_err(malformed("ContentInfo"))?;
    if info.content_type != cms::ID_SIGNED_DATA {
        return Err(ScepError::Malformed(format!(
            "content type {} is not signedData",
            info.content_type
        )));
    }
    let signed: SignedData = info.content.decode_as().map_err(malformed("SignedData"))?;
    let signer = match signed.signer_infos.0.as_slice() {
        [one] => one.clone(),
        other => {
            return Err(ScepError::Malformed(format!(
                "{} SignerInfos, SCEP has one",
                other.len()
            )))
        }
    };
    let attrs = scep_attrs(signer.signed_attrs.as_ref())?;
    Ok(Unverified {
        attrs,
        digest: DigestAlg::from_oid(&signer.digest_algorithm.oid),
        signed,
        signer,
    })
}

impl Unverified {
    /// Check the signature (RFC 5652 §5.4, §5.6): the digest and signature
    /// algorithms, the signer certificate among the message's, the
    /// `contentType` and `messageDigest` attributes, the RSA signature.
    pub fn verify(self) -> Result<Verified, ScepError> {
        let si = &self.signer;
        let digest = self.digest.ok_or_else(|| {
            ScepError::UnsupportedAlgorithm(format!("digest {}", si.digest_algorithm.oid))
        })?;
        if !digest.accepts_signature_oid(&si.signature_algorithm.oid) {
            return Err(ScepError::UnsupportedAlgorithm(format!(
                "signature {} with {}",
                si.signature_algorithm.oid,
                digest.name()
            )));
        }
        let attrs = si
            .signed_attrs
            .as_ref()
            .ok_or_else(|| ScepError::Malformed("no signed attributes".into()))?;
        let econtent = &self.signed.encap_content_info;
        if econtent.econtent_type != cms::ID_DATA {
            return Err(ScepError::Malformed(format!(
                "eContentType {} is not id-data",
                econtent.econtent_type
            )));
        }
        let content = econtent
            .econtent
            .as_ref()
            .map(|o| o.as_bytes().to_vec())
            .unwrap_or_default();
        check_content_type(attrs, &econtent.econtent_type)?;
        let sent = single_value(attrs, &cms::ID_MESSAGE_DIGEST)
            .ok_or_else(|| ScepError::Malformed("no messageDigest attribute".into()))?;
        if sent.tag() != Tag::OctetString || sent.value() != digest.digest(&content).as_slice() {
            return Err(ScepError::DigestMismatch);
        }
        let cert_der = self.signer_certificate()?;
        let rsa_key = rsa_public_key(&cert_der)?;
        let signed_bytes = cms::signed_attrs_der(attrs).map_err(malformed("signed attributes"))?;
        if !digest.verify(&rsa_key, &signed_bytes, si.signature.as_bytes()) {
            return Err(ScepError::BadSignature);
        }
        Ok(Verified {
            attrs: self.attrs,
            digest,
            signer_cert_der: cert_der,
            content,
        })
    }

    /// The DER of the message's certificate that `sid` names.
    fn signer_certificate(&self) -> Result<Vec<u8>, ScepError> {
        let sid = self
            .signer
            .sid
            .to_der()
            .map_err(malformed("SignerIdentifier"))?;
        let certs = self.signed.certificates.as_ref().map(|c| c.0.as_slice());
        for cert in certs.unwrap_or_default() {
            let Ok(der) = cert.to_der() else { continue };
            let Ok((_, parsed)) = X509Certificate::from_der(&der) else {
                continue;
            };
            if identifies(&sid, &parsed) {
                return Ok(der);
            }
        }
        Err(ScepError::NoSignerCertificate)
    }
}

/// Whether an encoded SignerIdentifier names `cert`.
fn identifies(id_der: &[u8], cert: &X509Certificate<'_>) -> bool {
    let tbs = &cert.tbs_certificate;
    let issuer_and_serial = cms::issuer_and_serial(tbs.issuer.as_raw(), tbs.raw_serial());
    cms::identifies(id_der, &issuer_and_serial, subject_key_id(cert))
}

/// A certificate's subjectKeyIdentifier, if it has one.
pub fn subject_key_id<'a>(cert: &'a X509Certificate<'_>) -> Option<&'a [u8]> {
    cert.tbs_certificate
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        })
}

/// The RSAPublicKey (PKCS#1 DER) of an RSA certificate.
fn rsa_public_key(cert_der: &[u8]) -> Result<Vec<u8>, ScepError> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| ScepError::Malformed(format!("signer certificate: {e}")))?;
    let spki = cert.public_key();
    if spki.algorithm.algorithm.as_bytes() != crypto::RSA_ENCRYPTION.as_bytes() {
        return Err(ScepError::UnsupportedAlgorithm(format!(
            "signer key {} (SCEP needs RSA)",
            spki.algorithm.algorithm
        )));
    }
    Ok(spki.subject_public_key.data.to_vec())
}

/// With signed attributes, `contentType` must be present in CMS and name
/// the eContentType (RFC 5652 §11.1); absent is tolerated, wrong is not.
fn check_content_type(
    attrs: &Set<Attribute>,
    econtent_type: &ObjectIdentifier,
) -> Result<(), ScepError> {
    match single_value(attrs, &cms::ID_CONTENT_TYPE) {
        None => Ok(()),
        Some(v) if v.decode_as::<ObjectIdentifier>().ok().as_ref() == Some(econtent_type) => Ok(()),
        Some(_) => Err(ScepError::Malformed(
            "the contentType attribute is not the eContentType".into(),
        )),
    }
}

/// The value of a single-valued attribute.
fn single_value<'a>(attrs: &'a Set<Attribute>, oid: &ObjectIdentifier) -> Option<&'a Any> {
    attrs
        .0
        .iter()
        .find(|a| a.oid == *oid)
        .and_then(|a| a.values.0.first())
}

/// Read the SCEP attributes; each one present must be of its type.
fn scep_attrs(attrs: Option<&Set<Attribute>>) -> Result<ScepAttrs, ScepError> {
    let Some(attrs) = attrs else {
        return Ok(ScepAttrs::default());
    };
    let text = |oid, name| {
        single_value(attrs, &oid)
            .map(|v| string_value(v).ok_or_else(|| bad_attr(name)))
            .transpose()
    };
    let octets = |oid, name| {
        single_value(attrs, &oid)
            .map(|v| match v.tag() {
                Tag::OctetString => Ok(v.value().to_vec()),
                _ => Err(bad_attr(name)),
            })
            .transpose()
    };
    Ok(ScepAttrs {
        message_type: text(oid::MESSAGE_TYPE, "messageType")?,
        transaction_id: text(oid::TRANSACTION_ID, "transactionID")?,
        sender_nonce: octets(oid::SENDER_NONCE, "senderNonce")?,
        recipient_nonce: octets(oid::RECIPIENT_NONCE, "recipientNonce")?,
        pki_status: text(oid::PKI_STATUS, "pkiStatus")?,
        fail_info: text(oid::FAIL_INFO, "failInfo")?,
    })
}

fn bad_attr(name: &str) -> ScepError {
    ScepError::Malformed(format!("the {name} attribute is not of its type"))
}

/// A PrintableString (RFC 8894), or the UTF8String and IA5String some
/// clients write.
fn string_value(v: &Any) -> Option<String> {
    match v.tag() {
        Tag::PrintableString | Tag::Utf8String | Tag::Ia5String => {
            String::from_utf8(v.value().to_vec()).ok()
        }
        _ => None,
    }
}

/// A PrintableString when the text allows it, else a UTF8String.
pub fn text_value(s: &str) -> der::Result<Any> {
    match PrintableStringRef::new(s) {
        Ok(p) => Any::encode_from(&p),
        Err(_) => Any::encode_from(&Utf8StringRef::new(s)?),
    }
}

/// Who signs a message: an RSA key, its certificate and the encoded
/// IssuerAndSerialNumber naming it.
pub struct Signer<'a> {
    pub key: &'a RsaKeyPair,
    pub cert_der: &'a [u8],
    pub sid_der: &'a [u8],
}

/// Sign `content`: a SignedData with the signer's certificate and one
/// SignerInfo over `contentType`, `messageDigest` and `scep_attrs` (in DER
/// order), in a ContentInfo. `digest` may not be SHA-1 (aws-lc-rs).
pub fn sign(
    content: &[u8],
    scep_attrs: Vec<Attribute>,
    digest: DigestAlg,
    signer: &Signer<'_>,
) -> Result<Vec<u8>, ScepError> {
    let mut attrs = vec![
        Attribute::new(cms::ID_CONTENT_TYPE, encode(&cms::ID_DATA)?),
        Attribute::new(
            cms::ID_MESSAGE_DIGEST,
            encode(&OctetString::new(digest.digest(content)).map_err(encode_error)?)?,
        ),
    ];
    attrs.extend(scep_attrs);
    let attrs = der_sorted(attrs)?;
    let to_sign = cms::signed_attrs_der(&attrs).map_err(encode_error)?;
    let signature = digest
        .sign(signer.key, &to_sign)
        .ok_or_else(|| ScepError::Encode(format!("cannot sign with {}", digest.name())))?;
    let signer_info = SignerInfo {
        version: 1,
        sid: Any::from_der(signer.sid_der).map_err(encode_error)?,
        digest_algorithm: AlgorithmIdentifier {
            oid: digest.oid(),
            parameters: None,
        },
        signed_attrs: Some(attrs),
        signature_algorithm: AlgorithmIdentifier::with_null(crypto::RSA_ENCRYPTION),
        signature: OctetString::new(signature).map_err(encode_error)?,
        unsigned_attrs: None,
    };
    let signed = SignedData {
        version: 1,
        digest_algorithms: Set(vec![signer_info.digest_algorithm.clone()]),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: cms::ID_DATA,
            econtent: Some(OctetString::new(content).map_err(encode_error)?),
        },
        certificates: Some(Set(vec![
            Any::from_der(signer.cert_der).map_err(encode_error)?
        ])),
        crls: None,
        signer_infos: Set(vec![signer_info]),
    };
    cms::content_info(cms::ID_SIGNED_DATA, &signed.to_der().map_err(encode_error)?)
        .map_err(encode_error)
}

/// A degenerate certs-only SignedData (RFC 8894 §3.4) in a ContentInfo,
/// the certificates in the order given.
pub fn certs_only(certs_der: &[&[u8]]) -> Result<Vec<u8>, ScepError> {
    let certs = certs_der
        .iter()
        .map(|c| Any::from_der(c).map_err(encode_error))
        .collect::<Result<Vec<_>, _>>()?;
    let signed = SignedData {
        version: 1,
        digest_algorithms: Set(Vec::new()),
        encap_content_info: EncapsulatedContentInfo {
            econtent_type: cms::ID_DATA,
            econtent: None,
        },
        certificates: Some(Set(certs)),
        crls: None,
        signer_infos: Set(Vec::new()),
    };
    cms::content_info(cms::ID_SIGNED_DATA, &signed.to_der().map_err(encode_error)?)
        .map_err(encode_error)
}

/// Attributes in DER order (X.690 §11.6), as verifiers that re-encode
/// them (Go's encoding/asn1 sorts a SET OF) compute the signed bytes.
fn der_sorted(attrs: Vec<Attribute>) -> Result<Set<Attribute>, ScepError> {
    let mut keyed = attrs
        .into_iter()
        .map(|a| Ok((a.to_der().map_err(encode_error)?, a)))
        .collect::<Result<Vec<_>, ScepError>>()?;
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(Set(keyed.into_iter().map(|(_, a)| a).collect()))
}

fn encode<T: Tagged + EncodeValue>(value: &T) -> Result<Any, ScepError> {
    Any::encode_from(value).map_err(encode_error)
}

pub fn encode_error(e: der::Error) -> ScepError {
    ScepError::Encode(e.to_string())
}

fn malformed(what: &'static str) -> impl Fn(der::Error) -> ScepError {
    move |e| ScepError::Malformed(format!("{what}: {e}"))
}
