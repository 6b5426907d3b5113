//! The protocol layer against keys made here (every algorithm, every
//! refusal) and against the RFCs' own examples (`rfc_vectors`).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    ECDSA_P384_SHA384_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use aws_lc_rs::{hmac, rsa};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};

use super::eab::{self, EabError};
use super::jwk::Jwk;
use super::jws::{self, JwsError, Signer};

pub(super) fn b64(b: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(b)
}

/// A key of each kind, its JWK and a way to sign with it.
pub(super) enum TestKey {
    Ec(EcdsaKeyPair, &'static str, &'static str),
    Rsa(RsaKeyPair),
    Ed(Ed25519KeyPair),
}

impl TestKey {
    pub(super) fn p256() -> TestKey {
        let k = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
        TestKey::Ec(k, "P-256", "ES256")
    }
    pub(super) fn p384() -> TestKey {
        let k = EcdsaKeyPair::generate(&ECDSA_P384_SHA384_FIXED_SIGNING).unwrap();
        TestKey::Ec(k, "P-384", "ES384")
    }
    pub(super) fn rsa() -> TestKey {
        TestKey::Rsa(RsaKeyPair::generate(rsa::KeySize::Rsa2048).unwrap())
    }
    /// A P-256 key given as PKCS#8 (a certificate's key, for revokeCert).
    pub(super) fn p256_from_pkcs8(der: &[u8]) -> TestKey {
        let k = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der).unwrap();
        TestKey::Ec(k, "P-256", "ES256")
    }
    pub(super) fn ed() -> TestKey {
        TestKey::Ed(Ed25519KeyPair::generate().unwrap())
    }

    pub(super) fn alg(&self) -> &'static str {
        match self {
            TestKey::Ec(_, _, alg) => alg,
            TestKey::Rsa(_) => "RS256",
            TestKey::Ed(_) => "EdDSA",
        }
    }

    pub(super) fn jwk(&self) -> Value {
        match self {
            TestKey::Ec(k, crv, _) => {
                let point = k.public_key().as_ref();
                let half = (point.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + half]), "y": b64(&point[1 + half..])})
            }
            TestKey::Rsa(k) => {
                let public = k.public_key();
                let n = public.modulus().big_endian_without_leading_zero();
                let e = public.exponent().big_endian_without_leading_zero();
                json!({"kty": "RSA", "n": b64(n), "e": b64(e)})
            }
            TestKey::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.public_key().as_ref())})
            }
        }
    }

    pub(super) fn sign(&self, input: &[u8]) -> Vec<u8> {
        let rng = SystemRandom::new();
        match self {
            TestKey::Ec(k, _, _) => k.sign(&rng, input).unwrap().as_ref().to_vec(),
            TestKey::Rsa(k) => {
                let mut sig = vec![0; k.public_modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &rng, input, &mut sig).unwrap();
                sig
            }
            TestKey::Ed(k) => k.sign(input).as_ref().to_vec(),
        }
    }

    /// A flattened JWS of `payload` with `header` (alg added), signed.
    pub(super) fn jws(&self, mut header: Value, payload: &[u8]) -> Value {
        header["alg"] = json!(self.alg());
        let protected = b64(header.to_string().as_bytes());
        let payload = b64(payload);
        let sig = self.sign(format!("{protected}.{payload}").as_bytes());
        json!({"protected": protected, "payload": payload, "signature": b64(&sig)})
    }
}

const URL: &str = "https://acme.example.org/acme/new-account";

fn header_with_jwk(key: &TestKey) -> Value {
    json!({"nonce": "n0nce", "url": URL, "jwk": key.jwk()})
}

