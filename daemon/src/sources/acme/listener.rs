//! The ACME listener: HTTPS (hyper 1.x, rustls) with the other listeners'
//! discipline (accept loop, connection limits, header and body timeouts,
//! graceful shutdown, [`crate::infra::http`]). It turns HTTP into a call
//! of [`Acme::handle`] and its [`Reply`] back into HTTP, adding what every
//! ACME answer carries: a fresh `Replay-Nonce`, the directory `Link`, and
//! `Cache-Control: no-store`.
//!
//! No bearer token here: ACME requests are signed by their account (or,
//! for newAccount, bound to a registration by its HMAC key).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::problem::Problem;
use super::server::{Acme, Reply, ReplyBody, PREFIX};
use super::AcmeConfig;
use crate::infra::conn_limit::{Limiter, Slot};
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::RateLimit;
use crate::sources::enroll::Enrollment;

const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);

type Body = Full<Bytes>;

/// Start the ACME listener of `idsync serve` when `[acme]` enables it.
/// The task returned ends once the listener has stopped.
pub async fn start(
    cfg: &AcmeConfig,
    enrollment: Arc<Enrollment>,
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let listen: SocketAddr = cfg.listen.parse().context("acme.listen")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the ACME listener on {listen}"))?;
    let tls = acceptor(cfg, &enrollment).await?;
    let limiter = Limiter::new("ACME", cfg.limits(), metrics.listener_stats("acme"));
    let acme = Arc::new(Acme::new(cfg, enrollment));
    let per_peer = Arc::new(RateLimit::per_minute(cfg.requests_per_minute_per_peer));
    tracing::info!(%listen, directory = %acme.directory_url(), "ACME listener started");
    let max = cfg.max_body_bytes;
    let stop = shutdown.clone();
    let serve = move |io: Box<dyn crate::infra::http::Io>, peer: SocketAddr, slot: Slot| {
        let (acme, shutdown) = (Arc::clone(&acme), shutdown.clone());
        let per_peer = Arc::clone(&per_peer);
        async move {
            let service = service_fn(move |req| {
                let acme = Arc::clone(&acme);
                let allowed = per_peer.check(&peer.ip());
                async move {
                    let response = match allowed {
                        Ok(()) => handle(&acme, req, max).await,
                        Err(wait) => to_http(&acme, rate_limited(wait)),
                    };
                    Ok::<_, Infallible>(response)
                }
            });
            crate::infra::http::serve_connection(io, service, peer, slot, shutdown, "ACME").await;
        }
    };
    Ok(Some(tokio::spawn(crate::infra::http::serve_maybe_tls(
        listener,
        limiter,
        Some(tls),
        stop,
        serve,
    ))))
}

/// TLS from `tls_cert`/`tls_key`, or a certificate the CA issues now for
/// the public URL's host, `localhost` and the loopback addresses.
async fn acceptor(cfg: &AcmeConfig, enrollment: &Enrollment) -> anyhow::Result<TlsAcceptor> {
    if let (Some(cert), Some(key)) = (&cfg.tls_cert, &cfg.tls_key) {
        return crate::infra::tls::acceptor(cert, key).context("acme TLS");
    }
    let base = cfg.url_base();
    let authority = base.trim_start_matches("https://");
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let mut dns = vec!["localhost".to_owned()];
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into(), std::net::Ipv6Addr::LOCALHOST.into()];
    match host.parse::<IpAddr>() {
        Ok(ip) if !ips.contains(&ip) => ips.push(ip),
        Ok(_) => {}
        Err(_) if host != "localhost" => dns.insert(0, host.to_ascii_lowercase()),
        Err(_) => {}
    }
    let (chain, key) = enrollment
        .listener_certificate(&dns, &ips)
        .await
        .context("issuing the ACME listener's certificate")?;
    crate::infra::tls::acceptor_in_memory(&chain, &key).context("acme TLS")
}

async fn handle(acme: &Acme, req: Request<Incoming>, max: usize) -> Response<Body> {
    let reply = match read(req, max).await {
        Ok((method, path, content_type, body)) => match path.strip_prefix(PREFIX) {
            Some(rest) if rest.starts_with('/') => {
                acme.handle(&method, rest, content_type.as_deref(), body)
                    .await
            }
            _ => Problem::not_found(format!(
                "no resource {path}; the directory is {}",
                acme.directory_url()
            ))
            .into(),
        },
        Err(reply) => reply,
    };
    to_http(acme, reply)
}

/// The answer to a peer over its request rate (RFC 8555 §6.6).
fn rate_limited(wait: Duration) -> Reply {
    let mut reply: Reply = Problem::new(
        "rateLimited",
        429,
        "too many requests from this address: retry later",
    )
    .into();
    reply.retry_after = Some(wait.as_secs().max(1));
    reply
}

type Parts = (hyper::Method, String, Option<String>, Bytes);

/// The request's method, path, content type and body (at most `max`
/// bytes, within [`BODY_READ_TIMEOUT`]), or the refusal.
async fn read(req: Request<Incoming>, max: usize) -> Result<Parts, Reply> {
    let too_large = || -> Reply {
        Problem::new(
            "malformed",
            413,
            format!("the body is larger than {max} bytes"),
        )
        .into()
    };
    if req.body().size_hint().lower() > max as u64 {
        return Err(too_large());
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large()),
        Ok(Err(_)) | Err(_) => return Err(Problem::malformed("the body could not be read").into()),
    };
    Ok((method, path, content_type, body))
}

fn to_http(acme: &Acme, reply: Reply) -> Response<Body> {
    let (content_type, body): (&str, Bytes) = match reply.body {
        ReplyBody::Empty => ("", Bytes::new()),
        ReplyBody::Json(v) => ("application/json", json_bytes(&v)),
        ReplyBody::Problem(p) => ("application/problem+json", json_bytes(&p.to_json())),
        ReplyBody::Pem(pem) => ("application/pem-certificate-chain", Bytes::from(pem)),
    };
    let mut r = Response::new(Full::new(body));
    *r.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    if !content_type.is_empty() {
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(n) = HeaderValue::from_str(&acme.new_nonce()) {
        h.insert("replay-nonce", n);
    }
    let index = format!("<{}>;rel=\"index\"", acme.directory_url());
    for link in std::iter::once(index).chain(reply.links) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.append(header::LINK, v);
        }
    }
    if let Some(l) = reply.location.and_then(|l| HeaderValue::from_str(&l).ok()) {
        h.insert(header::LOCATION, l);
    }
    if let Some(s) = reply.retry_after {
        h.insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    if reply.status == 413 {
        // The rest of the body is not read: the connection cannot go on.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

fn json_bytes(v: &serde_json::Value) -> Bytes {
    Bytes::from(serde_json::to_vec(v).expect("JSON serialises"))
}
