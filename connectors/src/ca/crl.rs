//! Certificate revocation lists (RFC 5280 §5): what a CRL holds, and the
//! names that tie a certificate to the CRL of its issuer.
//!
//! Every issuer (the local CA, each policy sub-CA) has one CRL, named by
//! the issuer's id: the start of the SHA-256 of its certificate. The id is
//! read from a certificate's chain (its first block is the issuer), so an
//! issued certificate needs no field of its own to find its CRL, and the
//! CRL distribution point written into a certificate at issuance is the
//! same URL the daemon publishes under.

use idsync_schema::cert::RevocationReason;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Hex characters of an issuer id: 64 bits of the certificate's SHA-256.
const ISSUER_ID_CHARS: usize = 16;

/// The id of the issuer whose certificate is `cert_der`.
pub fn issuer_id(cert_der: &[u8]) -> String {
    hex::encode(&Sha256::digest(cert_der)[..ISSUER_ID_CHARS / 2])
}

/// The id of the issuer of a certificate whose chain (issuer first, PEM)
/// is `chain_pem`; `None` when the chain holds no certificate.
pub fn issuer_id_of_chain(chain_pem: &str) -> Option<String> {
    pem::parse_many(chain_pem)
        .ok()?
        .into_iter()
        .find(|p| p.tag() == "CERTIFICATE")
        .map(|p| issuer_id(p.contents()))
}

/// Whether `id` has the shape of an issuer id (a path segment, a file
/// name): checked before it names a file.
pub fn is_issuer_id(id: &str) -> bool {
    id.len() == ISSUER_ID_CHARS && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whether `url` can be a `crl_url` a relying party fetches: an absolute
/// http(s) URL, ASCII, without a query or fragment (the file name is
/// appended to it).
pub fn is_crl_url(url: &str) -> bool {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"));
    rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && r.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
    })
}

/// The CRL file name of issuer `id`, as published over HTTP and in the
/// CA's directory.
pub fn crl_file_name(id: &str) -> String {
    format!("{id}.crl")
}

/// The CRL distribution point of what issuer `id` signs, under the base
/// URL `base` (`[ca] crl_url`).
pub fn crl_url(base: &str, id: &str) -> String {
    format!("{}/{}", base.trim_end_matches('/'), crl_file_name(id))
}

/// One revoked certificate in a CRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedEntry {
    /// Hex, as [`crate::ca::Issued::serial`] gives it.
    pub serial: String,
    pub at: OffsetDateTime,
    pub reason: RevocationReason,
}

/// What a CRL of one issuer says.
#[derive(Debug, Clone, Copy)]
pub struct CrlSpec<'a> {
    /// The issuer's id ([`issuer_id`]).
    pub issuer: &'a str,
    pub entries: &'a [RevokedEntry],
    pub this_update: OffsetDateTime,
    pub next_update: OffsetDateTime,
}

/// A signed CRL as published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedCrl {
    pub issuer: String,
    /// DER, as served with `application/pkix-crl`.
    pub der: Vec<u8>,
    /// Its cRLNumber: larger than that of every CRL the issuer signed
    /// before.
    pub number: u64,
}

/// RFC 5280's reason code of `reason`.
pub(crate) fn reason_code(reason: RevocationReason) -> rcgen::RevocationReason {
    match reason {
        RevocationReason::Unspecified => rcgen::RevocationReason::Unspecified,
        RevocationReason::KeyCompromise => rcgen::RevocationReason::KeyCompromise,
        RevocationReason::AffiliationChanged => rcgen::RevocationReason::AffiliationChanged,
        RevocationReason::Superseded => rcgen::RevocationReason::Superseded,
        RevocationReason::CessationOfOperation => rcgen::RevocationReason::CessationOfOperation,
        RevocationReason::PrivilegeWithdrawn => rcgen::RevocationReason::PrivilegeWithdrawn,
    }
}

/// Bytes of a hex serial (`0A1B…`, as stored); `None` when it is not hex.
pub(crate) fn serial_bytes(hex: &str) -> Option<Vec<u8>> {
    match hex.len() % 2 {
        0 => hex::decode(hex).ok(),
        _ => hex::decode(format!("0{hex}")).ok(),
    }
}

/// The cRLNumber of a CRL (DER), when it has one that fits 64 bits.
pub(crate) fn number_of(der: &[u8]) -> Option<u64> {
    let (_, crl) = x509_parser::parse_x509_crl(der).ok()?;
    let digits = crl.crl_number()?.to_u64_digits();
    match digits.as_slice() {
        [] => Some(0),
        [n] => Some(*n),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_round_trip_through_hex() {
        assert_eq!(serial_bytes("0A1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(serial_bytes("A1B"), Some(vec![0x0a, 0x1b]));
        assert_eq!(serial_bytes("xyz"), None);
        let s = [0x40, 0x01, 0xff];
        assert_eq!(serial_bytes(&crate::ca::serial_hex(&s)), Some(s.to_vec()));
    }

    #[test]
    fn issuer_ids_are_file_names() {
        let id = issuer_id(b"anything");
        assert!(is_issuer_id(&id), "{id}");
        assert!(!is_issuer_id("../../etc/passwd"));
        assert!(!is_issuer_id(&id.to_uppercase()));
        assert_eq!(
            crl_url("http://pki.example.org/crl/", &id),
            format!("http://pki.example.org/crl/{id}.crl")
        );
    }
}
