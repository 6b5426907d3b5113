//! Account keys as JSON Web Keys (RFC 7517, RFC 7518 §6, RFC 8037): the
//! public keys ACME clients send, the signatures they make with them, and
//! their thumbprints (RFC 7638), which name an account key and make the
//! key authorizations of challenges (RFC 8555 §8.1).
//!
//! Accepted: EC P-256 and P-384 (ES256, ES384), RSA of 2048 to 8192 bits
//! (RS256) and Ed25519 (EdDSA): what lego, certbot, acme.sh and
//! instant-acme sign with. A key that carries private members is refused:
//! a client that sends its private key has a bug we must not encourage.

use aws_lc_rs::signature::{
    self, RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P384_SHA384_FIXED, ED25519, RSA_PKCS1_2048_8192_SHA256,
};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::jws::{Alg, JwsError};

/// A public key of an ACME account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Jwk {
    /// `kty: EC`: the curve and the point's coordinates.
    Ec {
        curve: Curve,
        x: Vec<u8>,
        y: Vec<u8>,
    },
    /// `kty: RSA`: modulus and exponent, big-endian, no leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// `kty: OKP, crv: Ed25519`.
    Ed25519 { x: Vec<u8> },
}

/// The curves of EC keys accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
}

impl Curve {
    fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }

    /// Bytes of one coordinate.
    fn size(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }
}

/// Members of a JWK that only a private key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

impl Jwk {
    /// The key a JWK object describes.
    pub fn from_json(v: &Value) -> Result<Jwk, JwsError> {
        let obj = v
            .as_object()
            .ok_or_else(|| JwsError::BadKey("a JWK is a JSON object".into()))?;
        if let Some(m) = PRIVATE_MEMBERS.iter().find(|m| obj.contains_key(**m)) {
            return Err(JwsError::BadKey(format!(
                "the JWK has the private member {m:?}: send the public key only"
            )));
        }
        match member(obj, "kty")? {
            "EC" => {
                let curve = match member(obj, "crv")? {
                    "P-256" => Curve::P256,
                    "P-384" => Curve::P384,
                    other => {
                        return Err(JwsError::BadKey(format!(
                            "EC curve {other:?} is not P-256 or P-384"
                        )))
                    }
                };
                let x = bytes(obj, "x")?;
                let y = bytes(obj, "y")?;
                if x.len() != curve.size() || y.len() != curve.size() {
                    return Err(JwsError::BadKey(format!(
                        "{} coordinates are {} bytes each",
                        curve.name(),
                        curve.size()
                    )));
                }
                Ok(Jwk::Ec { curve, x, y })
            }
            "RSA" => {
                let n = bytes(obj, "n")?;
                let e = bytes(obj, "e")?;
                if n.first() == Some(&0) || e.first() == Some(&0) || n.is_empty() || e.is_empty() {
                    return Err(JwsError::BadKey(
                        "RSA n and e are unsigned big-endian without leading zeros (RFC 7518 §6.3.1)"
                            .into(),
                    ));
                }
                if !(256..=1024).contains(&n.len()) {
                    return Err(JwsError::BadKey(format!(
                        "an RSA account key has 2048 to 8192 bits, not {}",
                        n.len() * 8
                    )));
                }
                Ok(Jwk::Rsa { n, e })
            }
            "OKP" => match member(obj, "crv")? {
                "Ed25519" => {
                    let x = bytes(obj, "x")?;
                    if x.len() != 32 {
                        return Err(JwsError::BadKey("an Ed25519 key is 32 bytes".into()));
                    }
                    Ok(Jwk::Ed25519 { x })
                }
                other => Err(JwsError::BadKey(format!(
                    "OKP curve {other:?} is not Ed25519"
                ))),
            },
            other => Err(JwsError::BadKey(format!(
                "key type {other:?} is not EC, RSA or OKP"
            ))),
        }
    }

