//! End-to-end tests of the LDAP connector: the real `idsync serve` pushing
//! to a real, throwaway OpenLDAP `slapd` (see `idsync_tests::ldap`).

use std::collections::HashSet;
use std::time::Duration;

use idsync_schema::Source;
use idsync_store::delivery::DeliverySave;
use idsync_store::Actor;
use idsync_tests::ldap::{
    daemon_env, daemon_env_with_delivery, drop_alice, members, run_ok, status, user_id,
    with_reconciler, Entry, Slapd, BASE,
};
use idsync_tests::{wait_until, Env};

const WAIT: Duration = Duration::from_secs(120);

fn people() -> String {
    format!("ou=people,{BASE}")
}

fn env_for(slapd: &Slapd, extra: &str) -> Env {
    daemon_env(&format!("{}{extra}", slapd.connector_toml("ldap")))
}

/// The admin port of `env`'s configuration.
fn env_port(env: &Env) -> u16 {
    let cfg = std::fs::read_to_string(env.config.as_ref().unwrap()).unwrap();
    let at = cfg.find("127.0.0.1:").unwrap() + "127.0.0.1:".len();
    cfg[at..].split('"').next().unwrap().parse().unwrap()
}

fn dn(uid: &str) -> String {
    format!("uid={uid},ou=people,{BASE}").to_lowercase()
}

