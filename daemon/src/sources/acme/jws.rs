//! The JSON Web Signature of an ACME request (RFC 8555 §6.2, RFC 7515):
//! the flattened JSON serialization only (no compact or general form, no
//! unprotected header), a protected header with `alg`, `nonce`, `url` and
//! exactly one of `jwk` (new accounts, revocation by certificate key) or
//! `kid` (the account URL), and a signature checked with the key before
//! anything in the payload is believed.
//!
//! The checks the server makes with its own state (is the nonce fresh, is
//! `url` this request's URL, is `kid` an account) take the [`Request`]
//! this module hands it; they are not here because they need that state.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::Value;

use super::jwk::Jwk;

/// Why a JWS was refused; each maps onto an ACME error type (RFC 8555
/// §6.7), and its message says what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwsError {
    /// Not a flattened JWS, bad base64url, a header member missing or of
    /// the wrong type (`malformed`).
    #[error("{0}")]
    Malformed(String),
    /// An algorithm idsync does not accept, or not the key's
    /// (`badSignatureAlgorithm`).
    #[error("{0}")]
    BadAlgorithm(String),
    /// The key is not one idsync accepts (`badPublicKey`).
    #[error("{0}")]
    BadKey(String),
    /// The signature does not verify (`malformed`, as Boulder and Pebble
    /// answer).
    #[error("the JWS signature does not verify with the key")]
    BadSignature,
}

impl JwsError {
    /// The ACME error type (RFC 8555 §6.7) to answer with.
    pub fn acme_type(&self) -> &'static str {
        match self {
            JwsError::Malformed(_) | JwsError::BadSignature => {
                "urn:ietf:params:acme:error:malformed"
            }
            JwsError::BadAlgorithm(_) => "urn:ietf:params:acme:error:badSignatureAlgorithm",
            JwsError::BadKey(_) => "urn:ietf:params:acme:error:badPublicKey",
        }
    }
}

/// The signature algorithms (RFC 7518 §3.1, RFC 8037 §3.1) accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    Es384,
    Rs256,
    EdDsa,
    /// Only inside an external account binding (RFC 8555 §7.3.4).
    Hs256,
}

impl Alg {
    /// The algorithms an account key may sign requests with, as the
    /// `badSignatureAlgorithm` error lists them.
    pub const FOR_ACCOUNTS: [Alg; 4] = [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::EdDsa];

    pub fn name(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Es384 => "ES384",
            Alg::Rs256 => "RS256",
            Alg::EdDsa => "EdDSA",
            Alg::Hs256 => "HS256",
        }
    }

    fn parse(s: &str) -> Option<Alg> {
        [Alg::Es256, Alg::Es384, Alg::Rs256, Alg::EdDsa, Alg::Hs256]
            .into_iter()
            .find(|a| a.name() == s)
    }
}

/// The flattened JSON serialization (RFC 7515 §7.2.2). Unknown members
/// are refused: `header` (an unprotected header, RFC 8555 §6.2) and
/// `signatures` (the general form) among them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Flattened {
    pub protected: String,
    pub payload: String,
    pub signature: String,
}

/// Who signed: a key sent along, or an account's URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signer {
    Jwk(Jwk),
    Kid(String),
}

/// A parsed JWS, not verified yet: verify it with the key its
/// [`Signer`] names ([`Parsed::verify`]).
#[derive(Debug)]
pub struct Parsed {
    pub alg: Alg,
    pub signer: Signer,
    /// Absent only in an external account binding.
    pub nonce: Option<String>,
    pub url: String,
    /// The whole protected header, for the members a step needs.
    pub header: serde_json::Map<String, Value>,
    signing_input: Vec<u8>,
    signature: Vec<u8>,
    payload: Vec<u8>,
}

/// A JWS whose signature verified: its header and payload may be believed.
#[derive(Debug)]
pub struct Request {
    pub signer: Signer,
    pub nonce: Option<String>,
    pub url: String,
    pub header: serde_json::Map<String, Value>,
    /// Empty for POST-as-GET (RFC 8555 §6.3).
    pub payload: Vec<u8>,
}

