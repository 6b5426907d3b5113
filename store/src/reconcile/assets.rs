//! The asset rules: uniqueness of the name, and a state that follows the
//! asset's certificate profile (seed 000).

use idsync_schema::{Asset, AssetInput, AssetState, Meta, ProfileState, Rule, Violation};
use uuid::Uuid;

use super::{Outcome, Tx, WriteError};
use crate::keys::Index;
use crate::StoreError;

impl Tx<'_> {
    /// The asset with `id`, as this transaction sees it.
    pub fn asset(&self, id: Uuid) -> Result<Option<Asset>, StoreError> {
        self.load(id)
    }

    /// Create or update an asset. Its state follows its profile (seed 000).
    pub fn upsert_asset(&mut self, input: AssetInput) -> Result<Outcome, WriteError> {
        let by_name = self.lookup(Index::AssetName, &input.name)?;
        let existing: Option<Asset> = match input.id.or(by_name) {
            Some(id) => self.load(id)?,
            None => None,
        };
        let id = input
            .id
            .or(existing.as_ref().map(|a| a.id))
            .unwrap_or_else(Uuid::now_v7);
        self.check_unique(Index::AssetName, &input.name, id)?;

        let mut asset = existing.clone().unwrap_or_else(|| Asset {
            id,
            name: String::new(),
            description: None,
            asset_type: None,
            owner: None,
            certificate_profile: None,
            organization: None,
            country: None,
            dns_names: Vec::new(),
            ip_addresses: Vec::new(),
            sid: None,
            external_id: None,
            state: AssetState::Pending,
            source: self.source,
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut asset);
        asset.state = if self.profile_is_usable(asset.certificate_profile.as_deref())? {
            AssetState::Active
        } else {
            AssetState::Pending
        };
        asset.source = self.source;
        Ok(self.write(existing.as_ref(), asset)?)
    }

    /// Assign profile `profile` to asset `asset` (seed 000, "Assign
    /// certificate profile"): the profile must exist and be active, and the
    /// asset becomes `active`.
    pub fn assign_profile(&mut self, asset: Uuid, profile: &str) -> Result<Outcome, WriteError> {
        let Some(old) = self.load::<Asset>(asset)? else {
            return Err(Violation::new("asset", &asset.to_string(), Rule::NotFound).into());
        };
        let Some(p) = self.profile(profile)? else {
            return Err(Violation::new("certificateProfile", profile, Rule::NotFound).into());
        };
        if p.state != ProfileState::Active {
            return Err(
                Violation::new("certificateProfile", profile, Rule::ProfileInactive).into(),
            );
        }
        let mut new = old.clone();
        new.certificate_profile = Some(p.name.clone());
        new.state = AssetState::Active;
        new.source = self.source;
        Ok(self.write(Some(&old), new)?)
    }

    /// Delete the asset with `id`; false when there is none.
    pub fn delete_asset(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(asset) = self.load::<Asset>(id)? else {
            return Ok(false);
        };
        self.remove(&asset);
        Ok(true)
    }
}