#[test]
fn users_groups_and_assets_reach_ldap_and_stay_right() {
    let slapd = Slapd::start(false);
    let env = env_for(
        &slapd,
        "[connectors.inactive_users]\naction = \"attribute\"\n",
    );
    let mut d = env.serve(&[]);
    wait_until("the daemon is ready", WAIT, || {
        env.inbox().join("users/processed").exists()
    });

    // Create: groups, then users with memberships, dropped as CSV files.
    env.drop_file(
        "groups",
        "g.csv",
        "displayName,description\nOps,Operators\nDev,Developers\n",
    );
    wait_until("groups in LDAP", WAIT, || {
        slapd.entry(&format!("cn=Dev,ou=groups,{BASE}")).is_some()
    });
    let dev = slapd.entry(&format!("cn=Dev,ou=groups,{BASE}")).unwrap();
    assert!(dev.get("objectClass").iter().any(|c| c == "groupOfNames"));
    assert_eq!(dev.one("description").as_deref(), Some("Developers"));
    assert_eq!(
        dev.get("member").len(),
        1,
        "an empty group has the placeholder member"
    );

    env.drop_file(
        "users",
        "u.csv",
        "status,loginName,mail,firstName,lastName,groups\n\
         active,alice,alice@example.org,Alice,Liddell,Ops|Dev\n\
         active,bob,bob@example.org,Bob,Builder,Ops\n",
    );
    wait_until("alice and bob in their groups", WAIT, || {
        members(&slapd, "Ops") == HashSet::from([dn("alice"), dn("bob")])
            && members(&slapd, "Dev") == HashSet::from([dn("alice")])
    });
    let alice = slapd.entry(&dn("alice")).expect("alice's entry");
    assert!(alice
        .get("objectClass")
        .iter()
        .any(|c| c == "inetOrgPerson"));
    assert_eq!(alice.one("sn").as_deref(), Some("Liddell"));
    assert_eq!(alice.one("givenName").as_deref(), Some("Alice"));
    assert_eq!(alice.one("mail").as_deref(), Some("alice@example.org"));
    assert!(
        alice.one("userPassword").is_none(),
        "no password is ever written"
    );
    let uuid = alice.one("entryUUID").unwrap();

    // Update and rename (the DN-forming loginName changes): same entry,
    // memberships follow the new DN.
    env.drop_file(
        "users",
        "u2.csv",
        "status,loginName,mail,lastName,groups\nactive,alice2,alice@example.org,Pleasance,Ops\n",
    );
    wait_until("alice renamed and updated", WAIT, || {
        slapd
            .entry(&dn("alice2"))
            .is_some_and(|e| e.one("sn").as_deref() == Some("Pleasance"))
            && members(&slapd, "Dev").len() == 1
            && !members(&slapd, "Dev").contains(&dn("alice2"))
    });
    assert!(slapd.entry(&dn("alice")).is_none());
    let alice2 = slapd.entry(&dn("alice2")).unwrap();
    assert_eq!(
        alice2.one("entryUUID"),
        Some(uuid),
        "a rename, not a new entry"
    );
    assert_eq!(
        members(&slapd, "Ops"),
        HashSet::from([dn("alice2"), dn("bob")]),
        "{}",
        d.log()
    );
    // Dev was emptied: it keeps its placeholder, not a stale DN.
    assert_eq!(
        members(&slapd, "Dev"),
        HashSet::from([format!("cn=idsync-empty-group,{BASE}")])
    );

    // Deactivate bob (policy: set an attribute) and take him out of Ops.
    env.drop_file(
        "users",
        "u3.csv",
        "status,loginName,mail,lastName,groups\ninactive,bob,bob@example.org,Builder,\n",
    );
    wait_until("bob inactive and out of Ops", WAIT, || {
        slapd
            .entry(&dn("bob"))
            .and_then(|e| e.one("employeeType"))
            .as_deref()
            == Some("inactive")
            && members(&slapd, "Ops") == HashSet::from([dn("alice2")])
    });

    // Assets become devices.
    env.drop_file("assets", "a.csv", "name,description\nsrv1,Web server\n");
    wait_until("the device", WAIT, || {
        slapd.entry(&format!("cn=srv1,ou=devices,{BASE}")).is_some()
    });
    let srv = slapd.entry(&format!("cn=srv1,ou=devices,{BASE}")).unwrap();
    assert!(srv.get("objectClass").iter().any(|c| c == "device"));
    assert_eq!(srv.one("description").as_deref(), Some("Web server"));

    let s = status(&env);
    assert!(
        s.contains("connector ldap:") && s.contains("lag 0") && s.contains("0 parked"),
        "{s}"
    );
    let metrics = ureq::get(&format!("http://127.0.0.1:{}/metrics", env_port(&env)))
        .set("Authorization", &format!("Bearer {}", env.admin_token()))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "idsync_connector_lag{connector=\"ldap\"} 0",
        "idsync_connector_parked{connector=\"ldap\"} 0",
        "idsync_connector_failed_total{connector=\"ldap\"} 0",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    assert!(metrics.contains("idsync_connector_delivered_total{connector=\"ldap\"}"));

    // Delete bob (as SCIM would) while the daemon is down: delivered at
    // the next start, and he leaves every group.
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
    with_reconciler(&env, |rec| {
        let id = user_id(rec.store(), "bob@example.org");
        let mut tx = rec.begin(Source::Api, Actor::config("test"));
        assert!(tx.delete_user(id).unwrap());
        tx.commit().unwrap();
    });
    let mut d = env.serve(&[]);
    wait_until("bob deleted", WAIT, || slapd.entry(&dn("bob")).is_none());

    // An entry idsync does not own, and drift made by hand.
    slapd.add(&format!(
        "dn: uid=carol,{people}\nobjectClass: inetOrgPerson\ncn: Carol\nsn: Other\nuid: carol\n",
        people = people()
    ));
    slapd.modify(&format!(
        "dn: {}\nchangetype: modify\nreplace: sn\nsn: Drifted\n-\ndelete: mail\n-\n\n\
         dn: cn=Ops,ou=groups,{BASE}\nchangetype: modify\nadd: member\nmember: uid=intruder,{people}\n",
        dn("alice2"),
        people = people()
    ));
    let (plan, plan_summary) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert!(plan.contains("replace: sn\nsn: Pleasance\n"), "{plan}");
    assert!(
        plan.contains("add: mail\nmail: alice@example.org\n"),
        "{plan}"
    );
    assert!(
        plan.contains("delete: member\nmember: uid=intruder"),
        "{plan}"
    );
    assert!(!plan.contains("carol"), "{plan}");
    assert!(plan_summary.contains("0 deletions"), "{plan_summary}");
    let (ran, _) = run_ok(&env, &["connectors", "reconcile", "ldap"]);
    assert_eq!(ran, plan, "the reconcile runs exactly the plan");
    let alice2 = slapd.entry(&dn("alice2")).unwrap();
    assert_eq!(alice2.one("sn").as_deref(), Some("Pleasance"));
    assert_eq!(alice2.one("mail").as_deref(), Some("alice@example.org"));
    assert_eq!(members(&slapd, "Ops"), HashSet::from([dn("alice2")]));
    assert!(
        slapd.entry(&format!("uid=carol,{}", people())).is_some(),
        "not ours: left alone"
    );
    let (again, _) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert_eq!(again, "", "nothing left to repair");

    d.signal("TERM");
    d.wait(WAIT).expect("stops");
    // Without a daemon, `plan` reads the store itself.
    let (offline, _) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert_eq!(offline, "");
}

