//! The ACME server (RFC 8555) in front of the local CA: its protocol layer
//! first. What is here is what every ACME request goes through before the
//! server looks at it: the JSON Web Signature that carries it (`jws`), the
//! account keys it is signed with (`jwk`), and the external account
//! binding that ties a new account to its registration (`eab`).
//!
//! The listener, nonces, accounts, orders, challenges and finalization
//! come next (issue 15); they take a [`jws::Request`] verified here and
//! never parse a signature themselves.

pub mod eab;
pub mod jwk;
pub mod jws;

#[cfg(test)]
mod rfc_vectors;
#[cfg(test)]
mod tests;
