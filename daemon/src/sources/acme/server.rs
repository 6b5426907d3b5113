//! The ACME server's state and the gate every POST passes (RFC 8555 §6):
//! the body is a JWS, its nonce is one this server issued and not used,
//! its `url` is the URL it was sent to, and its signature verifies with
//! the `jwk` it carries (only where the RFC allows one) or with the key of
//! the account its `kid` names, an account that is still valid. Only then
//! does a step see the payload. Routing is here too: one table, method
//! and path to step.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};
use uuid::Uuid;

use idsync_schema::{AcmeAccountStatus, Registration, RegistrationStatus};

use super::jwk::Jwk;
use super::jws::{self, Signer};
use super::nonces::Nonces;
use super::orders::Orders;
use super::problem::Problem;
use super::validate::Validator;
use super::AcmeConfig;
use crate::sources::enroll::Enrollment;

/// Where every URL of the server lives, under the public URL.
pub(super) const PREFIX: &str = "/acme";

/// The ACME server: its configuration, enrollment, nonces and orders.
pub(crate) struct Acme {
    /// `https://host[:port]`, no trailing `/`.
    pub(super) base: String,
    pub(super) enrollment: Arc<Enrollment>,
    pub(super) nonces: Nonces,
    pub(super) orders: Arc<Orders>,
    pub(super) validator: Validator,
    pub(super) order_ttl: time::Duration,
}

impl std::fmt::Debug for Acme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Acme")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// What a step answers; the listener adds `Replay-Nonce`, the directory
/// link and `Cache-Control`.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: u16,
    pub body: ReplyBody,
    pub location: Option<String>,
    /// `Link` values other than the directory's (`rel="up"`, …).
    pub links: Vec<String>,
    pub retry_after: Option<u64>,
}

#[derive(Debug)]
pub(crate) enum ReplyBody {
    Empty,
    Json(Value),
    Problem(Problem),
    /// `application/pem-certificate-chain`.
    Pem(String),
}

impl Reply {
    pub fn json(status: u16, body: Value) -> Self {
        Self {
            status,
            body: ReplyBody::Json(body),
            location: None,
            links: Vec::new(),
            retry_after: None,
        }
    }

    pub fn at(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }

    pub fn empty(status: u16) -> Self {
        Self {
            body: ReplyBody::Empty,
            ..Self::json(status, Value::Null)
        }
    }
}

impl From<Problem> for Reply {
    fn from(p: Problem) -> Self {
        Self {
            status: p.status,
            body: ReplyBody::Problem(p),
            ..Self::empty(0)
        }
    }
}

/// A POST that passed the gate: its verified JWS and, for `kid`, the
/// registration that holds the account.
pub(super) struct Signed {
    pub req: jws::Request,
    pub account: Option<Registration>,
}

impl Signed {
    /// The payload as a JSON object (`{}` when the client sent one).
    pub fn object(&self) -> Result<serde_json::Map<String, Value>, Problem> {
        match self.req.json()? {
            Value::Object(m) => Ok(m),
            _ => Err(Problem::malformed("the JWS payload is not a JSON object")),
        }
    }

    /// True for POST-as-GET (RFC 8555 §6.3): an empty payload.
    pub fn is_get(&self) -> bool {
        self.req.payload.is_empty()
    }

    /// The account's registration (steps that need `kid` call this).
    pub fn account(&self) -> &Registration {
        self.account
            .as_ref()
            .expect("the gate checks kid before a step that needs an account")
    }
}

/// Which signer a step accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Needs {
    /// `kid`: requests of an account.
    Account,
    /// `jwk`: newAccount.
    Key,
    /// Either: revokeCert (by the account, or by the certificate's key).
    Either,
}

impl Acme {
    pub(crate) fn new(cfg: &AcmeConfig, enrollment: Arc<Enrollment>) -> Self {
        Self {
            base: cfg.url_base(),
            enrollment,
            nonces: Nonces::default(),
            orders: Arc::new(Orders::new(cfg.max_orders, cfg.max_orders_per_account)),
            validator: Validator::new(cfg),
            order_ttl: time::Duration::minutes(i64::from(cfg.order_minutes)),
        }
    }

    /// The absolute URL of `path` (which starts with `/`).
    pub(super) fn url(&self, path: &str) -> String {
        format!("{}{PREFIX}{path}", self.base)
    }

    pub(crate) fn directory_url(&self) -> String {
        self.url("/directory")
    }

    pub(crate) fn new_nonce(&self) -> String {
        self.nonces.issue()
    }

