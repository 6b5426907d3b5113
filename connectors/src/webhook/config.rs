//! The webhook connector's configuration (`[[connectors]]` with
//! `type = "webhook"`) and what is read from it before the first POST: the
//! URL, parsed and checked once (its errors never quote its path or query,
//! which often hold a secret), and the TLS trust of `ca_file`.

use std::path::PathBuf;
use std::sync::Arc;

use hyper::Uri;
use idsync_schema::{Kind, RequestStatus};
use serde::{Deserialize, Serialize};

use crate::connector::{ConnectorError, DeliveryConfig};

/// `[[connectors]]` of `type = "webhook"`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookConfig {
    /// The connector's name (letters, digits, `-`, `_`).
    pub name: String,
    /// Where to POST: `http://host[:port]/path` or `https://…`.
    pub url: String,
    /// Which kinds of object are sent (`request`, `user`, `group`, `asset`,
    /// `profile`, `certificate`); events of other kinds are skipped.
    pub kinds: Vec<Kind>,
    /// For kind `request`: only events whose request is now in one of these
    /// statuses are sent (`pending_approval`, `approved`, `issued`,
    /// `rejected`, `failed`); the others are skipped.
    pub request_statuses: Vec<RequestStatus>,
    /// A file holding the token sent as `Authorization: Bearer …` (read at
    /// every batch; surrounding whitespace ignored). Unset: no
    /// `Authorization` header.
    pub bearer_token_file: Option<PathBuf>,
    /// Time limit of one POST (connecting, sending, and the answer).
    pub timeout_ms: u64,
    /// PEM file of the CA(s) to trust for `https://` instead of the
    /// built-in (webpki) roots.
    pub ca_file: Option<PathBuf>,
    pub delivery: DeliveryConfig,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: String::new(),
            kinds: vec![Kind::Request],
            request_statuses: vec![RequestStatus::PendingApproval],
            bearer_token_file: None,
            timeout_ms: 5_000,
            ca_file: None,
            delivery: DeliveryConfig::default(),
        }
    }
}

/// Where a URL points: scheme, host (without IPv6 brackets) and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Target {
    pub https: bool,
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// Parse and check `url`; errors never quote its path or query.
pub(super) fn target(url: &str) -> Result<(Uri, Target), String> {
    let https = if url.starts_with("https://") {
        true
    } else if url.starts_with("http://") {
        false
    } else {
        let scheme = url.split("://").next().filter(|_| url.contains("://"));
        return Err(match scheme {
            Some(s) => format!("url must start with http:// or https:// (not {s}://)"),
            None => "url must start with http:// or https://".into(),
        });
    };
    let uri: Uri = url
        .parse()
        .map_err(|_| "url is not a valid absolute URL".to_owned())?;
    let authority = uri
        .authority()
        .ok_or_else(|| "url has no host".to_owned())?;
    if authority.as_str().contains('@') {
        return Err("url must not hold credentials: use bearer_token_file".into());
    }
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    if host.is_empty() {
        return Err("url has no host".into());
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    Ok((uri, Target { https, host, port }))
}

impl WebhookConfig {
    /// The checks serde cannot express.
    pub fn check(&self) -> Result<(), ConnectorError> {
        let bad = |m: String| {
            Err(ConnectorError::Config(format!(
                "connector {}: {m}",
                self.name
            )))
        };
        let t = match target(&self.url) {
            Ok((_, t)) => t,
            Err(m) => return bad(m),
        };
        if self.ca_file.is_some() && !t.https {
            return bad("ca_file is for https:// URLs".into());
        }
        if self.kinds.is_empty() {
            return bad("kinds is empty: nothing would be sent".into());
        }
        if self.kinds.contains(&Kind::Request) && self.request_statuses.is_empty() {
            return bad("request_statuses is empty: no request would be sent".into());
        }
        if self.timeout_ms == 0 {
            return bad("timeout_ms must be at least 1".into());
        }
        if self.delivery.batch_size == 0 || self.delivery.max_attempts == 0 {
            return bad("delivery.batch_size and delivery.max_attempts must be at least 1".into());
        }
        Ok(())
    }
}

/// A rustls client config (ring provider) trusting the CAs of `path` only.
pub(super) fn tls_with_ca(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let mut roots = rustls::RootCertStore::empty();
    let certs =
        CertificateDer::pem_file_iter(path).map_err(|e| format!("{}: {e}", path.display()))?;
    for cert in certs {
        let cert = cert.map_err(|e| format!("{}: {e}", path.display()))?;
        roots
            .add(cert)
            .map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if roots.is_empty() {
        return Err(format!("{}: no certificate found", path.display()));
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| e.to_string())?
    .with_root_certificates(roots)
    .with_no_client_auth())
}
