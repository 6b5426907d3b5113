//! From an idsync object to the LDAP entry it should be ([`Desired`]):
//! which kinds are synced, which attributes idsync manages, the DN and
//! attribute templates, the inactive-user policy, and how DNs compare.
//! Pure functions, shared by delivery and the reconcile; what it takes to
//! turn an entry as it is into the desired one is [`super::ops`]'s.

use std::collections::{BTreeMap, BTreeSet};

use idsync_schema::scim::mapping::ENTERPRISE_SCHEMA;
use idsync_schema::Kind;
use ldap3::dn_escape;
use serde_json::Value;
use uuid::Uuid;

use super::config::{InactiveAction, KindConfig, LdapConfig};

/// Attribute → values, as idsync wants them.
pub type Attrs = BTreeMap<String, BTreeSet<String>>;

/// The entry an object should be in LDAP.
#[derive(Debug, Clone, PartialEq)]
pub struct Desired {
    pub kind: Kind,
    pub id: Uuid,
    pub dn: String,
    /// `attr=value` of the DN.
    pub rdn: String,
    /// The DN without its RDN.
    pub parent: String,
    pub attrs: Attrs,
}

/// The settings of `kind`.
pub fn kind_config(cfg: &LdapConfig, kind: Kind) -> Option<&KindConfig> {
    let k = match kind {
        Kind::User => &cfg.users,
        Kind::Group => &cfg.groups,
        Kind::Asset => &cfg.assets,
        Kind::Profile | Kind::Request | Kind::Certificate | Kind::Registration => return None,
    };
    k.enabled.then_some(k)
}

/// The attributes idsync manages on entries of `kind`, as configured.
pub fn managed(cfg: &LdapConfig, kind: Kind) -> BTreeSet<String> {
    let mut out: BTreeSet<String> = BTreeSet::new();
    if let Some(k) = kind_config(cfg, kind) {
        out.extend(k.attributes.keys().cloned());
        out.insert("objectClass".into());
    }
    if kind == Kind::Group {
        out.insert("member".into());
    }
    if kind == Kind::User && cfg.inactive_users.action == InactiveAction::Attribute {
        out.insert(cfg.inactive_users.attribute.clone());
    }
    out
}

/// The field `name` of `obj` as values: a field of the object
/// (`spCustomAttribute1..5` included), else an attribute a SCIM client sent
/// ([`scim_field`]).
fn field(obj: &Value, name: &str) -> Vec<String> {
    let v = match name.strip_prefix("spCustomAttribute") {
        Some(n) => match n.parse::<usize>() {
            Ok(i @ 1..=5) => obj
                .get("spCustomAttributes")
                .and_then(|a| a.get(i - 1))
                .cloned(),
            _ => None,
        },
        None => obj.get(name).cloned().or_else(|| scim_field(obj, name)),
    };
    match v {
        Some(Value::String(s)) if !s.is_empty() => vec![s],
        Some(Value::Array(items)) => items
            .into_iter()
            .filter_map(|i| match i {
                Value::String(s) if !s.is_empty() => Some(s),
                Value::Null => None,
                other => Some(other.to_string()),
            })
            .collect(),
        Some(Value::Number(n)) => vec![n.to_string()],
        Some(Value::Bool(b)) => vec![b.to_string()],
        _ => Vec::new(),
    }
}

