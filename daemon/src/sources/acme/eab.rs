//! External account binding (RFC 8555 §7.3.4): the inner JWS of a
//! `newAccount` request, MACed with the HMAC key of a registration, whose
//! payload is the account's own key. It proves that whoever creates the
//! account holds the secret `idsync enroll acme` handed out, and names the
//! registration (its `kid`) the account is bound to.

use aws_lc_rs::hmac;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use super::jwk::Jwk;
use super::jws::{parse_flattened, Alg, Flattened, JwsError, Signer};

/// Why a binding was refused (`unauthorized` for a MAC that does not
/// verify, `malformed` for the rest).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EabError {
    #[error("{0}")]
    Malformed(String),
    #[error("the external account binding's MAC does not verify")]
    BadMac,
}

impl From<JwsError> for EabError {
    fn from(e: JwsError) -> Self {
        EabError::Malformed(format!("externalAccountBinding: {e}"))
    }
}

/// A binding whose form is checked; its MAC is checked with the key of
/// its `key_id` ([`Binding::verify`]).
#[derive(Debug)]
pub struct Binding {
    /// The registration's id.
    pub key_id: String,
    parsed: super::jws::Parsed,
}

/// Read the `externalAccountBinding` of a newAccount payload: an HS256
/// JWS, no nonce, the same `url` as the outer request, a `kid`, and the
/// account's key (`account_key`, the outer `jwk`) as its payload.
pub fn parse(binding: &Value, url: &str, account_key: &Jwk) -> Result<Binding, EabError> {
    let f: Flattened = serde_json::from_value(binding.clone()).map_err(|e| {
        EabError::Malformed(format!(
            "externalAccountBinding is not a flattened JWS: {e}"
        ))
    })?;
    let parsed = parse_flattened(&f)?;
    if parsed.alg != Alg::Hs256 {
        return Err(EabError::Malformed(format!(
            "externalAccountBinding is signed with {}; it must be HS256",
            parsed.alg.name()
        )));
    }
    if parsed.nonce.is_some() {
        return Err(EabError::Malformed(
            "externalAccountBinding must not have a nonce".into(),
        ));
    }
    if parsed.url != url {
        return Err(EabError::Malformed(
            "externalAccountBinding's url is not the newAccount URL".into(),
        ));
    }
    let key_id = match &parsed.signer {
        Signer::Kid(k) => k.clone(),
        Signer::Jwk(_) => {
            return Err(EabError::Malformed(
                "externalAccountBinding names its key with kid, not jwk".into(),
            ))
        }
    };
    let (_, _, payload) = parsed.mac_parts();
    let bound: Value = serde_json::from_slice(payload)
        .map_err(|_| EabError::Malformed("externalAccountBinding's payload is not a JWK".into()))?;
    if Jwk::from_json(&bound).map_err(EabError::from)? != *account_key {
        return Err(EabError::Malformed(
            "externalAccountBinding binds another key than the account's".into(),
        ));
    }
    Ok(Binding { key_id, parsed })
}

impl Binding {
    /// Check the MAC with the registration's HMAC key (base64url, as
    /// `idsync enroll acme` printed it), in constant time.
    pub fn verify(&self, hmac_key_b64: &str) -> Result<(), EabError> {
        let key = URL_SAFE_NO_PAD
            .decode(hmac_key_b64)
            .map_err(|_| EabError::BadMac)?;
        let (input, mac, _) = self.parsed.mac_parts();
        hmac::verify(&hmac::Key::new(hmac::HMAC_SHA256, &key), input, mac)
            .map_err(|_| EabError::BadMac)
    }
}
