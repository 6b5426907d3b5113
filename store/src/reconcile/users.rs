//! The user rules: matching a row to a user, the input digest that lets an
//! unchanged row cost one read, group names resolved to ids, uniqueness of
//! mail, loginName and externalId, and what a new user starts with.

use idsync_schema::{Field, Meta, Rule, Status, User, UserInput, Violation};
use uuid::Uuid;

use super::stored::InputDigest;
use super::{Outcome, Tx, UserMatch, UserWrite, WriteError};
use crate::keys::{self, Index};
use crate::StoreError;

impl Tx<'_> {
    /// The user with `id`, as this transaction sees it.
    pub fn user(&self, id: Uuid) -> Result<Option<User>, StoreError> {
        self.load(id)
    }

    /// Create or update a user.
    pub fn upsert_user(
        &mut self,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        let mut digest = None;
        let matched = match how.match_key.unwrap_or(self.settings.user_match) {
            UserMatch::Mail => {
                let Field::Set(mail) = &input.mail else {
                    return Err(Violation::new("mail", "", Rule::Mandatory).into());
                };
                let d = self.user_digest(&input, groups.as_deref(), how);
                let entry = self.read(&Index::UserMail.key(mail))?;
                let id = entry.as_deref().and_then(keys::trailing_id);
                if let (Some(id), Some(entry)) = (id, &entry) {
                    if entry.len() == 32 && entry[..16] == d {
                        return Ok(Outcome::Unchanged(id));
                    }
                }
                digest = Some(d);
                id
            }
            UserMatch::LoginName => match &input.login_name {
                Field::Set(login) => self.lookup(Index::UserLogin, login)?,
                _ => return Err(Violation::new("loginName", "", Rule::Mandatory).into()),
            },
            UserMatch::ExternalId => match &input.external_id {
                Field::Set(ext) => self.lookup(Index::UserExternalId, ext)?,
                _ => return Err(Violation::new("externalId", "", Rule::Mandatory).into()),
            },
        };
        let existing: Option<User> = match matched {
            Some(id) => self.load(id)?,
            None => None,
        };
        self.put_user(existing, input, groups, how, digest.as_ref())
    }

    /// The [`InputDigest`] of upserting `input` (its groups resolved to
    /// `groups`) with `how` from this transaction's source. Every field is
    /// named, so a field added to [`UserInput`] cannot be left out.
    fn user_digest(
        &self,
        input: &UserInput,
        groups: Option<&[Uuid]>,
        how: &UserWrite,
    ) -> InputDigest {
        use sha2::{Digest, Sha256};
        let UserInput {
            status,
            mail,
            last_name,
            login_name,
            first_name,
            display_name,
            language,
            valid_from,
            valid_to,
            sp_custom_attributes,
            groups: _, // hashed resolved, below
            external_id,
            scim,
        } = input;
        let mut h = Sha256::new();
        let mut text = |t: &str| {
            h.update((t.len() as u64).to_le_bytes());
            h.update(t.as_bytes());
        };
        // Names, not a formatted string: this runs for every row.
        text(self.source.as_str());
        text(how.end_state.map_or("\0", Status::as_str));
        text(status.as_str());
        text(how.application.as_deref().unwrap_or("\0"));
        for f in [
            mail,
            last_name,
            login_name,
            first_name,
            display_name,
            language,
            valid_from,
            valid_to,
            external_id,
        ]
        .into_iter()
        .chain(sp_custom_attributes)
        {
            match f {
                Field::Absent => text("\0absent"),
                Field::Clear => text("\0clear"),
                Field::Set(v) => text(v),
            }
        }
        match scim {
            Field::Absent => h.update([0]),
            Field::Clear => h.update([1]),
            Field::Set(kept) => {
                h.update([2]);
                // serde_json's maps are sorted: one text per content.
                let text = serde_json::to_vec(kept).expect("JSON serialises");
                h.update((text.len() as u64).to_le_bytes());
                h.update(&text);
            }
        }
        match groups {
            None => h.update([0]),
            Some(ids) => {
                h.update([1]);
                h.update((ids.len() as u64).to_le_bytes());
                for id in ids {
                    h.update(id.as_bytes());
                }
            }
        }
        h.finalize()[..16].try_into().expect("16 bytes")
    }

    /// Create a user; an existing mail, loginName or externalId is refused
    /// as not unique (SCIM's POST never updates).
    pub fn create_user(
        &mut self,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        self.put_user(None, input, groups, how, None)
    }

    /// Update `existing` (read with [`Tx::user`]; SCIM's PUT and PATCH:
    /// the id decides, not the match key, so a new mail is a change, not a
    /// new user).
    pub fn update_user(
        &mut self,
        existing: User,
        input: UserInput,
        how: &UserWrite,
    ) -> Result<Outcome, WriteError> {
        let groups = self.resolve_groups(&input.groups)?;
        self.put_user(Some(existing), input, groups, how, None)
    }

    /// Group display names to ids, in order, without repeats; `None` when
    /// the input leaves the groups alone.
    fn resolve_groups(&self, groups: &Field<Vec<String>>) -> Result<Option<Vec<Uuid>>, WriteError> {
        Ok(match groups {
            Field::Absent => None,
            Field::Clear => Some(Vec::new()),
            Field::Set(names) => {
                let mut ids: Vec<Uuid> = Vec::with_capacity(names.len());
                for name in names {
                    let gid = self
                        .lookup(Index::GroupName, name)?
                        .ok_or_else(|| Violation::new("groups", name, Rule::UnknownGroup))?;
                    if !ids.contains(&gid) {
                        ids.push(gid);
                    }
                }
                Some(ids)
            }
        })
    }

    /// `digest`: the input's, when the caller matched by the entry that
    /// keeps it (see [`InputDigest`]).
    fn put_user(
        &mut self,
        existing: Option<User>,
        input: UserInput,
        groups: Option<Vec<Uuid>>,
        how: &UserWrite,
        digest: Option<&InputDigest>,
    ) -> Result<Outcome, WriteError> {
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |u| u.id);

        self.check_user_unique(existing.as_ref(), &input, id)?;
        self.check_manager(&input)?;

        let mut user = existing.clone().unwrap_or_else(|| User {
            id,
            login_name: None,
            mail: None,
            first_name: None,
            last_name: None,
            display_name: None,
            status: input.status,
            language: None,
            valid_from: None,
            valid_to: None,
            sp_custom_attributes: Default::default(),
            groups: Vec::new(),
            roles: self.settings.default_roles.clone(),
            applications: Vec::new(),
            source: self.source,
            activation_mail: Default::default(),
            activations: Default::default(),
            external_id: None,
            scim: Default::default(),
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut user, groups);
        if let Some(state) = how.end_state {
            user.status = state;
        }
        if let Some(app) = &how.application {
            if !user.applications.contains(app) {
                user.applications.push(app.clone());
            }
        }
        user.source = self.source;
        Ok(self.write_digested(existing.as_ref(), user, digest)?)
    }

    /// Refuse a manager (enterprise extension) that is no user.
    fn check_manager(&self, input: &UserInput) -> Result<(), WriteError> {
        let Field::Set(kept) = &input.scim else {
            return Ok(());
        };
        let Some(manager) = idsync_schema::scim::attributes::manager_of(kept) else {
            return Ok(());
        };
        if self.load::<User>(manager)?.is_none() {
            return Err(Violation::new("manager", &manager.to_string(), Rule::NotFound).into());
        }
        Ok(())
    }

    /// Refuse a mail, loginName or externalId of `input` that another user
    /// than `id` holds. A value the matched user (`old`) already holds is
    /// its own in the index: only new values need a look-up (most rows of a
    /// re-import have none).
    fn check_user_unique(
        &self,
        old: Option<&User>,
        input: &UserInput,
        id: Uuid,
    ) -> Result<(), WriteError> {
        let values = [
            (
                Index::UserMail,
                old.and_then(|u| u.mail.as_deref()),
                input.mail.value(),
            ),
            (
                Index::UserLogin,
                old.and_then(|u| u.login_name.as_deref()),
                input.login_name.value(),
            ),
            (
                Index::UserExternalId,
                old.and_then(|u| u.external_id.as_deref()),
                input.external_id.value(),
            ),
        ];
        for (index, current, value) in values {
            let Some(value) = value else { continue };
            if !current.is_some_and(|c| index.same_value(c, value)) {
                self.check_unique(index, value, id)?;
            }
        }
        Ok(())
    }

    /// Delete the user with `id` and its memberships; false when there is
    /// none.
    pub fn delete_user(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(user) = self.load::<User>(id)? else {
            return Ok(false);
        };
        self.remove(&user);
        Ok(true)
    }
}
