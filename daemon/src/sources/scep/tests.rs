//! Tests of the SCEP layer: requests captured from real clients
//! (micromdm's scepclient 2.1.0, strongSwan's `pki --scep` 5.9.8; see
//! fixtures/README.md), round trips through the tests' own client for every
//! cipher and digest, refusals, and BER to DER on hand-made and hostile input.

use der::asn1::{ObjectIdentifier, OctetString};
use der::{Any, Decode, Encode};
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509CertificationRequest};

use super::ber::{self, BerError, MAX_DEPTH};
use super::cms::{self, ContentInfo, EnvelopedData, KeyTransRecipientInfo, SignedData};
use super::message::{
    ca_caps, ca_ra_certs, cert_rep, challenge_password, failure_rep, parse, Cipher, Content,
    DigestAlg, FailInfo, MessageType, Outcome, PkiMessage, Ra, ScepError,
};
use super::testclient::{certs_only, Client, Request};

const RA_CERT: &[u8] = include_bytes!("fixtures/ra.der");
const RA_KEY: &[u8] = include_bytes!("fixtures/ra.key.p8.der");
const CA_CERT: &[u8] = include_bytes!("fixtures/ca.der");
const SCEPCLIENT_KEY: &[u8] = include_bytes!("fixtures/scepclient-key.p8.der");
const PKI_KEY: &[u8] = include_bytes!("fixtures/pki-key.p8.der");
const PKI_OLD_CERT: &[u8] = include_bytes!("fixtures/pki-renewal-old-cert.der");

/// A captured request: file, what it must parse to, the client's key.
struct Captured {
    name: &'static str,
    body: &'static [u8],
    message_type: MessageType,
    transaction_id: &'static str,
    digest: DigestAlg,
    cipher: Cipher,
    cn: &'static str,
    sans: &'static [&'static str],
    signer_key: &'static [u8],
}

