//! Publishing the CRLs: which certificates are revoked is read from the
//! store; the CA signs one CRL per issuer and keeps it in its directory;
//! the admin listener serves the last ones from memory at
//! `/crl/<issuer id>.crl`.
//!
//! When: at start, after every revocation, and whenever half of a CRL's
//! validity has passed (`[ca] crl_validity_hours`), so a relying party
//! that caches a CRL until its nextUpdate always has a fresh one. A
//! publication that failed (a full disk) is tried again within a minute;
//! the revocation itself is in the store already and is never lost.
//!
//! Why the CRLs are served without a token: a relying party (openssl, a
//! TLS peer, a browser) fetches the URL a certificate names with a plain
//! GET, and a CRL is public, signed data.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use idsync_connectors::ca::{is_issuer_id, issuer_id_of_chain, CaBackend, CrlSpec, RevokedEntry};
use idsync_schema::{Certificate, Kind};
use idsync_store::reconcile::Reconciler;
use time::{Duration, OffsetDateTime};

use super::{EnrollError, Enrollment};
use crate::infra::http::{respond, unless_get_or_head};

/// The path prefix of the CRLs on the admin listener.
pub(crate) const CRL_PREFIX: &str = "/crl/";
/// RFC 2585 §4.2.
const PKIX_CRL: &str = "application/pkix-crl";

/// The CRLs as last published, and when they are due again.
#[derive(Debug)]
pub(crate) struct Crls {
    validity: Duration,
    /// DER by issuer id.
    current: RwLock<HashMap<String, Bytes>>,
    /// When the last publication of all of them succeeded.
    published: Mutex<Option<OffsetDateTime>>,
    /// A revocation whose CRLs could not be published yet.
    dirty: AtomicBool,
    /// One publication at a time: two would race on the numbers.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl Crls {
    pub(crate) fn new(validity: Duration) -> Self {
        Self {
            validity,
            current: RwLock::new(HashMap::new()),
            published: Mutex::new(None),
            dirty: AtomicBool::new(false),
            one_at_a_time: tokio::sync::Mutex::new(()),
        }
    }

    fn due(&self, now: OffsetDateTime) -> bool {
        let published = *self.published.lock().unwrap_or_else(|p| p.into_inner());
        self.dirty.load(Ordering::Relaxed)
            || published.is_none_or(|at| now - at >= self.validity / 2)
    }
}

impl Enrollment {
    /// Serve the CRLs the CA kept from before a restart until new ones are
    /// signed (they are valid until their nextUpdate).
    pub(crate) fn serve_kept_crls(&self) -> Result<usize, EnrollError> {
        let kept = self.ca.kept_crls()?;
        let n = kept.len();
        let mut current = self.crls.current.write().unwrap_or_else(|p| p.into_inner());
        for crl in kept {
            current
                .entry(crl.issuer)
                .or_insert_with(|| Bytes::from(crl.der));
        }
        Ok(n)
    }

    /// Sign and publish every issuer's CRL from the revocations in the
    /// store; the number of CRLs published.
    pub(crate) async fn publish_crls(&self) -> Result<usize, EnrollError> {
        let _one = self.crls.one_at_a_time.lock().await;
        let rec = Arc::clone(&self.rec);
        let ca = Arc::clone(&self.ca);
        let validity = self.crls.validity;
        let signed = tokio::task::spawn_blocking(move || sign_all(&rec, ca.as_ref(), validity))
            .await
            .map_err(|e| EnrollError::Internal(format!("CRL publication stopped: {e}")));
        let signed = match signed.and_then(|r| r) {
            Ok(signed) => signed,
            Err(e) => {
                self.crls.dirty.store(true, Ordering::Relaxed);
                return Err(e);
            }
        };
        let n = signed.len();
        *self.crls.current.write().unwrap_or_else(|p| p.into_inner()) = signed;
        *self
            .crls
            .published
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(OffsetDateTime::now_utc());
        self.crls.dirty.store(false, Ordering::Relaxed);
        Ok(n)
    }

