//! From an idsync object to the LDAP entry it should be, and from the entry
//! that is to the operations that make it so. Pure functions: the delivery
//! path and the reconcile share them, which is what makes a dry run print
//! exactly what a real run does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use idsync_schema::Kind;
use ldap3::dn_escape;
use serde::{Deserialize, Serialize};
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

/// One change of a modify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModSpec {
    pub action: ModAction,
    pub attr: String,
    pub values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModAction {
    Add,
    Delete,
    Replace,
}

/// One LDAP write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Op {
    Add {
        dn: String,
        attrs: Vec<(String, Vec<String>)>,
    },
    Modify {
        dn: String,
        mods: Vec<ModSpec>,
    },
    Rename {
        dn: String,
        new_rdn: String,
        new_superior: Option<String>,
    },
    Delete {
        dn: String,
    },
}

/// An entry as read from LDAP, attribute names lower-cased.
#[derive(Debug, Clone, Default)]
pub struct Current {
    pub dn: String,
    pub entry_uuid: Option<String>,
    pub attrs: HashMap<String, Vec<String>>,
}

impl Current {
    /// From a search entry.
    pub fn from_entry(e: ldap3::SearchEntry) -> Self {
        let mut attrs: HashMap<String, Vec<String>> = HashMap::new();
        for (k, v) in e.attrs {
            attrs.entry(k.to_ascii_lowercase()).or_default().extend(v);
        }
        let entry_uuid = attrs.remove("entryuuid").and_then(|v| v.into_iter().next());
        Self {
            dn: e.dn,
            entry_uuid,
            attrs,
        }
    }
}