/// `delivery.reconcile_every_s`: drift is repaired with nobody asking, and
/// the schedule counts from the last reconcile, across a restart.
#[test]
fn drift_is_repaired_by_the_scheduled_reconcile() {
    let slapd = Slapd::start(false);
    let env = daemon_env_with_delivery(&slapd.connector_toml("ldap"), "reconcile_every_s = 3\n");
    let mut d = env.serve(&[]);
    drop_alice(&env);
    wait_until("alice in LDAP", WAIT, || {
        slapd.entry(&dn("alice")).is_some()
    });
    let drift = || {
        slapd.modify(&format!(
            "dn: {}\nchangetype: modify\nreplace: sn\nsn: Drifted\n",
            dn("alice")
        ))
    };
    let sn = || slapd.entry(&dn("alice")).and_then(|e| e.one("sn"));
    drift();
    assert_eq!(sn().as_deref(), Some("Drifted"));
    wait_until("the drift repaired", Duration::from_secs(30), || {
        sn().as_deref() == Some("Liddell")
    });
    d.signal("TERM");
    d.wait(WAIT).expect("stops");

    drift();
    let mut d = env.serve(&[]);
    wait_until(
        "the drift repaired after a restart",
        Duration::from_secs(30),
        || sn().as_deref() == Some("Liddell"),
    );
    // The repair can be seen in LDAP a moment before its log line is
    // written: wait for the line rather than read the log at once.
    wait_until("the scheduled reconcile logged", WAIT, || {
        d.log().contains("scheduled reconcile done")
    });
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}

#[test]
fn the_deletion_threshold_stops_a_reconcile() {
    let slapd = Slapd::start(false);
    let env = env_for(
        &slapd,
        "[connectors.deletion_threshold]\nmax = 2\npercent = 50.0\n",
    );
    let mut users = String::from("status,loginName,mail,lastName\n");
    for i in 0..5 {
        users.push_str(&format!("active,u{i},u{i}@example.org,L{i}\n"));
    }
    let mut d = env.serve(&[]);
    wait_until("ready", WAIT, || {
        env.inbox().join("users/processed").exists()
    });
    env.drop_file("users", "u.csv", users);
    wait_until("5 users", WAIT, || slapd.count(&people(), "(uid=u*)") == 5);
    d.signal("TERM");
    d.wait(WAIT).expect("stops");

    // Three users vanish from the store behind the connector's back (its
    // cursor is moved past the deletions): only a reconcile would see it.
    with_reconciler(&env, |rec| {
        let mut tx = rec.begin(Source::Api, Actor::config("test"));
        for i in 0..3 {
            let id = user_id(rec.store(), &format!("u{i}@example.org"));
            tx.delete_user(id).unwrap();
        }
        tx.commit().unwrap();
        // The daemon is stopped: this process leads, as the test.
        let leadership = rec
            .store()
            .lead("test", std::time::Duration::from_secs(5))
            .unwrap();
        let epoch = leadership.role().epoch().cloned().unwrap();
        let mut save = DeliverySave::new("ldap", &epoch);
        save.cursor(rec.store().head().unwrap());
        rec.store().save_delivery(save).unwrap();
    });
    let mut d = env.serve(&[]);
    wait_until("the daemon answers", WAIT, || {
        status(&env).contains("connector ldap")
    });
    let (plan, summary) = run_ok(&env, &["connectors", "plan", "ldap"]);
    assert_eq!(plan.matches("changetype: delete").count(), 3, "{plan}");
    assert!(summary.contains("would stop here"), "{summary}");
    let out = env.run(&["connectors", "reconcile", "ldap"]);
    assert_eq!(
        out.status.code(),
        Some(5),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("deletion threshold"));
    assert_eq!(slapd.count(&people(), "(uid=u*)"), 5, "nothing deleted");
    let (ran, _) = run_ok(&env, &["connectors", "reconcile", "ldap", "--force"]);
    assert_eq!(ran, plan);
    assert_eq!(slapd.count(&people(), "(uid=u*)"), 2);
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}

