//! The daemon on `store.engine = "postgres"`, against a real PostgreSQL
//! (Debian's, a throwaway cluster started by the test): SCIM writes and
//! reads, a drop-folder import and the change log go through the same
//! reconciler as on redb; a SIGKILL, or the database going away for 10 s
//! under load, loses nothing acknowledged; another process (the CLI)
//! reads the database while the daemon runs, and the daemon, the leader
//! of the processes on it, leads again after the database restarted
//! (docs/operations.md); two daemons on one database, one leading the
//! connectors, and a failover when it is killed.

mod scim_env;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use idsync_store::test_postgres::TestPostgres;
use idsync_tests::{free_port, wait_until, Env};
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

/// The `[[tokens]]` entry of [`MONITOR`].
fn monitor_token() -> String {
    format!(
        "[[tokens]]\nname = \"monitor\"\nsha256 = \"{}\"\nroles = [\"monitor\"]\n",
        sha(MONITOR)
    )
}

/// What `idsync status` prints for the daemon of `env`.
fn status(env: &Env) -> String {
    let out = env
        .command()
        .arg("status")
        .env("IDSYNC_TOKEN", MONITOR)
        .output()
        .unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The daemon's `/metrics` (its admin listener from `env`'s configuration).
fn metrics(env: &Env) -> String {
    let config = std::fs::read_to_string(env.config.as_ref().unwrap()).unwrap();
    let listen = config
        .lines()
        .find_map(|l| l.strip_prefix("listen = \""))
        .and_then(|l| l.strip_suffix('"'))
        .expect("admin.listen in the configuration");
    ureq::get(&format!("http://{listen}/metrics"))
        .set("Authorization", &format!("Bearer {MONITOR}"))
        .call()
        .expect("GET /metrics")
        .into_string()
        .unwrap()
}

#[test]
fn the_daemon_keeps_its_store_in_postgres() {
    let pg = TestPostgres::start();
    let mut s = Scim::start("", &format!("{}{}", on_postgres(&pg), monitor_token()));

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
        text.contains("store:           postgres (a round trip to the database takes "),
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
            >= 2
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

/// A webhook receiver on 127.0.0.1:`port` that answers every POST 200
/// and counts the change-log sequence numbers it got (`seq` in the body),
/// until `stop`.
fn count_seqs(
    port: u16,
    stop: Arc<AtomicBool>,
) -> (Arc<Mutex<HashMap<u64, u32>>>, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind the receiver");
    listener.set_nonblocking(true).expect("non-blocking");
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let counts = Arc::clone(&seen);
    let thread = std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            let mut stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                }
                Err(e) => panic!("accept: {e}"),
            };
            stream.set_nonblocking(false).expect("blocking stream");
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .expect("timeout");
            let mut buf = Vec::new();
            let mut chunk = [0u8; 8192];
            // Head, then as much body as Content-Length says.
            let body = loop {
                let Ok(n) = stream.read(&mut chunk) else {
                    break None;
                };
                if n == 0 {
                    break None;
                }
                buf.extend_from_slice(&chunk[..n]);
                let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
                    continue;
                };
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    break Some(buf[end + 4..end + 4 + len].to_vec());
                }
            };
            let Some(body) = body else { continue };
            let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(seq) = event["seq"].as_u64() {
                *counts.lock().unwrap().entry(seq).or_insert(0) += 1;
            }
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    (seen, thread)
}

