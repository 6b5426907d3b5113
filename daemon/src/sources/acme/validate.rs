//! http-01 validation (RFC 8555 §8.3): fetch
//! `http://{name}/.well-known/acme-challenge/{token}` and compare the body
//! with the key authorization (`token.thumbprint`; trailing white space
//! is ignored, as the RFC allows).
//!
//! Where the name is fetched from: `[acme] resolve` when it names it, else
//! the system resolver, on `[acme] http01_port`. Bounded: a few
//! validations at once, each within `validation_timeout_secs`, a body of
//! at most a few KiB, no redirect followed.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;

use super::orders::{Authz, AuthzStatus, Orders};
use super::problem::Problem;
use super::AcmeConfig;

/// Largest challenge body read (a key authorization is ~87 bytes).
const MAX_BODY: usize = 8 * 1024;
/// Validations running at once; more wait for a place.
const AT_ONCE: usize = 16;

#[derive(Debug)]
pub(crate) struct Validator {
    port: u16,
    timeout: Duration,
    resolve: BTreeMap<String, SocketAddr>,
    places: Arc<Semaphore>,
}

impl Validator {
    pub fn new(cfg: &AcmeConfig) -> Self {
        Self {
            port: cfg.http01_port,
            timeout: Duration::from_secs(cfg.validation_timeout_secs),
            // Checked by `AcmeConfig::check`.
            resolve: cfg
                .resolve
                .iter()
                .filter_map(|(n, a)| Some((n.to_ascii_lowercase(), a.parse().ok()?)))
                .collect(),
            places: Arc::new(Semaphore::new(AT_ONCE)),
        }
    }

    /// Validate `authz` in the background and record the outcome in
    /// `orders`. `thumbprint` is the account key's.
    pub fn start(&self, authz: &Authz, thumbprint: &str, orders: Arc<Orders>) {
        let expected = format!("{}.{thumbprint}", authz.token);
        let (id, name, token) = (authz.id, authz.name.clone(), authz.token.clone());
        let target = self.resolve.get(&name).copied();
        let (port, timeout, places) = (self.port, self.timeout, Arc::clone(&self.places));
        tokio::spawn(async move {
            let _place = places.acquire_owned().await;
            let outcome =
                tokio::time::timeout(timeout, check(&name, target, port, &token, &expected))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Problem::new(
                            "connection",
                            400,
                            format!(
                        "fetching the http-01 challenge of {name} took longer than {timeout:?}"
                    ),
                        ))
                    });
            let now = time::OffsetDateTime::now_utc();
            orders.update_authz(id, |a| match &outcome {
                Ok(()) => {
                    a.status = AuthzStatus::Valid;
                    a.validated = Some(now);
                }
                Err(p) => {
                    a.status = AuthzStatus::Invalid;
                    a.error = Some(p.clone());
                }
            });
            match outcome {
                Ok(()) => tracing::info!(authz = %id, name = ?name, "ACME http-01 challenge valid"),
                Err(p) => {
                    tracing::info!(authz = %id, name = ?name, reason = ?p.detail, "ACME http-01 challenge invalid")
                }
            }
        });
    }
}

/// Fetch the challenge of `name` and compare it with `expected`.
async fn check(
    name: &str,
    target: Option<SocketAddr>,
    port: u16,
    token: &str,
    expected: &str,
) -> Result<(), Problem> {
    let connection = |m: String| Problem::new("connection", 400, m);
    let addr = match target {
        Some(a) => a,
        None => tokio::net::lookup_host((name, port))
            .await
            .ok()
            .and_then(|mut a| a.next())
            .ok_or_else(|| Problem::new("dns", 400, format!("{name} does not resolve")))?,
    };
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| connection(format!("connecting to {name} ({addr}): {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| connection(format!("HTTP to {name} ({addr}): {e}")))?;
    tokio::spawn(conn);
    let host = match addr.port() {
        80 => name.to_owned(),
        p => format!("{name}:{p}"),
    };
    let req = hyper::Request::get(format!("/.well-known/acme-challenge/{token}"))
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "idsync-acme-validator")
        .body(Empty::<Bytes>::new())
        .map_err(|e| connection(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| connection(format!("HTTP to {name} ({addr}): {e}")))?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Problem::unauthorized(format!(
            "{name} answered the http-01 challenge with {status}"
        )));
    }
    let body = Limited::new(resp.into_body(), MAX_BODY)
        .collect()
        .await
        .map_err(|e| connection(format!("reading the challenge from {name}: {e}")))?
        .to_bytes();
    let got = String::from_utf8_lossy(&body);
    if got.trim_end() != expected {
        return Err(Problem::new(
            "incorrectResponse",
            403,
            format!(
                "{name} served {:?} for the http-01 challenge, not the key authorization",
                got.chars().take(128).collect::<String>()
            ),
        ));
    }
    Ok(())
}
