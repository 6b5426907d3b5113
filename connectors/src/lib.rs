//! The peers idsync talks to, in two shapes:
//!
//! - **Change-log consumers** ([`Connector`]): one module per peer (LDAP,
//!   a webhook, the SMTP relay of [`mail`]), each fed batches of
//!   [`Event`]s by the daemon's runner and reconciled against a read-only
//!   [`View`] of the store. The daemon persists what a connector reports
//!   back (outcomes, the remote ids it learned, activation states through
//!   the reconciler); data flows one way: a connector never writes an
//!   object. [`registry`] names them all but `mail` (built from `[mail]`).
//! - **CA backends** ([`ca`]): request/response, called synchronously by
//!   enrollment to issue a certificate (the local CA, PKCS#12 files). They
//!   see no change log, no runner and no `View`; they live here because
//!   they are the other kind of outside party idsync's data reaches, and
//!   share this crate's wall (nothing here depends on the daemon).
//!
//! Why a crate of its own: the daemon hands these peers what they need and
//! nothing more, and a peer cannot reach into the store or the daemon's
//! state.

pub mod ca;
pub mod connector;
pub mod event;
pub mod ldap;
pub mod mail;
pub mod registry;
pub mod webhook;

pub use connector::{
    ActivationReport, Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig,
    Outcome, Plan, Remote, View, ViewError,
};
pub use event::{Event, Operation};
pub use registry::ConnectorConfig;

/// The PKCS#12 writer under [`ca::build_p12`], for the `pkcs12_roundtrip`
/// fuzz target (`fuzz/`) and the test that replays its corpus: they write
/// files from fuzzed contents and read them back with an independent
/// reader. Not an API: hidden from the docs.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::ca::pkcs12::{write as write_pkcs12, Contents as Pkcs12Contents, Pkcs12Error};
}

/// Install the process-wide rustls crypto provider (ring) once, before the
/// first TLS connection: with two providers in the dependency tree, rustls
/// panics at the first handshake unless one is installed.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
