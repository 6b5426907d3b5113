//! What idsync pushes its change log to: the [`Connector`] trait that every
//! peer implements, and one module per peer (LDAP first, then a webhook).
//!
//! Why a crate of its own: connectors are consumers of the change log and
//! nothing else. This crate does not depend on the daemon; the daemon hands
//! it [`Event`]s and a read-only [`View`] of the store, and persists what a
//! connector reports back (outcomes and the remote ids it learned). Data
//! flows one way: a connector never writes an object.

pub mod ca;
pub mod connector;
pub mod event;
pub mod ldap;
pub mod webhook;

pub use connector::{
    Applied, BoxFuture, Connector, ConnectorConfig, ConnectorError, Delivery, DeliveryConfig,
    Outcome, Plan, Remote, View, ViewError,
};
pub use event::{Event, Operation};

/// Install the process-wide rustls crypto provider (ring) once, before the
/// first TLS connection: with two providers in the dependency tree, rustls
/// panics at the first handshake unless one is installed.
pub fn install_crypto_provider() {
    // Err means one is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}
