//! idsync: a directory sync daemon. This crate owns the store, the
//! reconciler (the one write path), CSV import, SCIM, enrollment and the
//! CLI.
//!
//! Data flows one way: source (CSV file, SCIM, the admin API) →
//! [`reconcile`] → [`store`] + change log → connectors.

pub mod admin;
pub mod auth;
pub mod certs;
pub mod cli;
pub mod client;
pub mod config;
pub mod connect;
pub mod http;
pub mod import;
pub mod inbox;
pub mod metrics;
pub mod reconcile;
pub mod scim;
pub mod sd_notify;
pub mod serve;
pub mod store;
pub mod writer;
