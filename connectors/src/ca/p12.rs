//! PKCS#12 enrollment: idsync generates the key, issues through the same
//! [`CaBackend::issue`](super::CaBackend::issue) as a PKCS#10 request, and
//! wraps key, certificate and chain in a password-protected file.

use std::fmt;

use idsync_schema::cert::KeyType;
use rcgen::{CertificateParams, KeyPair, PublicKeyData, RsaKeySize};
use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use super::csr::rcgen_alg;
use super::{subject_text, CaError, Csr, Issued};

/// PBKDF2 iterations for the encryption of the key and certificates, and
/// of the MAC key derivation, in a PKCS#12 file [`build_p12`] writes.
/// OpenSSL 3 writes 2048 by default (`openssl pkcs12 -export`); so do we.
/// The cost is paid twice per file (one PBKDF2 for key and certificates,
/// one PKCS#12 KDF for the MAC, side by side: see `pkcs12.rs`), about 0.45 ms
/// of one core at 2048 (see [`build_p12_with_iterations`]).
pub const P12_KDF_ITERATIONS: u32 = 2048;

/// A new key pair of `kind` (RSA generation takes tens of milliseconds to
/// seconds: run it off the async runtime).
pub(crate) fn key_pair_for(kind: KeyType) -> Result<KeyPair, CaError> {
    let err = |e: rcgen::Error| CaError::KeyGeneration(format!("{kind}: {e}"));
    match kind {
        KeyType::Rsa2048 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_2048),
        KeyType::Rsa3072 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_3072),
        KeyType::Rsa4096 => KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, RsaKeySize::_4096),
        KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::Ed25519 => {
            KeyPair::generate_for(rcgen_alg(kind))
        }
    }
    .map_err(err)
}

/// A private key generated for a PKCS#12 file. Never stored, never
/// logged: its `Debug` shows the key type only, and its bytes are zeroed
/// when it is dropped.
pub struct GeneratedKey {
    key: KeyPair,
    kind: KeyType,
}

impl fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeneratedKey")
            .field("kind", &self.kind)
            .field("key", &"[secret]")
            .finish()
    }
}

impl Drop for GeneratedKey {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

/// Generate a key of `kind`: EC and Ed25519 in microseconds, RSA (through
/// aws-lc-rs) in tens of milliseconds (2048) to seconds (4096): the daemon
/// runs this on a blocking pool.
pub fn generate_key(kind: KeyType) -> Result<GeneratedKey, CaError> {
    Ok(GeneratedKey {
        key: key_pair_for(kind)?,
        kind,
    })
}

impl GeneratedKey {
    pub fn key_type(&self) -> KeyType {
        self.kind
    }

    /// The private key as PKCS#8 DER, for a TLS listener of the daemon's
    /// own (zeroed when dropped; never written anywhere).
    pub fn pkcs8_der(&self) -> zeroize::Zeroizing<Vec<u8>> {
        zeroize::Zeroizing::new(self.key.serialize_der())
    }

    /// A CSR from this key, so that the PKCS#12 path goes through the same
    /// [`CaBackend::issue`](super::CaBackend::issue) as an uploaded one. It
    /// carries `subject` and no extension (the backend decides those).
    pub fn csr(&self, subject: &[(String, String)]) -> Result<Csr, CaError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        for (attr, value) in subject {
            let ty = match attr.to_ascii_uppercase().as_str() {
                "CN" => rcgen::DnType::CommonName,
                "O" => rcgen::DnType::OrganizationName,
                "OU" => rcgen::DnType::OrganizationalUnitName,
                "L" => rcgen::DnType::LocalityName,
                "ST" => rcgen::DnType::StateOrProvinceName,
                "C" => rcgen::DnType::CountryName,
                _ => {
                    return Err(CaError::BadName(format!(
                        "subject attribute {attr:?} is not one of CN, O, OU, L, ST, C"
                    )))
                }
            };
            params.distinguished_name.push(ty, value.as_str());
        }
        let req = params
            .serialize_request(&self.key)
            .map_err(|e| CaError::Signing(format!("certificate request: {e}")))?;
        // Built here rather than parsed back: the signature is ours.
        Ok(Csr {
            der: req.der().to_vec(),
            key_type: self.kind,
            subject: subject_text(subject),
            subject_attributes: subject.to_vec(),
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            spki_der: self.key.subject_public_key_info(),
            public_key: self.key.der_bytes().to_vec(),
        })
    }
}

/// The DER certificates of PEM text.
fn pem_certs(text: &str, what: &str) -> Result<Vec<Vec<u8>>, CaError> {
    let blocks = pem::parse_many(text).map_err(|e| CaError::P12(format!("{what}: {e}")))?;
    Ok(blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect())
}

/// A PKCS#12 file with `key`, the certificate of `issued` and its chain,
/// protected by `password`: PBES2 with PBKDF2-HMAC-SHA256 and AES-256-CBC
/// for key and certificates, an HMAC-SHA256 MAC, [`P12_KDF_ITERATIONS`]
/// iterations (OpenSSL 3 reads it without `-legacy`). The key's friendly
/// name is `alias`.
pub fn build_p12(
    key: &GeneratedKey,
    issued: &Issued,
    password: &str,
    alias: &str,
) -> Result<Vec<u8>, CaError> {
    build_p12_with_iterations(key, issued, password, alias, P12_KDF_ITERATIONS)
}

/// [`build_p12`] with another PBKDF2 iteration count (1 to 1,000,000). An
/// attacker guessing the password pays `iterations` per guess; idsync pays
/// it twice per file. With a long random password (one idsync
/// generates) a low count costs nothing in safety; a person's password
/// wants the default or more.
pub fn build_p12_with_iterations(
    key: &GeneratedKey,
    issued: &Issued,
    password: &str,
    alias: &str,
    iterations: u32,
) -> Result<Vec<u8>, CaError> {
    if !(1..=1_000_000).contains(&iterations) {
        return Err(CaError::P12(format!(
            "{iterations} iterations: 1 to 1000000 allowed"
        )));
    }
    if password.is_empty() {
        return Err(CaError::P12("the password must not be empty".into()));
    }
    let leaf = pem_certs(&issued.pem, "the certificate")?;
    let leaf = leaf
        .into_iter()
        .next()
        .ok_or_else(|| CaError::P12("no certificate in the issued PEM".into()))?;
    // The leaf must be for this key.
    let (_, parsed) = x509_parser::parse_x509_certificate(&leaf)
        .map_err(|e| CaError::P12(format!("the certificate does not parse: {e}")))?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.key.der_bytes() {
        return Err(CaError::P12("the certificate is not for this key".into()));
    }
    let local_key_id = Sha256::digest(&leaf)[..20].to_vec();
    let mut certs = vec![leaf];
    certs.extend(pem_certs(&issued.chain, "the chain")?);
    let contents = super::pkcs12::Contents {
        key_pkcs8: key.key.serialized_der(),
        certs: &certs,
        alias,
        local_key_id: &local_key_id,
    };
    super::pkcs12::write(&contents, password, iterations).map_err(|e| CaError::P12(e.to_string()))
}
