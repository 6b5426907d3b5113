//! The Cryptographic Message Syntax (RFC 5652) as far as SCEP uses it:
//! ContentInfo, SignedData with one SignerInfo, EnvelopedData with
//! key-transport recipients, and their OIDs, declared with `der`'s derive.
//!
//! Why not the `cms` crate: its types are strict where SCEP peers are not.
//! A client's certificates and identifiers are kept here as they were
//! encoded ([`Any`]) and matched byte for byte, so a transient certificate
//! with an odd serial number or name still parses (x509-parser reads it);
//! SETs keep their order ([`Set`]): a certs-only reply lists the issued
//! certificate first, which micromdm's client relies on, and signed
//! attributes are verified in the order they were signed; and an
//! envelope's `encryptedContent` may be BER-segmented (`[0]` constructed).
//!
//! Decoding expects DER: run [`super::ber::to_der`] first.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{
    Any, Decode, DecodeValue, Encode, EncodeValue, FixedTag, Header, Length, Reader, Sequence, Tag,
    Tagged, Writer,
};

/// id-data (RFC 5652 §4).
pub const ID_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.1");
/// id-signedData (RFC 5652 §5.1).
pub const ID_SIGNED_DATA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.2");
/// id-envelopedData (RFC 5652 §6.1).
pub const ID_ENVELOPED_DATA: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.7.3");
/// id-contentType (RFC 5652 §11.1).
pub const ID_CONTENT_TYPE: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.3");
/// id-messageDigest (RFC 5652 §11.2).
pub const ID_MESSAGE_DIGEST: ObjectIdentifier =
    ObjectIdentifier::new_unwrap("1.2.840.113549.1.9.4");

/// A SET OF in the order it was read or built. DER sorts a SET OF by
/// encoding; CMS writers (OpenSSL, Go, strongSwan) keep certificate sets
/// in their own order and readers rely on it (see the module comment).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set<T>(pub Vec<T>);

impl<T> FixedTag for Set<T> {
    const TAG: Tag = Tag::Set;
}

impl<'a, T: Decode<'a, Error = der::Error>> DecodeValue<'a> for Set<T> {
    type Error = der::Error;

    fn decode_value<R: Reader<'a>>(reader: &mut R, _header: Header) -> der::Result<Self> {
        let mut items = Vec::new();
        while !reader.is_finished() {
            items.push(T::decode(reader)?);
        }
        Ok(Set(items))
    }
}

impl<T: Encode> EncodeValue for Set<T> {
    fn value_len(&self) -> der::Result<Length> {
        self.0
            .iter()
            .try_fold(Length::ZERO, |len, item| len + item.encoded_len()?)
    }

    fn encode_value(&self, writer: &mut impl Writer) -> der::Result<()> {
        self.0.iter().try_for_each(|item| item.encode(writer))
    }
}

/// AlgorithmIdentifier (RFC 5280 §4.1.1.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct AlgorithmIdentifier {
    pub oid: ObjectIdentifier,
    pub parameters: Option<Any>,
}

impl AlgorithmIdentifier {
    /// With NULL parameters, as RSA and the SHA-2 digests are written.
    pub fn with_null(oid: ObjectIdentifier) -> Self {
        Self {
            oid,
            parameters: Some(Any::null()),
        }
    }
}

/// ContentInfo (RFC 5652 §3).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct ContentInfo {
    pub content_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
    pub content: Any,
}

/// SignedData (RFC 5652 §5.1); certificates and CRLs as encoded.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SignedData {
    pub version: u8,
    pub digest_algorithms: Set<AlgorithmIdentifier>,
    pub encap_content_info: EncapsulatedContentInfo,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub certificates: Option<Set<Any>>,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub crls: Option<Set<Any>>,
    pub signer_infos: Set<SignerInfo>,
}

/// EncapsulatedContentInfo (RFC 5652 §5.2).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct EncapsulatedContentInfo {
    pub econtent_type: ObjectIdentifier,
    #[asn1(context_specific = "0", tag_mode = "EXPLICIT", optional = "true")]
    pub econtent: Option<OctetString>,
}

/// SignerInfo (RFC 5652 §5.3). `sid` is kept as encoded (an
/// IssuerAndSerialNumber or a `[0]` SubjectKeyIdentifier).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct SignerInfo {
    pub version: u8,
    pub sid: Any,
    pub digest_algorithm: AlgorithmIdentifier,
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub signed_attrs: Option<Set<Attribute>>,
    pub signature_algorithm: AlgorithmIdentifier,
    pub signature: OctetString,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub unsigned_attrs: Option<Set<Any>>,
}

