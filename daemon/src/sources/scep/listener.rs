//! The SCEP listener (RFC 8894 §4): plain HTTP, as SCEP clients speak it
//! (its messages are signed and encrypted end to end), with the other
//! listeners' discipline (accept loop, connection limits, header and body
//! timeouts, graceful shutdown, [`crate::infra::http`]). Paths `/scep` and
//! `/scep/pkiclient.exe`; `operation=GetCACaps|GetCACert|PKIOperation`,
//! PKIOperation by POST or by GET with a base64 `message`.
//!
//! No bearer token: a device proves itself with its registration's
//! challenge password (PKCSReq), a current certificate (RenewalReq) or the
//! key of a request it made (CertPoll); enrollment decides
//! ([`Enrollment::scep_request`] and its siblings).

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::message::ScepError;
use super::message::{self, Content, FailInfo, MessageType, Outcome, PkiMessage, Ra};
use super::ScepConfig;
use crate::infra::conn_limit::Slot;
use crate::infra::http::respond;
use crate::infra::metrics::Metrics;
use crate::infra::rate_limit::RateLimit;
use crate::sources::enroll::scep::ScepDecision;
use crate::sources::enroll::{EnrollError, Enrollment};

const BODY_READ_TIMEOUT: Duration = Duration::from_secs(30);
const TEXT: &str = "text/plain; charset=utf-8";

type Body = Full<Bytes>;

/// The SCEP server: enrollment, the RA, and the CA chain it hands out.
pub(crate) struct Scep {
    enrollment: Arc<Enrollment>,
    ra: Ra,
    /// `GetCACert`'s answer, made once.
    ca_ra_certs: Bytes,
    max_body: usize,
    per_peer: RateLimit<IpAddr>,
}

/// Start the SCEP listener of `idsync serve` when `[scep]` enables it.
pub async fn start(
    cfg: &ScepConfig,
    enrollment: Arc<Enrollment>,
    ca_dir: &std::path::Path,
    metrics: &Arc<Metrics>,
    shutdown: watch::Receiver<bool>,
) -> anyhow::Result<Option<tokio::task::JoinHandle<()>>> {
    if !cfg.enabled {
        return Ok(None);
    }
    let listen: SocketAddr = cfg.listen.parse().context("scep.listen")?;
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding the SCEP listener on {listen}"))?;
    let scep = Arc::new(Scep::new(enrollment, ca_dir, cfg).await?);
    let limiter = crate::infra::conn_limit::Limiter::new(
        "SCEP",
        cfg.limits(),
        metrics.listener_stats("scep"),
    );
    tracing::info!(%listen, "SCEP listener started");
    let stop = shutdown.clone();
    let serve = move |io: Box<dyn crate::infra::http::Io>, peer: SocketAddr, slot: Slot| {
        let (scep, shutdown) = (Arc::clone(&scep), shutdown.clone());
        async move {
            let service = service_fn(move |req| {
                let scep = Arc::clone(&scep);
                async move { Ok::<_, Infallible>(scep.handle(req, peer).await) }
            });
            crate::infra::http::serve_connection(io, service, peer, slot, shutdown, "SCEP").await;
        }
    };
    Ok(Some(tokio::spawn(crate::infra::http::serve_maybe_tls(
        listener, limiter, None, stop, serve,
    ))))
}

impl Scep {
    async fn new(
        enrollment: Arc<Enrollment>,
        ca_dir: &std::path::Path,
        cfg: &ScepConfig,
    ) -> anyhow::Result<Self> {
        let keys = enrollment.scep_ra(ca_dir).await.context("the SCEP RA")?;
        let ra = Ra::new(keys.cert_der.clone(), &keys.key_pkcs8).context("the SCEP RA")?;
        let chain = crate::sources::enroll::scep::pem_certificates(&enrollment.ca_chain())
            .context("the CA chain")?;
        let ca_ra_certs = message::ca_ra_certs(&keys.cert_der, &chain).context("GetCACert")?;
        Ok(Self {
            enrollment,
            ra,
            ca_ra_certs: Bytes::from(ca_ra_certs),
            max_body: cfg.max_body_bytes,
            per_peer: RateLimit::per_minute(cfg.requests_per_minute_per_peer),
        })
    }

