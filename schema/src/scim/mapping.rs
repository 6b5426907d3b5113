//! Domain objects ↔ SCIM resources. The one place that says which SCIM
//! attribute is which idsync field (docs/scim.md repeats the table):
//!
//! | SCIM | idsync |
//! | --- | --- |
//! | `userName` | `loginName` (shown as `mail` when a user has none) |
//! | `emails` (primary, else `work`, else first) | `mail` |
//! | `name.givenName` / `name.familyName` | `firstName` / `lastName` |
//! | `displayName`, `externalId` | same |
//! | `active` | `status` (`active`/`inactive`) |
//! | `preferredLanguage` (else `locale`) | `language` |
//! | idsync extension | `validFrom`, `validTo`, `spCustomAttribute1..5`; read-only `roles`, `applications`, `source`, `activationMail` |
//! | every other attribute of the User schema and the enterprise extension | `scim`, kept as sent ([`super::attributes`]) |
//!
//! Reading a body yields the same `UserInput`/`GroupInput`/`AssetInput` a
//! CSV row yields, with every attribute the body leaves out cleared (a POST
//! or a PUT states the whole resource). Read-only attributes are ignored.

use crate::{Asset, AssetInput, Field, Group, GroupInput, Status, User, UserInput};
use serde_json::Value;
use uuid::Uuid;

use super::error::{ScimError, ScimType};
use super::filter::get_ci;

pub const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
pub const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
pub const ENTERPRISE_SCHEMA: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
pub const IDSYNC_USER_SCHEMA: &str = "urn:idsync:params:scim:schemas:extension:idsync:2.0:User";
pub const IDSYNC_GROUP_SCHEMA: &str = "urn:idsync:params:scim:schemas:extension:idsync:2.0:Group";
pub const ASSET_SCHEMA: &str = "urn:idsync:params:scim:schemas:core:2.0:Asset";

/// The weak ETag of a version.
pub fn etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// A user as SCIM shows it; `groups` are (id, displayName) of its groups.
pub fn user_to_json(u: &User, groups: &[(Uuid, String)], base: &str) -> Value {
    super::view::user(u, groups, base).to_value()
}

/// A group as SCIM shows it; `members` are (id, display) of its users
/// (`None`: the attribute was not asked for and is left out).
pub fn group_to_json(g: &Group, members: Option<&[(Uuid, String)]>, base: &str) -> Value {
    super::view::group(g, members, base).to_value()
}

/// An asset as SCIM shows it.
pub fn asset_to_json(a: &Asset, base: &str) -> Value {
    super::view::asset(a, base).to_value()
}

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

/// A string attribute: absent, null or empty clears it.
fn text(obj: Option<&Value>, name: &str) -> Result<Field<String>, ScimError> {
    match obj.and_then(|o| get_ci(o, name)) {
        None | Some(Value::Null) => Ok(Field::Clear),
        Some(Value::String(s)) if s.is_empty() => Ok(Field::Clear),
        Some(Value::String(s)) => Ok(Field::Set(s.clone())),
        Some(other) => Err(invalid(format!("{name} must be a string, not {other}"))),
    }
}

fn required(obj: &Value, name: &str) -> Result<String, ScimError> {
    match text(Some(obj), name)? {
        Field::Set(s) => Ok(s),
        _ => Err(invalid(format!("{name} is mandatory"))),
    }
}

/// A boolean, also as Entra's strings `"True"`/`"False"`.
pub fn boolean(v: &Value, name: &str) -> Result<bool, ScimError> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") => Ok(false),
        other => Err(invalid(format!("{name} must be a boolean, not {other}"))),
    }
}

fn strings(obj: &Value, name: &str) -> Result<Field<Vec<String>>, ScimError> {
    match get_ci(obj, name) {
        None | Some(Value::Null) => Ok(Field::Clear),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                m => get_ci(m, "value")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| invalid(format!("{name} must hold strings"))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| {
                if v.is_empty() {
                    Field::Clear
                } else {
                    Field::Set(v)
                }
            }),
        Some(Value::String(s)) => Ok(Field::Set(vec![s.clone()])),
        Some(other) => Err(invalid(format!("{name} must be an array, not {other}"))),
    }
}

