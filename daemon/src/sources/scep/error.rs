//! Why a SCEP message was refused, and which `failInfo` (RFC 8894 §3.2.1.4)
//! a CertRep FAILURE answers it with.

use super::ber::BerError;
use super::message::{FailInfo, ReplyTo};

/// Why a message could not be read or written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScepError {
    /// Not BER at all.
    #[error(transparent)]
    Ber(#[from] BerError),
    /// BER, but not the CMS structure SCEP wants, or a part missing.
    #[error("malformed SCEP message: {0}")]
    Malformed(String),
    /// A digest, signature, key-transport or content-encryption algorithm
    /// idsync does not implement (RSA-PSS, RSA-OAEP, RC2, ...).
    #[error("unsupported algorithm: {0}")]
    UnsupportedAlgorithm(String),
    /// No certificate of the message is the signer's (`sid`).
    #[error("no certificate in the message matches its SignerInfo")]
    NoSignerCertificate,
    /// The signature does not verify with the signer certificate's key.
    #[error("the signature does not verify with the signer certificate")]
    BadSignature,
    /// The `messageDigest` attribute is not the digest of the content.
    #[error("the messageDigest attribute does not match the signed content")]
    DigestMismatch,
    /// The envelope has no recipient that is this RA: sent to another
    /// RA or CA, or an old RA certificate.
    #[error("the envelope is not addressed to this RA")]
    NotForThisRa,
    /// The envelope does not decrypt with the RA key (wrong key, bad
    /// padding). Deliberately one error for every cause (see `envelope`).
    #[error("the envelope does not decrypt with the RA key")]
    Decrypt,
    /// What the envelope decrypted to is not what the message type
    /// carries (a PKCS#10 request, an IssuerAndSubject, ...).
    #[error("the decrypted content is not a {0}")]
    BadContent(&'static str),
    /// A `messageType` that is not a request idsync reads.
    #[error("messageType {0:?} is not a SCEP request")]
    MessageType(String),
    /// The RA key or certificate given to [`super::message::Ra::new`].
    #[error("RA: {0}")]
    Ra(String),
    /// A reply could not be built (a certificate that is not DER, a
    /// recipient key that is not RSA 2048 to 8192 bits).
    #[error("cannot build the SCEP reply: {0}")]
    Encode(String),
}

impl ScepError {
    /// The `failInfo` of a CertRep FAILURE answering this error.
    ///
    /// Decryption and content errors share `badMessageCheck`: a client
    /// that re-signs someone else's envelope must not learn whether its
    /// padding was right (a CBC padding oracle on the challenge password).
    pub fn fail_info(&self) -> FailInfo {
        match self {
            Self::UnsupportedAlgorithm(_) => FailInfo::BadAlg,
            Self::NoSignerCertificate
            | Self::BadSignature
            | Self::DigestMismatch
            | Self::NotForThisRa
            | Self::Decrypt
            | Self::BadContent(_) => FailInfo::BadMessageCheck,
            Self::Ber(_)
            | Self::Malformed(_)
            | Self::MessageType(_)
            | Self::Ra(_)
            | Self::Encode(_) => FailInfo::BadRequest,
        }
    }
}

/// Why [`super::message::parse`] refused a body, and whom to answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct ParseError {
    pub error: ScepError,
    /// Set once the message's signed attributes were read (transactionID,
    /// senderNonce): the refusal can be a CertRep FAILURE with
    /// `error.fail_info()` ([`super::message::failure_rep`]). Unset: the
    /// body is not a pkiMessage at all (HTTP 400).
    ///
    /// When `error` is about the signature itself (`BadSignature`,
    /// `DigestMismatch`, `NoSignerCertificate`), these attributes are
    /// unauthenticated: fit to echo in a refusal, nothing more.
    pub reply_to: Option<ReplyTo>,
}

impl ParseError {
    pub(crate) fn new(error: impl Into<ScepError>, reply_to: Option<&ReplyTo>) -> Self {
        Self {
            error: error.into(),
            reply_to: reply_to.cloned(),
        }
    }
}
