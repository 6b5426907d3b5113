//! The ACME server (RFC 8555) in front of the local CA, and its `[acme]`
//! configuration. A device registered with `idsync enroll acme` gets its
//! certificates here with any ACME client (lego, certbot, …).
//!
//! Kept in layers, the protocol apart from the server:
//! - the protocol: the JSON Web Signature every request comes in (`jws`),
//!   the account keys it is signed with (`jwk`), the external account
//!   binding that ties a new account to its registration (`eab`), the
//!   problem documents of refusals (`problem`);
//! - the server's state: `nonces` (single use, bounded), `orders` (orders
//!   and authorizations, in memory; what outlives a restart is in the
//!   store: the account in its registration, a finalized order as its
//!   enrollment request, the certificate);
//! - the steps: `server` (the gate every POST passes: nonce, URL,
//!   signature, account), `account` (newAccount, account updates,
//!   deactivation, keyChange), `order` (newOrder, finalize, certificate
//!   download, revokeCert), `authz` (authorizations, challenges) and
//!   `validate` (in the background, bounded: `http01`, and `dns01` where
//!   `dns_resolver` is set);
//! - `listener`: HTTPS (hyper, rustls through `crate::infra::tls`),
//!   limits, shutdown.
//!
//! Invariant: no step reads a payload that [`jws::Parsed::verify`] did not
//! return; every decision about names, keys and approval is made by
//! [`crate::sources::enroll::Enrollment`], as for P10.

mod account;
mod authz;
mod dns01;
pub mod eab;
mod http01;
pub mod jwk;
pub mod jws;
pub mod listener;
mod nonces;
mod order;
mod orders;
mod problem;
mod server;
mod validate;

#[cfg(test)]
mod rfc_vectors;
#[cfg(test)]
mod server_tests;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `[acme]`: the ACME listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// Whether `idsync serve` starts the ACME listener.
    pub enabled: bool,
    /// Address to listen on (HTTPS).
    pub listen: String,
    /// The URL clients reach the listener at (`https://host[:port]`):
    /// the directory's and every object's URL start with it, and a JWS's
    /// `url` must. Default: `https://{listen}`.
    pub public_url: Option<String>,
    /// PEM certificate chain (leaf first) of the listener. Unset: idsync
    /// issues one from its CA at every start for `public_url`'s host (and
    /// `localhost`, 127.0.0.1), so clients that trust the CA trust it.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Largest request body, in bytes (a JWS with a CSR is a few KiB).
    pub max_body_bytes: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one peer address may hold.
    pub max_connections_per_peer: usize,
    /// Milliseconds a new connection has to finish its TLS handshake.
    pub first_byte_timeout_ms: u64,
    /// Orders (with their authorizations) kept at most; more is
    /// `rateLimited` until older ones expire.
    pub max_orders: usize,
    /// Pending orders one account may hold at most.
    pub max_orders_per_account: usize,
    /// Minutes an order and its authorizations stay valid.
    pub order_minutes: u32,
    /// Port the http-01 challenge is fetched from (RFC 8555 §8.3: 80).
    pub http01_port: u16,
    /// Seconds an http-01 fetch may take.
    pub validation_timeout_secs: u64,
    /// The DNS server dns-01 challenges are checked with (`ip:port`):
    /// a recursive resolver, or the zone's authoritative server. Unset:
    /// dns-01 is not offered (and wildcard names cannot be ordered).
    pub dns_resolver: Option<String>,
    /// Requests one peer address may make per minute; more are answered
    /// `rateLimited` (429) with `Retry-After`. Every POST costs a
    /// signature check, so one peer cannot take the CPU from the rest.
    pub requests_per_minute_per_peer: u32,
    /// Where a name is validated, instead of its DNS address:
    /// `"web1.example.org" = "127.0.0.1:5002"` (tests, split horizons).
    pub resolve: BTreeMap<String, String>,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9479".into(),
            public_url: None,
            tls_cert: None,
            tls_key: None,
            max_body_bytes: 64 * 1024,
            max_connections: 1024,
            max_connections_per_peer: 64,
            first_byte_timeout_ms: 3000,
            max_orders: 100_000,
            max_orders_per_account: 300,
            order_minutes: 60,
            http01_port: 80,
            validation_timeout_secs: 10,
            dns_resolver: None,
            requests_per_minute_per_peer: 3000,
            resolve: BTreeMap::new(),
        }
    }
}

impl AcmeConfig {
    /// The checks serde cannot express: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ("acme.listen", format!("`{}`: {e}", self.listen)))?;
        if let Some(url) = &self.public_url {
            if !url.starts_with("https://") || url.ends_with('/') || url.contains(['?', '#', ' ']) {
                return Err((
                    "acme.public_url",
                    format!(
                        "`{url}` must be an https:// URL with no path end `/`, query or fragment"
                    ),
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(("acme.tls_cert", "tls_cert and tls_key go together".into()));
        }
        if let Some(addr) = &self.dns_resolver {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| ("acme.dns_resolver", format!("`{addr}`: {e}")))?;
        }
        for (name, addr) in &self.resolve {
            addr.parse::<std::net::SocketAddr>()
                .map_err(|e| ("acme.resolve", format!("{name:?} = `{addr}`: {e}")))?;
        }
        let bounded = [
            ("acme.max_body_bytes", self.max_body_bytes >= 1024),
            ("acme.max_connections", self.max_connections >= 1),
            (
                "acme.max_connections_per_peer",
                self.max_connections_per_peer >= 1,
            ),
            ("acme.max_orders", self.max_orders >= 1),
            (
                "acme.requests_per_minute_per_peer",
                self.requests_per_minute_per_peer >= 1,
            ),
            (
                "acme.max_orders_per_account",
                self.max_orders_per_account >= 1,
            ),
            (
                "acme.order_minutes",
                (1..=10_080).contains(&self.order_minutes),
            ),
            (
                "acme.validation_timeout_secs",
                (1..=60).contains(&self.validation_timeout_secs),
            ),
        ];
        if let Some((key, _)) = bounded.iter().find(|(_, ok)| !ok) {
            return Err((key, "out of range (see docs/configuration.md)".into()));
        }
        Ok(())
    }

    /// The URL the directory and every object URL start with.
    pub fn url_base(&self) -> String {
        self.public_url
            .clone()
            .unwrap_or_else(|| format!("https://{}", self.listen))
    }

    fn limits(&self) -> crate::infra::conn_limit::Limits {
        crate::infra::conn_limit::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: std::time::Duration::from_millis(self.first_byte_timeout_ms),
        }
    }
}
