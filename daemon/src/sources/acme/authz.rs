//! Authorizations and their challenges (RFC 8555 §7.5): `http-01` per
//! name, and `dns-01` where `[acme] dns_resolver` is set (a wildcard name
//! gets dns-01 only). A POST with `{}` to one challenge starts its
//! validation (`super::validate`) and answers with its outcome when it
//! comes within [`ANSWER_WITHIN`], else `processing`, and the client polls
//! the authorization until it is `valid` or `invalid`. Each challenge's
//! URL is `/chall/{authorization}/{type}`.

use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

use super::orders::{Authz, AuthzStatus, Challenge, ChallengeKind};

/// How long a POST to a challenge waits for its validation before it
/// answers `processing`: a validation on a LAN takes milliseconds, and a
/// client told the outcome at once skips a poll (clients wait a second or
/// more between polls). step-ca answers after validating, too.
const ANSWER_WITHIN: std::time::Duration = std::time::Duration::from_secs(2);
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
    pub(super) async fn challenge_post(
        &self,
        id: Uuid,
        kind: &str,
        signed: &Signed,
    ) -> Result<Reply, Problem> {
        let mut a = self.own_authz(id, signed)?;
        let not_offered =
            || Problem::not_found(format!("no challenge {kind:?} of authorization {id}"));
        let kind = ChallengeKind::parse(kind).ok_or_else(not_offered)?;
        if a.challenge(kind).is_none() {
            return Err(not_offered());
        }
        if !signed.is_get() {
            signed.object()?;
            if a.status == AuthzStatus::Pending {
                let key = signed
                    .account()
                    .account
                    .as_ref()
                    .map(|acc| acc.thumbprint.clone())
                    .unwrap_or_default();
                let mut won = false;
                let updated = self.orders.update_authz(id, |x| {
                    if x.status == AuthzStatus::Pending {
                        x.status = AuthzStatus::Processing;
                        x.tried = Some(kind);
                        won = true;
                    }
                });
                if let Some(now) = updated {
                    a = now;
                    // Of two POSTs racing, one starts the validation.
                    if won {
                        let orders = std::sync::Arc::clone(&self.orders);
                        let recorded = self.validator.start(&a, kind, &key, orders);
                        if tokio::time::timeout(ANSWER_WITHIN, recorded).await.is_ok() {
                            a = self.own_authz(id, signed)?;
                        }
                    }
                }
            }
        }
        let challenge = a.challenge(kind).ok_or_else(not_offered)?;
        let mut reply = Reply::json(200, self.challenge_json(&a, challenge));
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
        let (name, wildcard) = a.identifier();
        let challenges: Vec<Value> = a
            .challenges
            .iter()
            .map(|c| self.challenge_json(a, c))
            .collect();
        let mut v = json!({
            "status": status,
            "expires": a.expires.format(&Rfc3339).unwrap_or_default(),
            "identifier": {"type": "dns", "value": name},
            "challenges": challenges,
        });
        if wildcard {
            v["wildcard"] = json!(true);
        }
        v
    }

    /// A challenge as the authorization's state shows it: the one tried
    /// carries the outcome; the others stay pending (none tried: a
    /// preauthorized name, every one valid).
    fn challenge_json(&self, a: &Authz, c: &Challenge) -> Value {
        let concerned = a.tried.is_none_or(|t| t == c.kind);
        let status = match a.status {
            _ if !concerned => "pending",
            AuthzStatus::Pending => "pending",
            AuthzStatus::Processing => "processing",
            AuthzStatus::Valid => "valid",
            AuthzStatus::Invalid => "invalid",
        };
        let mut v = json!({
            "type": c.kind.as_str(),
            "url": self.url(&format!("/chall/{}/{}", a.id, c.kind.as_str())),
            "status": status,
            "token": c.token,
        });
        if concerned {
            if let Some(t) = a.validated.and_then(|t| t.format(&Rfc3339).ok()) {
                v["validated"] = json!(t);
            }
            if let Some(e) = &a.error {
                v["error"] = e.to_json();
            }
        }
        v
    }
}

/// While a challenge is checked, clients are asked to look again in a
/// second (a validation on a LAN takes milliseconds).
fn poll_soon(a: &Authz) -> Option<u64> {
    matches!(a.status, AuthzStatus::Processing).then_some(1)
}