/// idsync stopped hard after an add reached LDAP and before the entry's
/// `entryUUID` was saved, and the object was deleted since: delivered
/// again, the batch creates and deletes it, with nothing recorded to find
/// the entry by. The add had given the entry the `entryUUID` its delivery
/// derives, the same again, which finds it: deleted with its object. An
/// entry idsync did not add, at the other object's DN, stays. And an entry
/// whose add landed and that was edited since is still idsync's: put
/// right, not refused as someone else's.
#[test]
fn an_add_whose_entry_uuid_was_lost_is_deleted_with_its_object() {
    let slapd = Slapd::start(false);
    let env = env_for(&slapd, "");
    let mut d = env.serve(&[]);
    wait_until("the first reconcile done", WAIT, || {
        status(&env).contains("lag 0,")
    });
    d.signal("TERM");
    d.wait(WAIT).expect("stops");

    let csv = slapd.dir.path().join("u.csv");
    std::fs::write(
        &csv,
        "status,loginName,mail,lastName\nactive,dave,dave@example.org,Dave\n\
         active,erin,erin@example.org,Erin\nactive,fred,fred@example.org,Fred\n",
    )
    .unwrap();
    let (code, report) = env.import("users", &csv, &[]);
    assert_eq!(code, 0, "{report}");
    // What the crash left: dave's add landed with the entryUUID of its
    // delivery (the cursor is still before his creation); erin's DN holds
    // an entry of someone else's.
    let (dave_uuid, fred_uuid) = {
        let store = env.store();
        let created = store.changes(0, 10).unwrap();
        let add_uuid = |mail: &str| {
            let id = user_id(&store, mail);
            let seq = created.iter().find(|e| e.id == id).unwrap().seq;
            idsync_connectors::ldap::mapping::add_uuid("ldap", id, seq)
        };
        (add_uuid("dave@example.org"), add_uuid("fred@example.org"))
    };
    let entry = |uid: &str, sn: &str| {
        format!(
            "dn: uid={uid},{people}\nobjectClass: inetOrgPerson\nobjectClass: organizationalPerson\n\
             objectClass: person\nobjectClass: top\ncn: {sn}\nsn: {sn}\nmail: {uid}@example.org\nuid: {uid}\n",
            people = people()
        )
    };
    slapd.add_relaxed(&format!(
        "{}entryUUID: {dave_uuid}\n",
        entry("dave", "Dave")
    ));
    slapd.add_relaxed(&format!(
        "{}entryUUID: {fred_uuid}\n",
        entry("fred", "Edited")
    ));
    slapd.add(&entry("erin", "Erin"));
    with_reconciler(&env, |rec| {
        let mut tx = rec.begin(Source::Api, Actor::config("test"));
        for mail in ["dave@example.org", "erin@example.org"] {
            assert!(tx.delete_user(user_id(rec.store(), mail)).unwrap());
        }
        tx.commit().unwrap();
    });

    let mut d = env.serve(&[]);
    wait_until("dave's entry deleted", WAIT, || {
        status(&env).contains("lag 0,") && slapd.entry(&dn("dave")).is_none()
    });
    assert!(slapd.entry(&dn("erin")).is_some(), "not idsync's to delete");
    let fred = slapd.entry(&dn("fred")).unwrap();
    assert_eq!(fred.one("sn").as_deref(), Some("Fred"), "put right");
    assert_eq!(fred.one("entryUUID"), Some(fred_uuid.to_string()));
    let s = status(&env);
    assert!(s.contains(" 0 failed, 0 parked"), "{s}");
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
}

