//! http-01 validation (RFC 8555 §8.3): fetch
//! `http://{name}/.well-known/acme-challenge/{token}` and compare the body
//! with the key authorization (`token.thumbprint`; trailing white space
//! is ignored, as the RFC allows).
//!
//! Where the name is fetched from: `[acme] resolve` when it names it, else
//! the system resolver, on `[acme] http01_port`. Bounded: a body of at
//! most a few KiB, no redirect followed (the time and the number at once
//! are `super::validate`'s).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty, Limited};
use hyper_util::rt::TokioIo;

use super::problem::Problem;

/// Largest challenge body read (a key authorization is ~87 bytes).
const MAX_BODY: usize = 8 * 1024;

/// Fetch the challenge of `name` and compare it with `expected`.
pub(super) async fn check(
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