/// Attribute (RFC 5652 §5.3).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct Attribute {
    pub oid: ObjectIdentifier,
    pub values: Set<Any>,
}

impl Attribute {
    /// A single-valued attribute.
    pub fn new(oid: ObjectIdentifier, value: Any) -> Self {
        Self {
            oid,
            values: Set(vec![value]),
        }
    }
}

/// The encoding a signature over signed attributes covers (RFC 5652
/// §5.4): the attributes with the EXPLICIT SET OF tag, in their order.
pub fn signed_attrs_der(attrs: &Set<Attribute>) -> der::Result<Vec<u8>> {
    attrs.to_der()
}

/// EnvelopedData (RFC 5652 §6.1). Recipients are kept as encoded: only
/// the key-transport one for the RA is decoded ([`KeyTransRecipientInfo`]).
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct EnvelopedData {
    pub version: u8,
    /// OriginatorInfo, a SEQUENCE of optional `[0]`, `[1]` elements.
    #[asn1(
        context_specific = "0",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub originator_info: Option<Vec<Any>>,
    pub recipient_infos: Set<Any>,
    pub encrypted_content_info: EncryptedContentInfo,
    #[asn1(
        context_specific = "1",
        tag_mode = "IMPLICIT",
        constructed = "true",
        optional = "true"
    )]
    pub unprotected_attrs: Option<Set<Any>>,
}

/// EncryptedContentInfo (RFC 5652 §6.1). `encryptedContent` is an
/// implicit `[0]` OCTET STRING, which BER writers may segment: kept as
/// encoded, read with [`EncryptedContentInfo::content`].
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct EncryptedContentInfo {
    pub content_type: ObjectIdentifier,
    pub content_encryption_algorithm: AlgorithmIdentifier,
    pub encrypted_content: Option<Any>,
}

impl EncryptedContentInfo {
    /// `encryptedContent` written primitive, as DER wants it.
    pub fn new(
        content_type: ObjectIdentifier,
        algorithm: AlgorithmIdentifier,
        ciphertext: Vec<u8>,
    ) -> der::Result<Self> {
        let tag = Tag::ContextSpecific {
            constructed: false,
            number: der::TagNumber(0),
        };
        Ok(Self {
            content_type,
            content_encryption_algorithm: algorithm,
            encrypted_content: Some(Any::new(tag, ciphertext)?),
        })
    }

    /// The ciphertext, its segments joined; `None` when absent or not a `[0]`.
    pub fn content(&self) -> Option<Vec<u8>> {
        let any = self.encrypted_content.as_ref()?;
        match any.tag() {
            Tag::ContextSpecific {
                constructed,
                number,
            } if number.value() == 0 => super::ber::join_segments(any.value(), constructed).ok(),
            _ => None,
        }
    }
}

/// KeyTransRecipientInfo (RFC 5652 §6.2.1); `rid` as encoded.
#[derive(Clone, Debug, PartialEq, Eq, Sequence)]
pub struct KeyTransRecipientInfo {
    pub version: u8,
    pub rid: Any,
    pub key_encryption_algorithm: AlgorithmIdentifier,
    pub encrypted_key: OctetString,
}

/// The DER of an IssuerAndSerialNumber (RFC 5652 §10.2.4) from a
/// certificate's encoded issuer Name and the contents of its serial
/// INTEGER, as a client would write it in `sid` or `rid`.
pub fn issuer_and_serial(issuer_der: &[u8], serial_content: &[u8]) -> Vec<u8> {
    let mut content = issuer_der.to_vec();
    super::ber::write_tlv(&mut content, &[0x02], serial_content);
    let mut out = Vec::new();
    super::ber::write_tlv(&mut out, &[0x30], &content);
    out
}

/// Whether an encoded SignerIdentifier or RecipientIdentifier names the
/// certificate with this IssuerAndSerialNumber ([`issuer_and_serial`])
/// and subjectKeyIdentifier: the first, or `[0]` the second.
pub fn identifies(id_der: &[u8], issuer_and_serial: &[u8], subject_key_id: Option<&[u8]>) -> bool {
    if id_der == issuer_and_serial {
        return true;
    }
    subject_key_id.is_some_and(|ski| {
        let mut want = Vec::new();
        super::ber::write_tlv(&mut want, &[0x80], ski);
        want == id_der
    })
}

/// A ContentInfo of `content_type` around the DER `content`.
pub fn content_info(content_type: ObjectIdentifier, content_der: &[u8]) -> der::Result<Vec<u8>> {
    ContentInfo {
        content_type,
        content: Any::from_der(content_der)?,
    }
    .to_der()
}