    /// After an issuance by an issuer that has no CRL yet (a policy's
    /// sub-CA, made on its first use): publish, so that the CRL its
    /// certificate names can be fetched at once. A failure is retried by
    /// [`Enrollment::upkeep`]; the certificate stays issued.
    pub(crate) async fn publish_crl_of_new_issuer(&self, chain: &str) {
        let Some(issuer) = issuer_id_of_chain(chain) else {
            return;
        };
        let known = self
            .crls
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains_key(&issuer);
        if !known {
            if let Err(e) = self.publish_crls().await {
                tracing::error!(error = %e, issuer = %issuer, "could not publish the CRL of a new issuer; trying again in a minute");
            }
        }
    }

    /// Publish the CRLs if they are due (at start, after a failure, or
    /// when half of their validity has passed).
    pub(crate) async fn publish_crls_if_due(&self) {
        if !self.crls.due(OffsetDateTime::now_utc()) {
            return;
        }
        match self.publish_crls().await {
            Ok(n) => tracing::info!(crls = n, "published the CRLs"),
            Err(e) => tracing::error!(
                error = %e,
                "could not publish the CRLs; trying again in a minute"
            ),
        }
    }

    /// `GET /crl/<issuer id>.crl`: the issuer's last CRL, DER.
    pub(crate) fn crl_response(&self, method: &Method, path: &str) -> Response<Full<Bytes>> {
        const TEXT: &str = "text/plain; charset=utf-8";
        if let Some(refused) = unless_get_or_head(method) {
            return refused;
        }
        let id = path
            .strip_prefix(CRL_PREFIX)
            .and_then(|f| f.strip_suffix(".crl"))
            .filter(|id| is_issuer_id(id));
        let der = id.and_then(|id| {
            let current = self.crls.current.read().unwrap_or_else(|p| p.into_inner());
            current.get(id).cloned()
        });
        match der {
            Some(der) => {
                let mut r = Response::new(Full::new(der));
                r.headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static(PKIX_CRL));
                r
            }
            None => respond(StatusCode::NOT_FOUND, TEXT, "no such CRL\n"),
        }
    }
}

/// Every issuer's CRL, signed now, by issuer id.
fn sign_all(
    rec: &Reconciler,
    ca: &dyn CaBackend,
    validity: Duration,
) -> Result<HashMap<String, Bytes>, EnrollError> {
    let now = OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap_or(OffsetDateTime::now_utc());
    let mut revoked = revoked_by_issuer(rec, now)?;
    let mut out = HashMap::new();
    for issuer in ca.issuers()? {
        let entries = revoked.remove(&issuer).unwrap_or_default();
        let crl = ca.publish_crl(&CrlSpec {
            issuer: &issuer,
            entries: &entries,
            this_update: now,
            next_update: now + validity,
        })?;
        out.insert(crl.issuer, Bytes::from(crl.der));
    }
    for (issuer, entries) in revoked {
        // An issuer the CA no longer has (a replaced CA): its certificates
        // chain to a root that is not trusted any more.
        tracing::warn!(
            issuer = %issuer,
            revoked = entries.len(),
            "revoked certificates of an issuer this CA does not have: left out of the CRLs"
        );
    }
    Ok(out)
}

/// The revoked certificates that have not expired, by their issuer's id.
fn revoked_by_issuer(
    rec: &Reconciler,
    now: OffsetDateTime,
) -> Result<HashMap<String, Vec<RevokedEntry>>, EnrollError> {
    let mut out: HashMap<String, Vec<RevokedEntry>> = HashMap::new();
    rec.store()
        .for_each::<Certificate>(Kind::Certificate, |c| {
            // RFC 5280 §3.3: an entry may go once the certificate expires.
            let Some(r) = c.revoked.as_ref().filter(|_| c.not_after > now) else {
                return Ok(true);
            };
            match issuer_id_of_chain(&c.chain) {
                Some(issuer) => out.entry(issuer).or_default().push(RevokedEntry {
                    serial: c.serial.clone(),
                    at: r.at,
                    reason: r.reason,
                }),
                None => {
                    tracing::error!(certificate = %c.id, "a revoked certificate without a chain")
                }
            }
            Ok(true)
        })?;
    Ok(out)
}
