//! The SCEP messages (RFC 8894) the server reads and writes, pure: bytes
//! in, bytes out, no I/O. This is the interface of the protocol layer:
//!
//! - [`parse`] a PKIOperation body (DER or BER) into a [`PkiMessage`]:
//!   signature verified with the signer certificate, envelope opened with
//!   the [`Ra`] key;
//! - [`cert_rep`] answers it (messageType CertRep) with an [`Outcome`];
//!   [`failure_rep`] answers a body [`parse`] refused after reading its
//!   transaction ([`ParseError::reply_to`]);
//! - [`challenge_password`] of the CSR a PKCSReq carries;
//! - the GET answers: [`ca_ra_certs`] (GetCACert) and [`ca_caps`] (GetCACaps).
//!
//! What the requests are allowed to do (the challenge, the signer
//! certificate of a RenewalReq, approvals, polling) is the server's call.

use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use der::asn1::OctetString;
use der::{Any, Decode, Encode, Sequence, Tag, Tagged};
use x509_parser::prelude::{
    FromDer, ParsedCriAttribute, X509Certificate, X509CertificationRequest,
};

use super::cms::Attribute;
use super::crypto::{self, RSA_ENCRYPTION};
pub use super::crypto::{Cipher, DigestAlg};
pub use super::error::{ParseError, ScepError};
use super::signed::{self, oid, ScepAttrs};
use super::{ber, envelope};

/// The RA: an RSA key and its certificate, issued by the CA. Clients
/// encrypt their requests to it and verify its signature on replies; SCEP
/// needs RSA for the envelope.
pub struct Ra {
    cert_der: Vec<u8>,
    issuer_and_serial: Vec<u8>,
    subject_key_id: Option<Vec<u8>>,
    signing: RsaKeyPair,
    decrypting: Pkcs1PrivateDecryptingKey,
}

impl std::fmt::Debug for Ra {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ra").finish_non_exhaustive()
    }
}

impl Ra {
    /// From the certificate (DER) and its key (PKCS#8 DER, RSA 2048 to
    /// 8192 bits); refused if the key is not the certificate's.
    pub fn new(cert_der: Vec<u8>, key_pkcs8_der: &[u8]) -> Result<Ra, ScepError> {
        let ra_err = |what: &str| ScepError::Ra(what.to_string());
        let (rest, cert) = X509Certificate::from_der(&cert_der)
            .map_err(|e| ScepError::Ra(format!("the certificate: {e}")))?;
        if !rest.is_empty() {
            return Err(ra_err("bytes after the certificate"));
        }
        let spki = cert.public_key();
        if spki.algorithm.algorithm.as_bytes() != RSA_ENCRYPTION.as_bytes() {
            return Err(ra_err("the certificate's key is not RSA"));
        }
        let signing = RsaKeyPair::from_pkcs8(key_pkcs8_der)
            .map_err(|e| ScepError::Ra(format!("the key (PKCS#8 RSA): {e}")))?;
        if signing.public_key().as_ref() != spki.subject_public_key.data.as_ref() {
            return Err(ra_err("the key is not the certificate's"));
        }
        let decrypting = PrivateDecryptingKey::from_pkcs8(key_pkcs8_der)
            .ok()
            .and_then(|k| Pkcs1PrivateDecryptingKey::new(k).ok())
            .ok_or_else(|| ra_err("the key does not decrypt"))?;
        let tbs = &cert.tbs_certificate;
        let issuer_and_serial =
            super::cms::issuer_and_serial(tbs.issuer.as_raw(), tbs.raw_serial());
        let subject_key_id = signed::subject_key_id(&cert).map(<[u8]>::to_vec);
        Ok(Ra {
            issuer_and_serial,
            subject_key_id,
            signing,
            decrypting,
            cert_der,
        })
    }

    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    pub(crate) fn decrypting_key(&self) -> &Pkcs1PrivateDecryptingKey {
        &self.decrypting
    }

    pub(crate) fn signer(&self) -> signed::Signer<'_> {
        signed::Signer {
            key: &self.signing,
            cert_der: &self.cert_der,
            sid_der: &self.issuer_and_serial,
        }
    }

    /// Whether an encoded RecipientIdentifier names the RA certificate.
    pub(crate) fn is_named_by(&self, rid_der: &[u8]) -> bool {
        super::cms::identifies(
            rid_der,
            &self.issuer_and_serial,
            self.subject_key_id.as_deref(),
        )
    }
}

