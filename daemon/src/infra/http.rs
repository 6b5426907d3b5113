//! What the daemon's HTTP listeners (admin, SCIM) share: serving one HTTP/1
//! connection with a header timeout and a graceful stop, and the shape of
//! an answer. Each listener keeps its own accept loop, routes and limits.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper::{Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::watch;

/// How long a client may take to send a request's headers. Also closes idle
/// keep-alive connections.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves once `shutdown` is true. A dropped sender also stops: nobody
/// is left to tell the listener to stop, so the daemon is going away.
pub async fn stopped(mut shutdown: watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await;
}

/// Serve `stream` until the client closes it or `shutdown` asks; then the
/// request in flight (if any) finishes and the connection closes.
pub async fn serve_connection<IO, S>(
    stream: IO,
    service: S,
    peer: SocketAddr,
    shutdown: watch::Receiver<bool>,
    listener: &'static str,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn StdError + Send + Sync>>,
    S::ResBody: Send + 'static,
    <S::ResBody as Body>::Data: Send,
    <S::ResBody as Body>::Error: Into<Box<dyn StdError + Send + Sync>>,
{
    let mut conn = pin!(http1::Builder::new()
        // The header timeout needs a timer; hyper has none of its own.
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service));
    let mut stop = pin!(stopped(shutdown));
    let mut stopping = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = &mut stop, if !stopping => {
                conn.as_mut().graceful_shutdown();
                stopping = true;
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "{listener} connection ended with an error");
    }
}

/// An answer of the admin listener (every route's: health, connectors,
/// enrollment).
pub fn respond(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Live figures, certificates and PKCS#12 files: no proxy or browser
    // should keep any of them.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A JSON answer of the admin listener.
pub fn respond_json(status: StatusCode, body: &impl serde::Serialize) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/json",
        serde_json::to_vec_pretty(body).expect("JSON serialises"),
    )
}
