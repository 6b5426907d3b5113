//! The LDAP connector: users as `inetOrgPerson`, groups as `groupOfNames`,
//! assets as `device` (all configurable), over `ldap3`.
//!
//! Delivery coalesces a batch per object (an event carries the whole object,
//! so the last one wins), reads each entry and writes only the difference,
//! several operations in flight on one connection. Memberships live on
//! users in idsync and on groups in LDAP: they are gathered per group and
//! written as one modify per group per batch, with the Permissive Modify
//! control so a replay is harmless. Entries idsync manages are recorded by
//! `entryUUID` (through the runner), so renames on either side keep
//! ownership, and an entry idsync does not own is never rewritten or
//! deleted unless `adopt_existing` says so.

pub mod config;
pub mod conn;
pub mod mapping;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use idsync_schema::Kind;
use ldap3::Scope;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use uuid::Uuid;

use config::DeletedAction;
pub use config::LdapConfig;
use conn::{Conn, Exec, OpError};
use mapping::{dn_key, entry_ops, ldif, split_dn, Current, Desired, ModAction, ModSpec, Op};

use crate::connector::{
    Applied, BoxFuture, Connector, ConnectorError, Delivery, DeliveryConfig, Outcome, Plan, Remote,
    View,
};
use crate::event::{Event, Operation};

/// The LDAP connector.
pub struct LdapConnector {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<LdapConfig>,
    conn: Conn,
    /// Bounds the operations in flight on the connection.
    slots: Semaphore,
}

impl LdapConnector {
    /// A connector for `cfg` (it connects on first use).
    pub fn new(cfg: LdapConfig) -> Result<Self, ConnectorError> {
        cfg.check()?;
        let cfg = Arc::new(cfg.resolved());
        Ok(Self {
            inner: Arc::new(Inner {
                conn: Conn::new(Arc::clone(&cfg)),
                slots: Semaphore::new(cfg.concurrency),
                cfg,
            }),
        })
    }
}

fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

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

impl Inner {
    fn read_attrs(&self, kind: Kind) -> Vec<String> {
        mapping::managed(&self.cfg, kind).into_iter().collect()
    }

    /// Where a reconcile looks for entries of `kind`.
    fn search_base(&self, kind: Kind) -> Option<String> {
        let k = mapping::kind_config(&self.cfg, kind)?;
        Some(match &k.search_base {
            Some(b) => b.replace("{base_dn}", &self.cfg.base_dn),
            None => split_dn(&k.dn).1.replace("{base_dn}", &self.cfg.base_dn),
        })
    }

