//! The reconcile's diff: from what the store has ([`Store`]) and what the
//! directory has ([`Directory`]), the steps that bring the directory in
//! line, as a [`Plan`]. A pure function, with no connection and no clock
//! (the caller passes `now`), so that its rules are tested without a
//! directory server:
//!
//! - an object without an entry gets one (a create), an entry that differs
//!   from its object is renamed and modified (an update);
//! - an entry idsync does not own, found where an object's entry goes, is
//!   left alone (skipped) unless it is identical or `adopt_existing` says
//!   so, and never when another object owns it;
//! - the entry of an object gone is retired per the deleted-object policy
//!   ([`retire`]): deleted, or disabled then deleted after the grace;
//! - entries idsync does not own and no object maps to are never touched;
//! - a plan that deletes or disables more than the deletion threshold
//!   allows carries a refusal.

use std::collections::{HashMap, HashSet};

use idsync_schema::Kind;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::config::{DeletionThreshold, LdapConfig};
use super::ldif::ldif;
use super::mapping::{self, dn_key, Desired};
use super::ops::{entry_ops, retire, Current, Op};
use crate::connector::{Plan, Remote};

/// What the store has, as far as a reconcile is concerned.
#[derive(Debug, Default)]
pub(super) struct Store {
    /// The entries idsync wants, one per object that maps to one.
    pub wanted: Vec<Desired>,
    /// Objects that exist but whose entry the inactive policy deletes.
    pub deactivated: HashSet<Uuid>,
    /// The entries idsync manages, by object.
    pub owned: HashMap<Uuid, Remote>,
}

/// What the directory has: the entries found, by `entryUUID` (entries
/// without one are not idsync's to manage, and are left out).
#[derive(Debug, Default)]
pub(super) struct Directory {
    by_uuid: HashMap<String, Current>,
    /// `dn_key` → `entryUUID` of the entries found in the searched subtrees.
    by_dn: HashMap<String, String>,
}

impl Directory {
    /// An entry found by a search of the subtrees (the first one found of
    /// an `entryUUID` counts).
    pub fn found(&mut self, c: Current) {
        let Some(u) = c.entry_uuid.clone() else {
            return;
        };
        if !self.by_uuid.contains_key(&u) {
            self.by_dn.insert(dn_key(&c.dn), u.clone());
            self.by_uuid.insert(u, c);
        }
    }

    pub fn has(&self, entry_uuid: &str) -> bool {
        self.by_uuid.contains_key(entry_uuid)
    }

    /// An owned entry found by its `entryUUID` outside the searched
    /// subtrees (moved there by hand): known by its `entryUUID` only.
    pub fn moved(&mut self, entry_uuid: String, c: Current) {
        self.by_uuid.insert(entry_uuid, c);
    }
}

/// A step of a reconcile plan: the operations on one entry, in order, and
/// what to remember once they ran.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Step {
    pub id: Uuid,
    pub kind: Kind,
    pub ops: Vec<Op>,
    /// The entry's DN once the step ran.
    pub dn: String,
    pub entry_uuid: Option<String>,
    pub then: Then,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(super) enum Then {
    /// Record the entry as managed.
    Learn,
    /// Forget the entry (deleted, or gone).
    Forget,
    /// Record it as disabled at this time.
    Disabled(i64),
}

impl Step {
    /// What to record for the object once the step ran, the entry having
    /// `entry_uuid`.
    pub fn remembered(&self, entry_uuid: Option<String>) -> Option<Remote> {
        let remote = |disabled_at| Remote {
            kind: self.kind,
            dn: self.dn.clone(),
            entry_uuid: entry_uuid.unwrap_or_default(),
            disabled_at,
        };
        match self.then {
            Then::Learn => Some(remote(None)),
            Then::Forget => None,
            Then::Disabled(at) => Some(remote(Some(at))),
        }
    }
}

/// The plan that brings `dir` in line with `store` under `cfg`'s policies,
/// at `now` (Unix seconds).
pub(super) fn plan(cfg: &LdapConfig, store: &Store, dir: &Directory, now: i64) -> Plan {
    let mut plan = Plan::default();
    let mut steps = wanted_steps(cfg, store, dir, &mut plan);
    steps.extend(retired_steps(cfg, store, dir, now, &mut plan));
    plan.refusal = refusal(&cfg.deletion_threshold, plan.deletions, store.owned.len());
    plan.text = steps.iter().map(|s| ldif(&s.ops)).collect();
    plan.ops = steps
        .iter()
        .map(|s| serde_json::to_value(s).expect("steps serialise"))
        .collect();
    plan
}

