//! The activation page's HTTP listener (`[activation]`): the accept loop
//! and connection limits every listener shares ([`crate::infra::http`]),
//! a small bounded body, and [`Page`] behind it. No bearer token here: the
//! link's token is the credential, checked by the page.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::service::service_fn;
use hyper::{header, Request, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use super::config::ActivationConfig;
use super::page::{Page, MAX_FORM_BYTES};
use crate::infra::conn_limit::{Limiter, Slot};
use crate::infra::http::respond;
use crate::infra::metrics::Metrics;

/// A client must send the form within this time.
const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind `activation.listen` and serve `page` there; the task ends once
/// `shutdown` is true and the requests in flight are done.
pub async fn start(
    cfg: &ActivationConfig,
    page: Page,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen: SocketAddr = cfg.listen.parse().context("activation.listen")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the activation page's listener on {listen}"))?;
    let limiter = Limiter::new(
        "activation",
        cfg.limits(),
        metrics.listener_stats("activation"),
    );
    tracing::info!(%listen, "activation page listener started");
    let page = Arc::new(page);
    Ok(tokio::spawn(async move {
        let serve =
            |stream, peer, slot| connection(stream, peer, slot, page.clone(), shutdown.clone());
        crate::infra::http::serve_listener(listener, limiter, shutdown.clone(), serve).await;
    }))
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    page: Arc<Page>,
    shutdown: watch::Receiver<bool>,
) {
    if !crate::infra::http::first_byte(&stream, &slot).await {
        return;
    }
    let service = service_fn(move |req| {
        let page = page.clone();
        async move { Ok::<_, Infallible>(handle(&page, req, peer).await) }
    });
    crate::infra::http::serve_connection(stream, service, peer, slot, shutdown, "activation").await;
}

async fn handle(page: &Page, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let text = "text/plain; charset=utf-8";
    if req.body().size_hint().lower() > MAX_FORM_BYTES as u64 {
        return respond(StatusCode::PAYLOAD_TOO_LARGE, text, "form too large\n");
    }
    let (parts, body) = req.into_parts();
    let limited = Limited::new(body, MAX_FORM_BYTES).collect();
    let body = match tokio::time::timeout(BODY_READ_TIMEOUT, limited).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(_)) => {
            return respond(
                StatusCode::BAD_REQUEST,
                text,
                "unreadable or too large form\n",
            )
        }
        Err(_) => return respond(StatusCode::REQUEST_TIMEOUT, text, "form too slow\n"),
    };
    let language = parts
        .headers
        .get(header::ACCEPT_LANGUAGE)
        .and_then(|v| v.to_str().ok());
    page.handle(&parts.method, parts.uri.path(), peer.ip(), language, body)
        .await
}
