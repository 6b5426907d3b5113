//! Orders (RFC 8555 §7.4): newOrder for names of the account's
//! registration only, the order object, finalize through enrollment (the
//! P10 checks, approval and issuance: an order waits in `processing`, with
//! `Retry-After`, until an approver decides), the certificate download
//! (§7.4.2) and revokeCert (§7.6).
//!
//! Before finalize an order lives in memory (`super::orders`); from
//! finalize on, its state is its enrollment request's (same id), so it
//! survives a restart and leaves memory (read back, it lists no
//! authorizations: they were valid, and are gone with it).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use uuid::Uuid;

use idsync_schema::cert::RevocationReason;
use idsync_schema::{EnrollmentRequest, RequestStatus};

use super::jws::Signer;
use super::orders::{Authz, AuthzStatus, Challenge, ChallengeKind, Full, Order};
use super::problem::Problem;
use super::server::{Acme, Reply, ReplyBody, Signed};
use crate::sources::enroll::acme::acme_requester;
use crate::sources::enroll::EnrollError;

/// Most names one order may ask for.
const MAX_IDENTIFIERS: usize = 100;
/// Seconds a client is asked to wait before polling a `processing` order.
const RETRY_AFTER_SECS: u64 = 3;

/// An order as the client sees it.
struct View {
    id: Uuid,
    names: Vec<String>,
    authzs: Vec<Uuid>,
    expires: OffsetDateTime,
    status: &'static str,
    certificate: Option<Uuid>,
    error: Option<Problem>,
}

impl Acme {
    pub(super) async fn new_order(&self, signed: &Signed) -> Result<Reply, Problem> {
        let account = signed.account();
        let payload = signed.object()?;
        if payload.contains_key("notBefore") || payload.contains_key("notAfter") {
            return Err(Problem::malformed(
                "notBefore and notAfter are not taken: the profile sets the validity",
            ));
        }
        let names = identifiers(payload.get("identifiers"), &account.dns_names)?;
        let profile = self.enrollment.profile(&account.profile)?;
        let now = OffsetDateTime::now_utc();
        let expires = (now + self.order_ttl).min(account.expires);
        let mut authzs = Vec::with_capacity(names.len());
        for name in &names {
            authzs.push(Authz {
                id: Uuid::now_v7(),
                account: account.id,
                name: name.clone(),
                // The profile's option: registering the names vouched
                // for them; no challenge to pass.
                status: match profile.preauthorized {
                    true => AuthzStatus::Valid,
                    false => AuthzStatus::Pending,
                },
                expires,
                challenges: self.challenges_for(name, profile.preauthorized)?,
                tried: None,
                validated: profile.preauthorized.then_some(now),
                error: None,
            });
        }
        let order = Order {
            id: Uuid::now_v7(),
            account: account.id,
            names,
            authzs: authzs.iter().map(|a| a.id).collect(),
            expires,
            finalized: false,
        };
        let id = order.id;
        self.orders.insert(order.clone(), authzs).map_err(|full| {
            Problem::new(
                "rateLimited",
                429,
                match full {
                    Full::Server => "the server holds as many orders as it may: retry later",
                    Full::Account => "this account has as many pending orders as it may: finish or let some expire",
                },
            )
        })?;
        tracing::info!(
            target: "idsync::audit",
            registration = %account.id,
            order = %id,
            names = ?order.names,
            "ACME order placed"
        );
        let view = self.view(&order);
        Ok(self.order_reply(201, &view))
    }

    /// The challenges offered for `name`: http-01, and dns-01 when a
    /// resolver is configured; a wildcard can only be proved in DNS
    /// (RFC 8555 §7.1.3, §8.3). A preauthorized wildcard needs none.
    fn challenges_for(&self, name: &str, preauthorized: bool) -> Result<Vec<Challenge>, Problem> {
        let challenge = |kind| Challenge {
            kind,
            token: random_token(),
        };
        let dns = self.validator.offers_dns01();
        match (name.starts_with("*."), dns) {
            (false, false) => Ok(vec![challenge(ChallengeKind::Http01)]),
            (false, true) => Ok(vec![
                challenge(ChallengeKind::Http01),
                challenge(ChallengeKind::Dns01),
            ]),
            (true, true) => Ok(vec![challenge(ChallengeKind::Dns01)]),
            (true, false) if preauthorized => Ok(Vec::new()),
            (true, false) => Err(Problem::new(
                "rejectedIdentifier",
                400,
                format!(
                    "{name:?} is a wildcard, which only dns-01 proves; this server offers \
                     dns-01 once [acme] dns_resolver is set"
                ),
            )),
        }
    }

    pub(super) fn order_post(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        let view = self.find_order(id, signed.account().id)?;
        Ok(self.order_reply(200, &view))
    }

