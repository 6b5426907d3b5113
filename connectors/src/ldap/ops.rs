//! The LDAP writes idsync makes ([`Op`]), and the pure functions that
//! decide them from an entry as it is ([`Current`]): the operations that
//! bring it in line with what it should be ([`entry_ops`]), and the one
//! that retires it when its object is gone ([`retire`]). Delivery and the
//! reconcile's plan both call these, which is what makes a dry run print
//! exactly what a real run does.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use idsync_schema::Kind;
use serde::{Deserialize, Serialize};

use super::config::{DeletedAction, DeletedPolicy};
use super::mapping::{dn_key, split_dn, Desired};
use crate::connector::Remote;

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

impl Op {
    /// The DN the operation is on (before a rename).
    pub fn dn(&self) -> &str {
        match self {
            Op::Add { dn, .. }
            | Op::Modify { dn, .. }
            | Op::Rename { dn, .. }
            | Op::Delete { dn } => dn,
        }
    }
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

/// The values of `want` that `have` lacks, and those of `have` not in
/// `want`, compared as the directory compares values of `attr`.
fn differing(attr: &str, want: &[&String], have: &[&String]) -> (Vec<String>, Vec<String>) {
    let want_n: BTreeMap<String, &String> = want.iter().map(|v| (norm(attr, v), *v)).collect();
    let have_n: BTreeMap<String, &String> = have.iter().map(|v| (norm(attr, v), *v)).collect();
    let missing = want_n
        .iter()
        .filter(|(k, _)| !have_n.contains_key(*k))
        .map(|(_, v)| (*v).clone())
        .collect();
    let extra = have_n
        .iter()
        .filter(|(k, _)| !want_n.contains_key(*k))
        .map(|(_, v)| (*v).clone())
        .collect();
    (missing, extra)
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
        let (missing, extra) = differing(&name, &want, &have);
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

/// The operation that retires an owned entry whose object is gone, per the
/// deleted-object `policy`, and what to remember afterwards (`now`: Unix
/// seconds). `None`: nothing to do yet (disabled, grace period running).
/// `deactivated`: the object exists and the inactive policy deletes its
/// entry, now, whatever the deleted-object policy says.
pub fn retire(
    policy: &DeletedPolicy,
    kind: Kind,
    cur: &Current,
    remote: Option<&Remote>,
    deactivated: bool,
    now: i64,
) -> Option<(Op, Option<Remote>)> {
    let delete = Op::Delete { dn: cur.dn.clone() };
    if deactivated {
        return Some((delete, None));
    }
    match policy.action {
        DeletedAction::Delete => Some((delete, None)),
        DeletedAction::Disable => match remote.and_then(|r| r.disabled_at) {
            Some(at) if now - at >= i64::from(policy.delete_after_days) * 86_400 => {
                Some((delete, None))
            }
            Some(_) => None,
            None => Some((
                Op::Modify {
                    dn: cur.dn.clone(),
                    mods: vec![ModSpec {
                        action: ModAction::Replace,
                        attr: policy.attribute.clone(),
                        values: vec![policy.value.clone()],
                    }],
                },
                Some(Remote {
                    kind,
                    dn: cur.dn.clone(),
                    entry_uuid: cur.entry_uuid.clone().unwrap_or_default(),
                    disabled_at: Some(now),
                }),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use uuid::Uuid;

    use super::*;
    use crate::ldap::config::test_config;
    use crate::ldap::ldif::ldif;
    use crate::ldap::mapping::{desired, empty_member, managed};

    #[test]
    fn diff_writes_only_the_difference() {
        let obj =
            json!({"loginName": "jd", "mail": "j@x.org", "lastName": "Doe", "status": "active"});
        let c = test_config();
        let d = desired(&c, Kind::User, Uuid::nil(), &obj, Default::default())
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
        let c = test_config();
        let d = desired(
            &c,
            Kind::Group,
            Uuid::nil(),
            &json!({"displayName": "Ops"}),
            Default::default(),
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
}