const CAPTURED: &[Captured] = &[
    Captured {
        name: "scepclient POST",
        body: include_bytes!("fixtures/scepclient-post.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "IMoVMd+mEq5W7XVW4jCko358Jrk=",
        digest: DigestAlg::Sha1,
        cipher: Cipher::DesCbc,
        cn: "device-1",
        sans: &[],
        signer_key: SCEPCLIENT_KEY,
    },
    Captured {
        name: "scepclient GET",
        body: include_bytes!("fixtures/scepclient-get.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "CWzWaD2AaeAiQSd1sAOZ04Ry8Wk=",
        digest: DigestAlg::Sha1,
        cipher: Cipher::DesCbc,
        cn: "device-3",
        sans: &[],
        signer_key: b"",
    },
    Captured {
        name: "pki --scep (AES, SHA-256)",
        body: include_bytes!("fixtures/pki-aes128-sha256.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "5000F43E9E6C7A9C484B6E49B1A27AAE85711907",
        digest: DigestAlg::Sha256,
        cipher: Cipher::Aes128Cbc,
        cn: "device-2",
        sans: &[
            "dns:device-2.example.org",
            "ip:10.1.2.3",
            "email:ops@example.org",
        ],
        signer_key: PKI_KEY,
    },
    Captured {
        name: "pki --scep --digest sha1",
        body: include_bytes!("fixtures/pki-aes128-sha1.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "5000F43E9E6C7A9C484B6E49B1A27AAE85711907",
        digest: DigestAlg::Sha1,
        cipher: Cipher::Aes128Cbc,
        cn: "device-2",
        sans: &["dns:device-2.example.org"],
        signer_key: PKI_KEY,
    },
    Captured {
        name: "pki --scep --digest sha512",
        body: include_bytes!("fixtures/pki-aes128-sha512.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "5000F43E9E6C7A9C484B6E49B1A27AAE85711907",
        digest: DigestAlg::Sha512,
        cipher: Cipher::Aes128Cbc,
        cn: "device-2",
        sans: &[],
        signer_key: PKI_KEY,
    },
    Captured {
        name: "pki --scep --cipher des3 --digest sha1",
        body: include_bytes!("fixtures/pki-des3-sha1.der"),
        message_type: MessageType::PkcsReq,
        transaction_id: "5000F43E9E6C7A9C484B6E49B1A27AAE85711907",
        digest: DigestAlg::Sha1,
        cipher: Cipher::DesEde3Cbc,
        cn: "device-2",
        sans: &["dns:device-2.example.org"],
        signer_key: PKI_KEY,
    },
    Captured {
        name: "pki --scep --cert --key (renewal)",
        body: include_bytes!("fixtures/pki-renewal.der"),
        message_type: MessageType::RenewalReq,
        transaction_id: "13A1C8CCEAA1F0BA266E7CFB796683CE50763CED",
        digest: DigestAlg::Sha256,
        cipher: Cipher::Aes128Cbc,
        cn: "device-2",
        sans: &["dns:device-2.example.org"],
        signer_key: PKI_KEY,
    },
];

fn ra() -> Ra {
    Ra::new(RA_CERT.to_vec(), RA_KEY).expect("the fixture RA")
}

/// The subject CN and the SANs (`dns:`, `ip:`, `email:`) of a CSR.
fn csr_names(csr: &[u8]) -> (String, Vec<String>) {
    let (_, csr) = X509CertificationRequest::from_der(csr).expect("CSR");
    let cn = csr
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .unwrap_or_default()
        .to_string();
    let mut sans = Vec::new();
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                sans.push(match name {
                    GeneralName::DNSName(d) => format!("dns:{d}"),
                    GeneralName::RFC822Name(e) => format!("email:{e}"),
                    GeneralName::IPAddress(ip) => format!(
                        "ip:{}",
                        ip.iter().map(u8::to_string).collect::<Vec<_>>().join(".")
                    ),
                    other => format!("{other:?}"),
                });
            }
        }
    }
    (cn, sans)
}

fn csr_of(msg: &PkiMessage) -> &[u8] {
    match &msg.content {
        Content::Csr(csr) => csr,
        other => panic!("not a CSR: {other:?}"),
    }
}

#[test]
fn real_client_requests_parse() {
    let ra = ra();
    for c in CAPTURED {
        let msg = parse(c.body, &ra).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(msg.message_type, c.message_type, "{}", c.name);
        assert_eq!(msg.transaction_id, c.transaction_id, "{}", c.name);
        assert_eq!(msg.sender_nonce.len(), 16, "{}", c.name);
        assert_eq!(msg.digest, c.digest, "{}", c.name);
        assert_eq!(msg.cipher, c.cipher, "{}", c.name);
        let csr = csr_of(&msg);
        assert_eq!(
            challenge_password(csr).unwrap().as_deref(),
            Some("secret"),
            "{}",
            c.name
        );
        let (cn, sans) = csr_names(csr);
        assert_eq!(cn, c.cn, "{}", c.name);
        assert_eq!(sans, c.sans, "{}", c.name);
        // A PKCSReq is signed by a transient certificate of the CSR's key;
        // the renewal by the old certificate, of the old key.
        let renewal = c.message_type == MessageType::RenewalReq;
        assert_eq!(msg.signed_with_csr_key(), !renewal, "{}", c.name);
        if renewal {
            assert_eq!(msg.signer_cert_der, PKI_OLD_CERT);
        }
    }
}

#[test]
fn real_client_requests_get_readable_replies() {
    let ra = ra();
    let issued = vec![PKI_OLD_CERT.to_vec(), CA_CERT.to_vec()];
    for c in CAPTURED.iter().filter(|c| !c.signer_key.is_empty()) {
        let msg = parse(c.body, &ra).unwrap();
        let client = Client::with_cert(c.signer_key, msg.signer_cert_der.clone());
        let success = Outcome::Success {
            certs_der: issued.clone(),
        };
        let reply = client
            .read_reply(&cert_rep(&msg, &success, &ra).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(reply.attrs.pki_status.as_deref(), Some("0"), "{}", c.name);
        assert_eq!(reply.certs.as_ref(), Some(&issued), "{}", c.name);
        assert_eq!(reply.cipher, Some(c.cipher), "{}", c.name);
        assert_eq!(reply.digest, c.digest.for_reply(), "{}", c.name);
        assert_eq!(reply.signer_cert_der, RA_CERT);
        check_echo(&reply.attrs, &msg);
    }
}

#[test]
fn real_client_poll_parses() {
    // strongSwan polls a PENDING request with CertPoll: IssuerAndSubject,
    // the issuer being the subject of its --cacert-sig (here the RA).
    let ra = ra();
    let body = include_bytes!("fixtures/pki-certpoll.der");
    let msg = parse(body, &ra).unwrap();
    assert_eq!(msg.message_type, MessageType::CertPoll);
    assert_eq!(
        msg.transaction_id,
        "5000F43E9E6C7A9C484B6E49B1A27AAE85711907"
    );
    let (_, ra_cert) = x509_parser::parse_x509_certificate(RA_CERT).unwrap();
    let Content::Poll {
        issuer_der,
        subject_der,
    } = &msg.content
    else {
        panic!("{:?}", msg.content);
    };
    assert_eq!(issuer_der, ra_cert.tbs_certificate.subject.as_raw());
    let (_, subject) = x509_parser::x509::X509Name::from_der(subject_der).unwrap();
    assert_eq!(subject.to_string(), "C=CH, O=idsync test, CN=device-2");
    assert_eq!(
        (msg.digest, msg.cipher),
        (DigestAlg::Sha256, Cipher::Aes128Cbc)
    );
}

/// A reply's transaction attributes answer `req`.
fn check_echo(attrs: &super::signed::ScepAttrs, req: &PkiMessage) {
    assert_eq!(attrs.message_type.as_deref(), Some("3"));
    assert_eq!(attrs.transaction_id.as_deref(), Some(&*req.transaction_id));
    assert_eq!(attrs.recipient_nonce.as_ref(), Some(&req.sender_nonce));
    let nonce = attrs.sender_nonce.as_ref().expect("senderNonce");
    assert_eq!(nonce.len(), 16);
    assert_ne!(nonce, &req.sender_nonce);
}

const CIPHERS: [Cipher; 5] = [
    Cipher::DesCbc,
    Cipher::DesEde3Cbc,
    Cipher::Aes128Cbc,
    Cipher::Aes192Cbc,
    Cipher::Aes256Cbc,
];

/// SHA-1 requests come from the real clients above (aws-lc-rs does not
/// sign with SHA-1, so the tests' client cannot).
const DIGESTS: [DigestAlg; 3] = [DigestAlg::Sha256, DigestAlg::Sha384, DigestAlg::Sha512];

fn request<'a>(content: &'a [u8], cipher: Cipher, digest: DigestAlg) -> Request<'a> {
    Request {
        message_type: "19",
        transaction_id: "tx-42",
        sender_nonce: b"0123456789abcdef",
        content,
        cipher,
        digest,
        ra_cert_der: RA_CERT,
    }
}

#[test]
fn round_trip_every_cipher_and_digest() {
    let ra = ra();
    let client = Client::transient(PKI_KEY, "transient");
    let issued = vec![PKI_OLD_CERT.to_vec(), CA_CERT.to_vec()];
    for cipher in CIPHERS {
        for digest in DIGESTS {
            let what = format!("{} {}", cipher.name(), digest.name());
            let csr = Client::csr(
                PKI_KEY,
                "device-9",
                &["device-9.example.org"],
                Some(("pw-9", false)),
            );
            let body = client.request(&request(&csr, cipher, digest));
            let msg = parse(&body, &ra).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(msg.message_type, MessageType::PkcsReq, "{what}");
            assert_eq!(msg.transaction_id, "tx-42", "{what}");
            assert_eq!(msg.sender_nonce, b"0123456789abcdef", "{what}");
            assert_eq!((msg.cipher, msg.digest), (cipher, digest), "{what}");
            assert_eq!(msg.content, Content::Csr(csr.clone()), "{what}");
            assert_eq!(msg.signer_cert_der, client.cert_der, "{what}");
            assert!(msg.signed_with_csr_key(), "{what}");
            assert_eq!(challenge_password(&csr).unwrap().as_deref(), Some("pw-9"));

            let success = Outcome::Success {
                certs_der: issued.clone(),
            };
            let reply = client
                .read_reply(&cert_rep(&msg, &success, &ra).unwrap())
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            check_echo(&reply.attrs, &msg);
            assert_eq!(reply.attrs.pki_status.as_deref(), Some("0"), "{what}");
            assert_eq!(reply.attrs.fail_info, None, "{what}");
            assert_eq!(reply.certs.as_ref(), Some(&issued), "{what}");
            assert_eq!(reply.cipher, Some(cipher), "{what}");
            assert_eq!(reply.digest, digest, "{what}");
        }
    }
}

#[test]
fn pending_and_failure_replies() {
    let ra = ra();
    let client = Client::transient(PKI_KEY, "transient");
    let csr = Client::csr(PKI_KEY, "device-9", &[], Some(("pw", false)));
    let body = client.request(&request(&csr, Cipher::Aes256Cbc, DigestAlg::Sha256));
    let msg = parse(&body, &ra).unwrap();

    let pending = client
        .read_reply(&cert_rep(&msg, &Outcome::Pending, &ra).unwrap())
        .unwrap();
    check_echo(&pending.attrs, &msg);
    assert_eq!(pending.attrs.pki_status.as_deref(), Some("3"));
    assert_eq!(pending.attrs.fail_info, None);
    assert_eq!(pending.certs, None);

    let empty = Outcome::Success { certs_der: vec![] };
    assert!(matches!(
        cert_rep(&msg, &empty, &ra),
        Err(ScepError::Encode(_))
    ));

    for (info, code) in [
        (FailInfo::BadAlg, "0"),
        (FailInfo::BadMessageCheck, "1"),
        (FailInfo::BadRequest, "2"),
        (FailInfo::BadTime, "3"),
        (FailInfo::BadCertId, "4"),
    ] {
        let failed = client
            .read_reply(&cert_rep(&msg, &Outcome::Failure(info), &ra).unwrap())
            .unwrap();
        check_echo(&failed.attrs, &msg);
        assert_eq!(failed.attrs.pki_status.as_deref(), Some("2"));
        assert_eq!(failed.attrs.fail_info.as_deref(), Some(code));
        assert_eq!(failed.certs, None);
    }
}

#[test]
fn renewal_poll_and_get_cert_contents() {
    let ra = ra();
    // RenewalReq: signed with the current certificate, not the CSR key.
    let renewing = Client::with_cert(PKI_KEY, PKI_OLD_CERT.to_vec());
    let csr = Client::csr(SCEPCLIENT_KEY, "device-2", &[], None);
    let mut r = request(&csr, Cipher::Aes128Cbc, DigestAlg::Sha256);
    r.message_type = "17";
    let msg = parse(&renewing.request(&r), &ra).unwrap();
    assert_eq!(msg.message_type, MessageType::RenewalReq);
    assert_eq!(msg.signer_cert_der, PKI_OLD_CERT);
    assert!(!msg.signed_with_csr_key());
    assert_eq!(challenge_password(csr_of(&msg)).unwrap(), None);

    // CertPoll: IssuerAndSubject.
    let (_, old) = x509_parser::parse_x509_certificate(PKI_OLD_CERT).unwrap();
    let issuer = old.tbs_certificate.issuer.as_raw().to_vec();
    let subject = old.tbs_certificate.subject.as_raw().to_vec();
    let mut pair = issuer.clone();
    pair.extend_from_slice(&subject);
    let mut issuer_and_subject = Vec::new();
    ber::write_tlv(&mut issuer_and_subject, &[0x30], &pair);
    let client = Client::transient(PKI_KEY, "transient");
    let mut r = request(&issuer_and_subject, Cipher::Aes128Cbc, DigestAlg::Sha256);
    r.message_type = "20";
    let msg = parse(&client.request(&r), &ra).unwrap();
    assert_eq!(msg.message_type, MessageType::CertPoll);
    assert_eq!(
        msg.content,
        Content::Poll {
            issuer_der: issuer.clone(),
            subject_der: subject
        }
    );
    assert!(!msg.signed_with_csr_key());

    // GetCert and GetCRL: IssuerAndSerialNumber.
    let issuer_and_serial = cms::issuer_and_serial(&issuer, old.tbs_certificate.raw_serial());
    for (code, t) in [("21", MessageType::GetCert), ("22", MessageType::GetCrl)] {
        let mut r = request(&issuer_and_serial, Cipher::Aes128Cbc, DigestAlg::Sha256);
        r.message_type = code;
        let msg = parse(&client.request(&r), &ra).unwrap();
        assert_eq!(msg.message_type, t);
        assert_eq!(
            msg.content,
            Content::IssuerAndSerial {
                issuer_der: issuer.clone(),
                serial: old.tbs_certificate.raw_serial().to_vec()
            }
        );
    }
}

/// Decode a signed body, edit its SignedData, encode it again.
fn edit_signed(body: &[u8], edit: impl FnOnce(&mut SignedData)) -> Vec<u8> {
    let info = ContentInfo::from_der(body).unwrap();
    let mut sd: SignedData = info.content.decode_as().unwrap();
    edit(&mut sd);
    cms::content_info(cms::ID_SIGNED_DATA, &sd.to_der().unwrap()).unwrap()
}

/// Decode an envelope, edit its EnvelopedData, encode it again.
fn edit_envelope(envelope: &[u8], edit: impl FnOnce(&mut EnvelopedData)) -> Vec<u8> {
    let info = ContentInfo::from_der(envelope).unwrap();
    let mut env: EnvelopedData = info.content.decode_as().unwrap();
    edit(&mut env);
    cms::content_info(cms::ID_ENVELOPED_DATA, &env.to_der().unwrap()).unwrap()
}

fn oid(s: &str) -> ObjectIdentifier {
    ObjectIdentifier::new(s).unwrap()
}

#[test]
fn refusals_are_distinct_and_answerable() {
    let ra = ra();
    let client = Client::transient(PKI_KEY, "transient");
    let csr = Client::csr(PKI_KEY, "device-9", &[], Some(("pw", false)));
    let r = request(&csr, Cipher::Aes128Cbc, DigestAlg::Sha256);
    let good = client.request(&r);
    parse(&good, &ra).expect("the unedited request");

    // Another RA: the envelope names ours, not it.
    let other_cert = Client::transient(SCEPCLIENT_KEY, "another RA").cert_der;
    let other = Ra::new(other_cert, SCEPCLIENT_KEY).unwrap();
    let e = parse(&good, &other).unwrap_err();
    assert_eq!(e.error, ScepError::NotForThisRa);

    // The signature, one bit off.
    let tampered = edit_signed(&good, |sd| {
        let sig = sd.signer_infos.0[0].signature.as_bytes().to_vec();
        let mut sig = sig;
        sig[7] ^= 1;
        sd.signer_infos.0[0].signature = OctetString::new(sig).unwrap();
    });
    assert_eq!(
        parse(&tampered, &ra).unwrap_err().error,
        ScepError::BadSignature
    );

    // The content changed under the signed messageDigest.
    let swapped = edit_signed(&good, |sd| {
        let mut content = sd.encap_content_info.econtent.take().unwrap().into_bytes();
        let last = content.len() - 1;
        content[last] ^= 1;
        sd.encap_content_info.econtent = Some(OctetString::new(content).unwrap());
    });
    assert_eq!(
        parse(&swapped, &ra).unwrap_err().error,
        ScepError::DigestMismatch
    );

    // A content cipher idsync does not know (RC2-CBC).
    let rc2 = edit_envelope(&Client::envelope(&r), |env| {
        env.encrypted_content_info.content_encryption_algorithm.oid = oid("1.2.840.113549.3.2");
    });
    let e = parse(&client.sign(&rc2, &r), &ra).unwrap_err();
    assert!(
        matches!(e.error, ScepError::UnsupportedAlgorithm(_)),
        "{e:?}"
    );
    assert_eq!(e.error.fail_info(), FailInfo::BadAlg);

    // RSA-OAEP key transport.
    let oaep = edit_envelope(&Client::envelope(&r), |env| {
        let mut ktri: KeyTransRecipientInfo = env.recipient_infos.0[0].decode_as().unwrap();
        ktri.key_encryption_algorithm.oid = oid("1.2.840.113549.1.1.7");
        env.recipient_infos.0[0] = Any::encode_from(&ktri).unwrap();
    });
    let e = parse(&client.sign(&oaep, &r), &ra).unwrap_err();
    assert!(
        matches!(e.error, ScepError::UnsupportedAlgorithm(_)),
        "{e:?}"
    );

    // A signature algorithm idsync does not verify (RSASSA-PSS).
    let pss = edit_signed(&good, |sd| {
        sd.signer_infos.0[0].signature_algorithm.oid = oid("1.2.840.113549.1.1.10");
    });
    let e = parse(&pss, &ra).unwrap_err();
    assert!(
        matches!(e.error, ScepError::UnsupportedAlgorithm(_)),
        "{e:?}"
    );

    // A digest idsync does not know (MD5): answered with SHA-256.
    let md5 = edit_signed(&good, |sd| {
        sd.signer_infos.0[0].digest_algorithm.oid = oid("1.2.840.113549.2.5");
    });
    let e = parse(&md5, &ra).unwrap_err();
    assert!(
        matches!(e.error, ScepError::UnsupportedAlgorithm(_)),
        "{e:?}"
    );
    assert_eq!(e.reply_to.as_ref().unwrap().digest, DigestAlg::Sha256);

    // The content key, corrupted: it decrypts to nothing, or (1 time in
    // about 256, a random key's padding being right) to garbage; both are
    // the same failInfo.
    let bad_key = edit_envelope(&Client::envelope(&r), |env| {
        let mut ktri: KeyTransRecipientInfo = env.recipient_infos.0[0].decode_as().unwrap();
        let mut key = ktri.encrypted_key.as_bytes().to_vec();
        key[10] ^= 0x40;
        ktri.encrypted_key = OctetString::new(key).unwrap();
        env.recipient_infos.0[0] = Any::encode_from(&ktri).unwrap();
    });
    let e = parse(&client.sign(&bad_key, &r), &ra).unwrap_err();
    assert!(
        matches!(e.error, ScepError::Decrypt | ScepError::BadContent(_)),
        "{e:?}"
    );
    assert_eq!(e.error.fail_info(), FailInfo::BadMessageCheck);

    // A messageType that is not a request.
    for code in ["3", "99", ""] {
        let mut r = request(&csr, Cipher::Aes128Cbc, DigestAlg::Sha256);
        r.message_type = code;
        let e = parse(&client.request(&r), &ra).unwrap_err();
        assert_eq!(e.error, ScepError::MessageType(code.into()));
        assert_eq!(e.error.fail_info(), FailInfo::BadRequest);
    }

    // Not a CSR inside.
    let mut r2 = request(
        b"\x30\x03\x02\x01\x05",
        Cipher::Aes128Cbc,
        DigestAlg::Sha256,
    );
    r2.message_type = "19";
    let e = parse(&client.request(&r2), &ra).unwrap_err();
    assert_eq!(e.error, ScepError::BadContent("PKCS#10 request"));
    assert_eq!(e.error.fail_info(), FailInfo::BadMessageCheck);

    // Each of these can be answered with a CertRep FAILURE the client reads.
    for body in [&tampered, &swapped, &pss] {
        let e = parse(body, &ra).unwrap_err();
        let to = e.reply_to.expect("a transaction to answer");
        assert_eq!(to.transaction_id, "tx-42");
        let info = e.error.fail_info();
        let reply = client
            .read_reply(&failure_rep(&to, info, &ra).unwrap())
            .unwrap();
        assert_eq!(reply.attrs.pki_status.as_deref(), Some("2"));
        assert_eq!(reply.attrs.fail_info.as_deref(), Some(info.code()));
        assert_eq!(
            reply.attrs.recipient_nonce.as_deref(),
            Some(&b"0123456789abcdef"[..])
        );
    }

    // Bodies that name no transaction: HTTP 400.
    for body in [
        &b""[..],
        b"hello",
        CA_CERT,
        &ca_ra_certs(RA_CERT, &[]).unwrap(),
    ] {
        let e = parse(body, &ra).unwrap_err();
        assert!(e.reply_to.is_none(), "{e:?}");
    }
}

#[test]
fn ber_encoded_requests_parse_like_der() {
    let ra = ra();
    // The outer message in BER: the same request.
    for c in CAPTURED {
        let der_msg = parse(c.body, &ra).unwrap();
        let ber_msg = parse(&to_ber(c.body), &ra).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert_eq!(der_msg, ber_msg, "{}", c.name);
    }
    // The envelope in BER too (signed as sent, as a BER client does).
    let client = Client::transient(PKI_KEY, "transient");
    let csr = Client::csr(PKI_KEY, "device-9", &[], Some(("pw", false)));
    let r = request(&csr, Cipher::DesEde3Cbc, DigestAlg::Sha256);
    let envelope = to_ber(&Client::envelope(&r));
    assert_ne!(ber::to_der(&envelope).unwrap(), envelope);
    let body = to_ber(&client.sign(&envelope, &r));
    let msg = parse(&body, &ra).unwrap();
    assert_eq!(msg.content, Content::Csr(csr));
}

/// DER to a BER a streaming encoder could write: every constructed value
/// with an indefinite length, every OCTET STRING (and the implicit ones
/// of `[0]`) longer than 16 bytes cut into constructed 7-byte segments.
fn to_ber(der: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < der.len() {
        let tag = der[pos];
        let (len, header) = match der[pos + 1] {
            l if l < 0x80 => (l as usize, 2),
            l => {
                let n = (l & 0x7f) as usize;
                let len = der[pos + 2..pos + 2 + n]
                    .iter()
                    .fold(0, |acc, &b| (acc << 8) | b as usize);
                (len, 2 + n)
            }
        };
        let content = &der[pos + header..pos + header + len];
        if tag & 0x20 != 0 {
            out.extend_from_slice(&[tag, 0x80]);
            out.extend_from_slice(&to_ber(content));
            out.extend_from_slice(&[0, 0]);
        } else if (tag == 0x04 || tag == 0x80) && len > 16 {
            out.extend_from_slice(&[tag | 0x20, 0x80]);
            for chunk in content.chunks(7) {
                ber::write_tlv(&mut out, &[0x04], chunk);
            }
            out.extend_from_slice(&[0, 0]);
        } else {
            out.extend_from_slice(&der[pos..pos + header + len]);
        }
        pos += header + len;
    }
    out
}

#[test]
fn challenge_password_forms() {
    let printable = Client::csr(PKI_KEY, "a", &[], Some(("Printable pw", false)));
    assert_eq!(
        challenge_password(&printable).unwrap().as_deref(),
        Some("Printable pw")
    );
    let utf8 = Client::csr(PKI_KEY, "a", &[], Some(("mot-de-passe-é", true)));
    assert_eq!(
        challenge_password(&utf8).unwrap().as_deref(),
        Some("mot-de-passe-é")
    );
    let none = Client::csr(PKI_KEY, "a", &["a.example.org"], None);
    assert_eq!(challenge_password(&none).unwrap(), None);
    assert!(matches!(
        challenge_password(b"\x30\x00"),
        Err(ScepError::Malformed(_))
    ));
}

#[test]
fn ca_ra_certs_keep_their_order() {
    let bag = ca_ra_certs(RA_CERT, &[CA_CERT.to_vec()]).unwrap();
    assert_eq!(
        certs_only(&bag).unwrap(),
        vec![RA_CERT.to_vec(), CA_CERT.to_vec()]
    );
    let bag = ca_ra_certs(CA_CERT, &[RA_CERT.to_vec()]).unwrap();
    assert_eq!(
        certs_only(&bag).unwrap(),
        vec![CA_CERT.to_vec(), RA_CERT.to_vec()]
    );
    assert!(matches!(
        ca_ra_certs(b"not DER", &[]),
        Err(ScepError::Encode(_))
    ));
}

#[test]
fn ca_caps_lists_what_parse_does() {
    let caps: Vec<&str> = ca_caps().lines().collect();
    for cap in [
        "AES",
        "DES3",
        "POSTPKIOperation",
        "Renewal",
        "SCEPStandard",
        "SHA-1",
        "SHA-256",
        "SHA-384",
        "SHA-512",
    ] {
        assert!(caps.contains(&cap), "{cap}");
    }
    assert!(ca_caps().ends_with('\n'));
}

#[test]
fn ra_needs_its_own_rsa_key() {
    assert!(matches!(
        Ra::new(RA_CERT.to_vec(), PKI_KEY),
        Err(ScepError::Ra(_))
    ));
    assert!(matches!(
        Ra::new(RA_CERT.to_vec(), b"junk"),
        Err(ScepError::Ra(_))
    ));
    assert!(matches!(
        Ra::new(b"junk".to_vec(), RA_KEY),
        Err(ScepError::Ra(_))
    ));
    fn shared<T: Send + Sync>(_: &T) {}
    shared(&ra());
}

#[test]
fn ber_to_der_hand_made() {
    let cases: &[(&str, &[u8], &[u8])] = &[
        (
            "indefinite SEQUENCE",
            &[0x30, 0x80, 0x02, 0x01, 0x05, 0x04, 0x02, 0xaa, 0xbb, 0, 0],
            &[0x30, 0x07, 0x02, 0x01, 0x05, 0x04, 0x02, 0xaa, 0xbb],
        ),
        (
            "constructed OCTET STRING",
            &[0x24, 0x80, 0x04, 0x02, 1, 2, 0x04, 0x01, 3, 0, 0],
            &[0x04, 0x03, 1, 2, 3],
        ),
        (
            "nested segments",
            &[0x24, 0x0a, 0x24, 0x04, 0x04, 0x02, 1, 2, 0x04, 0x02, 3, 4],
            &[0x04, 0x04, 1, 2, 3, 4],
        ),
        (
            "scep's [0] { OCTET STRING } stays explicit, its segments joined",
            &[
                0xa0, 0x80, 0x24, 0x80, 0x04, 0x01, 0xaa, 0x04, 0x01, 0xbb, 0, 0, 0, 0,
            ],
            &[0xa0, 0x04, 0x04, 0x02, 0xaa, 0xbb],
        ),
        (
            "BIT STRING segments",
            &[
                0x23, 0x80, 0x03, 0x02, 0x00, 0xaa, 0x03, 0x02, 0x04, 0xb0, 0, 0,
            ],
            &[0x03, 0x03, 0x04, 0xaa, 0xb0],
        ),
        (
            "UTF8String of OCTET STRING segments",
            &[0x2c, 0x80, 0x04, 0x01, b'h', 0x04, 0x01, b'i', 0, 0],
            &[0x0c, 0x02, b'h', b'i'],
        ),
        (
            "non-minimal definite length",
            &[0x04, 0x82, 0x00, 0x02, 0xaa, 0xbb],
            &[0x04, 0x02, 0xaa, 0xbb],
        ),
        (
            "indefinite inside definite",
            &[0x30, 0x09, 0x30, 0x80, 0x02, 0x01, 0x01, 0, 0, 0x05, 0x00],
            &[0x30, 0x07, 0x30, 0x03, 0x02, 0x01, 0x01, 0x05, 0x00],
        ),
        (
            "high tag number, copied",
            &[0x9f, 0x81, 0x00, 0x01, 0xaa],
            &[0x9f, 0x81, 0x00, 0x01, 0xaa],
        ),
        (
            "empty constructed string",
            &[0x24, 0x80, 0, 0],
            &[0x04, 0x00],
        ),
    ];
    for (what, ber_in, want) in cases {
        assert_eq!(ber::to_der(ber_in).as_deref(), Ok(*want), "{what}");
        // DER is a fixed point.
        assert_eq!(ber::to_der(want).as_deref(), Ok(*want), "{what} (again)");
    }
    // Long contents get long-form lengths.
    let mut long = vec![0x24, 0x80];
    for _ in 0..100 {
        long.extend_from_slice(&[0x04, 0x03, 7, 7, 7]);
    }
    long.extend_from_slice(&[0, 0]);
    let der_out = ber::to_der(&long).unwrap();
    assert_eq!(&der_out[..4], &[0x04, 0x82, 0x01, 0x2c]);
    assert_eq!(der_out.len(), 4 + 300);
    assert_eq!(
        ber::join_segments(&[0x04, 0x01, 9, 0x04, 0x00], true),
        Ok(vec![9])
    );
    assert_eq!(ber::join_segments(&[1, 2], false), Ok(vec![1, 2]));
    assert!(ber::join_segments(&[0x02, 0x01, 9], true).is_err());
}

#[test]
fn ber_to_der_refuses_malformed_input() {
    let deep_indefinite = [
        [0x30, 0x80].repeat(MAX_DEPTH + 2),
        [0, 0].repeat(MAX_DEPTH + 2),
    ]
    .concat();
    let mut deep_definite = vec![0x05, 0x00];
    for _ in 0..200 {
        let mut outer = Vec::new();
        ber::write_tlv(&mut outer, &[0x30], &deep_definite);
        deep_definite = outer;
    }
    let deep_string = [
        [0x24, 0x80].repeat(MAX_DEPTH + 2),
        [0, 0].repeat(MAX_DEPTH + 2),
    ]
    .concat();
    let cases: &[(&str, &[u8], BerError)] = &[
        ("empty", &[], BerError::Empty),
        ("a lone tag", &[0x30], BerError::Truncated(1)),
        (
            "short content",
            &[0x30, 0x05, 0x02, 0x01],
            BerError::Truncated(2),
        ),
        (
            "4 GiB declared",
            &[0x04, 0x84, 0xff, 0xff, 0xff, 0xff],
            BerError::Truncated(6),
        ),
        (
            "length of 5 octets",
            &[0x04, 0x85, 1, 0, 0, 0, 0],
            BerError::LengthTooLong(1),
        ),
        (
            "reserved length",
            &[0x04, 0xff],
            BerError::ReservedLength(1),
        ),
        (
            "indefinite primitive",
            &[0x04, 0x80, 0, 0],
            BerError::IndefinitePrimitive(0),
        ),
        ("end-of-contents alone", &[0, 0], BerError::UnexpectedEoc(0)),
        (
            "no end-of-contents",
            &[0x30, 0x80, 0x02, 0x01, 0x05],
            BerError::Truncated(5),
        ),
        (
            "trailing bytes",
            &[0x05, 0x00, 0xff],
            BerError::TrailingData(1),
        ),
        (
            "child past its parent",
            &[0x30, 0x03, 0x04, 0x05, 1, 2, 3, 4, 5],
            BerError::Truncated(4),
        ),
        (
            "SEQUENCE in an OCTET STRING",
            &[0x24, 0x80, 0x30, 0x00, 0, 0],
            BerError::BadSegment(2),
        ),
        (
            "BIT STRING unused bits before the end",
            &[
                0x23, 0x80, 0x03, 0x02, 0x04, 0xa0, 0x03, 0x02, 0x00, 0xbb, 0, 0,
            ],
            BerError::BadBitString(6),
        ),
        (
            "endless high tag",
            &[0x9f, 0x81, 0x81, 0x81, 0x81, 0x81, 0x01, 0x00],
            BerError::TagTooLong(0),
        ),
        ("deep indefinite", &deep_indefinite, BerError::TooDeep),
        ("deep definite", &deep_definite, BerError::TooDeep),
        ("deep constructed string", &deep_string, BerError::TooDeep),
    ];
    for (what, input, want) in cases {
        assert_eq!(ber::to_der(input).as_ref(), Err(want), "{what}");
    }
}

/// A small deterministic generator for the hostile-input sweep.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn hostile_bodies_are_refused_without_panic() {
    let ra = ra();
    let mut rng = XorShift(0x5eed_5ce9);
    for c in CAPTURED {
        let ber_body = to_ber(c.body);
        for body in [c.body, &ber_body[..]] {
            // Every truncation.
            for len in 0..body.len() {
                assert!(parse(&body[..len], &ra).is_err(), "{} cut at {len}", c.name);
            }
            // Random byte changes, one to four at a time.
            for _ in 0..300 {
                let mut mutated = body.to_vec();
                for _ in 0..1 + rng.next() % 4 {
                    let at = (rng.next() % mutated.len() as u64) as usize;
                    mutated[at] = rng.next() as u8;
                }
                let _ = parse(&mutated, &ra);
                let _ = ber::to_der(&mutated);
            }
        }
    }
}