    pub(super) async fn finalize(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        let account = signed.account();
        let view = self.find_order(id, account.id)?;
        let order = self.orders.order(id).filter(|_| view.status == "ready");
        let Some(order) = order.filter(|_| self.orders.claim_finalize(id)) else {
            return Err(Problem::new(
                "orderNotReady",
                403,
                format!("order {id} is {}, not ready to finalize", view.status),
            ));
        };
        let payload = signed.object()?;
        let csr = payload
            .get("csr")
            .and_then(Value::as_str)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .ok_or_else(|| Problem::malformed("finalize needs csr: a base64url DER CSR"));
        let enrolled = match csr {
            Ok(der) => {
                self.enrollment
                    .enroll_acme(account, id, &order.names, &der)
                    .await
            }
            Err(p) => {
                self.orders.release_finalize(id);
                return Err(p);
            }
        };
        if let Err(e) = enrolled {
            // Nothing was recorded: the client may send a better CSR.
            self.orders.release_finalize(id);
            return Err(match e {
                EnrollError::Invalid(m) => Problem::new("badCSR", 400, m),
                other => other.into(),
            });
        }
        let mut view = self.find_order(id, account.id)?;
        // The request in the store answers for the order from now on.
        view.authzs = order.authzs.clone();
        self.orders.forget_finalized(id);
        Ok(self.order_reply(200, &view))
    }

    /// POST-as-GET of a certificate: the PEM chain (RFC 8555 §7.4.2).
    pub(super) fn certificate_post(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        let cert = self.enrollment.certificate(id)?;
        if cert.asset != Some(signed.account().asset) {
            return Err(Problem::unauthorized(
                "this certificate is not of the account's asset",
            ));
        }
        Ok(Reply {
            body: ReplyBody::Pem(format!("{}{}", cert.pem, cert.chain)),
            ..Reply::json(200, Value::Null)
        })
    }

    /// revokeCert (RFC 8555 §7.6): by the account of the certificate's
    /// asset, or signed with the certificate's own key.
    pub(super) async fn revoke_cert(&self, signed: &Signed) -> Result<Reply, Problem> {
        let payload = signed.object()?;
        let der = payload
            .get("certificate")
            .and_then(Value::as_str)
            .and_then(|c| URL_SAFE_NO_PAD.decode(c).ok())
            .ok_or_else(|| Problem::malformed("revokeCert needs certificate: base64url DER"))?;
        let reason = match payload.get("reason") {
            None => RevocationReason::Unspecified,
            Some(code) => code
                .as_u64()
                .and_then(RevocationReason::from_code)
                .ok_or_else(|| {
                    Problem::new(
                        "badRevocationReason",
                        400,
                        format!("reason {code} is not one of 0, 1, 3, 4, 5, 9 (RFC 5280)"),
                    )
                })?,
        };
        let cert = self
            .enrollment
            .certificate_by_der(&der)?
            .ok_or_else(|| Problem::not_found("idsync did not issue this certificate"))?;
        let who = match (&signed.req.signer, &signed.account) {
            (Signer::Kid(_), Some(account)) => {
                if cert.asset != Some(account.asset) {
                    return Err(Problem::unauthorized(
                        "this certificate is not of the account's asset",
                    ));
                }
                acme_requester(account.id)
            }
            (Signer::Jwk(key), _) => {
                let public_key = idsync_connectors::ca::certificate_public_key(&der)
                    .map_err(|e| Problem::malformed(e.to_string()))?;
                if key.public_key_bits() != public_key {
                    return Err(Problem::unauthorized(
                        "the JWS is signed neither by the certificate's account nor its key",
                    ));
                }
                "acme:certificate-key".to_owned()
            }
            (Signer::Kid(_), None) => unreachable!("the gate sets the account of a kid"),
        };
        if cert.revoked.is_some() {
            return Err(Problem::new(
                "alreadyRevoked",
                400,
                "the certificate is revoked already",
            ));
        }
        match self.enrollment.revoke(&who, cert.id, reason).await {
            // Revoked; the CRL follows within a minute if it failed now.
            Ok(_) | Err(EnrollError::Internal(_)) => Ok(Reply::empty(200)),
            Err(EnrollError::Conflict(m)) => Err(Problem::new("alreadyRevoked", 400, m)),
            Err(e) => Err(e.into()),
        }
    }

    /// The order `id` of `account`: live in memory, or finalized and
    /// rebuilt from its enrollment request.
    fn find_order(&self, id: Uuid, account: Uuid) -> Result<View, Problem> {
        let missing = || Problem::not_found(format!("no order {id}"));
        if let Some(order) = self.orders.order(id) {
            if order.account != account {
                return Err(missing());
            }
            return Ok(self.view(&order));
        }
        let request = match self.enrollment.request(id) {
            Ok(r) if r.requester == acme_requester(account) => r,
            Ok(_) | Err(EnrollError::NotFound(_)) => return Err(missing()),
            Err(e) => return Err(e.into()),
        };
        let mut view = view_of_request(&request);
        view.authzs.clear();
        Ok(view)
    }