/// An attribute kept from SCIM (`obj.scim`, see
/// `idsync_schema::scim::attributes`): `title`, `name.middleName`, the
/// enterprise extension's `department`, or one type of a multi-valued
/// attribute: `phoneNumbers.mobile` (its `value`), `addresses.work.locality`.
fn scim_field(obj: &Value, name: &str) -> Option<Value> {
    let kept = obj.get("scim")?;
    let mut parts = name.split('.');
    let first = parts.next()?;
    let found = kept
        .get(first)
        .or_else(|| kept.get(ENTERPRISE_SCHEMA)?.get(first))?;
    match (found, parts.next()) {
        (Value::Array(items), Some(kind)) => {
            let sub = parts.next().unwrap_or("value");
            let values: Vec<Value> = items
                .iter()
                .filter(|i| {
                    i.get("type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.eq_ignore_ascii_case(kind))
                })
                .filter_map(|i| i.get(sub).cloned())
                .collect();
            Some(Value::Array(values))
        }
        (Value::Array(items), None) => Some(Value::Array(
            items
                .iter()
                .filter_map(|i| i.get("value").cloned())
                .collect(),
        )),
        (Value::Object(o), Some(sub)) => o.get(sub).cloned(),
        (Value::String(_), None) => Some(found.clone()),
        _ => None,
    }
}

/// The id of a user's manager (the enterprise extension's), if any.
pub fn manager_id(obj: &Value) -> Option<Uuid> {
    obj.get("scim")?
        .get(ENTERPRISE_SCHEMA)?
        .get("manager")?
        .get("value")?
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
}

/// Render `template` for `obj`. `None` when a placeholder has no value.
/// A template that is exactly one placeholder naming a list gives one value
/// per element. `escape` applies to field values (DN components).
fn render(template: &str, obj: &Value, base_dn: &str, escape: bool) -> Option<Vec<String>> {
    let mut out = String::new();
    let mut rest = template;
    let whole =
        template.starts_with('{') && template.ends_with('}') && template.matches('{').count() == 1;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = start + rest[start..].find('}')?;
        let names = &rest[start + 1..end];
        if names == "base_dn" {
            out.push_str(base_dn);
        } else {
            let values = names
                .split('|')
                .map(|n| field(obj, n.trim()))
                .find(|v| !v.is_empty())?;
            if whole && !escape {
                return Some(values);
            }
            let v = values.join(" ");
            if escape {
                out.push_str(&dn_escape(v.as_str()));
            } else {
                out.push_str(&v);
            }
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(vec![out])
}

/// Split a DN at its first unescaped comma: (RDN, parent).
pub fn split_dn(dn: &str) -> (&str, &str) {
    let bytes = dn.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b',' => return (&dn[..i], dn[i + 1..].trim_start()),
            _ => i += 1,
        }
    }
    (dn, "")
}