    async fn exec(&self, op: &Op, permissive: bool) -> Result<Exec, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.exec(op, permissive, None).await
    }

    /// Add `item`'s entry, giving it the `entryUUID` its delivery owns
    /// ([`Item::add_uuid`]).
    async fn add(&self, op: &Op, item: &Item) -> Result<Exec, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.exec(op, false, Some(item.add_uuid)).await
    }

    async fn search(
        &self,
        base: &str,
        filter: &str,
        attrs: &[String],
    ) -> Result<Vec<Current>, OpError> {
        let _slot = self.slots.acquire().await.expect("never closed");
        self.conn.search(base, Scope::Subtree, filter, attrs).await
    }

    async fn locate(
        &self,
        kind: Kind,
        remote: Option<&Remote>,
        dn: Option<&str>,
    ) -> Result<(Option<Current>, bool), OpError> {
        let attrs = self.read_attrs(kind);
        if let Some(r) = remote {
            let _slot = self.slots.acquire().await.expect("never closed");
            if let Some(c) = self
                .conn
                .find_uuid(&self.cfg.base_dn, &r.entry_uuid, &attrs)
                .await?
            {
                return Ok((Some(c), true));
            }
        }
        if let Some(dn) = dn {
            let _slot = self.slots.acquire().await.expect("never closed");
            return Ok((self.conn.read(dn, &attrs).await?, false));
        }
        Ok((None, false))
    }

    /// Bring one entry in line with its object.
    async fn sync_item(&self, item: &Item) -> Result<ItemDone, OpError> {
        let managed = mapping::managed(&self.cfg, item.kind);
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
            let learned = match self.retire(item.kind, &cur, item.remote.as_ref(), item.deactivated)
            {
                Some((op, learned)) => {
                    self.exec(&op, false).await?;
                    learned
                }
                None => Some(item.remote.clone()).flatten(),
            };
            return Ok(ItemDone {
                learned: Some(learned),
                old_dn,
                fresh: false,
            });
        };
        if item.created && item.remote.is_none() {
            let add = entry_ops(d, None, &managed);
            match self.add(&add[0], item).await? {
                Exec::Done(uuid) => {
                    let uuid = match uuid {
                        Some(u) => u,
                        None => self.uuid_of(item.kind, &d.dn).await?,
                    };
                    return Ok(ItemDone {
                        learned: Some(Some(self.remote(d, uuid))),
                        old_dn: None,
                        fresh: true,
                    });
                }
                Exec::Exists => {} // an add that finds the entry becomes a modify
                Exec::Missing => {
                    return Err(OpError::Refused(format!("add {}: parent missing", d.dn)))
                }
            }
        }
        let (cur, owned) = self.locate(item.kind, remote, Some(&d.dn)).await?;
        let ops = entry_ops(d, cur.as_ref(), &managed);
        if let Some(c) = &cur {
            if !owned && !ops.is_empty() && !self.cfg.adopt_existing {
                return Err(OpError::Refused(format!(
                    "{} exists, is not managed by idsync and differs: left alone (set adopt_existing to take it over)",
                    c.dn
                )));
            }
        }
        let mut uuid = cur.as_ref().and_then(|c| c.entry_uuid.clone());
        for op in &ops {
            match self.exec(op, false).await? {
                Exec::Done(u) => uuid = u.or(uuid),
                Exec::Exists => {
                    return Err(OpError::Refused(format!(
                        "{}: the target DN {} is taken",
                        op_dn(op),
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
                            op_dn(op)
                        )));
                    }
                    // The entry vanished between the read and the write.
                    return Err(OpError::Transient(format!(
                        "{} vanished; retrying",
                        op_dn(op)
                    )));
                }
            }
        }
        let uuid = match uuid {
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

    async fn uuid_of(&self, kind: Kind, dn: &str) -> Result<String, OpError> {
        let (cur, _) = self.locate(kind, None, Some(dn)).await?;
        cur.and_then(|c| c.entry_uuid)
            .ok_or_else(|| OpError::Transient(format!("{dn}: no entryUUID read back")))
    }

    fn remote(&self, d: &Desired, uuid: String) -> Remote {
        Remote {
            kind: d.kind,
            dn: d.dn.clone(),
            entry_uuid: uuid,
            disabled_at: None,
        }
    }

    /// The operation that retires an owned entry whose object is gone, per
    /// the deleted-object policy, and what to remember afterwards. `None`:
    /// nothing to do yet (disabled, grace period running). `deactivated`:
    /// the object exists and the inactive policy deletes its entry, now.
    fn retire(
        &self,
        kind: Kind,
        cur: &Current,
        remote: Option<&Remote>,
        deactivated: bool,
    ) -> Option<(Op, Option<Remote>)> {
        let p = &self.cfg.deleted;
        let delete = Op::Delete { dn: cur.dn.clone() };
        if deactivated {
            return Some((delete, None));
        }
        match p.action {
            DeletedAction::Delete => Some((delete, None)),
            DeletedAction::Disable => match remote.and_then(|r| r.disabled_at) {
                Some(at) if now_unix() - at >= i64::from(p.delete_after_days) * 86_400 => {
                    Some((delete, None))
                }
                Some(_) => None,
                None => Some((
                    Op::Modify {
                        dn: cur.dn.clone(),
                        mods: vec![ModSpec {
                            action: ModAction::Replace,
                            attr: p.attribute.clone(),
                            values: vec![p.value.clone()],
                        }],
                    },
                    Some(Remote {
                        kind,
                        dn: cur.dn.clone(),
                        entry_uuid: cur.entry_uuid.clone().unwrap_or_default(),
                        disabled_at: Some(now_unix()),
                    }),
                )),
            },
        }
    }
}

