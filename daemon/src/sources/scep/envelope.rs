//! The pkcsPKIEnvelope (RFC 8894 §3.2.2, RFC 5652 §6): an EnvelopedData
//! whose content key travels RSA PKCS#1 v1.5 encrypted to one recipient
//! certificate, the content in a CBC cipher ([`Cipher`]).
//!
//! Opening is deliberately uninformative: a content key that does not
//! unwrap becomes a random one ([`crypto::unwrap_key`]), so a bad RSA
//! padding, a wrong key and a bad CBC padding all end as the same
//! [`ScepError::Decrypt`]. Anyone may re-sign a captured envelope with a
//! key of their own, so answers must not be a padding oracle.

use aws_lc_rs::rsa::Pkcs1PrivateDecryptingKey;
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Tag, Tagged};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cms::{
    self, AlgorithmIdentifier, ContentInfo, EncryptedContentInfo, EnvelopedData,
    KeyTransRecipientInfo, Set,
};
use super::crypto::{self, Cipher};
use super::error::ScepError;
use super::message::Ra;
use super::signed::encode_error;

/// Decrypt an envelope addressed to `ra` (DER or BER): the plaintext and
/// the cipher the sender chose.
pub fn open(envelope: &[u8], ra: &Ra) -> Result<(Vec<u8>, Cipher), ScepError> {
    open_for(envelope, ra.decrypting_key(), |rid| ra.is_named_by(rid))
}

/// [`open`] for the holder of `key`, the recipient whose encoded
/// RecipientIdentifier `is_me` accepts (a client reading its CertRep).
pub fn open_for(
    envelope: &[u8],
    key: &Pkcs1PrivateDecryptingKey,
    is_me: impl Fn(&[u8]) -> bool,
) -> Result<(Vec<u8>, Cipher), ScepError> {
    let der = super::ber::to_der(envelope)?;
    let info = ContentInfo::from_der(&der)
        .map_err(|e| ScepError::Malformed(format!("envelope ContentInfo: {e}")))?;
    if info.content_type != cms::ID_ENVELOPED_DATA {
        return Err(ScepError::Malformed(format!(
            "envelope content type {} is not envelopedData",
            info.content_type
        )));
    }
    let env: EnvelopedData = info
        .content
        .decode_as()
        .map_err(|e| ScepError::Malformed(format!("EnvelopedData: {e}")))?;
    let recipient = recipient_for(&env.recipient_infos, is_me)?;
    if recipient.key_encryption_algorithm.oid != crypto::RSA_ENCRYPTION {
        return Err(ScepError::UnsupportedAlgorithm(format!(
            "key transport {}",
            recipient.key_encryption_algorithm.oid
        )));
    }
    let eci = &env.encrypted_content_info;
    let alg = &eci.content_encryption_algorithm;
    let cipher = Cipher::from_oid(&alg.oid)
        .ok_or_else(|| ScepError::UnsupportedAlgorithm(format!("content cipher {}", alg.oid)))?;
    let iv = alg
        .parameters
        .as_ref()
        .filter(|p| p.tag() == Tag::OctetString && p.value().len() == cipher.iv_len())
        .ok_or_else(|| ScepError::Malformed(format!("no {} IV", cipher.name())))?;
    let ciphertext = eci
        .content()
        .ok_or_else(|| ScepError::Malformed("no encryptedContent".into()))?;
    let key = crypto::unwrap_key(key, recipient.encrypted_key.as_bytes(), cipher.key_len());
    let plain = cipher
        .decrypt(&key, iv.value(), &ciphertext)
        .ok_or(ScepError::Decrypt)?;
    Ok((plain, cipher))
}

/// The key-transport recipient `is_me` accepts (the RA: by issuer and
/// serial number, or subject key identifier).
fn recipient_for(
    recipients: &Set<Any>,
    is_me: impl Fn(&[u8]) -> bool,
) -> Result<KeyTransRecipientInfo, ScepError> {
    recipients
        .0
        .iter()
        .filter(|r| r.tag() == Tag::Sequence)
        .filter_map(|r| r.decode_as::<KeyTransRecipientInfo>().ok())
        .find(|r| r.rid.to_der().is_ok_and(|rid| is_me(&rid)))
        .ok_or(ScepError::NotForThisRa)
}

/// Encrypt `plaintext` for the holder of `recipient_cert_der`'s key: a
/// ContentInfo around an EnvelopedData.
pub fn seal(
    plaintext: &[u8],
    recipient_cert_der: &[u8],
    cipher: Cipher,
) -> Result<Vec<u8>, ScepError> {
    let (_, cert) = X509Certificate::from_der(recipient_cert_der)
        .map_err(|e| ScepError::Encode(format!("the recipient certificate: {e}")))?;
    let tbs = &cert.tbs_certificate;
    let (key, iv, ciphertext) = cipher
        .encrypt(plaintext)
        .ok_or_else(|| ScepError::Encode(format!("{} encryption failed", cipher.name())))?;
    let encrypted_key = crypto::wrap_key(cert.public_key().raw, &key).ok_or_else(|| {
        ScepError::Encode("the recipient key is not RSA of 2048 to 8192 bits".into())
    })?;
    let recipient = KeyTransRecipientInfo {
        version: 0,
        rid: Any::from_der(&cms::issuer_and_serial(
            tbs.issuer.as_raw(),
            tbs.raw_serial(),
        ))
        .map_err(encode_error)?,
        key_encryption_algorithm: AlgorithmIdentifier::with_null(crypto::RSA_ENCRYPTION),
        encrypted_key: OctetString::new(encrypted_key).map_err(encode_error)?,
    };
    let algorithm = AlgorithmIdentifier {
        oid: cipher.oid(),
        parameters: Some(
            Any::encode_from(&OctetString::new(iv).map_err(encode_error)?).map_err(encode_error)?,
        ),
    };
    let env = EnvelopedData {
        version: 0,
        originator_info: None,
        recipient_infos: Set(vec![Any::encode_from(&recipient).map_err(encode_error)?]),
        encrypted_content_info: EncryptedContentInfo::new(cms::ID_DATA, algorithm, ciphertext)
            .map_err(encode_error)?,
        unprotected_attrs: None,
    };
    cms::content_info(cms::ID_ENVELOPED_DATA, &env.to_der().map_err(encode_error)?)
        .map_err(encode_error)
}