/// The settings of `kind`.
pub fn kind_config(cfg: &LdapConfig, kind: Kind) -> Option<&KindConfig> {
    let k = match kind {
        Kind::User => &cfg.users,
        Kind::Group => &cfg.groups,
        Kind::Asset => &cfg.assets,
        Kind::Profile | Kind::Request | Kind::Certificate => return None,
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

/// The field `name` of `obj` as values (`spCustomAttribute1..5` included).
fn field(obj: &Value, name: &str) -> Vec<String> {
    let v = match name.strip_prefix("spCustomAttribute") {
        Some(n) => match n.parse::<usize>() {
            Ok(i @ 1..=5) => obj
                .get("spCustomAttributes")
                .and_then(|a| a.get(i - 1))
                .cloned(),
            _ => None,
        },
        None => obj.get(name).cloned(),
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

/// The entry `obj` should be. `member_dns` are the DNs of a group's members.
pub fn desired(
    cfg: &LdapConfig,
    kind: Kind,
    id: Uuid,
    obj: &Value,
    member_dns: Vec<String>,
) -> Result<Option<Desired>, String> {
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

/// Whether values of `attr` compare without case (object classes, DNs).
fn folds(attr: &str) -> bool {
    attr.eq_ignore_ascii_case("objectClass") || attr.eq_ignore_ascii_case("member")
}

fn norm(attr: &str, v: &str) -> String {
    if attr.eq_ignore_ascii_case("member") {
        dn_key(v)
    } else if folds(attr) {
        v.to_ascii_lowercase()
    } else {
        v.to_owned()
    }
}

/// The modifications that turn `current` into `desired` for the managed
/// attributes: nothing when they agree (compare before modify), `Add` and
/// `Delete` of single values for multi-valued attributes, `Replace` for a
/// single value. Object classes are only ever added.
pub fn diff(desired: &Desired, current: &Current, managed: &BTreeSet<String>) -> Vec<ModSpec> {
    let mut mods = Vec::new();
    let mut names: BTreeMap<String, String> = managed
        .iter()
        .map(|a| (a.to_ascii_lowercase(), a.clone()))
        .collect();
    for a in desired.attrs.keys() {
        names.insert(a.to_ascii_lowercase(), a.clone());
    }
    for (lower, name) in names {
        let want: Vec<&String> = desired
            .attrs
            .iter()
            .find(|(a, _)| a.to_ascii_lowercase() == lower)
            .map(|(_, v)| v.iter().collect())
            .unwrap_or_default();
        let have: Vec<&String> = current
            .attrs
            .get(&lower)
            .map(|v| v.iter().collect())
            .unwrap_or_default();
        let want_n: BTreeMap<String, &String> = want.iter().map(|v| (norm(&name, v), *v)).collect();
        let have_n: BTreeMap<String, &String> = have.iter().map(|v| (norm(&name, v), *v)).collect();
        let missing: Vec<String> = want_n
            .iter()
            .filter(|(k, _)| !have_n.contains_key(*k))
            .map(|(_, v)| (*v).clone())
            .collect();
        let extra: Vec<String> = have_n
            .iter()
            .filter(|(k, _)| !want_n.contains_key(*k))
            .map(|(_, v)| (*v).clone())
            .collect();
        if lower == "objectclass" {
            if !missing.is_empty() {
                mods.push(ModSpec {
                    action: ModAction::Add,
                    attr: name,
                    values: missing,
                });
            }
            continue;
        }
        if missing.is_empty() && extra.is_empty() {
            continue;
        }
        if want.is_empty() {
            mods.push(ModSpec {
                action: ModAction::Delete,
                attr: name,
                values: Vec::new(),
            });
        } else if have.is_empty() || (want.len() == 1 && have.len() == 1) {
            let values = want.iter().map(|v| (*v).clone()).collect();
            let action = if have.is_empty() {
                ModAction::Add
            } else {
                ModAction::Replace
            };
            mods.push(ModSpec {
                action,
                attr: name,
                values,
            });
        } else {
            if !extra.is_empty() {
                mods.push(ModSpec {
                    action: ModAction::Delete,
                    attr: name.clone(),
                    values: extra,
                });
            }
            if !missing.is_empty() {
                mods.push(ModSpec {
                    action: ModAction::Add,
                    attr: name,
                    values: missing,
                });
            }
        }
    }
    mods
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

/// The operations that make `current` (if any) into `desired`: an add, or
/// a rename when the DN changed and a modify when attributes differ.
pub fn entry_ops(
    desired: &Desired,
    current: Option<&Current>,
    managed: &BTreeSet<String>,
) -> Vec<Op> {
    let Some(cur) = current else {
        return vec![Op::Add {
            dn: desired.dn.clone(),
            attrs: desired
                .attrs
                .iter()
                .map(|(a, v)| (a.clone(), v.iter().cloned().collect()))
                .collect(),
        }];
    };
    let mut ops = Vec::new();
    let mut dn = cur.dn.clone();
    if dn_key(&cur.dn) != dn_key(&desired.dn) {
        let (_, cur_parent) = split_dn(&cur.dn);
        let new_superior =
            (dn_key(cur_parent) != dn_key(&desired.parent)).then(|| desired.parent.clone());
        ops.push(Op::Rename {
            dn: cur.dn.clone(),
            new_rdn: desired.rdn.clone(),
            new_superior,
        });
        dn = desired.dn.clone();
    }
    let mods = diff(desired, cur, managed);
    if !mods.is_empty() {
        ops.push(Op::Modify { dn, mods });
    }
    ops
}

/// `ops` as LDIF change records (RFC 2849), one block per operation.
pub fn ldif(ops: &[Op]) -> String {
    let mut out = String::new();
    for op in ops {
        match op {
            Op::Add { dn, attrs } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: add\n");
                for (a, vs) in attrs {
                    for v in vs {
                        line(&mut out, a, v);
                    }
                }
            }
            Op::Modify { dn, mods } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: modify\n");
                for m in mods {
                    let verb = match m.action {
                        ModAction::Add => "add",
                        ModAction::Delete => "delete",
                        ModAction::Replace => "replace",
                    };
                    out.push_str(&format!("{verb}: {}\n", m.attr));
                    for v in &m.values {
                        line(&mut out, &m.attr, v);
                    }
                    out.push_str("-\n");
                }
            }
            Op::Rename {
                dn,
                new_rdn,
                new_superior,
            } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: modrdn\n");
                line(&mut out, "newrdn", new_rdn);
                out.push_str("deleteoldrdn: 1\n");
                if let Some(s) = new_superior {
                    line(&mut out, "newsuperior", s);
                }
            }
            Op::Delete { dn } => {
                line(&mut out, "dn", dn);
                out.push_str("changetype: delete\n");
            }
        }
        out.push('\n');
    }
    out
}

/// `name: value`, or `name:: base64` when the value is not safe as is.
fn line(out: &mut String, name: &str, value: &str) {
    let safe = value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with([' ', ':', '<'])
        && !value.ends_with(' ');
    if safe {
        out.push_str(&format!("{name}: {value}\n"));
    } else {
        out.push_str(&format!("{name}:: {}\n", base64(value.as_bytes())));
    }
}

fn base64(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg() -> LdapConfig {
        LdapConfig {
            name: "t".into(),
            ..LdapConfig::default()
        }
    }

    #[test]
    fn kind_keys_left_out_keep_their_defaults() {
        let mut c = cfg();
        c.users = KindConfig {
            dn: "uid={loginName},ou=staff,{base_dn}".into(),
            ..KindConfig::default()
        };
        let r = c.resolved();
        assert!(r.users.enabled);
        assert_eq!(r.users.object_classes[0], "inetOrgPerson");
        assert_eq!(r.users.attributes["sn"], "{lastName}");
        assert_eq!(r.users.dn, "uid={loginName},ou=staff,{base_dn}");
    }

    #[test]
    fn user_maps_to_inet_org_person() {
        let obj =
            json!({"loginName": "j,doe", "mail": "j@x.org", "lastName": "Doe", "status": "active"});
        let d = desired(&cfg(), Kind::User, Uuid::nil(), &obj, vec![])
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
        let mut c = cfg();
        c.users
            .attributes
            .insert("businessCategory".into(), "{roles}".into());
        let obj =
            json!({"mail": "a@x.org", "lastName": "A", "roles": ["r1", "r2"], "status": "active"});
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, vec![])
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
    fn diff_writes_only_the_difference() {
        let obj =
            json!({"loginName": "jd", "mail": "j@x.org", "lastName": "Doe", "status": "active"});
        let c = cfg();
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, vec![])
            .unwrap()
            .unwrap();
        let mut cur = Current {
            dn: "UID=jd, ou=people,dc=example,dc=org".into(),
            ..Default::default()
        };
        for (a, v) in &d.attrs {
            cur.attrs
                .insert(a.to_ascii_lowercase(), v.iter().cloned().collect());
        }
        let m = managed(&c, Kind::User);
        assert!(entry_ops(&d, Some(&cur), &m).is_empty());
        cur.attrs.insert("sn".into(), vec!["Old".into()]);
        cur.attrs.insert("givenname".into(), vec!["X".into()]);
        let ops = entry_ops(&d, Some(&cur), &m);
        let text = ldif(&ops);
        assert!(text.contains("replace: sn\nsn: Doe\n-\n"), "{text}");
        assert!(text.contains("delete: givenName\n-\n"), "{text}");
    }

    #[test]
    fn empty_groups_get_the_placeholder_and_renames_are_modrdn() {
        let c = cfg();
        let d = desired(
            &c,
            Kind::Group,
            Uuid::nil(),
            &json!({"displayName": "Ops"}),
            vec![],
        )
        .unwrap()
        .unwrap();
        assert_eq!(d.attrs["member"], BTreeSet::from([empty_member(&c)]));
        let cur = Current {
            dn: "cn=Old,ou=groups,dc=example,dc=org".into(),
            ..Default::default()
        };
        let ops = entry_ops(&d, Some(&cur), &managed(&c, Kind::Group));
        assert!(
            matches!(&ops[0], Op::Rename { new_rdn, new_superior: None, .. } if new_rdn == "cn=Ops")
        );
    }

    #[test]
    fn inactive_users_move_or_vanish_per_policy() {
        let obj =
            json!({"loginName": "jd", "mail": "j@x.org", "lastName": "D", "status": "inactive"});
        let mut c = cfg();
        c.inactive_users.action = InactiveAction::Move;
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, vec![])
            .unwrap()
            .unwrap();
        assert_eq!(d.dn, "uid=jd,ou=inactive,dc=example,dc=org");
        assert_eq!(d.parent, "ou=inactive,dc=example,dc=org");
        c.inactive_users.action = InactiveAction::Attribute;
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, vec![])
            .unwrap()
            .unwrap();
        assert_eq!(
            d.attrs["employeeType"],
            BTreeSet::from(["inactive".to_string()])
        );
        c.inactive_users.action = InactiveAction::Delete;
        assert!(desired(&c, Kind::User, Uuid::nil(), &obj, vec![])
            .unwrap()
            .is_none());
        // A missing DN field is an error the runner reports, not a panic.
        let no_name = json!({"displayName": null});
        assert!(desired(&c, Kind::Group, Uuid::nil(), &no_name, vec![]).is_err());
    }

    #[test]
    fn ldif_encodes_unsafe_values() {
        let text = ldif(&[Op::Add {
            dn: "cn=é,dc=x".into(),
            attrs: vec![("cn".into(), vec!["é".into()])],
        }]);
        assert!(text.starts_with("dn:: Y249w6ksZGM9eA==\n"), "{text}");
        assert_eq!(base64(b"ab"), "YWI=");
    }
}