    /// Answer one request: `path` is below [`PREFIX`].
    pub(crate) async fn handle(
        &self,
        method: &hyper::Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Reply {
        match self.route(method, path, content_type, body).await {
            Ok(r) => r,
            Err(p) => p.into(),
        }
    }

    async fn route(
        &self,
        method: &hyper::Method,
        path: &str,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Reply, Problem> {
        use hyper::Method;
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        if *method == Method::GET || *method == Method::HEAD {
            return match segments.as_slice() {
                ["directory"] => Ok(Reply::json(200, self.directory())),
                // RFC 8555 §7.2: 200 for HEAD, 204 for GET.
                ["new-nonce"] if *method == Method::HEAD => Ok(Reply::empty(200)),
                ["new-nonce"] => Ok(Reply::empty(204)),
                _ => Err(Problem::new(
                    "malformed",
                    405,
                    "ACME resources are fetched with POST-as-GET (RFC 8555 §6.3)",
                )),
            };
        }
        if *method != Method::POST {
            return Err(Problem::new("malformed", 405, "use GET, HEAD or POST"));
        }
        let needs = match segments.as_slice() {
            ["new-account"] => Needs::Key,
            ["revoke-cert"] => Needs::Either,
            _ => Needs::Account,
        };
        let signed = self.gate(path, content_type, &body, needs)?;
        let id = |s: &str| {
            Uuid::parse_str(s).map_err(|_| Problem::not_found(format!("no resource {path}")))
        };
        match segments.as_slice() {
            ["new-account"] => self.new_account(signed).await,
            ["acct", a] => self.account_post(id(a)?, signed).await,
            ["acct", a, "orders"] => self.account_orders(id(a)?, &signed),
            ["key-change"] => self.key_change(signed).await,
            ["new-order"] => self.new_order(&signed).await,
            ["order", o] => self.order_post(id(o)?, &signed),
            ["order", o, "finalize"] => self.finalize(id(o)?, &signed).await,
            ["authz", a] => self.authz_post(id(a)?, &signed),
            ["chall", a, kind] => self.challenge_post(id(a)?, kind, &signed).await,
            ["cert", c] => self.certificate_post(id(c)?, &signed),
            ["revoke-cert"] => self.revoke_cert(&signed).await,
            _ => Err(Problem::not_found(format!("no resource {path}"))),
        }
    }

    fn directory(&self) -> Value {
        json!({
            "newNonce": self.url("/new-nonce"),
            "newAccount": self.url("/new-account"),
            "newOrder": self.url("/new-order"),
            "revokeCert": self.url("/revoke-cert"),
            "keyChange": self.url("/key-change"),
            "meta": {
                "externalAccountRequired": true,
                "website": "https://github.com/idsync/idsync"
            }
        })
    }

    /// The checks of RFC 8555 §6.2–6.5 before any payload is read.
    fn gate(
        &self,
        path: &str,
        content_type: Option<&str>,
        body: &[u8],
        needs: Needs,
    ) -> Result<Signed, Problem> {
        let jose = content_type
            .and_then(|ct| ct.split(';').next())
            .is_some_and(|ct| ct.trim().eq_ignore_ascii_case("application/jose+json"));
        if !jose {
            return Err(Problem::new(
                "malformed",
                415,
                "send the JWS as application/jose+json",
            ));
        }
        let parsed = jws::parse(body)?;
        let fresh = parsed
            .nonce
            .as_deref()
            .is_some_and(|n| self.nonces.consume(n));
        if !fresh {
            return Err(Problem::new(
                "badNonce",
                400,
                "the nonce is unknown, used or missing: retry with the fresh one in Replay-Nonce",
            ));
        }
        if parsed.url != self.url(path) {
            return Err(Problem::unauthorized(format!(
                "the JWS url {:?} is not the URL this request was sent to ({})",
                parsed.url,
                self.url(path)
            )));
        }
        match (&parsed.signer, needs) {
            (Signer::Jwk(key), Needs::Key | Needs::Either) => {
                let key = key.clone();
                Ok(Signed {
                    req: parsed.verify(&key)?,
                    account: None,
                })
            }
            (Signer::Kid(kid), Needs::Account | Needs::Either) => {
                let (registration, key) = self.account_of_kid(kid)?;
                Ok(Signed {
                    req: parsed.verify(&key)?,
                    account: Some(registration),
                })
            }
            (Signer::Jwk(_), Needs::Account) => Err(Problem::malformed(
                "this request is signed by an account: name it with kid, not jwk",
            )),
            (Signer::Kid(_), Needs::Key) => Err(Problem::malformed(
                "newAccount is signed with the new key: send it as jwk, not kid",
            )),
        }
    }

    /// The registration and key of the account `kid` names; it must be
    /// valid and its registration neither revoked nor expired.
    fn account_of_kid(&self, kid: &str) -> Result<(Registration, Jwk), Problem> {
        let unknown = || Problem::new("accountDoesNotExist", 400, format!("no account {kid:?}"));
        let id = kid
            .strip_prefix(&self.url("/acct/"))
            .and_then(|s| Uuid::parse_str(s).ok())
            .ok_or_else(unknown)?;
        let r = match self.enrollment.registration(id) {
            Ok(r) => r,
            Err(crate::sources::enroll::EnrollError::NotFound(_)) => return Err(unknown()),
            Err(e) => return Err(e.into()),
        };
        let account = r.account.as_ref().ok_or_else(unknown)?;
        if account.status == AcmeAccountStatus::Deactivated {
            return Err(Problem::unauthorized(format!(
                "account {kid} is deactivated"
            )));
        }
        usable(&r)?;
        let key = account_key(&account.key)?;
        Ok((r, key))
    }
}

/// Refuse an account whose registration no longer allows anything.
pub(super) fn usable(r: &Registration) -> Result<(), Problem> {
    if r.status != RegistrationStatus::Used {
        return Err(Problem::unauthorized(format!(
            "registration {} is {}: its account may not act",
            r.id, r.status
        )));
    }
    if r.is_past(time::OffsetDateTime::now_utc()) {
        return Err(Problem::unauthorized(format!(
            "registration {} expired at {}: register the asset again",
            r.id, r.expires
        )));
    }
    Ok(())
}

/// A stored account key (canonical JWK JSON).
pub(super) fn account_key(stored: &str) -> Result<Jwk, Problem> {
    let v: Value = serde_json::from_str(stored)
        .map_err(|_| Problem::server_internal("a stored account key does not parse"))?;
    Jwk::from_json(&v).map_err(|_| Problem::server_internal("a stored account key does not parse"))
}
