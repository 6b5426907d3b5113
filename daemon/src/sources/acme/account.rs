//! Accounts (RFC 8555 §7.3): newAccount with the external account binding
//! every account here needs (§7.3.4: it names the registration, whose
//! HMAC key MACs the account key), the account object, its updates and
//! deactivation (§7.3.2, §7.3.6), and keyChange (§7.3.5).
//!
//! An account lives in its registration: one binding makes one account,
//! and its URL carries the registration's id.

use serde_json::{json, Map, Value};
use uuid::Uuid;

use idsync_schema::{AcmeAccount, AcmeAccountStatus, Registration};

use super::eab;
use super::jwk::Jwk;
use super::jws::{self, Signer};
use super::problem::Problem;
use super::server::{account_key, Acme, Reply, Signed};
use crate::sources::enroll::EnrollError;

/// Contacts kept at most per account, and their longest length.
const MAX_CONTACTS: usize = 8;
const MAX_CONTACT_CHARS: usize = 254;

impl Acme {
    pub(super) async fn new_account(&self, signed: Signed) -> Result<Reply, Problem> {
        let Signer::Jwk(key) = &signed.req.signer else {
            unreachable!("the gate lets only jwk through to newAccount")
        };
        let payload = signed.object()?;
        let thumbprint = key.thumbprint();
        if let Some(existing) = self.enrollment.acme_account_by_key(&thumbprint)? {
            // RFC 8555 §7.3.1: the existing account, 200.
            let url = self.account_url(existing.id);
            return Ok(Reply::json(200, self.account_json(&existing)).at(url));
        }
        if payload.get("onlyReturnExisting") == Some(&Value::Bool(true)) {
            return Err(Problem::new(
                "accountDoesNotExist",
                400,
                "no account has this key",
            ));
        }
        let contact = contacts(&payload)?;
        let binding = payload.get("externalAccountBinding").ok_or_else(|| {
            Problem::new(
                "externalAccountRequired",
                400,
                "every account needs an external account binding: register the asset (idsync enroll acme) and pass its key id and HMAC key",
            )
        })?;
        let binding = eab::parse(binding, &signed.req.url, key)?;
        let registration = Uuid::parse_str(&binding.key_id)
            .ok()
            .and_then(|id| self.enrollment.registration(id).ok())
            .ok_or_else(|| {
                Problem::unauthorized(format!(
                    "the external account binding's key id {:?} is no registration",
                    binding.key_id
                ))
            })?;
        // The MAC before anything about the registration is told.
        binding.verify(&self.enrollment.eab_hmac_key(registration.id))?;
        let account = AcmeAccount {
            key: key.canonical_json(),
            thumbprint,
            contact,
            status: AcmeAccountStatus::Valid,
            created: time::OffsetDateTime::now_utc(),
        };
        let bound = self
            .enrollment
            .bind_acme_account(registration.id, account)
            .await
            .map_err(refused)?;
        tracing::info!(
            target: "idsync::audit",
            registration = %bound.id,
            asset = %bound.asset,
            "ACME account created"
        );
        let url = self.account_url(bound.id);
        Ok(Reply::json(201, self.account_json(&bound)).at(url))
    }

    /// POST to the account URL: read it, update its contacts, or
    /// deactivate it.
    pub(super) async fn account_post(&self, id: Uuid, signed: Signed) -> Result<Reply, Problem> {
        let own = signed.account();
        if own.id != id {
            return Err(Problem::unauthorized(
                "an account may only read or change itself",
            ));
        }
        let url = self.account_url(id);
        if signed.is_get() {
            return Ok(Reply::json(200, self.account_json(own)).at(url));
        }
        let payload = signed.object()?;
        let deactivate = match payload.get("status") {
            None => false,
            Some(Value::String(s)) if s == "deactivated" => true,
            Some(other) => {
                return Err(Problem::malformed(format!(
                    "an account's status can only become \"deactivated\", not {other}"
                )))
            }
        };
        let contact = payload
            .contains_key("contact")
            .then(|| contacts(&payload))
            .transpose()?;
        let changed = self
            .enrollment
            .change_acme_account(id, move |a| {
                if let Some(c) = &contact {
                    a.contact = c.clone();
                }
                if deactivate {
                    a.status = AcmeAccountStatus::Deactivated;
                }
                Ok(())
            })
            .await
            .map_err(refused)?;
        if deactivate {
            self.orders.forget_account(id);
            tracing::info!(target: "idsync::audit", registration = %id, "ACME account deactivated");
        }
        Ok(Reply::json(200, self.account_json(&changed)).at(url))
    }

    /// The account's orders still in memory (RFC 8555 §7.1.2.1).
    pub(super) fn account_orders(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        if signed.account().id != id {
            return Err(Problem::unauthorized(
                "an account may only list its own orders",
            ));
        }
        let urls: Vec<String> = self
            .orders
            .ids_of(id)
            .into_iter()
            .map(|o| self.url(&format!("/order/{o}")))
            .collect();
        Ok(Reply::json(200, json!({ "orders": urls })))
    }

