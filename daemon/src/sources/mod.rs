//! Everything that turns outside input into changes, all through the
//! reconciler of `idsync-store` (the one write path):
//!
//! - [`inbox`] and [`import`]: drop folders and the CSV import;
//!   [`inbox_claims`]: drop folders shared by replicas;
//! - [`scim`]: the SCIM 2.0 server for identity providers;
//! - [`enroll`]: certificate profiles, enrollment and approvals, with the
//!   admin API's routes for them;
//! - [`acme`]: the ACME server (RFC 8555): its protocol layer (JWS,
//!   account keys, external account binding) and its HTTPS listener;
//! - [`scep`]: the SCEP server (RFC 8894): its protocol layer (signed and
//!   enveloped CMS messages, BER) and its listener;
//! - [`activation`]: queueing the activation mails of an application
//!   (seed 003's "Send E-Mails"), with its admin route;
//! - [`console`]: the operator console, HTML pages under `/ui/` on the
//!   admin listener, signed in with a token.
//!
//! Sources never talk to connectors and never import the CLI or the daemon
//! loop (`serve`).

pub mod acme;
pub mod activation;
pub mod console;
pub mod enroll;
pub mod import;
pub mod inbox;
pub mod inbox_claims;
pub mod scep;
pub mod scim;