    fn view(&self, order: &Order) -> View {
        if order.finalized {
            if let Ok(request) = self.enrollment.request(order.id) {
                return View {
                    authzs: order.authzs.clone(),
                    expires: order.expires,
                    ..view_of_request(&request)
                };
            }
        }
        let authzs = self.orders.authzs_of(order);
        let now = OffsetDateTime::now_utc();
        let failed = authzs.iter().find_map(|a| a.error.clone());
        let status = if order.finalized {
            "processing"
        } else if failed.is_some()
            || authzs.iter().any(|a| a.status == AuthzStatus::Invalid)
            || order.expires <= now
        {
            "invalid"
        } else if authzs.len() == order.authzs.len()
            && authzs.iter().all(|a| a.status == AuthzStatus::Valid)
        {
            "ready"
        } else {
            "pending"
        };
        View {
            id: order.id,
            names: order.names.clone(),
            authzs: order.authzs.clone(),
            expires: order.expires,
            status,
            certificate: None,
            error: failed,
        }
    }

    fn order_reply(&self, status: u16, view: &View) -> Reply {
        let mut body = json!({
            "status": view.status,
            "expires": view.expires.format(&Rfc3339).unwrap_or_default(),
            "identifiers": view.names.iter().map(|n| json!({"type": "dns", "value": n})).collect::<Vec<_>>(),
            "authorizations": view.authzs.iter().map(|a| self.url(&format!("/authz/{a}"))).collect::<Vec<_>>(),
            "finalize": self.url(&format!("/order/{}/finalize", view.id)),
        });
        if let Some(c) = view.certificate {
            body["certificate"] = json!(self.url(&format!("/cert/{c}")));
        }
        if let Some(e) = &view.error {
            body["error"] = e.to_json();
        }
        let mut reply = Reply::json(status, body).at(self.url(&format!("/order/{}", view.id)));
        if view.status == "processing" {
            reply.retry_after = Some(RETRY_AFTER_SECS);
        }
        reply
    }
}

/// A finalized order as its enrollment request says.
fn view_of_request(r: &EnrollmentRequest) -> View {
    let (status, error) = match r.status {
        RequestStatus::PendingApproval | RequestStatus::Approved => ("processing", None),
        RequestStatus::Issued => ("valid", None),
        RequestStatus::Rejected | RequestStatus::Failed => (
            "invalid",
            Some(Problem::unauthorized(format!(
                "the certificate request was {}",
                r.outcome()
            ))),
        ),
    };
    View {
        id: r.id,
        names: r.data.dns_names.clone(),
        authzs: Vec::new(),
        expires: r.meta.created + time::Duration::days(7),
        status,
        certificate: r.certificate,
        error,
    }
}

/// The names of a newOrder's `identifiers`: DNS names of the registration
/// only, lower-cased, without repeats.
fn identifiers(v: Option<&Value>, allowed: &[String]) -> Result<Vec<String>, Problem> {
    let list = v
        .and_then(Value::as_array)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| Problem::malformed("newOrder needs identifiers: a non-empty list"))?;
    if list.len() > MAX_IDENTIFIERS {
        return Err(Problem::new(
            "rejectedIdentifier",
            400,
            format!("at most {MAX_IDENTIFIERS} identifiers per order"),
        ));
    }
    let mut names = Vec::with_capacity(list.len());
    for id in list {
        let kind = id.get("type").and_then(Value::as_str);
        let value = id.get("value").and_then(Value::as_str);
        let (Some(kind), Some(value)) = (kind, value) else {
            return Err(Problem::malformed("an identifier has a type and a value"));
        };
        if kind != "dns" {
            return Err(Problem::new(
                "unsupportedIdentifier",
                400,
                format!("identifiers of type {kind:?} are not issued here; use dns"),
            ));
        }
        let name = value.to_ascii_lowercase();
        if !allowed.contains(&name) {
            return Err(Problem::new(
                "rejectedIdentifier",
                400,
                format!(
                    "{:?} is not one of the registration's names ({})",
                    value.chars().take(255).collect::<String>(),
                    allowed.join(", ")
                ),
            ));
        }
        if !names.contains(&name) {
            names.push(name);
        }
    }
    Ok(names)
}

/// A challenge token: 128 random bits, base64url (RFC 8555 §8.1).
fn random_token() -> String {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).expect("the OS gives random bytes");
    URL_SAFE_NO_PAD.encode(b)
}
