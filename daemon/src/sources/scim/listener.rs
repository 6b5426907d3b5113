//! The SCIM HTTP listener: hyper 1.x, HTTP/1.1 with keep-alive, the admin
//! listener's discipline (its accept loop and connection limits in
//! [`crate::infra::http`] and [`crate::infra::conn_limit`], header and body
//! timeouts, graceful shutdown) and its bearer tokens ([`crate::infra::auth::Auth`]): the
//! `read` role for queries, `write` for changes.
//!
//! It only turns HTTP into a `routes::Request` and a
//! `routes::Response` back into HTTP; everything SCIM is behind
//! `routes::dispatch`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use anyhow::Context as _;

use super::error::{ScimError, ScimType};
use super::routes;
use super::state::State;
use super::ScimConfig;
use crate::infra::auth::{Auth, Denied, Role};
use crate::infra::conn_limit::{Limiter, Slot};
use crate::infra::metrics::Metrics;
use idsync_schema::Kind;
use idsync_store::reconcile::Reconciler;
use idsync_store::writer::Writer;

const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
const SCIM_JSON: &str = "application/scim+json";

type Body = Full<Bytes>;

/// Start the SCIM listener of `idsync serve` when `[scim]` enables it:
/// bind, start the group-commit writer, serve until `shutdown`. The task
/// returned ends once the listener and the writer have stopped.
pub async fn start(
    cfg: &ScimConfig,
    rec: Arc<Reconciler>,
    metrics: Arc<Metrics>,
    auth: Arc<Auth>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let listen: SocketAddr = cfg.listen.parse().context("scim.listen")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the SCIM listener on {listen}"))?;
    let limiter = Limiter::new("SCIM", cfg.limits(), metrics.listener_stats("scim"));
    let (writer, thread) = Writer::start(
        "scim",
        Arc::clone(&rec),
        move |head| metrics.set_change_log_head(head),
        cfg.max_batch,
    )
    .context("starting the SCIM writer thread")?;
    let tls = match (&cfg.tls_cert, &cfg.tls_key) {
        (Some(cert), Some(key)) => {
            Some(crate::infra::tls::acceptor(cert, key).context("scim TLS")?)
        }
        _ => None,
    };
    let state = Arc::new(State::new(cfg.clone(), rec, writer));
    for kind in [Kind::User, Kind::Group, Kind::Asset] {
        state.lists.map_in_background(&state.rec, kind);
    }
    tracing::info!(%listen, base_path = %cfg.base(), tls = tls.is_some(), "SCIM listener started");
    Ok(Some(tokio::spawn(async move {
        serve_scim(listener, limiter, state, auth, tls, shutdown).await;
        // The last handle on the writer went with the state: its thread
        // finishes the queue and ends.
        let _ = tokio::task::spawn_blocking(move || thread.join()).await;
    })))
}

/// Serve SCIM on `listener` (over TLS when `tls` is given) until
/// `shutdown` becomes true, then let the requests in flight finish (at most
/// a few seconds) and return.
pub(crate) async fn serve_scim(
    listener: TcpListener,
    limiter: Arc<Limiter>,
    state: Arc<State>,
    auth: Arc<Auth>,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let stop = shutdown.clone();
    let serve = move |stream: Box<dyn crate::infra::http::Io>, peer: SocketAddr, slot: Slot| {
        let (state, auth, shutdown) = (state.clone(), auth.clone(), shutdown.clone());
        connection(stream, peer, slot, state, auth, shutdown)
    };
    crate::infra::http::serve_maybe_tls(listener, limiter, tls, stop, serve).await;
}

async fn connection<IO>(
    stream: IO,
    peer: SocketAddr,
    slot: Slot,
    state: Arc<State>,
    auth: Arc<Auth>,
    shutdown: watch::Receiver<bool>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let state = state.clone();
        let auth = auth.clone();
        async move { Ok::<_, Infallible>(handle(&state, &auth, req, peer).await) }
    });
    crate::infra::http::serve_connection(stream, service, peer, slot, shutdown, "SCIM").await;
}

fn json_response(status: u16, body: Option<&Value>) -> Response<Body> {
    let bytes = body.map(|b| serde_json::to_vec(b).expect("JSON serialises"));
    written_response(status, bytes)
}

/// A response whose JSON (if any) is written already.
fn written_response(status: u16, body: Option<Vec<u8>>) -> Response<Body> {
    let is_json = body.is_some();
    let mut r = Response::new(Full::new(Bytes::from(body.unwrap_or_default())));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if is_json {
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    }
    r
}

fn error_response(e: &ScimError) -> Response<Body> {
    json_response(e.status, Some(&e.to_json()))
}

