//! Delivering a batch of change events: coalesce it per object, bring each
//! object's entry in line (several in flight), then each changed user's
//! groups, one modify per group ([`members`]). Outcomes are per event; the
//! remote ids learned go back to the runner, which stores them with the
//! cursor.

mod members;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use idsync_schema::Kind;
use serde_json::Value;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::config::LdapConfig;
use super::conn::{Exec, OpError};
use super::mapping::{self, dn_key, Desired};
use super::ops::{entry_ops, retire, Op};
use super::{now_unix, Inner};
use crate::connector::{Delivery, Outcome, Remote, View};
use crate::event::{Event, Operation};
use members::{memberships, Groups};

/// One object of a batch, ready to sync.
struct Item {
    kind: Kind,
    id: Uuid,
    /// `None`: the object is gone (or the inactive policy deletes it).
    desired: Option<Desired>,
    /// The object exists but its entry must go (an inactive user under
    /// `inactive_users.action = "delete"`): deleted outright, whatever the
    /// deleted-object policy says, since that policy is for deleted objects.
    deactivated: bool,
    remote: Option<Remote>,
    /// A creation is in the batch: try the add first.
    created: bool,
    /// The `entryUUID` an add of this item gives its entry: derived from the
    /// connector, the object and the first of its events being delivered,
    /// so a delivery made again after a crash gives the same one, and can
    /// find an entry whose add landed before its `entryUUID` was saved.
    add_uuid: Uuid,
    /// For users: the DNs of the groups it should be in, by `dn_key`.
    groups: Option<BTreeMap<String, String>>,
    /// For users: memberships may have changed.
    membership: bool,
}

/// What syncing one item did.
struct ItemDone {
    learned: Option<Option<Remote>>,
    /// The user's DN before this sync, when it changed or went away.
    old_dn: Option<String>,
    /// The entry was just added: it is in no group yet.
    fresh: bool,
}

/// A synced user whose groups to bring in line.
struct UserSync {
    item: Item,
    /// Its DN before this sync, when it changed or went away.
    old_dn: Option<String>,
    /// Its entry was just added: it is in no group yet.
    fresh: bool,
}

fn outcome_of(e: &OpError) -> Outcome {
    match e {
        OpError::Transient(m) => Outcome::Retry(m.clone()),
        OpError::Refused(m) => Outcome::Failed(m.clone()),
    }
}

/// Reads from the store the connector needs to place objects.
struct Placer<'a> {
    cfg: &'a LdapConfig,
    view: &'a dyn View,
}

