//! Authorizations and their challenge (RFC 8555 §7.5): one `http-01`
//! challenge per name. A POST with `{}` to the challenge starts its
//! validation in the background (`super::validate`); the client polls the
//! authorization until it is `valid` or `invalid`.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::orders::{Authz, AuthzStatus};
use super::problem::Problem;
use super::server::{Acme, Reply, Signed};

impl Acme {
    pub(super) fn authz_post(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        let a = self.own_authz(id, signed)?;
        let mut reply = Reply::json(200, self.authz_json(&a)).at(self.url(&format!("/authz/{id}")));
        reply.retry_after = poll_soon(&a);
        Ok(reply)
    }

    /// POST to a challenge: `{}` asks for its validation (RFC 8555
    /// §7.5.1); POST-as-GET reads it.
    pub(super) fn challenge_post(&self, id: Uuid, signed: &Signed) -> Result<Reply, Problem> {
        let mut a = self.own_authz(id, signed)?;
        if !signed.is_get() {
            signed.object()?;
            if a.status == AuthzStatus::Pending {
                let key = signed
                    .account()
                    .account
                    .as_ref()
                    .map(|acc| acc.thumbprint.clone())
                    .unwrap_or_default();
                if let Some(started) = self.orders.update_authz(id, |x| {
                    if x.status == AuthzStatus::Pending {
                        x.status = AuthzStatus::Processing;
                    }
                }) {
                    a = started;
                    self.validator
                        .start(&a, &key, std::sync::Arc::clone(&self.orders));
                }
            }
        }
        let mut reply = Reply::json(200, self.challenge_json(&a));
        reply.retry_after = poll_soon(&a);
        reply.links.push(format!(
            "<{}>;rel=\"up\"",
            self.url(&format!("/authz/{id}"))
        ));
        Ok(reply)
    }

    fn own_authz(&self, id: Uuid, signed: &Signed) -> Result<Authz, Problem> {
        self.orders
            .authz(id)
            .filter(|a| a.account == signed.account().id)
            .ok_or_else(|| Problem::not_found(format!("no authorization {id}")))
    }

    fn authz_json(&self, a: &Authz) -> Value {
        let status = match a.status {
            AuthzStatus::Pending | AuthzStatus::Processing => "pending",
            AuthzStatus::Valid => "valid",
            AuthzStatus::Invalid => "invalid",
        };
        let status = if a.expires <= time::OffsetDateTime::now_utc() && status == "pending" {
            "expired"
        } else {
            status
        };
        json!({
            "status": status,
            "expires": a.expires.format(&Rfc3339).unwrap_or_default(),
            "identifier": {"type": "dns", "value": a.name},
            "challenges": [self.challenge_json(a)],
        })
    }

    fn challenge_json(&self, a: &Authz) -> Value {
        let status = match a.status {
            AuthzStatus::Pending => "pending",
            AuthzStatus::Processing => "processing",
            AuthzStatus::Valid => "valid",
            AuthzStatus::Invalid => "invalid",
        };
        let mut c = json!({
            "type": "http-01",
            "url": self.url(&format!("/chall/{}", a.id)),
            "status": status,
            "token": a.token,
        });
        if let Some(t) = a.validated.and_then(|t| t.format(&Rfc3339).ok()) {
            c["validated"] = json!(t);
        }
        if let Some(e) = &a.error {
            c["error"] = e.to_json();
        }
        c
    }
}

/// While a challenge is checked, clients are asked to look again in a
/// second (a validation on a LAN takes milliseconds).
fn poll_soon(a: &Authz) -> Option<u64> {
    matches!(a.status, AuthzStatus::Processing).then_some(1)
}
