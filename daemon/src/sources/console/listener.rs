//! The console's own listener (`[console] listen`), with TLS when
//! `tls_cert`/`tls_key` are set: operators reach the console over HTTPS
//! from their desks while the admin API stays on loopback. It serves
//! `/ui/` only, with the admin listener's connection bounds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context as _;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::config::ConsoleConfig;
use super::Console;
use crate::infra::conn_limit::{Limiter, Limits, Slot};
use crate::infra::http::Io;
use crate::infra::metrics::Metrics;

/// Start the console's listener when `[console] listen` asks for one:
/// bind, load the TLS certificate, serve until `shutdown`. `max_body` is
/// the largest form (`admin.max_body_bytes`).
pub async fn start(
    cfg: &ConsoleConfig,
    console: Arc<Console>,
    max_body: usize,
    limits: Limits,
    metrics: &Metrics,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    let Some(listen) = &cfg.listen else {
        return Ok(None);
    };
    let listen: SocketAddr = listen.parse().context("console.listen")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the console listener on {listen}"))?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::infra::tls::acceptor(cert, key).context("console TLS")?)
        }
        _ => None,
    };
    let limiter = Limiter::new("console", limits, metrics.listener_stats("console"));
    tracing::info!(%listen, tls = tls.is_some(), "console listener started");
    let stop = shutdown.clone();
    let serve = move |stream: Box<dyn Io>, peer: SocketAddr, slot: Slot| {
        let (console, shutdown) = (Arc::clone(&console), shutdown.clone());
        async move {
            let service = service_fn(move |req| {
                let console = Arc::clone(&console);
                async move { Ok::<_, Infallible>(console.answer(req, max_body, peer).await) }
            });
            crate::infra::http::serve_connection(stream, service, peer, slot, shutdown, "console")
                .await;
        }
    };
    Ok(Some(tokio::spawn(crate::infra::http::serve_maybe_tls(
        listener, limiter, tls, stop, serve,
    ))))
}