/// The steps of the entries idsync wants: creates and updates, counted in
/// `plan`, and the adoption of identical entries; entries not ours that
/// differ are skipped.
fn wanted_steps(cfg: &LdapConfig, store: &Store, dir: &Directory, plan: &mut Plan) -> Vec<Step> {
    let owned_uuids: HashSet<&str> = store
        .owned
        .values()
        .map(|r| r.entry_uuid.as_str())
        .collect();
    let mut steps = Vec::new();
    for d in &store.wanted {
        let managed = mapping::managed(cfg, d.kind);
        let remote = store.owned.get(&d.id);
        let mine = remote.and_then(|r| dir.by_uuid.get(&r.entry_uuid));
        let (cur, is_owned) = match mine {
            Some(c) => (Some(c), true),
            None => (
                dir.by_dn
                    .get(&dn_key(&d.dn))
                    .and_then(|u| dir.by_uuid.get(u)),
                false,
            ),
        };
        let ops = entry_ops(d, cur, &managed);
        if let (Some(c), false) = (cur, is_owned) {
            let taken = c
                .entry_uuid
                .as_deref()
                .is_some_and(|u| owned_uuids.contains(u));
            if taken || (!ops.is_empty() && !cfg.adopt_existing) {
                plan.skipped += 1;
                continue;
            }
        }
        let unchanged_record = is_owned && remote.is_some_and(|r| dn_key(&r.dn) == dn_key(&d.dn));
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
    steps
}

/// The steps of the entries idsync manages whose object no longer wants
/// one, by DN: retired per the deleted-object policy (counted in `plan`'s
/// deletions), or forgotten when the entry is gone already.
fn retired_steps(
    cfg: &LdapConfig,
    store: &Store,
    dir: &Directory,
    now: i64,
    plan: &mut Plan,
) -> Vec<Step> {
    let wanted_ids: HashSet<Uuid> = store.wanted.iter().map(|d| d.id).collect();
    let mut retired: Vec<(&Uuid, &Remote)> = store
        .owned
        .iter()
        .filter(|(id, _)| !wanted_ids.contains(id))
        .collect();
    retired.sort_by(|a, b| a.1.dn.cmp(&b.1.dn));
    let mut steps = Vec::new();
    for (id, r) in retired {
        let Some(cur) = dir.by_uuid.get(&r.entry_uuid) else {
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
        let deactivated = store.deactivated.contains(id);
        if let Some((op, learned)) = retire(&cfg.deleted, r.kind, cur, Some(r), deactivated, now) {
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
    steps
}

/// Why a plan with `deletions` of the `owned` entries must not run, if it
/// goes over the threshold `t`.
fn refusal(t: &DeletionThreshold, deletions: usize, owned: usize) -> Option<String> {
    let share = if owned == 0 {
        0.0
    } else {
        deletions as f64 * 100.0 / owned as f64
    };
    (deletions > t.max || share > t.percent).then(|| {
        format!(
            "the reconcile would delete or disable {deletions} of the {owned} entries idsync manages ({share:.1}%), over the deletion threshold ({} entries, {}%)",
            t.max, t.percent
        )
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ldap::config::test_config;
    use crate::ldap::config::DeletedAction;

    const NOW: i64 = 1_700_000_000;
    const DAY: i64 = 86_400;

    /// The user `login` as idsync wants it (object id from the name).
    fn user(cfg: &LdapConfig, login: &str) -> Desired {
        let obj = json!({"loginName": login, "mail": format!("{login}@x.org"),
                         "lastName": login.to_uppercase(), "status": "active"});
        mapping::desired(cfg, Kind::User, id(login), &obj, Default::default())
            .unwrap()
            .unwrap()
    }

    fn id(name: &str) -> Uuid {
        let mut b = [0u8; 16];
        b[..name.len()].copy_from_slice(name.as_bytes());
        Uuid::from_bytes(b)
    }

    /// The entry `d` is, as the directory holds it, with `entry_uuid`.
    fn entry(d: &Desired, entry_uuid: &str) -> Current {
        Current {
            dn: d.dn.clone(),
            entry_uuid: Some(entry_uuid.into()),
            attrs: d
                .attrs
                .iter()
                .map(|(a, v)| (a.to_ascii_lowercase(), v.iter().cloned().collect()))
                .collect(),
        }
    }

    fn remote(dn: &str, entry_uuid: &str) -> Remote {
        Remote {
            kind: Kind::User,
            dn: dn.into(),
            entry_uuid: entry_uuid.into(),
            disabled_at: None,
        }
    }

    fn steps(plan: &Plan) -> Vec<Step> {
        plan.ops
            .iter()
            .map(|v| serde_json::from_value(v.clone()).unwrap())
            .collect()
    }

    fn counts(plan: &Plan) -> (usize, usize, usize, usize) {
        (plan.creates, plan.updates, plan.deletions, plan.skipped)
    }

    #[test]
    fn an_object_without_an_entry_is_created() {
        let c = test_config();
        let alice = user(&c, "alice");
        let store = Store {
            wanted: vec![alice.clone()],
            ..Store::default()
        };
        let p = plan(&c, &store, &Directory::default(), NOW);
        assert_eq!(counts(&p), (1, 0, 0, 0));
        let s = steps(&p);
        assert_eq!(s.len(), 1);
        assert!(matches!(&s[0].ops[..], [Op::Add { dn, .. }] if *dn == alice.dn));
        assert_eq!(
            (s[0].id, s[0].then, s[0].entry_uuid.as_deref()),
            (alice.id, Then::Learn, None)
        );
        assert!(p.text.contains("changetype: add\n"), "{}", p.text);
        assert!(p.refusal.is_none());
    }

    #[test]
    fn an_owned_entry_is_updated_where_it_differs_only() {
        let c = test_config();
        let alice = user(&c, "alice");
        let mut store = Store {
            wanted: vec![alice.clone()],
            ..Store::default()
        };
        store.owned.insert(alice.id, remote(&alice.dn, "u-a"));
        let mut dir = Directory::default();
        dir.found(entry(&alice, "u-a"));
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 0, 0, 0));
        assert!(p.ops.is_empty() && p.text.is_empty());

        // An attribute changed by hand: a modify of that attribute only.
        let mut changed = entry(&alice, "u-a");
        changed.attrs.insert("sn".into(), vec!["Old".into()]);
        let mut dir = Directory::default();
        dir.found(changed);
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 1, 0, 0));
        match &steps(&p)[0].ops[..] {
            [Op::Modify { mods, .. }] => {
                assert_eq!(mods.len(), 1);
                assert_eq!(mods[0].attr, "sn");
            }
            o => panic!("{o:?}"),
        }

        // Renamed by hand, out of the searched subtrees: found by its
        // entryUUID, and moved back.
        let mut moved = entry(&alice, "u-a");
        moved.dn = "uid=alice,ou=elsewhere,dc=example,dc=org".into();
        let mut dir = Directory::default();
        dir.moved("u-a".into(), moved);
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 1, 0, 0));
        let s = steps(&p);
        assert!(matches!(
            &s[0].ops[..],
            [Op::Rename { new_superior: Some(parent), .. }] if *parent == alice.parent
        ));
        assert_eq!(s[0].entry_uuid.as_deref(), Some("u-a"));

        // Identical, but recorded at another DN: no write, the record is
        // brought up to date.
        store
            .owned
            .insert(alice.id, remote("uid=old,dc=example,dc=org", "u-a"));
        let mut dir = Directory::default();
        dir.found(entry(&alice, "u-a"));
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 0, 0, 0));
        let s = steps(&p);
        assert_eq!(s.len(), 1);
        assert!(s[0].ops.is_empty());
        assert_eq!(
            s[0].remembered(Some("u-a".into())),
            Some(remote(&alice.dn, "u-a"))
        );
    }

    #[test]
    fn entries_not_ours_are_left_alone() {
        let mut c = test_config();
        let alice = user(&c, "alice");
        let store = Store {
            wanted: vec![alice.clone()],
            ..Store::default()
        };
        // At alice's DN, not idsync's, and different: skipped.
        let mut theirs = entry(&alice, "u-x");
        theirs.attrs.insert("sn".into(), vec!["Theirs".into()]);
        // Not idsync's and no object maps to it: never touched.
        let mut stranger = entry(&user(&c, "zed"), "u-z");
        stranger.dn = "uid=zed,ou=people,dc=example,dc=org".into();
        let mut dir = Directory::default();
        dir.found(theirs.clone());
        dir.found(stranger);
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 0, 0, 1));
        assert!(p.ops.is_empty());

        // adopt_existing takes it over.
        c.adopt_existing = true;
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 1, 0, 0));
        assert_eq!(steps(&p)[0].entry_uuid.as_deref(), Some("u-x"));

        // An identical one is adopted without adopt_existing: no write.
        c.adopt_existing = false;
        let mut dir = Directory::default();
        dir.found(entry(&alice, "u-x"));
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(counts(&p), (0, 0, 0, 0));
        let s = steps(&p);
        assert!(s[0].ops.is_empty() && s[0].then == Then::Learn);
        assert_eq!(s[0].entry_uuid.as_deref(), Some("u-x"));

        // Another object's entry is never taken, adopt_existing or not.
        c.adopt_existing = true;
        let mut store = store;
        store.owned.insert(id("bob"), remote("uid=bob,dc=x", "u-x"));
        let mut dir = Directory::default();
        dir.found(entry(&alice, "u-x"));
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(p.skipped, 1);
        assert!(steps(&p).iter().all(|s| s.id != alice.id));
    }

    /// A plan for `bob`, owned and no longer wanted, under `cfg`.
    fn retire_bob(c: &LdapConfig, recorded: Remote, found: bool, deactivated: bool) -> Plan {
        let bob = user(c, "bob");
        let mut store = Store::default();
        store.owned.insert(bob.id, recorded);
        if deactivated {
            store.deactivated.insert(bob.id);
        }
        let mut dir = Directory::default();
        if found {
            dir.found(entry(&bob, "u-b"));
        }
        plan(c, &store, &dir, NOW)
    }

    #[test]
    fn the_entry_of_an_object_gone_is_retired_per_policy() {
        let mut c = test_config();
        c.deletion_threshold.percent = 100.0;
        let bob = user(&c, "bob");
        let rec = remote(&bob.dn, "u-b");

        let p = retire_bob(&c, rec.clone(), true, false);
        assert_eq!(counts(&p), (0, 0, 1, 0));
        let s = steps(&p);
        assert!(matches!(&s[0].ops[..], [Op::Delete { dn }] if *dn == bob.dn));
        assert_eq!(s[0].then, Then::Forget);
        assert_eq!(s[0].remembered(None), None);

        // Disable: the attribute set, the time remembered.
        c.deleted.action = DeletedAction::Disable;
        let p = retire_bob(&c, rec.clone(), true, false);
        assert_eq!(counts(&p), (0, 0, 1, 0));
        let s = steps(&p);
        match &s[0].ops[..] {
            [Op::Modify { mods, .. }] => {
                assert_eq!(mods[0].attr, c.deleted.attribute);
                assert_eq!(mods[0].values, [c.deleted.value.clone()]);
            }
            o => panic!("{o:?}"),
        }
        assert_eq!(s[0].then, Then::Disabled(NOW));
        let disabled = |days| Remote {
            disabled_at: Some(NOW - days * DAY),
            ..rec.clone()
        };
        // Within the grace period: nothing; after it: deleted.
        let p = retire_bob(&c, disabled(1), true, false);
        assert_eq!(counts(&p), (0, 0, 0, 0));
        assert!(p.ops.is_empty());
        let p = retire_bob(
            &c,
            disabled(i64::from(c.deleted.delete_after_days)),
            true,
            false,
        );
        assert_eq!(p.deletions, 1);
        assert!(matches!(&steps(&p)[0].ops[..], [Op::Delete { .. }]));

        // The inactive policy deletes now, whatever the deleted policy.
        let p = retire_bob(&c, rec.clone(), true, true);
        assert!(matches!(&steps(&p)[0].ops[..], [Op::Delete { .. }]));

        // Gone from the directory already: forgotten, nothing counted.
        let p = retire_bob(&c, rec, false, false);
        assert_eq!(counts(&p), (0, 0, 0, 0));
        let s = steps(&p);
        assert!(s[0].ops.is_empty() && s[0].then == Then::Forget);
    }

    #[test]
    fn a_plan_over_the_deletion_threshold_is_refused() {
        let mut c = test_config();
        // 3 of 10 owned entries deleted: 30 %, over the default 20 %.
        let mut store = Store::default();
        let mut dir = Directory::default();
        for n in 0..10 {
            let u = user(&c, &format!("u{n}"));
            let uuid = format!("u-{n}");
            store.owned.insert(u.id, remote(&u.dn, &uuid));
            dir.found(entry(&u, &uuid));
            if n >= 3 {
                store.wanted.push(u);
            }
        }
        let p = plan(&c, &store, &dir, NOW);
        assert_eq!(p.deletions, 3);
        let why = p.refusal.clone().expect("refused");
        assert!(
            why.contains("3 of the 10") && why.contains("30.0%"),
            "{why}"
        );
        // The plan is still made: `idsync connectors plan` shows it.
        assert_eq!(steps(&p).len(), 3);

        c.deletion_threshold.percent = 30.0;
        assert!(plan(&c, &store, &dir, NOW).refusal.is_none());
        c.deletion_threshold.max = 2;
        assert!(plan(&c, &store, &dir, NOW).refusal.is_some());

        let t = DeletionThreshold::default();
        assert!(refusal(&t, 0, 0).is_none());
        assert!(refusal(&t, t.max + 1, 100_000).is_some());
    }
}
