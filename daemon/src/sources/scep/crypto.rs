//! The algorithms SCEP peers use, named by their OIDs, on aws-lc-rs:
//! digests and RSA PKCS#1 v1.5 signatures (SHA-1 to SHA-512), RSA PKCS#1
//! v1.5 key transport, and the CBC content ciphers of envelopes (single
//! DES and DES-EDE3 because clients still send them, AES).
//!
//! RSA keys must be 2048 to 8192 bits (aws-lc-rs refuses others). The RA
//! signs with SHA-256 or longer only: aws-lc-rs does not sign with SHA-1.

#![allow(deprecated)] // aws-lc-rs marks its DES ciphers deprecated: legacy by design here.

use aws_lc_rs::cipher::{
    DecryptionContext, PaddedBlockDecryptingKey, PaddedBlockEncryptingKey, UnboundCipherKey,
    AES_128, AES_192, AES_256, DES_EDE3_FOR_LEGACY_USE_ONLY, DES_FOR_LEGACY_USE_ONLY,
};
use aws_lc_rs::iv::FixedLength;
use aws_lc_rs::rsa::{Pkcs1PrivateDecryptingKey, Pkcs1PublicEncryptingKey, PublicEncryptingKey};
use aws_lc_rs::signature::{self, RsaKeyPair, UnparsedPublicKey};
use aws_lc_rs::{digest, rand};
use der::asn1::ObjectIdentifier;

/// rsaEncryption (RFC 8017 A.1): the key-transport and the usual CMS
/// signature algorithm.
pub const RSA_ENCRYPTION: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");

/// A digest algorithm of a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestAlg {
    Sha1,
    Sha256,
    Sha384,
    Sha512,
}

impl DigestAlg {
    const ALL: [DigestAlg; 4] = [Self::Sha1, Self::Sha256, Self::Sha384, Self::Sha512];

    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            Self::Sha1 => "1.3.14.3.2.26",
            Self::Sha256 => "2.16.840.1.101.3.4.2.1",
            Self::Sha384 => "2.16.840.1.101.3.4.2.2",
            Self::Sha512 => "2.16.840.1.101.3.4.2.3",
        })
    }

    /// The `shaNNNWithRSAEncryption` OID (RFC 8017 A.2.4).
    fn rsa_signature_oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            Self::Sha1 => "1.2.840.113549.1.1.5",
            Self::Sha256 => "1.2.840.113549.1.1.11",
            Self::Sha384 => "1.2.840.113549.1.1.12",
            Self::Sha512 => "1.2.840.113549.1.1.13",
        })
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.oid() == *oid)
    }

    /// Whether a SignerInfo's `signatureAlgorithm` is RSA PKCS#1 v1.5 with
    /// this digest: `rsaEncryption` (RFC 3370 §3.2) or the combined OID.
    pub fn accepts_signature_oid(self, oid: &ObjectIdentifier) -> bool {
        *oid == RSA_ENCRYPTION || *oid == self.rsa_signature_oid()
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Sha1 => "SHA-1",
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }

    pub fn digest(self, data: &[u8]) -> Vec<u8> {
        let alg = match self {
            Self::Sha1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &digest::SHA256,
            Self::Sha384 => &digest::SHA384,
            Self::Sha512 => &digest::SHA512,
        };
        digest::digest(alg, data).as_ref().to_vec()
    }

    /// Verify an RSA PKCS#1 v1.5 signature with this digest;
    /// `rsa_public_key` is a DER RSAPublicKey (PKCS#1).
    pub fn verify(self, rsa_public_key: &[u8], msg: &[u8], sig: &[u8]) -> bool {
        let params = match self {
            Self::Sha1 => &signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
            Self::Sha256 => &signature::RSA_PKCS1_2048_8192_SHA256,
            Self::Sha384 => &signature::RSA_PKCS1_2048_8192_SHA384,
            Self::Sha512 => &signature::RSA_PKCS1_2048_8192_SHA512,
        };
        UnparsedPublicKey::new(params, rsa_public_key)
            .verify(msg, sig)
            .is_ok()
    }

    /// The digest the RA signs with when answering a request signed with
    /// this one: the same, except SHA-256 for SHA-1 (which aws-lc-rs does
    /// not sign with; every SHA-1 client tried verifies SHA-256).
    pub fn for_reply(self) -> Self {
        match self {
            Self::Sha1 => Self::Sha256,
            other => other,
        }
    }

    /// Sign with RSA PKCS#1 v1.5; `None` for SHA-1 (see [`Self::for_reply`]).
    pub fn sign(self, key: &RsaKeyPair, msg: &[u8]) -> Option<Vec<u8>> {
        let encoding = match self {
            Self::Sha1 => return None,
            Self::Sha256 => &signature::RSA_PKCS1_SHA256,
            Self::Sha384 => &signature::RSA_PKCS1_SHA384,
            Self::Sha512 => &signature::RSA_PKCS1_SHA512,
        };
        let mut sig = vec![0; key.public_modulus_len()];
        key.sign(encoding, &rand::SystemRandom::new(), msg, &mut sig)
            .ok()?;
        Some(sig)
    }
}

/// An envelope's content cipher, all in CBC mode with PKCS#7 padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// desCBC (OIW): single DES, what micromdm's scep sends and answers.
    DesCbc,
    DesEde3Cbc,
    Aes128Cbc,
    Aes192Cbc,
    Aes256Cbc,
}

impl Cipher {
    const ALL: [Cipher; 5] = [
        Self::DesCbc,
        Self::DesEde3Cbc,
        Self::Aes128Cbc,
        Self::Aes192Cbc,
        Self::Aes256Cbc,
    ];

