//! The group rules: uniqueness of displayName and externalId, and
//! membership. Memberships are kept on the users (a marker key per
//! membership), so every membership change here is a user write, and the
//! group's own version moves with it (its ETag, as over SCIM).

use std::collections::BTreeSet;

use idsync_schema::rules::MAX_GROUPS;
use idsync_schema::{Field, Group, GroupInput, Meta, Rule, User, Violation};
use uuid::Uuid;

use super::{Outcome, Tx, WriteError};
use crate::keys::{self, Index};
use crate::StoreError;

impl Tx<'_> {
    /// The group with `id`, as this transaction sees it.
    pub fn group(&self, id: Uuid) -> Result<Option<Group>, StoreError> {
        self.load(id)
    }

    /// The ids of the members of `group`, as this transaction sees them.
    pub fn members_of(&self, group: Uuid) -> Result<BTreeSet<Uuid>, StoreError> {
        Ok(self
            .keys_under(&keys::members_prefix(group))?
            .iter()
            .filter_map(|k| keys::trailing_id(k))
            .collect())
    }

    /// Create or update a group; a stated member list replaces the members.
    pub fn upsert_group(&mut self, input: GroupInput) -> Result<Outcome, WriteError> {
        let existing = self.find::<Group>(Index::GroupName, &input.display_name)?;
        self.put_group(existing, input)
    }

    /// Create a group; an existing displayName or externalId is refused.
    pub fn create_group(&mut self, input: GroupInput) -> Result<Outcome, WriteError> {
        self.put_group(None, input)
    }

    /// Update `existing` (read with [`Tx::group`]; a new displayName
    /// renames it).
    pub fn update_group(
        &mut self,
        existing: Group,
        input: GroupInput,
    ) -> Result<Outcome, WriteError> {
        self.put_group(Some(existing), input)
    }

    /// Resolve a member named by mail or loginName.
    fn resolve_member(&self, member: &str) -> Result<Option<Uuid>, StoreError> {
        let (first, second) = if member.contains('@') {
            (Index::UserMail, Index::UserLogin)
        } else {
            (Index::UserLogin, Index::UserMail)
        };
        match self.lookup(first, member)? {
            Some(id) => Ok(Some(id)),
            None => self.lookup(second, member),
        }
    }

    /// Create (`existing` none) or update a group: the one body of
    /// [`Tx::upsert_group`], [`Tx::create_group`] and [`Tx::update_group`].
    fn put_group(
        &mut self,
        existing: Option<Group>,
        input: GroupInput,
    ) -> Result<Outcome, WriteError> {
        let id = existing.as_ref().map_or_else(Uuid::now_v7, |g| g.id);
        self.check_unique(Index::GroupName, &input.display_name, id)?;
        if let Field::Set(ext) = &input.external_id {
            self.check_unique(Index::GroupExternalId, ext, id)?;
        }

        // Check every member before queuing anything: a refused row leaves
        // no trace.
        let edits = match &input.members {
            Field::Absent => Vec::new(),
            members => self.plan_members(id, members)?,
        };

        let mut group = existing.clone().unwrap_or_else(|| Group {
            id,
            display_name: String::new(),
            description: None,
            external_id: None,
            source: self.source,
            meta: Meta::new(self.now),
        });
        input.apply_to(&mut group);
        group.source = self.source;
        // A membership change is a change of the group too (its version and
        // ETag move, its event says `members`), as over SCIM. The group's
        // event comes first, then its members'.
        let outcome = if edits.is_empty() {
            self.write(existing.as_ref(), group)?
        } else {
            self.emit(existing.as_ref(), group, &["members"])?
        };
        for (user, join) in edits {
            self.set_member(&user, id, join)?;
        }
        Ok(outcome)
    }

    /// What the stated member list `members` changes in group `gid`: each
    /// user to join (`true`) or leave, every one checked (known, room for
    /// one more group) before the caller queues anything.
    fn plan_members(
        &self,
        gid: Uuid,
        members: &Field<Vec<String>>,
    ) -> Result<Vec<(User, bool)>, WriteError> {
        let mut wanted: Vec<Uuid> = Vec::new();
        for m in members.value().into_iter().flatten() {
            let uid = self
                .resolve_member(m)?
                .ok_or_else(|| Violation::new("members", m, Rule::UnknownMember))?;
            if !wanted.contains(&uid) {
                wanted.push(uid);
            }
        }
        let current = self.members_of(gid)?;
        let mut edits = Vec::new();
        for uid in wanted.iter().filter(|u| !current.contains(u)) {
            let user: User = self.load(*uid)?.ok_or_else(|| StoreError::Corrupt {
                key: format!("user {uid}"),
                message: "index points at a missing user".into(),
            })?;
            check_room(&user)?;
            edits.push((user, true));
        }
        for uid in current.iter().filter(|u| !wanted.contains(u)) {
            edits.extend(self.load::<User>(*uid)?.map(|user| (user, false)));
        }
        Ok(edits)
    }

    /// Queue `user` joining (`join`) or leaving group `gid`. Memberships
    /// live on the users (their marker keys), so this is a user write.
    fn set_member(&mut self, user: &User, gid: Uuid, join: bool) -> Result<(), StoreError> {
        let mut new = user.clone();
        if join {
            new.groups.push(gid);
        } else {
            new.groups.retain(|g| *g != gid);
        }
        self.write(Some(user), new)?;
        Ok(())
    }

    /// Add users to and remove users from `group` (ids; SCIM's member
    /// PATCH), without touching its other members. Every user to add must
    /// exist and have room for one more group; everything is checked before
    /// anything is queued. When a membership changes, the group gets an
    /// `updated` event naming `members` (its version, the ETag, moves).
    /// Returns whether anything changed.
    pub fn change_members(
        &mut self,
        group: &Group,
        add: &[Uuid],
        remove: &[Uuid],
    ) -> Result<bool, WriteError> {
        let gid = group.id;
        let mut seen = BTreeSet::new();
        let mut edits: Vec<(User, bool)> = Vec::new();
        for uid in add.iter().filter(|u| !remove.contains(u)) {
            if !seen.insert(*uid) {
                continue;
            }
            let user: User = self
                .load(*uid)?
                .ok_or_else(|| Violation::new("members", &uid.to_string(), Rule::UnknownMember))?;
            if user.groups.contains(&gid) {
                continue;
            }
            check_room(&user)?;
            edits.push((user, true));
        }
        for uid in remove {
            if !seen.insert(*uid) {
                continue;
            }
            if let Some(user) = self.load::<User>(*uid)? {
                if user.groups.contains(&gid) {
                    edits.push((user, false));
                }
            }
        }
        if edits.is_empty() {
            return Ok(false);
        }
        // Unlike a stated member list, the members' events come first here.
        for (user, join) in edits {
            self.set_member(&user, gid, join)?;
        }
        self.emit(Some(group), group.clone(), &["members"])?;
        Ok(true)
    }

    /// Delete the group with `id`; its members leave it first (each such
    /// user gets an `updated` event). False when there is none.
    pub fn delete_group(&mut self, id: Uuid) -> Result<bool, WriteError> {
        let Some(group) = self.load::<Group>(id)? else {
            return Ok(false);
        };
        for uid in self.members_of(id)? {
            if let Some(user) = self.load::<User>(uid)? {
                self.set_member(&user, id, false)?;
            }
        }
        self.remove(&group);
        Ok(true)
    }
}

/// Refuse `user` joining one more group when it has the most it may.
fn check_room(user: &User) -> Result<(), WriteError> {
    if user.groups.len() >= MAX_GROUPS {
        let max = MAX_GROUPS;
        let who = user.login_name.as_ref().or(user.mail.as_ref());
        let who = who.map_or_else(|| user.id.to_string(), Clone::clone);
        return Err(Violation::new("members", &who, Rule::TooManyGroups { max }).into());
    }
    Ok(())
}
