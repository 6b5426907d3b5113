//! The webhook connector (`type = "webhook"`): an HTTP POST of a JSON body
//! per change event, for the approvers' notification of issue 6 (a request
//! that waits in `pending_approval`) and anything else a receiver wants to
//! hear about.
//!
//! Why a connector: the runner already gives every connector a durable
//! cursor (at-least-once delivery), retries with capped backoff, dead
//! letters and metrics, which is exactly what a notification needs. The
//! webhook only decides what to send and what an HTTP status means:
//!
//! - 2xx: delivered; 408, 429, 5xx, a transport error or a timeout: retry
//!   (as long as it takes); any other status: failed (tried
//!   `delivery.max_attempts` times, then parked).
//! - Events are sent one at a time, in change-log order, over one reused
//!   keep-alive connection; the first event not delivered ends the batch
//!   (the runner delivers the rest again after it), so a receiver that is
//!   down is not sent the whole batch at every attempt.
//! - Delivery is at least once: every POST carries `Idempotency-Key: SEQ`
//!   (the change log's sequence number), on which receivers de-duplicate.
//! - The body carries the object as it is now (read through the [`View`]
//!   at delivery), so a late or repeated notification never shows a stale
//!   state; for an enrollment request, only events whose request is now in
//!   one of `request_statuses` are sent (a request approved before its
//!   notification went out is not announced as waiting).
//! - The bearer token is read from its file at every batch (a rotated
//!   token is picked up without a restart); it never appears in a log line
//!   or an error, and neither does the URL's path (webhook URLs often hold
//!   a secret): messages name the host and port only.
//! - Nothing to reconcile: a webhook has no remote state to compare.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use idsync_schema::{Kind, RequestStatus};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::connector::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Outcome, Plan, View,
};
use crate::event::{Event, Operation};

