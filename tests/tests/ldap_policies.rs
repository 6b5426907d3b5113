//! End-to-end tests of the LDAP connector's policies, against a real,
//! throwaway `slapd` (see `idsync_tests::ldap`): what happens in LDAP to an
//! inactive user (`leave`, `attribute`, `move`, `delete`) and to the entry
//! of a deleted object (`delete`, `disable` then delete after the grace
//! period), and that reactivation undoes what deactivation did.

use std::collections::HashSet;
use std::time::Duration;

use idsync_schema::{Kind, Source};
use idsync_store::delivery::DeliverySave;
use idsync_store::Actor;
use idsync_tests::ldap::{
    daemon_env, members, run_ok, status, user_id, with_reconciler, Entry, Slapd, BASE,
};
use idsync_tests::{wait_until, Daemon, Env};

const WAIT: Duration = Duration::from_secs(120);

/// One deletion among three managed entries is 33 %, over the default
/// threshold of 20 %: these tests are about the policies, not the threshold.
const UNLIMITED: &str = "[connectors.deletion_threshold]\npercent = 100.0\n";

fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{BASE}")
}

fn inactive_dn(uid: &str) -> String {
    format!("uid={uid},ou=inactive,{BASE}")
}

fn set(dns: &[&str]) -> HashSet<String> {
    dns.iter().map(|d| d.to_lowercase()).collect()
}

/// Every entry under the base whose uid is `uid`, wherever it sits.
fn entries_of(slapd: &Slapd, uid: &str) -> Vec<Entry> {
    slapd.search(BASE, &format!("(uid={uid})"))
}

fn start_with_alice_and_bob(slapd: &Slapd, policy: &str) -> (Env, Daemon) {
    let env = daemon_env(&format!("{}{policy}", slapd.connector_toml("ldap")));
    let d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || {
        env.inbox().join("users/processed").exists()
    });
    env.drop_file("groups", "g.csv", "displayName\nOps\n");
    wait_until("the group", WAIT, || {
        slapd.entry(&format!("cn=Ops,ou=groups,{BASE}")).is_some()
    });
    env.drop_file(
        "users",
        "u.csv",
        "status,loginName,mail,lastName,groups\n\
         active,alice,alice@example.org,Liddell,Ops\n\
         active,bob,bob@example.org,Builder,Ops\n",
    );
    wait_until("alice and bob in Ops", WAIT, || {
        members(slapd, "Ops") == set(&[&dn("alice"), &dn("bob")])
    });
    (env, d)
}

/// Make alice inactive (and change her last name, so that every policy
/// has something visible to deliver), still in Ops.
fn deactivate_alice(env: &Env) {
    env.drop_file(
        "users",
        "off.csv",
        "status,loginName,mail,lastName,groups\ninactive,alice,alice@example.org,Gone,Ops\n",
    );
}

fn reactivate_alice(env: &Env) {
    env.drop_file(
        "users",
        "on.csv",
        "status,loginName,mail,lastName,groups\nactive,alice,alice@example.org,Liddell,Ops\n",
    );
}

/// The reconcile finds nothing to repair: delivery and reconcile agree on
/// what the policy wants.
fn assert_nothing_to_reconcile(env: &Env) {
    let (plan, summary) = run_ok(env, &["connectors", "plan", "ldap"]);
    assert_eq!(plan, "", "{summary}");
}

fn stop(mut d: Daemon) {
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}

#[test]
fn inactive_users_are_left_as_they_are_under_leave() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(&slapd, "");
    let uuid = slapd.entry(&dn("alice")).unwrap().one("entryUUID");

    deactivate_alice(&env);
    wait_until("alice's new last name", WAIT, || {
        slapd
            .entry(&dn("alice"))
            .is_some_and(|e| e.one("sn").as_deref() == Some("Gone"))
    });
    let alice = slapd.entry(&dn("alice")).unwrap();
    assert_eq!(alice.one("entryUUID"), uuid);
    assert_eq!(alice.one("employeeType"), None, "leave marks nothing");
    assert_eq!(members(&slapd, "Ops"), set(&[&dn("alice"), &dn("bob")]));
    assert_nothing_to_reconcile(&env);

    reactivate_alice(&env);
    wait_until("alice's old last name", WAIT, || {
        slapd
            .entry(&dn("alice"))
            .is_some_and(|e| e.one("sn").as_deref() == Some("Liddell"))
    });
    assert_eq!(slapd.entry(&dn("alice")).unwrap().one("entryUUID"), uuid);
    assert_nothing_to_reconcile(&env);
    stop(d);
}

