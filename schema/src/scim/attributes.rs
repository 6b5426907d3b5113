//! The attributes of RFC 7643's User schema (§4.1) and enterprise extension
//! (§4.3) that idsync keeps as the identity provider sent them: those it
//! has no typed field for (`title`, `phoneNumbers`, `addresses`, the
//! enterprise `department`, `manager`, …). They are checked against these
//! definitions, stored as one JSON object on the user, returned, filtered
//! and sorted like any attribute, and offered to the LDAP mapping.
//!
//! Why a table: `/Schemas` advertises the same definitions (one source, so
//! it never claims an attribute that is dropped), and a body that names an
//! attribute no schema defines is refused instead of answered `200` and
//! dropped.

use serde_json::{Map, Value};

use super::error::{ScimError, ScimType};
use super::filter::get_ci;
use super::mapping::{boolean, ENTERPRISE_SCHEMA};

/// A value's type, as RFC 7643 §2.3 names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    String,
    Boolean,
    Reference,
    Binary,
}

impl Type {
    /// The name `/Schemas` gives it.
    pub fn name(self) -> &'static str {
        match self {
            Type::String => "string",
            Type::Boolean => "boolean",
            Type::Reference => "reference",
            Type::Binary => "binary",
        }
    }
}

/// One attribute: simple, or multi-valued complex with sub-attributes.
#[derive(Debug, Clone, Copy)]
pub struct Def {
    pub name: &'static str,
    pub kind: Type,
    /// Sub-attributes of the elements of a multi-valued attribute (empty
    /// for a simple one).
    pub subs: &'static [(&'static str, Type)],
}

const fn simple(name: &'static str, kind: Type) -> Def {
    Def {
        name,
        kind,
        subs: &[],
    }
}

