//! The three kinds with endpoints (User, Group, Asset) behind one trait:
//! how to load, render, read from a body, validate, write and delete each.
//! Reads, lists and writes are written once over [`Resource`]; what
//! differs between the kinds is here and nowhere else.

use idsync_schema::scim::mapping::{self, ASSET_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};
use idsync_schema::scim::patch::{self, MemberChanges, Operation};
use idsync_schema::scim::view::{self, View};
use idsync_schema::{
    Asset, AssetInput, Group, GroupInput, Kind, Status, User, UserInput, UserRules,
};
use idsync_store::keys::Index;
use idsync_store::reconcile::{Tx, UserWrite};
use idsync_store::{Store, StoreError};
use serde::de::DeserializeOwned;
use serde_json::Value;
use uuid::Uuid;

use super::error::{ScimError, ScimType};

/// The objects the SCIM JSON of another names, as `(id, display)`: a
/// user's groups, a group's members; `None` when not rendered.
pub(crate) type Refs = Option<Vec<(Uuid, String)>>;

/// One kind of resource with an endpoint.
pub(crate) trait Resource: DeserializeOwned + Send + 'static {
    /// What to write, read from a body.
    type Input: Clone + Send + 'static;

    /// The name in errors (`User`).
    const NAME: &'static str;
    /// The core schema a body must name.
    const SCHEMA: &'static str;
    const KIND: Kind;

    /// The version: the ETag is made of it.
    fn version(&self) -> u64;

    /// The object inside the writer's transaction.
    fn load(tx: &Tx<'_>, id: Uuid) -> Result<Option<Self>, StoreError>;

    /// What the object's SCIM JSON refers to: a user's groups; a group's
    /// members when `with_members`.
    fn refs(&self, store: &Store, with_members: bool) -> Result<Refs, ScimError>;

    /// The object's SCIM JSON, naming `refs` (from [`Resource::refs`]):
    /// the one rendering, written as bytes or made a `Value`.
    fn view<'a>(&'a self, refs: &'a Refs, base: &'a str) -> View<'a>;

    /// The SCIM JSON of the object, with what it refers to.
    fn render(&self, store: &Store, base: &str, with_members: bool) -> Result<Value, ScimError> {
        let refs = self.refs(store, with_members)?;
        Ok(self.view(&refs, base).to_value())
    }

    /// The SCIM JSON without references to other objects: what a PATCH
    /// applies to.
    fn bare(&self, base: &str) -> Value {
        self.view(&None, base).to_value()
    }

    /// The input a body states; `id` is the URL's on PUT and PATCH.
    fn input(body: &Value, id: Option<Uuid>) -> Result<Self::Input, ScimError>;

    fn validate(input: &Self::Input, rules: &UserRules) -> Result<(), ScimError>;

    /// Create the object; its id.
    fn create(tx: &mut Tx<'_>, input: Self::Input) -> Result<Uuid, ScimError>;

    /// Overwrite `existing` with `input`.
    fn update(tx: &mut Tx<'_>, existing: Self, input: Self::Input) -> Result<(), ScimError>;

    /// Remove `existing`; `false` when it was gone already. `deactivate` is
    /// `scim.delete_deactivates`, which only users, having a status, honour.
    fn delete(tx: &mut Tx<'_>, existing: Self, deactivate: bool) -> Result<bool, ScimError>;

    /// The indexes that answer `attr eq value` (`attr` dotted and lower
    /// case), in the order to try them; none when a scan is needed.
    fn indexes(attr: &str) -> &'static [Index];

    /// The members a POST or PUT body states (groups only): all of them.
    fn stated_members(_body: &Value) -> Option<MemberChanges> {
        None
    }

    /// Take a PATCH's operations on members out of `ops` (groups only).
    fn split_members(
        ops: Vec<Operation>,
        _max_depth: usize,
    ) -> Result<(Vec<Operation>, Option<MemberChanges>), ScimError> {
        Ok((ops, None))
    }
}

/// The display text of a member.
fn user_display(u: &User) -> String {
    u.display_name
        .clone()
        .or_else(|| u.login_name.clone())
        .or_else(|| u.mail.clone())
        .unwrap_or_else(|| u.id.to_string())
}

impl Resource for User {
    type Input = UserInput;
    const NAME: &'static str = "User";
    const SCHEMA: &'static str = USER_SCHEMA;
    const KIND: Kind = Kind::User;

    fn version(&self) -> u64 {
        self.meta.version
    }

    fn load(tx: &Tx<'_>, id: Uuid) -> Result<Option<Self>, StoreError> {
        tx.user(id)
    }

    fn refs(&self, store: &Store, _with_members: bool) -> Result<Refs, ScimError> {
        let mut groups = Vec::with_capacity(self.groups.len());
        for gid in &self.groups {
            if let Some(g) = store.object::<Group>(Kind::Group, *gid)? {
                groups.push((g.id, g.display_name));
            }
        }
        Ok(Some(groups))
    }

    fn view<'a>(&'a self, refs: &'a Refs, base: &'a str) -> View<'a> {
        view::user(self, refs.as_deref().unwrap_or_default(), base)
    }

    fn input(body: &Value, _id: Option<Uuid>) -> Result<UserInput, ScimError> {
        Ok(mapping::user_input(body)?)
    }

    fn validate(input: &UserInput, rules: &UserRules) -> Result<(), ScimError> {
        Ok(input.validate(rules)?)
    }

    fn create(tx: &mut Tx<'_>, input: UserInput) -> Result<Uuid, ScimError> {
        Ok(tx.create_user(input, &UserWrite::default())?.id())
    }

    fn update(tx: &mut Tx<'_>, existing: Self, input: UserInput) -> Result<(), ScimError> {
        tx.update_user(existing, input, &UserWrite::default())?;
        Ok(())
    }

    fn delete(tx: &mut Tx<'_>, existing: Self, deactivate: bool) -> Result<bool, ScimError> {
        if !deactivate {
            return Ok(tx.delete_user(existing.id)?);
        }
        let mut input = mapping::user_input(&existing.bare(""))?;
        input.status = Status::Inactive;
        Self::update(tx, existing, input)?;
        Ok(true)
    }

    fn indexes(attr: &str) -> &'static [Index] {
        match attr {
            // A loginName hit settles it; only users without one show
            // their mail as userName.
            "username" => &[Index::UserLogin, Index::UserMail],
            "emails" | "emails.value" => &[Index::UserMail],
            "externalid" => &[Index::UserExternalId],
            _ => &[],
        }
    }
}