/// The `entryUUID`s the connector recorded for the entries it manages.
fn recorded_uuids(env: &Env) -> HashSet<String> {
    let mut recorded = HashSet::new();
    env.store()
        .delivery("ldap")
        .remotes(|_, r: serde_json::Value| {
            assert!(recorded.insert(r["entryUuid"].as_str().unwrap().to_owned()));
            true
        })
        .unwrap();
    recorded
}

fn uuids_of(entries: &[Entry]) -> HashSet<String> {
    entries.iter().filter_map(|e| e.one("entryUUID")).collect()
}

/// A bind DN that may write but not `manage` is refused the Relax Rules
/// control that lets idsync give an entry its `entryUUID`: the connector
/// says so once, and reads each new entry's `entryUUID` back instead. No
/// change fails, and each entry is recorded by the UUID slapd gave it.
#[test]
fn a_bind_dn_without_manage_access_gets_its_entry_uuids_read_back() {
    let slapd = Slapd::start_with_service_account();
    let env = daemon_env(&slapd.service_connector_toml("ldap"));
    let mut d = env.serve(&[]);
    wait_until("ready", WAIT, || {
        env.inbox().join("users/processed").exists()
    });
    let mut users = String::from("status,loginName,mail,lastName\n");
    for i in 0..20 {
        users.push_str(&format!("active,user{i},user{i}@example.org,Last{i}\n"));
    }
    env.drop_file("users", "u.csv", users);
    wait_until("every user in LDAP", WAIT, || {
        slapd.count(&people(), "(uid=user*)") == 20 && status(&env).contains("lag 0,")
    });
    let s = status(&env);
    assert!(s.contains(" 0 failed, 0 parked"), "{s}");
    d.signal("TERM");
    d.wait(WAIT).expect("stops");
    let log = d.log();
    assert_eq!(
        log.matches("will not take an entryUUID from idsync")
            .count(),
        1,
        "{log}"
    );
    let entries = slapd.search(&people(), "(uid=user*)");
    assert_eq!(recorded_uuids(&env), uuids_of(&entries));
    assert_eq!(uuids_of(&entries).len(), 20);
}

#[test]
fn a_backlog_survives_slapd_going_away() {
    const N: usize = 10_000;
    let mut slapd = Slapd::start(false);
    let env = env_for(&slapd, "");
    let mut d = env.serve(&[]);
    wait_until("ready", WAIT, || {
        env.inbox().join("users/processed").exists()
    });
    let mut users = String::from("status,loginName,mail,lastName\n");
    for i in 0..N {
        users.push_str(&format!("active,user{i},user{i}@example.org,Last{i}\n"));
    }
    env.drop_file("users", "big.csv", users);
    wait_until("a part delivered", WAIT, || {
        slapd.count(&people(), "(uid=user*)") >= 1500
    });
    slapd.stop();
    std::thread::sleep(Duration::from_millis(1500));
    let s = status(&env);
    assert!(!s.contains("lag 0,"), "the backlog waits: {s}");
    slapd.restart();
    wait_until("every change delivered", Duration::from_secs(300), || {
        status(&env).contains("lag 0,")
    });
    let s = status(&env);
    assert!(s.contains("0 parked"), "{s}");
    let entries = slapd.search(&people(), "(uid=user*)");
    assert_eq!(entries.len(), N);
    let uids: HashSet<String> = entries.iter().filter_map(|e| e.one("uid")).collect();
    assert_eq!(uids.len(), N, "no entry twice");
    for e in &entries {
        let uid = e.one("uid").unwrap();
        let i = uid.trim_start_matches("user");
        assert_eq!(e.one("sn"), Some(format!("Last{i}")), "{e:?}");
    }
    d.signal("TERM");
    d.wait(WAIT).expect("stops");

    // Each entry is recorded once, by the entryUUID LDAP has (the one
    // idsync gave it: the root DN may use Relax Rules).
    assert_eq!(recorded_uuids(&env), uuids_of(&entries));
    assert!(!d.log().contains("will not take an entryUUID"));
    let store = env.store();
    let dead = store.delivery("ldap").dead_letters().unwrap().len();
    assert_eq!(dead, 0, "the dead-letter list is empty");
}

