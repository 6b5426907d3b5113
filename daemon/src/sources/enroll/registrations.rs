//! ACME and SCEP registrations (seed 002): an asset is registered for a
//! profile and a set of names; the device then enrolls itself with the
//! secret the registration hands out once.
//!
//! - ACME: an external account binding (RFC 8555 §7.3.4): the key id is
//!   the registration's id, the HMAC key is derived from the daemon's
//!   registration key (`DATA_DIR/registration.key`) and that id, so the
//!   store holds no key and the daemon can check a binding at any time.
//! - SCEP: a challenge password, random, stored as its SHA-256 only.
//!
//! Every transition (`pending_approval` → `active` → `used`, `expired`,
//! `revoked`; or `rejected`) is a compare-and-set in the writer's
//! transaction, so of two deciders one wins, and each is a change event
//! and an audit line.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use idsync_schema::cert::{check_names, split_dns_list};
use idsync_schema::{Kind, Meta, Protocol, Registration, RegistrationStatus};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use uuid::Uuid;

use idsync_store::reconcile::Tx;
use zeroize::Zeroizing;

use super::checks::Resolved;

use super::{EnrollError, Enrollment, Target};

/// A secret shown once; zeroed when dropped.
pub type Secret = Zeroizing<String>;

/// What a registration's requester is shown, once.
pub struct Registered {
    pub registration: Registration,
    /// ACME: the external account binding's HMAC key (base64url); its key
    /// id is the registration's id.
    pub eab_hmac_key: Option<Secret>,
    /// SCEP: the challenge password.
    pub challenge: Option<Secret>,
}

impl std::fmt::Debug for Registered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registered")
            .field("registration", &self.registration.id)
            .finish_non_exhaustive()
    }
}

/// Filters of `registrations list`.
#[derive(Debug, Clone, Default)]
pub(crate) struct RegistrationFilter {
    pub status: Option<RegistrationStatus>,
    /// Asset name or id.
    pub asset: Option<String>,
    pub protocol: Option<Protocol>,
}

impl Enrollment {
    /// Register an asset for ACME or SCEP: the asset and profile must
    /// allow it, every name must be the asset's and inside the profile's
    /// policy (none given: the asset's names).
    pub(crate) async fn register(
        &self,
        who: &str,
        protocol: Protocol,
        target: &Target,
        dns: Option<&str>,
    ) -> Result<Registered, EnrollError> {
        if !matches!(protocol, Protocol::Acme | Protocol::Scep) {
            return Err(EnrollError::Invalid(format!(
                "registrations are for ACME and SCEP, not {protocol}"
            )));
        }
        let resolved = self.resolve(target, protocol)?;
        let asset = resolved.asset.as_ref().map(|a| a.id).ok_or_else(|| {
            EnrollError::Invalid("a registration is for an asset: name one".into())
        })?;
        let names = registered_names(&resolved, dns)?;
        let now = OffsetDateTime::now_utc();
        let mut r = Registration {
            id: Uuid::now_v7(),
            protocol,
            asset,
            profile: resolved.profile.name.clone(),
            dns_names: names,
            expires: now + time::Duration::days(i64::from(self.registration_days)),
            status: match resolved.profile.requires_approval {
                true => RegistrationStatus::PendingApproval,
                false => RegistrationStatus::Active,
            },
            requester: who.to_owned(),
            decided_by: None,
            comment: None,
            challenge_sha256: None,
            account: None,
            meta: Meta::new(now),
        };
        let (mut eab_hmac_key, mut challenge) = (None, None);
        match protocol {
            Protocol::Acme => eab_hmac_key = Some(self.eab_hmac_key(r.id)),
            _ => {
                let secret = random_secret()?;
                r.challenge_sha256 = Some(challenge_sha256(&secret));
                challenge = Some(secret);
            }
        }
        let stored = r.clone();
        self.write(who, move |tx| {
            tx.put_registration(r.clone())?;
            Ok(())
        })
        .await?;
        audit(&stored, who, "registered");
        Ok(Registered {
            registration: stored,
            eab_hmac_key,
            challenge,
        })
    }

