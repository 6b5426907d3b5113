//! Fuzz target `acme_jws`: the JWS of an ACME request
//! (`idsync::sources::acme::jws`), its account key (`jwk`) and an external
//! account binding in its payload (`eab`), which the ACME server reads
//! from anyone on the network before it knows who sent it.
//!
//! Why: every ACME request is a client-chosen flattened JWS whose
//! protected header, key and payload are base64url JSON; the server must
//! refuse what is wrong with an RFC 8555 error type and never panic.
//! Input: the request body. Checked, beyond not panicking:
//! - a refusal maps onto one of the ACME error types `jws` names;
//! - an accepted JWS with a `jwk` carries a key whose canonical JSON reads
//!   back to the same key, whose thumbprint is 43 base64url characters,
//!   and which signs with the header's algorithm or refuses it typed;
//! - a payload holding an `externalAccountBinding` is parsed as one, for
//!   the request's key, without panicking.

use idsync::sources::acme::eab;
use idsync::sources::acme::jwk::Jwk;
use idsync::sources::acme::jws::{self, Signer};

pub fn run(data: &[u8]) {
    let parsed = match jws::parse(data) {
        Ok(p) => p,
        Err(e) => {
            assert!(
                e.acme_type().starts_with("urn:ietf:params:acme:error:"),
                "{e:?}"
            );
            return;
        }
    };
    let Signer::Jwk(key) = parsed.signer.clone() else {
        return;
    };
    let canonical: serde_json::Value =
        serde_json::from_str(&key.canonical_json()).expect("canonical JSON parses");
    assert_eq!(
        Jwk::from_json(&canonical).as_ref(),
        Ok(&key),
        "canonical form reads back"
    );
    assert_eq!(key.thumbprint().len(), 43);
    let url = parsed.url.clone();
    match parsed.verify(&key) {
        Ok(req) => {
            if let Ok(v) = req.json() {
                if let Some(b) = v.get("externalAccountBinding") {
                    if let Ok(binding) = eab::parse(b, &url, &key) {
                        let _ = binding.verify("AAAA");
                    }
                }
            }
        }
        Err(e) => assert!(e.acme_type().starts_with("urn:ietf:params:acme:error:")),
    }
}
