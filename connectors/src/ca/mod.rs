//! The certificate-authority side of enrollment. Not a change-log consumer:
//! the other shape this crate holds (see the crate's top comment). A CA
//! backend is request/response: enrollment calls it in the course of one
//! request, with a CSR and the fields it decided, and gets a certificate
//! back or an error it shows the client. There is no change log, cursor,
//! retry, runner or [`View`](crate::View) here, and nothing in this module
//! implements [`Connector`](crate::Connector).
//!
//! What it does: parse and check a PKCS#10 request ([`parse_csr`]), issue
//! a certificate for its public key with fields decided by the daemon
//! ([`CaBackend::issue`]), and, for PKCS#12 enrollment, generate the key
//! and wrap key, certificate and chain in a password-protected file
//! ([`generate_key`], [`build_p12`]); sign the CRL of each issuer
//! ([`CaBackend::publish_crl`], names in [`crl`]).
//!
//! One backend exists now, the [`LocalCa`]: a CA whose key idsync holds.
//! ACME and SCEP backends come later and take the same [`Csr`] and
//! [`IssueRequest`].
//!
//! What a backend puts in a certificate comes from the request, never from
//! the CSR: the CSR gives only its public key (its subject, names and
//! requested extensions are read for display and checks, then ignored).

use std::net::IpAddr;

use idsync_schema::cert::{DomainPolicy, NameError, Usage};
use time::OffsetDateTime;

use crate::connector::BoxFuture;

mod crl;
mod csr;
mod local;
mod p12;
// The writer itself is reached through `pkcs12::write` only by `p12` and
// the fuzz target's entry point (`crate::fuzzing`).
pub(crate) mod pkcs12;
#[cfg(test)]
mod tests;

pub use crl::{
    crl_file_name, crl_url, is_crl_url, is_issuer_id, issuer_id, issuer_id_of_chain, CrlSpec,
    PublishedCrl, RevokedEntry,
};
pub use csr::{certificate_not_after, certificate_public_key, certificate_serial, parse_csr, Csr};
pub use local::{LocalCa, LocalCaConfig};
pub use p12::{
    build_p12, build_p12_with_iterations, generate_key, GeneratedKey, P12_KDF_ITERATIONS,
};

/// DER as one PEM block with `tag`, LF line endings.
pub fn pem_block(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der.to_vec()),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Why a request, a CA file or an issuance failed. The messages are shown
/// to API clients and operators: they say what is wrong and, where it is a
/// file, which one.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The input is not a certificate request (the message says why).
    #[error("{0}")]
    BadCsr(String),
    #[error("the certificate request's signature does not verify: the request was altered, or not signed with its own key")]
    BadSignature,
    /// The CSR's key is of a type idsync does not issue for ("RSA 1024",
    /// "EC secp256k1").
    #[error("the certificate request's key is {0}; supported keys are EC P-256, EC P-384, RSA 2048, 3072 or 4096 bits, and Ed25519")]
    UnsupportedKey(String),
    /// A subject attribute or a name the CA cannot put in a certificate.
    #[error("{0}")]
    BadName(String),
    /// A name outside the profile's domain policy (the daemon checks first;
    /// the CA checks again).
    #[error("{0}")]
    OutsidePolicy(#[from] NameError),
    /// A CA setting in the configuration is wrong.
    #[error("[ca] configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("CA key file {path} has mode {mode:04o}: a CA key must not be readable or writable by group or others (chmod 600 {path})")]
    KeyPermissions { path: String, mode: u32 },
    #[error("CA key file {path}: {reason}")]
    BadKey { path: String, reason: String },
    #[error("CA certificate file {path}: {reason}")]
    BadCaCert { path: String, reason: String },
    #[error("CA key file {key} does not match the certificate in {cert} (a different key pair)")]
    KeyMismatch { key: String, cert: String },
    #[error("key generation failed: {0}")]
    KeyGeneration(String),
    #[error("signing the certificate failed: {0}")]
    Signing(String),
    #[error("building the PKCS#12 file failed: {0}")]
    P12(String),
}