/// At most this much of an error answer's body is read (and quoted, cut
/// shorter, in the error).
const MAX_ANSWER: usize = 64 * 1024;
/// How much of an error answer's body the error message quotes.
const QUOTED: usize = 200;

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
struct Target {
    https: bool,
    host: String,
    port: u16,
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
fn target(url: &str) -> Result<(Uri, Target), String> {
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

/// The webhook connector: one HTTP client (one keep-alive connection pool)
/// for its whole life.
pub struct WebhookConnector {
    cfg: WebhookConfig,
    uri: Uri,
    target: Target,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

/// A rustls client config (ring provider) trusting the CAs of `path` only.
fn tls_with_ca(path: &std::path::Path) -> Result<rustls::ClientConfig, String> {
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

/// The whole error chain as one line (hyper's top-level errors say little).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}

/// What an HTTP status means for delivery.
fn outcome_of(status: StatusCode, why: impl FnOnce() -> String) -> Outcome {
    let code = status.as_u16();
    if status.is_success() {
        Outcome::Delivered
    } else if code == 408 || code == 429 || status.is_server_error() {
        Outcome::Retry(why())
    } else {
        Outcome::Failed(why())
    }
}

/// The `event` field: `approval_needed` for a request waiting for approval,
/// `request_<status>` for a request in another status, else
/// `<kind>_<operation>` (also for a request that is gone).
fn event_name(kind: Kind, operation: Operation, object: &Value) -> String {
    if kind == Kind::Request {
        match object["status"].as_str() {
            Some("pending_approval") => return "approval_needed".into(),
            Some(s) => return format!("request_{s}"),
            None => {}
        }
    }
    let word = |v: Value| v.as_str().unwrap_or_default().to_owned();
    format!("{}_{}", word(json!(kind)), word(json!(operation)))
}

/// The JSON body of one event.
fn body(e: &Event, object: Value) -> Value {
    json!({
        "event": event_name(e.kind, e.operation, &object),
        "seq": e.seq,
        "kind": e.kind,
        "id": e.id,
        "operation": e.operation,
        "changed": e.changed,
        "object": object,
    })
}

impl WebhookConnector {
    /// A connector for `cfg` (it connects on first use). The CA file, if
    /// any, is read now.
    pub fn new(cfg: WebhookConfig) -> Result<Self, ConnectorError> {
        cfg.check()?;
        let config_err = |m: String| ConnectorError::Config(format!("connector {}: {m}", cfg.name));
        let (uri, target) = target(&cfg.url).map_err(config_err)?;
        let timeout = Duration::from_millis(cfg.timeout_ms);
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(timeout));
        let builder = hyper_rustls::HttpsConnectorBuilder::new();
        let builder = match &cfg.ca_file {
            Some(ca) => builder.with_tls_config(tls_with_ca(ca).map_err(config_err)?),
            None => builder
                .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
                .map_err(|e| config_err(e.to_string()))?,
        };
        let connector = builder.https_or_http().enable_http1().wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(Self {
            cfg,
            uri,
            target,
            timeout,
            client,
        })
    }

    /// The `Authorization` header value, read from the token file. The
    /// error names the file, never its content.
    fn authorization(&self) -> Result<Option<HeaderValue>, String> {
        let Some(path) = &self.cfg.bearer_token_file else {
            return Ok(None);
        };
        let raw = std::fs::read_to_string(path)
            .map_err(|e| format!("reading bearer_token_file {}: {e}", path.display()))?;
        let token = raw.trim();
        if token.is_empty() {
            return Err(format!("bearer_token_file {} is empty", path.display()));
        }
        let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
            format!(
                "bearer_token_file {}: the token is not a valid header value",
                path.display()
            )
        })?;
        v.set_sensitive(true);
        Ok(Some(v))
    }

    /// Whether `e` is for the receiver at all, given its object's current
    /// state (`Null`: gone, which is always sent).
    fn wanted(&self, e: &Event, object: &Value) -> bool {
        if !self.cfg.kinds.contains(&e.kind) {
            return false;
        }
        if e.kind != Kind::Request || object.is_null() {
            return true;
        }
        object["status"]
            .as_str()
            .and_then(RequestStatus::parse)
            .is_some_and(|s| self.cfg.request_statuses.contains(&s))
    }

    /// POST one body; what came of it.
    async fn post(&self, seq: u64, body: &Value, auth: Option<&HeaderValue>) -> Outcome {
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("idsync/", env!("CARGO_PKG_VERSION")),
            )
            .header("idempotency-key", seq);
        if let Some(a) = auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        let req = match req.body(Full::new(Bytes::from(body.to_string()))) {
            Ok(r) => r,
            Err(e) => return Outcome::Failed(format!("webhook {}: {e}", self.target)),
        };
        let target = &self.target;
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| format!("POST to {target}: {}", chain(&e)))?;
            let status = resp.status();
            // Read the answer whole (bounded), so the connection is reused.
            let answer = Limited::new(resp.into_body(), MAX_ANSWER)
                .collect()
                .await
                .map(|c| c.to_bytes())
                .unwrap_or_default();
            Ok::<_, String>((status, answer))
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Outcome::Retry(format!(
                "POST to {target}: no answer within {} ms",
                self.cfg.timeout_ms
            )),
            Ok(Err(m)) => Outcome::Retry(m),
            Ok(Ok((status, answer))) => {
                tracing::debug!(connector = %self.cfg.name, seq, status = status.as_u16(), "webhook POST");
                outcome_of(status, || {
                    let text = String::from_utf8_lossy(&answer);
                    let quoted: String = text.trim().chars().take(QUOTED).collect();
                    if quoted.is_empty() {
                        format!("POST to {target}: HTTP {status}")
                    } else {
                        format!("POST to {target}: HTTP {status}: {quoted}")
                    }
                })
            }
        }
    }

    async fn deliver_batch(&self, batch: &[Event], view: &dyn View) -> Delivery {
        let mut outcomes = Vec::with_capacity(batch.len());
        // Read once per batch, when the first POST needs it.
        let mut auth: Option<Option<HeaderValue>> = None;
        for e in batch {
            let outcome = 'one: {
                if !self.cfg.kinds.contains(&e.kind) {
                    break 'one Outcome::Delivered;
                }
                let object = match view.object(e.kind, e.id) {
                    Ok(o) => o.unwrap_or(Value::Null),
                    Err(err) => break 'one Outcome::Retry(err.to_string()),
                };
                if !self.wanted(e, &object) {
                    break 'one Outcome::Delivered;
                }
                if auth.is_none() {
                    match self.authorization() {
                        Ok(a) => auth = Some(a),
                        Err(m) => break 'one Outcome::Retry(m),
                    }
                }
                let a = auth.as_ref().and_then(Option::as_ref);
                self.post(e.seq, &body(e, object), a).await
            };
            let done = outcome == Outcome::Delivered;
            outcomes.push(outcome);
            if !done {
                // The rest of the batch is delivered again after this one.
                break;
            }
        }
        Delivery {
            outcomes,
            learned: Vec::new(),
        }
    }
}

