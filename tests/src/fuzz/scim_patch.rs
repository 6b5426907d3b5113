//! Fuzz target `scim_patch`: SCIM PATCH paths and `PatchOp` bodies
//! (`idsync_schema::scim::patch`) on the path the SCIM server takes: parse
//! the body, split a group's member operations off, apply the rest to the
//! object's JSON, read the result back like a PUT body and validate it.
//!
//! Why: PATCH is the most intricate input identity providers send (value
//! filters, URN paths, path-less operations with dotted keys, Entra's and
//! Okta's variants), and every step works on JSON the client chose. Input:
//! the bytes as a PATCH path (when UTF-8), and as a PatchOp body (when
//! JSON). Checked, beyond not panicking:
//! - every refusal is a typed SCIM error (400 with the `scimType` its step
//!   can give), never anything else;
//! - every path that parses prints and parses back to itself, within the
//!   same nesting bound;
//! - member operations leave no `members` operation (and no path-less
//!   one) for the group's JSON;
//! - a `replace` of a plain attribute leaves that attribute, read as the
//!   mapping reads it, holding the value.

use idsync_schema::model::{Group, Meta, Source, Status, User};
use idsync_schema::rules::RuleSet;
use idsync_schema::scim::error::{ScimError, ScimType};
use idsync_schema::scim::filter::get_ci;
use idsync_schema::scim::mapping;
use idsync_schema::scim::patch::{self, Op, Operation, Path};
use idsync_schema::UserRules;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{print, SCIM_DEPTH};

/// A user as the SCIM server shows it to PATCH (`Resource::bare`).
pub fn user_resource() -> Value {
    let user = User {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001),
        login_name: Some("ann.smith".into()),
        mail: Some("ann.smith@example.org".into()),
        first_name: Some("Ann".into()),
        last_name: Some("Smith".into()),
        display_name: Some("Ann Smith".into()),
        status: Status::Active,
        language: Some("en-GB".into()),
        valid_from: Some("20240101000000Z".into()),
        valid_to: None,
        sp_custom_attributes: [Some("cost-42".into()), None, None, None, None],
        groups: Vec::new(),
        roles: Vec::new(),
        applications: Vec::new(),
        source: Source::Scim,
        activation_mail: Default::default(),
        activations: Default::default(),
        external_id: Some("ext-1".into()),
        scim: serde_json::Map::new(),
        meta: Meta::new(OffsetDateTime::UNIX_EPOCH),
    };
    mapping::user_to_json(&user, &[], "/scim/v2")
}

/// A group as the SCIM server shows it to PATCH.
fn group_resource() -> Value {
    let group = Group {
        id: Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002),
        display_name: "Staff".into(),
        description: Some("All employees".into()),
        external_id: Some("grp-1".into()),
        source: Source::Scim,
        meta: Meta::new(OffsetDateTime::UNIX_EPOCH),
    };
    mapping::group_to_json(&group, None, "/scim/v2")
}

fn assert_typed(e: &ScimError, allowed: &[ScimType], what: &str) {
    assert!(
        e.status == 400 && e.scim_type.is_some_and(|t| allowed.contains(&t)),
        "{what}: untyped or unexpected error {e:?}"
    );
}

pub fn run(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(path) = check_path_text(text) {
            check_round_trip(&path);
        }
    }
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let ops = match patch::parse(&body, SCIM_DEPTH) {
        Ok(ops) => ops,
        Err(e) => {
            use ScimType::*;
            assert_typed(
                &e,
                &[InvalidSyntax, InvalidPath, InvalidValue, NoTarget],
                "parse",
            );
            return;
        }
    };
    for path in ops.iter().filter_map(|o| o.path.as_ref()) {
        check_round_trip(path);
    }
    patch_user(&ops);
    patch_group(ops);
}

fn check_path_text(text: &str) -> Result<Path, ScimError> {
    let parsed = Path::parse(text, SCIM_DEPTH);
    if let Err(e) = &parsed {
        assert_typed(e, &[ScimType::InvalidPath], "path");
    }
    parsed
}

fn check_round_trip(path: &Path) {
    let printed = print::patch_path(path);
    match Path::parse(&printed, SCIM_DEPTH) {
        Ok(again) => assert_eq!(&again, path, "path printed as {printed:?}"),
        Err(e) => panic!("{path:?} printed as {printed:?} does not parse: {e}"),
    }
}

/// Apply `ops` in order, as `write::patch` does; the first error ends it.
fn apply_all(resource: &mut Value, ops: &[Operation]) -> Result<(), ScimError> {
    for o in ops {
        let before = plain_replace(o);
        patch::apply(resource, o, SCIM_DEPTH).inspect_err(|e| {
            use ScimType::*;
            assert_typed(e, &[InvalidPath, NoTarget, InvalidValue], "apply");
        })?;
        if let Some((attr, value)) = before {
            assert_eq!(
                get_ci(resource, attr),
                Some(value),
                "replace {attr} did not leave its value"
            );
        }
    }
    Ok(())
}

/// A `replace` of a plain core attribute (no URN, sub-attribute or filter)
/// with a value that is not an object (objects merge): afterwards the
/// attribute holds exactly that value.
fn plain_replace(o: &Operation) -> Option<(&str, &Value)> {
    let path = o.path.as_ref()?;
    let plain = o.op == Op::Replace
        && path.attr.urn.is_none()
        && path.attr.sub.is_none()
        && path.filter.is_none();
    let value = o.value.as_ref().filter(|v| !v.is_object())?;
    plain.then_some((path.attr.attr.as_str(), value))
}

fn patch_user(ops: &[Operation]) {
    let mut user = user_resource();
    if apply_all(&mut user, ops).is_err() {
        return;
    }
    match mapping::user_input(&user) {
        Ok(input) => {
            // The SCIM source's rules (RFC 7643's by default).
            let rules = UserRules {
                set: RuleSet::RFC7643,
                ..UserRules::default()
            };
            let _ = input.validate(&rules);
        }
        Err(e) => assert_typed(&e, &[ScimType::InvalidValue], "user_input"),
    }
}

fn patch_group(ops: Vec<Operation>) {
    let (rest, _members) = match patch::split_members(ops, SCIM_DEPTH) {
        Ok(split) => split,
        Err(e) => {
            use ScimType::*;
            return assert_typed(&e, &[InvalidPath, InvalidValue], "split_members");
        }
    };
    for o in &rest {
        let path = o.path.as_ref().expect("path-less operations are expanded");
        assert!(!path.is("members"), "a members operation was left: {o:?}");
    }
    let mut group = group_resource();
    if apply_all(&mut group, &rest).is_err() {
        return;
    }
    match mapping::group_input(&group) {
        Ok(input) => {
            let _ = input.validate(&RuleSet::RFC7643);
        }
        Err(e) => assert_typed(&e, &[ScimType::InvalidValue], "group_input"),
    }
}
