//! Memberships, the second half of a delivery. They live on users in
//! idsync (a user's `groups`) and on groups in LDAP (`member`): the changes
//! of a batch's users are gathered per group and written as one modify per
//! group, with the Permissive Modify control so a replay is harmless, and
//! the placeholder member an empty `groupOfNames` needs taken out or put
//! back as the group fills or empties.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use idsync_schema::Kind;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::UserSync;
use crate::ldap::conn::OpError;
use crate::ldap::mapping::{self, dn_key};
use crate::ldap::ops::{Current, ModAction, ModSpec, Op};
use crate::ldap::Inner;

/// One group's membership change, gathered over the batch's users.
struct GroupChange {
    dn: String,
    add: BTreeSet<String>,
    del: BTreeSet<String>,
    /// The users whose events the change carries.
    who: Vec<Uuid>,
}

/// Groups by `dn_key`: their DN as found.
pub(super) type Groups = BTreeMap<String, String>;

/// The groups under `base` that have `member`.
async fn groups_with(inner: &Inner, base: &str, member: &str) -> Result<Vec<Current>, OpError> {
    let filter = format!(
        "(&(objectClass=groupOfNames)(member={}))",
        ldap3::ldap_escape(member)
    );
    inner.search(base, &filter, &["cn".to_string()]).await
}

/// Bring the groups of `users` in line; the users whose group change
/// failed, with why.
pub(super) async fn memberships(
    inner: &Arc<Inner>,
    users: &[UserSync],
    synced_groups: &HashSet<String>,
) -> Vec<(Uuid, OpError)> {
    let Some(base) = inner.search_base(Kind::Group) else {
        return Vec::new();
    };
    let mut changes: BTreeMap<String, GroupChange> = BTreeMap::new();
    let mut failed = Vec::new();
    for u in users {
        match groups_holding(inner, &base, u).await {
            Ok((found_new, found_old)) => gather(&mut changes, u, &found_new, &found_old),
            Err(e) => failed.push((u.item.id, e)),
        }
    }
    let placeholder = mapping::empty_member(&inner.cfg);
    // Which groups hold the placeholder, so that only those lose it (one
    // search per batch, not one read per group).
    let with_placeholder: HashSet<String> = if changes.values().any(|c| !c.add.is_empty()) {
        match groups_with(inner, &base, &placeholder).await {
            Ok(found) => found.iter().map(|g| dn_key(&g.dn)).collect(),
            Err(e) => {
                for c in changes.into_values() {
                    failed.extend(c.who.into_iter().map(|id| (id, e.clone())));
                }
                return failed;
            }
        }
    } else {
        HashSet::new()
    };
    let mut tasks = JoinSet::new();
    for (key, change) in changes {
        if synced_groups.contains(&key) {
            continue;
        }
        let inner = Arc::clone(inner);
        let placeholder = placeholder.clone();
        let drop_placeholder = with_placeholder.contains(&key);
        tasks.spawn(async move {
            let who = change.who.clone();
            (
                who,
                modify_group(&inner, change, placeholder, drop_placeholder).await,
            )
        });
    }
    while let Some(joined) = tasks.join_next().await {
        if let Ok((who, Err(e))) = joined {
            for id in who {
                failed.push((id, e.clone()));
            }
        }
    }
    failed
}

/// The groups that hold the user's entry now: at its new DN (none when
/// it was just added), and at its old DN when it moved or went away.
async fn groups_holding(
    inner: &Inner,
    base: &str,
    u: &UserSync,
) -> Result<(Groups, Groups), OpError> {
    let new_dn = u.item.desired.as_ref().map(|d| d.dn.as_str());
    let mut found_new = Groups::new();
    let mut found_old = Groups::new();
    if let (Some(dn), false) = (new_dn, u.fresh) {
        for g in groups_with(inner, base, dn).await? {
            found_new.insert(dn_key(&g.dn), g.dn);
        }
    }
    if let Some(old) = u
        .old_dn
        .as_deref()
        .filter(|o| Some(dn_key(o)) != new_dn.map(dn_key))
    {
        for g in groups_with(inner, base, old).await? {
            found_old.insert(dn_key(&g.dn), g.dn);
        }
    }
    Ok((found_new, found_old))
}

/// Add to `changes` what it takes for `u`'s groups to be its target ones:
/// its DN added where missing, removed where it is no more wanted, and its
/// old DN removed wherever it still is.
fn gather(
    changes: &mut BTreeMap<String, GroupChange>,
    u: &UserSync,
    found_new: &Groups,
    found_old: &Groups,
) {
    let id = u.item.id;
    let no_groups = Groups::new();
    let target = u.item.groups.as_ref().unwrap_or(&no_groups);
    if let Some(d) = &u.item.desired {
        for (k, gdn) in target {
            if !found_new.contains_key(k) {
                touch(changes, k, gdn, id).add.insert(d.dn.clone());
            }
        }
        for (k, gdn) in found_new {
            if !target.contains_key(k) {
                touch(changes, k, gdn, id).del.insert(d.dn.clone());
            }
        }
    }
    if let Some(old) = &u.old_dn {
        for (k, gdn) in found_old {
            touch(changes, k, gdn, id).del.insert(old.clone());
        }
    }
}

/// The change of group `key` (at `dn`), now carrying user `id`'s events.
fn touch<'c>(
    changes: &'c mut BTreeMap<String, GroupChange>,
    key: &str,
    dn: &str,
    id: Uuid,
) -> &'c mut GroupChange {
    let c = changes
        .entry(key.to_owned())
        .or_insert_with(|| GroupChange {
            dn: dn.to_owned(),
            add: BTreeSet::new(),
            del: BTreeSet::new(),
            who: Vec::new(),
        });
    c.who.push(id);
    c
}

/// One group's membership modify, with Permissive Modify so a replay is
/// harmless. A group that gains a member loses the placeholder (if it has
/// it); a group left empty gets it back.
async fn modify_group(
    inner: &Inner,
    change: GroupChange,
    placeholder: String,
    drop_placeholder: bool,
) -> Result<(), OpError> {
    let GroupChange { dn, add, del, .. } = change;
    let adding = !add.is_empty();
    let member = |action, values| ModSpec {
        action,
        attr: "member".into(),
        values,
    };
    let mut mods = Vec::new();
    if !del.is_empty() {
        mods.push(member(ModAction::Delete, del.into_iter().collect()));
    }
    if adding {
        mods.push(member(ModAction::Add, add.into_iter().collect()));
    }
    if adding && drop_placeholder {
        mods.push(member(ModAction::Delete, vec![placeholder.clone()]));
    }
    let op = Op::Modify {
        dn: dn.clone(),
        mods: mods.clone(),
    };
    match inner.exec(&op, true).await {
        // A group emptied: it needs its placeholder member.
        Err(OpError::Refused(m)) if m.contains("LDAP result 65") => {
            mods.push(member(ModAction::Add, vec![placeholder]));
            inner.exec(&Op::Modify { dn, mods }, true).await.map(|_| ())
        }
        // The group is not in LDAP (yet): it gets its members when it is added.
        Ok(_) => Ok(()),
        Err(e) => Err(e),
    }
}