/// The requests a client sends (RFC 8894 §3.2.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageType {
    /// 19: enrol, a PKCS#10 request signed by a transient self-signed
    /// certificate of the requested key (or an existing certificate).
    PkcsReq,
    /// 17: renew, signed by the certificate being renewed.
    RenewalReq,
    /// 20: poll a PENDING request (IssuerAndSubject).
    CertPoll,
    /// 21: fetch a certificate by issuer and serial (may be refused).
    GetCert,
    /// 22: fetch a CRL by issuer and serial (may be refused).
    GetCrl,
}

impl MessageType {
    /// The messageType attribute's value.
    pub fn code(self) -> &'static str {
        match self {
            Self::PkcsReq => "19",
            Self::RenewalReq => "17",
            Self::CertPoll => "20",
            Self::GetCert => "21",
            Self::GetCrl => "22",
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        [
            Self::PkcsReq,
            Self::RenewalReq,
            Self::CertPoll,
            Self::GetCert,
            Self::GetCrl,
        ]
        .into_iter()
        .find(|t| t.code() == code)
    }
}

/// What a request carries in its envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// PKCSReq, RenewalReq: the PKCS#10 request, DER as the client sent
    /// it (its signature is the server's to check).
    Csr(Vec<u8>),
    /// CertPoll: the IssuerAndSubject (RFC 8894 §3.3.3), each a DER Name.
    Poll {
        issuer_der: Vec<u8>,
        subject_der: Vec<u8>,
    },
    /// GetCert, GetCRL: an IssuerAndSerialNumber; `serial` is the
    /// INTEGER's contents (big-endian, two's complement).
    IssuerAndSerial {
        issuer_der: Vec<u8>,
        serial: Vec<u8>,
    },
}

/// A verified, decrypted request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiMessage {
    pub message_type: MessageType,
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
    /// The certificate that signed: the self-signed transient one of a
    /// PKCSReq, or for a RenewalReq the current certificate. Its key
    /// receives the reply's envelope.
    pub signer_cert_der: Vec<u8>,
    pub content: Content,
    /// The request's digest; the reply is signed with it (SHA-1: SHA-256).
    pub digest: DigestAlg,
    /// The request's content cipher; the reply's envelope uses it too.
    pub cipher: Cipher,
}

impl PkiMessage {
    /// Whom a reply to this message goes to.
    pub fn reply_to(&self) -> ReplyTo {
        ReplyTo {
            transaction_id: self.transaction_id.clone(),
            sender_nonce: self.sender_nonce.clone(),
            digest: self.digest,
        }
    }

    /// Whether the signer certificate holds the key the CSR requests a
    /// certificate for (RFC 8894 §2.3: a PKCSReq's transient certificate
    /// does). Without it, anyone could re-sign a captured enrolment (and
    /// spend its challenge); a RenewalReq is signed by the old key instead.
    pub fn signed_with_csr_key(&self) -> bool {
        let Content::Csr(csr) = &self.content else {
            return false;
        };
        let (Ok((_, csr)), Ok((_, cert))) = (
            X509CertificationRequest::from_der(csr),
            X509Certificate::from_der(&self.signer_cert_der),
        ) else {
            return false;
        };
        csr.certification_request_info.subject_pki.raw == cert.public_key().raw
    }
}

/// The transaction a CertRep answers: the request's transactionID and
/// senderNonce (echoed as recipientNonce), and its digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub transaction_id: String,
    pub sender_nonce: Vec<u8>,
    pub digest: DigestAlg,
}

/// The failInfo of a CertRep FAILURE (RFC 8894 §3.2.1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailInfo {
    /// 0: unrecognized or unsupported algorithm.
    BadAlg,
    /// 1: integrity check (signature, decryption) failed.
    BadMessageCheck,
    /// 2: transaction not permitted or supported.
    BadRequest,
    /// 3: signingTime not close enough to the system time.
    BadTime,
    /// 4: no certificate matches the criteria.
    BadCertId,
}

impl FailInfo {
    pub fn code(self) -> &'static str {
        match self {
            Self::BadAlg => "0",
            Self::BadMessageCheck => "1",
            Self::BadRequest => "2",
            Self::BadTime => "3",
            Self::BadCertId => "4",
        }
    }
}

/// How a request ends, as a CertRep says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// pkiStatus 0, with the issued certificate first, then its chain.
    Success { certs_der: Vec<Vec<u8>> },
    /// pkiStatus 3: waiting for approval; the client polls (CertPoll).
    Pending,
    /// pkiStatus 2.
    Failure(FailInfo),
}