/// Issue 14: what an identity provider sends over SCIM beyond idsync's own
/// fields reaches LDAP through the default mapping: the title, phone
/// numbers, the enterprise department and employee number, the address,
/// and the manager as the DN of the manager's entry.
#[test]
fn scim_attributes_and_the_manager_reach_ldap() {
    let slapd = Slapd::start(false);
    let secret = "scim-ldap-test-token";
    let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(secret.as_bytes()));
    let port = idsync_tests::free_port();
    let env = daemon_env(&format!(
        "[scim]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n\
         [[tokens]]\nname = \"idp\"\nsha256 = \"{digest}\"\nroles = [\"read\", \"write\"]\n{}",
        slapd.connector_toml("ldap")
    ));
    let _d = env.serve(&[]);
    let base = format!("http://127.0.0.1:{port}/scim/v2");
    let post = |body: serde_json::Value| -> serde_json::Value {
        let mut tries = 0;
        loop {
            match ureq::post(&format!("{base}/Users"))
                .set("Authorization", &format!("Bearer {secret}"))
                .set("Content-Type", "application/scim+json")
                .send_string(&body.to_string())
            {
                Ok(r) => return serde_json::from_str(&r.into_string().unwrap()).unwrap(),
                Err(ureq::Error::Transport(_)) if tries < 600 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => panic!("{e:?}"),
            }
        }
    };
    let ent = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
    let boss = post(serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "boss", "name": {"familyName": "Boss"},
        "emails": [{"value": "boss@example.org", "primary": true}]
    }));
    post(serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", ent],
        "userName": "ann", "name": {"givenName": "Ann", "familyName": "Smith"},
        "emails": [{"value": "ann@example.org", "primary": true}],
        "title": "Engineer",
        "phoneNumbers": [{"value": "+49 30 123", "type": "work"}, {"value": "+49 170 456", "type": "mobile"}],
        "addresses": [{"streetAddress": "Hauptstr. 1", "locality": "Berlin", "postalCode": "10115", "type": "work"}],
        ent: {"employeeNumber": "701984", "department": "IT", "organization": "Example AG",
              "manager": {"value": boss["id"]}}
    }));
    wait_until("ann in LDAP", WAIT, || slapd.entry(&dn("ann")).is_some());
    let ann = slapd.entry(&dn("ann")).unwrap();
    let one = |a: &str| ann.one(a).unwrap_or_else(|| panic!("{a} missing: {ann:?}"));
    assert_eq!(one("title"), "Engineer");
    assert_eq!(one("telephoneNumber"), "+49 30 123");
    assert_eq!(one("mobile"), "+49 170 456");
    assert_eq!(one("employeeNumber"), "701984");
    assert_eq!(one("departmentNumber"), "IT");
    assert_eq!(one("o"), "Example AG");
    assert_eq!(one("l"), "Berlin");
    assert_eq!(one("street"), "Hauptstr. 1");
    assert_eq!(one("postalCode"), "10115");
    assert_eq!(one("manager").to_lowercase(), dn("boss"));

    // RFC 7643 requires no surname: `person`'s sn and cn fall back.
    post(serde_json::json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": "room-412", "displayName": "Room 4.12"
    }));
    wait_until("the room in LDAP", WAIT, || {
        slapd.entry(&dn("room-412")).is_some()
    });
    let room = slapd.entry(&dn("room-412")).unwrap();
    assert_eq!(room.one("sn").as_deref(), Some("Room 4.12"));
    assert_eq!(room.one("cn").as_deref(), Some("Room 4.12"));
    assert!(room.one("mail").is_none());
}
