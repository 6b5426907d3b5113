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

mod config;

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
use serde_json::{json, Value};

use crate::connector::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Outcome, Plan, View,
};
use crate::event::{Event, Operation};
pub use config::WebhookConfig;
use config::{target, tls_with_ca, Target};

/// At most this much of an error answer's body is read (and quoted, cut
/// shorter, in the error).
const MAX_ANSWER: usize = 64 * 1024;
/// How much of an error answer's body the error message quotes.
const QUOTED: usize = 200;

/// The webhook connector: one HTTP client (one keep-alive connection pool)
/// for its whole life.
pub struct WebhookConnector {
    cfg: WebhookConfig,
    uri: Uri,
    target: Target,
    timeout: Duration,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
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
            let resp =
                self.client.request(req).await.map_err(|e| {
                    format!("POST to {target}: {}", crate::connector::error_chain(&e))
                })?;
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
            ..Delivery::default()
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
mod tests;