/// Whether the body declares `schema` in `schemas` (RFC 7643 §3: every
/// resource body names its schemas).
pub fn require_schema(body: &Value, schema: &str) -> Result<(), ScimError> {
    let ok = get_ci(body, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter()
                .any(|v| v.as_str().is_some_and(|v| v.eq_ignore_ascii_case(schema)))
        });
    if !body.is_object() || !ok {
        return Err(ScimError::bad(
            ScimType::InvalidSyntax,
            format!("the body must be an object whose schemas include {schema}"),
        ));
    }
    Ok(())
}

/// The primary e-mail: `primary: true`, else type `work`, else the first.
fn primary_mail(body: &Value) -> Result<Option<String>, ScimError> {
    let Some(emails) = get_ci(body, "emails") else {
        return Ok(None);
    };
    let list: Vec<&Value> = match emails {
        Value::Array(a) => a.iter().collect(),
        Value::Null => Vec::new(),
        _ => return Err(invalid("emails must be an array")),
    };
    let value = |e: &&Value| {
        get_ci(e, "value")
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    let is_primary =
        |e: &&&Value| get_ci(e, "primary").is_some_and(|p| boolean(p, "primary").unwrap_or(false));
    let is_work = |e: &&&Value| {
        get_ci(e, "type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.eq_ignore_ascii_case("work"))
    };
    Ok(list
        .iter()
        .find(is_primary)
        .or_else(|| list.iter().find(is_work))
        .or_else(|| list.first())
        .and_then(value))
}

/// A user body (POST, PUT, or a resource after PATCH) as an input.
pub fn user_input(body: &Value) -> Result<UserInput, ScimError> {
    let user_name = required(body, "userName")?;
    let name = get_ci(body, "name");
    // Whether mail and lastName are mandatory is the rule set's to say
    // (`scim.require`), when the input is validated.
    let mail = match primary_mail(body)? {
        Some(m) => Field::Set(m),
        None if user_name.contains('@') => Field::Set(user_name.clone()),
        None => Field::Clear,
    };
    let last_name = text(name, "familyName")?;
    let status = match get_ci(body, "active") {
        None | Some(Value::Null) => Status::Active,
        Some(v) => {
            if boolean(v, "active")? {
                Status::Active
            } else {
                Status::Inactive
            }
        }
    };
    let mut input = UserInput::new(status, "", "");
    input.mail = mail;
    input.last_name = last_name;
    input.login_name = Field::Set(user_name);
    input.first_name = text(name, "givenName")?;
    input.display_name = text(Some(body), "displayName")?;
    input.external_id = text(Some(body), "externalId")?;
    input.language = match text(Some(body), "preferredLanguage")? {
        Field::Set(l) => Field::Set(l),
        _ => text(Some(body), "locale")?,
    };
    let ext = get_ci(body, IDSYNC_USER_SCHEMA);
    input.valid_from = text(ext, "validFrom")?;
    input.valid_to = text(ext, "validTo")?;
    for (i, slot) in input.sp_custom_attributes.iter_mut().enumerate() {
        *slot = text(ext, &format!("spCustomAttribute{}", i + 1))?;
    }
    input.scim = Field::Set(super::attributes::kept(body, IDSYNC_USER_SCHEMA)?);
    Ok(input)
}

/// The member ids a group body names (`None`: no `members` attribute).
pub fn member_values(body: &Value) -> Option<Vec<String>> {
    match get_ci(body, "members") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .filter_map(|m| {
                    get_ci(m, "value")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                })
                .collect(),
        ),
        Some(_) => Some(Vec::new()),
    }
}

