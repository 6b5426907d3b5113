//! Group membership writes: what a POST, PUT or PATCH says of a group's
//! members, turned into the users to add and remove inside the writer's
//! transaction.
//!
//! Members that are not known users are skipped and logged rather than
//! refused: identity providers send memberships of users they have not
//! pushed (yet, or at all).

use std::collections::BTreeSet;

use idsync_schema::scim::patch::MemberChanges;
use idsync_schema::Group;
use idsync_store::reconcile::Tx;
use uuid::Uuid;

use super::error::ScimError;
use super::resource::Resource;

/// Member ids named in a body, parsed; values that are not ids are left
/// out (see [`known_users`]).
fn member_ids(values: &[String]) -> Vec<Uuid> {
    values
        .iter()
        .filter_map(|v| Uuid::parse_str(v).ok())
        .collect()
}

/// The ids among `ids` that are users; `named` is how many values the
/// client sent.
fn known_users(tx: &Tx<'_>, ids: &[Uuid], named: usize) -> Result<Vec<Uuid>, ScimError> {
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if tx.user(*id)?.is_some() {
            out.push(*id);
        }
    }
    if out.len() < named {
        tracing::warn!(
            skipped = named - out.len(),
            "SCIM: group members that are not known users were skipped"
        );
    }
    Ok(out)
}

/// The member ids of a group after a full replace: (add, remove).
fn member_diff(
    tx: &Tx<'_>,
    gid: Uuid,
    wanted: &[Uuid],
) -> Result<(Vec<Uuid>, Vec<Uuid>), ScimError> {
    let current = tx.members_of(gid)?;
    let wanted_set: BTreeSet<Uuid> = wanted.iter().copied().collect();
    let add = wanted
        .iter()
        .filter(|u| !current.contains(u))
        .copied()
        .collect();
    let remove = current
        .iter()
        .filter(|u| !wanted_set.contains(u))
        .copied()
        .collect();
    Ok((add, remove))
}

/// Apply `changes` to the members of group `gid`: a replace first, then
/// the adds and removes (an id both added and removed stays). `None`: the
/// request says nothing of members (as for every kind but groups).
pub(crate) fn change(
    tx: &mut Tx<'_>,
    gid: Uuid,
    changes: Option<&MemberChanges>,
) -> Result<(), ScimError> {
    let Some(changes) = changes else {
        return Ok(());
    };
    let (mut add, mut remove) = match (&changes.replace, changes.remove_all) {
        (Some(values), _) => {
            let wanted = known_users(tx, &member_ids(values), values.len())?;
            member_diff(tx, gid, &wanted)?
        }
        (None, true) => (Vec::new(), tx.members_of(gid)?.into_iter().collect()),
        (None, false) => (Vec::new(), Vec::new()),
    };
    add.extend(known_users(
        tx,
        &member_ids(&changes.add),
        changes.add.len(),
    )?);
    remove.extend(member_ids(&changes.remove));
    remove.retain(|r| !add.contains(r));
    if !add.is_empty() || !remove.is_empty() {
        // Read again: the group's own write in this transaction moved it.
        let group = tx
            .group(gid)?
            .ok_or_else(|| ScimError::not_found(Group::NAME, &gid.to_string()))?;
        tx.change_members(&group, &add, &remove)?;
    }
    Ok(())
}