impl Resource for Group {
    type Input = GroupInput;
    const NAME: &'static str = "Group";
    const SCHEMA: &'static str = GROUP_SCHEMA;
    const KIND: Kind = Kind::Group;

    fn version(&self) -> u64 {
        self.meta.version
    }

    fn load(tx: &Tx<'_>, id: Uuid) -> Result<Option<Self>, StoreError> {
        tx.group(id)
    }

    fn refs(&self, store: &Store, with_members: bool) -> Result<Refs, ScimError> {
        if !with_members {
            return Ok(None);
        }
        let members = store
            .member_users(self.id)?
            .iter()
            .map(|u| (u.id, user_display(u)))
            .collect();
        Ok(Some(members))
    }

    fn view<'a>(&'a self, refs: &'a Refs, base: &'a str) -> View<'a> {
        view::group(self, refs.as_deref(), base)
    }

    fn input(body: &Value, _id: Option<Uuid>) -> Result<GroupInput, ScimError> {
        Ok(mapping::group_input(body)?)
    }

    fn validate(input: &GroupInput, rules: &UserRules) -> Result<(), ScimError> {
        Ok(input.validate(&rules.set)?)
    }

    fn create(tx: &mut Tx<'_>, input: GroupInput) -> Result<Uuid, ScimError> {
        Ok(tx.create_group(input)?.id())
    }

    fn update(tx: &mut Tx<'_>, existing: Self, input: GroupInput) -> Result<(), ScimError> {
        tx.update_group(existing, input)?;
        Ok(())
    }

    fn delete(tx: &mut Tx<'_>, existing: Self, _deactivate: bool) -> Result<bool, ScimError> {
        Ok(tx.delete_group(existing.id)?)
    }

    fn indexes(attr: &str) -> &'static [Index] {
        match attr {
            "displayname" => &[Index::GroupName],
            "externalid" => &[Index::GroupExternalId],
            _ => &[],
        }
    }

    /// POST and PUT state the whole group: no members attribute, no members.
    fn stated_members(body: &Value) -> Option<MemberChanges> {
        Some(MemberChanges {
            replace: Some(mapping::member_values(body).unwrap_or_default()),
            ..MemberChanges::default()
        })
    }

    fn split_members(
        ops: Vec<Operation>,
        max_depth: usize,
    ) -> Result<(Vec<Operation>, Option<MemberChanges>), ScimError> {
        let (ops, members) = patch::split_members(ops, max_depth)?;
        Ok((ops, Some(members)))
    }
}

impl Resource for Asset {
    type Input = AssetInput;
    const NAME: &'static str = "Asset";
    const SCHEMA: &'static str = ASSET_SCHEMA;
    const KIND: Kind = Kind::Asset;

    fn version(&self) -> u64 {
        self.meta.version
    }

    fn load(tx: &Tx<'_>, id: Uuid) -> Result<Option<Self>, StoreError> {
        tx.asset(id)
    }

    fn refs(&self, _store: &Store, _with_members: bool) -> Result<Refs, ScimError> {
        Ok(None)
    }

    fn view<'a>(&'a self, _refs: &'a Refs, base: &'a str) -> View<'a> {
        view::asset(self, base)
    }

    fn input(body: &Value, id: Option<Uuid>) -> Result<AssetInput, ScimError> {
        Ok(mapping::asset_input(body, id)?)
    }

    fn validate(input: &AssetInput, rules: &UserRules) -> Result<(), ScimError> {
        Ok(input.validate(&rules.set)?)
    }

    /// Names are unique: a POST does not take over an asset by its name
    /// (the upsert would).
    fn create(tx: &mut Tx<'_>, input: AssetInput) -> Result<Uuid, ScimError> {
        if tx.lookup(Index::AssetName, &input.name)?.is_some() {
            return Err(ScimError::typed(
                409,
                ScimType::Uniqueness,
                format!("an asset named {:?} exists", input.name),
            ));
        }
        Ok(tx.upsert_asset(input)?.id())
    }

    fn update(tx: &mut Tx<'_>, _existing: Self, input: AssetInput) -> Result<(), ScimError> {
        tx.upsert_asset(input)?;
        Ok(())
    }

    fn delete(tx: &mut Tx<'_>, existing: Self, _deactivate: bool) -> Result<bool, ScimError> {
        Ok(tx.delete_asset(existing.id)?)
    }

    fn indexes(attr: &str) -> &'static [Index] {
        match attr {
            "name" => &[Index::AssetName],
            _ => &[],
        }
    }
}