impl Placer<'_> {
    /// Where the entry of object `id` is or will be: the DN last written
    /// for it, else the template's.
    fn dn(&self, kind: Kind, id: Uuid) -> Result<Option<String>, String> {
        if let Some(r) = self.view.remote(id).map_err(|e| e.to_string())? {
            if r.disabled_at.is_none() {
                return Ok(Some(r.dn));
            }
            return Ok(None);
        }
        match self.view.object(kind, id).map_err(|e| e.to_string())? {
            Some(obj) => mapping::dn_of(self.cfg, kind, &obj).or(Ok(None)),
            None => Ok(None),
        }
    }

    fn desired(&self, kind: Kind, id: Uuid, obj: &Value) -> Result<Option<Desired>, String> {
        let manager_dn = match mapping::manager_id(obj) {
            Some(m) => self.dn(Kind::User, m)?,
            None => None,
        };
        let members = if kind == Kind::Group {
            let mut dns = Vec::new();
            for uid in self.view.members(id).map_err(|e| e.to_string())? {
                let obj = self
                    .view
                    .object(Kind::User, uid)
                    .map_err(|e| e.to_string())?;
                if let Some(dn) =
                    obj.and_then(|o| mapping::dn_of(self.cfg, Kind::User, &o).ok().flatten())
                {
                    dns.push(dn);
                }
            }
            dns
        } else {
            Vec::new()
        };
        let refs = mapping::Refs {
            member_dns: members,
            manager_dn,
        };
        mapping::desired(self.cfg, kind, id, obj, refs)
    }

    fn group_dns(&self, obj: &Value) -> Result<Groups, String> {
        let mut out = BTreeMap::new();
        for g in obj
            .get("groups")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(gid) = g.as_str().and_then(|s| Uuid::parse_str(s).ok()) else {
                continue;
            };
            if let Some(dn) = self.dn(Kind::Group, gid)? {
                out.insert(dn_key(&dn), dn);
            }
        }
        Ok(out)
    }

    /// The item of object `id`, from its events `idx` in `batch` (the last
    /// one carries its final state).
    fn item(&self, batch: &[Event], id: Uuid, idx: &[usize]) -> Result<Item, String> {
        let last = &batch[*idx.last().expect("one at least")];
        let remote = self.view.remote(id).map_err(|e| e.to_string())?;
        let gone = last.operation == Operation::Deleted || last.object.is_null();
        let desired = if gone {
            None
        } else {
            self.desired(last.kind, id, &last.object)?
        };
        let membership = idx.iter().any(|i| {
            let e = &batch[*i];
            e.operation != Operation::Updated || e.changed.iter().any(|c| c == "groups")
        });
        let groups = match (last.kind, &desired) {
            (Kind::User, Some(_)) => Some(self.group_dns(&last.object)?),
            (Kind::User, None) => Some(BTreeMap::new()),
            _ => None,
        };
        Ok(Item {
            kind: last.kind,
            id,
            add_uuid: mapping::add_uuid(&self.cfg.name, id, batch[idx[0]].seq),
            // The object is there but maps to no entry: only the inactive
            // policy `delete` does that (kinds not synced were left out by
            // `coalesce`, a missing DN field is an error).
            deactivated: !gone && desired.is_none(),
            desired,
            remote,
            created: idx
                .iter()
                .any(|i| batch[*i].operation == Operation::Created),
            groups,
            membership,
        })
    }
}

/// The batch's events by object, and the objects in the order of their
/// first event; the kinds this connector does not sync are left out.
fn coalesce(cfg: &LdapConfig, batch: &[Event]) -> (HashMap<Uuid, Vec<usize>>, Vec<Uuid>) {
    let mut events_of: HashMap<Uuid, Vec<usize>> = HashMap::new();
    let mut order = Vec::new();
    for (i, e) in batch.iter().enumerate() {
        if mapping::kind_config(cfg, e.kind).is_none() {
            continue;
        }
        let v = events_of.entry(e.id).or_default();
        if v.is_empty() {
            order.push(e.id);
        }
        v.push(i);
    }
    (events_of, order)
}

/// Deliver `batch`: the [`Connector::deliver`](crate::Connector::deliver)
/// of LDAP.
pub(super) async fn deliver_batch(
    inner: &Arc<Inner>,
    batch: &[Event],
    view: &dyn View,
) -> Delivery {
    let placer = Placer {
        cfg: &inner.cfg,
        view,
    };
    let mut outcomes = vec![Outcome::Delivered; batch.len()];
    // Coalesce: the last event of each object carries its final state.
    let (events_of, order) = coalesce(&inner.cfg, batch);
    // Each entry is synced as soon as it is prepared (several in flight),
    // so that the connection is busy while the rest of the batch is read
    // from the store (about 30 µs an object, a sixth of the batch's time
    // when it came first). Safe: preparing reads only the store, never what
    // another item's sync writes.
    let mut tasks = JoinSet::new();
    for (n, id) in order.into_iter().enumerate() {
        let idx = &events_of[&id];
        match placer.item(batch, id, idx) {
            Ok(item) => {
                let inner = Arc::clone(inner);
                tasks.spawn(async move {
                    let r = inner.sync_item(&item).await;
                    (n, item, r)
                });
            }
            Err(m) => {
                for i in idx {
                    outcomes[*i] = Outcome::Failed(m.clone());
                }
            }
        }
    }
    let mut done = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(d) => done.push(d),
            Err(e) => tracing::error!("an LDAP delivery task failed: {e}"),
        }
    }
    done.sort_by_key(|(n, _, _)| *n);
    let synced = settle(done, &events_of, &mut outcomes);

    // Memberships: one modify per group. A group synced whole in this
    // batch already has its members from the store.
    let failed = memberships(inner, &synced.users, &synced.groups).await;
    for (id, e) in failed {
        for i in &events_of[&id] {
            if outcomes[*i] == Outcome::Delivered {
                outcomes[*i] = outcome_of(&e);
            }
        }
    }
    Delivery {
        outcomes,
        learned: synced.learned,
        ..Delivery::default()
    }
}