/// A group body as an input (members are read with [`member_values`]).
pub fn group_input(body: &Value) -> Result<GroupInput, ScimError> {
    let mut input = GroupInput::new(required(body, "displayName")?);
    input.external_id = text(Some(body), "externalId")?;
    input.description = text(get_ci(body, IDSYNC_GROUP_SCHEMA), "description")?;
    Ok(input)
}

/// An asset body as an input.
pub fn asset_input(body: &Value, id: Option<Uuid>) -> Result<AssetInput, ScimError> {
    let mut input = AssetInput::new(required(body, "name")?);
    input.id = id;
    input.description = text(Some(body), "description")?;
    input.asset_type = text(Some(body), "type")?;
    input.owner = text(Some(body), "owner")?;
    input.certificate_profile = text(Some(body), "certificateProfile")?;
    input.organization = text(Some(body), "organization")?;
    input.country = text(Some(body), "country")?;
    input.dns_names = strings(body, "dnsNames")?;
    input.ip_addresses = strings(body, "ipAddresses")?;
    input.sid = text(Some(body), "sid")?;
    input.external_id = text(Some(body), "externalId")?;
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Meta, Source};
    use serde_json::json;

    fn user() -> User {
        User {
            id: Uuid::now_v7(),
            login_name: Some("ann".into()),
            mail: Some("ann@x.org".into()),
            first_name: Some("Ann".into()),
            last_name: Some("Smith".into()),
            display_name: None,
            status: Status::Active,
            language: Some("de".into()),
            valid_from: Some("20240101000000Z".into()),
            valid_to: None,
            sp_custom_attributes: [Some("c1".into()), None, None, None, None],
            groups: vec![],
            roles: vec!["Operator".into()],
            applications: vec![],
            source: Source::Csv,
            activation_mail: Default::default(),
            activations: Default::default(),
            external_id: Some("E1".into()),
            scim: Default::default(),
            meta: Meta::new(time::OffsetDateTime::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_user_round_trips() {
        let u = user();
        let v = user_to_json(&u, &[], "/scim/v2");
        assert_eq!(v["userName"], "ann");
        assert_eq!(v["meta"]["version"], "W/\"1\"");
        let input = user_input(&v).unwrap();
        assert_eq!(input.mail, Field::Set("ann@x.org".into()));
        assert_eq!(input.last_name, Field::Set("Smith".into()));
        assert_eq!(input.first_name, Field::Set("Ann".into()));
        assert_eq!(input.language, Field::Set("de".into()));
        assert_eq!(input.valid_from, Field::Set("20240101000000Z".into()));
        assert_eq!(input.sp_custom_attributes[0], Field::Set("c1".into()));
        assert_eq!(input.display_name, Field::Clear);
        assert_eq!(input.external_id, Field::Set("E1".into()));
    }

    #[test]
    fn user_bodies_as_identity_providers_send_them() {
        let v = json!({"schemas": [USER_SCHEMA], "userName": "bob@x.org", "active": "False",
            "name": {"familyName": "B"},
            "emails": [{"value": "home@x.org", "type": "home"}, {"value": "work@x.org", "type": "work"}]});
        let i = user_input(&v).unwrap();
        assert_eq!(
            (i.mail, i.status),
            (Field::Set("work@x.org".into()), Status::Inactive)
        );
        let v = json!({"userName": "bob@x.org", "name": {"familyName": "B"}});
        assert_eq!(
            user_input(&v).unwrap().mail,
            Field::Set("bob@x.org".into()),
            "userName as mail"
        );
        // Whether these may be missing is the rule set's to say.
        let v = json!({"userName": "bob", "name": {"familyName": "B"}});
        assert_eq!(user_input(&v).unwrap().mail, Field::Clear, "no mail at all");
        let v = json!({"userName": "bob@x.org"});
        assert_eq!(
            user_input(&v).unwrap().last_name,
            Field::Clear,
            "no familyName"
        );
        assert!(require_schema(&json!({"not": "scim"}), USER_SCHEMA).is_err());
    }
}
