//! SCEP (RFC 8894): certificates for devices that speak it (routers, MDM
//! agents, strongSwan's `pki --scep`), enrolled through an RA of the local CA.
//!
//! The protocol layer, pure (no I/O), kept apart from the server:
//! - [`message`]: the interface the server calls: [`message::parse`] a
//!   PKIOperation, [`message::cert_rep`] answer it, the GetCACert and
//!   GetCACaps answers;
//! - `signed` (the SignedData layer: attributes, signature) and
//!   `envelope` (the EnvelopedData layer: key transport, content cipher),
//!   on `cms` (the RFC 5652 structures) and `crypto` (the algorithms, on
//!   aws-lc-rs);
//! - [`ber`]: BER to DER, which real clients make necessary.
//!
//! The server around it: `listener` (HTTP, the operations, the refusals as
//! CertRep FAILURE messages) and `config` (`[scep]`); every decision is
//! `crate::sources::enroll::Enrollment`'s (`enroll/scep.rs`).
//!
//! Invariant: nothing from a request's content is read before its
//! signature verified ([`message::parse`]).

pub mod ber;
mod cms;
mod config;
mod crypto;
mod envelope;
mod error;
pub mod listener;
pub mod message;
mod signed;

pub use config::ScepConfig;

// The tests' own client; with the `scep-client` feature also for the
// `scep` bench (daemon/benches/scep.rs). Not part of normal builds.
#[cfg(any(test, feature = "scep-client"))]
pub mod testclient;
#[cfg(test)]
mod tests;