    /// The JWK's required members in lexicographic order, no whitespace:
    /// the input of its thumbprint (RFC 7638 §3.2), and a canonical form
    /// to store.
    pub fn canonical_json(&self) -> String {
        let b = |v: &[u8]| URL_SAFE_NO_PAD.encode(v);
        match self {
            Jwk::Ec { curve, x, y } => format!(
                r#"{{"crv":"{}","kty":"EC","x":"{}","y":"{}"}}"#,
                curve.name(),
                b(x),
                b(y)
            ),
            Jwk::Rsa { n, e } => format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, b(e), b(n)),
            Jwk::Ed25519 { x } => format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, b(x)),
        }
    }

    /// The SHA-256 JWK thumbprint, base64url (RFC 7638).
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// The key as a certificate's subjectPublicKey bits carry it: the
    /// uncompressed EC point, the 32 Ed25519 bytes, or the DER of an RSA
    /// key's `SEQUENCE { n, e }` (RFC 8017 A.1.1). For revokeCert signed
    /// with the certificate's key.
    pub fn public_key_bits(&self) -> Vec<u8> {
        match self {
            Jwk::Ec { x, y, .. } => [&[4u8][..], x, y].concat(),
            Jwk::Ed25519 { x } => x.clone(),
            Jwk::Rsa { n, e } => der_sequence(&[der_uint(n), der_uint(e)].concat()),
        }
    }

    /// Whether `alg` is the one algorithm this key signs with.
    pub fn signs_with(&self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                Jwk::Ec {
                    curve: Curve::P256,
                    ..
                },
                Alg::Es256
            ) | (
                Jwk::Ec {
                    curve: Curve::P384,
                    ..
                },
                Alg::Es384
            ) | (Jwk::Rsa { .. }, Alg::Rs256)
                | (Jwk::Ed25519 { .. }, Alg::EdDsa)
        )
    }

    /// Check `signature` over `message` with this key and `alg`.
    pub fn verify(&self, alg: Alg, message: &[u8], sig: &[u8]) -> Result<(), JwsError> {
        if !self.signs_with(alg) {
            return Err(JwsError::BadAlgorithm(format!(
                "{} does not go with this key",
                alg.name()
            )));
        }
        let checked = match self {
            Jwk::Ec { curve, x, y } => {
                let mut point = Vec::with_capacity(1 + x.len() + y.len());
                point.push(4);
                point.extend_from_slice(x);
                point.extend_from_slice(y);
                let algorithm: &dyn signature::VerificationAlgorithm = match curve {
                    Curve::P256 => &ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &ECDSA_P384_SHA384_FIXED,
                };
                UnparsedPublicKey::new(algorithm, &point).verify(message, sig)
            }
            Jwk::Rsa { n, e } => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, message, sig)
            }
            Jwk::Ed25519 { x } => UnparsedPublicKey::new(&ED25519, x).verify(message, sig),
        };
        checked.map_err(|_| JwsError::BadSignature)
    }
}

/// A string member of a JWK.
fn member<'a>(obj: &'a Map<String, Value>, name: &str) -> Result<&'a str, JwsError> {
    obj.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| JwsError::BadKey(format!("the JWK has no string member {name:?}")))
}

/// A base64url member of a JWK, decoded.
fn bytes(obj: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JwsError> {
    let text = member(obj, name)?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JwsError::BadKey(format!("JWK member {name:?} is not base64url")))
}

/// A DER INTEGER of the unsigned big-endian `v` (a leading zero when its
/// top bit is set).
fn der_uint(v: &[u8]) -> Vec<u8> {
    let v = match v.iter().position(|b| *b != 0) {
        Some(i) => &v[i..],
        None => &[0u8][..],
    };
    let mut content = Vec::with_capacity(v.len() + 1);
    if v[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(v);
    der_tlv(0x02, &content)
}

fn der_sequence(content: &[u8]) -> Vec<u8> {
    der_tlv(0x30, content)
}

fn der_tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(content);
    out
}
