//! idsync: a directory sync daemon. This crate is the process: the sources
//! that turn outside input into changes, the connector runner that pushes
//! the change log on, the daemon loop, and the CLI.
//!
//! The folders follow the data, one way:
//!
//! ```text
//! sources/ (drop folders + CSV import, SCIM, enrollment API)
//!    └─> idsync-store (reconciler → store + change log: the only writer)
//!           └─> connect/ (runner: cursor, retries, dead letters) ─> idsync-connectors
//! serve/ (the daemon loop, the admin listener) starts them all;
//! cli/ (commands and the HTTP client of the admin listener) drives them.
//! infra/ (auth, HTTP plumbing, metrics, sd_notify) and app (config + store
//! opened once) serve every part and import none of them.
//! ```
//!
//! `docs/architecture.md` states what each part may import; the test
//! `tests/layers.rs` holds the crate to it.

pub mod api;
pub mod app;
pub mod cli;
pub mod config;
pub mod connect;
pub mod infra;
pub mod serve;
pub mod sources;
