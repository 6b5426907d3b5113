//! What the daemon's HTTP listeners (admin, SCIM) share: serving one HTTP/1
//! connection with a header timeout and a graceful stop. Each listener keeps
//! its own accept loop, routes and limits.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::pin::pin;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::server::conn::http1;
use hyper::service::HttpService;
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