#[test]
fn inactive_users_get_the_attribute_and_lose_it_when_reactivated() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        "[connectors.inactive_users]\naction = \"attribute\"\nattribute = \"employeeType\"\nvalue = \"left the company\"\n",
    );
    let uuid = slapd.entry(&dn("alice")).unwrap().one("entryUUID");

    deactivate_alice(&env);
    wait_until("alice marked inactive", WAIT, || {
        slapd.entry(&dn("alice")).is_some_and(|e| {
            e.one("employeeType").as_deref() == Some("left the company")
                && e.one("sn").as_deref() == Some("Gone")
        })
    });
    assert_eq!(slapd.entry(&dn("alice")).unwrap().one("entryUUID"), uuid);
    assert_eq!(
        members(&slapd, "Ops"),
        set(&[&dn("alice"), &dn("bob")]),
        "an inactive user keeps her groups"
    );
    assert_nothing_to_reconcile(&env);

    reactivate_alice(&env);
    wait_until("the mark removed", WAIT, || {
        slapd.entry(&dn("alice")).is_some_and(|e| {
            e.one("employeeType").is_none() && e.one("sn").as_deref() == Some("Liddell")
        })
    });
    assert_eq!(slapd.entry(&dn("alice")).unwrap().one("entryUUID"), uuid);
    assert_nothing_to_reconcile(&env);
    stop(d);
}

#[test]
fn inactive_users_move_to_the_ou_and_back() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        "[connectors.inactive_users]\naction = \"move\"\nou = \"ou=inactive,{base_dn}\"\n",
    );
    let uuid = slapd.entry(&dn("alice")).unwrap().one("entryUUID");

    deactivate_alice(&env);
    wait_until("alice moved, and Ops follows", WAIT, || {
        slapd
            .entry(&inactive_dn("alice"))
            .is_some_and(|e| e.one("sn").as_deref() == Some("Gone"))
            && members(&slapd, "Ops") == set(&[&inactive_dn("alice"), &dn("bob")])
    });
    assert!(slapd.entry(&dn("alice")).is_none());
    assert_eq!(
        slapd.entry(&inactive_dn("alice")).unwrap().one("entryUUID"),
        uuid,
        "a modrdn, not a new entry"
    );
    assert_eq!(entries_of(&slapd, "alice").len(), 1);
    // The reconcile searches ou=people, and still finds her by entryUUID.
    assert_nothing_to_reconcile(&env);

    reactivate_alice(&env);
    wait_until("alice back in ou=people, and in Ops", WAIT, || {
        slapd
            .entry(&dn("alice"))
            .is_some_and(|e| e.one("sn").as_deref() == Some("Liddell"))
            && members(&slapd, "Ops") == set(&[&dn("alice"), &dn("bob")])
    });
    assert!(slapd.entry(&inactive_dn("alice")).is_none());
    assert_eq!(slapd.entry(&dn("alice")).unwrap().one("entryUUID"), uuid);
    assert_nothing_to_reconcile(&env);
    stop(d);
}