/// Parse and verify a PKIOperation body (DER or BER; the HTTP layer has
/// undone any base64): the outer SignedData's signature must verify with
/// the signer certificate's key (RSA PKCS#1 v1.5 with SHA-1, SHA-256,
/// SHA-384 or SHA-512; the messageDigest attribute checked), then the
/// EnvelopedData is decrypted with the RA key (RSA PKCS#1 v1.5 key
/// transport; DES-CBC, DES-EDE3-CBC, AES-128/192/256-CBC).
///
/// A refusal says whether it can be answered with a CertRep FAILURE
/// ([`ParseError::reply_to`], [`failure_rep`]) or only with HTTP 400.
pub fn parse(body: &[u8], ra: &Ra) -> Result<PkiMessage, ParseError> {
    let der = ber::to_der(body).map_err(|e| ParseError::new(e, None))?;
    let unverified = signed::read(&der).map_err(|e| ParseError::new(e, None))?;
    let reply_to = reply_to(&unverified.attrs, unverified.digest);
    let fail = |e: ScepError| ParseError::new(e, reply_to.as_ref());
    let Some(ref to) = reply_to else {
        return Err(fail(ScepError::Malformed(
            "no transactionID or senderNonce attribute".into(),
        )));
    };
    let verified = unverified.verify().map_err(fail)?;
    let code = verified.attrs.message_type.clone().unwrap_or_default();
    let message_type =
        MessageType::from_code(&code).ok_or_else(|| fail(ScepError::MessageType(code)))?;
    let (plain, cipher) = envelope::open(&verified.content, ra).map_err(fail)?;
    let content = content(message_type, plain).map_err(fail)?;
    Ok(PkiMessage {
        message_type,
        transaction_id: to.transaction_id.clone(),
        sender_nonce: to.sender_nonce.clone(),
        signer_cert_der: verified.signer_cert_der,
        content,
        digest: verified.digest,
        cipher,
    })
}

/// The transaction of a message whose attributes name one.
fn reply_to(attrs: &ScepAttrs, digest: Option<DigestAlg>) -> Option<ReplyTo> {
    Some(ReplyTo {
        transaction_id: attrs.transaction_id.clone().filter(|t| !t.is_empty())?,
        sender_nonce: attrs.sender_nonce.clone()?,
        digest: digest.unwrap_or(DigestAlg::Sha256),
    })
}

/// IssuerAndSubject (RFC 8894 §3.3.3) or IssuerAndSerialNumber (RFC 5652
/// §10.2.4): an issuer Name and a second element, as encoded.
#[derive(Sequence)]
struct IssuerAnd {
    issuer: Any,
    second: Any,
}

/// Read the decrypted content for the message type. Every failure is
/// [`ScepError::BadContent`], whose failInfo is that of a bad decryption.
fn content(message_type: MessageType, plain: Vec<u8>) -> Result<Content, ScepError> {
    match message_type {
        MessageType::PkcsReq | MessageType::RenewalReq => {
            match X509CertificationRequest::from_der(&plain) {
                Ok(([], _)) => Ok(Content::Csr(plain)),
                _ => Err(ScepError::BadContent("PKCS#10 request")),
            }
        }
        MessageType::CertPoll => {
            let what = "IssuerAndSubject";
            let (issuer_der, subject) = issuer_and(&plain, Tag::Sequence, what)?;
            let subject_der = subject.to_der().map_err(|_| ScepError::BadContent(what))?;
            Ok(Content::Poll {
                issuer_der,
                subject_der,
            })
        }
        MessageType::GetCert | MessageType::GetCrl => {
            let (issuer_der, serial) = issuer_and(&plain, Tag::Integer, "IssuerAndSerialNumber")?;
            Ok(Content::IssuerAndSerial {
                issuer_der,
                serial: serial.value().to_vec(),
            })
        }
    }
}

/// An issuer Name (as DER) and a second element of tag `second`.
fn issuer_and(plain: &[u8], second: Tag, what: &'static str) -> Result<(Vec<u8>, Any), ScepError> {
    let bad = || ScepError::BadContent(what);
    let der = ber::to_der(plain).map_err(|_| bad())?;
    let pair = IssuerAnd::from_der(&der).map_err(|_| bad())?;
    if pair.issuer.tag() != Tag::Sequence || pair.second.tag() != second {
        return Err(bad());
    }
    Ok((pair.issuer.to_der().map_err(|_| bad())?, pair.second))
}

