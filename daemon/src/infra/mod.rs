//! What every part of the daemon shares and no feature owns: bearer-token
//! authentication, the HTTP listeners' accept loop, connection limits and
//! connection serving, TLS acceptors, request rate limits, the metrics,
//! sd_notify, files holding a secret (the mail key among them).
//!
//! Infrastructure imports no feature (`sources`, `connect`, `serve`,
//! `cli`): features report into it, never the other way round.

pub mod auth;
pub mod conn_limit;
pub mod connector_stats;
pub mod http;
pub mod key_file;
pub mod log;
pub mod metrics;
pub mod private_file;
pub mod rate_limit;
pub mod recent_files;
pub mod replica_stats;
pub mod sd_notify;
pub mod tls;