impl Connector for WebhookConnector {
    fn name(&self) -> &str {
        &self.cfg.name
    }

    fn delivery(&self) -> &DeliveryConfig {
        &self.cfg.delivery
    }

    /// A TCP connect to the URL's host and port (no request is sent).
    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let t = &self.target;
            let connect = tokio::net::TcpStream::connect((t.host.as_str(), t.port));
            match tokio::time::timeout(self.timeout, connect).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(e)) => Err(ConnectorError::Unavailable(format!(
                    "webhook {}: connecting to {t}: {e}",
                    self.cfg.name
                ))),
                Err(_) => Err(ConnectorError::Unavailable(format!(
                    "webhook {}: connecting to {t}: no answer within {} ms",
                    self.cfg.name, self.cfg.timeout_ms
                ))),
            }
        })
    }

    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(self.deliver_batch(batch, view))
    }

    fn plan<'a>(&'a self, _view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>> {
        Box::pin(async move {
            Ok(Plan {
                text: format!("webhook {}: nothing to reconcile\n", self.cfg.name),
                ..Plan::default()
            })
        })
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>> {
        Box::pin(async move {
            Ok(Applied {
                text: plan.text.clone(),
                ..Applied::default()
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::atomic::{AtomicU16, Ordering};
    use std::sync::Mutex;

    use hyper::body::Incoming;
    use hyper::service::service_fn;
    use hyper::Response;
    use hyper_util::rt::TokioIo;
    use uuid::Uuid;

    use super::*;
    use crate::connector::{Remote, ViewError};
    use crate::registry::ConnectorConfig;

    /// The store, as far as a webhook reads it.
    #[derive(Default)]
    struct FakeView(HashMap<(Kind, Uuid), Value>);

    impl View for FakeView {
        fn object(&self, kind: Kind, id: Uuid) -> Result<Option<Value>, ViewError> {
            Ok(self.0.get(&(kind, id)).cloned())
        }
        fn members(&self, _: Uuid) -> Result<Vec<Uuid>, ViewError> {
            Ok(Vec::new())
        }
        fn for_each(&self, _: Kind, _: &mut dyn FnMut(Value) -> bool) -> Result<(), ViewError> {
            Ok(())
        }
        fn remote(&self, _: Uuid) -> Result<Option<Remote>, ViewError> {
            Ok(None)
        }
        fn remotes(&self, _: &mut dyn FnMut(Uuid, Remote) -> bool) -> Result<(), ViewError> {
            Ok(())
        }
    }

    /// One request the receiver got: headers (lower-case names) and body.
    #[derive(Debug, Clone)]
    struct Seen {
        path: String,
        headers: HashMap<String, String>,
        body: Value,
    }

    /// A real HTTP/1.1 receiver on 127.0.0.1 that records every request and
    /// answers with the status set in `status`.
    struct Receiver {
        url: String,
        seen: Arc<Mutex<Vec<Seen>>>,
        status: Arc<AtomicU16>,
    }

    async fn receiver() -> Receiver {
        receiver_with(None).await
    }

    /// The receiver, over TLS when `tls` is given.
    async fn receiver_with(tls: Option<tokio_rustls::TlsAcceptor>) -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let (s, st) = (Arc::clone(&seen), Arc::clone(&status));
        tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (s, st, tls) = (Arc::clone(&s), Arc::clone(&st), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, st) = (Arc::clone(&s), Arc::clone(&st));
                        async move {
                            let path = req.uri().path().to_owned();
                            let headers = req
                                .headers()
                                .iter()
                                .map(|(k, v)| {
                                    (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned())
                                })
                                .collect();
                            let bytes = req.into_body().collect().await.unwrap().to_bytes();
                            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                            s.lock().unwrap().push(Seen {
                                path,
                                headers,
                                body,
                            });
                            let mut resp = Response::new(Full::new(Bytes::from_static(b"nope")));
                            *resp.status_mut() =
                                StatusCode::from_u16(st.load(Ordering::SeqCst)).unwrap();
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = http.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(tls) => {
                            if let Ok(stream) = tls.accept(tcp).await {
                                let _ = http.serve_connection(TokioIo::new(stream), svc).await;
                            }
                        }
                    }
                });
            }
        });
        Receiver {
            url: format!("http://127.0.0.1:{port}/hooks/idsync"),
            seen,
            status,
        }
    }

    impl Receiver {
        fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    fn config(url: &str) -> WebhookConfig {
        WebhookConfig {
            name: "approvers".into(),
            url: url.into(),
            timeout_ms: 2_000,
            ..WebhookConfig::default()
        }
    }

    fn request(id: Uuid, status: &str) -> Value {
        json!({"id": id, "protocol": "p12", "profile": "Approved P12",
               "requester": "ops", "status": status, "data": {}, "meta": {"version": 1}})
    }

    fn event(seq: u64, kind: Kind, id: Uuid, operation: Operation, changed: &[&str]) -> Event {
        Event {
            seq,
            kind,
            id,
            operation,
            changed: changed.iter().map(|s| s.to_string()).collect(),
            object: Value::Null,
        }
    }

    #[tokio::test]
    async fn webhook_posts_a_pending_request_with_headers() {
        let r = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "s3cret-token\n").unwrap();
        let mut cfg = config(&r.url);
        cfg.bearer_token_file = Some(token);
        let c = WebhookConnector::new(cfg).unwrap();
        let id = Uuid::now_v7();
        let mut view = FakeView::default();
        view.0
            .insert((Kind::Request, id), request(id, "pending_approval"));
        let d = c
            .deliver(
                &[event(7, Kind::Request, id, Operation::Created, &[])],
                &view,
            )
            .await;
        assert_eq!(d.outcomes, [Outcome::Delivered]);
        assert!(d.learned.is_empty());
        let seen = r.seen();
        assert_eq!(seen.len(), 1);
        let s = &seen[0];
        assert_eq!(s.path, "/hooks/idsync");
        assert_eq!(s.headers["content-type"], "application/json");
        assert_eq!(s.headers["authorization"], "Bearer s3cret-token");
        assert_eq!(s.headers["idempotency-key"], "7");
        assert_eq!(
            s.body,
            json!({"event": "approval_needed", "seq": 7, "kind": "request", "id": id,
                   "operation": "created", "changed": [],
                   "object": request(id, "pending_approval")})
        );
        // The same client (and connection) serves the next batch; a status
        // listed in request_statuses other than pending is named after it.
        let mut cfg = config(&r.url);
        cfg.request_statuses = vec![RequestStatus::PendingApproval, RequestStatus::Rejected];
        let c = WebhookConnector::new(cfg).unwrap();
        view.0.insert((Kind::Request, id), request(id, "rejected"));
        let d = c
            .deliver(
                &[event(9, Kind::Request, id, Operation::Updated, &["status"])],
                &view,
            )
            .await;
        assert_eq!(d.outcomes, [Outcome::Delivered]);
        let seen = r.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].body["event"], "request_rejected");
        assert_eq!(seen[1].body["changed"], json!(["status"]));
        assert!(!seen[1].headers.contains_key("authorization"));
    }

    #[tokio::test]
    async fn webhook_skips_other_statuses_and_kinds_without_a_post() {
        let r = receiver().await;
        let c = WebhookConnector::new(config(&r.url)).unwrap();
        let (approved, user, gone) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let mut view = FakeView::default();
        view.0
            .insert((Kind::Request, approved), request(approved, "approved"));
        view.0
            .insert((Kind::User, user), json!({"id": user, "mail": "a@b.c"}));
        let batch = [
            // Made pending, then approved before delivery: not announced.
            event(1, Kind::Request, approved, Operation::Created, &[]),
            event(2, Kind::User, user, Operation::Created, &[]),
            // A request gone meanwhile: sent, with a null object.
            event(3, Kind::Request, gone, Operation::Created, &[]),
        ];
        let d = c.deliver(&batch, &view).await;
        assert_eq!(d.outcomes, vec![Outcome::Delivered; 3]);
        let seen = r.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        assert_eq!(seen[0].body["seq"], 3);
        assert_eq!(seen[0].body["event"], "request_created");
        assert_eq!(seen[0].body["object"], Value::Null);

        // Users too when asked for.
        let mut cfg = config(&r.url);
        cfg.kinds = vec![Kind::User];
        let c = WebhookConnector::new(cfg).unwrap();
        let d = c.deliver(&batch, &view).await;
        assert_eq!(d.outcomes, vec![Outcome::Delivered; 3]);
        let seen = r.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[1].body["event"], "user_created");
        assert_eq!(seen[1].body["object"]["mail"], "a@b.c");
    }

    #[tokio::test]
    async fn webhook_status_codes_become_outcomes() {
        let r = receiver().await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "never-shown-token").unwrap();
        let mut cfg = config(&r.url);
        cfg.bearer_token_file = Some(token);
        let c = WebhookConnector::new(cfg).unwrap();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let mut view = FakeView::default();
        view.0
            .insert((Kind::Request, a), request(a, "pending_approval"));
        view.0
            .insert((Kind::Request, b), request(b, "pending_approval"));
        let batch = [
            event(1, Kind::Request, a, Operation::Created, &[]),
            event(2, Kind::Request, b, Operation::Created, &[]),
        ];
        for (code, retry) in [(503, true), (429, true), (408, true), (500, true)] {
            r.status.store(code, Ordering::SeqCst);
            let d = c.deliver(&batch, &view).await;
            // The first failure ends the batch: the second is not sent.
            assert_eq!(d.outcomes.len(), 1, "{code}");
            match &d.outcomes[0] {
                Outcome::Retry(m) => {
                    assert!(retry, "{code}");
                    assert!(m.contains(&code.to_string()), "{m}");
                    assert!(!m.contains("never-shown-token"), "{m}");
                    assert!(!m.contains("/hooks"), "the URL path is not quoted: {m}");
                }
                o => panic!("{code}: {o:?}"),
            }
        }
        for code in [400, 401, 404, 422] {
            r.status.store(code, Ordering::SeqCst);
            let d = c.deliver(&batch, &view).await;
            assert_eq!(d.outcomes.len(), 1, "{code}");
            match &d.outcomes[0] {
                Outcome::Failed(m) => {
                    assert!(m.contains(&code.to_string()) && m.contains("nope"), "{m}");
                    assert!(!m.contains("never-shown-token"), "{m}");
                }
                o => panic!("{code}: {o:?}"),
            }
        }
        r.status.store(204, Ordering::SeqCst);
        let d = c.deliver(&batch, &view).await;
        assert_eq!(d.outcomes, vec![Outcome::Delivered; 2]);
        let keys: Vec<String> = r
            .seen()
            .iter()
            .map(|s| s.headers["idempotency-key"].clone())
            .collect();
        assert_eq!(keys, ["1", "1", "1", "1", "1", "1", "1", "1", "1", "2"]);
    }

    #[tokio::test]
    async fn webhook_unreachable_or_slow_receiver_is_retried() {
        // A port nobody listens on.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let c = WebhookConnector::new(config(&format!("http://127.0.0.1:{port}/x"))).unwrap();
        let id = Uuid::now_v7();
        let mut view = FakeView::default();
        view.0
            .insert((Kind::Request, id), request(id, "pending_approval"));
        let batch = [event(1, Kind::Request, id, Operation::Created, &[])];
        let d = c.deliver(&batch, &view).await;
        match &d.outcomes[..] {
            [Outcome::Retry(m)] => assert!(m.contains(&format!("127.0.0.1:{port}")), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(matches!(
            c.healthcheck().await,
            Err(ConnectorError::Unavailable(_))
        ));

        // A receiver that accepts and never answers: the timeout.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = silent.local_addr().unwrap().port();
        let mut cfg = config(&format!("http://127.0.0.1:{port}/x"));
        cfg.timeout_ms = 200;
        let c = WebhookConnector::new(cfg).unwrap();
        let d = c.deliver(&batch, &view).await;
        match &d.outcomes[..] {
            [Outcome::Retry(m)] => assert!(m.contains("no answer within 200 ms"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(c.healthcheck().await.is_ok());

        // A token file that cannot be read: retried, and named.
        let r = receiver().await;
        let mut cfg = config(&r.url);
        cfg.bearer_token_file = Some("/nonexistent/idsync-token".into());
        let c = WebhookConnector::new(cfg).unwrap();
        let d = c.deliver(&batch, &view).await;
        match &d.outcomes[..] {
            [Outcome::Retry(m)] => assert!(m.contains("/nonexistent/idsync-token"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert!(r.seen().is_empty());
    }

    #[tokio::test]
    async fn webhook_posts_over_https_trusting_ca_file() {
        use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
        let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, ck.cert.pem()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![ck.cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der())),
        )
        .unwrap();
        let r = receiver_with(Some(tokio_rustls::TlsAcceptor::from(Arc::new(server)))).await;
        let url = r.url.replace("http://127.0.0.1", "https://localhost");
        let id = Uuid::now_v7();
        let mut view = FakeView::default();
        view.0
            .insert((Kind::Request, id), request(id, "pending_approval"));
        let batch = [event(5, Kind::Request, id, Operation::Created, &[])];

        let mut cfg = config(&url);
        cfg.ca_file = Some(ca);
        let c = WebhookConnector::new(cfg).unwrap();
        let d = c.deliver(&batch, &view).await;
        assert_eq!(d.outcomes, [Outcome::Delivered]);
        let seen = r.seen();
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].body["event"], "approval_needed");
        assert_eq!(seen[0].headers["idempotency-key"], "5");

        // The built-in roots do not know this CA: retried, never sent.
        let c = WebhookConnector::new(config(&url)).unwrap();
        let d = c.deliver(&batch, &view).await;
        match &d.outcomes[..] {
            [Outcome::Retry(m)] => assert!(m.contains("certificate"), "{m}"),
            o => panic!("{o:?}"),
        }
        assert_eq!(r.seen().len(), 1);
    }

    #[tokio::test]
    async fn webhook_has_nothing_to_reconcile() {
        let c = WebhookConnector::new(config("http://127.0.0.1:9/x")).unwrap();
        let plan = c.plan(&FakeView::default()).await.unwrap();
        assert_eq!(plan.text, "webhook approvers: nothing to reconcile\n");
        assert_eq!(
            (plan.creates, plan.updates, plan.deletions, plan.skipped),
            (0, 0, 0, 0)
        );
        assert!(plan.refusal.is_none() && plan.ops.is_empty());
        let applied = c.apply(&plan).await.unwrap();
        assert_eq!(applied.done, 0);
        assert!(applied.errors.is_empty() && applied.learned.is_empty());
    }

    #[test]
    fn webhook_configs_are_checked() {
        let parse = |v: Value| serde_json::from_value::<ConnectorConfig>(v);
        let ok = parse(json!({"type": "webhook", "name": "approvers",
                              "url": "https://hooks.example.org/idsync"}))
        .unwrap();
        assert_eq!(ok.name(), "approvers");
        ok.check().unwrap();
        let ConnectorConfig::Webhook(w) = &ok else {
            panic!("{ok:?}")
        };
        assert_eq!(w.kinds, [Kind::Request]);
        assert_eq!(w.request_statuses, [RequestStatus::PendingApproval]);
        assert_eq!(w.timeout_ms, 5_000);
        assert_eq!(w.delivery, DeliveryConfig::default());
        assert!(ok.build().is_ok());

        let refused = |v: Value, what: &str| {
            let c = parse(v).unwrap();
            let e = c.check().unwrap_err().to_string();
            assert!(e.contains(what), "{e}");
        };
        refused(
            json!({"type": "webhook", "name": "a", "url": "ftp://files.example.org/x"}),
            "http:// or https://",
        );
        refused(
            json!({"type": "webhook", "name": "a", "url": ""}),
            "http://",
        );
        refused(
            json!({"type": "webhook", "name": "a", "url": "http://u:pw@example.org/"}),
            "credentials",
        );
        refused(
            json!({"type": "webhook", "name": "a", "url": "http://example.org/",
                   "ca_file": "/etc/ca.pem"}),
            "ca_file",
        );
        refused(
            json!({"type": "webhook", "name": "a", "url": "http://example.org/", "kinds": []}),
            "kinds",
        );
        refused(
            json!({"type": "webhook", "name": "a", "url": "http://example.org/",
                   "request_statuses": []}),
            "request_statuses",
        );
        refused(
            json!({"type": "webhook", "name": "a/b", "url": "http://example.org/"}),
            "name",
        );
        // Unknown keys and unknown kinds or statuses are refused by serde.
        for v in [
            json!({"type": "webhook", "name": "a", "url": "http://x/", "token": "t"}),
            json!({"type": "webhook", "name": "a", "url": "http://x/", "kinds": ["requests"]}),
            json!({"type": "webhook", "name": "a", "url": "http://x/",
                   "request_statuses": ["pending"]}),
            json!({"type": "webhook", "name": "a", "url": "http://x/",
                   "delivery": {"batch": 5}}),
        ] {
            assert!(parse(v.clone()).is_err(), "{v}");
        }
        // A CA file that holds no certificate fails the build, by name.
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "not a certificate").unwrap();
        let c = parse(
            json!({"type": "webhook", "name": "a", "url": "https://example.org/",
                             "ca_file": ca}),
        )
        .unwrap();
        let e = c.build().err().expect("refused").to_string();
        assert!(e.contains("ca.pem"), "{e}");
    }

    #[test]
    fn webhook_event_names() {
        let n = |k, o, v: Value| event_name(k, o, &v);
        assert_eq!(
            n(
                Kind::Request,
                Operation::Created,
                json!({"status": "pending_approval"})
            ),
            "approval_needed"
        );
        assert_eq!(
            n(
                Kind::Request,
                Operation::Updated,
                json!({"status": "issued"})
            ),
            "request_issued"
        );
        assert_eq!(
            n(Kind::Request, Operation::Deleted, Value::Null),
            "request_deleted"
        );
        assert_eq!(
            n(Kind::Certificate, Operation::Created, json!({})),
            "certificate_created"
        );
        assert_eq!(
            n(Kind::Asset, Operation::Updated, json!({})),
            "asset_updated"
        );
    }

    #[test]
    fn webhook_targets() {
        let t = |u: &str| target(u).map(|(_, t)| t);
        assert_eq!(
            t("https://hooks.example.org/x?k=v").unwrap(),
            Target {
                https: true,
                host: "hooks.example.org".into(),
                port: 443
            }
        );
        assert_eq!(t("http://[::1]:8080/").unwrap().to_string(), "[::1]:8080");
        assert_eq!(t("http://10.0.0.1/").unwrap().port, 80);
        assert!(t("http:///nohost").is_err());
    }
}
