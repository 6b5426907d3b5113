//! The full reconcile, in two calls: `plan` reads what the store has and
//! what the directory has and hands both to the pure diff ([`super::plan`]);
//! `apply` runs exactly the steps of such a plan, several in flight, and
//! reports what it did and the remote ids to remember.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use idsync_schema::Kind;
use serde_json::Value;
use tokio::task::JoinSet;
use uuid::Uuid;

use super::config::LdapConfig;
use super::conn::{Exec, OpError};
use super::ldif::ldif;
use super::mapping;
use super::ops::Op;
use super::plan::{self, Directory, Step, Store, Then};
use super::{now_unix, Inner};
use crate::connector::{Applied, ConnectorError, Plan, View, ViewError};

/// The kinds a reconcile covers, users first (groups need their DNs).
const KINDS: [Kind; 3] = [Kind::User, Kind::Group, Kind::Asset];

/// Compare the directory with the store; change nothing.
pub(super) async fn make_plan(inner: &Inner, view: &dyn View) -> Result<Plan, ConnectorError> {
    let cfg = &*inner.cfg;
    let (store, problems) = read_store(cfg, view)?;
    let dir = read_directory(inner, &store).await?;
    let plan = plan::plan(cfg, &store, &dir, now_unix());
    for p in problems {
        tracing::warn!(connector = %cfg.name, "reconcile: {p}");
    }
    Ok(plan)
}

/// What idsync wants and what it manages; the objects that map to no
/// entry because of an error, as messages.
fn read_store(cfg: &LdapConfig, view: &dyn View) -> Result<(Store, Vec<String>), ViewError> {
    let mut store = Store::default();
    let mut user_dn: HashMap<Uuid, String> = HashMap::new();
    let mut problems = Vec::new();
    for kind in KINDS {
        if mapping::kind_config(cfg, kind).is_none() {
            continue;
        }
        let mut objs = Vec::new();
        view.for_each(kind, &mut |o| {
            objs.push(o);
            true
        })?;
        for obj in objs {
            let Some(id) = obj
                .get("id")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())
            else {
                continue;
            };
            let members = if kind == Kind::Group {
                view.members(id)?
                    .iter()
                    .filter_map(|u| user_dn.get(u).cloned())
                    .collect()
            } else {
                Vec::new()
            };
            let manager_dn = match mapping::manager_id(&obj) {
                // A manager later in the scan is placed from its object.
                Some(m) => match user_dn.get(&m) {
                    Some(dn) => Some(dn.clone()),
                    None => view
                        .object(Kind::User, m)?
                        .and_then(|o| mapping::dn_of(cfg, Kind::User, &o).ok().flatten()),
                },
                None => None,
            };
            let refs = mapping::Refs {
                member_dns: members,
                manager_dn,
            };
            match mapping::desired(cfg, kind, id, &obj, refs) {
                Ok(Some(d)) => {
                    if kind == Kind::User {
                        user_dn.insert(id, d.dn.clone());
                    }
                    store.wanted.push(d);
                }
                // Inactive, and the policy deletes its entry.
                Ok(None) => {
                    store.deactivated.insert(id);
                }
                Err(m) => problems.push(format!("{} {id}: {m}", kind.plural())),
            }
        }
    }
    view.remotes(&mut |id, r| {
        store.owned.insert(id, r);
        true
    })?;
    Ok((store, problems))
}

/// What the directory has: the entries of the synced kinds, page by page,
/// under each search base, and the owned entries moved out of them.
async fn read_directory(inner: &Inner, store: &Store) -> Result<Directory, ConnectorError> {
    let unavailable = |e: OpError| ConnectorError::Unavailable(e.to_string());
    let mut dir = Directory::default();
    for (base, (classes, attrs)) in search_bases(inner) {
        let filter = format!(
            "(|{})",
            classes
                .iter()
                .map(|c| format!("(objectClass={})", ldap3::ldap_escape(c.as_str())))
                .collect::<String>()
        );
        let attrs: Vec<String> = attrs.into_iter().collect();
        let found = {
            let _slot = inner.slots.acquire().await.expect("never closed");
            inner.conn.search_paged(&base, &filter, &attrs).await
        };
        for c in found.map_err(unavailable)? {
            dir.found(c);
        }
    }
    // An owned entry moved out of the searched subtrees (a rename by
    // hand) is still found by its entryUUID.
    for r in store.owned.values() {
        if !dir.has(&r.entry_uuid) {
            let attrs = inner.read_attrs(r.kind);
            if let Some(c) = inner
                .find_uuid(&r.entry_uuid, &attrs)
                .await
                .map_err(unavailable)?
            {
                dir.moved(r.entry_uuid.clone(), c);
            }
        }
    }
    Ok(dir)
}

/// The search bases of the synced kinds, each with the object classes to
/// look for and the attributes to read there.
fn search_bases(inner: &Inner) -> BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> {
    let mut bases: BTreeMap<String, (BTreeSet<String>, BTreeSet<String>)> = BTreeMap::new();
    for kind in KINDS {
        let (Some(base), Some(k)) = (
            inner.search_base(kind),
            mapping::kind_config(&inner.cfg, kind),
        ) else {
            continue;
        };
        let e = bases.entry(base).or_default();
        e.0.insert(k.object_classes[0].clone());
        e.1.extend(inner.read_attrs(kind));
    }
    bases
}

/// Run the steps of `plan` (made by [`make_plan`]), several in flight; a
/// step stops at its first failed operation.
pub(super) async fn apply_plan(inner: &Arc<Inner>, plan: &Plan) -> Result<Applied, ConnectorError> {
    let steps: Vec<Step> = plan
        .ops
        .iter()
        .map(|v| serde_json::from_value(v.clone()))
        .collect::<Result<_, _>>()
        .map_err(|e| ConnectorError::Config(format!("not a plan of this connector: {e}")))?;
    let mut tasks = JoinSet::new();
    for (n, step) in steps.into_iter().enumerate() {
        let inner = Arc::clone(inner);
        tasks.spawn(async move {
            let r = run_step(&inner, &step).await;
            (n, step, r)
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
                out.learned.push((step.id, step.remembered(uuid)));
            }
            Err(e) => out.errors.push(e.to_string()),
        }
    }
    Ok(out)
}

/// Run one step's operations, in order; the entry's `entryUUID` after them.
async fn run_step(inner: &Inner, step: &Step) -> Result<Option<String>, OpError> {
    let mut uuid = step.entry_uuid.clone();
    for op in &step.ops {
        match inner.exec(op, false).await? {
            Exec::Done(u) => uuid = u.or(uuid),
            Exec::Missing if matches!(op, Op::Delete { .. }) => {}
            other => {
                return Err(OpError::Refused(format!(
                    "{}: {other:?}; the plan is stale",
                    op.dn()
                )))
            }
        }
    }
    if uuid.is_none() && step.then == Then::Learn {
        uuid = Some(inner.uuid_of(step.kind, &step.dn).await?);
    }
    Ok(uuid)
}
