//! The tests' own SCEP client: it builds requests the way scepclient and
//! strongSwan do (a transient self-signed RSA certificate, a CSR with a
//! challengePassword, an envelope to the RA, the SCEP signed attributes)
//! and reads a CertRep as they would (RA signature, recipientNonce,
//! envelope opened with its key, the certificates). Lenient where the
//! tests need it to be; not a client for use.
//!
//! Built for the tests, and with the `scep-client` feature for the `scep`
//! bench (daemon/benches/scep.rs), which drives idsync and micromdm's
//! scepserver with it; never in normal builds.

use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::RsaKeyPair;
use der::asn1::OctetString;
use der::{Any, Decode, Encode};
use x509_parser::prelude::{FromDer, X509Certificate};

use super::cms::{self, Attribute, ContentInfo, SignedData};
use super::crypto::{Cipher, DigestAlg};
use super::error::ScepError;
use super::signed::{self, oid, ScepAttrs, Signer};
use super::{ber, envelope};

/// A requester: its RSA key and the certificate it signs with.
pub struct Client {
    key: RsaKeyPair,
    key_pkcs8: Vec<u8>,
    pub cert_der: Vec<u8>,
    sid: Vec<u8>,
}

/// What to send.
pub struct Request<'a> {
    pub message_type: &'a str,
    pub transaction_id: &'a str,
    pub sender_nonce: &'a [u8],
    /// The envelope's plaintext (a CSR, an IssuerAndSubject, ...).
    pub content: &'a [u8],
    pub cipher: Cipher,
    pub digest: DigestAlg,
    pub ra_cert_der: &'a [u8],
}

/// A CertRep as the client read it.
#[derive(Debug)]
pub struct Reply {
    pub attrs: ScepAttrs,
    pub signer_cert_der: Vec<u8>,
    pub digest: DigestAlg,
    /// SUCCESS: the certificates of the certs-only SignedData, in order.
    pub certs: Option<Vec<Vec<u8>>>,
    /// SUCCESS: the envelope's cipher.
    pub cipher: Option<Cipher>,
}

impl Client {
    /// A client with a transient self-signed certificate for `key_pkcs8`.
    pub fn transient(key_pkcs8: &[u8], cn: &str) -> Client {
        let key_pair = rcgen::KeyPair::try_from(key_pkcs8).expect("test key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let cert = params.self_signed(&key_pair).expect("self-signed");
        Self::with_cert(key_pkcs8, cert.der().to_vec())
    }

    /// A client signing with an existing certificate of its key (renewal).
    pub fn with_cert(key_pkcs8: &[u8], cert_der: Vec<u8>) -> Client {
        let (_, cert) = X509Certificate::from_der(&cert_der).expect("test certificate");
        let tbs = &cert.tbs_certificate;
        let sid = cms::issuer_and_serial(tbs.issuer.as_raw(), tbs.raw_serial());
        Client {
            key: RsaKeyPair::from_pkcs8(key_pkcs8).expect("test RSA key"),
            key_pkcs8: key_pkcs8.to_vec(),
            cert_der,
            sid,
        }
    }

    /// A PKCS#10 request for `key_pkcs8` with these SANs and an optional
    /// challengePassword (`utf8`: as a UTF8String, else PrintableString).
    pub fn csr(
        key_pkcs8: &[u8],
        cn: &str,
        sans: &[&str],
        challenge: Option<(&str, bool)>,
    ) -> Vec<u8> {
        let key_pair = rcgen::KeyPair::try_from(key_pkcs8).expect("test key");
        let sans = sans.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let mut params = rcgen::CertificateParams::new(sans).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        let attrs = challenge
            .map(|(pw, utf8)| {
                let tag = if utf8 { 0x0c } else { 0x13 };
                let mut value = Vec::new();
                ber::write_tlv(&mut value, &[tag], pw.as_bytes());
                let mut set = Vec::new();
                ber::write_tlv(&mut set, &[0x31], &value);
                rcgen::Attribute {
                    oid: &[1, 2, 840, 113549, 1, 9, 7],
                    values: set,
                }
            })
            .into_iter()
            .collect();
        params
            .serialize_request_with_attributes(&key_pair, attrs)
            .expect("CSR")
            .der()
            .to_vec()
    }

    /// The envelope of `r`, a ContentInfo around an EnvelopedData.
    pub fn envelope(r: &Request<'_>) -> Vec<u8> {
        envelope::seal(r.content, r.ra_cert_der, r.cipher).expect("envelope")
    }

    /// The PKIOperation body of `r`.
    pub fn request(&self, r: &Request<'_>) -> Vec<u8> {
        self.sign(&Self::envelope(r), r)
    }

    /// Sign `envelope` (as the content) with the attributes of `r`.
    pub fn sign(&self, envelope: &[u8], r: &Request<'_>) -> Vec<u8> {
        let attrs = vec![
            Attribute::new(
                oid::MESSAGE_TYPE,
                signed::text_value(r.message_type).unwrap(),
            ),
            Attribute::new(
                oid::TRANSACTION_ID,
                signed::text_value(r.transaction_id).unwrap(),
            ),
            Attribute::new(
                oid::SENDER_NONCE,
                Any::encode_from(&OctetString::new(r.sender_nonce).unwrap()).unwrap(),
            ),
        ];
        let signer = Signer {
            key: &self.key,
            cert_der: &self.cert_der,
            sid_der: &self.sid,
        };
        signed::sign(envelope, attrs, r.digest, &signer).expect("sign")
    }

    /// Read a CertRep: verified, its envelope opened with the client key.
    pub fn read_reply(&self, body: &[u8]) -> Result<Reply, ScepError> {
        let verified = signed::read(&ber::to_der(body)?)?.verify()?;
        let mut reply = Reply {
            attrs: verified.attrs,
            signer_cert_der: verified.signer_cert_der,
            digest: verified.digest,
            certs: None,
            cipher: None,
        };
        if reply.attrs.pki_status.as_deref() != Some("0") {
            return Ok(reply);
        }
        let key = PrivateDecryptingKey::from_pkcs8(&self.key_pkcs8)
            .ok()
            .and_then(|k| Pkcs1PrivateDecryptingKey::new(k).ok())
            .ok_or(ScepError::Decrypt)?;
        let (plain, cipher) = envelope::open_for(&verified.content, &key, |rid| rid == self.sid)?;
        reply.certs = Some(certs_only(&plain)?);
        reply.cipher = Some(cipher);
        Ok(reply)
    }
}

/// The certificates of a certs-only SignedData, in their order.
pub fn certs_only(der: &[u8]) -> Result<Vec<Vec<u8>>, ScepError> {
    let bad = |e: der::Error| ScepError::Malformed(e.to_string());
    let info = ContentInfo::from_der(der).map_err(bad)?;
    assert_eq!(info.content_type, cms::ID_SIGNED_DATA);
    let sd: SignedData = info.content.decode_as().map_err(bad)?;
    assert!(sd.signer_infos.0.is_empty(), "certs-only has no signers");
    sd.certificates
        .map(|c| c.0)
        .unwrap_or_default()
        .iter()
        .map(|c| c.to_der().map_err(bad))
        .collect()
}
