//! The daemon on `store.engine = "postgres"`, against a real PostgreSQL
//! (Debian's, a throwaway cluster started by the test): SCIM writes and
//! reads, a drop-folder import and the change log go through the same
//! reconciler as on redb; a SIGKILL, or the database going away for 10 s
//! under load, loses nothing acknowledged; another process (the CLI)
//! reads the database while the daemon runs, and the daemon, the leader
//! of the processes on it, leads again after the database restarted
//! (docs/operations.md).

mod scim_env;

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use idsync_store::test_postgres::TestPostgres;
use idsync_tests::{wait_until, Env};
use scim_env::{encode, sha, user, Scim, WAIT};
use serde_json::json;

fn on_postgres(pg: &TestPostgres) -> String {
    format!(
        "[store]\nengine = \"postgres\"\n[store.postgres]\nurl = \"{}\"\npool_size = 4\n",
        pg.url()
    )
}

/// A token for `idsync status` (the monitor role).
const MONITOR: &str = "idsync_monitor-token-for-the-postgres-test";

#[test]
fn the_daemon_keeps_its_store_in_postgres() {
    let pg = TestPostgres::start();
    let monitor = format!(
        "[[tokens]]\nname = \"monitor\"\nsha256 = \"{}\"\nroles = [\"monitor\"]\n",
        sha(MONITOR)
    );
    let mut s = Scim::start("", &format!("{}{monitor}", on_postgres(&pg)));

    let mut ids = Vec::new();
    for (login, family) in [("ann", "Smith"), ("bob", "Jones"), ("cy", "Lee")] {
        let r = s.post(
            "/Users",
            user(login, &format!("{login}@example.org"), family),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        ids.push(r.body["id"].as_str().unwrap().to_owned());
    }
    let r = s.post(
        "/Groups",
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
               "displayName": "staff", "members": [{"value": ids[0]}, {"value": ids[1]}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = s.filter("Users", "userName eq \"bob\"");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);
    assert_eq!(r.body["Resources"][0]["groups"][0]["display"], "staff");
    let r = s.patch(
        &format!("/Users/{}", ids[2]),
        json!([{"op": "replace", "path": "displayName", "value": "Cy Lee"}]),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let version = r.body["meta"]["version"].as_str().unwrap().to_owned();
    let r = s.get(&format!(
        "/Users?startIndex=2&count=2&filter={}",
        encode("active eq true")
    ));
    assert_eq!(r.body["totalResults"], 3, "{}", r.body);

    // A CSV drop lands in the same store, through the same reconciler.
    wait_until("the inbox exists", WAIT, || {
        s.env.inbox().join("users/processed").exists()
    });
    s.env.drop_file(
        "users",
        "more.csv",
        "status,mail,lastName\nactive,dee@example.org,Dee\n",
    );
    wait_until("the file is processed", WAIT, || {
        s.env.finished("users", "processed").len() == 1
    });
    let r = s.filter("Users", "userName eq \"dee@example.org\"");
    assert_eq!(r.body["totalResults"], 1, "{}", r.body);

    // Another process on the same database (the CLI) reads it while the
    // daemon runs: processes are no longer refused, only one leads.
    let changes = s.env.changes();
    assert!(changes.len() >= 5, "{changes:?}");
    assert!(
        s.daemon.log().contains("this process leads the replicas"),
        "{}",
        s.daemon.log()
    );

    // SIGKILL, then a restart: every acknowledged write is there.
    s.daemon.signal("KILL");
    s.daemon.wait(Duration::from_secs(10)).expect("killed");
    s.daemon = s.env.serve(&[]);
    wait_until("the SCIM listener answers again", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", s.port)).is_ok()
    });
    let r = s.get(&format!("/Users/{}", ids[2]));
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["displayName"], "Cy Lee");
    assert_eq!(r.body["meta"]["version"], version.as_str());
    assert_eq!(s.get("/Users").body["totalResults"], 4);
    // `idsync status` (from the admin listener's /status) names the engine.
    let status = s
        .env
        .command()
        .arg("status")
        .env("IDSYNC_TOKEN", MONITOR)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("store:           postgres (a point read takes "),
        "{text}{}",
        String::from_utf8_lossy(&status.stderr)
    );

    // The change log: every change once, numbered without a gap.
    s.daemon.signal("TERM");
    s.daemon.wait(Duration::from_secs(30)).expect("stopped");
    let changes = s.env.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    assert!(seqs.len() >= 6, "{changes:?}");
}