/// DNs compared the way a directory does, near enough: case and the
/// spaces around separators do not matter.
pub fn dn_key(dn: &str) -> String {
    let mut out = String::with_capacity(dn.len());
    let mut chars = dn.trim().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push(c);
                if let Some(n) = chars.next() {
                    out.extend(n.to_lowercase());
                }
            }
            ',' | '=' | '+' => {
                while out.ends_with(' ') {
                    out.pop();
                }
                out.push(c);
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// The DN `kind`'s template gives `obj`, honouring the inactive policy.
/// `None` when the object has no entry (its kind is not synced, a template
/// field is missing, or the inactive policy is `delete`).
pub fn dn_of(cfg: &LdapConfig, kind: Kind, obj: &Value) -> Result<Option<String>, String> {
    let Some(k) = kind_config(cfg, kind) else {
        return Ok(None);
    };
    let inactive =
        kind == Kind::User && obj.get("status").and_then(Value::as_str) == Some("inactive");
    if inactive && cfg.inactive_users.action == InactiveAction::Delete {
        return Ok(None);
    }
    let dn = render(&k.dn, obj, &cfg.base_dn, true)
        .and_then(|v| v.into_iter().next())
        .ok_or_else(|| format!("the DN template {:?} needs a field this object lacks", k.dn))?;
    if inactive && cfg.inactive_users.action == InactiveAction::Move {
        let (rdn, _) = split_dn(&dn);
        let ou = cfg.inactive_users.ou.replace("{base_dn}", &cfg.base_dn);
        return Ok(Some(format!("{rdn},{ou}")));
    }
    Ok(Some(dn))
}

/// The entries an object's entry points to, found by the caller (they
/// need the store): a group's members, a user's manager.
#[derive(Debug, Default)]
pub struct Refs {
    pub member_dns: Vec<String>,
    /// Offered to templates as the field `managerDn`.
    pub manager_dn: Option<String>,
}

/// The entry `obj` should be.
pub fn desired(
    cfg: &LdapConfig,
    kind: Kind,
    id: Uuid,
    obj: &Value,
    refs: Refs,
) -> Result<Option<Desired>, String> {
    let with_manager;
    let obj = match (&refs.manager_dn, obj) {
        (Some(dn), Value::Object(o)) => {
            let mut o = o.clone();
            o.insert("managerDn".into(), Value::String(dn.clone()));
            with_manager = Value::Object(o);
            &with_manager
        }
        _ => obj,
    };
    let member_dns = refs.member_dns;
    let Some(dn) = dn_of(cfg, kind, obj)? else {
        return Ok(None);
    };
    let k = kind_config(cfg, kind).expect("dn_of checked the kind");
    let mut attrs = Attrs::new();
    for (attr, template) in &k.attributes {
        if let Some(values) = render(template, obj, &cfg.base_dn, false) {
            let values: BTreeSet<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
            if !values.is_empty() {
                attrs.insert(attr.clone(), values);
            }
        }
    }
    attrs.insert(
        "objectClass".into(),
        k.object_classes.iter().cloned().collect(),
    );
    if kind == Kind::User
        && cfg.inactive_users.action == InactiveAction::Attribute
        && obj.get("status").and_then(Value::as_str) == Some("inactive")
    {
        attrs.insert(
            cfg.inactive_users.attribute.clone(),
            [cfg.inactive_users.value.clone()].into(),
        );
    }
    if kind == Kind::Group {
        let mut members: BTreeSet<String> = member_dns.into_iter().collect();
        if members.is_empty() {
            members.insert(empty_member(cfg));
        }
        attrs.insert("member".into(), members);
    }
    let (rdn, parent) = split_dn(&dn);
    let (rdn, parent) = (rdn.to_owned(), parent.to_owned());
    // The RDN's value must be one of the entry's values.
    let (rdn_template, _) = split_dn(&k.dn);
    if let Some((attr, template)) = rdn_template.split_once('=') {
        let value = render(template, obj, &cfg.base_dn, false)
            .map(|v| v.join(" "))
            .unwrap_or_default();
        let key = attrs
            .keys()
            .find(|a| a.eq_ignore_ascii_case(attr))
            .cloned()
            .unwrap_or_else(|| attr.to_owned());
        attrs.entry(key).or_default().insert(value);
    }
    Ok(Some(Desired {
        kind,
        id,
        dn,
        rdn,
        parent,
        attrs,
    }))
}

/// The placeholder member of an empty group.
pub fn empty_member(cfg: &LdapConfig) -> String {
    cfg.empty_group_member.replace("{base_dn}", &cfg.base_dn)
}

/// The `entryUUID` idsync gives the entry it adds for object `id` when it
/// delivers the object's events from `first_seq` on (connector `name`): a
/// UUID (version 8) made from a SHA-256 of the three, so the same delivery
/// made again gives the same one.
pub fn add_uuid(name: &str, id: Uuid, first_seq: u64) -> Uuid {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(b"idsync entryUUID\0");
    h.update(name.as_bytes());
    h.update([0]);
    h.update(id.as_bytes());
    h.update(first_seq.to_be_bytes());
    let bytes: [u8; 16] = h.finalize()[..16].try_into().expect("16 bytes");
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ldap::config::test_config;
    use serde_json::json;

    #[test]
    fn scim_attributes_and_the_manager_reach_the_templates() {
        let ent = ENTERPRISE_SCHEMA;
        let obj = json!({"loginName": "ann", "mail": "ann@x.org", "lastName": "Smith",
            "status": "active", "externalId": "E1",
            "scim": {"title": "Engineer",
                "phoneNumbers": [{"value": "+49 30 1", "type": "work"}, {"value": "+49 170 2", "type": "Mobile"}],
                "addresses": [{"locality": "Berlin", "type": "work"}],
                ent: {"employeeNumber": "701984", "department": "IT",
                      "manager": {"value": "0190a000-0000-7000-8000-000000000001"}}}});
        assert_eq!(
            manager_id(&obj).unwrap().to_string(),
            "0190a000-0000-7000-8000-000000000001"
        );
        let refs = Refs {
            member_dns: vec![],
            manager_dn: Some("uid=boss,ou=people,dc=example,dc=org".into()),
        };
        let d = desired(&test_config(), Kind::User, Uuid::nil(), &obj, refs)
            .unwrap()
            .unwrap();
        let one = |a: &str| d.attrs[a].iter().next().unwrap().clone();
        assert_eq!(one("title"), "Engineer");
        assert_eq!(one("telephoneNumber"), "+49 30 1");
        assert_eq!(one("mobile"), "+49 170 2", "types compare case-blind");
        assert_eq!(one("employeeNumber"), "701984", "before the externalId");
        assert_eq!(one("departmentNumber"), "IT");
        assert_eq!(one("l"), "Berlin");
        assert_eq!(one("manager"), "uid=boss,ou=people,dc=example,dc=org");
        assert!(!d.attrs.contains_key("o"), "nothing sent, nothing written");
    }

    #[test]
    fn kind_keys_left_out_keep_their_defaults() {
        let mut c = test_config();
        c.users = KindConfig {
            dn: "uid={loginName},ou=staff,{base_dn}".into(),
            ..KindConfig::default()
        };
        let r = c.resolved();
        assert!(r.users.enabled);
        assert_eq!(r.users.object_classes[0], "inetOrgPerson");
        assert_eq!(
            r.users.attributes["sn"],
            "{lastName|displayName|loginName|mail}"
        );
        assert_eq!(r.users.dn, "uid={loginName},ou=staff,{base_dn}");
    }

    #[test]
    fn user_maps_to_inet_org_person() {
        let obj =
            json!({"loginName": "j,doe", "mail": "j@x.org", "lastName": "Doe", "status": "active"});
        let d = desired(
            &test_config(),
            Kind::User,
            Uuid::nil(),
            &obj,
            Default::default(),
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.dn, "uid=j\\2cdoe,ou=people,dc=example,dc=org");
        assert_eq!(d.parent, "ou=people,dc=example,dc=org");
        assert_eq!(d.attrs["uid"], BTreeSet::from(["j,doe".to_string()]));
        assert_eq!(d.attrs["cn"], BTreeSet::from(["Doe".to_string()]));
        assert!(!d.attrs.contains_key("givenName"));
    }

    #[test]
    fn list_fields_are_multi_valued() {
        let mut c = test_config();
        c.users
            .attributes
            .insert("businessCategory".into(), "{roles}".into());
        let obj =
            json!({"mail": "a@x.org", "lastName": "A", "roles": ["r1", "r2"], "status": "active"});
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(d.attrs["businessCategory"].len(), 2);
        assert_eq!(d.dn, "uid=a@x.org,ou=people,dc=example,dc=org");
    }

    #[test]
    fn an_add_uuid_is_the_same_for_the_same_delivery_only() {
        let id = Uuid::now_v7();
        let u = add_uuid("ldap", id, 7);
        assert_eq!(u, add_uuid("ldap", id, 7));
        assert_eq!(u.get_version_num(), 8);
        assert_ne!(u, add_uuid("ldap", id, 8));
        assert_ne!(u, add_uuid("ldap2", id, 7));
        assert_ne!(u, add_uuid("ldap", Uuid::now_v7(), 7));
    }

    #[test]
    fn inactive_users_move_or_vanish_per_policy() {
        let obj =
            json!({"loginName": "jd", "mail": "j@x.org", "lastName": "D", "status": "inactive"});
        let mut c = test_config();
        c.inactive_users.action = InactiveAction::Move;
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(d.dn, "uid=jd,ou=inactive,dc=example,dc=org");
        assert_eq!(d.parent, "ou=inactive,dc=example,dc=org");
        c.inactive_users.action = InactiveAction::Attribute;
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, Default::default())
            .unwrap()
            .unwrap();
        assert_eq!(
            d.attrs["employeeType"],
            BTreeSet::from(["inactive".to_string()])
        );
        c.inactive_users.action = InactiveAction::Delete;
        assert!(
            desired(&c, Kind::User, Uuid::nil(), &obj, Default::default())
                .unwrap()
                .is_none()
        );
        // A missing DN field is an error the runner reports, not a panic.
        let no_name = json!({"displayName": null});
        assert!(desired(&c, Kind::Group, Uuid::nil(), &no_name, Default::default()).is_err());
    }
}
