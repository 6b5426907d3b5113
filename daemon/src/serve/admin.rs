//! The admin HTTP listener: health, readiness, metrics and status for
//! probes, Prometheus and `idsync status`; the connector routes
//! ([`crate::connect::routes`], admin role) and the enrollment API
//! ([`crate::sources::enroll::routes`], operator/approver/admin roles),
//! the mail route ([`crate::sources::activation::routes`], operator).
//!
//! Every route needs a bearer token with the right role (see
//! [`crate::infra::auth`]); health and metrics need the monitor role.
//! The one exception is the CRLs (`/crl/…`), which relying parties fetch
//! without credentials.
//! The listener is small on purpose: HTTP/1.1 only, bodies bounded, headers
//! bounded in time, connections bounded in number, in all and per peer (they
//! share the daemon's file descriptors with the folder watcher and the
//! store; see [`crate::infra::conn_limit`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body as _, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::infra::auth::{Auth, Denied, Role};
use crate::infra::conn_limit::{Limiter, Limits, Slot};
use crate::infra::http::{closing, read_body, respond, too_large, unless_get_or_head};
use crate::infra::metrics::Metrics;

pub use crate::infra::metrics::HEARTBEAT_MAX_AGE;

const TEXT: &str = "text/plain; charset=utf-8";
const PROMETHEUS: &str = "text/plain; version=0.0.4";
const JSON: &str = "application/json";
const REALM: &str = "Bearer realm=\"idsync\"";

/// What the admin listener serves from.
#[derive(Debug)]
pub struct AdminState {
    pub metrics: Arc<Metrics>,
    pub auth: Arc<Auth>,
    /// Largest request body accepted (`admin.max_body_bytes`).
    pub max_body_bytes: usize,
    /// The running connectors (`/connectors/…`, admin role).
    pub connectors: Option<Arc<crate::connect::Connectors>>,
    /// Certificate enrollment (`/api/v1/…`, see [`crate::sources::enroll::routes`]).
    pub enrollment: Option<Arc<crate::sources::enroll::Enrollment>>,
    /// Queueing activation mails (`/mail/…`, see
    /// [`crate::sources::activation::routes`]).
    pub activations: Option<Arc<crate::sources::activation::Activations>>,
    /// The operator console (`/ui/…`, a session from a token; see
    /// [`crate::sources::console`]); none: `[console] enabled = false`,
    /// or the console has a listener of its own (`[console] listen`).
    pub console: Option<Arc<crate::sources::console::Console>>,
    /// Connections in all and per peer, first-byte timeout (`[admin]`).
    pub limits: Limits,
}

/// Serve the admin routes on `listener` until `shutdown` becomes true;
/// then stop accepting, let requests in flight finish (for at most a few
/// seconds) and return.
pub async fn serve_admin(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: watch::Receiver<bool>,
) {
    let limiter = Limiter::new("admin", state.limits, state.metrics.listener_stats("admin"));
    let serve =
        |stream, peer, slot| serve_connection(stream, peer, slot, state.clone(), shutdown.clone());
    crate::infra::http::serve_listener(listener, limiter, shutdown.clone(), serve).await;
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    slot: Slot,
    state: Arc<AdminState>,
    shutdown: watch::Receiver<bool>,
) {
    if !crate::infra::http::first_byte(&stream, &slot).await {
        return;
    }
    let service = service_fn(move |req| {
        let state = state.clone();
        async move { Ok::<_, Infallible>(handle(&state, req, peer).await) }
    });
    crate::infra::http::serve_connection(stream, service, peer, slot, shutdown, "admin").await;
}