/// What to put in a certificate: everything decided by the daemon from the
/// profile and the checked request data, never from the CSR.
#[derive(Debug, Clone, Copy)]
pub struct IssueRequest<'a> {
    /// `("CN","web1.example.org")`, `("O","Nexus")`, `("C","SE")`, in
    /// order; attributes among CN, O, OU, L, ST, C, each at most once.
    pub subject: &'a [(String, String)],
    pub dns_names: &'a [String],
    pub ip_addresses: &'a [IpAddr],
    /// Days from now to notAfter (cut at the issuer's own notAfter).
    pub validity_days: u32,
    /// Extended key usages. Key usage is digitalSignature, plus
    /// keyEncipherment for RSA keys.
    pub usages: &'a [Usage],
    /// The profile's domain policy: names are checked against it, and a
    /// non-empty policy makes the local CA issue through a sub-CA carrying
    /// it as X.509 name constraints.
    pub policy: &'a DomainPolicy,
    /// The profile's name (for messages).
    pub profile: &'a str,
}

/// An issued certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    /// The certificate, PEM.
    pub pem: String,
    /// The issuing chain, PEM: the leaf's issuer first, up to and including
    /// the root.
    pub chain: String,
    /// Hex as `openssl x509 -serial` prints it: upper case, no colons.
    pub serial: String,
    /// The subject, RFC 4514 style: `CN=web1.example.org, O=Nexus, C=SE`.
    pub subject: String,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

/// One shape for every CA backend (local now; ACME and SCEP later take the
/// same CSR).
pub trait CaBackend: Send + Sync {
    fn name(&self) -> &str;
    /// The issuing chain a client needs to verify what this backend issues
    /// (PEM; for the local CA its certificate and whatever is above it).
    fn chain_pem(&self) -> String;
    /// Issue a certificate for the public key of `csr` with exactly the
    /// fields of `req`.
    fn issue<'a>(
        &'a self,
        csr: &'a Csr,
        req: &'a IssueRequest<'a>,
    ) -> BoxFuture<'a, Result<Issued, CaError>>;
    /// The ids ([`issuer_id`]) of the issuers this backend signs with, each
    /// of which publishes a CRL.
    fn issuers(&self) -> Result<Vec<String>, CaError>;
    /// Sign the CRL `spec` describes, with a cRLNumber above every earlier
    /// one of its issuer, and keep it where the backend keeps its CRLs.
    fn publish_crl(&self, spec: &CrlSpec<'_>) -> Result<PublishedCrl, CaError>;
    /// The CRLs kept from the last publication (before a restart).
    fn kept_crls(&self) -> Result<Vec<PublishedCrl>, CaError>;
}

/// Upper-case hex of `bytes` without leading zero bytes, as OpenSSL prints a
/// serial number.
pub(crate) fn serial_hex(bytes: &[u8]) -> String {
    let start = bytes
        .iter()
        .position(|&b| b != 0)
        .unwrap_or(bytes.len().saturating_sub(1));
    let mut out = String::with_capacity(2 * (bytes.len() - start));
    for b in &bytes[start..] {
        out.push(
            char::from_digit(u32::from(b >> 4), 16)
                .unwrap_or('0')
                .to_ascii_uppercase(),
        );
        out.push(
            char::from_digit(u32::from(b & 15), 16)
                .unwrap_or('0')
                .to_ascii_uppercase(),
        );
    }
    out
}

/// `CN=a, O=b` from attribute pairs, escaping as RFC 4514 asks.
pub(crate) fn subject_text(subject: &[(String, String)]) -> String {
    let mut out = String::new();
    for (i, (attr, value)) in subject.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(attr);
        out.push('=');
        let last = value.chars().count().saturating_sub(1);
        for (j, c) in value.chars().enumerate() {
            let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
                || (j == 0 && (c == '#' || c == ' '))
                || (j == last && c == ' ');
            if special {
                out.push('\\');
            }
            out.push(c);
        }
    }
    out
}