    pub fn oid(self) -> ObjectIdentifier {
        ObjectIdentifier::new_unwrap(match self {
            Self::DesCbc => "1.3.14.3.2.7",
            Self::DesEde3Cbc => "1.2.840.113549.3.7",
            Self::Aes128Cbc => "2.16.840.1.101.3.4.1.2",
            Self::Aes192Cbc => "2.16.840.1.101.3.4.1.22",
            Self::Aes256Cbc => "2.16.840.1.101.3.4.1.42",
        })
    }

    pub fn from_oid(oid: &ObjectIdentifier) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.oid() == *oid)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::DesCbc => "DES-CBC",
            Self::DesEde3Cbc => "DES-EDE3-CBC",
            Self::Aes128Cbc => "AES-128-CBC",
            Self::Aes192Cbc => "AES-192-CBC",
            Self::Aes256Cbc => "AES-256-CBC",
        }
    }

    pub fn key_len(self) -> usize {
        match self {
            Self::DesCbc => 8,
            Self::Aes128Cbc => 16,
            Self::DesEde3Cbc | Self::Aes192Cbc => 24,
            Self::Aes256Cbc => 32,
        }
    }

    /// The IV length: the block size.
    pub fn iv_len(self) -> usize {
        match self {
            Self::DesCbc | Self::DesEde3Cbc => 8,
            _ => 16,
        }
    }

    fn algorithm(self) -> &'static aws_lc_rs::cipher::Algorithm {
        match self {
            Self::DesCbc => &DES_FOR_LEGACY_USE_ONLY,
            Self::DesEde3Cbc => &DES_EDE3_FOR_LEGACY_USE_ONLY,
            Self::Aes128Cbc => &AES_128,
            Self::Aes192Cbc => &AES_192,
            Self::Aes256Cbc => &AES_256,
        }
    }

    /// Decrypt and unpad; `None` for a wrong key or IV length, a weak DES
    /// key, a ciphertext that is not whole blocks or bad padding.
    pub fn decrypt(self, key: &[u8], iv: &[u8], ciphertext: &[u8]) -> Option<Vec<u8>> {
        if key.len() != self.key_len() || iv.len() != self.iv_len() {
            return None;
        }
        let key = UnboundCipherKey::new(self.algorithm(), key).ok()?;
        let key = PaddedBlockDecryptingKey::cbc_pkcs7(key).ok()?;
        let context = match self {
            Self::DesCbc | Self::DesEde3Cbc => {
                DecryptionContext::Iv64(FixedLength::try_from(iv).ok()?)
            }
            _ => DecryptionContext::Iv128(FixedLength::try_from(iv).ok()?),
        };
        let mut buf = ciphertext.to_vec();
        let plain = key.decrypt(&mut buf, context).ok()?;
        Some(plain.to_vec())
    }

    /// Encrypt under a fresh random key and IV: `(key, iv, ciphertext)`.
    pub fn encrypt(self, plaintext: &[u8]) -> Option<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        // A random DES key is weak with probability 2^-52; aws-lc-rs refuses
        // those, so draw again.
        for _ in 0..4 {
            let key = self.random_key()?;
            let Ok(unbound) = UnboundCipherKey::new(self.algorithm(), &key) else {
                continue;
            };
            let Ok(encrypting) = PaddedBlockEncryptingKey::cbc_pkcs7(unbound) else {
                continue;
            };
            let mut data = plaintext.to_vec();
            let context = encrypting.encrypt(&mut data).ok()?;
            let iv: &[u8] = (&context).try_into().ok()?;
            return Some((key, iv.to_vec(), data));
        }
        None
    }

    /// A random key; DES keys with odd parity, as DES wants them.
    fn random_key(self) -> Option<Vec<u8>> {
        let mut key = vec![0; self.key_len()];
        rand::fill(&mut key).ok()?;
        if matches!(self, Self::DesCbc | Self::DesEde3Cbc) {
            for b in &mut key {
                *b = (*b & 0xfe) | u8::from((*b >> 1).count_ones() % 2 == 0);
            }
        }
        Some(key)
    }
}

/// Unwrap a content-encryption key sent with RSA PKCS#1 v1.5 key
/// transport. On any failure (bad padding, wrong length) a random key of
/// `len` bytes comes back instead (RFC 3218 §2.3.2): the content then fails
/// to decrypt like any other bad envelope, and a client learns nothing
/// about the RSA padding from the answer.
pub fn unwrap_key(key: &Pkcs1PrivateDecryptingKey, encrypted: &[u8], len: usize) -> Vec<u8> {
    let mut out = vec![0; key.min_output_size()];
    match key.decrypt(encrypted, &mut out) {
        Ok(plain) if plain.len() == len => plain.to_vec(),
        _ => {
            let mut random = vec![0; len];
            // If even randomness fails, a zero key decrypts nothing.
            let _ = rand::fill(&mut random);
            random
        }
    }
}

/// Wrap a content-encryption key for `spki_der`'s RSA key (RSA PKCS#1 v1.5).
pub fn wrap_key(spki_der: &[u8], cek: &[u8]) -> Option<Vec<u8>> {
    let public = PublicEncryptingKey::from_der(spki_der).ok()?;
    let key = Pkcs1PublicEncryptingKey::new(public).ok()?;
    let mut out = vec![0; key.ciphertext_size()];
    let encrypted = key.encrypt(cek, &mut out).ok()?;
    Some(encrypted.to_vec())
}

/// Fresh random bytes (nonces).
pub fn random(len: usize) -> Option<Vec<u8>> {
    let mut out = vec![0; len];
    rand::fill(&mut out).ok()?;
    Some(out)
}