async fn handle(
    state: &AdminState,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<Full<Bytes>> {
    let max = state.max_body_bytes;
    let path = req.uri().path();
    // CRLs are public, signed data a relying party fetches without a
    // token (see `crate::sources::enroll::crl`).
    if path.starts_with(crate::sources::enroll::crl::CRL_PREFIX) {
        return match &state.enrollment {
            Some(svc) => svc.crl_response(req.method(), path),
            None => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        };
    }
    if crate::sources::console::is_console_route(path) {
        return match &state.console {
            Some(console) => console.answer(req, max, peer).await,
            None => respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
        };
    }
    // A declared length over the limit is refused before reading any of
    // it (the console bounds its own: an upload is larger).
    if req.body().size_hint().lower() > max as u64 {
        return too_large(max);
    }
    let authorization = req.headers().get(header::AUTHORIZATION);
    let api = crate::sources::enroll::routes::is_api_route(path);
    // Steering connectors changes the directory: admin only.
    let mail = crate::sources::activation::routes::is_mail_route(path);
    let needed: &[Role] = if crate::connect::routes::is_connector_route(path) {
        &[Role::Admin]
    } else if mail {
        crate::sources::activation::routes::ROLES
    } else if api {
        crate::sources::enroll::routes::roles_for(req.method(), path)
    } else {
        &[Role::Monitor]
    };
    let granted = match state.auth.check_any(authorization, needed) {
        Ok(granted) => granted,
        Err(denied) => {
            // The reason never contains the token (see `Denied`).
            match denied {
                Denied::MissingHeader => {
                    tracing::debug!(%peer, reason = %denied, "admin request refused")
                }
                _ => tracing::info!(%peer, reason = %denied, "admin request refused"),
            }
            // An unread body is left on the connection: close it, and
            // say so, so that a client does not send its next request
            // down a connection the server is closing.
            if req.body().is_end_stream() {
                return refusal(&denied);
            }
            return closing(refusal(&denied));
        }
    };
    let (parts, body) = req.into_parts();
    let body = match read_body(body, max, peer, "admin").await {
        Ok(body) => body,
        Err(refused) => return refused,
    };
    if api {
        let content_type = parts
            .headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        let call = crate::sources::enroll::routes::Call {
            who: granted.token.as_str(),
            is_admin: granted.is_admin,
            method: &parts.method,
            path: parts.uri.path(),
            query: parts.uri.query(),
            content_type,
            body,
        };
        return crate::sources::enroll::routes::route(state.enrollment.as_deref(), call).await;
    }
    if mail {
        return crate::sources::activation::routes::route(
            state.activations.as_deref(),
            &parts.method,
            parts.uri.path(),
            granted.token.as_str(),
        )
        .await;
    }
    if crate::connect::routes::is_connector_route(parts.uri.path()) {
        return crate::connect::routes::route(
            state.connectors.as_deref(),
            &parts.method,
            parts.uri.path(),
            parts.uri.query(),
        )
        .await;
    }
    route(state, &parts.method, parts.uri.path())
}

type Page = fn(&AdminState) -> Response<Full<Bytes>>;

fn route(state: &AdminState, method: &Method, path: &str) -> Response<Full<Bytes>> {
    let page: Page = match path {
        "/healthz" => healthz,
        "/readyz" => readyz,
        "/metrics" => metrics,
        "/status" => status,
        _ => return respond(StatusCode::NOT_FOUND, TEXT, "not found\n"),
    };
    if let Some(refused) = unless_get_or_head(method) {
        return refused;
    }
    page(state)
}

fn healthz(state: &AdminState) -> Response<Full<Bytes>> {
    let age = state.metrics.since_heartbeat();
    if age < HEARTBEAT_MAX_AGE {
        respond(StatusCode::OK, TEXT, "ok\n")
    } else {
        respond(
            StatusCode::SERVICE_UNAVAILABLE,
            TEXT,
            format!("main loop stalled: last heartbeat {}s ago\n", age.as_secs()),
        )
    }
}

fn readyz(state: &AdminState) -> Response<Full<Bytes>> {
    if state.metrics.is_ready() {
        respond(StatusCode::OK, TEXT, "ready\n")
    } else {
        respond(StatusCode::SERVICE_UNAVAILABLE, TEXT, "not ready\n")
    }
}

fn metrics(state: &AdminState) -> Response<Full<Bytes>> {
    respond(
        StatusCode::OK,
        PROMETHEUS,
        state.metrics.render_prometheus(),
    )
}

fn status(state: &AdminState) -> Response<Full<Bytes>> {
    let body =
        serde_json::to_vec_pretty(&state.metrics.status_document()).expect("JSON serialises");
    respond(StatusCode::OK, JSON, body)
}

/// 401 or 403 with the `WWW-Authenticate` challenge of RFC 6750 §3.
fn refusal(denied: &Denied) -> Response<Full<Bytes>> {
    let (status, challenge) = match denied {
        Denied::InsufficientRole { .. } => (
            StatusCode::FORBIDDEN,
            "Bearer realm=\"idsync\", error=\"insufficient_scope\"",
        ),
        // No credentials in the request: a bare challenge.
        Denied::MissingHeader | Denied::WrongScheme => (StatusCode::UNAUTHORIZED, REALM),
        Denied::Malformed | Denied::UnknownToken => (
            StatusCode::UNAUTHORIZED,
            "Bearer realm=\"idsync\", error=\"invalid_token\"",
        ),
    };
    let mut r = respond(status, TEXT, format!("{denied}\n"));
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(challenge),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;
    use crate::sources::import::{FileOutcome, Summary};
    use http_body_util::BodyExt as _;
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;
    use sha2::{Digest as _, Sha256};
    use std::time::Duration;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    const ADMIN: &str = "idsync_test-admin";
    const READER: &str = "idsync_test-reader";
    const MAX_BODY: usize = 64;

    struct Server {
        addr: SocketAddr,
        metrics: Arc<Metrics>,
        stop: watch::Sender<bool>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    fn token(name: &str, token: &str, role: &str) -> TokenConfig {
        TokenConfig {
            name: name.into(),
            sha256: hex::encode(Sha256::digest(token.as_bytes())),
            roles: vec![role.into()],
            mail: None,
        }
    }

    async fn start() -> Server {
        let dir = tempfile::tempdir().unwrap();
        let tokens = [
            token("root", ADMIN, "admin"),
            token("reader", READER, "read"),
        ];
        let auth = Auth::load(&tokens, dir.path()).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let metrics = Arc::new(Metrics::new());
        let state = Arc::new(AdminState {
            metrics: metrics.clone(),
            auth: Arc::new(auth),
            max_body_bytes: MAX_BODY,
            connectors: None,
            activations: None,
            enrollment: None,
            console: None,
            limits: crate::config::AdminConfig::default().limits(),
        });
        let (stop, rx) = watch::channel(false);
        let task = tokio::spawn(serve_admin(listener, state, rx));
        Server {
            addr,
            metrics,
            stop,
            task,
            _dir: dir,
        }
    }

    struct Answer {
        status: StatusCode,
        headers: hyper::HeaderMap,
        body: String,
    }

    async fn call(
        addr: SocketAddr,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: &[u8],
    ) -> Answer {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut req = Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(t) = bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        let req = req.body(Full::new(Bytes::copy_from_slice(body))).unwrap();
        let resp = client.request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        Answer {
            status: parts.status,
            headers: parts.headers,
            body: String::from_utf8(body.to_vec()).unwrap(),
        }
    }

    async fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> Answer {
        call(addr, Method::GET, path, bearer, b"").await
    }

    /// Send `request` as is and read until the server closes.
    async fn raw(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(request).await.unwrap();
        let mut out = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
            .await
            .expect("server closes")
            .unwrap();
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn tokens_are_required() {
        let s = start().await;
        let a = get(s.addr, "/metrics", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert_eq!(a.headers[header::WWW_AUTHENTICATE], REALM);

        let a = get(s.addr, "/healthz", Some("idsync_wrong")).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        let challenge = a.headers[header::WWW_AUTHENTICATE].to_str().unwrap();
        assert!(challenge.starts_with(REALM), "{challenge}");
        assert!(!a.body.contains("idsync_wrong"), "{}", a.body);

        // A valid token without the monitor role.
        let a = get(s.addr, "/readyz", Some(READER)).await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }

    /// A refused request whose body was not read is answered with
    /// `Connection: close`: a client must not send its next request down
    /// that connection (ureq did, and got an EOF). Without a body the
    /// connection stays open.
    #[tokio::test]
    async fn a_refused_body_closes_the_connection() {
        let s = start().await;
        let with_body = raw(
            s.addr,
            b"POST /api/v1/certificates/x/revoke HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n{}",
        )
        .await;
        assert!(with_body.starts_with("HTTP/1.1 401"), "{with_body}");
        assert!(
            with_body.to_ascii_lowercase().contains("connection: close"),
            "{with_body}"
        );
        let a = get(s.addr, "/metrics", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        assert!(
            !a.headers.contains_key(header::CONNECTION),
            "{:?}",
            a.headers
        );
    }

    #[tokio::test]
    async fn metrics_health_and_readiness() {
        let s = start().await;
        let a = get(s.addr, "/metrics", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.headers[header::CONTENT_TYPE], PROMETHEUS);
        assert!(a.body.contains("idsync_ready 0"), "{}", a.body);

        assert_eq!(
            get(s.addr, "/healthz", Some(ADMIN)).await.status,
            StatusCode::OK
        );
        let a = get(s.addr, "/readyz", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE);
        s.metrics.set_ready(true);
        let a = get(s.addr, "/readyz", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::OK);
        let a = call(s.addr, Method::HEAD, "/readyz", Some(ADMIN), b"").await;
        assert_eq!((a.status, a.body.as_str()), (StatusCode::OK, ""));
    }

    #[tokio::test]
    async fn connector_routes_need_the_admin_role() {
        let s = start().await;
        let a = call(
            s.addr,
            Method::POST,
            "/connectors/x/retry",
            Some(READER),
            b"",
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
        let a = get(s.addr, "/connectors/x/plan", None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED);
        // An admin passes; this daemon runs no connector named x.
        let a = call(
            s.addr,
            Method::POST,
            "/connectors/x/retry",
            Some(ADMIN),
            b"",
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn unknown_paths_and_methods() {
        let s = start().await;
        let a = get(s.addr, "/nope", Some(ADMIN)).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND);
        let a = call(s.addr, Method::POST, "/metrics", Some(ADMIN), b"{}").await;
        assert_eq!(a.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(a.headers[header::ALLOW], "GET, HEAD");
    }

    #[tokio::test]
    async fn oversized_bodies_are_refused() {
        let s = start().await;
        // Declared by Content-Length: refused before reading, even unauthenticated.
        let big = vec![b'x'; MAX_BODY + 1];
        let a = call(s.addr, Method::POST, "/status", None, &big).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);
        let a = call(s.addr, Method::POST, "/status", Some(ADMIN), &big).await;
        assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE);

        // Chunked: no declared length, counted while reading.
        let chunk = "y".repeat(MAX_BODY + 10);
        let req = format!(
            "POST /status HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\
             Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n0\r\n\r\n",
            chunk.len()
        );
        let answer = raw(s.addr, req.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    }

    #[tokio::test]
    async fn status_for_people() {
        let s = start().await;
        let summary = Summary {
            created: 5,
            updated: 0,
            unchanged: 1,
            rejected: 2,
        };
        s.metrics.record_file(
            crate::infra::metrics::tests::file(FileOutcome::Partial, summary),
            Duration::from_millis(5),
        );
        s.metrics.set_change_log_head(42);
        s.metrics.set_queue_depth(3);
        s.metrics.set_ready(true);

        let a = get(s.addr, "/status", Some(ADMIN)).await;
        assert_eq!(a.headers[header::CONTENT_TYPE], JSON);
        let v: serde_json::Value = serde_json::from_str(&a.body).unwrap();
        assert_eq!(v["ready"], true);
        assert_eq!(v["files"]["partial"], 1);
        assert_eq!(v["recent_files"][0]["file"], "people.csv");
        assert_eq!(v["recent_files"][0]["outcome"], "partial");
        assert_eq!(v["rows"]["rejected"], 2);

        let text = crate::cli::status::status_over_http(s.addr, ADMIN)
            .await
            .unwrap();
        assert!(text.contains("ready:           yes"), "{text}");
        assert!(text.contains("queue depth:     3"), "{text}");
        assert!(text.contains("0 accepted, 1 partial, 0 rejected"), "{text}");
        assert!(text.contains("change log head: 42"), "{text}");

        let err = crate::cli::status::status_over_http(s.addr, "idsync_nope")
            .await
            .unwrap_err();
        let err = format!("{err:#}");
        assert!(err.contains("401") && !err.contains("idsync_nope"), "{err}");

        // Nobody listening.
        let free = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = free.local_addr().unwrap();
        drop(free);
        let err = format!(
            "{:#}",
            crate::cli::status::status_over_http(gone, ADMIN)
                .await
                .unwrap_err()
        );
        assert!(err.contains("cannot reach"), "{err}");
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let s = start().await;
        // `Expect: 100-continue`: the server says "100 Continue" once its
        // handler reads the body, so the request is known to be in flight.
        let mut conn = TcpStream::connect(s.addr).await.unwrap();
        let head = format!(
            "GET /healthz HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {ADMIN}\r\n\
             Expect: 100-continue\r\nContent-Length: 10\r\n\r\n"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let mut interim = Vec::new();
        while !interim.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            let n = tokio::time::timeout(Duration::from_secs(5), conn.read(&mut byte))
                .await
                .expect("100 Continue")
                .unwrap();
            assert_eq!(n, 1, "the connection stays open");
            interim.push(byte[0]);
        }
        assert!(interim.starts_with(b"HTTP/1.1 100"), "{interim:?}");
        conn.write_all(b"12345").await.unwrap();

        s.stop.send(true).unwrap();
        let refused = async {
            while TcpStream::connect(s.addr).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .expect("no new connections once stopping");
        assert!(!s.task.is_finished(), "waits for the request in flight");

        conn.write_all(b"67890").await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), conn.read_to_end(&mut answer))
            .await
            .expect("the connection closes after the answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        tokio::time::timeout(Duration::from_secs(5), s.task)
            .await
            .expect("serve_admin returns")
            .unwrap();
    }
}
