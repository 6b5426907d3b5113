//! The certificate rules: profiles (whose state decides whether the
//! assets naming them are `active` or `pending`), enrollment requests and
//! ACME/SCEP registrations (whose status follows a state machine) and
//! certificates.

use idsync_schema::{
    Asset, AssetState, Certificate, CertificateProfile, EnrollmentRequest, Meta, ProfileSettings,
    ProfileState, Registration, Rule, Violation,
};
use uuid::Uuid;

use super::{Outcome, Tx, WriteError};
use crate::keys::{self, Index};
use crate::StoreError;

impl Tx<'_> {
    /// The profile named `name` (any case), as this transaction sees it.
    pub fn profile(&self, name: &str) -> Result<Option<CertificateProfile>, StoreError> {
        self.find(Index::ProfileName, name)
    }

    /// Whether profile `name` exists and is active.
    pub(super) fn profile_is_usable(&self, name: Option<&str>) -> Result<bool, StoreError> {
        let Some(name) = name else { return Ok(false) };
        let Some(id) = self.lookup(Index::ProfileName, name)? else {
            return Ok(false);
        };
        Ok(self
            .load::<CertificateProfile>(id)?
            .is_some_and(|p| p.state == ProfileState::Active))
    }

    /// Create or update a certificate profile, then move the assets that
    /// name it between `pending` and `active`.
    pub fn upsert_profile(&mut self, settings: &ProfileSettings) -> Result<Outcome, WriteError> {
        if let Err(e) = settings.check() {
            return Err(Violation::new(
                "profile",
                &settings.name,
                Rule::Profile {
                    reason: e.to_string(),
                },
            )
            .into());
        }
        let existing = self.profile(&settings.name)?;
        let mut profile = existing.clone().unwrap_or_else(|| CertificateProfile {
            id: Uuid::now_v7(),
            settings: settings.clone(),
            source: self.source,
            meta: Meta::new(self.now),
        });
        profile.settings = settings.clone();
        profile.source = self.source;
        let outcome = self.write(existing.as_ref(), profile)?;
        let was_usable = existing.is_some_and(|p| p.state == ProfileState::Active);
        let usable = settings.state == ProfileState::Active;
        if was_usable != usable {
            self.set_state_of_assets(&settings.name, usable)?;
        }
        Ok(outcome)
    }

    /// Delete profile `name`; the assets naming it become `pending`. False
    /// when there is none.
    pub fn delete_profile(&mut self, name: &str) -> Result<bool, WriteError> {
        let Some(profile) = self.profile(name)? else {
            return Ok(false);
        };
        self.remove(&profile);
        self.set_state_of_assets(&profile.name, false)?;
        Ok(true)
    }

    /// Move the assets that name profile `name` to `active` (`usable`) or
    /// `pending`.
    fn set_state_of_assets(&mut self, name: &str, usable: bool) -> Result<(), StoreError> {
        let state = if usable {
            AssetState::Active
        } else {
            AssetState::Pending
        };
        for key in self.keys_under(&keys::assets_of_profile_prefix(name))? {
            let Some(asset_id) = keys::trailing_id(&key) else {
                continue;
            };
            let Some(asset) = self.load::<Asset>(asset_id)? else {
                continue;
            };
            let mut new = asset.clone();
            new.state = state;
            self.write(Some(&asset), new)?;
        }
        Ok(())
    }

    /// The enrollment request with `id`, as this transaction sees it.
    pub fn request(&self, id: Uuid) -> Result<Option<EnrollmentRequest>, StoreError> {
        self.load(id)
    }

    /// The certificate with `id`, as this transaction sees it.
    pub fn certificate(&self, id: Uuid) -> Result<Option<Certificate>, StoreError> {
        self.load(id)
    }

    /// Store a new or changed enrollment request. A status change must be
    /// one the state machine allows ([`idsync_schema::RequestStatus::may_become`]).
    pub fn put_request(&mut self, new: EnrollmentRequest) -> Result<Outcome, WriteError> {
        let old = self.load::<EnrollmentRequest>(new.id)?;
        if let Some(old) = &old {
            let allowed = old.status.may_become(new.status);
            check_transition(old.status.as_str(), new.status.as_str(), allowed)?;
        }
        Ok(self.write(old.as_ref(), new)?)
    }

    /// The registration with `id`, as this transaction sees it.
    pub fn registration(&self, id: Uuid) -> Result<Option<Registration>, StoreError> {
        self.load(id)
    }

    /// Store a new or changed registration. A status change must be one
    /// the state machine allows
    /// ([`idsync_schema::RegistrationStatus::may_become`]).
    pub fn put_registration(&mut self, new: Registration) -> Result<Outcome, WriteError> {
        let old = self.load::<Registration>(new.id)?;
        if let Some(old) = &old {
            let allowed = old.status.may_become(new.status);
            check_transition(old.status.as_str(), new.status.as_str(), allowed)?;
        }
        // One challenge, one account key: each names one registration.
        if let Some(hash) = &new.challenge_sha256 {
            self.check_unique(Index::RegistrationChallenge, hash, new.id)?;
        }
        if let Some(account) = &new.account {
            self.check_unique(Index::AcmeAccount, &account.thumbprint, new.id)?;
        }
        Ok(self.write(old.as_ref(), new)?)
    }

    /// Store a new or changed certificate. A revocation is final: once
    /// recorded it is never changed or taken back.
    pub fn put_certificate(&mut self, new: Certificate) -> Result<Outcome, WriteError> {
        let old = self.load::<Certificate>(new.id)?;
        if let Some(done) = old.as_ref().and_then(|o| o.revoked.as_ref()) {
            if new.revoked.as_ref() != Some(done) {
                return Err(Violation::new(
                    "revoked",
                    done.reason.as_str(),
                    Rule::Transition {
                        from: "revoked".into(),
                    },
                )
                .into());
            }
        }
        Ok(self.write(old.as_ref(), new)?)
    }
}

/// Refuse a status change its state machine does not allow (`allowed`);
/// keeping the status is always allowed.
fn check_transition(from: &str, to: &str, allowed: bool) -> Result<(), WriteError> {
    if from == to || allowed {
        return Ok(());
    }
    Err(Violation::new(
        "status",
        to,
        Rule::Transition {
            from: from.to_owned(),
        },
    )
    .into())
}