    /// The HMAC key of the external account binding of registration `id`
    /// (base64url of 32 bytes).
    pub(crate) fn eab_hmac_key(&self, id: Uuid) -> Secret {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.registration_key)
            .expect("HMAC takes any key length");
        mac.update(b"idsync acme eab\0");
        mac.update(id.as_bytes());
        Zeroizing::new(URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    /// One registration.
    pub(crate) fn registration(&self, id: Uuid) -> Result<Registration, EnrollError> {
        self.store()
            .object::<Registration>(Kind::Registration, id)?
            .ok_or_else(|| EnrollError::NotFound(format!("no registration {id}")))
    }

    /// Registrations matching `filter`, newest first, at most `max_listed`.
    pub(crate) fn registrations(
        &self,
        filter: &RegistrationFilter,
    ) -> Result<Vec<Registration>, EnrollError> {
        let asset = match &filter.asset {
            Some(a) => Some(self.asset(a)?.id),
            None => None,
        };
        self.newest(Kind::Registration, |r: &Registration| {
            filter.status.is_none_or(|s| r.status == s)
                && asset.is_none_or(|a| r.asset == a)
                && filter.protocol.is_none_or(|p| r.protocol == p)
        })
    }

    /// An approver says yes (not to their own registration).
    pub(crate) async fn approve_registration(
        &self,
        who: &str,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Registration, EnrollError> {
        self.decide_registration(who, id, RegistrationStatus::Active, comment)
            .await
    }

    /// An approver says no (not to their own registration).
    pub(crate) async fn reject_registration(
        &self,
        who: &str,
        id: Uuid,
        comment: Option<String>,
    ) -> Result<Registration, EnrollError> {
        self.decide_registration(who, id, RegistrationStatus::Rejected, comment)
            .await
    }

    async fn decide_registration(
        &self,
        who: &str,
        id: Uuid,
        to: RegistrationStatus,
        comment: Option<String>,
    ) -> Result<Registration, EnrollError> {
        let r = self.registration(id)?;
        if r.requester == who {
            return Err(EnrollError::Forbidden(format!(
                "{who} made registration {id} and may not decide on it: another approver must"
            )));
        }
        let decider = who.to_owned();
        self.move_registration(who, r, &[RegistrationStatus::PendingApproval], to, |r| {
            r.decided_by = Some(decider);
            r.comment = comment;
        })
        .await
    }

    /// Withdraw a registration that is not final yet (its secret stops
    /// working; certificates issued under it stay valid: revoke those).
    pub(crate) async fn revoke_registration(
        &self,
        who: &str,
        id: Uuid,
    ) -> Result<Registration, EnrollError> {
        use RegistrationStatus::*;
        let r = self.registration(id)?;
        self.move_registration(who, r, &[PendingApproval, Active, Used], Revoked, |_| {})
            .await
    }

    /// Move every registration past its expiry to `expired`; how many.
    pub(crate) async fn expire_registrations(&self) -> Result<usize, EnrollError> {
        let now = OffsetDateTime::now_utc();
        let mut due = Vec::new();
        self.store()
            .for_each::<Registration>(Kind::Registration, |r| {
                if !r.status.is_final() && r.is_past(now) {
                    due.push(r);
                }
                Ok(true)
            })?;
        let n = due.len();
        for r in due {
            let from = [r.status];
            let expired = RegistrationStatus::Expired;
            match self
                .move_registration("idsync", r, &from, expired, |_| {})
                .await
            {
                Ok(_) | Err(EnrollError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(n)
    }

    /// Move `r` to `to` if it is still in one of `from` when the write
    /// commits, with `change` applied.
    pub(super) async fn move_registration(
        &self,
        who: &str,
        mut r: Registration,
        from: &[RegistrationStatus],
        to: RegistrationStatus,
        change: impl FnOnce(&mut Registration),
    ) -> Result<Registration, EnrollError> {
        let id = r.id;
        if !from.contains(&r.status) {
            return Err(EnrollError::Conflict(format!(
                "registration {id} is {}: it cannot become {to}",
                r.status
            )));
        }
        r.status = to;
        change(&mut r);
        let allowed = from.to_vec();
        let stored = self
            .write(who, move |tx| {
                let now = tx
                    .registration(id)?
                    .ok_or_else(|| EnrollError::NotFound(format!("no registration {id}")))?;
                if !allowed.contains(&now.status) {
                    return Err(EnrollError::Conflict(format!(
                        "registration {id} became {} meanwhile: it cannot become {to}",
                        now.status
                    )));
                }
                tx.put_registration(r.clone())?;
                Ok(r.clone())
            })
            .await?;
        audit(&stored, who, to.as_str());
        Ok(stored)
    }
}

/// Use up registration `r` (a SCEP challenge) in `tx`: it must still be
/// active there, so of two requests spending one challenge only the
/// first to commit does. The registration as stored.
pub(super) fn spend(tx: &mut Tx<'_>, mut r: Registration) -> Result<Registration, EnrollError> {
    let id = r.id;
    let now = tx
        .registration(id)?
        .ok_or_else(|| EnrollError::NotFound(format!("no registration {id}")))?;
    if now.status != RegistrationStatus::Active {
        return Err(EnrollError::Invalid(format!(
            "registration {id} became {} meanwhile: its challenge password is spent",
            now.status
        )));
    }
    r.status = RegistrationStatus::Used;
    tx.put_registration(r.clone())?;
    Ok(r)
}

/// The audit line of a registration [`spend`] used up, once committed.
pub(super) fn audit_spent(spent: Option<&Registration>, who: &str) {
    if let Some(r) = spent {
        audit(r, who, RegistrationStatus::Used.as_str());
    }
}

/// The names a registration allows: the ones given (comma-separated) or
/// else the asset's; each must be the asset's and inside the policy.
fn registered_names(resolved: &Resolved, dns: Option<&str>) -> Result<Vec<String>, EnrollError> {
    let asset_names: Vec<String> = resolved
        .asset
        .iter()
        .flat_map(|a| a.dns_names.iter().map(|n| n.to_ascii_lowercase()))
        .collect();
    let names = match dns {
        Some(list) => split_dns_list(list),
        None => asset_names.clone(),
    };
    for n in &names {
        if !asset_names.contains(n) {
            return Err(EnrollError::Invalid(format!(
                "{n:?} is not one of the asset's DNS names ({})",
                asset_names.join(", ")
            )));
        }
    }
    check_names(&resolved.profile, &names, &[])?;
    Ok(names)
}

/// 20 random bytes as hex (40 characters): a challenge password. Hex, not
/// base64url: clients put it in a PrintableString, which has no `_` (a
/// CSR with one does not parse, and the enrollment is refused).
fn random_secret() -> Result<Secret, EnrollError> {
    let mut b = Zeroizing::new([0u8; 20]);
    getrandom::fill(b.as_mut())
        .map_err(|e| EnrollError::Internal(format!("no random challenge: {e}")))?;
    Ok(Zeroizing::new(hex::encode(b.as_ref())))
}

/// What a registration keeps of its challenge: SHA-256, hex. (A SCEP
/// server compares a presented challenge's hash with it in constant time.)
pub(crate) fn challenge_sha256(challenge: &str) -> String {
    hex::encode(Sha256::digest(challenge.as_bytes()))
}

fn audit(r: &Registration, who: &str, what: &str) {
    tracing::info!(
        target: "idsync::audit",
        registration = %r.id,
        protocol = %r.protocol,
        profile = %r.profile,
        asset = %r.asset,
        requester = %r.requester,
        by = who,
        source = "API",
        "registration {what}"
    );
}
