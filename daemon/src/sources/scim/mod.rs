//! The SCIM 2.0 server (RFC 7643, RFC 7644) that identity providers push
//! users, groups and assets to, and its `[scim]` configuration.
//!
//! Kept in layers, the protocol apart from the server:
//! - `idsync_schema::scim`: the protocol itself — error bodies, the filter
//!   language, PATCH paths, the mapping of idsync's objects and the
//!   discovery documents — pure functions over JSON, tested (and fuzzable)
//!   on their own;
//! - `error`: that error body plus what the store and writer report;
//! - `routes`: a request in, a response out, dispatched by method and
//!   path; `state`: what every operation shares;
//! - `resource`: what differs between users, groups and assets, behind
//!   one trait, so that the operations are written once:
//!   - reads: `read` (one resource), `query` and `projection` (the
//!     parameters), `list` (filter, sort, page), `index` (filters
//!     answered from indexes), `paging` (pages in id order),
//!     `list_cache` (totals and page anchors);
//!   - writes: `write` (POST, PUT, PATCH, DELETE through the
//!     group-commit `idsync_store::writer`, into the reconciler, the one
//!     write path), `members` (group memberships), `etag`
//!     (conditional requests), `bulk`;
//! - `listener`: HTTP (hyper), optional TLS (rustls, `crate::infra::tls`),
//!   authentication, limits, shutdown.

mod bulk;
mod error;
mod etag;
mod index;
mod list;
mod list_cache;
pub mod listener;
mod members;
mod paging;
mod projection;
mod query;
mod read;
mod resource;
mod routes;
mod state;

mod write;

use serde::{Deserialize, Serialize};