fn refusal(denied: &Denied) -> Response<Body> {
    let (status, challenge) = match denied {
        Denied::InsufficientRole { .. } => (
            403,
            "Bearer realm=\"idsync-scim\", error=\"insufficient_scope\"",
        ),
        Denied::MissingHeader | Denied::WrongScheme => (401, "Bearer realm=\"idsync-scim\""),
        Denied::Malformed | Denied::UnknownToken => {
            (401, "Bearer realm=\"idsync-scim\", error=\"invalid_token\"")
        }
    };
    let mut r = error_response(&ScimError::status(status, denied.to_string()));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

fn header_text(req: &Request<Incoming>, name: header::HeaderName) -> Option<String> {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// 413 for a body over `max` bytes; the connection closes, as the rest of
/// the body is not read.
fn too_large(max: usize) -> Response<Body> {
    let mut r = error_response(&ScimError::typed(
        413,
        ScimType::TooMany,
        format!("the body is larger than {max} bytes"),
    ));
    r.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    r
}

async fn handle(
    state: &Arc<State>,
    auth: &Auth,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Body> {
    let max = state.cfg.max_body_bytes;
    if req.body().size_hint().lower() > max as u64 {
        return too_large(max);
    }
    let base = state.cfg.base();
    let full_path = req.uri().path().to_owned();
    let Some(path) = full_path
        .strip_prefix(base)
        .filter(|p| p.is_empty() || p.starts_with('/'))
    else {
        return error_response(&ScimError::status(404, format!("no endpoint {full_path}")));
    };
    let path = path.to_owned();
    let method = req.method().clone();
    let needed = if routes::is_read(&method, &path) {
        Role::Read
    } else {
        Role::Write
    };
    let token = match auth.check(req.headers().get(header::AUTHORIZATION), needed) {
        Ok(t) => t,
        Err(denied) => {
            tracing::info!(%peer, reason = %denied, "SCIM request refused");
            return refusal(&denied);
        }
    };
    let query = crate::infra::http::parse_query(req.uri().query());
    let if_match = header_text(&req, header::IF_MATCH);
    let if_none_match = header_text(&req, header::IF_NONE_MATCH);
    let body = match json_body(req, max).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let request = routes::Request {
        method,
        path,
        query,
        if_match,
        if_none_match,
        body,
        token: token.as_str().to_owned(),
    };
    match routes::dispatch(state, request).await {
        Ok(r) => to_http(r),
        Err(e) => error_response(&e),
    }
}

/// The request's body as JSON (none for GET and DELETE, or when empty),
/// read within [`BODY_READ_TIMEOUT`] and `max` bytes; or the answer that
/// refuses it.
async fn json_body(req: Request<Incoming>, max: usize) -> Result<Option<Value>, Response<Body>> {
    let method = req.method().clone();
    let content_type = header_text(&req, header::CONTENT_TYPE);
    let body = match tokio::time::timeout(
        BODY_READ_TIMEOUT,
        Limited::new(req.into_body(), max).collect(),
    )
    .await
    {
        Ok(Ok(b)) => b.to_bytes(),
        Ok(Err(e)) if e.is::<LengthLimitError>() => return Err(too_large(max)),
        Ok(Err(_)) | Err(_) => {
            return Err(error_response(&ScimError::bad(
                ScimType::InvalidSyntax,
                "the body could not be read",
            )))
        }
    };
    if body.is_empty() || method == Method::GET || method == Method::DELETE {
        return Ok(None);
    }
    if content_type
        .as_deref()
        .is_some_and(|ct| !ct.to_ascii_lowercase().contains("json"))
    {
        return Err(error_response(&ScimError::status(
            415,
            "send application/scim+json or application/json",
        )));
    }
    serde_json::from_slice::<Value>(&body)
        .map(Some)
        .map_err(|e| {
            error_response(&ScimError::bad(
                ScimType::InvalidSyntax,
                format!("the body is not JSON: {e}"),
            ))
        })
}

/// An answer as HTTP: its status and body, with ETag and Location headers.
fn to_http(r: routes::Response) -> Response<Body> {
    let body = r.body.map(|b| match b {
        routes::Body::Json(v) => serde_json::to_vec(&v).expect("JSON serialises"),
        routes::Body::Written(bytes) => bytes,
    });
    let mut resp = written_response(r.status, body);
    let h = resp.headers_mut();
    if let Some(e) = r
        .etag
        .as_deref()
        .and_then(|e| HeaderValue::from_str(e).ok())
    {
        h.insert(header::ETAG, e);
    }
    if let Some(l) = r
        .location
        .as_deref()
        .and_then(|l| HeaderValue::from_str(l).ok())
    {
        h.insert(header::LOCATION, l);
    }
    resp
}