impl Request {
    /// The payload as JSON (`{}` is not the same as POST-as-GET's empty
    /// payload: a step that wants an object says so).
    pub fn json(&self) -> Result<Value, JwsError> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| JwsError::Malformed(format!("the JWS payload is not JSON: {e}")))
    }
}

/// Parse a request body as a flattened JWS with an ACME protected header.
pub fn parse(body: &[u8]) -> Result<Parsed, JwsError> {
    let f: Flattened = serde_json::from_slice(body).map_err(|e| {
        JwsError::Malformed(format!(
            "the body is not a flattened JWS (protected, payload, signature): {e}"
        ))
    })?;
    parse_flattened(&f)
}

/// [`parse`] of a JWS already split into its members.
pub fn parse_flattened(f: &Flattened) -> Result<Parsed, JwsError> {
    let header_bytes = b64(&f.protected, "protected")?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(&header_bytes).map_err(|e| {
            JwsError::Malformed(format!("the protected header is not a JSON object: {e}"))
        })?;
    let alg_name = text(&header, "alg")?.ok_or_else(|| missing("alg"))?;
    let alg = Alg::parse(alg_name).ok_or_else(|| {
        let names: Vec<&str> = Alg::FOR_ACCOUNTS.iter().map(|a| a.name()).collect();
        JwsError::BadAlgorithm(format!(
            "alg {alg_name:?} is not accepted; use one of {}",
            names.join(", ")
        ))
    })?;
    let signer = match (header.get("jwk"), text(&header, "kid")?) {
        (Some(jwk), None) => Signer::Jwk(Jwk::from_json(jwk)?),
        (None, Some(kid)) => Signer::Kid(kid.to_owned()),
        (Some(_), Some(_)) => {
            return Err(JwsError::Malformed(
                "the protected header has both jwk and kid; it must have one".into(),
            ))
        }
        (None, None) => {
            return Err(JwsError::Malformed(
                "the protected header has neither jwk nor kid".into(),
            ))
        }
    };
    if header.contains_key("crit") {
        return Err(JwsError::Malformed(
            "no critical header extensions are understood here (crit)".into(),
        ));
    }
    let nonce = text(&header, "nonce")?.map(str::to_owned);
    let url = text(&header, "url")?
        .ok_or_else(|| missing("url"))?
        .to_owned();
    let mut signing_input = Vec::with_capacity(f.protected.len() + 1 + f.payload.len());
    signing_input.extend_from_slice(f.protected.as_bytes());
    signing_input.push(b'.');
    signing_input.extend_from_slice(f.payload.as_bytes());
    Ok(Parsed {
        alg,
        signer,
        nonce,
        url,
        header,
        signing_input,
        signature: b64(&f.signature, "signature")?,
        payload: b64(&f.payload, "payload")?,
    })
}

impl Parsed {
    /// Check the signature with `key` (the `jwk` of the header, or the
    /// account's key for a `kid`). HS256 is refused here: it belongs to
    /// external account bindings only ([`super::eab`]).
    pub fn verify(self, key: &Jwk) -> Result<Request, JwsError> {
        if self.alg == Alg::Hs256 {
            return Err(JwsError::BadAlgorithm(
                "HS256 signs external account bindings, not requests".into(),
            ));
        }
        key.verify(self.alg, &self.signing_input, &self.signature)?;
        Ok(Request {
            signer: self.signer,
            nonce: self.nonce,
            url: self.url,
            header: self.header,
            payload: self.payload,
        })
    }

    /// What an external account binding's MAC covers, and the MAC.
    pub(super) fn mac_parts(&self) -> (&[u8], &[u8], &[u8]) {
        (&self.signing_input, &self.signature, &self.payload)
    }
}

fn missing(name: &str) -> JwsError {
    JwsError::Malformed(format!("the protected header has no {name:?}"))
}

/// A string member of the header, if present.
fn text<'a>(
    h: &'a serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, JwsError> {
    match h.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(JwsError::Malformed(format!(
            "the protected header's {name:?} is not a string"
        ))),
    }
}

/// base64url without padding (RFC 7515 §2), decoded.
pub(super) fn b64(text: &str, what: &str) -> Result<Vec<u8>, JwsError> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        JwsError::Malformed(format!("the JWS {what} is not base64url without padding"))
    })
}