#[test]
fn every_accepted_algorithm_verifies() {
    for key in [
        TestKey::p256(),
        TestKey::p384(),
        TestKey::rsa(),
        TestKey::ed(),
    ] {
        let body = key.jws(header_with_jwk(&key), br#"{"termsOfServiceAgreed":true}"#);
        let parsed = jws::parse(body.to_string().as_bytes()).unwrap();
        let Signer::Jwk(jwk) = parsed.signer.clone() else {
            panic!("a jwk signer")
        };
        assert_eq!(jwk, Jwk::from_json(&key.jwk()).unwrap());
        let req = parsed
            .verify(&jwk)
            .unwrap_or_else(|e| panic!("{}: {e}", key.alg()));
        assert_eq!(req.url, URL);
        assert_eq!(req.nonce.as_deref(), Some("n0nce"));
        assert_eq!(req.json().unwrap(), json!({"termsOfServiceAgreed": true}));
    }
}

#[test]
fn a_changed_byte_fails_the_signature() {
    for key in [TestKey::p256(), TestKey::rsa(), TestKey::ed()] {
        let mut body = key.jws(header_with_jwk(&key), b"{}");
        // Another payload under the same signature.
        body["payload"] = json!(b64(br#"{"onlyReturnExisting":true}"#));
        let parsed = jws::parse(body.to_string().as_bytes()).unwrap();
        let jwk = Jwk::from_json(&key.jwk()).unwrap();
        assert_eq!(parsed.verify(&jwk).unwrap_err(), JwsError::BadSignature);
    }
    // A valid signature by another key of the same kind.
    let (signer, other) = (TestKey::p256(), TestKey::p256());
    let body = signer.jws(header_with_jwk(&signer), b"{}");
    let parsed = jws::parse(body.to_string().as_bytes()).unwrap();
    let other = Jwk::from_json(&other.jwk()).unwrap();
    assert_eq!(parsed.verify(&other).unwrap_err(), JwsError::BadSignature);
}

#[test]
fn post_as_get_has_an_empty_payload() {
    let key = TestKey::p256();
    let body = key.jws(
        json!({"nonce": "n", "url": URL, "kid": "https://acme.example.org/acme/acct/1"}),
        b"",
    );
    let parsed = jws::parse(body.to_string().as_bytes()).unwrap();
    assert_eq!(
        parsed.signer,
        Signer::Kid("https://acme.example.org/acme/acct/1".into())
    );
    let req = parsed.verify(&Jwk::from_json(&key.jwk()).unwrap()).unwrap();
    assert!(req.payload.is_empty());
    assert!(req.json().is_err(), "an empty payload is not {{}}");
}

#[test]
fn refusals_name_what_is_wrong() {
    let key = TestKey::p256();
    let good = key.jws(header_with_jwk(&key), b"{}");
    let parse = |v: &Value| {
        jws::parse(v.to_string().as_bytes())
            .map(|_| ())
            .unwrap_err()
    };
    let malformed = |e: JwsError, says: &str| {
        assert!(
            matches!(&e, JwsError::Malformed(m) if m.contains(says)),
            "{e:?} should say {says:?}"
        );
        assert_eq!(e.acme_type(), "urn:ietf:params:acme:error:malformed");
    };

    // An unprotected header, or the general serialization.
    let mut v = good.clone();
    v["header"] = json!({"kid": "x"});
    malformed(parse(&v), "flattened");
    let general = json!({"payload": good["payload"], "signatures": [{"protected": good["protected"], "signature": good["signature"]}]});
    malformed(parse(&general), "flattened");
    // The compact serialization.
    let compact = format!(
        "{}.{}.{}",
        good["protected"].as_str().unwrap(),
        good["payload"].as_str().unwrap(),
        good["signature"].as_str().unwrap()
    );
    assert!(matches!(
        jws::parse(compact.as_bytes()),
        Err(JwsError::Malformed(_))
    ));
    // Padding and the standard alphabet are not base64url.
    let mut v = good.clone();
    v["signature"] = json!(format!("{}=", good["signature"].as_str().unwrap()));
    malformed(parse(&v), "base64url");
    let mut v = good.clone();
    v["payload"] = json!("e30+/w");
    malformed(parse(&v), "base64url");

    // Header members.
    let with = |h: Value| key.jws(h, b"{}");
    malformed(
        parse(&with(json!({"nonce": "n", "url": URL}))),
        "neither jwk nor kid",
    );
    malformed(
        parse(&with(
            json!({"nonce": "n", "url": URL, "kid": "k", "jwk": key.jwk()}),
        )),
        "both jwk and kid",
    );
    malformed(
        parse(&with(json!({"nonce": "n", "jwk": key.jwk()}))),
        "\"url\"",
    );
    malformed(
        parse(&with(json!({"nonce": "n", "url": 7, "jwk": key.jwk()}))),
        "not a string",
    );
    malformed(
        parse(&with(
            json!({"nonce": "n", "url": URL, "jwk": key.jwk(), "crit": ["exp"]}),
        )),
        "crit",
    );

    // Algorithms: none, HMAC for a request, one that is not the key's.
    let mut h = header_with_jwk(&key);
    h["alg"] = json!("none");
    let protected = b64(h.to_string().as_bytes());
    let v = json!({"protected": protected, "payload": "e30", "signature": ""});
    let e = parse(&v);
    assert!(
        matches!(&e, JwsError::BadAlgorithm(m) if m.contains("ES256")),
        "{e:?}"
    );
    assert_eq!(
        e.acme_type(),
        "urn:ietf:params:acme:error:badSignatureAlgorithm"
    );
    let mut h = header_with_jwk(&key);
    h["alg"] = json!("HS256");
    let v =
        json!({"protected": b64(h.to_string().as_bytes()), "payload": "e30", "signature": "AA"});
    let parsed = jws::parse(v.to_string().as_bytes()).unwrap();
    assert!(matches!(
        parsed.verify(&Jwk::from_json(&key.jwk()).unwrap()),
        Err(JwsError::BadAlgorithm(_))
    ));
    let ed = TestKey::ed();
    let mut h = header_with_jwk(&key);
    h["alg"] = json!("EdDSA");
    let protected = b64(h.to_string().as_bytes());
    let sig = ed.sign(format!("{protected}.e30").as_bytes());
    let v = json!({"protected": protected, "payload": "e30", "signature": b64(&sig)});
    let parsed = jws::parse(v.to_string().as_bytes()).unwrap();
    assert!(matches!(
        parsed.verify(&Jwk::from_json(&key.jwk()).unwrap()),
        Err(JwsError::BadAlgorithm(_))
    ));
}

#[test]
fn keys_idsync_does_not_take_are_refused() {
    let bad_key = |jwk: Value, says: &str| {
        let e = Jwk::from_json(&jwk).unwrap_err();
        assert!(
            matches!(&e, JwsError::BadKey(m) if m.contains(says)),
            "{jwk}: {e:?}"
        );
        assert_eq!(e.acme_type(), "urn:ietf:params:acme:error:badPublicKey");
    };
    let p256 = TestKey::p256().jwk();
    let mut private = p256.clone();
    private["d"] = json!("AAAA");
    bad_key(private, "private member \"d\"");
    let mut curve = p256.clone();
    curve["crv"] = json!("P-521");
    bad_key(curve, "P-521");
    let mut short = p256.clone();
    short["x"] = json!(b64(&[1; 31]));
    bad_key(short, "32 bytes");
    bad_key(json!({"kty": "oct", "k": "AAAA"}), "private member \"k\"");
    bad_key(json!({"kty": "oct"}), "\"oct\"");
    bad_key(
        json!({"kty": "OKP", "crv": "X25519", "x": b64(&[1; 32])}),
        "X25519",
    );
    bad_key(
        json!({"kty": "RSA", "n": b64(&[0xc1; 128]), "e": "AQAB"}),
        "1024",
    );
    bad_key(
        json!({"kty": "RSA", "n": b64(&[0, 1]), "e": "AQAB"}),
        "leading zeros",
    );
    bad_key(json!(["not", "an", "object"]), "object");
    // A point that is not on the curve never verifies.
    let mut off = p256;
    off["y"] = json!(b64(&[7; 32]));
    let jwk = Jwk::from_json(&off).unwrap();
    let e = jwk
        .verify(super::jws::Alg::Es256, b"x", &[1; 64])
        .unwrap_err();
    assert_eq!(e, JwsError::BadSignature);
}

#[test]
fn thumbprints_ignore_member_order_and_extra_members() {
    let key = TestKey::p256().jwk();
    let reordered = json!({"y": key["y"], "x": key["x"], "kty": "EC", "crv": "P-256", "use": "sig", "kid": "mine"});
    let a = Jwk::from_json(&key).unwrap();
    let b = Jwk::from_json(&reordered).unwrap();
    assert_eq!(a.thumbprint(), b.thumbprint());
    assert_eq!(a.thumbprint().len(), 43);
    assert!(a
        .canonical_json()
        .starts_with(r#"{"crv":"P-256","kty":"EC","x":""#));
}

/// An external account binding of `account` for `url`, MACed with `key`.
pub(super) fn binding(account: &TestKey, kid: &str, url: &str, key: &[u8], nonce: bool) -> Value {
    let mut h = json!({"alg": "HS256", "kid": kid, "url": url});
    if nonce {
        h["nonce"] = json!("n");
    }
    let protected = b64(h.to_string().as_bytes());
    let payload = b64(account.jwk().to_string().as_bytes());
    let mac = hmac::sign(
        &hmac::Key::new(hmac::HMAC_SHA256, key),
        format!("{protected}.{payload}").as_bytes(),
    );
    json!({"protected": protected, "payload": payload, "signature": b64(mac.as_ref())})
}

#[test]
fn external_account_bindings() {
    let account = TestKey::p256();
    let jwk = Jwk::from_json(&account.jwk()).unwrap();
    let key = [42u8; 32];
    let key_b64 = b64(&key);
    let good = binding(&account, "reg-1", URL, &key, false);
    let b = eab::parse(&good, URL, &jwk).unwrap();
    assert_eq!(b.key_id, "reg-1");
    b.verify(&key_b64).unwrap();
    // Another key: unauthorized.
    assert_eq!(b.verify(&b64(&[43u8; 32])), Err(EabError::BadMac));
    assert_eq!(b.verify("not base64url!"), Err(EabError::BadMac));
    // Form: another URL, a nonce, another account key, not HS256.
    let refused = |v: &Value, jwk: &Jwk, says: &str| {
        let e = eab::parse(v, URL, jwk).unwrap_err();
        assert!(
            matches!(&e, EabError::Malformed(m) if m.contains(says)),
            "{e:?} should say {says:?}"
        );
    };
    refused(
        &binding(&account, "reg-1", "https://elsewhere/", &key, false),
        &jwk,
        "url",
    );
    refused(&binding(&account, "reg-1", URL, &key, true), &jwk, "nonce");
    let other = Jwk::from_json(&TestKey::ed().jwk()).unwrap();
    refused(&good, &other, "another key");
    let signed = account.jws(
        json!({"kid": "reg-1", "url": URL}),
        account.jwk().to_string().as_bytes(),
    );
    refused(&signed, &jwk, "HS256");
    refused(&json!({"protected": "e30"}), &jwk, "flattened");
}