fn op_dn(op: &Op) -> &str {
    match op {
        Op::Add { dn, .. } | Op::Modify { dn, .. } | Op::Rename { dn, .. } | Op::Delete { dn } => {
            dn
        }
    }
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
        mapping::desired(self.cfg, kind, id, obj, members)
    }

    fn group_dns(&self, obj: &Value) -> Result<BTreeMap<String, String>, String> {
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
}

/// A group's membership change: (DN, values to add, values to delete,
/// users involved).
type Change = (String, BTreeSet<String>, BTreeSet<String>, Vec<Uuid>);

/// A step of a reconcile plan: the operations on one entry, in order, and
/// what to remember once they ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    id: Uuid,
    kind: Kind,
    ops: Vec<Op>,
    /// The entry's DN once the step ran.
    dn: String,
    entry_uuid: Option<String>,
    then: Then,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Then {
    /// Record the entry as managed.
    Learn,
    /// Forget the entry (deleted, or gone).
    Forget,
    /// Record it as disabled at this time.
    Disabled(i64),
}

impl LdapConnector {
    async fn deliver_batch(&self, batch: &[Event], view: &dyn View) -> Delivery {
        let inner = &self.inner;
        let cfg = &*inner.cfg;
        let placer = Placer { cfg, view };
        let mut outcomes = vec![Outcome::Delivered; batch.len()];
        // Coalesce: the last event of each object carries its final state.
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
        // Each entry is synced as soon as it is prepared (several in flight),
        // so that the connection is busy while the rest of the batch is
        // read from the store (about 30 µs an object, a sixth of the
        // batch's time when it came first). Safe: preparing reads only the
        // store, never what another item's sync writes.
        let mut tasks = JoinSet::new();
        for (n, id) in order.into_iter().enumerate() {
            let idx = &events_of[&id];
            let last = &batch[*idx.last().expect("one at least")];
            let prepared = (|| -> Result<Item, String> {
                let remote = view.remote(id).map_err(|e| e.to_string())?;
                let gone = last.operation == Operation::Deleted || last.object.is_null();
                let desired = if gone {
                    None
                } else {
                    placer.desired(last.kind, id, &last.object)?
                };
                let membership = idx.iter().any(|i| {
                    let e = &batch[*i];
                    e.operation != Operation::Updated || e.changed.iter().any(|c| c == "groups")
                });
                let groups = match (last.kind, &desired) {
                    (Kind::User, Some(_)) => Some(placer.group_dns(&last.object)?),
                    (Kind::User, None) => Some(BTreeMap::new()),
                    _ => None,
                };
                Ok(Item {
                    kind: last.kind,
                    id,
                    add_uuid: mapping::add_uuid(&cfg.name, id, batch[idx[0]].seq),
                    // The object is there but maps to no entry: only the
                    // inactive policy `delete` does that (kinds not synced
                    // were skipped above, a missing DN field is an error).
                    deactivated: !gone && desired.is_none(),
                    desired,
                    remote,
                    created: idx
                        .iter()
                        .any(|i| batch[*i].operation == Operation::Created),
                    groups,
                    membership,
                })
            })();
            match prepared {
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

        let mut learned = Vec::new();
        let mut users = Vec::new();
        let synced_groups: HashSet<String> = done
            .iter()
            .filter(|(_, item, r)| item.kind == Kind::Group && r.is_ok())
            .filter_map(|(_, item, _)| item.desired.as_ref().map(|d| dn_key(&d.dn)))
            .collect();
        for (_, item, r) in done {
            match r {
                Ok(d) => {
                    if let Some(l) = d.learned {
                        learned.push((item.id, l));
                    }
                    // An entry just added is in no group yet, whether or not
                    // the user's groups changed: a user added back after the
                    // inactive policy deleted it, or an entry deleted by hand.
                    if item.kind == Kind::User && (item.membership || d.old_dn.is_some() || d.fresh)
                    {
                        users.push((item, d.old_dn, d.fresh));
                    }
                }
                Err(e) => {
                    for i in &events_of[&item.id] {
                        outcomes[*i] = outcome_of(&e);
                    }
                }
            }
        }

        // Memberships: one modify per group. A group synced whole in this
        // batch already has its members from the store.
        let failed = self.memberships(&users, &synced_groups).await;
        for (id, e) in failed {
            for i in &events_of[&id] {
                if outcomes[*i] == Outcome::Delivered {
                    outcomes[*i] = outcome_of(&e);
                }
            }
        }
        Delivery { outcomes, learned }
    }

    /// Bring the groups of `users` in line; the users whose group change
    /// failed, with why.
    async fn memberships(
        &self,
        users: &[(Item, Option<String>, bool)],
        synced_groups: &HashSet<String>,
    ) -> Vec<(Uuid, OpError)> {
        let inner = &self.inner;
        let Some(base) = inner.search_base(Kind::Group) else {
            return Vec::new();
        };
        let cn = vec!["cn".to_string()];
        let mut changes: BTreeMap<String, Change> = BTreeMap::new();
        let mut failed = Vec::new();
        let groups_with = |dn: String| {
            let filter = format!(
                "(&(objectClass=groupOfNames)(member={}))",
                ldap3::ldap_escape(dn.as_str())
            );
            let base = base.clone();
            let cn = cn.clone();
            async move { inner.search(&base, &filter, &cn).await }
        };
        for (item, old_dn, fresh) in users {
            let target = item.groups.clone().unwrap_or_default();
            let new_dn = item.desired.as_ref().map(|d| d.dn.clone());
            let mut found_new: BTreeMap<String, String> = BTreeMap::new();
            let mut found_old: BTreeMap<String, String> = BTreeMap::new();
            let r: Result<(), OpError> = async {
                if let (Some(dn), false) = (&new_dn, *fresh) {
                    for g in groups_with(dn.clone()).await? {
                        found_new.insert(dn_key(&g.dn), g.dn);
                    }
                }
                if let Some(old) = old_dn
                    .clone()
                    .filter(|o| Some(dn_key(o)) != new_dn.as_deref().map(dn_key))
                {
                    for g in groups_with(old).await? {
                        found_old.insert(dn_key(&g.dn), g.dn);
                    }
                }
                Ok(())
            }
            .await;
            if let Err(e) = r {
                failed.push((item.id, e));
                continue;
            }
            fn touch<'c>(
                changes: &'c mut BTreeMap<String, Change>,
                key: &str,
                dn: &str,
            ) -> &'c mut Change {
                changes.entry(key.to_owned()).or_insert_with(|| {
                    (dn.to_owned(), BTreeSet::new(), BTreeSet::new(), Vec::new())
                })
            }
            if let Some(dn) = &new_dn {
                for (k, gdn) in &target {
                    if !found_new.contains_key(k) {
                        let c = touch(&mut changes, k, gdn);
                        c.1.insert(dn.clone());
                        c.3.push(item.id);
                    }
                }
                for (k, gdn) in &found_new {
                    if !target.contains_key(k) {
                        let c = touch(&mut changes, k, gdn);
                        c.2.insert(dn.clone());
                        c.3.push(item.id);
                    }
                }
            }
            if let Some(old) = old_dn {
                for (k, gdn) in &found_old {
                    let c = touch(&mut changes, k, gdn);
                    c.2.insert(old.clone());
                    c.3.push(item.id);
                }
            }
        }
        let placeholder = mapping::empty_member(&inner.cfg);
        // Which groups hold the placeholder, so that only those lose it
        // (one search per batch, not one read per group).
        let with_placeholder: HashSet<String> = if changes.values().any(|c| !c.1.is_empty()) {
            match groups_with(placeholder.clone()).await {
                Ok(found) => found.iter().map(|g| dn_key(&g.dn)).collect(),
                Err(e) => {
                    for (_, (_, _, _, who)) in changes {
                        failed.extend(who.into_iter().map(|id| (id, e.clone())));
                    }
                    return failed;
                }
            }
        } else {
            HashSet::new()
        };
        let mut tasks = JoinSet::new();
        for (key, (dn, add, del, who)) in changes {
            if synced_groups.contains(&key) {
                continue;
            }
            let inner = Arc::clone(inner);
            let placeholder = placeholder.clone();
            let drop_placeholder = with_placeholder.contains(&key);
            let adding = !add.is_empty();
            tasks.spawn(async move {
                let mut mods = Vec::new();
                if !del.is_empty() {
                    mods.push(ModSpec {
                        action: ModAction::Delete,
                        attr: "member".into(),
                        values: del.into_iter().collect(),
                    });
                }
                if !add.is_empty() {
                    mods.push(ModSpec {
                        action: ModAction::Add,
                        attr: "member".into(),
                        values: add.into_iter().collect(),
                    });
                }
                if adding && drop_placeholder {
                    mods.push(ModSpec {
                        action: ModAction::Delete,
                        attr: "member".into(),
                        values: vec![placeholder.clone()],
                    });
                }
                let op = Op::Modify {
                    dn: dn.clone(),
                    mods: mods.clone(),
                };
                let r = match inner.exec(&op, true).await {
                    // A group emptied: it needs its placeholder member.
                    Err(OpError::Refused(m)) if m.contains("LDAP result 65") => {
                        mods.push(ModSpec {
                            action: ModAction::Add,
                            attr: "member".into(),
                            values: vec![placeholder],
                        });
                        inner.exec(&Op::Modify { dn, mods }, true).await.map(|_| ())
                    }
                    // The group is not in LDAP (yet): it gets its members when it is added.
                    Ok(_) => Ok(()),
                    Err(e) => Err(e),
                };
                (who, r)
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

    async fn make_plan(&self, view: &dyn View) -> Result<Plan, ConnectorError> {
        let inner = &self.inner;
        let cfg = &*inner.cfg;
        let viewerr = |e: crate::connector::ViewError| ConnectorError::View(e);
        // What idsync wants, users first (groups need their DNs).
        let mut wanted: Vec<Desired> = Vec::new();
        let mut user_dn: HashMap<Uuid, String> = HashMap::new();
        let mut problems = Vec::new();
        let mut deactivated: HashSet<Uuid> = HashSet::new();
        for kind in [Kind::User, Kind::Group, Kind::Asset] {
            if mapping::kind_config(cfg, kind).is_none() {
                continue;
            }
            let mut objs = Vec::new();
            view.for_each(kind, &mut |o| {
                objs.push(o);
                true
            })
            .map_err(viewerr)?;
            for obj in objs {
                let Some(id) = obj
                    .get("id")
                    .and_then(Value::as_str)
                    .and_then(|s| Uuid::parse_str(s).ok())
                else {
                    continue;
                };
                let members = if kind == Kind::Group {
                    view.members(id)
                        .map_err(viewerr)?
                        .iter()
                        .filter_map(|u| user_dn.get(u).cloned())
                        .collect()
                } else {
                    Vec::new()
                };
                match mapping::desired(cfg, kind, id, &obj, members) {
                    Ok(Some(d)) => {
                        if kind == Kind::User {
                            user_dn.insert(id, d.dn.clone());
                        }
                        wanted.push(d);
                    }
                    // Inactive, and the policy deletes its entry.
                    Ok(None) => {
                        deactivated.insert(id);
                    }
                    Err(m) => problems.push(format!("{} {id}: {m}", kind.plural())),
                }
            }
        }
        let mut owned: HashMap<Uuid, Remote> = HashMap::new();
        view.remotes(&mut |id, r| {
            owned.insert(id, r);
            true
        })
        .map_err(viewerr)?;
        let owned_uuids: HashSet<String> = owned.values().map(|r| r.entry_uuid.clone()).collect();

        // What LDAP has, page by page.
        let mut bases: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
        for kind in [Kind::User, Kind::Group, Kind::Asset] {
            let (Some(base), Some(k)) = (inner.search_base(kind), mapping::kind_config(cfg, kind))
            else {
                continue;
            };
            let e = bases.entry(base).or_default();
            e.0.insert(k.object_classes[0].clone());
            e.1.extend(inner.read_attrs(kind));
        }
        let mut by_uuid: HashMap<String, Current> = HashMap::new();
        let mut by_dn: HashMap<String, String> = HashMap::new();
        let mut seen = HashSet::new();
        for (base, (classes, attrs)) in &bases {
            let filter = format!(
                "(|{})",
                classes
                    .iter()
                    .map(|c| format!("(objectClass={})", ldap3::ldap_escape(c.as_str())))
                    .collect::<String>()
            );
            let attrs: Vec<String> = attrs.iter().cloned().collect();
            let found = {
                let _slot = inner.slots.acquire().await.expect("never closed");
                inner.conn.search_paged(base, &filter, &attrs).await
            };
            let found = found.map_err(|e| ConnectorError::Unavailable(e.to_string()))?;
            for c in found {
                let Some(u) = c.entry_uuid.clone() else {
                    continue;
                };
                if seen.insert(u.clone()) {
                    by_dn.insert(dn_key(&c.dn), u.clone());
                    by_uuid.insert(u, c);
                }
            }
        }
        // An owned entry moved out of the searched subtrees (a rename by
        // hand) is still found by its entryUUID.
        for r in owned.values() {
            if !by_uuid.contains_key(&r.entry_uuid) {
                let attrs = inner.read_attrs(r.kind);
                let _slot = inner.slots.acquire().await.expect("never closed");
                if let Some(c) = inner
                    .conn
                    .find_uuid(&cfg.base_dn, &r.entry_uuid, &attrs)
                    .await
                    .map_err(|e| ConnectorError::Unavailable(e.to_string()))?
                {
                    by_uuid.insert(r.entry_uuid.clone(), c);
                }
            }
        }

        let mut plan = Plan::default();
        let mut steps = Vec::new();
        let wanted_ids: HashSet<Uuid> = wanted.iter().map(|d| d.id).collect();
        for d in &wanted {
            let managed = mapping::managed(cfg, d.kind);
            let remote = owned.get(&d.id);
            let mine = remote.and_then(|r| by_uuid.get(&r.entry_uuid));
            let (cur, is_owned) = match mine {
                Some(c) => (Some(c), true),
                None => (
                    by_dn.get(&dn_key(&d.dn)).and_then(|u| by_uuid.get(u)),
                    false,
                ),
            };
            let ops = entry_ops(d, cur, &managed);
            if let (Some(c), false) = (cur, is_owned) {
                let taken = c
                    .entry_uuid
                    .as_ref()
                    .is_some_and(|u| owned_uuids.contains(u));
                if taken || (!ops.is_empty() && !cfg.adopt_existing) {
                    plan.skipped += 1;
                    continue;
                }
            }
            let unchanged_record =
                is_owned && remote.is_some_and(|r| dn_key(&r.dn) == dn_key(&d.dn));
            if ops.is_empty() && unchanged_record {
                continue;
            }
            match ops.first() {
                Some(Op::Add { .. }) => plan.creates += 1,
                Some(_) => plan.updates += 1,
                None => {}
            }
            steps.push(Step {
                id: d.id,
                kind: d.kind,
                ops,
                dn: d.dn.clone(),
                entry_uuid: cur.and_then(|c| c.entry_uuid.clone()),
                then: Then::Learn,
            });
        }
        let mut retired: Vec<(&Uuid, &Remote)> = owned
            .iter()
            .filter(|(id, _)| !wanted_ids.contains(id))
            .collect();
        retired.sort_by(|a, b| a.1.dn.cmp(&b.1.dn));
        for (id, r) in retired {
            let Some(cur) = by_uuid.get(&r.entry_uuid) else {
                steps.push(Step {
                    id: *id,
                    kind: r.kind,
                    ops: Vec::new(),
                    dn: r.dn.clone(),
                    entry_uuid: None,
                    then: Then::Forget,
                });
                continue;
            };
            if let Some((op, learned)) =
                inner.retire(r.kind, cur, Some(r), deactivated.contains(id))
            {
                plan.deletions += 1;
                let then = match learned.and_then(|l| l.disabled_at) {
                    Some(at) => Then::Disabled(at),
                    None => Then::Forget,
                };
                steps.push(Step {
                    id: *id,
                    kind: r.kind,
                    ops: vec![op],
                    dn: cur.dn.clone(),
                    entry_uuid: cur.entry_uuid.clone(),
                    then,
                });
            }
        }
        let t = &cfg.deletion_threshold;
        let share = if owned.is_empty() {
            0.0
        } else {
            plan.deletions as f64 * 100.0 / owned.len() as f64
        };
        if plan.deletions > t.max || share > t.percent {
            plan.refusal = Some(format!(
                "the reconcile would delete or disable {} of the {} entries idsync manages ({share:.1}%), over the deletion threshold ({} entries, {}%)",
                plan.deletions,
                owned.len(),
                t.max,
                t.percent
            ));
        }
        for p in problems {
            tracing::warn!(connector = %cfg.name, "reconcile: {p}");
        }
        plan.text = steps.iter().map(|s| ldif(&s.ops)).collect();
        plan.ops = steps
            .iter()
            .map(|s| serde_json::to_value(s).expect("steps serialise"))
            .collect();
        Ok(plan)
    }

    async fn apply_plan(&self, plan: &Plan) -> Result<Applied, ConnectorError> {
        let steps: Vec<Step> = plan
            .ops
            .iter()
            .map(|v| serde_json::from_value(v.clone()))
            .collect::<Result<_, _>>()
            .map_err(|e| ConnectorError::Config(format!("not a plan of this connector: {e}")))?;
        let mut tasks = JoinSet::new();
        for (n, step) in steps.into_iter().enumerate() {
            let inner = Arc::clone(&self.inner);
            tasks.spawn(async move {
                let mut uuid = step.entry_uuid.clone();
                let mut failure = None;
                for op in &step.ops {
                    match inner.exec(op, false).await {
                        Ok(Exec::Done(u)) => uuid = u.or(uuid),
                        Ok(Exec::Missing) if matches!(op, Op::Delete { .. }) => {}
                        Ok(other) => {
                            failure = Some(OpError::Refused(format!(
                                "{}: {other:?}; the plan is stale",
                                op_dn(op)
                            )));
                            break;
                        }
                        Err(e) => {
                            failure = Some(e);
                            break;
                        }
                    }
                }
                if let Some(e) = failure {
                    return (n, step, Err(e));
                }
                if uuid.is_none() && matches!(step.then, Then::Learn) {
                    match inner.uuid_of(step.kind, &step.dn).await {
                        Ok(u) => uuid = Some(u),
                        Err(e) => return (n, step, Err(e)),
                    }
                }
                (n, step, Ok(uuid))
            });
        }
        let mut results = Vec::new();
        while let Some(j) = tasks.join_next().await {
            if let Ok(r) = j {
                results.push(r);
            }
        }
        results.sort_by_key(|(n, _, _)| *n);
        let mut out = Applied::default();
        for (_, step, r) in results {
            match r {
                Ok(uuid) => {
                    out.text.push_str(&ldif(&step.ops));
                    out.done += step.ops.len();
                    let remote = |disabled_at| Remote {
                        kind: step.kind,
                        dn: step.dn.clone(),
                        entry_uuid: uuid.clone().unwrap_or_default(),
                        disabled_at,
                    };
                    out.learned.push((
                        step.id,
                        match step.then {
                            Then::Learn => Some(remote(None)),
                            Then::Forget => None,
                            Then::Disabled(at) => Some(remote(Some(at))),
                        },
                    ));
                }
                Err(e) => out.errors.push(e.to_string()),
            }
        }
        Ok(out)
    }
}

impl Connector for LdapConnector {
    fn name(&self) -> &str {
        &self.inner.cfg.name
    }

    fn delivery(&self) -> &DeliveryConfig {
        &self.inner.cfg.delivery
    }

    fn healthcheck(&self) -> BoxFuture<'_, Result<(), ConnectorError>> {
        Box::pin(async move {
            let inner = &self.inner;
            let r = inner.conn.read(&inner.cfg.base_dn, &[]).await;
            match r {
                Ok(Some(_)) => Ok(()),
                Ok(None) => Err(ConnectorError::Peer(format!(
                    "base DN {} not found",
                    inner.cfg.base_dn
                ))),
                Err(e) => Err(ConnectorError::Unavailable(e.to_string())),
            }
        })
    }

    fn deliver<'a>(&'a self, batch: &'a [Event], view: &'a dyn View) -> BoxFuture<'a, Delivery> {
        Box::pin(self.deliver_batch(batch, view))
    }

    fn plan<'a>(&'a self, view: &'a dyn View) -> BoxFuture<'a, Result<Plan, ConnectorError>> {
        Box::pin(self.make_plan(view))
    }

    fn apply<'a>(&'a self, plan: &'a Plan) -> BoxFuture<'a, Result<Applied, ConnectorError>> {
        Box::pin(self.apply_plan(plan))
    }
}