const fn multi(name: &'static str, subs: &'static [(&'static str, Type)]) -> Def {
    Def {
        name,
        kind: Type::String,
        subs,
    }
}

/// The sub-attributes of `phoneNumbers`, `ims`, `roles`, … (RFC 7643 §2.4).
const PLURAL: &[(&str, Type)] = &[
    ("value", Type::String),
    ("display", Type::String),
    ("type", Type::String),
    ("primary", Type::Boolean),
];

const PHOTOS: &[(&str, Type)] = &[
    ("value", Type::Reference),
    ("display", Type::String),
    ("type", Type::String),
    ("primary", Type::Boolean),
];

const CERTIFICATES: &[(&str, Type)] = &[
    ("value", Type::Binary),
    ("display", Type::String),
    ("type", Type::String),
    ("primary", Type::Boolean),
];

const ADDRESSES: &[(&str, Type)] = &[
    ("formatted", Type::String),
    ("streetAddress", Type::String),
    ("locality", Type::String),
    ("region", Type::String),
    ("postalCode", Type::String),
    ("country", Type::String),
    ("type", Type::String),
    ("primary", Type::Boolean),
];

/// Top-level User attributes idsync keeps as sent.
pub const USER: &[Def] = &[
    simple("nickName", Type::String),
    simple("profileUrl", Type::Reference),
    simple("title", Type::String),
    simple("userType", Type::String),
    simple("locale", Type::String),
    simple("timezone", Type::String),
    multi("phoneNumbers", PLURAL),
    multi("ims", PLURAL),
    multi("photos", PHOTOS),
    multi("addresses", ADDRESSES),
    multi("entitlements", PLURAL),
    multi("roles", PLURAL),
    multi("x509Certificates", CERTIFICATES),
];

/// Parts of `name` beside `givenName` and `familyName`.
pub const NAME: &[&str] = &[
    "formatted",
    "middleName",
    "honorificPrefix",
    "honorificSuffix",
];

/// The enterprise extension's simple attributes; `manager` is apart.
pub const ENTERPRISE: &[&str] = &[
    "employeeNumber",
    "costCenter",
    "organization",
    "division",
    "department",
];

/// Longest string value kept, in characters.
pub const MAX_CHARS: usize = 2048;
/// Most elements of one multi-valued attribute.
pub const MAX_VALUES: usize = 64;

/// What idsync keeps of a body beyond its typed fields, keyed by the
/// attribute's name as the schema spells it; `name` holds the extra parts
/// of the name, and the enterprise extension sits under its URN, with
/// `manager` as `{"value": id}`.
pub type Kept = Map<String, Value>;

fn invalid(detail: impl Into<String>) -> ScimError {
    ScimError::bad(ScimType::InvalidValue, detail)
}

/// A string value within bounds; `None` for null or empty (cleared).
fn string(v: &Value, name: &str) -> Result<Option<String>, ScimError> {
    match v {
        Value::Null => Ok(None),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) if s.chars().count() > MAX_CHARS => Err(invalid(format!(
            "{name} is longer than {MAX_CHARS} characters"
        ))),
        Value::String(s) if s.chars().any(char::is_control) => {
            Err(invalid(format!("{name} contains control characters")))
        }
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(invalid(format!("{name} must be a string, not {other}"))),
    }
}

/// A typed value of `kind`, normalised; `None` when cleared.
fn typed(v: &Value, kind: Type, name: &str) -> Result<Option<Value>, ScimError> {
    match kind {
        Type::Boolean => match v {
            Value::Null => Ok(None),
            v => boolean(v, name).map(|b| Some(Value::Bool(b))),
        },
        Type::String | Type::Reference | Type::Binary => Ok(string(v, name)?.map(Value::String)),
    }
}

/// The elements of a multi-valued complex attribute, each with only its
/// defined sub-attributes (in the schema's spelling); a lone object is
/// taken as one element.
fn elements(v: &Value, def: &Def) -> Result<Option<Value>, ScimError> {
    let items: Vec<&Value> = match v {
        Value::Null => return Ok(None),
        Value::Array(a) => a.iter().collect(),
        Value::Object(_) => vec![v],
        other => {
            return Err(invalid(format!(
                "{} must be an array of objects, not {other}",
                def.name
            )))
        }
    };
    if items.len() > MAX_VALUES {
        return Err(invalid(format!(
            "{} has more than {MAX_VALUES} values",
            def.name
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Value::Object(fields) = item else {
            return Err(invalid(format!("{} must hold objects", def.name)));
        };
        let mut element = Map::new();
        for (key, value) in fields {
            let Some((sub, kind)) = def.subs.iter().find(|(s, _)| s.eq_ignore_ascii_case(key))
            else {
                return Err(invalid(format!(
                    "{}.{key} is not an attribute of the User schema",
                    def.name
                )));
            };
            if let Some(v) = typed(value, *kind, &format!("{}.{sub}", def.name))? {
                element.insert((*sub).to_owned(), v);
            }
        }
        if !element.is_empty() {
            out.push(Value::Object(element));
        }
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

/// The kept part of `name`: its parts beside given and family name.
fn name_parts(name: &Value) -> Result<Option<Value>, ScimError> {
    let Value::Object(fields) = name else {
        return match name {
            Value::Null => Ok(None),
            other => Err(invalid(format!("name must be an object, not {other}"))),
        };
    };
    let mut kept = Map::new();
    for (key, value) in fields {
        if key.eq_ignore_ascii_case("givenName") || key.eq_ignore_ascii_case("familyName") {
            continue; // typed fields
        }
        let Some(part) = NAME.iter().find(|p| p.eq_ignore_ascii_case(key)) else {
            return Err(invalid(format!(
                "name.{key} is not an attribute of the User schema"
            )));
        };
        if let Some(v) = string(value, &format!("name.{part}"))? {
            kept.insert((*part).to_owned(), Value::String(v));
        }
    }
    Ok((!kept.is_empty()).then_some(Value::Object(kept)))
}

/// `manager` as a client sends it: `{"value": id}`, the id alone (Entra's
/// PATCH), or empty to remove it. The id must be a UUID (idsync's ids);
/// whether it names a user is the reconciler's to say.
fn manager(v: &Value) -> Result<Option<Value>, ScimError> {
    let id = match v {
        Value::Object(_) => match get_ci(v, "value") {
            Some(id) => string(id, "manager.value")?,
            None => None,
        },
        other => string(other, "manager")?,
    };
    let Some(id) = id else {
        return Ok(None);
    };
    let id = uuid::Uuid::parse_str(&id)
        .map_err(|_| invalid(format!("manager.value must be a user's id, not {id:?}")))?;
    Ok(Some(serde_json::json!({ "value": id })))
}

/// The kept part of the enterprise extension's object.
fn enterprise(ext: &Value) -> Result<Option<Value>, ScimError> {
    let Value::Object(fields) = ext else {
        return match ext {
            Value::Null => Ok(None),
            other => Err(invalid(format!(
                "{ENTERPRISE_SCHEMA} must be an object, not {other}"
            ))),
        };
    };
    let mut kept = Map::new();
    for (key, value) in fields {
        if key.eq_ignore_ascii_case("manager") {
            if let Some(m) = manager(value)? {
                kept.insert("manager".into(), m);
            }
            continue;
        }
        let Some(attr) = ENTERPRISE.iter().find(|a| a.eq_ignore_ascii_case(key)) else {
            return Err(invalid(format!(
                "{key} is not an attribute of the enterprise extension"
            )));
        };
        if let Some(v) = string(value, attr)? {
            kept.insert((*attr).to_owned(), Value::String(v));
        }
    }
    Ok((!kept.is_empty()).then_some(Value::Object(kept)))
}

/// Top-level keys a User body may carry that [`kept`] leaves to others:
/// the typed attributes, the read-only ones a client echoes back, and
/// `password` (write-only: idsync never stores a password).
const OTHERS: &[&str] = &[
    "schemas",
    "id",
    "meta",
    "externalId",
    "userName",
    "displayName",
    "active",
    "preferredLanguage",
    "emails",
    "groups",
    "password",
];

/// What idsync keeps of a User body beyond its typed fields. An attribute
/// no schema defines, a value of the wrong type, an over-long value or an
/// unknown extension is refused with `invalidValue`. (`emails` is typed:
/// idsync keeps one address, `mail`; a second address would need an index
/// of its own for filters on `emails` to stay exact.)
pub fn kept(body: &Value, idsync_extension: &str) -> Result<Kept, ScimError> {
    let Value::Object(fields) = body else {
        return Err(invalid("a User must be a JSON object"));
    };
    let mut kept = Kept::new();
    for (key, value) in fields {
        if OTHERS.iter().any(|o| o.eq_ignore_ascii_case(key))
            || key.eq_ignore_ascii_case(idsync_extension)
        {
            continue;
        }
        let found = if key.eq_ignore_ascii_case("name") {
            name_parts(value)?.map(|v| ("name", v))
        } else if key.eq_ignore_ascii_case(ENTERPRISE_SCHEMA) {
            enterprise(value)?.map(|v| (ENTERPRISE_SCHEMA, v))
        } else if let Some(def) = USER.iter().find(|d| d.name.eq_ignore_ascii_case(key)) {
            let v = if def.subs.is_empty() {
                typed(value, def.kind, def.name)?
            } else {
                elements(value, def)?
            };
            v.map(|v| (def.name, v))
        } else {
            return Err(invalid(format!(
                "{key} is not an attribute of the User schema or of an extension idsync supports"
            )));
        };
        if let Some((name, v)) = found {
            kept.insert(name.to_owned(), v);
        }
    }
    Ok(kept)
}

/// The id of the user's manager, when one is kept.
pub fn manager_of(kept: &Kept) -> Option<uuid::Uuid> {
    kept.get(ENTERPRISE_SCHEMA)?
        .get("manager")?
        .get("value")?
        .as_str()
        .and_then(|s| uuid::Uuid::parse_str(s).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const IDSYNC: &str = "urn:idsync:params:scim:schemas:extension:idsync:2.0:User";

    #[test]
    fn core_and_enterprise_attributes_are_kept_in_the_schema_spelling() {
        let body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ann", "password": "never stored",

            "name": {"givenName": "Ann", "familyName": "Smith", "MiddleName": "B.", "honorificPrefix": ""},
            "TITLE": "Engineer", "nickName": null,
            "phoneNumbers": [{"value": "+49 30 1", "type": "work", "primary": "True"}, {"value": "+49 170 2", "type": "mobile"}],
            "addresses": {"streetAddress": "Hauptstr. 1", "locality": "Berlin", "type": "work"},
            ENTERPRISE_SCHEMA: {"employeeNumber": "701984", "Department": "IT",
                "manager": "0190a000-0000-7000-8000-000000000001"},
            IDSYNC: {"validFrom": "20240101000000Z"}
        });
        let kept = kept(&body, IDSYNC).unwrap();
        assert_eq!(kept["name"], json!({"middleName": "B."}));
        assert_eq!(kept["title"], "Engineer");
        assert!(!kept.contains_key("nickName"), "null clears");
        assert!(!kept.contains_key("password"));
        assert_eq!(kept["phoneNumbers"][0]["primary"], true);
        assert_eq!(
            kept["addresses"][0]["locality"], "Berlin",
            "a lone object is one element"
        );
        let ext = &kept[ENTERPRISE_SCHEMA];
        assert_eq!(ext["department"], "IT");
        assert_eq!(
            ext["manager"],
            json!({"value": "0190a000-0000-7000-8000-000000000001"})
        );
        assert_eq!(
            manager_of(&kept).unwrap().to_string(),
            "0190a000-0000-7000-8000-000000000001"
        );
    }

    #[test]
    fn what_no_schema_defines_is_refused() {
        for body in [
            json!({"userName": "a", "favouriteColour": "blue"}),
            json!({"userName": "a", "name": {"nickname": "x"}}),
            json!({"userName": "a", "phoneNumbers": [{"value": "1", "extension": "2"}]}),
            json!({"userName": "a", "phoneNumbers": "+49"}),
            json!({"userName": "a", "title": 42}),
            json!({"userName": "a", "urn:example:ext:2.0:User": {"x": 1}}),
            json!({"userName": "a", ENTERPRISE_SCHEMA: {"salary": "1"}}),
            json!({"userName": "a", ENTERPRISE_SCHEMA: {"manager": "not-an-id"}}),
            json!({"userName": "a", "title": "x".repeat(MAX_CHARS + 1)}),
            json!({"userName": "a", "title": "a\nb"}),
        ] {
            let e = kept(&body, IDSYNC).expect_err(&body.to_string());
            assert_eq!(e.scim_type, Some(ScimType::InvalidValue), "{body}");
        }
    }

    #[test]
    fn a_manager_removed_with_an_empty_value_is_gone() {
        for m in [json!(""), json!(null), json!({"value": ""})] {
            let body = json!({"userName": "a", ENTERPRISE_SCHEMA: {"manager": m}});
            assert!(kept(&body, IDSYNC).unwrap().is_empty(), "{m}");
        }
    }
}