    /// keyChange (RFC 8555 §7.3.5): the outer JWS by the account, the
    /// inner by the new key, naming the account and its old key.
    pub(super) async fn key_change(&self, signed: Signed) -> Result<Reply, Problem> {
        let own = signed.account().clone();
        let inner: jws::Flattened = serde_json::from_slice(&signed.req.payload)
            .map_err(|e| Problem::malformed(format!("keyChange's payload is not a JWS: {e}")))?;
        let inner = jws::parse_flattened(&inner)?;
        let Signer::Jwk(new_key) = inner.signer.clone() else {
            return Err(Problem::malformed(
                "keyChange's inner JWS carries the new key as jwk",
            ));
        };
        if inner.url != signed.req.url {
            return Err(Problem::malformed(
                "keyChange's inner url differs from the outer one",
            ));
        }
        let inner = inner.verify(&new_key)?;
        let body: Map<String, Value> = match inner.json()? {
            Value::Object(m) => m,
            _ => {
                return Err(Problem::malformed(
                    "keyChange's inner payload is not an object",
                ))
            }
        };
        let account_url = self.account_url(own.id);
        if body.get("account").and_then(Value::as_str) != Some(account_url.as_str()) {
            return Err(Problem::malformed(
                "keyChange's inner payload does not name this account",
            ));
        }
        let old = body
            .get("oldKey")
            .ok_or_else(|| Problem::malformed("keyChange's inner payload has no oldKey"))
            .and_then(|k| Jwk::from_json(k).map_err(Problem::from))?;
        let stored = own
            .account
            .as_ref()
            .map(|a| account_key(&a.key))
            .transpose()?;
        if stored.as_ref() != Some(&old) {
            return Err(Problem::unauthorized("oldKey is not the account's key"));
        }
        let thumbprint = new_key.thumbprint();
        if let Some(other) = self.enrollment.acme_account_by_key(&thumbprint)? {
            let mut r: Reply = Problem::new("conflict", 409, "another account has this key").into();
            r.location = Some(self.account_url(other.id));
            return Ok(r);
        }
        let canonical = new_key.canonical_json();
        let changed = self
            .enrollment
            .change_acme_account(own.id, move |a| {
                a.key = canonical.clone();
                a.thumbprint = thumbprint.clone();
                Ok(())
            })
            .await
            .map_err(refused)?;
        Ok(Reply::json(200, self.account_json(&changed)).at(account_url))
    }

    pub(super) fn account_url(&self, registration: Uuid) -> String {
        self.url(&format!("/acct/{registration}"))
    }

    fn account_json(&self, r: &Registration) -> Value {
        let (status, contact) = match &r.account {
            Some(a) if a.status == AcmeAccountStatus::Deactivated => {
                ("deactivated", &a.contact[..])
            }
            Some(a) if super::server::usable(r).is_ok() => ("valid", &a.contact[..]),
            Some(a) => ("revoked", &a.contact[..]),
            None => ("revoked", &[][..]),
        };
        json!({
            "status": status,
            "contact": contact,
            "orders": self.url(&format!("/acct/{}/orders", r.id)),
        })
    }
}

/// A registration's refusal in ACME's words: a state that does not allow
/// it is `unauthorized`.
fn refused(e: EnrollError) -> Problem {
    match e {
        EnrollError::Conflict(m) | EnrollError::Forbidden(m) => Problem::unauthorized(m),
        other => other.into(),
    }
}

/// The `contact` of a payload: `mailto:` URLs (RFC 8555 §7.3), bounded.
fn contacts(payload: &Map<String, Value>) -> Result<Vec<String>, Problem> {
    let Some(v) = payload.get("contact") else {
        return Ok(Vec::new());
    };
    let list = v
        .as_array()
        .ok_or_else(|| Problem::malformed("contact is a list of URLs"))?;
    if list.len() > MAX_CONTACTS {
        return Err(Problem::new(
            "invalidContact",
            400,
            format!("at most {MAX_CONTACTS} contacts"),
        ));
    }
    list.iter()
        .map(|c| {
            let c = c
                .as_str()
                .ok_or_else(|| Problem::malformed("contact is a list of URLs"))?;
            let address = c.strip_prefix("mailto:").ok_or_else(|| {
                Problem::new(
                    "unsupportedContact",
                    400,
                    format!("only mailto: contacts are taken, not {:?}", truncate(c)),
                )
            })?;
            if c.len() > MAX_CONTACT_CHARS
                || address.contains([',', '?'])
                || idsync_schema::rules::check_mail("contact", address).is_err()
            {
                return Err(Problem::new(
                    "invalidContact",
                    400,
                    format!("{:?} is not one e-mail address", truncate(c)),
                ));
            }
            Ok(c.to_owned())
        })
        .collect()
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}
