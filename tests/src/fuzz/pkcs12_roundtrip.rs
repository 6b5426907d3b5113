//! Fuzz target `pkcs12_roundtrip`: idsync's own PKCS#12 writer
//! (`connectors/src/ca/pkcs12.rs`, under `build_p12`), read back by an
//! independent implementation, the `p12-keystore` crate.
//!
//! Why: the writer builds its DER by hand (lengths, SET OF order, BMP
//! strings, integers) and derives its keys with its own KDF loops; a file
//! a client cannot open is only found when someone tries. Input, decoded
//! with `arbitrary`: the password, the friendly name, the `localKeyId`
//! (repeated to reach the long length forms), the key and the chain drawn
//! from real keys and certificates, and 1 to 3 KDF iterations (the count
//! only repeats the same rounds; 2048 would cut the rate a thousandfold).
//! Checked, beyond not panicking: the reader accepts the file (strict DER,
//! the MAC verifies), decrypts the key and every certificate to exactly
//! what was written, in order, with the friendly name and `localKeyId` on
//! the key and the leaf only, and refuses the file under another password.
//!
//! `p12-keystore` reads passwords and names as UCS-2 and refuses anything
//! outside the Basic Multilingual Plane, which the writer encodes as
//! UTF-16 as OpenSSL does; such characters are replaced before writing, so
//! the check is the writer's, not the reader's limit.

use std::sync::OnceLock;

use arbitrary::{Result, Unstructured};
use idsync_connectors::fuzzing::{write_pkcs12, Pkcs12Contents};
use p12_keystore::Pkcs12Archive;

/// A key (PKCS#8 DER) and a certificate for it (DER).
struct Pair {
    key: Vec<u8>,
    cert: Vec<u8>,
}

/// One pair per key type idsync issues PKCS#12 files for (RSA at its
/// smallest size: the writer treats every key as opaque bytes).
fn pool() -> &'static [Pair] {
    static POOL: OnceLock<Vec<Pair>> = OnceLock::new();
    POOL.get_or_init(|| {
        let keys = [
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
            rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519),
            rcgen::KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, rcgen::RsaKeySize::_2048),
        ];
        keys.into_iter()
            .enumerate()
            .map(|(i, key)| {
                let key = key.expect("key generation");
                let cert = rcgen::CertificateParams::new(vec![format!("host{i}.example.org")])
                    .expect("params")
                    .self_signed(&key)
                    .expect("self-signed certificate");
                Pair {
                    key: key.serialized_der().to_vec(),
                    cert: cert.der().to_vec(),
                }
            })
            .collect()
    })
}

/// What one file is written from.
struct Input {
    key: usize,
    chain: Vec<usize>,
    iterations: u32,
    password: String,
    alias: String,
    local_key_id: Vec<u8>,
}

/// The reader's character set: the Basic Multilingual Plane below U+FFFF.
fn ucs2(s: String) -> String {
    s.chars()
        .map(|c| if (c as u32) < 0xFFFF { c } else { '\u{FFFD}' })
        .collect()
}

fn input(u: &mut Unstructured<'_>) -> Result<Input> {
    let n = pool().len();
    let key = u.choose_index(n)?;
    let chain_len = u.int_in_range(0..=3)?;
    let chain = (0..chain_len)
        .map(|_| u.choose_index(n))
        .collect::<Result<_>>()?;
    let iterations = u.int_in_range(1..=3)?;
    let repeat = u.int_in_range(1..=64)?;
    let password = ucs2(u.arbitrary()?);
    let alias = ucs2(u.arbitrary()?);
    let id: Vec<u8> = u.arbitrary()?;
    Ok(Input {
        key,
        chain,
        iterations,
        password,
        alias,
        local_key_id: id.repeat(repeat),
    })
}

pub fn run(data: &[u8]) {
    let Ok(input) = input(&mut Unstructured::new(data)) else {
        return;
    };
    let pool = pool();
    let certs: Vec<Vec<u8>> = std::iter::once(input.key)
        .chain(input.chain.iter().copied())
        .map(|i| pool[i].cert.clone())
        .collect();
    let contents = Pkcs12Contents {
        key_pkcs8: &pool[input.key].key,
        certs: &certs,
        alias: &input.alias,
        local_key_id: &input.local_key_id,
    };
    let file = write_pkcs12(&contents, &input.password, input.iterations).expect("written");
    let read = match Pkcs12Archive::from_pkcs12(&file, &input.password) {
        Ok(read) => read,
        Err(e) => panic!("the file does not read back: {e:?}"),
    };
    assert_eq!(read.keys.len(), 1, "one key");
    let k = &read.keys[0];
    assert_eq!(k.key.as_der(), contents.key_pkcs8, "the key");
    assert_eq!(k.friendly_name.as_deref(), Some(contents.alias), "key name");
    let key_id = k.local_key_id.as_ref().map(|id| id.0.as_slice());
    assert_eq!(key_id, Some(contents.local_key_id), "key id");
    assert_eq!(read.certs.len(), certs.len(), "every certificate");
    for (i, (got, want)) in read.certs.iter().zip(&certs).enumerate() {
        assert_eq!(got.cert.as_der(), want.as_slice(), "certificate {i}");
        let (name, id) = (got.friendly_name.as_deref(), got.local_key_id.as_deref());
        if i == 0 {
            assert_eq!(
                (name, id),
                (Some(contents.alias), Some(contents.local_key_id))
            );
        } else {
            assert_eq!((name, id), (None, None), "chain certificate {i}");
        }
    }
    let wrong = format!("{}x", input.password);
    assert!(
        Pkcs12Archive::from_pkcs12(&file, &wrong).is_err(),
        "another password opens the file"
    );
}
