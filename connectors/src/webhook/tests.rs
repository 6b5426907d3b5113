//! The webhook against a real HTTP/1.1 receiver on 127.0.0.1 (and one over
//! TLS): what is sent, what a status means, and what is never shown.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::Arc;
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