#[test]
fn inactive_users_are_deleted_under_delete_whatever_the_deleted_policy() {
    let slapd = Slapd::start(false);
    // The deleted-object policy disables; it is for deleted objects, and
    // must not turn the inactive policy's `delete` into a disable.
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        "[connectors.inactive_users]\naction = \"delete\"\n\
         [connectors.deleted]\naction = \"disable\"\ndelete_after_days = 30\n",
    );
    let uuid = slapd.entry(&dn("alice")).unwrap().one("entryUUID");

    deactivate_alice(&env);
    wait_until("alice deleted and out of Ops", WAIT, || {
        slapd.entry(&dn("alice")).is_none() && members(&slapd, "Ops") == set(&[&dn("bob")])
    });
    assert!(entries_of(&slapd, "alice").is_empty(), "deleted, not moved");
    assert_nothing_to_reconcile(&env);

    reactivate_alice(&env);
    wait_until("alice added again, in Ops", WAIT, || {
        slapd.entry(&dn("alice")).is_some()
            && members(&slapd, "Ops") == set(&[&dn("alice"), &dn("bob")])
    });
    let alice = slapd.entry(&dn("alice")).unwrap();
    assert_eq!(alice.one("sn").as_deref(), Some("Liddell"));
    assert_eq!(alice.one("description"), None, "never disabled");
    assert_ne!(alice.one("entryUUID"), uuid, "a new entry");
    assert_nothing_to_reconcile(&env);
    let s = status(&env);
    assert!(s.contains("0 parked"), "{s}");
    stop(d);
}

#[test]
fn deleted_objects_are_deleted_under_delete() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(&slapd, "");
    env.drop_file("assets", "a.csv", "name,description\nsrv1,Web server\n");
    let srv1 = format!("cn=srv1,ou=devices,{BASE}");
    wait_until("the device", WAIT, || slapd.entry(&srv1).is_some());
    stop(d);

    with_reconciler(&env, |rec| {
        let alice = user_id(rec.store(), "alice@example.org");
        let asset = rec
            .store()
            .find::<idsync_schema::Asset>(Kind::Asset, "srv1")
            .unwrap()
            .unwrap()
            .id;
        let mut tx = rec.begin(Source::Api, Actor::config("test"));
        assert!(tx.delete_user(alice).unwrap());
        assert!(tx.delete_asset(asset).unwrap());
        tx.commit().unwrap();
    });
    let d = env.serve(&[]);
    wait_until("alice and srv1 deleted", WAIT, || {
        slapd.entry(&dn("alice")).is_none()
            && slapd.entry(&srv1).is_none()
            && members(&slapd, "Ops") == set(&[&dn("bob")])
    });
    assert_nothing_to_reconcile(&env);
    stop(d);
    let remotes = remote_count(&env);
    assert_eq!(remotes, 2, "bob and Ops are still managed, nothing else");
}

/// How many entries the connector records as its own.
fn remote_count(env: &Env) -> usize {
    let mut n = 0;
    env.store()
        .delivery("ldap")
        .remotes(|_, _: serde_json::Value| {
            n += 1;
            true
        })
        .unwrap();
    n
}

/// Move the time the connector disabled `id`'s entry back by `secs`, as
/// if that much time had passed (the daemon stopped).
fn backdate_disabled(env: &Env, id: uuid::Uuid, secs: i64) {
    let store = env.store();
    let mut r: serde_json::Value = store
        .delivery("ldap")
        .remote(id)
        .unwrap()
        .expect("a remote record");
    let at = r["disabledAt"].as_i64().expect("recorded as disabled");
    r["disabledAt"] = (at - secs).into();
    // The daemon is stopped: this process leads, as the test.
    let leadership = store
        .lead("test", std::time::Duration::from_secs(5))
        .unwrap();
    let epoch = leadership.role().epoch().cloned().unwrap();
    let mut save = DeliverySave::new("ldap", &epoch);
    save.remote(id, Some(&r));
    store.save_delivery(save).unwrap();
    store.flush().unwrap();
}

/// Delete alice with the daemon stopped; her id.
fn delete_alice(env: &Env) -> uuid::Uuid {
    let mut id = None;
    with_reconciler(env, |rec| {
        let alice = user_id(rec.store(), "alice@example.org");
        let mut tx = rec.begin(Source::Api, Actor::config("test"));
        assert!(tx.delete_user(alice).unwrap());
        tx.commit().unwrap();
        id = Some(alice);
    });
    id.unwrap()
}