/// The challengePassword attribute of a PKCS#10 request
/// (PrintableString or UTF8String), if it has one.
pub fn challenge_password(csr_der: &[u8]) -> Result<Option<String>, ScepError> {
    let (_, csr) = X509CertificationRequest::from_der(csr_der)
        .map_err(|e| ScepError::Malformed(format!("PKCS#10 request: {e}")))?;
    let password = csr
        .certification_request_info
        .iter_attributes()
        .find_map(|a| match a.parsed_attribute() {
            ParsedCriAttribute::ChallengePassword(p) => Some(p.0.clone()),
            _ => None,
        });
    Ok(password)
}

/// The CertRep (messageType 3) answering `req`: a SignedData by the RA
/// with messageType, pkiStatus, failInfo (FAILURE), transactionID,
/// senderNonce (fresh) and recipientNonce (the request's senderNonce). On
/// SUCCESS its content is an envelope to the request's signer certificate,
/// in the request's cipher, around a certs-only SignedData of `certs_der`
/// in their order; PENDING and FAILURE carry no envelope.
///
/// Signed with the request's digest, SHA-256 for a SHA-1 request.
pub fn cert_rep(req: &PkiMessage, outcome: &Outcome, ra: &Ra) -> Result<Vec<u8>, ScepError> {
    match outcome {
        Outcome::Success { certs_der } => {
            if certs_der.is_empty() {
                return Err(ScepError::Encode("SUCCESS without a certificate".into()));
            }
            let certs: Vec<&[u8]> = certs_der.iter().map(Vec::as_slice).collect();
            let inner = signed::certs_only(&certs)?;
            let envelope = envelope::seal(&inner, &req.signer_cert_der, req.cipher)?;
            reply(&req.reply_to(), "0", None, &envelope, ra)
        }
        Outcome::Pending => reply(&req.reply_to(), "3", None, &[], ra),
        Outcome::Failure(info) => failure_rep(&req.reply_to(), *info, ra),
    }
}

/// A CertRep FAILURE for a transaction: `cert_rep` of a request that
/// [`parse`] refused but could name ([`ParseError::reply_to`]).
pub fn failure_rep(to: &ReplyTo, fail_info: FailInfo, ra: &Ra) -> Result<Vec<u8>, ScepError> {
    reply(to, "2", Some(fail_info), &[], ra)
}

fn reply(
    to: &ReplyTo,
    status: &str,
    fail_info: Option<FailInfo>,
    content: &[u8],
    ra: &Ra,
) -> Result<Vec<u8>, ScepError> {
    let text = |s: &str| signed::text_value(s).map_err(signed::encode_error);
    let octets = |b: &[u8]| {
        OctetString::new(b)
            .and_then(|o| Any::encode_from(&o))
            .map_err(signed::encode_error)
    };
    let nonce = crypto::random(16).ok_or_else(|| ScepError::Encode("no randomness".into()))?;
    let mut attrs = vec![
        Attribute::new(oid::MESSAGE_TYPE, text("3")?),
        Attribute::new(oid::PKI_STATUS, text(status)?),
        Attribute::new(oid::TRANSACTION_ID, text(&to.transaction_id)?),
        Attribute::new(oid::SENDER_NONCE, octets(&nonce)?),
        Attribute::new(oid::RECIPIENT_NONCE, octets(&to.sender_nonce)?),
    ];
    if let Some(info) = fail_info {
        attrs.push(Attribute::new(oid::FAIL_INFO, text(info.code())?));
    }
    signed::sign(content, attrs, to.digest.for_reply(), &ra.signer())
}

/// The GetCACert answer when there is an RA (`application/x-x509-ca-ra-cert`):
/// a degenerate certs-only SignedData with the RA certificate, then the CA
/// chain (issuing CA first), in that order.
pub fn ca_ra_certs(ra_cert_der: &[u8], ca_chain_der: &[Vec<u8>]) -> Result<Vec<u8>, ScepError> {
    let mut certs = vec![ra_cert_der];
    certs.extend(ca_chain_der.iter().map(Vec::as_slice));
    signed::certs_only(&certs)
}

/// The GetCACaps answer (RFC 8894 §3.5.2), one capability a line.
///
/// SHA-384 is listed for strongSwan's `pki --scep` 5.9.8, whose capability
/// flags are off by one: it sends AES (its default) only to a server that
/// lists SHA-384, and DES3 only to one that lists AES.
pub fn ca_caps() -> &'static str {
    "AES\nDES3\nPOSTPKIOperation\nRenewal\nSCEPStandard\nSHA-1\nSHA-256\nSHA-384\nSHA-512\n"
}