/// What the entries' syncs of a batch leave for the rest of it.
struct Synced {
    learned: Vec<(Uuid, Option<Remote>)>,
    /// The users whose groups may need a change.
    users: Vec<UserSync>,
    /// The groups synced whole (their members with them), by `dn_key`.
    groups: HashSet<String>,
}

/// Sort the entries' syncs (in batch order) into outcomes of their events
/// (a failure) and what the memberships step needs.
fn settle(
    done: Vec<(usize, Item, Result<ItemDone, OpError>)>,
    events_of: &HashMap<Uuid, Vec<usize>>,
    outcomes: &mut [Outcome],
) -> Synced {
    let groups: HashSet<String> = done
        .iter()
        .filter(|(_, item, r)| item.kind == Kind::Group && r.is_ok())
        .filter_map(|(_, item, _)| item.desired.as_ref().map(|d| dn_key(&d.dn)))
        .collect();
    let mut learned = Vec::new();
    let mut users = Vec::new();
    for (_, item, r) in done {
        match r {
            Ok(d) => {
                if let Some(l) = d.learned {
                    learned.push((item.id, l));
                }
                // An entry just added is in no group yet, whether or not the
                // user's groups changed: a user added back after the inactive
                // policy deleted it, or an entry deleted by hand.
                if item.kind == Kind::User && (item.membership || d.old_dn.is_some() || d.fresh) {
                    users.push(UserSync {
                        item,
                        old_dn: d.old_dn,
                        fresh: d.fresh,
                    });
                }
            }
            Err(e) => {
                for i in &events_of[&item.id] {
                    outcomes[*i] = outcome_of(&e);
                }
            }
        }
    }
    Synced {
        learned,
        users,
        groups,
    }
}