fn wait_disabled(slapd: &Slapd) {
    wait_until("alice disabled and out of Ops", WAIT, || {
        slapd
            .entry(&dn("alice"))
            .is_some_and(|e| e.one("description").as_deref() == Some("disabled by idsync"))
            && members(slapd, "Ops") == set(&[&dn("bob")])
    });
}

#[test]
fn deleted_objects_are_disabled_then_deleted_after_the_grace_period() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        &format!("[connectors.deleted]\naction = \"disable\"\ndelete_after_days = 30\n{UNLIMITED}"),
    );
    let uuid = slapd.entry(&dn("alice")).unwrap().one("entryUUID");
    stop(d);
    let alice = delete_alice(&env);
    let d = env.serve(&[]);
    wait_disabled(&slapd);
    assert_eq!(slapd.entry(&dn("alice")).unwrap().one("entryUUID"), uuid);

    // The grace period runs: a reconcile leaves the disabled entry alone.
    assert_nothing_to_reconcile(&env);
    let (ran, _) = run_ok(&env, &["connectors", "reconcile", "ldap"]);
    assert_eq!(ran, "");
    assert!(slapd.entry(&dn("alice")).is_some());

    // 29 days later: still running.
    stop(d);
    backdate_disabled(&env, alice, 29 * 86_400);
    let d = env.serve(&[]);
    wait_until("the daemon answers", WAIT, || {
        status(&env).contains("connector ldap")
    });
    assert_nothing_to_reconcile(&env);

    // 30 days and a bit later: the reconcile deletes it, and forgets it.
    stop(d);
    backdate_disabled(&env, alice, 86_400 + 60);
    let d = env.serve(&[]);
    wait_until("the daemon answers", WAIT, || {
        status(&env).contains("connector ldap")
    });
    let (plan, summary) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert_eq!(
        plan,
        format!("dn: {}\nchangetype: delete\n\n", dn("alice")),
        "{summary}"
    );
    let (ran, _) = run_ok(&env, &["connectors", "reconcile", "ldap"]);
    assert_eq!(ran, plan);
    assert!(slapd.entry(&dn("alice")).is_none());
    assert_eq!(members(&slapd, "Ops"), set(&[&dn("bob")]));
    assert_nothing_to_reconcile(&env);
    stop(d);
    assert_eq!(remote_count(&env), 2, "alice is forgotten");
}

#[test]
fn a_grace_period_of_zero_days_deletes_at_the_next_reconcile() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        &format!("[connectors.deleted]\naction = \"disable\"\ndelete_after_days = 0\n{UNLIMITED}"),
    );
    stop(d);
    delete_alice(&env);
    let d = env.serve(&[]);
    // Disabled first, by the delivery of the deletion …
    wait_disabled(&slapd);
    // … and deleted by the next reconcile.
    let (ran, _) = run_ok(&env, &["connectors", "reconcile", "ldap"]);
    assert_eq!(ran, format!("dn: {}\nchangetype: delete\n\n", dn("alice")));
    assert!(slapd.entry(&dn("alice")).is_none());
    stop(d);
}

#[test]
fn a_move_under_a_missing_ou_is_parked_and_says_so() {
    let slapd = Slapd::start(false);
    let (env, d) = start_with_alice_and_bob(
        &slapd,
        "[connectors.inactive_users]\naction = \"move\"\nou = \"ou=nowhere,{base_dn}\"\n",
    );
    deactivate_alice(&env);
    wait_until("alice's change parked", WAIT, || {
        status(&env).contains("1 parked")
    });
    assert!(slapd.entry(&dn("alice")).is_some(), "left where it was");
    stop(d);
    let errors: Vec<String> = env
        .store()
        .delivery("ldap")
        .dead_letters()
        .unwrap()
        .into_iter()
        .map(|l| l.error)
        .collect();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains(&format!("under ou=nowhere,{BASE}: no such object")),
        "{errors:?}"
    );
}