/// Two daemons on one database, with the same webhook connector: one
/// leads and delivers, the other follows and delivers nothing; the CLI
/// imports beside them. SIGKILL of the leader while it delivers: the
/// follower leads within `replicas.failover_ms` (plus the time PostgreSQL
/// takes to see the connection closed), with a higher epoch, and delivers
/// from the stored cursor: every change arrives, and only what the killed
/// leader had delivered but not saved arrives twice.
#[test]
fn two_daemons_one_leader_and_a_failover() {
    let pg = TestPostgres::start();
    let hook = free_port();
    let stop = Arc::new(AtomicBool::new(false));
    let (seen, receiver) = count_seqs(hook, Arc::clone(&stop));
    let replica = |name: &str| {
        Env::with_config(&format!(
            "{}[admin]\nlisten = \"127.0.0.1:{}\"\n\
             [replicas]\nnode_name = \"{name}\"\nfailover_ms = 1000\n\
             [[connectors]]\ntype = \"webhook\"\nname = \"hook\"\n\
             url = \"http://127.0.0.1:{hook}/h\"\nkinds = [\"user\"]\ntimeout_ms = 5000\n\
             [connectors.delivery]\nbatch_size = 50\nbackoff_initial_ms = 50\nbackoff_max_ms = 300\n{}",
            on_postgres(&pg),
            free_port(),
            monitor_token(),
        ))
    };
    let (env_a, env_b) = (replica("replica-a"), replica("replica-b"));
    let a = env_a.serve(&[]);
    wait_until("a leads", WAIT, || {
        a.log().contains("this process leads the replicas")
    });
    let mut b = env_b.serve(&[]);
    wait_until("b follows", WAIT, || {
        b.log().contains("a follower: another process leads")
    });
    assert!(b.log().contains("replica-a (epoch 1)"), "{}", b.log());
    // `idsync status` and /metrics: a leads, b follows and names a.
    wait_until("a's status says it leads", WAIT, || {
        status(&env_a).contains("role:            leader (this node, replica-a; epoch 1)")
    });
    let status_a = status(&env_a);
    assert!(
        status_a.contains("store:           postgres (a round trip to the database takes "),
        "{status_a}"
    );
    wait_until("b's status names the leader", WAIT, || {
        status(&env_b)
            .contains("role:            follower (replica-b); the leader is replica-a (epoch 1)")
    });
    let metrics_a = metrics(&env_a);
    assert!(
        metrics_a.contains("\nidsync_replica_leader 1\n"),
        "{metrics_a}"
    );
    assert!(
        metrics_a.contains(
            "idsync_replica_info{node=\"replica-a\",role=\"leader\",leader=\"replica-a\"} 1"
        ),
        "{metrics_a}"
    );
    let metrics_b = metrics(&env_b);
    assert!(
        metrics_b.contains("\nidsync_replica_leader 0\n"),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains(
            "idsync_replica_info{node=\"replica-b\",role=\"follower\",leader=\"replica-a\"} 1"
        ),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains("\nidsync_store_round_trip_seconds "),
        "{metrics_b}"
    );
    assert!(
        metrics_b.contains("idsync_store_info{engine=\"postgres\"} 1"),
        "{metrics_b}"
    );
    // A's first full reconcile (nothing to send) runs before any change.
    wait_until("a's connector delivers", WAIT, || {
        a.log().contains("this process leads: delivering")
    });
    std::thread::sleep(Duration::from_millis(500));

    let users = |from: usize, to: usize| {
        let mut csv = String::from("status,mail,lastName\n");
        for n in from..to {
            csv.push_str(&format!("active,u{n}@example.org,U{n}\n"));
        }
        csv
    };
    let (code, report) = env_a.import("users", &env_a.file("one.csv", users(0, 300)), &[]);
    assert_eq!(code, 0, "{report}");
    wait_until("a delivers", WAIT, || seen.lock().unwrap().len() >= 100);
    let mut a = a;
    a.signal("KILL");
    a.wait(Duration::from_secs(10)).expect("killed");
    let killed = std::time::Instant::now();
    let (code, report) = env_b.import("users", &env_b.file("two.csv", users(300, 400)), &[]);
    assert_eq!(code, 0, "{report}");
    wait_until("b leads", Duration::from_secs(15), || {
        b.log().contains("this process leads the replicas")
    });
    let took = killed.elapsed();
    assert!(
        took < Duration::from_secs(6),
        "b led {took:?} after the kill"
    );
    assert!(b.log().contains("epoch=2"), "a higher epoch: {}", b.log());
    wait_until("every change delivered", WAIT, || {
        seen.lock().unwrap().len() == 400
    });
    std::thread::sleep(Duration::from_millis(500));
    let seen = seen.lock().unwrap().clone();
    let twice: Vec<u64> = seen
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(s, _)| *s)
        .collect();
    assert_eq!(
        (1..=400).filter(|s| seen.contains_key(s)).count(),
        400,
        "every change once at least"
    );
    // At most the batch in flight and the one saved late (50 each).
    assert!(twice.len() <= 100, "delivered twice: {twice:?}");
    eprintln!(
        "b led {took:?} after the kill; {} changes delivered twice",
        twice.len()
    );
    b.signal("TERM");
    b.wait(Duration::from_secs(30)).expect("stopped");
    stop.store(true, Ordering::SeqCst);
    receiver.join().expect("the receiver");
}