impl Inner {
    /// Add `item`'s entry, giving it the `entryUUID` its delivery owns
    /// ([`Item::add_uuid`]).
    async fn add(&self, op: &Op, item: &Item) -> Result<Exec, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.exec(op, false, Some(item.add_uuid)).await
    }

    /// Bring one entry in line with its object.
    async fn sync_item(&self, item: &Item) -> Result<ItemDone, OpError> {
        // Created in this batch, with nothing recorded: an earlier try of
        // this delivery, cut short by a crash, may have added the entry,
        // with the `entryUUID` this one gives it too.
        let landed = (item.created && item.remote.is_none()).then(|| Remote {
            kind: item.kind,
            dn: String::new(),
            entry_uuid: item.add_uuid.to_string(),
            disabled_at: None,
        });
        let remote = item.remote.as_ref().or(landed.as_ref());
        let Some(d) = &item.desired else {
            return self.sync_gone(item, remote).await;
        };
        let managed = mapping::managed(&self.cfg, item.kind);
        if item.created && item.remote.is_none() {
            if let Some(done) = self.try_add(item, d, &managed).await? {
                return Ok(done);
            }
        }
        self.sync_existing(item, d, remote, &managed).await
    }

    /// The object is gone (or its entry must go): retire the entry if it
    /// is idsync's, per the deleted-object policy.
    async fn sync_gone(&self, item: &Item, remote: Option<&Remote>) -> Result<ItemDone, OpError> {
        let (cur, owned) = self.locate(item.kind, remote, None).await?;
        let old_dn = cur
            .as_ref()
            .map(|c| c.dn.clone())
            .or_else(|| item.remote.as_ref().map(|r| r.dn.clone()));
        let Some(cur) = cur.filter(|_| owned) else {
            return Ok(ItemDone {
                learned: Some(None),
                old_dn,
                fresh: false,
            });
        };
        let retired = retire(
            &self.cfg.deleted,
            item.kind,
            &cur,
            item.remote.as_ref(),
            item.deactivated,
            now_unix(),
        );
        let learned = match retired {
            Some((op, learned)) => {
                self.exec(&op, false).await?;
                learned
            }
            None => item.remote.clone(),
        };
        Ok(ItemDone {
            learned: Some(learned),
            old_dn,
            fresh: false,
        })
    }

    /// The add of a created object. `None`: the entry is there already,
    /// and the add becomes a modify.
    async fn try_add(
        &self,
        item: &Item,
        d: &Desired,
        managed: &BTreeSet<String>,
    ) -> Result<Option<ItemDone>, OpError> {
        let add = entry_ops(d, None, managed);
        match self.add(&add[0], item).await? {
            Exec::Done(uuid) => {
                let uuid = match uuid {
                    Some(u) => u,
                    None => self.uuid_of(item.kind, &d.dn).await?,
                };
                Ok(Some(ItemDone {
                    learned: Some(Some(self.remote(d, uuid))),
                    old_dn: None,
                    fresh: true,
                }))
            }
            Exec::Exists => Ok(None),
            Exec::Missing => Err(OpError::Refused(format!("add {}: parent missing", d.dn))),
        }
    }

    /// Read the entry (idsync's by `entryUUID`, else the one at the DN)
    /// and write only the difference; an entry idsync does not own is
    /// rewritten only if `adopt_existing` says so.
    async fn sync_existing(
        &self,
        item: &Item,
        d: &Desired,
        remote: Option<&Remote>,
        managed: &BTreeSet<String>,
    ) -> Result<ItemDone, OpError> {
        let (cur, owned) = self.locate(item.kind, remote, Some(&d.dn)).await?;
        let ops = entry_ops(d, cur.as_ref(), managed);
        if let Some(c) = &cur {
            if !owned && !ops.is_empty() && !self.cfg.adopt_existing {
                return Err(OpError::Refused(format!(
                    "{} exists, is not managed by idsync and differs: left alone (set adopt_existing to take it over)",
                    c.dn
                )));
            }
        }
        let known = cur.as_ref().and_then(|c| c.entry_uuid.clone());
        let uuid = match self.write(&ops, d, known).await? {
            Some(u) => u,
            None => self.uuid_of(item.kind, &d.dn).await?,
        };
        let old_dn = cur
            .as_ref()
            .filter(|c| dn_key(&c.dn) != dn_key(&d.dn))
            .map(|c| c.dn.clone());
        Ok(ItemDone {
            learned: Some(Some(self.remote(d, uuid))),
            old_dn,
            fresh: cur.is_none(),
        })
    }

    /// Run the `ops` that bring an entry to `d`, in order; the entry's
    /// `entryUUID` as the writes returned it, else `uuid`.
    async fn write(
        &self,
        ops: &[Op],
        d: &Desired,
        mut uuid: Option<String>,
    ) -> Result<Option<String>, OpError> {
        for op in ops {
            match self.exec(op, false).await? {
                Exec::Done(u) => uuid = u.or(uuid),
                Exec::Exists => {
                    return Err(OpError::Refused(format!(
                        "{}: the target DN {} is taken",
                        op.dn(),
                        d.dn
                    )))
                }
                // A move under a parent that does not exist (the inactive
                // policy's `ou` not created) is also "no such object":
                // refused, so that it is parked with a message that names
                // the parent instead of being retried for ever. An entry
                // that really vanished is added by the next attempt.
                Exec::Missing => {
                    if let Op::Rename {
                        new_superior: Some(parent),
                        ..
                    } = op
                    {
                        return Err(OpError::Refused(format!(
                            "moving {} under {parent}: no such object (is {parent} there?)",
                            op.dn()
                        )));
                    }
                    // The entry vanished between the read and the write.
                    return Err(OpError::Transient(format!(
                        "{} vanished; retrying",
                        op.dn()
                    )));
                }
            }
        }
        Ok(uuid)
    }
}