/// `[scim]`: the SCIM listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScimConfig {
    /// Whether `idsync serve` starts the SCIM listener.
    pub enabled: bool,
    /// Address to listen on; loopback by default (put a TLS-terminating
    /// proxy in front to expose it).
    pub listen: String,
    /// Where the endpoints live: `{base_path}/Users`, …
    pub base_path: String,
    /// The URL clients reach the listener at, when it is not
    /// `http(s)://{listen}` (behind a proxy, or listening on all
    /// addresses): `Location`, `meta.location` and `$ref` are absolute
    /// URIs that start with it and `base_path`.
    pub public_url: Option<String>,
    /// Largest request body (also the Bulk `maxPayloadSize`), in bytes.
    pub max_body_bytes: usize,
    /// Longest `filter` accepted, in characters.
    pub max_filter_chars: usize,
    /// Deepest nesting of parentheses and brackets in a filter or path.
    pub max_filter_depth: usize,
    /// Most resources one page returns, and most matches a filter that
    /// needs a scan or a sort may have (more is `tooMany`).
    pub max_results: usize,
    /// Page size when the client gives no `count` (at most `max_results`).
    pub default_count: usize,
    /// DELETE of a user deactivates it instead of removing it.
    pub delete_deactivates: bool,
    /// Most operations in one Bulk request.
    pub bulk_max_operations: usize,
    /// Most write requests that share one commit.
    pub max_batch: usize,
    /// What a user must have beyond `userName`: any of `mail` and
    /// `lastName` (RFC 7643 requires neither; seed 003's CSV rules both).
    pub require: Vec<String>,
    /// Longest string attribute of a user, in characters.
    pub max_chars: usize,
    /// Connections served at once.
    pub max_connections: usize,
    /// Connections one peer address may hold.
    pub max_connections_per_peer: usize,
    /// Milliseconds a new connection has to send its first byte (over TLS:
    /// to finish its handshake).
    pub first_byte_timeout_ms: u64,
    /// PEM certificate chain (leaf first): serve HTTPS. Needs `tls_key`.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for ScimConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: "127.0.0.1:9478".into(),
            base_path: "/scim/v2".into(),
            public_url: None,
            max_body_bytes: 1024 * 1024,
            max_filter_chars: 4096,
            max_filter_depth: 16,
            max_results: 1000,
            default_count: 100,
            delete_deactivates: false,
            bulk_max_operations: 1000,
            max_batch: 512,
            require: Vec::new(),
            max_chars: idsync_schema::RuleSet::RFC7643.max_chars,
            max_connections: 1024,
            max_connections_per_peer: 32,
            first_byte_timeout_ms: 3000,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl ScimConfig {
    /// The checks serde cannot express: `(key, message)`.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        self.listen
            .parse::<std::net::SocketAddr>()
            .map_err(|e| ("scim.listen", format!("`{}`: {e}", self.listen)))?;
        let bp = &self.base_path;
        if !bp.starts_with('/') || (bp.len() > 1 && bp.ends_with('/')) || bp.contains("//") {
            return Err((
                "scim.base_path",
                format!("`{bp}` must start with `/` and not end with one"),
            ));
        }
        if let Some(bad) = self
            .require
            .iter()
            .find(|r| !matches!(r.as_str(), "mail" | "lastName"))
        {
            return Err((
                "scim.require",
                format!("`{bad}`: only `mail` and `lastName` can be required"),
            ));
        }
        if let Some(url) = &self.public_url {
            let scheme_ok = url.starts_with("http://") || url.starts_with("https://");
            if !scheme_ok || url.ends_with('/') || url.contains(['?', '#', ' ']) {
                return Err((
                    "scim.public_url",
                    format!("`{url}` must be an http:// or https:// URL with no path end `/`, query or fragment"),
                ));
            }
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err((
                "scim.tls_cert",
                "tls_cert and tls_key go together: set both or neither".into(),
            ));
        }
        for (key, v) in [
            ("scim.max_body_bytes", self.max_body_bytes),
            ("scim.max_filter_chars", self.max_filter_chars),
            ("scim.max_filter_depth", self.max_filter_depth),
            ("scim.max_results", self.max_results),
            ("scim.bulk_max_operations", self.bulk_max_operations),
            ("scim.max_batch", self.max_batch),
            ("scim.max_chars", self.max_chars),
            ("scim.max_connections", self.max_connections),
            (
                "scim.max_connections_per_peer",
                self.max_connections_per_peer,
            ),
        ] {
            if v == 0 {
                return Err((key, "must be at least 1".into()));
            }
        }
        if self.first_byte_timeout_ms < 100 {
            return Err(("scim.first_byte_timeout_ms", "must be at least 100".into()));
        }
        Ok(())
    }

    /// The listener's connection limits.
    pub fn limits(&self) -> crate::infra::conn_limit::Limits {
        crate::infra::conn_limit::Limits {
            max_connections: self.max_connections,
            max_per_peer: self.max_connections_per_peer,
            first_byte_timeout: std::time::Duration::from_millis(self.first_byte_timeout_ms),
        }
    }

    /// What the discovery documents advertise of this configuration;
    /// `url_base` is [`ScimConfig::url_base`]'s.
    pub fn advertised<'a>(&'a self, url_base: &'a str) -> idsync_schema::scim::Advertised<'a> {
        idsync_schema::scim::Advertised {
            url_base,
            rules: self.rule_set(),
            bulk_max_operations: self.bulk_max_operations,
            max_body_bytes: self.max_body_bytes,
            max_results: self.max_results,
            default_count: self.default_count,
        }
    }

    /// The rule set SCIM writes of users are checked with.
    pub fn rule_set(&self) -> idsync_schema::RuleSet {
        let requires = |name: &str| self.require.iter().any(|r| r == name);
        idsync_schema::RuleSet {
            require_mail: requires("mail"),
            require_last_name: requires("lastName"),
            max_chars: self.max_chars,
        }
    }

    /// The base path without a trailing `/` (`/` becomes empty).
    pub fn base(&self) -> &str {
        self.base_path.trim_end_matches('/')
    }

    /// The absolute URL of the endpoints: `public_url` (or
    /// `http(s)://{listen}`) and the base path.
    pub fn url_base(&self) -> String {
        match &self.public_url {
            Some(url) => format!("{url}{}", self.base()),
            None => {
                let scheme = if self.tls_cert.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}{}", self.listen, self.base())
            }
        }
    }
}