/// The database stops for 10 s while a SCIM client writes: requests in
/// that time are refused (never answered 201 without being stored), the
/// daemon recovers on its own when the database is back, and every
/// acknowledged user is in the store once, with one `created` event, in a
/// change log without a gap. A batch whose commit answer was lost cannot
/// land under numbers already used (the head it expects has moved).
#[test]
fn a_database_restart_under_load_loses_nothing_acknowledged() {
    let mut pg = TestPostgres::start();
    let mut s = Scim::start("", &on_postgres(&pg));
    let stop = AtomicBool::new(false);
    let (acked, refused) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let (mut acked, mut refused) = (Vec::new(), 0);
            for n in 0.. {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let login = format!("load{n}");
                let r = s.post(
                    "/Users",
                    user(&login, &format!("{login}@example.org"), "Load"),
                );
                match r.status {
                    201 => acked.push(login),
                    500..=599 => refused += 1,
                    other => panic!("POST {login}: {other} {}", r.body),
                }
            }
            (acked, refused)
        });
        std::thread::sleep(Duration::from_secs(2));
        pg.stop();
        std::thread::sleep(Duration::from_secs(10));
        pg.start_again();
        std::thread::sleep(Duration::from_secs(5));
        stop.store(true, Ordering::SeqCst);
        writer.join().expect("the writer thread")
    });
    assert!(refused > 0, "the outage refused nothing: it did not happen");
    // Written again after the outage, by the same daemon.
    let r = s.post("/Users", user("after", "after@example.org", "Load"));
    assert_eq!(r.status, 201, "{}", r.body);
    // The leader lock went with the old connections: the daemon was a
    // follower until it took the lock back (within replicas.failover_ms
    // of the database's return), and leads again.
    wait_until("the daemon leads again", WAIT, || {
        s.daemon
            .log()
            .matches("this process leads the replicas")
            .count()
            == 2
    });
    assert!(
        s.daemon.log().contains("no longer the leader"),
        "{}",
        s.daemon.log()
    );
    for login in &acked {
        let r = s.filter("Users", &format!("userName eq \"{login}\""));
        assert_eq!(r.body["totalResults"], 1, "{login}: {}", r.body);
    }

    s.daemon.signal("TERM");
    s.daemon.wait(Duration::from_secs(30)).expect("stopped");
    let changes = s.env.changes();
    let seqs: Vec<u64> = changes.iter().map(|c| c["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let created = changes
        .iter()
        .filter(|c| c["operation"] == "created" && c["kind"] == "user")
        .count();
    eprintln!(
        "{} acknowledged, {refused} refused during the outage, {created} created events",
        acked.len()
    );
    // Every acknowledged user once; a refused one may have landed (its
    // answer was lost), never twice.
    assert!(
        created > acked.len(),
        "{created} created events, {} acknowledged (and one after)",
        acked.len()
    );
    assert!(
        created <= acked.len() + 1 + refused,
        "{created} created events"
    );
}

/// `idsync store copy` moves a stopped redb store into PostgreSQL and back,
/// change log included, and `idsync store compare` says so; a copy never
/// merges into a store that holds something, and a difference is named.
#[test]
fn a_store_moves_to_postgres_and_back_exactly() {
    let pg = TestPostgres::start();
    let url = pg.url();
    let redb = Env::new();
    let mut csv = String::from("status,mail,lastName,groups\n");
    for i in 0..300 {
        csv.push_str(&format!("active,u{i}@example.org,L{i},staff\n"));
    }
    let groups = redb.file("groups.csv", "displayName\nstaff\n");
    assert_eq!(redb.import("groups", &groups, &[]).0, 0);
    let users = redb.file("users.csv", csv);
    assert_eq!(redb.import("users", &users, &[]).0, 0);
    let changes = redb.changes();

    let ok = |out: std::process::Output| -> String {
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        text
    };
    let copied = ok(redb.run(&["store", "copy", "--to", &url]));
    assert!(copied.starts_with("copied "), "{copied}");
    assert!(ok(redb.run(&["store", "compare", "--with", &url])).starts_with("the same: "));
    let again = redb.run(&["store", "copy", "--to", &url]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("is not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // The same installation on PostgreSQL sees the same store.
    let on_pg = Env::with_config(&on_postgres(&pg));
    assert_eq!(on_pg.changes(), changes);
    assert_eq!(on_pg.list("users").len(), 300);
    // And back into an embedded store.
    let back = on_pg.data_dir().join("back");
    let back_name = format!("sled:{}", back.display());
    ok(on_pg.run(&["store", "copy", "--to", &back_name]));
    let original = format!("redb:{}", redb.data_dir().join("store").display());
    assert!(ok(on_pg.run(&["store", "compare", "--with", &back_name])).starts_with("the same"));
    assert!(ok(on_pg.run(&["store", "compare", "--with", &original])).starts_with("the same"));

    // A change on one side is the first difference.
    let one_more = redb.file(
        "more.csv",
        "status,mail,lastName\nactive,new@example.org,N\n",
    );
    assert_eq!(redb.import("users", &one_more, &[]).0, 0);
    let out = redb.run(&["store", "compare", "--with", &url]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("they differ at "),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
