//! Fuzz target `csr_parse`: PKCS#10 request parsing
//! (`idsync_connectors::ca::parse_csr`), which reads what enrollment
//! clients upload, PEM or DER, before anything is checked.
//!
//! Why: the request is the one binary, client-chosen input of enrollment:
//! PEM framing, DER, the key's algorithm and parameters, the signature and
//! the requested extensions all come from the client and go through
//! x509-parser, the PEM reader and aws-lc-rs. Input: the upload's bytes.
//! Checked, beyond not panicking:
//! - a refusal is one of the request errors (`BadCsr`, `BadSignature`,
//!   `UnsupportedKey`), which the API shows as a 400, never another kind;
//! - an accepted request reads the same again from its own DER and from
//!   its own PEM ([`Csr::pem`], what the daemon stores);
//! - the public key is the one of the request's SubjectPublicKeyInfo, of
//!   the size its key type has;
//! - the subject attributes kept are CN, O and C, each at most once, in
//!   that order.

use idsync_connectors::ca::{parse_csr, CaError, Csr};
use idsync_schema::cert::KeyType;

pub fn run(data: &[u8]) {
    let csr = match parse_csr(data) {
        Ok(csr) => csr,
        Err(e) => {
            assert!(
                matches!(
                    e,
                    CaError::BadCsr(_) | CaError::BadSignature | CaError::UnsupportedKey(_)
                ),
                "not a request error: {e:?}"
            );
            return;
        }
    };
    reads_back(&csr);
    let key = &csr.public_key;
    assert!(csr.spki_der.ends_with(key), "{csr:?}: key outside the SPKI");
    assert!(
        csr.der
            .windows(csr.spki_der.len())
            .any(|w| w == csr.spki_der),
        "{csr:?}: SPKI outside the request"
    );
    // EC points uncompressed (04‖X‖Y) or compressed (02/03‖X).
    let sizes: &[usize] = match csr.key_type {
        KeyType::EcdsaP256 => &[65, 33],
        KeyType::EcdsaP384 => &[97, 49],
        KeyType::Ed25519 => &[32],
        KeyType::Rsa2048 | KeyType::Rsa3072 | KeyType::Rsa4096 => &[key.len()],
    };
    assert!(sizes.contains(&key.len()), "{csr:?}: {} bytes", key.len());
    let names: Vec<&str> = csr
        .subject_attributes
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let mut expected = vec!["CN", "O", "C"];
    expected.retain(|n| names.contains(n));
    assert_eq!(names, expected, "{csr:?}");
}

fn reads_back(csr: &Csr) {
    match parse_csr(&csr.der) {
        Ok(again) => assert_eq!(&again, csr, "from its DER"),
        Err(e) => panic!("{csr:?} does not read back from its DER: {e}"),
    }
    match parse_csr(csr.pem().as_bytes()) {
        Ok(again) => assert_eq!(&again, csr, "from its PEM"),
        Err(e) => panic!("{csr:?} does not read back from its PEM: {e}"),
    }
}