    async fn handle(&self, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
        if let Err(wait) = self.per_peer.check(&peer.ip()) {
            let mut r = respond(
                StatusCode::TOO_MANY_REQUESTS,
                TEXT,
                "too many requests from this address: retry later\n",
            );
            let secs = wait.as_secs().max(1);
            r.headers_mut()
                .insert(hyper::header::RETRY_AFTER, secs.into());
            return r;
        }
        let path = req.uri().path();
        if path != "/scep" && path != "/scep/pkiclient.exe" && path != "/cgi-bin/pkiclient.exe" {
            return respond(
                StatusCode::NOT_FOUND,
                TEXT,
                "not found: SCEP lives at /scep\n",
            );
        }
        let query = crate::infra::http::parse_query(req.uri().query());
        let operation = query.get("operation").cloned().unwrap_or_default();
        let method = req.method().clone();
        match (method.clone(), operation.as_str()) {
            (Method::GET, "GetCACaps") => respond(StatusCode::OK, TEXT, message::ca_caps()),
            (Method::GET, "GetCACert") => respond(
                StatusCode::OK,
                "application/x-x509-ca-ra-cert",
                self.ca_ra_certs.clone(),
            ),
            (Method::GET | Method::POST, "PKIOperation") => {
                let body = match method {
                    Method::POST => self.read_body(req).await,
                    _ => query
                        .get("message")
                        .and_then(|m| decode_message(m))
                        .map(Bytes::from)
                        .ok_or("the message parameter is not base64"),
                };
                match body {
                    Ok(b) => self.pki_operation(&b, peer).await,
                    Err(why) => respond(StatusCode::BAD_REQUEST, TEXT, format!("{why}\n")),
                }
            }
            _ => respond(
                StatusCode::BAD_REQUEST,
                TEXT,
                "operation must be GetCACaps, GetCACert or PKIOperation\n",
            ),
        }
    }

    async fn read_body(&self, req: Request<Incoming>) -> Result<Bytes, &'static str> {
        match tokio::time::timeout(
            BODY_READ_TIMEOUT,
            Limited::new(req.into_body(), self.max_body).collect(),
        )
        .await
        {
            Ok(Ok(b)) => Ok(b.to_bytes()),
            _ => Err("the body could not be read, or is too large"),
        }
    }

    async fn pki_operation(&self, body: &[u8], peer: SocketAddr) -> Response<Body> {
        let msg = match message::parse(body, &self.ra) {
            Ok(m) => m,
            Err(e) => {
                tracing::info!(%peer, error = %e.error, "SCEP message refused");
                // A message whose signed attributes were read gets a
                // CertRep FAILURE it can read; anything else a 400.
                return match e.reply_to {
                    Some(to) => match message::failure_rep(&to, e.error.fail_info(), &self.ra) {
                        Ok(der) => pki_message(der),
                        Err(e) => server_error(&e),
                    },
                    None => respond(StatusCode::BAD_REQUEST, TEXT, format!("{}\n", e.error)),
                };
            }
        };
        let outcome = match self.decide(&msg).await {
            Ok(ScepDecision::Issued(certs)) => Outcome::Success { certs_der: certs },
            Ok(ScepDecision::Pending) => Outcome::Pending,
            Err(e @ (EnrollError::Internal(_) | EnrollError::Unavailable(_))) => {
                return respond(StatusCode::INTERNAL_SERVER_ERROR, TEXT, format!("{e}\n"));
            }
            Err(e) => {
                tracing::info!(
                    %peer,
                    transaction = ?msg.transaction_id,
                    reason = %e,
                    "SCEP request refused"
                );
                Outcome::Failure(match e {
                    EnrollError::NotFound(_) => FailInfo::BadCertId,
                    _ => FailInfo::BadRequest,
                })
            }
        };
        match message::cert_rep(&msg, &outcome, &self.ra) {
            Ok(der) => pki_message(der),
            Err(e) => server_error(&e),
        }
    }

    async fn decide(&self, msg: &PkiMessage) -> Result<ScepDecision, EnrollError> {
        let tid = &msg.transaction_id;
        match (&msg.message_type, &msg.content) {
            (MessageType::PkcsReq, Content::Csr(csr)) => {
                // RFC 8894 §2.3: signed by the key it asks a certificate
                // for; else a captured request could be re-signed and its
                // challenge spent by someone else.
                if !msg.signed_with_csr_key() {
                    return Err(EnrollError::Invalid(
                        "the PKCSReq is not signed with the key of its CSR".into(),
                    ));
                }
                let challenge = message::challenge_password(csr)
                    .map_err(|e| EnrollError::Invalid(e.to_string()))?;
                self.enrollment
                    .scep_request(tid, csr, challenge.as_deref())
                    .await
            }
            (MessageType::RenewalReq, Content::Csr(csr)) => {
                self.enrollment
                    .scep_renewal(tid, &msg.signer_cert_der, csr)
                    .await
            }
            (MessageType::CertPoll, _) => self.enrollment.scep_poll(tid, &msg.signer_cert_der),
            _ => Err(EnrollError::Invalid(
                "only PKCSReq, RenewalReq and CertPoll are served".into(),
            )),
        }
    }
}

fn pki_message(der: Vec<u8>) -> Response<Body> {
    respond(StatusCode::OK, "application/x-pki-message", der)
}

fn server_error(e: &ScepError) -> Response<Body> {
    tracing::error!(error = %e, "SCEP: the reply could not be made");
    respond(
        StatusCode::INTERNAL_SERVER_ERROR,
        TEXT,
        "the reply could not be made\n",
    )
}

/// GET's `message`: base64, standard or URL-safe (scepclient sends the
/// latter), padded or not.
fn decode_message(m: &str) -> Option<Vec<u8>> {
    use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
    let m = m.trim().trim_end_matches('=');
    STANDARD_NO_PAD
        .decode(m)
        .or_else(|_| URL_SAFE_NO_PAD.decode(m))
        .ok()
}
