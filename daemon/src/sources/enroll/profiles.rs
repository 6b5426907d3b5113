//! Certificate profiles through the API: listing, creating, deleting,
//! and assigning one to an asset. Profiles the configuration file defines
//! are refused here: the next reload would undo the change.

use idsync_schema::{Asset, CertificateProfile, Kind, ProfileSettings};

use idsync_store::reconcile::Outcome;

use super::{EnrollError, Enrollment};

impl Enrollment {
    /// Every profile.
    pub(crate) fn profiles(&self) -> Result<Vec<CertificateProfile>, EnrollError> {
        let mut out = Vec::new();
        self.store()
            .for_each::<CertificateProfile>(Kind::Profile, |p| {
                out.push(p);
                Ok(true)
            })?;
        Ok(out)
    }

    /// One profile by name or id.
    pub(crate) fn profile(&self, key: &str) -> Result<CertificateProfile, EnrollError> {
        self.store()
            .find::<CertificateProfile>(Kind::Profile, key)?
            .ok_or_else(|| EnrollError::NotFound(format!("no certificate profile {key:?}")))
    }

    fn refuse_file_profile(&self, name: &str) -> Result<(), EnrollError> {
        let defined = self
            .file_profiles
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&name.to_lowercase());
        if defined {
            return Err(EnrollError::Conflict(format!(
                "profile {name:?} is defined in the configuration file: change it there"
            )));
        }
        Ok(())
    }

    /// Create or replace a profile; true when it was created.
    pub(crate) async fn put_profile(
        &self,
        who: &str,
        settings: ProfileSettings,
    ) -> Result<(bool, CertificateProfile), EnrollError> {
        self.refuse_file_profile(&settings.name)?;
        settings
            .check()
            .map_err(|e| EnrollError::Invalid(e.to_string()))?;
        self.write(who, move |tx| {
            let outcome = tx.upsert_profile(&settings)?;
            let created = matches!(outcome, Outcome::Created(_));
            let profile = tx
                .profile(&settings.name)?
                .ok_or_else(|| EnrollError::Internal("the profile vanished".into()))?;
            Ok((created, profile))
        })
        .await
    }

    /// Delete a profile; its assets become `pending`.
    pub(crate) async fn delete_profile(&self, who: &str, name: &str) -> Result<(), EnrollError> {
        self.refuse_file_profile(name)?;
        let name = name.to_owned();
        self.write(who, move |tx| {
            if tx.delete_profile(&name)? {
                Ok(())
            } else {
                Err(EnrollError::NotFound(format!(
                    "no certificate profile {name:?}"
                )))
            }
        })
        .await
    }

    /// Assign an active profile to an asset, which becomes `active` (seed
    /// 000, "Assign certificate profile").
    pub(crate) async fn assign_profile(
        &self,
        who: &str,
        asset: &str,
        profile: &str,
    ) -> Result<Asset, EnrollError> {
        let id = self.asset(asset)?.id;
        let profile = profile.to_owned();
        self.write(who, move |tx| {
            tx.assign_profile(id, &profile)?;
            tx.asset(id)?
                .ok_or_else(|| EnrollError::Internal("the asset vanished".into()))
        })
        .await
    }

    pub(super) fn asset(&self, key: &str) -> Result<Asset, EnrollError> {
        self.store()
            .find::<Asset>(Kind::Asset, key)?
            .ok_or_else(|| EnrollError::NotFound(format!("no asset {key:?}")))
    }
}
